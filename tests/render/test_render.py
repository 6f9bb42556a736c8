"""vidgate.render: every output is opened with PyAV and checked against the contract."""

from __future__ import annotations

import dataclasses
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidgate.render import RenderError, RenderSpec, render
from vidgate.render.caption import clean_text, wrap
from vidgate.render.motion import cover_fit

FPS = 24


@dataclass(frozen=True)
class Clip:
    """What a rendered MP4 holds, as decoded by PyAV."""

    codec: str
    profile: str | None
    pix_fmt: str
    width: int
    height: int
    frames: list[np.ndarray]
    video_seconds: float
    container_seconds: float
    audio_codec: str | None
    audio_rate: int | None
    audio: np.ndarray | None
    moov_first: bool
    metadata: dict[str, str]


def read_clip(path: Path) -> Clip:
    """Decode every video frame (as RGB) and the audio of an MP4."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video)]
        assert video.duration is not None and video.time_base is not None
        assert container.duration is not None
        audio_stream = container.streams.audio[0] if container.streams.audio else None
        clip = Clip(
            codec=video.codec_context.name,
            profile=video.codec_context.profile,
            pix_fmt=video.codec_context.pix_fmt or "",
            width=video.codec_context.width,
            height=video.codec_context.height,
            frames=frames,
            video_seconds=float(video.duration * video.time_base),
            container_seconds=container.duration / av.time_base,
            audio_codec=audio_stream.codec_context.name if audio_stream else None,
            audio_rate=audio_stream.codec_context.sample_rate if audio_stream else None,
            audio=None,
            moov_first=False,
            metadata={**container.metadata, **{k: v for s in container.streams for k, v in s.metadata.items()}},
        )
    data = path.read_bytes()
    audio = _decode_audio(path) if clip.audio_codec else None
    return dataclasses.replace(clip, audio=audio, moov_first=data.find(b"moov") < data.find(b"mdat"))


def _decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        chunks = [frame.to_ndarray() for frame in container.decode(container.streams.audio[0])]
    samples: np.ndarray = np.concatenate(chunks, axis=1)
    return samples


def spec(**changes: object) -> RenderSpec:
    base = RenderSpec(width=160, height=96, seconds=1, prompt="a red fox in the snow", seed=7, mode="t2v")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def render_clip(tmp_path: Path, the_spec: RenderSpec, name: str = "out.mp4") -> Clip:
    out = tmp_path / name
    render(the_spec, str(out))
    assert not Path(str(out) + ".part").exists()
    clip = read_clip(out)
    assert_contract(clip, the_spec)
    return clip


def assert_contract(clip: Clip, the_spec: RenderSpec) -> None:
    assert clip.codec == "h264"
    assert clip.profile in ("High", "Main")
    assert clip.pix_fmt == "yuv420p"
    assert (clip.width, clip.height) == (the_spec.width, the_spec.height)
    assert len(clip.frames) == the_spec.seconds * FPS
    assert all(frame.shape == (the_spec.height, the_spec.width, 3) for frame in clip.frames)
    assert abs(clip.video_seconds - the_spec.seconds) <= 1 / FPS
    assert abs(clip.container_seconds - the_spec.seconds) <= 1 / FPS
    assert clip.moov_first, "moov must precede mdat (+faststart)"
    assert "creation_time" not in clip.metadata
    assert "encoder" not in clip.metadata
    if the_spec.audio or the_spec.audio_path:
        assert clip.audio_codec == "aac"
        assert clip.audio_rate == 48_000
    else:
        assert clip.audio_codec is None


def solid_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (300, 200)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def write_wav(path: Path, seconds: float, rate: int = 22_050, hz: float = 440.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * hz * t) * 12_000).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def mean_color(frame: np.ndarray) -> np.ndarray:
    # The top 60% only: the bottom carries the caption band.
    top: np.ndarray = frame[: frame.shape[0] * 6 // 10].reshape(-1, 3).mean(axis=0)
    return top


# -- t2v -------------------------------------------------------------------------------------------


def test_t2v_meets_the_contract_and_moves(tmp_path: Path) -> None:
    clip = render_clip(tmp_path, spec(seconds=2))
    first, last = clip.frames[0].astype(int), clip.frames[-1].astype(int)
    assert np.abs(first - last).mean() > 1.0, "the scene should animate"
    assert first.std() > 5, "the frame should not be flat"


@pytest.mark.parametrize(("width", "height"), [(720, 1280), (64, 64), (832, 480), (1920, 64)])
def test_t2v_odd_shapes(tmp_path: Path, width: int, height: int) -> None:
    render_clip(tmp_path, spec(width=width, height=height))


def test_t2v_720p_five_seconds(tmp_path: Path) -> None:
    render_clip(tmp_path, spec(width=1280, height=720, seconds=5))


@pytest.mark.parametrize(
    "prompt",
    [
        "一只红色的狐狸在雪地里奔跑\uff0c电影感光线",
        "مرحبا بالعالم",
        "emoji 🦊🎬 and\ttabs\nand newlines\x00\x07",
        "lone surrogate \ud800 here",
        "word " * 400,
        "x" * 500,
        "",
        "   ",
    ],
)
def test_t2v_any_prompt_renders(tmp_path: Path, prompt: str) -> None:
    render_clip(tmp_path, spec(prompt=prompt))


def test_caption_is_drawn(tmp_path: Path) -> None:
    captioned = render_clip(tmp_path, spec(prompt="HELLO WORLD"), "a.mp4").frames[0]
    bare = render_clip(tmp_path, spec(prompt=" "), "b.mp4").frames[0]
    # Same seed and a blank prompt change the palette (the prompt seeds it), so compare the band's texture:
    # white text on a dark band has far more contrast than the plain ground.
    band = slice(captioned.shape[0] * 3 // 4, None)
    assert captioned[band].std() > bare[band].std() + 10


def test_wrap_breaks_cjk_and_long_words_and_ellipsizes() -> None:
    from PIL import ImageFont

    font = ImageFont.load_default(size=20)
    lines = wrap("一只红色的狐狸在雪地里奔跑" * 3, font, 120, 3)
    assert 1 < len(lines) <= 3
    assert all(font.getlength(line) <= 120 for line in lines)
    assert lines[-1].endswith("…")
    assert wrap("a b c", font, 500, 2) == ["a b c"]
    words = wrap("alpha beta gamma delta epsilon zeta eta theta", font, 110, 2)
    assert len(words) == 2 and words[0] == "alpha beta" and words[1].endswith("…")
    assert clean_text("  tabs\tand\nnew\x00lines\u200b  ") == "tabs and newlines"


# -- i2v / kf2v ------------------------------------------------------------------------------------


def test_i2v_pans_over_the_image(tmp_path: Path) -> None:
    image = tmp_path / "halves.png"
    pixels = np.zeros((200, 300, 3), dtype=np.uint8)
    pixels[:, :150] = (220, 30, 30)
    pixels[:, 150:] = (30, 30, 220)
    Image.fromarray(pixels).save(image)
    clip = render_clip(tmp_path, spec(mode="i2v", first_image=str(image), seconds=2, width=160, height=96))
    frame = clip.frames[0].astype(int)
    left, right = frame[:40, :20].mean(axis=(0, 1)), frame[:40, -20:].mean(axis=(0, 1))
    assert left[0] > left[2] + 100, "left edge should be red"
    assert right[2] > right[0] + 100, "right edge should be blue"
    assert np.abs(clip.frames[0].astype(int) - clip.frames[-1].astype(int)).mean() > 0.5, "the camera should move"


@pytest.mark.parametrize("mode_size", [(96, 160), (832, 480)])
def test_i2v_cover_fits_any_aspect(tmp_path: Path, mode_size: tuple[int, int]) -> None:
    width, height = mode_size
    image = solid_image(tmp_path / "wide.jpg", (20, 200, 40), size=(1000, 100))
    clip = render_clip(tmp_path, spec(mode="i2v", first_image=str(image), width=width, height=height))
    # Cover-fit: no letterbox bars, the whole frame is the image's green.
    top_rows = clip.frames[0][: height // 2]
    assert top_rows[..., 1].min() > 150


def test_kf2v_goes_from_first_to_last(tmp_path: Path) -> None:
    red = solid_image(tmp_path / "red.jpg", (220, 20, 20))
    blue = tmp_path / "blue.png"
    Image.new("RGBA", (200, 300), (20, 20, 220, 255)).save(blue)
    clip = render_clip(tmp_path, spec(mode="kf2v", first_image=str(red), last_image=str(blue), seconds=2))
    start, middle, end = (mean_color(clip.frames[i]) for i in (0, len(clip.frames) // 2, -1))
    assert start[0] > 180 and start[2] < 60
    assert end[2] > 180 and end[0] < 60
    assert 60 < middle[0] < 180 and 60 < middle[2] < 180


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, :100] = (230, 20, 20)
    pixels[:, 100:] = (20, 20, 230)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display, so red ends up on top
    image = tmp_path / "sideways.jpg"
    Image.fromarray(pixels).save(image, exif=exif, quality=95)
    clip = render_clip(tmp_path, spec(mode="i2v", first_image=str(image), prompt="", width=96, height=160))
    frame = clip.frames[0].astype(int)
    top, bottom = frame[:30].mean(axis=(0, 1)), frame[-30:].mean(axis=(0, 1))
    assert top[0] > top[2] + 100
    assert bottom[2] > bottom[0] + 100


def test_cover_fit_any_sizes() -> None:
    # (100, 200) -> (114, 188) once put a box edge at -1e-15, which Pillow rejects.
    assert cover_fit(Image.new("RGB", (100, 200)), (114, 188)).size == (114, 188)
    rng = np.random.default_rng(0)
    for _ in range(300):
        source = (int(rng.integers(1, 400)), int(rng.integers(1, 400)))
        canvas = (int(rng.integers(1, 120)) * 2, int(rng.integers(1, 120)) * 2)
        assert cover_fit(Image.new("RGB", source), canvas).size == canvas


def test_large_jpeg_is_read_at_reduced_scale(tmp_path: Path) -> None:
    image = solid_image(tmp_path / "big.jpg", (200, 120, 40), size=(4000, 3000))
    clip = render_clip(tmp_path, spec(mode="i2v", first_image=str(image), prompt=""))
    assert abs(mean_color(clip.frames[0]) - (200, 120, 40)).max() < 12


def test_transparent_image_is_flattened(tmp_path: Path) -> None:
    image = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (255, 255, 255, 0)).save(image)
    clip = render_clip(tmp_path, spec(mode="i2v", first_image=str(image)))
    assert mean_color(clip.frames[0]).max() < 40


# -- audio -----------------------------------------------------------------------------------------


def test_no_audio_unless_asked(tmp_path: Path) -> None:
    assert render_clip(tmp_path, spec(audio=False)).audio_codec is None


def test_synthesised_audio(tmp_path: Path) -> None:
    clip = render_clip(tmp_path, spec(audio=True, seconds=2))
    assert clip.audio is not None
    assert abs(clip.audio.shape[1] / 48_000 - 2) <= 1 / FPS
    assert 0.01 < float(np.sqrt(np.mean(clip.audio**2))) < 0.5


@pytest.mark.parametrize("wav_seconds", [0.5, 3.0])
def test_audio_from_file_is_fitted_to_the_duration(tmp_path: Path, wav_seconds: float) -> None:
    wav = write_wav(tmp_path / "tone.wav", wav_seconds)
    clip = render_clip(tmp_path, spec(audio_path=str(wav), seconds=2))
    assert clip.audio is not None
    assert abs(clip.audio.shape[1] / 48_000 - 2) <= 1 / FPS
    level = np.abs(clip.audio).max(axis=0)
    # Sound at the start; a short file is padded with silence.
    assert level[: 48_000 // 4].max() > 0.1
    if wav_seconds < 2:
        assert level[48_000 : 2 * 48_000 - 4_096].max() < 0.01


def test_audio_file_wins_over_synthesis(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "quiet.wav", 2.0, hz=1_000.0)
    clip = render_clip(tmp_path, spec(audio=True, audio_path=str(wav), seconds=1))
    assert clip.audio is not None
    spectrum = np.abs(np.fft.rfft(clip.audio[0, 4_096:40_000]))
    peak_hz = np.argmax(spectrum) * 48_000 / (40_000 - 4_096)
    assert abs(peak_hz - 1_000) < 20


# -- determinism -----------------------------------------------------------------------------------


def test_same_spec_same_bytes_and_seed_matters(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav", 1.0)
    base = spec(audio=True)
    render(base, str(tmp_path / "a.mp4"))
    render(base, str(tmp_path / "b.mp4"))
    render(spec(audio=True, seed=8), str(tmp_path / "c.mp4"))
    render(spec(audio=True, prompt="a blue whale"), str(tmp_path / "d.mp4"))
    render(spec(audio_path=str(wav)), str(tmp_path / "e.mp4"))
    render(spec(audio_path=str(wav)), str(tmp_path / "f.mp4"))
    a, b, c, d, e, f = ((tmp_path / f"{name}.mp4").read_bytes() for name in "abcdef")
    assert a == b
    assert e == f
    assert a != c
    assert a != d


def test_i2v_and_kf2v_are_deterministic(tmp_path: Path) -> None:
    red = solid_image(tmp_path / "red.jpg", (220, 20, 20))
    blue = solid_image(tmp_path / "blue.jpg", (20, 20, 220))
    for mode in ("i2v", "kf2v"):
        the_spec = spec(mode=mode, first_image=str(red), last_image=str(blue))
        render(the_spec, str(tmp_path / "a.mp4"))
        render(the_spec, str(tmp_path / "b.mp4"))
        assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


# -- progress --------------------------------------------------------------------------------------


def test_progress_reaches_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    render(spec(seconds=2), str(tmp_path / "out.mp4"), lambda done, total: calls.append((done, total)))
    assert calls[-1] == (48, 48)
    dones = [done for done, _ in calls]
    assert dones == sorted(set(dones))
    assert all(total == 48 for _, total in calls)
    assert len(calls) <= 48 // 6 + 1
    assert 24 in dones, "multiples of 24 are reported (the local provider samples those)"


def test_progress_exception_aborts_without_a_file(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done >= 12:
            raise Stop

    out = tmp_path / "out.mp4"
    with pytest.raises(Stop):
        render(spec(seconds=2, audio=True), str(out), stop)
    assert list(tmp_path.iterdir()) == []


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 161}, "width must be even"),
        ({"height": 95}, "height must be even"),
        ({"width": 62}, "width must be between"),
        ({"height": 1922}, "height must be between"),
        ({"seconds": 0}, "seconds must be between"),
        ({"seconds": 21}, "seconds must be between"),
        ({"seed": -1}, "seed"),
        ({"mode": "v2v"}, "mode"),
        ({"mode": "i2v"}, "first_image"),
        ({"mode": "kf2v", "first_image": "x.png"}, "last_image"),
        ({"width": 160.0}, "width must be an integer"),
    ],
)
def test_invalid_spec(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(spec(**changes), str(tmp_path / "out.mp4"))
    assert list(tmp_path.iterdir()) == []


def test_unreadable_inputs(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    good = solid_image(tmp_path / "good.png", (1, 2, 3))
    out = tmp_path / "out.mp4"
    cases = [
        spec(mode="i2v", first_image=str(junk)),
        spec(mode="i2v", first_image=str(tmp_path / "missing.png")),
        spec(mode="kf2v", first_image=str(good), last_image=str(junk)),
        spec(audio_path=str(junk)),
        spec(audio_path=str(good)),
        spec(audio_path=str(tmp_path / "missing.wav")),
    ]
    for case in cases:
        with pytest.raises(RenderError):
            render(case, str(out))
        assert not out.exists()
        assert not Path(str(out) + ".part").exists()
