"""Joins detections across frames into tracks, so one person walking up is one track and one decision."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from kiosk.recognizer.faces import Box


@dataclass
class Track:
    """One face followed across frames; the pipeline hangs its recognition state on it."""

    id: int
    box: Box
    first_frame: int
    first_seen: float  # monotonic seconds
    first_t: float  # source time (clip seconds) of the first frame
    last_frame: int
    missed: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def suppress_overlaps(boxes: list[Box], max_iou: float = 0.5) -> list[Box]:
    """Drop boxes that overlap a larger one (the same face found by two scans)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b.width):
        if all(box.iou(k) <= max_iou for k in kept):
            kept.append(box)
    return kept


class Tracker:
    """Greedy IoU association; tracks die after ``max_missed`` frames without a detection."""

    def __init__(self, min_iou: float, max_missed: int) -> None:
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, boxes: list[Box], frame: int, now: float, t: float = 0.0) -> tuple[list[Track], list[Track]]:
        """Assign this frame's boxes; returns (new tracks, tracks that ended)."""
        pairs = sorted(
            ((t.box.iou(b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_b: set[int] = set()
        for iou, ti, bi in pairs:
            if iou < self.min_iou:
                break
            if ti in used_t or bi in used_b:
                continue
            track = self.tracks[ti]
            track.box, track.last_frame, track.missed = boxes[bi], frame, 0
            used_t.add(ti)
            used_b.add(bi)
        ended = []
        for ti, track in enumerate(self.tracks):
            if ti not in used_t:
                track.missed += 1
                if track.missed > self.max_missed:
                    ended.append(track)
        born = [
            Track(next(self._ids), b, frame, now, t, frame) for bi, b in enumerate(boxes) if bi not in used_b
        ]
        gone = {t.id for t in ended}
        self.tracks = [t for t in self.tracks if t.id not in gone] + born
        return born, ended
