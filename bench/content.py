"""Benchmark, run by hand: serving stored content, from a folder and from S3, side by side with references.

    .venv/bin/python bench/content.py [--seconds 5] [--connections 20] [--rounds 3] [--big-mib 256]

In one run, one process per server on 127.0.0.1, wrk (`apt-get install wrk`) as the client:
1. `file:` storage: `GET /v1/videos/{id}/content` of a 1 MiB file against a bare Starlette FileResponse of it.
2. `s3://` storage on moto's S3 server (its own process): the same request streamed by vidgate from the bucket
   against reading the object from moto directly (a presigned GET of the same object).
3. `content_redirect = true`: the content request (a 302 to a presigned URL) against a status read
   `GET /v1/videos/{id}` of the same vidgate.
4. Flat memory: a --big-mib object streamed through vidgate from S3; vidgate's RSS before and at its peak.
5. What an S3 client costs in memory: RSS after import + one client, obstore vs boto3 (and aioboto3 when
   $AIOBOTO3_PYTHON names an interpreter that has it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.status_read import wrk  # noqa: E402
from bench.throughput import BARE_FILE, wait_up  # noqa: E402
from tests.helpers import Server, free_port, running_gateway  # noqa: E402
from tests.s3 import MotoS3  # noqa: E402

MIB = 1024 * 1024
IMPORT_PROBES = {
    "obstore": (
        "import obstore; from obstore.store import S3Store; "
        "S3Store('b', endpoint='http://127.0.0.1:9', access_key_id='a', secret_access_key='s', region='us-east-1')"
    ),
    "boto3": (
        "import boto3; boto3.client('s3', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='s')"
    ),
    "aioboto3": (
        "import asyncio, aioboto3\n"
        "async def main():\n"
        "    async with aioboto3.Session().client('s3', region_name='us-east-1', aws_access_key_id='a',"
        " aws_secret_access_key='s') as c: pass\n"
        "asyncio.run(main())"
    ),
}
RSS_PROBE = "\nprint(int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024)"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return int(handle.read().split("VmRSS:")[1].split()[0]) / 1024


def import_rss(python: str, code: str) -> int | None:
    result = subprocess.run([python, "-c", code + RSS_PROBE], capture_output=True, text=True)
    return int(result.stdout.strip()) if result.returncode == 0 else None


def completed_video(server: Server, key: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    video = httpx.post(
        f"{server.url}/v1/videos", headers=headers, data={"prompt": "c", "seconds": "1", "size": "64x64"}
    )
    video_id: str = video.json()["id"]
    while httpx.get(f"{server.url}/v1/videos/{video_id}", headers=headers).json()["status"] != "completed":
        time.sleep(0.1)
    return video_id


def s3_settings(s3: MotoS3, bucket: str, prefix: str, *, redirect: bool) -> str:
    return "poll_interval_s = 0.2\nlocal_workers = 1\n" + s3.settings(bucket, prefix, redirect=redirect)


Figures = tuple[float, float, float]


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) the process has used so far; 0 without a pid."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pair(
    ours: str,
    theirs: str,
    *,
    seconds: int,
    connections: int,
    rounds: int,
    key: str | None,
    their_key: str | None = None,
    pids: tuple[int | None, int | None] = (None, None),
) -> tuple[Figures, Figures, tuple[float, float]]:
    """Load `ours` and `theirs` in turn, `rounds` times each (other work on a shared machine comes and goes):
    each one's best run (requests/s, p50, p99), and the CPU µs per request of the processes in `pids` (less
    swayed by other load than requests/s are)."""
    wrk(ours, seconds=1, connections=connections, key=key)
    wrk(theirs, seconds=1, connections=connections, key=their_key)
    a: list[Figures] = []
    b: list[Figures] = []
    cpu = [0.0, 0.0]
    count = [0.0, 0.0]
    for _ in range(rounds):
        for side, (url, auth, found) in enumerate(((ours, key, a), (theirs, their_key, b))):
            before = cpu_s(pids[side])
            figures = wrk(url, seconds=seconds, connections=connections, key=auth)
            cpu[side] += cpu_s(pids[side]) - before
            count[side] += figures[0] * seconds
            found.append(figures)
    per_request = (cpu[0] * 1e6 / max(count[0], 1), cpu[1] * 1e6 / max(count[1], 1))
    return max(a), max(b), per_request


def line(label: str, figures: tuple[float, float, float]) -> str:
    return f"{label:<44}{figures[0]:8.0f} req/s  p50 {figures[1]:7.2f} ms  p99 {figures[2]:7.2f} ms"


def big_stream(server: Server, key: str, video_id: str, size: int) -> tuple[float, float, float]:
    """(RSS before, peak RSS while streaming, seconds) of the vidgate process serving `size` bytes."""
    assert server.proc is not None
    pid = server.proc.pid
    before, peak, done = rss_mib(pid), 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started, got = time.perf_counter(), 0
    try:
        url = f"{server.url}/v1/videos/{video_id}/content"
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as response:
            assert response.status_code == 200, response.status_code
            for chunk in response.iter_raw(MIB):
                got += len(chunk)
    finally:
        done.set()
        sampler.join()
    assert got == size, (got, size)
    return before, peak, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=256)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    seconds, conns = args.seconds, args.connections
    load = {"seconds": seconds, "connections": conns, "rounds": args.rounds}
    work = Path(tempfile.mkdtemp(prefix="vidgate-bench-content-"))
    media = work / "one.mp4"
    media.write_bytes(os.urandom(MIB))
    bare_port, moto_port = free_port(), free_port()
    (work / "bare_file.py").write_text(BARE_FILE.format(path=str(media)))
    uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    bare = subprocess.Popen([*uvicorn, "bare_file:app", "--port", str(bare_port)], cwd=work)
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_up(f"http://127.0.0.1:{bare_port}/file")
    wait_up(f"http://127.0.0.1:{moto_port}/")
    s3 = MotoS3(endpoint=f"http://127.0.0.1:{moto_port}")
    bucket = s3.create_bucket()
    out = [
        f"machine: {os.cpu_count()} cores; wrk -c {conns} -d {seconds}s, the two of each pair in turn {args.rounds} "
        "times, the best run of each; each server one process"
    ]
    try:
        # 1. file: storage against a bare FileResponse.
        with running_gateway(work / "file", settings="poll_interval_s = 0.2\nlocal_workers = 1\n") as server:
            key = server.key("bench")
            video_id = completed_video(server, key)
            shutil.copyfile(media, work / "file" / "media" / "tasks" / video_id / "video.mp4")
            url, bare_url = f"{server.url}/v1/videos/{video_id}/content", f"http://127.0.0.1:{bare_port}/file"
            assert server.proc is not None
            ours, base, cost = pair(url, bare_url, key=key, pids=(server.proc.pid, bare.pid), **load)
        out += [
            line("content 1 MiB, vidgate file: storage", ours),
            line("bare Starlette FileResponse", base),
            f"{'ratio (target >= 80%)':<44}{ours[0] / base[0]:8.2%}",
            f"{'server CPU per request, vidgate / bare':<44}{cost[0]:8.0f} µs / {cost[1]:.0f} µs",
        ]

        # 2. s3:// streaming against reading the object from moto directly.
        with running_gateway(work / "s3", settings=s3_settings(s3, bucket, "stream", redirect=False)) as server:
            key = server.key("bench")
            video_id = completed_video(server, key)
            object_key = f"stream/tasks/{video_id}/video.mp4"
            s3.put(bucket, object_key, media.read_bytes())
            url = f"{server.url}/v1/videos/{video_id}/content"
            ours, direct, _ = pair(url, s3.presigned(bucket, object_key), key=key, **load)
            out += [
                line("content 1 MiB, vidgate s3:// streaming", ours),
                line("the object read from moto directly", direct),
                f"{'ratio (target >= 50%)':<44}{ours[0] / direct[0]:8.2%}",
            ]
            # 4. Flat memory: a large object streamed through vidgate.
            big = work / "big.bin"
            with big.open("wb") as handle:
                block = os.urandom(MIB)
                for _ in range(args.big_mib):
                    handle.write(block)
            s3.client().upload_file(str(big), bucket, object_key)
            big.unlink()
            before, peak, took = big_stream(server, key, video_id, args.big_mib * MIB)
            memory = (
                f"{args.big_mib} MiB object streamed from s3:// in {took:.1f} s: "
                f"vidgate RSS {before:.0f} MiB before, {peak:.0f} MiB at peak (+{peak - before:.0f} MiB)"
            )

        # 3. Redirect mode against a status read of the same server.
        with running_gateway(work / "redirect", settings=s3_settings(s3, bucket, "redirect", redirect=True)) as server:
            key = server.key("bench")
            video_id = completed_video(server, key)
            content_url = f"{server.url}/v1/videos/{video_id}/content"
            assert httpx.get(content_url, headers={"Authorization": f"Bearer {key}"}).status_code == 302
            status_url = f"{server.url}/v1/videos/{video_id}"
            assert server.proc is not None
            pids = (server.proc.pid, server.proc.pid)
            redirect, status, cost = pair(content_url, status_url, key=key, their_key=key, pids=pids, **load)
            out += [
                line("content, s3:// content_redirect (302)", redirect),
                line("status read GET /v1/videos/{id}, same server", status),
                f"{'ratio (target: as cheap, ~100%)':<44}{redirect[0] / status[0]:8.2%}",
                f"{'vidgate CPU per request, redirect / status':<44}{cost[0]:8.0f} µs / {cost[1]:.0f} µs",
                memory,
            ]

        # 5. Memory of an S3 client in a fresh interpreter.
        sizes = {name: import_rss(sys.executable, IMPORT_PROBES[name]) for name in ("obstore", "boto3")}
        other = os.environ.get("AIOBOTO3_PYTHON")
        if other:
            sizes["aioboto3"] = import_rss(other, IMPORT_PROBES["aioboto3"])
            sizes["obstore (same interpreter)"] = import_rss(other, IMPORT_PROBES["obstore"])
        baseline = import_rss(sys.executable, "")
        found = ", ".join(f"{name} {value} MiB" for name, value in sizes.items() if value is not None)
        out.append(f"RSS of a fresh interpreter {baseline} MiB; after import + one S3 client: {found}")
        print("\n".join(out))
    finally:
        for proc in (bare, moto):
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
