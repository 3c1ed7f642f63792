"""The MQTT publisher against real mosquitto brokers (tests/broker.py), each on its own free loopback port.

No wall-time assertions: every wait has a timeout and fails with what was seen so far.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from broker import Broker, available
from conftest import wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.commands import AppliedVersion, CentralCommands, Queued
from kiosk.config import MqttConfig
from kiosk.events.mqtt import Publisher, Topics
from kiosk.events.outbox import Outbox, OutboxEvent
from kiosk_contract import schema, signing, validation
from kiosk_contract import topics as topics_module
from kiosk_contract.acks import build_acks
from kiosk_contract.commands import Target, build_command
from kiosk_contract.gallery import Gallery

pytestmark = pytest.mark.skipif(not available(), reason="mosquitto is not installed")

REPO = Path(__file__).resolve().parent.parent
PREFIX = "presensi/v1"
SITE = "s1"
DEVICE = "kiosk-1"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"
CENTRAL = Ed25519PrivateKey.generate()  # the central server's key: acks and commands are signed with it
CENTRAL_KEYS = {signing.key_id_of(CENTRAL): CENTRAL.public_key()}


class Sub:
    """A test subscriber (the central server's side): MQTT 5, persistent session, reconnects on its own."""

    def __init__(
        self,
        broker: Broker,
        topic: str = f"{PREFIX}/#",
        *,
        client_id: str | None = None,
        username: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str], bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(1, 1)
        if username:
            self.client.username_pw_set(username)
        if tls:
            self.client.tls_set(ca_certs=str(broker.ca_file), certfile=str(tls[0]), keyfile=str(tls[1]))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect_async(broker.host, broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, "the test subscriber to subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        up = dict(getattr(msg.properties, "UserProperty", None) or [])
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), up, bool(msg.retain)))

    def on(self, suffix: str) -> list[tuple[bytes, dict[str, str], bool]]:
        with self.lock:
            return [(p, u, r) for t, p, u, r in self.messages if t.endswith("/" + suffix)]

    def event_ids(self, suffix: str = "event") -> list[str]:
        return [u["event_id"] for _, u, _ in self.on(suffix)]

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config(broker: Broker, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = dict(
        enabled=True,
        host=broker.host,
        port=broker.port,
        site=SITE,
        topic_prefix=PREFIX,
        keepalive_s=5,
        reconnect_min_s=1.0,
        reconnect_max_s=1.0,
    )
    return MqttConfig(**(base | kw))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.db") as ob:
        yield ob


@pytest.fixture
def subs() -> Iterator[list[Sub]]:
    made: list[Sub] = []
    yield made
    for s in made:
        s.close()


def eid(i: int) -> str:
    """The event id of test event ``i``: a UUIDv7, as every event id is."""
    return schema.new_event_id(1_764_547_200_000 + i, i.to_bytes(10, "big"))


def payload(i: int) -> bytes:
    return json.dumps({"event_id": eid(i), "nip": "198001012005011001", "i": i}).encode()


def test_events_arrive_in_seq_order_with_evidence_and_online(broker: Broker, outbox: Outbox, subs: list[Sub]) -> None:
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    with Publisher(outbox, config(broker), DEVICE) as pub:
        appended = []
        for i in range(45):  # more than the window of 20
            appended.append(outbox.append(eid(i), "attendance", payload(i), evidence=JPEG if i % 3 == 0 else None))
            pub.wake()
        wait_for(lambda: len(sub.on("event")) >= 45, "45 events")
        wait_for(lambda: outbox.counts()["published"] == 45, "all events marked published after PUBACK")
        events = sub.on("event")
        assert [int(u["seq"]) for _, u, _ in events] == [e.seq for e in appended]
        assert [p for p, _, _ in events] == [e.payload for e in appended]  # payload bytes unchanged
        assert {u["kind"] for _, u, _ in events} == {"attendance"}
        wait_for(lambda: len(sub.on("evidence")) >= 15, "15 evidence messages")
        with sub.lock:
            order = [(t.rsplit("/", 1)[1], u["event_id"]) for t, _, u, _ in sub.messages if "seq" in u]
        for body, up, _ in sub.on("evidence"):
            env = json.loads(body)
            assert base64.b64decode(env["jpeg_b64"]) == JPEG
            assert env["content_type"] == "image/jpeg" and up["event_id"] == env["event_id"]
            assert order.index(("event", env["event_id"])) < order.index(("evidence", env["event_id"]))
        # A late subscriber sees the retained "online" and a retained status
        late = Sub(broker, f"{topics.base}/status/#")
        subs.append(late)
        wait_for(lambda: late.on("online"), "retained online")
        assert late.on("online")[0][0] == b"online" and late.on("online")[0][2]
        status = json.loads(wait_for(lambda: late.on("status"), "retained status")[0][0])
        assert status["device"] == DEVICE and status["connected"] is True
        st = pub.status()
        assert st["connected"] and st["counts"]["published"] == 45 and st["published"] == 45
    wait_for(lambda: any(p == b"offline" for p, _, _ in late.on("online")), "clean offline on close")
    pub.close()  # idempotent


def ack(events: list[OutboxEvent], *, key: Ed25519PrivateKey = CENTRAL, device: str = DEVICE,
        ids: list[str] | None = None) -> bytes:
    """A signed ack for these stored events (``ids`` replaces their event ids: an ack for other events)."""
    pairs = [(e.seq, e.event_id if ids is None else ids[i]) for i, e in enumerate(events)]
    (message,) = build_acks(device, pairs, key)
    return signing.wire(message)


def test_signed_acks_release_events_by_seq_and_event_id(broker: Broker, outbox: Outbox, subs: list[Sub]) -> None:
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    with Publisher(outbox, config(broker), DEVICE, central_keys=CENTRAL_KEYS) as pub:
        events = [outbox.append(eid(i), "attendance", payload(i), evidence=JPEG) for i in range(10)]
        pub.wake()
        wait_for(lambda: outbox.counts()["published"] == 10, "10 published")
        sub.send(topics.ack, ack([events[0], events[1], events[7]]))
        wait_for(lambda: outbox.counts()["acknowledged"] == 3, "3 acknowledged by (seq, event_id)")
        assert outbox.get(eid(7)).state == "acknowledged" and outbox.evidence(events[7].seq) is None  # type: ignore[union-attr]
        sub.send(topics.ack, ack([events[3]], ids=["0190a4c2-7a1e-7b3c-8d4e-5f6a7b8c9d0e"]))  # another event, seq 3
        wait_for(lambda: outbox.mismatched_acks == 1, "an ack naming another event under seq 3 counted")
        assert outbox.get(eid(3)).state == "published"  # type: ignore[union-attr]
        assert pub.status()["acked"] == 3


def test_unsigned_forged_and_other_devices_acks_release_nothing(broker: Broker, outbox: Outbox,
                                                                subs: list[Sub]) -> None:
    """The issue's attack: with a copy of one kiosk's MQTT certificate, ``{"upto_seq": 1000000}`` on its ack topic
    made the kiosk release events the ledger never stored. Now only the central key's signature releases anything."""
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    stranger = Ed25519PrivateKey.generate()
    with Publisher(outbox, config(broker), DEVICE, central_keys=CENTRAL_KEYS) as pub:
        events = [outbox.append(eid(i), "attendance", payload(i), evidence=JPEG) for i in range(5)]
        pub.wake()
        wait_for(lambda: outbox.counts()["published"] == 5, "5 published")
        signed = json.loads(ack(events))
        attacks = [
            b'{"upto_seq": 1000000}',
            json.dumps({"acks": [e.event_id for e in events]}).encode(),
            json.dumps({k: v for k, v in signed.items() if k != "sig"}).encode(),  # unsigned
            ack(events, key=stranger),  # signed by a key that is not central's
            ack(events, device="kiosk-2"),  # central's ack for another kiosk, replayed here
            json.dumps(signed | {"events": signed["events"] + [{"seq": 99, "event_id": events[0].event_id}]}).encode(),
        ]
        for body in attacks:
            sub.send(topics.ack, body)
        wait_for(lambda: pub.status()["refused_acks"] == len(attacks), "every forged ack refused and counted")
        assert outbox.counts() == {"pending": 0, "published": 5, "acknowledged": 0}
        assert all(outbox.evidence(e.seq) == JPEG for e in events), "no photo deleted"
        sub.send(topics.ack, ack(events))
        wait_for(lambda: outbox.counts()["acknowledged"] == 5, "the genuine ack still works")


def test_malformed_acks_and_commands_change_nothing_and_every_command_gets_a_result(
    broker: Broker, outbox: Outbox, subs: list[Sub]
) -> None:
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    with Publisher(outbox, config(broker), DEVICE, central_keys=CENTRAL_KEYS) as pub:
        outbox.append(eid(0), "attendance", payload(0))
        pub.wake()
        wait_for(lambda: outbox.counts()["published"] == 1, "published")
        bad_acks = [b"not json", b"\xff\xfe", b"[1,2]", b"{}", b'{"acks": "e-0"}', b"[" * 100_000 + b"]" * 100_000]
        for body in bad_acks:
            sub.send(topics.ack, body)
        wait_for(lambda: pub.status()["refused_acks"] == len(bad_acks), "all malformed acks counted")
        commands = [
            b"garbage",
            json.dumps({"v": 1, "request_id": "r1", "cmd": "reboot"}).encode(),
            json.dumps({"v": 1, "cmd": "ping"}).encode(),
            b'{"v": 1, "request_id": "deep", "cmd": "ping", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            b'{"request_id": "big", "cmd": "ping", "pad": "' + b"x" * (49 * 1024 * 1024) + b'"}',
            json.dumps({"v": 1, "request_id": "r2", "cmd": "ping"}).encode(),
        ]
        for body in commands:
            sub.send(topics.cmd, body)
        results = wait_for(lambda: len(sub.on("cmd/result")) >= len(commands) and sub.on("cmd/result"),
                           "a result for every command")
        got = [json.loads(p) for p, _, _ in results]
        for result in got:
            assert validation.problems("command-result", result) == [], result
        assert got[0]["request_id"] is None and got[0]["ok"] is False and got[0]["refused"] == "malformed"
        assert got[1]["request_id"] == "r1" and got[1]["refused"] == "unknown_command" and "reboot" in got[1]["error"]
        assert got[2]["request_id"] is None and got[2]["ok"] is False
        assert got[3]["ok"] is False and "nested" in got[3]["error"], "deep nesting is an error result, not a crash"
        assert got[4]["ok"] is False and "more than the limit" in got[4]["error"]
        assert got[5] == {"request_id": "r2", "ok": True, "cmd": "ping"}
        assert outbox.counts() == {"pending": 0, "published": 1, "acknowledged": 0}
        st = pub.status()
        assert st["refused_commands"] == 5 and st["commands"] == 1 and st["connected"]


def test_resend_and_status_commands(broker: Broker, outbox: Outbox, subs: list[Sub]) -> None:
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    with Publisher(outbox, config(broker), DEVICE, status_every_s=3600, central_keys=CENTRAL_KEYS) as pub:
        events = [outbox.append(eid(i), "attendance", payload(i)) for i in range(4)]
        pub.wake()
        wait_for(lambda: len(sub.on("event")) == 4, "4 events")
        sub.send(topics.ack, ack(events[:1]))
        wait_for(lambda: outbox.counts()["acknowledged"] == 1, "e-0 acknowledged")
        statuses = len(sub.on("status"))
        sub.send(topics.cmd, json.dumps({"v": 1, "request_id": "s1", "cmd": "status"}).encode())
        wait_for(lambda: len(sub.on("status")) > statuses, "a status published on request")
        sub.send(topics.cmd, signing.wire(build_command("resend", request_id="r1", from_seq=1, key=CENTRAL)))
        sub.send(topics.cmd, json.dumps({"v": 1, "request_id": "r2", "cmd": "resend", "from_seq": "x"}).encode())
        wait_for(lambda: len(sub.on("event")) == 7, "the three unacknowledged events sent again")
        wait_for(lambda: len(sub.on("cmd/result")) == 3, "three command results")
        results = {r["request_id"]: r for r in (json.loads(p) for p, _, _ in sub.on("cmd/result"))}
        assert results["s1"] == {"request_id": "s1", "ok": True, "cmd": "status"}
        assert results["r1"] == {"request_id": "r1", "ok": True, "cmd": "resend", "requeued": 3}
        assert results["r2"]["ok"] is False and "from_seq" in results["r2"]["error"]
        again = [props["event_id"] for _, props, _ in sub.on("event")[4:]]
        assert sorted(again) == [eid(1), eid(2), eid(3)], "the acknowledged event is not sent again"


def test_a_changing_command_is_carried_out_only_when_signed_for_this_office_and_device_newer_and_unexpired(
    broker: Broker, outbox: Outbox, subs: list[Sub], tmp_path: Path
) -> None:
    stranger = Ed25519PrivateKey.generate()
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    work: queue.Queue[Queued] = queue.Queue()
    applied = AppliedVersion(tmp_path / "commands.json")
    gate = CentralCommands(device=DEVICE, office="bkpsdm", central_keys=CENTRAL_KEYS, applied=applied, work=work,
                           gallery=Gallery, now=lambda: datetime.now(UTC))
    here = Target("bkpsdm", DEVICE)

    def reload(request_id: str, version: int, **kw: Any) -> dict[str, Any]:
        options = {"key": CENTRAL, "target": here} | kw
        return build_command("reload_gallery", request_id=request_id, version=version, **options)

    signed = reload("s", 5)
    commands = [
        {k: v for k, v in signed.items() if k != "sig"} | {"request_id": "u"},  # unsigned
        reload("f", 6, key=stranger),
        signed | {"request_id": "t"},  # changed after signing
        reload("d", 7, target=Target("bkpsdm", "kiosk-2")),  # another kiosk's (office A's push replayed here)
        reload("o", 8, target=Target("dinkes", DEVICE)),
        reload("x", 9, now=datetime.now(UTC) - timedelta(days=31)),  # expired after 30 days
        signed,
    ]
    with Publisher(outbox, config(broker), DEVICE, central_keys=CENTRAL_KEYS, commands=gate) as pub:
        wait_for(lambda: sub.on("status/online"), "online")
        for command in commands:
            sub.send(topics.cmd, json.dumps(command).encode())
        wait_for(lambda: len(sub.on("cmd/result")) == len(commands), "a result for every command")
        results = {r["request_id"]: r for r in (json.loads(p) for p, _, _ in sub.on("cmd/result"))}
        assert {k: (r["ok"], r.get("refused")) for k, r in results.items()} == {
            "u": (False, "unsigned"), "f": (False, "bad_signature"), "t": (False, "bad_signature"),
            "d": (False, "wrong_device"), "o": (False, "wrong_office"), "x": (False, "expired"), "s": (True, None),
        }
        assert "signed by the central key" in results["f"]["error"]
        assert work.get_nowait() == Queued("reload", None, 5) and work.empty(), "only the valid command is queued"
        applied.record("gallery", 5)  # the frame loop carried it out
        sub.send(topics.cmd, json.dumps(signed | {"request_id": "again"}).encode())  # the request id is signed too
        sub.send(topics.cmd, json.dumps(reload("old", 4)).encode())
        wait_for(lambda: len(sub.on("cmd/result")) == len(commands) + 2, "two more results")
        later = {r["request_id"]: r for r in (json.loads(p) for p, _, _ in sub.on("cmd/result"))}
        assert later["again"]["refused"] == "bad_signature"
        sub.send(topics.cmd, json.dumps(signed).encode())
        wait_for(lambda: len(sub.on("cmd/result")) == len(commands) + 3, "the replay's result")
        replay = [json.loads(p) for p, _, _ in sub.on("cmd/result")][-1]
        assert (replay["request_id"], replay["refused"]) == ("s", "replay")
        assert later["old"]["refused"] == "older_version"
        assert pub.status()["refused_commands"] == 9 and work.empty()
    assert AppliedVersion(tmp_path / "commands.json").value == 5, "the applied version survives a restart"


def test_broker_down_and_back_delivers_everything(broker: Broker, outbox: Outbox, subs: list[Sub]) -> None:
    sub = Sub(broker, client_id="central-restart")
    subs.append(sub)
    with Publisher(outbox, config(broker), DEVICE, republish_after_s=1.0) as pub:
        ids = []
        for i in range(5):
            ids.append(outbox.append(eid(i), "attendance", payload(i)).event_id)
        pub.wake()
        wait_for(lambda: len(set(sub.event_ids())) == 5, "the first 5 events")
        broker.stop()
        wait_for(lambda: not pub.status()["connected"], "the publisher to notice the broker is gone")
        for i in range(5, 25):
            ids.append(outbox.append(eid(i), "attendance", payload(i)).event_id)
            pub.wake()
        assert pub.status()["last_error"]
        broker.start()
        wait_for(lambda: set(sub.event_ids()) == set(ids), "all 25 events after the broker came back")
        # Duplicates are possible (republish, QoS 1) but only ever with the same event_id and payload
        for body, up, _ in sub.on("event"):
            assert up["event_id"] in ids and body == payload(ids.index(up["event_id"]))
            assert outbox.get(up["event_id"]).seq == int(up["seq"])  # type: ignore[union-attr]


_CHILD = """
import json, sys, time
from pathlib import Path
from kiosk.config import MqttConfig
from kiosk.events.mqtt import Publisher
from kiosk.events.outbox import Outbox
db, port = Path(sys.argv[1]), int(sys.argv[2])
ob = Outbox.open(db)
cfg = MqttConfig(enabled=True, port=port, site="s1", keepalive_s=5, reconnect_min_s=1.0, reconnect_max_s=1.0)
pub = Publisher(ob, cfg, "kiosk-1", republish_after_s=1.0).start()
i = 0
while True:  # the frame loop: append (committed when it returns), wake, report; until SIGKILL
    ob.append(f"k-{i}", "attendance", json.dumps({"i": i}).encode())
    pub.wake()
    print("committed", i, flush=True)
    i += 1
"""


def test_sigkill_mid_stream_then_restart_delivers_every_committed_event_and_last_will(
    broker: Broker, tmp_path: Path, subs: list[Sub]
) -> None:
    sub = Sub(broker, client_id="central-kill")
    subs.append(sub)
    db = tmp_path / "kill" / "outbox.db"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), str(broker.port)], stdout=subprocess.PIPE, env=env, cwd=REPO
    )
    reported = -1
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 8
        while reported < 100 or len(sub.on("event")) < 20:  # killed while appending and publishing
            line = child.stdout.readline().decode()
            assert line.startswith("committed ") and time.monotonic() < deadline, line
            reported = int(line.split()[1])
        child.send_signal(signal.SIGKILL)  # whatever was in flight or not yet published is only in the outbox
        child.wait(5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    wait_for(lambda: any(p == b"offline" for p, _, _ in sub.on("online")), "the retained last will")
    late = Sub(broker, f"{PREFIX}/{SITE}/{DEVICE}/status/online")
    subs.append(late)
    assert wait_for(lambda: late.on("online"), "retained will")[0][0] == b"offline"
    with Outbox.open(db) as ob:
        committed = {f"k-{i}" for i in range(sum(ob.counts().values()))}
        assert len(committed) > reported  # every reported append is in the outbox (and maybe one more)
        assert all(ob.get(e) is not None for e in committed)
        seen_at_kill = set(sub.event_ids())
        with Publisher(ob, config(broker), DEVICE, republish_after_s=1.0):
            wait_for(lambda: set(sub.event_ids()) == committed, f"all {len(committed)} committed events", timeout=9)
            wait_for(lambda: late.on("online")[-1][0] == b"online", "online again after the restart")
    print(f"committed {len(committed)}, delivered before the kill {len(seen_at_kill)}")


def test_tls_with_client_certificates(tmp_path: Path, outbox: Outbox, subs: list[Sub]) -> None:
    with Broker(tmp_path / "tls", tls=True) as b:
        sub = Sub(b, tls=b.client_cert("central"))
        subs.append(sub)
        cert, key = b.client_cert(DEVICE)
        cfg = config(b, tls_ca_file=b.ca_file, tls_cert_file=cert, tls_key_file=key)
        with Publisher(outbox, cfg, DEVICE) as pub:
            outbox.append(eid(0), "attendance", payload(0))
            pub.wake()
            wait_for(lambda: sub.event_ids() == [eid(0)], "the event over TLS")
            wait_for(lambda: outbox.counts()["published"] == 1, "published over TLS")


def test_tls_key_open_to_others_is_refused(tmp_path: Path, outbox: Outbox) -> None:
    b = Broker(tmp_path / "tls", tls=True)  # not started: the check comes first
    cert, key = b.client_cert(DEVICE)
    key.chmod(0o644)
    from kiosk.errors import ConfigError

    with pytest.raises(ConfigError, match="chmod 600"):
        Publisher(outbox, config(b, tls_ca_file=b.ca_file, tls_cert_file=cert, tls_key_file=key), DEVICE)


def test_the_acl_stops_a_device_publishing_as_another_or_writing_its_own_acks(tmp_path: Path,
                                                                             subs: list[Sub]) -> None:
    with Broker(tmp_path / "acl", acl=topics_module.mosquitto_acl(PREFIX)) as b:
        sub = Sub(b, username="central")
        subs.append(sub)
        with Outbox.open(tmp_path / "a.db") as ob_a, Outbox.open(tmp_path / "b.db") as ob_b:
            # kiosk-a's credentials, but configured (wrongly or maliciously) as kiosk-b
            impostor = Publisher(ob_b, config(b, username="kiosk-a"), "kiosk-b")
            honest = Publisher(ob_a, config(b, username="kiosk-a"), "kiosk-a")
            with impostor, honest:
                ob_b.append("forged", "attendance", payload(1))
                impostor.wake()
                wait_for(lambda: impostor.status()["refused"] >= 1, "the broker to refuse the impostor (MQTT 5)")
                ob_a.append("real", "attendance", payload(2))
                honest.wake()
                wait_for(lambda: sub.event_ids() == ["real"], "the honest device's event")
                assert ob_b.counts()["published"] == 0 and ob_b.counts()["pending"] == 1
                # a copy of kiosk-a's certificate cannot write acks or commands to kiosk-a
                stolen = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stolen", protocol=mqtt.MQTTv5)
                stolen.username_pw_set("kiosk-a")
                refusals: list[bool] = []
                stolen.on_publish = lambda c, u, mid, rc, p: refusals.append(rc.is_failure)
                stolen.connect(b.host, b.port)
                stolen.loop_start()
                suffixes = ("ack", "cmd", "cmd/set/gallery", "cmd/set/schedule")  # nor its channels' retained topics
                for suffix in suffixes:
                    stolen.publish(f"{PREFIX}/{SITE}/kiosk-a/{suffix}", b'{"upto_seq": 1000000}', qos=1, retain=True)
                wait_for(lambda: len(refusals) == len(suffixes), "the broker's answers")
                stolen.disconnect()
                stolen.loop_stop()
                assert refusals == [True] * len(suffixes), "MQTT 5: not authorized"
                assert honest.status()["refused_acks"] == 0 and honest.status()["refused_commands"] == 0
            assert all("kiosk-b" not in t and not t.endswith(("/ack", "/cmd")) and "/cmd/set/" not in t
                       for t, *_ in sub.messages)


def test_mqtt_311_delivers_and_applies_acks(broker: Broker, outbox: Outbox, subs: list[Sub]) -> None:
    sub = Sub(broker)
    subs.append(sub)
    topics = Topics.of(PREFIX, SITE, DEVICE)
    with Publisher(outbox, config(broker, protocol="3.1.1"), DEVICE, central_keys=CENTRAL_KEYS) as pub:
        event = outbox.append(eid(0), "attendance", payload(0))
        pub.wake()
        wait_for(lambda: [p for p, _, _ in sub.on("event")] == [payload(0)], "the event over MQTT 3.1.1")
        wait_for(lambda: outbox.counts()["published"] == 1, "published")
        sub.send(topics.ack, ack([event]))
        wait_for(lambda: outbox.counts()["acknowledged"] == 1, "acknowledged")


def test_broker_down_at_start_then_up(tmp_path: Path, outbox: Outbox, subs: list[Sub]) -> None:
    b = Broker(tmp_path / "late")
    try:
        with Publisher(outbox, config(b), DEVICE) as pub:
            outbox.append(eid(0), "attendance", payload(0))
            pub.wake()
            wait_for(lambda: pub.status()["last_error"], "a failed first attempt")
            assert not pub.status()["connected"] and outbox.counts()["pending"] == 1
            b.start()
            sub = Sub(b)
            subs.append(sub)
            wait_for(lambda: outbox.counts()["published"] == 1, "published once the broker is up")
            wait_for(lambda: sub.on("online") and sub.on("online")[-1][0] == b"online", "online")
    finally:
        b.stop()


def test_close_without_start_and_lost_pubacks_leave_the_window(tmp_path: Path, outbox: Outbox) -> None:
    b = Broker(tmp_path / "never")  # never started
    pub = Publisher(outbox, config(b), DEVICE)
    pub.close()
    pub.close()
    assert pub.status()["connected"] is False


def test_window_is_bounded_and_expires_without_pubacks(tmp_path: Path, outbox: Outbox) -> None:
    """Not connected: nothing is published; a stale in-flight entry leaves the window after republish_after_s."""
    b = Broker(tmp_path / "never")
    now = [1000.0]
    pub = Publisher(outbox, config(b), DEVICE, window=3, republish_after_s=10, clock=lambda: now[0])
    try:
        for i in range(5):
            outbox.append(eid(i), "attendance", payload(i))
        pub._connected = True  # pretend: paho queues the messages (MQTT_ERR_NO_CONN) and never PUBACKs them
        pub._fill_window()
        assert sorted(f.seq for f in pub._inflight.values() if f.seq) == [1, 2, 3]
        pub._fill_window()  # full: nothing more
        assert len(pub._inflight) == 3
        now[0] += 11
        pub._fill_window()  # expired: the window refills from the outbox, oldest first (the same events again)
        assert sorted(f.seq for f in pub._inflight.values() if f.seq) == [1, 2, 3]
        assert outbox.counts()["pending"] == 5  # nothing marked without a PUBACK
    finally:
        pub._connected = False
        pub.close()


def test_topics_refuse_wildcards() -> None:
    with pytest.raises(ValueError):
        Topics.of(PREFIX, "a/b", DEVICE)
    with pytest.raises(ValueError):
        Topics.of(PREFIX, SITE, "dev+")
