"""The web playground at `/`, driven in Debian's Chromium by Playwright against a real `vidgate serve`.

Screenshots (390 px and 1280 px wide) go to $VIDGATE_SCREENSHOTS, or to a temporary folder; the path is printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fakes.sora import FakeSora
from tests.helpers import Server, png_bytes, running_gateway

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH, HEIGHT = 320, 192  # small and even: renders in well under a second
TIMEOUT_MS = 20_000
# Records every value each card's progress bar shows, so the test can check it only ever moves forward.
RECORD_PROGRESS = """
window.__progress = {};
new MutationObserver((records) => {
  for (const record of records) {
    const card = record.target.closest("[data-testid=video-card]");
    if (!card) continue;
    const seen = (window.__progress[card.dataset.videoId] ||= []);
    const value = Number(record.target.getAttribute("aria-valuenow"));
    if (seen[seen.length - 1] !== value) seen.push(value);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["aria-valuenow"] });
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install playwright)")
    with sync_playwright() as playwright:
        # launch() gives every run a fresh, throw-away profile.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("VIDGATE_SCREENSHOTS") or tmp_path_factory.mktemp("playground-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nplayground screenshots: {folder}")
    return folder


@dataclass
class Watched:
    """A page and everything it said on its console or threw."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problems(self, *, allow_http: tuple[int, ...] = ()) -> list[str]:
        """Console errors/warnings and page errors, except the browser's own note on an expected HTTP status."""
        allowed = tuple(f"the server responded with a status of {status}" for status in allow_http)
        return [line for line in self.console if not any(text in line for text in allowed)] + self.errors


