"""The recognizer pipeline: frames in, decisions out.

Per frame: a motion gate lets the detector rest when nothing moves; tracked faces are searched only in a
small window around their last position, at the scale that makes them about the detector's size; the whole
frame is searched at the geometry's detection resolution every few frames (and whenever motion appears with
nobody tracked). The nearest in-range face is served first: it passes a quality gate, is encoded a bounded
number of times, and its matches are voted on by the open-set rule. A track gets one decision (and a fresh
attempt after ``retry_after_s`` if that decision was "unknown" and the person is still there).

Liveness (``recognizer.liveness``, kiosk/recognizer/liveness.py): while the served track is undecided and not yet
proven live, its 68-point landmarks, the motion of its surroundings and (every second frame, when configured) its
texture score feed the liveness checks; no other face costs anything. A person the rule accepts is decided only once
the track is live; a track that stays unproven (or fails the challenge) is decided with a liveness result of
``spoof`` (or ``undecided`` if it leaves), which the recorder turns into a "suspected spoof" review. Unknown faces
are decided at once.

Durations inside the pipeline (idle scans, retries) are measured in source time (``Frame.t``), so a replay
run flat out decides as it would in real time; only ``latency_ms`` uses the monotonic clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from kiosk.camera import Frame
from kiosk.config import RecognizerConfig
from kiosk.recognizer import faces, geometry
from kiosk.recognizer.faces import Box
from kiosk.recognizer.liveness import LivenessCheck, LivenessVerdict, Surroundings
from kiosk.recognizer.matching import Match, TrackVerdict, match
from kiosk.recognizer.motion import MotionGate
from kiosk.recognizer.texture import TextureModel
from kiosk.recognizer.tracker import Track, Tracker, suppress_overlaps
from kiosk_contract import schema
from kiosk_contract.gallery import Gallery

ROI_MARGIN = 0.6  # a tracked face is searched in its box grown by this fraction of its size on each side
ROI_FACE_PX = 100  # faces in a search window are scaled to about this width (the detector needs ~80)


@dataclass(frozen=True)
class Decision:
    """The outcome for one track: a person (``nip``) or unknown (``nip`` None), with its evidence."""

    track: int
    frame: int
    t: float
    nip: str | None
    best_nip: str | None
    distance: float
    margin: float | None
    frames_used: int
    latency_ms: float  # monotonic time from the track's first frame to the decision
    clip_latency_ms: float  # source time from the track's first frame to the decision frame
    box: Box
    liveness: LivenessVerdict | None = None  # None when the level is off

    @property
    def live(self) -> bool:
        """False only when liveness was checked and not proven."""
        return self.liveness is None or self.liveness.live

    def as_json(self) -> dict[str, object]:
        return {
            "frame": self.frame,
            "t": round(self.t, 3),
            "track": self.track,
            "nip": self.nip,
            "best_nip": self.best_nip,
            "distance": round(self.distance, 4),
            "margin": None if self.margin is None else round(self.margin, 4),
            "frames_used": self.frames_used,
            "latency_ms": round(self.latency_ms, 1),
            "clip_latency_ms": round(self.clip_latency_ms, 1),
            "liveness": schema.liveness_field(self.liveness),
        }


@dataclass(frozen=True)
class TrackView:
    """What the screen needs of one tracked face: where it is and how recognition is going."""

    track: int
    box: Box
    served: bool
    nip: str | None
    state: str  # "searching" | "accepted" | "unknown"
    problems: tuple[str, ...]  # quality reasons ("too_small", "blurry", ...) or the action asked ("challenge_blink")


@dataclass
class FrameResult:
    """What one frame produced: the faces in view and the decisions made on this frame."""

    tracks: list[TrackView]
    decisions: list[Decision]


@dataclass
class PipelineStats:
    """Counters for the replay summary and the device status."""

    frames: int = 0
    idle_frames: int = 0
    full_scans: int = 0
    window_scans: int = 0
    detections: int = 0
    quality_rejects: int = 0
    encodings: int = 0
    decisions: int = 0
    accepted: int = 0
    tracks: int = 0
    retries: int = 0
    liveness_frames: int = 0  # frames whose 68-point landmarks fed the liveness checks
    texture_scores: int = 0  # faces scored by the texture models
    challenges: int = 0
    spoofs: int = 0
    quality_reasons: dict[str, int] = field(default_factory=dict)


class _Recognition:
    """Per-track recognition state kept in ``Track.extra``."""

    def __init__(self, verdict: TrackVerdict) -> None:
        self.verdict = verdict
        self.descriptors: list[np.ndarray] = []
        self.last_encoded_frame = -(10**9)
        self.problems: tuple[str, ...] = ()
        self.decision: Decision | None = None
        self.decided_at = 0.0
        self.liveness: LivenessCheck | None = None  # created at the track's first landmarks
        self.surroundings = Surroundings()  # how the face's surroundings move, for the liveness check
        self.accepted: str | None = None  # the NIP the rule accepted while liveness is still open
        self.accepted_at = 0.0  # source time of that acceptance


class Pipeline:
    """Recognizes the people in a stream of frames against one gallery."""

    def __init__(
        self,
        gallery: Gallery,
        cfg: RecognizerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.gallery = gallery
        self.cfg = cfg
        self.clock = clock
        self.rng = rng or random.SystemRandom()  # challenges must not be predictable
        live = cfg.liveness
        self.texture = (
            TextureModel(live.texture_models) if live.level != "off" and live.texture_models is not None else None
        )
        if live.level != "off":
            faces.shape_predictor_68()  # loaded now, not while the first person waits
        self.tracker = Tracker(cfg.tracker.min_iou, cfg.tracker.max_missed_frames)
        self.motion = MotionGate(cfg.tracker.motion_threshold)
        self.stats = PipelineStats()
        self._last_full_frame = -(10**9)
        self._last_full_time = -float("inf")
        self._frame_width = 0
        self._detect_width = 0
        self._min_face = 0

    def _configure(self, width: int) -> None:
        """Derive the pixel sizes from the geometry once the camera's width is known."""
        self._frame_width = width
        self._detect_width = geometry.detection_width(self.cfg.geometry, width)
        self._min_face = geometry.min_face_px(self.cfg.geometry, self.cfg.quality, width)

    @property
    def detect_width(self) -> int:
        return self._detect_width

    @property
    def min_face_px(self) -> int:
        return self._min_face

    def process(self, frame: Frame) -> FrameResult:
        """Run one frame through motion gate, detection, tracking, quality, encoding and the decision rule."""
        rgb = frame.rgb
        if rgb.shape[1] != self._frame_width:
            self._configure(rgb.shape[1])
        now = self.clock()
        self.stats.frames += 1
        moved = self.motion.moved(frame.lores if frame.lores is not None else rgb)
        tracking = bool(self.tracker.tracks)
        since_full = frame.index - self._last_full_frame
        every = self.cfg.tracker.full_scan_every if tracking else self.cfg.tracker.search_every
        idle_due = frame.t - self._last_full_time >= self.cfg.tracker.idle_scan_every_s
        full = (moved and since_full >= every) or idle_due
        if not (full or tracking):
            self.stats.idle_frames += 1
            return FrameResult([], [])

        boxes = [b for t in self.tracker.tracks for b in self._search_window(rgb, t.box)]
        self.stats.window_scans += len(self.tracker.tracks)
        if full:
            boxes += self._full_scan(frame)
            self._last_full_frame, self._last_full_time = frame.index, frame.t
            self.stats.full_scans += 1
        boxes = suppress_overlaps(boxes)
        self.stats.detections += len(boxes)
        born, ended = self.tracker.update(boxes, frame.index, now, frame.t)
        for track in born:
            track.extra["rec"] = _Recognition(TrackVerdict(self.cfg.decision))
        self.stats.tracks += len(born)

        decisions = [d for d in (self._close(t, frame) for t in ended) if d is not None]
        self._watch(rgb, frame)
        decisions += self._serve(rgb, frame)
        decisions += self._settle(frame)
        return FrameResult(self._views(), decisions)

    def _full_scan(self, frame: Frame) -> list[Box]:
        """Detect on the whole detection plane (the camera's lores plane, or the main image scaled down)."""
        if frame.lores is not None:
            plane = frame.lores
        else:
            grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
            h = round(grey.shape[0] * self._detect_width / grey.shape[1])
            plane = (
                grey
                if self._detect_width == grey.shape[1]
                else cv2.resize(grey, (self._detect_width, h), interpolation=cv2.INTER_AREA)
            )
        factor = frame.rgb.shape[1] / plane.shape[1]
        return [b.scaled(factor) for b in faces.detect(plane)]

    def _search_window(self, rgb: np.ndarray, box: Box) -> list[Box]:
        """Detect around a tracked face, scaled so the face is about the detector's size."""
        h, w = rgb.shape[:2]
        pad_x, pad_y = round(box.width * ROI_MARGIN), round(box.height * ROI_MARGIN)
        top, bottom = max(0, box.top - pad_y), min(h, box.bottom + pad_y)
        left, right = max(0, box.left - pad_x), min(w, box.right + pad_x)
        if bottom - top < 16 or right - left < 16:
            return []
        grey = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
        scale = min(1.0, ROI_FACE_PX / max(box.width, 1))
        if scale < 1.0:
            size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return [b.scaled(1.0 / scale, left, top) for b in faces.detect(grey)]

    def _serve(self, rgb: np.ndarray, frame: Frame) -> list[Decision]:
        """Encode at most one face per frame: the nearest in-range undecided track that is due."""
        retry = self.cfg.decision.retry_after_s
        for track in self.tracker.tracks:
            rec = _rec(track)
            failed = rec.decision is not None and (rec.decision.nip is None or not rec.decision.live)
            if failed and retry and frame.t - rec.decided_at >= retry:
                track.extra["rec"] = _Recognition(TrackVerdict(self.cfg.decision))
                self.stats.retries += 1
        candidates = sorted(
            (t for t in self.tracker.tracks if t.missed == 0 and _rec(t).decision is None and not _rec(t).accepted),
            key=lambda t: -t.box.width,
        )
        for track in candidates:
            rec = _rec(track)
            if frame.index - rec.last_encoded_frame < self.cfg.decision.encode_every_frames:
                continue
            if track.box.width < self._min_face:
                rec.problems = ("too_small",)
                continue
            shape = faces.landmarks(rgb, track.box)
            chip = faces.chip(rgb, shape)
            rec.problems = tuple(
                faces.assess(rgb, chip, shape, track.box).problems(self.cfg.quality, self._min_face)
            )
            if rec.problems:
                self.stats.quality_rejects += 1
                for reason in rec.problems:
                    self.stats.quality_reasons[reason] = self.stats.quality_reasons.get(reason, 0) + 1
                continue
            rec.last_encoded_frame = frame.index
            descriptor = faces.encode(chip)
            rec.descriptors.append(descriptor)
            fused = None
            if len(rec.descriptors) >= self.cfg.decision.agreement:
                fused = match(self.gallery, np.mean(rec.descriptors, axis=0))
            rec.verdict.add(match(self.gallery, descriptor), fused)
            self.stats.encodings += 1
            nip = rec.verdict.accepted_nip
            if nip is not None and self.cfg.liveness.level != "off":
                rec.accepted, rec.accepted_at = nip, frame.t  # decided by _settle once liveness is known
                return []
            if nip is not None or rec.verdict.exhausted:
                return [self._decide(track, frame, nip)]
            return []
        return []

    def _watch(self, rgb: np.ndarray, frame: Frame) -> None:
        """Feed the 68-point landmarks of the served track (the largest in-range undecided one) to its liveness."""
        if self.cfg.liveness.level == "off":
            return
        served = max(
            (
                t
                for t in self.tracker.tracks
                if t.missed == 0 and t.box.width >= self._min_face and _rec(t).decision is None
            ),
            key=lambda t: t.box.width,
            default=None,
        )
        if served is None:
            return
        rec = _rec(served)
        if rec.liveness is None:
            rec.liveness = LivenessCheck(self.cfg.liveness, frame.t, self.rng)
        check = rec.liveness
        if check.proven:
            return
        pts = faces.landmarks68(rgb, served.box)
        texture = None
        if self.texture is not None and check.wants_texture:
            texture = self.texture.real_score(rgb, served.box)
            self.stats.texture_scores += 1
        surroundings = rec.surroundings.motion(rgb, pts, frame.t) if check.watches_surroundings else None
        check.observe(pts, surroundings, texture)
        self.stats.liveness_frames += 1

    def _settle(self, frame: Frame) -> list[Decision]:
        """Decide the accepted tracks whose liveness is now known (live, or out of time)."""
        decisions = []
        for track in self.tracker.tracks:
            rec = _rec(track)
            if rec.accepted is None or rec.decision is not None:
                continue
            if rec.liveness is None:
                rec.liveness = LivenessCheck(self.cfg.liveness, frame.t, self.rng)
            had_challenge = rec.liveness.challenge is not None
            if rec.liveness.result(frame.t) != "undecided":
                decisions.append(self._decide(track, frame, rec.accepted))
            elif not had_challenge and rec.liveness.challenge is not None:
                self.stats.challenges += 1
        return decisions

    def _close(self, track: Track, frame: Frame) -> Decision | None:
        """A track that left the view with encodings but no decision is decided as unknown."""
        rec = _rec(track)
        if rec.decision is None and rec.accepted is not None:
            return self._decide(track, frame, rec.accepted)  # left before proving liveness
        if rec.decision is None and rec.verdict.matches:
            return self._decide(track, frame, None)
        return None

    def _decide(self, track: Track, frame: Frame, nip: str | None) -> Decision:
        rec = _rec(track)
        best = rec.verdict.best or Match(None, float("inf"), None)
        liveness = None
        if rec.liveness is not None:
            liveness = rec.liveness.verdict(frame.t, rec.accepted_at if rec.accepted else frame.t)
        decision = Decision(
            track=track.id,
            frame=frame.index,
            t=frame.t,
            nip=nip,
            best_nip=best.best_nip,
            distance=best.distance,
            margin=best.margin,
            frames_used=len(rec.verdict.matches),
            latency_ms=(self.clock() - track.first_seen) * 1000.0,
            clip_latency_ms=(frame.t - track.first_t) * 1000.0,
            box=track.box,
            liveness=liveness,
        )
        rec.decision, rec.decided_at = decision, frame.t
        self.stats.decisions += 1
        self.stats.accepted += nip is not None and decision.live
        self.stats.spoofs += nip is not None and not decision.live
        return decision

    def _views(self) -> list[TrackView]:
        served = max(
            (t for t in self.tracker.tracks if t.box.width >= self._min_face),
            key=lambda t: t.box.width,
            default=None,
        )
        views = []
        for t in self.tracker.tracks:
            rec = _rec(t)
            d = rec.decision
            accepted = d is not None and d.nip is not None and d.live
            state = "searching" if d is None else ("accepted" if accepted else "unknown")
            problems = rec.problems
            if d is None and rec.liveness is not None and rec.liveness.challenge is not None:
                problems = (f"challenge_{rec.liveness.action}",)
            views.append(TrackView(t.id, t.box, t is served, d.nip if d and accepted else None, state, problems))
        return views


def _rec(track: Track) -> _Recognition:
    rec = track.extra["rec"]
    assert isinstance(rec, _Recognition)
    return rec
