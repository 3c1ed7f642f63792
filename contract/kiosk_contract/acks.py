"""Acknowledgements: what the central server has committed, told to the kiosk so that it may release events.

An ack (``schemas/ack.schema.json``) names each event by its ``seq`` and its ``event_id``: a kiosk releases an event
only when both match what it stored, so another event under a reused seq is never confirmed. The ledger never
acknowledges a range it has not stored: there is no "up to" form. Acks are signed with the central key and name
the device; a kiosk verifies both before anything is released (docs/mqtt.md, "Delivery").

    (message,) = build_acks("kiosk-a", [(12, "0190...")], central_key)     # central, after the commit
    ack = open_ack(wire(message), central_public_keys, device="kiosk-a")   # the kiosk
    outbox.acknowledge_pairs(ack.events)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kiosk_contract import signing
from kiosk_contract.errors import KioskError
from kiosk_contract.jsonbound import JsonLimitError, loads_bounded
from kiosk_contract.schema import format_utc
from kiosk_contract.validation import problems

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ACK_VERSION = 1
MAX_ACK_EVENTS = 1000
MAX_ACK_BYTES = 256 * 1024
MAX_ACK_DEPTH = 4


class AckError(KioskError, ValueError):
    """An ack that is refused: malformed, unsigned, forged, or for another device. ``reason`` is a short word for
    the counters (``malformed``, ``unsigned``, ``bad_signature``, ``wrong_device``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Conflict:
    """An event the ledger refused because it already holds ``stored_event_id`` under the same seq."""

    seq: int
    event_id: str
    stored_event_id: str


@dataclass(frozen=True)
class Ack:
    """A verified ack: the (seq, event_id) pairs the ledger holds, and the seq conflicts it found."""

    device: str
    events: tuple[tuple[int, str], ...]
    conflicts: tuple[Conflict, ...] = ()


def build_acks(
    device: str,
    events: Iterable[tuple[int, str]],
    key: Ed25519PrivateKey,
    *,
    conflicts: Iterable[Conflict] = (),
    now: datetime | None = None,
) -> list[dict[str, object]]:
    """The signed ack messages for these stored events and conflicts (several when there are more than
    :data:`MAX_ACK_EVENTS`), each valid against the schema; :func:`kiosk_contract.signing.wire` encodes them."""
    pairs = sorted(set(events))
    found = sorted({(c.seq, c.event_id, c.stored_event_id) for c in conflicts})
    issued = format_utc(now or datetime.now(UTC))
    out: list[dict[str, object]] = []
    for start in range(0, max(len(pairs), len(found), 1), MAX_ACK_EVENTS):
        message: dict[str, object] = {
            "v": ACK_VERSION,
            "type": "ack",
            "device": device,
            "issued_at": issued,
            "events": [{"seq": s, "event_id": e} for s, e in pairs[start:start + MAX_ACK_EVENTS]],
        }
        chunk = found[start:start + MAX_ACK_EVENTS]
        if chunk:
            message["conflicts"] = [{"seq": s, "event_id": e, "stored_event_id": o} for s, e, o in chunk]
        signed = signing.sign(message, key)
        wrong = problems("ack", signed)
        if wrong:
            raise ValueError("the ack would be invalid: " + "; ".join(wrong))
        out.append(signed)
    return out


def open_ack(data: bytes, central_keys: Mapping[str, Ed25519PublicKey], *, device: str) -> Ack:
    """The verified ack in ``data`` for ``device``; :class:`AckError` saying why it is refused."""
    try:
        value = loads_bounded(data, max_bytes=MAX_ACK_BYTES, max_depth=MAX_ACK_DEPTH, what="ack")
    except JsonLimitError as exc:
        raise AckError(str(exc), "malformed") from None
    wrong = problems("ack", value)
    if wrong:
        unsigned = isinstance(value, dict) and "sig" not in value
        raise AckError(("an unsigned ack: " if unsigned else "a malformed ack: ") + "; ".join(wrong[:5]),
                       "unsigned" if unsigned else "malformed")
    try:
        signing.verify(value, central_keys, what="ack",
                       unknown_key_hint="it is not the central server's key (mqtt.central_key_file)")
    except signing.SignatureError as exc:
        raise AckError(str(exc), "bad_signature") from None
    if value["device"] != device:
        raise AckError(f"an ack for device {value['device']!r}, not this kiosk ({device!r})", "wrong_device")
    return Ack(
        device,
        tuple((int(e["seq"]), str(e["event_id"])) for e in value["events"]),
        tuple(Conflict(int(c["seq"]), str(c["event_id"]), str(c["stored_event_id"]))
              for c in value.get("conflicts", ())),
    )
