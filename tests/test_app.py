"""`kiosk run`: the daemon composed from its config, on a replayed clip, stopping cleanly."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import ALEX, EXAMPLES, FILM_LIVENESS_TOML, LIN, need, wait_for

from kiosk.cli import main
from kiosk_contract.runtime import stop_on_signals


def replay_config(tmp_path: Path, gallery: Path, device_id: str, tables: str) -> Path:
    """A kiosk.toml that replays the Hamilton clip flat out against ``gallery``, plus ``tables``."""
    clip = need(EXAMPLES / "short_hamilton_clip.mp4")
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[device]\nid = "{device_id}"\nstate_dir = "{tmp_path}"\n'
        f'[camera]\nsource = "replay"\npath = "{clip}"\nrealtime = false\n'
        f'[recognizer]\ngallery = "{gallery}"\n{FILM_LIVENESS_TOML}' + tables
    )
    return config


def assert_recognised_and_no_nip_in_text(records: list[logging.LogRecord]) -> None:
    """Lin is recognised on the clip and Alex is not named; NIPs and names appear only in the ``nip`` field (the
    KIOSK_NIP journal field), never in a message (docs/service.md, "Personal data")."""
    named = {getattr(r, "nip", None) for r in records if r.getMessage().startswith("t=")}
    assert LIN in named and ALEX not in named
    for text in (r.getMessage() for r in records):
        assert not any(secret in text for secret in (LIN, ALEX, "Lin-Manuel", "Lacamoire")), text


def test_run_recognises_on_a_replayed_clip(hamilton_gallery: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    config = replay_config(tmp_path, hamilton_gallery, "kiosk-test", '[display]\nbackend = "log"\n')
    with caplog.at_level(logging.INFO):
        assert main(["run", "--config", str(config)]) == 0
    text = caplog.text
    assert "kiosk kiosk-test running" in text
    assert_recognised_and_no_nip_in_text(caplog.records)
    assert "stopping after 275 frames" in text


def test_run_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('[camera]\nsource = "replay"\npath = "nowhere.mp4"\nfsp = 3\n')
    assert main(["run", "--config", str(config)]) == 2
    assert "camera.fsp: unknown key" in capsys.readouterr().err
    config.write_text(f'[camera]\nsource = "replay"\npath = "{tmp_path}/x.mp4"\n')
    assert main(["run", "--config", str(config)]) == 2
    assert "x.mp4 does not exist: set camera.path" in capsys.readouterr().err


def test_without_a_gallery_the_kiosk_runs_says_so_and_records_nothing(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from kiosk.events.outbox import Outbox

    config = replay_config(tmp_path, tmp_path / "missing.kgal", "kiosk-nogallery", "")
    with caplog.at_level(logging.INFO):
        assert main(["run", "--config", str(config)]) == 0  # a service in a restart loop would show nothing at all
    assert "enrol people with `kiosk enroll`" in caplog.text
    assert "problem gallery present" in caplog.text
    assert "stopping after 275 frames" in caplog.text
    with Outbox.open(tmp_path / "outbox.sqlite") as outbox:
        assert [e.kind for e in outbox.pending(limit=10)] == [], "no face can be recognised, none is reported"


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_draws_on_the_pygame_screen(hamilton_gallery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    config = replay_config(
        tmp_path, hamilton_gallery, "kiosk-screen",
        '[display]\nbackend = "pygame"\nwidth = 1024\nheight = 600\nfullscreen = false\n',
    )
    with caplog.at_level(logging.ERROR):
        assert main(["run", "--config", str(config)]) == 0
    assert not [r for r in caplog.records if r.name.startswith("kiosk.display")], caplog.text


def test_run_with_gpio_parts_on_mock_pins(hamilton_gallery: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from gpiozero import Device

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    config = replay_config(tmp_path, hamilton_gallery, "kiosk-pins", "[hardware]\nenabled = true\n")
    try:
        assert main(["run", "--config", str(config)]) == 0
        config.write_text(config.read_text() + "tamper = 17\n")  # the green LED's pin
        assert main(["run", "--config", str(config)]) == 2
    finally:
        Device.pin_factory = None


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET, read on its own thread as systemd
    does (the kernel queues only a few unread datagrams before the sender waits)."""

    def __init__(self, path: Path) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="test-notify", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def drain(self) -> list[str]:
        """Everything received so far (waits for the queue to be read after the sender finished)."""
        time.sleep(0.2)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(2.0)
        self.sock.close()


