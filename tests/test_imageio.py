"""kiosk.imageio, the one image reader: upright by EXIF, HEIC/WebP/BMP/TIFF by content, 16-bit, and a reason for
every file it cannot read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_IMAGES, need
from PIL import Image

from kiosk.camera.replay import ReplaySource
from kiosk.errors import ImageError
from kiosk.imageio import heif_support, read_rgb


@pytest.fixture
def upright() -> np.ndarray:
    with Image.open(need(TEST_IMAGES / "obama.jpg")) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize(("orientation", "stored_as"), [
    (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
    (2, Image.Transpose.FLIP_LEFT_RIGHT),
])
def test_exif_orientation_turns_the_photo_upright(
    tmp_path: Path, upright: np.ndarray, orientation: int, stored_as: Image.Transpose
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(upright).transpose(stored_as).save(tmp_path / "p.png", exif=exif.tobytes())
    assert np.array_equal(read_rgb(tmp_path / "p.png"), upright)


@pytest.mark.parametrize(("kind", "name"), [
    ("WEBP", "p.WEBP"), ("HEIF", "p.heic"), ("BMP", "p.Bmp"), ("TIFF", "p.tif"), ("PNG", "no-extension"),
    ("JPEG", "wrong-extension.png"),
])
def test_formats_are_read_by_content(tmp_path: Path, upright: np.ndarray, kind: str, name: str) -> None:
    if kind == "HEIF" and not heif_support():
        pytest.fail("pillow-heif is in locks/dev.txt and the device locks: run scripts/bootstrap")
    Image.fromarray(upright).save(tmp_path / name, kind, **({"quality": 95} if kind in ("WEBP", "HEIF") else {}))
    rgb = read_rgb(tmp_path / name)
    assert rgb.shape == upright.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - upright).mean() < 4  # lossy formats are close, lossless ones equal


def test_16_bit_and_greyscale_become_8_bit_rgb(tmp_path: Path, upright: np.ndarray) -> None:
    grey = np.asarray(Image.fromarray(upright).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "16.png")
    Image.fromarray(grey).save(tmp_path / "8.pgm")
    for path in (tmp_path / "16.png", tmp_path / "8.pgm"):
        rgb = read_rgb(path)
        assert rgb.shape == (*grey.shape, 3) and np.array_equal(rgb[..., 1], grey)


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "an empty file (0 bytes)"),
    (b"%PDF-1.7 ...", "a PDF document, not a photo"),
    (b"PK\x03\x04 word", "a ZIP archive or an Office document, not a photo"),
    (b"hello", "not an image file (JPEG, PNG, WebP, HEIC, BMP or TIFF expected)"),
    (None, "damaged or incomplete image"),
])
def test_an_unreadable_file_is_named_with_the_reason(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(content if content is not None else need(TEST_IMAGES / "obama.jpg").read_bytes()[:5000])
    with pytest.raises(ImageError, match="^" + re.escape(f"{path}: {reason}")):
        read_rgb(path)
    with pytest.raises(ImageError, match="a folder, not a photo"):
        read_rgb(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        read_rgb(tmp_path / "nope.jpg")


def test_the_replay_of_a_folder_reads_through_the_same_reader(tmp_path: Path, upright: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "a.jpg", quality=95,
                                                                       exif=exif.tobytes())
    Image.fromarray(upright).save(tmp_path / "b", "WEBP", lossless=True)  # no extension: sniffed
    with ReplaySource(tmp_path, loop=False) as source:
        frames = [source.read() for _ in range(2)]
    assert [f.rgb.shape for f in frames] == [upright.shape] * 2  # type: ignore[union-attr]
    assert np.array_equal(frames[1].rgb, upright)  # type: ignore[union-attr]


def test_a_heic_photo_without_pillow_heif_says_so(tmp_path: Path, upright: np.ndarray) -> None:
    """Where pillow-heif is missing (a hand-made install), a HEIC photo is named as such, with what to do."""
    import subprocess
    import sys

    if not heif_support():
        pytest.fail("pillow-heif is in locks/dev.txt and the device locks: run scripts/bootstrap")
    Image.fromarray(upright).save(tmp_path / "iphone.HEIC", "HEIF")
    code = ("import sys; sys.modules['pillow_heif'] = None\n"
            "from pathlib import Path\nfrom kiosk.imageio import read_rgb\n"
            f"try:\n    read_rgb(Path({str(tmp_path / 'iphone.HEIC')!r}))\nexcept Exception as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "a HEIC/HEIF photo, and pillow-heif is not installed to read it" in out
