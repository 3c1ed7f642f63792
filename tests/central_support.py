"""Helpers of the central ledger's tests (no tests here): a scratch PostgreSQL schema or SQLite file per test, and a
device that makes real signed events the way a kiosk does (schema builders, then ``signing.seal`` with its seq)."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk_central.ingest import Ingestor, Outgoing, RegisteredDevice
from kiosk_central.settings import DeviceEntry
from kiosk_central.store import Ledger
from kiosk_contract import schema, signing
from kiosk_contract.acks import open_ack

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
PREFIX = "presensi/v1"
SITE = "kantor"
BOOT = "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2 + b"\xff\xd9"

CENTRAL_KEY = Ed25519PrivateKey.generate()  # the central server's key: it signs acks and commands
CENTRAL_KEYS = {signing.key_id_of(CENTRAL_KEY): CENTRAL_KEY.public_key()}

ALEX = "198001012005011001"
LIN = "198002022006021002"
OBAMA = "196108041990031001"

RULES = """
[deductions]
absent_percent = 3.0

[[offices]]
code = "bkpsdm"
name = "BKPSDM Kabupaten Contoh"
timezone = "Asia/Makassar"
ramadan = [{ start = 2026-02-19, end = 2026-03-20 }]
holidays = [{ date = 2026-02-17, name = "Tahun Baru Imlek" }]
collective_leave = [{ date = 2026-02-16, name = "Cuti bersama Imlek" }]

[[offices]]
code = "disdik"
name = "Dinas Pendidikan"
hours = [{ days = ["mon", "tue", "wed", "thu", "fri", "sat"], start = 07:30:00, end = 14:00:00 }]
"""


def wita(day: str, hhmm: str) -> datetime:
    """An aware UTC instant from a WITA (UTC+8) date and time."""
    local = datetime.fromisoformat(f"{day}T{hhmm}")
    return (local - timedelta(hours=8)).replace(tzinfo=UTC)


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty ledger database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    import psycopg

    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_SERVER} ({str(exc).strip()[:200]})")
    name = f"central_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_SERVER}?options=-csearch_path%3D{name}"
    finally:
        admin.execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()


def write_key(folder: Path, name: str) -> tuple[Any, Path]:
    """A new device key pair: (private key, public PEM file)."""
    private_pem, public_pem = signing.generate_key()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pub"
    path.write_bytes(public_pem)
    return signing.private_key_from_pem(private_pem), path


class Device:
    """A kiosk's event side without the camera: real builders, real seal, seq counted like the outbox."""

    def __init__(self, device_id: str, key: Any, boot_id: str = BOOT) -> None:
        self.id = device_id
        self.key = key
        self.boot_id = boot_id
        self.seq = 0
        self.mono = 10**9

    @property
    def topic(self) -> str:
        return f"{PREFIX}/{SITE}/{self.id}/event"

    def stamp(self, at: datetime, synced: bool = True, mono_ns: int | None = None) -> schema.Stamp:
        self.mono = mono_ns if mono_ns is not None else self.mono + 10**9
        clock = schema.ClockInfo(synced=synced, source="ntp" if synced else "none", since_boot_synced=synced)
        return schema.Stamp(self.id, self.boot_id, self.mono, at, "Asia/Makassar", clock)

    def seal(self, body: dict[str, Any], seq: int | None = None) -> tuple[str, bytes, dict[str, Any]]:
        """(topic, wire bytes, event) of ``body`` with the next seq (or the given one)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        wire = signing.seal(schema.to_bytes(body), seq, self.key)
        return self.topic, wire, schema.from_bytes(wire)

    def punch(self, nip: str, kind: str, at: datetime, *, synced: bool = True, mono_ns: int | None = None,
              evidence: bytes | None = None) -> tuple[str, bytes, dict[str, Any]]:
        body = schema.build_attendance(self.stamp(at, synced, mono_ns), kind=kind, nip=nip,
                                       decision=schema.manual_decision("key"), evidence=evidence)
        return self.seal(body)

    def evidence(self, event: dict[str, Any], jpeg: bytes = JPEG) -> tuple[str, bytes]:
        envelope = {"seq": event["seq"], "event_id": event["event_id"], "content_type": "image/jpeg",
                    "jpeg_b64": base64.b64encode(jpeg).decode()}
        return f"{PREFIX}/{SITE}/{self.id}/evidence", json.dumps(envelope).encode()


def registry_entry(device_id: str, office: str, key_file: Path, revoked: bool = False) -> DeviceEntry:
    return DeviceEntry(id=device_id, office=office, public_keys=(key_file,), revoked=revoked)


def ingestor(ledger: Ledger, registry: dict[str, RegisteredDevice], now: list[float], **kw: Any) -> Ingestor:
    """An ingestor on a clock the test moves (``now[0]`` in epoch seconds), signing with :data:`CENTRAL_KEY`."""
    return Ingestor(ledger, registry, topic_prefix=PREFIX, clock=lambda: now[0], signing_key=CENTRAL_KEY, **kw)


def acked(out: list[Outgoing]) -> list[tuple[int, str]]:
    """The (seq, event_id) pairs the acks in ``out`` confirm, each ack verified as a kiosk does it (signature by the
    central key, its device); sorted."""
    pairs: list[tuple[int, str]] = []
    for o in out:
        if o.suffix == "ack":
            pairs += open_ack(signing.wire(o.payload), CENTRAL_KEYS, device=o.device).events
    return sorted(pairs)


def acked_seqs(out: list[Outgoing]) -> list[int]:
    return [seq for seq, _ in acked(out)]
