"""The attendance event, schema version 1: builders, validation and the JSON wire form (see docs/events.md).

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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from kiosk_contract.errors import KioskError
from kiosk_contract.punch import PUNCH_KINDS

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 16 * 1024  # an event is a few hundred bytes; the photo travels separately (evidence)
MAX_SEQ = 2**63 - 1
MAX_INT = 2**63 - 1
DEFAULT_TZ = "Asia/Makassar"

TYPES = ("attendance", "review", "status", "time_anchor", "alarm")

REVIEW_REASONS = ("unknown_face", "manual_entry", "suspected_spoof")
METHODS = ("face", "manual", "key")
LIVENESS_LEVELS = ("passive", "challenge")
LIVENESS_RESULTS = ("live", "spoof", "undecided")
LIVENESS_METHODS = ("blink", "parallax", "challenge", "none")
CHALLENGES = ("blink", "turn_left", "turn_right")  # the actions; a challenge is 1-3 of them joined by "+"
MAX_CHALLENGE_STEPS = 3
LIVENESS_DECIMALS = 4
CLOCK_SOURCES = ("ntp", "rtc", "none", "unknown")
KNOWN_ALARMS = ("outbox_recovered", "tamper", "clock_jump", "disk_low", "camera_lost", "gallery_invalid")

DISTANCE_DECIMALS = 4
FPS_DECIMALS = 1
TEMP_DECIMALS = 1

_HEADER = ("v", "type", "event_id", "device", "boot_id", "mono_ns", "time_utc", "time_local", "tz", "clock")
_FIELDS: dict[str, tuple[str, ...]] = {
    "attendance": ("kind", "person", "decision", "evidence"),
    "review": ("reason", "kind", "person", "decision", "evidence"),
    "status": (
        "fps",
        "outbox_depth",
        "oldest_pending_age_s",
        "gallery_version",
        "cpu_temp_c",
        "free_disk_bytes",
    ),
    "time_anchor": (),
    "alarm": ("alarm", "detail"),
}
_DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EVENT_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_BOOT_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NIP_RE = re.compile(r"^[0-9]{18}$")
_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_LOCAL_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ALARM_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_B64_RE = re.compile(r"^[A-Za-z0-9+/]{86}==$")  # 64 bytes of Ed25519 signature


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
    """The ``decision.liveness`` field: the level, the result, what proved it and the parallax score; None when off."""
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
    event_id: str | None = None,
) -> dict[str, Any]:
    """A ``status`` body (periodic device health)."""
    body = _header("status", stamp, event_id)
    body.update(
        fps=decimal_str(fps, FPS_DECIMALS),
        outbox_depth=outbox_depth,
        oldest_pending_age_s=oldest_pending_age_s,
        gallery_version=gallery_version,
        cpu_temp_c=decimal_str(cpu_temp_c, TEMP_DECIMALS),
        free_disk_bytes=free_disk_bytes,
    )
    return _checked(body)


def build_time_anchor(stamp: Stamp, *, event_id: str | None = None) -> dict[str, Any]:
    """A ``time_anchor`` body: its ``time_utc``, ``boot_id`` and ``mono_ns`` are the first synced reading of a boot."""
    if not stamp.clock.synced:
        raise ValueError("a time anchor needs a synced clock")
    return _checked(_header("time_anchor", stamp, event_id))


def build_alarm(stamp: Stamp, *, alarm: str, detail: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    """An ``alarm`` body (``outbox_recovered``, ``tamper``, ...)."""
    body = _header("alarm", stamp, event_id)
    body.update(alarm=alarm, detail=detail)
    return _checked(body)


def with_seq(body: Mapping[str, Any], seq: int) -> dict[str, Any]:
    """A copy of ``body`` with the ``seq`` the outbox assigned (any old ``sig`` dropped: it no longer applies)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be an integer in 1..2**63-1, not {seq!r}")
    event = {k: v for k, v in body.items() if k != "sig"}
    event["seq"] = seq
    return event


# ---------------------------------------------------------------------------------------------------- validation


