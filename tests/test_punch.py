"""Punch kinds by schedule (local day and minute, holidays, Ramadan), local time, repeat guard, schedule config."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kiosk.config import EventsConfig, KioskConfig, ScheduleConfig, config_to_toml, load_config, parse_config
from kiosk.errors import ConfigError
from kiosk.events.punch import AlreadyRecorded, RepeatGuard
from kiosk_contract.schedule import PunchWindow, RamadanPeriod, local_time, punch_kind

WITA = ZoneInfo("Asia/Makassar")
MON_THU = ("mon", "tue", "wed", "thu")


def at(day: str, hhmm: str, tz: ZoneInfo = WITA) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=tz)


def window(days: tuple[str, ...], kind: str, start: str, end: str) -> PunchWindow:
    return PunchWindow(days=days, kind=kind, start=time.fromisoformat(start), end=time.fromisoformat(end))  # type: ignore[arg-type]


def schedule_from_toml(text: str) -> ScheduleConfig:
    return parse_config({"camera": {"source": "v4l2"}, **tomllib.loads(text)}, "<test>").schedule


def schedule_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        schedule_from_toml(text)
    return info.value.problems


DEFAULT = ScheduleConfig()


# --- punch_kind -------------------------------------------------------------------------------------------


def test_default_windows_classify_a_weekday() -> None:
    assert punch_kind(DEFAULT, at("2026-01-05", "07:29")) == "masuk"  # Monday
    assert punch_kind(DEFAULT, at("2026-01-05", "05:00")) == "masuk"
    assert punch_kind(DEFAULT, at("2026-01-05", "04:59:59")) is None
    assert punch_kind(DEFAULT, at("2026-01-05", "10:59:59")) == "masuk"  # the minute the screen shows
    assert punch_kind(DEFAULT, at("2026-01-05", "11:00")) == "pulang"
    assert punch_kind(DEFAULT, at("2026-01-05", "16:05")) == "pulang"
    assert punch_kind(DEFAULT, at("2026-01-05", "23:00:59")) == "pulang"
    assert punch_kind(DEFAULT, at("2026-01-05", "23:01")) is None


def test_default_friday_and_weekend() -> None:
    assert punch_kind(DEFAULT, at("2026-01-09", "06:10")) == "masuk"  # Friday
    assert punch_kind(DEFAULT, at("2026-01-09", "15:00")) == "pulang"
    assert punch_kind(DEFAULT, at("2026-01-10", "07:29")) is None  # Saturday
    assert punch_kind(DEFAULT, at("2026-01-04", "07:29")) is None  # Sunday


def test_friday_with_its_own_windows() -> None:
    schedule = ScheduleConfig(windows=(
        window(MON_THU, "masuk", "05:00", "10:59"),
        window(MON_THU, "pulang", "11:00", "23:00"),
        window(("fri",), "masuk", "05:00", "09:59"),
        window(("fri",), "pulang", "10:00", "23:00"),
    ))
    assert punch_kind(schedule, at("2026-01-08", "10:30")) == "masuk"  # Thursday
    assert punch_kind(schedule, at("2026-01-09", "10:30")) == "pulang"  # Friday
    assert punch_kind(schedule, at("2026-01-09", "06:00")) == "masuk"


def test_holiday_has_no_punch() -> None:
    schedule = ScheduleConfig(holidays=(date(2026, 1, 16), date(2026, 3, 18)))
    assert punch_kind(schedule, at("2026-01-16", "07:29")) is None  # a Friday holiday
    assert punch_kind(schedule, at("2026-03-18", "16:00")) is None
    assert punch_kind(schedule, at("2026-01-15", "07:29")) == "masuk"  # the day before is a working day


def test_ramadan_range_uses_ramadan_windows_inclusive() -> None:
    schedule = ScheduleConfig(
        ramadan=(RamadanPeriod(start=date(2026, 2, 19), end=date(2026, 3, 19)),),
        ramadan_windows=(
            window((*MON_THU, "fri"), "masuk", "05:00", "11:59"),
            window((*MON_THU, "fri"), "pulang", "12:00", "23:00"),
        ),
    )
    assert punch_kind(schedule, at("2026-02-18", "11:30")) == "pulang"  # day before: normal windows
    assert punch_kind(schedule, at("2026-02-19", "11:30")) == "masuk"  # first day, inclusive
    assert punch_kind(schedule, at("2026-03-02", "11:30")) == "masuk"
    assert punch_kind(schedule, at("2026-03-19", "11:30")) == "masuk"  # last day, inclusive
    assert punch_kind(schedule, at("2026-03-20", "11:30")) == "pulang"  # after: normal windows
    assert punch_kind(schedule, at("2026-02-21", "08:00")) is None  # Saturday in Ramadan


def test_ramadan_without_ramadan_windows_keeps_the_normal_windows() -> None:
    schedule = ScheduleConfig(ramadan=(RamadanPeriod(start=date(2026, 2, 19), end=date(2026, 3, 19)),))
    assert punch_kind(schedule, at("2026-03-02", "11:30")) == "pulang"
    assert punch_kind(schedule, at("2026-03-02", "08:00")) == "masuk"


def test_other_punch_kinds() -> None:
    schedule = ScheduleConfig(windows=(
        window(("sat",), "lembur_masuk", "07:00", "09:00"),
        window(("sat",), "lembur_pulang", "12:00", "18:00"),
        window(("mon",), "istirahat_keluar", "12:00", "12:30"),
        window(("mon",), "istirahat_masuk", "12:31", "13:30"),
    ))
    assert punch_kind(schedule, at("2026-01-10", "08:00")) == "lembur_masuk"
    assert punch_kind(schedule, at("2026-01-10", "17:00")) == "lembur_pulang"
    assert punch_kind(schedule, at("2026-01-05", "12:30:59")) == "istirahat_keluar"
    assert punch_kind(schedule, at("2026-01-05", "12:31")) == "istirahat_masuk"


def test_punch_kind_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        punch_kind(DEFAULT, datetime(2026, 1, 5, 7, 29))


# --- local_time -------------------------------------------------------------------------------------------


def test_utc_evening_is_the_next_local_morning() -> None:
    utc = datetime(2026, 1, 4, 23, 30, tzinfo=UTC)  # Sunday 23:30 UTC
    local = local_time(utc, "Asia/Makassar")
    assert (local.date(), local.strftime("%a %H:%M")) == (date(2026, 1, 5), "Mon 07:30")
    assert local.utcoffset() == timedelta(hours=8)
    assert local == utc
    assert punch_kind(DEFAULT, local) == "masuk"
    assert punch_kind(DEFAULT, utc) is None  # a UTC Sunday would be wrong: classify in the site's zone
    friday_night = local_time(datetime(2026, 1, 9, 23, 30, tzinfo=UTC), "Asia/Makassar")
    assert friday_night.strftime("%a %H:%M") == "Sat 07:30"
    assert punch_kind(DEFAULT, friday_night) is None


def test_local_time_in_other_zones_and_naive_refused() -> None:
    utc = datetime(2026, 1, 5, 0, 29, tzinfo=UTC)
    assert local_time(utc, "Asia/Jakarta").strftime("%H:%M") == "07:29"
    assert local_time(utc, "Asia/Jayapura").strftime("%H:%M") == "09:29"
    with pytest.raises(ValueError, match="aware"):
        local_time(datetime(2026, 1, 5, 0, 29), "Asia/Makassar")


# --- RepeatGuard ------------------------------------------------------------------------------------------


def test_repeat_within_interval_names_the_first_punch() -> None:
    guard = RepeatGuard.from_config(EventsConfig(repeat_interval_min=10))
    first = at("2026-01-05", "07:21:40")
    assert guard.check("198501012010011001", "masuk", first) is None
    guard.remember("198501012010011001", "masuk", first)
    answer = guard.check("198501012010011001", "masuk", at("2026-01-05", "07:29"))
    assert answer == AlreadyRecorded(first)
    assert answer is not None and answer.message == "Sudah tercatat pukul 07:21"
    # a repeat is not remembered as a new first punch: still the first one's time
    assert guard.check("198501012010011001", "masuk", at("2026-01-05", "07:31:39")) == AlreadyRecorded(first)


def test_after_the_interval_is_a_new_punch() -> None:
    guard = RepeatGuard(timedelta(minutes=10))
    guard.remember("A", "masuk", at("2026-01-05", "07:21"))
    assert guard.check("A", "masuk", at("2026-01-05", "07:31")) is None  # exactly the interval later
    guard.remember("A", "masuk", at("2026-01-05", "07:31"))
    assert guard.check("A", "masuk", at("2026-01-05", "07:35")) == AlreadyRecorded(at("2026-01-05", "07:31"))


def test_other_kind_or_other_person_is_new() -> None:
    guard = RepeatGuard(timedelta(minutes=10))
    guard.remember("A", "masuk", at("2026-01-05", "10:55"))
    assert guard.check("A", "pulang", at("2026-01-05", "11:01")) is None
    assert guard.check("B", "masuk", at("2026-01-05", "10:56")) is None


def test_clock_stepped_back_is_a_new_punch() -> None:
    guard = RepeatGuard(timedelta(minutes=10))
    guard.remember("A", "masuk", at("2026-01-05", "07:21"))
    assert guard.check("A", "masuk", at("2026-01-05", "07:16")) is None


def test_zero_interval_never_repeats() -> None:
    guard = RepeatGuard.from_config(EventsConfig(repeat_interval_min=0))
    guard.remember("A", "masuk", at("2026-01-05", "07:21"))
    assert guard.check("A", "masuk", at("2026-01-05", "07:21")) is None
    assert len(guard) == 0


def test_memory_is_bounded() -> None:
    guard = RepeatGuard(timedelta(minutes=10))
    start = at("2026-01-05", "06:00")
    for i in range(1000):
        when = start + timedelta(seconds=30 * i)
        assert guard.check(f"nip{i}", "masuk", when) is None
        guard.remember(f"nip{i}", "masuk", when)
        assert len(guard) <= 20  # ten minutes of one punch every 30 s
    capped = RepeatGuard(timedelta(hours=12), max_entries=5)
    for i in range(50):
        capped.remember(f"nip{i}", "masuk", start + timedelta(seconds=i))
    assert len(capped) == 5
    assert capped.check("nip49", "masuk", start + timedelta(minutes=1)) is not None


def test_guard_refuses_naive_times() -> None:
    guard = RepeatGuard(timedelta(minutes=10))
    with pytest.raises(ValueError, match="aware"):
        guard.check("A", "masuk", datetime(2026, 1, 5, 7, 21))


# --- Schedule configuration -------------------------------------------------------------------------------


def test_default_schedule() -> None:
    days = ("mon", "tue", "wed", "thu", "fri")
    assert KioskConfig().schedule.windows == (
        window(days, "masuk", "05:00", "10:59"),
        window(days, "pulang", "11:00", "23:00"),
    )
    assert (DEFAULT.ramadan, DEFAULT.ramadan_windows, DEFAULT.holidays) == ((), (), ())


REGENCY = """
[device]
timezone = "Asia/Makassar"
[schedule]
holidays = [2026-03-18, 2026-03-19, 2026-03-20, 2026-03-23, 2026-03-24]
[[schedule.windows]]
days = ["mon", "tue", "wed", "thu"]
kind = "masuk"
start = "05:00"
end = 10:59:00
[[schedule.windows]]
days = ["mon", "tue", "wed", "thu"]
kind = "pulang"
start = 11:00:00
end = 23:00:00
[[schedule.windows]]
days = ["fri"]
kind = "masuk"
start = 05:00:00
end = 09:59:00
[[schedule.windows]]
days = ["fri"]
kind = "pulang"
start = 10:00:00
end = 23:00:00
[[schedule.ramadan]]
start = 2026-02-19
end = 2026-03-19
[[schedule.ramadan_windows]]
days = ["mon", "tue", "wed", "thu", "fri"]
kind = "masuk"
start = 05:00:00
end = 11:29:00
[[schedule.ramadan_windows]]
days = ["mon", "tue", "wed", "thu", "fri"]
kind = "pulang"
start = 11:30:00
end = 23:00:00
"""


def test_schedule_loads_from_toml_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[camera]\nsource = "v4l2"\n' + REGENCY, encoding="utf-8")
    cfg = load_config(path)
    schedule = cfg.schedule
    assert schedule.windows[0] == window(MON_THU, "masuk", "05:00", "10:59")  # "05:00" string accepted
    assert schedule.ramadan == (RamadanPeriod(start=date(2026, 2, 19), end=date(2026, 3, 19)),)
    assert len(schedule.ramadan_windows) == 2
    assert schedule.holidays[0] == date(2026, 3, 18)
    text = config_to_toml(cfg)
    assert "\n[[schedule.windows]]\n# Days of the week" in text
    assert "start = 2026-02-19\n# Last day of Ramadan hours (inclusive).\nend = 2026-03-19\n" in text
    assert 'days = ["fri"]\nkind = "masuk"\nstart = 05:00:00\nend = 09:59:00\n' in text
    assert "holidays = [2026-03-18, 2026-03-19, 2026-03-20, 2026-03-23, 2026-03-24]\n" in text
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == cfg
    # and the loaded schedule classifies: Friday 10:30 in Ramadan is still masuk, after it pulang
    assert punch_kind(schedule, at("2026-03-13", "10:30")) == "masuk"
    assert punch_kind(schedule, at("2026-01-09", "10:30")) == "pulang"
    assert punch_kind(schedule, at("2026-03-19", "08:00")) is None  # holiday inside Ramadan


def test_window_errors_have_element_paths() -> None:
    assert schedule_problems("""
