"""Secrets stay secret (SPEC §4, §5), against running vidgates and the upstream emulators: no channel credential,
API key or webhook secret in the server's log, in any column of any table, in the database file, or in an error
body; the database and var/ secrets are readable by their owner only; the dev key never goes on a command line."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.types import NullType
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream
from tests.fakes.base import free_port as closed_port
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.kling import FakeKling
from tests.fakes.sora import FakeSora
from tests.fakes.vidu import FakeVidu
from tests.helpers import Server, cli, free_port, write_config
from tests.store.test_secrets_at_rest import alembic
from vidgate.auth import display_prefix, hash_key, new_key, new_webhook_secret
from vidgate.config import load_settings
from vidgate.providers.base import VideoRequest
from vidgate.store.db import async_url

ROOT = Path(__file__).resolve().parent.parent
WAN = "wan2.5-t2v-preview"


class LeakyUpstream(FakeUpstream):
    """An OpenAI-format upstream that echoes what it was sent, credentials included, in its error answers
    (as careless upstreams and proxies do): whatever vidgate passes on from it must come out masked."""

    name = "leaky"

    def __init__(self) -> None:
        self.answers: deque[str] = deque()
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/videos", self._create, methods=["POST"])]

    async def _create(self, request: Request) -> Response:
        entry = await self.record(request)
        key = entry.headers.get("authorization", "").removeprefix("Bearer ")
        if (self.answers.popleft() if self.answers else "500") == "400":
            error = {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}
            return JSONResponse({"error": {**error, "param": "prompt", "code": "invalid_prompt"}}, status_code=400)
        message = f"upstream exploded; request headers were {entry.headers!r}"
        return JSONResponse({"error": {"message": message, "type": "server_error"}}, status_code=500)


class HookReceiver(FakeUpstream):
    """Receives webhook deliveries, verifies them with the key's secret; refuses the first one (500)."""

    name = "hooks"

    def __init__(self) -> None:
        self.secret = ""
        self.verified: list[dict[str, Any]] = []
        self.refused = 0
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/hook", self._hook, methods=["POST"])]

    async def _hook(self, request: Request) -> Response:
        entry = await self.record(request)
        if not self.refused:
            self.refused += 1
            return Response(status_code=500)
        try:
            self.verified.append(Webhook(self.secret).verify(entry.body, entry.headers))
        except WebhookVerificationError:
            return Response(status_code=400)
        return Response(status_code=200)


def channel(name: str, provider: str, base_url: str, priority: int = 0, **creds: str) -> str:
    lines = [f'name = "{name}"', f'provider = "{provider}"', f'base_url = "{base_url}"', f"priority = {priority}"]
    lines += [f'{key} = "{value}"' for key, value in creds.items()]
    return "[[channels]]\n" + "\n".join(lines) + "\n"


