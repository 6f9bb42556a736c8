"""Benchmark, run by hand: the poller's CPU per task and completion lag, by polling and by callback.

    .venv/bin/python bench/poller.py [--tasks 2000 10000] [--modes polling callback] [--hold 10000]

Each run is one `vidgate serve` (SQLite) in front of the Kling emulator (tests/fakes/kling.py, in a process
of its own, on the clock: each task finishes 54-66 s after it starts, uniformly; the same tiny MP4 for every
task). N tasks are written as already accepted (submitted upstream, so the create path is not measured),
starting evenly over a spread (N/40 s: ~40 completions a second at the peak), and the server's
CPU time (/proc/<pid>/stat, user + system) is read from the moment it is up until every task is completed:
that is all its work from accepted to completed (polls, downloads, previews, finishes), divided by N. The lag
of a task is its row's `completed_at` (when a status read first shows it completed) minus the moment the
emulator finished it. By callback: each task was created with vidgate's signed callback URL, and the emulator
POSTs to it when it finishes. The database also holds 64 finished tasks of the same model and channel, as a
gateway that has run a while does: the poller learns the typical duration from them at start.

`--hold N`: N tasks, all unfinished (they would take an hour), on one channel whose every query answers after
100 ms: the server's CPU share while it holds them, over `--hold-seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.entry_points import register_source_providers  # noqa: E402
from tests.helpers import Server, free_port, write_config  # noqa: E402
from vidgate.engine.callbacks import CallbackSigner  # noqa: E402
from vidgate.providers.base import Credentials  # noqa: E402
from vidgate.store import tasks as task_store  # noqa: E402
from vidgate.store.db import create_engine, migrate  # noqa: E402
from vidgate.store.tables import tasks  # noqa: E402

register_source_providers()  # the servers started here see this checkout's providers

AK, SK = "ak-bench", "sk-bench-0123456789abcdef0123456789"
SECRET = "poller-bench-secret-" + "y" * 24
MODEL = "kling-v1"
CHANNEL = "kling-bench"
DURATION = (54.0, 66.0)
TICKS = os.sysconf("SC_CLK_TCK")

# The emulator, with two bench-only routes: seed tasks (each to start and finish at given times, with or
# without a callback URL), and report when each finished and how many queries it answered.
EMULATOR = textwrap.dedent(
    """
    import asyncio, sys, time, uvicorn
    sys.path.insert(0, {root!r})
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from tests.fakes.kling import FakeKling, KlingTask, now_ms

    fake = FakeKling(access_key={ak!r}, secret_key={sk!r})
    fake.port = {port}  # the URLs it publishes point where it listens
    fake.reuse_video = True
    fake.finish_after_s = 3600.0  # seeded tasks get their own times
    fake.query_latency_s = {latency!r}

    async def seed(request):
        loop = asyncio.get_running_loop()
        made = {{}}
        for item in await request.json():
            task = KlingTask(
                task_id=f"{{int(time.time() * 1000)}}{{next(fake._ids):06d}}", kind="text2video",
                body={{"model_name": "kling-v1", "prompt": "bench", "duration": "5"}}, model_name="kling-v1",
                duration="5", aspect_ratio="16:9", external_task_id=item["external_task_id"],
                created_at=now_ms(), updated_at=now_ms(), callback_url=item.get("callback_url"),
            )
            fake.tasks[task.task_id] = task
            start = max(0.0, item["start_at"] - time.time())
            loop.call_later(start, fake._by_clock, task, "processing")
            loop.call_later(start + item["duration"], fake._by_clock, task, "succeed")
            made[item["external_task_id"]] = task.task_id
        return JSONResponse(made)

    seen = {{}}  # external id -> when a query first answered "succeed"
    query = fake._query

    async def timed_query(request):
        answer = await query(request)
        task = fake.tasks.get(request.path_params["task_id"])
        if task is not None and task.status == "succeed" and task.external_task_id not in seen:
            seen[task.external_task_id] = time.time()
        return answer

    async def report(request):
        finished = {{t.external_task_id: t.finished_at for t in fake.tasks.values() if t.finished_at}}
        queries = sum(1 for r in fake.history if r.method == "GET" and r.path.startswith("/v1/videos/"))
        callbacks = sum(1 for _url, status, _at in fake.callbacks_sent if status == 200)
        fake.history.clear()  # keep the emulator's memory flat; counts are cumulative below
        fake.queries = getattr(fake, "queries", 0) + queries
        return JSONResponse({{"finished": finished, "seen": seen, "queries": fake.queries, "callbacks": callbacks}})

    fake.app.router.routes[:0] = [
        Route("/_bench/seed", seed, methods=["POST"]),
        Route("/_bench/report", report),
        Route("/v1/videos/{{kind}}/{{task_id}}", timed_query, methods=["GET"]),
    ]
    uvicorn.run(fake.app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
    """
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


class Emulator:
    def __init__(self, work: Path, latency: float) -> None:
        self.port = free_port()
        script = work / f"emulator-{self.port}.py"
        script.write_text(EMULATOR.format(root=str(ROOT), ak=AK, sk=SK, port=self.port, latency=latency))
        self.proc = subprocess.Popen([sys.executable, str(script)])
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                httpx.get(f"{self.url}/_bench/report", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the emulator did not start")

    def report(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{self.url}/_bench/report", timeout=60).json()
        return answer

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


async def seed(
    database_url: str,
    emulator: Emulator,
    *,
    public_url: str,
    count: int,
    spread: float,
    callbacks: bool,
    durations: tuple[float, float],
) -> None:
    """Write `count` accepted tasks (their upstream tasks made in the emulator) and 64 finished ones."""
    await asyncio.to_thread(migrate, database_url, secret=SECRET)
    db = create_engine(database_url, secret=SECRET)
    signer = CallbackSigner(SECRET)
    rng = random.Random(11)
    now = time.time()
    start0 = now + 12.0  # time for the server to start before the first task does
    creds = Credentials(channel=CHANNEL, base_url=emulator.url, access_key=AK, secret_key=SK).to_json()
    base: dict[str, Any] = {
        "key_id": "key_bench",
        "model": MODEL,
        "provider": "kling",
        "channel": CHANNEL,
        "credentials": creds,
        "prompt": "bench",
        "seconds": 5,
        "size": "1280x720",
        "request": {"model": MODEL, "prompt": "bench", "seconds": 5, "width": 1280, "height": 720},
        "price_micros": 0,
    }
    for index in range(64):
        took = rng.uniform(*durations)
        created = now - 7200 + index
        row = {
            **base,
            "id": f"video_hist{index:027d}",
            "upstream_id": f"text2video:history-{index}",
            "status": "completed",
            "progress": 100,
            "created_at": created,
            "updated_at": created + took,
            "completed_at": created + took,
            "deadline_at": created + 3600,
        }
        await task_store.insert_task(db, row)
    items = []
    for index in range(count):
        task_id = "video_" + secrets.token_hex(16)
        start = start0 + spread * index / count
        item = {"external_task_id": task_id, "start_at": start, "duration": rng.uniform(*durations)}
        if callbacks:
            item["callback_url"] = signer.url(public_url, "kling", task_id)
        items.append(item)
    made: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=120) as http:
        for chunk in range(0, count, 2000):
            answer = await http.post(f"{emulator.url}/_bench/seed", json=items[chunk : chunk + 2000])
            made.update(answer.json())
    rows = []
    for item in items:
        start = float(item["start_at"])
        row = {
            **base,
            "id": item["external_task_id"],
            "upstream_id": f"text2video:{made[item['external_task_id']]}",
            "status": "queued",
            "progress": 0,
            "created_at": start,
            "updated_at": start,
            "deadline_at": start + 3600,
            "next_poll_at": start + 0.2,  # as after a submit (engine/submit.py)
        }
        rows.append(task_store._protect(db, row["id"], row))  # credentials sealed as insert_task does
    async with db.begin() as conn:
        await conn.execute(tasks.insert(), rows)
    await db.dispose()


def unfinished(db_path: Path) -> int:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM tasks WHERE status IN ('queued', 'in_progress')").fetchone()[0])


def completions(db_path: Path) -> dict[str, float]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute(
            "SELECT id, completed_at FROM tasks WHERE status = 'completed' AND id NOT LIKE 'video_hist%'"
        )
        return {task_id: float(at) for task_id, at in rows}


def start_server(work: Path, emulator: Emulator) -> tuple[Server, Path]:
    port = free_port()
    channel = (
        f'[[channels]]\nname = "{CHANNEL}"\nprovider = "kling"\nbase_url = "{emulator.url}"\n'
        f'access_key = "{AK}"\nsecret_key = "{SK}"\n'
    )
    settings = f'secret = "{SECRET}"\nlocal_enabled = false\n{channel}'
    config = write_config(work, port=port, extra=settings)
    return Server(config=config, port=port, log=work / "server.log"), work / "vidgate.db"


def run(count: int, mode: str, spread: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"vidgate-poller-{count}-{mode}-"))
    emulator = Emulator(work, latency=0.0)
    server, db_path = start_server(work, emulator)
    try:
        asyncio.run(
            seed(
                f"sqlite:///{db_path}",
                emulator,
                public_url=server.url,
                count=count,
                spread=spread,
                callbacks=mode == "callback",
                durations=DURATION,
            )
        )
        server.start()
        assert server.proc is not None
        began, cpu0 = time.time(), cpu_seconds(server.proc.pid)
        queries = 0
        while unfinished(db_path):
            time.sleep(2.0)
            queries = emulator.report()["queries"]  # also empties the emulator's request log
            if time.time() - began > spread + 600:
                raise RuntimeError(f"{unfinished(db_path)} tasks still unfinished after {time.time() - began:.0f} s")
        cpu = cpu_seconds(server.proc.pid) - cpu0
        wall = time.time() - began
        report = emulator.report()
        done = completions(db_path)
        lags = [done[task_id] - at for task_id, at in report["finished"].items() if task_id in done]
        # Split: from the finish to the read that saw it, and from that read to the row showing it.
        found = [seen - report["finished"][task_id] for task_id, seen in report["seen"].items()]
        stored = [done[task_id] - seen for task_id, seen in report["seen"].items() if task_id in done]
        return {
            "tasks": count,
            "cpu_ms_per_task": cpu / count * 1000,
            "cpu_share": cpu / wall,
            "polls_per_task": report["queries"] / count,
            "callbacks": report["callbacks"],
            "lag_p50": quantile(lags, 0.5),
            "lag_p99": quantile(lags, 0.99),
            "lag_max": max(lags),
            "lag_mean": statistics.fmean(lags),
            "found_p99": quantile(found, 0.99),
            "stored_p50": quantile(stored, 0.5),
            "stored_p99": quantile(stored, 0.99),
            "completed": len(lags),
            "wall": wall,
            "queries_seen": queries,
        }
    finally:
        server.stop()
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)


def hold(count: int, seconds: float, latency: float) -> dict[str, float]:
    """CPU share while `count` unfinished tasks (all started 30 s before the server, an hour to go) are held."""
    work = Path(tempfile.mkdtemp(prefix=f"vidgate-poller-hold-{count}-"))
    emulator = Emulator(work, latency=latency)
    server, db_path = start_server(work, emulator)
    try:
        asyncio.run(
            seed(
                f"sqlite:///{db_path}",
                emulator,
                public_url=server.url,
                count=count,
                spread=60.0,
                callbacks=False,
                durations=(3600.0, 3700.0),
            )
        )
        server.start()
        assert server.proc is not None
        began, cpu0 = time.time(), cpu_seconds(server.proc.pid)
        samples = []
        last_t, last_cpu = began, cpu0
        while time.time() - began < seconds:
            time.sleep(5.0)
            now, cpu = time.time(), cpu_seconds(server.proc.pid)
            samples.append((cpu - last_cpu) / (now - last_t))
            last_t, last_cpu = now, cpu
        total = (cpu_seconds(server.proc.pid) - cpu0) / (time.time() - began)
        queries = emulator.report()["queries"]
        wall = time.time() - began
        rss = int(Path(f"/proc/{server.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
        return {"tasks": count, "cpu_share": total, "peak_5s": max(samples), "polls_s": queries / wall, "rss": rss}
    finally:
        server.stop()
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, nargs="*", default=[2000, 10000])
    parser.add_argument("--modes", nargs="*", default=["polling", "callback"])
    parser.add_argument("--hold", type=int, default=10000)
    parser.add_argument("--hold-seconds", type=float, default=90.0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; tasks of {DURATION[0]:.0f}-{DURATION[1]:.0f} s (uniform), SQLite")
    print("target: <= 5 ms CPU a task; completion seen <= 3 s p99 by polling, <= 1 s by callback")
    print("lag = row completed_at - emulator finish; read = first read that saw it - finish; store = lag - read")
    print(
        f"{'tasks':>6} {'mode':>9} {'spread':>7} {'CPU/task':>9} {'CPU share':>9} {'polls/task':>10} "
        f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8} | {'read p99':>8} {'store p50':>9} {'store p99':>9}"
    )
    for count in args.tasks:
        for mode in args.modes:
            spread = count / 40.0
            got = run(count, mode, spread)
            print(
                f"{count:>6} {mode:>9} {spread:>6.0f}s {got['cpu_ms_per_task']:>7.2f}ms {got['cpu_share']:>9.1%} "
                f"{got['polls_per_task']:>10.2f} {got['lag_p50']:>7.2f}s {got['lag_p99']:>7.2f}s "
                f"{got['lag_max']:>7.2f}s | {got['found_p99']:>7.2f}s {got['stored_p50']:>8.2f}s "
                f"{got['stored_p99']:>8.2f}s",
                flush=True,
            )
    if args.hold:
        got = hold(args.hold, args.hold_seconds, latency=0.1)
        print(
            f"hold: {got['tasks']} unfinished tasks, one channel, 100 ms upstream: "
            f"CPU {got['cpu_share']:.1%} of a core (peak 5 s {got['peak_5s']:.1%}), "
            f"{got['polls_s']:.0f} polls/s, RSS {got['rss']:.0f} MiB (target: under 1 core)"
        )


if __name__ == "__main__":
    main()
