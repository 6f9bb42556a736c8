"""Hostile input against a running vidgate (SPEC §4, "Untrusted input limits"): bodies past the cap, the
unauthenticated upload POST, decompression bombs, image work on the event loop, number and signature texts
that are not what they look like, duplicate file parts, upload policies and allowances.

Memory is read from the server process itself (/proc/<pid>/status VmHWM, reset before each attack through
/proc/<pid>/clear_refs), and the server's open files are watched while a body streams in, so "nothing past the
cap on disk" covers the unnamed temp files a multipart parser spools to as well as media_dir.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import stat
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.kling import FakeKling
from tests.helpers import Server, flat_png, png_bytes, running_gateway

AK = "ak-vidgate-untrusted-input"
SK = "sk-vidgate-untrusted-input-" + "s" * 24
CAP = 4 * 1024 * 1024  # max_upload_bytes of the gateway under test
ALLOWANCE = 6 * 1024 * 1024
ATTACK = 40 * 1024 * 1024
MIB = 1024 * 1024
# Where a streaming attacker pauses until answered: past the cap (+ multipart allowance), far from the end.
PAST_THE_CAP = CAP + MIB
SUBMIT = "/api/v1/services/aigc/video-generation/video-synthesis"


# -- the gateway -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kling() -> Iterator[FakeKling]:
    fake = FakeKling(access_key=AK, secret_key=SK)
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, kling: FakeKling) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("untrusted")
    channel = f"""
