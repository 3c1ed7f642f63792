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

A third check looks **around** the face: the kiosk's camera is fixed to a wall, so what surrounds a live head (the
wall, the room) stays still, while a photo, phone or tablet held in a hand carries its own surroundings (the
picture's background, its edge, the bezel) along with the face. :class:`Surroundings` follows corner features in a
band beside and above the face from frame to frame; when they move on ``surroundings_frames`` frames, parallax and
blinks no longer count (a replayed video of the person has both) and the challenge is asked at once.

A fourth looks at the face's **texture** (:mod:`kiosk.recognizer.texture`, when ``texture_models`` is configured):
a replay on a stand shows a real head's parallax and blinks before still surroundings, but it is a screen. The
median MiniFASNet "real" score of the watched frames (at least ``TEXTURE_MIN_SCORES`` of them) must reach
``texture_live`` for a passive proof to count; below it the challenge is asked at once, and below ``texture_refuse``
the face is refused without one (a replay can happen to do the actions asked). With a live texture, the smaller
residual ``parallax_textured`` proves a person who barely moves before a still camera (method ``texture``).

When nothing has shown within ``passive_timeout_s``, or the surroundings moved, or the texture is a screen's or a
print's, the level ``challenge`` asks for a random sequence of ``challenge_steps`` actions (blink, turn the head left
or right), each within ``challenge_timeout_s``; the level ``passive`` gives up. Giving up means "suspected spoof":
the recorder stores a review event instead of an attendance.

:class:`LivenessCheck` is a pure function of landmarks, surroundings motion, texture scores and source times
(``Frame.t``); no dlib, no I/O.
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
CHALLENGE_JOIN = "+"  # a sequence of actions as one string: "turn_left+blink"

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
SETTLE_FRAMES = 6  # passive proof counts only after this many frames: time for moving surroundings to show
SURROUND_FEATURES = 60  # corner features followed around the face
SURROUND_MIN_FEATURES = 8  # fewer (a plain wall) and the surroundings say nothing
SURROUND_MAX_GAP_S = 0.3  # a longer gap between two watched frames starts the surroundings afresh
SURROUND_FB_PX = 0.5  # a feature followed back must land this close to where it started (px at the followed scale)
SURROUND_FACE_PX = 64  # the surroundings are followed at a scale where the face is at most this wide: a third of
#                        the work for a 110 px face, and the motion is measured in inter-ocular distances anyway
TEXTURE_EVERY = 2  # the texture is scored on every second watched frame (about 4 ms of CPU per face on x86)
TEXTURE_MIN_SCORES = 3  # scores needed before the texture says anything
CUT_IOD = 0.6  # landmarks that jump further between two watched frames: a cut, a looped clip, another face (a person
#               walking across at 10 fps can jump this far too; that only restarts the measures, see _cut)


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


def _jump(before: np.ndarray, after: np.ndarray) -> float:
    """The median landmark displacement between two frames, in inter-ocular distances."""
    return float(np.median(np.linalg.norm(after - before, axis=1))) / inter_ocular(after)


