"""From the recognizer's decision to a durable event: punch kind, repeats, evidence photo, outbox.

The outbox commit happens before :meth:`Recorder.record` returns, so the screen may say "recorded" exactly when
the outcome says so; a full outbox or disk gives ``cannot_record`` and never a false "recorded".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from kiosk.config import KioskConfig
from kiosk.events import clock
from kiosk.events.outbox import Outbox, OutboxFull
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


@dataclass(frozen=True)
class Outcome:
    """What the screen should say about one decision."""

    status: Status
    message: str
    nip: str | None = None
    kind: str | None = None
    at: datetime | None = None  # site-local time of the punch
    seq: int | None = None  # the outbox sequence number of the event, when one was stored


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
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self._read_clock = read_clock
        self._now = now
        self._mono_ns = mono_ns
        self._boot_id = boot_id or clock.boot_id()
        self._anchors = clock.TimeAnchorTracker()
        self._guard = RepeatGuard.from_config(cfg.events)
        self._restore_repeats()
        if outbox.recovered_from is not None:
            self._append(
                schema.build_alarm(
                    self._stamp(),
                    alarm="outbox_recovered",
                    detail=f"corrupt outbox moved aside to {outbox.recovered_from}",
                )
            )

    def record(self, decision: Decision, rgb: np.ndarray, kind: str | None = None) -> Outcome:
        """Decide the punch for one decision and store its event; the returned outcome is what to show.

        ``kind`` is a kind chosen with the Masuk or Pulang key: it replaces the schedule's kind inside the
        attendance windows (leaving early is a ``pulang`` in the morning), never outside them or on a holiday.
        """
        try:
            return self._record(decision, rgb, kind)
        except OutboxFull as exc:
            log.error("cannot record the decision for %s: %s", decision.nip or "an unknown face", exc)
            return Outcome("cannot_record", CANNOT_RECORD, nip=decision.nip)
        except ValueError as exc:  # an event that cannot be built (a bad NIP in the gallery): never a crash
            return self._unbuildable(f"the decision for {decision.nip or 'an unknown face'}", exc, decision.nip)

    def _unbuildable(self, what: str, exc: ValueError, nip: str | None) -> Outcome:
        """An event that fails its schema: logged, stored as an ``event_invalid`` alarm for IT, and "cannot record"
        on the screen; the kiosk goes on."""
        log.error("cannot build the event for %s: %s", what, exc)
        self.alarm("event_invalid", f"cannot build the event for {what}: {exc}"[:1000])
        return Outcome("cannot_record", CANNOT_RECORD, nip=nip)

    def _restore_repeats(self) -> None:
        """Remember the attendance recorded within the repeat interval before this start (the guard lives in memory;
        the outbox keeps the events), so that a restart does not record the same person again."""
        interval = self._guard.interval
        if interval.total_seconds() <= 0:
            return
        since = self._now().timestamp() - interval.total_seconds()
        for stored in self.outbox.recent("attendance", since):
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
        except OutboxFull as exc:
            log.error("cannot record the manual entry for %s: %s", nip, exc)
            return Outcome("cannot_record", CANNOT_RECORD, nip=nip)
        except ValueError as exc:
            return self._unbuildable(f"the manual entry of {nip}", exc, nip)
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
        kind = punch_kind(self.cfg.schedule, local)
        if not decision.live:  # the claimed person and the punch HR may grant; the screen names nobody
            log.warning("suspected spoof for NIP %s: %s", decision.nip, made["liveness"])
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

    def alarm(self, alarm: str, detail: str | None = None) -> int | None:
        """Store an alarm event (e.g. the case opened); None when the outbox has no room."""
        try:
            return self._append(schema.build_alarm(self._stamp(), alarm=alarm, detail=detail))
        except (OutboxFull, ValueError) as exc:
            log.error("cannot store the %s alarm (%s): %s", alarm, detail, exc)
            return None

    def status(self, *, fps: float, gallery: Gallery, refused_acks: int = 0, refused_commands: int = 0) -> int | None:
        """Store a signed device status event (health for the regency's dashboard: the office and version of the
        gallery it runs, its queue, the acks and commands it refused); None if it cannot."""
        oldest = self.outbox.pending(limit=1)
        stamp = self._stamp()
        counts = self.outbox.counts()
        try:
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
                )
            )
        except OutboxFull as exc:
            log.error("no room for a status event: %s", exc)
            return None

    def _append(self, body: dict[str, Any], evidence: bytes | None = None) -> int:
        stored = self.outbox.append(body["event_id"], body["type"], schema.to_bytes(body), evidence)
        nip, kind = (body.get("person") or {}).get("nip"), body.get("kind")
        what = " ".join(str(w) for w in (body["type"], body.get("reason") or body.get("alarm"), kind) if w)
        log.info(
            "stored %s seq %d%s",
            what,
            stored.seq,
            f" for NIP {nip}" if nip else "",
            extra={"event_id": body["event_id"], "seq": stored.seq, "kind": kind, "nip": nip},  # journal fields
        )
        return stored.seq

    def _stamp(self) -> schema.Stamp:
        """One reading of the clocks; emits a time anchor at the first synced reading of this boot."""
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
            self._append(schema.build_time_anchor(stamp))
        return stamp


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