class _V:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def obj(self, path: str, value: Any, keys: tuple[str, ...]) -> Mapping[str, Any] | None:
        if not isinstance(value, dict):
            self.report(path, f"must be an object, not {_kind(value)}")
            return None
        for key in keys:
            if key not in value:
                self.report(f"{path}.{key}", "missing")
        for key in value:
            if key not in keys:
                self.report(f"{path}.{key}", "unknown field")
        return value

    def field(self, parent: Mapping[str, Any] | None, path: str, key: str) -> tuple[bool, Any]:
        if parent is None or key not in parent:
            return False, None
        return True, parent[key]

    def string(self, path: str, value: Any, pattern: re.Pattern[str] | None = None, what: str = "") -> bool:
        if not isinstance(value, str):
            self.report(path, f"must be a string, not {_kind(value)}")
            return False
        if pattern is not None and not pattern.match(value):
            self.report(path, f"{value[:80]!r} is not {what or 'well-formed'}")
            return False
        return True

    def choice(self, path: str, value: Any, choices: tuple[str, ...]) -> bool:
        if not isinstance(value, str) or value not in choices:
            self.report(path, f"{_short(value)} is not one of {', '.join(choices)}")
            return False
        return True

    def integer(self, path: str, value: Any, lo: int, hi: int = MAX_INT) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            self.report(path, f"must be an integer, not {_kind(value)}")
            return False
        if not lo <= value <= hi:
            self.report(path, f"{value} is out of range {lo}..{hi}")
            return False
        return True

    def boolean(self, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.report(path, f"must be true or false, not {_kind(value)}")
            return False
        return True

    def decimal(self, path: str, value: Any, decimals: int, signed: bool = False) -> bool:
        sign = "-?" if signed else ""
        pattern = re.compile(rf"^{sign}(0|[1-9][0-9]{{0,11}})\.[0-9]{{{decimals}}}$")
        if not isinstance(value, str) or not pattern.match(value):
            example = "0." + "0" * decimals
            self.report(path, f"{_short(value)} must be a decimal string with {decimals} decimals, like {example!r}")
            return False
        return True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )


def _short(value: Any) -> str:
    return repr(value)[:80] if isinstance(value, str) else _kind(value)


def validate(event: Any, *, complete: bool = True) -> list[str]:
    """Every problem of ``event`` as ``"<path>: <what>"``; empty when it is a valid v1 event.

    ``complete=False`` checks a body as stored in the outbox: ``seq`` and ``sig`` may be absent.
    The signature itself is not checked here (see :func:`kiosk_contract.signing.verify`).
    """
    v = _V()
    if not isinstance(event, dict):
        v.report("$", f"an event must be a JSON object, not {_kind(event)}")
        return v.problems
    if "v" not in event:
        v.report("$.v", "missing")
    elif event["v"] != SCHEMA_VERSION or isinstance(event["v"], bool):
        v.report("$.v", f"unsupported schema version {_short(event['v'])} (this reader knows {SCHEMA_VERSION})")
        return v.problems
    etype = event.get("type")
    if "type" not in event:
        v.report("$.type", "missing")
    elif not v.choice("$.type", etype, TYPES):
        etype = None
    extra = _FIELDS.get(etype, ()) if isinstance(etype, str) else ()
    known = (*_HEADER, "seq", "sig", *extra)
    required = [*_HEADER, *extra] + (["seq", "sig"] if complete else [])
    for key in required:
        if key not in event:
            v.report(f"$.{key}", "missing")
    if etype is not None:
        for key in event:
            if key not in known:
                v.report(f"$.{key}", f"unknown field for type {etype}")

    def has(key: str) -> bool:
        return key in event

    if has("event_id"):
        v.string("$.event_id", event["event_id"], _EVENT_ID_RE, "a lowercase UUIDv7")
    if has("device"):
        v.string("$.device", event["device"], _DEVICE_RE, "a device id (1-64 of A-Z a-z 0-9 . _ -)")
    if has("seq"):
        v.integer("$.seq", event["seq"], 1, MAX_SEQ)
    if has("boot_id"):
        v.string("$.boot_id", event["boot_id"], _BOOT_ID_RE, "a lowercase UUID")
    if has("mono_ns"):
        v.integer("$.mono_ns", event["mono_ns"], 0)
    _check_times(v, event)
    clock = v.obj("$.clock", event["clock"], ("synced", "source", "since_boot_synced")) if has("clock") else None
    if clock is not None:
        for key in ("synced", "since_boot_synced"):
            if key in clock:
                v.boolean(f"$.clock.{key}", clock[key])
        if "source" in clock:
            v.choice("$.clock.source", clock["source"], CLOCK_SOURCES)
        if clock.get("synced") is True and clock.get("since_boot_synced") is False:
            v.report("$.clock.since_boot_synced", "must be true when clock.synced is true")
    if has("sig"):
        sig = v.obj("$.sig", event["sig"], ("alg", "key_id", "value"))
        if sig is not None:
            if "alg" in sig:
                v.choice("$.sig.alg", sig["alg"], ("ed25519",))
            if "key_id" in sig:
                v.string("$.sig.key_id", sig["key_id"], _KEY_ID_RE, "16 lowercase hex digits")
            if "value" in sig:
                v.string("$.sig.value", sig["value"], _B64_RE, "a base64 Ed25519 signature (64 bytes)")

    if etype in ("attendance", "review"):
        _check_person_decision(v, event, etype)
    elif etype == "status":
        if has("fps"):
            v.decimal("$.fps", event["fps"], FPS_DECIMALS)
        if has("outbox_depth"):
            v.integer("$.outbox_depth", event["outbox_depth"], 0)
        if has("oldest_pending_age_s") and event["oldest_pending_age_s"] is not None:
            v.integer("$.oldest_pending_age_s", event["oldest_pending_age_s"], 0)
        if has("gallery_version") and event["gallery_version"] is not None:
            v.string("$.gallery_version", event["gallery_version"])
        if has("cpu_temp_c") and event["cpu_temp_c"] is not None:
            v.decimal("$.cpu_temp_c", event["cpu_temp_c"], TEMP_DECIMALS, signed=True)
        if has("free_disk_bytes"):
            v.integer("$.free_disk_bytes", event["free_disk_bytes"], 0)
    elif etype == "time_anchor":
        if isinstance(clock, dict) and clock.get("synced") is False:
            v.report("$.clock.synced", "a time_anchor is made from a synced clock")
    elif etype == "alarm":
        if has("alarm"):
            v.string("$.alarm", event["alarm"], _ALARM_RE, "an alarm name (lowercase, digits, _)")
        detail = event.get("detail")
        if detail is not None and v.string("$.detail", detail) and len(detail) > 1000:
            v.report("$.detail", "longer than 1000 characters")
    return v.problems


