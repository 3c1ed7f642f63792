"""Is the wall clock trustworthy? Sync state without root, the boot id, and when to emit a ``time_anchor``.

A Raspberry Pi without a battery-backed RTC boots with a stale clock until NTP syncs. Events made before the first
sync carry ``clock.since_boot_synced: false``; the ``time_anchor`` event (wall time, ``boot_id`` and ``mono_ns`` at
the first synced reading of a boot) lets the server re-date them: for an event of the same boot,
``true_utc = anchor.time_utc - (anchor.mono_ns - event.mono_ns)``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiosk_contract.schema import ClockInfo

SYNC_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
RTC = Path("/sys/class/rtc/rtc0")
TIMEDATECTL: tuple[str, ...] = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")
TIMEOUT_S = 2.0

Runner = Callable[[Sequence[str], float], str | None]


@dataclass(frozen=True)
class ClockState:
    """One reading of the sync state: ``synced`` and where the time comes from (ntp, rtc, none, unknown)."""

    synced: bool
    source: str  # "ntp" | "rtc" | "none" | "unknown"
    how: str = ""  # what answered: "flag", "timedatectl", "" (for logs)


def run_command(cmd: Sequence[str], timeout: float) -> str | None:
    """stdout of ``cmd``, or None when it is absent, fails, or takes longer than ``timeout`` seconds."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_clock_state(
    *,
    sync_flag: Path = SYNC_FLAG,
    rtc: Path = RTC,
    command: Sequence[str] = TIMEDATECTL,
    run: Runner = run_command,
    timeout: float = TIMEOUT_S,
) -> ClockState:
    """The sync state, no root needed.

    1. ``sync_flag`` exists (systemd-timesyncd creates it on sync; /run is emptied at boot) -> synced via ntp.
    2. else ``timedatectl show -p NTPSynchronized --value`` (kernel sync flag; also set by chrony): ``yes`` -> ntp;
       ``no`` -> not synced, source ``rtc`` when the board has an RTC, else ``none``.
    3. else (no timedatectl, timeout, odd answer) -> not synced, source ``unknown``.
    """
    try:
        if sync_flag.exists():
            return ClockState(True, "ntp", "flag")
    except OSError:
        pass
    out = run(command, timeout)
    answer = out.strip().lower() if out is not None else None
    if answer == "yes":
        return ClockState(True, "ntp", "timedatectl")
    if answer == "no":
        try:
            has_rtc = rtc.exists()
        except OSError:
            has_rtc = False
        return ClockState(False, "rtc" if has_rtc else "none", "timedatectl")
    return ClockState(False, "unknown", "")


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id (a lowercase UUID, new at every boot); "00000000-0000-0000-0000-000000000000" if unreadable."""
    try:
        text = path.read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError):
        return "00000000-0000-0000-0000-000000000000"
    return text or "00000000-0000-0000-0000-000000000000"


def mono_ns() -> int:
    """Nanoseconds since boot (CLOCK_BOOTTIME: counts suspend too, never jumps, restarts at 0 each boot)."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime_ns(clock) if clock is not None else time.monotonic_ns()


class TimeAnchorTracker:
    """Pure bookkeeping of one boot's clock: fed readings in order, says when to emit the ``time_anchor``.

    ``observe`` returns True exactly once: at the first synced reading (the caller then builds the anchor from that
    same reading). ``ever_synced`` tells whether this boot has seen a synced clock; events stamped before that carry
    ``since_boot_synced: false``. The tracker lives as long as the process: after a restart within the same boot
    it anchors again at its first synced reading (a second anchor for a boot agrees with the first).
    """

    def __init__(self) -> None:
        self._anchor_mono_ns: int | None = None
        self._last_mono_ns: int | None = None

    @property
    def ever_synced(self) -> bool:
        return self._anchor_mono_ns is not None

    @property
    def anchor_mono_ns(self) -> int | None:
        """``mono_ns`` of the anchoring reading, or None before the first sync."""
        return self._anchor_mono_ns

    def observe(self, state: ClockState, mono_ns: int) -> bool:
        """Record one reading; True when it is the first synced one of this boot (emit a time_anchor now)."""
        if self._last_mono_ns is not None and mono_ns < self._last_mono_ns:
            raise ValueError(f"monotonic time went backwards ({mono_ns} < {self._last_mono_ns})")
        self._last_mono_ns = mono_ns
        if state.synced and self._anchor_mono_ns is None:
            self._anchor_mono_ns = mono_ns
            return True
        return False

    def clock_info(self, state: ClockState) -> ClockInfo:
        """The ``clock`` field of an event stamped with ``state`` (observe it first)."""
        return ClockInfo(synced=state.synced, source=state.source, since_boot_synced=self.ever_synced or state.synced)


class ClockWatcher:
    """Re-reads the sync state on its own thread ("clock-watch"), so that the frame loop only reads a cached
    value: reading it may run ``timedatectl`` (up to its timeout) until systemd has written its flag file."""

    def __init__(self, read: Callable[[], ClockState] = read_clock_state, every_s: float = 30.0) -> None:
        self._read = read
        self._every_s = every_s
        self._state = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-watch", daemon=True)

    def start(self) -> ClockWatcher:
        self._thread.start()
        return self

    def state(self) -> ClockState:
        """The latest reading (never blocks)."""
        return self._state

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._state = self._read()

    def close(self) -> None:
        """Stop the thread (idempotent); a reading in progress is left to finish on its own."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=TIMEOUT_S + 1)
