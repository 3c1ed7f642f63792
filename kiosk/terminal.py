"""The terminal between two frames: problems, the NIP fallback, the punch keys, presence, and what the screen shows.

:class:`Terminal` is the main loop's half of the kiosk. Inputs from the screen (touch, keyboard) and from the GPIO
parts (keys, PIR, case switch) arrive on queues and are taken here, on the frame loop's thread, so no callback ever
touches the recognizer, the outbox or the screen state. The smaller classes are pure state with the time passed in,
so that tests drive them without clocks or threads.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from kiosk.events.outbox import OutboxError
from kiosk_contract.fsutil import free_bytes
from kiosk_contract.nip import nip_typo
from kiosk_contract.schedule import local_time, punch_kind

if TYPE_CHECKING:
    from kiosk.camera import Frame
    from kiosk.commands import AppliedVersion, Queued
    from kiosk.config import KioskConfig
    from kiosk.display import Screen
    from kiosk.events.outbox import Outbox
    from kiosk.events.recorder import Outcome, Recorder
    from kiosk.hardware import Pins
    from kiosk.recognizer.pipeline import Decision, FrameResult, Pipeline
    from kiosk_contract.gallery import Gallery
    from kiosk_contract.schedule import ScheduleConfig

log = logging.getLogger("kiosk.terminal")

Problem = Literal["camera", "gallery", "storage", "storage_failed", "clock"]
BLOCKING: frozenset[str] = frozenset({"camera", "gallery", "storage", "storage_failed"})
"""Problems that stop face attendance (the screen says so); ``clock`` only warns: punches are still recorded and
corrected centrally from the time anchor. ``storage`` is storage that is full; ``storage_failed`` storage that
refuses (a card remounted read-only, I/O errors): then nothing at all can be recorded, and the screen sends people to
the manual attendance list."""
PROBLEM_ORDER = ("storage_failed", "camera", "storage", "gallery", "clock")  # the first blocking one is on the screen

ENTRY_KEYS = frozenset("0123456789") | {"back", "ok", "cancel"}
STORAGE_RESERVE_BYTES = 20_000_000
"""Below this much free space the terminal says it cannot record before anyone tries (the outbox refuses too)."""
VIEW_REFRESH_S = 1.0  # outbox counts and free space are read at most this often
GALLERY_RETRY_S = 10.0  # a missing or damaged gallery file is looked at again this often
STORAGE_RETRY_S = 5.0  # failed storage is tried again (Outbox.retry, on its own thread) this often
FULL_HOLD_S = 60.0
"""After a write refused for lack of room, the terminal says the storage is full until the outbox or the disk has
more room (acknowledged events, freed space) or this long has passed (then the next person may try again)."""
RETRY_JOIN_S = 5.0  # how long closing waits for a storage retry in progress


@dataclass(frozen=True)
class EntryView:
    """The NIP being typed, and why the last OK was refused (a catalogue key) if it was."""

    digits: str = ""
    error: str | None = None


@dataclass(frozen=True)
class TerminalView:
    """What the screen shows besides the camera: network, queue, problems, sleep, the chosen kind, the NIP entry."""

    network: Literal["off", "online", "offline"] = "off"
    pending: int = 0  # events waiting to be acknowledged by the central server
    problems: tuple[str, ...] = ()
    asleep: bool = False
    chosen_kind: str | None = None  # a Masuk/Pulang key pressed for the next face
    entry: EntryView | None = None
    fallback: bool = False  # NIP entry is offered (touch the screen, or the fallback key)

    @property
    def blocking(self) -> str | None:
        """The first problem that stops attendance, or None."""
        return next((p for p in self.problems if p in BLOCKING), None)


class NipEntry:
    """Typing a NIP on the keypad: digits, delete, cancel, OK; ``expired`` after ``timeout_s`` without a key."""

    def __init__(self, timeout_s: float, now: float) -> None:
        self.timeout_s = timeout_s
        self.digits = ""
        self.error: str | None = None
        self._last = now

    def press(self, key: str, now: float) -> Literal["submit", "cancel"] | None:
        """Apply one key (``0``-``9``, ``back``, ``ok``, ``cancel``); says when the entry is submitted or closed."""
        self._last = now
        if key == "cancel":
            return "cancel"
        if key == "back":
            self.digits, self.error = self.digits[:-1], None
        elif key == "ok":
            self.error = nip_typo(self.digits)
            return "submit" if self.error is None else None
        elif key.isdigit() and len(key) == 1 and len(self.digits) < 18:
            self.digits, self.error = self.digits + key, None
        return None

    def expired(self, now: float) -> bool:
        return now - self._last >= self.timeout_s

    def view(self) -> EntryView:
        return EntryView(self.digits, self.error)


class FallbackLimiter:
    """Caps manual entries: ``per_person_per_day`` for one NIP on one local date, ``per_hour`` for the kiosk."""

    def __init__(self, per_person_per_day: int, per_hour: int) -> None:
        self.per_person_per_day = per_person_per_day
        self.per_hour = per_hour
        self._day: date | None = None
        self._by_nip: dict[str, int] = {}
        self._recent: deque[float] = deque()

    def allow(self, nip: str, local_day: date, now: float) -> bool:
        """Whether one more entry is allowed; an allowed entry is counted."""
        if local_day != self._day:
            self._day, self._by_nip = local_day, {}
        while self._recent and now - self._recent[0] >= 3600.0:
            self._recent.popleft()
        if self._by_nip.get(nip, 0) >= self.per_person_per_day or len(self._recent) >= self.per_hour:
            return False
        self._by_nip[nip] = self._by_nip.get(nip, 0) + 1
        self._recent.append(now)
        return True


class Presence:
    """Whether someone is at the terminal: awake for ``awake_s`` after the last motion or touch.

    Without a PIR sensor the terminal is always awake (nothing would ever wake it).
    """

    def __init__(self, has_sensor: bool, awake_s: float, now: float) -> None:
        self.has_sensor = has_sensor
        self.awake_s = awake_s
        self._seen = now

    def seen(self, now: float) -> None:
        self._seen = now

    def awake(self, now: float) -> bool:
        return not self.has_sensor or now - self._seen < self.awake_s


class KindChoice:
    """The punch kind chosen with the Masuk or Pulang key, valid for ``hold_s`` or until a punch uses it."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._kind: str | None = None
        self._until = 0.0

    def choose(self, kind: str, now: float) -> None:
        self._kind, self._until = kind, now + self.hold_s

    def current(self, now: float) -> str | None:
        if self._kind is not None and now >= self._until:
            self._kind = None
        return self._kind

    def clear(self) -> None:
        self._kind = None


