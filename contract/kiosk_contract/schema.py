"""The attendance event, schema version 1: builders, validation and the JSON wire form (see docs/events.md).

The definition is data: ``schemas/event.schema.json`` (JSON Schema 2020-12, published in docs/contract.md for other
subscribers); :func:`validate` applies it and adds the checks a schema cannot express (time_local is the instant
of time_utc in the offset of tz; a face attendance names its best match; an alarm's ``lost_seqs`` ranges have
first <= last).

An event is a JSON object. Every event carries the header fields ``v, type, event_id, device, seq, boot_id, mono_ns,
time_utc, time_local, tz, clock, sig``; the types ``attendance``, ``review``, ``status``, ``time_anchor`` and
``alarm`` add their own fields. There are no JSON floats anywhere: fractional quantities (distances, fps,
temperatures) are decimal strings with a fixed number of decimals, so the signed bytes never depend on how a
platform formats floats.

Life of an event on the device (the outbox hands out ``seq`` inside :meth:`Outbox.append`):

1. ``build_*`` makes the *body*: every field except ``seq`` and ``sig``; its ``event_id`` is minted here, once.
2. ``outbox.append(body["event_id"], body["type"], to_bytes(body))`` stores it and assigns ``seq``.
3. At publication, :func:`kiosk_contract.signing.seal` adds the stored ``seq`` and signs. Ed25519 and the canonical
   encoding are deterministic, so a retry publishes byte-identical messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from kiosk_contract.errors import KioskError
from kiosk_contract.jsonbound import JsonLimitError, loads_bounded
from kiosk_contract.validation import kind, problems, short

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 16 * 1024  # an event is a few hundred bytes; the photo travels separately (evidence)
MAX_EVENT_DEPTH = 8  # an event nests at most 4 levels (decision.liveness); room for growth, none for abuse
MAX_SEQ = 2**63 - 1
MAX_LOST_RANGES = 100  # an alarm's lost_seqs: at most this many [first, last] ranges (event.schema.json)
DEFAULT_TZ = "Asia/Makassar"

TYPES = ("attendance", "review", "status", "time_anchor", "alarm")
LIVENESS_DECIMALS = 4
DISTANCE_DECIMALS = 4
FPS_DECIMALS = 1
TEMP_DECIMALS = 1


class EventFormatError(KioskError, ValueError):
    """Bytes that are not a well-formed event; ``problems`` lists every finding (with its field path)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems if problems is not None else [message]
        super().__init__(message)


@dataclass(frozen=True)
class ClockInfo:
    """The ``clock`` field: is the wall clock trustworthy, and has it been since this boot?"""

    synced: bool
    source: str  # "ntp" | "rtc" | "none" | "unknown"
    since_boot_synced: bool  # this boot has seen a synced clock at or before this event

    def as_json(self) -> dict[str, Any]:
        return {"synced": self.synced, "source": self.source, "since_boot_synced": self.since_boot_synced}


@dataclass(frozen=True)
class Stamp:
    """Where and when an event happens: one reading of the device's clocks, taken once per event."""

    device: str
    boot_id: str
    mono_ns: int  # CLOCK_BOOTTIME nanoseconds (see kiosk.events.clock.mono_ns)
    utc: datetime  # aware
    tz: str  # IANA zone of the site
    clock: ClockInfo


class DecisionLike(Protocol):
    """What the builders read of :class:`kiosk.recognizer.pipeline.Decision` (not imported: it pulls in cv2)."""

    @property
    def best_nip(self) -> str | None: ...
    @property
    def distance(self) -> float: ...
    @property
    def margin(self) -> float | None: ...
    @property
    def frames_used(self) -> int: ...


