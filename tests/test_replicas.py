"""Replicas (SPEC §9, issue 11): three `vidgate serve`, each with its own media folder (three machines), on one
PostgreSQL database, one S3 bucket (moto's server) and one Redis. 300 tasks — local renders, Kling (which calls
back) and DashScope (polled only) — with one replica killed with -9 in the middle:

- every task completes exactly once: one reservation and one settlement in the ledger, one upstream task each;
- no task is polled by two replicas inside one lease: each emulator logs every poll (when it arrived, when it
  was answered, and which replica process sent it, from the connection's owner in /proc). Two polls of one
  task never overlap, and a task whose poll by the killed replica was in flight when it died is not polled
  again until that lease could have lapsed (a replica ignoring leases fails either check);
- every video is served by every replica left, streamed with Range, and by a fourth replica with
  content_redirect = true as a redirect to a presigned S3 URL (no replica has any file of another);
- a key with rpm 60 gets 60 of 90 requests spread over the replicas, twice, a minute apart;
- 20 submits racing across the replicas to a channel with max_in_flight = 2: exactly 2 accepted at first, and
  the emulator never holds more than 2 unfinished tasks of that channel while all 20 go through.

Timing figures are printed (pytest -s), not asserted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.dashscope import FakeDashScope
from tests.fakes.kling import FakeKling
from tests.helpers import Server, free_port, write_config
from tests.s3 import MotoS3, moto_s3
from tests.test_shared_state import REDIS_URL, redis_reachable
from vidgate.engine.poller import LEASE_S

WAN = "wan2.5-t2v-preview"
KLING = "kling-v1"
CAPPED = "kling-v2-master"  # served only by the channel with max_in_flight = 2
LOCAL_TASKS, KLING_TASKS, WAN_TASKS = 60, 140, 100
TOTAL = LOCAL_TASKS + KLING_TASKS + WAN_TASKS
CAP, CAP_SUBMITS = 2, 20
RPM, RPM_REQUESTS = 60, 90
PREFIX = "media"
AK, SK = "ak-replicas", "sk-replicas-0123456789abcdef0123456789"
PRICES = f'[prices]\n"vidgate-local" = 0.01\n"{WAN}" = 0.05\n"{KLING}" = 0.07\n"{CAPPED}" = 0.09\n'
# vidgate's HTTP client gives up on an upstream call after this long (netguard.client's default timeout).
POLL_TIMEOUT_S = 30.0
# Kling answers each poll after this long: a poll is "in flight" long enough for overlaps to show.
KLING_LATENCY_S = 0.3

pytestmark = [
    pytest.mark.serial,  # four servers, renders, three emulators and S3: alone, not beside the parallel suite
    pytest.mark.skipif(not redis_reachable(), reason="Redis is not reachable at 127.0.0.1:6379"),
]


# -- who polled what, and when (emulator side) ----------------------------------------------------------------


@dataclass
class Poll:
    task: str
    replica: str | None
    start: float
    end: float = 0.0


@dataclass
class PollLog:
    """An ASGI wrapper around an emulator: logs each poll of a task with the replica process that sent it."""

    app: Any
    pattern: re.Pattern[str]
    port: int
    replicas: Callable[[], dict[str, int]]  # replica name -> server pid
    polls: list[Poll] = field(default_factory=list)
    in_flight: set[int] = field(default_factory=set)  # ids of the Poll objects not answered yet
    _owners: dict[int, str | None] = field(default_factory=dict)  # client port -> replica

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = self.pattern.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        port = scope["client"][1]
        poll = Poll(task=match.group(match.lastindex or 0), replica=self._owners.get(port), start=time.monotonic())
        self.polls.append(poll)
        self.in_flight.add(id(poll))
        try:
            if port not in self._owners:
                # Resolved at once, while the connection is open (a keep-alive connection keeps its port and its
                # process); a connection whose process was killed meanwhile stays unknown (None).
                self._owners[port] = owner_of(port, self.port, self.replicas())
            poll.replica = self._owners[port]
            await self.app(scope, receive, send)
        finally:
            poll.end = time.monotonic()
            self.in_flight.discard(id(poll))

    def forget_connections(self) -> None:
        """After a kill: a port seen again belongs to a new connection (of a replica alive)."""
        self._owners.clear()

    def unanswered(self, replica: str) -> list[Poll]:
        return [poll for poll in self.polls if id(poll) in self.in_flight and poll.replica == replica]


def owner_of(client_port: int, server_port: int, replicas: dict[str, int]) -> str | None:
    """The replica whose process holds the TCP connection 127.0.0.1:client_port -> :server_port (Linux)."""
    inode = tcp_inode(client_port, server_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for name, pid in replicas.items():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                        return name
    return None


def tcp_inode(source_port: int, dest_port: int) -> int | None:
    """The inode of the TCP socket 127.0.0.1:source_port -> 127.0.0.1:dest_port, asked of the kernel (sock_diag
    netlink, one exact lookup: ~0.05 ms, where parsing /proc/net/tcp takes ~25 ms on a busy machine)."""
    loopback = socket.inet_aton("127.0.0.1") + bytes(12)
    # struct inet_diag_sockid: ports (big-endian), source and destination addresses, interface, no cookie.
    sockid = (
        struct.pack("!HH", source_port, dest_port)
        + loopback
        + loopback
        + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)
    )
    request = struct.pack("=BBBxI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, 1, 1, 0)  # NLM_F_REQUEST
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as diag:
        diag.send(header + request)
        answer = diag.recv(65536)
    if struct.unpack_from("=IH", answer)[1] != _SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket (closed meanwhile)
    # nlmsghdr (16) + struct inet_diag_msg: family, state, timer, retrans (4), sockid (48), expires, rqueue,
    # wqueue, uid (16), inode.
    inode: int = struct.unpack_from("=I", answer, 16 + 4 + 48 + 16)[0]
    return inode


_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY = 4, 20


# -- which replicas take requests --------------------------------------------------------------------------------


class Rotation:
    """Spreads client requests over the replicas in service; one taken out of service is waited for until no
    request to it is open (so a kill never cuts a create whose outcome the test would not know)."""

    def __init__(self, replicas: list[Server]) -> None:
        self._serving = list(replicas)
        self._open: Counter[int] = Counter()
        self._lock = threading.Condition()
        self._next = 0

    @contextlib.contextmanager
    def pick(self, index: int | None = None) -> Iterator[Server]:
        with self._lock:
            if index is None:
                index, self._next = self._next, self._next + 1
            replica = self._serving[index % len(self._serving)]
            self._open[id(replica)] += 1
        try:
            yield replica
        finally:
            with self._lock:
                self._open[id(replica)] -= 1
                self._lock.notify_all()

    def retire(self, replica: Server) -> None:
        with self._lock:
            self._serving.remove(replica)
            assert self._lock.wait_for(lambda: self._open[id(replica)] == 0, timeout=60)


# -- the database, read directly ---------------------------------------------------------------------------------


def query(database_url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    async def read() -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(read())


# -- the test ----------------------------------------------------------------------------------------------------


def replica_config(
    folder: Path, port: int, database_url: str, s3: MotoS3, bucket: str, channels: str, **kw: Any
) -> Path:
    settings = (
        f'poll_interval_s = 0.2\nlocal_workers = 1\nredis_url = "{REDIS_URL}"\n'
        f"{s3.settings(bucket, PREFIX, redirect=kw.get('redirect', False))}{PRICES}{channels}"
    )
    return write_config(folder, port=port, database_url=database_url, extra=settings)


def rpm_burst(rotation: Rotation, key: str) -> Counter[int]:
    """RPM_REQUESTS authenticated reads as fast as they go, spread over the replicas: their statuses."""

    def one(_: int) -> int:
        with rotation.pick() as replica:
            return httpx.get(
                f"{replica.url}/v1/videos", headers={"Authorization": f"Bearer {key}"}, timeout=30
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        return Counter(pool.map(one, range(RPM_REQUESTS)))


def given_up(poll: Poll, killed_at: float) -> float:
    """When the replica that sent a poll stopped waiting for its answer: when it had it, or when it died (the
    emulator may answer a dead client's poll much later), or when its HTTP client gave up (POLL_TIMEOUT_S)."""
    end = min(poll.end or float("inf"), poll.start + POLL_TIMEOUT_S)
    return min(end, killed_at) if poll.replica in ("r0", None) and poll.start < killed_at else end


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one time (an end at t comes before a start at t)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def test_three_replicas_one_killed_every_task_once(tmp_path: Path, pg_database: str) -> None:
    began = time.monotonic()
    marks: dict[str, float] = {}
    kling = FakeKling(access_key=AK, secret_key=SK)
    kling.finish_after_s = lambda: random.uniform(3.0, 8.0)
    kling.query_latency_s = KLING_LATENCY_S
    kling.reuse_video = True
    capped = FakeKling(access_key=AK, secret_key=SK)
    capped.finish_after_s = 2.5
    capped.reuse_video = True
    wan = FakeDashScope(polls_per_step=2, latency_s=0.05)
    replicas: list[Server] = []

    def pids() -> dict[str, int]:
        return {f"r{index}": replica.proc.pid for index, replica in enumerate(replicas) if replica.proc is not None}

    logs = {
        "kling": PollLog(kling.app, re.compile(r"^/v1/videos/(?:text2video|image2video)/([^/]+)$"), kling.port, pids),
        "capped": PollLog(
            capped.app, re.compile(r"^/v1/videos/(?:text2video|image2video)/([^/]+)$"), capped.port, pids
        ),
        "wan": PollLog(wan.app, re.compile(r"^/api/v1/tasks/([^/]+)/?$"), wan.port, pids),
    }
    kling.app, capped.app, wan.app = logs["kling"], logs["capped"], logs["wan"]
    channels = (
        f'[[channels]]\nname = "wan"\nprovider = "dashscope"\nbase_url = "{wan.base_url}"\napi_key = "sk-ds-test"\n'
        f'[[channels]]\nname = "kling"\nprovider = "kling"\nbase_url = "{kling.base_url}"\n'
        f'access_key = "{AK}"\nsecret_key = "{SK}"\nmodels = ["{KLING}"]\n'
        f'[[channels]]\nname = "capped"\nprovider = "kling"\nbase_url = "{capped.base_url}"\n'
        f'access_key = "{AK}"\nsecret_key = "{SK}"\nmodels = ["{CAPPED}"]\nmax_in_flight = {CAP}\n'
    )
    with moto_s3() as s3, kling.running(), capped.running(), wan.running():
        bucket = s3.create_bucket()
        for index in range(3):
            # Each its own folder, port and public_url (callbacks come back to the replica that submitted).
            port = free_port()
            config = replica_config(tmp_path / f"r{index}", port, pg_database, s3, bucket, channels)
            replicas.append(Server(config=config, port=port, log=tmp_path / f"r{index}.log"))
        try:
            # Started together, as a deployment does: they migrate the fresh database one at a time.
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(Server.start, replicas))
            marks["started"] = time.monotonic() - began
            key = replicas[0].key("replicas")
            rpm_key = replicas[1].key("rpm", "--rpm", str(RPM))
            headers = {"Authorization": f"Bearer {key}"}
            rotation = Rotation(replicas)

            # rpm 60 across three replicas: 60 accepted, not 180 (nor 90).
            first_burst = rpm_burst(rotation, rpm_key)
            first_burst_at = time.monotonic()
            assert first_burst == {200: RPM, 429: RPM_REQUESTS - RPM}, first_burst

            # 20 submits racing across the replicas to the capped channel, retried on 429 until each goes through,
            # meanwhile with the 300 tasks below.
            cap_start = threading.Barrier(CAP_SUBMITS)
            cap_first: list[int] = []
            cap_ids: list[str] = []

            def capped_submit(index: int) -> None:
                body = {"model": CAPPED, "prompt": f"capped {index}", "seconds": 5}
                cap_start.wait()
                first = True
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    with rotation.pick(index) as replica:
                        response = httpx.post(f"{replica.url}/v1/videos", json=body, headers=headers, timeout=60)
                    if first:
                        cap_first.append(response.status_code)
                        first = False
                    if response.status_code == 200:
                        cap_ids.append(response.json()["id"])
                        return
                    assert response.status_code == 429, response.text
                    time.sleep(0.5)
                raise AssertionError(f"capped submit {index} never went through")

            cap_pool = concurrent.futures.ThreadPoolExecutor(max_workers=CAP_SUBMITS)
            cap_done = [cap_pool.submit(capped_submit, index) for index in range(CAP_SUBMITS)]

            kinds = ["local"] * LOCAL_TASKS + ["kling"] * KLING_TASKS + ["wan"] * WAN_TASKS
            random.Random(11).shuffle(kinds)

            def create(index: int) -> str:
                kind = kinds[index]
                if kind == "local":
                    body: dict[str, Any] = {"model": "vidgate-local", "prompt": f"local {index}", "seconds": 1}
                    body["size"] = "64x64"
                elif kind == "kling":
                    body = {"model": KLING, "prompt": f"kling {index}", "seconds": 5}
                else:
                    body = {"model": WAN, "prompt": f"wan {index}", "seconds": 5, "size": "1280x720"}
                with rotation.pick() as replica:
                    response = httpx.post(f"{replica.url}/v1/videos", json=body, headers=headers, timeout=60)
                assert response.status_code == 200, response.text
                video_id: str = response.json()["id"]
                return video_id

            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                ids = list(pool.map(create, range(TOTAL // 2)))
                marks["half created"] = time.monotonic() - began
                # The middle of the run: replica 0 stops taking requests (none is cut off), then dies with -9
                # in the middle of a poll of Kling (its lease held), its render workers with it.
                rotation.retire(replicas[0])
                r0_pid = pids()["r0"]

                def rendering_on_r0() -> int:
                    sql = "SELECT count(*) AS n FROM render_jobs WHERE state = 'running' AND lease_owner LIKE $1"
                    return int(query(pg_database, sql, f"render-{r0_pid}-%")[0]["n"])

                # Best while a render of its own runs too (its job must then be rendered again elsewhere).
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not logs["kling"].unanswered("r0") and rendering_on_r0():
                    time.sleep(0.005)
                deadline = time.monotonic() + 10
                while not logs["kling"].unanswered("r0") and time.monotonic() < deadline:
                    time.sleep(0.005)
                waited = time.monotonic() - (began + marks["half created"])
                replicas[0].kill()
                killed_at = time.monotonic()
                cut_off = [poll for log in logs.values() for poll in log.unanswered("r0")]
                for log in logs.values():
                    log.forget_connections()
                unfinished = query(
                    pg_database, "SELECT count(*) AS n FROM tasks WHERE id = ANY($1) AND status <> 'completed'", ids
                )[0]["n"]
                rendering = rendering_on_r0()
                ids += list(pool.map(create, range(TOTAL // 2, TOTAL)))
            marks["killed"] = killed_at - began
            marks["all created"] = time.monotonic() - began
            print(
                f"at the kill: {unfinished} of {len(ids) // 2} tasks unfinished, {len(cut_off)} polls of the killed "
                f"replica in flight, {rendering} renders running on it"
            )
            recent = Counter(poll.replica for poll in logs["kling"].polls if killed_at - 5 < poll.start < killed_at)
            print(f"waited {waited:.1f} s for a poll of the killed replica; Kling polls in the 5 s before: {recent}")
            assert cut_off, "the killed replica had no poll in flight: the lease check below would test nothing"
            assert unfinished >= 20, "most tasks had finished before the kill: it tested little"
            alive = replicas[1:]

            # Every task (and every capped one) completes, on the two replicas left.
            for future in cap_done:
                future.result(timeout=150)
            cap_pool.shutdown()
            marks["capped done"] = time.monotonic() - began
            every = ids + cap_ids
            deadline = time.monotonic() + 180
            while True:
                rows = query(pg_database, "SELECT id, status FROM tasks WHERE id = ANY($1)", every)
                by_status = Counter(row["status"] for row in rows)
                assert by_status.get("failed", 0) == 0, [row["id"] for row in rows if row["status"] == "failed"]
                if by_status.get("completed", 0) == len(every):
                    break
                assert time.monotonic() < deadline, by_status
                time.sleep(0.5)
            marks["all completed"] = time.monotonic() - began

            # Exactly once: one reservation and one settlement each (charged once), one upstream task each.
            ledger: defaultdict[str, list[str]] = defaultdict(list)
            for row in query(pg_database, "SELECT task_id, kind FROM ledger WHERE task_id = ANY($1)", every):
                ledger[row["task_id"]].append(row["kind"])
            for video_id in every:
                assert sorted(ledger[video_id]) == ["reserve", "settle"], (video_id, ledger[video_id])
            kling_ids = [video_id for video_id, kind in zip(ids, kinds, strict=True) if kind == "kling"]
            assert Counter(task.external_task_id for task in kling.tasks.values()) == Counter(kling_ids)
            assert Counter(task.external_task_id for task in capped.tasks.values()) == Counter(cap_ids)
            wan_prompts = [f"wan {index}" for index, kind in enumerate(kinds) if kind == "wan"]
            assert Counter(task.prompt for task in wan.tasks.values()) == Counter(wan_prompts)

            # Never two polls of one task at once; none of a task the killed replica was polling until its lease
            # could have lapsed (it was taken at most moments before the poll and renewed every LEASE_S / 3).
            by_upstream = {"kling": kling.tasks, "capped": capped.tasks}
            for name, log in logs.items():
                per_task: defaultdict[str, list[Poll]] = defaultdict(list)
                for poll in log.polls:
                    known = by_upstream.get(name, {})
                    task = next((t.task_id for t in known.values() if t.external_task_id == poll.task), poll.task)
                    per_task[task].append(poll)
                for task, polls in per_task.items():
                    polls.sort(key=lambda poll: poll.start)
                    for before, after in itertools.pairwise(polls):
                        assert after.start >= given_up(before, killed_at), f"{name} {task}: {before} and {after}"
                for poll in cut_off:
                    later = [p for p in per_task.get(poll.task, []) if p.start > poll.start]
                    if later:
                        assert later[0].start >= poll.start + LEASE_S / 2, (poll, later[0])
            # Kling called back on each change: the replicas alive took the calls (200); the killed one's never came.
            called_back = Counter(status for _url, status, _at in kling.callbacks_sent + capped.callbacks_sent)
            print(f"callbacks answered by status (None: the replica was gone): {dict(called_back)}")
            assert called_back[200] >= KLING_TASKS and set(called_back) <= {200, None}, called_back
            polled_by = Counter(poll.replica for log in logs.values() for poll in log.polls)
            print(f"polls by replica: {dict(polled_by)}")
            assert {"r0", "r1", "r2"} <= set(polled_by)
            # The only polls whose sender is unknown are the killed replica's, cut off as they arrived.
            unknown = [poll for log in logs.values() for poll in log.polls if poll.replica is None]
            assert all(killed_at - 1 < poll.start < killed_at + 2 for poll in unknown), unknown

            # max_in_flight = 2 across the replicas: 2 of the 20 racing submits got through at first; upstream
            # never held more than 2 of the channel's tasks unfinished, and did hold 2.
            assert sorted(cap_first) == [200] * CAP + [429] * (CAP_SUBMITS - CAP), cap_first
            spans = [(task.created_at / 1000, task.finished_at or float("inf")) for task in capped.tasks.values()]
            assert most_at_once(spans) == CAP, spans

            # Every video from every replica left, streamed (whole, and a Range), the same bytes as in S3; no
            # render output is left in storage.
            objects = s3.client()  # boto3, not vidgate's client; one for all (thread-safe)

            def served(video_id: str) -> None:
                stored = objects.get_object(Bucket=bucket, Key=f"{PREFIX}/tasks/{video_id}/video.mp4")["Body"].read()
                assert stored[4:8] == b"ftyp"
                for replica in alive:
                    url = f"{replica.url}/v1/videos/{video_id}/content"
                    whole = httpx.get(url, headers=headers, timeout=30)
                    assert whole.status_code == 200 and whole.content == stored, (video_id, whole.status_code)
                    part = httpx.get(url, headers={**headers, "Range": "bytes=100-1123"}, timeout=30)
                    assert part.status_code == 206 and part.content == stored[100:1124], (video_id, part.status_code)

            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(served, every))
            marks["served (stream)"] = time.monotonic() - began
            assert s3.keys(bucket, f"{PREFIX}/local/") == []

            # A fourth replica, on a fresh machine, with content_redirect: a 302 to a presigned URL of each video.
            port = free_port()
            config = replica_config(tmp_path / "r3", port, pg_database, s3, bucket, channels, redirect=True)
            redirecting = Server(config=config, port=port, log=tmp_path / "r3.log")
            redirecting.start()
            replicas.append(redirecting)

            def redirected(video_id: str) -> None:
                answer = httpx.get(f"{redirecting.url}/v1/videos/{video_id}/content", headers=headers, timeout=30)
                assert answer.status_code == 302, (video_id, answer.status_code)
                location = answer.headers["location"]
                assert location.startswith(f"{s3.endpoint}/{bucket}/{PREFIX}/tasks/{video_id}/video.mp4?")
                fetched = httpx.get(location, timeout=30)
                assert fetched.status_code == 200 and fetched.content[4:8] == b"ftyp"

            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(redirected, every))
            marks["served (redirect)"] = time.monotonic() - began

            # A minute after the first burst its requests have left the window: 60 of 90 again, on two replicas.
            time.sleep(max(0.0, first_burst_at + 61 - time.monotonic()))
            second_burst = rpm_burst(rotation, rpm_key)
            assert second_burst == {200: RPM, 429: RPM_REQUESTS - RPM}, second_burst
            marks["done"] = time.monotonic() - began
            print("timeline (s): " + ", ".join(f"{name} {at:.1f}" for name, at in marks.items()))
        finally:
            for replica in replicas:
                replica.stop()
