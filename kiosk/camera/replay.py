"""Replay of a recording as if it were a camera: a video file, an animated GIF, or a folder of images.

In real time the replay behaves like a live camera: a slow consumer gets the frame due now and the frames it
was too slow for are dropped; an early consumer waits for the next frame. Otherwise every frame comes in order
as fast as it decodes. Used for development off the Pi, for tests and for benchmarks.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from kiosk.camera import Frame
from kiosk.errors import CameraError, ImageError
from kiosk.imageio import is_image, read_rgb

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".tif", ".tiff", ".pgm", ".ppm", ".gif", ".bmp"}
)
_GIF_MIN_DELAY_MS = 20  # browsers show shorter (and missing) GIF delays as 100 ms; so does the replay
_GIF_DEFAULT_DELAY_MS = 100
_EPS = 1e-6  # seconds of slack when comparing clip times with the clock (float rounding)
_PIL_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """An 8-bit Pillow image as H x W x 3 RGB (grey gets three equal channels, alpha is dropped)."""
    return np.array(image.convert("RGB"))


class _Clip(Protocol):
    """One pass over a recording, frame by frame, decoding only the frames that are shown."""

    fps: float

    def time_of(self, k: int) -> float:
        """Clip time at which frame ``k`` is due; ``k`` past the end counts on into the next pass."""
        ...

    def grab(self) -> bool:
        """Step to the next frame without decoding it; False at the end of the pass."""
        ...

    def retrieve(self) -> np.ndarray | None:
        """The current frame as RGB, or None (with a logged warning) when it cannot be decoded."""
        ...

    def rewind(self) -> None:
        """Go back to before the first frame."""
        ...

    def close(self) -> None: ...


class _VideoClip:
    """A video file or a raw H.264/H.265 stream, decoded by OpenCV at its constant frame rate."""

    def __init__(self, path: Path, fallback_fps: float) -> None:
        self._path = path
        self._cap = self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        if not 0 < fps < 1000:  # also false for NaN
            log.warning("%s: no frame rate in the file; replaying at %.1f fps", path, fallback_fps)
            fps = fallback_fps
        self.fps = float(fps)

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self._path))
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot open {self._path} as a video: camera.path must be a video (mp4, h264, ...), "
                f"an animated GIF or a folder of images; `ffprobe {self._path}` tells what the file is"
            )
        return cap

    def time_of(self, k: int) -> float:
        return k / self.fps

    def grab(self) -> bool:
        return bool(self._cap.grab())

    def retrieve(self) -> np.ndarray | None:
        ok, bgr = self._cap.retrieve()
        if not ok:
            log.warning("%s: a frame could not be decoded; skipping it", self._path)
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def rewind(self) -> None:
        self._cap.release()
        self._cap = self._open()  # reopen: seeking is unreliable in raw elementary streams

    def close(self) -> None:
        self._cap.release()


class _GifClip:
    """An animated GIF decoded by Pillow, each frame shown for its own delay."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._image = Image.open(path)
            try:
                delays = self._delays_ms()
            except BaseException:
                self._image.close()
                raise
        except _PIL_ERRORS as exc:
            raise CameraError(f"cannot read the GIF {path} ({exc}): is the file complete?") from exc
        self._starts = [ms / 1000 for ms in itertools.accumulate(delays, initial=0)]
        self.fps = 1000 * len(delays) / sum(delays)
        self._pos = -1

    def _delays_ms(self) -> list[int]:
        """How long each frame is shown."""
        delays = []
        for i in range(getattr(self._image, "n_frames", 1)):
            self._image.seek(i)
            delay = self._image.info.get("duration") or 0
            delays.append(delay if delay >= _GIF_MIN_DELAY_MS else _GIF_DEFAULT_DELAY_MS)
        return delays

    def time_of(self, k: int) -> float:
        passes, k = divmod(k, len(self._starts) - 1)
        return passes * self._starts[-1] + self._starts[k]

    def grab(self) -> bool:
        self._pos += 1
        return self._pos < len(self._starts) - 1

    def retrieve(self) -> np.ndarray | None:
        try:
            self._image.seek(self._pos)
            return _to_rgb(self._image)
        except _PIL_ERRORS as exc:
            log.warning("%s: frame %d could not be decoded (%s); skipping it", self._path, self._pos, exc)
            return None

    def rewind(self) -> None:
        self._pos = -1

    def close(self) -> None:
        self._image.close()


