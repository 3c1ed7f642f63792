"""Clock sync state with fake files and commands (never this machine's systemd), boot id, anchor tracker."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiosk.events import clock
from kiosk.events.clock import ClockState, TimeAnchorTracker
from kiosk_contract import schema


class FakeRun:
    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, cmd: Sequence[str], timeout: float) -> str | None:
        self.calls.append((list(cmd), timeout))
        return self.answer


def read(tmp_path: Path, *, flag: bool = False, rtc: bool = False, answer: str | None = None) -> ClockState:
    (tmp_path / "synchronized").unlink(missing_ok=True)
    if flag:
        (tmp_path / "synchronized").touch()
    if rtc:
        (tmp_path / "rtc0").mkdir(exist_ok=True)
    return clock.read_clock_state(
        sync_flag=tmp_path / "synchronized", rtc=tmp_path / "rtc0", run=FakeRun(answer), command=("fake",)
    )


def test_flag_file_means_ntp_without_asking_timedatectl(tmp_path: Path) -> None:
    (tmp_path / "synchronized").touch()
    run = FakeRun("no")
    state = clock.read_clock_state(sync_flag=tmp_path / "synchronized", rtc=tmp_path / "rtc0", run=run)
    assert state == ClockState(True, "ntp", "flag")
    assert run.calls == []


def test_timedatectl_answers(tmp_path: Path) -> None:
    run = FakeRun("yes\n")
    state = clock.read_clock_state(sync_flag=tmp_path / "absent", rtc=tmp_path / "rtc0", run=run)
    assert state == ClockState(True, "ntp", "timedatectl")
    assert run.calls == [(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], 2.0)]
    assert read(tmp_path, answer="no\n") == ClockState(False, "none", "timedatectl")
    assert read(tmp_path, answer="no\n", rtc=True) == ClockState(False, "rtc", "timedatectl")
    assert read(tmp_path, answer=None) == ClockState(False, "unknown", "")
    assert read(tmp_path, answer="maybe") == ClockState(False, "unknown", "")
    assert read(tmp_path, flag=True, answer="no") == ClockState(True, "ntp", "flag")


def test_run_command_handles_absent_failing_and_slow_commands(tmp_path: Path) -> None:
    assert clock.run_command([str(tmp_path / "no-such-binary")], 2.0) is None
    assert clock.run_command([sys.executable, "-c", "import sys; sys.exit(3)"], 2.0) is None
    assert clock.run_command([sys.executable, "-c", "import time; time.sleep(5)"], 0.2) is None
    assert clock.run_command([sys.executable, "-c", "print('yes')"], 5.0) == "yes\n"


def test_real_runner_with_fake_commands(tmp_path: Path) -> None:
    script = tmp_path / "timedatectl"
    script.write_text("#!/bin/sh\necho yes\n")
    script.chmod(0o755)
    state = clock.read_clock_state(sync_flag=tmp_path / "absent", rtc=tmp_path / "rtc0", command=[str(script)])
    assert state == ClockState(True, "ntp", "timedatectl")
    state = clock.read_clock_state(sync_flag=tmp_path / "absent", command=[str(tmp_path / "missing")])
    assert state == ClockState(False, "unknown", "")


def test_boot_id(tmp_path: Path) -> None:
    path = tmp_path / "boot_id"
    path.write_text("3F9C2A1E-7B4D-4C8E-9A10-5D2E6F7A8B9C\n")
    assert clock.boot_id(path) == "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c"
    assert clock.boot_id(tmp_path / "missing") == "00000000-0000-0000-0000-000000000000"
    path.write_text("")
    assert clock.boot_id(path) == "00000000-0000-0000-0000-000000000000"


def test_mono_ns_never_goes_back() -> None:
    a = clock.mono_ns()
    b = clock.mono_ns()
    assert isinstance(a, int) and 0 <= a <= b


UNSYNCED = ClockState(False, "none")
RTC = ClockState(False, "rtc")
UNKNOWN = ClockState(False, "unknown")
SYNCED = ClockState(True, "ntp")


def test_anchor_tracker_sequence() -> None:
    tracker = TimeAnchorTracker()
    assert not tracker.ever_synced and tracker.anchor_mono_ns is None
    readings = [
        (UNKNOWN, 1_000, False, False),
        (UNSYNCED, 2_000, False, False),
        (RTC, 3_000, False, False),
        (SYNCED, 4_000, True, True),  # the first synced reading: emit the anchor
        (SYNCED, 5_000, False, True),  # once
        (UNSYNCED, 6_000, False, True),  # lost sync later: the boot has still synced once
        (SYNCED, 7_000, False, True),
    ]
    for state, t, emit, ever in readings:
        assert tracker.observe(state, t) is emit, (state, t)
        assert tracker.ever_synced is ever
        info = tracker.clock_info(state)
        assert info == schema.ClockInfo(state.synced, state.source, ever)
    assert tracker.anchor_mono_ns == 4_000


def test_anchor_tracker_equal_times_ok_backwards_refused() -> None:
    tracker = TimeAnchorTracker()
    assert tracker.observe(SYNCED, 10) is True
    assert tracker.observe(SYNCED, 10) is False
    with pytest.raises(ValueError, match="backwards"):
        tracker.observe(SYNCED, 9)


def test_events_before_first_sync_are_flagged_and_the_anchor_re_dates_them() -> None:
    tracker = TimeAnchorTracker()
    boot = "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c"
    wrong = datetime(2000, 1, 1, tzinfo=UTC)  # a Pi without RTC before NTP
    tracker.observe(UNSYNCED, 60_000_000_000)
    early = schema.build_alarm(
        schema.Stamp("k1", boot, 60_000_000_000, wrong, "Asia/Makassar", tracker.clock_info(UNSYNCED)), alarm="tamper"
    )
    assert early["clock"] == {"synced": False, "source": "none", "since_boot_synced": False}
    real = datetime(2026, 11, 30, 0, 0, 0, tzinfo=UTC)
    assert tracker.observe(SYNCED, 90_000_000_000)
    anchor = schema.build_time_anchor(
        schema.Stamp("k1", boot, 90_000_000_000, real, "Asia/Makassar", tracker.clock_info(SYNCED))
    )
    assert anchor["clock"]["since_boot_synced"] is True
    # what the server does: same boot_id, shift by the monotonic difference
    shift_ns = anchor["mono_ns"] - early["mono_ns"]
    anchor_utc = datetime.fromisoformat(anchor["time_utc"].replace("Z", "+00:00"))
    true_utc = anchor_utc.timestamp() - shift_ns / 1e9
    assert datetime.fromtimestamp(true_utc, UTC) == datetime(2026, 11, 29, 23, 59, 30, tzinfo=UTC)


def test_clock_watcher_refreshes_on_its_own_thread_and_stops() -> None:
    import threading

    from kiosk.events.clock import ClockState, ClockWatcher

    readings = iter([ClockState(False, "none", "t"), ClockState(True, "ntp", "t")])
    last = ClockState(True, "ntp", "t")
    synced = threading.Event()

    def read() -> ClockState:
        state = next(readings, last)
        if state.synced:
            synced.set()
        return state

    watcher = ClockWatcher(read, every_s=0.01)
    assert watcher.state().synced is False  # the first reading is taken at construction
    watcher.start()
    assert synced.wait(2.0)
    for _ in range(200):
        if watcher.state().synced:
            break
        threading.Event().wait(0.01)
    assert watcher.state() == last
    watcher.close()
    watcher.close()
