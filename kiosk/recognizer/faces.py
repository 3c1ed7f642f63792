"""Face primitives on numpy images: detect, align, assess quality, encode. Thin wrappers over dlib."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from kiosk import models
from kiosk.config import QualityConfig

SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the image it was found in, face_recognition's (top, right, bottom, left)."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Box:
        """This box in another image: multiplied by ``factor``, then shifted by (dx, dy)."""
        return Box(
            round(self.top * factor + dy),
            round(self.right * factor + dx),
            round(self.bottom * factor + dy),
            round(self.left * factor + dx),
        )

    def iou(self, other: Box) -> float:
        """Intersection over union with another box."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.width * self.height + other.width * other.height - inter)

    def as_list(self) -> list[int]:
        return [self.top, self.right, self.bottom, self.left]

    def dlib_rect(self) -> object:
        return models.dlib_module().rectangle(self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class Quality:
    """Measurements of one aligned face, compared with a QualityConfig by :meth:`problems`."""

    face_px: int
    sharpness: float
    brightness: float
    yaw: float
    roll_deg: float

    def problems(self, cfg: QualityConfig, min_face_px: int) -> list[str]:
        """Why this face should not be encoded (empty when it may be): short reason codes."""
        found = []
        if self.face_px < min_face_px:
            found.append("too_small")
        if self.brightness < cfg.min_brightness:
            found.append("too_dark")
        if self.sharpness < cfg.min_sharpness:
            found.append("blurry")
        if abs(self.yaw) > cfg.max_yaw or abs(self.roll_deg) > cfg.max_roll_deg:
            found.append("not_frontal")
        return found


def detect(image: np.ndarray, upsample: int = 0) -> list[Box]:
    """Find frontal faces with dlib's HOG detector on a grey or RGB uint8 image."""
    h, w = image.shape[:2]
    rects = models.frontal_detector()(image, upsample)
    boxes = [Box(max(r.top(), 0), min(r.right(), w), min(r.bottom(), h), max(r.left(), 0)) for r in rects]
    return [b for b in boxes if b.width > 0 and b.height > 0]


def still_upsample(image: np.ndarray) -> int:
    """Upsampling for a single photo of unknown geometry: once for small pictures, never for large ones."""
    return 1 if max(image.shape[:2]) < 1000 else 0


def landmarks(rgb: np.ndarray, box: Box) -> object:
    """dlib's 5-point landmarks (eye corners and nose) of the face in ``box``."""
    return models.shape_predictor_5()(rgb, box.dlib_rect())


@cache
def shape_predictor_68() -> Any:
    """dlib's 68-point landmark model (eyes, brows, nose, mouth, jaw), for the liveness checks: a 100 MB file whose
    loading takes about 0.4 s of CPU, so the pipeline loads it at start rather than for the first person."""
    return models.dlib_module().shape_predictor(str(models.model_path(SHAPE_68)))


def landmarks68(rgb: np.ndarray, box: Box) -> np.ndarray:
    """dlib's 68-point landmarks of the face in ``box`` as a (68, 2) float array of pixel positions."""
    shape = shape_predictor_68()(rgb, box.dlib_rect())
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def chip(rgb: np.ndarray, shape: object) -> np.ndarray:
    """The aligned 150x150 face chip dlib's encoder expects."""
    return np.asarray(models.dlib_module().get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


SHARPNESS_SIZE = 64


def assess(rgb: np.ndarray, face_chip: np.ndarray, shape: object, box: Box) -> Quality:
    """Measure size, sharpness, brightness and pose of one face.

    Sharpness is the variance of the Laplacian of the face box resampled to 64x64 pixels, so that it means
    the same for a near and a far face; brightness is the mean grey level of the chip's inner face.
    """
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # type: ignore[attr-defined]
    eye_a, eye_b, nose = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4]
    axis = eye_b - eye_a
    eye_dist = float(np.hypot(*axis)) or 1.0
    mid = (eye_a + eye_b) / 2
    yaw = float(np.dot(nose - mid, axis) / eye_dist**2)
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    roll = (roll + 90) % 180 - 90  # the eye pair's order does not matter
    inner = cv2.cvtColor(face_chip[30:120, 30:120], cv2.COLOR_RGB2GRAY)  # the chip without its padding
    crop = cv2.cvtColor(rgb[box.top : box.bottom, box.left : box.right], cv2.COLOR_RGB2GRAY)
    crop = cv2.resize(crop, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return Quality(
        face_px=box.width,
        sharpness=float(cv2.Laplacian(crop, cv2.CV_64F).var()),
        brightness=float(inner.mean()),
        yaw=yaw,
        roll_deg=roll,
    )


def encode(face_chip: np.ndarray, jitters: int = 0) -> np.ndarray:
    """The 128-d descriptor of an aligned chip; ``jitters`` > 0 averages that many perturbed copies."""
    vec = models.face_encoder().compute_face_descriptor(face_chip, jitters)
    return np.asarray(vec, dtype=np.float32)


@dataclass(frozen=True)
class Observation:
    """One face in a still image: where, how good, and (if it passed or was forced) its descriptor."""

    box: Box
    quality: Quality
    problems: list[str]
    descriptor: np.ndarray | None


def analyze_still(
    rgb: np.ndarray, cfg: QualityConfig, *, min_face_px: int, jitters: int = 0, encode_all: bool = True
) -> list[Observation]:
    """Detect, assess and encode every face of one photo (largest first).

    ``encode_all`` also encodes faces that fail the quality gate, so that tools can report the nearest match.
    """
    out = []
    for box in sorted(detect(rgb, still_upsample(rgb)), key=lambda b: -b.width):
        shape = landmarks(rgb, box)
        face_chip = chip(rgb, shape)
        quality = assess(rgb, face_chip, shape, box)
        problems = quality.problems(cfg, min_face_px)
        descriptor = encode(face_chip, jitters) if encode_all or not problems else None
        out.append(Observation(box, quality, problems, descriptor))
    return out
