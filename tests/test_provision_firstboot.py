"""The first-boot script against a folder standing for the device's ``/`` (with ``boot/firmware`` in it).

Files are really moved, written and wiped; the commands that only make sense on the device (systemd-sysusers, chown,
the venv, systemctl) go through a recording runner that stands in for the device.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from kiosk_provisioning import firstboot

KEYS = {"device.key": b"-----BEGIN PRIVATE KEY-----\ndevice\n", "mqtt.key": b"mqtt-key\n", "data.key": bytes(range(32))}
WIFI = b"[connection]\nid=kiosk-wifi\n[wifi-security]\npsk=rahasia-kantor\n"


class Device:
    """Records the commands firstboot runs; ``systemd-sysusers`` adds the user to etc/passwd like the real one."""

    def __init__(self, root: Path, fail: str | None = None) -> None:
        self.root = root
        self.fail = fail
        self.commands: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> int:
        self.commands.append(list(argv))
        if self.fail and self.fail in " ".join(argv):
            return 1
        if argv[0] == "systemd-sysusers":
            with (self.root / "etc/passwd").open("a") as fh:
                fh.write("kiosk:x:999:999:Face attendance kiosk:/var/lib/kiosk:/usr/sbin/nologin\n")
        return 0

    def ran(self, *words: str) -> list[list[str]]:
        return [c for c in self.commands if all(w in c for w in words)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh device: keys and Wi-Fi on the FAT partition, the wheelhouse, no kiosk user yet."""
    fat = tmp_path / firstboot.FAT_DIR
    fat.mkdir(parents=True)
    for name, data in KEYS.items():
        (fat / name).write_bytes(data)
    (fat / firstboot.WIFI_FILE).write_bytes(WIFI)
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nvideo:x:44:\nrender:x:105:\ngpio:x:997:\n")
    wheelhouse = tmp_path / firstboot.WHEELHOUSE
    wheelhouse.mkdir(parents=True)
    (wheelhouse / "pip-26.3-py3-none-any.whl").write_bytes(b"PK")
    (wheelhouse / firstboot.REQUIREMENTS).write_text("pip==26.3 --hash=sha256:" + "0" * 64 + "\n")
    return tmp_path


def test_keys_move_into_etc_kiosk_with_mode_0600_and_leave_fat(root: Path) -> None:
    device = Device(root)
    firstboot.firstboot(root, device)
    for name, data in KEYS.items():
        installed = root / firstboot.CONFIG_DIR / name
        assert installed.read_bytes() == data
        assert installed.stat().st_mode & 0o777 == 0o600
    wifi = root / firstboot.WIFI_DEST
    assert wifi.read_bytes() == WIFI and wifi.stat().st_mode & 0o777 == 0o600
    assert not (root / firstboot.FAT_DIR).exists()
    assert list((root / "boot/firmware").iterdir()) == []


def test_the_device_is_set_up_and_the_kiosk_enabled(root: Path) -> None:
    device = Device(root)
    firstboot.firstboot(root, device)
    assert device.commands[0] == ["systemd-sysusers"]
    assert device.ran("chown", "-R", "kiosk:kiosk", str(root / firstboot.STATE_DIR))
    assert device.ran("chmod", "0700", str(root / firstboot.STATE_DIR))
    venv = root / firstboot.VENV
    (make_venv,) = device.ran("venv")
    assert make_venv == ["python3", "-m", "venv", "--clear", "--without-pip", "--system-site-packages", str(venv)]
    (install,) = device.ran("install")
    wheelhouse = root / firstboot.WHEELHOUSE
    assert install[:2] == [str(venv / "bin/python"), str(wheelhouse / "pip-26.3-py3-none-any.whl/pip")]
    # exactly the wheelhouse's lock, every file against its hash, nothing resolved on the device
    assert install[2:] == [
        "install",
        "--no-index",
        "--find-links",
        str(wheelhouse),
        "--require-hashes",
        "--no-deps",
        "-r",
        str(wheelhouse / "requirements.txt"),
    ]
    order = [" ".join(c[:3]) for c in device.commands if c[0] == "systemctl"]
    assert order == [
        "systemctl enable kiosk.service",
        "systemctl disable kiosk-firstboot.service",
        "systemctl start --no-block",
    ]
    assert (root / firstboot.DONE).exists()


