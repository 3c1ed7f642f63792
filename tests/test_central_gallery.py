"""Gallery distribution: central cuts the master gallery by office and publishes it retained to each office's kiosks,
each in a command signed for that kiosk with its next command version; a kiosk that connects later gets it, checks
it and installs it, and refuses another office's push (tests/broker.py: real Mosquitto)."""

from __future__ import annotations

import json
import queue
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from broker import Broker, available
from central_support import ALEX, LIN, OBAMA, database, write_key
from conftest import wait_for

from kiosk import app
from kiosk.commands import AppliedVersion, CentralCommands, Queued
from kiosk.config import MqttConfig, RecognizerConfig
from kiosk.events.mqtt import Publisher
from kiosk.events.outbox import Outbox
from kiosk_central import distribute
from kiosk_central.cli import main as central_main
from kiosk_central.settings import BrokerConfig
from kiosk_central.store import Ledger
from kiosk_contract import signing
from kiosk_contract.commands import parse_command
from kiosk_contract.gallery import Gallery, Person

NOW = "2026-11-30T07:00:00+08:00"


def master() -> Gallery:
    rng = np.random.default_rng(3)
    return Gallery([Person(nip, name, "unit", rng.random((2, 128), np.float32))
                    for nip, name in ((ALEX, "Alex"), (LIN, "Lin"), (OBAMA, "Obama"))])


def ledger_with_offices(url: str) -> Ledger:
    """Alex in bkpsdm, Lin in dinkes (moved there from bkpsdm, which she left last year), Obama in no office (he left
    dinkes last year); kiosk-1 (bkpsdm) and kiosk-2 (dinkes) have published, kiosk-3 (dinkes) never has; kiosk-4 is
    revoked."""
    ledger = Ledger(url)
    ledger.migrate()
    with ledger.transaction():
        for nip, office in ((ALEX, "bkpsdm"), (LIN, "dinkes"), (OBAMA, "dinkes")):
            ledger.execute("INSERT INTO employees (nip, name, office, updated_at) VALUES (?, ?, ?, ?)",
                           (nip, nip, office, NOW))
        for nip, office, start, end in ((ALEX, "bkpsdm", "1970-01-01", None), (LIN, "bkpsdm", "1970-01-01",
                                        "2020-12-31"), (LIN, "dinkes", "2021-01-01", None),
                                        (OBAMA, "dinkes", "1970-01-01", "2020-12-31")):
            ledger.execute("INSERT INTO employee_assignments (nip, office, valid_from, valid_to, entered_by, "
                           "entered_at) VALUES (?, ?, ?, ?, ?, ?)", (nip, office, start, end, "test", NOW))
        for device, office, revoked in (("kiosk-1", "bkpsdm", 0), ("kiosk-2", "dinkes", 0), ("kiosk-3", "dinkes", 0),
                                        ("kiosk-4", "dinkes", 1)):
            ledger.execute("INSERT INTO devices (device_id, office, revoked, updated_at) VALUES (?, ?, ?, ?)",
                           (device, office, revoked, NOW))
        ledger.advance("kiosk-1", "kantor", 1)
        ledger.advance("kiosk-2", "puskesmas", 1)
    return ledger


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_kiosk_gets_its_office_gallery_in_a_command_bound_to_it(backend: str, tmp_path: Path) -> None:
    central, central_pub = write_key(tmp_path, "central")
    keys = signing.load_public_keys([central_pub])
    with database(backend, tmp_path) as url:
        ledger = ledger_with_offices(url)
        try:
            plans = {p.office: p for p in distribute.plan(ledger, master())}
            assert {o: (p.gallery.nips, p.gallery.version, p.gallery.office, p.devices, p.unaddressed)
                    for o, p in plans.items()} == {
                "bkpsdm": ([ALEX], 1, "bkpsdm", (("kiosk-1", "kantor"),), ()),
                "dinkes": ([LIN], 1, "dinkes", (("kiosk-2", "puskesmas"),), ("kiosk-3",)),
            }, "Obama left and Lin left bkpsdm: their faces go to no kiosk of those offices; the revoked kiosk-4 " \
               "gets nothing"
            sent: list[tuple[str, bytes]] = []
            report = distribute.push(ledger, list(plans.values()), central, lambda t, p: sent.append((t, p)),
                                     "presensi/v1")
            assert "dinkes: version 1, 1 people, to 1 kiosk(s); not yet connected (push again later): kiosk-3" in report
            assert [t for t, _ in sent] == ["presensi/v1/kantor/kiosk-1/cmd/set/gallery",
                                          "presensi/v1/puskesmas/kiosk-2/cmd/set/gallery"], "the gallery channel"
            command = parse_command(sent[1][1])
            signing.verify(command, keys)
            assert (command["cmd"], command["gallery_version"], command["target"], command["version"]) == (
                "install_gallery", 1, {"office": "dinkes", "device": "kiosk-2"}, 1)
            assert command["issued_at"] < command["expires_at"]
            forged = {**command, "target": {"office": "bkpsdm", "device": "kiosk-1"}}
            with pytest.raises(signing.SignatureError):
                signing.verify(forged, keys)
            again = distribute.plan(ledger, master(), ["bkpsdm"])
            distribute.push(ledger, again, central, lambda t, p: sent.append((t, p)), "presensi/v1")
            assert parse_command(sent[-1][1])["version"] == 2, "each kiosk's command versions grow"
            with pytest.raises(ValueError, match="nowhere"):
                distribute.plan(ledger, master(), ["nowhere"])
            ledger.set_running("kiosk-1", 5, "2", "bkpsdm", None)
            ledger.set_running("kiosk-2", 5, "1", "bkpsdm", None)  # dinkes' kiosk running bkpsdm's gallery
            state = {k.device: (k.running_office, k.running_version, k.latest, k.state)
                     for k in distribute.status(ledger)}
            assert state["kiosk-1"] == ("bkpsdm", "2", 2, "current")
            assert state["kiosk-2"] == ("bkpsdm", "1", 1, "wrong office"), "never reported current"
            assert state["kiosk-3"] == (None, None, 1, "unknown")
        finally:
            ledger.close()


