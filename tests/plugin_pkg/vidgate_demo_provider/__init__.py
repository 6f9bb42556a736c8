"""A provider from outside vidgate: one model it renders itself, a typed param, a channel key, an extra output.

Registered only by its distribution's entry point (`[vidgate.providers] demo = ...`); vidgate's own files name
it nowhere. It renders a small H.264 MP4 (solid colour, hue from the `hue` param) with PyAV, and reports a
PNG "last_frame" as an extra output.
"""

from __future__ import annotations

import asyncio
import colorsys
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from PIL import Image

from vidgate.config import Settings
from vidgate.errors import UpstreamRejected
from vidgate.providers.base import SEED, Credentials, ModelSpec, Param, Progress, Provider, Submitted, VideoRequest

FPS = 24
MODEL = ModelSpec(
    name="demo-video",
    provider="demo",
    modes=frozenset({"t2v"}),
    seconds=(1, 2),
    default_seconds=1,
    sizes=("64x64", "128x64"),
    default_size="64x64",
    params={"hue": Param("int", low=0, high=359, description="Colour of the video, in degrees."), "seed": SEED},
    deadline_s=60,
    poll_hint_ms=100,
    # A demo's price, stated like any provider's: USD per second of output.
    price=Decimal("0.01"),
    description="A plugin's own renderer",
)


def from_settings(settings: Settings, http: httpx.AsyncClient) -> DemoProvider:
    return DemoProvider(http, settings.media_dir / "demo")


class DemoProvider(Provider):
    name = "demo"
    channel_keys = frozenset({"studio"})

    def __init__(self, http: httpx.AsyncClient, folder: Path) -> None:
        super().__init__(http)
        self.folder = folder

    def models(self) -> Sequence[ModelSpec]:
        return [MODEL]

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        if not creds.extra.get("studio"):
            raise UpstreamRejected("the demo channel needs a studio", param="model")
        await asyncio.to_thread(render, self.folder / f"{task_id}.mp4", req, creds.extra["studio"])
        return Submitted(upstream_id=task_id)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        # The channel key comes back from the task row (sealed with the rest of the credentials).
        if creds.extra.get("studio") != "north":
            return Progress(state="failed", error_code="generation_failed", error_message="demo: no studio on poll")
        video = self.folder / f"{upstream_id}.mp4"
        if not video.exists():
            return Progress(state="failed", error_code="generation_failed", error_message="demo: no such render")
        return Progress(
            state="completed", progress=100, video_path=video, extras={"last_frame": f"demo://{upstream_id}.png"}
        )

    async def download_extra(self, name: str, url: str, creds: Credentials, dest: Path) -> None:
        # Not fetched: this provider has the frame at hand.
        source = self.folder / url.removeprefix("demo://")
        await asyncio.to_thread(dest.write_bytes, source.read_bytes())


def render(path: Path, req: VideoRequest, studio: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    hue = int(req.extras.get("hue", 0))
    red, green, blue = (int(255 * c) for c in colorsys.hsv_to_rgb(hue / 360, 0.8, 0.9))
    frame_rgb = np.full((req.height, req.width, 3), (red, green, blue), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = req.width, req.height, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"preset": "ultrafast"}
        stream.metadata["comment"] = f"studio={studio}"
        for index in range(req.seconds * FPS):
            frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    Image.fromarray(frame_rgb).save(path.with_suffix(".png"))
