"""The kiosk's one typed configuration: dataclasses with defaults, loaded from TOML and validated at start.

Each field's ``metadata`` holds its help text (``doc``) and, for numbers, its allowed range (``min``/``max``);
string choices are ``Literal`` types. The loader below rejects unknown keys and reports every problem at once
with its key path (``recognizer.decision.accept_distance: ...``).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import stat
import sys
import textwrap
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from kiosk.errors import ConfigError


def _f(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    min_items: int | None = None,
) -> Any:
    """A dataclass field with a default, help text, an optional numeric range and, for arrays, a least length.

    ``default=dataclasses.MISSING`` makes the key required (used for the keys of array-of-table entries).
    """
    meta: dict[str, Any] = {"doc": doc}
    if lo is not None:
        meta["min"] = lo
    if hi is not None:
        meta["max"] = hi
    if min_items is not None:
        meta["min_items"] = min_items
    if default is dataclasses.MISSING:
        return field(metadata=meta)
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
    data_key: Literal["none", "file", "otp"] = _f(
        "none",
        "Key that encrypts the gallery and evidence photos at rest: a key file, the Pi's OTP private key, or none.",
    )
    data_key_file: Path | None = _f(None, "data_key = file: secret file with the 32-byte key (or credential:NAME).")


@dataclass(frozen=True)
class CameraConfig:
    """The frame source, chosen by ``source``; the other keys apply to the sources that name them."""

    source: Literal["picamera2", "v4l2", "replay"] = _f("replay", "Frame source backend.")
    path: Path | None = _f(None, "replay: a video file, an animated GIF, or a folder of images.")
    realtime: bool = _f(True, "replay: pace frames at the clip's rate (dropping late ones) or run flat out.")
    loop: bool = _f(False, "replay: start again at the end instead of stopping.")
    fps: float = _f(30.0, "Frames per second asked of the camera; replay of an image folder uses it too.", lo=1, hi=120)
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
    detect_width: int = _f(0, "Override: width of the detection image (0 = derive from the geometry).", lo=0, hi=4608)


@dataclass(frozen=True)
class QualityConfig:
    """The gate a face must pass before it is encoded (and before a photo is enrolled)."""

    min_face_px: int = _f(
        0, "Smallest face width in main-stream pixels (0 = from the geometry's max distance).", lo=0, hi=2000
    )
    min_sharpness: float = _f(50.0, "Variance of the Laplacian of the face resampled to 64x64 px.", lo=0, hi=10000)
    min_brightness: float = _f(40.0, "Mean grey level of the face chip (0-255).", lo=0, hi=255)
    max_yaw: float = _f(0.2, "Nose offset from the eye midpoint, in eye distances (0 = frontal).", lo=0, hi=2)
    max_roll_deg: float = _f(25.0, "Tilt of the eye line.", lo=0, hi=90)


@dataclass(frozen=True)
class DecisionConfig:
    """The open-set rule: accept only a close, unambiguous, repeated match."""

    accept_distance: float = _f(0.475, "Best distance must be at most this.", lo=0, hi=2)
    min_margin: float = _f(0.09, "Second-best identity must be at least this much farther.", lo=0, hi=2)
    agreement: int = _f(2, "Encodings of one track that must agree before a person is accepted.", lo=1, hi=10)
    fused_accept_distance: float = _f(
        0.42,
        "The mean of at least `agreement` encodings of a track is accepted at this distance (0 = off).",
        lo=0,
        hi=2,
    )
    max_encodings: int = _f(4, "Encodings per track before the track is declared unknown.", lo=1, hi=20)
    encode_every_frames: int = _f(2, "Frames between two encodings of one track.", lo=1, hi=60)
    retry_after_s: float = _f(
        2.0,
        "A person still in view after an unknown decision is tried again after this long (0 = never).",
        lo=0,
        hi=600,
    )


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become tracks and how often the whole frame is searched."""

    full_scan_every: int = _f(6, "Frames between whole-frame scans while people are tracked.", lo=1, hi=300)
    search_every: int = _f(
        2, "Frames between whole-frame scans while something moves and nobody is tracked.", lo=1, hi=300
    )
    idle_scan_every_s: float = _f(5.0, "Whole-frame scan at least this often when nothing moves.", lo=0.1, hi=60)
    motion_threshold: float = _f(12.0, "Grey-level change that counts as motion.", lo=1, hi=255)
    max_missed_frames: int = _f(8, "Frames a track survives without a detection.", lo=1, hi=300)
    min_iou: float = _f(0.3, "Overlap that joins a detection to a track.", lo=0.01, hi=1)


