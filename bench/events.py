"""Events: durable commits per second, bytes on disk, outbox drain through MQTT, and a fault run with no loss.

1. ``Outbox.append`` of signed-size attendance bodies (built with kiosk_contract.schema), with and without a
   15 KB evidence blob; the outbox's own WAL + ``synchronous=FULL``; median and p99 ms per commit.
2. Bytes on disk per event and per evidence photo: database size after close (WAL checkpointed) minus an
   empty outbox, divided by N.
3. Drain: a 10,000-event backlog (filled through ``Outbox.append`` with ``synchronous=OFF`` only to build it
   fast; the outbox is then closed and reopened as after a reboot), a Publisher against a local mosquitto and a
   central subscriber in this process that verifies every signature and sends signed acks naming (seq, event_id)
   every 200 events.
4. Fault run: a producer child (this file with ``--child``) appends 50 events/s through the outbox and its Publisher
   while the parent injects faults: broker stop/restart, SIGKILL of the producer, and storage faults — a flipped byte
   in a frame in the middle of the outbox's ``-wal`` (after a SIGKILL), the database truncated to 0 bytes with its
   ``-wal``/``-shm`` deleted (after a SIGKILL), and a read-only card: the state folder lives on a 256 MB ext4 image
   on a loop device mounted ``errors=remount-ro``, a real ext4 error (``/sys/fs/ext4/<dev>/trigger_fs_error``) flips
   it to emergency read-only while the producer runs, then a "reboot" (SIGKILL, umount, ``e2fsck -fy``, mount,
   restart). Every other storage fault (the first of each kind included) strikes while the broker is stopped, so that
   committed events are still undelivered when the damage hits (on loopback everything else is at the central within
   milliseconds). A central subscriber (MQTT 5 persistent session, QoS 1) verifies each message with
   ``signing.open_message``, dedups by event_id and sends signed acks. The producer prints ``committed <event_id>
   <seq>`` once ``append`` returned (the screen would say "recorded"), ``refused <reason>`` when the storage refused,
   and ``lost <first> <last>`` for each seq range the outbox reported lost at open (it also appends an
   ``outbox_recovered`` alarm naming them, as the kiosk's Recorder does). Every committed event must be delivered or
   lie in a range reported lost: a silent loss fails the run.

The brokers are tests/broker.py (imported by putting the repository's ``tests`` folder on ``sys.path``): a
mosquitto of our own on a free 127.0.0.1 port, killed on exit; the system broker on port 1883 is never used.
Run: ``.venv/bin/python bench/events.py`` (``--quick`` for a smoke run; ``--seconds`` for the fault run). The
read-only fault needs root (losetup, mount); without it that fault kind is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import inspect
import itertools
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import REPO, cache_dir, ensure_repo_on_path, markdown_table

ensure_repo_on_path()
sys.path.insert(0, str(REPO / "tests"))  # tests/broker.py: our own mosquitto on a free loopback port

import paho.mqtt.client as mqtt  # noqa: E402
from broker import Broker, available  # noqa: E402
from broker import _die_with_parent as die_with_parent  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from kiosk.config import MqttConfig  # noqa: E402
from kiosk.events.mqtt import Publisher, Topics  # noqa: E402
from kiosk.events.outbox import Outbox, OutboxError, OutboxFull, Recovery, StorageUnavailable  # noqa: E402
from kiosk_contract import schema, signing  # noqa: E402
from kiosk_contract.acks import build_acks  # noqa: E402

PREFIX = "presensi/v1"
SITE = "s1"
DEVICE = "kiosk-bench-1"
EVIDENCE_BYTES = 15_000
FAULT_RATE = 50.0  # events/s appended by the producer in the fault run
FAULT_EVIDENCE_EVERY = 10  # one event in 10 carries an evidence photo in the fault run
FAULT_REPUBLISH_S = 5.0  # the kiosk default is 300 s; short so lost acks are retried within the run
FAULT_RETRY_S = 1.0  # while the outbox is down the producer calls Outbox.retry() this often
CARD_BYTES = 256 * 1024 * 1024  # the ext4 image of the read-only fault
FAULT_KINDS = {  # kind -> row label of the summary table
    "broker": "broker stopped and restarted",
    "sigkill": "producer SIGKILLed",
    "corrupt_wal": "corrupt WAL (byte flipped)",
    "truncate": "database truncated, WAL deleted",
    "readonly": "card read-only (ext4 error), reboot",
}
STORAGE_FAULTS = ("corrupt_wal", "truncate", "readonly")


# ---------------------------------------------------------------------------------------------------- events


def jpeg_like(n: int, rng: random.Random) -> bytes:
    """``n`` bytes that look like a JPEG (SOI/APP0 ... EOI) with incompressible content in between."""
    return b"\xff\xd8\xff\xe0" + rng.randbytes(n - 6) + b"\xff\xd9"


def make_stamp(boot_id: str) -> schema.Stamp:
    return schema.Stamp(
        device=DEVICE,
        boot_id=boot_id,
        mono_ns=time.monotonic_ns(),
        utc=datetime.now(UTC),
        tz=schema.DEFAULT_TZ,
        clock=schema.ClockInfo(synced=True, source="ntp", since_boot_synced=True),
    )


def make_body(rng: random.Random, boot_id: str, evidence: bytes | None = None) -> dict[str, Any]:
    """A realistic attendance body as the kiosk stores it (face decision, NIP, clock info, evidence ref)."""
    stamp = make_stamp(boot_id)
    decision = {
        "method": "face",
        "best_nip": "".join(rng.choice("0123456789") for _ in range(18)),
        "distance": schema.decimal_str(rng.uniform(0.25, 0.5), schema.DISTANCE_DECIMALS),
        "margin": schema.decimal_str(rng.uniform(0.05, 0.3), schema.DISTANCE_DECIMALS),
        "frames": 4,
        "liveness": None,
    }
    return schema.build_attendance(
        stamp, kind="masuk", nip=str(decision["best_nip"]), decision=decision, evidence=evidence
    )


def sealer(pem: bytes) -> Callable[[bytes, int], bytes]:
    key = signing.private_key_from_pem(pem)
    kid = signing.key_id_of(key)
    return lambda payload, seq: signing.seal(payload, seq, key, kid)


def mqtt_config(port: int) -> MqttConfig:
    return MqttConfig(
        enabled=True,
        host="127.0.0.1",
        port=port,
        site=SITE,
        topic_prefix=PREFIX,
        keepalive_s=5,
        reconnect_min_s=0.5,
        reconnect_max_s=1.0,
    )


def pctl(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def fsync_ms(folder: Path, n: int = 200) -> float:
    """Median ms of a 4 KB write + fsync on this disk: what one durable commit costs at least."""
    path = folder / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, os.urandom(4096), 4096 * (i % 16))
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1000


def filesystem(path: Path) -> str:
    try:
        out = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "--target", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return f"{out[0]} on {out[1]} ({','.join(o for o in out[2].split(',') if o in ('rw', 'relatime', 'noatime'))})"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


# ---------------------------------------------------------------------------------------------------- 1 + 2


def bench_commits(work: Path, n: int) -> tuple[str, str, dict[str, Any]]:
    rng = random.Random(1)
    boot = str(uuid.uuid4())
    empty = work / "empty.db"
    Outbox.open(empty).close()
    empty_size = empty.stat().st_size
    rows: list[tuple[Any, ...]] = []
    disk_rows: list[tuple[Any, ...]] = []
    info: dict[str, Any] = {}
    sizes: dict[str, float] = {}
    for label, with_ev in (("attendance body", False), ("body + 15 KB evidence", True)):
        photos = [jpeg_like(EVIDENCE_BYTES, rng) for _ in range(50)] if with_ev else []
        bodies = []
        for i in range(n):
            ev = photos[i % len(photos)] if with_ev else None
            body = make_body(rng, boot, ev)
            bodies.append((body["event_id"], schema.to_bytes(body), ev))
        info.setdefault("body_bytes", statistics.median(len(b) for _, b, _ in bodies))
        db = work / f"commit-{int(with_ev)}.db"
        times: list[float] = []
        with Outbox.open(db) as ob:
            t_all = time.perf_counter()
            for event_id, payload, ev in bodies:
                t0 = time.perf_counter()
                ob.append(event_id, "attendance", payload, evidence=ev)
                times.append(time.perf_counter() - t0)
            wall = time.perf_counter() - t_all
        size = db.stat().st_size  # after close: the WAL is checkpointed into the database and removed
        per = (size - empty_size) / n
        sizes[label] = per
        med = statistics.median(times) * 1000
        rows.append((label, n, f"{med:.2f}", f"{pctl(times, 0.99) * 1000:.2f}", f"{1000 / med:.0f}", f"{n / wall:.0f}"))
        disk_rows.append((label, n, f"{(size - empty_size) / 1e6:.2f}", f"{per:,.0f}"))
    photo = sizes["body + 15 KB evidence"] - sizes["attendance body"]
    disk_rows.append(("evidence photo alone (difference)", n, "–", f"{photo:,.0f}"))
    t1 = markdown_table(["append", "N", "median ms", "p99 ms", "commits/s (1/median)", "commits/s (N/wall)"], rows)
    t2 = markdown_table(["stored", "N", "growth MB", "bytes per event"], disk_rows)
    info["empty_db_bytes"] = empty_size
    return t1, t2, info


# ---------------------------------------------------------------------------------------------------- central


CENTRAL_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench/events.py central key").digest())
"""The central key of this benchmark's own central side, the same in the producer child (it is never a real key)."""
CENTRAL_KEYS = {signing.key_id_of(CENTRAL_KEY): CENTRAL_KEY.public_key()}


