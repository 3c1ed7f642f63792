"""``kiosk selftest``: what IT checks on the first real Pi and after every repair (docs/selftest.md).

Each check looks at one thing the kiosk needs on this device and ends ``ok``, ``failed`` (with what to do) or
``skipped`` (with why: the hardware or the setting is not there). Then a recognizer benchmark runs the real pipeline
on a recorded walk-up for 20 seconds and puts its figures beside those of the development machine. The report is
printed for a person, written as JSON, and with ``--publish`` stored in the outbox as a signed status event
(contract 0.5: ``selftest``), which the kiosk publishes to central once it runs again.

Run it with the kiosk stopped: the camera and the outbox are the kiosk's while it runs.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kiosk import __version__
from kiosk.config import SELFTEST_CLIP, KioskConfig
from kiosk.errors import KioskError

Status = Literal["ok", "failed", "skipped"]
REPORT_FORMAT = 1
BENCH_SECONDS = 20.0
DISK_COMMITS = 50
"""SQLite commits with synchronous=FULL timed on the state folder's card, as the outbox makes them."""
SLOW_COMMIT_MS = 100.0
"""A median commit slower than this is a card that makes people wait at the terminal."""
MIN_FREE_BYTES = 200_000_000
"""Below this the outbox nears its reserve (kiosk.terminal.STORAGE_RESERVE_BYTES, 20 MB) within days."""
BROKER_TIMEOUT_S = 15.0

REFERENCE = {
    "machine": "development machine: x86_64, 2 shared cores, dlib-bin 20.0.1 (no BLAS), short_hamilton_clip.mp4",
    "command": "kiosk selftest --clip short_hamilton_clip.mp4 (gallery: its two people), 2026-12-04, load average 7",
    "detect_ms": 25.8,
    "encode_ms": 145.6,
    "cpu_ms_per_frame": 9.2,
    "decision_ms": 2357.9,
    "fps": 33.7,
}
"""This machine's benchmark figures on the Hamilton clip, measured with the command above (three runs under a load
of 7-9 from other work gave detection 25.8-33.2 ms, encoding 145.6-257.9 ms, CPU 8.3-9.9 ms per frame; the middle
run is kept). The device's report shows its own beside them (a ratio above 1 is slower than here)."""


@dataclass
class Check:
    """One finding: ``detail`` says what was seen, ``action`` what to do when it failed."""

    name: str
    status: Status
    detail: str
    action: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)


class _Failed(Exception):
    def __init__(self, detail: str, action: str, **figures: Any) -> None:
        super().__init__(detail)
        self.detail, self.action, self.figures = detail, action, figures


class _Skipped(Exception):
    pass


def _run_check(name: str, body: Callable[[], tuple[str, dict[str, Any]]]) -> Check:
    """A check's outcome; an unexpected exception is a failure that quotes it, never a crash of the whole test."""
    try:
        detail, figures = body()
    except _Skipped as exc:
        return Check(name, "skipped", str(exc))
    except _Failed as exc:
        return Check(name, "failed", exc.detail, exc.action, exc.figures)
    except Exception as exc:  # one broken part must not hide the others
        return Check(name, "failed", f"{type(exc).__name__}: {exc}", "see the detail; run again with --log-level DEBUG")
    return Check(name, "ok", detail, figures=figures)


# --- the checks --------------------------------------------------------------------------------------------------