class LivenessLike(Protocol):
    """What :func:`liveness_field` reads of :class:`kiosk.recognizer.liveness.LivenessVerdict`."""

    @property
    def level(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def blinks(self) -> int: ...
    @property
    def challenge(self) -> str | None: ...
    @property
    def extra_ms(self) -> float: ...
    @property
    def moving_surroundings(self) -> int: ...
    @property
    def texture(self) -> float | None: ...


def decimal_str(value: float | int | None, decimals: int) -> str | None:
    """``value`` as a fixed-decimal string ("0.4123"), half-even rounding; None stays None; no NaN/inf."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    text = str(d.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))
    return "0" + text[2:] if text.startswith("-0") and Decimal(text) == 0 else text  # no "-0.0000"


def new_event_id(now_ms: int | None = None, rand: bytes | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds + 74 random bits; unique even when the clock is wrong."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    r = os.urandom(10) if rand is None else rand
    if len(r) != 10:
        raise ValueError("rand must be 10 bytes")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (int.from_bytes(r[:2]) & 0xFFF) << 64
    value |= 0b10 << 62 | int.from_bytes(r[2:]) & (2**62 - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_utc(t: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: 2026-11-30T00:05:07.250Z."""
    if t.tzinfo is None:
        raise ValueError("the time must be timezone-aware")
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_local(t: datetime, tz: str) -> str:
    """RFC 3339 in the site's zone with its offset: 2026-11-30T08:05:07.250+08:00."""
    if t.tzinfo is None:
        raise ValueError("the time must be timezone-aware")
    return t.astimezone(zoneinfo.ZoneInfo(tz)).isoformat(timespec="milliseconds")


def evidence_ref(jpeg: bytes | None) -> dict[str, Any] | None:
    """The ``evidence`` field for a photo: its SHA-256 and size (the photo itself is sent separately)."""
    if jpeg is None:
        return None
    return {"sha256": hashlib.sha256(jpeg).hexdigest(), "bytes": len(jpeg)}


def liveness_field(v: LivenessLike | None) -> dict[str, Any] | None:
    """The ``decision.liveness`` field: the level, the result, what proved it, the parallax and texture scores; None
    when off."""
    if v is None:
        return None
    return {
        "level": v.level,
        "result": v.result,
        "method": v.method,
        "score": decimal_str(v.score, LIVENESS_DECIMALS),
        "blinks": int(v.blinks),
        "challenge": v.challenge,
        "extra_ms": round(v.extra_ms),
        "moving_surroundings": int(v.moving_surroundings),
        "texture": decimal_str(v.texture, LIVENESS_DECIMALS),
    }


def face_decision(decision: DecisionLike) -> dict[str, Any]:
    """The ``decision`` field of a face recognition (``liveness`` from the decision's verdict when it has one)."""
    return {
        "method": "face",
        "best_nip": decision.best_nip,
        "distance": decimal_str(decision.distance, DISTANCE_DECIMALS),
        "margin": decimal_str(decision.margin, DISTANCE_DECIMALS),
        "frames": int(decision.frames_used),
        "liveness": liveness_field(getattr(decision, "liveness", None)),
    }


def manual_decision(method: str = "manual") -> dict[str, Any]:
    """The ``decision`` field of an entry without face match (typed NIP: "manual", physical key: "key")."""
    if method not in ("manual", "key"):
        raise ValueError(f"method must be manual or key, not {method!r}")
    return {"method": method, "best_nip": None, "distance": None, "margin": None, "frames": 0, "liveness": None}


def _header(kind: str, stamp: Stamp, event_id: str | None) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "type": kind,
        "event_id": event_id or new_event_id(int(stamp.utc.timestamp() * 1000)),
        "device": stamp.device,
        "boot_id": stamp.boot_id,
        "mono_ns": stamp.mono_ns,
        "time_utc": format_utc(stamp.utc),
        "time_local": format_local(stamp.utc, stamp.tz),
        "tz": stamp.tz,
        "clock": stamp.clock.as_json(),
    }


def _checked(body: dict[str, Any]) -> dict[str, Any]:
    problems = validate(body, complete=False)
    if problems:
        raise ValueError("; ".join(problems))
    return body