@dataclass(frozen=True)
class LivenessConfig:
    """Refusing a photo or a screen held up to the camera (docs/liveness.md)."""

    level: Literal["off", "passive", "challenge"] = _f(
        "challenge",
        "off; passive (blink or head parallax with still surroundings, else suspected spoof); challenge (passive, "
        "then random actions when the passive checks are inconclusive or the surroundings moved).",
    )
    passive_timeout_s: float = _f(
        3.0, "Time the passive checks get before the challenge (or, at level passive, the refusal).", lo=0, hi=30
    )
    challenge_timeout_s: float = _f(5.0, "Time to perform each action asked for.", lo=0.5, hi=30)
    challenge_steps: int = _f(
        2, "Random actions asked for in a row: each one a replayed clip must happen to do.", lo=1, hi=3
    )
    blink_ratio: float = _f(
        0.65, "A blink: the eye aspect ratio below this fraction of the person's open eyes.", lo=0.1, hi=0.95
    )
    reopen_ratio: float = _f(0.85, "The eyes count as open again above this fraction.", lo=0.1, hi=1)
    parallax_live: float = _f(
        0.045, "Homography residual (inter-ocular distances) that only a real, moving head shows.", lo=0.005, hi=1
    )
    parallax_frames: int = _f(3, "Frames that must show that residual.", lo=1, hi=100)
    turn_yaw: float = _f(0.1, "Turn challenge: change of the nose's place between the jaw ends.", lo=0.02, hi=0.5)
    surroundings_motion: float = _f(
        0.04,
        "Motion of the face's surroundings from one frame to the next (inter-ocular distances) that a fixed camera's "
        "still background does not show, and a picture held in a hand does.",
        lo=0.005,
        hi=1,
    )
    surroundings_frames: int = _f(
        3, "Frames with moving surroundings after which only the challenge proves liveness.", lo=1, hi=100
    )


@dataclass(frozen=True)
class RecognizerConfig:
    """The on-device recognizer."""

    gallery: Path = _f(
        Path("/var/lib/kiosk/gallery.kgal"),
        "The enrolled templates (see `kiosk enroll`).",
    )
    gallery_key_file: Path | None = _f(None, "Secret file with the gallery's HMAC key (optional).")
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)

    def gallery_key(self) -> bytes | None:
        """The gallery's HMAC key, read from ``gallery_key_file`` (None when no key is configured)."""
        if self.gallery_key_file is None:
            return None
        return read_secret(self.gallery_key_file, key="recognizer.gallery_key_file")


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PunchKind = Literal["masuk", "pulang", "istirahat_keluar", "istirahat_masuk", "lembur_masuk", "lembur_pulang"]
DAYS: tuple[Day, ...] = typing.get_args(Day)
"""Day names in ``datetime.weekday()`` order (Monday first)."""


@dataclass(frozen=True)
class PunchWindow:
    """One punch window: on these days, a punch between start and end (local time, whole minutes) is this kind."""

    days: tuple[Day, ...] = _f(dataclasses.MISSING, "Days of the week the window applies to.", min_items=1)
    kind: PunchKind = _f(dataclasses.MISSING, "Kind of punch recorded in the window.")
    start: time = _f(dataclasses.MISSING, "First minute of the window (local time, inclusive).")
    end: time = _f(dataclasses.MISSING, "Last minute of the window (local time, inclusive); after start.")


@dataclass(frozen=True)
class RamadanPeriod:
    """One Ramadan date range (local dates, both inclusive)."""

    start: date = _f(dataclasses.MISSING, "First day of Ramadan hours.")
    end: date = _f(dataclasses.MISSING, "Last day of Ramadan hours (inclusive).")


_WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri")


@dataclass(frozen=True)
class ScheduleConfig:
    """When a punch is recorded and as what kind, in `device.timezone`; see docs/schedule.md.

    The device only classifies a punch (masuk, pulang, ...); lateness and early leave (TL/PSW bands) are decided
    centrally from the office's start and end times, so the default windows are wide.
    """

    windows: tuple[PunchWindow, ...] = _f(
        (
            PunchWindow(days=_WEEKDAYS, kind="masuk", start=time(5, 0), end=time(10, 59)),
            PunchWindow(days=_WEEKDAYS, kind="pulang", start=time(11, 0), end=time(23, 0)),
        ),
        "Punch windows; windows of the same day must not overlap. Outside every window (and on holidays) "
        "the kiosk records nothing: 'outside attendance hours'.",
    )
    ramadan: tuple[RamadanPeriod, ...] = _f((), "Ramadan date ranges; on these days `ramadan_windows` apply.")
    ramadan_windows: tuple[PunchWindow, ...] = _f(
        (), "Punch windows on Ramadan days (same shape as `windows`); when empty, `windows` apply."
    )
    holidays: tuple[date, ...] = _f((), "Public holidays and cuti bersama (local dates): no punch is recorded on them.")


