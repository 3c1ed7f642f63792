"""A schedule pushed by central (install_schedule): the kiosk checks it like every changing command, keeps it in its
state folder, and its recorder and NIP entry classify punches by it from then on, across restarts; a replayed or
older command is refused, a damaged stored schedule falls back to kiosk.toml's with an alarm; end to end, central's
`kiosk-central schedule push` reaches a kiosk through a real Mosquitto and its status event reports the version back
to `kiosk-central schedule status` (tests/broker.py)."""

from __future__ import annotations

import json
import queue
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Broker, available
from central_support import ALEX, LIN, database, write_key
from conftest import wait_for
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.camera import Frame
from kiosk.commands import AppliedVersion, CentralCommands, CurrentSchedule, Queued
from kiosk.config import KioskConfig, MqttConfig
from kiosk.events.clock import ClockState
from kiosk.events.mqtt import Publisher
from kiosk.events.outbox import Outbox
from kiosk.events.recorder import Recorder
from kiosk.recognizer.faces import Box
from kiosk.recognizer.pipeline import Decision, FrameResult, Pipeline
from kiosk.terminal import Terminal, TerminalView
from kiosk_contract import signing
from kiosk_contract.commands import (
    CommandRefused,
    Target,
    build_command,
    schedule_command_fields,
)
from kiosk_contract.gallery import Gallery
from kiosk_contract.schedule import PunchWindow, ScheduleConfig, schedule_to_data, schedule_version_of

CENTRAL = Ed25519PrivateKey.generate()
KEYS = {signing.key_id_of(CENTRAL): CENTRAL.public_key()}
TZ = "Asia/Makassar"
MONDAY_0721_WITA = datetime(2026, 11, 30, 7, 21, tzinfo=UTC) - timedelta(hours=8)
FACE = np.random.default_rng(0).integers(0, 255, size=(360, 640, 3), dtype=np.uint8)
WEEK = ("mon", "tue", "wed", "thu", "fri")
EARLY_SPLIT = ScheduleConfig(windows=(PunchWindow(WEEK, "masuk", time(5, 0), time(6, 59)),
                                      PunchWindow(WEEK, "pulang", time(7, 0), time(23, 0))))
"""A schedule in which 07:21 on a Monday is a pulang (kiosk.toml's default says masuk)."""


def push(schedule: ScheduleConfig, version: int, *, device: str = "kiosk-1", office: str = "bkpsdm",
         **over: Any) -> dict[str, Any]:
    fields = schedule_command_fields(schedule, timezone=TZ, schedule_version=schedule_version_of(
        schedule_to_data(schedule), TZ))
    return build_command("install_schedule", key=CENTRAL, target=Target(office, device), version=version,
                         now=MONDAY_0721_WITA - timedelta(days=1), **{**fields, **over})


def decision(nip: str, track: int = 1) -> Decision:
    return Decision(track=track, frame=10, t=0.3, nip=nip, best_nip=nip, distance=0.41, margin=0.2, frames_used=2,
                    latency_ms=300.0, clip_latency_ms=300.0, box=Box(100, 300, 300, 100))


