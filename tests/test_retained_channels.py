"""Two kinds of retained changing commands, one channel each (kiosk_contract.commands.CHANNELS).

A broker keeps one retained message per topic, and central pushes both galleries and schedules retained: on one
topic, the schedule pushed after a gallery replaced it for every kiosk offline longer than its session. And a kiosk
that kept one applied version refused the gallery (version 5) as a replay once it had applied the schedule (version 6)
delivered first. Now each channel has its own retained topic (``…/cmd/set/<channel>``) and its own applied version
(``<state_dir>/commands.json`` format 2). Through a real Mosquitto (tests/broker.py) where it matters.
"""

from __future__ import annotations

import json
import queue
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from broker import Broker, available
from central_support import ALEX, LIN, database, write_key
from conftest import wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import app
from kiosk.camera import Frame
from kiosk.commands import AppliedVersion, CentralCommands, CurrentSchedule, Queued
from kiosk.config import KioskConfig, MqttConfig
from kiosk.errors import KioskError
from kiosk.events.clock import ClockState
from kiosk.events.mqtt import Publisher
from kiosk.events.outbox import Outbox
from kiosk.events.recorder import Recorder
from kiosk.recognizer.pipeline import FrameResult, Pipeline
from kiosk.terminal import Terminal, TerminalView
from kiosk_central import distribute
from kiosk_central.rules import load_rules, save_rules
from kiosk_central.settings import BrokerConfig
from kiosk_central.store import Ledger
from kiosk_contract import signing
from kiosk_contract.commands import CommandRefused, Target, build_command, schedule_command_fields
from kiosk_contract.gallery import Gallery, Person
from kiosk_contract.schedule import ScheduleConfig, schedule_to_data, schedule_version_of
from kiosk_contract.topics import Topics, mosquitto_acl

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_RULES = REPO / "examples" / "central-rules.toml"
CENTRAL = Ed25519PrivateKey.generate()
KEYS = {signing.key_id_of(CENTRAL): CENTRAL.public_key()}
PREFIX = "presensi/v1"
TZ = "Asia/Makassar"
FACE = np.zeros((360, 640, 3), dtype=np.uint8)
NOW = "2026-11-30T07:00:00+08:00"
needs_mosquitto = pytest.mark.skipif(not available(), reason="mosquitto is not installed")


# ---------------------------------------------------------------------------------------- the applied versions


def test_a_version_is_applied_per_channel_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "commands.json"
    applied = AppliedVersion(path)
    assert applied.versions() == {"gallery": 0, "schedule": 0} and applied.value == 0 and not path.exists()
    applied.record("schedule", 6)
    applied.record("gallery", 5)  # older-numbered, on the other channel: recorded all the same
    applied.record("gallery", 3)  # older on its own channel: changes nothing
    assert json.loads(path.read_text()) == {"format": 2, "applied": {"gallery": 5, "schedule": 6}}
    again = AppliedVersion(path)
    assert (again.of("gallery"), again.of("schedule"), again.value) == (5, 6, 6)
    with pytest.raises(ValueError, match="no command channel 'people'"):
        again.record("people", 9)


def test_a_format_1_record_is_read_as_its_version_on_every_channel_and_upgraded_at_the_next_record(
        tmp_path: Path) -> None:
    path = tmp_path / "commands.json"
    path.write_text('{"format": 1, "applied_version": 17}\n')
    applied = AppliedVersion(path)
    assert applied.versions() == {"gallery": 17, "schedule": 17}, "nothing older than 17 gets in on any channel"
    assert path.read_text() == '{"format": 1, "applied_version": 17}\n', "reading changes nothing"
    applied.record("schedule", 18)
    assert json.loads(path.read_text()) == {"format": 2, "applied": {"gallery": 17, "schedule": 18}}
    assert AppliedVersion(path).versions() == {"gallery": 17, "schedule": 18}


def test_a_channel_a_record_does_not_name_has_applied_nothing_and_unknown_ones_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "commands.json"
    path.write_text('{"format": 2, "applied": {"gallery": 4, "roster": 9}}')  # e.g. written by a newer kiosk
    applied = AppliedVersion(path)
    assert (applied.of("gallery"), applied.of("schedule")) == (4, 0)
    applied.record("schedule", 5)
    assert json.loads(path.read_text())["applied"] == {"gallery": 4, "schedule": 5, "roster": 9}


