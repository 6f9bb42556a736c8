"""Chaos bench, run by hand (bounded): many tasks through the emulators with faults of every kind on submit
and poll, slow submits, and kill -9 of the whole server at random moments.

    .venv/bin/python bench/chaos.py [--tasks 1000] [--fault-rate 0.2] [--kills 3] [--concurrency 40]
                                    [--postgres URL] [--seed 7]

Two DashScope emulators and two Sora-style emulators (two channels per model, on 127.0.0.1) answer
`--fault-rate` of submits and polls with a fault drawn from every kind they know: 429, 500, 502, 503, a
hang past the client's timeout, garbage, an empty body, an unknown status, "not found", a dropped reply
(task made, 500 answered), a slow reply (task made, answer 20 s late) and a cut connection (task made, no
answer). The client behaves as the `openai` SDK does: it sends each create with an Idempotency-Key and, when
the connection fails or it gets a 5xx, sends the same request again after a short wait. Meanwhile the
server's process group is killed with SIGKILL `--kills` times at random moments and started again at once.

It prints, and all must be 0:
- tasks lost: a create the client got an id for that never completed (or vanished);
- false failures: tasks that ended failed or cancelled (the emulators finish every task they accept);
- client 5xx outside the kills: 5xx answers received while the server was not being killed/restarted;
- duplicate upstream tasks: client requests (each has a unique prompt) that made more than one upstream task;
- ledger differences: a completed task without exactly one reserve and one settle, a failed one without one
  reserve and one refund, a charge left on a task no client holds (a create answered with an error must be
  refunded in full), or /v1/usage spend different from the ledger's sum.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.base import FakeUpstream, Fault  # noqa: E402
from tests.fakes.dashscope import FakeDashScope  # noqa: E402
from tests.fakes.sora import FakeSora  # noqa: E402
from tests.helpers import Server, free_port, write_config  # noqa: E402

# Every kind the emulators know, on submit; on polls, all but those that only make sense for a create.
SUBMIT_FAULTS: tuple[str, ...] = get_args(Fault)
POLL_FAULTS = tuple(kind for kind in SUBMIT_FAULTS if kind not in ("slow_reply", "cut"))
BODIES = (
    ("wan2.5-t2v-preview", {"model": "wan2.5-t2v-preview", "seconds": 5, "size": "832x480"}),
    ("sora-2", {"model": "sora-2", "seconds": "4", "size": "720x1280"}),
)


@dataclass
class Tally:
    """What the client saw."""

    ids: dict[int, str] = field(default_factory=dict)  # request number -> video id it was answered with
    answers: Counter[str] = field(default_factory=Counter)
    fivexx_outside_kills: list[tuple[int, int, str]] = field(default_factory=list)
    fivexx_during_kills: int = 0
    connection_errors: int = 0
    retries: int = 0
    other_errors: list[tuple[int, int, str]] = field(default_factory=list)


class Killer:
    """Kills the server's process group at given moments and starts it again; knows when it is doing so."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.busy = False
        self.kills = 0
        self.downtime = 0.0

    async def kill_and_restart(self) -> None:
        self.busy = True
        started = time.monotonic()
        try:
            assert self.server.proc is not None
            os.killpg(self.server.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.server.proc.wait, 10)
            self.server._closed()
            await asyncio.to_thread(self.server.start, 90.0)
            self.kills += 1
        finally:
            # Answers cut by the kill may arrive a moment after the restart; count them with the kill.
            await asyncio.sleep(1.0)
            self.downtime += time.monotonic() - started
            self.busy = False


def channels(wans: list[FakeDashScope], soras: list[FakeSora]) -> str:
    text = ""
    for index, fake in enumerate(wans):
        text += f"""
[[channels]]
name = "wan-{index}"
provider = "dashscope"
base_url = "{fake.base_url}"
api_key = "sk-ds-chaos-{index}"
models = ["wan2.5-t2v-preview"]
"""
    for index, fake in enumerate(soras):
        text += f"""
[[channels]]
name = "sora-{index}"
provider = "openai"
base_url = "{fake.base_url}"
api_key = "sk-openai-chaos-{index}"
models = ["sora-2"]
"""
    return text