@dataclass(frozen=True)
class DisplayConfig:
    """The screen a person at the terminal sees."""

    backend: Literal["null", "log", "pygame"] = _f(
        "log", "`pygame` draws the screen (SDL picks kmsdrm on a Pi console); `log` writes results; `null` nothing."
    )
    width: int = _f(800, "Screen width in pixels (the official Pi touchscreen is 800x480).", lo=320, hi=7680)
    height: int = _f(480, "Screen height in pixels.", lo=240, hi=4320)
    language: Literal["id", "en"] = _f("id", "Language of the screen texts (Bahasa Indonesia by default).")
    hold_s: float = _f(4.0, "How long a result (recorded, not recognised, ...) stays on the screen.", lo=1, hi=30)
    fullscreen: bool = _f(True, "Fill the screen (the kiosk); false opens a window, for a desktop.")
    snapshot_dir: Path | None = _f(
        None, "pygame: also save a PNG of the screen here whenever it changes (a demo without a display)."
    )
    awake_s: float = _f(
        60.0,
        "With a PIR: the screen stays lit and the recognizer awake this long after the last motion.",
        lo=5,
        hi=3600,
    )


@dataclass(frozen=True)
class FallbackConfig:
    """Manual entry when the face fails: the person types their NIP, the kiosk sends a photo for HR to review."""

    enabled: bool = _f(True, "Offer NIP entry (touchscreen, keyboard or keypad; the fallback key opens it).")
    per_person_per_day: int = _f(2, "Manual entries one NIP may make in a day on this kiosk.", lo=1, hi=20)
    per_hour: int = _f(12, "Manual entries this kiosk accepts in an hour, for everyone together.", lo=1, hi=600)
    entry_timeout_s: float = _f(30.0, "The NIP entry closes after this long without a key press.", lo=5, hi=300)


@dataclass(frozen=True)
class EventsConfig:
    """Attendance events: the durable outbox in ``device.state_dir``, evidence photos, signing, repeats."""

    max_events: int = _f(
        200_000,
        "Unacknowledged events the outbox holds before the kiosk says it cannot record.",
        lo=1000,
        hi=10_000_000,
    )
    max_bytes: int = _f(4_000_000_000, "Size limit of the outbox database in bytes.", lo=10_000_000, hi=10**12)
    retention_days: float = _f(
        30.0, "Acknowledged events, and evidence photos, are deleted after this long.", lo=1, hi=3650
    )
    evidence_max_bytes: int = _f(20_000, "Size cap of one evidence JPEG of the face.", lo=2000, hi=500_000)
    repeat_interval_min: float = _f(
        10.0, "The same person again within this long gets 'already recorded' and no new event.", lo=0, hi=720
    )
    signing_key_file: Path | None = _f(None, "Secret file with the device's Ed25519 private key (PEM).")


@dataclass(frozen=True)
class MqttConfig:
    """The central broker; events wait in the outbox while it is unreachable."""

    enabled: bool = _f(False, "Publish to the broker (off: events are only kept in the outbox).")
    host: str = _f("127.0.0.1", "Broker host name or address.")
    port: int = _f(1883, "Broker port (8883 is usual with TLS).", lo=1, hi=65535)
    protocol: Literal["5", "3.1.1"] = _f("5", "MQTT protocol version.")
    site: str = _f("site", "Site segment of the topics: <topic_prefix>/<site>/<device id>/...")
    topic_prefix: str = _f("presensi/v1", "Versioned prefix of every topic.")
    keepalive_s: int = _f(30, "MQTT keepalive.", lo=5, hi=3600)
    reconnect_min_s: float = _f(1.0, "First reconnect delay; it doubles up to reconnect_max_s.", lo=0.1, hi=600)
    reconnect_max_s: float = _f(60.0, "Longest reconnect delay.", lo=1, hi=3600)
    tls_ca_file: Path | None = _f(None, "CA certificate that signed the broker's certificate (enables TLS).")
    tls_cert_file: Path | None = _f(None, "This device's client certificate (PEM).")
    tls_key_file: Path | None = _f(None, "Secret file with the client certificate's private key (PEM).")
    username: str | None = _f(None, "MQTT user name (none when not set).")
    password_file: Path | None = _f(None, "Secret file with the MQTT password.")
    status_every_s: float = _f(60.0, "Period of the device status message.", lo=5, hi=86400)
    republish_after_s: float = _f(
        300.0, "A published event the server has not acknowledged after this long is sent again.", lo=5, hi=86400
    )
    window: int = _f(20, "Messages handed to the broker and not yet confirmed, at most.", lo=1, hi=1000)
    central_key_file: Path | None = _f(
        None, "The central server's Ed25519 public key (PEM); commands that change the device must be signed with it."
    )


