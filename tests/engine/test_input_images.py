"""Input images are judged by their header before anything is decoded, and decoded at most once."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import flat_png, png_bytes
from vidgate import media
from vidgate.engine.inputs import check_media
from vidgate.errors import InvalidRequest
from vidgate.providers.base import MediaInput

ITEM = MediaInput(role="first_frame", field="input_reference", url="data:")


def write(tmp_path: Path, data: bytes, name: str = "in.png") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pillow_guard_is_aligned_with_ours() -> None:
    assert Image.MAX_IMAGE_PIXELS == media.MAX_IMAGE_PIXELS == 40_000_000


def test_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    path = write(tmp_path, flat_png(13000, 13000))  # ~480 KB on disk, 507 MB decoded
    started = time.monotonic()
    with pytest.raises(InvalidRequest) as refused:
        check_media(path, ITEM)
    assert time.monotonic() - started < 0.5
    assert refused.value.param == "input_reference" and "megapixels" in refused.value.message


@pytest.mark.parametrize("size", [(9000, 64), (64, 8193)])
def test_a_side_over_8192_px_is_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_media(write(tmp_path, flat_png(*size)), ITEM)
    assert refused.value.param == "input_reference"
    assert f"{size[0]}x{size[1]}" in refused.value.message and "8192" in refused.value.message


def test_just_over_40_megapixels_is_refused_by_our_check_too(tmp_path: Path) -> None:
    # Pillow only warns between 1x and 2x its limit; where warnings are not errors, our own check refuses.
    path = write(tmp_path, flat_png(8000, 5001))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(InvalidRequest) as refused:
            check_media(path, ITEM)
    assert "8000x5001" in refused.value.message and "40 megapixels" in refused.value.message


def test_large_image_under_the_limits_is_accepted(tmp_path: Path) -> None:
    assert check_media(write(tmp_path, flat_png(8192, 4880)), ITEM) == "image/png"


def test_an_image_is_opened_and_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[object] = []
    real_open = Image.open

    def counting_open(*args: object, **kwargs: object) -> Image.Image:
        opened.append(args[0])
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", counting_open)
    assert check_media(write(tmp_path, png_bytes(640, 360)), ITEM) == "image/png"
    assert len(opened) == 1


def test_truncated_image_is_still_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="PNG")
    with pytest.raises(InvalidRequest) as refused:
        check_media(write(tmp_path, buffer.getvalue()[: len(buffer.getvalue()) // 2]), ITEM)
    assert "not a readable image" in refused.value.message
