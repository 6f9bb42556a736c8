"""The built-in renderer: real, deterministic H.264/AAC MP4s drawn on the CPU.

`render(spec, out_path, progress)` writes an MP4 of exactly spec.width x spec.height at spec.fps with
exactly spec.seconds * spec.fps frames: an animated scene captioned with the prompt (t2v), a Ken
Burns pan/zoom over an image (i2v) or a cross-fade between two images (kf2v), with an optional AAC
track. Equal specs produce byte-identical files.
"""

from __future__ import annotations

import contextlib
import os

from vidgate.render.audio import audio_track
from vidgate.render.encode import FrameSource, Progress, write_mp4
from vidgate.render.motion import StillMotion
from vidgate.render.scene import TextScene
from vidgate.render.spec import RenderError, RenderSpec, validate

__all__ = ["RenderError", "RenderSpec", "render"]


def render(spec: RenderSpec, out_path: str, progress: Progress | None = None) -> None:
    """Render `spec` to an MP4 at `out_path`; an exception from `progress` aborts without leaving a file."""
    validate(spec)
    # Inputs are read before anything is written, so a bad image or audio file fails fast.
    source: FrameSource = TextScene(spec) if spec.mode == "t2v" else StillMotion(spec)
    audio = audio_track(spec)
    partial = out_path + ".part"
    try:
        write_mp4(
            partial,
            source,
            size=(spec.width, spec.height),
            fps=spec.fps,
            frames=spec.frame_count,
            audio=audio,
            progress=progress,
        )
        os.replace(partial, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
