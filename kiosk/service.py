"""The kiosk's side of systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 (docs/service.md).

``open_notifier()`` uses systemd-python's ``systemd.daemon.notify`` (libsystemd's ``sd_notify``; apt's
python3-systemd on the Pi) when it is installed, the plain protocol otherwise (one datagram per message to the
AF_UNIX socket named by ``$NOTIFY_SOCKET``, ``@`` for the abstract namespace), and a notifier that does nothing
outside systemd. No method raises: a failed send is logged, so the frame loop never stops because of it::

    notifier = open_notifier()
    ...                                  # gallery, models, camera
    notifier.ready("Siap: 120 orang")
    while running:
        notifier.watchdog()              # every frame; sends at most every watchdog_interval_s / 2
        ...
    notifier.stopping()
    notifier.close()
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0  # a datagram to systemd takes microseconds; this only bounds a stuck receiver


class Notifier(Protocol):
    """What the daemon tells systemd. Every method is cheap and never raises."""

    watchdog_interval_s: float | None  # WatchdogSec= of the unit in seconds; None without a watchdog

    def ready(self, status: str) -> None:
        """READY=1 with STATUS=: the camera, models and gallery are loaded."""

    def status(self, text: str) -> None:
        """STATUS=: what the kiosk is doing (an unchanged text is not sent again)."""

    def watchdog(self) -> None:
        """WATCHDOG=1, called every frame; sent at most every ``watchdog_interval_s / 2`` (monotonic clock)."""

    def stopping(self) -> None:
        """STOPPING=1: the kiosk is shutting down."""

    def close(self) -> None:
        """Release the socket; idempotent."""


class NullNotifier:
    """Outside systemd (no ``$NOTIFY_SOCKET``): every call does nothing."""

    watchdog_interval_s: float | None = None

    def ready(self, status: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def watchdog(self) -> None:
        pass

    def stopping(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Sender:
    """The protocol's rules (status de-duplication, watchdog rate, error logging) over one ``_send`` method."""

    def __init__(self, watchdog_interval_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.watchdog_interval_s = watchdog_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._status: str | None = None
        self._next_ping = float("-inf")
        self._failing = False

    def ready(self, status: str) -> None:
        self._notify(f"READY=1\nSTATUS={self._remember(status)}")

    def status(self, text: str) -> None:
        if _one_line(text) != self._status:
            self._notify(f"STATUS={self._remember(text)}")

    def watchdog(self) -> None:
        if self.watchdog_interval_s is None:
            return
        now = self._clock()
        if now < self._next_ping:
            return
        self._next_ping = now + self.watchdog_interval_s / 2
        self._notify("WATCHDOG=1")

    def stopping(self) -> None:
        self._notify("STOPPING=1")

    def close(self) -> None:
        pass

    def _remember(self, status: str) -> str:
        self._status = _one_line(status)
        return self._status

    def _notify(self, message: str) -> None:
        with self._lock:
            try:
                self._send(message)
            except OSError as exc:
                if not self._failing:  # once per outage, not once per frame
                    log.warning("cannot notify systemd (%s): %s", message.partition("\n")[0], exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("notifying systemd works again")
                self._failing = False

    def _send(self, message: str) -> None:
        raise NotImplementedError


class SocketNotifier(_Sender):
    """The plain notify protocol: one datagram per message to an AF_UNIX socket (``@name``: abstract namespace)."""

    def __init__(
        self, address: str, watchdog_interval_s: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(watchdog_interval_s, clock)
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec, as every Python socket
        self._sock.settimeout(SEND_TIMEOUT_S)

    def _send(self, message: str) -> None:
        self._sock.sendto(message.encode(), self.address)

    def close(self) -> None:
        self._sock.close()


class SystemdNotifier(_Sender):
    """systemd-python's ``systemd.daemon.notify``, which reads ``$NOTIFY_SOCKET`` from the process environment."""

    def __init__(
        self,
        notify: Callable[[str], bool],
        watchdog_interval_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(watchdog_interval_s, clock)
        self._sd_notify = notify

    def _send(self, message: str) -> None:
        if not self._sd_notify(message):
            raise OSError("NOTIFY_SOCKET is not set in the process environment")


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """The unit's WatchdogSec= in seconds, from ``$WATCHDOG_USEC``; None without a watchdog, or when
    ``$WATCHDOG_PID`` names another process (the watchdog then belongs to it)."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        log.info("WATCHDOG_PID=%s is another process: the kiosk does not ping the watchdog", owner)
        return None
    if not usec.isdigit() or int(usec) == 0:
        log.warning("WATCHDOG_USEC=%r is not a positive number of microseconds: no watchdog pings", usec)
        return None
    return int(usec) / 1_000_000


def open_notifier(environ: Mapping[str, str] = os.environ) -> Notifier:
    """The notifier for this process: systemd-python, the plain socket protocol, or a no-op outside systemd.

    systemd-python reads ``$NOTIFY_SOCKET`` from the process environment itself, so it is used only when
    ``environ`` names the same socket; anything else goes through the plain protocol to ``environ``'s socket.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return NullNotifier()
    interval = watchdog_interval(environ)
    if address == os.environ.get("NOTIFY_SOCKET"):
        try:
            from systemd.daemon import notify
        except ImportError:
            pass
        else:
            log.debug("notifying systemd through systemd-python, watchdog %s s", interval)
            return SystemdNotifier(notify, interval)
    if not address.startswith(("/", "@")):
        log.error(
            "NOTIFY_SOCKET=%r is neither a socket path nor @abstract: systemd will not hear from the kiosk "
            "(install python3-systemd, or start the kiosk from a unit with Type=notify)",
            address,
        )
        return NullNotifier()
    log.debug("notifying systemd through %s, watchdog %s s", address, interval)
    return SocketNotifier(address, interval)


def _one_line(text: str) -> str:
    """A STATUS= value: a newline would end the assignment and start another one."""
    return " ".join(text.splitlines())
