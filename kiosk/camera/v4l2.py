"""A USB webcam read through OpenCV's V4L2 backend (MJPG), always handing over the newest frame."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.camera import Frame
from kiosk.camera._worker import LatestFrameWorker
from kiosk.errors import CameraError

log = logging.getLogger(__name__)


class V4L2Source:
    """A webcam at ``device`` asked for MJPG at ``width`` x ``height`` and ``fps``.

    A daemon thread ("v4l2-capture") reads the device continuously; :meth:`read` returns the newest frame
    and raises :class:`CameraError` when none arrives within ``timeout_s``.
    """

    def __init__(
        self, device: str | int, width: int, height: int, fps: float, *, timeout_s: float = 2.0
    ) -> None:
        import cv2

        self._cv2: Any = cv2
        self.device = device
        self._timeout_s = timeout_s
        self._closed = False
        if isinstance(device, str) and not Path(device).exists():
            raise CameraError(
                f"{device} does not exist: is the webcam plugged in? "
                "`v4l2-ctl --list-devices` lists the video devices; set camera.device to one of them"
            )
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot open {device}: is it a capture device, is another program using it, "
                "and is this user in the 'video' group?"
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if got != (width, height):
            log.warning("%s: asked for %dx%d, the webcam gives %dx%d", device, width, height, *got)
        actual_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(actual_fps) if 0 < actual_fps < 1000 else float(fps)
        self._cap = cap
        self._worker: LatestFrameWorker[np.ndarray] = LatestFrameWorker(self._capture, name="v4l2-capture")

    @property
    def dropped(self) -> int:
        """Frames the webcam delivered that were replaced by a newer one before :meth:`read` took them."""
        return self._worker.dropped

    def _capture(self) -> np.ndarray:
        ok, bgr = self._cap.read()
        if not ok:
            raise CameraError("the driver returned no frame")
        return bgr

    def read(self) -> Frame:
        """The newest frame as RGB; raises :class:`CameraError` when none comes within the timeout."""
        if self._closed:
            raise CameraError(f"{self.device} is closed")
        try:
            got = self._worker.next(self._timeout_s)
        except Exception as exc:
            raise CameraError(
                f"{self.device} stopped delivering frames ({exc}): was the webcam unplugged?"
            ) from exc
        if got is None:
            raise CameraError(
                f"no frame from {self.device} within {self._timeout_s} s: is the webcam connected? "
                f"`v4l2-ctl -d {self.device} --list-formats-ext` shows whether it offers MJPG at this size"
            )
        index, t, bgr = got
        return Frame(rgb=self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB), index=index, t=t)

    def close(self) -> None:
        """Stop the capture thread and release the device; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._worker.stop(self._timeout_s):
            self._cap.release()
        else:
            # Releasing while the thread is inside read() would free buffers under it; exit frees them.
            log.warning("%s: the capture thread is stuck; the device stays open until exit", self.device)

    def __enter__(self) -> V4L2Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