[[channels]]
name = "kling-main"
provider = "kling"
base_url = "{kling.base_url}"
access_key = "{AK}"
secret_key = "{SK}"
"""
    settings = f"poll_interval_s = 0.2\nmax_upload_bytes = {CAP}\nupload_allowance_bytes = {ALLOWANCE}\n"
    # The server's own temp folder, so the files its multipart parser spools to can be told apart.
    (folder / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TMPDIR", str(folder / "tmp"))
        with running_gateway(folder, channel, settings=settings) as server:
            yield server


def media_dir(gw: Server) -> Path:
    return gw.config.parent / "media"


def auth(gw: Server, name: str = "attacker") -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.key(name)}"}


# -- measuring the server --------------------------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Watch:
    """The server's peak RSS rise, and the largest file it held open in media_dir or its temp folder, over a block."""

    def __init__(self, gw: Server) -> None:
        assert gw.proc is not None
        self.pid = gw.proc.pid
        self.roots = (str(media_dir(gw)), str(gw.config.parent / "tmp"))
        self.largest_open_file = 0
        self._stop = threading.Event()

    def __enter__(self) -> Watch:
        # Reset the peak (VmHWM) to the current RSS, so the peak afterwards is what this block cost.
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.base_kib = _status_kib(self.pid, "VmRSS")
        self._thread = threading.Thread(target=self._watch_files, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_rise = (_status_kib(self.pid, "VmHWM") - self.base_kib) * 1024

    def _watch_files(self) -> None:
        folder = Path(f"/proc/{self.pid}/fd")
        while not self._stop.wait(0.005):
            for fd in folder.iterdir():
                try:
                    target = os.readlink(fd)
                    info = fd.stat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and target.startswith(self.roots):
                    self.largest_open_file = max(self.largest_open_file, info.st_size)


def assert_nothing_past_the_cap(gw: Server) -> None:
    for path in media_dir(gw).rglob("*"):
        if path.is_file():
            assert path.stat().st_size <= CAP, path
            assert not path.name.startswith("upload-") and not path.name.endswith(".part"), path
    # The server's temp folder holds its process pool's socket and no file (spooled parts are gone).
    assert not [path for path in (gw.config.parent / "tmp").rglob("*") if path.is_file()]


# -- a client that streams a chunked body and reads the answer while it sends ---------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_before_answer: int  # body bytes the client had sent when the whole answer was in

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


def stream_post(
    gw: Server,
    path: str,
    *,
    headers: dict[str, str],
    head: bytes,
    filler: int,
    tail: bytes = b"",
    hold_after: int | None = None,
) -> Answer:
    """POST head + `filler` bytes + tail with Transfer-Encoding: chunked, 64 KiB a chunk. With `hold_after`,
    nothing past that many body bytes is sent until the answer is in (so the answer cannot depend on the rest)."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{gw.port}", "Transfer-Encoding: chunked"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    answered = threading.Event()
    sent = 0

    def chunks() -> Iterator[bytes]:
        yield head
        block = b"\0" * 65536
        left = filler
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)
        if tail:
            yield tail

    def send() -> None:
        nonlocal sent
        try:
            for chunk in chunks():
                if hold_after is not None and sent >= hold_after:
                    answered.wait(20)
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close once it has answered

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        answer = _read_answer(sock)
        answer.sent_before_answer = sent
    finally:
        answered.set()
        sender.join(60)
        sock.close()
    return answer


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed before an answer: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        more = sock.recv(65536)
        assert more, "connection closed mid-answer"
        body += more
    return Answer(int(status_line.split()[1]), headers, body[:length], 0)


def multipart(fields: dict[str, str], file_field: str, filename: str) -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a multipart form whose last part is a file, its bytes to go in between."""
    boundary = "vidgate-attack-boundary"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def policy(gw: Server, key_name: str = "uploader") -> dict[str, Any]:
    answer = httpx.get(
        f"{gw.url}/api/v1/uploads", params={"action": "getPolicy", "model": "vidgate-local"}, headers=auth(gw, key_name)
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def upload_fields(data: dict[str, Any], name: str = "a.png") -> dict[str, str]:
    return {
        "OSSAccessKeyId": data["oss_access_key_id"],
        "Signature": data["signature"],
        "policy": data["policy"],
        "key": f"{data['upload_dir']}/{name}",
        "x-oss-object-acl": "private",
        "x-oss-forbid-overwrite": "true",
        "success_action_status": "200",
        "x-oss-content-type": "image/png",
    }


def assert_dashscope_error(answer: Answer | httpx.Response, status: int, code: str) -> dict[str, Any]:
    got = answer.status_code if isinstance(answer, httpx.Response) else answer.status
    body: dict[str, Any] = answer.json()
    assert got == status, (got, body)
    assert set(body) == {"request_id", "code", "message"} and body["code"] == code, body
    return body


def assert_openai_error(answer: Answer | httpx.Response, status: int) -> dict[str, Any]:
    got = answer.status_code if isinstance(answer, httpx.Response) else answer.status
    body: dict[str, Any] = answer.json()
    assert got == status, (got, body)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]  # type: ignore[no-any-return]


# -- bodies past the cap -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("forgery", ["signature", "no grant"])
def test_forged_upload_is_refused_before_its_body_is_read(gw: Server, forgery: str) -> None:
    data = policy(gw)
    host = data["upload_host"]
    # The grant's last hex digit changed, or no grant at all (…/uploads/oss, as before grants existed).
    url = host[:-1] + ("1" if host.endswith("0") else "0") if forgery == "signature" else host.rsplit("/", 1)[0]
    path = url.removeprefix(gw.url)
    head, tail, content_type = multipart({**upload_fields(data), "Signature": "Zm9yZ2Vk"}, "file", "big.png")
    with Watch(gw) as watch:
        answer = stream_post(
            gw, path, headers={"Content-Type": content_type}, head=head, filler=ATTACK, tail=tail, hold_after=len(head)
        )
    assert_dashscope_error(answer, 403, "AccessDenied")
    # Answered while only the form's first chunk was sent: nothing of the file was needed, or read.
    assert answer.sent_before_answer <= len(head)
    assert watch.rss_rise < 30 * MIB, watch.rss_rise
    assert watch.largest_open_file == 0
    assert_nothing_past_the_cap(gw)


def test_upload_with_a_valid_url_is_cut_off_at_the_cap(gw: Server) -> None:
    data = policy(gw)
    head, tail, content_type = multipart({**upload_fields(data), "Signature": "Zm9yZ2Vk"}, "file", "big.png")
    with Watch(gw) as watch:
        answer = stream_post(
            gw, data["upload_host"].removeprefix(gw.url), headers={"Content-Type": content_type}, head=head,
            filler=ATTACK, tail=tail, hold_after=PAST_THE_CAP,
        )  # fmt: skip
    assert "file" in assert_dashscope_error(answer, 413, "BadRequest.TooLarge")["message"]
    assert answer.sent_before_answer < PAST_THE_CAP + MIB  # answered without the rest of the 40 MB
    assert watch.rss_rise < 30 * MIB, watch.rss_rise
    assert watch.largest_open_file <= CAP
    assert_nothing_past_the_cap(gw)


def test_dashscope_submit_body_is_cut_off_at_the_cap(gw: Server) -> None:
    head = b'{"model": "vidgate-local", "input": {"prompt": "'
    headers = {**auth(gw), "X-DashScope-Async": "enable", "Content-Type": "application/json"}
    with Watch(gw) as watch:
        answer = stream_post(
            gw, SUBMIT, headers=headers, head=head, filler=ATTACK, tail=b'"}}', hold_after=PAST_THE_CAP
        )
    assert_dashscope_error(answer, 413, "BadRequest.TooLarge")
    assert answer.sent_before_answer < PAST_THE_CAP + MIB
    assert watch.rss_rise < 30 * MIB, watch.rss_rise
    assert_nothing_past_the_cap(gw)


def test_openai_create_body_is_cut_off_at_the_cap(gw: Server) -> None:
    head, tail, content_type = multipart({"prompt": "big", "model": "vidgate-local"}, "input_reference", "big.png")
    headers = {**auth(gw), "Content-Type": content_type}
    with Watch(gw) as watch:
        answer = stream_post(
            gw, "/v1/videos", headers=headers, head=head, filler=ATTACK, tail=tail, hold_after=PAST_THE_CAP
        )
    error = assert_openai_error(answer, 413)
    assert (error["param"], error["code"]) == ("input_reference", "payload_too_large")
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.sent_before_answer < PAST_THE_CAP + MIB
    assert watch.rss_rise < 30 * MIB, watch.rss_rise
    assert watch.largest_open_file <= CAP
    assert_nothing_past_the_cap(gw)


@pytest.mark.parametrize(
    ("path", "shape"),
    [(SUBMIT, "dashscope"), ("/alibailian/api/v1/uploads/oss/x", "dashscope"), ("/v1/videos/x/remix", "openai")],
)
def test_declared_length_past_the_cap_is_refused_at_once(gw: Server, path: str, shape: str) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {ATTACK}\r\n"
            f"Authorization: Bearer {gw.key('attacker')}\r\nX-DashScope-Async: enable\r\n\r\n".encode()
        )
        answer = _read_answer(sock)  # not one byte of the body was sent
    if shape == "dashscope":
        assert_dashscope_error(answer, 413, "BadRequest.TooLarge")
    else:
        assert assert_openai_error(answer, 413)["code"] == "payload_too_large"


