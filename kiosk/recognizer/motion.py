"""A cheap motion gate: when nothing moves and nobody is tracked, the detector rests."""

from __future__ import annotations

import cv2
import numpy as np

MOTION_WIDTH = 96  # columns of the tiny grey image motion is measured on


class MotionGate:
    """Compares a tiny blurred grey copy of each frame with a slowly adapting background."""

    def __init__(self, threshold: float, min_fraction: float = 0.002, adapt: float = 0.05) -> None:
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.adapt = adapt
        self._background: np.ndarray | None = None

    @staticmethod
    def thumbnail(image: np.ndarray) -> np.ndarray:
        """A ~96-column grey view by striding (no full-frame colour conversion or resize)."""
        step = max(1, image.shape[1] // MOTION_WIDTH)
        plane = image[::step, ::step, 1] if image.ndim == 3 else image[::step, ::step]
        return cv2.GaussianBlur(plane.astype(np.float32), (5, 5), 0)

    def moved(self, image: np.ndarray) -> bool:
        """True when enough of the picture changed since the background was last updated."""
        thumb = self.thumbnail(image)
        if self._background is None or self._background.shape != thumb.shape:
            self._background = thumb
            return True
        changed = np.count_nonzero(np.abs(thumb - self._background) > self.threshold)
        cv2.accumulateWeighted(thumb, self._background, self.adapt)
        return bool(changed >= self.min_fraction * thumb.size)
