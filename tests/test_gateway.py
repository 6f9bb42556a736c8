"""Channels, failover, circuit breakers, quotas and billing, webhooks and metrics, against running vidgates
and DashScope emulators."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.base import free_port as fake_port
from tests.fakes.dashscope import FakeDashScope
from tests.helpers import Server, cli, free_port, write_config

WAN = "wan2.5-t2v-preview"


def channel(name: str, fake: FakeDashScope, **extra: Any) -> str:
    lines = [f'name = "{name}"', 'provider = "dashscope"', f'base_url = "{fake.base_url}"', 'api_key = "sk-ds-test"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "[[channels]]\n" + "\n".join(lines) + "\n"


def start_server(
    folder: Path, extra: str, database_url: str | None = None, cooldown: float = 1.0, poll: float = 0.2
) -> Server:
    port = free_port()
    base = f"poll_interval_s = {poll}\nbreaker_threshold = 3\nbreaker_cooldown_s = {cooldown}\n"
    config = write_config(folder, port=port, extra=base + extra, database_url=database_url)
    server = Server(config=config, port=port, log=folder / "server.log")
    server.start()
    return server


def submit(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post(
        "/videos", json={"prompt": "a harbour at dawn", "model": WAN, "seconds": 5, "size": "1280x720", **fields}
    )


def wait_status(client: httpx.Client, video_id: str, *, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video: dict[str, Any] = client.get(f"/videos/{video_id}").json()
        if video["status"] in ("completed", "failed"):
            return video
        time.sleep(0.1)
    raise AssertionError(f"{video_id} did not finish")


def metric_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


@pytest.fixture
def fakes() -> Iterator[tuple[FakeDashScope, FakeDashScope]]:
    first, second = FakeDashScope(), FakeDashScope()
    with first.running(), second.running():
        yield first, second


def test_failover_and_breaker(tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]) -> None:
    broken, healthy = fakes
    broken.faults.random("submit", 1.0, "503")
    server = start_server(
        tmp_path, channel("wan-a", broken, priority=0) + channel("wan-b", healthy, priority=1), cooldown=8.0
    )
    try:
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {server.key()}"}, timeout=30
        ) as client:
            ids = []
            for n in range(50):
                response = submit(client)
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
                if n == 4:
                    # The breaker opened after 3 failures, and says so (within its cool-down).
                    metrics = httpx.get(f"{server.url}/metrics").text
                    assert metric_value(metrics, "vidgate_channel_up", channel="wan-a") == 0
                    status = cli("channels", config=server.config).stdout
                    assert "open" in status.split("wan-a")[1].splitlines()[0]
            assert len(healthy.tasks) == 50 and not broken.tasks
            # The broken channel saw 3 failing submits and one trial per cool-down, not all 50.
            assert 3 <= len(broken.submits()) <= 5
            # It recovers: after the cool-down one trial goes through, succeeds, and the breaker closes.
            broken.faults.clear()
            opened = server_health(server)["wan-a"]
            time.sleep(max(0.0, opened - time.time()) + 0.2)
            assert submit(client).status_code == 200
            assert len(broken.tasks) == 1
            metrics = httpx.get(f"{server.url}/metrics").text
            assert metric_value(metrics, "vidgate_channel_up", channel="wan-a") == 1
            assert "healthy" in cli("channels", config=server.config).stdout.split("wan-a")[1].splitlines()[0]
            for video_id in ids[:3]:
                assert wait_status(client, video_id)["status"] == "completed"
            attempts = server_attempts(server, ids[-1])
            assert [a["channel"] for a in attempts] in (["wan-a", "wan-b"], ["wan-b"]) or attempts[-1][
                "channel"
            ] == "wan-b"
    finally:
        server.stop()


def server_health(server: Server) -> dict[str, float]:
    import sqlite3

    db = sqlite3.connect(server.config.parent / "vidgate.db")
    try:
        return {name: float(until or 0) for name, until in db.execute("select channel, open_until from channel_health")}
    finally:
        db.close()


def server_attempts(server: Server, video_id: str) -> list[dict[str, Any]]:
    import sqlite3

    db = sqlite3.connect(server.config.parent / "vidgate.db")
    try:
        import json

        (raw,) = db.execute("select attempts from tasks where id = ?", (video_id,)).fetchone()
        return list(json.loads(raw))
    finally:
        db.close()


def test_all_channels_failing_is_a_503_and_leaves_nothing(
    tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]
) -> None:
    first, second = fakes
    first.faults.random("submit", 1.0, "429")
    second.faults.random("submit", 1.0, "500")
    server = start_server(tmp_path, channel("wan-alpha", first) + channel("wan-beta", second))
    try:
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {server.key()}"}, timeout=30
        ) as client:
            response = submit(client)
            assert response.status_code in (502, 503) and response.json()["error"]["type"] == "server_error"
            assert int(response.headers["retry-after"]) >= 1
            assert client.get("/videos").json()["data"] == []
        # The client is told no channel, URL or upstream text; the task's attempts keep them for operators.
        assert response.json()["error"]["message"] == "No upstream accepted the request; retry later."
        for secret in ("wan-alpha", "wan-beta", "127.0.0.1", "http", "Throttling", "InternalError"):
            assert secret not in response.text
        import json
        import sqlite3

        db = sqlite3.connect(server.config.parent / "vidgate.db")
        try:
            ((raw, deleted),) = db.execute("select attempts, deleted_at from tasks").fetchall()
        finally:
            db.close()
        attempts = json.loads(raw)
        assert deleted is not None and {a["channel"] for a in attempts} == {"wan-alpha", "wan-beta"}
        assert any("Throttling" in a["error"] for a in attempts) and any(
            "InternalError" in a["error"] for a in attempts
        )
        # The 500 left the outcome unknown: the task list was read (nothing there) before giving up.
        assert first.calls("/api/v1/tasks", "GET") or second.calls("/api/v1/tasks", "GET")
    finally:
        server.stop()


def test_weighted_sharing_and_max_in_flight(tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]) -> None:
    heavy, light = fakes
    for fake in fakes:
        fake.polls_per_step = 0  # tasks stay pending: this test is about where submits land
    # Slow polling: these tasks never finish, and reading 400 of them every 0.2 s is not this test's point.
    server = start_server(tmp_path, channel("heavy", heavy, weight=3) + channel("light", light, weight=1), poll=30.0)
    try:
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {server.key()}"}, timeout=30
        ) as client:
            for _ in range(400):
                assert submit(client).status_code == 200
        share = len(heavy.tasks) / 400
        assert abs(share - 0.75) <= 0.05, (len(heavy.tasks), len(light.tasks))
        assert len(heavy.tasks) + len(light.tasks) == 400
    finally:
        server.stop()


def test_max_in_flight_full_channel_is_429(tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]) -> None:
    only, _ = fakes
    only.polls_per_step = 0
    server = start_server(tmp_path, channel("capped", only, max_in_flight=2))
    try:
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {server.key()}"}, timeout=30
        ) as client:
            assert submit(client).status_code == 200
            assert submit(client).status_code == 200
            full = submit(client)
            assert full.status_code == 429 and full.json()["error"]["code"] == "channels_busy"
            assert int(full.headers["retry-after"]) >= 1
            assert len(only.tasks) == 2
    finally:
        server.stop()


PRICED = """
[prices]
"vidgate-local" = 0.1
"wan2.5-t2v-preview" = { "480P" = 0.05, "720P" = 0.1, "1080P" = 0.15 }
"""


def test_quota_refund_and_ledger(tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]) -> None:
    wan, _ = fakes
    server = start_server(tmp_path, channel("wan", wan) + PRICED)
    try:
        key = cli("keys", "create", "--name", "paying", "--quota", "1.2", config=server.config).stdout.strip()
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            ids = []
            for _ in range(3):  # 4 s x 0.1 USD/s = 0.4 USD each: three fit 1.2 USD exactly
                response = client.post("/videos", json={"prompt": "paid", "seconds": 4, "size": "64x64"})
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
            refused = client.post("/videos", json={"prompt": "one too many", "seconds": 4, "size": "64x64"})
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
            assert int(refused.headers["retry-after"]) >= 1
            assert len(client.get("/videos").json()["data"]) == 3
            for video_id in ids:
                assert wait_status(client, video_id)["status"] == "completed"
            usage = client.get("/usage").json()
            assert Decimal(usage["spent_usd"]) == Decimal("1.2") and Decimal(usage["remaining_usd"]) == 0
            assert usage["data"][0]["model"] == "vidgate-local" and usage["data"][0]["videos"] == 3

        other = cli("keys", "create", "--name", "refunds", "--quota", "1", config=server.config).stdout.strip()
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {other}"}, timeout=30
        ) as client:
            response = submit(client, prompt="FAIL:DataInspectionFailed no")
            assert response.status_code == 200
            assert Decimal(client.get("/usage").json()["spent_usd"]) == Decimal("0.5")  # held while it runs
            failed = wait_status(client, response.json()["id"])
            assert failed["status"] == "failed" and failed["error"]["code"] == "content_policy_violation"
            assert failed["error"]["message"].startswith("DashScope: DataInspectionFailed: ")
            assert Decimal(client.get("/usage").json()["spent_usd"]) == 0
            # Refused for price before any upstream call: 1 USD cannot cover 10 s at 1080P (1.5 USD).
            before = len(wan.submits())
            big = submit(client, seconds=10, size="1920x1080")
            assert big.status_code == 429 and len(wan.submits()) == before
        listing = cli("keys", "list", config=server.config).stdout
        assert "1.200000" in listing.split("paying")[1].splitlines()[0]
        ledger = ledger_rows(server)
        assert sum(amount for *_, amount in ledger if _[0] in ids) == 1_200_000
        kinds = [(task, kind) for task, kind, _ in ledger]
        assert len(kinds) == len(set(kinds))
    finally:
        server.stop()


def ledger_rows(server: Server) -> list[tuple[str, str, int]]:
    import sqlite3

    db = sqlite3.connect(server.config.parent / "vidgate.db")
    try:
        return [(t, k, int(a)) for t, k, a in db.execute("select task_id, kind, amount_micros from ledger order by id")]
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_between_accept_and_settle(
    backend: str, tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope], request: pytest.FixtureRequest
) -> None:
    wan, _ = fakes
    wan.polls_per_step = 0  # accepted upstream, then nothing happens until we say so
    wan.clip_seconds = 5.0  # the real length is billed: make it the requested one
    database_url = request.getfixturevalue("pg_database") if backend == "postgres" else None
    server = start_server(tmp_path, channel("wan", wan) + PRICED, database_url=database_url)
    try:
        key = cli("keys", "create", "--name", f"crash-{backend}", "--quota", "10", config=server.config).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=30) as client:
            ids = [submit(client).json()["id"] for _ in range(4)]
        assert len(wan.tasks) == 4
        server.kill()
        for task_id in list(wan.tasks):
            for _ in range(3):
                wan.advance(task_id)
        server.start()
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=30) as client:
            for video_id in ids:
                assert wait_status(client, video_id)["status"] == "completed"
            usage = client.get("/usage").json()
        assert Decimal(usage["spent_usd"]) == Decimal("2.0")  # 4 x 5 s x 0.1 USD/s, once each
        assert len(wan.tasks) == 4
        if backend == "sqlite":
            kinds = sorted((task, kind) for task, kind, _ in ledger_rows(server))
            assert kinds == sorted([(video_id, kind) for video_id in ids for kind in ("reserve", "settle")])
    finally:
        server.stop()


class Receiver:
    """A webhook endpoint that is down (503) for its first `down_for` requests."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.port = fake_port()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.requests.append((await request.body(), dict(request.headers)))
        return Response(status_code=503 if len(self.requests) <= self.down_for else 204)

    def run(self) -> tuple[uvicorn.Server, threading.Thread]:
        server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        return server, thread