@pytest.mark.parametrize("text", [
    "", "{", "[]", '{"format": 1}', '{"format": 1, "applied_version": "5"}', '{"format": 1, "applied_version": true}',
    '{"format": 2, "applied": 5}', '{"format": 2, "applied": {"gallery": -1}}',
    '{"format": 2, "applied": {"gallery": 1.5}}', '{"format": 2, "applied": {"schedule": null}}',
    '{"format": 2, "applied_version": 5}', '{"format": 3, "applied": {"gallery": 5}}',
])
def test_an_unreadable_record_still_refuses_to_start(tmp_path: Path, text: str) -> None:
    path = tmp_path / "commands.json"
    path.write_text(text)
    with pytest.raises(KioskError, match="remove it to accept central's commands from version 1 again"):
        AppliedVersion(path)


# ------------------------------------------------------------------------------------------ a kiosk, handling


class Screen:
    def show(self, frame: Frame, result: FrameResult, outcomes: list[Any]) -> None:
        pass

    def update(self, view: TerminalView) -> None:
        pass


class Pins:
    def __init__(self) -> None:
        self.q: queue.Queue[str] = queue.Queue()

    def events(self) -> queue.Queue[str]:
        return self.q

    def signal(self, status: str) -> None:
        pass


class Kiosk:
    """kiosk-1 of bkpsdm as kiosk.app wires it: its state folder (gallery file, schedule, commands.json), recorder,
    terminal and command gate (no camera, no screen)."""

    def __init__(self, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        base = KioskConfig()
        self.cfg = cfg = replace(base, device=replace(base.device, id="kiosk-1", office_code="bkpsdm", timezone=TZ),
                                 recognizer=replace(base.recognizer, gallery=state / "gallery.kgal"))
        self.schedules = CurrentSchedule(cfg.schedule, state / "schedule.json", TZ)
        assert self.schedules.load() is None
        self.outbox = Outbox.open(state / "outbox.sqlite")
        self.recorder = Recorder(cfg, self.outbox, read_clock=lambda: ClockState(True, "ntp", "test"),
                                 schedules=self.schedules)
        self.work: queue.Queue[Queued] = queue.Queue(maxsize=16)
        self.applied = AppliedVersion(state / "commands.json")
        gallery = Gallery.load(cfg.recognizer.gallery) if cfg.recognizer.gallery.exists() else Gallery()
        self.pipeline = Pipeline(gallery, cfg.recognizer)
        self.gate = CentralCommands(device="kiosk-1", office="bkpsdm", central_keys=KEYS, applied=self.applied,
                                    work=self.work, gallery=lambda: self.pipeline.gallery,
                                    now=lambda: datetime.now(UTC), schedule=self.schedules)
        self.terminal = Terminal(
            cfg, self.pipeline, self.recorder, self.outbox, Screen(), Pins(), inputs=queue.Queue(),  # type: ignore[arg-type]
            commands=self.work, applied=self.applied, monotonic=lambda: 1000.0,
            load_gallery=lambda: Gallery.load(cfg.recognizer.gallery),
            store_gallery=lambda data, expect: app.store_gallery(cfg.recognizer, data, expect=expect),
        )

    def frame(self) -> None:
        self.terminal.frame(Frame(rgb=FACE, index=0, t=0.0))

    def close(self) -> None:
        self.outbox.close()


def office_gallery(version: int) -> Gallery:
    rng = np.random.default_rng(version)
    return Gallery([Person(ALEX, "Alex", "unit", rng.random((2, 128), np.float32))], version=version, office="bkpsdm")


def gallery_push(version: int, gallery_version: int) -> dict[str, Any]:
    return distribute.install_command(office_gallery(gallery_version).to_bytes(), gallery_version,
                                      Target("bkpsdm", "kiosk-1"), version, CENTRAL, ttl=distribute.timedelta(days=30))


def schedule_push(version: int, schedule: ScheduleConfig | None = None) -> dict[str, Any]:
    schedule = schedule or ScheduleConfig()
    name = schedule_version_of(schedule_to_data(schedule), TZ)
    return build_command("install_schedule", key=CENTRAL, target=Target("bkpsdm", "kiosk-1"), version=version,
                         **schedule_command_fields(schedule, timezone=TZ, schedule_version=name))


def test_a_schedule_applied_first_does_not_make_the_older_numbered_gallery_a_replay(tmp_path: Path) -> None:
    kiosk = Kiosk(tmp_path / "state")
    try:
        schedule, gallery = schedule_push(6), gallery_push(5, 3)
        assert kiosk.gate.handle(schedule)["queued"]
        kiosk.frame()
        assert kiosk.applied.versions() == {"gallery": 0, "schedule": 6}
        assert kiosk.gate.handle(gallery)["queued"], "version 5 is newer than what the gallery channel applied"
        kiosk.frame()
        assert (kiosk.pipeline.gallery.version, kiosk.pipeline.gallery.office) == (3, "bkpsdm")
        assert Gallery.load(kiosk.cfg.recognizer.gallery).nips == [ALEX]
        assert kiosk.applied.versions() == {"gallery": 5, "schedule": 6}
        assert kiosk.schedules.version == schedule["schedule_version"]

        # replays and older commands are still refused, each against its own channel
        for command, reason in ((gallery, "replay"), (schedule, "replay"), (gallery_push(4, 2), "older_version"),
                                (schedule_push(2), "older_version")):
            with pytest.raises(CommandRefused) as refused:
                kiosk.gate.handle(command)
            assert refused.value.reason == reason, command["cmd"]
        removal = build_command("remove_people", key=CENTRAL, target=Target("bkpsdm", "kiosk-1"), version=4,
                                nips=[ALEX])
        with pytest.raises(CommandRefused, match="older than version 5, applied already on the gallery channel"):
            kiosk.gate.handle(removal)
        assert kiosk.work.empty()
    finally:
        kiosk.close()


def test_the_frame_loop_skips_a_queued_command_its_channel_applied_meanwhile_not_the_other_channel_s(
        tmp_path: Path) -> None:
    kiosk = Kiosk(tmp_path / "state")
    try:
        old_gallery, new_gallery = gallery_push(2, 1), gallery_push(7, 2)
        for command in (old_gallery, new_gallery, schedule_push(3)):  # both checked before either is carried out
            kiosk.gate.handle(command)
        kiosk.frame()
        assert kiosk.applied.versions() == {"gallery": 7, "schedule": 3}
        assert kiosk.pipeline.gallery.version == 2
        kiosk.gate.handle(gallery_push(9, 3))
        kiosk.work.put_nowait(Queued("install", (office_gallery(1).to_bytes(), 1, "bkpsdm"), 7))  # a late duplicate
        kiosk.frame()
        assert kiosk.pipeline.gallery.version == 3 and kiosk.applied.of("gallery") == 9, "the duplicate is skipped"
    finally:
        kiosk.close()


# --------------------------------------------------------------------------------------- through Mosquitto


class Listener:
    """A test client on one topic filter (the central server's side, or anyone's with a certificate)."""

    def __init__(self, broker: Broker, *topics: str, username: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        for topic in topics:
            self.client.subscribe(topic, qos=1)

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def central_ledger(url: str) -> Ledger:
    """The example rules; Alex (bkpsdm) and Lin (disdik); kiosk-1 of bkpsdm, which published once from site kantor."""
    ledger = Ledger(url)
    ledger.migrate()
    save_rules(ledger, load_rules(EXAMPLE_RULES))
    with ledger.transaction():
        for nip, office in ((ALEX, "bkpsdm"), (LIN, "disdik")):
            ledger.execute("INSERT INTO employees (nip, name, office, updated_at) VALUES (?, ?, ?, ?)",
                           (nip, nip, office, NOW))
            ledger.execute("INSERT INTO employee_assignments (nip, office, valid_from, valid_to, entered_by, "
                           "entered_at) VALUES (?, ?, ?, ?, ?, ?)", (nip, office, "1970-01-01", None, "test", NOW))
        ledger.execute("INSERT INTO devices (device_id, office, revoked, updated_at) VALUES (?, ?, ?, ?)",
                       ("kiosk-1", "bkpsdm", 0, NOW))
        ledger.advance("kiosk-1", "kantor", 1)
    return ledger


@needs_mosquitto
@pytest.mark.parametrize("delivered_first", ["gallery", "schedule"])
def test_an_offline_kiosk_gets_both_the_pushed_gallery_and_the_later_schedule_and_a_replay_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delivered_first: str) -> None:
    rng = np.random.default_rng(3)
    master = Gallery([Person(nip, nip, "unit", rng.random((2, 128), np.float32)) for nip in (ALEX, LIN)])
    kiosk_topics = Topics.of(PREFIX, "kantor", "kiosk-1")
    if delivered_first == "schedule":  # the kiosk subscribes to the schedule channel first: Mosquitto delivers the
        order = ("schedule", "gallery")  # retained messages in the order of the subscription's topics
        monkeypatch.setattr(Topics, "channels", property(lambda self: {c: self.channel(c) for c in order}))
    with Broker(tmp_path / "broker") as broker, database("sqlite", tmp_path) as url:
        ledger = central_ledger(url)
        try:  # the gallery is pushed, then the schedule, while kiosk-1 is offline (it has no session at the broker)
            with distribute.RetainedPublisher(BrokerConfig(host=broker.host, port=broker.port)) as out:
                distribute.push(ledger, distribute.plan(ledger, master, ["bkpsdm"]), CENTRAL, out.publish, PREFIX)
            with distribute.RetainedPublisher(BrokerConfig(host=broker.host, port=broker.port), "schedule") as out:
                (plan,) = distribute.plan_schedules(ledger, ["bkpsdm"])
                distribute.push_schedules(ledger, [plan], CENTRAL, out.publish, PREFIX)
        finally:
            ledger.close()

        results = Listener(broker, kiosk_topics.cmd_result)
        mqtt_cfg = MqttConfig(enabled=True, host=broker.host, port=broker.port, site="kantor", keepalive_s=5,
                              reconnect_min_s=0.2, reconnect_max_s=1.0)
        device_key, _ = write_key(tmp_path / "keys", "kiosk-1")

        def connect(kiosk: Kiosk) -> Publisher:
            return Publisher(kiosk.outbox, mqtt_cfg, "kiosk-1", central_keys=KEYS, commands=kiosk.gate,
                             seal=lambda payload, seq: signing.seal(payload, seq, device_key)).start()

        kiosk = Kiosk(tmp_path / "state")
        publisher = connect(kiosk)
        try:
            wait_for(lambda: len(results.got) >= 2, "both retained commands answered")
            queued = [kiosk.work.get_nowait() for _ in range(kiosk.work.qsize())]
            assert [(q.channel, q.version) for q in queued] == sorted(
                [("gallery", 1), ("schedule", 2)], key=lambda c: c[0] != delivered_first), "as delivered"
            for item in queued:
                kiosk.work.put_nowait(item)
            kiosk.frame()
        finally:
            publisher.close()
            kiosk.close()
        answers = [json.loads(p) for _, p in results.got]
        assert all(a["ok"] and a["queued"] for a in answers), answers
        assert kiosk.applied.versions() == {"gallery": 1, "schedule": 2}, "both applied"
        installed = Gallery.load(kiosk.cfg.recognizer.gallery)
        assert (installed.nips, installed.version, installed.office) == ([ALEX], 1, "bkpsdm")
        assert kiosk.schedules.version == plan.version
        stored = (kiosk.cfg.recognizer.gallery.read_bytes(), (tmp_path / "state" / "schedule.json").read_bytes())

        # a restart: the retained gallery and schedule come again, and change nothing
        again = Kiosk(tmp_path / "state")
        assert again.applied.versions() == {"gallery": 1, "schedule": 2} and again.schedules.version == plan.version
        publisher = connect(again)
        try:
            wait_for(lambda: len(results.got) >= 4, "both retained commands answered again")
            again.frame()
        finally:
            publisher.close()
            again.close()
            results.close()
        replays = [json.loads(p) for _, p in results.got[2:]]
        assert sorted((a["cmd"], a["ok"], a["refused"]) for a in replays) == [
            ("install_gallery", False, "replay"), ("install_schedule", False, "replay")]
        assert again.work.empty() and AppliedVersion(tmp_path / "state" / "commands.json").versions() == {
            "gallery": 1, "schedule": 2}
        assert stored == (kiosk.cfg.recognizer.gallery.read_bytes(),
                          (tmp_path / "state" / "schedule.json").read_bytes())


@needs_mosquitto
def test_a_channel_topic_carries_only_its_own_channel_s_commands_and_a_cleared_one_is_no_command(
        tmp_path: Path) -> None:
    topics = Topics.of(PREFIX, "kantor", "kiosk-1")
    with Broker(tmp_path / "broker") as broker:
        kiosk = Kiosk(tmp_path / "state")
        results = Listener(broker, topics.cmd_result)
        publisher = Publisher(kiosk.outbox, MqttConfig(enabled=True, host=broker.host, port=broker.port, site="kantor",
                                                       keepalive_s=5, reconnect_min_s=0.2, reconnect_max_s=1.0),
                              "kiosk-1", central_keys=KEYS, commands=kiosk.gate).start()
        try:
            wait_for(lambda: publisher.status()["connected"], "connected")
            wait_for(lambda: publisher.status()["connects"] == 1, "subscribed")
            results.send(topics.channel("gallery"), signing.wire(schedule_push(1)))
            results.send(topics.channel("schedule"), json.dumps({"v": 1, "request_id": "p", "cmd": "ping"}).encode())
            results.send(topics.channel("gallery"), b"", retain=True)  # clearing a retained message
            results.send(topics.cmd, b"")
            results.send(topics.cmd, signing.wire(gallery_push(2, 1)))  # the plain topic takes any command
            wait_for(lambda: len(results.got) >= 3, "three results")
            answers = [json.loads(p) for _, p in results.got]
            assert [(a["cmd"], a.get("refused")) for a in answers] == [
                ("install_schedule", "wrong_channel"), ("ping", "wrong_channel"), ("install_gallery", None)]
            assert "does not belong on the gallery channel's topic" in answers[0]["error"]
            assert publisher.status()["refused_commands"] == 2, "the empty messages got no answer"
        finally:
            publisher.close()
            results.close()
            kiosk.close()
        assert [(q.action, q.version) for q in [kiosk.work.get_nowait()]] == [("install", 2)] and kiosk.work.empty()


@needs_mosquitto
def test_the_acl_lets_a_device_read_its_own_channels_and_nothing_of_another_device(tmp_path: Path) -> None:
    with Broker(tmp_path / "acl", acl=mosquitto_acl(PREFIX)) as broker:
        central = Listener(broker, username="central")
        a, b = Topics.of(PREFIX, "kantor", "kiosk-a"), Topics.of(PREFIX, "kantor", "kiosk-b")
        for topic in (*a.channels.values(), *b.channels.values(), b.cmd_result):
            central.send(topic, topic.encode(), retain=True)
        reader = Listener(broker, f"{PREFIX}/#", f"{PREFIX}/+/+/cmd/#", *a.channels.values(), *b.channels.values(),
                          b.cmd_result, a.cmd_result, username="kiosk-a")
        wait_for(lambda: {t for t, _ in reader.got} >= set(a.channels.values()), "kiosk-a's retained channels")
        central.send(b.cmd_result, b"live")
        central.send(b.channel("gallery"), b"live")
        central.send(a.cmd_result, b"live")
        central.send(a.cmd, b"live")
        central.send(a.channel("schedule"), b"last")  # after the others, on the same connection
        wait_for(lambda: (a.channel("schedule"), b"last") in reader.got, "the last message")
        reader.close()
        central.close()
        assert {t for t, _ in reader.got} == {a.cmd, *a.channels.values()}, "nothing of kiosk-b, no cmd/result"
        assert all(p == t.encode() or p in (b"live", b"last") for t, p in reader.got)

        # and kiosk-a's certificate cannot write its own channels (MQTT 5: not authorized)
        stolen = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stolen", protocol=mqtt.MQTTv5)
        stolen.username_pw_set("kiosk-a")
        refusals: list[bool] = []
        stolen.on_publish = lambda c, u, mid, rc, p: refusals.append(rc.is_failure)
        stolen.connect(broker.host, broker.port)
        stolen.loop_start()
        for topic in a.channels.values():
            stolen.publish(topic, signing.wire(gallery_push(99, 9)), qos=1, retain=True)
        wait_for(lambda: len(refusals) == 2, "the broker's answers")
        stolen.disconnect()
        stolen.loop_stop()
        assert refusals == [True, True]
        check = Listener(broker, *a.channels.values(), username="central")
        wait_for(lambda: len(check.got) == 2, "the retained channels")
        check.close()
        assert sorted(p for _, p in check.got) == sorted(t.encode() for t in a.channels.values()), "unchanged"
