"""Ingest: from MQTT messages to stored events, acknowledgements and resend requests (no network code here).

The subscriber (subscriber.py) hands batches of ``(topic, payload)`` to :meth:`Ingestor.handle_batch`, which stores
them in one transaction and returns, once it has committed, the messages to publish: acks signed with the central
key that name each stored event (with its photo, if it declares one) by seq and event id, with the seq conflicts
found, and ``resend`` commands for gaps. Each event is parsed and validated by the schema, verified against its
device's keys from the registry, stored once by (device, event_id) and (device, seq), and re-dated from its boot's
time anchor when it was stamped before the device's clock synced. Anything else is rejected with a reason, logged,
counted and recorded; nothing here raises on a bad message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk_central.settings import DeviceEntry
from kiosk_central.store import Ledger, ReportedLoss, utc_ms, utc_text
from kiosk_contract import schema, signing, topics, validation
from kiosk_contract.acks import Conflict, build_acks
from kiosk_contract.commands import build_command
from kiosk_contract.errors import ConfigError
from kiosk_contract.jsonbound import JsonLimitError, loads_bounded

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class RegisteredDevice:
    """A device of the registry: its office, whether it is revoked, and its public keys by key id."""

    device_id: str
    office: str
    revoked: bool
    keys: dict[str, Ed25519PublicKey] = field(hash=False)
    revoked_keys: frozenset[str] = frozenset()


def sync_registry(
    ledger: Ledger,
    devices: Iterable[DeviceEntry],
    registry_file: Path | None = None,
    revoked_file: Path | None = None,
) -> dict[str, RegisteredDevice]:
    """Write the devices and their keys into the ledger; returns the registry as stored.

    ``devices`` come from central.toml, ``registry_file`` and ``revoked_file`` from `provisioning/make-images`
    (registry.json, revoked.json). A device listed again gets exactly the keys listed now; a revoked key id is
    marked revoked (its events are refused); devices listed nowhere stay as they are.
    """
    listed = [(entry.id, entry.office, entry.revoked, signing.load_public_keys(list(entry.public_keys)))
              for entry in devices]
    if registry_file is not None:
        listed += _read_registry_file(registry_file, {d for d, _, _, _ in listed})
    revoked = _read_revoked_file(revoked_file) if revoked_file is not None else set()
    with ledger.transaction():
        for device_id, office, device_revoked, keys in listed:
            ledger.execute(
                "INSERT INTO devices (device_id, office, revoked, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT "
                "(device_id) DO UPDATE SET office = excluded.office, revoked = excluded.revoked, "
                "updated_at = excluded.updated_at",
                (device_id, office, int(device_revoked), utc_text()),
            )
            ledger.execute("DELETE FROM device_keys WHERE device_id = ?", (device_id,))
            for key_id, key in keys.items():
                owner = ledger.one("SELECT device_id FROM device_keys WHERE key_id = ?", (key_id,))
                if owner is not None:
                    raise signing.KeyFileError(f"devices: key {key_id} of {device_id} is already {owner[0]}'s key")
                ledger.execute(
                    "INSERT INTO device_keys (key_id, device_id, public_key_hex) VALUES (?, ?, ?)",
                    (key_id, device_id, signing.raw_public_key(key).hex()),
                )
        ledger.executemany("UPDATE device_keys SET revoked = 1 WHERE key_id = ?", [(k,) for k in sorted(revoked)])
    return read_registry(ledger)


def _read_registry_file(path: Path, configured: set[str]) -> list[tuple[str, str, bool, dict[str, Ed25519PublicKey]]]:
    """The entries of make-images' registry.json; every problem is reported with the entry's index."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"cannot read the device registry: {exc}"]) from None
    if not isinstance(entries, list):
        raise ConfigError(str(path), ["must be a JSON array of devices (provisioning/make-images writes it)"])
    problems: list[str] = []
    found: list[tuple[str, str, bool, dict[str, Ed25519PublicKey]]] = []
    for i, entry in enumerate(entries):
        where = f"[{i}]"
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) and entry[k] for k in ("device_id", "office", "key_id", "public_key")
        ):
            problems.append(f"{where}: needs the strings device_id, office, key_id and public_key")
            continue
        if entry["device_id"] in configured:
            problems.append(f"{where}: {entry['device_id']} is also in central.toml's [[devices]]; keep one")
            continue
        try:
            key = serialization.load_pem_public_key(entry["public_key"].encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            problems.append(f"{where}.public_key: not a PEM public key ({exc})")
            continue
        if not isinstance(key, Ed25519PublicKey):
            problems.append(f"{where}.public_key: {type(key).__name__}, not Ed25519")
        elif signing.key_id_of(key) != entry["key_id"]:
            problems.append(f"{where}.key_id: {entry['key_id']} is not the id of its public_key")
        else:
            configured.add(entry["device_id"])
            found.append((entry["device_id"], entry["office"], False, {entry["key_id"]: key}))
    if problems:
        raise ConfigError(str(path), problems)
    return found


def _read_revoked_file(path: Path) -> set[str]:
    """The revoked key ids of make-images' revoked.json."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("key_id"), str)
                                                    for e in entries):
            raise ValueError("must be a JSON array of objects with a key_id")
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"cannot read the revocation record: {exc}"]) from None
    return {e["key_id"] for e in entries}


def read_registry(ledger: Ledger) -> dict[str, RegisteredDevice]:
    """Every device of the ledger with its valid keys and its revoked key ids."""
    keys: dict[str, dict[str, Ed25519PublicKey]] = {}
    revoked: dict[str, set[str]] = {}
    for device_id, key_id, raw, key_revoked in ledger.rows(
        "SELECT device_id, key_id, public_key_hex, revoked FROM device_keys"
    ):
        if key_revoked:
            revoked.setdefault(device_id, set()).add(key_id)
        else:
            keys.setdefault(device_id, {})[key_id] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
    return {
        str(d): RegisteredDevice(str(d), str(office), bool(revoked_device), keys.get(d, {}),
                                 frozenset(revoked.get(d, set())))
        for d, office, revoked_device in ledger.rows("SELECT device_id, office, revoked FROM devices")
    }


@dataclass(frozen=True)
class Outgoing:
    """A message the subscriber publishes for a device: a signed ack or a command (topic suffix ``ack`` or ``cmd``);
    ``payload`` is the message as a dict, put on the wire by :func:`kiosk_contract.signing.wire`."""

    device: str
    site: str
    suffix: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Stored:
    """An event that is in the ledger after this batch (new, duplicate, or completed by its photo)."""

    device: str
    site: str
    event_id: str
    seq: int
    complete: bool  # its photo, if it declares one, is held too: it may be acknowledged


class _Rejected(Exception):
    """A message that is not stored; the text is the reason."""


@dataclass(frozen=True)
class _Conflict:
    """An event refused because the ledger holds another event of its device under its seq."""

    device: str
    site: str
    conflict: Conflict


_GapState = tuple[int, int | None, int, int | None]  # first missing seq, resend_from, resend_tries, last_resend_ms


class Ingestor:
    """Stores what devices publish; see the module docstring. Counters are in :attr:`counts`."""

    def __init__(
        self,
        ledger: Ledger,
        registry: dict[str, RegisteredDevice],
        *,
        topic_prefix: str = "presensi/v1",
        evidence_retention_s: float = 90 * 86400,
        evidence_max_bytes: int = 1_000_000,
        resend_interval_s: float = 30.0,
        resend_max_tries: int = 10,
        clock: Callable[[], float] = time.time,
        signing_key: Ed25519PrivateKey,
    ) -> None:
        self.ledger = ledger
        self.signing_key = signing_key  # the central key: every ack is signed with it
        self.registry = registry
        self.prefix = topic_prefix.strip("/") + "/"
        self.retention_ms = int(evidence_retention_s * 1000)
        self.evidence_max_bytes = evidence_max_bytes
        self.resend_interval_ms = int(resend_interval_s * 1000)
        self.resend_max_tries = resend_max_tries
        self._clock = clock
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._next_purge_ms = 0
        self._conflicts: list[_Conflict] = []  # found while storing the batch in hand

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    # ------------------------------------------------------------------ batches

    def handle_batch(self, messages: list[tuple[str, bytes]]) -> list[Outgoing]:
        """Store a batch in one transaction; then the acks and resends to publish (only after the commit).

        The batch's devices are locked first (``Ledger.lock_devices``), so that several workers on a shared
        subscription store one device's messages one transaction at a time."""
        stored: list[_Stored] = []
        self._conflicts = []
        with self.ledger.transaction():
            devices = {self._parse_topic_quietly(topic) for topic, _ in messages}
            self.ledger.lock_devices(d for d in devices if d is not None and d in self.registry)
            for topic, payload in messages:
                self.count("received")
                try:
                    found = self._handle(topic, payload)
                except _Rejected as exc:
                    self._reject(topic, payload, str(exc))
                    continue
                if found is not None:
                    stored.append(found)
        return self._acks(stored, self._conflicts) + self.tick()

    def tick(self) -> list[Outgoing]:
        """Housekeeping between batches: resend requests for gaps that lasted, and the evidence retention."""
        now = self._now_ms()
        out: list[Outgoing] = []
        with self.ledger.transaction():
            gaps = self.ledger.devices_with_gaps()
            if gaps:  # lock them like a batch does, then read again what another worker may have filled since
                self.ledger.lock_devices(gap[0] for gap in gaps)
                gaps = self.ledger.devices_with_gaps()
            for device, site, first_missing, resend_from, tries, last_ms in gaps:
                state = self._close_reported(device, (first_missing, resend_from, tries, last_ms))
                if state is None:
                    continue  # every missing seq was reported lost by the device: nothing to ask for
                first_missing, resend_from, tries, last_ms = state
                if resend_from != first_missing:  # a new gap: start its clock, ask after one interval
                    self.ledger.note_resend(device, first_missing, 0, now)
                    continue
                if last_ms is not None and now - last_ms < self.resend_interval_ms:
                    continue
                if tries >= self.resend_max_tries:
                    self._give_up(device, tries)
                    self._close_reported(device, None)  # a reported range right after it closes now too
                    continue
                self.ledger.note_resend(device, first_missing, tries + 1, now)
                out.append(Outgoing(device, site, "cmd", build_command("resend", key=self.signing_key,
                                                                       from_seq=first_missing)))
                self.count("resend_requests")
                log.info("ledger: device %s: asking to resend from seq %d", device, first_missing)
            if now >= self._next_purge_ms:
                self._next_purge_ms = now + _HOUR_MS
                purged = self.ledger.purge_evidence(now)
                if purged:
                    self.count("evidence_purged", purged)
                    log.info("ledger: deleted %d evidence photo(s) past their retention", purged)
        return out

    def _give_up(self, device: str, tries: int) -> None:
        """Stop asking for a gap (up to the first seq the device reported lost, if it reported any in it): a rejection
        row and an alarm for IT with the missing range. Nothing is acknowledged: the device keeps those events, and if
        one arrives later it is stored and acknowledged then."""
        gap = self.ledger.gap(device)
        if gap is None:
            return
        reported = self.ledger.reported_losses(device, *gap)
        gap = self.ledger.skip_gap(device, upto=min([gap[1]] + [r.first_seq - 1 for r in reported
                                                                 if r.first_seq > gap[0]]))
        if gap is None:
            return
        first, last = gap
        span = f"seq {first}" if first == last else f"seq {first}..{last}"
        reason = (f"{span} never arrived after {tries} resend requests (lost on the device, or numbers it skipped "
                  "after a crash); not acknowledged: stored and acknowledged if it comes later")
        self.ledger.reject("gap", device, None, reason)
        self.ledger.alarm(device, "gap_given_up", reason)
        self.count("gaps_given_up")
        log.warning("ledger: device %s: %s", device, reason)

    def _close_reported(self, device: str, state: _GapState | None) -> _GapState | None:
        """Close at once the seqs at the start of the device's gap that the device reported lost (``lost_seqs`` of
        an alarm event): a ``reported_lost`` rejection row and alarm, no resend request. Repeated while the next gap
        starts with reported seqs too. Returns the resend state of the gap that remains (the requests already made
        for the closed seqs count for the rest: a resend asks for everything from its seq), None when none does."""
        while True:
            gap = self.ledger.gap(device)
            if gap is None:
                return None
            first, last = gap
            covered_to, used = first - 1, []
            for report in self.ledger.reported_losses(device, first, last):
                if report.first_seq > covered_to + 1:
                    break
                if report.last_seq > covered_to:
                    covered_to = report.last_seq
                    used.append(report)
                if covered_to >= last:
                    break
            if covered_to < first:
                if state is None or state[0] != first:
                    return first, None, 0, None
                return state
            closed = self.ledger.skip_gap(device, upto=min(covered_to, last))
            if closed is None:
                return None
            self._reported_lost(device, closed, used)
            if covered_to < last:  # the rest of this gap was not reported: it is asked for as before
                if state is not None and state[1] == state[0] == first:
                    tries, last_ms = state[2], state[3] or 0
                    self.ledger.note_resend(device, covered_to + 1, tries, last_ms)
                    return covered_to + 1, covered_to + 1, tries, last_ms
                return covered_to + 1, None, 0, None
            state = None

    def _reported_lost(self, device: str, closed: tuple[int, int], reports: list[ReportedLoss]) -> None:
        first, last = closed
        span = f"seq {first}" if first == last else f"seq {first}..{last}"
        by = ", ".join(f"event {r.event_id} (seq {r.alarm_seq})" for r in reports[:3])
        more = f" and {len(reports) - 3} more" if len(reports) > 3 else ""
        alarm = reports[0].alarm if reports else "alarm"
        reason = (f"{span} reported lost by the device (its {alarm} alarm, {by}{more}): gap closed without resend "
                  "requests; not acknowledged: stored and acknowledged if it comes later")
        self.ledger.reject("reported_lost", device, reports[0].event_id if reports else None, reason)
        self.ledger.alarm(device, "reported_lost", reason)
        self.count("gaps_reported_lost")
        log.warning("ledger: device %s: %s", device, reason)

    def purge_now(self) -> int:
        """Apply the evidence retention now (the next tick would do it within the hour)."""
        with self.ledger.transaction():
            purged = self.ledger.purge_evidence(self._now_ms())
        self.count("evidence_purged", purged)
        return purged

    # ------------------------------------------------------------------ one message

    def _handle(self, topic: str, payload: bytes) -> _Stored | None:
        site, device, suffix = self._parse_topic(topic)
        if suffix == "event":
            return self._event(site, device, payload)
        if suffix == "evidence":
            return self._evidence(site, device, payload)
        raise _Rejected(f"not an event or evidence topic: {topic[:200]}")

    def _parse_topic(self, topic: str) -> tuple[str, str, str]:
        try:
            return topics.parse(topic, self.prefix)
        except ValueError as exc:
            raise _Rejected(str(exc)) from None

    def _device(self, device: str) -> RegisteredDevice:
        known = self.registry.get(device)
        if known is None:
            raise _Rejected(f"unknown device {device!r}: add it with its public key to the registry (devices)")
        if known.revoked:
            raise _Rejected(f"device {device!r} is revoked")
        return known

    def _event(self, site: str, device: str, payload: bytes) -> _Stored | None:
        try:
            event = schema.from_bytes(payload)
        except schema.EventFormatError as exc:
            raise _Rejected(f"malformed event: {exc}") from None
        if event["device"] != device:
            raise _Rejected(f"event of device {event['device']!r} published on {device!r}'s topic")
        known = self._device(device)
        key_id = event["sig"]["key_id"]
        if key_id in known.revoked_keys:
            raise _Rejected(f"signed with key {key_id} of {device!r}, which is revoked (revoked.json)")
        try:
            signing.verify(event, known.keys)
        except signing.SignatureError as exc:
            raise _Rejected(f"signature: {exc}") from None
        time_ms, source = self._event_time(event)
        declared = event.get("evidence")
        complete = declared is None or self.ledger.has_evidence(device, event["event_id"], declared["sha256"])
        outcome = self.ledger.insert_event(event, payload.decode("utf-8"), time_ms, source, complete)
        if outcome == "seq_taken":
            other = self.ledger.event_at_seq(device, event["seq"]) or "?"
            reason = (f"seq conflict: seq {event['seq']} is already event {other}; event {event['event_id']} is not "
                      "stored (the device numbered two events alike: its outbox was damaged or replaced)")
            self.ledger.alarm(device, "seq_conflict", reason)
            self.count("seq_conflicts")
            self._conflicts.append(_Conflict(device, site, Conflict(event["seq"], event["event_id"], other)))
            raise _Rejected(reason)
        if outcome == "duplicate":
            self.count("duplicates")
            found = self.ledger.stored_event(device, event["event_id"])
            return _Stored(device, site, event["event_id"], event["seq"], bool(found and found.evidence_ok))
        self.count("stored")
        self.ledger.advance(device, site, event["seq"])
        if source == "unanchored":
            self.count("unanchored")
        if event["type"] == "review":
            self.ledger.enqueue_review(device, event["event_id"], event["reason"])
        elif event["type"] == "time_anchor":
            self._redate(device, event)
        elif event["type"] == "status":
            self.ledger.set_running(device, event["seq"], event["gallery_version"], event.get("gallery_office"),
                                    event.get("schedule_version"))
            if "selftest" in event:
                self.ledger.set_selftest(device, event["seq"], event["time_utc"], event["selftest"])
        elif event["type"] == "alarm":
            detail = event["detail"] or ""
            if "lost_seqs" in event:
                detail = "; ".join(part for part in (detail, self._losses(device, event)) if part)
            self.ledger.alarm(device, event["alarm"], detail)
        return _Stored(device, site, event["event_id"], event["seq"], complete)

    def _losses(self, device: str, event: dict[str, Any]) -> str:
        """Record the seq ranges an alarm reports lost (overlaps merged; only seqs below the alarm's own, the only
        ones its outbox can have numbered before it) and say how many of them the ledger already holds and how many
        it will never get (the gaps they leave are closed at the next tick, without resend requests)."""
        ranges = _merged((first, min(last, event["seq"] - 1)) for first, last in event["lost_seqs"]
                         if first < event["seq"])
        ignored = _merged((max(first, event["seq"]), last) for first, last in event["lost_seqs"]
                          if last >= event["seq"])
        self.ledger.report_losses(device, event["event_id"], event["alarm"], event["seq"], ranges)
        total = sum(last - first + 1 for first, last in ranges)
        held = sum(self.ledger.held_count(device, first, last) for first, last in ranges)
        if not ranges:
            text = "reported no lost event"
        elif held == total:
            text = (f"reported lost {_spans(ranges)} ({total} seq(s)): the ledger already holds all of them, none is "
                    "missing")
        else:
            missing: list[tuple[int, int]] = []
            for first, last in ranges:
                missing += self.ledger.missing_ranges(device, first, last, limit=6 - len(missing))
                if len(missing) >= 6:
                    break
            shown = _spans(missing[:5]) + (", ..." if sum(b - a + 1 for a, b in missing[:5]) < total - held else "")
            text = (f"reported lost {_spans(ranges)} ({total} seq(s)): the ledger already holds {held}, {total - held} "
                    f"missing for good ({shown}): not asked for again")
        if ignored:
            text += f"; {_spans(ignored)} ignored (not below the alarm's own seq {event['seq']})"
        self.count("lost_seqs_reported", total - held)
        log.warning("ledger: device %s: %s", device, text)
        return text

    def _event_time(self, event: dict[str, Any]) -> tuple[int | None, str]:
        """The instant to believe: the device's when its clock had synced this boot, else from the boot's anchor;
        (None, "unanchored") while no anchor has arrived."""
        if event["clock"]["since_boot_synced"]:
            return utc_ms(event["time_utc"]), "device"
        anchor = self.ledger.anchor(event["device"], event["boot_id"])
        if anchor is None:
            return None, "unanchored"
        return corrected_ms(anchor, event["mono_ns"]), "anchor"

    def _redate(self, device: str, anchor_event: dict[str, Any]) -> None:
        anchor = self.ledger.anchor(device, anchor_event["boot_id"])
        if anchor is None:
            return
        waiting = self.ledger.unanchored(device, anchor_event["boot_id"])
        for event_id, mono in waiting:
            self.ledger.set_time(device, event_id, corrected_ms(anchor, mono), "anchor")
        if waiting:
            self.count("redated", len(waiting))
            log.info("ledger: device %s: %d event(s) re-dated from the time anchor of boot %s",
                     device, len(waiting), anchor_event["boot_id"])

    def _evidence(self, site: str, device: str, payload: bytes) -> _Stored | None:
        self._device(device)
        limit = self.evidence_max_bytes * 4 // 3 + 1024
        try:
            envelope = loads_bounded(payload, max_bytes=limit, max_depth=2, what="evidence")
        except JsonLimitError as exc:
            raise _Rejected(f"malformed evidence: {exc} (evidence.max_bytes is {self.evidence_max_bytes})") from None
        wrong = validation.problems("evidence", envelope)
        if wrong:
            raise _Rejected("malformed evidence: " + "; ".join(wrong[:5]))
        event_id = envelope["event_id"]
        try:
            jpeg = base64.b64decode(envelope["jpeg_b64"].encode("ascii"), validate=True)
        except (ValueError, binascii.Error) as exc:
            raise _Rejected(f"malformed evidence: jpeg_b64 is not base64 ({exc})") from None
        if len(jpeg) > self.evidence_max_bytes:
            raise _Rejected(f"malformed evidence: photo larger than evidence.max_bytes ({self.evidence_max_bytes})")
        if not jpeg.startswith(b"\xff\xd8"):
            raise _Rejected(f"evidence for {event_id} is not a JPEG")
        sha = hashlib.sha256(jpeg).hexdigest()
        stored = self.ledger.stored_event(device, event_id)
        if stored is not None and stored.evidence_sha256 != sha:
            raise _Rejected(f"evidence for {event_id} does not match the SHA-256 its signed event declares")
        self.ledger.put_evidence(device, event_id, sha, jpeg, self._now_ms() + self.retention_ms)
        self.count("evidence")
        completed = self.ledger.evidence_arrived(device, event_id, sha)
        if completed is None:
            return None
        return _Stored(device, site, event_id, completed.seq, True)

    def _reject(self, topic: str, payload: bytes, reason: str) -> None:
        device = self._parse_topic_quietly(topic)
        event_id = None
        try:
            parsed = loads_bounded(payload, max_bytes=self.evidence_max_bytes * 2, max_depth=8, what="message")
            if isinstance(parsed, dict) and isinstance(parsed.get("event_id"), str):
                event_id = parsed["event_id"][:64]
        except JsonLimitError:
            pass  # the reason says what is wrong with it; the id is only a help
        self.count("rejected")
        self.ledger.reject(topic, device, event_id, reason)
        log.warning("ledger: rejected a message on %s: %s", topic[:200], reason[:500])

    def _parse_topic_quietly(self, topic: str) -> str | None:
        try:
            return self._parse_topic(topic)[1]
        except _Rejected:
            return None

    # ------------------------------------------------------------------ acknowledgements

    def _acks(self, stored: list[_Stored], conflicts: list[_Conflict]) -> list[Outgoing]:
        """Signed acks naming each stored event (whose photo, if it declares one, is held too) by seq and event id,
        and the seq conflicts found; one or more messages per device."""
        ready: dict[str, list[_Stored]] = {}
        for item in stored:
            if item.complete:
                ready.setdefault(item.device, []).append(item)
        found: dict[str, list[_Conflict]] = {}
        for c in conflicts:
            found.setdefault(c.device, []).append(c)
        out: list[Outgoing] = []
        for device in sorted(set(ready) | set(found)):
            items, clashes = ready.get(device, []), found.get(device, [])
            site = (items or clashes)[-1].site
            pairs = {(i.seq, i.event_id) for i in items}
            for message in build_acks(device, pairs, self.signing_key, conflicts=[c.conflict for c in clashes]):
                out.append(Outgoing(device, site, "ack", message))
            self.count("acked", len(pairs))
        return out


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive (first, last) ranges sorted, with overlapping and adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _spans(ranges: Iterable[tuple[int, int]]) -> str:
    """``seq 5..7, 9`` for [(5, 7), (9, 9)]."""
    return "seq " + ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in ranges)


def corrected_ms(anchor: tuple[str, int], mono_ns: int) -> int:
    """``anchor.time_utc - (anchor.mono_ns - event.mono_ns)`` in milliseconds (docs/events.md)."""
    anchor_utc, anchor_mono = anchor
    return utc_ms(anchor_utc) - round((anchor_mono - mono_ns) / 1_000_000)
