"""The terminal between frames: NIP fallback with its limits, punch keys, PIR sleep, problems, the camera loop."""

from __future__ import annotations

import json
import queue
import shutil
import threading
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES, LIN, need

from kiosk import app
from kiosk.camera import Frame
from kiosk.commands import AppliedVersion
from kiosk.config import EventsConfig, FallbackConfig, HardwareConfig, KioskConfig, LivenessConfig, RecognizerConfig
from kiosk.errors import CameraError
from kiosk.events.clock import ClockState
from kiosk.events.outbox import Outbox
from kiosk.events.recorder import Outcome, Recorder
from kiosk.recognizer.pipeline import FrameResult, Pipeline
from kiosk.terminal import FallbackLimiter, KindChoice, NipEntry, Presence, Terminal, TerminalView
from kiosk_contract.gallery import Gallery
from kiosk_contract.nip import nip_typo

MONDAY_0721_WITA = datetime(2026, 11, 29, 23, 21, tzinfo=UTC)
PICTURE = np.random.default_rng(1).integers(0, 255, size=(360, 640, 3), dtype=np.uint8)

FILM_LIVENESS = LivenessConfig(level="off")  # conftest.FILM_LIVENESS_TOML, for a RecognizerConfig


@pytest.mark.parametrize(
    ("nip", "problem"),
    [
        (LIN, None),
        ("198507142010012003", None),
        ("19850714201001200", "nip_length"),
        ("19850714201001200x", "nip_length"),
        ("198513142010012003", "nip_invalid"),  # month 13 of birth
        ("198507142010132003", "nip_invalid"),  # start of service in month 13
        ("198507142010013003", "nip_invalid"),  # sex digit 3
    ],
)
def test_nip_typo(nip: str, problem: str | None) -> None:
    assert nip_typo(nip) == problem


def test_nip_entry_types_deletes_refuses_and_expires() -> None:
    entry = NipEntry(timeout_s=30, now=0.0)
    for key in "1985071420100120039":  # one digit too many: ignored
        assert entry.press(key, 1.0) is None
    assert entry.digits == "198507142010012003"
    entry.press("back", 2.0)
    assert entry.press("ok", 3.0) is None and entry.error == "nip_length"
    entry.press("3", 4.0)
    assert entry.error is None
    assert entry.press("ok", 5.0) == "submit"
    assert not entry.expired(34.9) and entry.expired(35.0)
    assert entry.press("cancel", 36.0) == "cancel"


def test_fallback_limits_per_person_per_day_and_per_hour() -> None:
    limiter = FallbackLimiter(per_person_per_day=2, per_hour=3)
    day = date(2026, 11, 30)
    assert limiter.allow("A", day, 0.0) and limiter.allow("A", day, 1.0)
    assert not limiter.allow("A", day, 2.0), "a third entry for one NIP in a day"
    assert limiter.allow("B", day, 3.0)
    assert not limiter.allow("C", day, 4.0), "the kiosk's hourly cap"
    assert limiter.allow("C", day, 3600.0), "the first entry left the hour"
    assert limiter.allow("A", date(2026, 12, 1), 7200.0), "a new day"


def test_presence_and_kind_choice() -> None:
    presence = Presence(has_sensor=True, awake_s=60, now=0.0)
    assert presence.awake(59.9) and not presence.awake(60.0)
    presence.seen(100.0)
    assert presence.awake(120.0)
    assert Presence(has_sensor=False, awake_s=60, now=0.0).awake(10**6), "without a PIR nothing would wake it"
    choice = KindChoice(hold_s=15)
    choice.choose("pulang", 10.0)
    assert choice.current(24.9) == "pulang" and choice.current(25.0) is None
    choice.choose("masuk", 30.0)
    choice.clear()
    assert choice.current(30.0) is None


class Pins:
    """GPIO inputs put by the test; the outcome statuses signalled are kept."""

    def __init__(self) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.signalled: list[str] = []
        self.dropped = 0

    def events(self) -> queue.Queue[str]:
        return self.q

    def signal(self, status: str) -> None:
        self.signalled.append(status)

    def close(self) -> None:
        pass


