"""The kiosk's one typed configuration: dataclasses with defaults, loaded from TOML and validated at start.

Each field's ``metadata`` holds its help text (``doc``) and, for numbers, its allowed range (``min``/``max``);
string choices are ``Literal`` types. The loader below rejects unknown keys and reports every problem at once
with its key path (``recognizer.decision.accept_distance: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


def _f(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None) -> Any:
    """A dataclass field with a default, help text and an optional numeric range."""
    meta: dict[str, Any] = {"doc": doc}
    if lo is not None:
        meta["min"] = lo
    if hi is not None:
        meta["max"] = hi
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DeviceConfig:
    """Who this kiosk is and where it keeps its state."""

    id: str = _f("kiosk-dev", "Device id, unique in the regency (used in events and topics).")
    office: str = _f("Kantor Contoh", "Office name shown on the screen.")
    timezone: str = _f("Asia/Makassar", "IANA time zone of the site (WITA by default).")
    state_dir: Path = _f(Path("/var/lib/kiosk"), "Writable folder for the gallery, outbox and evidence.")


@dataclass(frozen=True)
class CameraConfig:
    """The frame source, chosen by ``source``; the other keys apply to the sources that name them."""

    source: Literal["picamera2", "v4l2", "replay"] = _f("replay", "Frame source backend.")
    path: Path | None = _f(None, "replay: a video file, an animated GIF, or a folder of images.")
    realtime: bool = _f(True, "replay: pace frames at the clip's rate (dropping late ones) or run flat out.")
    loop: bool = _f(False, "replay: start again at the end instead of stopping.")
    fps: float = _f(30.0, "Frames per second asked of the camera; replay of an image folder uses it too.",
                    lo=1, hi=120)
    device: str = _f("/dev/video0", "v4l2: the video device.")
    width: int = _f(1280, "Width of the main (display and encoding) stream.", lo=160, hi=4608)
    height: int = _f(720, "Height of the main stream.", lo=120, hi=2592)
    capture_timeout_s: float = _f(2.0, "A capture that takes longer raises instead of hanging.", lo=0.1, hi=60)


@dataclass(frozen=True)
class GeometryConfig:
    """Where people stand: it fixes the smallest face to find and so the detection resolution."""

    hfov_deg: float = _f(66.0, "Horizontal field of view of the camera (Camera Module 3: 66).", lo=20, hi=180)
    min_distance_m: float = _f(0.3, "Nearest distance at which a person is served.", lo=0.1, hi=5)
    max_distance_m: float = _f(1.5, "Farthest distance at which a person is served.", lo=0.2, hi=10)
    face_width_m: float = _f(0.145, "Width of dlib's face box on an adult face.", lo=0.05, hi=0.5)
    detector_face_px: int = _f(80, "Face width at which dlib's HOG detector finds faces reliably.", lo=40, hi=200)
    detect_width: int = _f(0, "Override: width of the detection image (0 = derive from the geometry).",
                           lo=0, hi=4608)


@dataclass(frozen=True)
class QualityConfig:
    """The gate a face must pass before it is encoded (and before a photo is enrolled)."""

    min_face_px: int = _f(0, "Smallest face width in main-stream pixels (0 = from the geometry's max distance).",
                          lo=0, hi=2000)
    min_sharpness: float = _f(20.0, "Variance of the Laplacian of the aligned face chip.", lo=0, hi=10000)
    min_brightness: float = _f(40.0, "Mean grey level of the face chip (0-255).", lo=0, hi=255)
    max_yaw: float = _f(0.35, "Nose offset from the eye midpoint, in eye distances (0 = frontal).", lo=0, hi=2)
    max_roll_deg: float = _f(25.0, "Tilt of the eye line.", lo=0, hi=90)


@dataclass(frozen=True)
class DecisionConfig:
    """The open-set rule: accept only a close, unambiguous, repeated match."""

    accept_distance: float = _f(0.45, "Best distance must be at most this.", lo=0, hi=2)
    min_margin: float = _f(0.06, "Second-best identity must be at least this much farther.", lo=0, hi=2)
    agreement: int = _f(2, "Encodings of one track that must agree before a person is accepted.", lo=1, hi=10)
    max_encodings: int = _f(4, "Encodings per track before the track is declared unknown.", lo=1, hi=20)
    encode_every_frames: int = _f(2, "Frames between two encodings of one track.", lo=1, hi=60)


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become tracks and how often the whole frame is searched."""

    full_scan_every: int = _f(6, "Frames between whole-frame scans while people are tracked.", lo=1, hi=300)
    idle_scan_every_s: float = _f(1.0, "Whole-frame scan at least this often when nothing moves.", lo=0.1, hi=60)
    motion_threshold: float = _f(12.0, "Grey-level change that counts as motion.", lo=1, hi=255)
    max_missed_frames: int = _f(8, "Frames a track survives without a detection.", lo=1, hi=300)
    min_iou: float = _f(0.3, "Overlap that joins a detection to a track.", lo=0.01, hi=1)


@dataclass(frozen=True)
class RecognizerConfig:
    """The on-device recognizer."""

    gallery: Path = _f(Path("/var/lib/kiosk/gallery.kgal"), "The enrolled templates (see `kiosk enroll`).")
    gallery_key_file: Path | None = _f(None, "Secret file with the gallery's HMAC key (optional).")
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


@dataclass(frozen=True)
class DisplayConfig:
    """The screen boundary (the pygame screen comes with the terminal issue)."""

    backend: Literal["null", "log"] = _f("log", "`null` shows nothing; `log` writes each result to the log.")


@dataclass(frozen=True)
class KioskConfig:
    """The whole configuration of one kiosk."""

    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
