"""The boot test of the image pipeline (docs/boot-test.md): a Raspberry Pi OS-like Bookworm disk image made with
mmdebstrap, provisioning/make-images for two devices, each device's root booted under systemd-nspawn, and the
result checked from outside: keys, offline install, READY with a replay camera, signed events acknowledged by a
Mosquitto and a central ledger on the host over the device's TLS certificate, the sealed gallery, a watchdog
restart after SIGSTOP with nothing lost, the hardening score, the journal's fields. x86_64 natively, then aarch64
through qemu-user (binfmt_misc registered for the run and removed after) on a shorter clip.

Run as root, outside .ci/run: ``scripts/boot-test [--machine x86_64|aarch64 ...] [--work DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("KIOSK_FACES_DIR", REPO.parent / "shared" / "faces"))
EXAMPLES = FACES / "face_recognition" / "examples"
CLIP = EXAMPLES / "short_hamilton_clip.mp4"
PEOPLE = {"198001012005011001": ("Alex Lacamoire", "alex-lacamoire.png"),
          "198002022006021002": ("Lin-Manuel Miranda", "lin-manuel-miranda.png")}
LIN = "198002022006021002"
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# What Raspberry Pi OS Lite has that the kiosk uses and Debian carries (no picamera2, lgpio: Raspberry Pi's own).
PACKAGES = ["systemd-sysv", "dbus", "systemd-timesyncd", "python3", "python3-venv", "python3-systemd",
            "python3-numpy", "python3-pygame", "ca-certificates", "iproute2", "rfkill", "kmod", "sudo", "less"]
SCORE = "1.5"  # docs/service.md: systemd-analyze security rates the unit 1.5 "OK"
DEVICES = ("kiosk-boot-01", "kiosk-boot-02")
EMULATION_DROP_IN = """[Service]
# qemu-user runs dlib 10-30x slower than the CPU it stands for: room for the start and for one frame.
TimeoutStartSec=30min
WatchdogSec=2min
# systemd 252 under qemu-user fails to set up LoadCredential= ("Failed to set up credentials: Invalid argument",
# 243/CREDENTIALS); the same root-only files are handed over by a privileged ExecStartPre= instead. The x86_64 run
# checks the unit's own LoadCredential= path.
LoadCredential=
ExecStartPre=+/bin/sh -c 'install -d -o kiosk -m 0700 /run/kiosk/credentials && for n in device mqtt data; do \
  install -o kiosk -m 0400 /etc/kiosk/$$n.key /run/kiosk/credentials/$$n-key; done'
