"""install_schedule: an office's punch schedule as a signed, targeted, versioned, expiring command; built, parsed and
checked like install_gallery; a bad schedule is refused with the fields named, by the schema and by the schedule's own
rules (the kiosk.toml rules); the status event carries the optional schedule_version."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from referencing import Registry, Resource

from kiosk_contract import schema, signing
from kiosk_contract.commands import (
    CHANGING,
    CommandRefused,
    Target,
    build_command,
    check_command,
    parse_command,
    schedule_command_fields,
    schedule_of_command,
)
from kiosk_contract.jsonbound import nesting_depth
from kiosk_contract.schedule import (
    PunchWindow,
    RamadanPeriod,
    ScheduleConfig,
    ScheduleError,
    punch_kind,
    schedule_from_data,
    schedule_to_data,
    schedule_version_of,
)
from kiosk_contract.validation import SCHEMA_NAMES, problems
from kiosk_contract.validation import schema as schema_of

KEY = Ed25519PrivateKey.generate()
KEYS = {signing.key_id_of(KEY): KEY.public_key()}
OTHER = Ed25519PrivateKey.generate()
TZ = "Asia/Makassar"
NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
SCHEDULE = ScheduleConfig(
    windows=(PunchWindow(("mon", "tue", "wed", "thu"), "masuk", time(5, 0), time(11, 44)),
             PunchWindow(("mon", "tue", "wed", "thu"), "pulang", time(11, 45), time(23, 0)),
             PunchWindow(("fri",), "masuk", time(4, 30), time(10, 29)),
             PunchWindow(("fri",), "pulang", time(10, 30), time(23, 0))),
    ramadan=(RamadanPeriod(date(2026, 2, 19), date(2026, 3, 20)),),
    ramadan_windows=(PunchWindow(("mon", "tue", "wed", "thu", "fri"), "masuk", time(5, 0), time(11, 29)),
                     PunchWindow(("mon", "tue", "wed", "thu", "fri"), "pulang", time(11, 30), time(23, 0))),
    holidays=(date(2026, 3, 18), date(2026, 3, 19)),
)


def command(schedule: ScheduleConfig = SCHEDULE, version: int = 7, key: Ed25519PrivateKey = KEY,
            **over: Any) -> dict[str, Any]:
    data = schedule_to_data(schedule)
    fields = schedule_command_fields(schedule, timezone=TZ, schedule_version=schedule_version_of(data, TZ))
    return build_command("install_schedule", key=key, target=Target("bkpsdm", "kiosk-1"), version=version, now=NOW,
                         **{**fields, **over})


def test_a_schedule_round_trips_through_its_json_shape() -> None:
    data = schedule_to_data(SCHEDULE)
    assert data["windows"][0] == {"days": ["mon", "tue", "wed", "thu"], "kind": "masuk", "start": "05:00",
                                  "end": "11:44"}
    assert data["ramadan"] == [{"start": "2026-02-19", "end": "2026-03-20"}]
    assert data["holidays"] == ["2026-03-18", "2026-03-19"]
    assert schedule_from_data(data) == SCHEDULE
    assert schedule_from_data(schedule_to_data(ScheduleConfig())) == ScheduleConfig()
    version = schedule_version_of(data, TZ)
    assert len(version) == 16 and version == schedule_version_of(copy.deepcopy(data), TZ)
    assert version != schedule_version_of({**data, "holidays": ["2026-03-18"]}, TZ), "a holiday less: another"
    assert version != schedule_version_of(data, "Asia/Jakarta"), "another zone: another schedule"


def test_install_schedule_is_built_parsed_and_checked_like_every_changing_command() -> None:
    assert "install_schedule" in CHANGING
    cmd = command()
    assert cmd["cmd"] == "install_schedule" and cmd["target"] == {"office": "bkpsdm", "device": "kiosk-1"}
    assert (cmd["version"], cmd["timezone"], cmd["schedule_version"]) == (7, TZ, schedule_version_of(
        schedule_to_data(SCHEDULE), TZ))
    assert nesting_depth(cmd) <= 4, "an older kiosk answers unknown_command, not malformed (too deep)"
    parsed = parse_command(signing.wire(cmd))
    check_command(parsed, KEYS, device="kiosk-1", office="bkpsdm", applied=6, now=NOW + timedelta(days=1))
    assert schedule_of_command(parsed, timezone=TZ) == SCHEDULE
    refusals = {
        "replay": dict(applied=7, now=NOW),
        "older_version": dict(applied=9, now=NOW),
        "expired": dict(applied=6, now=NOW + timedelta(days=31)),
    }
    for reason, kw in refusals.items():
        with pytest.raises(CommandRefused) as refused:
            check_command(parsed, KEYS, device="kiosk-1", office="bkpsdm", **kw)  # type: ignore[arg-type]
        assert refused.value.reason == reason
    with pytest.raises(CommandRefused) as refused:
        check_command(parsed, KEYS, device="kiosk-1", office="dinkes", applied=0, now=NOW)
    assert refused.value.reason == "wrong_office"
    with pytest.raises(CommandRefused) as refused:
        check_command(command(key=OTHER), KEYS, device="kiosk-1", office="bkpsdm", applied=0, now=NOW)
    assert refused.value.reason == "bad_signature"
    changed = {**cmd, "holidays": []}  # a holiday removed after signing
    with pytest.raises(CommandRefused) as refused:
        check_command(changed, KEYS, device="kiosk-1", office="bkpsdm", applied=0, now=NOW)
    assert refused.value.reason == "bad_signature"
    unsigned = {k: v for k, v in cmd.items() if k != "sig"}
    with pytest.raises(CommandRefused) as refused:
        parse_command(signing.wire(unsigned))
    assert refused.value.reason == "unsigned"
    with pytest.raises(ValueError, match="needs the central key"):
        build_command("install_schedule", **schedule_command_fields(SCHEDULE, timezone=TZ, schedule_version="x"))


@pytest.mark.parametrize(("change", "expected"), [
    ({"windows": []}, "$.windows: must have at least 1 item"),
    ({"windows": [{"days": ["mon"], "kind": "masuk", "start": "7:30", "end": "10:00"}]},
     "$.windows[0].start: '7:30' is not a local time on a whole minute, like 07:30"),
    ({"windows": [{"days": ["senin"], "kind": "masuk", "start": "07:30", "end": "10:00"}]}, "$.windows[0].days[0]"),
    ({"windows": [{"days": ["mon"], "kind": "makan", "start": "07:30", "end": "10:00"}]}, "$.windows[0].kind"),
    ({"windows": [{"days": ["mon"], "kind": "masuk", "start": "07:30"}]}, "$.windows[0].end: missing"),
    ({"holidays": ["18-03-2026"]}, "$.holidays[0]: '18-03-2026' is not a local date, like 2026-03-18"),
    ({"ramadan": [{"start": "2026-02-19"}]}, "$.ramadan[0].end: missing"),
    ({"schedule_version": "has space"}, "$.schedule_version"),
    ({"timezone": None}, "$.timezone"),
    ({"shifts": []}, "$.shifts"),
])
def test_bad_shapes_are_refused_by_the_schema_naming_the_field(change: dict[str, Any], expected: str) -> None:
    found = problems("command", {**command(), **change})
    assert found and any(expected in p for p in found), found
    with pytest.raises(CommandRefused) as refused:
        parse_command(signing.wire({**command(), **change}))
    assert refused.value.reason == "malformed" and expected in str(refused.value)


def test_missing_schedule_fields_are_named() -> None:
    cmd = command()
    del cmd["ramadan_windows"]
    assert any("ramadan_windows" in p for p in problems("command", cmd))


@pytest.mark.parametrize(("change", "expected"), [
    ({"windows": [{"days": ["mon"], "kind": "masuk", "start": "12:00", "end": "11:00"}]},
     "schedule.windows[0].start: must be before schedule.windows[0].end (12:00 >= 11:00)"),
    ({"windows": [{"days": ["mon", "fri"], "kind": "masuk", "start": "05:00", "end": "11:00"},
                  {"days": ["fri"], "kind": "pulang", "start": "11:00", "end": "23:00"}]},
     "schedule.windows[1]: overlaps schedule.windows[0] on fri"),
    ({"ramadan_windows": [{"days": ["mon"], "kind": "masuk", "start": "05:00", "end": "11:00"},
                          {"days": ["mon"], "kind": "pulang", "start": "10:00", "end": "23:00"}]},
     "schedule.ramadan_windows[1]: overlaps schedule.ramadan_windows[0] on mon"),
    ({"ramadan": [{"start": "2026-03-20", "end": "2026-02-19"}]},
     "schedule.ramadan[0].start: must be on or before schedule.ramadan[0].end"),
    ({"holidays": ["2026-02-30"]}, "schedule.holidays[0]: must be a date like \"2026-03-18\", got '2026-02-30'"),
    ({"ramadan": [{"start": "2026-13-01", "end": "2026-12-01"}]}, "schedule.ramadan[0].start: must be a date"),
    ({"holidays": ["2026-03-18", "2026-03-18"]}, "$.holidays"),  # uniqueItems: the schema catches it first
])
def test_a_schedule_that_breaks_the_rules_of_kiosk_toml_is_refused_as_invalid(change: dict[str, Any],
                                                                             expected: str) -> None:
    cmd = command(**change) if "$." not in expected else None
    if cmd is None:
        assert any(expected in p for p in problems("command", {**command(), **change}))
        return
    with pytest.raises(CommandRefused) as refused:
        schedule_of_command(parse_command(signing.wire(cmd)), timezone=TZ)
    assert refused.value.reason == "invalid" and expected in str(refused.value), str(refused.value)
    assert refused.value.cmd == "install_schedule" and refused.value.request_id == cmd["request_id"]


def test_a_schedule_in_another_time_zone_is_refused() -> None:
    with pytest.raises(CommandRefused, match="'Asia/Makassar' wall-clock time, this kiosk runs in 'Asia/Jakarta'"):
        schedule_of_command(command(), timezone="Asia/Jakarta")


def test_schedule_from_data_names_missing_and_unknown_keys() -> None:
    data: dict[str, Any] = schedule_to_data(SCHEDULE)
    del data["holidays"]
    data["shifts"] = []
    with pytest.raises(ScheduleError) as bad:
        schedule_from_data(data)
    assert any(p.startswith("schedule.holidays: required key missing") for p in bad.value.problems)
    data["holidays"] = []
    with pytest.raises(ScheduleError, match=r"schedule\.shifts: unknown key"):
        schedule_from_data(data)
    with pytest.raises(ScheduleError, match=r"schedule\.windows: must have at least one window"):
        schedule_from_data({**schedule_to_data(SCHEDULE), "windows": []})


def test_the_pushed_schedule_classifies_like_the_toml_one() -> None:
    pushed = schedule_of_command(parse_command(signing.wire(command())), timezone=TZ)
    from zoneinfo import ZoneInfo
    wita = ZoneInfo(TZ)
    assert punch_kind(pushed, datetime(2026, 1, 9, 10, 30, tzinfo=wita)) == "pulang"  # Friday split 10:30
    assert punch_kind(pushed, datetime(2026, 3, 5, 11, 0, tzinfo=wita)) == "masuk"  # Ramadan
    assert punch_kind(pushed, datetime(2026, 3, 18, 8, 0, tzinfo=wita)) is None  # holiday


def test_the_status_event_carries_the_schedule_version_only_when_one_was_pushed() -> None:
    stamp = schema.Stamp(device="kiosk-1", boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c", mono_ns=1, utc=NOW, tz=TZ,
                         clock=schema.ClockInfo(True, "ntp", True))
    base = dict(fps=10.0, outbox_depth=0, oldest_pending_age_s=None, gallery_version="3", cpu_temp_c=None,
                free_disk_bytes=1)
    assert "schedule_version" not in schema.build_status(stamp, **base)  # type: ignore[arg-type]
    body = schema.build_status(stamp, **base, schedule_version="bde21f63950409ca")  # type: ignore[arg-type]
    assert body["schedule_version"] == "bde21f63950409ca" and schema.validate(body, complete=False) == []
    with pytest.raises(ValueError, match="schedule_version"):
        schema.build_status(stamp, **base, schedule_version="not a version")  # type: ignore[arg-type]


def test_the_interpreter_and_the_reference_validator_agree_on_install_schedule() -> None:
    registry = Registry().with_resources(
        (schema_of(n)["$id"], Resource.from_contents(schema_of(n))) for n in SCHEMA_NAMES)
    reference = jsonschema.Draft202012Validator(schema_of("command"), registry=registry)
    cmd = command()
    cases = [cmd, {**cmd, "windows": []}, {**cmd, "holidays": ["x"]}, {**cmd, "timezone": 3},
             {**cmd, "ramadan": [{"start": "2026-02-19", "end": "2026-03-20", "x": 1}]},
             {k: v for k, v in cmd.items() if k != "schedule_version"},
             {**cmd, "windows": [{**cmd["windows"][0], "days": []}]},
             {**cmd, "windows": [{**cmd["windows"][0], "days": ["mon", "mon"]}]},
             {**cmd, "cmd": "install_gallery"}]
    for case in cases:
        assert (problems("command", case) == []) == reference.is_valid(case), case
    result = {"request_id": "r", "ok": True, "cmd": "install_schedule", "queued": True, "version": 3,
              "schedule_version": None}
    assert problems("command-result", result) == []