async def create(
    client: httpx.AsyncClient, number: int, tally: Tally, killer: Killer, deadline: float, rng: random.Random
) -> None:
    """One client request, retried with its Idempotency-Key as the SDK would, until it has an id."""
    _, template = BODIES[number % len(BODIES)]
    body = {**template, "prompt": f"chaos request #{number}: a lighthouse in a storm"}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    while time.monotonic() < deadline:
        during_kill = killer.busy
        try:
            response = await client.post("/v1/videos", json=body, headers=headers)
        except httpx.HTTPError:
            tally.connection_errors += 1
            tally.retries += 1
            await asyncio.sleep(0.5 + rng.random())
            continue
        during_kill = during_kill or killer.busy
        tally.answers[str(response.status_code)] += 1
        if response.status_code == 200:
            tally.ids[number] = response.json()["id"]
            return
        if response.status_code >= 500:
            if during_kill:
                tally.fivexx_during_kills += 1
            else:
                tally.fivexx_outside_kills.append((number, response.status_code, response.text[:200]))
        elif response.status_code != 429:
            tally.other_errors.append((number, response.status_code, response.text[:200]))
            return
        tally.retries += 1
        retry_after = float(response.headers.get("retry-after", "1") or 1)
        await asyncio.sleep(min(retry_after, 5.0) * (0.5 + rng.random()))
    tally.other_errors.append((number, 0, "gave up: no id before the bench's deadline"))