def wait_finished(client: httpx.Client, video_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        video: dict[str, Any] = client.get(f"/videos/{video_id}").json()
        if video["status"] not in ("queued", "in_progress"):
            return video
        assert time.monotonic() < deadline, video
        time.sleep(0.1)


def stored_texts(database_url: str) -> dict[str, str]:
    """Every text, JSON and binary column of every table (found by introspection), as text per column."""

    def read(conn: sa.Connection) -> dict[str, str]:
        found: dict[str, str] = {}
        inspector = sa.inspect(conn)
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                if not isinstance(column["type"], sa.String | sa.Text | sa.JSON | sa.LargeBinary | NullType):
                    continue
                values = conn.execute(sa.text(f'SELECT "{column["name"]}" FROM "{table}"')).scalars().all()
                found[f"{table}.{column['name']}"] = "\n".join(
                    value.decode("latin-1") if isinstance(value, bytes) else str(value) for value in values
                )
        return found

    async def run() -> dict[str, str]:
        engine = create_async_engine(async_url(database_url))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_no_secret_in_logs_rows_or_error_bodies(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    database_url = request.getfixturevalue("pg_database") if backend == "postgres" else None
    tag = secrets.token_hex(6)
    creds = {
        "ds_good": f"sk-ds-good-{tag}",
        "ds_wrong": f"sk-ds-wrong-{tag}",
        "ds_down": f"sk-ds-down-{tag}",
        "kling_ak": f"ak-kling-{tag}",
        "kling_sk": f"sk-kling-{tag}",
        "vidu": f"vda_{tag}_vidukey",
        "sora": f"sk-openai-{tag}",
        "leaky": f"sk-openai-leaky-{tag}",
    }
    dashscope = FakeDashScope(api_keys={creds["ds_good"]})
    kling = FakeKling(access_key=creds["kling_ak"], secret_key=creds["kling_sk"])
    vidu = FakeVidu(api_key=creds["vidu"])
    sora = FakeSora(api_keys=frozenset({creds["sora"]}))
    leaky, hooks = LeakyUpstream(), HookReceiver()
    with ExitStack() as stack:
        for fake in (dashscope, kling, vidu, sora, leaky, hooks):
            stack.enter_context(fake.running())
        channels = [
            # Every Wan create meets a refused connection, then a key the upstream refuses, then the good one.
            channel("wan-down", "dashscope", f"http://127.0.0.1:{closed_port()}", 0, api_key=creds["ds_down"]),
            channel("wan-wrong", "dashscope", dashscope.base_url, 1, api_key=creds["ds_wrong"]),
            channel("wan-main", "dashscope", dashscope.base_url, 2, api_key=creds["ds_good"]),
            channel("kling", "kling", kling.base_url, access_key=creds["kling_ak"], secret_key=creds["kling_sk"]),
            # viduq1 only: the other Vidu models have no price of their own (they would need [prices]).
            channel("vidu", "vidu", vidu.base_url, api_key=creds["vidu"]) + 'models = ["viduq1"]\n',
            channel("sora-leaky", "openai", leaky.base_url, 0, api_key=creds["leaky"]),
            channel("sora", "openai", sora.base_url, 1, api_key=creds["sora"]),
        ]
        port = free_port()
        # The webhook receiver is on loopback: delivering to it is the operator's choice.
        # One round over the channels, so one queued fault per channel is a failed create.
        settings = "poll_interval_s = 0.2\nfetch_private_urls = true\nsubmit_rounds = 1\n"
        config = write_config(tmp_path, port=port, database_url=database_url, extra=settings + "".join(channels))
        server = Server(config=config, port=port, log=tmp_path / "server.log", log_level="info")
        server.start()
        try:
            key = server.key("plain")
            hook_key, hooks.secret = cli(
                "keys", "create", "--name", "hooks", "--webhook", f"{hooks.base_url}/hook", config=config
            ).stdout.split()
            bodies, ids = exercise(server, key, hook_key, dashscope, kling, vidu, leaky)
            finished = {}
            for video_id, owner in ids.items():
                with httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {owner}"}) as client:
                    finished[video_id] = wait_finished(client, video_id)["status"]
            # The secrets are sealed, not lost: tasks were polled and downloaded with them ...
            assert sorted(finished.values()) == ["completed"] * 5 + ["failed"] * 2, finished
            # ... and the webhook secret still signs (the receiver verified completed and failed events).
            deadline = time.monotonic() + 30
            while len(hooks.verified) < 4:
                assert time.monotonic() < deadline, (hooks.refused, hooks.verified)
                time.sleep(0.1)
        finally:
            server.stop()
    assert {event["type"] for event in hooks.verified} == {"video.completed", "video.failed"}
    signing_secret = load_settings(config).with_secret().secret
    secret_values = {**creds, "client key": key, "webhook key": hook_key, "whsec": hooks.secret}
    secret_values["signing secret"] = signing_secret
    log = server.log.read_text()
    columns = stored_texts(database_url or f"sqlite:///{tmp_path / 'vidgate.db'}")
    # On SQLite, the file itself (free pages and WAL included); PostgreSQL's files are not ours to read.
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("vidgate.db*"))
    for name, value in secret_values.items():
        assert value not in log, f"{name} in the server log"
        assert value.encode() not in raw, f"{name} in the database file"
        for column, text in columns.items():
            assert value not in text, f"{name} in {column}"
        for body in bodies:
            assert value not in body, f"{name} in an error body: {body}"
    # The leaks were there to be masked: the upstream's echo reached the log, the attempts and the client.
    assert "[redacted]" in log and "[redacted]" in columns["tasks.attempts"]
    assert any("[redacted]" in body for body in bodies)
    # And the rows were written (the checks above read real content).
    assert columns["tasks.credentials"].count("v1.") >= 7 and "v1." in columns["api_keys.webhook_secret"]


def exercise(
    server: Server,
    key: str,
    hook_key: str,
    dashscope: FakeDashScope,
    kling: FakeKling,
    vidu: FakeVidu,
    leaky: LeakyUpstream,
) -> tuple[list[str], dict[str, str]]:
    """Creates that succeed, fail over, fail upstream and fail validation; returns error bodies and ids."""
    bodies: list[str] = []
    ids: dict[str, str] = {}
    plain = {"Authorization": f"Bearer {key}"}
    hooked = {"Authorization": f"Bearer {hook_key}"}
    with httpx.Client(base_url=f"{server.url}/v1", timeout=60) as client:

        def create(headers: dict[str, str], expect: int, **body: Any) -> None:
            response = client.post("/videos", json={"prompt": "a lighthouse", **body}, headers=headers)
            assert response.status_code == expect, response.text
            if expect == 200:
                ids[response.json()["id"]] = headers["Authorization"].removeprefix("Bearer ")
            else:
                bodies.append(response.text)

        # Fails over past a refused connection and a refused key; polls meet garbage and a 500.
        dashscope.faults.queue("poll", "garbage", "500")
        create(hooked, 200, model=WAN)
        # Every channel fails: the client gets a 5xx that must not carry any of their errors' secrets.
        dashscope.faults.queue("submit", "500")
        failed = client.post("/videos", json={"prompt": "a lighthouse", "model": WAN}, headers=plain)
        assert failed.status_code in (502, 503), failed.text
        bodies.append(failed.text)
        kling.faults.queue("poll", "500", "garbage")
        create(hooked, 200, model="kling-v1")
        kling.fail_next()
        create(hooked, 200, model="kling-v1")
        vidu.faults.queue("poll", "503")
        create(plain, 200, model="viduq1")
        vidu.fail_next()
        create(plain, 200, model="viduq1")
        # The leaky upstream answers 500 echoing our Authorization header: failover to Sora.
        create(plain, 200, model="sora-2")
        # Then it refuses with the key in the message: the client's 400 passes the message on, masked.
        leaky.answers.append("400")
        create(plain, 400, model="sora-2")
        # Refused by vidgate itself, and a wrong key.
        create(plain, 400, model=WAN, seconds=7)
        create({"Authorization": f"Bearer {key}x"}, 401, model=WAN)
    native = server.url + "/api/v1/services/aigc/video-generation/video-synthesis"
    headers = {**hooked, "X-DashScope-Async": "enable"}
    body = {"model": WAN, "input": {"prompt": "a harbour"}, "parameters": {"size": "1280*720", "duration": 5}}
    response = httpx.post(native, json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    ids[response.json()["output"]["task_id"]] = hook_key
    bad = httpx.post(native, json={"model": WAN, "input": {}}, headers=headers, timeout=60)
    assert bad.status_code == 400
    bodies.append(bad.text)
    return bodies, ids


# -- files readable by their owner only ----------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_secrets_are_owner_only_after_serve_and_keys_create(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    # A database an older vidgate left readable by everyone is tightened, too.
    (tmp_path / "vidgate.db").touch(mode=0o644)
    os.chmod(tmp_path / "vidgate.db", 0o644)
    previous = os.umask(0o022)  # the usual umask: files made without care would be 0644
    try:
        key = cli("keys", "create", "--name", "modes", config=config).stdout.strip()
        server = Server(config=config, port=port, log=tmp_path / "server.log")
        server.start()
    finally:
        os.umask(previous)
    try:
        response = httpx.post(
            f"{server.url}/v1/videos",
            headers={"Authorization": f"Bearer {key}"},
            json={"prompt": "a fox", "seconds": 1, "size": "160x96"},
        )
        assert response.status_code == 200, response.text
        files = [tmp_path / name for name in ("vidgate.db", "vidgate.db-wal", "vidgate.db-shm", "secret")]
        assert all(path.exists() for path in files), list(tmp_path.iterdir())
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
    finally:
        server.stop()


# -- the dev key and `make run` --------------------------------------------------------------------------------


def check_key(folder: Path, *args: str, stdin: str | None = None) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "vidgate", "keys", "check", *args],
        cwd=folder,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode


def test_keys_check_reads_the_key_from_a_file_or_stdin(tmp_path: Path) -> None:
    key = subprocess.run(
        [sys.executable, "-m", "vidgate", "keys", "create", "--name", "dev"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (tmp_path / "key").write_text(key + "\n")
    (tmp_path / "bad").write_text(key + "x\n")
    assert check_key(tmp_path, "--key-file", "key") == 0
    assert check_key(tmp_path, "--key-file", "bad") == 1
    assert check_key(tmp_path, "--key-file", "missing") == 1
    assert check_key(tmp_path, stdin=key + "\n") == 0
    assert check_key(tmp_path, "--key-file", "-", stdin=key + "\n") == 0
    assert check_key(tmp_path, stdin="") == 1
    # The key itself is not an argument any more.
    assert check_key(tmp_path, key) == 2


@pytest.fixture
def recording_vidgate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A `vidgate` for the Makefile that records its argument lists (what `ps` would show) before running."""
    argv_log = tmp_path / "argv.log"
    wrapper = tmp_path / "vidgate-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{sys.executable}" -m vidgate "$@"\n')
    wrapper.chmod(0o755)
    yield wrapper, argv_log


def test_make_dev_key_keeps_the_key_off_command_lines_and_owner_only(
    tmp_path: Path, recording_vidgate: tuple[Path, Path]
) -> None:
    wrapper, argv_log = recording_vidgate
    work = tmp_path / "checkout"
    work.mkdir()

    def make() -> None:
        previous = os.umask(0o022)
        try:
            run_make()
        finally:
            os.umask(previous)

    def run_make() -> None:
        subprocess.run(
            ["make", "-s", "-f", str(ROOT / "Makefile"), "dev-key", f"VIDGATE={wrapper}"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=120,
        )

    make()
    dev_key = work / "var" / "dev-key"
    key = dev_key.read_text().strip()
    assert key.startswith("sk-vg-") and mode(dev_key) == 0o600
    for name in ("secret", "vidgate.db"):
        assert mode(work / "var" / name) == 0o600, name
    # Run again: the key still works, so it is kept (and checked without passing it as an argument).
    os.chmod(dev_key, 0o644)  # as an older `make run` left it
    make()
    assert dev_key.read_text().strip() == key and mode(dev_key) == 0o600
    calls = argv_log.read_text().splitlines()
    assert any(call.startswith("keys check --key-file") for call in calls), calls
    assert all(key not in call for call in calls), calls
    # The recipe `make run` uses is this one.
    recipe = (ROOT / "Makefile").read_text().split("\nrun:")[1].split("\n\n")[0]
    assert "dev-key" in recipe and "keys check" not in recipe


# -- a database written by the old schema ----------------------------------------------------------------------


def test_a_database_of_the_old_schema_is_sealed_and_its_tasks_still_run(tmp_path: Path) -> None:
    tag = secrets.token_hex(6)
    channel_key = f"sk-ds-old-{tag}"
    dashscope, hooks = FakeDashScope(api_keys={channel_key}), HookReceiver()
    database = tmp_path / "vidgate.db"
    with dashscope.running(), hooks.running():
        alembic(f"sqlite:///{database}", "upgrade", "0003", None)
        # What vidgate at revision 0003 left: a key whose webhook secret is in plaintext, and a task in progress
        # upstream whose credentials are in plaintext.
        native = "/api/v1/services/aigc/video-generation/video-synthesis"
        upstream = httpx.post(
            dashscope.base_url + native,
            headers={"Authorization": f"Bearer {channel_key}", "X-DashScope-Async": "enable"},
            json={"model": WAN, "input": {"prompt": "old"}, "parameters": {"size": "1280*720", "duration": 5}},
        ).json()["output"]["task_id"]
        key, hooks.secret = new_key(), new_webhook_secret()
        creds = {"channel": "wan-main", "base_url": dashscope.base_url, "api_key": channel_key}
        task_id = write_old_rows(database, key, hooks.secret, f"{hooks.base_url}/hook", creds, upstream)
        plaintext = b"".join(path.read_bytes() for path in tmp_path.glob("vidgate.db*"))
        assert channel_key.encode() in plaintext and hooks.secret.encode() in plaintext

        port = free_port()
        wan = channel("wan-main", "dashscope", dashscope.base_url, api_key=channel_key)
        config = write_config(tmp_path, port=port, extra="poll_interval_s = 0.2\nfetch_private_urls = true\n" + wan)
        server = Server(config=config, port=port, log=tmp_path / "server.log")
        server.start()
        try:
            with httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}) as client:
                assert wait_finished(client, task_id)["status"] == "completed"  # polled with the opened credentials
                assert client.get(f"/videos/{task_id}/content").status_code == 200
            deadline = time.monotonic() + 30
            while not hooks.verified:  # signed with the opened webhook secret
                assert time.monotonic() < deadline, hooks.refused
                time.sleep(0.1)
        finally:
            server.stop()
    columns = stored_texts(f"sqlite:///{database}")
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("vidgate.db*"))
    for value in (channel_key, hooks.secret, key):
        assert value.encode() not in raw
        assert not [column for column, text in columns.items() if value in text]
    assert columns["tasks.credentials"].startswith("v1.") and columns["api_keys.webhook_secret"].startswith("v1.")


def write_old_rows(
    database: Path, key: str, whsec: str, hook_url: str, credentials: dict[str, str], upstream_id: str
) -> str:
    """The rows as vidgate at revision 0003 wrote them (plaintext secrets), in WAL mode as it ran."""
    key_id, task_id, now = "key_" + secrets.token_hex(8), "video_" + secrets.token_hex(16), time.time()
    request = VideoRequest(model=WAN, prompt="old", seconds=5, width=1280, height=720, tier="720P", mode="t2v")
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_at, webhook_url, webhook_secret)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, "old", hash_key(key), display_prefix(key), now, hook_url, whsec),
        )
        connection.execute(
            "INSERT INTO tasks (id, key_id, model, provider, channel, upstream_id, credentials, status, progress,"
            " prompt, seconds, size, request, created_at, updated_at, deadline_at, next_poll_at, price_micros)"
            " VALUES (?, ?, ?, 'dashscope', 'wan-main', ?, ?, 'in_progress', 10, 'old', 5, '1280x720',"
            " ?, ?, ?, ?, ?, 0)",
            (
                task_id,
                key_id,
                WAN,
                upstream_id,
                json.dumps(credentials),
                json.dumps(request.to_json()),
                now,
                now,
                now + 3600,
                now,
            ),
        )
        connection.commit()
    finally:
        connection.close()
    return task_id