# -- images --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = flat_png(13000, 13000)
    assert 400_000 < len(data) < 600_000  # the ~481 KB of the report
    return data


def test_decompression_bomb_is_refused_before_decoding(gw: Server, bomb: bytes) -> None:
    with Watch(gw) as watch:
        started = time.monotonic()
        answer = httpx.post(
            f"{gw.url}/v1/videos",
            headers=auth(gw),
            data={"prompt": "a bomb", "model": "vidgate-local"},
            files={"input_reference": ("bomb.png", bomb, "image/png")},
            timeout=60,
        )
        elapsed = time.monotonic() - started
    error = assert_openai_error(answer, 400)
    assert error["param"] == "input_reference" and "megapixels" in error["message"], error
    assert elapsed < 3.0, elapsed
    assert watch.rss_rise < 30 * MIB, watch.rss_rise


def test_decompression_bomb_as_a_data_uri_on_the_dashscope_surface(gw: Server, bomb: bytes) -> None:
    body = {
        "model": "vidgate-local",
        "input": {"prompt": "x", "img_url": "data:image/png;base64," + base64.b64encode(bomb).decode()},
        "parameters": {"duration": 1, "size": "64*64"},
    }
    with Watch(gw) as watch:
        answer = httpx.post(f"{gw.url}{SUBMIT}", json=body, headers={**auth(gw), "X-DashScope-Async": "enable"})
    message = assert_dashscope_error(answer, 400, "InvalidParameter")["message"]
    assert "input.img_url" in message and "megapixels" in message
    assert watch.rss_rise < 30 * MIB, watch.rss_rise


def big_gif(side: int = 6000) -> bytes:
    image = Image.new("P", (side, side), 3)
    image.putpalette([(index * 37) % 256 for index in range(768)])
    for x in range(0, side, 500):
        image.paste(7, (x, 0, x + 100, side))
    out = io.BytesIO()
    image.save(out, format="GIF")
    return out.getvalue()