def check_numpy_abi() -> tuple[str, dict[str, Any]]:
    """apt's simplejpeg (picamera2's JPEG encoder, built against apt's numpy) imports and encodes beside the venv's
    numpy: a numpy 2 in the venv breaks it with "numpy.dtype size changed"."""
    import numpy as np

    try:
        import simplejpeg
    except ModuleNotFoundError:
        raise _Skipped("simplejpeg is not installed (apt's python3-simplejpeg comes with python3-picamera2 on "
                       "Raspberry Pi OS)") from None
    except (ImportError, ValueError) as exc:
        raise _Failed(f"apt's simplejpeg does not load beside numpy {np.__version__}: {exc}",
                      "the venv's numpy must be the 1.x the device lock pins (locks/device-bookworm.txt); reinstall "
                      "the venv from the wheelhouse: rm /var/lib/kiosk/.firstboot-done; systemctl restart "
                      "kiosk-firstboot") from None
    frame = np.zeros((480, 640, 3), np.uint8)
    jpeg = simplejpeg.encode_jpeg(frame, colorspace="RGB")
    return (f"numpy {np.__version__} ({np.__file__}), simplejpeg {getattr(simplejpeg, '__version__', '?')} "
            f"encodes a 640x480 frame ({len(jpeg)} bytes)"), {"numpy": np.__version__}


