"""First boot of a kiosk image: move the keys off the FAT partition, create the kiosk user and venv, start the kiosk.

Run once, as root, by kiosk-firstboot.service with the system Python (the kiosk's venv does not exist yet), so
it uses the standard library only; the image script copies this file to /opt/kiosk/firstboot.py. Every step can
be repeated: a boot that fails half way (power cut, full disk) does the rest at the next boot, and the unit only
disables itself after the last step. The functions take the root folder, so that tests run them against a
folder standing for ``/``. (It cannot import kiosk_contract.fsutil: the kiosk is not installed yet.)

Hostname, time zone, NTP servers and screen blanking are written into the image on the workstation, so they are
right from the very first boot; this script only does what needs the device itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

FAT_DIR = "boot/firmware/kiosk"
SECRETS = ("device.key", "mqtt.key", "data.key")
WIFI_FILE = "wifi.nmconnection"
WIFI_DEST = "etc/NetworkManager/system-connections/kiosk-wifi.nmconnection"
CONFIG_DIR = "etc/kiosk"
STATE_DIR = "var/lib/kiosk"
VENV = "opt/kiosk/venv"
WHEELHOUSE = "opt/kiosk/wheelhouse"
REQUIREMENTS = "requirements.txt"  # the device lock of the image's release, with the wheels' hashes
DONE = "var/lib/kiosk/.firstboot-done"
USER = "kiosk"
SYSTEM_MODULES = ("picamera2", "pygame", "lgpio", "systemd")

Runner = Callable[[Sequence[str]], int]


class FirstbootError(Exception):
    """A first-boot step failed; the message says which and what to do."""


def run_command(argv: Sequence[str]) -> int:
    """Run a command on the device, its output going to the journal; its exit status."""
    print("firstboot: $ " + " ".join(argv), flush=True)
    return subprocess.run(list(argv), check=False).returncode


def firstboot(root: Path, run: Runner = run_command) -> None:
    """Every step, in order; raises FirstbootError at the first one that fails."""
    install_secrets(root)
    create_user(root, run)
    create_venv(root, run)
    check_system_modules(root, run)
    run(["rfkill", "unblock", "wifi"])  # a Pi without Wi-Fi has nothing to unblock
    _must(run, ["systemctl", "enable", "kiosk.service"])
    _must(run, ["systemctl", "disable", "kiosk-firstboot.service"])
    _write_new(root / DONE, b"done\n", 0o644)
    run(["systemctl", "start", "--no-block", "kiosk.service"])


def install_secrets(root: Path) -> None:
    """Move each key (and the Wi-Fi profile, which holds the passphrase) from FAT into place, mode 0600 root."""
    fat = root / FAT_DIR
    moves = [(fat / name, root / CONFIG_DIR / name) for name in SECRETS]
    moves.append((fat / WIFI_FILE, root / WIFI_DEST))
    for src, dst in moves:
        if src.exists():
            move_secret(src, dst)
    if fat.is_dir() and not any(fat.iterdir()):
        fat.rmdir()


def move_secret(src: Path, dst: Path) -> None:
    """Write ``src`` to ``dst`` (0600, never over different content), then overwrite ``src`` and delete it."""
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.read_bytes() != data:
            raise FirstbootError(
                f"{dst} exists with other content; refusing to overwrite it. The key from the image stays in "
                f"{src}: compare them, remove the wrong one, then run: systemctl restart kiosk-firstboot"
            )
        os.chmod(dst, 0o600)
    else:
        _write_new(dst, data, 0o600)
    wipe(src)


def wipe(path: Path) -> None:
    """Overwrite a file with zeros in place, flush it to the card, then delete it."""
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.write(b"\0" * size)
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    _fsync_dir(path.parent)


def create_user(root: Path, run: Runner) -> None:
    """The kiosk's system user, owning the state folder (0700, as kiosk.service's StateDirectoryMode).

    The user and its groups are declared in /usr/lib/sysusers.d/kiosk.conf (systemd/kiosk.sysusers); the boot's
    systemd-sysusers.service normally made them already, so this only runs it again when the user is missing.
    """
    if not _has_entry(root / "etc/passwd", USER):
        _must(run, ["systemd-sysusers"])
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    _must(run, ["chown", "-R", f"{USER}:{USER}", str(root / STATE_DIR)])
    _must(run, ["chmod", "0700", str(root / STATE_DIR)])


def create_venv(root: Path, run: Runner) -> None:
    """/opt/kiosk/venv with the system site packages (picamera2, pygame, lgpio, systemd from apt), offline.

    Exactly the wheelhouse's requirements.txt is installed (the device lock of the image's release): every wheel
    checked against its sha256, nothing resolved on the device (--no-deps; the lock is the complete closure).
    """
    venv, wheelhouse = root / VENV, root / WHEELHOUSE
    if (venv / "bin/kiosk").exists():
        return
    pip_wheels = sorted(wheelhouse.glob("pip-*.whl"))
    if not pip_wheels:
        raise FirstbootError(f"no pip wheel in {wheelhouse}; rebuild the image with a complete wheelhouse")
    requirements = wheelhouse / REQUIREMENTS
    if not requirements.is_file():
        raise FirstbootError(
            f"no {requirements} (the wheelhouse's lock); rebuild the image with a wheelhouse made by "
            "provisioning/download-wheelhouse"
        )
    _must(run, ["python3", "-m", "venv", "--clear", "--without-pip", "--system-site-packages", str(venv)])
    pip = [str(venv / "bin/python"), str(pip_wheels[-1] / "pip")]
    _must(
        run,
        [
            *pip,
            "install",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--require-hashes",
            "--no-deps",
            "-r",
            str(requirements),
        ],
    )


def check_system_modules(root: Path, run: Runner) -> None:
    """Warn (in the journal) about Raspberry Pi OS packages the kiosk uses that the image lacks."""
    for module in SYSTEM_MODULES:
        if run([str(root / VENV / "bin/python"), "-c", f"import {module}"]) != 0:
            print(f"firstboot: WARNING: Python module {module} is missing; install python3-{module}", flush=True)


def _must(run: Runner, argv: Sequence[str]) -> None:
    status = run(argv)
    if status != 0:
        raise FirstbootError(f"`{' '.join(argv)}` failed with status {status}")


def _has_entry(path: Path, name: str) -> bool:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(line.split(":", 1)[0] == name for line in lines)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` durably with ``mode`` (a temporary neighbour, fsync, rename), owned by root on the device."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    """Entry point of kiosk-firstboot.service: the whole first boot on this device."""
    try:
        firstboot(Path("/"))
    except (FirstbootError, OSError) as exc:
        print(f"firstboot: ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    print("firstboot: done; kiosk.service enabled and started", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
