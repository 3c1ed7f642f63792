"""The frame-source boundary: one small interface, backends chosen by name in config.

Only the backend modules import camera libraries (picamera2, OpenCV's V4L2 capture), and only when opened,
so everything else runs on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from kiosk.config import CameraConfig


@dataclass(frozen=True)
class Frame:
    """One captured picture.

    ``rgb`` is the main stream (H x W x 3, uint8, RGB order) used for the screen and for encoding faces.
    ``lores`` is an optional low-resolution grey plane for detection (picamera2's lores Y plane); when it is
    ``None`` the recognizer makes one from ``rgb``. ``t`` is seconds since the source started (clip time for a
    replay); ``index`` counts frames delivered by the source, including dropped ones.
    """

    rgb: np.ndarray
    index: int
    t: float
    lores: np.ndarray | None = None


class FrameSource(Protocol):
    """Something that yields frames: a camera, a webcam or a replayed clip.

    ``read()`` returns the newest frame, ``None`` at the end of a finite source, and raises
    :class:`kiosk.errors.CameraError` when no frame arrives within the capture timeout.
    ``close()`` is idempotent. Sources are context managers.
    """

    fps: float

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...


def open_source(cfg: CameraConfig, *, lores_width: int | None = None) -> FrameSource:
    """Open the source named by ``cfg.source``; ``lores_width`` asks a camera for a detection stream."""
    if cfg.source == "replay":
        from kiosk.camera.replay import ReplaySource

        if cfg.path is None:
            from kiosk.errors import ConfigError

            raise ConfigError("camera", ["camera.path: the replay source needs a clip or image folder"])
        return ReplaySource(cfg.path, realtime=cfg.realtime, loop=cfg.loop, folder_fps=cfg.fps)
    if cfg.source == "v4l2":
        from kiosk.camera.v4l2 import V4L2Source

        return V4L2Source(cfg.device, cfg.width, cfg.height, cfg.fps, timeout_s=cfg.capture_timeout_s)
    if cfg.source == "picamera2":
        from kiosk.camera.picamera import Picamera2Source

        return Picamera2Source(
            (cfg.width, cfg.height), cfg.fps, lores_width=lores_width, timeout_s=cfg.capture_timeout_s
        )
    raise ValueError(f"unknown camera source {cfg.source!r}")
