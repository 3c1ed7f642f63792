"""The screen boundary: what a person at the terminal sees. The pygame screen arrives with the terminal issue;
here are the headless backends, chosen by ``display.backend``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kiosk.camera import Frame
    from kiosk.recognizer.gallery import Gallery
    from kiosk.recognizer.pipeline import FrameResult

log = logging.getLogger("kiosk.display")


class Screen(Protocol):
    """Shows each processed frame and its result; must never block recognition."""

    def show(self, frame: Frame, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class NullScreen:
    """Shows nothing: for headless runs and benchmarks."""

    def show(self, frame: Frame, result: FrameResult) -> None:
        pass

    def close(self) -> None:
        pass


class LogScreen:
    """Writes each decision to the log, as the screen would announce it."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    def show(self, frame: Frame, result: FrameResult) -> None:
        for d in result.decisions:
            person = self.gallery.get(d.nip) if d.nip else None
            if person:
                log.info(
                    "t=%.2fs track %d: %s (%s, %s) recognised, distance %.3f after %d encodings, %.0f ms",
                    d.t,
                    d.track,
                    person.name,
                    person.nip,
                    person.unit,
                    d.distance,
                    d.frames_used,
                    d.latency_ms,
                )
            else:
                log.info(
                    "t=%.2fs track %d: face not recognised (nearest distance %.3f)", d.t, d.track, d.distance
                )

    def close(self) -> None:
        pass


def open_screen(backend: str, gallery: Gallery) -> Screen:
    """The screen named in config."""
    if backend == "null":
        return NullScreen()
    if backend == "log":
        return LogScreen(gallery)
    raise ValueError(f"unknown display backend {backend!r}")
