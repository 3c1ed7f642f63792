"""The kiosk's punch schedule: which kind a punch is at a local time, on which days, in Ramadan and on holidays.

Pure data and pure functions (no clock reads: every time is a parameter), shared by the device, which classifies a
punch with it, and the central server, which checks and will distribute it (docs/schedule.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Literal

from kiosk_contract.punch import PunchKind
from kiosk_contract.settings import TableParser, opt

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = typing.get_args(Day)
"""Day names in ``datetime.weekday()`` order (Monday first)."""


@dataclass(frozen=True)
class PunchWindow:
    """One punch window: on these days, a punch between start and end (local time, whole minutes) is this kind."""

    days: tuple[Day, ...] = opt(dataclasses.MISSING, "Days of the week the window applies to.", min_items=1)
    kind: PunchKind = opt(dataclasses.MISSING, "Kind of punch recorded in the window.")
    start: time = opt(dataclasses.MISSING, "First minute of the window (local time, inclusive).")
    end: time = opt(dataclasses.MISSING, "Last minute of the window (local time, inclusive); after start.")


@dataclass(frozen=True)
class RamadanPeriod:
    """One Ramadan date range (local dates, both inclusive)."""

    start: date = opt(dataclasses.MISSING, "First day of Ramadan hours.")
    end: date = opt(dataclasses.MISSING, "Last day of Ramadan hours (inclusive).")


_WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri")


@dataclass(frozen=True)
class ScheduleConfig:
    """When a punch is recorded and as what kind, in `device.timezone`; see docs/schedule.md.

    The device only classifies a punch (masuk, pulang, ...); lateness and early leave (TL/PSW bands) are decided
    centrally from the office's start and end times, so the default windows are wide.
    """

    windows: tuple[PunchWindow, ...] = opt(
        (
            PunchWindow(days=_WEEKDAYS, kind="masuk", start=time(5, 0), end=time(10, 59)),
            PunchWindow(days=_WEEKDAYS, kind="pulang", start=time(11, 0), end=time(23, 0)),
        ),
        "Punch windows; windows of the same day must not overlap. Outside every window (and on holidays) "
        "the kiosk records nothing: 'outside attendance hours'.",
    )
    ramadan: tuple[RamadanPeriod, ...] = opt((), "Ramadan date ranges; on these days `ramadan_windows` apply.")
    ramadan_windows: tuple[PunchWindow, ...] = opt(
        (), "Punch windows on Ramadan days (same shape as `windows`); when empty, `windows` apply."
    )
    holidays: tuple[date, ...] = opt((), "Public holidays and cuti bersama (local dates): no punch is recorded then.")


def check_schedule(parser: TableParser, schedule: ScheduleConfig, path: str = "schedule") -> None:
    """Each window on whole minutes with start before end, no two windows of a day overlapping;
    each Ramadan range with start on or before end. Entries that already have problems are skipped."""
    for name in ("windows", "ramadan_windows"):
        at_name = f"{path}.{name}"
        if parser.dirty(at_name):
            continue
        windows: tuple[PunchWindow, ...] = getattr(schedule, name)
        good: list[tuple[int, PunchWindow]] = []
        for i, w in enumerate(windows):
            at = f"{at_name}[{i}]"
            ok = True
            for end in ("start", "end"):
                t: time = getattr(w, end)
                if t.second or t.microsecond:
                    parser.report(f"{at}.{end}", f"must be a whole minute (HH:MM), got {t.isoformat()}")
                    ok = False
            if ok and w.start >= w.end:
                parser.report(
                    f"{at}.start",
                    f"must be before {at}.end ({_hhmm(w.start)} >= {_hhmm(w.end)}); a window cannot cross midnight",
                )
                ok = False
            if ok:
                good.append((i, w))
        for n, (i, a) in enumerate(good):
            for j, b in good[n + 1 :]:
                shared = [d for d in DAYS if d in a.days and d in b.days]
                if shared and a.start <= b.end and b.start <= a.end:
                    touching = a.start == b.end or b.start == a.end
                    hint = " (both ends are inclusive: start the later window a minute after)" if touching else ""
                    parser.report(
                        f"{at_name}[{j}]",
                        f"overlaps {at_name}[{i}] on {', '.join(shared)} "
                        f"({_hhmm(b.start)}-{_hhmm(b.end)} {b.kind} and {_hhmm(a.start)}-{_hhmm(a.end)} "
                        f"{a.kind}); windows of the same day must not overlap{hint}",
                    )
    if not parser.dirty(f"{path}.ramadan"):
        for i, r in enumerate(schedule.ramadan):
            if r.start > r.end:
                at = f"{path}.ramadan[{i}]"
                parser.report(f"{at}.start", f"must be on or before {at}.end ({r.start} > {r.end})")


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M")


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


# ------------------------------------------------------------------------------------- the schedule as JSON data

SCHEDULE_KEYS = ("windows", "ramadan", "ramadan_windows", "holidays")
"""The keys of a schedule as JSON data: :class:`ScheduleConfig`'s fields, all required (an ``install_schedule``
command carries them at its top level; docs/schedule.md, "A pushed schedule")."""


class ScheduleError(ValueError):
    """A schedule as data that is not one: ``problems`` lists each finding as ``"<path>: <what>"``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def schedule_to_data(schedule: ScheduleConfig) -> dict[str, list[Any]]:
    """``schedule`` as JSON data: times ``"HH:MM"``, dates ``"YYYY-MM-DD"``, days and kinds as in kiosk.toml."""

    def windows(ws: tuple[PunchWindow, ...]) -> list[dict[str, Any]]:
        return [{"days": list(w.days), "kind": w.kind, "start": _hhmm(w.start), "end": _hhmm(w.end)} for w in ws]

    return {
        "windows": windows(schedule.windows),
        "ramadan": [{"start": r.start.isoformat(), "end": r.end.isoformat()} for r in schedule.ramadan],
        "ramadan_windows": windows(schedule.ramadan_windows),
        "holidays": [d.isoformat() for d in schedule.holidays],
    }