@dataclass(frozen=True)
class HardwareConfig:
    """GPIO parts on the Pi (BCM numbers; leave a pin out for a part that is not fitted). See docs/hardware.md."""

    enabled: bool = _f(False, "Drive LEDs, buzzer, keys, PIR and case switch through gpiozero (Pi only).")
    led_green: int | None = _f(17, "Green LED: recorded / already recorded.", lo=2, hi=27)
    led_red: int | None = _f(27, "Red LED: not recognised, cannot record, outside hours.", lo=2, hi=27)
    buzzer: int | None = _f(18, "Passive piezo buzzer (PWM).", lo=2, hi=27)
    key_masuk: int | None = _f(5, "Key 'Masuk' to GND.", lo=2, hi=27)
    key_pulang: int | None = _f(6, "Key 'Pulang' to GND.", lo=2, hi=27)
    key_fallback: int | None = _f(13, "Fallback key to GND: opens the NIP entry.", lo=2, hi=27)
    pir: int | None = _f(23, "PIR motion sensor output.", lo=2, hi=27)
    tamper: int | None = _f(24, "Case switch to GND, closed while the case is shut.", lo=2, hi=27)
    led_seconds: float = _f(1.0, "How long the LED shows an outcome.", lo=0.1, hi=10)
    kind_key_s: float = _f(
        15.0, "After the Masuk or Pulang key, the next face recorded within this long gets that kind.", lo=2, hi=120
    )


@dataclass(frozen=True)
class KioskConfig:
    """The whole configuration of one kiosk."""

    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    fallback: FallbackConfig = field(default_factory=FallbackConfig)


# --- Loading and validation -------------------------------------------------------------------------------

_SECRET_WORDS = ("password", "secret", "token", "private")
_CREDENTIAL = "credential:"
_TIME_ZONE_HINT = 'use an IANA name: "Asia/Makassar" (WITA), "Asia/Jakarta" (WIB) or "Asia/Jayapura" (WIT)'


class _Invalid(Exception):
    """A value that does not fit its field; the message says what was expected."""


_FAILED = object()
"""What ``_Parser.value`` returns for a value it reported a problem with (the field keeps its default)."""