class Screen:
    """Keeps what the terminal showed and every view it handed over."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.views: list[TerminalView] = [TerminalView()]

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Outcome]) -> None:
        self.outcomes += outcomes

    def update(self, view: TerminalView) -> None:
        self.views.append(view)

    def close(self) -> None:
        pass


class Rig:
    """A terminal on a real outbox and recorder, with a monotonic clock the test moves."""

    def __init__(self, tmp_path: Path, cfg: KioskConfig, gallery: Gallery | None = None,
                 load: Gallery | None = None, applied: AppliedVersion | None = None) -> None:
        self.mono = 1000.0
        self.cfg = cfg
        self.outbox = Outbox.open(tmp_path / "outbox.sqlite", max_events=max(1, cfg.events.max_events))
        self.recorder = Recorder(cfg, self.outbox, read_clock=lambda: ClockState(True, "ntp", "test"),
                                 now=lambda: MONDAY_0721_WITA, boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c")
        self.pipeline = Pipeline(gallery if gallery is not None else Gallery(), cfg.recognizer)
        self.pins, self.screen = Pins(), Screen()
        self.inputs: queue.Queue[str] = queue.Queue()
        self.woken = 0
        self.terminal = Terminal(
            cfg, self.pipeline, self.recorder, self.outbox, self.screen, self.pins, inputs=self.inputs,
            wake=self.wake, monotonic=lambda: self.mono, now=lambda: MONDAY_0721_WITA,
            load_gallery=(lambda: Gallery.load(cfg.recognizer.gallery)) if load is None else (lambda: load),
            store_gallery=lambda data, expect: app.store_gallery(cfg.recognizer, data, expect=expect),
            applied=applied,
        )

    def wake(self) -> None:
        self.woken += 1

    def frame(self, *inputs: str, pins: tuple[str, ...] = ()) -> None:
        for name in inputs:
            self.inputs.put(name)
        for name in pins:
            self.pins.q.put(name)
        self.terminal.frame(Frame(rgb=PICTURE, index=0, t=0.0))

    def events(self) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(e.payload) for e in self.outbox.pending(limit=100) if e.kind != "time_anchor"]


@pytest.fixture
def rig(tmp_path: Path, hamilton_gallery: Path):  # type: ignore[no-untyped-def]
    cfg = KioskConfig(recognizer=RecognizerConfig(gallery=hamilton_gallery, liveness=FILM_LIVENESS))
    r = Rig(tmp_path, cfg, Gallery.load(hamilton_gallery))
    yield r
    r.outbox.close()


def test_the_fallback_key_opens_the_entry_and_a_typed_nip_goes_to_review_with_a_photo(rig: Rig) -> None:
    rig.frame(pins=("key_fallback",))
    assert rig.screen.views[-1].entry is not None and rig.screen.views[-1].entry.digits == ""
    rig.frame(*"19800202200602100", "ok")  # 17 digits
    assert rig.screen.views[-1].entry is not None and rig.screen.views[-1].entry.error == "nip_length"
    assert rig.events() == []
    rig.frame("2", "ok")
    assert rig.screen.views[-1].entry is None
    (event,) = rig.events()
    assert (event["type"], event["reason"], event["person"]["nip"], event["kind"]) == (
        "review", "manual_entry", LIN, "masuk"
    )
    assert rig.outbox.evidence(rig.outbox.get(event["event_id"]).seq)[:2] == b"\xff\xd8"  # type: ignore[union-attr, index]
    assert [o.status for o in rig.screen.outcomes] == ["pending_review"]
    assert rig.pins.signalled == ["pending_review"] and rig.woken == 1


def test_manual_entries_are_rate_limited(rig: Rig) -> None:
    for _ in range(3):
        rig.frame("touch", *LIN, "ok")
    assert [o.status for o in rig.screen.outcomes] == ["pending_review", "pending_review", "limited"]
    assert len(rig.events()) == 2, "the refused entry made no event"


def test_a_digit_opens_the_entry_and_an_idle_entry_closes_itself(rig: Rig) -> None:
    rig.frame("1", "9")
    assert rig.screen.views[-1].entry is not None and rig.screen.views[-1].entry.digits == "19"
    rig.mono += rig.cfg.fallback.entry_timeout_s
    rig.frame()
    assert rig.screen.views[-1].entry is None and rig.events() == []


def test_no_entry_when_the_fallback_is_off(tmp_path: Path) -> None:
    r = Rig(tmp_path, KioskConfig(fallback=FallbackConfig(enabled=False)), load=Gallery())
    r.frame("touch", pins=("key_fallback",))
    assert all(v.entry is None for v in r.screen.views) and not r.screen.views[-1].fallback
    r.outbox.close()


def test_opening_the_case_raises_a_tamper_alarm(rig: Rig) -> None:
    rig.frame(pins=("tamper_open", "tamper_closed", "motion"))
    assert [(e["type"], e["alarm"]) for e in rig.events()] == [("alarm", "tamper")]


def test_the_pulang_key_sets_the_kind_of_the_next_face(hamilton_gallery: Path, tmp_path: Path) -> None:
    from kiosk.camera.replay import ReplaySource

    cfg = KioskConfig(recognizer=RecognizerConfig(gallery=hamilton_gallery, liveness=FILM_LIVENESS))
    r = Rig(tmp_path, cfg, Gallery.load(hamilton_gallery))
    r.pins.q.put("key_pulang")
    with ReplaySource(need(EXAMPLES / "short_hamilton_clip.mp4"), realtime=False) as clip:
        while (frame := clip.read()) is not None and not any(e["type"] == "attendance" for e in r.events()):
            r.terminal.frame(frame)
    attendance = [e for e in r.events() if e["type"] == "attendance"]
    assert [(e["person"]["nip"], e["kind"]) for e in attendance] == [(LIN, "pulang")], "07:21 is a masuk by schedule"
    assert any(v.chosen_kind == "pulang" for v in r.screen.views) and r.screen.views[-1].chosen_kind is None
    r.outbox.close()


def test_with_a_pir_the_recognizer_rests_until_motion(hamilton_gallery: Path, tmp_path: Path) -> None:
    cfg = KioskConfig(recognizer=RecognizerConfig(gallery=hamilton_gallery, liveness=FILM_LIVENESS),
                      hardware=HardwareConfig(enabled=True, pir=23))
    r = Rig(tmp_path, cfg, Gallery.load(hamilton_gallery))
    r.frame()
    assert r.pipeline.stats.frames == 1
    r.mono += cfg.display.awake_s
    r.frame()
    assert r.screen.views[-1].asleep and r.pipeline.stats.frames == 1, "asleep: no detection"
    r.frame(pins=("motion",))
    assert not r.screen.views[-1].asleep and r.pipeline.stats.frames == 2
    r.outbox.close()


def test_a_missing_gallery_blocks_faces_until_the_file_appears(hamilton_gallery: Path, tmp_path: Path) -> None:
    path = tmp_path / "g.kgal"
    cfg = KioskConfig(recognizer=RecognizerConfig(gallery=path))
    r = Rig(tmp_path, cfg)
    r.frame()
    assert r.screen.views[-1].blocking == "gallery" and r.pipeline.stats.frames == 0
    r.frame("touch")
    assert r.screen.views[-1].entry is not None, "with the camera working, the NIP entry is still offered"
    r.frame("cancel")
    shutil.copy(hamilton_gallery, path)
    r.frame()
    assert r.screen.views[-1].blocking == "gallery", "looked at again only after a pause"
    r.mono += 10.0
    r.frame()
    assert r.screen.views[-1].problems == () and len(r.pipeline.gallery) == 2
    path.write_bytes(b"truncated")
    r.terminal.reload_gallery()  # what a central push does
    assert len(r.pipeline.gallery) == 2, "a damaged file never replaces the running gallery"
    r.outbox.close()


def test_a_full_outbox_is_on_the_screen_before_anyone_tries(tmp_path: Path) -> None:
    cfg = KioskConfig(events=EventsConfig(max_events=2))
    r = Rig(tmp_path, cfg, load=Gallery())
    r.frame("touch", *LIN, "ok")
    assert r.screen.views[-1].blocking != "storage"
    r.recorder.alarm("tamper")
    r.mono += 1.0
    r.frame("touch")
    assert r.screen.views[-1].blocking == "storage" and r.screen.views[-1].entry is None
    r.outbox.close()


def test_unsynced_clock_warns_without_blocking(tmp_path: Path) -> None:
    r = Rig(tmp_path, KioskConfig(), load=Gallery())
    r.terminal._clock_synced = lambda: False
    r.mono += 1.0
    r.frame()
    assert "clock" in r.screen.views[-1].problems and r.screen.views[-1].blocking == "gallery"
    r.outbox.close()


class FlakyCamera:
    """A camera that follows a shared plan: ``frame`` delivers one, ``fail`` raises, ``end`` ends the source."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.fps = 30.0
        self.closed = False

    def read(self) -> Frame | None:
        step = self.plan.pop(0) if self.plan else "end"
        if step == "fail":
            raise CameraError("the Raspberry Pi camera stopped delivering frames (test)")
        return None if step == "end" else Frame(rgb=PICTURE, index=0, t=0.0)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FlakyCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_a_failing_camera_is_reopened_and_the_screen_says_so(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "CAMERA_RETRY_MIN_S", 0.01)
    plan = ["frame", "fail", "frame", "frame", "end"]
    attempts = ["open", "fail", "open"]
    cameras: list[FlakyCamera] = []

    def open_camera() -> FlakyCamera:
        assert all(c.closed for c in cameras), "a failed camera is closed before the next is opened"
        if attempts.pop(0) == "fail":
            raise CameraError("no camera found (test)")
        cameras.append(FlakyCamera(plan))
        return cameras[-1]

    idles: list[bool] = []

    def idle() -> None:
        idles.append(rig.terminal.problems["camera"])
        rig.mono += 1.0
        rig.terminal.tick()

    app.camera_loop(open_camera, rig.terminal.frame, idle, lambda: rig.terminal.set_problem("camera", True),
                    threading.Event(), retry=True)
    assert rig.terminal.frames == 3 and idles and all(idles)
    assert any(v.blocking == "camera" for v in rig.screen.views), "the problem screen was shown"
    assert rig.screen.views[-1].blocking is None and len(cameras) == 2 and all(c.closed for c in cameras)
    with pytest.raises(CameraError):
        app.camera_loop(lambda: FlakyCamera(["fail"]), rig.terminal.frame, lambda: None, lambda: None,
                        threading.Event(), retry=False)