[[schedule.windows]]
days = ["mon", "tues"]
kind = "masuk"
start = 07:00:00
end = 10:00:00
[[schedule.windows]]
days = "sat"
kind = "lembur"
start = 7
[[schedule.windows]]
days = []
kind = "pulang"
start = "7:30"
end = 2026-01-05T16:00:00
""") == [
        'schedule.windows[0].days[1]: must be one of "mon", "tue", "wed", "thu", "fri", "sat", "sun", '
        'got string "tues" (did you mean "tue"?)',
        'schedule.windows[1].days: must be an array, got string "sat"',
        'schedule.windows[1].kind: must be one of "masuk", "pulang", "istirahat_keluar", "istirahat_masuk", '
        '"lembur_masuk", "lembur_pulang", got string "lembur" (did you mean "lembur_masuk"?)',
        'schedule.windows[1].start: must be a local time (07:30:00, or the string "07:30"), got integer 7',
        "schedule.windows[1].end: required key missing; each entry needs days, kind, start, end",
        "schedule.windows[2].days: must have at least 1 item(s), got 0",
        'schedule.windows[2].start: must be a local time (07:30:00, or the string "07:30"), got string "7:30"',
        'schedule.windows[2].end: must be a local time (07:30:00, or the string "07:30"), '
        "got date-time 2026-01-05T16:00:00",
    ]


def test_window_cross_field_errors() -> None:
    assert schedule_problems("""