@pytest.mark.serial  # a timing bound: measured alone, not beside the parallel suite
def test_gif_reencoding_keeps_the_event_loop_responsive(gw: Server, kling: FakeKling) -> None:
    key = gw.key("gif")
    headers = {"Authorization": f"Bearer {key}"}
    watched = httpx.post(
        f"{gw.url}/v1/videos", headers=headers, json={"model": "kling-v1", "prompt": "something to poll"}
    ).json()["id"]
    # Finished first, so neither the poller nor the emulator (in this process) works on it while we measure.
    deadline = time.monotonic() + 30
    while httpx.get(f"{gw.url}/v1/videos/{watched}", headers=headers).json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    gif = big_gif()  # 36 Mpx: under the 40 Mpx cap, so it must be handled (re-encoded as PNG for Kling)
    created: dict[str, httpx.Response] = {}

    def create() -> None:
        created["answer"] = httpx.post(
            f"{gw.url}/v1/videos",
            headers=headers,
            data={"model": "kling-v1", "prompt": "the gif moves", "size": "1280x720"},
            files={"input_reference": ("big.gif", gif, "image/gif")},
            timeout=120,
        )

    async def read_while(creating: threading.Thread) -> list[float]:
        # Open-loop: a read is due every 10 ms whatever the earlier ones do, and its latency counts from when it
        # was due, so a stalled server cannot hide its stall by slowing the client down.
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=30) as client:

            async def read(due: float) -> None:
                answer = await client.get(f"/v1/videos/{watched}")
                assert answer.status_code == 200, answer.text
                latencies.append(time.monotonic() - due)

            await client.get(f"/v1/videos/{watched}")
            creating.start()
            reads = []
            due = time.monotonic()
            while creating.is_alive():
                reads.append(asyncio.create_task(read(due)))
                due += 0.01
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.gather(*reads)
        return latencies

    latencies = asyncio.run(read_while(threading.Thread(target=create)))
    assert created["answer"].status_code == 200, created["answer"].text
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert len(latencies) >= 20 and p99 < 0.25, (len(latencies), p99, max(latencies))
    # It was really handled: Kling received the frame, re-encoded as a PNG of the same size.
    (post,) = [
        entry
        for entry in kling.calls("/v1/videos/image2video", method="POST")
        if entry.json.get("external_task_id") == created["answer"].json()["id"]
    ]
    with Image.open(io.BytesIO(base64.b64decode(post.json["image"]))) as sent:
        assert (sent.format, sent.size) == ("PNG", (6000, 6000))


# -- number and signature texts ------------------------------------------------------------------------------


def test_number_and_signature_texts_are_4xx(gw: Server) -> None:
    headers = auth(gw)
    files = f"{gw.url}/files/video_{'0' * 32}/video.mp4"
    for url in (f"{files}?expires=%C2%B2&signature={'0' * 64}", f"{files}?expires=9999999999&signature=%C3%A9"):
        answer = httpx.get(url)
        assert answer.status_code == 403 and answer.text.startswith("AccessDenied"), (url, answer.text)
    for query in ("page_no=%C2%B2", "page_size=%C2%B2", "page_no=%D9%A5", "page_size=99999999999999999999"):
        answer = httpx.get(f"{gw.url}/api/v1/tasks?{query}", headers=headers)
        assert_dashscope_error(answer, 400, "InvalidParameter")
    for query in ("limit=%C2%B2", "limit=%D9%A5", "after=%C2%B2"):
        assert assert_openai_error(httpx.get(f"{gw.url}/v1/videos?{query}", headers=headers), 400)["param"] in (
            "limit",
            "after",
        )
    for seconds in ("²", "\u0665", "1e400", "-1"):
        answer = httpx.post(f"{gw.url}/v1/videos", headers=headers, json={"prompt": "x", "seconds": seconds})
        assert assert_openai_error(answer, 400)["param"] == "seconds", seconds
    for size in ("\u0661\u0662\u0668x\u0667\u0662", "99999999x1"):
        answer = httpx.post(f"{gw.url}/v1/videos", headers=headers, json={"prompt": "x", "size": size})
        assert assert_openai_error(answer, 400)["param"] == "size", size
    answer = httpx.post(f"{gw.url}/v1/videos", headers=headers, json={"prompt": "x", "metadata": {"seed": "²"}})
    assert assert_openai_error(answer, 400)["param"] == "metadata.seed"
    ds = {**headers, "X-DashScope-Async": "enable"}
    for parameters in ({"duration": "²"}, {"seed": "²"}, {"size": "²*²"}):
        body = {"model": "vidgate-local", "input": {"prompt": "x"}, "parameters": parameters}
        assert_dashscope_error(httpx.post(f"{gw.url}{SUBMIT}", json=body, headers=ds), 400, "InvalidParameter")