class _FolderClip:
    """The images of a folder in name order, one every ``1 / fps`` seconds.

    Files with an image suffix are taken; others only when their content is an image (the Yale faces are GIFs
    named ``subject01.happy``). Each is read by :func:`kiosk.imageio.read_rgb` (upright by its EXIF orientation);
    one that fails to decode is skipped with a warning and left out of later passes.
    """

    def __init__(self, folder: Path, fps: float) -> None:
        self.fps = float(fps)
        self._folder = folder
        self._files = sorted(
            (
                p
                for p in folder.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and (p.suffix.lower() in IMAGE_SUFFIXES or is_image(p))
            ),
            key=lambda p: p.name,
        )
        if not self._files:
            raise CameraError(
                f"{folder} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}, or image files without "
                "such a suffix): put the pictures to replay there, or set camera.path to a video"
            )
        self._bad: set[Path] = set()
        self._pos = -1

    def time_of(self, k: int) -> float:
        return k / self.fps

    def grab(self) -> bool:
        self._pos += 1
        return self._pos < len(self._files)

    def retrieve(self) -> np.ndarray | None:
        path = self._files[self._pos]
        try:
            return read_rgb(path)
        except ImageError as exc:
            log.warning("skipping %s", exc)
            self._bad.add(path)
            return None

    def rewind(self) -> None:
        self._files = [p for p in self._files if p not in self._bad]
        self._pos = -1

    def close(self) -> None:
        """Nothing to release: each image is opened and closed as it is read."""


def _open_clip(path: Path, folder_fps: float) -> _Clip:
    if not path.exists():
        raise CameraError(
            f"{path} does not exist: set camera.path to a video file, an animated GIF or a folder of images"
        )
    if path.is_dir():
        return _FolderClip(path, folder_fps)
    with path.open("rb") as f:
        magic = f.read(6)
    if magic in (b"GIF87a", b"GIF89a"):
        return _GifClip(path)
    return _VideoClip(path, folder_fps)


class ReplaySource:
    """Frames from a video file, an animated GIF or a folder of images (paced at ``folder_fps``).

    ``realtime`` paces frames like a live camera, measured from the first :meth:`read`; otherwise every
    frame comes in order, as fast as possible. ``loop`` starts again at the end (``t`` keeps growing).
    ``dropped`` counts frames skipped because the consumer was late, ``skipped`` frames or images that could
    not be decoded. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = True,
        loop: bool = False,
        folder_fps: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.loop = loop
        self.dropped = 0
        self.skipped = 0
        self._clock = clock
        self._sleep = sleep
        self._clip = _open_clip(self.path, folder_fps)
        self.fps = self._clip.fps
        self._k = -1  # position of the current frame in the current pass
        self._offset = 0.0  # clip time at which the current pass started
        self._index = -1  # index of the last frame produced (delivered or dropped)
        self._start = 0.0  # clock() of clip time 0, set by the first read
        self._closed = False
        try:
            # Decode the first frame now, so that a file without a readable frame fails here, not mid-run.
            self._first: np.ndarray | None = self._next_readable()
        except BaseException:
            self._clip.close()
            raise
        if self._first is None:
            self._clip.close()
            raise CameraError(
                f"no frame could be read from {self.path}: is it a complete video, GIF or image folder?"
            )

    def _advance(self) -> bool:
        """Step to the next frame, going back to the start at the end when looping; False at the end."""
        if self._clip.grab():
            self._k += 1
            return True
        if not self.loop:
            return False
        self._offset += self._clip.time_of(self._k + 1)
        self._clip.rewind()
        self._k = -1
        if self._clip.grab():
            self._k = 0
            return True
        return False

    def _next_readable(self) -> np.ndarray | None:
        """Decode the next frame that can be decoded, counting the others in ``skipped``; None at the end."""
        while self._advance():
            rgb = self._clip.retrieve()
            if rgb is not None:
                return rgb
            self.skipped += 1
        return None

    def _skip_late(self) -> None:
        """Step past, without decoding, every frame whose successor is already due; they count as dropped."""
        now = self._clock() - self._start
        while self._offset + self._clip.time_of(self._k + 2) <= now + _EPS and self._advance():
            self._index += 1
            self.dropped += 1

    def read(self) -> Frame | None:
        """The next frame (in real time: the one due now); None at the end of a replay that does not loop."""
        if self._closed:
            raise CameraError(f"the replay of {self.path} is closed")
        if self._first is not None:
            rgb, self._first = self._first, None
            t = self._offset + self._clip.time_of(self._k)
            self._start = self._clock() - t
        else:
            if self.realtime:
                self._skip_late()
            next_rgb = self._next_readable()
            if next_rgb is None:
                return None
            rgb = next_rgb
            t = self._offset + self._clip.time_of(self._k)
        if self.realtime:
            wait = t - (self._clock() - self._start)
            if wait > 0:
                self._sleep(wait)
        self._index += 1
        return Frame(rgb=rgb, index=self._index, t=t)

    def close(self) -> None:
        """Release the file; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._first = None
            self._clip.close()

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