def test_webhooks_signed_and_retried(tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]) -> None:
    wan, _ = fakes
    receiver = Receiver(down_for=3)
    web, thread = receiver.run()
    # The receiver is on loopback: delivering to it is the operator's choice (the URL guard refuses it otherwise).
    settings = "webhook_retry_delays = [0.2, 0.3, 0.5, 1.0]\nfetch_private_urls = true\n"
    server = start_server(tmp_path, settings + channel("wan", wan))
    try:
        out = cli(
            "keys",
            "create",
            "--name",
            "hooked",
            "--webhook",
            f"http://127.0.0.1:{receiver.port}/hook",
            config=server.config,
        ).stdout
        key, secret = out.splitlines()
        assert secret.startswith("whsec_")
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            done = client.post("/videos", json={"prompt": "hooked", "seconds": 1, "size": "64x64"}).json()["id"]
            failed = submit(client, prompt="FAIL:DataInspectionFailed").json()["id"]
            wait_status(client, done)
            wait_status(client, failed)
        deadline = time.monotonic() + 30
        events: dict[str, dict[str, Any]] = {}
        verifier = Webhook(secret)
        while time.monotonic() < deadline and len(events) < 2:
            for body, headers in receiver.requests[receiver.down_for :]:
                event = verifier.verify(body, headers)
                events[event["data"]["id"]] = event
            time.sleep(0.1)
        assert events[done]["type"] == "video.completed" and events[failed]["type"] == "video.failed"
        assert all(event["object"] == "event" and event["id"].startswith("evt_") for event in events.values())
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 32).verify(receiver.requests[-1][0], receiver.requests[-1][1])
        # The first three tries were refused; every event arrived at least once after that.
        assert len(receiver.requests) >= 5
        listing = cli("webhooks", "list", config=server.config).stdout
        assert listing.count("delivered") == 2 and "video.completed" in listing
    finally:
        server.stop()
        web.should_exit = True
        thread.join(timeout=5)


