"""Read photos into RGB arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kiosk.errors import ImageError


def read_rgb(path: Path) -> np.ndarray:
    """Load any image Pillow can open (grey, palette, RGBA, extension-less) as HxWx3 uint8 RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}); replace or remove the file") from None
