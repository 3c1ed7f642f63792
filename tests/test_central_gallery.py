"""Gallery distribution: central cuts the master gallery by office, signs it and publishes it retained to each
office's kiosks; a kiosk that connects later gets it, verifies it and installs it (tests/broker.py: real Mosquitto)."""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Broker, available
from central_support import ALEX, LIN, OBAMA, database, write_key
from conftest import wait_for

from kiosk import app
from kiosk.config import MqttConfig, RecognizerConfig
from kiosk.events.mqtt import Publisher
from kiosk.events.outbox import Outbox
from kiosk.recognizer.pipeline import Pipeline
from kiosk_central import distribute
from kiosk_central.cli import main as central_main
from kiosk_central.settings import BrokerConfig
from kiosk_central.store import Ledger
from kiosk_contract import signing
from kiosk_contract.gallery import Gallery, Person

NOW = "2026-11-30T07:00:00+08:00"


def master() -> Gallery:
    rng = np.random.default_rng(3)
    return Gallery([Person(nip, name, "unit", rng.random((2, 128), np.float32))
                    for nip, name in ((ALEX, "Alex"), (LIN, "Lin"), (OBAMA, "Obama"))])


def ledger_with_offices(url: str) -> Ledger:
    """Alex in bkpsdm, Lin in dinkes, Obama in no office; kiosk-1 (bkpsdm) and kiosk-2 (dinkes) have published,
    kiosk-3 (dinkes) never has; kiosk-4 is revoked."""
    ledger = Ledger(url)
    ledger.migrate()
    with ledger.transaction():
        for nip, office in ((ALEX, "bkpsdm"), (LIN, "dinkes")):
            ledger.execute("INSERT INTO employees (nip, name, office, updated_at) VALUES (?, ?, ?, ?)",
                           (nip, nip, office, NOW))
        for device, office, revoked in (("kiosk-1", "bkpsdm", 0), ("kiosk-2", "dinkes", 0), ("kiosk-3", "dinkes", 0),
                                        ("kiosk-4", "dinkes", 1)):
            ledger.execute("INSERT INTO devices (device_id, office, revoked, updated_at) VALUES (?, ?, ?, ?)",
                           (device, office, revoked, NOW))
        ledger.advance("kiosk-1", "kantor", 1)
        ledger.advance("kiosk-2", "puskesmas", 1)
    return ledger


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_office_gets_its_own_signed_gallery_with_the_next_version(backend: str, tmp_path: Path) -> None:
    central, central_pub = write_key(tmp_path, "central")
    keys = signing.load_public_keys([central_pub])
    with database(backend, tmp_path) as url:
        ledger = ledger_with_offices(url)
        try:
            plans = {p.office: p for p in distribute.plan(ledger, master())}
            assert {o: (p.gallery.nips, p.gallery.version, p.devices, p.unaddressed) for o, p in plans.items()} == {
                "bkpsdm": ([ALEX], 1, (("kiosk-1", "kantor"),), ()),
                "dinkes": ([LIN], 1, (("kiosk-2", "puskesmas"),), ("kiosk-3",)),
            }, "Obama is in no office; the revoked kiosk-4 gets nothing"
            sent: list[tuple[str, bytes]] = []
            report = distribute.push(ledger, list(plans.values()), central, lambda t, p: sent.append((t, p)),
                                     "presensi/v1")
            assert "dinkes: version 1, 1 people, to 1 kiosk(s); not yet connected (push again later): kiosk-3" in report
            assert [t for t, _ in sent] == ["presensi/v1/kantor/kiosk-1/cmd", "presensi/v1/puskesmas/kiosk-2/cmd"]
            command = json.loads(sent[1][1])
            signing.verify(command, keys)
            assert command["cmd"] == "install_gallery" and command["version"] == 1 and command["office"] == "dinkes"
            forged = {**command, "gallery_b64": command["gallery_b64"][:-8] + "AAAAAAA="}
            with pytest.raises(signing.SignatureError):
                signing.verify(forged, keys)
            again = distribute.plan(ledger, master(), ["dinkes"])
            assert [(p.office, p.gallery.version) for p in again] == [("dinkes", 2)]
            with pytest.raises(ValueError, match="nowhere"):
                distribute.plan(ledger, master(), ["nowhere"])
            ledger.set_gallery_version("kiosk-1", "1")
            assert distribute.status(ledger)[:2] == [("kiosk-1", "bkpsdm", "1", 1), ("kiosk-2", "dinkes", None, 1)]
        finally:
            ledger.close()


