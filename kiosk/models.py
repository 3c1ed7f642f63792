"""Locate and load dlib's model files from the ``face_recognition_models`` distribution.

The package itself is never imported: its ``__init__`` imports ``pkg_resources``, which setuptools 81 and
newer no longer ship, and then exits the whole process. We only need the directory it installs.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

from kiosk.errors import ModelError
from kiosk_contract.gallery import MODEL_ID

SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = f"{MODEL_ID}.dat"


def models_dir() -> Path:
    """Return the folder holding dlib's ``.dat`` files (``KIOSK_MODELS_DIR`` overrides it)."""
    override = os.environ.get("KIOSK_MODELS_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the dlib model files are not installed: run `pip install face_recognition_models` "
            "or set KIOSK_MODELS_DIR to a folder holding " + ", ".join((SHAPE_5, RESNET))
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(name: str) -> Path:
    """Return the path of one model file, with a clear error when it is missing."""
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(
            f"model file {path} is missing: reinstall face_recognition_models or fix KIOSK_MODELS_DIR"
        )
    return path


@cache
def dlib_module() -> Any:
    """Import dlib once, with an error that says how to install it."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ModelError("dlib is not installed: run `pip install dlib-bin` (prebuilt, no compiler)") from exc
    return dlib


@cache
def frontal_detector() -> Any:
    """dlib's HOG frontal face detector (shared: it holds no per-call state)."""
    return dlib_module().get_frontal_face_detector()


@cache
def shape_predictor_5() -> Any:
    """dlib's 5-point landmark model, the alignment its face encoder was trained with."""
    return dlib_module().shape_predictor(str(model_path(SHAPE_5)))


@cache
def face_encoder() -> Any:
    """dlib's ResNet that maps an aligned 150x150 face chip to a 128-d descriptor."""
    return dlib_module().face_recognition_model_v1(str(model_path(RESNET)))