def _check_times(v: _V, event: Mapping[str, Any]) -> None:
    utc = local = None
    if "time_utc" in event and v.string(
        "$.time_utc", event["time_utc"], _UTC_RE, "RFC 3339 UTC like 2026-11-30T00:05:07.250Z"
    ):
        utc = _parse_time(v, "$.time_utc", event["time_utc"].replace("Z", "+00:00"))
    if "time_local" in event and v.string(
        "$.time_local", event["time_local"], _LOCAL_RE, "RFC 3339 with offset like 2026-11-30T08:05:07.250+08:00"
    ):
        local = _parse_time(v, "$.time_local", event["time_local"])
    zone = None
    if "tz" in event and v.string("$.tz", event["tz"]):
        try:
            zone = zoneinfo.ZoneInfo(event["tz"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            v.report("$.tz", f"unknown IANA time zone {event['tz'][:80]!r}")
    if utc is not None and local is not None and utc != local:
        v.report("$.time_local", "is not the same instant as time_utc")
    if (
        utc is not None
        and local is not None
        and zone is not None
        and utc.astimezone(zone).utcoffset() != local.utcoffset()
    ):
        v.report("$.time_local", f"offset does not match time zone {event['tz']}")


def _parse_time(v: _V, path: str, text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        v.report(path, f"{text!r} is not a valid date and time")
        return None


def _check_person_decision(v: _V, event: Mapping[str, Any], etype: str) -> None:
    person = v.obj("$.person", event["person"], ("nip",)) if "person" in event else None
    nip: Any = person.get("nip") if person is not None else None
    if person is not None and "nip" in person:
        if nip is None:
            if etype == "attendance":
                v.report("$.person.nip", "an attendance needs a NIP")
            elif event.get("reason") == "manual_entry":
                v.report("$.person.nip", "a manual entry needs the typed NIP")
        else:
            v.string("$.person.nip", nip, _NIP_RE, "an 18-digit NIP")
    if etype == "attendance" and "kind" in event:
        v.choice("$.kind", event["kind"], PUNCH_KINDS)
    if etype == "review":
        if "reason" in event:
            v.choice("$.reason", event["reason"], REVIEW_REASONS)
        if "kind" in event and event["kind"] is not None:
            v.choice("$.kind", event["kind"], PUNCH_KINDS)
    keys = ("method", "best_nip", "distance", "margin", "frames", "liveness")
    decision = v.obj("$.decision", event["decision"], keys) if "decision" in event else None
    if decision is not None:
        method = decision.get("method")
        if "method" in decision and not v.choice("$.decision.method", method, METHODS):
            method = None
        if decision.get("best_nip") is not None:
            v.string("$.decision.best_nip", decision["best_nip"], _NIP_RE, "an 18-digit NIP")
        for key in ("distance", "margin"):
            if key not in decision:
                continue
            if decision[key] is None:
                if method == "face" and key == "distance":
                    v.report("$.decision.distance", "a face decision needs its distance")
            else:
                v.decimal(f"$.decision.{key}", decision[key], DISTANCE_DECIMALS, signed=key == "margin")
        if "frames" in decision:
            v.integer("$.decision.frames", decision["frames"], 0, 10_000)
        if decision.get("liveness") is not None:
            _check_liveness(v, decision["liveness"], method, etype, event.get("reason"))
        best = decision.get("best_nip")
        if etype == "attendance" and method == "face" and nip is not None and best not in (nip, None):
            v.report("$.decision.best_nip", "differs from person.nip on a face attendance")
    if "evidence" in event and event["evidence"] is not None:
        ev = v.obj("$.evidence", event["evidence"], ("sha256", "bytes"))
        if ev is not None:
            if "sha256" in ev:
                v.string("$.evidence.sha256", ev["sha256"], _SHA256_RE, "64 lowercase hex digits")
            if "bytes" in ev:
                v.integer("$.evidence.bytes", ev["bytes"], 1, 10_000_000)


def _check_liveness(v: _V, value: Any, method: Any, etype: str, reason: Any) -> None:
    keys = ("level", "result", "method", "score", "blinks", "challenge", "extra_ms", "moving_surroundings")
    live = v.obj("$.decision.liveness", value, keys)
    if live is None:
        return
    if method not in (None, "face"):
        v.report("$.decision.liveness", "only a face decision has a liveness result")
    if "level" in live:
        v.choice("$.decision.liveness.level", live["level"], LIVENESS_LEVELS)
    if "result" in live and v.choice("$.decision.liveness.result", live["result"], LIVENESS_RESULTS):
        if etype == "attendance" and live["result"] != "live":
            v.report("$.decision.liveness.result", "an attendance needs a live face")
        if reason == "suspected_spoof" and live["result"] == "live":
            v.report("$.decision.liveness.result", "a suspected spoof cannot be live")
    if "method" in live:
        v.choice("$.decision.liveness.method", live["method"], LIVENESS_METHODS)
    if "score" in live:
        v.decimal("$.decision.liveness.score", live["score"], LIVENESS_DECIMALS)
    if "blinks" in live:
        v.integer("$.decision.liveness.blinks", live["blinks"], 0, 10_000)
    if live.get("challenge") is not None:
        _check_challenge(v, live["challenge"])
    if "extra_ms" in live:
        v.integer("$.decision.liveness.extra_ms", live["extra_ms"], 0, 3_600_000)
    if "moving_surroundings" in live:
        v.integer("$.decision.liveness.moving_surroundings", live["moving_surroundings"], 0, 1_000_000)


def _check_challenge(v: _V, value: Any) -> None:
    path = "$.decision.liveness.challenge"
    if not isinstance(value, str):
        v.report(path, f"must be a string of actions joined by '+', not {_kind(value)}")
        return
    steps = value.split("+")
    if len(steps) > MAX_CHALLENGE_STEPS:
        v.report(path, f"{_short(value)} has {len(steps)} actions, at most {MAX_CHALLENGE_STEPS}")
    for step in steps:
        if step not in CHALLENGES:
            v.report(path, f"{_short(step)} in {_short(value)} is not one of {', '.join(CHALLENGES)}")


# ---------------------------------------------------------------------------------------------------- wire form


def to_bytes(event: Mapping[str, Any]) -> bytes:
    """The wire form: the canonical encoding (UTF-8, sorted keys, no whitespace), ``sig`` included."""
    data = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    raw = data.encode("utf-8")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventFormatError(f"event is {len(raw)} bytes, more than the limit of {MAX_EVENT_BYTES}")
    return raw


def from_bytes(data: bytes, *, check: bool = True, complete: bool = True) -> dict[str, Any]:
    """Parse an event; :class:`EventFormatError` (with ``problems``) for oversized, non-UTF-8, malformed JSON,
    duplicate keys, NaN/Infinity, a non-object, or (``check``) anything :func:`validate` reports."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("from_bytes expects bytes")
    data = bytes(data)
    if len(data) > MAX_EVENT_BYTES:
        raise EventFormatError(f"event is {len(data)} bytes, more than the limit of {MAX_EVENT_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventFormatError(f"event is not UTF-8: invalid byte at offset {exc.start}") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EventFormatError(f"event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except _Malformed as exc:
        raise EventFormatError(f"event is not valid JSON: {exc}") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise EventFormatError(f"event is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise EventFormatError("event is not valid JSON: nested too deeply") from exc
    if not isinstance(value, dict):
        raise EventFormatError(f"an event must be a JSON object, not {_kind(value)}")
    if check:
        problems = validate(value, complete=complete)
        if problems:
            raise EventFormatError(f"invalid event: {len(problems)} problem(s): " + "; ".join(problems), problems)
    return value


class _Malformed(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Malformed(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Malformed(f"{name} is not allowed")
