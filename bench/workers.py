"""Benchmark, run by hand: `vidgate serve --workers 2` against one process, in one run (SPEC §7 "scale"),
and the idle memory of the whole process tree.

    .venv/bin/python bench/workers.py [--seconds 5] [--connections 50] [--rounds 3] [--database-url URL]

For N = 1 and N = 2 it starts vidgate (SQLite by default) with a DashScope emulator as its upstream, then
measures with wrk (`apt-get install wrk`): status reads (`GET /v1/videos/{id}`) and creates (`POST
/v1/videos`, small multipart, a Wan model). It prints requests/s, p50/p99, and the N=2 / N=1 ratios (target
≥ 1.6x), and the resident memory of the idle tree (server processes, no render worker) after startup.
wrk, the emulator and vidgate share this machine's cores: the figures say so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.status_read import wrk  # noqa: E402
from bench.throughput import FAKE, lua_script, wait_up  # noqa: E402
from tests.helpers import Server, free_port, session_processes, write_config  # noqa: E402

BOUNDARY = "benchboundary0123456789"
FORM = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na harbour at dawn\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwan2.5-t2v-preview\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="seconds"\r\n\r\n5\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="size"\r\n\r\n1280x720\r\n--{BOUNDARY}--\r\n'
).encode()


def tree_rss_mib(sid: int) -> float:
    total = 0
    for pid in session_processes(sid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def started(work: Path, workers: int, fake_port: int, args: argparse.Namespace) -> Server:
    folder = work / f"w{workers}"
    port = free_port()
    channel = (
        f'[[channels]]\nname = "wan"\nprovider = "dashscope"\n'
        f'base_url = "http://127.0.0.1:{fake_port}"\napi_key = "sk-ds-test"\n'
    )
    database_url = args.database_url or f"sqlite:///{folder / 'vidgate.db'}"
    config = write_config(folder, port=port, database_url=database_url, extra="poll_interval_s = 3600\n" + channel)
    server = Server(config=config, port=port, log=folder / "server.log", workers=workers)
    server.start()
    return server


def targets(server: Server, folder: Path) -> tuple[str, str, Path]:
    """The status URL of one task, the key, and a wrk script that creates tasks."""
    key = server.key(f"bench{server.port}")
    video = httpx.post(
        f"{server.url}/v1/videos",
        headers={"Authorization": f"Bearer {key}"},
        data={"prompt": "x", "model": "wan2.5-t2v-preview"},
    ).json()
    create_lua = lua_script(
        folder,
        f"create{server.port}.lua",
        FORM,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Authorization": f"Bearer {key}"},
    )
    return f"{server.url}/v1/videos/{video['id']}", key, create_lua


Result = tuple[float, float, float, float]  # req/s, p50 ms, p99 ms, CPU ms a request (NaN here)


def median(results: list[Result]) -> Result:
    return sorted(results)[len(results) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--database-url", default="", help="postgresql://… (default: SQLite per run)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (after one warm-up round)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="vidgate-bench-workers-"))
    fake_port = free_port()
    (work / "fake.py").write_text(FAKE.format(root=str(ROOT), port=fake_port))
    fake = subprocess.Popen([sys.executable, str(work / "fake.py")])
    wait_up(f"http://127.0.0.1:{fake_port}/")
    servers: dict[int, Server] = {}
    try:
        for workers in (1, 2):
            servers[workers] = started(work, workers, fake_port, args)
        time.sleep(1.0)
        idle = {n: tree_rss_mib(server.proc.pid) for n, server in servers.items() if server.proc is not None}
        urls = {n: targets(server, work) for n, server in servers.items()}
        status: dict[int, list[Result]] = {1: [], 2: []}
        create: dict[int, list[Result]] = {1: [], 2: []}
        # Alternating rounds, the median of each: this machine is shared, and its load drifts.
        for round_ in range(args.rounds + 1):
            for n, (status_url, key, create_lua) in urls.items():
                read = wrk(status_url, seconds=args.seconds, connections=args.connections, key=key)
                made = wrk(
                    f"{servers[n].url}/v1/videos", seconds=args.seconds, connections=args.connections, script=create_lua
                )
                if round_:  # the first round warms every process
                    status[n].append(read)
                    create[n].append(made)
    finally:
        for server in servers.values():
            server.stop()
        fake.terminate()
        fake.wait()
        shutil.rmtree(work, ignore_errors=True)
    one = (median(status[1]), median(create[1]), idle[1])
    two = (median(status[2]), median(create[2]), idle[2])
    store = "PostgreSQL" if args.database_url else "SQLite"
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores (shared by wrk, the emulator and vidgate); load {load}; {store}")
    print(f"wrk -c {args.connections} -d {args.seconds}s; median of {args.rounds} alternating rounds")
    for label, index in (("GET /v1/videos/{id}", 0), ("POST /v1/videos", 1)):
        for workers, result in ((1, one), (2, two)):
            rps, p50, p99, _cpu = result[index]  # type: ignore[misc]
            print(f"{label:20s} workers={workers}: {rps:9.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
        ratio = two[index][0] / one[index][0]  # type: ignore[index]
        print(f"{label:20s} workers 2 / 1: {ratio:5.2f}x (target >= 1.6x)")
    print(f"idle tree after startup: workers=1 {one[2]:.0f} MiB, workers=2 {two[2]:.0f} MiB (target < 150 MiB)")


if __name__ == "__main__":
    main()