def test_a_second_run_redoes_nothing(root: Path) -> None:
    first = Device(root)
    firstboot.firstboot(root, first)
    (root / firstboot.VENV / "bin").mkdir(parents=True)
    (root / firstboot.VENV / "bin/kiosk").write_text("#!/bin/sh\n")
    second = Device(root)
    firstboot.firstboot(root, second)
    assert not second.ran("systemd-sysusers") and not second.ran("venv") and not second.ran("install")
    assert (root / firstboot.CONFIG_DIR / "device.key").read_bytes() == KEYS["device.key"]


def test_a_failed_step_leaves_the_keys_installed_and_the_unit_enabled(root: Path) -> None:
    device = Device(root, fail="--no-index")
    with pytest.raises(firstboot.FirstbootError, match="failed with status 1"):
        firstboot.firstboot(root, device)
    assert (root / firstboot.CONFIG_DIR / "device.key").read_bytes() == KEYS["device.key"]
    assert not (root / firstboot.DONE).exists()
    assert not device.ran("disable")


def test_a_different_key_already_installed_is_never_overwritten(root: Path) -> None:
    installed = root / firstboot.CONFIG_DIR / "device.key"
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"the key of another image\n")
    with pytest.raises(firstboot.FirstbootError, match="refusing to overwrite"):
        firstboot.firstboot(root, Device(root))
    assert installed.read_bytes() == b"the key of another image\n"
    assert (root / firstboot.FAT_DIR / "device.key").read_bytes() == KEYS["device.key"]


def test_wipe_overwrites_before_deleting(tmp_path: Path) -> None:
    secret = tmp_path / "device.key"
    secret.write_bytes(b"secret bytes")
    same_file = tmp_path / "link"
    os.link(secret, same_file)  # a second name for the same inode shows what was written into it
    firstboot.wipe(secret)
    assert not secret.exists()
    assert same_file.read_bytes() == b"\0" * len(b"secret bytes")


def test_missing_pip_wheel_is_a_clear_error(root: Path) -> None:
    next((root / firstboot.WHEELHOUSE).glob("pip-*.whl")).unlink()
    with pytest.raises(firstboot.FirstbootError, match=r"no pip wheel in .*rebuild the image"):
        firstboot.firstboot(root, Device(root))


def test_a_wheelhouse_without_its_lock_is_a_clear_error(root: Path) -> None:
    (root / firstboot.WHEELHOUSE / firstboot.REQUIREMENTS).unlink()
    device = Device(root)
    with pytest.raises(
        firstboot.FirstbootError, match=r"no .*/opt/kiosk/wheelhouse/requirements.txt .*download-wheelhouse"
    ):
        firstboot.firstboot(root, device)
    assert not device.ran("venv") and not device.ran("install")


def test_uses_only_the_standard_library() -> None:
    tree = ast.parse(Path(firstboot.__file__).read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules - {"__future__"} <= set(sys.stdlib_module_names)


UNIT = Path(__file__).resolve().parent.parent / "systemd" / "kiosk-firstboot.service"


def test_the_unit_runs_the_script_once_and_passes_systemd_analyze(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "\nExecStart=/usr/bin/python3 /opt/kiosk/firstboot.py\n" in text
    assert f"\nConditionPathExists=!/{firstboot.DONE}\n" in text
    assert "\nType=oneshot\n" in text and "\nWantedBy=multi-user.target\n" in text
    # The script is only at /opt/kiosk on the device; here verify checks the copy that points at this checkout.
    copy = tmp_path / "kiosk-firstboot.service"
    copy.write_text(text.replace("/opt/kiosk/firstboot.py", firstboot.__file__))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
