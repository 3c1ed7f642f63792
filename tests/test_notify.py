"""The systemd notifier against a real NOTIFY_SOCKET datagram socket: plain protocol and systemd-python."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.service import NullNotifier, SocketNotifier, SystemdNotifier, open_notifier, watchdog_interval


class Listener:
    """The systemd side: an AF_UNIX datagram socket that collects what the kiosk sends."""

    def __init__(self, address: str) -> None:
        self.address = address  # as written in $NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)  # a datagram is queued before sendto() returns: nothing to wait for

    def received(self) -> list[str]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return messages


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    address = str(tmp_path / "notify") if request.param == "path" else f"@kiosk-test-{uuid.uuid4().hex}"
    listener = Listener(address)
    yield listener
    listener.sock.close()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_notifier(
    kind: str, listener: Listener, monkeypatch: pytest.MonkeyPatch, **kw: object
) -> SocketNotifier | SystemdNotifier:
    """A notifier of ``kind`` ("socket" or "systemd-python") talking to ``listener``."""
    if kind == "socket":
        return SocketNotifier(listener.address, **kw)
    from systemd import daemon

    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)  # libsystemd reads the process environment
    return SystemdNotifier(daemon.notify, **kw)


KINDS = ["socket", "systemd-python"]


@pytest.mark.parametrize("kind", KINDS)
def test_ready_status_and_stopping_arrive(kind: str, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = make_notifier(kind, listener, monkeypatch, watchdog_interval_s=None)
    notifier.ready("Siap: 12 orang")
    notifier.status("Siap: 12 orang")  # unchanged since READY: not sent again
    notifier.status("Kamera dibuka ulang")
    notifier.status("Kamera dibuka ulang")
    notifier.status("Siap: 12 orang")
    notifier.status("line one\nline two")  # a newline would start another assignment
    notifier.stopping()
    notifier.close()
    assert listener.received() == [
        "READY=1\nSTATUS=Siap: 12 orang",
        "STATUS=Kamera dibuka ulang",
        "STATUS=Siap: 12 orang",
        "STATUS=line one line two",
        "STOPPING=1",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_watchdog_is_sent_at_most_every_half_interval(
    kind: str, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    notifier = make_notifier(kind, listener, monkeypatch, watchdog_interval_s=15.0, clock=clock)
    sent_at = []
    for _ in range(200):  # 200 frames, 0.1 s apart
        before = len(listener.received())
        notifier.watchdog()
        after = listener.received()
        assert before == 0 and after in ([], ["WATCHDOG=1"])
        if after:
            sent_at.append(round(clock.now - 1000.0, 1))
        clock.now += 0.1
    notifier.close()
    assert sent_at == [0.0, 7.5, 15.0]


@pytest.mark.parametrize("kind", KINDS)
def test_no_watchdog_interval_means_no_pings(kind: str, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = make_notifier(kind, listener, monkeypatch, watchdog_interval_s=None)
    for _ in range(10):
        notifier.watchdog()
    notifier.stopping()
    assert listener.received() == ["STOPPING=1"]


def test_open_notifier_reads_the_environment(listener: Listener) -> None:
    environ = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "15000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = open_notifier(environ)
    assert isinstance(notifier, SocketNotifier)  # this environment is not the process's: plain protocol
    assert notifier.watchdog_interval_s == 15.0
    notifier.ready("Siap")
    notifier.watchdog()
    notifier.close()
    assert listener.received() == ["READY=1\nSTATUS=Siap", "WATCHDOG=1"]


def test_open_notifier_uses_systemd_python_for_the_process_environment(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = open_notifier()
    assert isinstance(notifier, SystemdNotifier)
    assert notifier.watchdog_interval_s == 4.0
    notifier.ready("Siap")
    notifier.watchdog()
    assert listener.received() == ["READY=1\nSTATUS=Siap", "WATCHDOG=1"]


def test_without_systemd_python_the_plain_protocol_is_used(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "systemd.daemon", None)  # importing it raises ImportError
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    notifier = open_notifier()
    assert isinstance(notifier, SocketNotifier)
    notifier.ready("Siap")
    notifier.close()
    assert listener.received() == ["READY=1\nSTATUS=Siap"]


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = open_notifier({"WATCHDOG_USEC": "15000000"})
    assert isinstance(notifier, NullNotifier)
    assert notifier.watchdog_interval_s is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "15000000"}, 15.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.5),  # pid 4242 is "us" below
        ({"WATCHDOG_USEC": "15000000", "WATCHDOG_PID": "4243"}, None),  # the watchdog belongs to another process
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "15s"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, pid=4242) == expected


def test_watchdog_of_another_process_is_not_pinged(listener: Listener) -> None:
    environ = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "15000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    notifier = open_notifier(environ)
    assert notifier.watchdog_interval_s is None
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert listener.received() == ["STOPPING=1"]


def test_a_malformed_notify_socket_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kiosk.service"):
        notifier = open_notifier({"NOTIFY_SOCKET": "notify.sock"})
    assert isinstance(notifier, NullNotifier)
    assert "NOTIFY_SOCKET='notify.sock' is neither a socket path nor @abstract" in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_send_errors_are_logged_once_and_never_raised(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    address = str(tmp_path / "notify")  # nobody listens yet: systemd went away
    clock = Clock()
    if kind == "socket":
        notifier: SocketNotifier | SystemdNotifier = SocketNotifier(address, 2.0, clock)
    else:
        from systemd import daemon

        monkeypatch.setenv("NOTIFY_SOCKET", address)
        notifier = SystemdNotifier(daemon.notify, 2.0, clock)
    with caplog.at_level(logging.INFO, logger="kiosk.service"):
        notifier.ready("Siap")
        for _ in range(5):
            notifier.watchdog()
            clock.now += 1.0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "cannot notify systemd (READY=1)" in warnings[0].getMessage()

        listener = Listener(address)  # back again
        notifier.watchdog()
        assert listener.received() == ["WATCHDOG=1"]
        assert "notifying systemd works again" in caplog.text
        listener.sock.close()
    notifier.close()
    notifier.close()
    notifier.stopping()  # after close: logged, not raised (the socket kind); systemd-python has no socket to close
