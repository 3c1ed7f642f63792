"""End to end through a real Mosquitto (tests/broker.py) into the real PostgreSQL (and SQLite): the kiosk's Recorder,
Outbox and Publisher on one side, the central subscriber (``start_service``) on the other.

No wall-time assertions: every wait has a timeout and fails with what was seen so far.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Broker, available
from central_support import ALEX, CENTRAL_KEY, CENTRAL_KEYS, LIN, RULES, database, wita, write_key
from conftest import FILM_LIVENESS_TOML, wait_for
from cryptography.hazmat.primitives import serialization

from kiosk.config import KioskConfig, MqttConfig
from kiosk.events.clock import ClockState
from kiosk.events.mqtt import Publisher
from kiosk.events.outbox import Outbox
from kiosk.events.recorder import Recorder
from kiosk.recognizer.faces import Box
from kiosk.recognizer.pipeline import Decision
from kiosk_central import recap as recaps
from kiosk_central.cli import Service, start_service
from kiosk_central.settings import load_central_config
from kiosk_contract import signing
from kiosk_contract.gallery import Gallery

pytestmark = pytest.mark.skipif(not available(), reason="mosquitto is not installed")

FACE = np.random.default_rng(0).integers(0, 255, size=(360, 640, 3), dtype=np.uint8)
BOOT = "5d1e0c2b-8a3f-4b6c-9d7e-0f1a2b3c4d5e"


def decision(nip: str) -> Decision:
    return Decision(track=1, frame=10, t=0.3, nip=nip, best_nip=nip, distance=0.41, margin=0.2, frames_used=2,
                    latency_ms=300.0, clip_latency_ms=300.0, box=Box(100, 300, 300, 100))


class Kiosk:
    """One kiosk's event side: Recorder -> Outbox -> Publisher, on clocks the test moves."""

    def __init__(self, folder: Path, broker: Broker, device_id: str, key: Any,
                 seal: Callable[[bytes, int], bytes] | None = None) -> None:
        self.utc = wita("2026-01-30", "08:00")  # a stale clock: the last shutdown's time
        self.mono = 12_500_000_000
        self.state = ClockState(synced=False, source="none", how="test")
        self.outbox = Outbox.open(folder / f"{device_id}.sqlite")
        cfg = KioskConfig()
        self.recorder = Recorder(replace(cfg, device=replace(cfg.device, id=device_id)), self.outbox,
                                 read_clock=lambda: self.state, now=lambda: self.utc, mono_ns=lambda: self.mono,
                                 boot_id=BOOT)
        mqtt = MqttConfig(enabled=True, host=broker.host, port=broker.port, site="kantor", keepalive_s=5,
                          reconnect_min_s=0.2, reconnect_max_s=1.0)
        self.publisher = Publisher(self.outbox, mqtt, device_id, central_keys=CENTRAL_KEYS,
                                   seal=seal or (lambda payload, seq: signing.seal(payload, seq, key))).start()

    def at(self, when: datetime) -> None:
        """The clock is synced and reads ``when`` (the monotonic clock moves on by as much, at least a minute)."""
        self.mono += int(max(60.0, (when - self.utc).total_seconds()) * 1e9)
        self.utc = when
        self.state = ClockState(synced=True, source="ntp", how="test")

    def punch(self, nip: str, kind: str | None = None) -> None:
        outcome = self.recorder.record(decision(nip), FACE, kind)
        assert outcome.status == "recorded", outcome
        self.publisher.wake()

    def all_acknowledged(self) -> bool:
        counts = self.outbox.counts()
        return counts["acknowledged"] > 0 and counts["pending"] == 0 and counts["published"] == 0

    def close(self) -> None:
        self.publisher.close()
        self.outbox.close()


def central_config(folder: Path, broker: Broker, url: str, devices: dict[str, Path]) -> Path:
    """central.toml in ``folder`` with the rules, the roster, the devices and the central key (:data:`CENTRAL_KEY`)."""
    key_file = folder / "central.key"
    if not key_file.exists():
        signing.write_private_key(key_file, CENTRAL_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "rules.toml").write_text(RULES)
    (folder / "employees.csv").write_text(f"nip,name,unit\n{ALEX},Alex Lacamoire,bkpsdm\n{LIN},Lin,bkpsdm\n")
    config = folder / "central.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n'
        f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "central-{folder.name[-20:]}"\n'
        "reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n"
        "[ingest]\nresend_interval_s = 0.3\n"
        '[rules]\nfile = "rules.toml"\nemployees = "employees.csv"\n'
        '[signing]\nkey_file = "central.key"\n'
        + "".join(f'[[devices]]\nid = "{d}"\noffice = "bkpsdm"\npublic_keys = ["{p}"]\n' for d, p in devices.items())
    )
    return config


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