def test_upload_signature_text_is_a_403(gw: Server) -> None:
    data = policy(gw)
    for signature in ("é", "", "\u00b2" * 28):
        answer = httpx.post(
            data["upload_host"], data={**upload_fields(data), "Signature": signature}, files={"file": ("a.png", b"x")}
        )
        assert_dashscope_error(answer, 403, "AccessDenied")
    for grant in ("é", "key_x.%C2%B2.%C2%B2.zz", "a.b.c.d.e", "x" * 3000):
        answer = httpx.post(f"{gw.url}/api/v1/uploads/oss/{grant}", files={"file": ("a.png", b"x")})
        assert_dashscope_error(answer, 403, "AccessDenied")


# -- duplicate parts, policies, allowances --------------------------------------------------------------------


def test_duplicate_file_parts_are_400(gw: Server) -> None:
    image = png_bytes(64, 64)
    answer = httpx.post(
        f"{gw.url}/v1/videos",
        headers=auth(gw),
        data={"prompt": "two frames?", "model": "vidgate-local"},
        files=[("input_reference", ("a.png", image, "image/png")), ("input_reference", ("b.png", image, "image/png"))],
    )
    error = assert_openai_error(answer, 400)
    assert (error["param"], error["code"]) == ("input_reference", "duplicate_field")
    data = policy(gw)
    answer = httpx.post(
        data["upload_host"],
        data=upload_fields(data),
        files=[("file", ("a.png", image, "image/png")), ("file", ("b.png", image, "image/png"))],
    )
    assert "file" in assert_dashscope_error(answer, 400, "InvalidParameter")["message"]
    assert not list((media_dir(gw) / "tmp").glob("upload-*"))


def test_one_object_per_policy(gw: Server) -> None:
    data = policy(gw)
    first = httpx.post(data["upload_host"], data=upload_fields(data, "a.png"), files={"file": ("a.png", png_bytes())})
    assert first.status_code == 200, first.text
    for name in ("a.png", "b.png"):
        again = httpx.post(data["upload_host"], data=upload_fields(data, name), files={"file": ("b.png", png_bytes())})
        assert "already used" in assert_dashscope_error(again, 403, "AccessDenied")["message"]


def test_upload_allowance(gw: Server) -> None:
    blob = b"\x89PNG" + b"\0" * (3 * MIB)
    first = policy(gw, "allowance")
    assert (
        httpx.post(first["upload_host"], data=upload_fields(first), files={"file": ("a.png", blob)}).status_code == 200
    )
    second = policy(gw, "allowance")  # 3 MiB of the 6 MiB left: this file is over by a few bytes
    assert second["max_file_size_mb"] == 2
    over = httpx.post(second["upload_host"], data=upload_fields(second), files={"file": ("b.png", blob)})
    assert_dashscope_error(over, 429, "Throttling.AllocationQuota")
    small = b"\x89PNG" + b"\0" * (2 * MIB)
    ok = httpx.post(second["upload_host"], data=upload_fields(second), files={"file": ("b.png", small)})
    assert ok.status_code == 200, ok.text
    # 5 MiB used: the next policy still comes, and a 2 MiB file is refused while streaming in (chunked).
    third = policy(gw, "allowance")
    head, tail, content_type = multipart(upload_fields(third, "c.png"), "file", "c.png")
    answer = stream_post(
        gw, third["upload_host"].removeprefix(gw.url), headers={"Content-Type": content_type}, head=head,
        filler=2 * MIB, tail=tail,
    )  # fmt: skip
    assert_dashscope_error(answer, 429, "Throttling.AllocationQuota")
    ok = httpx.post(
        third["upload_host"], data=upload_fields(third), files={"file": ("c.png", b"\x89PNG" + b"\0" * 100)}
    )
    assert ok.status_code == 200, ok.text
    # Now just under 1 MiB is left.
    tiny = b"\x89PNG" + b"\0" * MIB
    fourth = policy(gw, "allowance")
    over = httpx.post(fourth["upload_host"], data=upload_fields(fourth), files={"file": ("d.png", tiny)})
    assert_dashscope_error(over, 429, "Throttling.AllocationQuota")
    # Another key has its own allowance.
    other = policy(gw, "someone-else")
    assert (
        httpx.post(other["upload_host"], data=upload_fields(other), files={"file": ("a.png", blob)}).status_code == 200
    )