@dataclass(frozen=True)
class _Full:
    """A write refused for lack of room: when, and the outbox depth and free bytes then."""

    at: float
    pending: int
    free: int | None


class Terminal:
    """Runs one frame (or one idle tick) of the terminal: inputs, recognition, recording, signals, the screen."""

    def __init__(
        self,
        cfg: KioskConfig,
        pipeline: Pipeline,
        recorder: Recorder,
        outbox: Outbox,
        screen: Screen,
        pins: Pins,
        *,
        inputs: queue.Queue[str],
        wake: Callable[[], None] = lambda: None,
        network: Callable[[], Literal["off", "online", "offline"]] = lambda: "off",
        clock_synced: Callable[[], bool | None] = lambda: None,
        load_gallery: Callable[[], Gallery] | None = None,
        store_gallery: Callable[[bytes, tuple[int, str | None] | None], Gallery] | None = None,
        commands: queue.Queue[Queued] | None = None,
        applied: AppliedVersion | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        """``spawn`` runs a storage retry (default: on a thread of its own, so that a slow reopen of a failing card
        never stops the frame loop and its watchdog pings; tests pass ``lambda f: f()``)."""
        self.cfg = cfg
        self.pipeline = pipeline
        self.recorder = recorder
        self.outbox = outbox
        self.screen = screen
        self.pins = pins
        self.inputs = inputs  # the screen's touches and keys; the pins have their own queue
        self._wake = wake
        self._network = network
        self._clock_synced = clock_synced
        self._monotonic = monotonic
        self._now = now
        start = monotonic()
        self.presence = Presence(cfg.hardware.enabled and cfg.hardware.pir is not None, cfg.display.awake_s, start)
        self.kind_choice = KindChoice(cfg.hardware.kind_key_s)
        self.limiter = FallbackLimiter(cfg.fallback.per_person_per_day, cfg.fallback.per_hour)
        self.entry: NipEntry | None = None
        self._load_gallery = load_gallery
        self._store_gallery = store_gallery  # verifies a gallery file's bytes and writes them (version kept)
        self.commands = commands if commands is not None else queue.Queue()  # central's, from the MQTT thread
        self._applied = applied  # the version of the last command carried out (kiosk.commands)
        self._gallery_tried_at = start
        self.problems: dict[str, bool] = {}
        self.set_problem("gallery", len(pipeline.gallery) == 0)
        self._full: _Full | None = None  # the last write refused for lack of room, while it holds
        self._view = TerminalView()
        self._refreshed_at = -VIEW_REFRESH_S
        self._pending = 0
        self._free: int | None = None
        self._storage_low = False
        self.storage_problem = recorder.check_storage()  # why the storage refuses, while it does
        self._spawn = spawn or self._start_retry_thread
        self._retry_thread: threading.Thread | None = None
        self._retrying = False
        self._storage_tried_at = start
        self._last_frame: Frame | None = None
        self._last_result: FrameResult | None = None
        self.frames = 0  # camera frames seen; the pipeline counts the ones it processed

    @property
    def view(self) -> TerminalView:
        """What the screen was last told."""
        return self._view

    def describe(self) -> str:
        """One line on the terminal's state, for systemd's STATUS= (``systemctl status kiosk``)."""
        view = self._view
        parts = [f"{len(self.pipeline.gallery)} people", f"{view.pending} events unsent", f"server {view.network}"]
        if self.storage_problem is not None:
            parts.insert(0, f"storage failed: {self.storage_problem}")
        problems = [p for p in view.problems if p != "storage_failed"]
        if problems:
            parts.append("problems: " + ", ".join(problems))
        if view.asleep:
            parts.append("asleep")
        return "; ".join(parts)

    # --- the frame loop ---------------------------------------------------------------------------------------

    @property
    def last_result(self) -> FrameResult | None:
        """What the recognizer made of the last frame (None before the first)."""
        return self._last_result

    def frame(self, frame: Frame) -> None:
        """One camera frame: inputs first, then recognition unless asleep, blocked or typing a NIP."""
        from kiosk.recognizer.pipeline import FrameResult

        now = self._monotonic()
        self.set_problem("camera", False)
        self.frames += 1
        self._last_frame = frame
        self._take_inputs(now)
        self._take_commands()
        if self.problems.get("gallery") and now - self._gallery_tried_at >= GALLERY_RETRY_S:
            self._gallery_tried_at = now
            self.reload_gallery()
        view = self._refresh(now)
        if view.asleep or view.blocking or self.entry is not None:
            result = FrameResult([], [])
        else:
            result = self.pipeline.process(frame)
        self._last_result = result
        outcomes = [self._record(d, frame) for d in result.decisions]
        if any(o.seq is not None for o in outcomes):
            self._wake()
        if outcomes:
            self._refresh(now)  # a recorded punch used up the kind chosen with a key
        self.screen.show(frame, result, outcomes)
        for outcome in outcomes:
            self.pins.signal(outcome.status)

    def tick(self) -> None:
        """A moment without a frame (the camera is failing or being reopened): inputs and the screen go on."""
        now = self._monotonic()
        self._take_inputs(now)
        self._take_commands()
        self._refresh(now)

    def close(self) -> None:
        """Wait (briefly) for a storage retry in progress; the outbox is closed after this."""
        thread = self._retry_thread
        if thread is not None and thread.is_alive():
            thread.join(RETRY_JOIN_S)
            if thread.is_alive():
                log.warning("the storage retry did not end within %.0f s", RETRY_JOIN_S)

    def set_problem(self, name: str, present: bool) -> None:
        """Raise or clear a problem (logged when it changes); the screen shows it at the next refresh."""
        if self.problems.get(name, False) != present:
            (log.error if present else log.info)("problem %s %s", name, "present" if present else "solved")
        self.problems[name] = present

    def reload_gallery(self) -> bool:
        """Load the gallery file again (central asked, or it was missing); a bad file keeps the running one. True
        when a gallery was loaded."""
        from kiosk.errors import KioskError

        if self._load_gallery is None:
            return False
        try:
            new = self._load_gallery()
        except KioskError as exc:
            log.error("gallery not loaded, keeping version %d: %s", self.pipeline.gallery.version, exc)
            return False
        log.info("gallery loaded: version %d -> %d, %d people", self.pipeline.gallery.version, new.version, len(new))
        self.pipeline.gallery = new
        self.set_problem("gallery", len(new) == 0)
        return True

    def remove_people(self, nips: tuple[str, ...]) -> bool:
        """Delete people from the gallery file and from recognition (central removed them: the personal-data law
        requires it to reach every device); the file is written before the running gallery changes, with the same
        version and office (versions are central's: its next push is newer). True when done."""
        from kiosk_contract.gallery import Gallery

        old = self.pipeline.gallery
        gone = set(nips)
        kept = Gallery([p for p in old.people if p.nip not in gone], version=old.version, model=old.model,
                       office=old.office)
        if len(kept) == len(old):
            log.info("removal of %d NIP(s): none is enrolled here", len(gone))
            return True
        if self._install(kept.to_bytes(self.cfg.recognizer.gallery_key()), f"removal of {len(gone)} NIP(s)"):
            log.info("removed %d people; gallery version %d", len(old) - len(kept), kept.version)
            return True
        return False

    def install_gallery(self, data: bytes, version: int | None = None, office: str | None = None) -> bool:
        """A gallery file pushed by central (its command already checked): verified, written, then swapped in. With
        ``version`` and ``office`` (the command's), a file that says otherwise is refused."""
        old = self.pipeline.gallery
        if self._install(data, "the pushed gallery", None if version is None else (version, office)):
            new = self.pipeline.gallery
            log.info("gallery installed: version %d -> %d (office %s), %d people", old.version, new.version,
                     new.office, len(new))
            return True
        return False

    def install_schedule(self, command: dict[str, Any], schedule: ScheduleConfig) -> bool:
        """A schedule pushed by central (its command and the schedule already checked): kept on disk, then run by
        the recorder and the NIP entry from the next punch on. True when done; a failed write changes nothing (the
        retained command is tried again at the next connect)."""
        try:
            self.recorder.schedules.install(command, schedule)
        except OSError as exc:
            log.error("the pushed schedule version %s cannot be kept, the running one is unchanged: %s",
                      command.get("schedule_version"), exc)
            return False
        return True

    def _install(self, data: bytes, what: str, expect: tuple[int, str | None] | None = None) -> bool:
        """Write ``data`` as the gallery file and run it (with ``expect``, only a gallery of that version and office);
        False (and nothing changed) when it cannot be."""
        from kiosk.errors import KioskError

        if self._store_gallery is None:
            log.error("%s refused: this kiosk cannot write its gallery", what)
            return False
        try:
            gallery = self._store_gallery(data, expect)
        except (OSError, KioskError) as exc:
            log.error("%s failed, the gallery is unchanged: %s", what, exc)
            return False
        self.pipeline.gallery = gallery
        self.set_problem("gallery", len(gallery) == 0)
        return True

    def _take_commands(self) -> None:
        """Carry out what the MQTT thread queued: central's checked commands (recording each version on its channel
        once it is done; a version applied meanwhile on that channel is skipped) and alarms to store."""
        while True:
            try:
                item: Queued = self.commands.get_nowait()
            except queue.Empty:
                return
            if item.action == "alarm":
                name, detail = item.argument
                self.recorder.alarm(name, detail)
                continue
            if self._applied is not None and item.version <= self._applied.of(item.channel):
                log.info("command version %d (%s) was applied already on the %s channel; skipped", item.version,
                         item.action, item.channel)
                continue
            if item.action == "schedule":
                done = self.install_schedule(*item.argument)
            elif item.action == "reload":
                done = self.reload_gallery()
            elif item.action == "install":
                done = self.install_gallery(*item.argument)
            else:
                done = self.remove_people(item.argument)
            if done and self._applied is not None:
                try:
                    self._applied.record(item.channel, item.version)
                except OSError as exc:  # done, but not remembered: central's next copy is carried out again
                    log.error("command version %d was carried out but cannot be recorded in %s: %s", item.version,
                              self._applied.path, exc)

    # --- decisions and manual entries ---------------------------------------------------------------------------

    def _record(self, decision: Decision, frame: Frame) -> Outcome:
        now = self._monotonic()
        outcome = self.recorder.record(decision, frame.rgb, kind=self.kind_choice.current(now))
        if outcome.status == "recorded":
            self.kind_choice.clear()
        self._note_storage(outcome, now)
        return outcome

    def _submit_entry(self, nip: str, now: float) -> None:
        """The typed NIP: a review event with an evidence photo for HR, unless the limits are reached."""
        from kiosk.events.recorder import Outcome
        from kiosk.recognizer.pipeline import FrameResult

        self.entry = None
        frame = self._last_frame
        local = local_time(self._now(), self.cfg.device.timezone)
        if frame is None or self.problems.get("camera"):
            outcome = Outcome("cannot_record", "Kamera bermasalah: presensi manual tidak dapat dicatat", nip=nip)
        elif not self.limiter.allow(nip, local.date(), now):
            log.warning("manual entry refused: the limit is reached", extra={"nip": nip})
            outcome = Outcome("limited", "Batas presensi manual tercapai", nip=nip)
        else:
            kind = self.kind_choice.current(now) or punch_kind(self.recorder.schedules.current, local)
            outcome = self.recorder.manual(nip, kind, frame.rgb, self._served_box())
            self.kind_choice.clear()
            self._note_storage(outcome, now)
            if outcome.seq is not None:
                log.info("manual entry stored for review (seq %d)", outcome.seq, extra={"nip": nip, "seq": outcome.seq})
                self._wake()
        if frame is not None:
            self.screen.show(frame, FrameResult([], []), [outcome])
        self.pins.signal(outcome.status)

    def _served_box(self) -> list[int] | None:
        result = self._last_result
        served = next((t for t in result.tracks if t.served), None) if result else None
        return served.box.as_list() if served else None

    def _note_storage(self, outcome: Outcome, now: float) -> None:
        """A write refused for lack of room says "storage full" until there is more room (or a while has passed);
        storage that fails is followed through the outbox (see :meth:`_watch_storage`)."""
        if outcome.storage == "full":
            self._full = _Full(now, self._pending, self._free)
        elif outcome.seq is not None:
            self._full = None

    def _watch_storage(self, now: float) -> None:
        """Storage that refuses: the problem (from the recorder, which stores the outage's alarms once it works
        again), and a retry of the outbox every STORAGE_RETRY_S, on its own thread, while it is down."""
        if self.storage_problem is not None and not self._retrying and now - self._storage_tried_at >= STORAGE_RETRY_S:
            self._storage_tried_at = now
            self._retrying = True
            try:
                self._spawn(self._retry_storage)
            except RuntimeError as exc:  # no thread can be started now: tried again at the next interval
                self._retrying = False
                log.error("cannot start the storage retry: %s", exc)
        self.storage_problem = self.recorder.check_storage()

    def _retry_storage(self) -> None:
        try:
            if self.outbox.retry():
                log.info("storage works again")
        except Exception as exc:  # the retry must never end the retrying (nor the frame loop)
            log.error("storage retry failed: %s", exc)
        finally:
            self._retrying = False

    def _start_retry_thread(self, work: Callable[[], None]) -> None:
        self._retry_thread = threading.Thread(target=work, name="storage-retry", daemon=True)
        self._retry_thread.start()

    def _room_back(self, full: _Full, now: float) -> bool:
        """Whether a write refused for lack of room may be tried again: fewer events wait, more space is free, or
        FULL_HOLD_S has passed."""
        more_free = self._free is not None and (full.free is None or self._free > full.free + 1_000_000)
        return now - full.at >= FULL_HOLD_S or self._pending < full.pending or more_free

    # --- inputs -----------------------------------------------------------------------------------------------

    def _take_inputs(self, now: float) -> None:
        for source in (self.pins.events(), self.inputs):
            while True:
                try:
                    name = source.get_nowait()
                except queue.Empty:
                    break
                self._input(name, now)
        if self.entry is not None and self.entry.expired(now):
            log.info("NIP entry closed after %.0f s without a key", self.entry.timeout_s)
            self.entry = None

    def _input(self, name: str, now: float) -> None:
        if name == "tamper_open":
            log.warning("the case was opened")
            self.recorder.alarm("tamper", "case opened")
            return
        if name in ("motion", "touch") or name in ENTRY_KEYS:
            self.presence.seen(now)
        if name in ("tamper_closed", "no_motion", "motion"):
            log.debug("input %s", name)
            return
        if name in ("key_masuk", "key_pulang"):
            kind = name.removeprefix("key_")
            self.presence.seen(now)
            self.kind_choice.choose(kind, now)
            log.info("punch kind %s chosen with its key", kind)
            return
        if self.entry is None:
            if name in ("key_fallback", "touch") or name.isdigit():
                self._open_entry(now, first=name if name.isdigit() else "")
            return
        if name in ENTRY_KEYS:
            done = self.entry.press(name, now)
            if done == "cancel":
                self.entry = None
            elif done == "submit":
                self._submit_entry(self.entry.digits, now)
        elif name == "key_fallback":
            self.entry = None  # the fallback key toggles the entry

    def _open_entry(self, now: float, first: str) -> None:
        view = self._refresh(now)
        if not self.cfg.fallback.enabled or {"camera", "storage", "storage_failed"} & set(view.problems):
            return
        self.presence.seen(now)
        self.entry = NipEntry(self.cfg.fallback.entry_timeout_s, now)
        if first:
            self.entry.press(first, now)
        log.info("NIP entry opened")

    # --- what the screen shows ----------------------------------------------------------------------------------

    def _refresh(self, now: float) -> TerminalView:
        """Recompute the view (outbox counts and free space at most once a second) and hand a change to the screen."""
        self._watch_storage(now)
        if now - self._refreshed_at >= VIEW_REFRESH_S:
            self._refreshed_at = now
            if self.storage_problem is None:  # while down the last counts stay (a retry may hold the outbox)
                try:
                    counts = self.outbox.counts()
                    self._pending = counts["pending"] + counts["published"]
                except (OutboxError, sqlite3.Error, OSError) as exc:  # the next write will say more
                    log.error("cannot count the outbox: %s", exc)
            try:
                self._free = free_bytes(self.outbox.path.parent)
            except OSError:  # no state folder (it could not be created): the outbox says why
                self._free = None
            self._storage_low = self._pending >= self.cfg.events.max_events or (
                self._free is not None and self._free < STORAGE_RESERVE_BYTES
            )
            self.set_problem("clock", self._clock_synced() is False)
        if self._full is not None and self._room_back(self._full, now):
            self._full = None
        failed = self.storage_problem is not None
        self.set_problem("storage_failed", failed)
        self.set_problem("storage", not failed and (self._storage_low or self._full is not None))
        view = replace(
            self._view,
            network=self._network(),
            pending=self._pending,
            problems=tuple(p for p in PROBLEM_ORDER if self.problems.get(p)),
            asleep=not self.presence.awake(now),
            chosen_kind=self.kind_choice.current(now),
            entry=self.entry.view() if self.entry is not None else None,
            fallback=self.cfg.fallback.enabled,
        )
        if view != self._view:
            self._view = view
            self.screen.update(view)
        return view