async def wait_finished(server: Server, key: str, ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Every video of the key, once none of `ids` is unfinished (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while True:
            videos: dict[str, dict[str, Any]] = {}
            after: str | None = None
            try:
                while True:
                    params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
                    page = (await client.get("/v1/videos", params=params)).json()
                    videos.update({video["id"]: video for video in page["data"]})
                    if not page["has_more"]:
                        break
                    after = page["last_id"]
            except (httpx.HTTPError, KeyError):
                await asyncio.sleep(1)
                continue
            unfinished = [i for i in ids if videos.get(i, {}).get("status") in ("queued", "in_progress")]
            if not unfinished or time.monotonic() > deadline:
                return videos
            await asyncio.sleep(1)


async def ledger(server: Server, database_url: str | None) -> list[tuple[str, str, int]]:
    """Every ledger row: (task_id, kind, amount in micro-dollars)."""
    if database_url:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            found = await conn.fetch("select task_id, kind, amount_micros from ledger")
            return [(row[0], row[1], int(row[2])) for row in found]
        finally:
            await conn.close()
    db = sqlite3.connect(server.config.parent / "vidgate.db")
    try:
        return list(db.execute("select task_id, kind, amount_micros from ledger"))
    finally:
        db.close()


def upstream_prompts(wans: list[FakeDashScope], soras: list[FakeSora]) -> Counter[str]:
    found: Counter[str] = Counter()
    for wan in wans:
        for task in wan.tasks.values():
            found[str(task.body.get("input", {}).get("prompt"))] += 1
    for sora in soras:
        for task in [*sora.tasks.values(), *sora.deleted.values()]:
            found[task.prompt] += 1
    return found


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    wans = [FakeDashScope(api_keys={f"sk-ds-chaos-{i}"}, polls_per_step=1) for i in range(2)]
    soras = [FakeSora(api_keys=frozenset({f"sk-openai-chaos-{i}"}), polls_per_step=1) for i in range(2)]
    fakes: list[FakeUpstream] = [*wans, *soras]
    for index, fake in enumerate(fakes):
        fake.faults.rng = random.Random(args.seed * 100 + index)
        fake.faults.hang_s = 35.0  # past vidgate's 30 s upstream timeout
        fake.faults.slow_s = 20.0
        fake.faults.random("submit", args.fault_rate, *SUBMIT_FAULTS)
        fake.faults.random("poll", args.fault_rate, *POLL_FAULTS)
        fake.start()
    folder = Path(tempfile.mkdtemp(prefix="vidgate-chaos-"))
    port = free_port()
    settings = (
        "poll_interval_s = 0.5\n"
        # With a fifth of all calls failing, three failures in a row are common; a breaker that opened on them
        # would turn a flaky channel into a closed one. An operator running such upstreams raises it likewise.
        "breaker_threshold = 8\n"
        "breaker_cooldown_s = 5\n"
    )
    config = write_config(folder, port=port, database_url=args.postgres, extra=settings + channels(wans, soras))
    server = Server(config=config, port=port, log=folder / "server.log")
    server.start(timeout=90)
    key = server.key("chaos")
    killer = Killer(server)
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.max_seconds
    print(f"chaos: {args.tasks} tasks, fault rate {args.fault_rate}, {args.kills} kills; work dir {folder}")

    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(args.tasks):
        queue.put_nowait(number)
    kill_at = sorted(rng.sample(range(args.tasks // 10, args.tasks), args.kills))
    issued = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while True:
            try:
                number = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            issued += 1
            await create(client, number, tally, killer, deadline, rng)

    async def kills() -> None:
        for at in kill_at:
            while issued < at:
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.random() * 2)
            print(f"  kill -9 at request {issued} ({time.monotonic() - started:.0f} s)")
            await killer.kill_and_restart()

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(150.0, connect=5.0),
        limits=limits,
    ) as client:
        killing = asyncio.create_task(kills())
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
        await killing
    created_s = time.monotonic() - started
    print(f"  all creates answered after {created_s:.0f} s; waiting for the tasks to finish")
    ids = set(tally.ids.values())
    videos = await wait_finished(server, key, ids, timeout=max(60.0, deadline - time.monotonic()))
    finished_s = time.monotonic() - started
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        usage = (await client.get("/v1/usage")).json()
    server.stop()
    for fake in fakes:
        fake.stop()

    # -- the figures ----------------------------------------------------------------------------------------
    lost = [i for i in ids if videos.get(i, {}).get("status") not in ("completed", "failed")]
    failed = [video for video in videos.values() if video["status"] == "failed"]
    prompts = upstream_prompts(wans, soras)
    duplicates = {prompt: count for prompt, count in prompts.items() if count > 1}
    rows = await ledger(server, args.postgres)
    kinds: dict[str, list[str]] = {}
    net: dict[str, int] = {}
    for task_id, kind, amount in rows:
        kinds.setdefault(task_id, []).append(kind)
        net[task_id] = net.get(task_id, 0) + int(amount)
    ledger_problems = []
    for task_id in ids | set(kinds):
        seen = sorted(kinds.get(task_id, []))
        status = videos.get(task_id, {}).get("status")
        if task_id not in ids:
            # A create whose client got an error (its submit failed): reserved, then refunded in full.
            if seen != ["refund", "reserve"] or net[task_id] != 0:
                ledger_problems.append((task_id, "no client has this task, yet it is charged", seen))
        elif status == "completed" and seen != ["reserve", "settle"]:
            ledger_problems.append((task_id, "completed", seen))
        elif status == "failed" and seen != ["refund", "reserve"]:
            ledger_problems.append((task_id, "failed", seen))
    spent, booked = Decimal(str(usage["spent_usd"])), Decimal(sum(net.values())) / 1_000_000
    if spent != booked:
        ledger_problems.append(("/v1/usage", f"spend {spent} != the ledger's {booked}", []))

    submits = sum(len(w.submits()) for w in wans) + sum(len(s.calls("/v1/videos", "POST")) for s in soras)
    print()
    print(f"requests                      {args.tasks}")
    print(f"client ids received           {len(ids)}")
    print(f"answers                       {dict(sorted(tally.answers.items()))}")
    print(f"client retries                {tally.retries} ({tally.connection_errors} cut connections)")
    print(f"5xx during kills (expected)   {tally.fivexx_during_kills}")
    print(f"kills                         {killer.kills} ({killer.downtime:.1f} s down in all)")
    print(f"upstream submit calls         {submits}")
    print(f"upstream tasks                {sum(prompts.values())}")
    print(f"time                          creates {created_s:.0f} s, all finished {finished_s:.0f} s")
    print()
    print(f"tasks lost                    {len(lost)}")
    print(f"false failures                {len(failed)}")
    print(f"client 5xx outside the kills  {len(tally.fivexx_outside_kills)}")
    print(f"duplicate upstream tasks      {sum(count - 1 for count in duplicates.values())}")
    print(f"ledger differences            {len(ledger_problems)}")
    print(f"other client errors           {len(tally.other_errors)}")
    for title, items in (
        ("lost", lost[:5]),
        ("failed", [(v["id"], v["error"]) for v in failed[:5]]),
        ("5xx", tally.fivexx_outside_kills[:5]),
        ("duplicates", list(duplicates.items())[:5]),
        ("ledger", ledger_problems[:5]),
        ("other", tally.other_errors[:5]),
    ):
        for item in items:
            print(f"  {title}: {item}")
    bad = (
        len(lost)
        + len(failed)
        + len(tally.fivexx_outside_kills)
        + len(duplicates)
        + len(ledger_problems)
        + len(tally.other_errors)
    )
    print(f"\nserver log: {folder / 'server.log'}")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--postgres", default=None, help="postgresql://… (default: SQLite in a temp dir)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound on the whole run")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
