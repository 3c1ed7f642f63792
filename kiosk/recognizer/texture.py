"""The texture cue of liveness: two small anti-spoofing CNNs (MiniFASNet V2 and V1SE, minivision-ai's
Silent-Face-Anti-Spoofing, Apache-2.0) run through OpenCV's ``dnn`` module on crops around the served face.

A screen or a print shows a face with its own texture and, in the wider crop, the edge or bezel of the thing held up;
the models were trained to tell those from a live face. Each model gets its own crop, ``scale`` (2.7 and 4.0) times
the face box, resized to 80x80 BGR, values 0..255 (the models' preprocessing, docs/liveness.md); the score is the
mean of their "real" probabilities (0..1).

The models were trained on the boxes of another detector (an SSD "RetinaFace" Caffe model). dlib's HOG boxes are
about 4 % wider and sit about 5 % of their height higher on the three labelled photos the models' README measured,
so :func:`model_box` moves and shrinks the kiosk's box to that framing before cropping.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiosk import minifasnet
from kiosk.recognizer.faces import Box

INPUT_PX = 80
REAL = 1  # index of the "real" class in the models' output; 0 and 2 are two kinds of spoof
BOX_SHIFT_DOWN = 0.05  # of the box height: the models' detector box sits this much lower than dlib's
BOX_WIDTH, BOX_HEIGHT = 0.96, 0.97  # its size, as fractions of dlib's box


def model_box(box: Box) -> tuple[float, float, float, float]:
    """The kiosk's (dlib) face box in the framing of the models' detector: (x, y, w, h)."""
    w, h = box.width * BOX_WIDTH, box.height * BOX_HEIGHT
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2 + BOX_SHIFT_DOWN * box.height
    return cx - w / 2, cy - h / 2, w, h


def crop(rgb: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    """The models' crop (``CropImage`` of their repository): ``scale`` times the box around its centre (less if the
    image is too small), shifted, not shrunk, to stay inside the image; 80x80, BGR."""
    h, w = rgb.shape[:2]
    x, y, bw, bh = box
    scale = min((h - 1) / bh, (w - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x + bw / 2, y + bh / 2
    left, top, right, bottom = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > w - 1:
        left, right = left - (right - w + 1), w - 1.0
    if bottom > h - 1:
        top, bottom = top - (bottom - h + 1), h - 1.0
    patch = rgb[int(top) : int(bottom) + 1, int(left) : int(right) + 1]
    return cv2.cvtColor(cv2.resize(patch, (INPUT_PX, INPUT_PX)), cv2.COLOR_RGB2BGR)


class TextureModel:
    """Both MiniFASNet models, loaded from ``folder`` after their sha256 is checked
    (:func:`kiosk.minifasnet.read_checked`).

    >>> TextureModel(Path("/opt/kiosk/models/minifasnet")).real_score(rgb, box)   # doctest: +SKIP
    0.98
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._nets = []
        for name, (_, scale) in minifasnet.FILES.items():
            data = minifasnet.read_checked(folder, name)
            self._nets.append((cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8)), scale))

    def real_score(self, rgb: np.ndarray, box: Box) -> float:
        """The mean "real" probability of the two models for the face at ``box`` of the RGB frame."""
        framed = model_box(box)
        total = 0.0
        for net, scale in self._nets:
            net.setInput(cv2.dnn.blobFromImage(crop(rgb, framed, scale)))
            total += float(net.forward().reshape(-1)[REAL])
        return total / len(self._nets)
