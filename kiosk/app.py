"""The composition root: builds the kiosk from its config, starts parts in order, stops them in reverse."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from kiosk import atrest
from kiosk.camera import Frame, FrameSource, open_source
from kiosk.commands import AppliedVersion, CurrentSchedule, Queued
from kiosk.config import KioskConfig, RecognizerConfig, read_secret
from kiosk.display import open_screen
from kiosk.errors import CameraError, ConfigError, KioskError
from kiosk.liveness_trial import TrialRecorder
from kiosk.recognizer.pipeline import FrameResult, Pipeline
from kiosk_contract.gallery import Gallery, store_received

if TYPE_CHECKING:
    from kiosk.events.mqtt import Publisher
    from kiosk.events.outbox import Outbox
    from kiosk.hardware import Pins
    from kiosk_contract.sealing import DataCipher

log = logging.getLogger("kiosk")

PRUNE_EVERY_S = 3600.0  # retention is counted in days; once an hour is plenty
CAMERA_RETRY_MIN_S = 1.0
CAMERA_RETRY_MAX_S = 30.0
CAMERA_READY_GRACE_S = 45.0
"""A camera still failing this long after start: READY=1 anyway, with the problem in STATUS=, well inside the unit's
TimeoutStartSec (90 s). Otherwise systemd would kill and restart a kiosk waiting for its camera until the start
limit, leaving a dark screen; this way it keeps reopening the camera, says so on the screen and in its status
events, and heals by itself when the camera comes back. So ``systemctl start kiosk`` without a camera returns after
these 45 s (docs/service.md, "Start, readiness and the watchdog")."""
CAMERA_RETRY_STATUS = "camera failing, retrying"
"""The start of STATUS= while the camera is reopened: ``camera failing, retrying; 120 people; 3 events unsent; ...``."""


def load_gallery(cfg: RecognizerConfig, cipher: DataCipher | None = None) -> Gallery:
    """Open the configured gallery, verifying it with the HMAC key when one is configured and decrypting it with
    the device's data key when it has one."""
    return Gallery.load(cfg.gallery, cfg.gallery_key(), cipher=cipher)


def store_gallery(cfg: RecognizerConfig, data: bytes, cipher: DataCipher | None = None,
                  expect: tuple[int, str | None] | None = None) -> Gallery:
    """Verify a gallery file's bytes and write them as the configured gallery, atomically and with its version kept
    (versions are central's), sealed with the data key when the device has one."""
    return store_received(data, cfg.gallery, cfg.gallery_key(), cipher, expect=expect)


def stream(
    source: FrameSource,
    pipeline: Pipeline,
    on_result: Callable[..., None],
    stop: threading.Event,
) -> None:
    """Pull frames until the source ends or ``stop`` is set; hand each result to ``on_result(frame, result)``."""
    while not stop.is_set():
        frame = source.read()
        if frame is None:
            return
        result: FrameResult = pipeline.process(frame)
        on_result(frame, result)


