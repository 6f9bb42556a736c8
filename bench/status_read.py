"""Benchmark, run by hand: status reads vs a bare Starlette endpoint, and the local render time.

    .venv/bin/python bench/status_read.py [--seconds 10] [--connections 50] [--workers N]

Starts, on 127.0.0.1, one vidgate (SQLite, local provider) and one bare Starlette app under the same
uvicorn settings (one process each unless --workers, httptools + uvloop when installed), loads each with wrk
(`apt-get install wrk`) and prints requests/s with p50/p99 latency. Then it times a 5 s 1280x720
`vidgate-local` t2v from submit to completed, and the bare render of the same spec.
"""

from __future__ import annotations

import argparse
import os
import re
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

from tests.helpers import Server, free_port, write_config  # noqa: E402

BARE_APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def video(request):
        return JSONResponse({"id": request.path_params["vid"], "object": "video", "status": "completed",
                             "progress": 100, "model": "vidgate-local", "seconds": "4", "size": "1280x720"})

    app = Starlette(routes=[Route("/v1/videos/{vid}", video)])
    """
)


def wrk(
    url: str, *, seconds: int, connections: int, key: str | None = None, script: Path | None = None
) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms."""
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    if key:
        cmd[1:1] = ["-H", f"Authorization: Bearer {key}"]
    if script:
        cmd[1:1] = ["-s", str(script)]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error responses\n{text}")

    def pct(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="vidgate serve --workers N")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="vidgate-bench-"))
    port = free_port()
    server = Server(config=write_config(work, port=port), port=port, log=work / "server.log", workers=args.workers)
    server.start()
    bare_port = free_port()
    (work / "bare_app.py").write_text(BARE_APP)
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=work,
    )
    try:
        key = server.key("bench")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=60) as client:
            started = time.perf_counter()
            video = client.post(
                "/videos", data={"prompt": "a lighthouse on a cliff at dusk", "seconds": "5", "size": "1280x720"}
            ).json()
            while video["status"] not in ("completed", "failed"):
                time.sleep(0.02)
                video = client.get(f"/videos/{video['id']}").json()
            submit_to_done = time.perf_counter() - started
        for _ in range(50):
            if httpx.get(f"http://127.0.0.1:{bare_port}/v1/videos/x").status_code == 200:
                break
            time.sleep(0.1)

        # Warm both, then measure in turn (one core each is all this 2-core machine has for the server).
        wrk(f"{server.url}/v1/videos/{video['id']}", seconds=2, connections=args.connections, key=key)
        wrk(f"http://127.0.0.1:{bare_port}/v1/videos/{video['id']}", seconds=2, connections=args.connections)
        ours = wrk(f"{server.url}/v1/videos/{video['id']}", seconds=args.seconds, connections=args.connections, key=key)
        base = wrk(
            f"http://127.0.0.1:{bare_port}/v1/videos/{video['id']}", seconds=args.seconds, connections=args.connections
        )

        from vidgate.render import RenderSpec, render

        spec = RenderSpec(
            width=1280, height=720, seconds=5, prompt="a lighthouse on a cliff at dusk", seed=0, mode="t2v"
        )
        t0 = time.perf_counter()
        render(spec, str(work / "bare.mp4"))
        bare_render = time.perf_counter() - t0

        print(f"machine: {os.cpu_count()} cores; wrk -c {args.connections} -d {args.seconds}s; workers {args.workers}")
        print(f"GET /v1/videos/{{id}} (vidgate):  {ours[0]:9.0f} req/s  p50 {ours[1]:6.2f} ms  p99 {ours[2]:6.2f} ms")
        print(f"bare Starlette JSON endpoint:    {base[0]:9.0f} req/s  p50 {base[1]:6.2f} ms  p99 {base[2]:6.2f} ms")
        print(f"ratio vidgate / bare:            {ours[0] / base[0]:9.2%}")
        print(
            f"vidgate-local 5 s 1280x720 t2v:  submit→completed {submit_to_done:.2f} s; "
            f"render alone {bare_render:.2f} s"
        )
    finally:
        bare.terminate()
        bare.wait()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