Environment=CREDENTIALS_DIRECTORY=/run/kiosk/credentials
"""


@dataclass
class Row:
    machine: str
    device: str
    check: str
    result: str  # ok, FAIL, skip
    detail: str


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, machine: str, device: str, check: str, ok: bool | None, detail: str) -> None:
        result = "skip" if ok is None else ("ok" if ok else "FAIL")
        self.rows.append(Row(machine, device, check, result, detail))
        print(f"boot-test: {machine} {device} {check}: {result}: {detail}", flush=True)

    def table(self) -> str:
        head = ("machine", "device", "check", "result", "detail")
        cells = [head, *((r.machine, r.device, r.check, r.result, r.detail) for r in self.rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        lines = []
        for c in cells:
            lines.append("  ".join(c[i].ljust(widths[i]) for i in range(4)) + "  " + c[4])
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
        return "\n".join(lines)


def sh(*argv: str | Path, check: bool = True, timeout: float = 1800, **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False,
                          **kw)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:300]} exited {done.returncode}:\n{done.stdout[-2000:]}"
                           f"\n{done.stderr[-3000:]}")
    return done


def wait_for(what: str, test: Callable[[], object], timeout: float, every: float = 2.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = test()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- binfmt_misc for aarch64 --------------------------------------------------------------------------------------


@contextlib.contextmanager
def binfmt_aarch64() -> Iterator[str | None]:
    """qemu-aarch64-static registered with binfmt_misc for the run (F: the kernel opens the interpreter now, so it
    works inside the container); removed after unless it was registered before. Yields why not, or None."""
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        yield "qemu-aarch64-static is missing (apt-get install qemu-user-static)"
        return
    misc = Path("/proc/sys/fs/binfmt_misc")
    mounted = (misc / "register").exists() or sh("mount", "-t", "binfmt_misc", "binfmt_misc", misc,
                                                   check=False).returncode == 0
    if not mounted:
        yield "binfmt_misc cannot be mounted here"
        return
    entry = misc / "kiosk-boot-test-aarch64"
    ours = False
    if not any((misc / name).exists() and "enabled" in (misc / name).read_text()
               for name in ("qemu-aarch64", entry.name)):
        magic = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
        mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
        (misc / "register").write_text(f":{entry.name}:M::{magic}:{mask}:{qemu}:FOC")
        ours = True
    try:
        yield None
    finally:
        if ours and entry.exists():
            entry.write_text("-1")  # unregister


# --- the image ---------------------------------------------------------------------------------------------------


def build_root(machine: str, work: Path) -> Path:
    """A Debian Bookworm root for ``machine`` with what the kiosk needs from apt, dressed as Raspberry Pi OS (its
    /etc/rpi-issue, /boot/firmware, a PARTUUID fstab); cached in ``work``."""
    root = work / f"root-{machine}"
    done = work / f"root-{machine}.done"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    sh("mmdebstrap", "--variant=important", f"--arch={DEBIAN_ARCH[machine]}", f"--include={','.join(PACKAGES)}",
       "bookworm", root, timeout=3600)
    (root / "etc/rpi-issue").write_text("Raspberry Pi reference 2025-05-13 (stand-in: Debian bookworm, boot-test)\n")
    (root / "boot/firmware").mkdir(parents=True, exist_ok=True)
    (root / "etc/fstab").write_text("proc /proc proc defaults 0 0\nPARTUUID=b00710c0-01 /boot/firmware vfat "
                                    "defaults 0 2\nPARTUUID=b00710c0-02 / ext4 defaults,noatime 0 1\n")
    (root / "etc/hostname").write_text("raspberrypi\n")
    (root / "etc/machine-id").write_text("")  # like the released image: made at first boot
    done.touch()
    return root


def disk_image(machine: str, root: Path, work: Path, clip: Path) -> Path:
    """The root in an MBR disk image laid out like Raspberry Pi OS: FAT32 at 4 MiB (cmdline.txt, config.txt), ext4
    root after it, with the replay clip the kiosk's camera will be."""
    image = work / f"raspios-like-{machine}.img"
    (root / "opt/kiosk").mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, root / "opt/kiosk/walkup.mp4")
    used = int(sh("du", "-sb", root).stdout.split()[0])
    fat_mb, root_mb = 128, used // 2**20 + 900  # room for the wheelhouse, the venv and the state
    image.unlink(missing_ok=True)
    with image.open("wb") as fh:
        fh.truncate((4 + fat_mb + root_mb) * 2**20)
    sh("sfdisk", "--quiet", image, input=f"label: dos\nlabel-id: 0xb00710c0\nstart=4MiB, size={fat_mb}MiB, type=c\n"
                                          f"start={4 + fat_mb}MiB, type=83\n")
    fat = work / "fat"
    shutil.rmtree(fat, ignore_errors=True)
    fat.mkdir()
    (fat / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=PARTUUID=b00710c0-02 rootfstype=ext4 "
                                     "fsck.repair=yes rootwait\n")
    (fat / "config.txt").write_text("arm_64bit=1\ncamera_auto_detect=1\ndisplay_auto_detect=1\n")
    sh("mkfs.vfat", "-F", "32", "-s", "1", "-n", "bootfs", "--offset", str(4 * 2048), image, str(fat_mb * 1024))
    for name in ("cmdline.txt", "config.txt"):
        sh("mcopy", "-i", f"{image}@@{4 * 2**20}", fat / name, f"::/{name}")
    sh("mke2fs", "-q", "-t", "ext4", "-L", "rootfs", "-d", root, "-E", f"offset={(4 + fat_mb) * 2**20}", image,
       f"{root_mb}M")
    return image


# --- the regency side: CA, broker, central ledger ---------------------------------------------------------------


