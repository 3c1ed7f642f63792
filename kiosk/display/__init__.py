"""The screen boundary: what a person at the terminal sees, chosen by ``display.backend``: the pygame screen
(:mod:`kiosk.display.pygame_screen`) and the headless backends here."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kiosk.camera import Frame
    from kiosk.config import KioskConfig
    from kiosk.events.recorder import Outcome
    from kiosk.recognizer.pipeline import FrameResult
    from kiosk.terminal import TerminalView
    from kiosk_contract.gallery import Person

log = logging.getLogger("kiosk.display")


class Screen(Protocol):
    """Shows each processed frame, its result and what was recorded, and the terminal's state (problems, network,
    NIP entry); must never block recognition. A touch screen puts what was touched on the ``inputs`` queue given
    to :func:`open_screen`."""

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Outcome]) -> None: ...

    def update(self, view: TerminalView) -> None: ...

    def close(self) -> None: ...


class NullScreen:
    """Shows nothing: for headless runs and benchmarks."""

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Outcome]) -> None:
        pass

    def update(self, view: TerminalView) -> None:
        pass

    def close(self) -> None:
        pass


class LogScreen:
    """Writes what the screen would announce for each decision to the log: the outcome, never a name, and the NIP
    only in the ``nip`` field (KIOSK_NIP in the journal; docs/service.md, "Personal data")."""

    def __init__(self) -> None:
        self._problems: tuple[str, ...] = ()

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Outcome]) -> None:
        for d, o in zip(result.decisions, outcomes, strict=False):
            kind = f" {o.kind.upper()}" if o.kind else ""
            when = f" {o.at:%H:%M %Z}" if o.at else ""
            # a distance is logged only for a face nobody was named for
            distance = "" if o.nip else f"distance {d.distance:.3f}, "
            log.info(
                "t=%.2fs track %d: %s%s%s: %s (%s%d encodings, %.0f ms)",
                d.t, d.track, o.status, kind, when, o.message, distance, d.frames_used, d.latency_ms,
                extra={"nip": o.nip, "kind": o.kind},
            )  # fmt: skip
        for o in outcomes[len(result.decisions) :]:  # a manual entry has no face decision
            log.info("manual entry: %s", o.message, extra={"nip": o.nip, "kind": o.kind})

    def update(self, view: TerminalView) -> None:
        if view.problems != self._problems:
            self._problems = view.problems
            log.info("screen: %s", ", ".join(view.problems) if view.problems else "no problem")

    def close(self) -> None:
        pass


def open_screen(cfg: KioskConfig, person: Callable[[str], Person | None], inputs: queue.Queue[str]) -> Screen:
    """The screen named by ``display.backend``; ``inputs`` receives its touches and key presses."""
    display = cfg.display
    if display.backend == "null":
        return NullScreen()
    if display.backend == "log":
        return LogScreen()
    from kiosk.display.pygame_screen import PygameScreen  # pygame is imported only when it is asked for

    return PygameScreen(
        person,
        inputs=inputs,
        size=(display.width, display.height),
        office=cfg.device.office,
        tz=cfg.device.timezone,
        language=display.language,
        hold_s=display.hold_s,
        fullscreen=display.fullscreen,
        snapshot_dir=display.snapshot_dir,
    )
