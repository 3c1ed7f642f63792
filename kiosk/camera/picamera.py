"""The Raspberry Pi camera through picamera2: an RGB main stream and an optional grey detection stream."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kiosk.camera import Frame
from kiosk.camera._worker import LatestFrameWorker
from kiosk.errors import CameraError

log = logging.getLogger(__name__)


def lores_size(size: tuple[int, int], lores_width: int) -> tuple[int, int]:
    """The lores stream size for ``lores_width``: at most the main width, same aspect, both dims even."""
    w, h = size
    lw = max(2, min(lores_width, w) // 2 * 2)
    lh = max(2, round(lw * h / w / 2) * 2)
    return lw, lh


class Picamera2Source:
    """The Pi camera at ``size`` and ``fps``; with ``lores_width`` each frame also carries the lores Y plane.

    Captures run on a daemon thread ("picamera2-capture") that keeps the newest frame, so a camera that stops
    answering makes :meth:`read` raise :class:`CameraError` after ``timeout_s`` instead of hanging.
    """

    def __init__(
        self,
        size: tuple[int, int],
        fps: float,
        *,
        lores_width: int | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(
                "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2` "
                "and create the venv with --system-site-packages"
            ) from exc
        self.fps = float(fps)
        self._timeout_s = timeout_s
        self._closed = False
        self._lores = lores_size(size, lores_width) if lores_width else None
        try:
            cam: Any = Picamera2()
        except Exception as exc:  # picamera2 raises IndexError or RuntimeError when it finds no camera
            raise CameraError(
                f"no Raspberry Pi camera found ({exc}): "
                "check the ribbon cable and `rpicam-hello --list-cameras`"
            ) from exc
        self._cam = cam
        try:
            config = cam.create_video_configuration(
                main={"size": tuple(size), "format": "RGB888"},
                lores={"size": self._lores, "format": "YUV420"} if self._lores else None,
                controls={"FrameRate": self.fps},
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            cam.close()
            raise CameraError(
                f"cannot start the camera at {size[0]}x{size[1]}, {fps} fps ({exc}): "
                "check camera.width/height/fps against `rpicam-hello --list-cameras`"
            ) from exc
        self._names = ["main", "lores"] if self._lores else ["main"]
        self._worker: LatestFrameWorker[list[np.ndarray]] = LatestFrameWorker(
            self._capture, name="picamera2-capture"
        )

    @property
    def dropped(self) -> int:
        """Frames the camera delivered that were replaced by a newer one before :meth:`read` took them."""
        return self._worker.dropped

    def _capture(self) -> list[np.ndarray]:
        arrays, _metadata = self._cam.capture_arrays(self._names)
        return list(arrays)

    def read(self) -> Frame:
        """The newest frame; raises :class:`CameraError` when none comes within the timeout."""
        if self._closed:
            raise CameraError("the Raspberry Pi camera is closed")
        try:
            got = self._worker.next(self._timeout_s)
        except Exception as exc:
            raise CameraError(f"the Raspberry Pi camera stopped delivering frames ({exc})") from exc
        if got is None:
            raise CameraError(
                f"no frame from the Raspberry Pi camera within {self._timeout_s} s: "
                "is the ribbon cable seated? "
                "If it happens again, restart the kiosk (a hung libcamera capture does not recover)"
            )
        index, t, arrays = got
        # "RGB888" is B, G, R in memory; [..., 2::-1] makes it R, G, B (and would drop the X of XRGB8888).
        rgb = np.ascontiguousarray(arrays[0][..., 2::-1])
        lores = None
        if self._lores:
            lw, lh = self._lores
            lores = np.ascontiguousarray(arrays[1][:lh, :lw])  # YUV420: the first lh rows are the Y plane
        return Frame(rgb=rgb, index=index, t=t, lores=lores)

    def close(self) -> None:
        """Stop the capture thread (without waiting forever on a hung one) and release the camera."""
        if self._closed:
            return
        self._closed = True
        if not self._worker.stop(self._timeout_s):
            log.warning("the picamera2 capture thread is stuck in a capture; leaving it behind")
        for step in (self._cam.stop, self._cam.close):
            try:
                step()
            except Exception as exc:  # closing must not fail because the camera already did
                log.warning("picamera2 %s() failed while closing: %s", step.__name__, exc)

    def __enter__(self) -> Picamera2Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
