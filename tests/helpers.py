"""Shared test helpers: a vidgate server in a subprocess, PostgreSQL discovery, MP4 checks."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
from PIL import Image

PG_ADMIN_URL = os.environ.get("VIDGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The secret of every vidgate on the shared PostgreSQL database of a test run (they seal rows for each other).
SHARED_DB_SECRET = "vidgate-tests-shared-database-secret"


def write_config(folder: Path, *, port: int, database_url: str | None = None, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = database_url or f"sqlite:///{folder / 'vidgate.db'}"
    if database_url and not database_url.startswith("sqlite"):
        extra = f'secret = "{SHARED_DB_SECRET}"\n{extra}'
    path = folder / "vidgate.toml"
    path.write_text(
        f'public_url = "http://127.0.0.1:{port}"\ndatabase_url = "{db}"\nmedia_dir = "{folder / "media"}"\n{extra}\n'
    )
    return path


def cli(
    *args: str,
    config: Path | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vidgate", *args]
    if config is not None:
        cmd += ["--config", str(config)]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, cwd=cwd
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"vidgate {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class Server:
    """`vidgate serve` in a subprocess on a free port."""

    config: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    keys: dict[str, str] = field(default_factory=dict)
    log_level: str = "warning"
    # Extra environment for the server process (e.g. PYTHONPATH for a plugin package).
    env: dict[str, str] = field(default_factory=dict)
    _log_handle: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        handle = self._log_handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vidgate",
                "serve",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
                "--log-level",
                self.log_level,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its whole process group (render workers included)."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._closed()

    def kill_server_only(self) -> None:
        """SIGKILL the server process alone, not its group (what `kill -9 PID` or an OOM killer does)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._closed()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the server to exit by itself (after a signal the test sent); its exit status."""
        assert self.proc is not None
        status = self.proc.wait(timeout=timeout)
        self._closed()
        return status

    def _closed(self) -> None:
        self.proc = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._closed()

    def key(self, name: str = "default", *extra: str) -> str:
        if name not in self.keys:
            self.keys[name] = cli("keys", "create", "--name", name, *extra, config=self.config).stdout.strip()
        return self.keys[name]


def session_processes(sid: int) -> list[int]:
    """Live processes of a session (Linux /proc): a server started by Server and everything it started,
    including processes whose parent died (re-parented to init, they keep the session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after the command name, which is in parentheses and may itself contain ") ".
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@contextmanager
def running_gateway(
    folder: Path,
    *channels: str,
    settings: str = "poll_interval_s = 0.2\n",
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`vidgate serve` on a free port with these top-level settings and channels, stopped afterwards."""
    port = free_port()
    config = write_config(folder, port=port, database_url=database_url, extra=settings + "".join(channels))
    server = Server(config=config, port=port, log=folder / "server.log", env=dict(env or {}))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_video(client: Any, video_id: str, timeout: float = 30.0) -> Any:
    """Poll an OpenAI client's `videos.retrieve` until the video is finished (or fail the test)."""
    deadline = time.monotonic() + timeout
    while True:
        video = client.videos.retrieve(video_id)
        if video.status not in ("queued", "in_progress"):
            return video
        assert time.monotonic() < deadline, video
        time.sleep(0.1)


def png_bytes(width: int = 320, height: int = 180, color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    image = Image.new("RGB", (width, height), color)
    for x in range(0, width, 16):
        for y in range(0, height, 16):
            if (x // 16 + y // 16) % 2:
                image.putpixel((x, y), (255, 255, 255))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Mp4Facts:
    codec: str
    pix_fmt: str
    width: int
    height: int
    duration: float
    frames: int
    audio_codec: str | None


def mp4_facts(data: bytes | Path) -> Mp4Facts:
    """Open an MP4 with PyAV and report what a player would see."""
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(source) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(video=0))
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        return Mp4Facts(
            codec=video.codec_context.name,
            pix_fmt=video.codec_context.pix_fmt or "",
            width=video.codec_context.width,
            height=video.codec_context.height,
            duration=duration,
            frames=frames,
            audio_codec=audio.codec_context.name if audio else None,
        )


def assert_mp4(data: bytes | Path, *, width: int, height: int, seconds: int, audio: bool = False) -> Mp4Facts:
    facts = mp4_facts(data)
    assert facts.codec == "h264", facts
    assert facts.pix_fmt == "yuv420p", facts
    assert (facts.width, facts.height) == (width, height), facts
    assert facts.frames == seconds * 24, facts
    assert abs(facts.duration - seconds) <= 1 / 24 + 1e-6 or abs(facts.frames / 24 - seconds) < 1e-9, facts
    assert (facts.audio_codec == "aac") if audio else facts.audio_codec is None, facts
    return facts


def pg_reachable() -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def flat_png(width: int, height: int) -> bytes:
    """An RGB PNG of one grey, written row by row: Pillow would need width*height*3 bytes of memory to make it,
    and it compresses ~1000:1 (13000x13000 is ~480 KB), as a decompression bomb does."""
    row = b"\0" + b"\x80" * (width * 3)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
