"""The kiosk's one typed configuration: dataclasses with defaults, loaded from TOML and validated at start.

Each field's ``metadata`` holds its help text (``doc``) and, for numbers, its allowed range (``min``/``max``);
string choices are ``Literal`` types. The loader (kiosk_contract.settings, shared with the central server) rejects
unknown keys and reports every problem at once with its key path (``recognizer.decision.accept_distance: ...``).
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiosk_contract.errors import ConfigError
from kiosk_contract.schedule import ScheduleConfig, check_schedule
from kiosk_contract.settings import TableParser, opt, read_secret, reference_markdown, to_toml
from kiosk_contract.topics import is_office_code

KIOSK_CONFIG = Path("/etc/kiosk/kiosk.toml")
"""The device's configuration, as provisioning writes it and kiosk.service runs it."""
SELFTEST_CLIP = Path("/opt/kiosk/selftest/walkup.mp4")
"""The walk-up `kiosk selftest` benchmarks on by default; `make-images --selftest-clip` installs it."""
KIOSK_UNIT = Path("/etc/systemd/system/kiosk.service")
"""The installed unit (systemd/kiosk.service): its ``LoadCredential=`` lines name the key files behind
``credential:NAME`` for IT's tools run outside systemd (kiosk_contract.settings.use_unit_credentials)."""


@dataclass(frozen=True)
class DeviceConfig:
    """Who this kiosk is and where it keeps its state."""

    id: str = opt("kiosk-dev", "Device id, unique in the regency (used in events and topics).")
    office: str = opt("Kantor Contoh", "Office name shown on the screen.")
    office_code: str | None = opt(
        None, "Office code in the central server's rules and registry.json; central's commands must name it."
    )
    timezone: str = opt("Asia/Makassar", "IANA time zone of the site (WITA by default).")
    state_dir: Path = opt(Path("/var/lib/kiosk"), "Writable folder for the gallery, outbox and evidence.")
    data_key: Literal["none", "file", "otp"] = opt(
        "none",
        "Key that encrypts the gallery and evidence photos at rest: a key file, the Pi's OTP private key, or none.",
    )
    data_key_file: Path | None = opt(None, "data_key = file: secret file with the 32-byte key (or credential:NAME).")


@dataclass(frozen=True)
class CameraConfig:
    """The frame source, chosen by ``source``; the other keys apply to the sources that name them."""

    source: Literal["picamera2", "v4l2", "replay"] = opt("replay", "Frame source backend.")
    path: Path | None = opt(None, "replay: a video file, an animated GIF, or a folder of images.")
    realtime: bool = opt(True, "replay: pace frames at the clip's rate (dropping late ones) or run flat out.")
    loop: bool = opt(False, "replay: start again at the end instead of stopping.")
    fps: float = opt(30.0, "Frames per second asked of the camera; replay of an image folder uses it too.", lo=1,
                     hi=120)
    device: str = opt("/dev/video0", "v4l2: the video device.")
    width: int = opt(1280, "Width of the main (display and encoding) stream.", lo=160, hi=4608)
    height: int = opt(720, "Height of the main stream.", lo=120, hi=2592)
    capture_timeout_s: float = opt(2.0, "A capture that takes longer raises instead of hanging.", lo=0.1, hi=60)


@dataclass(frozen=True)
class GeometryConfig:
    """Where people stand: it fixes the smallest face to find and so the detection resolution."""

    hfov_deg: float = opt(66.0, "Horizontal field of view of the camera (Camera Module 3: 66).", lo=20, hi=180)
    min_distance_m: float = opt(0.3, "Nearest distance at which a person is served.", lo=0.1, hi=5)
    max_distance_m: float = opt(1.5, "Farthest distance at which a person is served.", lo=0.2, hi=10)
    face_width_m: float = opt(0.145, "Width of dlib's face box on an adult face.", lo=0.05, hi=0.5)
    detector_face_px: int = opt(80, "Face width at which dlib's HOG detector finds faces reliably.", lo=40, hi=200)
    detect_width: int = opt(0, "Override: width of the detection image (0 = derive from the geometry).", lo=0, hi=4608)


