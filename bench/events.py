"""Events: durable commits per second, bytes on disk, outbox drain through MQTT, and a fault run with no loss.

1. ``Outbox.append`` of signed-size attendance bodies (built with kiosk_contract.schema), with and without a
   15 KB evidence blob; the outbox's own WAL + ``synchronous=FULL``; median and p99 ms per commit.
2. Bytes on disk per event and per evidence photo: database size after close (WAL checkpointed) minus an
   empty outbox, divided by N.
3. Drain: a 10,000-event backlog (filled through ``Outbox.append`` with ``synchronous=OFF`` only to build it
   fast; the outbox is then closed and reopened as after a reboot), a Publisher against a local mosquitto and a
   central subscriber in this process that verifies every signature and sends signed acks naming (seq, event_id)
   every 200 events.
4. Fault run: a producer child (this file with ``--child``) appends 50 events/s through the outbox and its
   Publisher while the parent stops/restarts the broker and SIGKILLs/restarts the producer; a central
   subscriber (MQTT 5 persistent session, QoS 1) verifies each message with ``signing.open_message``, dedups by
   event_id and sends signed acks. At the end every event_id ever committed (all rows of the outbox database) is
   compared with the set delivered.

The brokers are tests/broker.py (imported by putting the repository's ``tests`` folder on ``sys.path``): a
mosquitto of our own on a free 127.0.0.1 port, killed on exit; the system broker on port 1883 is never used.
Run: ``.venv/bin/python bench/events.py`` (``--quick`` for a smoke run; ``--seconds`` for the fault run).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
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
from kiosk.events.outbox import Outbox, OutboxError  # noqa: E402
from kiosk_contract import schema, signing  # noqa: E402
from kiosk_contract.acks import build_acks  # noqa: E402

PREFIX = "presensi/v1"
SITE = "s1"
DEVICE = "kiosk-bench-1"
EVIDENCE_BYTES = 15_000
FAULT_RATE = 50.0  # events/s appended by the producer in the fault run
FAULT_EVIDENCE_EVERY = 10  # one event in 10 carries an evidence photo in the fault run
FAULT_REPUBLISH_S = 5.0  # the kiosk default is 300 s; short so lost acks are retried within the run


# ---------------------------------------------------------------------------------------------------- events


def jpeg_like(n: int, rng: random.Random) -> bytes:
    """``n`` bytes that look like a JPEG (SOI/APP0 ... EOI) with incompressible content in between."""
    return b"\xff\xd8\xff\xe0" + rng.randbytes(n - 6) + b"\xff\xd9"


def make_body(rng: random.Random, boot_id: str, evidence: bytes | None = None) -> dict[str, Any]:
    """A realistic attendance body as the kiosk stores it (face decision, NIP, clock info, evidence ref)."""
    stamp = schema.Stamp(
        device=DEVICE,
        boot_id=boot_id,
        mono_ns=time.monotonic_ns(),
        utc=datetime.now(UTC),
        tz=schema.DEFAULT_TZ,
        clock=schema.ClockInfo(synced=True, source="ntp", since_boot_synced=True),
    )
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
            else:
                self.seen[eid] = seq
                self.last_new_at = now
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


def child_main(db: Path, port: int, keyfile: Path, rate: float) -> None:
    """The producer: the kiosk's frame loop (append, wake) at ``rate``/s; SIGUSR1 stops appending, SIGTERM exits."""
    pem = keyfile.read_bytes()
    deadline = time.monotonic() + 10
    while True:
        try:
            ob = Outbox.open(db)
            break
        except OutboxError:  # the killed predecessor's lock is released when the kernel reaps it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    pub = Publisher(ob, mqtt_config(port), DEVICE, republish_after_s=FAULT_REPUBLISH_S, seal=sealer(pem),
                    central_keys=CENTRAL_KEYS).start()
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
    i = 0
    next_t = time.monotonic()
    while not stop.is_set():
        ev = photo if i % FAULT_EVIDENCE_EVERY == 0 else None
        body = make_body(rng, boot, ev)
        ob.append(body["event_id"], "attendance", schema.to_bytes(body), evidence=ev)
        pub.wake()
        print("committed", body["event_id"], flush=True)  # the screen would say "recorded" now
        i += 1
        next_t += 1.0 / rate
        time.sleep(max(0.0, next_t - time.monotonic()))
    print("stopped", flush=True)
    while True:
        time.sleep(1)