def test_outcomes_without_a_face_decision_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from kiosk.display import LogScreen

    screen = LogScreen()
    with caplog.at_level(logging.INFO):
        screen.show(Frame(rgb=PICTURE, index=0, t=0.0), FrameResult([], []),
                    [Outcome("pending_review", "Menunggu verifikasi", nip=LIN)])
        screen.update(replace(TerminalView(), problems=("camera",)))
    assert "manual entry: Menunggu verifikasi" in caplog.text and "screen: camera" in caplog.text
    assert LIN not in caplog.text and [r.nip for r in caplog.records if r.getMessage().startswith("manual")] == [LIN]


def test_gpio_parts_on_mock_pins_drive_the_terminal(hamilton_gallery: Path, tmp_path: Path) -> None:
    import time

    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from kiosk.hardware import open_pins

    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    cfg = KioskConfig(recognizer=RecognizerConfig(gallery=hamilton_gallery, liveness=FILM_LIVENESS),
                      hardware=HardwareConfig(enabled=True, pir=23))
    r = Rig(tmp_path, cfg, Gallery.load(hamilton_gallery))
    pins = open_pins(led_green=17, led_red=27, key_fallback=13, pir=23)
    r.terminal.pins = pins

    def settle(n: int) -> None:
        end = time.monotonic() + 2.0
        while pins.events().qsize() < n and time.monotonic() < end:
            time.sleep(0.005)

    try:
        r.mono += cfg.display.awake_s
        r.frame()
        assert r.screen.views[-1].asleep and r.pipeline.stats.frames == 0
        factory.pin(23).drive_high()  # someone walks up
        settle(1)
        r.frame()
        assert not r.screen.views[-1].asleep and r.pipeline.stats.frames == 1
        factory.pin(13).drive_low()  # the fallback key
        settle(1)
        r.frame()
        factory.pin(13).drive_high()
        assert r.screen.views[-1].entry is not None
        r.frame(*LIN, "ok")
        assert [e["reason"] for e in r.events()] == ["manual_entry"]
        end = time.monotonic() + 2.0
        while factory.pin(17).state != 1 and time.monotonic() < end:
            time.sleep(0.005)
        assert factory.pin(17).state == 1 and factory.pin(27).state == 0, "green for an entry sent for review"
    finally:
        pins.close()
        r.outbox.close()
        factory.reset()
        Device.pin_factory = None


