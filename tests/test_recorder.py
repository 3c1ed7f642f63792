"""From decisions to events: punch kind by the site's schedule, repeats, review cases, evidence, a full outbox,
clock state and the time anchor; and the daemon end to end, publishing signed events to a real broker."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from broker import Broker, available
from conftest import EXAMPLES, FILM_LIVENESS_TOML, LIN, need

from kiosk.config import EventsConfig, KioskConfig
from kiosk.events.clock import ClockState
from kiosk.events.outbox import Outbox
from kiosk.events.recorder import Recorder, face_jpeg
from kiosk.recognizer.faces import Box
from kiosk.recognizer.pipeline import Decision
from kiosk_contract import schema, signing
from kiosk_contract.gallery import Gallery

MONDAY_0721_WITA = datetime(2026, 11, 30, 7, 21, tzinfo=UTC) - timedelta(hours=8)  # 07:21 +08:00
FACE = np.random.default_rng(0).integers(0, 255, size=(360, 640, 3), dtype=np.uint8)


def decision(nip: str | None, track: int = 1) -> Decision:
    return Decision(track=track, frame=10, t=0.3, nip=nip, best_nip=nip or LIN, distance=0.41, margin=0.2,
                    frames_used=2, latency_ms=300.0, clip_latency_ms=300.0, box=Box(100, 300, 300, 100))


class Clocks:
    """A wall clock, a monotonic clock and a sync state the test moves by hand."""

    def __init__(self) -> None:
        self.utc = MONDAY_0721_WITA
        self.mono = 10**9
        self.state = ClockState(synced=False, source="none", how="test")

    def advance(self, seconds: float) -> None:
        self.utc += timedelta(seconds=seconds)
        self.mono += int(seconds * 1e9)


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    clocks = Clocks()
    outbox = Outbox.open(tmp_path / "outbox.sqlite", clock=lambda: clocks.utc.timestamp())
    recorder = Recorder(KioskConfig(), outbox, read_clock=lambda: clocks.state, now=lambda: clocks.utc,
                        mono_ns=lambda: clocks.mono, boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c")
    yield clocks, outbox, recorder
    outbox.close()


def stored(outbox: Outbox) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(e.payload) for e in outbox.pending(limit=1000)]


def test_masuk_then_already_recorded_then_pulang(setup) -> None:  # type: ignore[no-untyped-def]
    clocks, outbox, recorder = setup
    first = recorder.record(decision(LIN), FACE)
    assert (first.status, first.kind, first.message) == ("recorded", "masuk", "Presensi tercatat")
    assert first.at is not None and first.at.strftime("%H:%M %z") == "07:21 +0800"
    clocks.advance(4 * 60)
    again = recorder.record(decision(LIN, track=2), FACE)
    assert (again.status, again.message, again.seq) == ("already", "Sudah tercatat pukul 07:21", None)
    clocks.advance(9 * 3600)  # 16:25 WITA
    out = recorder.record(decision(LIN, track=3), FACE)
    assert (out.status, out.kind) == ("recorded", "pulang")
    events = stored(outbox)
    assert [e["kind"] for e in events] == ["masuk", "pulang"]
    first_event = events[0]
    assert first_event["person"] == {"nip": LIN} and first_event["tz"] == "Asia/Makassar"
    assert first_event["time_local"].startswith("2026-11-30T07:21:00") and first_event["time_local"].endswith("+08:00")
    assert first_event["clock"] == {"synced": False, "source": "none", "since_boot_synced": False}
    assert schema.validate(first_event, complete=False) == []
    assert outbox.evidence(first.seq) == face_jpeg(FACE, [100, 300, 300, 100], 20_000)  # type: ignore[arg-type]


def test_the_repeat_guard_survives_a_restart(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A watchdog restart used to forget the guard: the same person got a new MASUK within the interval."""
    clocks, outbox, recorder = setup
    assert recorder.record(decision(LIN), FACE).status == "recorded"
    for minutes in (2, 3):  # two restarts, the person tries again each time
        clocks.advance(minutes * 60)
        restarted = Recorder(KioskConfig(), outbox, read_clock=lambda: clocks.state, now=lambda: clocks.utc,
                             mono_ns=lambda: clocks.mono, boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c")
        again = restarted.record(decision(LIN, track=minutes), FACE)
        assert (again.status, again.message) == ("already", "Sudah tercatat pukul 07:21")
    clocks.advance(6 * 60)  # 07:32: more than repeat_interval_min (10) after the first punch
    later = Recorder(KioskConfig(), outbox, read_clock=lambda: clocks.state, now=lambda: clocks.utc,
                     mono_ns=lambda: clocks.mono, boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c")
    assert later.record(decision(LIN, track=9), FACE).status == "recorded"
    assert [e["kind"] for e in stored(outbox) if e["type"] == "attendance"] == ["masuk", "masuk"]


def test_an_event_that_cannot_be_built_is_an_alarm_and_cannot_record_never_a_crash(setup) -> None:  # type: ignore[no-untyped-def]
    """A 17-digit NIP enrolled by an old release made the daemon exit when it recognised that person."""
    _clocks, outbox, recorder = setup
    bad = recorder.record(decision("19850505201001102"), FACE)
    assert (bad.status, bad.seq) == ("cannot_record", None) and "tidak dapat disimpan" in bad.message
    (alarm,) = stored(outbox)
    assert (alarm["type"], alarm["alarm"]) == ("alarm", "event_invalid")
    assert "'19850505201001102' is not a NIP: it has 17 digits" in alarm["detail"]
    assert recorder.record(decision(LIN, track=2), FACE).status == "recorded", "the kiosk goes on"
    assert bad.storage is None, "not a storage problem: the terminal is not blocked"


def test_a_damaged_outbox_found_at_start_is_an_outbox_recovered_alarm_naming_the_lost_seqs(tmp_path: Path) -> None:
    clocks = Clocks()
    with Outbox.open(tmp_path / "outbox.sqlite") as outbox:
        lost = outbox.append("0190a4c2-0000-7000-8000-000000000001", "attendance", b'{"n": 1}').seq
    (tmp_path / "outbox.sqlite").write_bytes(bytes(range(256)) * 40)  # the card garbled the database
    with Outbox.open(tmp_path / "outbox.sqlite") as outbox:
        Recorder(KioskConfig(), outbox, read_clock=lambda: clocks.state, now=lambda: clocks.utc,
                 mono_ns=lambda: clocks.mono, boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c")
        (alarm,) = stored(outbox)
        assert (alarm["alarm"], alarm["lost_seqs"]) == ("outbox_recovered", [[lost, lost]])
        assert alarm["detail"].startswith("corrupt: ") and "moved aside to outbox.sqlite.corrupt-" in alarm["detail"]
        assert schema.validate(schema.with_seq(alarm, 2), complete=False) == []
        Recorder(KioskConfig(), outbox, read_clock=lambda: clocks.state, now=lambda: clocks.utc)
        assert len(stored(outbox)) == 1, "each recovery is reported once"


def test_unknown_face_is_a_review_case_and_outside_hours_records_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    clocks, outbox, recorder = setup
    unknown = recorder.record(decision(None), FACE)
    assert unknown.status == "not_recognised" and unknown.seq is not None
    (review,) = stored(outbox)
    assert review["type"] == "review" and review["reason"] == "unknown_face"
    assert review["evidence"]["bytes"] == len(outbox.evidence(unknown.seq) or b"")
    clocks.utc = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # Saturday 10:00 WITA
    late = recorder.record(decision(LIN), FACE)
    assert late.status == "outside_hours" and late.seq is None
    assert len(stored(outbox)) == 1


def test_full_outbox_never_says_recorded(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "o.sqlite", max_events=1000)
    cfg = replace(KioskConfig(), events=EventsConfig(max_events=1000))
    recorder = Recorder(cfg, outbox, read_clock=lambda: ClockState(True, "ntp", "test"),
                        now=lambda: MONDAY_0721_WITA, boot_id="3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c")
    for i in range(1000 - outbox.counts()["pending"]):
        outbox.append(f"filler-{i}", "status", b"{}")
    out = recorder.record(decision(LIN), FACE)
    assert out.status == "cannot_record" and out.seq is None
    assert "tidak dapat disimpan" in out.message
    outbox.close()


def test_first_synced_reading_emits_one_time_anchor(setup) -> None:  # type: ignore[no-untyped-def]
    clocks, outbox, recorder = setup
    recorder.record(decision(None), FACE)
    clocks.state = ClockState(synced=True, source="ntp", how="test")
    clocks.advance(31)
    recorder.record(decision(None, track=2), FACE)
    clocks.advance(31)
    recorder.record(decision(None, track=3), FACE)
    types = [(e["type"], e["clock"]["synced"], e["clock"]["since_boot_synced"]) for e in stored(outbox)]
    assert types == [("review", False, False), ("time_anchor", True, True), ("review", True, True),
                     ("review", True, True)]


def test_status_event_reports_device_health(setup) -> None:  # type: ignore[no-untyped-def]
    clocks, outbox, recorder = setup
    recorder.record(decision(None), FACE)
    clocks.advance(90)
    seq = recorder.status(fps=12.46, gallery=Gallery(version=7, office="bkpsdm"), refused_acks=3, refused_commands=1)
    status = stored(outbox)[-1]
    assert seq is not None and status["type"] == "status"
    assert status["fps"] == "12.5" and (status["gallery_office"], status["gallery_version"]) == ("bkpsdm", "7")
    assert (status["refused_acks"], status["refused_commands"]) == (3, 1)
    assert status["outbox_depth"] == 1 and status["oldest_pending_age_s"] == 90  # the review waiting before it
    assert status["free_disk_bytes"] > 0
    assert schema.validate(status, complete=False) == []


def test_alarm_event(setup) -> None:  # type: ignore[no-untyped-def]
    _, outbox, recorder = setup
    assert recorder.alarm("tamper", "case opened") is not None
    (alarm,) = stored(outbox)
    assert (alarm["type"], alarm["alarm"], alarm["detail"]) == ("alarm", "tamper", "case opened")


def test_evidence_respects_its_size_cap() -> None:
    big = np.random.default_rng(1).integers(0, 255, size=(1080, 1920, 3), dtype=np.uint8)
    jpeg = face_jpeg(big, [100, 900, 900, 100], 8000)
    assert jpeg is not None and len(jpeg) <= 8000 and jpeg[:2] == b"\xff\xd8"
    assert face_jpeg(big, [100, 900, 900, 100], 200) is None


@pytest.mark.skipif(not available(), reason="mosquitto is not installed (scripts/bootstrap installs it)")
def test_daemon_publishes_signed_events_for_a_replayed_clip(hamilton_gallery: Path, tmp_path: Path) -> None:
    from kiosk.app import run
    from kiosk.config import load_config

    private_pem, public_pem = signing.generate_key()
    key_file = tmp_path / "device.key"
    key_file.write_bytes(private_pem)
    key_file.chmod(0o600)
    public = signing.load_public_keys([_write(tmp_path / "device.pub", public_pem)])
    clip = need(EXAMPLES / "short_hamilton_clip.mp4")
    with Broker(tmp_path / "broker") as broker:
        got: list[bytes] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="central")
        sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
        sub.connect(broker.host, broker.port)
        sub.subscribe("presensi/v1/kantor/kiosk-e2e/event", qos=1)
        sub.loop_start()
        config = tmp_path / "kiosk.toml"
        config.write_text(
            f'[device]\nid = "kiosk-e2e"\noffice_code = "bkpsdm"\nstate_dir = "{tmp_path / "state"}"\n'
            f'[camera]\nsource = "replay"\npath = "{clip}"\nrealtime = false\n'
            f'[recognizer]\ngallery = "{hamilton_gallery}"\n{FILM_LIVENESS_TOML}'
            '[[schedule.windows]]\ndays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
            'kind = "masuk"\nstart = 00:00:00\nend = 23:59:00\n'
            f'[events]\nsigning_key_file = "{key_file}"\n'
            f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\nsite = "kantor"\n'
            f'central_key_file = "{_write(tmp_path / "central.pub", signing.generate_key()[1])}"\n'
            '[display]\nbackend = "null"\n'
        )
        assert run(load_config(config), threading.Event()) == 0
        deadline = time.monotonic() + 10
        while not any(b'"attendance"' in m for m in got) and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.loop_stop()
        sub.disconnect()
    events = [signing.open_message(m, public) for m in got]  # every message parses, validates and verifies
    attendance = [e for e in events if e["type"] == "attendance"]
    assert [(e["person"]["nip"], e["kind"]) for e in attendance] == [(LIN, "masuk")]
    assert all(e["device"] == "kiosk-e2e" for e in events)
    assert len({e["seq"] for e in events}) == len(events)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_typed_nip_becomes_a_review_event_with_a_photo_never_an_attendance(setup) -> None:  # type: ignore[no-untyped-def]
    _clocks, outbox, recorder = setup
    outcome = recorder.manual(LIN, "masuk", FACE, None)
    assert (outcome.status, outcome.message, outcome.nip, outcome.kind) == (
        "pending_review", "Menunggu verifikasi", LIN, "masuk"
    )
    assert outcome.at is not None and f"{outcome.at:%H:%M}" == "07:21"
    (event,) = [e for e in stored(outbox) if e["type"] != "time_anchor"]
    assert event["type"] == "review" and event["reason"] == "manual_entry"
    assert event["person"] == {"nip": LIN} and event["kind"] == "masuk"
    assert event["decision"]["method"] == "manual" and event["decision"]["best_nip"] is None
    photo = outbox.evidence(outcome.seq)
    assert photo is not None and photo[:2] == b"\xff\xd8"
    assert event["evidence"]["bytes"] == len(photo)
    import cv2

    picture = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[1] == 320, "no face in view: the whole picture, scaled to the manual photo width"
    assert schema.validate(event, complete=False) == []


def test_a_kind_chosen_with_a_key_replaces_the_schedule_inside_the_windows_only(setup) -> None:  # type: ignore[no-untyped-def]
    clocks, outbox, recorder = setup
    early = recorder.record(decision(LIN), FACE, kind="pulang")  # 07:21: leaving early
    assert (early.status, early.kind) == ("recorded", "pulang")
    assert [e["kind"] for e in stored(outbox) if e["type"] == "attendance"] == ["pulang"]
    clocks.advance(16 * 3600)  # 23:21, outside every window
    late = recorder.record(decision(LIN), FACE, kind="pulang")
    assert late.status == "outside_hours" and late.seq is None


def test_a_face_that_is_not_live_is_a_suspected_spoof_for_review_never_an_attendance(setup) -> None:  # type: ignore[no-untyped-def]
    from kiosk.recognizer.liveness import LivenessVerdict

    clocks, outbox, recorder = setup
    spoof = LivenessVerdict("challenge", "spoof", "none", 0.0291, 0, "turn_left+blink", 8000.0, 41)
    out = recorder.record(replace(decision(LIN), liveness=spoof), FACE)
    assert (out.status, out.message, out.nip) == ("not_live", "Silakan coba lagi", None), "the screen names nobody"
    (review,) = stored(outbox)
    assert review["type"] == "review" and review["reason"] == "suspected_spoof"
    assert review["person"] == {"nip": LIN} and review["kind"] == "masuk", "HR sees who was claimed, and the punch"
    assert review["decision"]["liveness"] == {
        "level": "challenge", "result": "spoof", "method": "none", "score": "0.0291", "blinks": 0,
        "challenge": "turn_left+blink", "extra_ms": 8000, "moving_surroundings": 41, "texture": None,
    }
    assert outbox.evidence(out.seq) is not None  # type: ignore[arg-type]
    assert schema.validate(review, complete=False) == []
    clocks.advance(60)
    live = LivenessVerdict("challenge", "live", "parallax", 0.0912, 0, None, 233.6)
    ok = recorder.record(replace(decision(LIN, track=2), liveness=live), FACE)
    assert ok.status == "recorded", "a refused spoof does not count as the person's punch"
    attendance = stored(outbox)[-1]
    assert attendance["decision"]["liveness"]["method"] == "parallax"
    assert attendance["decision"]["liveness"]["extra_ms"] == 234
    forged = dict(attendance, decision=dict(attendance["decision"], liveness=review["decision"]["liveness"]))
    assert any("an attendance needs a live face" in p for p in schema.validate(forged, complete=False))


def test_every_stored_event_is_logged_with_its_journal_fields(setup, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    import logging

    from kiosk.logs import StructuredFields

    _clocks, _outbox, recorder = setup
    with caplog.at_level(logging.INFO, logger="kiosk.events.recorder"):
        outcome = recorder.manual(LIN, "masuk", FACE, None)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("stored review")]
    assert record.getMessage() == f"stored review manual_entry masuk seq {outcome.seq}", "the NIP: a field only"
    fields = StructuredFields("kiosk-test")
    assert fields.filter(record)
    journal = {name: getattr(record, name) for name in ("KIOSK_NIP", "KIOSK_SEQ", "KIOSK_KIND", "KIOSK_DEVICE_ID")}
    assert journal == {"KIOSK_NIP": LIN, "KIOSK_SEQ": str(outcome.seq), "KIOSK_KIND": "masuk",
                       "KIOSK_DEVICE_ID": "kiosk-test"}
