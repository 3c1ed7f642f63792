"""Frame sources: replays of real clips, GIFs and image folders; picamera2 via a fake module; V4L2 errors."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest
from PIL import Image

from kiosk.camera import Frame
from kiosk.camera._worker import LatestFrameWorker
from kiosk.camera.picamera import Picamera2Source, lores_size
from kiosk.camera.replay import ReplaySource
from kiosk.camera.v4l2 import V4L2Source
from kiosk.errors import CameraError

FACES = Path("/work/shared/faces")
HAMILTON = FACES / "face_recognition/examples/short_hamilton_clip.mp4"
FFMPEG_DATA = FACES / "dlib/dlib/test/ffmpeg_data"
ELON_GIF = FFMPEG_DATA / "elon-musk-smoke.gif"
RAW_H264 = FFMPEG_DATA / "MOT20-08-raw_shorter.h264"
YALE = FACES / "yalefaces/yalefaces"

needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason=f"{FACES} (the shared face clips) is not present")


def read_all(source: ReplaySource) -> list[Frame]:
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    return frames


def check_rgb(frame: Frame, shape: tuple[int, int, int]) -> None:
    assert frame.rgb.shape == shape
    assert frame.rgb.dtype == np.uint8
    assert frame.rgb.flags.c_contiguous


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps or the test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------------------------------------- replay: video


@needs_faces
def test_mp4_fast_mode_delivers_every_frame_in_rgb_order() -> None:
    cap = cv2.VideoCapture(str(HAMILTON))  # the reference: OpenCV's own BGR decode
    mismatched, count = [], 0
    with ReplaySource(HAMILTON, realtime=False) as source:
        assert source.fps == pytest.approx(29.97)
        while (frame := source.read()) is not None:
            ok, bgr = cap.read()
            assert ok
            check_rgb(frame, (360, 640, 3))
            assert frame.index == count
            assert frame.t == pytest.approx(count / 29.97)
            if not np.array_equal(frame.rgb, bgr[..., ::-1]):
                mismatched.append(frame.index)
            count += 1
        assert source.read() is None
        assert source.dropped == 0
    assert not cap.read()[0]
    cap.release()
    assert count == 275
    assert mismatched == []


@needs_faces
def test_realtime_paces_an_early_consumer_and_drops_for_a_late_one() -> None:
    clock = FakeClock()
    with ReplaySource(HAMILTON, realtime=True, clock=clock, sleep=clock.sleep) as source:
        period = 1 / source.fps
        first = source.read()
        assert first is not None and (first.index, first.t) == (0, 0.0)
        assert clock.sleeps == []

        early = source.read()  # the consumer is back at once: wait one period for frame 1
        assert early is not None and early.index == 1
        assert sum(clock.sleeps) == pytest.approx(period)

        clock.now += 5 * period  # the consumer took five frame periods
        late = source.read()
        assert late is not None
        assert late.index == early.index + 5
        assert late.t == pytest.approx(6 * period)
        assert source.dropped == 4
        assert sum(clock.sleeps) == pytest.approx(period)  # no waiting when late

        clock.now += period  # exactly on time: nothing dropped
        on_time = source.read()
        assert on_time is not None and on_time.index == late.index + 1
        assert source.dropped == 4

        clock.now += 60  # far past the end of a 9 s clip
        assert source.read() is None


@needs_faces
def test_raw_h264_elementary_stream() -> None:
    with ReplaySource(RAW_H264, realtime=False) as source:
        frames = read_all(source)
    assert len(frames) == 127
    check_rgb(frames[-1], (366, 960, 3))


# ----------------------------------------------------------------------------------------- replay: GIF, loop


@needs_faces
def test_animated_gif_has_all_frames_with_their_delays() -> None:
    with ReplaySource(ELON_GIF, realtime=False) as source:
        assert source.fps == pytest.approx(20.0)  # 50 ms per frame
        frames = read_all(source)
    assert len(frames) == 35
    check_rgb(frames[0], (272, 480, 3))
    assert frames[34].t == pytest.approx(34 * 0.05)
    assert not np.array_equal(frames[0].rgb, frames[34].rgb)


@needs_faces
def test_loop_starts_again_and_time_keeps_growing() -> None:
    with ReplaySource(ELON_GIF, realtime=False, loop=True) as source:
        frames = [source.read() for _ in range(80)]
    assert all(f is not None for f in frames)
    got = [f for f in frames if f is not None]
    assert [f.index for f in got] == list(range(80))
    assert all(b.t > a.t for a, b in itertools.pairwise(got))
    assert got[35].t == pytest.approx(35 * 0.05)
    np.testing.assert_array_equal(got[35].rgb, got[0].rgb)
    np.testing.assert_array_equal(got[71].rgb, got[1].rgb)


@needs_faces
def test_realtime_loop_drops_across_the_end_of_the_clip() -> None:
    clock = FakeClock()
    with ReplaySource(ELON_GIF, loop=True, clock=clock, sleep=clock.sleep) as source:
        assert source.read() is not None
        clock.now += 36 * 0.05  # 1.8 s: frame 1 of the second pass is due
        frame = source.read()
    assert frame is not None
    assert frame.index == 36
    assert frame.t == pytest.approx(1.8)
    assert source.dropped == 35


# ----------------------------------------------------------------------------------- replay: image folders


@needs_faces
def test_folder_of_extensionless_yale_gifs(tmp_path: Path) -> None:
    names = ["subject01.happy", "subject02.normal", "subject03.glasses", "subject04.sad"]
    for name in names:
        (tmp_path / name).symlink_to(YALE / name)
    (tmp_path / "readme.txt").write_text("not an image, ignored\n")
    with ReplaySource(tmp_path, realtime=False, folder_fps=5) as source:
        assert source.fps == 5
        frames = read_all(source)
    assert len(frames) == 4
    assert [f.t for f in frames] == pytest.approx([0, 0.2, 0.4, 0.6])
    for frame, name in zip(frames, names, strict=True):
        check_rgb(frame, (243, 320, 3))
        assert (frame.rgb == frame.rgb[..., :1]).all()  # three equal channels
        with Image.open(YALE / name) as grey:
            np.testing.assert_array_equal(frame.rgb[..., 0], np.asarray(grey.convert("L")))


def write_images(folder: Path) -> dict[str, np.ndarray]:
    """Good images of several kinds plus one of garbage bytes; returns the RGB each good one should give."""
    rng = np.random.default_rng(7)
    grey = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(grey).save(folder / "a_grey.png")
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    Image.fromarray(rgba).save(folder / "c_rgba.png")
    Image.fromarray(rgb).save(folder / "d_no_suffix", format="BMP")
    Image.fromarray(grey).save(folder / "e_grey.pgm")
    return {
        "a_grey.png": np.repeat(grey[..., None], 3, axis=2),
        "c_rgba.png": rgba[..., :3],
        "d_no_suffix": rgb,
        "e_grey.pgm": np.repeat(grey[..., None], 3, axis=2),
    }


def test_corrupt_image_in_a_folder_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = write_images(tmp_path)
    with caplog.at_level(logging.WARNING, logger="kiosk.camera.replay"), ReplaySource(
        tmp_path, realtime=False
    ) as source:
        frames = read_all(source)
        assert source.skipped == 1
    assert "b_broken.jpg" in caplog.text
    assert len(frames) == len(expected)
    for frame, want in zip(frames, expected.values(), strict=True):
        check_rgb(frame, (24, 32, 3))
        np.testing.assert_array_equal(frame.rgb, want)


def test_corrupt_image_is_warned_about_once_when_looping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = write_images(tmp_path)
    with caplog.at_level(logging.WARNING, logger="kiosk.camera.replay"), ReplaySource(
        tmp_path, realtime=False, loop=True
    ) as source:
        frames = [source.read() for _ in range(3 * len(expected))]
        assert source.skipped == 1
    assert len([r for r in caplog.records if "b_broken.jpg" in r.getMessage()]) == 1
    assert all(f is not None for f in frames)


def test_folder_of_only_corrupt_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(CameraError, match="no frame could be read"):
        ReplaySource(tmp_path)


# --------------------------------------------------------------------------------------- replay: bad paths


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(CameraError, match="does not exist") as err:
        ReplaySource(missing)
    assert str(missing) in str(err.value)


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no pictures here\n")
    with pytest.raises(CameraError, match="contains no images") as err:
        ReplaySource(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_file_that_is_not_a_video_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"\x00\x01 not a video " * 100)
    with pytest.raises(CameraError) as err:
        ReplaySource(junk)
    assert str(junk) in str(err.value)


def test_close_is_idempotent_and_read_after_close_raises(tmp_path: Path) -> None:
    write_images(tmp_path)
    source = ReplaySource(tmp_path, realtime=False)
    source.close()
    source.close()
    with pytest.raises(CameraError, match="closed"):
        source.read()


# ------------------------------------------------------------------------------------ latest-frame worker


def test_worker_hands_over_the_newest_frame_and_counts_the_others() -> None:
    counter = iter(range(10**9))

    def capture() -> int:
        time.sleep(0.002)
        return next(counter)

    worker: LatestFrameWorker[int] = LatestFrameWorker(capture, name="test-capture")
    try:
        first = worker.next(1.0)
        time.sleep(0.05)
        second = worker.next(1.0)
    finally:
        assert worker.stop(1.0)
    assert first is not None and second is not None
    assert second[0] == second[2] > first[0] + 1  # index == the capture's own count: nothing reordered
    assert worker.dropped == second[0] + 1 - 2  # produced minus the two handed over
    assert second[1] > first[1]


def test_worker_reraises_the_capture_error() -> None:
    def capture() -> int:
        raise RuntimeError("sensor unplugged")

    worker: LatestFrameWorker[int] = LatestFrameWorker(capture, name="test-capture")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="sensor unplugged"):
            worker.next(1.0)
    assert worker.stop(1.0)


# ---------------------------------------------------------------------------------------- picamera2 (fake)


class FakePicamera2:
    """Enough of picamera2.Picamera2 for the source: video configuration, start/stop, capture_arrays.

    Like the real library, "RGB888" arrays are B, G, R in memory and a "YUV420" array is (h * 3 / 2) rows of
    a padded stride, the Y plane first. ``hang`` makes every capture block like a dead camera.
    """

    instances: ClassVar[list[FakePicamera2]] = []
    hang = False

    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.stop_calls = 0
        self.unblock = threading.Event()  # lets a hung capture end once the test is over
        FakePicamera2.instances.append(self)

    def create_video_configuration(
        self, main: dict[str, Any] | None = None, lores: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        if lores is not None and any(v % 2 for v in lores["size"]):
            raise ValueError("lores dimensions must be even")
        return {"main": dict(main or {}), "lores": dict(lores) if lores else None, **kwargs}

    def configure(self, config: dict[str, Any]) -> None:
        assert not self.started, "configure() while running"
        self.config = config

    def start(self) -> None:
        assert self.config is not None, "start() before configure()"
        self.started = True

    @staticmethod
    def scene(w: int, h: int) -> np.ndarray:
        """The RGB picture the fake sensor sees: red rises left to right, blue top to bottom, green is 7."""
        rgb = np.empty((h, w, 3), dtype=np.uint8)
        rgb[..., 0] = np.arange(w, dtype=np.uint8)[None, :]
        rgb[..., 1] = 7
        rgb[..., 2] = np.arange(h, dtype=np.uint8)[:, None]
        return rgb

    def capture_arrays(self, names: list[str]) -> tuple[list[np.ndarray], dict[str, Any]]:
        assert self.started and self.config is not None, "capture before start()"
        if self.hang:
            self.unblock.wait()
            raise RuntimeError("camera closed")
        time.sleep(1 / self.config["controls"]["FrameRate"])
        arrays = []
        for name in names:
            w, h = self.config[name]["size"]
            if name == "main":
                arrays.append(np.ascontiguousarray(self.scene(w, h)[..., ::-1]))
            else:
                stride = (w + 63) // 64 * 64
                yuv = np.full((h * 3 // 2, stride), 255, dtype=np.uint8)
                yuv[:h, :w] = self.scene(w, h)[..., 0]  # Y plane: the red ramp
                arrays.append(yuv)
        return arrays, {"SensorTimestamp": time.monotonic_ns()}

    def stop(self) -> None:
        self.stop_calls += 1
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setattr(FakePicamera2, "instances", [])
    return FakePicamera2


def test_lores_size_keeps_the_aspect_ratio_with_even_dims() -> None:
    assert lores_size((1280, 720), 320) == (320, 180)
    assert lores_size((1280, 720), 333) == (332, 186)
    assert lores_size((640, 480), 4000) == (640, 480)


def test_picamera2_frames_are_rgb_with_the_lores_y_plane(fake_picamera2: type[FakePicamera2]) -> None:
    with Picamera2Source((160, 120), 100, lores_width=80, timeout_s=1.0) as source:
        cam = fake_picamera2.instances[0]
        assert cam.config is not None
        assert cam.config["main"] == {"size": (160, 120), "format": "RGB888"}
        assert cam.config["lores"] == {"size": (80, 60), "format": "YUV420"}
        assert cam.config["controls"] == {"FrameRate": 100}
        frames = [source.read() for _ in range(3)]
    assert cam.closed and cam.stop_calls == 1
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    frame = frames[-1]
    check_rgb(frame, (120, 160, 3))
    np.testing.assert_array_equal(frame.rgb, FakePicamera2.scene(160, 120))
    assert frame.lores is not None
    assert frame.lores.shape == (60, 80) and frame.lores.flags.c_contiguous
    np.testing.assert_array_equal(frame.lores, FakePicamera2.scene(80, 60)[..., 0])


def test_picamera2_without_lores(fake_picamera2: type[FakePicamera2]) -> None:
    with Picamera2Source((64, 48), 100, timeout_s=1.0) as source:
        assert fake_picamera2.instances[0].config["lores"] is None  # type: ignore[index]
        frame = source.read()
    assert frame.lores is None
    check_rgb(frame, (48, 64, 3))


def test_a_hung_picamera2_capture_raises_and_close_still_returns(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_picamera2, "hang", True)
    source = Picamera2Source((64, 48), 30, timeout_s=0.2)
    cam = fake_picamera2.instances[0]
    try:
        start = time.monotonic()
        with pytest.raises(CameraError, match=r"no frame from the Raspberry Pi camera within 0\.2 s"):
            source.read()
        assert time.monotonic() - start < 1.0
        start = time.monotonic()
        source.close()
        assert time.monotonic() - start < 1.0
        assert cam.closed and cam.stop_calls == 1
        source.close()
        assert cam.stop_calls == 1
    finally:
        cam.unblock.set()


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="sudo apt install python3-picamera2"):
        Picamera2Source((640, 480), 30)


# ------------------------------------------------------------------------------------------------------- V4L2


def test_v4l2_missing_device_fails_fast_with_the_path() -> None:
    start = time.monotonic()
    with pytest.raises(CameraError, match="/dev/video99"):
        V4L2Source("/dev/video99", 640, 480, 30, timeout_s=2.0)
    assert time.monotonic() - start < 1.0


def test_v4l2_non_device_cannot_be_opened(tmp_path: Path) -> None:
    not_a_camera = tmp_path / "video0"
    not_a_camera.write_bytes(b"")
    with pytest.raises(CameraError, match="cannot open") as err:
        V4L2Source(str(not_a_camera), 640, 480, 30)
    assert str(not_a_camera) in str(err.value)
