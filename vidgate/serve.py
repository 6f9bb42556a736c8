"""`vidgate serve --workers N`: N server processes on one port, under a small supervisor.

Each process binds its own listening socket with SO_REUSEPORT, so the kernel spreads new connections evenly
over them (with one shared socket, whichever process accepts first keeps most keep-alive connections, and a
second process adds little). Every process is a whole vidgate: it serves, polls (row leases keep two from
polling one task), renders and delivers webhooks. The supervisor imports no app (`vidgate serve` replaces
itself with `python -m vidgate.serve`, keeping its pid, once the schema is migrated): it starts the
processes, starts a new one when one dies, and on SIGTERM or SIGINT passes SIGTERM on and waits, within
STOP_S, before it kills what is left. A server process stops by itself when the supervisor is gone (kill -9
included).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

log = logging.getLogger("vidgate.serve")

# The whole tree is gone within this after SIGTERM (SPEC §4: in-flight requests get 10 s, then the background
# loops and renders stop); a process still running then is killed.
STOP_S = 14.0
# How often the supervisor looks for a process that died.
WATCH_S = 0.5
# A process gone this soon after it started failed to start; after this many such exits in a row, stop.
QUICK_EXIT_S = 10.0
MAX_QUICK_EXITS = 3
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def exec_supervisor(*, workers: int, host: str, port: int, log_level: str, log_config: dict[str, Any]) -> None:
    """Become the supervisor: this process (its pid kept) turns into a fresh, small interpreter."""
    sys.stdout.flush()
    sys.stderr.flush()
    args = ["--workers", str(workers), "--host", host, "--port", str(port), "--log-level", log_level]
    os.execv(sys.executable, [sys.executable, "-m", "vidgate.serve", *args, "--log-config", json.dumps(log_config)])


def supervise(*, workers: int, host: str, port: int, log_level: str, log_config: dict[str, Any]) -> int:
    """Run `workers` server processes on host:port until SIGTERM/SIGINT; the exit status."""
    stopping = threading.Event()
    command = [sys.executable, "-m", "vidgate.serve", "--one", "--host", host, "--port", str(port)]
    command += ["--log-level", log_level, "--log-config", json.dumps(log_config), "--parent", str(os.getpid())]

    def start_one() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command)

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    processes = [start_one() for _ in range(workers)]
    started = [time.monotonic()] * workers
    quick_exits, status = 0, 0
    while not stopping.wait(WATCH_S):
        for index, process in enumerate(processes):
            if process.poll() is None or stopping.is_set():
                continue
            # A process that cannot even start (the port taken, the database gone) is not started forever.
            quick_exits = quick_exits + 1 if time.monotonic() - started[index] < QUICK_EXIT_S else 0
            if quick_exits >= MAX_QUICK_EXITS:
                log.error("server processes keep exiting at startup (last status %s); stopping", process.returncode)
                stopping.set()
                status = 1
                break
            log.warning("server process %s exited with %s; starting another", process.pid, process.returncode)
            processes[index], started[index] = start_one(), time.monotonic()
    for process in processes:
        with contextlib.suppress(OSError):
            process.terminate()  # SIGTERM: each stops as a single `vidgate serve` does
    deadline = time.monotonic() + STOP_S
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            log.warning("server process %s did not stop in time; killing it", process.pid)
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1.0)
    return status


def serve_one(*, host: str, port: int, log_level: str, log_config: dict[str, Any], parent: int) -> None:
    """One server process: its own SO_REUSEPORT socket, the app built from $VIDGATE_CONFIG, uvicorn."""
    _stop_with(parent)
    import uvicorn

    from vidgate.app import SHUTDOWN_REQUESTS_S
    from vidgate.cli import worker_app

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"ERROR:     cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(1) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    config = uvicorn.Config(
        worker_app(),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=log_config,
        timeout_graceful_shutdown=SHUTDOWN_REQUESTS_S,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _stop_with(parent: int) -> None:
    """Get SIGTERM (a graceful stop) when the supervisor dies, however it died."""
    # A terminal's Ctrl-C reaches the whole process group: the supervisor turns it into one SIGTERM each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(prog="vidgate.serve", description="run by `vidgate serve --workers N`")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--one", action="store_true", help="be one server process (started by the supervisor)")
    parser.add_argument("--parent", type=int, default=0)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", required=True)
    parser.add_argument("--log-config", required=True)
    args = parser.parse_args()
    log_config = json.loads(args.log_config)
    if args.one:
        serve_one(host=args.host, port=args.port, log_level=args.log_level, log_config=log_config, parent=args.parent)
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    sys.exit(
        supervise(workers=args.workers, host=args.host, port=args.port, log_level=args.log_level, log_config=log_config)
    )


if __name__ == "__main__":
    main()
