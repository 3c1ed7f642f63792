"""The central server's systemd units (deploy/*.service, deploy/*.timer) as systemd reads them: each passes
``systemd-analyze verify`` (with only its program replaced by one that exists here), the subscriber and the web run
their commands, and the daily schedule push runs at 00:05 WITA the push of today's schedule to lagging kiosks, with
a command line the real ``kiosk-central`` accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_units import verify

from kiosk_central.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROGRAM = "/opt/kiosk-central/bin/"
UNITS = sorted(p.name for p in DEPLOY.iterdir() if p.suffix in (".service", ".timer"))

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def exec_start(unit: str) -> list[str]:
    (line,) = [line for line in (DEPLOY / unit).read_text().splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


@pytest.mark.parametrize("unit", UNITS)
def test_each_unit_passes_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    for name in UNITS:  # a timer is verified with the service it starts beside it
        text = (DEPLOY / name).read_text()
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                text = text.replace(line, f"ExecStart={true} {' '.join(line.split()[1:])}")
        (tmp_path / name).write_text(text)
    assert verify(tmp_path / unit) == ""


def test_the_daily_push_runs_at_five_past_midnight_wita_on_lagging_kiosks() -> None:
    assert UNITS == ["kiosk-central-schedule-push.service", "kiosk-central-schedule-push.timer",
                     "kiosk-central-subscriber.service", "kiosk-central-web.service"]
    timer = (DEPLOY / "kiosk-central-schedule-push.timer").read_text().splitlines()
    (calendar,) = [line.removeprefix("OnCalendar=") for line in timer if line.startswith("OnCalendar=")]
    assert calendar == "*-*-* 00:05:00 Asia/Makassar" and "Persistent=true" in timer
    done = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", calendar], capture_output=True,
                          text=True, timeout=30, check=True)
    assert "16:05:00 UTC" in done.stdout, done.stdout  # 00:05 WITA is 16:05 UTC of the day before
    command = exec_start("kiosk-central-schedule-push.service")
    assert command[0] == PROGRAM + "kiosk-central"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.schedule_command, args.lagging, str(args.config)) == (
        "schedule", "push", True, "/etc/kiosk/central.toml")
    assert build_parser().parse_args(exec_start("kiosk-central-subscriber.service")[1:]).command == "serve"
