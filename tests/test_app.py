"""`kiosk run`: the daemon composed from its config, on a replayed clip, stopping cleanly."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from conftest import EXAMPLES, need

from kiosk.app import stop_on_signals
from kiosk.cli import main


def replay_config(tmp_path: Path, gallery: Path, device_id: str, tables: str) -> Path:
    """A kiosk.toml that replays the Hamilton clip flat out against ``gallery``, plus ``tables``."""
    clip = need(EXAMPLES / "short_hamilton_clip.mp4")
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[device]\nid = "{device_id}"\nstate_dir = "{tmp_path}"\n'
        f'[camera]\nsource = "replay"\npath = "{clip}"\nrealtime = false\n'
        f'[recognizer]\ngallery = "{gallery}"\n' + tables
    )
    return config


def test_run_recognises_on_a_replayed_clip(hamilton_gallery: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    config = replay_config(tmp_path, hamilton_gallery, "kiosk-test", '[display]\nbackend = "log"\n')
    with caplog.at_level(logging.INFO):
        assert main(["run", "--config", str(config)]) == 0
    text = caplog.text
    assert "kiosk kiosk-test running" in text
    assert "Lin-Manuel Miranda (198002022006021002" in text
    assert "Alex Lacamoire (" not in text
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