def make_ca(folder: Path) -> None:
    """The regency CA, the broker's certificate for 127.0.0.1, central's client certificate and Ed25519 key."""
    sys.path.insert(0, str(REPO / "contract"))
    from kiosk_contract import signing

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "ca.crt").exists():
        return
    ossl = ["openssl"]
    sh(*ossl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
       folder / "ca.key", "-out", folder / "ca.crt", "-days", "400", "-subj", "/CN=CA Presensi boot-test",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, ext in (("broker", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("central", "extendedKeyUsage=clientAuth")):
        (folder / f"{name}.ext").write_text(ext + "\n")
        cn = "central" if name == "central" else "127.0.0.1"
        sh(*ossl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
           folder / f"{name}.key", "-out", folder / f"{name}.csr", "-subj", f"/CN={cn}")
        sh(*ossl, "x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / "ca.crt", "-CAkey", folder / "ca.key",
           "-CAcreateserial", "-days", "300", "-out", folder / f"{name}.crt", "-extfile", folder / f"{name}.ext")
        (folder / f"{name}.key").chmod(0o600)
    private, public = signing.generate_key()
    signing.write_private_key(folder / "central-signing.key", private)
    (folder / "central.pub").write_bytes(public)


@contextlib.contextmanager
def broker(folder: Path, ca: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Mosquitto with TLS, client certificates from the regency CA as user names, and the devices' ACL."""
    sys.path.insert(0, str(REPO / "contract"))
    from kiosk_contract.topics import mosquitto_acl

    shutil.rmtree(folder, ignore_errors=True)  # no sessions or retained messages from an earlier run
    folder.mkdir(parents=True)
    (folder / "acl").write_text(mosquitto_acl())
    (folder / "mosquitto.conf").write_text(
        f"per_listener_settings false\nlistener {port} 127.0.0.1\ncafile {ca}/ca.crt\ncertfile {ca}/broker.crt\n"
        f"keyfile {ca}/broker.key\nrequire_certificate true\nuse_identity_as_username true\n"
        f"acl_file {folder}/acl\nuser root\npersistence true\npersistence_location {folder}/\n"
        f"log_dest file {folder}/log\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(folder / "mosquitto.conf")])
    try:
        wait_for("mosquitto", lambda: _listening(port), 20, 0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def central(folder: Path, ca: Path, port: int, registry: Path) -> Iterator[Path]:
    """The central ledger (`kiosk-central serve`, .venv-central) on a SQLite file, subscribed to the broker with
    its client certificate; yields the database file."""
    db = folder / "ledger.sqlite"
    for old in folder.glob("ledger.sqlite*"):  # a fresh ledger each run: the devices' seqs start at 1 again
        old.unlink()
    every_day = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'
    (folder / "rules.toml").write_text(f'[[offices]]\ncode = "bkpsdm"\nname = "BKPSDM"\nhours = [{{ days = '
                                       f'{every_day}, start = 00:00:00, end = 23:59:00 }}]\n')
    (folder / "employees.csv").write_text("nip,name,unit\n" + "".join(f"{n},{p[0]},bkpsdm\n"
                                                                      for n, p in PEOPLE.items()))
    config = folder / "central.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\nclient_id = "central-boot-test"\nreconnect_min_s = 0.5\n'
        f'reconnect_max_s = 2.0\ntls_ca_file = "{ca}/ca.crt"\ntls_cert_file = "{ca}/central.crt"\n'
        f'tls_key_file = "{ca}/central.key"\n'
        '[ingest]\nresend_interval_s = 1.0\n'
        '[rules]\nfile = "rules.toml"\nemployees = "employees.csv"\n'
        f'[registry]\nfile = "{registry}"\n'
        f'[signing]\nkey_file = "{ca}/central-signing.key"\n')
    bin_dir = REPO / ".venv-central/bin"
    sh(bin_dir / "kiosk-central", "manage", "--config", config, "migrate", "--noinput", check=False)
    sh(bin_dir / "kiosk-central", "load", "--config", config, check=False)
    log = (folder / "central.log").open("w")
    proc = subprocess.Popen([str(bin_dir / "kiosk-central"), "serve", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_for("the ledger to subscribe", lambda: "serving" in (folder / "central.log").read_text()
                 or proc.poll() is not None, 60, 0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"kiosk-central serve ended: {(folder / 'central.log').read_text()[-3000:]}")
        yield db
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


# --- one device, booted ----------------------------------------------------------------------------------------


class Booted:
    """A device image's partitions loop-mounted and its root booted with systemd-nspawn (PID 1: systemd)."""

    def __init__(self, image: Path, mnt: Path, log: Path, drop_in: str | None) -> None:
        self.image, self.mnt, self.log = image, mnt, log
        self.fat = mnt.with_name(mnt.name + "-fat")
        self.drop_in = drop_in
        self.loops: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Booted:
        start = {p["node"][-1]: p for p in json.loads(sh("sfdisk", "--json", self.image).stdout)["partitiontable"]
                 ["partitions"]}
        self.mnt.mkdir(parents=True, exist_ok=True)
        try:
            root = start["2"]
            loop = sh("losetup", "--find", "--show", "--offset", str(root["start"] * 512), "--sizelimit",
                      str(root["size"] * 512), self.image).stdout.strip()
            self.loops.append(loop)
            sh("mount", loop, self.mnt)
            # This kernel has no vfat driver: the FAT partition's files are copied out with mtools into a folder
            # that is bind-mounted at /boot/firmware, where the first boot finds and wipes them.
            shutil.rmtree(self.fat, ignore_errors=True)
            self.fat.mkdir(parents=True)
            sh("mcopy", "-s", "-n", "-i", f"{self.image}@@{start['1']['start'] * 512}", "::/*", self.fat)
            sh("mount", "--bind", self.fat, self.mnt / "boot/firmware")
            if self.drop_in:
                folder = self.mnt / "etc/systemd/system/kiosk.service.d"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "emulation.conf").write_text(self.drop_in)
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--quiet", "--boot", "--keep-unit", "--register=no", "-D", str(self.mnt),
                 "--machine", self.image.stem[:60].replace("_", "-"), "--console=passive", "--link-journal=no"],
                stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
            wait_for("systemd in the container", self._leader, 120, 1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _leader(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn ended: {self.log.read_text(errors='replace')[-3000:]}")
        children = sh("ps", "-o", "pid=", "--ppid", str(self.proc.pid), check=False).stdout.split()
        for pid in children:
            comm = Path(f"/proc/{pid}/comm").read_text().strip() if Path(f"/proc/{pid}/comm").exists() else ""
            if comm in ("systemd", "init") or comm.startswith("qemu"):
                return int(pid)
        return None

    def run(self, *argv: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        leader = self._leader()
        return sh("nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "--", *argv, check=check,
                  timeout=timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", "kiosk.service", *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            leader = self._leader_quiet()
            # systemctl inside, not a signal: qemu-user renumbers real-time signals (SIGRTMIN+4 arrived as emergency)
            if leader and self.run("systemctl", "poweroff", "--no-block", timeout=60).returncode != 0:
                os.kill(leader, signal.SIGRTMIN + 4)  # systemd: poweroff
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:  # the container's init is in a session of its own: kill it too
                for pid, kill in ((leader, os.kill), (self.proc.pid, os.killpg)):
                    if pid:
                        with contextlib.suppress(ProcessLookupError):
                            kill(pid, signal.SIGKILL)
                self.proc.wait(30)
        for where in (self.mnt / "boot/firmware", self.mnt):
            sh("umount", where, check=False)
        for loop in self.loops:
            sh("losetup", "-d", loop, check=False)

    def _leader_quiet(self) -> int | None:
        try:
            return self._leader()
        except RuntimeError:
            return None


def check_device(run: Run, machine: str, device: str, image: Path, work: Path, ledger_db: Path,
                 emulated: bool, expected: tuple[set[str], bool]) -> None:
    """Boot one device image and check everything from outside."""
    drop_in = None
    if emulated:  # qemu-user runs the recognizer 10-30x slower than the CPU it stands for
        drop_in = EMULATION_DROP_IN
    mnt = work / f"mnt-{device}"
    started = time.monotonic()
    with Booted(image, mnt, work / f"console-{device}.log", drop_in) as box:
        etc = mnt / "etc/kiosk"
        # A container cannot set the clock, so timesyncd does not run in it (ConditionVirtualization=!container);
        # its sync flag stands for an NTP sync, so that the kiosk anchors its events' time as on a device.
        wait_for("the container's /run", lambda: box.run("mkdir", "-p", "/run/systemd/timesync").returncode == 0,
                 60, 1)
        box.run("touch", "/run/systemd/timesync/synchronized")
        # 1. first boot: keys moved (0600 root) and wiped from FAT, the venv installed offline from the wheelhouse
        wait_for("the first boot", lambda: (mnt / "var/lib/kiosk/.firstboot-done").exists()
                 or "failed" in box.run("systemctl", "is-failed", "kiosk-firstboot").stdout, 40 * 60, 3)
        boot_s = time.monotonic() - started
        firstboot = box.run("journalctl", "-u", "kiosk-firstboot", "--no-pager", "-o", "cat").stdout
        keys = {name: (etc / name).stat() for name in ("device.key", "mqtt.key", "data.key") if (etc / name).exists()}
        modes = {n: (oct(s.st_mode & 0o777), s.st_uid) for n, s in keys.items()}
        fat_left = sorted(p.name for p in (mnt / "boot/firmware/kiosk").glob("*")) if (
            mnt / "boot/firmware/kiosk").exists() else []
        run.add(machine, device, "keys moved to /etc/kiosk, wiped from FAT",
                len(keys) == 3 and all(m == ("0o600", 0) for m in modes.values()) and not fat_left,
                f"{modes}; left on FAT: {fat_left or 'nothing'}")
        venv = mnt / "opt/kiosk/venv"
        pins = {line.split("==")[0].lower() for line in (mnt / "opt/kiosk/wheelhouse/requirements.txt").read_text()
                .splitlines() if re.match(r"^[A-Za-z0-9]", line)}
        freeze = box.run("/opt/kiosk/venv/bin/python", "-m", "pip", "freeze", "--all", timeout=300).stdout
        installed = {re.split(r"[=@ ]", line)[0].lower().replace("_", "-") for line in freeze.splitlines() if line}
        offline = "--no-index" in firstboot and "--require-hashes" in firstboot
        missing = sorted(p.replace("_", "-") for p in pins if p.replace("_", "-") not in installed)
        run.add(machine, device, "offline install from the wheelhouse + device lock",
                venv.exists() and not missing and (offline or "installed" in firstboot.lower()),
                f"{len(installed)} packages in /opt/kiosk/venv, every pin of requirements.txt installed"
                f"{'' if not missing else f' except {missing}'}; first boot in {boot_s:.0f} s")
        # 2. READY with the replay camera
        wait_for("kiosk.service active", lambda: box.show("ActiveState")["ActiveState"] in ("active", "failed"),
                 40 * 60, 3)
        state = box.show("ActiveState", "StatusText", "NRestarts", "MainPID", "Result")
        run.add(machine, device, "kiosk.service READY with a replay camera", state["ActiveState"] == "active",
                f"{state['ActiveState']} ({time.monotonic() - started:.0f} s after boot), STATUS={state['StatusText']}")
        journal = box.run("journalctl", "-u", "kiosk", "--no-pager", "-o", "cat").stdout
        run.add(machine, device, "sealed gallery loads",
                "data at rest: sealed" in journal and re.search(r"gallery /var/lib/kiosk/gallery.kgal: 2 people",
                                                                journal) is not None,
                "; ".join(line for line in journal.splitlines() if "data at rest" in line or "people, version" in line)
                [:200])
        # 3. signed events reach the broker and the ledger over TLS and are acknowledged
        outbox = mnt / "var/lib/kiosk/outbox.sqlite"

        def counts() -> dict[str, int]:
            with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)) as db:
                return dict(db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())

        def attended() -> bool:
            with contextlib.closing(sqlite3.connect(ledger_db, timeout=5)) as db:
                return bool(db.execute("SELECT count(*) FROM events WHERE device_id = ? AND type = 'attendance' AND "
                                       "nip = ?", (device, LIN)).fetchone()[0])

        try:
            wait_for("Lin's attendance in the ledger and every event acknowledged",
                     lambda: attended() and set(counts()) <= {"acknowledged"}, 30 * 60 if emulated else 600, 3)
            ok = True
        except TimeoutError as exc:
            ok, journal = False, str(exc)
        with contextlib.closing(sqlite3.connect(ledger_db, timeout=5)) as db:
            stored = db.execute("SELECT type, count(*) FROM events WHERE device_id = ? GROUP BY type",
                                (device,)).fetchall()
        run.add(machine, device, "signed events acknowledged by Mosquitto + central ledger (TLS)", ok,
                f"ledger: {dict(stored)}; device outbox: {counts()}")
        with contextlib.closing(sqlite3.connect(ledger_db, timeout=5)) as db:
            rows = db.execute("SELECT type, nip, payload FROM events WHERE device_id = ? AND type IN "
                              "('attendance', 'review')", (device,)).fetchall()
        got = ({nip for kind, nip, _ in rows if kind == "attendance"},
               any(json.loads(p).get("reason") == "unknown_face" for kind, _, p in rows if kind == "review"))
        run.add(machine, device, "same decisions as x86_64 `kiosk replay` of the clip", got == expected,
                f"device: attendance {sorted(got[0])}, unknown face {got[1]}; x86_64 replay: attendance "
                f"{sorted(expected[0])}, unknown face {expected[1]}")
        # 4. SIGSTOP: the watchdog kills and restarts the kiosk, nothing lost
        before = box.show("MainPID", "NRestarts")
        seq_before = _max_seq(outbox)
        box.run("kill", "-STOP", before["MainPID"])
        stopped = time.monotonic()
        try:
            wait_for("a watchdog restart", lambda: (s := box.show("NRestarts", "ActiveState", "MainPID"))
                     ["NRestarts"] != before["NRestarts"] and s["ActiveState"] == "active"
                     and s["MainPID"] not in ("0", before["MainPID"]), 40 * 60 if emulated else 180, 2)
            took, restarted = time.monotonic() - stopped, True
        except TimeoutError:
            took, restarted = time.monotonic() - stopped, False
        if restarted:  # the restarted kiosk publishes what it made since, and the ledger acknowledges it again
            with contextlib.suppress(TimeoutError):
                wait_for("every event acknowledged after the restart", lambda: set(counts()) <= {"acknowledged"},
                         30 * 60 if emulated else 300, 3)
        watchdog = "watchdog timeout" in box.run("journalctl", "-u", "kiosk", "--no-pager", "-o", "cat").stdout.lower()
        gaps = _ledger_gaps(ledger_db, device)
        run.add(machine, device, "SIGSTOP -> watchdog restart, nothing lost", restarted and watchdog and not gaps
                and _max_seq(outbox) >= seq_before and set(counts()) <= {"acknowledged"},
                f"active again {took:.0f} s after SIGSTOP (NRestarts {before['NRestarts']} -> "
                f"{box.show('NRestarts')['NRestarts']}, 'watchdog timeout' in the journal: {watchdog}); ledger seqs "
                f"1..{_ledger_max(ledger_db, device)} without gaps: {not gaps}; device outbox: {counts()}")
        # 5. hardening as documented
        security = box.run("systemd-analyze", "security", "kiosk.service", "--no-pager").stdout
        score = re.search(r"Overall exposure level for kiosk.service: ([0-9.]+) (\w+)", security)
        run.add(machine, device, "systemd-analyze security", score is not None and score.group(1) == SCORE,
                f"{score.group(0) if score else security[-200:]} (docs/service.md: {SCORE})")
        # 6. the journal: the promised fields, and no NIP outside them
        entries = [json.loads(line) for line in box.run("journalctl", "-u", "kiosk", "-o", "json", "--no-pager",
                                                         timeout=300).stdout.splitlines() if line.startswith("{")]
        with_nip = [e for e in entries if e.get("KIOSK_NIP")]
        leaked = [e["MESSAGE"] for e in entries if isinstance(e.get("MESSAGE"), str)
                  and any(n in e["MESSAGE"] for n in PEOPLE)]
        fields = {k for e in with_nip for k in e if k.startswith("KIOSK_")}
        run.add(machine, device, "journal fields, no NIP outside them",
                bool(with_nip) and {"KIOSK_DEVICE_ID", "KIOSK_EVENT_ID", "KIOSK_SEQ", "KIOSK_NIP"} <= fields
                and not leaked,
                f"{len(entries)} entries, {len(with_nip)} with KIOSK_NIP, fields {sorted(fields)}; NIP in a message: "
                f"{len(leaked)}{' e.g. ' + leaked[0][:80] if leaked else ''}")
        sysusers = box.run("journalctl", "-b", "-u", "systemd-sysusers", "--no-pager", "-o", "cat").stdout
        run.add(machine, device, "no sysusers conflict", "onflict" not in sysusers,
                "systemd-sysusers logged no conflict" if "onflict" not in sysusers else sysusers[-200:])
    run.timings[f"{machine} {device}"] = time.monotonic() - started


def _max_seq(outbox: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)) as db:
        return int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


def _ledger_max(db_path: Path, device: str) -> int:
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        return int(db.execute("SELECT coalesce(max(seq), 0) FROM events WHERE device_id = ?", (device,)).fetchone()[0])


def _ledger_gaps(db_path: Path, device: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        seqs = {int(r[0]) for r in db.execute("SELECT seq FROM events WHERE device_id = ?", (device,))}
    return sorted(set(range(1, max(seqs, default=0) + 1)) - seqs)


# --- one machine ------------------------------------------------------------------------------------------------


def gallery(work: Path) -> Path:
    """The two people of the clip, enrolled with the project's own `kiosk enroll` from the shared photos."""
    out = work / "gallery.kgal"
    if out.exists():
        return out
    photos = work / "photos"
    for nip, (_, photo) in PEOPLE.items():
        (photos / nip).mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / photo, photos / nip / photo)
    with (work / "roster.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("nip", "name", "unit"), *((n, p[0], "BKPSDM") for n, p in PEOPLE.items())])
    sh(REPO / ".venv/bin/kiosk", "enroll", "--roster", work / "roster.csv", "--photos", photos, "--gallery", out,
       "--jitters", "1")
    return out


def template(work: Path, realtime: bool) -> Path:
    """The kiosk.toml every device starts from (examples/kiosk.toml with these changes): the replay camera on the
    clip (looped; paced in real time natively, every frame under emulation, where real-time pacing would drop nearly
    all of them), the screen as log lines, the film's liveness off (a film cannot blink on request), a
    punch window all day."""
    import dataclasses
    from datetime import time as clock_time

    from kiosk import config as kconfig
    from kiosk_contract.schedule import PunchWindow

    cfg = kconfig.load_config(REPO / "examples/kiosk.toml")
    every_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    cfg = dataclasses.replace(
        cfg,
        camera=dataclasses.replace(cfg.camera, source="replay", path=Path("/opt/kiosk/walkup.mp4"), loop=True,
                                   realtime=realtime),
        recognizer=dataclasses.replace(cfg.recognizer,
                                       liveness=dataclasses.replace(cfg.recognizer.liveness, level="off")),
        schedule=dataclasses.replace(cfg.schedule, windows=(PunchWindow(days=every_day, kind="masuk",
                                                                   start=clock_time(0, 0), end=clock_time(23, 59)),)),
        display=dataclasses.replace(cfg.display, backend="log"),
    )
    out = work / "kiosk-template.toml"
    out.write_text(kconfig.config_to_toml(cfg))
    return out


def machine_run(run: Run, machine: str, work: Path, ca: Path, broker_port: int) -> None:
    here = os.uname().machine
    emulated = machine != here
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    root = build_root(machine, work)
    run.timings[f"{machine} mmdebstrap root"] = time.monotonic() - t0
    clip = CLIP
    if emulated:  # a shorter clip: the frames where Lin walks up and is recognised (docs/boot-test.md)
        clip = work / "walkup-short.mp4"
        if not clip.exists():
            sh(REPO / ".venv/bin/python", "-c", _CUT, CLIP, clip, "80", "200")
    t0 = time.monotonic()
    image = disk_image(machine, root, work, clip)
    wheelhouse = work / f"wheelhouse-{machine}"
    sh(REPO / "provisioning/download-wheelhouse", "--out", wheelhouse, "--machine", machine, timeout=1800)
    devices = work / "devices.csv"
    with devices.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device_id", "site", "office", "office_code", "hostname", "wifi_ssid", "wifi_psk", "broker"])
        for d in DEVICES:
            w.writerow([f"{d}-{machine}", "boot-test", "BKPSDM", "bkpsdm", f"{d}-{machine}".replace("_", "-"), "",
                        "", f"127.0.0.1:{broker_port}"])
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    made = sh(REPO / "provisioning/make-images", "--image", image, "--devices", devices, "--gallery",
              gallery(work.parent), "--ca-dir", ca, "--wheelhouse", wheelhouse, "--out", out, "--config-template",
              template(work, realtime=not emulated), "--machine", machine, check=False, timeout=1800)
    run.timings[f"{machine} image + make-images"] = time.monotonic() - t0
    run.add(machine, "-", "make-images for two devices", made.returncode == 0,
            (made.stdout + made.stderr).strip().splitlines()[-1][:200] if made.stdout + made.stderr else "")
    if made.returncode != 0:
        print(made.stdout, made.stderr, file=sys.stderr)
        return
    expected = replay_decisions(clip, gallery(work.parent), work / "kiosk-template.toml")
    with central(work, ca, broker_port, out / "registry.json") as ledger_db:
        for d in DEVICES:
            device = f"{d}-{machine}"
            try:
                check_device(run, machine, device, out / "devices" / device / f"{device}.img", work, ledger_db,
                             emulated, expected)
            except Exception as exc:  # the table says what broke; the other device still runs
                run.add(machine, device, "boot", False, f"{type(exc).__name__}: {str(exc)[:300]}")


def replay_decisions(clip: Path, people: Path, config: Path) -> tuple[set[str], bool]:
    """What the kiosk decides on the clip natively (x86_64 `kiosk replay`, every frame, the devices' recognizer
    settings): the NIPs accepted, and whether a face was decided unknown."""
    out = sh(REPO / ".venv/bin/kiosk", "replay", "--config", config, "--gallery", people, "--source", clip, "--json")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    decisions = [d for d in lines if "summary" not in d]
    return {d["nip"] for d in decisions if d["nip"]}, any(d["nip"] is None for d in decisions)


_CUT = """
import sys, cv2
src, dst, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cap = cv2.VideoCapture(src)
fps = cap.get(cv2.CAP_PROP_FPS)
out = None
for i in range(last):
    ok, frame = cap.read()
    if not ok:
        break
    if i >= first:
        if out is None:
            out = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        out.write(frame)
out.release()
"""


def missing_tools() -> list[str]:
    need = ["mmdebstrap", "systemd-nspawn", "nsenter", "losetup", "mosquitto", "sfdisk", "mkfs.vfat", "mcopy",
            "mke2fs", "debugfs", "openssl"]
    return [t for t in need if shutil.which(t) is None]


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/boot-test", description=__doc__)
    parser.add_argument("--machine", action="append", choices=sorted(DEBIAN_ARCH),
                        help="x86_64 and/or aarch64 (default: both, x86_64 first)")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/kiosk-boot-test"))
    args = parser.parse_args()
    machines = args.machine or ["x86_64", "aarch64"]
    run = Run()
    started = time.monotonic()
    if os.geteuid() != 0:
        print("boot-test: SKIP: needs root (mmdebstrap, loop mounts, systemd-nspawn)")
        return 0
    if missing := missing_tools():
        print(f"boot-test: SKIP: missing {', '.join(missing)} (apt-get install mmdebstrap systemd-container "
              "mosquitto fdisk dosfstools mtools e2fsprogs)")
        return 0
    if not CLIP.exists():
        print(f"boot-test: SKIP: the clip {CLIP} is missing (set KIOSK_FACES_DIR)")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    ca = args.work / "ca"
    make_ca(ca)
    port = free_port()
    with broker(args.work / "broker", ca, port):
        for machine in machines:
            t0 = time.monotonic()
            if machine != os.uname().machine:
                with binfmt_aarch64() as why:
                    if why:
                        run.add(machine, "-", "qemu-user", None, f"skipped: {why}")
                        continue
                    machine_run(run, machine, args.work / machine, ca, port)
            else:
                machine_run(run, machine, args.work / machine, ca, port)
            run.timings[f"{machine} total"] = time.monotonic() - t0
    print()
    print(run.table())
    print()
    for name, seconds in run.timings.items():
        print(f"time  {name}: {seconds / 60:.1f} min")
    print(f"time  everything: {(time.monotonic() - started) / 60:.1f} min")
    failed = [r for r in run.rows if r.result == "FAIL"]
    print(f"boot-test: {len(run.rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