@pytest.mark.skipif(not available(), reason="mosquitto is not installed")
def test_a_kiosk_that_connects_later_installs_the_pushed_gallery(tmp_path: Path) -> None:
    central, central_pub = write_key(tmp_path, "central")
    device_key, _ = write_key(tmp_path, "kiosk-1")
    with Broker(tmp_path / "broker") as broker, database("sqlite", tmp_path) as url:
        ledger = ledger_with_offices(url)
        plans = distribute.plan(ledger, master(), ["bkpsdm"])
        with distribute.RetainedPublisher(BrokerConfig(host=broker.host, port=broker.port)) as out:
            distribute.push(ledger, plans, central, out.publish, "presensi/v1")
        ledger.close()

        # the kiosk comes online afterwards: the retained command is delivered, verified and queued for its loop
        cfg = RecognizerConfig(gallery=tmp_path / "kiosk-gallery.kgal")
        pipeline = Pipeline(Gallery(), cfg)
        commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        mqtt_cfg = MqttConfig(enabled=True, host=broker.host, port=broker.port, site="kantor", keepalive_s=5,
                              reconnect_min_s=0.2, reconnect_max_s=1.0)
        with Outbox.open(tmp_path / "outbox.sqlite") as outbox, Publisher(
            outbox, mqtt_cfg, "kiosk-1", seal=lambda payload, seq: signing.seal(payload, seq, device_key),
            actions=app.gallery_actions(pipeline, commands), central_keys=signing.load_public_keys([central_pub]),
        ).start():
            wait_for(lambda: not commands.empty(), "the retained install_gallery command")
            action, data = commands.get_nowait()
        assert action == "install"
        installed = app.store_gallery(cfg, data)
        assert installed.nips == [ALEX] and installed.version == 1
        assert Gallery.load(cfg.gallery).nips == [ALEX], "written where the kiosk loads it from"


@pytest.mark.skipif(not available(), reason="mosquitto is not installed")
def test_the_push_and_status_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private_pem, _ = signing.generate_key()
    key = tmp_path / "central.key"
    key.write_bytes(private_pem)
    key.chmod(0o600)
    gallery = tmp_path / "master.kgal"
    master().save(gallery)
    with Broker(tmp_path / "broker") as broker, database("sqlite", tmp_path) as url:
        ledger_with_offices(url).close()
        config = tmp_path / "central.toml"
        config.write_text(f'[database]\nurl = "{url}"\n[broker]\nhost = "{broker.host}"\nport = {broker.port}\n')
        push = ["gallery", "push", "--config", str(config), "--gallery", str(gallery), "--key", str(key)]
        assert central_main([*push, "--office", "nowhere"]) == 2
        assert "no employee or kiosk of office(s) nowhere" in capsys.readouterr().err
        assert central_main([*push, "--office", "bkpsdm"]) == 0
        assert "bkpsdm: version 1, 1 people, to 1 kiosk(s)" in capsys.readouterr().out
        assert central_main(["gallery", "status", "--config", str(config)]) == 0
        shown = capsys.readouterr().out.splitlines()
        assert shown[0] == "kiosk-1\tbkpsdm\truns -\tlatest 1\tbehind"
        assert shown[1].startswith("kiosk-2\tdinkes\truns -\tlatest -")
        key.chmod(0o644)
        assert central_main(push) == 2, "a central key open to others is refused"
