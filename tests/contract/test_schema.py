"""The v1 event schema: builders, local time per zone, validation with field paths, JSON wire form."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from kiosk_contract import schema, validation
from kiosk_contract.errors import KioskError
from kiosk_contract.punch import KINDS as PUNCH_KIND_INFO
from kiosk_contract.punch import PUNCH_KINDS
from kiosk_contract.schema import ClockInfo, EventFormatError, Stamp

NIP = "198001012005011001"
BOOT = "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c"
EVENT_ID = "019ad2a4-5b12-7c3d-8e4f-0123456789ab"
T = datetime(2026, 11, 30, 0, 5, 7, 250000, tzinfo=UTC)
SYNCED = ClockInfo(True, "ntp", True)


@dataclass
class FakeDecision:
    best_nip: str | None = NIP
    distance: float = 0.41234
    margin: float | None = 0.12785
    frames_used: int = 3


def stamp(tz: str = "Asia/Makassar", clock: ClockInfo = SYNCED, utc: datetime = T) -> Stamp:
    return Stamp("kab-maros-01", BOOT, 5_025_123_456_789, utc, tz, clock)


def attendance(**kw: Any) -> dict[str, Any]:
    body = schema.build_attendance(
        stamp(**kw), kind="masuk", nip=NIP, decision=schema.face_decision(FakeDecision()), evidence=b"\xff\xd8jpeg"
    )
    return schema.with_seq(body, 7) | {"sig": {"alg": "ed25519", "key_id": "0" * 16, "value": "A" * 86 + "=="}}


def all_types() -> list[dict[str, Any]]:
    st = stamp()
    bodies = [
        schema.build_attendance(st, kind="pulang", nip=NIP, decision=schema.manual_decision("key")),
        schema.build_review(st, reason="unknown_face", decision=schema.face_decision(FakeDecision(margin=None))),
        schema.build_review(
            st, reason="manual_entry", nip=NIP, kind="masuk", decision=schema.manual_decision(), evidence=b"x"
        ),
        schema.build_review(st, reason="suspected_spoof", nip=NIP, decision=schema.face_decision(FakeDecision())),
        schema.build_status(
            st,
            fps=14.96,
            outbox_depth=3,
            oldest_pending_age_s=42,
            gallery_version="2026-11-28.1",
            cpu_temp_c=61.25,
            free_disk_bytes=12_000_000_000,
        ),
        schema.build_status(
            st,
            fps=0,
            outbox_depth=0,
            oldest_pending_age_s=None,
            gallery_version=None,
            cpu_temp_c=None,
            free_disk_bytes=0,
        ),
        schema.build_time_anchor(st),
        schema.build_alarm(st, alarm="outbox_recovered", detail="outbox.db moved aside"),
        schema.build_alarm(st, alarm="outbox_recovered", detail="outbox.db moved aside", lost_seqs=[(5, 7), (9, 9)]),
        schema.build_alarm(st, alarm="outbox_recovered", detail="nothing lost", lost_seqs=[]),
    ]
    sig = {"alg": "ed25519", "key_id": "0123456789abcdef", "value": "A" * 86 + "=="}
    return [schema.with_seq(b, i + 1) | {"sig": sig} for i, b in enumerate(bodies)]


def test_every_type_builds_valid_events_and_round_trips() -> None:
    for event in all_types():
        assert schema.validate(event) == [], event["type"]
        assert schema.from_bytes(schema.to_bytes(event)) == event


@pytest.mark.parametrize(
    ("tz", "local"),
    [
        ("Asia/Makassar", "2026-11-30T08:05:07.250+08:00"),
        ("Asia/Jakarta", "2026-11-30T07:05:07.250+07:00"),
        ("Asia/Jayapura", "2026-11-30T09:05:07.250+09:00"),
    ],
)
def test_local_time_carries_the_site_offset(tz: str, local: str) -> None:
    event = attendance(tz=tz)
    assert event["time_utc"] == "2026-11-30T00:05:07.250Z"
    assert event["time_local"] == local
    assert event["tz"] == tz
    assert schema.validate(event) == []


def test_attendance_fields() -> None:
    event = attendance()
    assert event["v"] == 1 and event["type"] == "attendance" and event["seq"] == 7
    assert event["person"] == {"nip": NIP}
    assert event["decision"] == {
        "method": "face",
        "best_nip": NIP,
        "distance": "0.4123",
        "margin": "0.1278",  # half-even on the decimal written, no float artefacts
        "frames": 3,
        "liveness": None,
    }
    assert event["evidence"] == {"sha256": hashlib.sha256(b"\xff\xd8jpeg").hexdigest(), "bytes": 6}
    assert event["clock"] == {"synced": True, "source": "ntp", "since_boot_synced": True}


def test_punch_kinds_are_one_list_in_code_and_schema() -> None:
    expected = ("masuk", "pulang", "istirahat_keluar", "istirahat_masuk", "lembur_masuk", "lembur_pulang")
    assert expected == PUNCH_KINDS
    event_schema = validation.schema("event")
    assert tuple(event_schema["$defs"]["punch_kind"]["enum"]) == PUNCH_KINDS
    assert tuple(event_schema["$defs"]["optional_punch_kind"]["enum"]) == (*PUNCH_KINDS, None)
    assert all(PUNCH_KIND_INFO[k].meaning for k in PUNCH_KINDS)
    for kind in PUNCH_KINDS:
        event = attendance()
        event["kind"] = kind
        assert schema.validate(event) == []


def test_decimal_strings() -> None:
    assert schema.decimal_str(0.41235, 4) == "0.4124"  # the decimal as written, half-even
    assert schema.decimal_str(0.41245, 4) == "0.4124"
    assert schema.decimal_str(0.5, 0) == "0"  # half-even
    assert schema.decimal_str(1.25, 1) == "1.2"
    assert schema.decimal_str(-0.00001, 4) == "0.0000"
    assert schema.decimal_str(-0.1234, 4) == "-0.1234"
    assert schema.decimal_str(15, 1) == "15.0"
    assert schema.decimal_str(None, 4) is None
    with pytest.raises(ValueError):
        schema.decimal_str(float("nan"), 4)
    with pytest.raises(TypeError):
        schema.decimal_str(True, 4)


def test_event_ids_are_uuid7_and_unique() -> None:
    ids = {schema.new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    fixed = schema.new_event_id(now_ms=0x019AD2A45B12, rand=bytes(range(10)))
    assert fixed == "019ad2a4-5b12-7001-8203-040506070809"
    # same clock reading, different randomness: still distinct (a wrong or stuck clock cannot collide ids)
    assert schema.new_event_id(now_ms=5) != schema.new_event_id(now_ms=5)
    # builders mint a fresh id unless given one
    a = schema.build_time_anchor(stamp())
    b = schema.build_time_anchor(stamp())
    assert a["event_id"] != b["event_id"]
    assert schema.validate(a, complete=False) == []


def test_body_without_seq_and_sig_is_valid_only_as_a_body() -> None:
    body = schema.build_time_anchor(stamp())
    assert "seq" not in body and "sig" not in body
    assert schema.validate(body, complete=False) == []
    assert sorted(schema.validate(body)) == ["$.seq: missing", "$.sig: missing"]


def test_with_seq_checks_and_drops_old_signature() -> None:
    event = attendance()
    again = schema.with_seq(event, 8)
    assert again["seq"] == 8 and "sig" not in again
    for bad in (0, -1, 2**63, True, "7"):
        with pytest.raises(ValueError):
            schema.with_seq(event, bad)  # type: ignore[arg-type]


def test_builders_refuse_invalid_input() -> None:
    with pytest.raises(ValueError, match=r"\$\.kind"):
        schema.build_attendance(stamp(), kind="lunch", nip=NIP, decision=schema.manual_decision())
    with pytest.raises(ValueError, match=r"\$\.person\.nip"):
        schema.build_attendance(stamp(), kind="masuk", nip="12345", decision=schema.manual_decision())
    with pytest.raises(ValueError, match="typed NIP"):
        schema.build_review(stamp(), reason="manual_entry", decision=schema.manual_decision())
    with pytest.raises(ValueError, match="synced"):
        schema.build_time_anchor(stamp(clock=ClockInfo(False, "none", False)))
    with pytest.raises(ValueError, match="aware"):
        schema.build_time_anchor(stamp(utc=datetime(2026, 1, 1)))


def test_unsynced_clock_is_carried() -> None:
    event = attendance(clock=ClockInfo(False, "rtc", False))
    assert event["clock"] == {"synced": False, "source": "rtc", "since_boot_synced": False}
    assert schema.validate(event) == []
    event["clock"]["synced"] = True
    assert schema.validate(event) == ["$.clock.since_boot_synced: must be true when clock.synced is true"]


def test_malformed_event_reports_every_problem_with_its_path() -> None:
    event = attendance()
    event["device"] = "bad device!"
    event["seq"] = 0
    event["mono_ns"] = 1.5
    event["time_utc"] = "2026-11-30 00:05:07"
    event["tz"] = "Asia/Nowhere"
    event["clock"] = {"synced": "yes", "source": "gps"}
    event["person"] = {"nip": 198001012005011001}
    event["decision"]["distance"] = 0.41
    event["decision"]["frames"] = -1
    event["decision"]["liveness"] = 0.9
    event["evidence"] = {"sha256": "XYZ", "bytes": 0}
    event["sig"] = {"alg": "rsa", "key_id": "short", "value": "!!"}
    event["extra"] = 1
    del event["kind"]
    problems = schema.validate(event)
    paths = [p.split(":")[0] for p in problems]
    for path in (
        "$.device",
        "$.seq",
        "$.mono_ns",
        "$.time_utc",
        "$.tz",
        "$.clock.synced",
        "$.clock.source",
        "$.clock.since_boot_synced",
        "$.person.nip",
        "$.decision.distance",
        "$.decision.frames",
        "$.decision.liveness",
        "$.evidence.sha256",
        "$.evidence.bytes",
        "$.sig.alg",
        "$.sig.key_id",
        "$.sig.value",
        "$.extra",
        "$.kind",
    ):
        assert path in paths, (path, problems)
    assert "$.seq: 0 is out of range 1..9223372036854775807" in problems
    assert "$.mono_ns: must be an integer, not a float" in problems
    assert "$.kind: missing" in problems
    assert "$.extra: unknown field for type attendance" in problems
    assert "$.clock.since_boot_synced: missing" in problems


def test_time_consistency_is_checked() -> None:
    event = attendance()
    event["time_local"] = "2026-11-30T08:05:07.250+07:00"  # not the same instant
    assert any(p.startswith("$.time_local: is not the same instant") for p in schema.validate(event))
    event = attendance(tz="Asia/Jakarta")
    event["tz"] = "Asia/Makassar"  # same instant, offset of another zone
    assert schema.validate(event) == ["$.time_local: offset does not match time zone Asia/Makassar"]
    event = attendance()
    event["time_utc"] = "2026-13-30T00:05:07.250Z"
    assert any(p.startswith("$.time_utc:") for p in schema.validate(event))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: e.update(v=2), "$.v: unsupported schema version"),
        (lambda e: e.update(type="coffee"), "$.type: 'coffee' is not one of"),
        (lambda e: e["person"].update(nip=None), "$.person.nip: an attendance needs a NIP"),
        (lambda e: e["decision"].update(method="guess"), "$.decision.method: 'guess' is not one of"),
        (lambda e: e["decision"].update(distance=None), "$.decision.distance: a face decision needs its distance"),
        (lambda e: e["decision"].update(best_nip="199001012015011001"), "$.decision.best_nip: differs"),
        (lambda e: e["decision"].update(margin="0.12"), "$.decision.margin: '0.12' is not a decimal string with 4"),
        (lambda e: e.update(event_id="not-a-uuid"), "$.event_id: 'not-a-uuid' is not a lowercase UUIDv7"),
        (lambda e: e.update(boot_id="x"), "$.boot_id:"),
        (lambda e: e.update(evidence="abc"), "$.evidence: must be an object or null, not a string"),
        (lambda e: e.pop("clock"), "$.clock: missing"),
    ],
)
def test_single_problems(change: Any, expected: str) -> None:
    event = attendance()
    change(event)
    problems = schema.validate(event)
    assert any(p.startswith(expected) for p in problems), problems


def test_status_and_alarm_problems() -> None:
    status = next(e for e in all_types() if e["type"] == "status")
    status["fps"] = 15.0
    status["outbox_depth"] = -1
    status["cpu_temp_c"] = "hot"
    status.pop("free_disk_bytes")
    problems = schema.validate(status)
    assert [p.split(":")[0] for p in problems] == ["$.free_disk_bytes", "$.fps", "$.outbox_depth", "$.cpu_temp_c"]
    alarm = next(e for e in all_types() if e["type"] == "alarm")
    alarm["alarm"] = "Tamper!"
    alarm["detail"] = "x" * 1001
    assert [p.split(":")[0] for p in schema.validate(alarm)] == ["$.alarm", "$.detail"]


def test_non_objects() -> None:
    assert schema.validate([]) == ["$: an event must be a JSON object, not an array"]
    assert schema.validate({"v": 1}) != []


def test_from_bytes_errors_are_clear() -> None:
    good = schema.to_bytes(attendance())
    assert schema.from_bytes(good)["seq"] == 7
    cases = [
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'{"v": 1, "v": 1}', "duplicate key 'v'"),
        (b'{"v": NaN}', "NaN is not allowed"),
        (b'{"seq": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"{" * 100_00 + b"}" * 100_00, "more than the limit"),
        (b" " * (schema.MAX_EVENT_BYTES + 1), "more than the limit"),
    ]
    for data, message in cases:
        with pytest.raises(EventFormatError, match=message):
            schema.from_bytes(data)
    bad = attendance()
    bad["seq"] = -5
    bad["kind"] = "x"
    with pytest.raises(EventFormatError) as info:
        schema.from_bytes(json.dumps(bad).encode())
    assert isinstance(info.value, KioskError)
    assert [p.split(":")[0] for p in info.value.problems] == ["$.seq", "$.kind"]
    assert schema.from_bytes(json.dumps(bad).encode(), check=False)["seq"] == -5


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    data = b"[" * 5000 + b"]" * 5000
    with pytest.raises(EventFormatError):
        schema.from_bytes(data)


def test_to_bytes_is_canonical_and_limited() -> None:
    event = attendance()
    shuffled = dict(reversed(list(copy.deepcopy(event).items())))
    assert schema.to_bytes(shuffled) == schema.to_bytes(event)
    assert b" " not in schema.to_bytes(event) and b"\n" not in schema.to_bytes(event)
    alarm = next(e for e in all_types() if e["type"] == "alarm")
    alarm["detail"] = "Kamera tertutup — é"
    assert "—".encode() in schema.to_bytes(alarm)  # ensure_ascii=False
    alarm["detail"] = "x" * schema.MAX_EVENT_BYTES
    with pytest.raises(EventFormatError, match="more than the limit"):
        schema.to_bytes(alarm)
    with pytest.raises(ValueError):
        schema.to_bytes({"x": float("inf")})


def test_an_alarm_names_the_seqs_it_lost_as_inclusive_ranges() -> None:
    body = schema.build_alarm(stamp(), alarm="outbox_recovered", detail="moved aside", lost_seqs=[(5, 7), (9, 9)])
    assert body["lost_seqs"] == [[5, 7], [9, 9]]
    event = schema.with_seq(body, 10) | {"sig": {"alg": "ed25519", "key_id": "0" * 16, "value": "A" * 86 + "=="}}
    assert schema.from_bytes(schema.to_bytes(event))["lost_seqs"] == [[5, 7], [9, 9]]
    assert "lost_seqs" not in schema.build_alarm(stamp(), alarm="tamper"), "left out unless given: old alarms stay"
    most = [(n, n) for n in range(1, schema.MAX_LOST_RANGES * 2, 2)]
    assert len(schema.build_alarm(stamp(), alarm="outbox_recovered", lost_seqs=most)["lost_seqs"]) == 100
    widest = schema.build_alarm(stamp(), alarm="outbox_recovered", lost_seqs=[(1, schema.MAX_SEQ)] * 100)
    assert len(schema.to_bytes(schema.with_seq(widest, schema.MAX_SEQ))) < schema.MAX_EVENT_BYTES


def test_lost_seqs_is_a_field_of_alarms_only() -> None:
    for event in all_types():
        if event["type"] != "alarm":
            event["lost_seqs"] = [[1, 2]]
            assert schema.validate(event) == [f"$.lost_seqs: unknown field for type {event['type']}"]


@pytest.mark.parametrize(
    ("lost", "expected"),
    [
        ([[7, 5]], "$.lost_seqs[0]: first seq 7 is after last seq 5 (a range is [first, last], first <= last)"),
        ([[1, 1], [9, 3]], "$.lost_seqs[1]: first seq 9 is after last seq 3 (a range is [first, last], first <= last)"),
        ([[1, "2"]], "$.lost_seqs[0][1]: must be an integer, not a string"),
        ([[1.0, 2]], "$.lost_seqs[0][0]: must be an integer, not a float"),
        ([[True, 2]], "$.lost_seqs[0][0]: must be an integer, not a boolean"),
        ([[0, 2]], "$.lost_seqs[0][0]: 0 is out of range 1..9223372036854775807"),
        ([[1, 2**63]], "$.lost_seqs[0][1]: 9223372036854775808 is out of range 1..9223372036854775807"),
        ([[1]], "$.lost_seqs[0]: must be a range [first, last] of two seqs"),
        ([[1, 2, 3]], "$.lost_seqs[0]: must be a range [first, last] of two seqs"),
        ([3], "$.lost_seqs[0]: must be a range [first, last] of two seqs"),
        ([{"first": 1, "last": 2}], "$.lost_seqs[0]: must be a range [first, last] of two seqs"),
        ({"5": 7}, "$.lost_seqs: must be an array, not an object"),
        ([[n, n] for n in range(1, 102)], "$.lost_seqs: must have at most 100 item(s), not 101"),
    ],
)
def test_malformed_lost_seqs_are_refused_naming_the_field(lost: Any, expected: str) -> None:
    event = next(e for e in all_types() if e["type"] == "alarm")
    event["lost_seqs"] = lost
    assert schema.validate(event) == [expected]
    with pytest.raises(EventFormatError) as info:
        schema.from_bytes(json.dumps(event).encode())
    assert info.value.problems == [expected]
    if isinstance(lost, list):
        with pytest.raises(ValueError, match=r"\$\.lost_seqs"):
            schema.build_alarm(stamp(), alarm="outbox_recovered", lost_seqs=lost)


def test_a_status_event_carries_a_selftest_summary_and_its_problems_are_named() -> None:
    """Contract 0.5: ``kiosk selftest --publish`` stores a status event with its summary; central validates it."""
    summary = {"result": "failed", "failed": ["broker"], "skipped": ["camera", "gpio", "otp_key"],
               "report_sha256": "a" * 64, "kiosk_version": "0.9.0", "detect_ms": "41.3", "encode_ms": "212.0",
               "cpu_ms_per_frame": "66.1", "decision_ms": None}
    body = schema.build_status(stamp(), fps=11.2, outbox_depth=0, oldest_pending_age_s=None, gallery_version="3",
                               cpu_temp_c=None, free_disk_bytes=1, selftest=summary)
    event = schema.with_seq(body, 3) | {"sig": {"alg": "ed25519", "key_id": "0" * 16, "value": "A" * 86 + "=="}}
    assert schema.validate(event) == [] and schema.from_bytes(schema.to_bytes(event))["selftest"] == summary
    bad = copy.deepcopy(event)
    bad["selftest"] |= {"result": "fine", "failed": ["Broker!"], "report_sha256": "xyz", "detect_ms": 41.3}
    assert sorted(p.split(":")[0] for p in schema.validate(bad)) == [
        "$.selftest.detect_ms", "$.selftest.failed[0]", "$.selftest.report_sha256", "$.selftest.result"]
    extra = copy.deepcopy(event)
    extra["selftest"]["photo"] = "..."
    assert [p.split(":")[0] for p in schema.validate(extra)] == ["$.selftest.photo"]
    with pytest.raises(ValueError):
        schema.build_status(stamp(), fps=1, outbox_depth=0, oldest_pending_age_s=None, gallery_version=None,
                            cpu_temp_c=None, free_disk_bytes=1, selftest={"result": "ok"})
