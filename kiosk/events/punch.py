"""Punch classification: which kind a punch is at a local time, and whether it repeats a recorded one.

Pure functions and a pure state object: no I/O and no clock reads; every time is a parameter. The device only
classifies a punch (masuk, pulang, ...) by the configured windows; lateness and early leave (TL/PSW bands) are
decided centrally from the office's start and end times (see docs/schedule.md).
"""

from __future__ import annotations

import zoneinfo
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiosk.config import DAYS, EventsConfig, PunchWindow, ScheduleConfig

OUTSIDE_HOURS = "Di luar jam presensi"
"""What the screen says when ``punch_kind`` is None (outside attendance hours, or a holiday)."""


def local_time(utc: datetime, tz: str) -> datetime:
    """The aware instant ``utc`` as wall-clock time in IANA zone ``tz`` (``Asia/Makassar`` for WITA)."""
    if utc.tzinfo is None or utc.utcoffset() is None:
        raise ValueError("local_time needs an aware datetime (a naive one could be any zone's)")
    return utc.astimezone(zoneinfo.ZoneInfo(tz))


def is_ramadan(schedule: ScheduleConfig, local: datetime) -> bool:
    """Whether the local date falls in one of the Ramadan ranges (both ends inclusive)."""
    day = local.date()
    return any(r.start <= day <= r.end for r in schedule.ramadan)


def windows_for(schedule: ScheduleConfig, local: datetime) -> tuple[PunchWindow, ...]:
    """The windows in force on the local date: ``ramadan_windows`` on a Ramadan day when there are any."""
    if schedule.ramadan_windows and is_ramadan(schedule, local):
        return schedule.ramadan_windows
    return schedule.windows


def punch_kind(schedule: ScheduleConfig, local: datetime) -> str | None:
    """The punch kind at ``local`` (aware, in the site zone), or None on a holiday or outside every window.

    The time is taken to the minute, as the screen shows it: with a window ending 10:59 and the next starting
    11:00, 10:59:59 is still the first window.
    """
    if local.tzinfo is None or local.utcoffset() is None:
        raise ValueError("punch_kind needs an aware local datetime in the site's time zone")
    if local.date() in schedule.holidays:
        return None
    day = DAYS[local.weekday()]
    minute = local.time().replace(second=0, microsecond=0, tzinfo=None)
    for w in windows_for(schedule, local):
        if day in w.days and w.start <= minute <= w.end:
            return w.kind
    return None


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
