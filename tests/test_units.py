"""The systemd unit and the sysusers file: systemd's own checkers, and the properties the kiosk relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kiosk.config import CameraConfig

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "kiosk.service"
SYSUSERS = SYSTEMD / "kiosk.sysusers"
BASIC_SYSUSERS = Path("/usr/lib/sysusers.d/basic.conf")
KIOSK_BIN = "/opt/kiosk/venv/bin/kiosk"
WORST_FRAME_S = 1.0  # one frame on a Pi 4 in the worst case (docs/service.md)


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; keys may repeat (DeviceAllow=, LoadCredential=)."""
    entries, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in parse_unit(UNIT.read_text()) if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    (only,) = values(key, section)
    return only


def runnable_copy(text: str, folder: Path) -> Path:
    """The unit with only ExecStart's program replaced by one that exists here (the kiosk venv is on the device)."""
    true = shutil.which("true")
    assert true is not None
    copy = text.replace(f"ExecStart={KIOSK_BIN} ", f"ExecStart={true} ")
    changed = [(a, b) for a, b in zip(text.splitlines(), copy.splitlines(), strict=True) if a != b]
    assert [a for a, _ in changed] == [f"ExecStart={KIOSK_BIN} run --config /etc/kiosk/kiosk.toml"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kiosk.service"
    path.write_text(copy)
    return path


def verify(unit: Path) -> str:
    """What ``systemd-analyze verify`` objects to; empty when the unit is clean.

    verify exits 0 on settings it ignores ("Unknown key", "Failed to parse ..., ignoring"), so anything it
    prints counts as a problem too."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=30, check=False
    )
    problems = (done.stdout + done.stderr).strip()
    return problems or ("" if done.returncode == 0 else f"exit status {done.returncode}")


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify(runnable_copy(UNIT.read_text(), tmp_path)) == ""


@pytest.mark.parametrize(
    ("line", "broken"),
    [
        ("Type=notify", "Type=notfy"),
        ("ProtectSystem=strict", "ProtectSystm=strict"),
        ("WatchdogSec=15s", "WatchdogSec=15s # a comment after a value is part of the value"),
        ("DeviceAllow=char-drm rw", "DeviceAllow=char-drm rwx"),
        ("After=time-set.target", "After=time set.target"),
        ("[Service]", "[Servce]"),
    ],
)
def test_verify_catches_a_broken_unit(tmp_path: Path, line: str, broken: str) -> None:
    text = UNIT.read_text()
    assert text.count(f"\n{line}\n") == 1
    assert verify(runnable_copy(text.replace(f"\n{line}\n", f"\n{broken}\n"), tmp_path)) != ""


def test_comments_are_on_their_own_lines() -> None:
    for _section, key, val in parse_unit(UNIT.read_text()):
        assert " #" not in val and " ;" not in val, f"{key}={val}: systemd would take the comment as part of the value"


def test_security_exposure_stays_low(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(runnable_copy(UNIT.read_text(), tmp_path))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    match = re.search(r"Overall exposure level for kiosk\.service: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match[1]) <= 1.5  # measured with systemd 252 (docs/service.md); any dropped hardening raises it


def test_start_notification_and_watchdog() -> None:
    assert value("Type") == "notify"
    assert value("NotifyAccess") == "main"
    assert value("ExecStart") == f"{KIOSK_BIN} run --config /etc/kiosk/kiosk.toml"
    watchdog_s = float(value("WatchdogSec").removesuffix("s"))
    # The notifier pings at most every WatchdogSec/2; a healthy loop calls it at least once per frame, and a frame
    # lasts at most a worst-case frame plus a capture that times out: the longest quiet gap must fit with margin.
    longest_gap_s = watchdog_s / 2 + CameraConfig().capture_timeout_s + WORST_FRAME_S
    assert longest_gap_s <= 0.75 * watchdog_s


def test_restarts_with_start_limits() -> None:
    assert value("Restart") == "on-failure"  # includes a watchdog timeout
    assert value("RestartSec") == "10s"
    assert not values("RestartPreventExitStatus")  # exit 2 is also a camera error (CameraError), worth a retry
    assert value("StartLimitBurst", "Unit") == "5"
    assert value("StartLimitIntervalSec", "Unit") == "10min"


def test_ordered_after_time_set_not_time_sync() -> None:
    assert "time-set.target" in values("After", "Unit")
    assert "kiosk-firstboot.service" in values("After", "Unit")
    assert not [v for _, _, v in parse_unit(UNIT.read_text()) if "time-sync.target" in v]  # not after, not pulled in
    assert not values("Wants", "Unit") and not values("Requires", "Unit")


def test_user_groups_and_directories() -> None:
    assert value("User") == "kiosk" and value("Group") == "kiosk"
    assert value("SupplementaryGroups").split() == ["video", "render", "gpio", "input"]
    assert value("ConfigurationDirectory") == value("StateDirectory") == value("RuntimeDirectory") == "kiosk"
    assert value("StateDirectoryMode") == "0700" and value("UMask") == "0077"
    assert value("Environment") == "LG_WD=%t/kiosk"  # %t is /run for a system unit: the RuntimeDirectory


def test_devices_closed_but_camera_screen_gpio_and_input() -> None:
    assert value("DevicePolicy") == "closed"
    assert values("DeviceAllow") == [
        "char-video4linux rw",
        "char-media rw",
        "char-dma_heap rw",
        "char-drm rw",
        "char-gpiochip rw",
        "char-input r",
        "/dev/vcio rw",  # the OTP data key (device.data_key = "otp")
    ]
    assert not values("PrivateDevices")  # would hide the camera


def test_hardening() -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    }
    assert {key: value(key) for key in expected} == expected
    assert values("SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert not values("ReadWritePaths")  # the state and runtime directories are the only writable places


def test_secrets_come_as_credentials() -> None:
    assert values("LoadCredential") == [
        "device-key:/etc/kiosk/device.key",
        "mqtt-key:/etc/kiosk/mqtt.key",
        "data-key:/etc/kiosk/data.key",
    ]


def test_sysusers_makes_the_user_and_every_group_the_unit_asks_for(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "group").write_text("root:x:0:\nrender:x:105:\n")  # an image that already has render
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    done = subprocess.run(  # --dry-run: works without root, and says what it would create
        ["systemd-sysusers", "--dry-run", f"--root={root}", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    created = re.findall(r"Creating group '([^']+)' with GID (\d+)", done.stderr)
    (user,) = re.findall(r"Creating user '([^']+)' \(Face attendance kiosk\) with UID (\d+) and GID (\d+)", done.stderr)
    groups = dict(created) | {"root": "0", "render": "105", "video": "44"}  # video: systemd's basic.conf
    assert user[0] == "kiosk" and int(user[1]) < 1000 and groups["kiosk"] == user[2]  # a system user, own group
    assert "render" not in dict(created)  # an existing group is left alone
    for group in value("SupplementaryGroups").split():
        assert group in groups, f"kiosk.service needs group {group}; kiosk.sysusers must make it"
    lines = [line.split() for line in SYSUSERS.read_text().splitlines() if line and not line.startswith("#")]
    assert ["u", "kiosk", "-", '"Face', "attendance", 'kiosk"', "/var/lib/kiosk"] in lines  # home: the state dir
    assert not [line for line in lines if line[0] == "m"]  # the account itself is in no group; the unit grants them


@pytest.mark.skipif(not BASIC_SYSUSERS.exists(), reason=f"{BASIC_SYSUSERS} (systemd's own groups) is not here")
def test_sysusers_beside_systemds_basic_conf_logs_no_conflict(tmp_path: Path) -> None:
    """On the device kiosk.conf sits beside systemd's basic.conf (video, GID 44); no group may be declared twice, or
    systemd-sysusers logs a conflict at every boot. All the groups the unit asks for are still made."""
    folder = tmp_path / "usr/lib/sysusers.d"
    folder.mkdir(parents=True)
    shutil.copy(BASIC_SYSUSERS, folder / "basic.conf")
    shutil.copy(SYSUSERS, folder / "kiosk.conf")
    (tmp_path / "etc").mkdir()
    done = subprocess.run(["systemd-sysusers", "--dry-run", f"--root={tmp_path}"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "onflict" not in done.stderr, done.stderr
    created = dict(re.findall(r"Creating group '([^']+)' with GID (\d+)", done.stderr))
    assert created["video"] == "44" and {"render", "input", "gpio", "kiosk"} <= set(created)