def run(cfg: KioskConfig, stop: threading.Event) -> int:
    """The daemon: gallery, outbox, publisher, pins, screen, camera; the frame loop; then closed in reverse."""
    from kiosk.events import clock
    from kiosk.events.outbox import Outbox
    from kiosk.events.recorder import Recorder
    from kiosk.logs import set_device_id
    from kiosk.service import open_notifier
    from kiosk.terminal import Terminal

    set_device_id(cfg.device.id)
    with contextlib.ExitStack() as parts:
        notifier = open_notifier()
        parts.callback(notifier.close)
        notifier.status("loading the gallery and the models")
        cipher = atrest.open_cipher(cfg.device)  # a missing or wrong key stops the start: nothing is readable
        sealed = "in the clear" if cipher is None else f"sealed, key {cipher.key_id} ({cipher.source})"
        log.info("data at rest: %s", sealed)
        pipeline = Pipeline(_first_gallery(cfg.recognizer, cipher), cfg.recognizer)
        checks = cfg.recognizer.liveness
        if checks.level != "off" and checks.texture_models is None:
            log.warning("liveness texture cue off (recognizer.liveness.texture_models unset): a replay on a stand can "
                        "pass the passive checks, and still people are asked to act more often (docs/liveness.md)")
        trial = None
        if checks.trial_dir is not None:  # a consented field trial (config check: trial_consent is set)
            trial = TrialRecorder(checks.trial_dir, checks.trial_consent, checks.trial_seconds, checks.trial_keep_days)
            log.warning("liveness field trial: clips of every decision are kept in %s", checks.trial_dir)
        try:
            cfg.device.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # storage that refuses: the outbox comes up down and says why
            log.error("cannot create the state folder %s: %s", cfg.device.state_dir, exc)
        # Storage that refuses (a card remounted read-only, I/O errors) gives an outbox that is down: the kiosk comes
        # up, tells people to use the manual attendance list, keeps the watchdog fed and retries (kiosk.terminal).
        outbox = parts.enter_context(
            Outbox.open_or_wait(
                cfg.device.state_dir / "outbox.sqlite",
                max_events=cfg.events.max_events,
                max_bytes=cfg.events.max_bytes,
                retention_s=cfg.events.retention_days * 86400,
                cipher=cipher,
            )
        )
        watcher = clock.ClockWatcher().start()
        parts.callback(watcher.close)
        # The punch schedule: central's pushed one when one is stored, else kiosk.toml's (a damaged one: an alarm).
        schedules = CurrentSchedule(cfg.schedule, cfg.device.state_dir / "schedule.json", cfg.device.timezone)
        schedule_problem = schedules.load()
        recorder = Recorder(cfg, outbox, read_clock=watcher.state, schedules=schedules)
        work: queue.Queue[Queued] = queue.Queue(maxsize=16)  # central's checked commands, for the frame loop
        if schedule_problem is not None:
            work.put_nowait(Queued("alarm", ("schedule_unusable", schedule_problem[:1000]), 0))
        applied = AppliedVersion(cfg.device.state_dir / "commands.json")

        def synced_now() -> datetime | None:
            return datetime.now(UTC) if watcher.state().synced else None

        publisher = _start_publisher(cfg, outbox, parts, work, applied, lambda: pipeline.gallery, synced_now,
                                     schedules)
        pins = open_configured_pins(cfg)
        parts.callback(pins.close)
        inputs: queue.Queue[str] = queue.Queue(maxsize=64)
        screen = open_screen(cfg, lambda nip: pipeline.gallery.get(nip), inputs)
        parts.callback(screen.close)

        def network() -> Literal["off", "online", "offline"]:
            if publisher is None:
                return "off"
            return "online" if publisher.connected else "offline"

        def clock_synced() -> bool | None:
            state = watcher.state()
            return None if state.source == "unknown" else state.synced  # unknown: nothing to tell people

        wake = publisher.wake if publisher is not None else lambda: None
        terminal = Terminal(
            cfg, pipeline, recorder, outbox, screen, pins, inputs=inputs, wake=wake, network=network,
            clock_synced=clock_synced, load_gallery=lambda: load_gallery(cfg.recognizer, cipher),
            store_gallery=lambda data, expect: store_gallery(cfg.recognizer, data, cipher, expect), commands=work,
            applied=applied,
        )  # fmt: skip
        parts.callback(terminal.close)  # a storage retry in progress ends before the outbox closes
        parts.callback(notifier.stopping)  # the first thing said at the way out
        log.info("kiosk %s running (source %s)", cfg.device.id, cfg.camera.source)
        notifier.status("opening the camera")

        pruned_at = status_at = time.monotonic()
        status_frames = 0
        ready = False
        _prune(outbox)

        started = time.monotonic()

        def on_idle() -> None:
            nonlocal ready
            terminal.tick()
            notifier.watchdog()  # the loop is alive, waiting to reopen the camera
            text = f"{CAMERA_RETRY_STATUS}; {terminal.describe()}"
            if not ready and time.monotonic() - started >= CAMERA_READY_GRACE_S:
                ready = True
                notifier.ready(text)
            notifier.status(text)

        def on_frame(frame: Frame) -> None:
            nonlocal pruned_at, status_at, status_frames, ready
            notifier.watchdog()  # from the frame loop: a hung camera or recognizer stops it
            terminal.frame(frame)  # also counts the outbox, so the first STATUS= has the real figures
            if trial is not None and terminal.last_result is not None:
                trial.frame(frame, terminal.last_result)
            if not ready:  # the gallery, the models and the camera are loaded: the first frame is done
                ready = True
                notifier.ready(terminal.describe())
            now = time.monotonic()
            status_frames += 1
            if publisher is not None and now - status_at >= cfg.mqtt.status_every_s:  # health, signed like any event
                # status() reads the outbox's counts: not while it is down (a retry may hold it for long)
                stats = publisher.status() if outbox.available else {"refused_acks": 0, "refused_commands": 0}
                recorder.status(fps=status_frames / (now - status_at), gallery=pipeline.gallery,
                                refused_acks=stats["refused_acks"], refused_commands=stats["refused_commands"])
                status_at, status_frames = now, 0
                wake()
            if now - pruned_at >= PRUNE_EVERY_S:  # acknowledged events and old evidence
                pruned_at = now
                _prune(outbox)
            notifier.status(terminal.describe())  # sent only when the text changes

        live = cfg.camera.source != "replay"  # a live camera is reopened; a clip that fails is a config error
        camera_loop(
            lambda: open_source(cfg.camera, lores_width=lores_width(cfg)),
            on_frame,
            on_idle,
            lambda: terminal.set_problem("camera", True),
            stop,
            retry=live,
        )
        log.info(
            "kiosk stopping after %d frames (%d recognised); outbox %s",
            terminal.frames,
            pipeline.stats.frames,
            outbox.counts(),
        )
    return 0


def _prune(outbox: Outbox) -> None:
    """Acknowledged events and old evidence go; storage that refuses only delays it (the terminal shows the problem)."""
    from kiosk.events.outbox import OutboxError

    if not outbox.available:
        return
    try:
        outbox.prune()
    except OutboxError as exc:
        log.error("cannot prune the outbox: %s", exc)


