"""vidgate.media: probing rendered videos and making their preview images."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidgate import media
from vidgate.media import MediaError, Probe, _frames_at, make_spritesheet, make_thumbnail, probe
from vidgate.render import RenderSpec, render


def _render(folder: Path, name: str, width: int, height: int, seconds: int, audio: bool) -> Path:
    out = folder / name
    render(RenderSpec(width, height, seconds, "a lighthouse at dusk", 3, "t2v", audio=audio), str(out))
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "small_audio": _render(folder, "small.mp4", 160, 96, 2, audio=True),
        "hd": _render(folder, "hd.mp4", 1280, 720, 1, audio=False),
        "portrait": _render(folder, "portrait.mp4", 480, 832, 1, audio=False),
    }


def test_probe_rendered_video(videos: dict[str, Path]) -> None:
    info = probe(str(videos["small_audio"]))
    assert isinstance(info, Probe)
    assert abs(info.duration - 2.0) <= 1 / 24
    assert (info.width, info.height) == (160, 96)
    assert info.video_codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.has_audio is True
    assert info.audio_codec == "aac"
    assert info.fps == pytest.approx(24.0)


def test_probe_without_audio(videos: dict[str, Path]) -> None:
    info = probe(str(videos["hd"]))
    assert (info.width, info.height, info.has_audio, info.audio_codec) == (1280, 720, False, None)
    assert abs(info.duration - 1.0) <= 1 / 24


@pytest.mark.parametrize(
    ("name", "expected"), [("hd", (640, 360)), ("portrait", (369, 640)), ("small_audio", (160, 96))]
)
def test_thumbnail_is_webp_with_the_video_aspect(
    videos: dict[str, Path], tmp_path: Path, name: str, expected: tuple[int, int]
) -> None:
    out = tmp_path / "thumb.webp"
    make_thumbnail(str(videos[name]), str(out))
    with Image.open(out) as image:
        assert image.format == "WEBP"
        assert image.size == expected
        assert max(image.size) <= 640
        image.load()
        assert np.asarray(image.convert("L")).max() > 20, "a real frame, not a black image"
    assert not Path(str(out) + ".part").exists()


def test_thumbnail_comes_from_a_third_of_the_way_in(tmp_path: Path) -> None:
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (230, 10, 10)).save(red)
    Image.new("RGB", (64, 64), (10, 10, 230)).save(blue)
    video = tmp_path / "fade.mp4"
    spec = RenderSpec(160, 96, 6, "", 1, "kf2v", first_image=str(red), last_image=str(blue))
    render(spec, str(video))
    out = tmp_path / "thumb.webp"
    make_thumbnail(str(video), str(out))
    with Image.open(out) as image:
        r, _, b = np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0)
    # At 1/3 the cross-fade (held still for the first 12%) has started but red still dominates.
    assert r > b
    assert b > 30


@pytest.mark.parametrize(("name", "tile"), [("hd", (256, 144)), ("small_audio", (160, 96)), ("portrait", (148, 256))])
def test_spritesheet_is_a_jpeg_grid(videos: dict[str, Path], tmp_path: Path, name: str, tile: tuple[int, int]) -> None:
    out = tmp_path / "sprite.jpg"
    make_spritesheet(str(videos[name]), str(out))
    with Image.open(out) as image:
        assert image.format == "JPEG"
        assert image.size == (4 * tile[0], 3 * tile[1])


def test_frames_at_matches_sequential_decoding(tmp_path: Path) -> None:
    # 20 s with targets further apart than the seek threshold, so both seeking and decoding forward run.
    video = _render(tmp_path, "long.mp4", 64, 64, 20, audio=False)
    with av.open(str(video)) as container:
        every = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    times = [0.0, 0.5, 0.52, 7.0, 7.5, 19.9, 30.0]
    got = _frames_at(str(video), times)
    expected = [every[min(len(every) - 1, math.ceil(t * 24 - 0.5))] for t in times]
    for image, frame in zip(got, expected, strict=True):
        assert np.array_equal(np.asarray(image), frame)


def test_media_error_for_things_that_are_not_videos(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    png = tmp_path / "still.png"
    Image.new("RGB", (32, 32)).save(png)
    wav = tmp_path / "sound.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(b"\0\0" * 8000)
    for path in (text, png, wav, tmp_path / "missing.mp4"):
        with pytest.raises(MediaError):
            probe(str(path))
        with pytest.raises(MediaError):
            make_thumbnail(str(path), str(tmp_path / "t.webp"))
        with pytest.raises(MediaError):
            make_spritesheet(str(path), str(tmp_path / "s.jpg"))
    assert not (tmp_path / "t.webp").exists()
    assert not (tmp_path / "s.jpg").exists()


def test_extra_outputs_are_named_by_provider_name_and_url_suffix(tmp_path: Path) -> None:
    assert media.extra_file_name("last_frame", "https://cdn.example/x/frame.PNG?sig=1#a") == "extra-last_frame.png"
    assert media.extra_file_name("last_frame", "https://cdn.example/x/frame") == "extra-last_frame.bin"
    assert media.extra_file_name("../etc", "https://cdn.example/a.png") is None
    assert media.extra_file_name("Big", "https://cdn.example/a.png") is None
    (tmp_path / "extra-last_frame.png").write_bytes(b"x")
    (tmp_path / "extra-odd.exe").write_bytes(b"x")
    (tmp_path / "video.mp4").write_bytes(b"x")
    assert media.extra_files(tmp_path) == {"last_frame": tmp_path / "extra-last_frame.png"}
    assert media.extra_type("extra-last_frame.png") == "image/png" and media.extra_type("video.mp4") is None
