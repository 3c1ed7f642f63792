"""The composition root: builds the kiosk from its config, starts parts in order, stops them in reverse."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

from kiosk.camera import FrameSource, open_source
from kiosk.config import KioskConfig, RecognizerConfig
from kiosk.display import open_screen
from kiosk.recognizer.gallery import Gallery
from kiosk.recognizer.pipeline import FrameResult, Pipeline

log = logging.getLogger("kiosk")


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
    """The daemon: gallery, then camera, then screen; the frame loop; then closed in reverse."""
    with contextlib.ExitStack() as parts:
        gallery = load_gallery(cfg.recognizer)
        log.info("gallery %s: %d people, version %d", cfg.recognizer.gallery, len(gallery), gallery.version)
        pipeline = Pipeline(gallery, cfg.recognizer)
        source = parts.enter_context(open_source(cfg.camera, lores_width=_lores_width(cfg)))
        screen = open_screen(cfg.display.backend, gallery)
        parts.callback(screen.close)
        log.info("kiosk %s running (source %s)", cfg.device.id, cfg.camera.source)
        stream(source, pipeline, screen.show, stop)
        log.info("kiosk stopping after %d frames", pipeline.stats.frames)
    return 0


def _lores_width(cfg: KioskConfig) -> int:
    """The detection stream width a camera should deliver, from the geometry."""
    from kiosk.recognizer.geometry import detection_width

    return detection_width(cfg.recognizer.geometry, cfg.camera.width)
