"""The composition root: builds the kiosk from its config, starts parts in order, stops them in reverse."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from kiosk.camera import Frame, FrameSource, open_source
from kiosk.config import KioskConfig, RecognizerConfig, read_secret
from kiosk.display import open_screen
from kiosk.errors import ConfigError, KioskError
from kiosk.recognizer.gallery import Gallery
from kiosk.recognizer.pipeline import FrameResult, Pipeline

if TYPE_CHECKING:
    from kiosk.events.outbox import Outbox
    from kiosk.events.recorder import Recorder
    from kiosk.hardware import Pins

log = logging.getLogger("kiosk")

PRUNE_EVERY_S = 3600.0  # retention is counted in days; once an hour is plenty


def load_gallery(cfg: RecognizerConfig) -> Gallery:
    """Open the configured gallery, verifying it with the HMAC key when one is configured."""
    return Gallery.load(cfg.gallery, cfg.gallery_key())


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


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT, so the loop ends cleanly and parts are closed in reverse order."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(cfg: KioskConfig, stop: threading.Event) -> int:
    """The daemon: gallery, outbox, publisher, camera, screen; the frame loop; then closed in reverse."""
    from kiosk.events import clock
    from kiosk.events.outbox import Outbox
    from kiosk.events.recorder import Recorder

    with contextlib.ExitStack() as parts:
        gallery = load_gallery(cfg.recognizer)
        log.info("gallery %s: %d people, version %d", cfg.recognizer.gallery, len(gallery), gallery.version)
        pipeline = Pipeline(gallery, cfg.recognizer)
        cfg.device.state_dir.mkdir(parents=True, exist_ok=True)
        outbox = parts.enter_context(
            Outbox.open(
                cfg.device.state_dir / "outbox.sqlite",
                max_events=cfg.events.max_events,
                max_bytes=cfg.events.max_bytes,
                retention_s=cfg.events.retention_days * 86400,
            )
        )
        watcher = clock.ClockWatcher().start()
        parts.callback(watcher.close)
        recorder = Recorder(cfg, outbox, read_clock=watcher.state)
        reload_requested = threading.Event()

        def request_reload() -> dict[str, object]:
            reload_requested.set()  # the frame loop swaps the gallery between two frames
            return {"queued": True, "gallery_version": pipeline.gallery.version}

        wake = _start_publisher(cfg, outbox, parts, {"reload_gallery": request_reload})
        pins = _open_pins(cfg)
        parts.callback(pins.close)
        source = parts.enter_context(open_source(cfg.camera, lores_width=_lores_width(cfg)))
        screen = open_screen(cfg, lambda nip: pipeline.gallery.get(nip))
        parts.callback(screen.close)
        log.info("kiosk %s running (source %s)", cfg.device.id, cfg.camera.source)

        pruned_at = status_at = time.monotonic()
        status_frames = 0
        outbox.prune()

        def handle(frame: Frame, result: FrameResult) -> None:
            nonlocal pruned_at, status_at, status_frames
            if reload_requested.is_set():
                reload_requested.clear()
                _reload_gallery(cfg, pipeline)
            outcomes = [recorder.record(d, frame.rgb) for d in result.decisions]
            if any(o.seq is not None for o in outcomes):
                wake()
            screen.show(frame, result, outcomes)
            for outcome in outcomes:
                pins.signal(outcome.status)
            _handle_inputs(pins, recorder)
            now = time.monotonic()
            status_frames += 1
            if cfg.mqtt.enabled and now - status_at >= cfg.mqtt.status_every_s:  # device health, signed like any event
                recorder.status(fps=status_frames / (now - status_at), gallery_version=gallery.version)
                status_at, status_frames = now, 0
                wake()
            if now - pruned_at >= PRUNE_EVERY_S:  # acknowledged events and old evidence
                pruned_at = now
                outbox.prune()

        stream(source, pipeline, handle, stop)
        log.info("kiosk stopping after %d frames; outbox %s", pipeline.stats.frames, outbox.counts())
    return 0


def _open_pins(cfg: KioskConfig) -> Pins:
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


def _handle_inputs(pins: Pins, recorder: Recorder) -> None:
    """Take the GPIO events queued since the last frame (never waits)."""
    while True:
        try:
            name = pins.events().get_nowait()
        except queue.Empty:
            return
        if name == "tamper_open":
            log.warning("the case was opened")
            recorder.alarm("tamper", "case opened")
        else:  # keys (punch override, fallback entry) and the PIR come with the rest of the terminal issue
            log.info("input %s", name)


def _reload_gallery(cfg: KioskConfig, pipeline: Pipeline) -> None:
    """Load the gallery file again (after central pushed a new one); a bad file keeps the running gallery."""
    try:
        new = load_gallery(cfg.recognizer)
    except KioskError as exc:
        log.error("gallery reload refused, keeping version %d: %s", pipeline.gallery.version, exc)
        return
    log.info("gallery reloaded: version %d -> %d, %d people", pipeline.gallery.version, new.version, len(new))
    pipeline.gallery = new


def _start_publisher(
    cfg: KioskConfig, outbox: Outbox, parts: contextlib.ExitStack, actions: dict[str, Callable[[], dict[str, object]]]
) -> Callable[[], None]:
    """Start the MQTT publisher when enabled (events are signed with the device key, ``actions`` are commands
    that change the device, accepted only when signed by the central key); returns its wake-up."""
    if not cfg.mqtt.enabled:
        log.info("mqtt is off: events stay in the outbox")
        return lambda: None
    from kiosk.events import signing
    from kiosk.events.mqtt import Publisher

    if cfg.events.signing_key_file is None:
        raise ConfigError("mqtt", ["events.signing_key_file: publishing needs the device's Ed25519 key"])
    secret = read_secret(cfg.events.signing_key_file, key="events.signing_key_file")
    key = signing.private_key_from_pem(secret, "events.signing_key_file")
    key_id = signing.key_id_of(key)
    publisher = Publisher(
        outbox,
        cfg.mqtt,
        cfg.device.id,
        window=cfg.mqtt.window,
        republish_after_s=cfg.mqtt.republish_after_s,
        seal=lambda body, seq: signing.seal(body, seq, key, key_id),
        actions=actions,
        central_keys=signing.load_public_keys([cfg.mqtt.central_key_file]) if cfg.mqtt.central_key_file else {},
    ).start()
    parts.callback(publisher.close)
    return publisher.wake


def _lores_width(cfg: KioskConfig) -> int:
    """The detection stream width a camera should deliver, from the geometry."""
    from kiosk.recognizer.geometry import detection_width

    return detection_width(cfg.recognizer.geometry, cfg.camera.width)