def serve(config: Path) -> Service:
    service = start_service(load_central_config(config))
    wait_for(service.subscriber.subscribed.is_set, "the ledger to subscribe")
    return service


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_kiosk_day_becomes_acknowledged_ledger_rows_and_a_recap(backend: str, broker: Broker,
                                                                  tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        key, pub = write_key(tmp_path / "keys", "kiosk-1")
        service = serve(central_config(tmp_path, broker, url, {"kiosk-1": pub}))
        kiosk = Kiosk(tmp_path, broker, "kiosk-1", key)
        try:
            # 07:45 WITA on Monday 2 February, but the kiosk's clock still says 30 January: its punch is re-dated
            # from the time anchor it sends once the clock syncs (5 minutes later, with Lin's punch).
            kiosk.punch(ALEX)
            real = wita("2026-02-02", "07:50")
            kiosk.mono += 5 * 60 * 10**9
            kiosk.utc, kiosk.state = real, ClockState(synced=True, source="ntp", how="test")
            kiosk.punch(LIN)
            kiosk.at(wita("2026-02-02", "16:05"))
            kiosk.punch(ALEX)
            wait_for(lambda: kiosk.all_acknowledged() and kiosk.outbox.counts()["acknowledged"] == 4,
                     f"the ledger's acks (outbox {kiosk.outbox.counts()}, ledger {service.ingestor.snapshot()})")
        finally:
            kiosk.close()
            service.close()
        stats = service.ingestor.snapshot()
        assert stats["stored"] == 4 and stats["redated"] == 1 and stats.get("rejected", 0) == 0, stats
        assert stats["evidence"] == 3  # every attendance photo came, and was held before its event was acked
        from kiosk_central.store import Ledger

        with Ledger(url) as ledger:
            recap = recaps.build_recap(ledger, "bkpsdm", datetime(2026, 2, 2).date(), datetime(2026, 2, 2).date())
        lines = {d.nip: d for d in recap.days}
        alex, lin = lines[ALEX], lines[LIN]
        assert (alex.status, str(alex.check_in), alex.late_band, str(alex.check_out), alex.early_band) == (
            "present", "07:45:00", "TL1", "16:05:00", None
        )
        assert (lin.status, str(lin.check_in), lin.late_band, lin.early_band) == ("present", "07:50:00", "TL1", "PSW4")


def test_a_message_lost_on_the_way_is_asked_for_again_and_a_stranger_is_refused(broker: Broker,
                                                                                 tmp_path: Path) -> None:
    with database("postgresql", tmp_path) as url:
        key, pub = write_key(tmp_path / "keys", "kiosk-1")
        mangled: list[int] = []

        def lossy_seal(payload: bytes, seq: int) -> bytes:
            """The first copy of seq 3 is damaged on the way (its signature no longer matches)."""
            wire = signing.seal(payload, seq, key)
            if seq == 3 and not mangled:
                mangled.append(seq)
                return wire.replace(b'"kind":"masuk"', b'"kind":"pulang"')
            return wire

        service = serve(central_config(tmp_path, broker, url, {"kiosk-1": pub}))
        kiosk = Kiosk(tmp_path, broker, "kiosk-1", key, seal=lossy_seal)
        stranger_key, _ = write_key(tmp_path / "stranger", "kiosk-x")
        stranger = Kiosk(tmp_path, broker, "kiosk-x", stranger_key)
        try:
            kiosk.at(wita("2026-02-02", "07:20"))
            for nip in (ALEX, LIN, ALEX):  # anchor 1, Alex 2, Lin 3 (damaged once), Alex 4
                kiosk.punch(nip)
                kiosk.at(kiosk.utc + timedelta(minutes=20))
            stranger.at(wita("2026-02-02", "07:25"))
            stranger.punch(ALEX)
            wait_for(lambda: kiosk.all_acknowledged() and kiosk.outbox.counts()["acknowledged"] == 4,
                     f"the gap to be filled (outbox {kiosk.outbox.counts()}, ledger {service.ingestor.snapshot()})")
            # the damaged copy, then the stranger's anchor, punch and photo
            wait_for(lambda: service.ingestor.snapshot().get("rejected", 0) >= 4, "the stranger's rejections")
            assert stranger.outbox.counts()["acknowledged"] == 0
        finally:
            kiosk.close()
            stranger.close()
            service.close()
        stats = service.ingestor.snapshot()
        assert mangled == [3] and stats["resend_requests"] >= 1 and stats["stored"] == 4, stats
        from kiosk_central.store import Ledger

        with Ledger(url) as ledger:
            reasons = [r[0] for r in ledger.rows("SELECT reason FROM rejections ORDER BY id")]
            assert ledger.rows("SELECT seq FROM events WHERE device_id = 'kiosk-1' ORDER BY seq") == [(1,), (2,), (3,),
                                                                                                       (4,)]
        assert sum("bad signature" in r for r in reasons) == 1
        assert sum("unknown device 'kiosk-x'" in r for r in reasons) == 3


def test_serve_starts_subscribes_and_stops_on_request(broker: Broker, tmp_path: Path) -> None:
    from kiosk_central.cli import serve as serve_until

    _, pub = write_key(tmp_path / "keys", "kiosk-1")
    config = central_config(tmp_path, broker, f"sqlite:///{tmp_path / 'ledger.sqlite'}", {"kiosk-1": pub})
    stop = threading.Event()
    stop.set()
    assert serve_until(load_central_config(config), stop) == 0
    assert (tmp_path / "ledger.sqlite").exists()


def test_the_module_runs_as_a_command() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "kiosk_central", "recap", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and "--office" in done.stdout


@pytest.mark.slow
def test_a_replayed_clip_becomes_a_recap_through_the_broker_and_postgresql(hamilton_gallery: Path, broker: Broker,
                                                                           tmp_path: Path) -> None:
    """`kiosk run` on the Hamilton clip publishes to the broker, the ledger stores and acknowledges every event, and
    the day's recap shows Lin present. This machine's clock is not known to be NTP-synced (no systemd), so the
    clip's punches carry ``since_boot_synced: false`` and wait in the ledger until the kiosk, restarted with a synced
    clock, sends this boot's time anchor; then they count."""
    import zoneinfo

    from conftest import EXAMPLES, need
    from conftest import LIN as LIN_IN_CLIP

    from kiosk.app import run
    from kiosk.config import load_config
    from kiosk.events import clock
    from kiosk_central.store import Ledger

    clip = need(EXAMPLES / "short_hamilton_clip.mp4")
    with database("postgresql", tmp_path) as url:
        private_pem, public_pem = signing.generate_key()
        key_file = tmp_path / "device.key"
        signing.write_private_key(key_file, private_pem)
        pub = tmp_path / "device.pub"
        pub.write_bytes(public_pem)
        config = central_config(tmp_path, broker, url, {"kiosk-e2e": pub})
        every_day = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'
        (tmp_path / "rules.toml").write_text(
            f'[[offices]]\ncode = "bkpsdm"\nname = "Kantor"\nhours = [{{ days = {every_day}, start = 00:00:00, '
            'end = 23:59:00 }]\n'
        )
        service = serve(config)
        central_pub = tmp_path / "central.pub"
        central_pub.write_bytes(CENTRAL_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        kiosk_toml = tmp_path / "kiosk.toml"
        kiosk_toml.write_text(
            f'[device]\nid = "kiosk-e2e"\noffice_code = "bkpsdm"\nstate_dir = "{tmp_path / "state"}"\n'
            f'[camera]\nsource = "replay"\npath = "{clip}"\nrealtime = false\n'
            f'[recognizer]\ngallery = "{hamilton_gallery}"\n{FILM_LIVENESS_TOML}'
            f'[[schedule.windows]]\ndays = {every_day}\nkind = "masuk"\nstart = 00:00:00\nend = 23:59:00\n'
            f'[events]\nsigning_key_file = "{key_file}"\n'
            f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\nsite = "kantor"\n'
            f'central_key_file = "{central_pub}"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
            '[display]\nbackend = "null"\n'
        )
        kcfg = load_config(kiosk_toml)
        publisher = None
        try:
            assert run(kcfg, threading.Event()) == 0
            # The kiosk again, its clock now synced: its next status carries the time anchor of this boot, and the
            # acks the ledger sent meanwhile wait for it at the broker (persistent session).
            outbox = Outbox.open(kcfg.device.state_dir / "outbox.sqlite")
            recorder = Recorder(kcfg, outbox, read_clock=lambda: ClockState(synced=True, source="ntp", how="test"))
            recorder.status(fps=15.0, gallery=Gallery(version=1))
            key = signing.load_private_key(key_file)
            publisher = Publisher(outbox, kcfg.mqtt, "kiosk-e2e", seal=lambda p, s: signing.seal(p, s, key),
                                  central_keys=CENTRAL_KEYS).start()
            wait_for(lambda: outbox.counts()["pending"] + outbox.counts()["published"] == 0,
                     f"every event acknowledged (outbox {outbox.counts()}, ledger {service.ingestor.snapshot()})")
        finally:
            if publisher is not None:
                publisher.close()
                outbox.close()
            service.close()
        assert service.ingestor.snapshot().get("rejected", 0) == 0
        with Ledger(url) as ledger:
            rows = ledger.rows("SELECT time_ms, time_source, boot_id FROM events WHERE type = 'attendance' AND nip = ?",
                               (LIN_IN_CLIP,))
            assert len(rows) == 1 and rows[0][1] in ("anchor", "device") and rows[0][2] == clock.boot_id(), rows
            local = datetime.fromtimestamp(rows[0][0] / 1000, zoneinfo.ZoneInfo("Asia/Makassar"))
            recap = recaps.build_recap(ledger, "bkpsdm", local.date(), local.date(), today=local.date())
        lin = {d.nip: d for d in recap.days}[LIN_IN_CLIP]
        assert (lin.status, lin.check_in) == ("present", local.time().replace(second=0, microsecond=0))
        assert lin.early_band == "PSW4"  # no check-out in the clip