@dataclass(frozen=True)
class QualityConfig:
    """The gate a face must pass before it is encoded (and before a photo is enrolled)."""

    min_face_px: int = opt(
        0, "Smallest face width in main-stream pixels (0 = from the geometry's max distance).", lo=0, hi=2000
    )
    min_sharpness: float = opt(50.0, "Variance of the Laplacian of the face resampled to 64x64 px.", lo=0, hi=10000)
    min_brightness: float = opt(40.0, "Mean grey level of the face chip (0-255).", lo=0, hi=255)
    max_yaw: float = opt(0.2, "Nose offset from the eye midpoint, in eye distances (0 = frontal).", lo=0, hi=2)
    max_roll_deg: float = opt(25.0, "Tilt of the eye line.", lo=0, hi=90)


@dataclass(frozen=True)
class DecisionConfig:
    """The open-set rule: accept only a close, unambiguous, repeated match."""

    accept_distance: float = opt(0.475, "Best distance must be at most this.", lo=0, hi=2)
    min_margin: float = opt(0.09, "Second-best identity must be at least this much farther.", lo=0, hi=2)
    agreement: int = opt(2, "Encodings of one track that must agree before a person is accepted.", lo=1, hi=10)
    fused_accept_distance: float = opt(
        0.42,
        "The mean of at least `agreement` encodings of a track is accepted at this distance (0 = off).",
        lo=0,
        hi=2,
    )
    max_encodings: int = opt(4, "Encodings per track before the track is declared unknown.", lo=1, hi=20)
    encode_every_frames: int = opt(2, "Frames between two encodings of one track.", lo=1, hi=60)
    retry_after_s: float = opt(
        2.0,
        "A person still in view after an unknown decision is tried again after this long (0 = never).",
        lo=0,
        hi=600,
    )


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become tracks and how often the whole frame is searched."""

    full_scan_every: int = opt(6, "Frames between whole-frame scans while people are tracked.", lo=1, hi=300)
    search_every: int = opt(
        2, "Frames between whole-frame scans while something moves and nobody is tracked.", lo=1, hi=300
    )
    idle_scan_every_s: float = opt(5.0, "Whole-frame scan at least this often when nothing moves.", lo=0.1, hi=60)
    motion_threshold: float = opt(12.0, "Grey-level change that counts as motion.", lo=1, hi=255)
    max_missed_frames: int = opt(8, "Frames a track survives without a detection.", lo=1, hi=300)
    min_iou: float = opt(0.3, "Overlap that joins a detection to a track.", lo=0.01, hi=1)


@dataclass(frozen=True)
class LivenessConfig:
    """Refusing a photo or a screen held up to the camera (docs/liveness.md)."""

    level: Literal["off", "passive", "challenge"] = opt(
        "challenge",
        "off; passive (blink or head parallax with still surroundings, else suspected spoof); challenge (passive, "
        "then random actions when the passive checks are inconclusive or the surroundings moved).",
    )
    passive_timeout_s: float = opt(
        3.0, "Time the passive checks get before the challenge (or, at level passive, the refusal).", lo=0, hi=30
    )
    challenge_timeout_s: float = opt(5.0, "Time to perform each action asked for.", lo=0.5, hi=30)
    challenge_steps: int = opt(
        2, "Random actions asked for in a row: each one a replayed clip must happen to do.", lo=1, hi=3
    )
    blink_ratio: float = opt(
        0.65, "A blink: the eye aspect ratio below this fraction of the person's open eyes.", lo=0.1, hi=0.95
    )
    reopen_ratio: float = opt(0.85, "The eyes count as open again above this fraction.", lo=0.1, hi=1)
    parallax_live: float = opt(
        0.045, "Homography residual (inter-ocular distances) that only a real, moving head shows.", lo=0.005, hi=1
    )
    parallax_frames: int = opt(3, "Frames that must show that residual.", lo=1, hi=100)
    texture_refuse: float = opt(
        0.2,
        "Texture cue: below this median 'real' score the face is refused at once (a screen or a print; honest faces "
        "in poor light score between this and texture_live and are asked to act).",
        lo=0,
        hi=1,
    )
    parallax_textured: float = opt(
        0.02,
        "The smaller residual that suffices when the texture cue says live (a still person before a still camera).",
        lo=0.005,
        hi=1,
    )
    turn_yaw: float = opt(0.1, "Turn challenge: change of the nose's place between the jaw ends.", lo=0.02, hi=0.5)
    surroundings_motion: float = opt(
        0.04,
        "Motion of the face's surroundings from one frame to the next (inter-ocular distances) that a fixed camera's "
        "still background does not show, and a picture held in a hand does.",
        lo=0.005,
        hi=1,
    )
    surroundings_frames: int = opt(
        3, "Frames with moving surroundings after which only the challenge proves liveness.", lo=1, hi=100
    )
    texture_models: Path | None = opt(
        None,
        "Folder with the two MiniFASNet ONNX models (the image script installs them in /opt/kiosk/models/minifasnet; "
        "each is sha256-checked at load). Unset: the texture cue is off and a replay on a stand can pass.",
    )
    texture_live: float = opt(
        0.5,
        "Texture cue: the median MiniFASNet 'real' score of the watched frames a live face must reach; below it the "
        "face must answer the challenge (level passive: refused).",
        lo=0,
        hi=1,
    )
    trial_dir: Path | None = opt(
        None,
        "Field trial (docs/liveness.md): keep a short clip of every decision here for labelling and `kiosk liveness "
        "evaluate`. Only with trial_consent; unset outside a trial.",
    )
    trial_consent: str | None = opt(
        None, "The signed consent of the people filmed in the trial (e.g. the letter's number)."
    )
    trial_seconds: float = opt(6.0, "Longest clip kept per decision.", lo=1, hi=30)
    trial_keep_days: int = opt(14, "Trial clips are deleted after this many days.", lo=1, hi=90)


@dataclass(frozen=True)
class RecognizerConfig:
    """The on-device recognizer."""

    gallery: Path = opt(
        Path("/var/lib/kiosk/gallery.kgal"),
        "The enrolled templates (see `kiosk enroll`).",
    )
    gallery_key_file: Path | None = opt(None, "Secret file with the gallery's HMAC key (optional).")
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


@dataclass(frozen=True)
class DisplayConfig:
    """The screen a person at the terminal sees."""

    backend: Literal["null", "log", "pygame"] = opt(
        "log", "`pygame` draws the screen (SDL picks kmsdrm on a Pi console); `log` writes results; `null` nothing."
    )
    width: int = opt(800, "Screen width in pixels (the official Pi touchscreen is 800x480).", lo=320, hi=7680)
    height: int = opt(480, "Screen height in pixels.", lo=240, hi=4320)
    language: Literal["id", "en"] = opt("id", "Language of the screen texts (Bahasa Indonesia by default).")
    hold_s: float = opt(4.0, "How long a result (recorded, not recognised, ...) stays on the screen.", lo=1, hi=30)
    fullscreen: bool = opt(True, "Fill the screen (the kiosk); false opens a window, for a desktop.")
    snapshot_dir: Path | None = opt(
        None, "pygame: also save a PNG of the screen here whenever it changes (a demo without a display)."
    )
    awake_s: float = opt(
        60.0,
        "With a PIR: the screen stays lit and the recognizer awake this long after the last motion.",
        lo=5,
        hi=3600,
    )


@dataclass(frozen=True)
class FallbackConfig:
    """Manual entry when the face fails: the person types their NIP, the kiosk sends a photo for HR to review."""

    enabled: bool = opt(True, "Offer NIP entry (touchscreen, keyboard or keypad; the fallback key opens it).")
    per_person_per_day: int = opt(2, "Manual entries one NIP may make in a day on this kiosk.", lo=1, hi=20)
    per_hour: int = opt(12, "Manual entries this kiosk accepts in an hour, for everyone together.", lo=1, hi=600)
    entry_timeout_s: float = opt(30.0, "The NIP entry closes after this long without a key press.", lo=5, hi=300)


@dataclass(frozen=True)
class EventsConfig:
    """Attendance events: the durable outbox in ``device.state_dir``, evidence photos, signing, repeats."""

    max_events: int = opt(
        200_000,
        "Unacknowledged events the outbox holds before the kiosk says it cannot record.",
        lo=1000,
        hi=10_000_000,
    )
    max_bytes: int = opt(4_000_000_000, "Size limit of the outbox database in bytes.", lo=10_000_000, hi=10**12)
    retention_days: float = opt(
        30.0, "Acknowledged events, and evidence photos, are deleted after this long.", lo=1, hi=3650
    )
    evidence_max_bytes: int = opt(20_000, "Size cap of one evidence JPEG of the face.", lo=2000, hi=500_000)
    repeat_interval_min: float = opt(
        10.0, "The same person again within this long gets 'already recorded' and no new event.", lo=0, hi=720
    )
    signing_key_file: Path | None = opt(None, "Secret file with the device's Ed25519 private key (PEM).")


@dataclass(frozen=True)
class MqttConfig:
    """The central broker; events wait in the outbox while it is unreachable."""

    enabled: bool = opt(False, "Publish to the broker (off: events are only kept in the outbox).")
    host: str = opt("127.0.0.1", "Broker host name or address.")
    port: int = opt(1883, "Broker port (8883 is usual with TLS).", lo=1, hi=65535)
    protocol: Literal["5", "3.1.1"] = opt("5", "MQTT protocol version.")
    site: str = opt("site", "Site segment of the topics: <topic_prefix>/<site>/<device id>/...")
    topic_prefix: str = opt("presensi/v1", "Versioned prefix of every topic.")
    keepalive_s: int = opt(30, "MQTT keepalive.", lo=5, hi=3600)
    reconnect_min_s: float = opt(1.0, "First reconnect delay; it doubles up to reconnect_max_s.", lo=0.1, hi=600)
    reconnect_max_s: float = opt(60.0, "Longest reconnect delay.", lo=1, hi=3600)
    tls_ca_file: Path | None = opt(None, "CA certificate that signed the broker's certificate (enables TLS).")
    tls_cert_file: Path | None = opt(None, "This device's client certificate (PEM).")
    tls_key_file: Path | None = opt(None, "Secret file with the client certificate's private key (PEM).")
    username: str | None = opt(None, "MQTT user name (none when not set).")
    password_file: Path | None = opt(None, "Secret file with the MQTT password.")
    status_every_s: float = opt(60.0, "Period of the device status message.", lo=5, hi=86400)
    republish_after_s: float = opt(
        300.0, "A published event the server has not acknowledged after this long is sent again.", lo=5, hi=86400
    )
    window: int = opt(20, "Messages handed to the broker and not yet confirmed, at most.", lo=1, hi=1000)
    central_key_file: Path | None = opt(
        None, "The central server's Ed25519 public key (PEM); commands that change the device must be signed with it."
    )


@dataclass(frozen=True)
class HardwareConfig:
    """GPIO parts on the Pi (BCM numbers; leave a pin out for a part that is not fitted). See docs/hardware.md."""

    enabled: bool = opt(False, "Drive LEDs, buzzer, keys, PIR and case switch through gpiozero (Pi only).")
    led_green: int | None = opt(17, "Green LED: recorded / already recorded.", lo=2, hi=27)
    led_red: int | None = opt(27, "Red LED: not recognised, cannot record, outside hours.", lo=2, hi=27)
    buzzer: int | None = opt(18, "Passive piezo buzzer (PWM).", lo=2, hi=27)
    key_masuk: int | None = opt(5, "Key 'Masuk' to GND.", lo=2, hi=27)
    key_pulang: int | None = opt(6, "Key 'Pulang' to GND.", lo=2, hi=27)
    key_fallback: int | None = opt(13, "Fallback key to GND: opens the NIP entry.", lo=2, hi=27)
    pir: int | None = opt(23, "PIR motion sensor output.", lo=2, hi=27)
    tamper: int | None = opt(24, "Case switch to GND, closed while the case is shut.", lo=2, hi=27)
    led_seconds: float = opt(1.0, "How long the LED shows an outcome.", lo=0.1, hi=10)
    kind_key_s: float = opt(
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

TOML_HEADER = """\
# Kiosk configuration (TOML). On the device: /etc/kiosk/kiosk.toml; check it with `kiosk config check FILE`.
# Every key is optional and takes the default listed in docs/config.md; unknown keys are errors.
# Relative paths are taken from this file's folder. Secrets never go here: see docs/config.md, "Secrets".
"""


def load_config(path: Path | str, *, camera: bool = True) -> KioskConfig:
    """Read and validate a TOML configuration file; relative paths in it are taken from the file's folder.

    ``camera=False`` is for the tools that never open the configured camera (``kiosk replay --source``, enroll,
    identify, gallery): the rules about the camera alone (``camera.path`` for a replay source) are not applied."""
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
    return parse_config(data, source, base_dir=path.absolute().parent, camera=camera)


def parse_config(
    data: dict[str, Any], source: str, *, base_dir: Path | None = None, camera: bool = True
) -> KioskConfig:
    """Build a config from parsed TOML, raising one ConfigError that lists every problem.

    Relative paths are joined to ``base_dir`` when it is given (``load_config`` passes the file's folder).
    """
    parser = TableParser(base_dir)
    cfg: KioskConfig = parser.table(KioskConfig, data, "")
    _cross_check(parser, cfg, camera=camera)
    if parser.problems:
        raise ConfigError(source, parser.problems)
    return cfg


def config_to_toml(cfg: KioskConfig) -> str:
    """The configuration as TOML, every table and key preceded by its help text and allowed values."""
    return to_toml(cfg, TOML_HEADER)


def config_reference_markdown() -> str:
    """The markdown reference table of every key of kiosk.toml (docs/config.md)."""
    return reference_markdown(KioskConfig)


def _cross_check(parser: TableParser, cfg: KioskConfig, *, camera: bool = True) -> None:
    """Rules that involve several keys; skipped when one of those keys already has a problem."""
    parser.check_time_zone("device.timezone", cfg.device.timezone)
    code = cfg.device.office_code
    if code and not is_office_code(code):
        parser.report("device.office_code", f"{code!r} is not an office code (1-64 of A-Z a-z 0-9 . _ -)")
    if cfg.mqtt.enabled and parser.clean("mqtt.enabled"):
        needed = {
            "device.office_code": (code, "the office code central's commands name"),
            "mqtt.central_key_file": (cfg.mqtt.central_key_file, "the central server's public key, which signs "
                                      "the acks that release events and the commands that change the kiosk"),
            "events.signing_key_file": (cfg.events.signing_key_file, "the device's Ed25519 key, which signs events"),
        }
        for key, (value, what) in needed.items():
            if not value and parser.clean(key):
                parser.report(key, f"required when mqtt.enabled is true: {what}")
    if cfg.device.data_key == "file" and cfg.device.data_key_file is None and parser.clean("device.data_key"):
        parser.report("device.data_key_file", 'required when device.data_key is "file" (32 random bytes, chmod 600)')
    cam = cfg.camera
    if camera and cam.source == "replay" and cam.path is None and parser.clean("camera.source", "camera.path"):
        what = "a video file, an animated GIF, or a folder of images"
        parser.report("camera.path", f'required when camera.source is "replay" ({what})')
    geo = cfg.recognizer.geometry
    near, far = "recognizer.geometry.min_distance_m", "recognizer.geometry.max_distance_m"
    if geo.min_distance_m >= geo.max_distance_m and parser.clean(near, far):
        parser.report(near, f"must be less than {far} ({geo.min_distance_m} >= {geo.max_distance_m})")
    dec = cfg.recognizer.decision
    agree, most = "recognizer.decision.agreement", "recognizer.decision.max_encodings"
    if dec.agreement > dec.max_encodings and parser.clean(agree, most):
        parser.report(
            agree,
            f"must be at most {most} ({dec.agreement} > {dec.max_encodings}), or no one is ever accepted",
        )
    live = cfg.recognizer.liveness
    shut, reopen = "recognizer.liveness.blink_ratio", "recognizer.liveness.reopen_ratio"
    if live.blink_ratio >= live.reopen_ratio and parser.clean(shut, reopen):
        parser.report(shut, f"must be less than {reopen} ({live.blink_ratio} >= {live.reopen_ratio}): a blink closes "
                    "the eyes below the first and opens them above the second")
    refuse, textured = "recognizer.liveness.texture_refuse", "recognizer.liveness.texture_live"
    if live.texture_refuse > live.texture_live and parser.clean(refuse, textured):
        parser.report(refuse, f"must be at most {textured} ({live.texture_refuse} > {live.texture_live})")
    consent = "recognizer.liveness.trial_consent"
    if live.trial_dir is not None and not (live.trial_consent or "").strip() and parser.clean(consent):
        parser.report(consent, "a field trial keeps clips of faces (trial_dir is set): name the signed consent of the "
                    "people filmed, or unset trial_dir")
    check_schedule(parser, cfg.schedule)


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