@pytest.mark.skipif(not available(), reason="mosquitto is not installed")
def test_another_offices_push_is_refused_and_a_kiosk_that_connects_later_installs_its_own(tmp_path: Path) -> None:
    """The issue's attack: office A's signed push, replayed on office B's kiosk, was installed."""
    central, central_pub = write_key(tmp_path, "central")
    device_key, _ = write_key(tmp_path, "kiosk-1")
    with Broker(tmp_path / "broker") as broker, database("sqlite", tmp_path) as url:
        ledger = ledger_with_offices(url)
        with distribute.RetainedPublisher(BrokerConfig(host=broker.host, port=broker.port)) as out:
            distribute.push(ledger, distribute.plan(ledger, master()), central, out.publish, "presensi/v1")
        ledger.close()
        dinkes_push = wait_for(lambda: retained(broker, "presensi/v1/puskesmas/kiosk-2/cmd/set/gallery"),
                               "dinkes' retained push")

        # kiosk-1 (bkpsdm) comes online afterwards: its retained command is delivered, checked and queued
        cfg = RecognizerConfig(gallery=tmp_path / "kiosk-gallery.kgal")
        work: queue.Queue[Queued] = queue.Queue()
        applied = AppliedVersion(tmp_path / "commands.json")
        gate = CentralCommands(device="kiosk-1", office="bkpsdm", central_keys=signing.load_public_keys([central_pub]),
                               applied=applied, work=work, gallery=Gallery, now=lambda: None)
        mqtt_cfg = MqttConfig(enabled=True, host=broker.host, port=broker.port, site="kantor", keepalive_s=5,
                              reconnect_min_s=0.2, reconnect_max_s=1.0)
        results = Listener(broker, "presensi/v1/kantor/kiosk-1/cmd/result")
        with Outbox.open(tmp_path / "outbox.sqlite") as outbox, Publisher(
            outbox, mqtt_cfg, "kiosk-1", seal=lambda payload, seq: signing.seal(payload, seq, device_key),
            central_keys=gate.central_keys, commands=gate,
        ).start():
            item = wait_for(lambda: None if work.empty() else work.get_nowait(), "the retained install_gallery")
            # office A's push replayed on B's kiosk
            results.send("presensi/v1/kantor/kiosk-1/cmd/set/gallery", dinkes_push)
            answers = wait_for(lambda: len(results.got) >= 2 and results.got, "both results")
        results.close()
        assert (item.action, item.version, item.argument[1:]) == ("install", 1, (1, "bkpsdm"))
        refused = json.loads(answers[1])
        assert (refused["ok"], refused["refused"]) == (False, "wrong_device") and work.empty()
        installed = app.store_gallery(cfg, item.argument[0])
        assert (installed.nips, installed.version, installed.office) == ([ALEX], 1, "bkpsdm")
        assert Gallery.load(cfg.gallery).nips == [ALEX], "written where the kiosk loads it from"


class Listener:
    """A test client: the messages of one topic, and a way to publish as anyone could with a stolen certificate."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.got: list[bytes] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:6]}")
        self.client.on_message = lambda c, u, m: self.got.append(bytes(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker: Broker, topic: str) -> bytes | None:
    """The retained message of ``topic``, or None."""
    listener = Listener(broker, topic)
    try:
        wait_for(lambda: listener.got, f"the retained message of {topic}", timeout=3)
    except AssertionError:
        return None
    finally:
        listener.close()
    return listener.got[0]


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
        config.write_text(f'[database]\nurl = "{url}"\n[broker]\nhost = "{broker.host}"\nport = {broker.port}\n'
                          f'[signing]\nkey_file = "{key}"\n')
        push = ["gallery", "push", "--config", str(config), "--gallery", str(gallery)]
        assert central_main([*push, "--office", "nowhere"]) == 2
        assert "no employee or kiosk of office(s) nowhere" in capsys.readouterr().err
        assert central_main([*push, "--office", "bkpsdm"]) == 0
        assert "bkpsdm: version 1, 1 people, to 1 kiosk(s)" in capsys.readouterr().out
        assert central_main(["gallery", "status", "--config", str(config)]) == 0
        shown = capsys.readouterr().out.splitlines()
        assert shown[0] == "kiosk-1\tbkpsdm\truns -\tlatest 1\tunknown"
        assert shown[1].startswith("kiosk-2\tdinkes\truns -\tlatest -")
        key.chmod(0o644)
        assert central_main(push) == 2, "a central key open to others is refused"
