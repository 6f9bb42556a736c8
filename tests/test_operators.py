"""Operator endpoints: /readyz follows the database (and says which check fails, not why), /metrics may need a
token, /docs and the OpenAPI document list every public route."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, free_port, write_config


def ready(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=10)


def wait_for(server: Server, status: int, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = ready(server)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_healthz_and_readyz(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    body = ready(server).json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "poller": "ok", "media_dir": "ok", "storage": "ok"}


def test_readyz_names_the_database_when_the_sqlite_file_goes(tmp_path: Path) -> None:
    port = free_port()
    server = Server(config=write_config(tmp_path, port=port), port=port, log=tmp_path / "server.log")
    server.start()
    db = tmp_path / "vidgate.db"
    try:
        assert ready(server).status_code == 200
        db.rename(tmp_path / "moved.db")
        response = wait_for(server, 503)
        assert response.status_code == 503
        assert response.json()["failing"] == ["database"]
        assert response.json()["checks"]["database"] == "The database does not answer."
        # Which check fails, never why: no exception text, no path (those go to the log).
        for leak in (str(tmp_path), "vidgate.db", "missing", "Error", "sqlite"):
            assert leak not in response.text, leak
        (tmp_path / "moved.db").rename(db)
        assert wait_for(server, 200).status_code == 200
    finally:
        server.stop()


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._up(), self.loop).result(5)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._down(), self.loop).result(5)

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    async def _up(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


@pytest.fixture
def pg_proxy(pg_database: str) -> Iterator[tuple[Proxy, str]]:
    proxy = Proxy(5432)
    proxy.up()
    yield proxy, pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    proxy.close()


def test_readyz_names_the_database_when_postgresql_is_unreachable(tmp_path: Path, pg_proxy: tuple[Proxy, str]) -> None:
    proxy, url = pg_proxy
    port = free_port()
    server = Server(config=write_config(tmp_path, port=port, database_url=url), port=port, log=tmp_path / "server.log")
    server.start()
    try:
        assert ready(server).status_code == 200
        proxy.down()
        response = wait_for(server, 503)
        assert response.status_code == 503 and response.json()["failing"] == ["database"]
        assert response.json()["checks"]["database"] == "The database does not answer."
        for leak in ("127.0.0.1", str(proxy.port), "postgres", "Error", "refused", "vidgate_test"):
            assert leak not in response.text, leak
        proxy.up()
        assert wait_for(server, 200).status_code == 200
    finally:
        proxy.up()  # let the server shut down cleanly
        server.stop()


def test_readyz_names_the_media_folder_without_its_path(tmp_path: Path) -> None:
    port = free_port()
    server = Server(config=write_config(tmp_path, port=port), port=port, log=tmp_path / "server.log")
    server.start()
    media = tmp_path / "media"
    try:
        media.rename(tmp_path / "elsewhere")
        response = wait_for(server, 503)
        assert response.status_code == 503 and response.json()["failing"] == ["media_dir"]
        assert response.json()["checks"]["media_dir"] == "The media folder is not writable."
        assert str(tmp_path) not in response.text
    finally:
        (tmp_path / "elsewhere").rename(media)
        server.stop()
    assert str(media) in server.log.read_text(), "the operator finds the cause in the log"


def test_metrics_is_open_without_a_token(server: Server) -> None:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and "vidgate_" in response.text


def test_metrics_token_protects_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, extra='metrics_token = "m3tr1cs-t0ken"\n')
    server = Server(config=config, port=port, log=tmp_path / "server.log")
    server.start()
    try:
        url = f"{server.url}/metrics"
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer m3tr1cs-t0ke"},
            {"Authorization": "Basic m3tr1cs-t0ken"},
            {"Authorization": f"Bearer {server.key()}"},  # an API key is not the metrics token
        ):
            response = httpx.get(url, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "invalid_metrics_token"
            assert "vidgate_" not in response.text
        response = httpx.get(url, headers={"Authorization": "Bearer m3tr1cs-t0ken"})
        assert response.status_code == 200 and "vidgate_http_requests" in response.text
    finally:
        server.stop()


def test_openapi_lists_every_public_route(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/videos", "post"), ("/v1/videos", "get"),
        ("/v1/videos/{video_id}", "get"), ("/v1/videos/{video_id}", "delete"),
        ("/v1/videos/{video_id}/content", "get"), ("/v1/videos/{video_id}/remix", "post"), ("/v1/models", "get"),
        ("/v1/usage", "get"), ("/api/v1/services/aigc/video-generation/video-synthesis", "post"),
        ("/api/v1/services/aigc/image2video/video-synthesis", "post"), ("/api/v1/tasks/{task_id}", "get"),
        ("/api/v1/tasks/{task_id}/cancel", "post"), ("/api/v1/tasks", "get"), ("/api/v1/uploads", "get"),
        ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"),
    ]:  # fmt: skip
        assert method in paths.get(path, {}), (path, method)
    create = paths["/v1/videos"]["post"]
    assert (
        "multipart/form-data" in create["requestBody"]["content"]
        and "application/json" in create["requestBody"]["content"]
    )
    assert "Video" in spec["components"]["schemas"]
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
