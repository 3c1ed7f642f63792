"""Liveness: is the tracked face a person in front of the camera, or a photo or a screen held up to it?

Passive checks run on dlib's 68-point landmarks of the served track while recognition runs (docs/liveness.md):

* **blink**: the eye aspect ratio (EAR, Soukupova and Cech 2016) of the track drops below ``blink_ratio`` times the
  track's own open-eye level (its running median) and comes back: the threshold follows each person's eyes
  instead of one global number;
* **parallax**: a photo or a screen moves as a plane, so the landmarks of two frames fit one homography up to the
  landmark noise; a real head that turns or talks does not. The residual of the best homography, in inter-ocular
  distances, must reach ``parallax_live`` on ``parallax_frames`` frames. The landmarks are first smoothed by a
  median over three frames: on a simulated photo attack a single mis-fitted frame otherwise counted as parallax
  once for every later frame compared with it.

When neither has shown within ``passive_timeout_s`` the level ``challenge`` asks for a random action (blink, turn the
head left or right) and checks it within ``challenge_timeout_s``; the level ``passive`` gives up at once. Giving up
means "suspected spoof": the recorder stores a review event instead of an attendance.

Everything here is a pure function of landmarks and source times (``Frame.t``); no dlib, no I/O.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from kiosk.config import LivenessConfig

Result = Literal["live", "spoof", "undecided"]
Challenge = Literal["blink", "turn_left", "turn_right"]
CHALLENGES: tuple[Challenge, ...] = ("blink", "turn_left", "turn_right")

LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
JAW_ENDS = (0, 16)
INNER_FACE = slice(17, 68)  # brows, nose, eyes, mouth: the jaw line (0-16) is where dlib's points wander most
EAR_HISTORY = 90  # frames of EAR kept for the open-eye level (3 s at 30 fps)
MIN_BASELINE_FRAMES = 5  # the open-eye level needs this many frames before a blink can count
PARALLAX_WINDOW = 30  # frames of landmarks kept to compare the newest frame with
PARALLAX_STEP = 3  # the newest frame is compared with every third kept frame
SMOOTH_FRAMES = 3  # parallax uses the median landmarks of the last three frames: one mis-fitted frame drops out


def eye_aspect_ratio(pts: np.ndarray) -> float:
    """The mean EAR of both eyes of a (68, 2) landmark array: about 0.3 open, below 0.1 closed."""

    def one(eye: np.ndarray) -> float:
        width = float(np.linalg.norm(eye[0] - eye[3])) or 1.0
        return float(np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])) / (2.0 * width)

    return (one(pts[LEFT_EYE]) + one(pts[RIGHT_EYE])) / 2.0


def inter_ocular(pts: np.ndarray) -> float:
    """Distance between the two eye centres in pixels (the unit of the parallax residual)."""
    return float(np.linalg.norm(pts[LEFT_EYE].mean(axis=0) - pts[RIGHT_EYE].mean(axis=0))) or 1.0


def planar_residual(before: np.ndarray, after: np.ndarray) -> float:
    """How far the inner-face landmarks of ``after`` are from the best homography of those of ``before``: the mean
    point error, in inter-ocular distances. A plane (photo, screen) stays at the landmark noise; a real head that
    turns or talks rises above it. The jaw line is left out: on the simulated photo attacks its wandering points
    alone doubled the largest residual (bench/liveness.py)."""
    src, dst = before[INNER_FACE], after[INNER_FACE]
    homography, _ = cv2.findHomography(src, dst, 0)
    if homography is None:
        return 0.0
    projected = cv2.perspectiveTransform(src.reshape(1, -1, 2), homography)[0]
    return float(np.linalg.norm(projected - dst, axis=1).mean()) / inter_ocular(after)


def head_yaw(pts: np.ndarray) -> float:
    """Where the nose tip sits between the two ends of the jaw line, -0.5..0.5 (0 = frontal).

    Positive when the nose is towards the image's right, which is the person's own left on a camera that is not
    mirrored: a person who turns the head to the left raises it.
    """
    a, b = pts[JAW_ENDS[0]], pts[JAW_ENDS[1]]
    axis = b - a
    length2 = float(np.dot(axis, axis)) or 1.0
    return float(np.dot(pts[NOSE_TIP] - (a + b) / 2.0, axis) / length2)


@dataclass(frozen=True)
class LivenessVerdict:
    """The liveness evidence of one track, carried by its Decision and its event.

    ``method`` is what decided: ``blink`` or ``parallax`` (passive), ``challenge_blink``, ``challenge_turn_left`` or
    ``challenge_turn_right`` (the action asked for), or ``none`` when nothing showed. ``score`` is the largest
    parallax residual seen (inter-ocular distances); ``extra_ms`` is the source time the decision waited for it.
    """

    level: str
    result: Result
    method: str
    score: float
    blinks: int
    challenge: Challenge | None
    extra_ms: float

    @property
    def live(self) -> bool:
        return self.result == "live"


class LivenessCheck:
    """The liveness state of one track: fed the landmarks of each frame, asked for its verdict.

    >>> check = LivenessCheck(LivenessConfig(), start_t=0.0)  # doctest: +SKIP
    >>> check.observe(landmarks68)                              # doctest: +SKIP
    >>> check.result(t=0.033)                                   # doctest: +SKIP
    """

    def __init__(self, cfg: LivenessConfig, start_t: float, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.start_t = start_t
        self._rng = rng or random.Random()
        self._ears: deque[float] = deque(maxlen=EAR_HISTORY)
        self._last: deque[np.ndarray] = deque(maxlen=SMOOTH_FRAMES)
        self._recent: deque[np.ndarray] = deque(maxlen=PARALLAX_WINDOW)
        self._closed = False
        self.blinks = 0
        self.min_ear_ratio: float | None = None  # the lowest EAR seen over the open level (reported by the bench)
        self.parallax = 0.0
        self.parallax_hits = 0
        self.challenge: Challenge | None = None
        self._challenge_t = 0.0
        self._challenge_blinks = 0
        self._yaw = 0.0
        self._challenge_yaw = 0.0
        self._challenge_done = False
        self._passed_by = ""

    def observe(self, pts: np.ndarray) -> None:
        """Take the (68, 2) landmarks of the track's face in the next frame."""
        self._observe_eyes(eye_aspect_ratio(pts))
        self._observe_plane(pts)
        self._yaw = head_yaw(pts)
        if self.challenge is None or self._challenge_done:
            return
        if self.challenge == "blink":
            self._challenge_done = self.blinks > self._challenge_blinks
        else:
            wanted = 1.0 if self.challenge == "turn_left" else -1.0
            self._challenge_done = (self._yaw - self._challenge_yaw) * wanted >= self.cfg.turn_yaw

    def _observe_eyes(self, ear: float) -> None:
        if len(self._ears) >= MIN_BASELINE_FRAMES:
            open_level = float(np.median(self._ears))
            ratio = ear / open_level if open_level > 0 else 1.0
            self.min_ear_ratio = ratio if self.min_ear_ratio is None else min(self.min_ear_ratio, ratio)
            if ratio < self.cfg.blink_ratio:
                self._closed = True
            elif self._closed and ratio >= self.cfg.reopen_ratio:
                self._closed = False
                self.blinks += 1
        if not self._closed:
            self._ears.append(ear)  # closed frames do not lower the open-eye level

    def _observe_plane(self, pts: np.ndarray) -> None:
        self._last.append(pts)
        pts = np.median(np.stack(self._last), axis=0)
        if self._recent:
            references = list(self._recent)[::PARALLAX_STEP]
            residual = max(planar_residual(ref, pts) for ref in references)
            self.parallax = max(self.parallax, residual)
            self.parallax_hits += residual >= self.cfg.parallax_live
        self._recent.append(pts)

    def passive_method(self) -> str | None:
        """``blink`` or ``parallax`` once one of them has shown, else None."""
        if self.blinks > 0:
            return "blink"
        if self.parallax_hits >= self.cfg.parallax_frames:
            return "parallax"
        return None

    def result(self, t: float) -> Result:
        """``live``, ``spoof`` (time is up), or ``undecided`` (still watching, or a challenge is running)."""
        if self.cfg.level == "off" or self._passed_by:
            return "live"
        if self.challenge is None:
            method = self.passive_method()
            if method is not None:
                self._passed_by = method
                return "live"
            if t - self.start_t < self.cfg.passive_timeout_s:
                return "undecided"
            if self.cfg.level == "passive":
                return "spoof"
            self.challenge = self._rng.choice(CHALLENGES)
            self._challenge_t = t
            self._challenge_blinks = self.blinks
            self._challenge_yaw = self._yaw
            return "undecided"
        if self._challenge_done:
            self._passed_by = f"challenge_{self.challenge}"
            return "live"
        if t - self._challenge_t < self.cfg.challenge_timeout_s:
            return "undecided"
        return "spoof"

    def verdict(self, t: float, waited_from: float) -> LivenessVerdict:
        """The evidence so far, for a decision made at ``t`` that waited for liveness since ``waited_from``."""
        result = self.result(t)
        return LivenessVerdict(
            level=self.cfg.level,
            result=result,
            method=self._passed_by or "none",
            score=self.parallax,
            blinks=self.blinks,
            challenge=self.challenge,
            extra_ms=max(0.0, t - waited_from) * 1000.0,
        )
