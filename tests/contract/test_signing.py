"""Ed25519 event signatures: fixed test vectors (also in docs/events.md), tamper, unknown keys, key files."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk_contract import schema, signing
from kiosk_contract.errors import KioskError
from kiosk_contract.schema import ClockInfo, EventFormatError, Stamp
from kiosk_contract.signing import KeyFileError, SignatureError

# ---- test vector (docs/events.md, "Test vectors"): RFC 8032 test 1 secret key
PRIVATE_KEY_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC_KEY_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
KEY_ID = "21fe31dfa154a261"
EVIDENCE = b"\xff\xd8 not really a jpeg \xff\xd9"
CANONICAL = (
    b'{"boot_id":"3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c",'
    b'"clock":{"since_boot_synced":true,"source":"ntp","synced":true},'
    b'"decision":{"best_nip":"198001012005011001","distance":"0.4123","frames":3,"liveness":null,'
    b'"margin":"0.1278","method":"face"},'
    b'"device":"kab-maros-01","event_id":"019ad2a4-5b12-7c3d-8e4f-0123456789ab",'
    b'"evidence":{"bytes":23,"sha256":"f56625a2c075dfb2b63d0fac49f8903ce9c190b156c12603f30a02fd33a06e12"},'
    b'"kind":"masuk","mono_ns":5664134000000,"person":{"nip":"198001012005011001"},"seq":1042,'
    b'"time_local":"2026-11-30T08:05:07.250+08:00","time_utc":"2026-11-30T00:05:07.250Z",'
    b'"type":"attendance","tz":"Asia/Makassar","v":1}'
)
SIGNATURE = "xUmchOdW5hflVzVRgI8xhSCTMxG0k7BtZeqAkB8xfLpIr9eOUU+MvpcYdzwziiK3V2WSv43jCg1AS0v51d/EDQ=="
# second vector: non-ASCII text is signed as UTF-8, not \u escapes
ALARM_MESSAGE = (
    '{"alarm":"tamper","boot_id":"3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c",'
    '"clock":{"since_boot_synced":true,"source":"ntp","synced":true},'
    '"detail":"kamera tertutup — ruang tunggu","device":"kab-maros-01",'
    '"event_id":"019ad2a5-3a00-7000-8000-000000000001","mono_ns":5746884000000,"seq":1046,'
    '"sig":{"alg":"ed25519","key_id":"21fe31dfa154a261",'
    '"value":"EaktSVPa9HJkpdPBknVm+MbQ12N6D4Ps01oZRUD2QWqaSnwl15v68hjnMuIdT2kN6cy1WX3v2nMLla3z8ZTmBg=="},'
    '"time_local":"2026-11-30T08:06:30.000+08:00","time_utc":"2026-11-30T00:06:30.000Z",'
    '"type":"alarm","tz":"Asia/Makassar","v":1}'
).encode()


class FixedDecision:
    best_nip = "198001012005011001"
    distance = 0.41234
    margin = 0.1278
    frames_used = 3


def vector_key() -> Ed25519PrivateKey:
    return signing.private_key_from_raw(bytes.fromhex(PRIVATE_KEY_HEX))


def vector_body() -> dict[str, Any]:
    st = Stamp(
        "kab-maros-01",
        "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c",
        5_664_134_000_000,
        datetime(2026, 11, 30, 0, 5, 7, 250000, tzinfo=UTC),
        "Asia/Makassar",
        ClockInfo(True, "ntp", True),
    )
    return schema.build_attendance(
        st,
        kind="masuk",
        nip="198001012005011001",
        decision=schema.face_decision(FixedDecision()),
        evidence=EVIDENCE,
        event_id="019ad2a4-5b12-7c3d-8e4f-0123456789ab",
    )


def signed_vector() -> dict[str, Any]:
    return signing.sign(schema.with_seq(vector_body(), 1042), vector_key(), KEY_ID)


def keys() -> dict[str, Any]:
    return {KEY_ID: vector_key().public_key()}


def test_vector_key_id() -> None:
    public = vector_key().public_key()
    assert signing.raw_public_key(public).hex() == PUBLIC_KEY_HEX
    assert signing.key_id_of(public) == KEY_ID
    assert signing.key_id_of(vector_key()) == KEY_ID


def test_vector_canonical_bytes_and_signature() -> None:
    event = signed_vector()
    assert signing.canonical_bytes(event) == CANONICAL
    assert event["sig"] == {"alg": "ed25519", "key_id": KEY_ID, "value": SIGNATURE}
    signing.verify(event, keys())
    # independent of the library's sign(): the raw Ed25519 check of the documented bytes
    vector_key().public_key().verify(base64.b64decode(SIGNATURE), CANONICAL)


def test_vector_seal_from_the_stored_body() -> None:
    stored = schema.to_bytes(vector_body())  # what goes into the outbox (no seq, no sig)
    message = signing.seal(stored, 1042, vector_key())
    assert message == schema.to_bytes(signed_vector())
    assert signing.seal(stored, 1042, vector_key()) == message  # a retry publishes identical bytes
    event = signing.open_message(message, keys())
    assert event["seq"] == 1042 and event["sig"]["value"] == SIGNATURE


def test_vector_non_ascii_alarm() -> None:
    event = signing.open_message(ALARM_MESSAGE, keys())
    assert event["detail"] == "kamera tertutup — ruang tunggu"
    assert schema.to_bytes(event) == ALARM_MESSAGE
    escaped = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()  # ensure_ascii=True: \u2014
    assert escaped != ALARM_MESSAGE
    signing.verify(json.loads(escaped), keys())  # the parsed content is what counts, not the transport bytes


def test_signature_is_not_reusable_across_seq() -> None:
    stored = schema.to_bytes(vector_body())
    a = schema.from_bytes(signing.seal(stored, 1, vector_key()))
    b = schema.from_bytes(signing.seal(stored, 2, vector_key()))
    assert a["sig"]["value"] != b["sig"]["value"]
    a["seq"] = 2
    with pytest.raises(SignatureError):
        signing.verify(a, keys())


TAMPERS = [
    ("person", lambda e: e["person"].update(nip="199001012015011001")),
    ("time_utc", lambda e: e.update(time_utc="2026-11-29T23:05:07.250Z")),
    ("time_local", lambda e: e.update(time_local="2026-11-30T07:05:07.250+07:00")),
    ("seq", lambda e: e.update(seq=1041)),
    ("kind", lambda e: e.update(kind="pulang")),
    ("distance", lambda e: e["decision"].update(distance="0.3000")),
    ("clock", lambda e: e["clock"].update(synced=False)),
    ("evidence", lambda e: e.update(evidence=None)),
    ("device", lambda e: e.update(device="kab-maros-02")),
    ("added field", lambda e: e.update(note="x")),
    ("removed field", lambda e: e.pop("mono_ns")),
    ("int as string", lambda e: e.update(seq="1042")),
]


@pytest.mark.parametrize(("what", "change"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampered_event_fails(what: str, change: Any) -> None:
    event = signed_vector()
    signing.verify(copy.deepcopy(event), keys())
    change(event)
    with pytest.raises(SignatureError, match="bad signature"):
        signing.verify(event, keys())


def test_missing_unknown_and_malformed_signatures() -> None:
    event = signed_vector()
    other = Ed25519PrivateKey.generate()
    cases: list[tuple[Any, str]] = [
        ({k: v for k, v in event.items() if k != "sig"}, "no signature"),
        (event | {"sig": "abc"}, "not an object"),
        (event | {"sig": event["sig"] | {"alg": "rsa"}}, "unsupported signature algorithm"),
        (event | {"sig": event["sig"] | {"key_id": "ffffffffffffffff"}}, "unknown key id"),
        (event | {"sig": event["sig"] | {"value": "%%%"}}, "not base64"),
        (event | {"sig": event["sig"] | {"value": "AAAA"}}, "3 bytes"),
        (event | {"mono_ns": 1.5}, "cannot be encoded canonically"),
    ]
    for bad, message in cases:
        with pytest.raises(SignatureError, match=message) as info:
            signing.verify(bad, keys())
        assert isinstance(info.value, KioskError)
    # signed by another key under the vector's key id
    forged = signing.sign(schema.with_seq(vector_body(), 1042), other, KEY_ID)
    with pytest.raises(SignatureError, match="bad signature"):
        signing.verify(forged, keys())
    # no keys at all
    with pytest.raises(SignatureError, match="unknown key id"):
        signing.verify(event, {})


def test_floats_are_refused_before_signing() -> None:
    body = schema.with_seq(vector_body(), 1)
    body["decision"]["distance"] = 0.4123
    with pytest.raises(TypeError, match=r"\$\.decision\.distance"):
        signing.sign(body, vector_key())


def test_seal_refuses_invalid_bodies() -> None:
    body = vector_body()
    body["kind"] = "lunch"
    with pytest.raises(EventFormatError, match=r"\$\.kind"):
        signing.seal(json.dumps(body).encode(), 1, vector_key())
    with pytest.raises(ValueError):
        signing.seal(schema.to_bytes(vector_body()), 0, vector_key())


def test_generated_keys_round_trip_through_pem_files(tmp_path: Path) -> None:
    private_pem, public_pem = signing.generate_key()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    signing.write_private_key(tmp_path / "device.key", private_pem)
    assert (tmp_path / "device.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        signing.write_private_key(tmp_path / "device.key", private_pem)
    (tmp_path / "device.pub").write_bytes(public_pem)
    private = signing.load_private_key(tmp_path / "device.key")
    public = signing.load_public_key(tmp_path / "device.pub")
    kid = signing.key_id_of(public)
    assert signing.key_id_of(private) == kid and len(kid) == 16
    event = signing.sign(schema.with_seq(vector_body(), 5), private)
    assert event["sig"]["key_id"] == kid
    signing.verify(event, signing.load_public_keys([tmp_path / "device.pub"]))
    with pytest.raises(SignatureError, match="unknown key id"):
        signing.verify(event, keys())


def test_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        signing.load_private_key(tmp_path / "missing.key")
    (tmp_path / "junk.pem").write_bytes(b"hello")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        signing.load_private_key(tmp_path / "junk.pem")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        signing.load_public_key(tmp_path / "junk.pem")
    private_pem, public_pem = signing.generate_key()
    (tmp_path / "pub.pem").write_bytes(public_pem)
    (tmp_path / "priv.pem").write_bytes(private_pem)
    with pytest.raises(KeyFileError):
        signing.load_private_key(tmp_path / "pub.pem")
    with pytest.raises(KeyFileError):
        signing.load_public_key(tmp_path / "priv.pem")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(ec_pem)
    with pytest.raises(KeyFileError, match="not Ed25519"):
        signing.load_private_key(tmp_path / "ec.pem")


def test_docs_carry_the_same_vectors() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    signed_alarm = json.loads(ALARM_MESSAGE)
    for text in (
        PRIVATE_KEY_HEX,
        PUBLIC_KEY_HEX,
        KEY_ID,
        CANONICAL.decode(),
        SIGNATURE,
        signing.canonical_bytes(signed_alarm).decode(),
        signed_alarm["sig"]["value"],
    ):
        assert text in docs, text[:60]


def test_every_example_in_the_docs_is_valid_and_signed() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    blocks = docs.split("```json\n")[1:]
    types = set()
    for block in blocks:
        event = schema.from_bytes(block.split("```", 1)[0].encode())  # validates
        signing.verify(event, keys())
        types.add(event["type"])
    assert types == set(schema.TYPES)
