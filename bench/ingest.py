"""The central ledger at a regency's scale: ingest in events per second into PostgreSQL, signatures verified.

Workload (made and signed before anything is timed): ``--devices`` kiosks (200), each with its own Ed25519 key in
the ledger's registry, and ``--employees`` (5,000) spread over them; the 07:00-07:30 WITA rush: every employee
punches once at a random minute, ``REVIEW_SHARE`` of them as a ``review`` case (unknown face) with a small
synthetic JPEG sent as an evidence message after its event; every device sends a time anchor at boot (06:55) and a
status event every 60 s. Each device's events get seq 1, 2, ... in time order and are sealed with
``signing.seal`` like the outbox does; all devices' messages are then published in time order.

One run: a fresh database (its own PostgreSQL schema, dropped afterwards, or an SQLite file), the registry written
with ``sync_registry``, one or two ledger workers (this file with ``--worker``: the real ``Subscriber`` and
``Ingestor`` in a process of its own, like ``python -m kiosk_central serve``), a real Mosquitto on a free loopback
port (tests/broker.py). The parent publishes with QoS 1 as fast as the ledger takes the messages (at most
``WINDOW`` events published and not yet acknowledged) and reads the acks; the time is from the first publish to
the ack that covers the last event. Afterwards the database is checked: every event stored once, every photo
held, every review case queued, no rejection, each device's progress at its last seq.

CPU: each worker measures its own CPU (getrusage), the thread CPU inside ``handle_batch`` and, within it, inside
``schema.from_bytes`` (parsing) and ``signing.verify`` (verification); the rest of ``handle_batch`` is the
database client side (SQL, the ack bookkeeping). The PostgreSQL server process of each worker's connection and the
broker are read from /proc. Compared in the same run: SQLite vs PostgreSQL, verify vs no-verify (``signing.verify``
replaced by a no-op in the worker: the cost of verification), one worker vs two on a shared subscription
(``$share/<group>/...``, which Mosquitto hands out in turn) and two that each subscribe to half of the devices (what a
broker that sends each device to one member gives, like EMQX's ``hash_clientid`` strategy).

Run: ``.venv/bin/python bench/ingest.py`` (about 4 minutes here: 3 rounds; ``--devices 20 --employees 500 --repeat 1``
for a quick run).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import REPO, cache_dir, ensure_repo_on_path, markdown_table

ensure_repo_on_path()
sys.path.insert(0, str(REPO / "tests"))  # tests/broker.py: our own mosquitto on a free loopback port

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from broker import Broker, available  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from PIL import Image  # noqa: E402

from kiosk_central.ingest import Ingestor, read_registry, sync_registry  # noqa: E402
from kiosk_central.settings import BrokerConfig, DeviceEntry, IngestConfig  # noqa: E402
from kiosk_central.store import Ledger  # noqa: E402
from kiosk_contract import schema, signing  # noqa: E402

PREFIX = "presensi/v1"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
RUSH_START = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # Tuesday 3 March 2026, 07:00 WITA
RUSH_S = 30 * 60
STATUS_EVERY_S = 60
REVIEW_SHARE = 0.05  # punches that become a review case with an evidence photo
PEAK_FACTOR = 10  # the assumed peak minute against the rush's average rate
WINDOW = 2000  # events published and not yet acknowledged
STALL_S = 60.0  # a run with no new ack for this long is reported as stalled
TZ = "Asia/Makassar"


# ---------------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Message:
    """One publish: topic, bytes, and for an event its device, id and seq (evidence messages have seq None)."""

    at: float  # seconds into the rush; the publish order
    topic: str
    payload: bytes
    device: str
    event_id: str
    seq: int | None


@dataclass
class Workload:
    """The signed messages in publish order, the registry entries, and how many of each kind."""

    messages: list[Message]
    entries: list[DeviceEntry]
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        return sum(1 for m in self.messages if m.seq is not None)

    def seqs_by_device(self) -> dict[str, int]:
        """Each device's last seq (its events are 1..last)."""
        last: dict[str, int] = {}
        for m in self.messages:
            if m.seq is not None:
                last[m.device] = max(last.get(m.device, 0), m.seq)
        return last


