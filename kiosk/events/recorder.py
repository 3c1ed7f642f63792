"""From the recognizer's decision to a durable event: punch kind, repeats, evidence photo, outbox.

The outbox commit happens before :meth:`Recorder.record` returns, so the screen may say "recorded" exactly when
the outcome says so; a full outbox or disk, or storage that fails (a card remounted read-only, I/O errors), gives
``cannot_record`` and never a false "recorded", and never an exception.

While the outbox is down (:attr:`Outbox.available` false) the recorder keeps the outage: since when, why, and what
it could not store. :meth:`Recorder.check_storage` follows the outbox from the frame loop; once storage works again
it stores a ``storage_failed`` alarm about the outage (it could not be stored during it) and an ``outbox_recovered``
alarm for each damaged database the outbox moved aside, with the seq ranges that were lost.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from kiosk.commands import CurrentSchedule
from kiosk.config import KioskConfig
from kiosk.events import clock
from kiosk.events.outbox import Outbox, OutboxError, OutboxFull, Recovery, StorageUnavailable
from kiosk.events.punch import OUTSIDE_HOURS, RepeatGuard
from kiosk_contract import schema
from kiosk_contract.fsutil import free_bytes
from kiosk_contract.schedule import local_time, punch_kind

if TYPE_CHECKING:
    from kiosk.recognizer.pipeline import Decision
    from kiosk_contract.gallery import Gallery

log = logging.getLogger(__name__)

EVIDENCE_WIDTH = 160  # pixels: enough for HR to recognise a face, small enough to keep 150,000 of them
MANUAL_EVIDENCE_WIDTH = 320  # a manual entry's photo shows the person and their surroundings, not only a face

Status = Literal[
    "recorded",
    "already",
    "outside_hours",
    "not_recognised",
    "not_live",
    "cannot_record",
    "pending_review",
    "limited",
]
"""``pending_review``: a manual entry went to HR; ``limited``: a manual entry was refused by the rate limits;
``not_live``: a known face that did not prove liveness (a suspected spoof went to HR, the screen stays neutral)."""
NOT_LIVE_MESSAGE = "Silakan coba lagi"
CANNOT_RECORD = "Presensi tidak dapat disimpan: hubungi petugas TI"
STORAGE_FAILED = "Presensi tidak dapat dicatat: tulis NIP dan jam di daftar hadir manual, hubungi petugas TI"
PLURALS = {"face decision": "face decisions", "manual entry": "manual entries", "alarm": "alarms",
           "status event": "status events"}
STORAGE_ERRORS = (OutboxError, sqlite3.Error, OSError)
"""What a write may raise when the storage refuses: the outbox translates SQLite's and the OS's errors, and anything
it does not is treated the same (never a crash of the frame loop)."""
LOST_ALARMS_NAMED = 10  # alarms that could not be stored during an outage, named in its storage_failed alarm


@dataclass(frozen=True)
class Outcome:
    """What the screen should say about one decision."""

    status: Status
    message: str
    nip: str | None = None
    kind: str | None = None
    at: datetime | None = None  # site-local time of the punch
    seq: int | None = None  # the outbox sequence number of the event, when one was stored
    storage: Literal["full", "failed"] | None = None  # why a cannot_record: no room, or storage that fails


@dataclass
class Outage:
    """A time the outbox could not store anything: since when (UTC, and the monotonic clock for its length), why,
    and what was refused meanwhile (``refused``: counts of "face decision", "manual entry", "alarm", "status event")."""

    since: datetime
    since_ns: int
    first_problem: str
    problem: str  # the latest reason
    refused: Counter[str] = field(default_factory=Counter)
    alarms: list[str] = field(default_factory=list)  # the first alarms not stored: "<name> at <UTC time>"


class Recorder:
    """Turns decisions into attendance and review events in the outbox."""

    def __init__(
        self,
        cfg: KioskConfig,
        outbox: Outbox,
        *,
        read_clock: Callable[[], clock.ClockState],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        mono_ns: Callable[[], int] = clock.mono_ns,
        boot_id: str | None = None,
        schedules: CurrentSchedule | None = None,
    ) -> None:
        """``schedules`` holds the punch schedule in force (kiosk.commands: central's pushed one, else kiosk.toml's);
        by default kiosk.toml's, never replaced."""
        self.cfg = cfg
        self.outbox = outbox
        self.schedules = schedules if schedules is not None else CurrentSchedule(
            cfg.schedule, timezone=cfg.device.timezone)
        self._read_clock = read_clock
        self._now = now
        self._mono_ns = mono_ns
        self._boot_id = boot_id or clock.boot_id()
        self._anchors = clock.TimeAnchorTracker()
        self._anchor: schema.Stamp | None = None  # the first synced reading, until its time_anchor is stored
        self._guard = RepeatGuard.from_config(cfg.events)
        self.outage: Outage | None = None
        self._recoveries: list[Recovery] = []  # damaged databases whose outbox_recovered alarm is not stored yet
        self._repeats_restored = False  # done once the outbox could be read (down at start: when it works)
        self._restore_repeats()
        self.check_storage()  # an outbox down from the start is an outage; recoveries found at open are alarms

    def record(self, decision: Decision, rgb: np.ndarray, kind: str | None = None) -> Outcome:
        """Decide the punch for one decision and store its event; the returned outcome is what to show.

        ``kind`` is a kind chosen with the Masuk or Pulang key: it replaces the schedule's kind inside the
        attendance windows (leaving early is a ``pulang`` in the morning), never outside them or on a holiday.
        """
        try:
            return self._record(decision, rgb, kind)
        except STORAGE_ERRORS as exc:
            return self._refused("face decision", "the face decision", exc, decision.nip)
        except ValueError as exc:  # an event that cannot be built (a bad NIP in the gallery): never a crash
            return self._unbuildable("the face decision", exc, decision.nip)

    def _refused(self, what: str, which: str, exc: Exception, nip: str | None) -> Outcome:
        """Nothing was stored: a full outbox or disk says so; storage that fails starts (or continues) an outage and
        tells the person to use the manual attendance list."""
        log.error("cannot record %s: %s", which, exc, extra={"nip": nip})  # the NIP as a field only
        if isinstance(exc, OutboxFull):
            return Outcome("cannot_record", CANNOT_RECORD, nip=nip, storage="full")
        self._note_refused(what, exc)
        return Outcome("cannot_record", STORAGE_FAILED, nip=nip, storage="failed")

    def _unbuildable(self, what: str, exc: ValueError, nip: str | None) -> Outcome:
        """An event that fails its schema: logged, stored as an ``event_invalid`` alarm for IT, and "cannot record"
        on the screen; the kiosk goes on."""
        log.error("cannot build the event for %s: %s", what, exc, extra={"nip": nip})
        self.alarm("event_invalid", f"cannot build the event for {what}: {exc}"[:1000])
        return Outcome("cannot_record", CANNOT_RECORD, nip=nip)

    def _restore_repeats(self) -> None:
        """Remember the attendance recorded within the repeat interval before this start (the guard lives in memory;
        the outbox keeps the events), so that a restart does not record the same person again."""
        interval = self._guard.interval
        if interval.total_seconds() <= 0:
            self._repeats_restored = True
            return
        if not self.outbox.available:
            return
        since = self._now().timestamp() - interval.total_seconds()
        try:
            recent = self.outbox.recent("attendance", since)
        except STORAGE_ERRORS as exc:  # storage failing as the kiosk starts: the outage shows; no repeats known
            log.error("cannot read the recent attendance for the repeat guard: %s", exc)
            self._repeats_restored = self.outbox.available  # down: read again once it works
            return
        self._repeats_restored = True
        for stored in recent:
            try:
                body = schema.from_bytes(stored.payload, complete=False)
                at = local_time(datetime.fromisoformat(body["time_utc"].replace("Z", "+00:00")), body["tz"])
            except (ValueError, KeyError):
                log.warning("outbox event seq %d is not a readable attendance; not used for repeats", stored.seq)
                continue
            self._guard.remember(body["person"]["nip"], body["kind"], at)

    def manual(self, nip: str, kind: str | None, rgb: np.ndarray, box: list[int] | None) -> Outcome:
        """Store a typed NIP as a ``manual_entry`` review event with a photo (the face ``box`` when one was in view,
        else the whole picture): HR decides; it never counts as a face attendance."""
        h, w = rgb.shape[:2]
        evidence = face_jpeg(rgb, box or [0, w, h, 0], self.cfg.events.evidence_max_bytes, MANUAL_EVIDENCE_WIDTH)
        try:
            stamp = self._stamp()
            body = schema.build_review(
                stamp, reason="manual_entry", decision=schema.manual_decision(), nip=nip, kind=kind, evidence=evidence
            )
            seq = self._append(body, evidence)
        except STORAGE_ERRORS as exc:
            return self._refused("manual entry", "the manual entry", exc, nip)
        except ValueError as exc:
            return self._unbuildable("the manual entry", exc, nip)
        local = local_time(stamp.utc, self.cfg.device.timezone)
        return Outcome("pending_review", "Menunggu verifikasi", nip=nip, kind=kind, at=local, seq=seq)

    def _record(self, decision: Decision, rgb: np.ndarray, chosen: str | None) -> Outcome:
        stamp = self._stamp()
        evidence = face_jpeg(rgb, decision.box.as_list(), self.cfg.events.evidence_max_bytes)
        made = schema.face_decision(decision)
        if decision.nip is None:
            body = schema.build_review(stamp, reason="unknown_face", decision=made, evidence=evidence)
            return Outcome("not_recognised", "Wajah tidak dikenali", seq=self._append(body, evidence))
        local = local_time(stamp.utc, self.cfg.device.timezone)
        kind = punch_kind(self.schedules.current, local)
        if not decision.live:  # the claimed person and the punch HR may grant; the screen names nobody
            log.warning("suspected spoof: %s", made["liveness"], extra={"nip": decision.nip})
            body = schema.build_review(
                stamp, reason="suspected_spoof", decision=made, nip=decision.nip, kind=chosen or kind, evidence=evidence
            )
            return Outcome("not_live", NOT_LIVE_MESSAGE, seq=self._append(body, evidence))
        if kind is None:
            return Outcome("outside_hours", OUTSIDE_HOURS, nip=decision.nip, at=local)
        kind = chosen or kind
        repeat = self._guard.check(decision.nip, kind, local)
        if repeat is not None:
            return Outcome("already", repeat.message, nip=decision.nip, kind=kind, at=repeat.first)
        body = schema.build_attendance(stamp, kind=kind, nip=decision.nip, decision=made, evidence=evidence)
        seq = self._append(body, evidence)
        self._guard.remember(decision.nip, kind, local)
        return Outcome("recorded", "Presensi tercatat", nip=decision.nip, kind=kind, at=local, seq=seq)

    def alarm(
        self, alarm: str, detail: str | None = None, lost_seqs: list[tuple[int, int]] | None = None
    ) -> int | None:
        """Store an alarm event (e.g. the case opened); None when the outbox has no room or the storage fails (an
        alarm lost to failing storage is named in the outage's ``storage_failed`` alarm)."""
        try:
            return self._append(schema.build_alarm(self._stamp(), alarm=alarm, detail=detail, lost_seqs=lost_seqs))
        except (*STORAGE_ERRORS, ValueError) as exc:
            log.error("cannot store the %s alarm (%s): %s", alarm, detail, exc)
            if isinstance(exc, STORAGE_ERRORS) and not isinstance(exc, OutboxFull):
                self._note_refused("alarm", exc)
                if self.outage is not None and len(self.outage.alarms) < LOST_ALARMS_NAMED:
                    self.outage.alarms.append(f"{alarm} at {_iso(self._now())}")
            return None

    def status(self, *, fps: float, gallery: Gallery, refused_acks: int = 0, refused_commands: int = 0) -> int | None:
        """Store a signed device status event (health for the regency's dashboard: the office and version of the
        gallery it runs, the version of the pushed schedule it runs, its queue, the acks and commands it refused);
        None if it cannot (no room, storage down)."""
        if not self.outbox.available:  # nothing to store it in; the outage's alarm counts it
            self._note_refused("status event", StorageUnavailable(self.outbox.problem or "the outbox is down"))
            return None
        try:
            oldest = self.outbox.pending(limit=1)
            stamp = self._stamp()
            counts = self.outbox.counts()
            return self._append(
                schema.build_status(
                    stamp,
                    fps=fps,
                    outbox_depth=counts["pending"] + counts["published"],
                    oldest_pending_age_s=int(stamp.utc.timestamp() - oldest[0].created_at) if oldest else None,
                    gallery_version=str(gallery.version),
                    gallery_office=gallery.office,
                    cpu_temp_c=cpu_temperature(),
                    free_disk_bytes=free_bytes(self.outbox.path.parent),
                    refused_acks=refused_acks,
                    refused_commands=refused_commands,
                    schedule_version=self.schedules.version,
                )
            )
        except (*STORAGE_ERRORS, ValueError) as exc:
            log.error("cannot store a status event: %s", exc)
            if isinstance(exc, STORAGE_ERRORS) and not isinstance(exc, OutboxFull):
                self._note_refused("status event", exc)
            return None

    # --- storage that fails and comes back -------------------------------------------------------------------------

    def check_storage(self) -> str | None:
        """Follow the outbox's storage (the frame loop calls this at every refresh; cheap): the problem while it is
        down (an outage starts the first time that is seen), None when it works. When it works again after an outage,
        the outage's ``storage_failed`` alarm is stored first, then an ``outbox_recovered`` alarm for each damaged
        database the outbox moved aside (at open or at a retry)."""
        if self.outbox.available:
            if self.outage is not None:
                self._end_outage()
            if not self._repeats_restored:  # the outbox was down at start
                self._restore_repeats()
            if self.outage is None:
                self._recoveries += self.outbox.take_recoveries()
                while self._recoveries and self._store_recovery(self._recoveries[0]):
                    self._recoveries.pop(0)
        if self.outbox.available:
            return None
        problem = self.outbox.problem or f"the outbox {self.outbox.path} is down"
        if self.outage is None:
            self._begin_outage(problem)
        else:
            self.outage.problem = problem  # the latest reason (a retry may fail otherwise than the first write)
        return problem

    def _begin_outage(self, problem: str) -> None:
        self.outage = Outage(self._now(), self._mono_ns(), problem, problem)
        log.error("storage failed, nothing can be recorded until it works again: %s", problem)

    def _note_refused(self, what: str, exc: Exception) -> None:
        """Count something not stored because the storage fails (an outage starts if none is known yet)."""
        if self.outage is None:
            self._begin_outage(str(exc))
        assert self.outage is not None
        self.outage.refused[what] += 1

    def _end_outage(self) -> None:
        """Store the ``storage_failed`` alarm of the outage that just ended (if the storage fails again at once, the
        outage goes on and the alarm waits)."""
        outage = self.outage
        assert outage is not None
        now = self._now()
        lasted = max(0, (self._mono_ns() - outage.since_ns) // 1_000_000_000)
        refused = [f"{n} {what if n == 1 else PLURALS.get(what, what)}" for what, n in sorted(outage.refused.items())]
        alarms = f"; alarms not stored: {', '.join(outage.alarms)}" if outage.alarms else ""
        head = (f"storage failed at {_iso(outage.since)} for {_duration(lasted)} (until {_iso(now)}); refused "
                f"meanwhile: {', '.join(refused) if refused else 'nothing'}{alarms}; the problem: ")
        problem = outage.first_problem
        if outage.problem != problem:
            problem += f"; last: {outage.problem}"
        detail = head + problem[: max(0, 1000 - len(head))]
        try:
            seq = self._append(schema.build_alarm(self._stamp(), alarm="storage_failed", detail=detail[:1000]))
        except StorageUnavailable as exc:
            log.error("storage failed again at once: %s", exc)
            outage.problem = str(exc)
            return
        except (*STORAGE_ERRORS, ValueError) as exc:  # e.g. full: the outage is over, its alarm is only in the log
            log.error("storage works again, but the storage_failed alarm cannot be stored (%s): %s", exc, detail)
            self.outage = None
            return
        log.warning("storage works again; storage_failed alarm stored as seq %d: %s", seq, detail)
        self.outage = None

    def _store_recovery(self, recovery: Recovery) -> bool:
        """Store the ``outbox_recovered`` alarm of one damaged database, with its lost seq ranges (at most the
        contract's limit: the tail is merged into one range, which may then include skipped numbers, as the ranges
        already may). False when the storage failed again (the alarm is tried again when it works)."""
        lost = list(recovery.lost)
        limit = schema.MAX_LOST_RANGES
        detail = recovery.detail
        if len(lost) > limit:
            lost = [*lost[: limit - 1], (lost[limit - 1][0], lost[-1][1])]
            detail = f"{len(recovery.lost)} lost ranges, the last {len(recovery.lost) - limit + 1} merged; {detail}"
        detail = f"{recovery.reason}: {detail}"[:1000]
        try:
            self._append(schema.build_alarm(self._stamp(), alarm="outbox_recovered", detail=detail, lost_seqs=lost))
        except StorageUnavailable as exc:
            log.error("the outbox_recovered alarm waits for the storage (%s): %s", exc, detail)
            return False
        except (*STORAGE_ERRORS, ValueError) as exc:
            log.error("the outbox_recovered alarm cannot be stored (%s): %s", exc, detail)
        return True

    def _append(self, body: dict[str, Any], evidence: bytes | None = None) -> int:
        if not self.outbox.available:  # refused at once: never wait for a retry that holds the outbox
            raise StorageUnavailable(self.outbox.problem or f"the outbox {self.outbox.path} is down")
        stored = self.outbox.append(body["event_id"], body["type"], schema.to_bytes(body), evidence)
        nip, kind = (body.get("person") or {}).get("nip"), body.get("kind")
        what = " ".join(str(w) for w in (body["type"], body.get("reason") or body.get("alarm"), kind) if w)
        # The NIP goes to the KIOSK_NIP journal field only, never into the text (docs/service.md, "Personal data").
        log.info("stored %s seq %d", what, stored.seq,
                 extra={"event_id": body["event_id"], "seq": stored.seq, "kind": kind, "nip": nip})
        return stored.seq

    def _stamp(self) -> schema.Stamp:
        """One reading of the clocks; emits a time anchor at the first synced reading of this boot (kept until it is
        stored: an anchor that could not be stored goes in before the next event that can)."""
        mono = self._mono_ns()
        state = self._read_clock()
        first_sync = self._anchors.observe(state, mono)
        stamp = schema.Stamp(
            device=self.cfg.device.id,
            boot_id=self._boot_id,
            mono_ns=mono,
            utc=self._now(),
            tz=self.cfg.device.timezone,
            clock=self._anchors.clock_info(state),
        )
        if first_sync:
            self._anchor = stamp
        if self._anchor is not None:
            self._append(schema.build_time_anchor(self._anchor))
            self._anchor = None
        return stamp


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: int) -> str:
    """``45 s``, ``12 min 5 s``, ``3 h 20 min``."""
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def face_jpeg(rgb: np.ndarray, box: list[int], max_bytes: int, width: int = EVIDENCE_WIDTH) -> bytes | None:
    """A small JPEG of the face (the box grown by a third, at most ``width`` wide), at most ``max_bytes``;
    None if it cannot fit."""
    top, right, bottom, left = box
    h, w = rgb.shape[:2]
    pad_x, pad_y = (right - left) // 3, (bottom - top) // 3
    crop = rgb[max(0, top - pad_y) : min(h, bottom + pad_y), max(0, left - pad_x) : min(w, right + pad_x)]
    if crop.size == 0:
        return None
    if crop.shape[1] > width:
        size = (width, max(1, round(crop.shape[0] * width / crop.shape[1])))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    for quality in (85, 70, 50, 30):
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(data) <= max_bytes:
            return data.tobytes()
    return None


def cpu_temperature(zone: Path = Path("/sys/class/thermal/thermal_zone0/temp")) -> float | None:
    """The SoC temperature in degrees Celsius (a Pi throttles at 80-85), or None where there is no sensor."""
    try:
        return int(zone.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None