[schedule]
windows = [
  {days = ["mon", "tue"], kind = "masuk", start = 07:00:00, end = 10:00:00},
  {days = ["tue", "fri"], kind = "pulang", start = 09:30:00, end = 16:00:00},
  {days = ["sat"], kind = "lembur_masuk", start = 16:00:00, end = 15:00:00},
  {days = ["sat"], kind = "lembur_pulang", start = 17:00:00, end = 17:00:00},
  {days = ["sun"], kind = "masuk", start = 07:00:10, end = 08:00:00},
  {days = ["mon"], kind = "pulang", start = 10:00:00, end = 16:00:00},
]
ramadan = [{start = 2026-03-19, end = 2026-02-19}]
[[schedule.ramadan_windows]]
days = ["wed"]
kind = "masuk"
start = 05:00:00
end = 11:00:00
[[schedule.ramadan_windows]]
days = ["wed"]
kind = "pulang"
start = 10:00:00
end = 23:00:00
""") == [
        "schedule.windows[2].start: must be before schedule.windows[2].end (16:00 >= 15:00); "
        "a window cannot cross midnight",
        "schedule.windows[3].start: must be before schedule.windows[3].end (17:00 >= 17:00); "
        "a window cannot cross midnight",
        "schedule.windows[4].start: must be a whole minute (HH:MM), got 07:00:10",
        "schedule.windows[1]: overlaps schedule.windows[0] on tue (09:30-16:00 pulang and 07:00-10:00 masuk); "
        "windows of the same day must not overlap",
        "schedule.windows[5]: overlaps schedule.windows[0] on mon (10:00-16:00 pulang and 07:00-10:00 masuk); "
        "windows of the same day must not overlap (both ends are inclusive: start the later window a minute after)",
        "schedule.ramadan_windows[1]: overlaps schedule.ramadan_windows[0] on wed "
        "(10:00-23:00 pulang and 05:00-11:00 masuk); windows of the same day must not overlap",
        "schedule.ramadan[0].start: must be on or before schedule.ramadan[0].end (2026-03-19 > 2026-02-19)",
    ]


def test_holiday_and_ramadan_type_errors() -> None:
    assert schedule_problems("""
