"""Acks, commands and bounded JSON: what the contract lets through and what it refuses, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk_contract import schema, signing
from kiosk_contract.acks import MAX_ACK_EVENTS, AckError, Conflict, build_acks, open_ack
from kiosk_contract.commands import CommandRefused, Target, build_command, check_command, parse_command
from kiosk_contract.jsonbound import JsonLimitError, loads_bounded, nesting_depth, text_depth

CENTRAL = Ed25519PrivateKey.generate()
KEYS = {signing.key_id_of(CENTRAL): CENTRAL.public_key()}
IDS = [schema.new_event_id() for _ in range(3)]


def test_an_ack_names_each_event_by_seq_and_id_and_is_split_at_its_limit() -> None:
    pairs = [(i + 1, schema.new_event_id()) for i in range(MAX_ACK_EVENTS + 5)]
    messages = build_acks("kiosk-1", pairs, CENTRAL, conflicts=[Conflict(9, IDS[0], IDS[1])])
    assert len(messages) == 2
    opened = [open_ack(signing.wire(m), KEYS, device="kiosk-1") for m in messages]
    assert sorted(p for a in opened for p in a.events) == pairs
    assert opened[0].conflicts == (Conflict(9, IDS[0], IDS[1]),) and opened[1].conflicts == ()


@pytest.mark.parametrize(("change", "reason"), [
    (lambda m: {k: v for k, v in m.items() if k != "sig"}, "unsigned"),
    (lambda m: m | {"events": [{"seq": 1, "event_id": IDS[2]}]}, "bad_signature"),
    (lambda m: signing.sign(m, Ed25519PrivateKey.generate()), "bad_signature"),
    (lambda m: m | {"upto_seq": 1000000}, "malformed"),
    (lambda m: {"upto_seq": 1000000}, "unsigned"),
])
def test_an_ack_that_is_not_central_s_own_is_refused(change, reason) -> None:  # type: ignore[no-untyped-def]
    (message,) = build_acks("kiosk-1", [(1, IDS[0])], CENTRAL)
    with pytest.raises(AckError) as info:
        open_ack(signing.wire(change(message)), KEYS, device="kiosk-1")
    assert info.value.reason == reason
    with pytest.raises(AckError) as other:
        open_ack(signing.wire(message), KEYS, device="kiosk-2")
    assert other.value.reason == "wrong_device"


def test_a_changing_command_is_checked_for_signature_target_version_and_expiry() -> None:
    now = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    command = build_command("reload_gallery", key=CENTRAL, target=Target("bkpsdm", "kiosk-1"), version=5, now=now,
                            ttl=timedelta(days=30))

    def refused(**kw: object) -> str:
        args: dict[str, object] = dict(device="kiosk-1", office="bkpsdm", applied=4, now=now) | kw
        with pytest.raises(CommandRefused) as info:
            check_command(command, KEYS, **args)  # type: ignore[arg-type]
        return info.value.reason

    check_command(command, KEYS, device="kiosk-1", office="bkpsdm", applied=4, now=now)
    check_command(command, KEYS, device="kiosk-1", office="bkpsdm", applied=4, now=None)  # clock not synced
    assert refused(device="kiosk-2") == "wrong_device"
    assert refused(office="dinkes") == "wrong_office"
    assert refused(office="") == "no_office"
    assert refused(applied=5) == "replay"
    assert refused(applied=6) == "older_version"
    assert refused(now=now + timedelta(days=30)) == "expired"
    assert refused(now=now - timedelta(hours=1)) == "not_yet_valid"
    with pytest.raises(ValueError, match="needs the central key"):
        build_command("install_gallery", target=Target("bkpsdm", "kiosk-1"), version=1)


def test_commands_are_parsed_with_bounds_and_every_refusal_keeps_what_could_be_read() -> None:
    ok = parse_command(signing.wire(build_command("ping", request_id="r1")))
    assert ok["cmd"] == "ping"
    cases = [
        (b"{" * 10 + b"}" * 10, "malformed", None),
        (b'{"v": 1, "request_id": "r2", "cmd": "format_disk"}', "unknown_command", "r2"),
        (b'{"v": 1, "request_id": "r3", "cmd": "reload_gallery"}', "unsigned", "r3"),
        (b'{"v": 1, "request_id": "r4", "cmd": "resend"}', "malformed", "r4"),
        (b'[1]', "malformed", None),
    ]
    for payload, reason, request_id in cases:
        with pytest.raises(CommandRefused) as info:
            parse_command(payload)
        assert (info.value.reason, info.value.request_id) == (reason, request_id), payload


def test_bounded_json_refuses_size_depth_duplicates_and_constants_without_recursion() -> None:
    assert loads_bounded(b'{"a": [1, {"b": 2}]}', max_bytes=100, max_depth=3) == {"a": [1, {"b": 2}]}
    for data, says in [
        (b'{"a": 1}' + b" " * 100, "more than the limit of 100"),
        (b"[" * 4 + b"]" * 4, "nested more than 3 levels deep"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than 3 levels deep"),
        (b'{"a": "[[[[[[", "b": [[[[]]]]}', "nested more than 3 levels deep"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not allowed"),
        (b"\xff", "not UTF-8"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ]:
        with pytest.raises(JsonLimitError, match=says):
            loads_bounded(data, max_bytes=100 if says.startswith("more") else 10**6, max_depth=3, what="ack")
    assert nesting_depth(json.loads('{"a": "[[[{{", "b": [[]]}')) == 3
    assert text_depth('{"a": "[[[{{\\"[", "b": [[]]}', 10) == 3, "brackets in strings (and escaped quotes) do not count"
    assert loads_bounded(b'{"a": "[[[[[[[[", "b": ["]]]]"]}', max_bytes=100, max_depth=2) == {
        "a": "[[[[[[[[", "b": ["]]]]"]}