def schedule_from_data(data: Mapping[str, Any], path: str = "schedule") -> ScheduleConfig:
    """The :class:`ScheduleConfig` of JSON data (:func:`schedule_to_data`'s shape), checked by the same rules as
    kiosk.toml's ``[schedule]`` (:func:`check_schedule`); ScheduleError naming every bad field otherwise, like
    ``schedule.windows[1].start: must be before schedule.windows[1].end (12:00 >= 11:00)``."""
    parser = TableParser(None)
    if not isinstance(data, Mapping):
        raise ScheduleError([f"{path}: must be an object, got {type(data).__name__}"])
    for key in SCHEDULE_KEYS:
        if key not in data:
            parser.report(f"{path}.{key}", "required key missing (a pushed schedule names all of "
                          f"{', '.join(SCHEDULE_KEYS)}; an empty list is allowed but for windows)")
    prepared = {k: v for k, v in data.items() if k in SCHEDULE_KEYS}
    prepared.update({k: v for k, v in data.items() if k not in SCHEDULE_KEYS})  # unknown keys: reported by name
    if isinstance(prepared.get("holidays"), list):
        prepared["holidays"] = [_date(parser, f"{path}.holidays[{i}]", d) for i, d in enumerate(prepared["holidays"])]
    if isinstance(prepared.get("ramadan"), list):
        prepared["ramadan"] = [
            {k: _date(parser, f"{path}.ramadan[{i}].{k}", v) if k in ("start", "end") else v for k, v in r.items()}
            if isinstance(r, dict) else r
            for i, r in enumerate(prepared["ramadan"])
        ]
    if parser.problems:
        raise ScheduleError(parser.problems)
    schedule: ScheduleConfig = parser.table(ScheduleConfig, prepared, path)
    if not parser.problems:
        if not schedule.windows:
            parser.report(f"{path}.windows", "must have at least one window (without any, no punch is recorded)")
        if len(set(schedule.holidays)) != len(schedule.holidays):
            parser.report(f"{path}.holidays", "names a date twice")
        check_schedule(parser, schedule, path)
    if parser.problems:
        raise ScheduleError(parser.problems)
    return schedule


def _date(parser: TableParser, key: str, value: object) -> object:
    """A ``"YYYY-MM-DD"`` string as a date (reported, and left as it is, when it is none)."""
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    parser.report(key, f"must be a date like \"2026-03-18\", got {value!r}")
    return value


def schedule_version_of(data: Mapping[str, Any], timezone: str) -> str:
    """A schedule's version as central names it: the first 16 hex digits of SHA-256 of its canonical JSON (keys
    sorted, no whitespace) with its time zone. The same rules give the same version; any change gives another."""
    text = json.dumps({"timezone": timezone, **{k: data[k] for k in SCHEDULE_KEYS}}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