[schedule]
holidays = [2026-03-20, "2026-03-21", 2026-03-22T00:00:00, 7]
ramadan = [{start = 2026-02-19}, 3, {start = 2026-02-19, end = 2026-03-19, windows = []}]
ramadan_windows = {days = ["mon"]}
""") == [
        'schedule.holidays[1]: must be a local date (2026-03-01), got string "2026-03-21"',
        "schedule.holidays[2]: must be a local date (2026-03-01), got date-time 2026-03-22T00:00:00",
        "schedule.holidays[3]: must be a local date (2026-03-01), got integer 7",
        "schedule.ramadan[0].end: required key missing; each entry needs start, end",
        "schedule.ramadan[1]: must be a table, got integer 3",
        "schedule.ramadan[2].windows: unknown key; each [[schedule.ramadan]] entry allows: start, end",
        "schedule.ramadan_windows: must be an array, got a table",
    ]


def test_a_bad_window_leaves_the_default_schedule_unused() -> None:
    """A schedule with a problem never half-applies: the whole file is refused."""
    with pytest.raises(ConfigError, match=r"^<test>: 1 problem"):
        schedule_from_toml('[[schedule.windows]]\ndays = ["mon"]\nkind = "masuk"\nstart = 07:00:00\n')


def test_docs_example_loads_and_behaves_as_described() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "schedule.md").read_text("utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", text, re.S)
    cfg = parse_config({"camera": {"source": "v4l2"}, **tomllib.loads(block)}, "docs/schedule.md")
    assert cfg.device.timezone == "Asia/Makassar"
    schedule = cfg.schedule
    assert punch_kind(schedule, at("2026-01-05", "07:29")) == "masuk"
    assert punch_kind(schedule, at("2026-01-09", "10:30")) == "pulang"
    assert punch_kind(schedule, at("2026-03-05", "11:00")) == "masuk"
    assert punch_kind(schedule, at("2026-03-18", "07:29")) is None
    assert punch_kind(schedule, at("2026-01-10", "07:29")) is None
    assert punch_kind(schedule, at("2026-01-11", "07:29")) is None