def check_camera(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """Open the configured camera as the kiosk does, capture a frame and its detection (lores) plane."""
    from kiosk.app import lores_width
    from kiosk.camera import open_source

    cam = cfg.camera
    if cam.source == "replay":
        raise _Skipped(f"camera.source = \"replay\": no camera on this kiosk (frames come from {cam.path})")
    if cam.source == "picamera2":
        try:
            import picamera2
        except ImportError as exc:
            raise _Failed(f"picamera2 does not import in the kiosk's venv: {exc}",
                          "apt install python3-picamera2, and make the venv with --system-site-packages (the "
                          "first boot does)") from None
        where = f"picamera2 from {Path(picamera2.__file__).parent}"
    else:
        where = f"V4L2 {cam.device}"
    width = lores_width(cfg)
    started = time.monotonic()
    try:
        with open_source(cam, lores_width=width) as source:
            frame = source.read()
    except KioskError as exc:
        raise _Failed(str(exc), "check the ribbon cable (both ends, contacts the right way), then "
                                "`rpicam-hello --list-cameras`; with the kiosk stopped nothing else holds it") from None
    if frame is None:
        raise _Failed("the camera delivered no frame", "restart the device; replace the camera if it persists")
    first_ms = 1000 * (time.monotonic() - started)
    h, w = frame.rgb.shape[:2]
    lores = "none" if frame.lores is None else f"{frame.lores.shape[1]}x{frame.lores.shape[0]}"
    if (w, h) != (cam.width, cam.height):
        raise _Failed(f"{where}: main stream {w}x{h}, asked {cam.width}x{cam.height}",
                      "set camera.width/height to a mode `rpicam-hello --list-cameras` lists")
    if cam.source == "picamera2" and width and frame.lores is None:
        raise _Failed(f"{where}: no lores plane for detection", "update libcamera and python3-picamera2 (apt)")
    return (f"{where}: main {w}x{h}, lores {lores}, first frame after {first_ms:.0f} ms",
            {"first_frame_ms": round(first_ms, 1)})


def check_screen(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """pygame (apt's, with SDL's kmsdrm) opens the display at the configured size, in a child process: a display
    that hangs SDL must not hang the self-test."""
    if cfg.display.backend != "pygame":
        raise _Skipped(f"display.backend = \"{cfg.display.backend}\": no screen is drawn")
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if driver in ("dummy", "offscreen"):
        raise _Skipped(f"SDL_VIDEODRIVER={driver}: no display here")
    if not glob.glob("/dev/dri/card*"):
        raise _Skipped("no /dev/dri/card*: no display attached to this machine")
    probe = ("import os, pygame; os.environ.setdefault('SDL_VIDEODRIVER', 'kmsdrm'); pygame.display.init(); "
             f"s = pygame.display.set_mode(({cfg.display.width}, {cfg.display.height}), pygame.FULLSCREEN); "
             "print(pygame.__file__, pygame.display.get_driver(), *s.get_size())")
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=20,
                              check=False, env=os.environ | {"PYGAME_HIDE_SUPPORT_PROMPT": "1"})
    except subprocess.TimeoutExpired:
        raise _Failed("opening the display hung for 20 s", "check the HDMI/DSI cable, then reboot") from None
    if done.returncode != 0:
        raise _Failed(f"pygame cannot open the display: {done.stderr.strip()[-300:]}",
                      "apt install python3-pygame (built with kmsdrm); the kiosk user needs the video and render "
                      "groups (kiosk.service gives them); no desktop may hold the display")
    module, driver_used, w, h = done.stdout.split()[-4:]
    return f"pygame from {Path(module).parent}, driver {driver_used}, {w}x{h}", {"driver": driver_used}


def check_gpio(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """Claim every configured pin with gpiozero as the kiosk does, then release them."""
    from kiosk.app import open_configured_pins
    from kiosk.hardware.pins import PART_NAMES

    if not cfg.hardware.enabled:
        raise _Skipped("hardware.enabled = false: no LEDs, buzzer, keys or sensors configured")
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        raise _Failed("hardware.enabled is true but there is no /dev/gpiochip*",
                      "run on the Pi; kiosk.service allows char-gpiochip, and the kiosk user needs group gpio")
    pins = {name: getattr(cfg.hardware, name, None) for name in PART_NAMES}
    pins = {name: pin for name, pin in pins.items() if pin is not None}
    try:
        open_configured_pins(cfg).close()
    except Exception as exc:  # lgpio and gpiozero raise their own types
        raise _Failed(f"cannot claim the configured pins {pins}: {exc}",
                      "another program holds a pin, or [hardware] names a pin twice; docs/hardware.md") from None
    return f"{len(pins)} pins claimed and released on {', '.join(chips)}: {pins}", {"pins": pins}


def check_otp_key(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """The Pi's OTP private key is read through the firmware mailbox when the device seals with it."""
    from kiosk import atrest

    if cfg.device.data_key != "otp":
        raise _Skipped(f"device.data_key = \"{cfg.device.data_key}\": the OTP key is not used")
    try:
        cipher = atrest.open_cipher(cfg.device)
    except KioskError as exc:
        raise _Failed(str(exc), "docs/privacy.md, \"OTP\": program the key once with rpi-otp-private-key") from None
    assert cipher is not None
    return f"OTP key read, key id {cipher.key_id}", {"key_id": cipher.key_id}


def check_time_sync() -> tuple[str, dict[str, Any]]:
    """The clock is synced (NTP), or at least known to be not: events made before the first sync wait for a time
    anchor, so a kiosk that never syncs leaves every attendance of the day pending."""
    from kiosk.events.clock import read_clock_state

    state = read_clock_state()
    if state.source == "unknown":
        raise _Skipped("cannot tell: no systemd-timesyncd sync flag and no answer from timedatectl (no systemd here)")
    if state.synced:
        return f"clock synced ({state.source}, seen by {state.how})", {"source": state.source}
    raise _Failed(f"clock not synced (source {state.source}, seen by {state.how or 'nothing'})",
                  "check `timedatectl timesync-status`: the office network must reach the NTP servers "
                  "(/etc/systemd/timesyncd.conf.d/kiosk.conf, UDP 123)", source=state.source)


def check_disk(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """Free space in the state folder, and how long the card takes for a commit the outbox makes (SQLite,
    synchronous=FULL, WAL), timed on a scratch database there."""
    from kiosk_contract.fsutil import free_bytes

    folder = cfg.device.state_dir
    try:
        free = free_bytes(folder)
    except OSError as exc:
        action = "create it; kiosk.service's StateDirectory= makes /var/lib/kiosk"
        raise _Failed(f"cannot read the state folder {folder}: {exc}", action) from None
    times = []
    try:
        with tempfile.TemporaryDirectory(prefix=".selftest-", dir=folder) as scratch:
            db = sqlite3.connect(Path(scratch) / "commit.sqlite", isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("CREATE TABLE t (payload BLOB)")
                row = os.urandom(600)  # about one event
                for _ in range(DISK_COMMITS):
                    started = time.perf_counter()
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT INTO t VALUES (?)", (row,))
                    db.execute("COMMIT")
                    times.append(1000 * (time.perf_counter() - started))
            finally:
                db.close()
    except (OSError, sqlite3.Error) as exc:
        action = "the card is read-only or failing: `dmesg | grep mmc`; replace it (docs/outbox.md, \"On an SD card\")"
        raise _Failed(f"cannot write in {folder}: {exc}", action) from None
    median, worst = statistics.median(times), max(times)
    figures = {"free_bytes": free, "commit_ms_median": round(median, 2), "commit_ms_max": round(worst, 2)}
    detail = (f"{free / 1e9:.1f} GB free in {folder}; {DISK_COMMITS} synchronous=FULL commits: median "
              f"{median:.2f} ms, slowest {worst:.2f} ms")
    if free < MIN_FREE_BYTES:
        raise _Failed(detail, f"free space below {MIN_FREE_BYTES / 1e6:.0f} MB: use a larger card, or find what "
                              "fills it (`du -xh / | sort -h | tail`)", **figures)
    if median > SLOW_COMMIT_MS:
        raise _Failed(detail, f"the card is slow (median commit over {SLOW_COMMIT_MS:.0f} ms): use an A1/A2 "
                              "class card from a known brand", **figures)
    return detail, figures


def check_broker(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """Connect to the configured broker with the device's TLS certificate and key, as the kiosk does, and wait
    for the broker's answer (CONNACK)."""
    from kiosk_contract.mqttclient import paho_client

    m = cfg.mqtt
    if not m.enabled:
        raise _Skipped("mqtt.enabled = false: events stay on the device")
    answered = threading.Event()
    reason: list[str] = []

    def on_connect(client: Any, userdata: Any, flags: Any, code: Any, properties: Any = None) -> None:
        reason.append(str(code))
        answered.set()

    client = paho_client(m, f"{cfg.device.id}-selftest", "mqtt", persistent=False)
    client.on_connect = on_connect
    started = time.monotonic()
    try:
        client.connect(m.host, m.port, keepalive=30)
        client.loop_start()
        answered.wait(BROKER_TIMEOUT_S)
    except OSError as exc:
        raise _Failed(f"cannot reach {m.host}:{m.port}: {exc}", "check the network, the broker's address in "
                                                                "kiosk.toml and that TLS port 8883 is open") from None
    finally:
        client.loop_stop()
        with contextlib.suppress(Exception):
            client.disconnect()
    if not answered.is_set():
        raise _Failed(f"no answer from {m.host}:{m.port} within {BROKER_TIMEOUT_S:.0f} s (TLS refused?)",
                      "check the device certificate (/etc/kiosk/mqtt.crt, from make-images) against the broker's CA "
                      "and CRL, and the clock (a certificate is not valid before its start)")
    if reason[0] not in ("Success", "0"):
        raise _Failed(f"{m.host}:{m.port} refused the connection: {reason[0]}",
                      "the broker does not accept this device's certificate: revoked, or another CA")
    ms = 1000 * (time.monotonic() - started)
    return f"connected to {m.host}:{m.port} over TLS as {cfg.device.id} in {ms:.0f} ms", {"connect_ms": round(ms)}


def check_gallery(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """The gallery opens with the device's keys (data key, gallery key) and holds people."""
    from kiosk import atrest
    from kiosk.app import load_gallery

    try:
        cipher = atrest.open_cipher(cfg.device)
        gallery = load_gallery(cfg.recognizer, cipher)
    except KioskError as exc:
        action = ("seal central's gallery for this device: sudo kiosk gallery seal --config /etc/kiosk/kiosk.toml IN "
                  "/var/lib/kiosk/gallery.kgal, or push it from central")
        raise _Failed(str(exc), action) from None
    sealed = "in the clear" if cipher is None else f"sealed, data key id {cipher.key_id}"
    detail = f"{cfg.recognizer.gallery}: {len(gallery)} people, version {gallery.version}, {sealed}"
    if not len(gallery):
        raise _Failed(detail, "the gallery is empty: push the office's gallery from central")
    return detail, {"people": len(gallery), "version": gallery.version}


def check_signing_key(cfg: KioskConfig) -> tuple[str, dict[str, Any]]:
    """The event-signing key reads, signs, and its signature verifies."""
    from kiosk.config import read_secret
    from kiosk_contract import signing

    if cfg.events.signing_key_file is None:
        raise _Skipped("events.signing_key_file is not set: events are not published")
    try:
        key = signing.private_key_from_pem(read_secret(cfg.events.signing_key_file,
                                                       key="events.signing_key_file"), "events.signing_key_file")
    except KioskError as exc:
        raise _Failed(str(exc), "the key comes from make-images (FAT /kiosk/device.key, moved to "
                                "/etc/kiosk/device.key at first boot); journalctl -u kiosk-firstboot") from None
    message = b"kiosk selftest"
    key.public_key().verify(key.sign(message), message)
    key_id = signing.key_id_of(key)
    return f"Ed25519 key id {key_id} signs and verifies (central's registry.json must list it)", {"key_id": key_id}


# --- the recognizer benchmark -----------------------------------------------------------------------------------


def benchmark(cfg: KioskConfig, clip: Path, seconds: float = BENCH_SECONDS) -> tuple[str, dict[str, Any]]:
    """The real pipeline on a recorded walk-up, looped for ``seconds`` of wall time: frames per second, CPU per
    frame and the decisions' latency; then one full-frame HOG detection and one face encoding timed on its frames."""
    import numpy as np

    from kiosk import atrest
    from kiosk.app import load_gallery
    from kiosk.camera.replay import ReplaySource
    from kiosk.recognizer import faces
    from kiosk.recognizer.pipeline import Pipeline

    if not clip.exists():
        raise _Skipped(f"no walk-up clip at {clip}: pass --clip with a recorded walk-up (a video file)")
    try:
        gallery = load_gallery(cfg.recognizer, atrest.open_cipher(cfg.device))
    except KioskError:
        from kiosk_contract.gallery import Gallery

        gallery = Gallery()  # the gallery check says why; unknown faces still cost the same detection and encodings
    pipeline = Pipeline(gallery, cfg.recognizer)
    latencies: list[float] = []
    sampled: list[Any] = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    with ReplaySource(clip, realtime=False, loop=True) as source:
        while time.monotonic() - wall0 < seconds * 0.75:
            frame = source.read()
            if frame is None:
                break
            result = pipeline.process(frame)
            latencies += [d.latency_ms for d in result.decisions]
            if frame.index % 10 == 0 and len(sampled) < 40:
                sampled.append(frame.rgb)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    frames = pipeline.stats.frames
    detect_ms: list[float] = []
    encode_ms: list[float] = []
    until = time.monotonic() + seconds * 0.25
    import cv2

    for rgb in sampled:
        if time.monotonic() >= until and encode_ms:  # past its time, once a face was encoded (if the clip has one)
            break
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        height = round(grey.shape[0] * pipeline.detect_width / grey.shape[1])
        plane = cv2.resize(grey, (pipeline.detect_width, height), interpolation=cv2.INTER_AREA)
        started = time.perf_counter()
        boxes = faces.detect(plane)
        detect_ms.append(1000 * (time.perf_counter() - started))
        for box in boxes[:1]:
            scaled = box.scaled(rgb.shape[1] / plane.shape[1])
            chip = faces.chip(rgb, faces.landmarks(rgb, scaled))
            started = time.perf_counter()
            faces.encode(np.ascontiguousarray(chip))
            encode_ms.append(1000 * (time.perf_counter() - started))
    figures = {
        "clip": str(clip),
        "seconds": round(wall, 1),
        "frames": frames,
        "fps": round(frames / wall, 1) if wall else 0.0,
        "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 1),
        "decisions": len(latencies),
        "decision_ms": round(statistics.median(latencies), 1) if latencies else None,
        "detect_ms": round(statistics.median(detect_ms), 1) if detect_ms else None,
        "encode_ms": round(statistics.median(encode_ms), 1) if encode_ms else None,
        "detect_width": pipeline.detect_width,
        "encodings": pipeline.stats.encodings,
    }
    detail = (f"{frames} frames in {wall:.1f} s ({figures['fps']} frames/s), {figures['cpu_ms_per_frame']} ms CPU "
              f"per frame, {len(latencies)} decisions (median latency {figures['decision_ms']} ms), detection "
              f"{figures['detect_ms']} ms at {pipeline.detect_width} px, encoding {figures['encode_ms']} ms")
    return detail, figures


# --- the whole test, the report -------------------------------------------------------------------------------


def run_checks(cfg: KioskConfig, clip: Path, seconds: float = BENCH_SECONDS) -> list[Check]:
    """Every check in order, then the benchmark."""
    return [
        _run_check("numpy_abi", check_numpy_abi),
        _run_check("camera", lambda: check_camera(cfg)),
        _run_check("screen", lambda: check_screen(cfg)),
        _run_check("gpio", lambda: check_gpio(cfg)),
        _run_check("otp_key", lambda: check_otp_key(cfg)),
        _run_check("time_sync", check_time_sync),
        _run_check("disk", lambda: check_disk(cfg)),
        _run_check("broker", lambda: check_broker(cfg)),
        _run_check("gallery", lambda: check_gallery(cfg)),
        _run_check("signing_key", lambda: check_signing_key(cfg)),
        _run_check("recognizer", lambda: benchmark(cfg, clip, seconds)),
    ]


def report(cfg: KioskConfig, checks: list[Check]) -> dict[str, Any]:
    """The JSON report (docs/selftest.md)."""
    failed = [c.name for c in checks if c.status == "failed"]
    bench: dict[str, Any] = next((c.figures for c in checks if c.name == "recognizer"), {})
    comparison = {k: {"here": bench.get(k), "reference": REFERENCE[k],
                      "ratio": round(bench[k] / REFERENCE[k], 2) if bench.get(k) and REFERENCE[k] else None}
                  for k in ("detect_ms", "encode_ms", "cpu_ms_per_frame", "decision_ms", "fps")}
    return {
        "format": REPORT_FORMAT,
        "device": cfg.device.id,
        "kiosk_version": __version__,
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"arch": platform.machine(), "python": platform.python_version(), "model": _board()},
        "result": "failed" if failed else "ok",
        "checks": [asdict(c) for c in checks],
        "benchmark": {"reference": REFERENCE, "comparison": comparison},
    }


def summary(data: dict[str, Any], digest: str) -> dict[str, Any]:
    """The status event's ``selftest`` field (contract 0.5) for a report."""
    from kiosk_contract.schema import decimal_str

    bench: dict[str, Any] = next((c["figures"] for c in data["checks"] if c["name"] == "recognizer"), {})
    return {
        "result": data["result"],
        "failed": [c["name"] for c in data["checks"] if c["status"] == "failed"],
        "skipped": [c["name"] for c in data["checks"] if c["status"] == "skipped"],
        "report_sha256": digest,
        "kiosk_version": data["kiosk_version"][:40],
        **{k: decimal_str(bench.get(k), 1) for k in ("detect_ms", "encode_ms", "cpu_ms_per_frame", "decision_ms")},
    }


def render(data: dict[str, Any]) -> str:
    """The report for a person: one line per check, what to do under each failure, the benchmark beside here's."""
    marks = {"ok": "OK  ", "failed": "FAIL", "skipped": "skip"}
    lines = [f"kiosk selftest: {data['device']}, kiosk {data['kiosk_version']}, {data['machine']['model']} "
             f"({data['machine']['arch']}, Python {data['machine']['python']}), {data['time_utc']}", ""]
    for c in data["checks"]:
        lines.append(f"[{marks[c['status']]}] {c['name']:<12} {c['detail']}")
        if c["action"]:
            lines.append(f"{'':19}-> {c['action']}")
    lines += ["", f"recognizer beside the {data['benchmark']['reference']['machine']}:",
              f"  {'figure':<18}{'here':>10}{'reference':>11}{'ratio':>8}"]
    for name, row in data["benchmark"]["comparison"].items():
        lines.append(f"  {name:<18}{_cell(row['here']):>10}{_cell(row['reference']):>11}{_cell(row['ratio']):>8}")
    failed = [c["name"] for c in data["checks"] if c["status"] == "failed"]
    lines += ["", f"result: {'FAILED: ' + ', '.join(failed) if failed else 'OK'}"]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _board() -> str:
    try:
        return Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace")
    except OSError:
        return "not a Raspberry Pi"


def publish(cfg: KioskConfig, data: dict[str, Any], digest: str) -> int:
    """Store a status event with the report's summary in the outbox (the kiosk signs and publishes it when it runs
    again); its outbox sequence number. The outbox refuses while the kiosk holds it."""
    from kiosk import atrest
    from kiosk.events import clock
    from kiosk.events.outbox import Outbox
    from kiosk.events.recorder import cpu_temperature
    from kiosk_contract import schema
    from kiosk_contract.fsutil import free_bytes

    state = clock.read_clock_state()
    stamp = schema.Stamp(device=cfg.device.id, boot_id=clock.boot_id(), mono_ns=clock.mono_ns(),
                         utc=datetime.now(UTC), tz=cfg.device.timezone,
                         clock=schema.ClockInfo(state.synced, state.source, state.synced))
    gallery: dict[str, Any] = next((c["figures"] for c in data["checks"] if c["name"] == "gallery"), {})
    bench: dict[str, Any] = next((c["figures"] for c in data["checks"] if c["name"] == "recognizer"), {})
    path = cfg.device.state_dir / "outbox.sqlite"
    with Outbox.open(path, max_events=cfg.events.max_events, max_bytes=cfg.events.max_bytes,
                     retention_s=cfg.events.retention_days * 86400, cipher=atrest.open_cipher(cfg.device)) as outbox:
        counts = outbox.counts()
        oldest = outbox.pending(limit=1)
        body = schema.build_status(
            stamp, fps=bench.get("fps", 0.0), outbox_depth=counts["pending"] + counts["published"],
            oldest_pending_age_s=int(stamp.utc.timestamp() - oldest[0].created_at) if oldest else None,
            gallery_version=None if gallery.get("version") is None else str(gallery["version"]),
            cpu_temp_c=cpu_temperature(), free_disk_bytes=free_bytes(path.parent), selftest=summary(data, digest))
        return outbox.append(body["event_id"], body["type"], schema.to_bytes(body)).seq


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The checks' own log lines (camera, gallery) would interleave with the report: warnings and worse only."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def command(cfg: KioskConfig, *, clip: Path | None, json_out: Path | None, publish_event: bool,
            seconds: float = BENCH_SECONDS) -> int:
    """``kiosk selftest``: 0 when nothing failed, 1 otherwise (skipped checks do not fail it)."""
    if clip is None:
        clip = cfg.camera.path if cfg.camera.source == "replay" and cfg.camera.path else SELFTEST_CLIP
    with _quiet_logs():
        checks = run_checks(cfg, clip, seconds)
    data = report(cfg, checks)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(render(data))
    target = json_out if json_out is not None else cfg.device.state_dir / "selftest.json"
    try:
        from kiosk_contract.fsutil import write_atomic

        write_atomic(target, text.encode())
        print(f"report: {target} (sha256 {digest})")
    except OSError as exc:
        print(f"kiosk selftest: cannot write the report {target}: {exc}", file=sys.stderr)
    if publish_event:
        try:
            seq = publish(cfg, data, digest)
        except KioskError as exc:
            print(f"kiosk selftest: not published: {exc}; stop the kiosk first (systemctl stop kiosk)",
                  file=sys.stderr)
            return 1
        print(f"published: status event seq {seq} in the outbox; `systemctl start kiosk` sends it to central")
    return 1 if data["result"] == "failed" else 0