class Screen:
    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Any]) -> None:
        self.outcomes += outcomes

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
    """A kiosk's state folder, recorder, terminal and command gate, as kiosk.app wires them (no camera, no screen)."""

    def __init__(self, state: Path, cfg: KioskConfig | None = None, now: datetime = MONDAY_0721_WITA) -> None:
        self.cfg = cfg or KioskConfig()
        state.mkdir(parents=True, exist_ok=True)
        self.schedules = CurrentSchedule(self.cfg.schedule, state / "schedule.json", self.cfg.device.timezone)
        self.problem = self.schedules.load()
        self.now = now
        self.outbox = Outbox.open(state / "outbox.sqlite", clock=lambda: self.now.timestamp())
        self.recorder = Recorder(self.cfg, self.outbox, read_clock=lambda: ClockState(True, "ntp", "test"),
                                 now=lambda: self.now, schedules=self.schedules)
        self.work: queue.Queue[Queued] = queue.Queue(maxsize=16)
        if self.problem is not None:
            self.work.put_nowait(Queued("alarm", ("schedule_unusable", self.problem[:1000]), 0))
        self.applied = AppliedVersion(state / "commands.json")
        self.gate = CentralCommands(device="kiosk-1", office="bkpsdm", central_keys=KEYS, applied=self.applied,
                                    work=self.work, gallery=Gallery, now=lambda: self.now, schedule=self.schedules)
        self.screen = Screen()
        self.terminal = Terminal(self.cfg, Pipeline(Gallery(), self.cfg.recognizer), self.recorder, self.outbox,
                                 self.screen, Pins(), inputs=queue.Queue(), commands=self.work,  # type: ignore[arg-type]
                                 applied=self.applied, monotonic=lambda: 1000.0, now=lambda: self.now)

    def frame(self, *inputs: str) -> None:
        for name in inputs:
            self.terminal.inputs.put(name)
        self.terminal.frame(Frame(rgb=FACE, index=0, t=0.0))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(e.payload) for e in self.outbox.pending(limit=100)]
        return [e for e in found if kind is None or e["type"] == kind]

    def close(self) -> None:
        self.outbox.close()


def test_a_pushed_schedule_decides_the_kind_from_the_next_punch_on_and_survives_a_restart(tmp_path: Path) -> None:
    kiosk = Kiosk(tmp_path / "state")
    try:
        assert kiosk.problem is None and kiosk.schedules.version is None, "nothing pushed yet: kiosk.toml's runs"
        assert kiosk.recorder.record(decision(ALEX), FACE).kind == "masuk"
        answer = kiosk.gate.handle(push(EARLY_SPLIT, 1))
        assert answer == {"queued": True, "version": 1, "gallery_version": 0, "gallery_office": None,
                          "schedule_version": None}, "queued; kiosk.toml's still runs until the frame loop applies it"
        assert kiosk.recorder.record(decision(LIN), FACE).kind == "masuk", "not yet applied"
        kiosk.frame()  # the frame loop carries it out between two frames
        version = schedule_version_of(schedule_to_data(EARLY_SPLIT), TZ)
        assert (kiosk.schedules.version, kiosk.applied.value) == (version, 1)
        kiosk.now += timedelta(minutes=1)
        assert kiosk.recorder.record(decision(ALEX, 2), FACE).kind == "pulang"
        kiosk.frame("touch", *LIN, "ok")  # the NIP entry reads the same holder
        assert kiosk.events("review")[-1]["kind"] == "pulang"
        kiosk.recorder.status(fps=10.0, gallery=Gallery())
        assert kiosk.events("status")[-1]["schedule_version"] == version
        assert json.loads((tmp_path / "state" / "schedule.json").read_bytes())["schedule_version"] == version
    finally:
        kiosk.close()

    again = Kiosk(tmp_path / "state")  # a restart
    try:
        assert again.problem is None and again.schedules.version == version
        assert again.schedules.current == EARLY_SPLIT
        assert again.recorder.record(decision(OTHER_NIP), FACE).kind == "pulang"
        with pytest.raises(CommandRefused) as refused:
            again.gate.handle(push(EARLY_SPLIT, 1))  # the retained copy again at the reconnect
        assert refused.value.reason == "replay"
        again.gate.handle(push(ScheduleConfig(), 3))
        again.frame()
        assert again.schedules.current == ScheduleConfig() and again.applied.value == 3
        with pytest.raises(CommandRefused) as refused:
            again.gate.handle(push(EARLY_SPLIT, 2))  # a captured older push, replayed
        assert refused.value.reason == "older_version" and again.schedules.current == ScheduleConfig()
        with pytest.raises(CommandRefused) as refused:
            again.gate.handle(push(EARLY_SPLIT, 4, device="kiosk-2"))
        assert refused.value.reason == "wrong_device"
        with pytest.raises(CommandRefused) as refused:
            again.gate.handle(push(EARLY_SPLIT, 4, office="dinkes", device="kiosk-1"))
        assert refused.value.reason == "wrong_office"
        expired = push(EARLY_SPLIT, 4, ttl=timedelta(hours=1))
        with pytest.raises(CommandRefused) as refused:
            again.gate.handle(expired)
        assert refused.value.reason == "expired" and again.work.empty()
    finally:
        again.close()