def load_config(path: Path | str) -> KioskConfig:
    """Read and validate a TOML configuration file; relative paths in it are taken from the file's folder."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = "on the device it is /etc/kiosk/kiosk.toml (start from examples/kiosk.toml)"
        raise ConfigError(source, [f"file not found; {hint}"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text (bad byte at offset {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    return parse_config(data, source, base_dir=path.absolute().parent)


def parse_config(data: dict[str, Any], source: str, *, base_dir: Path | None = None) -> KioskConfig:
    """Build a config from parsed TOML, raising one ConfigError that lists every problem.

    Relative paths are joined to ``base_dir`` when it is given (``load_config`` passes the file's folder).
    """
    parser = _Parser(base_dir)
    cfg: KioskConfig = parser.table(KioskConfig, data, "")
    parser.cross_check(cfg)
    if parser.problems:
        raise ConfigError(source, parser.problems)
    return cfg


class _Parser:
    """Walks the dataclass tree alongside the TOML tables, collecting problems instead of stopping."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.bad: set[str] = set()

    def report(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")
        self.bad.add(key)

    def dirty(self, prefix: str) -> bool:
        """Whether a problem was reported at ``prefix`` or anywhere inside it."""
        return any(k == prefix or k.startswith((prefix + ".", prefix + "[")) for k in self.bad)

    def table(self, cls: Any, data: object, path: str) -> Any:
        """An instance of dataclass ``cls`` from a TOML table; keys with problems keep their defaults.

        Returns ``_FAILED`` when a required key (a field without default) is missing or has a problem.
        """
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if _is_required(f)]
        if not isinstance(data, dict):
            where = "" if path.endswith("]") else f" ([{path}])"
            self.report(path, f"must be a table{where}, got {_describe(data)}")
            return _FAILED if required else cls()
        known = {f.name: f for f in fields}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for name, value in data.items():
            key = _join(path, name)
            if _is_secret_name(name):
                self.report(key, _secret_message(name))
            elif name not in known:
                self.report(key, _unknown_message(name, list(known), path))
            elif (converted := self.value(hints[name], known[name], value, key)) is not _FAILED:
                values[name] = converted
        absent = [name for name in required if name not in data]
        for name in absent:
            self.report(_join(path, name), f"required key missing; each entry needs {', '.join(required)}")
        if any(name not in values for name in required):
            return _FAILED
        return cls(**values)

    def value(self, tp: Any, f: dataclasses.Field[Any], value: object, key: str) -> Any:
        """The TOML ``value`` of field ``f`` as type ``tp``, or ``_FAILED`` after reporting its problems."""
        if dataclasses.is_dataclass(tp):
            return self.table(tp, value, key)
        if typing.get_origin(tp) is tuple:
            (inner,) = _tuple_item(tp)
            if not isinstance(value, list):
                self.report(key, f"must be an array, got {_describe(value)}")
                return _FAILED
            before = len(self.problems)
            items = [self.value(inner, f, item, f"{key}[{i}]") for i, item in enumerate(value)]
            if len(self.problems) > before:
                self.bad.add(key)
                return _FAILED
            least = f.metadata.get("min_items")
            if least is not None and len(items) < least:
                self.report(key, f"must have at least {least} item(s), got {len(items)}")
                return _FAILED
            return tuple(items)
        try:
            converted = _convert(tp, value, f.name, self.base_dir)
            _check_range(f, converted)
        except _Invalid as exc:
            self.report(key, str(exc))
            return _FAILED
        return converted

    def cross_check(self, cfg: KioskConfig) -> None:
        """Rules that involve several keys; skipped when one of those keys already has a problem."""

        def clean(*keys: str) -> bool:
            return not self.bad.intersection(keys)

        tz = cfg.device.timezone
        if clean("device.timezone"):
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                by_lower = {name.lower(): name for name in zoneinfo.available_timezones()}
                close = difflib.get_close_matches(tz.lower(), list(by_lower), n=1)
                hint = f' (did you mean "{by_lower[close[0]]}"?)' if close else ""
                self.report("device.timezone", f"unknown time zone {_toml_str(tz)}{hint}; {_TIME_ZONE_HINT}")
        if cfg.device.data_key == "file" and cfg.device.data_key_file is None and clean("device.data_key"):
            self.report("device.data_key_file", 'required when device.data_key is "file" (32 random bytes, chmod 600)')
        cam = cfg.camera
        if cam.source == "replay" and cam.path is None and clean("camera.source", "camera.path"):
            what = "a video file, an animated GIF, or a folder of images"
            self.report("camera.path", f'required when camera.source is "replay" ({what})')
        geo = cfg.recognizer.geometry
        near, far = "recognizer.geometry.min_distance_m", "recognizer.geometry.max_distance_m"
        if geo.min_distance_m >= geo.max_distance_m and clean(near, far):
            self.report(near, f"must be less than {far} ({geo.min_distance_m} >= {geo.max_distance_m})")
        dec = cfg.recognizer.decision
        agree, most = "recognizer.decision.agreement", "recognizer.decision.max_encodings"
        if dec.agreement > dec.max_encodings and clean(agree, most):
            self.report(
                agree,
                f"must be at most {most} ({dec.agreement} > {dec.max_encodings}), or no one is ever accepted",
            )
        live = cfg.recognizer.liveness
        shut, reopen = "recognizer.liveness.blink_ratio", "recognizer.liveness.reopen_ratio"
        if live.blink_ratio >= live.reopen_ratio and clean(shut, reopen):
            self.report(shut, f"must be less than {reopen} ({live.blink_ratio} >= {live.reopen_ratio}): a blink closes "
                        "the eyes below the first and opens them above the second")
        self.check_schedule(cfg.schedule)

    def check_schedule(self, schedule: ScheduleConfig) -> None:
        """Each window on whole minutes with start before end, no two windows of a day overlapping;
        each Ramadan range with start on or before end. Entries that already have problems are skipped."""
        for name in ("windows", "ramadan_windows"):
            path = f"schedule.{name}"
            if self.dirty(path):
                continue
            windows: tuple[PunchWindow, ...] = getattr(schedule, name)
            good: list[tuple[int, PunchWindow]] = []
            for i, w in enumerate(windows):
                at = f"{path}[{i}]"
                ok = True
                for end in ("start", "end"):
                    t: time = getattr(w, end)
                    if t.second or t.microsecond:
                        self.report(f"{at}.{end}", f"must be a whole minute (HH:MM), got {t.isoformat()}")
                        ok = False
                if ok and w.start >= w.end:
                    self.report(
                        f"{at}.start",
                        f"must be before {at}.end ({_hhmm(w.start)} >= {_hhmm(w.end)}); a window cannot cross midnight",
                    )
                    ok = False
                if ok:
                    good.append((i, w))
            for n, (i, a) in enumerate(good):
                for j, b in good[n + 1 :]:
                    shared = [d for d in DAYS if d in a.days and d in b.days]
                    if shared and a.start <= b.end and b.start <= a.end:
                        touching = a.start == b.end or b.start == a.end
                        hint = " (both ends are inclusive: start the later window a minute after)" if touching else ""
                        self.report(
                            f"{path}[{j}]",
                            f"overlaps {path}[{i}] on {', '.join(shared)} "
                            f"({_hhmm(b.start)}-{_hhmm(b.end)} {b.kind} and {_hhmm(a.start)}-{_hhmm(a.end)} "
                            f"{a.kind}); windows of the same day must not overlap{hint}",
                        )
        if not self.dirty("schedule.ramadan"):
            for i, r in enumerate(schedule.ramadan):
                if r.start > r.end:
                    at = f"schedule.ramadan[{i}]"
                    self.report(f"{at}.start", f"must be on or before {at}.end ({r.start} > {r.end})")


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M")


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _tuple_item(tp: Any) -> tuple[Any]:
    """X of ``tuple[X, ...]`` (the only tuple form the schema uses)."""
    args = typing.get_args(tp)
    if len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError(f"the config schema uses a tuple that is not tuple[X, ...]: {tp!r}")
    return (args[0],)


def _parse_time(value: object) -> time:
    """A TOML local time (``07:30:00``), or a string ``"07:30"`` / ``"07:30:00"`` (TOML 1.0 has no ``07:30``)."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise _Invalid(f"must be a local time without offset, got {value.isoformat()}")
        return value
    if isinstance(value, str) and len(value) in (5, 8) and value[2:3] == ":":
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise _Invalid(f'must be a local time (07:30:00, or the string "07:30"), got {_describe(value)}')


def _convert(tp: Any, value: object, name: str, base_dir: Path | None) -> Any:
    """The TOML ``value`` as Python type ``tp``, or ``_Invalid`` saying what was expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        message = f"must be one of {', '.join(_toml_str(c) for c in choices)}, got {_describe(value)}"
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        raise _Invalid(message + (f' (did you mean "{close[0]}"?)' if close else ""))
    if origin in (types.UnionType, typing.Union):
        (inner,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
        credential = isinstance(value, str) and value.startswith(_CREDENTIAL)
        if inner is Path and name.endswith("_file") and credential:
            _credential_name(str(value))
            return Path(str(value))
        return _convert(inner, value, name, base_dir)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"must be true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid(f"must be an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Invalid(f"must be a finite number, got {value}")
            return float(value)
        raise _Invalid(f"must be a number, got {_describe(value)}")
    if tp is time:
        return _parse_time(value)
    if tp is date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        raise _Invalid(f"must be a local date (2026-03-01), got {_describe(value)}")
    if tp is str or tp is Path:
        kind = "a string" if tp is str else "a path (string)"
        if not isinstance(value, str):
            raise _Invalid(f"must be {kind}, got {_describe(value)}")
        if not value:
            raise _Invalid(f"must be {kind}, not empty")
        if tp is str:
            return value
        path = Path(value)
        return Path(os.path.normpath(base_dir / path)) if base_dir is not None and not path.is_absolute() else path
    raise TypeError(f"the config schema uses a type the loader does not know: {tp!r}")


def _check_range(f: dataclasses.Field[Any], value: object) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if not isinstance(value, (int, float)):
        return
    if lo is not None and value < lo:
        raise _Invalid(f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise _Invalid(f"must be at most {hi}, got {value}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: object) -> str:
    """A TOML value as an error message shows it: its TOML type and a short form of it."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {_toml_str(value if len(value) <= 60 else value[:57] + '...')}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime):
        return f"date-time {value.isoformat()}"
    if isinstance(value, date):
        return f"local date {value.isoformat()}"
    if isinstance(value, time):
        return f"local time {value.isoformat()}"
    return f"{type(value).__name__} {value}"


def _unknown_message(name: str, allowed: list[str], path: str) -> str:
    close = difflib.get_close_matches(name.lower(), allowed, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    if path.endswith("]"):
        where = f"each [[{path[: path.rindex('[')]}]] entry"
    else:
        where = f"[{path}]" if path else "the top level"
    return f"unknown key{hint}; {where} allows: {', '.join(allowed)}"


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("_file")


def _secret_message(name: str) -> str:
    return (
        f"secrets must not be written in the configuration file; put the value in a file only the kiosk user "
        f"can read (chmod 600) and set {name}_file to its path, or use a systemd credential "
        f'(LoadCredential=NAME:... in the unit and {name}_file = "credential:NAME")'
    )


def _credential_name(ref: str) -> str:
    """NAME from ``credential:NAME``; it must be a plain file name inside $CREDENTIALS_DIRECTORY."""
    name = ref.removeprefix(_CREDENTIAL)
    if not name or "/" in name or name in (".", ".."):
        raise _Invalid(
            f'"{ref}" is not a valid credential; write "credential:NAME" with the name given to '
            "LoadCredential= (a plain name, no slashes)"
        )
    return name


# --- Secrets ----------------------------------------------------------------------------------------------


def secret_file(ref: Path | str, *, key: str = "secret") -> Path:
    """The file behind a ``*_file`` setting: ``credential:NAME`` is ``$CREDENTIALS_DIRECTORY/NAME`` (systemd
    ``LoadCredential=``), anything else the path itself. For libraries that want a path (TLS keys)."""
    text = str(ref)
    if not text.startswith(_CREDENTIAL):
        return Path(ref)
    try:
        name = _credential_name(text)
    except _Invalid as exc:
        raise ConfigError(text, [f"{key}: {exc}"]) from None
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            text,
            [
                f"{key}: CREDENTIALS_DIRECTORY is not set (not started by systemd?); add "
                f"LoadCredential={name}:/path/to/secret to the kiosk's unit, or point {key} at a file instead"
            ],
        )
    return Path(directory) / name


def read_secret(ref: Path | str, *, key: str = "secret") -> bytes:
    """The bytes of a secret named by a ``*_file`` setting, exactly as stored (no newline is stripped).

    ``credential:NAME`` reads ``$CREDENTIALS_DIRECTORY/NAME`` (systemd ``LoadCredential=``); anything else
    is a file path, refused when group or others have any access to it. ``key`` names the setting in messages.
    """
    path = secret_file(ref, key=key)
    private = not str(ref).startswith(_CREDENTIAL)
    source = str(path)
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if private and stat.S_ISREG(mode) and mode & 0o077:
                raise ConfigError(
                    source,
                    [
                        f"{key}: the secret file is open to group or others (mode {stat.S_IMODE(mode):04o}); "
                        f"run: chmod 600 {path} (owned by the kiosk user)"
                    ],
                )
            data = fh.read()
    except FileNotFoundError:
        message = f"{key}: the secret file does not exist; create it (chmod 600) or fix {key}"
        raise ConfigError(source, [message]) from None
    except OSError as exc:
        raise ConfigError(source, [f"{key}: cannot read the secret file: {exc.strerror or exc}"]) from None
    if not data:
        raise ConfigError(source, [f"{key}: the secret file is empty; write the secret into it"])
    return data


# --- Writing: example files and the reference table -------------------------------------------------------

_TOML_HEADER = """\
# Kiosk configuration (TOML). On the device: /etc/kiosk/kiosk.toml; check it with `kiosk config check FILE`.
# Every key is optional and takes the default listed in docs/config.md; unknown keys are errors.
# Relative paths are taken from this file's folder. Secrets never go here: see docs/config.md, "Secrets".
"""


def config_to_toml(cfg: KioskConfig) -> str:
    """The configuration as TOML, every table and key preceded by its help text and allowed values."""
    lines = [_TOML_HEADER.rstrip("\n")]
    _emit_table(cfg, "", lines)
    return "\n".join(lines) + "\n"


def _is_table_type(tp: Any) -> bool:
    """A dataclass (a [table]) or a tuple of dataclasses (an array of [[tables]])."""
    if typing.get_origin(tp) is tuple:
        return dataclasses.is_dataclass(_tuple_item(tp)[0])
    return dataclasses.is_dataclass(tp)


def _emit_table(
    obj: Any, path: str, lines: list[str], *, header: str = "", comments: bool = True, blank: bool = True
) -> None:
    hints = typing.get_type_hints(type(obj))
    fields = dataclasses.fields(obj)
    if path:
        doc = _comment((inspect.getdoc(obj) or "").replace("``", "`")) if comments else []
        lines += [*([""] if blank else []), *doc, header or f"[{path}]"]
    for f in fields:
        if _is_table_type(hints[f.name]):
            continue
        value = getattr(obj, f.name)
        if comments:
            lines += _comment(f.metadata["doc"])
            if rule := _rule(f, hints[f.name]):
                lines += _comment(f"Allowed: {rule}.")
        lines.append(f"# {f.name} = (not set)" if value is None else f"{f.name} = {_toml_value(value)}")
    for f in fields:
        tp, value, key = hints[f.name], getattr(obj, f.name), _join(path, f.name)
        if dataclasses.is_dataclass(tp):
            _emit_table(value, key, lines)
        elif _is_table_type(tp):
            item = _tuple_item(tp)[0]
            lines += ["", *_comment(f"[[{key}]]: {f.metadata['doc']}")]
            if not value:
                keys = ", ".join(g.name for g in dataclasses.fields(item))
                lines += _comment(f"None set; each entry is a [[{key}]] table with: {keys}.")
            for i, entry in enumerate(value):
                _emit_table(entry, key, lines, header=f"[[{key}]]", comments=i == 0, blank=i > 0)


def config_reference_markdown() -> str:
    """The markdown reference table of every key: path, type, default, allowed values and meaning."""
    rows = ["| Key | Type | Default | Allowed | Meaning |", "|---|---|---|---|---|"]

    def walk(cls: Any, obj: Any, path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key, tp = _join(path, f.name), hints[f.name]
            value = getattr(obj, f.name) if obj is not None else dataclasses.MISSING
            if dataclasses.is_dataclass(tp):
                walk(tp, None if value is dataclasses.MISSING else value, key)
                continue
            if value is dataclasses.MISSING:
                default = "required"
            else:
                default = "not set" if value is None else f"`{_toml_value(value)}`"
            cells = [f"`{key}`", _type_name(tp), default, _rule(f, tp), f.metadata["doc"]]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            if _is_table_type(tp):
                walk(_tuple_item(tp)[0], None, key + "[]")

    walk(KioskConfig, KioskConfig(), "")
    return "\n".join(rows) + "\n"


def _rule(f: dataclasses.Field[Any], tp: Any) -> str:
    """The allowed values of a field in words: its choices or its numeric range ("" when anything goes)."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(_toml_str(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        inner = _rule(f, _tuple_item(tp)[0]) if not _is_table_type(tp) else ""
        least = f.metadata.get("min_items")
        parts = ([f"at least {least} item(s)"] if least is not None else []) + ([f"each {inner}"] if inner else [])
        return ", ".join(parts)
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    if lo is not None:
        return f"at least {lo}"
    return f"at most {hi}" if hi is not None else ""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        (inner,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
        return _type_name(inner) + " (optional)"
    if typing.get_origin(tp) is tuple:
        inner = _tuple_item(tp)[0]
        return "array of tables" if dataclasses.is_dataclass(inner) else f"array of {_type_name(inner)}"
    names = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        Path: "path",
        time: "local time",
        date: "local date",
    }
    return "string" if typing.get_origin(tp) is Literal else names[tp]


def _comment(text: str) -> list[str]:
    """TOML comment lines; a line longer than 120 characters is wrapped."""
    out: list[str] = []
    for line in text.splitlines():
        wrapped = textwrap.wrap(line, 118, break_on_hyphens=False) if len(line) > 118 else [line]
        out += [f"# {part}".rstrip() for part in wrapped]
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (time, date)):
        return value.isoformat()
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = (f"{f.name} = {_toml_value(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return "{" + ", ".join(pairs) + "}"
    return _toml_str(str(value))


def _toml_str(text: str) -> str:
    """A TOML basic string (double-quoted, with escapes)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# --- CLI --------------------------------------------------------------------------------------------------


def check_command(path: Path) -> int:
    """``kiosk config check FILE``: print OK and a summary (exit status 0), or every problem on stderr (1)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    source = cfg.camera.source + (f" ({cfg.camera.path})" if cfg.camera.source == "replay" else "")
    print(f"OK: {path}")
    print(
        f"device {cfg.device.id} ({cfg.device.office}, {cfg.device.timezone}), camera {source}, "
        f"gallery {cfg.recognizer.gallery}"
    )
    return 0