class Central:
    """The central server's side: MQTT 5 persistent session, QoS 1, verify, dedup by event_id, and signed acks naming
    each received event by (seq, event_id) (duplicates acked again: the device resent because it has not seen an ack)
    every ``every`` events or 0.1 s."""

    def __init__(self, broker: Broker, keys: dict[str, Any], *, every: int) -> None:
        self.topics = Topics.of(PREFIX, SITE, DEVICE)
        self.keys = keys
        self.every = every
        self.lock = threading.Lock()
        self.seen: dict[str, int] = {}  # event_id -> seq
        self.evidence: set[str] = set()
        self.duplicates = 0
        self.dups: Counter[str] = Counter()  # event_id -> copies dropped
        self.alarms: dict[str, dict[str, Any]] = {}  # event_id -> the alarm event received
        self.bad: list[str] = []
        self.first_at: float | None = None
        self.last_new_at = 0.0
        self._acks: list[tuple[int, str]] = []
        self._kick = threading.Event()
        self._stop = threading.Event()
        self.acks_sent = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"central-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(broker.host, broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._flusher, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._subscribed.wait(0.05):
            if time.monotonic() > deadline:
                raise RuntimeError("the central subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(self.topics.event, 1), (self.topics.evidence, 1)])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        if msg.topic == self.topics.evidence:
            with contextlib.suppress(ValueError, KeyError, TypeError), self.lock:
                self.evidence.add(str(json.loads(payload)["event_id"]))
            return
        try:
            event = signing.open_message(payload, self.keys)
        except Exception as exc:  # EventFormatError, SignatureError: counted and reported, never acked
            with self.lock:
                self.bad.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        eid, seq = str(event["event_id"]), int(event["seq"])
        now = time.monotonic()
        with self.lock:
            if self.first_at is None:
                self.first_at = now
            if eid in self.seen:
                self.duplicates += 1
                self.dups[eid] += 1
            else:
                self.seen[eid] = seq
                self.last_new_at = now
                if event.get("type") == "alarm":
                    self.alarms[eid] = event
            self._acks.append((seq, eid))
            full = len(self._acks) >= self.every
        if full:
            self._kick.set()

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(0.1)
            self._kick.clear()
            with self.lock:
                pairs, self._acks = self._acks, []
            if pairs:
                for message in build_acks(DEVICE, pairs, CENTRAL_KEY):
                    self.client.publish(self.topics.ack, signing.wire(message), qos=1)  # queued when offline
                    self.acks_sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------------------------------------------- 3


def bench_drain(work: Path, n: int, pem: bytes, keys: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rng = random.Random(3)
    boot = str(uuid.uuid4())
    db = work / "drain" / "outbox.db"
    t0 = time.perf_counter()
    with Outbox.open(db) as ob:
        assert ob._conn is not None  # open: not down
        ob._conn.execute("PRAGMA synchronous = OFF")  # only to build the backlog fast; not measured
        for _ in range(n):
            body = make_body(rng, boot)
            ob.append(body["event_id"], "attendance", schema.to_bytes(body))
    fill_s = time.perf_counter() - t0
    with Broker(work / "drain-broker") as b, Outbox.open(db) as ob:  # reopened: synchronous=FULL again
        assert ob.counts()["pending"] == n
        central = Central(b, keys, every=200)
        try:
            start = time.monotonic()
            pub = Publisher(ob, mqtt_config(b.port), DEVICE, seal=sealer(pem), central_keys=CENTRAL_KEYS).start()
            try:
                delivered_at = acked_at = None
                deadline = start + 180
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                    if delivered_at is None and len(central.seen) >= n:
                        delivered_at = time.monotonic()
                    if ob.counts()["acknowledged"] >= n:
                        acked_at = time.monotonic()
                        break
                st = pub.status()
            finally:
                pub.close()
            counts = ob.counts()
        finally:
            central.close()
    first = (central.first_at - start) if central.first_at else None
    rows = [
        (
            n,
            f"{first:.2f}" if first is not None else "–",
            f"{delivered_at - start:.1f}" if delivered_at else "not all",
            f"{acked_at - start:.1f}" if acked_at else "TIMED OUT",
            f"{n / (acked_at - start):.0f}" if acked_at else "–",
            central.duplicates,
            len(central.bad),
            central.acks_sent,
        )
    ]
    table = markdown_table(
        [
            "backlog",
            "first delivered s",
            "all delivered s",
            "all acknowledged s",
            "events/s (acked)",
            "duplicates",
            "bad signatures",
            "ack messages",
        ],
        rows,
    )
    return table, {"fill_s": fill_s, "counts": counts, "status": st}


# ---------------------------------------------------------------------------------------------------- 4


def one_line(text: str, limit: int = 240) -> str:
    return " ".join(text.split())[:limit]


def recovery_alarm(recovery: Recovery, boot_id: str) -> dict[str, Any]:
    """The ``outbox_recovered`` alarm body kiosk.events.recorder.Recorder stores for a damaged outbox: the lost seq
    ranges (at most the contract's limit, the tail merged into one range) when the contract has ``lost_seqs``."""
    lost = list(recovery.lost)
    detail = recovery.detail
    limit = int(getattr(schema, "MAX_LOST_RANGES", 100))
    if len(lost) > limit:
        lost = [*lost[: limit - 1], (lost[limit - 1][0], lost[-1][1])]
        detail = f"{len(recovery.lost)} lost ranges, the last {len(recovery.lost) - limit + 1} merged; {detail}"
    args: dict[str, Any] = {"alarm": "outbox_recovered", "detail": f"{recovery.reason}: {detail}"[:1000]}
    if "lost_seqs" in inspect.signature(schema.build_alarm).parameters:
        args["lost_seqs"] = lost
    return schema.build_alarm(make_stamp(boot_id), **args)


def child_main(db: Path, port: int, keyfile: Path, rate: float) -> None:
    """The producer: the kiosk's frame loop (append, wake) at ``rate``/s; SIGUSR1 stops appending, SIGTERM exits.

    Prints one flushed line per fact: ``ready`` once open; ``append <event_id>`` before each append and
    ``committed <event_id> <seq>`` once it returned (the screen says "recorded"); ``refused <reason>`` when the
    storage refused (nothing stored, the screen says "cannot record"); for each damaged outbox found at open or at a
    retry ``recovery <reason> <salvaged> <ranges>``, ``lost <first> <last>`` per lost range, and once its
    ``outbox_recovered`` alarm is stored ``alarm <event_id> <seq>``. While the outbox is down it calls
    ``Outbox.retry()`` every FAULT_RETRY_S and prints ``storage ok`` when that works."""
    pem = keyfile.read_bytes()
    deadline = time.monotonic() + 10
    while True:
        try:
            ob = Outbox.open(db, wait=True)  # a read-only card at start gives a down outbox, retried below
            break
        except OutboxError:  # the killed predecessor's lock is released when the kernel reaps it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    pub = Publisher(ob, mqtt_config(port), DEVICE, republish_after_s=FAULT_REPUBLISH_S, seal=sealer(pem),
                    central_keys=CENTRAL_KEYS).start()  # fmt: skip
    stop = threading.Event()

    def on_term(*_: Any) -> None:
        pub.close(2)
        ob.close()
        os._exit(0)

    signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random()
    boot = str(uuid.uuid4())
    photo = jpeg_like(EVIDENCE_BYTES, rng)
    waiting: list[Recovery] = []  # damaged outboxes whose alarm is not stored yet

    def say(*words: object) -> None:
        print(*words, flush=True)

    def store(event_id: str, kind: str, payload: bytes, evidence: bytes | None = None) -> int | None:
        say("append", event_id)
        try:
            stored = ob.append(event_id, kind, payload, evidence=evidence)
        except (StorageUnavailable, OutboxFull) as exc:
            say("refused", one_line(f"{type(exc).__name__}: {exc}".replace(str(db.parent), "<state>")))
            return None
        pub.wake()
        say("committed", event_id, stored.seq)  # the screen would say "recorded" now
        return stored.seq

    def recoveries() -> None:
        for rec in ob.take_recoveries():
            say("recovery", rec.reason, rec.salvaged, len(rec.lost), one_line(rec.detail, 400))
            for first, last in rec.lost:
                say("lost", first, last)
            waiting.append(rec)
        while waiting and ob.available:
            body = recovery_alarm(waiting[0], boot)
            seq = store(body["event_id"], "alarm", schema.to_bytes(body))
            if seq is None:
                return
            waiting.pop(0)
            say("alarm", body["event_id"], seq)

    recoveries()
    say("ready", "available" if ob.available else "down")
    i = 0
    next_t = time.monotonic()
    last_retry = time.monotonic()
    was_available = ob.available
    while not stop.is_set():
        if was_available and not ob.available:
            last_retry = time.monotonic()  # the first retry one period after the outbox went down
        elif not ob.available and time.monotonic() - last_retry >= FAULT_RETRY_S:
            last_retry = time.monotonic()
            if ob.retry():
                say("storage ok")
        was_available = ob.available
        recoveries()
        ev = photo if i % FAULT_EVIDENCE_EVERY == 0 else None
        body = make_body(rng, boot, ev)
        store(body["event_id"], "attendance", schema.to_bytes(body), ev)
        i += 1
        next_t = max(next_t + 1.0 / rate, time.monotonic() - 1.0)  # no burst after a slow append
        time.sleep(max(0.0, next_t - time.monotonic()))
    print("stopped", flush=True)
    while True:
        time.sleep(1)


class Producer:
    """The harness side of the producer child: starts and kills it and keeps what it printed. Every line is filed
    under the current ``segment`` (the number of faults injected before it), so an event counts under the first
    fault after its commit: the fault it was exposed to. A SIGKILL is followed by reading the dead process's
    output to its end before the segment moves on."""

    def __init__(self, db: Path, port: int, keyfile: Path, log: Path) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "--child", str(db), str(port), str(keyfile)]
        self.log = log
        self.segment = 0
        self.committed: dict[str, tuple[int, int]] = {}  # event_id -> (seq, segment)
        self.attempted: set[str] = set()  # every event_id the producer called append with
        self.refused_ids: set[str] = set()  # the event_ids of refused appends
        self._last_append = ""
        self.refused: Counter[int] = Counter()  # segment -> appends refused (StorageUnavailable, OutboxFull)
        self.refusal: dict[int, str] = {}  # segment -> the first refusal's reason
        self.lost: list[tuple[int, int, int]] = []  # (first, last, segment it was reported in)
        self.recoveries: list[tuple[int, str]] = []  # (segment, "reason salvaged ranges detail")
        self.alarms: dict[str, int] = {}  # event_id -> seq of the outbox_recovered alarms stored
        self.since_start = 0  # commits by the current process
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.starts = 0
        self.partial = 0  # lines cut short by a SIGKILL
        self.died: list[str] = []  # processes that ended without being told to (a crash)

    def start(self) -> None:
        self.ready.clear()
        self.since_start = 0
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
            )
        self.starts += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").split()
            seg = self.segment
            if not raw.endswith(b"\n"):  # cut short by SIGKILL
                self.partial += 1
            elif line[:1] == ["append"] and len(line) == 2:
                self.attempted.add(line[1])
                self._last_append = line[1]
            elif line[:1] == ["committed"] and len(line) == 3:
                self.committed[line[1]] = (int(line[2]), seg)
                self.since_start += 1
            elif line[:1] == ["refused"]:
                self.refused[seg] += 1
                self.refused_ids.add(self._last_append)
                self.refusal.setdefault(seg, " ".join(line[1:]).replace(f"event {self._last_append}", "event …"))
            elif line[:1] == ["lost"] and len(line) == 3:
                self.lost.append((int(line[1]), int(line[2]), seg))
            elif line[:1] == ["recovery"]:
                self.recoveries.append((seg, " ".join(line[1:])))
            elif line[:1] == ["alarm"] and len(line) == 3:
                self.alarms[line[1]] = int(line[2])
            elif line[:1] == ["ready"]:
                self.ready.set()
            elif line[:1] == ["stopped"]:
                self.stopped.set()

    def check_alive(self, when: str) -> bool:
        """False (and noted) when the process ended on its own."""
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is None:
            return True
        self.died.append(f"pid {self.proc.pid} exited with {rc} {when}")
        return False

    def sigkill(self) -> int:
        """SIGKILL the process, reap it (its outbox lock goes) and read what it printed to the end."""
        assert self.proc is not None and self._reader is not None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        self._reader.join(5)
        return pid

    def end(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def db_states(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True, timeout=5)
    try:
        return {s: int(c) for s, c in conn.execute("SELECT state, COUNT(*) FROM events GROUP BY state")}
    finally:
        conn.close()


def corrupt_wal(wal: Path, rng: random.Random) -> str:
    """Flip one byte (XOR 0xFF) in the page data of the frame in the middle of the WAL's current log: the frames
    whose salts match the header's, up to the last commit frame (what SQLite would replay). Layout: a 32-byte
    header (magic, version, page size, checkpoint, salt-1, salt-2, checksums), then frames of a 24-byte header
    (page number, database size after commit or 0, salt-1, salt-2, checksums) and ``page_size`` bytes."""
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return "no -wal file to damage"
    with open(wal, "r+b") as f:
        head = f.read(32)
        if len(head) < 32:
            return f"-wal of {size} bytes has no header; nothing damaged"
        page_size, salts = struct.unpack(">I", head[8:12])[0], head[16:24]
        frame = 24 + page_size
        commits: list[int] = []
        for i in range((size - 32) // frame):
            f.seek(32 + i * frame)
            h = f.read(24)
            if h[8:16] != salts:  # a frame of an earlier generation of the log: not replayed
                break
            if struct.unpack(">I", h[4:8])[0]:
                commits.append(i)
        if not commits:
            return f"-wal of {size / 1e6:.2f} MB holds no committed frame of the current log; nothing damaged"
        frames = commits[-1] + 1
        i = frames // 2
        f.seek(32 + i * frame)
        pgno = struct.unpack(">I", f.read(4))[0]
        at = rng.randrange(page_size)
        off = 32 + i * frame + 24 + at
        f.seek(off)
        old = f.read(1)[0]
        f.seek(off)
        f.write(bytes([old ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())
    after = sum(1 for c in commits if c >= i)
    return (
        f"-wal {size / 1e6:.2f} MB, {frames} frames in its log (page size {page_size}); byte {at} of page {pgno} "
        f"in frame {i + 1} flipped; {after} of {len(commits)} commits at or after it"
    )


def truncate_db(db: Path) -> str:
    size = db.stat().st_size if db.exists() else 0
    wal = db.with_name(db.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    os.truncate(db, 0)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return f"database {size / 1e6:.2f} MB truncated to 0 bytes, -wal ({wal_size / 1e6:.2f} MB) and -shm deleted"


def run_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=120)


class Card:
    """The kiosk's SD card for the read-only fault: a CARD_BYTES ext4 image in the work folder on a loop device,
    mounted ``errors=remount-ro`` (as the kiosk image mounts its root). :meth:`fail` triggers a real ext4 error, the
    kernel then remounts it emergency read-only; :meth:`reboot` does what a reboot does (umount, ``e2fsck -fy``,
    mount). :meth:`close` unmounts and detaches; call it in a ``finally``."""

    def __init__(self, work: Path) -> None:
        self.image = work / "card.img"
        self.mnt = work / "card"
        self.dev: str | None = None
        self.mounted = False
        self.skip: str | None = None  # why the read-only fault cannot run here
        self.problems: list[str] = []  # the card did not do what a card does (fails the run)

    def setup(self) -> Card:
        if os.geteuid() != 0:
            self.skip = "not root: losetup and mount need root"
            return self
        missing = [t for t in ("losetup", "mkfs.ext4", "e2fsck", "mount", "umount") if shutil.which(t) is None]
        if missing:
            self.skip = f"{', '.join(missing)} not found"
            return self
        try:
            with open(self.image, "wb") as f:
                f.truncate(CARD_BYTES)
            run_cmd("mkfs.ext4", "-q", "-F", str(self.image))
            self.dev = run_cmd("losetup", "--find", "--show", str(self.image)).stdout.strip()
            self.mnt.mkdir(exist_ok=True)
            self._mount()
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            self.skip = f"cannot mount an ext4 image on a loop device: {one_line(str(detail))}"
            self.close()
            return self
        if not self.trigger.exists():
            self.skip = f"{self.trigger} does not exist (kernel without ext4 sysfs error injection)"
            self.close()
        return self

    @property
    def trigger(self) -> Path:
        return Path("/sys/fs/ext4") / Path(self.dev or "none").name / "trigger_fs_error"

    def _mount(self) -> None:
        assert self.dev is not None
        run_cmd("mount", "-t", "ext4", "-o", "errors=remount-ro", self.dev, str(self.mnt))
        self.mounted = True

    def _umount(self, lazy: bool = False) -> None:
        for attempt in range(10):
            try:
                run_cmd("umount", str(self.mnt))
                self.mounted = False
                return
            except subprocess.CalledProcessError:
                if attempt == 9 and not lazy:
                    raise
                time.sleep(0.2)
        run_cmd("umount", "-l", str(self.mnt))
        self.mounted = False

    def refuses(self) -> str | None:
        """None when a file can be created on the card, else the error's name (EROFS)."""
        probe = self.mnt / ".write-probe"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            return str(errno.errorcode.get(exc.errno or 0, exc.errno))
        probe.unlink()
        return None

    def fail(self) -> str:
        """Trigger an ext4 error; returns what creating a file on the card says afterwards."""
        self.trigger.write_text("bench/events.py: simulated card failure\n")
        refused = self.refuses()
        if refused is None:
            self.problems.append("the card stayed writable after an ext4 error")
            return "STILL WRITABLE after the ext4 error"
        return f"creating a file: {refused}"

    def reboot(self) -> str:
        """umount, e2fsck -fy, mount; returns what e2fsck did.

        Another process's mount namespace (``unshare -m``, e.g. a test run meanwhile) holds a copy of every mount that
        existed when it was made: our umount then only drops our copy, and mounting the device again would reuse the
        superblock still in emergency read-only. That is seen as its sysfs folder outliving the umount; the image is
        then checked and mounted through a new loop device (the old one is detached once released)."""
        assert self.dev is not None
        self._umount()
        sysfs = self.trigger.parent
        deadline = time.monotonic() + 1.0
        while sysfs.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        note = ""
        if sysfs.exists():
            old = self.dev
            self.dev = run_cmd("losetup", "--find", "--show", str(self.image)).stdout.strip()
            with contextlib.suppress(subprocess.SubprocessError):
                run_cmd("losetup", "-d", old)  # autoclear: freed when the other namespace lets go
            note = f"; {old} still held by another mount namespace, fsck and mount through {self.dev}"
        fsck = subprocess.run(["e2fsck", "-fy", self.dev], capture_output=True, text=True, timeout=120)
        self._mount()
        fixes = fsck.stdout.count("Fix? yes")
        meaning = {0: "clean", 1: "errors corrected", 2: "errors corrected"}.get(fsck.returncode, "NOT REPAIRED")
        if fsck.returncode not in (0, 1, 2):
            note += f"; e2fsck said: {one_line(fsck.stdout + fsck.stderr, 300)}"
            self.problems.append(f"e2fsck -fy exit {fsck.returncode}")
        refused = self.refuses()
        if refused is not None:
            note += f"; NOT WRITABLE AFTER THE REBOOT ({refused})"
            self.problems.append(f"the card was not writable after a reboot ({refused})")
        return f"e2fsck -fy exit {fsck.returncode} ({meaning}, {fixes} fixes){note}"

    def close(self) -> None:
        if self.mounted:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._umount(lazy=True)
        if self.dev is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                run_cmd("losetup", "-d", self.dev)
            self.dev = None


@dataclass
class Fault:
    kind: str
    t: float
    detail: str = ""
    during: str = "–"
    undelivered: int = 0  # committed events not yet at the central when the fault struck
    extra: list[str] = field(default_factory=list)


def in_ranges(seq: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= seq <= b for a, b in ranges)


def bench_faults(
    work: Path, seconds: float, counts: dict[str, int], pem: bytes, keys: dict[str, Any]
) -> tuple[str, bool]:
    rng = random.Random(4)
    keyfile = work / "device-key.pem"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    card = Card(work)
    faults: list[Fault] = []
    try:
        card.setup()
        if card.skip is None:
            state = card.mnt
            where = (
                f"state folder on a {CARD_BYTES >> 20} MB ext4 image on {card.dev} mounted errors=remount-ro "
                f"(a 4 KB write + fsync there: median {fsync_ms(card.mnt, 50):.2f} ms)"
            )
        else:
            state = work
            where = f"state folder in the scratch folder; READ-ONLY FAULT SKIPPED: {card.skip}"
            counts = {k: n for k, n in counts.items() if k != "readonly"}
        db = state / "fault" / "outbox.db"
        with Broker(work / "fault-broker") as b:
            central = Central(b, keys, every=50)
            producer = Producer(db, b.port, keyfile, work / "producer.log")
            try:
                producer.start()
                start = time.monotonic()
                kinds = [kind for kind, n in counts.items() for _ in range(n)]
                rng.shuffle(kinds)
                gap = seconds / (len(kinds) + 1)
                storage_seen: Counter[str] = Counter()
                for k, kind in enumerate(kinds, 1):
                    target = start + k * gap + rng.uniform(-0.25, 0.25) * gap
                    time.sleep(max(0.0, target - time.monotonic()))
                    wait_until = time.monotonic() + 5  # a fresh producer first commits a few (frames in its WAL)
                    while producer.since_start < 10 and time.monotonic() < wait_until:
                        time.sleep(0.05)
                    if not producer.check_alive(f"before fault {k}"):
                        producer.start()
                    # Every other storage fault (the first of each kind included) strikes while the kiosk is offline:
                    # committed events pile up undelivered, so the damage can take some that central never saw.
                    offline = kind in STORAGE_FAULTS and storage_seen[kind] % 2 == 0
                    storage_seen[kind] += 1
                    offline_s = rng.uniform(1.0, 2.0) if offline else 0.0
                    if offline:
                        b.stop()
                        time.sleep(offline_s)
                    fault = Fault(kind, time.monotonic() - start)
                    reported = sorted((a, z) for a, z, _ in producer.lost)
                    fault.undelivered = sum(
                        1
                        for eid, (seq, _) in list(producer.committed.items())
                        if eid not in central.seen and not in_ranges(seq, reported)
                    )
                    before = len(producer.committed)
                    if kind == "broker":
                        down = rng.uniform(1.0, 3.0)
                        b.stop()
                        producer.segment = k
                        time.sleep(down)
                        b.start()
                        fault.detail = f"down {down:.1f} s"
                        fault.during = f"{len(producer.committed) - before} committed"
                    elif kind == "readonly":
                        producer.segment = k
                        probe = card.fail()
                        seen_before = len(central.seen)
                        ro_s = rng.uniform(1.5, 3.0)
                        time.sleep(ro_s)
                        alive = producer.check_alive(f"while the card was read-only (fault {k})")
                        seen_during = len(central.seen) - seen_before
                        pid = producer.sigkill() if alive else None
                        fault.during = (
                            f"{len(producer.committed) - before} committed, {producer.refused[k]} refused, "
                            f"{seen_during} more delivered; producer {'alive' if alive else 'DEAD'}"
                        )
                        fsck = card.reboot()
                        producer.start()
                        fault.detail = (
                            f"read-only for {ro_s:.1f} s ({probe}); first refusal: "
                            f"{producer.refusal.get(k, 'none')[:200]}; reboot: SIGKILL pid {pid}, umount, {fsck}, "
                            "mount"
                        )
                    else:
                        pid = producer.sigkill()
                        producer.segment = k
                        if kind == "corrupt_wal":
                            fault.detail = corrupt_wal(db.with_name(db.name + "-wal"), rng)
                        elif kind == "truncate":
                            fault.detail = truncate_db(db)
                        pause = rng.uniform(0.2, 1.0)
                        time.sleep(pause)
                        producer.start()
                        done = f"{fault.detail}; " if fault.detail else ""
                        fault.detail = f"pid {pid}; {done}restarted after {pause:.1f} s"
                    if offline:
                        time.sleep(0.5)  # the restarted producer opens and appends while still offline
                        b.start()
                        fault.detail = f"offline (broker stopped) {offline_s:.1f} s before; {fault.detail}"
                    faults.append(fault)
                time.sleep(max(0.0, start + seconds - time.monotonic()))
                producer.check_alive("before the end")
                assert producer.proc is not None
                producer.proc.send_signal(signal.SIGUSR1)
                producer.stopped.wait(10)
                run_s = time.monotonic() - start
                drain_start = time.monotonic()
                drained = False
                while time.monotonic() - drain_start < 90:
                    st = db_states(db)
                    if st.get("pending", 0) == 0 and st.get("published", 0) == 0:
                        drained = True
                        break
                    time.sleep(0.2)
                drain_s = time.monotonic() - drain_start
                time.sleep(0.5)  # late duplicates still in flight
            finally:
                producer.end()
                central.close()
        conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT event_id, payload, publish_count, seq FROM events").fetchall()
        finally:
            conn.close()
        aside = sorted(p.name for p in db.parent.iterdir() if ".corrupt-" in p.name)
        free_mb = shutil.disk_usage(db.parent).free / 1e6
    finally:
        card.close()
    text, ok = report_faults(work, faults, producer, central, rows, aside, free_mb, where, run_s, drained, drain_s)
    if card.problems:
        text += "\n- CARD PROBLEMS: " + "; ".join(card.problems)
    return text, ok and not card.problems


def report_faults(
    work: Path,
    faults: list[Fault],
    producer: Producer,
    central: Central,
    rows: list[tuple[Any, ...]],
    aside: list[str],
    free_mb: float,
    where: str,
    run_s: float,
    drained: bool,
    drain_s: float,
) -> tuple[str, bool]:
    """Classify every committed event (delivered, lost in a range the kiosk reported, or silently lost) under the
    fault it was exposed to, and say how the run went."""
    ranges = sorted((a, b) for a, b, _ in producer.lost)
    kinds = [f.kind for f in faults]
    labels = [*(k for k in FAULT_KINDS if k in kinds), "none"]
    table: dict[str, list[int]] = {k: [0, 0, 0, 0, 0] for k in labels}  # committed, delivered, L, S, D
    silent: list[tuple[int, str]] = []
    mismatched = 0
    for eid, (seq, seg) in producer.committed.items():
        cells = table[kinds[seg] if seg < len(kinds) else "none"]
        cells[0] += 1
        cells[4] += central.dups[eid]
        if eid in central.seen:
            cells[1] += 1
            mismatched += central.seen[eid] != seq
        elif in_ranges(seq, ranges):
            cells[2] += 1
        else:
            cells[3] += 1
            silent.append((seq, eid))
    total = [sum(c[i] for c in table.values()) for i in range(5)]
    summary = [
        (f"{FAULT_KINDS[k]} ×{kinds.count(k)}" if k != "none" else "none (after the last fault)", *table[k])
        for k in labels
    ]
    summary.append(("**total**", *total))

    db_ids = {str(r[0]) for r in rows}
    committed = set(producer.committed)
    delivered = set(central.seen)
    unexpected = delivered - producer.attempted
    unreported = db_ids - committed  # stored, but the process died before printing (or refused, yet stored)
    in_doubt = producer.attempted - committed - producer.refused_ids
    refused_kept = producer.refused_ids & (delivered | db_ids)
    with_photo = {str(r[0]) for r in rows if json.loads(r[1]).get("evidence")}
    republished = sum(1 for r in rows if r[2] > 1)
    seqs = sorted(int(r[3]) for r in rows)
    gaps = sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    log_text = (work / "producer.log").read_text(errors="replace")
    warnings = sum(1 for line in log_text.splitlines() if line.startswith("mqtt:") or "WARNING" in line)
    tracebacks = log_text.count("Traceback")
    last_traceback = log_text[log_text.rfind("Traceback") :].splitlines()[:40] if tracebacks else []
    alarm_ranges = {
        (int(a), int(b))
        for eid in producer.alarms
        if eid in central.alarms
        for a, b in central.alarms[eid].get("lost_seqs") or []
    }
    printed_ranges = set(ranges)
    alarms_lost = sum(1 for eid, seq in producer.alarms.items() if eid not in central.alarms and in_ranges(seq, ranges))

    fault_rows = []
    for n, f in enumerate(faults, 1):
        found = [text for seg, text in producer.recoveries if seg == n]
        lost = [f"{a}..{b}" if a != b else str(a) for a, b, seg in producer.lost if seg == n]
        if f.kind in STORAGE_FAULTS:
            at_open = "; ".join(f"{t.split()[0]}, {t.split()[1]} salvaged" for t in found) or "no damage found"
            if lost:
                at_open += f"; lost seq {', '.join(lost)}"
        else:
            at_open = "–"
        fault_rows.append((n, f"{f.t:.1f}", FAULT_KINDS[f.kind], f.undelivered, f.detail, f.during, at_open))
    refused_total = sum(producer.refused.values())
    ok = not silent and not unexpected and not mismatched and not central.bad and drained and not producer.died
    aside_sets = [a for a in aside if not a.endswith(("-wal", "-shm"))]
    lines = [
        markdown_table(
            ["fault", "committed N", "delivered N", "reported lost L", "silently lost S", "duplicates dropped D"],
            summary,
        ),
        "",
        "Each committed event is counted under the first fault injected after its commit (the one it was exposed "
        'to). Committed: `append` returned (the screen said "recorded"); reported lost: not delivered, and its seq '
        "lies in a range the kiosk reported lost at open (`Outbox.recovery.lost`, sent in an `outbox_recovered` "
        "alarm); silently lost: the rest (must be 0).",
        "",
        markdown_table(
            ["#", "t s", "fault", "undelivered then", "detail", "during the fault", "kiosk at the next open"],
            fault_rows,
        ),
        "",
        f"- {where}",
        f"- producer: {FAULT_RATE:.0f} events/s for {run_s:.0f} s, {producer.starts} process starts, one event in "
        f"{FAULT_EVIDENCE_EVERY} with a 15 KB photo; republish_after_s {FAULT_REPUBLISH_S:.0f} s; Outbox.retry() "
        f"every {FAULT_RETRY_S:.0f} s while down",
        f'- appends refused (StorageUnavailable/OutboxFull, not committed: the screen said "cannot record"): '
        f"{refused_total}; producer processes that died on their own: {len(producer.died)}"
        + (f" ({'; '.join(producer.died[:3])})" if producer.died else ""),
        f"- damaged outboxes found at open: {len(producer.recoveries)}; lost ranges reported: {len(ranges)} "
        f"({sum(b - a + 1 for a, b in ranges)} seqs, which may include numbers never issued); outbox_recovered "
        f"alarms stored {len(producer.alarms)}, delivered {len(set(producer.alarms) & set(central.alarms))} (not "
        f"delivered but in a reported range: {alarms_lost}); "
        f"ranges named in the delivered alarms' lost_seqs: {len(printed_ranges & alarm_ranges)} of "
        f"{len(printed_ranges)}",
        f"- delivered under another seq than committed: {mismatched}; delivered but never appended: "
        f"{len(unexpected)}; bad messages (format or signature) at the central: {len(central.bad)}"
        + (f" e.g. {central.bad[0]}" if central.bad else ""),
        f"- appends cut short by a SIGKILL (neither committed nor refused): {len(in_doubt)}, of which delivered "
        f"{len(in_doubt & delivered)}; refused appends that were stored anyway: {len(refused_kept)}; in the final "
        f"database without a committed line: {len(unreported)}; lines cut short by a SIGKILL: {producer.partial}",
        f"- final database: {len(rows)} events (salvaged ones included), seq {seqs[0] if seqs else '–'}.."
        f"{seqs[-1] if seqs else '–'}, gaps in seq: {gaps} (a recovery skips the rest of a block); rows published "
        f"more than once: {republished}; damaged sets moved aside beside it: {len(aside_sets)}; {free_mb:.0f} MB "
        "free on its file system",
        f"- duplicates dropped by the central in all: {central.duplicates} (salvaged events go out again)",
        f"- producer stderr: {warnings} warning lines (disconnects, retries, storage), {tracebacks} tracebacks",
        f"- evidence photos: in the final database {len(with_photo)}, delivered {len(central.evidence & with_photo)} "
        "(evidence is best effort: its PUBACK changes nothing and it is dropped once the event is acked)",
        f"- drain after the producer stopped appending: {'done' if drained else 'NOT DONE'} in {drain_s:.1f} s",
    ]
    if last_traceback:
        lines += ["", "The last traceback in the producer's stderr:", "", "```", *last_traceback, "```"]
    if silent:
        lines.append(
            f"- SILENTLY LOST: {len(silent)} committed events neither delivered nor reported lost, e.g. "
            f"{sorted(silent)[:5]}"
        )
    return "\n".join(lines), ok


# ---------------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small N and a short fault run (smoke test)")
    ap.add_argument("--seconds", type=float, default=None, help="length of the fault run (default 150, quick 28)")
    ap.add_argument("--child", nargs=3, metavar=("DB", "PORT", "KEYFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(Path(args.child[0]), int(args.child[1]), Path(args.child[2]), FAULT_RATE)
        return 0
    if not available():
        print("mosquitto is not installed", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the card image is unmounted on the way out
    n_commit, n_drain = (200, 1000) if args.quick else (2000, 10_000)
    seconds = args.seconds if args.seconds is not None else (28.0 if args.quick else 150.0)
    counts = dict.fromkeys(FAULT_KINDS, 1 if args.quick else 5)  # fault kind -> how many times
    t_start = time.monotonic()
    load0 = os.getloadavg()[0]
    pem, public_pem = signing.generate_key()
    pub_key = signing.private_key_from_pem(pem).public_key()
    keys = {signing.key_id_of(pub_key): pub_key}
    assert public_pem
    work = Path(tempfile.mkdtemp(prefix="events-", dir=cache_dir()))
    try:
        fs = filesystem(work)
        print(f"## Events ({'quick' if args.quick else 'full'} run)\n")
        print(
            f"Scratch folder {work.relative_to(REPO)} on {fs}; a 4 KB write + fsync there: median "
            f"{fsync_ms(work):.2f} ms.\n",
            flush=True,
        )
        t1, t2, info = bench_commits(work, n_commit)
        sample = make_body(random.Random(0), str(uuid.uuid4()), jpeg_like(EVIDENCE_BYTES, random.Random(0)))
        sealed = sealer(pem)(schema.to_bytes(sample), 123456)
        print("### 1. Durable commits (Outbox.append, WAL, synchronous=FULL)\n")
        print(t1)
        print(
            f"\n- stored body {info['body_bytes']:.0f} bytes (median); sealed (signed, with seq) message "
            f"{len(sealed)} bytes; evidence {EVIDENCE_BYTES} bytes of random (incompressible) data\n"
        )
        print("### 2. Bytes on disk\n")
        print(t2)
        print(
            f"\n- database size after close (WAL checkpointed) minus an empty outbox ({info['empty_db_bytes']} "
            "bytes), divided by N\n",
            flush=True,
        )
        t3, d = bench_drain(work, n_drain, pem, keys)
        print("### 3. Drain of a backlog\n")
        print(t3)
        st = d["status"]
        print(
            f"\n- backlog built in {d['fill_s']:.1f} s (synchronous=OFF, not measured); outbox after: {d['counts']}; "
            f"publisher: published {st['published']}, acked {st['acked']}, connects {st['connects']}; window 20; "
            "central sends signed (seq, event_id) acks every 200 events (and at the end), in this same process\n",
            flush=True,
        )
        text, ok = bench_faults(work, seconds, counts, pem, keys)
        print("### 4. Fault run\n")
        print(text)
        print(
            f"\n- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, paho-mqtt {version('paho-mqtt')}; load average "
            f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after; ran {time.monotonic() - t_start:.0f} s"
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
