"""Benchmark, run by hand: memory of the whole vidgate process tree (SPEC §7 "memory").

    .venv/bin/python bench/memory.py [--tasks 10000] [--watch 30]

Starts one vidgate (SQLite) with a DashScope emulator as its upstream and prints the resident memory of its
process tree (server + render workers): idle after startup (target < 150 MiB), after one local render and
the render workers' idle exit, and while it holds `--tasks` unfinished upstream tasks that it keeps polling
(target < 300 MiB at 10,000). The unfinished tasks are made on the emulator directly and written to the
database as a submit would have left them, so the figure is the poller's, not the create path's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import FAKE, wait_up  # noqa: E402
from tests.helpers import Server, free_port, session_processes, write_config  # noqa: E402
from vidgate.providers.base import Credentials, VideoRequest  # noqa: E402
from vidgate.store import tasks as task_store  # noqa: E402
from vidgate.store.db import create_engine  # noqa: E402

SECRET = "bench-memory-secret"
SUBMIT = "/api/v1/services/aigc/video-generation/video-synthesis"
REQUEST = VideoRequest(
    model="wan2.5-t2v-preview", prompt="held", seconds=5, width=1280, height=720, tier="720P", mode="t2v"
).to_json()


def tree(sid: int) -> tuple[float, int]:
    """(MiB resident, processes) of a session."""
    total, count = 0, 0
    for pid in session_processes(sid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    count += 1
        except OSError:
            continue
    return total / 1024, count


def cpu_seconds(sid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in session_processes(sid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


async def make_unfinished(database_url: str, fake_url: str, key_id: str, count: int) -> None:
    """`count` tasks upstream (on the emulator) and their rows, as a finished submit leaves them."""
    body = {"model": "wan2.5-t2v-preview", "input": {"prompt": "held"}, "parameters": {"size": "1280*720"}}
    headers = {"Authorization": "Bearer sk-ds-test", "X-DashScope-Async": "enable"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=fake_url, headers=headers, limits=limits, timeout=30) as client:

        async def one(_: int) -> str:
            answer = await client.post(SUBMIT, json=body)
            upstream_id: str = answer.json()["output"]["task_id"]
            return upstream_id

        upstream_ids: list[str] = []
        for start in range(0, count, 500):
            upstream_ids += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 500))))
    engine = create_engine(database_url, secret=SECRET)
    credentials = Credentials(channel="wan", base_url=fake_url, api_key="sk-ds-test").to_json()
    now = time.time()
    try:
        for upstream_id in upstream_ids:
            values = {
                "id": "video_" + secrets.token_hex(16),
                "key_id": key_id,
                "model": "wan2.5-t2v-preview",
                "provider": "dashscope",
                "channel": "wan",
                "upstream_id": upstream_id,
                "credentials": credentials,
                "status": "in_progress",
                "progress": 0,
                "prompt": "held",
                "seconds": 5,
                "size": "1280x720",
                "request": REQUEST,
                "created_at": now,
                "updated_at": now,
                "deadline_at": now + 86400,
                "next_poll_at": now,
            }
            await task_store.insert_task(engine, values)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--watch", type=float, default=30.0, help="seconds of polling before the reading")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vidgate-bench-memory-"))
    fake_port = free_port()
    (work / "fake.py").write_text(FAKE.format(root=str(ROOT), port=fake_port))
    fake = subprocess.Popen([sys.executable, str(work / "fake.py")])
    fake_url = f"http://127.0.0.1:{fake_port}"
    wait_up(f"{fake_url}/")
    port = free_port()
    database_url = f"sqlite:///{work / 'vidgate.db'}"
    channel = f'[[channels]]\nname = "wan"\nprovider = "dashscope"\nbase_url = "{fake_url}"\napi_key = "sk-ds-test"\n'
    extra = f'secret = "{SECRET}"\nlocal_idle_s = 2\n{channel}'
    server = Server(
        config=write_config(work, port=port, database_url=database_url, extra=extra), port=port, log=work / "log"
    )
    server.start()
    try:
        assert server.proc is not None
        sid = server.proc.pid
        time.sleep(1.0)
        idle, idle_count = tree(sid)
        key = server.key("memory")
        headers = {"Authorization": f"Bearer {key}"}
        video = httpx.post(
            f"{server.url}/v1/videos", headers=headers, json={"prompt": "one", "seconds": 2, "size": "320x192"}
        ).json()
        while httpx.get(f"{server.url}/v1/videos/{video['id']}", headers=headers).json()["status"] != "completed":
            time.sleep(0.1)
        rendering, rendering_count = tree(sid)
        time.sleep(4.0)  # past local_idle_s: the render workers exit
        after, after_count = tree(sid)
        listing = subprocess.run(
            [sys.executable, "-m", "vidgate", "keys", "list", "--config", str(server.config)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        key_id = next(line.split()[1] for line in listing.splitlines() if " memory " in f" {line} ")
        started = time.monotonic()
        asyncio.run(make_unfinished(database_url, fake_url, key_id, args.tasks))
        made = time.monotonic() - started
        cpu_before = cpu_seconds(sid)
        time.sleep(args.watch)
        held, held_count = tree(sid)
        cpu = (cpu_seconds(sid) - cpu_before) / args.watch
        print(f"machine: {os.cpu_count()} cores; load {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print(f"idle after startup:            {idle:6.1f} MiB in {idle_count} process(es)   (target < 150 MiB)")
        print(f"just after one local render:   {rendering:6.1f} MiB in {rendering_count} process(es)")
        print(f"render workers idle-exited:    {after:6.1f} MiB in {after_count} process(es)")
        print(
            f"{args.tasks} unfinished tasks:   {held:6.1f} MiB in {held_count} process(es), "
            f"{cpu:.0%} of a core polling over {args.watch:.0f} s (target < 300 MiB; written in {made:.0f} s)"
        )
    finally:
        server.stop()
        fake.terminate()
        fake.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