OTHER_NIP = "196108041990031001"


def test_a_schedule_that_breaks_the_rules_or_is_in_another_zone_is_refused_naming_the_field(tmp_path: Path) -> None:
    kiosk = Kiosk(tmp_path / "state")
    try:
        overlapping = push(EARLY_SPLIT, 1, windows=[
            {"days": ["mon"], "kind": "masuk", "start": "05:00", "end": "11:00"},
            {"days": ["mon"], "kind": "pulang", "start": "11:00", "end": "23:00"}])
        with pytest.raises(CommandRefused) as refused:
            kiosk.gate.handle(overlapping)
        assert refused.value.reason == "invalid"
        assert "schedule.windows[1]: overlaps schedule.windows[0] on mon" in str(refused.value)
        with pytest.raises(CommandRefused, match="wall-clock time, this kiosk runs in"):
            kiosk.gate.handle(push(EARLY_SPLIT, 1, timezone="Asia/Jakarta"))
        assert kiosk.work.empty() and kiosk.applied.value == 0 and kiosk.schedules.version is None
    finally:
        kiosk.close()


@pytest.mark.parametrize("damage", ["garbage", "tampered", "another_command", "folder", "other_zone"])
def test_a_damaged_stored_schedule_falls_back_to_kiosk_toml_with_an_alarm(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    stored = state / "schedule.json"
    good = push(EARLY_SPLIT, 1)
    if damage == "garbage":
        stored.write_bytes(b'{"v": 1, "cmd": "install_sche')
    elif damage == "tampered":
        stored.write_text(json.dumps({**good, "windows": [{"days": ["mon"], "kind": "masuk", "start": "11:00",
                                                            "end": "10:00"}]}))
    elif damage == "another_command":
        stored.write_text(json.dumps(build_command("reload_gallery", key=CENTRAL, target=Target("bkpsdm", "kiosk-1"),
                                                   version=1)))
    elif damage == "folder":
        stored.mkdir()
    else:
        stored.write_text(json.dumps(good))
    cfg = KioskConfig()
    if damage == "other_zone":
        cfg = replace(cfg, device=replace(cfg.device, timezone="Asia/Jakarta"))
    kiosk = Kiosk(state, cfg)
    try:
        assert kiosk.problem is not None and "running kiosk.toml's [schedule]" in kiosk.problem
        assert kiosk.schedules.version is None and kiosk.schedules.current == cfg.schedule
        assert kiosk.recorder.record(decision(ALEX), FACE).kind == "masuk", "kiosk.toml's schedule"
        kiosk.frame()
        (alarm,) = kiosk.events("alarm")
        assert alarm["alarm"] == "schedule_unusable" and str(stored) in alarm["detail"]
        if damage == "other_zone":  # the push itself is refused there: only the zone of device.timezone fits
            with pytest.raises(CommandRefused, match="this kiosk runs in 'Asia/Jakarta'"):
                kiosk.gate.handle(push(EARLY_SPLIT, 2))
            return
        kiosk.gate.handle(push(EARLY_SPLIT, 2))  # central's next push replaces it
        kiosk.frame()
        if damage == "folder":  # it cannot be written over a folder: nothing changes, the command waits
            assert kiosk.schedules.version is None and kiosk.applied.value == 0
        else:
            assert kiosk.schedules.current == EARLY_SPLIT and kiosk.applied.value == 2
    finally:
        kiosk.close()


def test_a_schedule_that_cannot_be_kept_is_not_run_and_not_recorded_as_applied(tmp_path: Path) -> None:
    kiosk = Kiosk(tmp_path / "state")
    try:
        kiosk.schedules.path = tmp_path / "not-a-folder" / "schedule.json"
        (tmp_path / "not-a-folder").write_text("a file")
        kiosk.gate.handle(push(EARLY_SPLIT, 1))
        kiosk.frame()
        assert kiosk.schedules.version is None and kiosk.applied.value == 0, "the retained copy is tried again"
    finally:
        kiosk.close()


# ------------------------------------------------------------------------------------------------- end to end


@pytest.mark.skipif(not available(), reason="mosquitto is not installed")
def test_central_pushes_the_rules_schedule_the_kiosk_applies_it_and_reports_it_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk_central.cli import main as central_main
    from kiosk_central.cli import start_service
    from kiosk_central.settings import load_central_config

    device_key, device_pub = write_key(tmp_path / "keys", "kiosk-1")
    key_file = tmp_path / "central.key"
    signing.write_private_key(key_file, CENTRAL.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    examples = Path(__file__).resolve().parent.parent / "examples"
    (tmp_path / "rules.toml").write_text((examples / "central-rules.toml").read_text())
    with Broker(tmp_path / "broker") as broker, database("sqlite", tmp_path) as url:
        config = tmp_path / "central.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n'
            f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "central-sched"\n'
            "reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n"
            '[rules]\nfile = "rules.toml"\n[signing]\nkey_file = "central.key"\n'
            f'[[devices]]\nid = "kiosk-1"\noffice = "bkpsdm"\npublic_keys = ["{device_pub}"]\n')
        service = start_service(load_central_config(config))
        wait_for(service.subscriber.subscribed.is_set, "the ledger to subscribe")
        cfg = KioskConfig()
        cfg = replace(cfg, device=replace(cfg.device, id="kiosk-1", office_code="bkpsdm"))
        kiosk = Kiosk(tmp_path / "state", cfg, now=datetime.now(UTC))
        mqtt_cfg = MqttConfig(enabled=True, host=broker.host, port=broker.port, site="kantor", keepalive_s=5,
                              reconnect_min_s=0.2, reconnect_max_s=1.0)
        publisher = Publisher(kiosk.outbox, mqtt_cfg, "kiosk-1", central_keys=KEYS, commands=kiosk.gate,
                              seal=lambda payload, seq: signing.seal(payload, seq, device_key)).start()
        try:
            kiosk.recorder.status(fps=10.0, gallery=Gallery())  # the kiosk publishes once: central learns its site
            publisher.wake()
            wait_for(lambda: service.ledger.one("SELECT site FROM device_progress WHERE device_id = 'kiosk-1'"),
                     "kiosk-1's first status in the ledger")
            assert central_main(["schedule", "status", "--config", str(config)]) == 0
            assert capsys.readouterr().out.split("\t")[2:3] == ["runs kiosk.toml"]

            assert central_main(["schedule", "push", "--config", str(config), "--office", "nowhere"]) == 2
            assert "no rules for office(s) nowhere" in capsys.readouterr().err
            assert central_main(["schedule", "push", "--config", str(config), "--office", "bkpsdm"]) == 0
            pushed = capsys.readouterr().out
            assert pushed.startswith("bkpsdm: schedule ") and "to 1 kiosk(s)" in pushed
            version = pushed.split()[2]

            wait_for(lambda: not kiosk.work.empty(), "the install_schedule at the kiosk")
            kiosk.frame()
            assert kiosk.schedules.version == version and kiosk.applied.value == 1
            monday_1130 = datetime(2026, 11, 30, 11, 30, tzinfo=UTC) - timedelta(hours=8)
            kiosk.now = monday_1130  # the rules' Mon-Thu 07:30-16:00: masuk until 11:44 (kiosk.toml: pulang)
            assert kiosk.recorder.record(decision(ALEX), FACE).kind == "masuk"
            kiosk.now = datetime(2026, 3, 18, 1, 0, tzinfo=UTC)  # cuti bersama Nyepi in the rules
            assert kiosk.recorder.record(decision(LIN), FACE).status == "outside_hours"
            kiosk.now = datetime.now(UTC)
            kiosk.recorder.status(fps=10.0, gallery=Gallery())
            publisher.wake()

            def reported() -> str | None:
                capsys.readouterr()
                central_main(["schedule", "status", "--config", str(config)])
                line = capsys.readouterr().out.strip()
                return line if line.endswith("\tcurrent") else None

            line = wait_for(reported, "kiosk-1 reporting the pushed schedule")
            assert line == f"kiosk-1\tbkpsdm\truns {version}\trules {version}\tcurrent"
        finally:
            publisher.close()
            kiosk.close()
            service.close()