def synthetic_jpeg(rng: np.random.Generator, side: int = 96) -> bytes:
    """A real JPEG of noise over a gradient, a few KB like a cropped evidence face at low quality."""
    gradient = np.linspace(0, 200, side, dtype=np.float32)[None, :, None]
    pixels = np.clip(gradient + rng.normal(0, 25, (side, side, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=80)  # Pillow: the server has no OpenCV
    return out.getvalue()


def _face(rng: random.Random, nip: str, distance: float) -> dict[str, Any]:
    return {"method": "face", "best_nip": nip, "distance": schema.decimal_str(distance, schema.DISTANCE_DECIMALS),
            "margin": schema.decimal_str(rng.uniform(0.05, 0.3), schema.DISTANCE_DECIMALS), "frames": 3,
            "liveness": None}


def make_workload(devices: int, employees: int, folder: Path, seed: int = 7) -> Workload:
    """The rush's messages, made and signed (see the module docstring); public keys are written to ``folder``."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clock = schema.ClockInfo(synced=True, source="ntp", since_boot_synced=True)
    plans: dict[int, list[tuple[float, dict[str, Any], bytes | None]]] = {d: [] for d in range(devices)}
    for d in range(devices):
        plans[d].append((-300.0, {"type": "time_anchor"}, None))
        plans[d] += [(float(t), {"type": "status"}, None) for t in range(0, RUSH_S, STATUS_EVERY_S)]
    for e in range(employees):
        nip = (f"19{rng.randrange(60, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"  # born 19YYMMDD
               f"20{rng.randrange(0, 25):02d}{rng.randrange(1, 13):02d}{rng.randrange(1, 3)}{e % 1000:03d}")
        at = rng.uniform(0, RUSH_S)
        if rng.random() < REVIEW_SHARE:
            plans[e % devices].append((at, {"type": "review", "nip": nip}, synthetic_jpeg(np_rng)))
        else:
            plans[e % devices].append((at, {"type": "attendance", "nip": nip}, None))
    messages: list[Message] = []
    entries: list[DeviceEntry] = []
    counts: Counter[str] = Counter()
    for d, plan in plans.items():
        device = f"kiosk-{d:03d}"
        site = f"opd-{d // 10:02d}"
        private_pem, public_pem = signing.generate_key()
        key = signing.private_key_from_pem(private_pem)
        key_file = folder / f"{device}.pub"
        key_file.write_bytes(public_pem)
        entries.append(DeviceEntry(id=device, office=site, public_keys=(key_file,)))
        boot = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        base = f"{PREFIX}/{site}/{device}"
        for seq, (at, what, jpeg) in enumerate(sorted(plan, key=lambda p: p[0]), start=1):
            stamp = schema.Stamp(device, boot, 5 * 10**9 + int((at + 300) * 1e9), RUSH_START + timedelta(seconds=at),
                                 TZ, clock)
            body = _body(stamp, what, jpeg, rng)
            wire = signing.seal(schema.to_bytes(body), seq, key)
            messages.append(Message(at, f"{base}/event", wire, device, body["event_id"], seq))
            counts[what["type"]] += 1
            if jpeg is not None:
                envelope = {"seq": seq, "event_id": body["event_id"], "content_type": "image/jpeg",
                            "jpeg_b64": base64.b64encode(jpeg).decode("ascii")}
                messages.append(Message(at + 1e-6, f"{base}/evidence", json.dumps(envelope).encode(), device,
                                        body["event_id"], None))
                counts["evidence"] += 1
                counts["evidence_bytes"] += len(jpeg)
    messages.sort(key=lambda m: m.at)
    return Workload(messages, entries, counts)


def _body(stamp: schema.Stamp, what: dict[str, Any], jpeg: bytes | None, rng: random.Random) -> dict[str, Any]:
    if what["type"] == "time_anchor":
        return schema.build_time_anchor(stamp)
    if what["type"] == "status":
        return schema.build_status(stamp, fps=5.0, outbox_depth=rng.randrange(0, 3), oldest_pending_age_s=None,
                                   gallery_version="2026-03-01.1", cpu_temp_c=rng.uniform(45, 60),
                                   free_disk_bytes=20 * 10**9)
    if what["type"] == "review":
        return schema.build_review(stamp, reason="unknown_face", decision=_face(rng, what["nip"], 0.58),
                                   evidence=jpeg)
    return schema.build_attendance(stamp, kind="masuk", nip=what["nip"], decision=_face(rng, what["nip"], 0.38))


# ---------------------------------------------------------------------------------------------------- a ledger worker


class CpuMeter:
    """Thread CPU seconds spent inside wrapped functions, and their calls, by name."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.thread_time() - start
                    self.calls[name] += 1

        return timed


def _no_verify(event: Any, public_keys: Any) -> None:
    """The baseline without verification: accepts every signature."""


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process from /proc (None when it cannot be read)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_main(url: str, port: int, client_id: str, group: str, verify: bool, own_devices: list[str]) -> int:
    """One ledger worker (``serve`` without the files): prints ``ready``, ingests until stdin has a line, then
    prints its CPU figures and counters as one JSON line. With ``own_devices`` it subscribes to those devices' topics
    only (the bench's stand-in for a broker that sends each device to one member of the group)."""
    from kiosk_central.subscriber import Subscriber

    if own_devices:
        topics = [f"{PREFIX}/+/{device}/{suffix}" for device in own_devices for suffix in ("event", "evidence")]
        setattr(Subscriber, "topics", property(lambda self: topics))  # noqa: B010
    meter = CpuMeter()
    setattr(schema, "from_bytes", meter.wrap("parse", schema.from_bytes))  # noqa: B010 - ingest calls schema.X
    setattr(signing, "verify", meter.wrap("verify", signing.verify if verify else _no_verify))  # noqa: B010
    ledger = Ledger(url)
    ingestor = Ingestor(ledger, read_registry(ledger), topic_prefix=PREFIX,
                        signing_key=Ed25519PrivateKey.generate())  # acks are signed as in production
    setattr(ingestor, "handle_batch", meter.wrap("handle_batch", ingestor.handle_batch))  # noqa: B010
    db_pid = None
    if ledger.backend.name == "postgresql":
        row = ledger.one("SELECT pg_backend_pid()")
        db_pid = int(row[0]) if row else None
    broker = BrokerConfig(host="127.0.0.1", port=port, client_id=client_id, shared_group=group,
                          session_expiry_s=0, reconnect_min_s=0.2, reconnect_max_s=1.0)
    subscriber = Subscriber(broker, IngestConfig(), ingestor).start()
    if not subscriber.subscribed.wait(10):
        print(json.dumps({"error": f"not subscribed: {subscriber.last_error}"}), flush=True)
        return 1
    cpu0, db0 = _self_cpu_s(), process_cpu_s(db_pid)
    print("ready", flush=True)
    sys.stdin.readline()
    subscriber.close()
    cpu1, db1 = _self_cpu_s(), process_cpu_s(db_pid)
    ledger.close()
    print(json.dumps({
        "cpu_s": cpu1 - cpu0,
        "db_server_cpu_s": None if db0 is None or db1 is None else db1 - db0,
        "thread_cpu_s": dict(meter.seconds),
        "batches": meter.calls["handle_batch"],
        "counts": ingestor.snapshot(),
    }), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------- one run


class Devices:
    """The kiosks' side in one MQTT client: publishes the workload (QoS 1) and counts the events the acks cover."""

    def __init__(self, workload: Workload, broker: Broker) -> None:
        self.workload = workload
        self.acked: dict[str, set[int]] = {}
        self.covered = 0
        self.commands = 0
        self.last_ack_at: float | None = None
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-devices-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError("the devices' client did not subscribe to the acks")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(f"{PREFIX}/+/+/ack", 1), (f"{PREFIX}/+/+/cmd", 1)])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        device = parts[3]
        body = json.loads(msg.payload)
        with self.cond:
            if parts[4] == "cmd":
                self.commands += 1
                return
            acked = self.acked.setdefault(device, set())
            before = len(acked)
            acked.update(int(e["seq"]) for e in body.get("events", ()))  # signed acks name (seq, event_id) pairs
            if len(acked) > before:
                self.covered += len(acked) - before
                self.last_ack_at = time.monotonic()
                self.cond.notify_all()

    def publish_all(self) -> float:
        """Publish every message in order, at most WINDOW events ahead of the acks; the start time (monotonic)."""
        published = 0
        start = time.monotonic()
        for m in self.workload.messages:
            if m.seq is not None:
                with self.cond:
                    while published - self.covered >= WINDOW:
                        if not self.cond.wait(STALL_S):
                            raise RuntimeError(f"no ack for {STALL_S:.0f} s with {published} events published")
                published += 1
            self.client.publish(m.topic, m.payload, qos=1)
        return start

    def wait_all_acked(self) -> bool:
        """True when every event is covered by an ack; False after STALL_S without a new one."""
        total = self.workload.events
        with self.cond:
            while self.covered < total:
                seen = self.covered
                self.cond.wait(STALL_S)
                if self.covered == seen:
                    return False
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class RunResult:
    """One configuration's figures."""

    name: str
    backend: str
    workers: int
    verify: bool
    events: int
    wall_s: float
    acked: int
    commands: int
    check: dict[str, int]
    worker_stats: list[dict[str, Any]]
    broker_cpu_s: float | None
    devices_cpu_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.acked == self.events and all(v == 0 for k, v in self.check.items() if k != "stored")

    def per_event_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None else 1000.0 * seconds / self.events

    def cpu(self, what: str) -> float | None:
        """Seconds summed over the workers: ``process``, ``db_server``, or a thread meter's name."""
        total = 0.0
        for stats in self.worker_stats:
            value = stats["cpu_s"] if what == "process" else stats["db_server_cpu_s"] if what == "db_server" \
                else stats["thread_cpu_s"].get(what, 0.0)
            if value is None:
                return None
            total += value
        return total


def check_ledger(url: str, workload: Workload) -> dict[str, int]:
    """What the database holds against the workload: 0 everywhere but ``stored`` when all is there once."""
    expected = {(m.device, m.event_id) for m in workload.messages if m.seq is not None}
    last = workload.seqs_by_device()
    with Ledger(url) as ledger:
        stored = {(str(d), str(e)) for d, e in ledger.rows("SELECT device_id, event_id FROM events")}
        progress = {str(d): (int(c), int(h)) for d, c, h in ledger.rows(
            "SELECT device_id, contiguous_seq, highest_seq FROM device_progress")}
        photos = ledger.one("SELECT COUNT(*) FROM evidence")
        waiting = ledger.one("SELECT COUNT(*) FROM events WHERE evidence_ok = 0")
        reviews = ledger.one("SELECT COUNT(*) FROM review_queue")
        rejected = ledger.one("SELECT COUNT(*) FROM rejections")
        unanchored = ledger.event_counts().get("unanchored", 0)
    return {
        "stored": len(stored),
        "missing": len(expected - stored),
        "unexpected": len(stored - expected),
        "photos_missing": workload.counts["evidence"] - int(photos[0] if photos else 0),
        "photos_waiting": int(waiting[0] if waiting else 0),
        "reviews_missing": workload.counts["review"] - int(reviews[0] if reviews else 0),
        "rejections": int(rejected[0] if rejected else 0),
        "unanchored": unanchored,
        "progress_behind": sum(1 for d, s in last.items() if progress.get(d) != (s, s)),
    }


def run_once(name: str, workload: Workload, url: str, broker: Broker, *, workers: int = 1, verify: bool = True,
             by_device: bool = False, log_dir: Path) -> RunResult:
    """Register the devices in ``url``, start the workers, publish the workload, wait for the acks, check.

    Several workers share one subscription (``$share``, round-robin in Mosquitto), or with ``by_device`` each
    subscribes to its own share of the devices."""
    devices = sorted(entry.id for entry in workload.entries)
    if by_device and workers > len(devices):
        raise ValueError(f"{workers} workers cannot each own some of {len(devices)} devices")
    with Ledger(url) as ledger:
        sync_registry(ledger, workload.entries)
    group = f"ledger-{uuid.uuid4().hex[:6]}" if workers > 1 and not by_device else ""
    procs: list[subprocess.Popen[str]] = []
    logs = [log_dir / f"{name}-worker{i}.log" for i in range(workers)]
    try:
        for i in range(workers):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--url", url, "--port",
                   str(broker.port), "--client-id", f"ledger-{name}-{i}-{uuid.uuid4().hex[:6]}", "--group", group]
            if not verify:
                cmd.append("--no-verify")
            if by_device:
                cmd += ["--own-devices", ",".join(devices[i::workers])]
            with logs[i].open("w") as err:
                procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                              text=True))
        for proc, log in zip(procs, logs, strict=True):
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"ledger worker did not start ({line.strip()}): {log.read_text()[-2000:]}")
        kiosks = Devices(workload, broker)
        broker_pid = broker.proc.pid if broker.proc else None
        broker0, devices0 = process_cpu_s(broker_pid), time.process_time()
        try:
            start = kiosks.publish_all()
            kiosks.wait_all_acked()
            end = kiosks.last_ack_at or time.monotonic()
        finally:
            kiosks.close()
        broker1, devices1 = process_cpu_s(broker_pid), time.process_time()
        stats = []
        for proc, log in zip(procs, logs, strict=True):
            out, _ = proc.communicate("stop\n", timeout=60)
            lines = out.strip().splitlines()
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"ledger worker failed ({proc.returncode}): {log.read_text()[-2000:]}")
            stats.append(json.loads(lines[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return RunResult(
        name=name, backend=url.split(":", 1)[0], workers=workers, verify=verify, events=workload.events,
        wall_s=end - start, acked=kiosks.covered, commands=kiosks.commands, check=check_ledger(url, workload),
        worker_stats=stats, broker_cpu_s=None if broker0 is None or broker1 is None else broker1 - broker0,
        devices_cpu_s=devices1 - devices0,
    )


@contextlib.contextmanager
def database(backend: str, folder: Path, pg_server: str) -> Iterator[str]:
    """A URL of an empty ledger: an SQLite file in ``folder``, or a new PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'ledger-{uuid.uuid4().hex[:8]}.sqlite'}"
        return
    import psycopg

    admin = psycopg.connect(pg_server, autocommit=True, connect_timeout=5)
    name = f"bench_ingest_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{pg_server}?options=-csearch_path%3D{name}"
    finally:
        admin.execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()


# ---------------------------------------------------------------------------------------------------- report

RUNS = {  # name: (backend, workers, verify, by_device); the first is the reference of the ratios
    "postgresql": ("postgresql", 1, True, False),
    "postgresql-noverify": ("postgresql", 1, False, False),
    "sqlite": ("sqlite", 1, True, False),
    "postgresql-2workers": ("postgresql", 2, True, False),
    "postgresql-2workers-bydevice": ("postgresql", 2, True, True),
}


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median rate (the lower one of an even count)."""
    return sorted(runs, key=lambda r: r.events_per_s)[(len(runs) - 1) // 2]


def report(workload: Workload, devices: int, employees: int, runs: dict[str, list[RunResult]], setup_s: float) -> str:
    """Markdown: the workload, one row per configuration (its median run, and the range of its rates), the figures
    against the rush's requirement."""
    results = [median_run(r) for r in runs.values()]
    repeats = min(len(r) for r in runs.values())
    c = workload.counts
    event_bytes = [len(m.payload) for m in workload.messages if m.seq is not None]
    lines = [
        f"{devices} devices, {employees} employees: {c['attendance']} attendance, {c['review']} review with a photo "
        f"({c['evidence_bytes'] / max(1, c['evidence']) / 1000:.1f} KB JPEG each, sent as {c['evidence']} evidence "
        f"messages), {c['status']} status (every {STATUS_EVERY_S} s), {c['time_anchor']} time anchors = "
        f"{workload.events} events, {len(workload.messages)} messages, {sum(event_bytes) / len(event_bytes):.0f} "
        f"bytes per event on the wire; made and signed in {setup_s:.1f} s (not timed).",
        "",
    ]
    ref = results[0]
    rows = []
    for r in results:
        process, handle = r.cpu("process"), r.cpu("handle_batch")
        parse, verify = r.cpu("parse"), r.cpu("verify")
        client = None if handle is None or parse is None or verify is None else handle - parse - verify
        other = None if process is None or handle is None else process - handle
        batches = sum(s["batches"] for s in r.worker_stats)
        rates = sorted(x.events_per_s for x in runs[r.name])
        rows.append((
            r.name, r.workers, "yes" if r.verify else "no", f"{r.wall_s:.2f}", f"{r.events_per_s:.0f}",
            f"{rates[0]:.0f}-{rates[-1]:.0f}",
            f"{r.events_per_s / ref.events_per_s:.2f}", r.per_event_ms(process), r.per_event_ms(parse),
            r.per_event_ms(verify), r.per_event_ms(client), r.per_event_ms(other),
            r.per_event_ms(r.cpu("db_server")) if r.backend.startswith("postgres") else None,
            r.per_event_ms(r.broker_cpu_s), f"{r.events / max(1, batches):.0f}",
            "yes" if all(x.ok for x in runs[r.name]) else
            f"NO: {r.check}, acked {r.acked}, {[s['counts'] for s in r.worker_stats]}",
        ))
    lines.append(markdown_table(
        ["run", "workers", "verify", "wall s", "events/s", f"range of {repeats}", f"vs {ref.name}",
         "ledger CPU ms/event", "parse", "verify", "db client", "paho + idle", "PostgreSQL server ms/event",
         "broker ms/event", "events/batch", "all stored once, acked"], rows))
    avg = workload.events / RUSH_S
    punches = (c["attendance"] + c["review"]) / RUSH_S
    peak = PEAK_FACTOR * avg
    lines += [
        "",
        f"Each configuration ran {repeats} time(s), in rotating order; each row is the run with the median rate. "
        "CPU is per event, in ms: the ledger's process (summed over its workers) split into parsing, verification, "
        "the database client side (the rest of handle_batch) and paho's thread with idle ticks; then the "
        "PostgreSQL server processes of the workers' connections and the broker.",
        "",
        f"Requirement: {c['attendance'] + c['review']} punches in 30 min = {punches:.2f}/s; with status and anchors "
        f"{avg:.2f} events/s on average; assumed peak {PEAK_FACTOR}x = {peak:.1f} events/s. Headroom of "
        f"{ref.name} ({ref.events_per_s:.0f} events/s): {ref.events_per_s / peak:.0f}x the peak, "
        f"{ref.events_per_s / avg:.0f}x the average. The whole rush ({workload.events} events) took "
        f"{ref.wall_s:.1f} s.",
        f"Devices' client (publish + acks, same machine): {1000 * ref.devices_cpu_s / ref.events:.3f} ms CPU per "
        f"event; resend requests seen: {', '.join(f'{r.name} {r.commands}' for r in results)}. Load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} at the end.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--employees", type=int, default=5000)
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument("--repeat", type=int, default=3, help="rounds over the runs, in rotating order (median shown)")
    ap.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server (a schema is made and dropped per run)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--client-id", help=argparse.SUPPRESS)
    ap.add_argument("--group", default="", help=argparse.SUPPRESS)
    ap.add_argument("--no-verify", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--own-devices", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.url, args.port, args.client_id, args.group, not args.no_verify,
                           [device for device in args.own_devices.split(",") if device])
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown or not names:
        ap.error(f"--runs: unknown {unknown}; choose from {', '.join(RUNS)}")
    if not available():
        print("mosquitto is not installed (scripts/bootstrap installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ingest-", dir=cache_dir()) as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        workload = make_workload(args.devices, args.employees, work / "keys")
        setup_s = time.monotonic() - t0
        runs: dict[str, list[RunResult]] = {name: [] for name in names}
        with Broker(work / "broker") as broker:
            for round_ in range(max(1, args.repeat)):
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    backend, workers, verify, by_device = RUNS[name]
                    with database(backend, work, args.pg) as url:
                        result = run_once(name, workload, url, broker, workers=workers, verify=verify,
                                          by_device=by_device, log_dir=work)
                    runs[name].append(result)
                    print(f"{name}: {result.events_per_s:.0f} events/s, ok={result.ok}", file=sys.stderr, flush=True)
    print(report(workload, args.devices, args.employees, runs, setup_s))
    if args.json is not None:
        every = [r.__dict__ for rs in runs.values() for r in rs]
        args.json.write_text(json.dumps(every, indent=1, default=str) + "\n")
    return 0 if all(r.ok for rs in runs.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
