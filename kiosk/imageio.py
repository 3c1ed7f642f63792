"""The one reader of image files (enrolment photos, ``kiosk identify``, the replay of a folder of images): any
format Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF, PGM/PPM, ...) plus HEIC/HEIF through pillow-heif, found by
content, never by the file's extension; turned upright by its EXIF orientation, as the phone that took it meant it;
as HxWx3 uint8 RGB. A file that cannot be read raises :class:`ImageError` naming the file, the reason and what to do.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kiosk.errors import ImageError

_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16-bit TIFF/PNG, 32-bit integer or float
_NOT_PHOTOS = (  # what else is found in a folder of photos, by its first bytes
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an Office document"),
    (b"<!DOCTYPE", "a web page"),
    (b"<html", "a web page"),
    (b"{\\rtf", "an RTF document"),
)


@cache
def heif_support() -> bool:
    """Whether HEIC/HEIF files can be read (pillow-heif registered as a Pillow plugin, once per process)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def is_heif(head: bytes) -> bool:
    """Whether the first bytes of a file are those of a HEIF container (HEIC photos of phones)."""
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def is_image(path: Path) -> bool:
    """Whether the file's content is an image :func:`read_rgb` knows (only its header is read)."""
    heif_support()
    try:
        with Image.open(path):
            return True
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False


def read_rgb(path: Path) -> np.ndarray:
    """The image in ``path`` upright (EXIF orientation applied) as HxWx3 uint8 RGB: grey, palette, RGBA, CMYK and
    16-bit images are converted; a multi-frame file gives its first frame."""
    heif_support()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a 108 MP phone photo is a photo
            with Image.open(path) as img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                return _to_rgb(upright)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not a photo") from None
    except PermissionError:
        raise ImageError(f"{path}: not allowed to read it (permission denied): check its owner and mode") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: {_unknown_kind(path)}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: too many pixels to be a photo ({exc}); use a smaller copy") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: damaged or incomplete image ({exc}); copy or export it again") from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in _WIDE_MODES:
        values = np.asarray(img, dtype=np.float32)
        if values.max(initial=0) > 255:
            values = values / 257  # 16-bit range to 8-bit
        grey = np.clip(values, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.dstack([grey, grey, grey]))
    return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def _unknown_kind(path: Path) -> str:
    """Why Pillow did not recognise the file, said for the person who has to replace it."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not head:
        return "an empty file (0 bytes): copy the photo again"
    if is_heif(head):
        return ("a HEIC/HEIF photo, and pillow-heif is not installed to read it: install the kiosk's locked "
                "requirements, or save the photo as JPEG")
    for magic, kind in _NOT_PHOTOS:
        if head.lstrip().lower().startswith(magic.lower()):
            return f"{kind}, not a photo: save the photo itself as JPEG"
    return "not an image file (JPEG, PNG, WebP, HEIC, BMP or TIFF expected): replace it with the photo"