def test_metrics_parse_and_carry_the_series(tmp_path: Path, fakes: tuple[FakeDashScope, FakeDashScope]) -> None:
    wan, _ = fakes
    wan.clip_seconds = 5.0
    server = start_server(tmp_path, channel("wan", wan) + PRICED)
    try:
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {server.key()}"}, timeout=30
        ) as client:
            video = submit(client).json()["id"]
            wait_status(client, video)
            client.get("/videos/video_nope")
        text = httpx.get(f"{server.url}/metrics").text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {
            "vidgate_http_requests",
            "vidgate_submit_seconds",
            "vidgate_tasks",
            "vidgate_polls",
            "vidgate_channel_up",
            "vidgate_channel_in_flight",
            "vidgate_spend_usd",
        } <= names
        assert metric_value(text, "vidgate_http_requests_total", route="/v1/videos/{video_id}", status="404") >= 1
        assert metric_value(text, "vidgate_submit_seconds_count", provider="dashscope", outcome="accepted") >= 1
        assert metric_value(text, "vidgate_tasks", state="completed") >= 1
        assert metric_value(text, "vidgate_polls_total", provider="dashscope", outcome="completed") >= 1
        assert metric_value(text, "vidgate_spend_usd", model=WAN) == 0.5
    finally:
        server.stop()