def test_the_daemon_tells_systemd_ready_watchdog_status_and_stopping(hamilton_gallery: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    systemd = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000")  # 2 ms: every frame may ping
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = replay_config(tmp_path, hamilton_gallery, "kiosk-notify", "")
    from kiosk.events.outbox import Outbox

    with Outbox.open(tmp_path / "outbox.sqlite") as outbox:  # events still unsent from before the restart
        outbox.append("e-before-1", "attendance", b"{}")
        outbox.append("e-before-2", "attendance", b"{}")
    assert main(["run", "--config", str(config)]) == 0
    said = systemd.drain()
    systemd.close()
    ready = [i for i, m in enumerate(said) if "READY=1" in m]
    assert len(ready) == 1 and "STATUS=2 people; 2 events unsent; server off" in said[ready[0]], said[: ready[0] + 1]
    opening = said.index("STATUS=opening the camera")
    watchdog = [i for i, m in enumerate(said) if m == "WATCHDOG=1"]
    assert opening < watchdog[0] < ready[0] and len(watchdog) >= 3  # from the frame loop
    assert said[-1] == "STOPPING=1"
    assert any(m.startswith("STATUS=") and "events unsent" in m and "READY" not in m for m in said[ready[0]:])


def test_a_camera_that_fails_at_start_keeps_the_service_alive_and_ready_after_a_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from kiosk import app
    from kiosk.config import load_config

    systemd = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(app, "CAMERA_RETRY_MIN_S", 0.05)
    monkeypatch.setattr(app, "CAMERA_READY_GRACE_S", 0.5)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[device]\nstate_dir = "{tmp_path}"\n[camera]\nsource = "v4l2"\n'
                      f'device = "{tmp_path}/video99"\ncapture_timeout_s = 0.2\n'
                      f'[recognizer]\ngallery = "{tmp_path}/none.kgal"\n')
    stop = threading.Event()
    runner = threading.Thread(target=app.run, args=(load_config(config), stop), name="test-kiosk")
    runner.start()
    try:
        wait_for(lambda: any("READY=1" in m for m in systemd.messages), "READY=1 after the grace", timeout=20.0)
    finally:
        stop.set()
        runner.join(10.0)
    said = systemd.drain()
    systemd.close()
    assert not runner.is_alive()
    (ready,) = [i for i, m in enumerate(said) if "READY=1" in m]
    assert f"STATUS={app.CAMERA_RETRY_STATUS}; 0 people; 0 events unsent; server off" in said[ready]
    assert "problems: camera, gallery" in said[ready]
    assert "WATCHDOG=1" in said[:ready], "alive before READY: the watchdog is fed while the camera is retried"
    assert said[-1] == "STOPPING=1"


def test_run_on_a_sealed_gallery_with_the_device_data_key(hamilton_gallery: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    key = tmp_path / "data.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    sealed = tmp_path / "sealed.kgal"
    config = replay_config(tmp_path, sealed, "kiosk-sealed", "")
    config.write_text(config.read_text().replace("[camera]", f'data_key = "file"\ndata_key_file = "{key}"\n[camera]'))
    assert main(["gallery", "seal", "--config", str(config), str(hamilton_gallery), str(sealed)]) == 0
    assert b"Lin-Manuel" not in sealed.read_bytes()
    with caplog.at_level(logging.INFO):
        assert main(["run", "--config", str(config)]) == 0
    assert "data at rest: sealed, key" in caplog.text
    assert "problem gallery" not in caplog.text
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    photos = [row[0] for row in db.execute("SELECT jpeg FROM evidence")]
    kinds = [row[0] for row in db.execute("SELECT kind FROM events")]
    db.close()
    assert_recognised_and_no_nip_in_text(caplog.records)  # through the sealed gallery
    assert "review" in kinds, "the unknown face's event, with its photo"
    assert photos and not any(b"\xff\xd8\xff" in p for p in photos), "evidence photos are sealed on disk"
    key.write_bytes(os.urandom(32))  # another device's key: nothing opens, nothing is overwritten
    before = sealed.read_bytes()
    assert main(["run", "--config", str(config)]) == 2
    assert sealed.read_bytes() == before


def test_the_device_command_carries_no_central_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["central", "recap", "--help"])
    assert exit_.value.code == 2 and "invalid choice: 'central'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["screens", "--out", "x", "--bogus"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_the_camera_grace_and_status_texts_are_the_documented_ones() -> None:
    """docs/service.md tells IT how long a start without a camera takes and what STATUS= then says."""
    from kiosk import app

    docs = " ".join((Path(__file__).resolve().parents[1] / "docs/service.md").read_text().split())
    assert f"If it still fails **{app.CAMERA_READY_GRACE_S:.0f} s** after the start" in docs
    assert f"waits those {app.CAMERA_READY_GRACE_S:.0f} s, then returns with the unit active" in docs
    assert f"`STATUS={app.CAMERA_RETRY_STATUS}; 120 people; 3 events unsent; server online; problems: camera`" in docs
    backoff = f"after {app.CAMERA_RETRY_MIN_S:.0f} s, then twice as long each time up to {app.CAMERA_RETRY_MAX_S:.0f} s"
    assert backoff in docs