@contextlib.contextmanager
def watch(browser: Browser, server: Server) -> Iterator[Watched]:
    """A fresh page on `server`, recording its console problems and every progress value its cards show."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.add_init_script(RECORD_PROGRESS)
    result = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            result.console.append(f"{message.type}: {message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: result.errors.append(f"pageerror: {error}"))
    try:
        yield result
    finally:
        context.close()


@pytest.fixture
def watched(browser: Browser, server: Server) -> Iterator[Watched]:
    with watch(browser, server) as result:
        yield result


def video_ids(server: Server, key: str) -> list[str]:
    response = httpx.get(f"{server.url}/v1/videos", params={"limit": 100}, headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return [video["id"] for video in response.json()["data"]]


def save_key(page: Page, key: str) -> None:
    page.goto("/")
    page.fill("#api-key", key)
    page.click("#save-key")
    page.wait_for_selector("#key-saved:visible")
    page.wait_for_selector("#create-fields:enabled")


def choose_small_size(page: Page, *, width: int = WIDTH, height: int = HEIGHT) -> None:
    page.select_option("#size", "custom")
    page.fill("#size-width", str(width))
    page.fill("#size-height", str(height))


def submit(page: Page, prompt: str) -> str:
    """Submit the form; returns the id of the card that appears for it."""
    before = page.locator("[data-testid=video-card]").count()
    page.fill("#prompt", prompt)
    page.click("#submit")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=video-card]').length > n", arg=before, timeout=TIMEOUT_MS
    )
    card = page.locator("[data-testid=video-card]").first
    assert card.locator("[data-testid=prompt]").inner_text() == prompt
    video_id = card.get_attribute("data-video-id")
    assert video_id and video_id.startswith("video_")
    return video_id


def card(page: Page, video_id: str) -> Locator:
    return page.locator(f"[data-testid=video-card][data-video-id='{video_id}']")


def wait_completed(page: Page, video_id: str) -> None:
    card(page, video_id).and_(page.locator("[data-status=completed]")).wait_for()
    bar = card(page, video_id).locator("[data-testid=progress]")
    assert bar.get_attribute("aria-valuenow") == "100"
    seen = page.evaluate("id => window.__progress[id] || []", video_id)
    assert seen and seen[-1] == 100, seen
    assert seen == sorted(seen), f"the progress bar went backwards: {seen}"


def play(page: Page, video_id: str) -> None:
    """Start the inline player and wait until it shows frames of the requested size and time moves on."""
    target = card(page, video_id)
    target.locator("[data-testid=play]").click()
    player = target.locator("[data-testid=player]")
    player.wait_for(state="visible")
    assert player.get_attribute("controls") is not None
    player.evaluate(
        """(video, size) => new Promise((resolve, reject) => {
            const check = () => {
              if (video.error) reject(new Error(`media error ${video.error.code}: ${video.error.message}`));
              else if (video.readyState >= 2 && video.videoWidth === size[0] && video.videoHeight === size[1]
                       && video.currentTime > 0.2) resolve();
              else setTimeout(check, 50);
            };
            check();
          })""",
        [WIDTH, HEIGHT],
    )
    link = target.locator("[data-testid=download]")
    assert (link.get_attribute("href") or "").startswith("blob:")
    assert link.get_attribute("download") == f"{video_id}.mp4"


def test_pages_are_served_with_their_types(server: Server) -> None:
    expected = {
        "/": "text/html",
        "/playground/app.js": "text/javascript",
        "/playground/style.css": "text/css",
    }
    for path, content_type in expected.items():
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(content_type), path
        assert response.headers["cache-control"] == "no-cache"
    page = httpx.get(server.url + "/")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "/playground/app.js" in page.text
    assert httpx.get(server.url + "/playground/nope.js").status_code == 404
    assert httpx.get(server.url + "/playground/index.html").status_code == 404
    assert "/playground" not in httpx.get(server.url + "/openapi.json").text


def test_generate_watch_play_and_delete(watched: Watched, server: Server, tmp_path: Path, screenshots: Path) -> None:
    page = watched.page
    key = server.key("pg")
    save_key(page, key)
    assert page.locator("#model").input_value() == "vidgate-local"
    assert page.locator("#key-masked").inner_text().startswith("sk-vg-")

    # text to video
    choose_small_size(page)
    page.select_option("#seconds", "2")
    t2v = submit(page, "A paper boat drifting down a rainy street at dusk")

    # image to video: the picked file goes as multipart input_reference
    image = tmp_path / "first.png"
    image.write_bytes(png_bytes(WIDTH, HEIGHT))
    page.check("input[name=mode][value=i2v]")
    page.set_input_files("#first-frame", image)
    page.wait_for_selector("#first-frame-preview:visible")
    page.select_option("#seconds", "1")
    i2v = submit(page, "Slow zoom over a checkerboard")

    for video_id in (t2v, i2v):
        wait_completed(page, video_id)
        thumb = card(page, video_id).locator("[data-testid=thumbnail]")
        thumb.wait_for(state="visible")
        assert thumb.evaluate("img => img.src.startsWith('blob:') && img.naturalWidth > 0")
        play(page, video_id)
    assert (
        card(page, t2v)
        .locator("[data-testid=meta]")
        .inner_text()
        .startswith(f"vidgate-local · {WIDTH} \N{MULTIPLICATION SIGN} {HEIGHT} · 2 s")
    )
    assert page.locator("#video-count").inner_text() == "2"

    page.screenshot(path=screenshots / "playground-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=screenshots / "playground-390.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "horizontal scroll on a phone"
    page.set_viewport_size({"width": 1280, "height": 900})

    # delete: the first click arms the button, the second deletes
    delete = card(page, t2v).locator("[data-testid=delete]")
    delete.click()
    assert delete.inner_text() == "Confirm delete"
    delete.click()
    card(page, t2v).wait_for(state="detached")
    assert page.locator("#video-count").inner_text() == "1"
    assert video_ids(server, key) == [i2v]

    # a reload finds the key in localStorage and lists what is left
    page.reload()
    card(page, i2v).and_(page.locator("[data-status=completed]")).wait_for()
    assert page.locator("[data-testid=video-card]").count() == 1
    assert watched.problems() == []


def test_wrong_key_is_refused_and_nothing_is_submitted(watched: Watched, server: Server) -> None:
    page = watched.page
    real = server.key("pg-wrong")
    wrong = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    page.goto("/")
    page.fill("#api-key", wrong)
    page.click("#save-key")
    error = page.locator("#key-error")
    error.wait_for(state="visible")
    assert "refused" in error.inner_text()
    assert page.locator("#prompt").is_disabled()
    assert page.locator("#submit").is_disabled()
    assert page.evaluate("localStorage.getItem('vidgate.playground.key')") is None

    # a saved key that vidgate no longer accepts: the same message, and it is forgotten
    page.evaluate("key => localStorage.setItem('vidgate.playground.key', key)", wrong)
    page.reload()
    error.wait_for(state="visible")
    assert "saved key" in error.inner_text()
    assert page.locator("#api-key").is_visible()
    assert page.locator("#submit").is_disabled()
    assert page.evaluate("localStorage.getItem('vidgate.playground.key')") is None

    assert video_ids(server, real) == []
    assert watched.problems(allow_http=(401,)) == []


def test_refused_request_shows_the_message_next_to_its_field(watched: Watched, server: Server) -> None:
    page = watched.page
    key = server.key("pg-refused")
    save_key(page, key)
    choose_small_size(page, width=63, height=63)
    page.fill("#prompt", "too small")
    page.click("#submit")
    size_error = page.locator("#error-size")
    size_error.wait_for(state="visible")

    expected = httpx.post(
        f"{server.url}/v1/videos",
        headers={"Authorization": f"Bearer {key}"},
        files={"prompt": (None, "too small"), "model": (None, "vidgate-local"), "size": (None, "63x63")},
    )
    assert expected.status_code == 400
    assert expected.json()["error"]["param"] == "size"
    assert size_error.inner_text() == expected.json()["error"]["message"]
    assert page.locator("#form-error").is_hidden()
    assert page.locator("#size-width").get_attribute("aria-invalid") == "true"

    # fixing the field clears its message; i2v without an image is caught before anything is sent
    page.fill("#size-width", "64")
    assert size_error.is_hidden()
    page.check("input[name=mode][value=i2v]")
    page.click("#submit")
    page.locator("#error-first-frame").wait_for(state="visible")

    assert video_ids(server, key) == []
    assert page.locator("[data-testid=video-card]").count() == 0
    assert watched.problems(allow_http=(400,)) == []


def test_lost_connection_shows_a_banner_until_vidgate_answers_again(watched: Watched, server: Server) -> None:
    page = watched.page
    key = server.key("pg-offline")
    save_key(page, key)
    banner = page.locator("#connection-banner")
    assert banner.is_hidden()

    page.route("**/*", lambda route: route.abort("connectionrefused"))
    choose_small_size(page)
    page.select_option("#seconds", "1")
    page.fill("#prompt", "lost in transit")
    page.click("#submit")
    banner.wait_for(state="visible")
    assert "could not be reached" in page.locator("#form-error").inner_text()
    assert video_ids(server, key) == []

    page.unroute("**/*")
    banner.wait_for(state="hidden")
    # back online, and big enough (a few seconds to render) for the bar to show the steps between 0 and 100
    page.select_option("#size", "1920x1080")
    page.select_option("#seconds", "12")
    video_id = submit(page, "found again")
    wait_completed(page, video_id)
    seen = page.evaluate("id => window.__progress[id]", video_id)
    assert any(0 < value < 100 for value in seen), f"the bar jumped straight to the end: {seen}"
    assert video_ids(server, key) == [video_id]
    refused = [line for line in watched.console if "ERR_CONNECTION_REFUSED" not in line]
    assert refused + watched.errors == []


def test_docs_render_offline_with_no_request_leaving_the_machine(watched: Watched, server: Server) -> None:
    page = watched.page
    seen: list[str] = []
    refused: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        seen.append(url)
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:  # what a machine with no internet would do to a CDN request
            refused.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_loopback)
    page.on("request", lambda request: seen.append(request.url))
    page.goto("/docs")
    # The operations list renders: Swagger UI's script ran and read /openapi.json.
    page.locator(".opblock").first.wait_for()
    page.wait_for_load_state("networkidle")
    paths = {text.replace("\u200b", "") for text in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/v1/videos", "/v1/videos/{video_id}", "/v1/models"} <= paths, paths
    assert page.locator(".opblock-post .opblock-summary-path", has_text="/v1/videos").count() >= 1
    assert refused == []
    hosts = {urlsplit(url).hostname for url in seen if not url.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, sorted(set(seen))
    assert any(url.endswith("/openapi.json") for url in seen)
    assert any(url.endswith("/swagger-ui-bundle.js") for url in seen)
    assert watched.problems() == []  # no CSP violation, no script error


def test_docs_assets_are_served_from_the_package(server: Server) -> None:
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and "cdn" not in page.text.lower() and "https://" not in page.text
    assets = re.findall(r'(?:href|src)="(/docs-assets/[^"]+)"', page.text)
    assert len(assets) == 4, assets
    for path in assets:
        response = httpx.get(server.url + path)
        assert response.status_code == 200 and response.content, path
    bundle = httpx.get(server.url + next(path for path in assets if path.endswith("/swagger-ui-bundle.js")))
    assert bundle.headers["content-type"].startswith("text/javascript") and len(bundle.content) > 500_000
    assert "immutable" in bundle.headers["cache-control"]
    folder = assets[0].rsplit("/", 1)[0]
    # Only the files the page uses, under the current version; nothing else in the package's folder.
    for path in (f"{folder}/redoc.standalone.js", f"{folder}/..", "/docs-assets/x/swagger-ui.css"):
        assert httpx.get(server.url + path).status_code == 404, path
    assert httpx.get(server.url + "/redoc").status_code == 404


# The playground's pace with many unfinished videos (app.js LIST_ROUND_MS).
LIST_ROUND_S = 1.5


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, FakeSora]]:
    """vidgate in front of an OpenAI-format emulator whose videos never finish unless a test moves them on."""
    upstream = FakeSora(api_keys=frozenset({"sk-slow"}), polls_per_step=10**9)
    channel = f"""