class Producer:
    def __init__(self, db: Path, port: int, keyfile: Path, log: Path) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "--child", str(db), str(port), str(keyfile)]
        self.log = log
        self.reported: list[str] = []
        self.stopped = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.partial = 0  # lines cut short by a SIGKILL

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
            )
        self.starts += 1
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").split()
            if not raw.endswith(b"\n"):  # cut short by SIGKILL: the append had returned, the id is incomplete
                self.partial += 1
            elif line[:1] == ["committed"] and len(line) == 2:
                self.reported.append(line[1])
            elif line[:1] == ["stopped"]:
                self.stopped.set()

    def sigkill(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
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


def bench_faults(
    work: Path, seconds: float, faults_each: int, pem: bytes, keys: dict[str, Any]
) -> tuple[str, str, bool]:
    rng = random.Random(4)
    keyfile = work / "device-key.pem"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    db = work / "fault" / "outbox.db"
    faults: list[tuple[Any, ...]] = []
    with Broker(work / "fault-broker") as b:
        central = Central(b, keys, every=50)
        producer = Producer(db, b.port, keyfile, work / "producer.log")
        try:
            producer.start()
            start = time.monotonic()
            kinds = ["broker"] * faults_each + ["sigkill"] * faults_each
            rng.shuffle(kinds)
            gap = seconds / (len(kinds) + 1)
            for k, kind in enumerate(kinds, 1):
                target = start + k * gap + rng.uniform(-0.25, 0.25) * gap
                time.sleep(max(0.0, target - time.monotonic()))
                t = time.monotonic() - start
                before = len(producer.reported)
                if kind == "broker":
                    down = rng.uniform(1.0, 3.0)
                    b.stop()
                    time.sleep(down)
                    b.start()
                    faults.append(
                        (
                            len(faults) + 1,
                            f"{t:.1f}",
                            "broker stopped (SIGTERM) and restarted",
                            f"down {down:.1f} s",
                            len(producer.reported) - before,
                        )
                    )
                else:
                    pid = producer.sigkill()
                    pause = rng.uniform(0.2, 1.0)
                    time.sleep(pause)
                    producer.start()
                    faults.append(
                        (
                            len(faults) + 1,
                            f"{t:.1f}",
                            f"producer SIGKILLed (pid {pid}) and restarted",
                            f"{len(producer.reported)} reported committed so far; restarted after {pause:.1f} s",
                            "–",
                        )
                    )
            time.sleep(max(0.0, start + seconds - time.monotonic()))
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
    committed = {r[0] for r in rows}
    with_photo = {r[0] for r in rows if json.loads(r[1]).get("evidence")}
    republished = sum(1 for r in rows if r[2] > 1)
    seqs = sorted(r[3] for r in rows)
    gaps = sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    log_text = (work / "producer.log").read_text(errors="replace")
    warnings = sum(1 for line in log_text.splitlines() if line.startswith("mqtt:") or "WARNING" in line)
    tracebacks = log_text.count("Traceback")
    delivered = set(central.seen)
    lost = committed - delivered
    unexpected = delivered - committed
    reported_missing = set(producer.reported) - committed
    ok = not lost and not unexpected and not reported_missing and not central.bad and drained
    lines = [
        f"committed {len(committed)}, delivered {len(delivered)}, lost {len(lost)}, "
        f"duplicates dropped {central.duplicates}",
        "",
        markdown_table(["#", "t s", "fault", "detail", "commits during the outage"], faults),
        "",
        f"- producer: {FAULT_RATE:.0f} events/s for {run_s:.0f} s, {producer.starts} process starts, one event in "
        f"{FAULT_EVIDENCE_EVERY} with a 15 KB photo; republish_after_s {FAULT_REPUBLISH_S:.0f} s",
        f"- reported committed by the producer (printed after append returned): {len(producer.reported)}; "
        f"missing from the database: {len(reported_missing)}; lines cut short by a SIGKILL: {producer.partial}",
        f"- rows published more than once (publish_count > 1): {republished}; seq {seqs[0] if seqs else '–'}.."
        f"{seqs[-1] if seqs else '–'}, gaps in seq: {gaps}",
        f"- producer stderr: {warnings} warning lines (disconnects, retries), {tracebacks} tracebacks",
        f"- bad messages (format or signature) at the central: {len(central.bad)}"
        + (f" e.g. {central.bad[0]}" if central.bad else ""),
        f"- delivered but never committed: {len(unexpected)}",
        f"- evidence photos: committed {len(with_photo)}, delivered {len(central.evidence & with_photo)} "
        "(evidence is best effort: its PUBACK changes nothing and it is dropped once the event is acked)",
        f"- drain after the producer stopped appending: {'done' if drained else 'NOT DONE'} in {drain_s:.1f} s",
    ]
    if lost:
        lines.append(f"- LOST: {len(lost)} committed events never reached the central, e.g. {sorted(lost)[:5]}")
    return "\n".join(lines), "", ok


# ---------------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small N and a short fault run (smoke test)")
    ap.add_argument("--seconds", type=float, default=None, help="length of the fault run (default 60, quick 12)")
    ap.add_argument("--child", nargs=3, metavar=("DB", "PORT", "KEYFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(Path(args.child[0]), int(args.child[1]), Path(args.child[2]), FAULT_RATE)
        return 0
    if not available():
        print("mosquitto is not installed", file=sys.stderr)
        return 2
    n_commit, n_drain = (200, 1000) if args.quick else (2000, 10_000)
    seconds = args.seconds if args.seconds is not None else (12.0 if args.quick else 60.0)
    faults_each = 2 if args.quick else 5
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
        text, _, ok = bench_faults(work, seconds, faults_each, pem, keys)
        print("### 4. Fault run\n")
        print(text)
        print(
            f"\n- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, paho-mqtt {version('paho-mqtt')}; load average "
            f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after; ran {time.monotonic() - t_start:.0f} s"
        )
        return 0 if ok else 1
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
