"""The capture thread shared by the live cameras: it keeps only the newest frame and bounds every wait.

A camera buffers frames while the kiosk is busy; the kiosk wants the latest picture, not a stale one, and a
hung driver call (picamera2 issues 794 and 1264) must become an error instead of freezing the kiosk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrameWorker(Generic[T]):
    """Calls ``capture`` in a loop on a daemon thread and hands over only the newest result (1-slot handoff).

    Captures that nobody took before a newer one arrived are counted in ``dropped``. An exception raised by
    ``capture`` ends the thread and is re-raised by every later :meth:`next`.
    """

    def __init__(self, capture: Callable[[], T], *, name: str) -> None:
        self.dropped = 0
        self._capture = capture
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._latest: tuple[int, float, T] | None = None  # (sequence number from 1, time since start, item)
        self._taken = 0  # sequence number of the last capture handed over
        self._error: Exception | None = None
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        try:
            while not self._stopping.is_set():
                item = self._capture()
                seq += 1
                with self._cond:
                    self._latest = (seq, time.monotonic() - self._t0, item)
                    self._cond.notify_all()
        except Exception as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _fresh(self) -> bool:
        return self._latest is not None and self._latest[0] > self._taken

    def next(self, timeout_s: float) -> tuple[int, float, T] | None:
        """The newest capture not handed over yet as ``(index from 0, seconds since start, item)``.

        Waits at most ``timeout_s`` for it and returns ``None`` when none came; raises the capture's error.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._fresh() or self._error is not None, timeout_s):
                return None
            if not self._fresh():
                assert self._error is not None
                raise self._error
            assert self._latest is not None
            seq, t, item = self._latest
            self.dropped += seq - self._taken - 1
            self._taken = seq
            return seq - 1, t, item

    def stop(self, join_timeout_s: float) -> bool:
        """Ask the thread to stop and wait at most ``join_timeout_s``; False if it is stuck in ``capture``.

        A stuck daemon thread is left behind: it cannot be killed, and it does not keep the process alive.
        """
        self._stopping.set()
        self._thread.join(join_timeout_s)
        return not self._thread.is_alive()
