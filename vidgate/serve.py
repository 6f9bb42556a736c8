"""`vidgate serve --workers N`: N server processes on one port, under a small supervisor.

Each process binds its own listening socket with SO_REUSEPORT, so the kernel spreads new connections evenly
over them (with one shared socket, whichever process accepts first keeps most keep-alive connections, and a
second process adds little). Every process is a whole vidgate: it serves, polls (row leases keep two from
polling one task), renders and delivers webhooks. The supervisor imports no app: it starts the processes,
starts a new one when one dies, and on SIGTERM or SIGINT passes SIGTERM on and waits, within STOP_S, before
it kills what is left. A server process stops by itself when the supervisor is gone (kill -9 included).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("vidgate.serve")

# The whole tree is gone within this after SIGTERM (SPEC §4: in-flight requests get 10 s, then the background
# loops and renders stop); a process still running then is killed.
STOP_S = 14.0
# How often the supervisor looks for a process that died.
WATCH_S = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def supervise(*, workers: int, host: str, port: int, log_level: str, log_config: dict[str, Any]) -> int:
    """Run `workers` server processes on host:port until SIGTERM/SIGINT; the exit status."""
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    options = {"host": host, "port": port, "log_level": log_level, "log_config": log_config, "parent": os.getpid()}

    def start_one(index: int) -> BaseProcess:
        process = context.Process(target=serve_one, kwargs=options, name=f"vidgate-server-{index}")
        process.start()
        return process

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    processes = [start_one(index) for index in range(workers)]
    while not stopping.wait(WATCH_S):
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping.is_set():
                log.warning("server process %s exited with %s; starting another", process.pid, process.exitcode)
                processes[index] = start_one(index)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()  # SIGTERM: each stops as a single `vidgate serve` does
    deadline = time.monotonic() + STOP_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            log.warning("server process %s did not stop in time; killing it", process.pid)
            process.kill()
            process.join(1.0)
    return 0


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
    sock.bind((host, port))
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
