"""The contract's schemas and the interpreter that applies them: every schema is valid JSON Schema 2020-12, the
interpreter reaches the same verdict as the reference library (``jsonschema``) on valid messages and on thousands of
mutated ones, and it refuses a keyword it does not apply."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from kiosk_contract import schema, signing, validation
from kiosk_contract.acks import Conflict, build_acks
from kiosk_contract.commands import Target, build_command, result

KEY = Ed25519PrivateKey.generate()
NIP = "198001012005011001"


def stamp(synced: bool = True) -> schema.Stamp:
    clock = schema.ClockInfo(synced=synced, source="ntp" if synced else "none", since_boot_synced=synced)
    return schema.Stamp("kiosk-1", "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c", 10**9,
                        datetime(2026, 11, 29, 23, 21, tzinfo=UTC), "Asia/Makassar", clock)


def signed_event(body: dict[str, Any], seq: int = 7) -> dict[str, Any]:
    return schema.from_bytes(signing.seal(schema.to_bytes(body), seq, KEY))


def valid_messages() -> Iterator[tuple[str, Any]]:
    face = {"method": "face", "best_nip": NIP, "distance": "0.4100", "margin": "0.2000", "frames": 2,
            "liveness": {"level": "challenge", "result": "live", "method": "parallax", "score": "0.0610",
                         "blinks": 1, "challenge": None, "extra_ms": 180, "moving_surroundings": 0}}
    yield "event", signed_event(schema.build_attendance(stamp(), kind="masuk", nip=NIP, decision=face,
                                                        evidence=b"\xff\xd8jpeg"))
    spoof = copy.deepcopy(face)
    spoof["liveness"] |= {"result": "spoof", "challenge": "blink+turn_left"}
    yield "event", signed_event(schema.build_review(stamp(), reason="suspected_spoof", decision=spoof, nip=NIP,
                                                    kind="masuk", evidence=b"\xff\xd8jpeg"))
    yield "event", signed_event(schema.build_review(stamp(False), reason="manual_entry", nip=NIP, kind=None,
                                                    decision=schema.manual_decision()))
    yield "event", signed_event(schema.build_status(stamp(), fps=12.5, outbox_depth=3, oldest_pending_age_s=None,
                                                    gallery_version="4", cpu_temp_c=-1.5, free_disk_bytes=10,
                                                    gallery_office="bkpsdm", refused_acks=1))
    yield "event", signed_event(schema.build_time_anchor(stamp()))
    yield "event", signed_event(schema.build_alarm(stamp(), alarm="seq_conflict", detail="x"))
    yield "event", signed_event(schema.build_alarm(stamp(), alarm="outbox_recovered", detail=None,
                                                   lost_seqs=[(2, 4), (6, 6)]), seq=9)
    yield "evidence", {"seq": 3, "event_id": schema.new_event_id(), "content_type": "image/jpeg", "jpeg_b64": "/9j/"}
    event_id = schema.new_event_id()
    yield "ack", build_acks("kiosk-1", [(1, event_id)], KEY, conflicts=[Conflict(2, event_id, event_id)])[0]
    target = Target("bkpsdm", "kiosk-1")
    yield "command", build_command("install_gallery", key=KEY, target=target, version=3, gallery_version=2,
                                   sha256="a" * 64, gallery_b64="QUJD")
    yield "command", build_command("remove_people", key=KEY, target=target, version=4, nips=[NIP])
    yield "command", build_command("reload_gallery", key=KEY, target=target, version=5)
    yield "command", build_command("resend", from_seq=9)
    yield "command", build_command("ping", request_id="r1")
    yield "command-result", result("r1", False, cmd="ping", error="why", refused="malformed")
    yield "command-result", result(None, True, queued=True, gallery_version=None, gallery_office=None)


ODD = [None, True, 0, -1, 1.5, 2**63, "", "x", "masuk", NIP, [], [1], {}, {"x": 1}]


def mutations(value: Any) -> Iterator[Any]:
    """Copies of ``value`` with one change each: a key removed or added, a value replaced by an odd one."""
    if isinstance(value, dict):
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for odd in ODD:
                yield {**value, key: odd}
            for inner in mutations(value[key]):
                yield {**value, key: inner}
        yield {**value, "extra": 1}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for inner in mutations(item):
                yield [*value[:i], inner, *value[i + 1:]]
        yield [*value, *value[:1]]


@pytest.fixture(scope="module")
def reference() -> dict[str, Draft202012Validator]:
    registry = Registry().with_resources(
        (validation.schema(n)["$id"], Resource.from_contents(validation.schema(n))) for n in validation.SCHEMA_NAMES)
    return {n: Draft202012Validator(validation.schema(n), registry=registry) for n in validation.SCHEMA_NAMES}


@pytest.mark.parametrize("name", validation.SCHEMA_NAMES)
def test_every_schema_is_valid_json_schema_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(validation.schema(name))
    assert json.loads(validation.schema_text(name))["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_interpreter_and_the_reference_library_agree(reference: dict[str, Draft202012Validator]) -> None:
    checked = invalid = 0
    for name, message in valid_messages():
        assert validation.problems(name, message) == [], (name, message)
        assert reference[name].is_valid(message), (name, message)
        for mutant in mutations(message):
            ours = validation.problems(name, mutant)
            theirs = reference[name].is_valid(mutant)
            assert (ours == []) == theirs, (name, json.dumps(mutant)[:300], ours)
            checked += 1
            invalid += not theirs
    assert invalid > 3000 and checked - invalid > 100, (checked, invalid)  # both verdicts, many times


def test_a_keyword_the_interpreter_does_not_apply_is_refused() -> None:
    with pytest.raises(ValueError, match="keyword 'patternProperties' is not applied"):
        validation._check_keywords({"properties": {"a": {"patternProperties": {}}}}, "test.schema.json")


def test_problems_name_the_path_and_say_what_is_expected() -> None:
    _, event = next(valid_messages())
    event["person"]["nip"] = "19850505201001102"
    event["decision"]["frames"] = -1
    event["extra"] = 1
    assert validation.problems("event", event) == [
        "$.person.nip: '19850505201001102' is not a NIP: it has 17 digits; a NIP is 18 digits (0-9), like "
        "198001012005011001",
        "$.decision.frames: -1 is out of range 0..10000",
        "$.extra: unknown field for type attendance",
    ]
