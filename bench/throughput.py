"""Benchmark, run by hand: create throughput against an emulated upstream, and content serving.

    .venv/bin/python bench/throughput.py [--seconds 8] [--connections 50] [--repeat 3] [--backends sqlite,postgres]
                                    [--workers N]

1. `POST /v1/videos` (small multipart, a Wan model) through vidgate to the DashScope emulator, on SQLite and
   on PostgreSQL (a fresh database at VIDGATE_TEST_PG), against the emulator's own submit endpoint called
   directly with the same load (wrk + a Lua body script); `--repeat` rounds, round-robin, best of each.
2. `GET /v1/videos/{id}/content` of a 1 MiB file against a bare Starlette FileResponse of the same file.
Each server is one process on 127.0.0.1; wrk (`apt-get install wrk`) is the client. The load average is
printed with the figures (the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.status_read import Measured, backends, best, line, load, pg_database, wrk  # noqa: E402
from tests.helpers import free_port, running_gateway  # noqa: E402

FAKE = textwrap.dedent(
    """
    import sys, uvicorn
    sys.path.insert(0, {root!r})
    from tests.fakes.dashscope import FakeDashScope
    fake = FakeDashScope(polls_per_step=0)
    uvicorn.run(fake.app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
    """
)
BARE_FILE = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def content(request):
        return FileResponse({path!r}, media_type="video/mp4")

    app = Starlette(routes=[Route("/file", content)])
    """
)


def lua_string(text: str) -> str:
    """A double-quoted Lua string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n") + '"'


def lua_script(folder: Path, name: str, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script that POSTs `body` with `headers`."""
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body.decode())}"]
    lines += [f"wrk.headers[{lua_string(key)}] = {lua_string(value)}" for key, value in headers.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_up(url: str) -> None:
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)


def form_body(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na harbour at dawn\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwan2.5-t2v-preview\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="seconds"\r\n\r\n5\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="size"\r\n\r\n1280x720\r\n--{boundary}--\r\n'
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", type=int, default=1, help="vidgate serve --workers N")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vidgate-bench-"))
    fake_port, bare_port = free_port(), free_port()
    (work / "fake.py").write_text(FAKE.format(root=str(ROOT), port=fake_port))
    media = work / "one.mp4"
    media.write_bytes(os.urandom(1024 * 1024))
    (work / "bare_file.py").write_text(BARE_FILE.format(path=str(media)))
    fake = subprocess.Popen([sys.executable, str(work / "fake.py")])
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_file:app",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=work,
    )
    wait_up(f"http://127.0.0.1:{fake_port}/")
    wait_up(f"http://127.0.0.1:{bare_port}/file")
    channel = (
        f'[[channels]]\nname = "wan"\nprovider = "dashscope"\n'
        f'base_url = "http://127.0.0.1:{fake_port}"\napi_key = "sk-ds-test"\n'
    )
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        for proc in (fake, bare):
            stack.callback(proc.wait)
            stack.callback(proc.terminate)
        native = (
            b'{"model": "wan2.5-t2v-preview", "input": {"prompt": "a harbour at dawn"}, '
            b'"parameters": {"size": "1280*720", "duration": 5}}'
        )
        upstream_headers = {
            "Content-Type": "application/json",
            "X-DashScope-Async": "enable",
            "Authorization": "Bearer sk-ds-test",
        }
        upstream_label = "emulator submit, called directly"
        targets = {
            upstream_label: (
                f"http://127.0.0.1:{fake_port}/api/v1/services/aigc/video-generation/video-synthesis",
                lua_script(work, "theirs.lua", native, upstream_headers),
                fake.pid,
            )
        }
        gateways = {}
        for backend in backends(args.backends):
            database_url = stack.enter_context(pg_database()) if backend == "postgres" else None
            # Created tasks are polled once soon after (the emulator keeps them pending), then in an hour.
            server = gateways[backend] = stack.enter_context(
                running_gateway(
                    work / backend,
                    channel,
                    settings="poll_interval_s = 3600\n",
                    database_url=database_url,
                    workers=args.workers,
                )
            )
            key = server.key("bench")
            boundary = "benchboundary0123456789"
            script = lua_script(
                work,
                f"ours-{backend}.lua",
                form_body(boundary),
                {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {key}"},
            )
            assert server.proc is not None
            targets[f"POST /v1/videos via vidgate, {backend}"] = (f"{server.url}/v1/videos", script, server.proc.pid)
        runs: dict[str, list[Measured]] = {label: [] for label in targets}
        loads = []
        for _ in range(args.repeat):
            loads.append(load())
            for label, (url, script, pid) in targets.items():
                runs[label].append(wrk(url, seconds=args.seconds, connections=args.connections, script=script, pid=pid))
                time.sleep(1.0)  # the first polls of the tasks just created

        contents: dict[str, Measured] = {}
        if "sqlite" in gateways:
            server = gateways["sqlite"]
            key = server.key("bench")
            video = httpx.post(
                f"{server.url}/v1/videos",
                headers={"Authorization": f"Bearer {key}"},
                data={"prompt": "c", "seconds": "1", "size": "64x64"},
            ).json()
            while (
                httpx.get(f"{server.url}/v1/videos/{video['id']}", headers={"Authorization": f"Bearer {key}"}).json()[
                    "status"
                ]
                != "completed"
            ):
                time.sleep(0.1)
            stored = work / "sqlite" / "media" / "tasks" / video["id"] / "video.mp4"
            shutil.copyfile(media, stored)
            content_url = f"{server.url}/v1/videos/{video['id']}/content"
            assert server.proc is not None
            contents["content 1 MiB via vidgate"] = wrk(
                content_url, seconds=args.seconds, connections=args.connections, key=key, pid=server.proc.pid
            )
            contents["bare Starlette FileResponse"] = wrk(
                f"http://127.0.0.1:{bare_port}/file", seconds=args.seconds, connections=args.connections, pid=bare.pid
            )
        print(f"machine: {os.cpu_count()} cores; wrk -c {args.connections} -d {args.seconds}s; best of {args.repeat}")
        print(f"before each round: {'; '.join(loads)}; after: {load()}")
        reference = best(runs[upstream_label])
        for label, measured in runs.items():
            print(line(label, best(measured), None if label == upstream_label else reference))
        if contents:
            print(
                line(
                    "content 1 MiB via vidgate",
                    contents["content 1 MiB via vidgate"],
                    contents["bare Starlette FileResponse"],
                )
            )
            print(line("bare Starlette FileResponse", contents["bare Starlette FileResponse"]))


if __name__ == "__main__":
    main()