def surroundings_region(shape: tuple[int, ...], pts: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Where to look for the face's surroundings: the crop (x0, y0, x1, y1) of a grey frame and, inside it, the mask
    of two bands beside the face (from half a face width out to one and a half, brow to chin) and one above it
    (from 0.8 to 1.5 face widths above the brows). The head itself, hair, a hijab or a peci, and the shoulders
    and hands below the chin are left out: they move with a live person."""
    h, w = shape[:2]
    left, right = float(pts[:, 0].min()), float(pts[:, 0].max())
    brow, chin = float(pts[17:27, 1].min()), float(pts[:, 1].max())
    fw = max(right - left, 1.0)
    x0, x1 = max(0, int(left - 1.5 * fw)), min(w, int(right + 1.5 * fw) + 1)
    y0, y1 = max(0, int(brow - 1.5 * fw)), min(h, int(chin) + 1)
    mask = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.uint8)

    def band(a: float, b: float, c: float, d: float) -> None:
        ia, ib = max(x0, int(a)) - x0, min(x1, int(b)) - x0
        ic, id_ = max(y0, int(c)) - y0, min(y1, int(d)) - y0
        if ib > ia and id_ > ic:
            mask[ic:id_, ia:ib] = 255

    band(left - 1.5 * fw, left - 0.5 * fw, brow - fw, chin)
    band(right + 0.5 * fw, right + 1.5 * fw, brow - fw, chin)
    band(left - 0.5 * fw, right + 0.5 * fw, brow - 1.5 * fw, brow - 0.8 * fw)
    return (x0, y0, x1, y1), mask


class Surroundings:
    """How far the face's surroundings moved since the previous watched frame of the same track.

    The kiosk's camera is fixed, so the wall and the room around a live head stay still; a photo, phone or tablet
    held in a hand moves with the face it shows. Corner features in :func:`surroundings_region` of the previous frame
    are followed into this one (pyramidal Lucas-Kanade) and back again; only the features that return within
    ``SURROUND_FB_PX`` of where they started count (the forward-backward check of Kalal, Mikolajczyk and Matas 2010:
    on a plain backdrop the "corners" are compression noise, which changes from frame to frame and sent the studio
    clips' surroundings "moving" by a quarter of an inter-ocular distance on every other frame). The median of their
    displacements, in inter-ocular distances, is the motion. Only that region is converted to grey, in both frames.
    """

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, tuple[int, int, int, int], float, np.ndarray, float] | None = None

    def motion(self, rgb: np.ndarray, pts: np.ndarray, t: float) -> float | None:
        """The median displacement of the surroundings between the previous call and this frame (``rgb``, the face's
        (68, 2) landmarks ``pts``, source time ``t``); None when there is nothing to compare: the first frame, a gap
        of more than ``SURROUND_MAX_GAP_S``, a plain wall."""
        previous = self._previous
        region, mask = surroundings_region(rgb.shape, pts)
        scale = min(1.0, SURROUND_FACE_PX / max(1.0, float(np.ptp(pts[:, 0]))))
        if mask.size:
            small = _scaled(mask, scale, cv2.INTER_NEAREST)
            self._previous = (_grey(rgb, region, scale), region, scale, small, t)
        else:
            self._previous = None
        if previous is None or not 0 < t - previous[4] <= SURROUND_MAX_GAP_S:
            return None
        before, region, scale, mask, _ = previous
        now = _grey(rgb, region, scale)
        if now.shape != before.shape:
            return None
        corners = cv2.goodFeaturesToTrack(before, SURROUND_FEATURES, 0.01, 3, mask=mask)
        if corners is None or len(corners) < SURROUND_MIN_FEATURES:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            before, now, corners, None, winSize=(11, 11), maxLevel=2  # type: ignore[call-overload]
        )
        back, returned, _ = cv2.calcOpticalFlowPyrLK(
            now, before, moved, None, winSize=(11, 11), maxLevel=2  # type: ignore[call-overload]
        )
        error = np.linalg.norm(back[:, 0] - corners[:, 0], axis=1)
        found = (status[:, 0] == 1) & (returned[:, 0] == 1) & (error < SURROUND_FB_PX)
        if found.sum() < SURROUND_MIN_FEATURES:
            return None
        shift = np.linalg.norm(moved[found, 0] - corners[found, 0], axis=1)
        return float(np.median(shift)) / (inter_ocular(pts) * scale)


def _scaled(image: np.ndarray, scale: float, interpolation: int) -> np.ndarray:
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=interpolation)


def _grey(rgb: np.ndarray, region: tuple[int, int, int, int], scale: float) -> np.ndarray:
    x0, y0, x1, y1 = region
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return _scaled(grey, scale, cv2.INTER_AREA)


@dataclass(frozen=True)
class LivenessVerdict:
    """The liveness evidence of one track, carried by its Decision and its event.

    ``method`` is what decided: ``blink``, ``parallax`` or ``texture`` (passive; ``texture``: a live texture with a
    small parallax), ``challenge`` (the actions in ``challenge``, in that order, e.g. ``turn_left+blink``), or ``none``
    when nothing showed. ``score`` is the largest parallax residual
    seen (inter-ocular distances); ``moving_surroundings`` the frames on which the face's surroundings moved;
    ``extra_ms`` the source time the decision waited for liveness; ``texture`` the median MiniFASNet "real" score
    (None when the texture cue is off or had no score).
    """

    level: str
    result: Result
    method: str
    score: float
    blinks: int
    challenge: str | None
    extra_ms: float
    moving_surroundings: int = 0
    texture: float | None = None

    @property
    def live(self) -> bool:
        return self.result == "live"


class LivenessCheck:
    """The liveness state of one track: fed the landmarks of each frame, asked for its verdict.

    >>> check = LivenessCheck(LivenessConfig(), start_t=0.0)            # doctest: +SKIP
    >>> check.observe(landmarks68, surroundings.motion(rgb, landmarks68, t))   # doctest: +SKIP
    >>> check.result(t=0.033)                                           # doctest: +SKIP
    """

    def __init__(self, cfg: LivenessConfig, start_t: float, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.start_t = start_t
        self._rng = rng or random.Random()
        self._ears: deque[float] = deque(maxlen=EAR_HISTORY)
        self._last: deque[np.ndarray] = deque(maxlen=SMOOTH_FRAMES)
        self._recent: deque[np.ndarray] = deque(maxlen=PARALLAX_WINDOW)
        self._closed = False
        self.frames = 0
        self.blinks = 0
        self.min_ear_ratio: float | None = None  # the lowest EAR seen over the open level (reported by the bench)
        self.parallax = 0.0
        self.parallax_hits = 0
        self.textured_hits = 0  # frames at or above parallax_textured (the smaller residual the texture cue allows)
        self.moving_surroundings = 0  # frames on which the surroundings moved at least cfg.surroundings_motion
        self.steps: tuple[Challenge, ...] = ()  # the challenge asked for, once it is
        self._step = 0  # the action now asked for (index into steps)
        self._step_t: float | None = None  # source time the action now asked for was first asked
        self._step_blinks = 0
        self._challenge_yaw = 0.0
        self._yaw = 0.0
        self._previous_pts: np.ndarray | None = None
        self._passed_by = ""
        self.textures: list[float] = []  # MiniFASNet "real" scores of the watched frames

    @property
    def challenge(self) -> str | None:
        """The whole challenge asked for (``turn_left+blink``), or None."""
        return CHALLENGE_JOIN.join(self.steps) if self.steps else None

    @property
    def action(self) -> Challenge | None:
        """The action the person is asked to do now (for the screen), or None."""
        return self.steps[self._step] if self.steps and self._step < len(self.steps) else None

    @property
    def watches_surroundings(self) -> bool:
        """Whether the surroundings' motion still matters (not once the challenge runs): the caller may skip it."""
        return self.cfg.level != "off" and not self.steps

    @property
    def proven(self) -> bool:
        """Live already: nothing more needs watching."""
        return bool(self._passed_by)

    @property
    def wants_texture(self) -> bool:
        """Whether the caller should score the texture of this frame: every ``TEXTURE_EVERY``-th watched frame, with
        the texture cue configured, until the face is proven; once the challenge runs, only until the texture is known
        (moving surroundings can bring the challenge before that, and a replay can happen to answer it)."""
        return (
            self.cfg.texture_models is not None
            and not self._passed_by
            and (not self.steps or len(self.textures) < TEXTURE_MIN_SCORES)
            and self.frames % TEXTURE_EVERY == 0
        )

    @property
    def texture(self) -> float | None:
        """The median "real" score so far (None before ``TEXTURE_MIN_SCORES`` scores)."""
        return float(np.median(self.textures)) if len(self.textures) >= TEXTURE_MIN_SCORES else None

    @property
    def texture_spoof(self) -> bool:
        """The texture cue is on and says screen or print."""
        score = self.texture
        return score is not None and score < self.cfg.texture_live

    @property
    def texture_refused(self) -> bool:
        """The texture cue says screen or print beyond doubt: refused without a challenge."""
        score = self.texture
        return score is not None and score < self.cfg.texture_refuse

    def _texture_live(self) -> bool:
        score = self.texture
        return self.cfg.texture_models is None or (score is not None and score >= self.cfg.texture_live)

    @property
    def surroundings_moved(self) -> bool:
        """The face moved with its surroundings: a picture or a screen held in a hand, or a moving camera."""
        return self.moving_surroundings >= self.cfg.surroundings_frames

    def observe(self, pts: np.ndarray, surroundings: float | None = None, texture: float | None = None) -> None:
        """Take the (68, 2) landmarks of the track's face in the next frame, how far its surroundings moved since the
        previous one (:meth:`Surroundings.motion`; None when unknown) and its texture score
        (:meth:`kiosk.recognizer.texture.TextureModel.real_score`, when :attr:`wants_texture`; else None)."""
        if texture is not None:
            self.textures.append(texture)
        self.frames += 1
        yaw = head_yaw(pts)
        if self._previous_pts is not None and _jump(self._previous_pts, pts) > CUT_IOD:
            self._cut(yaw)
        self._previous_pts, self._yaw = pts, yaw
        self._observe_eyes(eye_aspect_ratio(pts))
        if not self.steps:  # once the challenge runs, parallax proves nothing more: only blinks and turns count
            self._observe_plane(pts)
        if surroundings is not None and surroundings >= self.cfg.surroundings_motion:
            self.moving_surroundings += 1
        action = self.action
        if action is None:
            return
        if action == "blink":
            done = self.blinks > self._step_blinks
        else:  # both turns are measured from where the head was when the challenge began: a full swing each
            wanted = 1.0 if action == "turn_left" else -1.0
            done = (self._yaw - self._challenge_yaw) * wanted >= self.cfg.turn_yaw
        if done:
            self._step += 1
            self._step_blinks = self.blinks
            self._step_t = None  # the next action's time starts at the next verdict

    def _cut(self, yaw: float) -> None:
        """The face jumped (a cut, a looped clip starting again, another face): what was measured before belongs to
        another picture. The open-eye level and the parallax history start afresh, and a turn asked for is measured
        from after the jump, so that the jump itself is neither a blink, nor parallax, nor a turn."""
        self._ears.clear()
        self._closed = False
        self._last.clear()
        self._recent.clear()
        self._challenge_yaw += yaw - self._yaw

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
            self.textured_hits += residual >= self.cfg.parallax_textured
        self._recent.append(pts)

    def passive_method(self) -> str | None:
        """``blink`` or ``parallax`` once one of them has shown; ``texture`` when a live texture and the smaller
        residual ``parallax_textured`` have; else None."""
        if self.blinks > 0:
            return "blink"
        if self.parallax_hits >= self.cfg.parallax_frames:
            return "parallax"
        textured = self.textured_hits >= self.cfg.parallax_frames
        if textured and self.cfg.texture_models is not None and self._texture_live():
            return "texture"
        return None

    def result(self, t: float) -> Result:
        """``live``, ``spoof`` (time is up), or ``undecided`` (still watching, or a challenge is running)."""
        if self.cfg.level == "off" or self._passed_by:
            return "live"
        if self.texture_refused:  # before or during the challenge
            return "spoof"
        if not self.steps:
            refused = self.surroundings_moved or self.texture_spoof  # only the challenge can prove these faces live
            method = self.passive_method()
            if method is not None and not refused and self._texture_live() and self.frames >= SETTLE_FRAMES:
                self._passed_by = method
                return "live"
            if not refused and t - self.start_t < self.cfg.passive_timeout_s:
                return "undecided"
            if self.cfg.level == "passive":
                return "spoof"
            self.steps = self._draw_challenge()
            self._step, self._step_t, self._step_blinks, self._challenge_yaw = 0, t, self.blinks, self._yaw
            return "undecided"
        if self._step >= len(self.steps):
            self._passed_by = "challenge"
            return "live"
        if self._step_t is None:
            self._step_t = t
        return "undecided" if t - self._step_t < self.cfg.challenge_timeout_s else "spoof"

    def _draw_challenge(self) -> tuple[Challenge, ...]:
        """``challenge_steps`` random actions, no action twice in a row (a replayed clip must happen to do each)."""
        steps: list[Challenge] = []
        for _ in range(self.cfg.challenge_steps):
            steps.append(self._rng.choice([c for c in CHALLENGES if not steps or c != steps[-1]]))
        return tuple(steps)

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
            moving_surroundings=self.moving_surroundings,
            texture=self.texture,
        )