[[channels]]
name = "slow"
provider = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-slow"
"""
    with upstream.running(), running_gateway(tmp_path_factory.mktemp("slowgw"), channel) as server:
        yield server, upstream


def video_path(url: str) -> str:
    return urlsplit(url).path


def test_many_unfinished_videos_cost_one_list_request_a_round(
    browser: Browser, slow_gateway: tuple[Server, FakeSora]
) -> None:
    server, upstream = slow_gateway
    key = server.key("pg-many")
    with httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}) as api:
        running = [api.post("/videos", json={"prompt": f"slow {n}", "model": "sora-2"}).json()["id"] for n in range(10)]
        upstream.fail_next("moderation_blocked", "Your request was blocked by our moderation system.")
        blocked = api.post("/videos", json={"prompt": "blocked one", "model": "sora-2"}).json()["id"]
        (upstream_id,) = [task.id for task in upstream.tasks.values() if task.prompt == "blocked one"]
        upstream.advance(upstream_id, steps=5)
        deadline = time.monotonic() + 20
        while (failed := api.get(f"/videos/{blocked}").json())["status"] != "failed":
            assert time.monotonic() < deadline, failed
            time.sleep(0.1)

        with watch(browser, server) as watched:
            page = watched.page
            seen: list[tuple[float, str]] = []
            page.on("request", lambda request: seen.append((time.monotonic(), request.url)))
            save_key(page, key)
            page.wait_for_function("n => document.querySelectorAll('[data-testid=video-card]').length === n", arg=11)

            # The failed video's card says why, in the upstream's words (our code is on the API's error).
            card(page, blocked).and_(page.locator("[data-status=failed]")).wait_for()
            note = card(page, blocked).locator("[data-testid=video-error]")
            assert note.is_visible() and note.inner_text() == failed["error"]["message"]
            assert (
                note.inner_text() == "Upstream: moderation_blocked: Your request was blocked by our moderation system."
            )

            # Ten unfinished: a few rounds of one list request each, and no request per video.
            start, first = time.monotonic(), len(seen)
            rounds: list[str] = []
            while len(rounds) < 3:
                assert time.monotonic() - start < 6 * LIST_ROUND_S, seen[first:]
                page.wait_for_timeout(100)
                rounds = [url for _, url in seen[first:] if video_path(url) == "/v1/videos"]
            elapsed = time.monotonic() - start
            window = [video_path(url) for _, url in seen[first:] if video_path(url).startswith("/v1/")]
            assert [path for path in window if path.startswith("/v1/videos/video_")] == [], window
            assert window == ["/v1/videos"] * len(window), window
            assert all(parse_qs(urlsplit(url).query)["limit"] == ["100"] for url in rounds)
            assert len(rounds) <= elapsed / LIST_ROUND_S + 1, (len(rounds), elapsed)

            # Deleted elsewhere: the next round drops their cards; with two left, each is polled on its own.
            for video_id in running[2:]:
                assert api.delete(f"/videos/{video_id}").status_code == 200
            page.wait_for_function("n => document.querySelectorAll('[data-testid=video-card]').length === n", arg=3)
            mark = len(seen)
            single = {f"/v1/videos/{video_id}" for video_id in running[:2]}
            deadline = time.monotonic() + 5
            while not single <= {video_path(url) for _, url in seen[mark:]}:
                assert time.monotonic() < deadline, seen[mark:]
                page.wait_for_timeout(100)
            page.wait_for_timeout(int(LIST_ROUND_S * 1000) + 300)
            assert "/v1/videos" not in [video_path(url) for _, url in seen[mark:]]  # the rounds stopped
            assert watched.problems() == []