def test_central_commands_are_checked_then_carried_out_by_the_frame_loop(hamilton_gallery: Path,
                                                                          tmp_path: Path) -> None:
    import base64
    import hashlib

    from conftest import ALEX
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk.commands import AppliedVersion, CentralCommands
    from kiosk_contract import signing
    from kiosk_contract.commands import CommandRefused, Target, build_command, parse_command

    central = Ed25519PrivateKey.generate()
    path = tmp_path / "g.kgal"
    shutil.copy(hamilton_gallery, path)
    applied = AppliedVersion(tmp_path / "commands.json")
    r = Rig(tmp_path, KioskConfig(recognizer=RecognizerConfig(gallery=path)), Gallery.load(path), applied=applied)
    keys = {signing.key_id_of(central): central.public_key()}
    gate = CentralCommands(device="kiosk-dev", office="bkpsdm", central_keys=keys, applied=applied,
                           work=r.terminal.commands, gallery=lambda: r.pipeline.gallery, now=lambda: None)

    def cmd(name: str, version: int, **fields: Any) -> dict[str, Any]:
        return build_command(name, key=central, target=Target("bkpsdm", "kiosk-dev"), version=version, **fields)

    bad = signing.sign({**cmd("remove_people", 1, nips=[LIN]), "nips": ["12345"]}, central)
    with pytest.raises(CommandRefused, match="'12345' is not a NIP: it has 5 digits"):  # the contract's one rule
        parse_command(signing.wire(bad))
    version = r.pipeline.gallery.version
    assert gate.handle(cmd("remove_people", 1, nips=[LIN]))["queued"]
    assert r.pipeline.gallery.get(LIN) is not None, "carried out by the frame loop, not the MQTT thread"
    r.frame()
    on_disk = Gallery.load(path)
    assert r.pipeline.gallery.nips == on_disk.nips == [ALEX] and on_disk.version == version, "versions are central's"
    assert applied.value == 1, "recorded once it is done"
    assert gate.handle(cmd("reload_gallery", 2))["queued"]
    r.frame()
    assert r.pipeline.gallery.nips == [ALEX] and applied.value == 2

    # central enrols Lin-Manuel again and pushes the office's gallery as version + 1
    pushed = Gallery.load(hamilton_gallery)
    pushed.version, pushed.office = version + 1, "bkpsdm"
    data = pushed.to_bytes()

    def install(command_version: int, data: bytes, gallery_version: int) -> dict[str, Any]:
        return cmd("install_gallery", command_version, gallery_version=gallery_version,
                   sha256=hashlib.sha256(data).hexdigest(), gallery_b64=base64.b64encode(data).decode())

    with pytest.raises(CommandRefused, match="does not match its sha256"):
        gate.handle(signing.sign({**install(3, data, version + 1), "sha256": "0" * 64}, central))
    push = install(3, data, version + 1)
    assert gate.handle(push)["queued"]
    r.frame()
    assert sorted(r.pipeline.gallery.nips) == sorted([ALEX, LIN]) and Gallery.load(path).version == version + 1
    assert (r.pipeline.gallery.office, applied.value) == ("bkpsdm", 3)
    with pytest.raises(CommandRefused, match="already applied") as replay:
        gate.handle(push)  # the retained copy again at a reconnect
    assert replay.value.reason == "replay"
    with pytest.raises(CommandRefused) as older:  # the removal captured and replayed after the re-enrolment
        gate.handle(cmd("remove_people", 2, nips=[LIN]))
    assert older.value.reason == "older_version"
    other_office = Gallery.load(hamilton_gallery)
    other_office.version, other_office.office = version + 2, "dinkes"
    assert gate.handle(install(4, other_office.to_bytes(), version + 2))["queued"]
    r.frame()
    assert (r.pipeline.gallery.version, r.pipeline.gallery.office, applied.value) == (version + 1, "bkpsdm", 3), (
        "a file of another office than its command says is refused")
    damaged = data[:-1]
    assert gate.handle(install(5, damaged, version + 2))["queued"]
    r.frame()
    assert r.pipeline.gallery.version == version + 1, "a damaged file never replaces the running gallery"
    r.outbox.close()
    assert AppliedVersion(tmp_path / "commands.json").value == 3


def test_a_removal_that_cannot_be_written_changes_nothing(hamilton_gallery: Path, tmp_path: Path) -> None:
    r = Rig(tmp_path, KioskConfig(recognizer=RecognizerConfig(gallery=tmp_path / "gone" / "g.kgal")),
            Gallery.load(hamilton_gallery))
    r.terminal.remove_people((LIN,))
    assert r.pipeline.gallery.get(LIN) is not None, "the file could not be written: recognition unchanged"
    r.outbox.close()