def camera_loop(
    open_camera: Callable[[], FrameSource],
    on_frame: Callable[[Frame], None],
    on_idle: Callable[[], None],
    on_failure: Callable[[], None],
    stop: threading.Event,
    *,
    retry: bool,
) -> None:
    """Frames to ``on_frame`` until the source ends or ``stop`` is set.

    With ``retry``, a camera that cannot be opened or stops delivering is closed and reopened after a growing pause
    (1 s up to 30 s) after ``on_failure``; ``on_idle`` runs about once a second meanwhile, so the screen and the
    inputs stay alive.
    Without it, a camera error ends the loop by raising.
    """
    source: FrameSource | None = None
    pause = CAMERA_RETRY_MIN_S
    try:
        while not stop.is_set():
            try:
                if source is None:
                    source = open_camera()
                frame = source.read()
            except CameraError as exc:
                if not retry:
                    raise
                log.error("camera failed, trying again in %.0f s: %s", pause, exc)
                if source is not None:
                    source.close()
                    source = None
                on_failure()
                deadline = time.monotonic() + pause
                while not stop.is_set() and time.monotonic() < deadline:
                    on_idle()
                    stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, CAMERA_RETRY_MAX_S)
                continue
            if frame is None:
                return
            pause = CAMERA_RETRY_MIN_S
            on_frame(frame)
    finally:
        if source is not None:
            source.close()


def _first_gallery(cfg: RecognizerConfig, cipher: DataCipher | None) -> Gallery:
    """The gallery to start with: a missing or damaged file gives an empty one, and the screen says that face data
    is missing (the terminal looks for the file again) instead of the service failing in a restart loop."""
    try:
        gallery = load_gallery(cfg, cipher)
    except KioskError as exc:
        log.error("no gallery: %s", exc)
        return Gallery()
    log.info("gallery %s: %d people, version %d", cfg.gallery, len(gallery), gallery.version)
    return gallery


def open_configured_pins(cfg: KioskConfig) -> Pins:
    """The GPIO parts when configured (lgpio keeps its notification files in the runtime directory)."""
    from kiosk.hardware import NullPins, open_pins

    h = cfg.hardware
    if not h.enabled:
        return NullPins()
    os.environ.setdefault("LG_WD", os.environ.get("RUNTIME_DIRECTORY", str(cfg.device.state_dir)))
    try:
        return open_pins(
            led_green=h.led_green,
            led_red=h.led_red,
            buzzer=h.buzzer,
            key_masuk=h.key_masuk,
            key_pulang=h.key_pulang,
            key_fallback=h.key_fallback,
            pir=h.pir,
            tamper=h.tamper,
            led_seconds=h.led_seconds,
        )
    except ValueError as exc:
        raise ConfigError("hardware", [f"hardware: {exc}"]) from None


def _start_publisher(
    cfg: KioskConfig,
    outbox: Outbox,
    parts: contextlib.ExitStack,
    work: queue.Queue[Queued],
    applied: AppliedVersion,
    gallery: Callable[[], Gallery],
    synced_now: Callable[[], datetime | None],
    schedules: CurrentSchedule | None = None,
) -> Publisher | None:
    """Start the MQTT publisher when enabled: events signed with the device key; acks and the commands that change
    the device accepted only when signed with the central key (kiosk.commands)."""
    if not cfg.mqtt.enabled:
        log.info("mqtt is off: events stay in the outbox")
        return None
    from kiosk.commands import CentralCommands
    from kiosk.events.mqtt import Publisher
    from kiosk_contract import signing

    if cfg.events.signing_key_file is None:
        raise ConfigError("mqtt", ["events.signing_key_file: publishing needs the device's Ed25519 key"])
    if cfg.mqtt.central_key_file is None:
        raise ConfigError("mqtt", ["mqtt.central_key_file: publishing needs the central server's public key, which "
                                   "signs the acks that release events"])
    secret = read_secret(cfg.events.signing_key_file, key="events.signing_key_file")
    key = signing.private_key_from_pem(secret, "events.signing_key_file")
    key_id = signing.key_id_of(key)
    central_keys = signing.load_public_keys([cfg.mqtt.central_key_file])
    commands = CentralCommands(device=cfg.device.id, office=cfg.device.office_code or "", central_keys=central_keys,
                               applied=applied, work=work, gallery=gallery, now=synced_now, schedule=schedules)

    def alarm(name: str, detail: str) -> None:
        try:
            work.put_nowait(Queued("alarm", (name, detail), 0))
        except queue.Full:
            log.error("no room to queue the %s alarm: %s", name, detail)

    publisher = Publisher(
        outbox,
        cfg.mqtt,
        cfg.device.id,
        window=cfg.mqtt.window,
        republish_after_s=cfg.mqtt.republish_after_s,
        seal=lambda body, seq: signing.seal(body, seq, key, key_id),
        central_keys=central_keys,
        commands=commands,
        alarm=alarm,
    ).start()
    parts.callback(publisher.close)
    return publisher


def lores_width(cfg: KioskConfig) -> int:
    """The detection stream width a camera should deliver, from the geometry."""
    from kiosk.recognizer.geometry import detection_width

    return detection_width(cfg.recognizer.geometry, cfg.camera.width)
