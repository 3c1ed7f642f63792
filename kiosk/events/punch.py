"""Whether a punch repeats a recorded one (the kind itself comes from kiosk_contract.schedule.punch_kind).

A pure state object: no I/O and no clock reads; every time is a parameter. The device only classifies a punch
(masuk, pulang, ...) by the configured windows; lateness and early leave (TL/PSW bands) are decided centrally from
the office's start and end times (see docs/schedule.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiosk.config import EventsConfig

OUTSIDE_HOURS = "Di luar jam presensi"
"""What the screen says when ``punch_kind`` is None (outside attendance hours, or a holiday)."""


@dataclass(frozen=True)
class AlreadyRecorded:
    """The answer for a repeat: the same NIP and kind was recorded at ``first`` within the interval."""

    first: datetime

    @property
    def message(self) -> str:
        """The screen text, e.g. ``Sudah tercatat pukul 07:21`` (the first punch's own wall-clock time)."""
        return f"Sudah tercatat pukul {self.first:%H:%M}"


class RepeatGuard:
    """Remembers recorded punches for ``interval`` so that a repeat gets 'already recorded', not a new event.

    Only the same NIP with the same kind within the interval after the first punch is a repeat. Memory is
    bounded: entries older than the interval are forgotten as time moves on, and at most ``max_entries`` are
    kept (the oldest go first). No clock is read: every call passes the punch's time (aware datetimes).
    """

    def __init__(self, interval: timedelta, *, max_entries: int = 100_000) -> None:
        if interval < timedelta(0):
            raise ValueError("the repeat interval must not be negative")
        self.interval = interval
        self.max_entries = max_entries
        self._first: OrderedDict[tuple[str, str], datetime] = OrderedDict()

    @classmethod
    def from_config(cls, events: EventsConfig) -> RepeatGuard:
        """A guard with ``events.repeat_interval_min``."""
        return cls(timedelta(minutes=events.repeat_interval_min))

    def __len__(self) -> int:
        return len(self._first)

    def check(self, nip: str, kind: str, at: datetime) -> AlreadyRecorded | None:
        """None for a new punch; AlreadyRecorded(first) when the same NIP and kind was recorded within the
        interval before ``at``. A time before the remembered punch (a clock stepped back) is a new punch."""
        _require_aware(at)
        self._forget(at)
        first = self._first.get((nip, kind))
        if first is not None and first <= at < first + self.interval:
            return AlreadyRecorded(first)
        return None

    def remember(self, nip: str, kind: str, at: datetime) -> None:
        """Record that a punch of ``kind`` by ``nip`` was stored at ``at`` (keeps an earlier one still in force)."""
        _require_aware(at)
        self._forget(at)
        key = (nip, kind)
        first = self._first.get(key)
        if first is not None and first <= at < first + self.interval:
            return
        self._first.pop(key, None)
        if self.interval > timedelta(0):
            self._first[key] = at
        while len(self._first) > self.max_entries:
            self._first.popitem(last=False)

    def _forget(self, now: datetime) -> None:
        """Drop entries whose interval ended by ``now`` (kept in insertion order, which is time order)."""
        while self._first:
            key, first = next(iter(self._first.items()))
            if first + self.interval > now:
                break
            del self._first[key]


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("RepeatGuard needs aware datetimes")