def build_attendance(
    stamp: Stamp,
    *,
    kind: str,
    nip: str,
    decision: Mapping[str, Any],
    evidence: bytes | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An ``attendance`` body (no ``seq``/``sig`` yet); ``decision`` from :func:`face_decision`/``manual_decision``."""
    body = _header("attendance", stamp, event_id)
    body.update(kind=kind, person={"nip": nip}, decision=dict(decision), evidence=evidence_ref(evidence))
    return _checked(body)


def build_review(
    stamp: Stamp,
    *,
    reason: str,
    decision: Mapping[str, Any],
    nip: str | None = None,
    kind: str | None = None,
    evidence: bytes | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A ``review`` body: a person must look at it (unknown face, manual NIP entry, suspected spoof)."""
    body = _header("review", stamp, event_id)
    body.update(reason=reason, kind=kind, person={"nip": nip}, decision=dict(decision))
    body["evidence"] = evidence_ref(evidence)
    return _checked(body)


def build_status(
    stamp: Stamp,
    *,
    fps: float,
    outbox_depth: int,
    oldest_pending_age_s: int | None,
    gallery_version: str | None,
    cpu_temp_c: float | None,
    free_disk_bytes: int,
    gallery_office: str | None = None,
    refused_acks: int = 0,
    refused_commands: int = 0,
    schedule_version: str | None = None,
    selftest: Mapping[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A ``status`` body (periodic device health): what the kiosk runs (gallery office and version, the pushed
    schedule's version), its queue, its disk, and the acks and commands it refused since it started.
    ``schedule_version`` is left out while the kiosk runs its kiosk.toml schedule (contract 0.4 added it: a ledger
    older than that refuses it, and only a 0.4 ledger pushes schedules). ``selftest`` is the summary of a
    ``kiosk selftest --publish`` run (contract 0.5: result, failed and skipped checks, the report's sha256, the
    recognizer benchmark's figures), only in the status event that run stores."""
    body = _header("status", stamp, event_id)
    body.update(
        fps=decimal_str(fps, FPS_DECIMALS),
        outbox_depth=outbox_depth,
        oldest_pending_age_s=oldest_pending_age_s,
        gallery_version=gallery_version,
        gallery_office=gallery_office,
        cpu_temp_c=decimal_str(cpu_temp_c, TEMP_DECIMALS),
        free_disk_bytes=free_disk_bytes,
        refused_acks=refused_acks,
        refused_commands=refused_commands,
    )
    if schedule_version is not None:
        body["schedule_version"] = schedule_version
    if selftest is not None:
        body["selftest"] = dict(selftest)
    return _checked(body)


def build_time_anchor(stamp: Stamp, *, event_id: str | None = None) -> dict[str, Any]:
    """A ``time_anchor`` body: its ``time_utc``, ``boot_id`` and ``mono_ns`` are the first synced reading of a boot."""
    if not stamp.clock.synced:
        raise ValueError("a time anchor needs a synced clock")
    return _checked(_header("time_anchor", stamp, event_id))


def build_alarm(
    stamp: Stamp,
    *,
    alarm: str,
    detail: str | None = None,
    lost_seqs: Sequence[tuple[int, int]] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An ``alarm`` body (``outbox_recovered``, ``tamper``, ...).

    ``lost_seqs`` (``outbox_recovered``): the inclusive ``(first, last)`` seq ranges of committed events the kiosk
    lost and will never send, at most :data:`MAX_LOST_RANGES`; the server then stops asking for them. None leaves
    the field out (an alarm that says nothing about lost events); an empty list says that none was lost."""
    body = _header("alarm", stamp, event_id)
    body.update(alarm=alarm, detail=detail)
    if lost_seqs is not None:
        body["lost_seqs"] = [list(pair) if isinstance(pair, tuple | list) else pair for pair in lost_seqs]
    return _checked(body)


def with_seq(body: Mapping[str, Any], seq: int) -> dict[str, Any]:
    """A copy of ``body`` with the ``seq`` the outbox assigned (any old ``sig`` dropped: it no longer applies)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be an integer in 1..2**63-1, not {seq!r}")
    event = {k: v for k, v in body.items() if k != "sig"}
    event["seq"] = seq
    return event


# ---------------------------------------------------------------------------------------------------- validation


def validate(event: Any, *, complete: bool = True) -> list[str]:
    """Every problem of ``event`` as ``"<path>: <what>"``; empty when it is a valid v1 event.

    ``complete=False`` checks a body as stored in the outbox: ``seq`` and ``sig`` may be absent.
    The signature itself is not checked here (see :func:`kiosk_contract.signing.verify`).
    """
    if not isinstance(event, dict):
        return [f"$: an event must be a JSON object, not {kind(event)}"]
    if "v" in event and (event["v"] != SCHEMA_VERSION or isinstance(event["v"], bool)):
        return [f"$.v: unsupported schema version {short(event['v'])} (this reader knows {SCHEMA_VERSION})"]
    found = problems("event", event)
    if not complete:
        found = [p for p in found if p not in ("$.seq: missing", "$.sig: missing")]
    return found + _beyond_the_schema(event)


def _beyond_the_schema(event: dict[str, Any]) -> list[str]:
    """The rules a JSON Schema cannot state: the two times are one instant in the zone's offset; a face attendance
    is of its best match; an alarm's lost seq ranges run forwards (first <= last)."""
    found: list[str] = []
    utc = _parse_time(found, "$.time_utc", event.get("time_utc"), _UTC_RE)
    local = _parse_time(found, "$.time_local", event.get("time_local"), _LOCAL_RE)
    zone = None
    if isinstance(event.get("tz"), str):
        try:
            zone = zoneinfo.ZoneInfo(event["tz"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            found.append(f"$.tz: unknown IANA time zone {event['tz'][:80]!r}")
    if utc is not None and local is not None:
        if utc != local:
            found.append("$.time_local: is not the same instant as time_utc")
        elif zone is not None and utc.astimezone(zone).utcoffset() != local.utcoffset():
            found.append(f"$.time_local: offset does not match time zone {event['tz']}")
    if event.get("type") == "attendance":
        person, decision = event.get("person"), event.get("decision")
        if isinstance(person, dict) and isinstance(decision, dict) and decision.get("method") == "face":
            best, nip = decision.get("best_nip"), person.get("nip")
            if nip is not None and best not in (nip, None):
                found.append("$.decision.best_nip: differs from person.nip on a face attendance")
    if event.get("type") == "alarm" and isinstance(event.get("lost_seqs"), list):
        for i, pair in enumerate(event["lost_seqs"]):
            if isinstance(pair, list) and len(pair) == 2 and all(type(n) is int for n in pair) and pair[0] > pair[1]:
                found.append(f"$.lost_seqs[{i}]: first seq {pair[0]} is after last seq {pair[1]} (a range is "
                             "[first, last], first <= last)")
    return found


_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_LOCAL_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")


def _parse_time(found: list[str], path: str, text: Any, form: re.Pattern[str]) -> datetime | None:
    """The instant of a well-formed time field (the schema reports a malformed one); a date that does not exist
    (month 13) is reported here."""
    if not isinstance(text, str) or not form.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        found.append(f"{path}: {text!r} is not a valid date and time")
        return None


# ---------------------------------------------------------------------------------------------------- wire form


def to_bytes(event: Mapping[str, Any]) -> bytes:
    """The wire form: the canonical encoding (UTF-8, sorted keys, no whitespace), ``sig`` included."""
    data = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    raw = data.encode("utf-8")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventFormatError(f"event is {len(raw)} bytes, more than the limit of {MAX_EVENT_BYTES}")
    return raw


def from_bytes(data: bytes, *, check: bool = True, complete: bool = True) -> dict[str, Any]:
    """Parse an event; :class:`EventFormatError` (with ``problems``) for oversized, non-UTF-8, deeply nested or
    malformed JSON, duplicate keys, NaN/Infinity, a non-object, or (``check``) anything :func:`validate` reports."""
    try:
        value = loads_bounded(data, max_bytes=MAX_EVENT_BYTES, max_depth=MAX_EVENT_DEPTH, what="event")
    except JsonLimitError as exc:
        raise EventFormatError(str(exc)) from None
    if not isinstance(value, dict):
        raise EventFormatError(f"an event must be a JSON object, not {kind(value)}")
    if check:
        problems_found = validate(value, complete=complete)
        if problems_found:
            raise EventFormatError(
                f"invalid event: {len(problems_found)} problem(s): " + "; ".join(problems_found), problems_found
            )
    return value
