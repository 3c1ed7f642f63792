"""The image script end to end, on synthetic Raspberry Pi OS images with the real layout.

No real Raspberry Pi OS image is available offline, so each test image is built here without root: an MBR made
by ``sfdisk``, a FAT32 boot partition at 4 MiB (``mkfs.vfat --offset``, files put in with ``mcopy``) and an ext4
root populated from a folder (``mke2fs -d -E offset=``), holding what the script inspects (os-release,
rpi-issue, the aarch64 loader, python3.11, zoneinfo). The wheelhouse holds the kiosk's real wheel
(``pip wheel --no-deps``), tiny stand-in wheels, tagged for aarch64, for its dependencies, and the
``requirements.txt`` that pins each with its sha256, as download-wheelhouse writes it. The outputs are
read back with mtools and debugfs directly, not through the code under test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from broker import Broker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from packaging.requirements import Requirement
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.config import load_config
from kiosk_contract import signing
from kiosk_contract.gallery import Gallery, Person
from kiosk_contract.topics import mosquitto_acl
from kiosk_provisioning import ProvisionError
from kiosk_provisioning.__main__ import main as provision_main
from kiosk_provisioning.credentials import Authority, device_secrets
from kiosk_provisioning.wheelhouse import check_wheelhouse, read_requirements, write_requirements

REPO = Path(__file__).resolve().parent.parent
MAKE_IMAGES = REPO / "provisioning" / "make-images"
MIB = 1 << 20
BOOT_OFFSET = 4 * MIB
BOOT_SIZE = 40 * MIB  # FAT32 needs about 33 MiB at one sector per cluster
ROOT_OFFSET = BOOT_OFFSET + BOOT_SIZE
ROOT_SIZE = 24 * MIB
TOOL_ENV = dict(
    os.environ, MTOOLS_SKIP_CHECK="1", DEBUGFS_PAGER="__none__", PATH=os.environ["PATH"] + ":/usr/sbin:/sbin"
)

BOOKWORM = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
BULLSEYE = 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\nVERSION_CODENAME=bullseye\n'
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'
FSTAB = (  # Raspberry Pi OS Bookworm's
    "proc            /proc           proc    defaults          0       0\n"
    "PARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2\n"
    "PARTUUID=4e639091-02  /               ext4    defaults,noatime  0       1\n"
)
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
HEADER = "device_id,site,office,office_code,hostname,wifi_ssid,wifi_psk,broker"
DEVICES = [
    "kiosk-bkpsdm-01,tana-tidung,BKPSDM Kabupaten Tana Tidung,bkpsdm,kiosk-bkpsdm-01,Kantor-BKPSDM,rahasia-kantor-1,"
    "broker.tanatidung.go.id:8883,",
    "kiosk-dinkes-01,tana-tidung,Dinas Kesehatan,dinkes,kiosk-dinkes-01,Dinkes WiFi,kata sandi dinkes,10.20.0.5,",
    "kiosk-camat-01,sesayap,Kantor Camat Sesayap,camat-sesayap,kiosk-camat-01,,,broker.tanatidung.go.id:1883,"
    "Asia/Jakarta",
]
CODES = {"kiosk-bkpsdm-01": "bkpsdm", "kiosk-dinkes-01": "dinkes", "kiosk-camat-01": "camat-sesayap"}
ZONES = {"kiosk-bkpsdm-01": "Asia/Makassar", "kiosk-dinkes-01": "Asia/Makassar", "kiosk-camat-01": "Asia/Jakarta"}


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, env=TOOL_ENV, check=True, **kw)  # type: ignore[call-overload]


def build_image(
    path: Path,
    *,
    os_release: str = BOOKWORM,
    loader: str = "ld-linux-aarch64.so.1",
    rpi_issue: bool = True,
    desktop: bool = False,
    python: str = "python3.11",
) -> Path:
    """A 68 MiB sparse disk image laid out like Raspberry Pi OS (FAT32 boot at 4 MiB, ext4 root after it)."""
    root = path.with_suffix(".rootfs")
    for folder in (
        "etc/systemd/system/multi-user.target.wants",
        "usr/lib",
        "usr/bin",
        "boot/firmware",
        "usr/share/zoneinfo/Asia",
        "usr/share/zoneinfo/Etc",
        "var/lib",
        "opt",
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/os-release").write_text(os_release)
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")  # as on Debian and Raspberry Pi OS
    (root / "lib").symlink_to("usr/lib")  # merged /usr
    (root / "usr/lib" / loader).write_bytes(b"\x7fELF")
    (root / "usr/bin" / python).write_bytes(b"\x7fELF")
    if rpi_issue:
        (root / "etc/rpi-issue").write_text("Raspberry Pi reference 2025-05-13\n")
    if desktop:
        (root / "usr/share/wayland-sessions").mkdir(parents=True)
    (root / "etc/hostname").write_text("raspberrypi\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost\n127.0.1.1\traspberrypi\n")
    (root / "etc/timezone").write_text("Europe/London\n")
    (root / "etc/fstab").write_text(FSTAB)
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    for zone in ("Asia/Makassar", "Asia/Jakarta", "Etc/UTC"):
        shutil.copy(Path("/usr/share/zoneinfo") / zone, root / "usr/share/zoneinfo" / zone)
    with path.open("wb") as fh:
        fh.truncate(ROOT_OFFSET + ROOT_SIZE)
    layout = (
        f"label: dos\nunit: sectors\nstart={BOOT_OFFSET // 512}, size={BOOT_SIZE // 512}, type=c\n"
        f"start={ROOT_OFFSET // 512}, size={ROOT_SIZE // 512}, type=83\n"
    )
    _run(["sfdisk", "-q", str(path)], input=layout.encode())
    _run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-n",
            "bootfs",
            "--offset",
            str(BOOT_OFFSET // 512),
            str(path),
            str(BOOT_SIZE // 1024),
        ]
    )
    for name, text in (("cmdline.txt", CMDLINE), ("config.txt", "arm_64bit=1\ndtoverlay=vc4-kms-v3d\n")):
        (root.parent / name).write_text(text)
        _run(["mcopy", "-i", f"{path}@@{BOOT_OFFSET}", str(root.parent / name), f"::/{name}"])
    _run(
        [
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-L",
            "rootfs",
            "-d",
            str(root),
            "-E",
            f"offset={ROOT_OFFSET}",
            str(path),
            f"{ROOT_SIZE // 1024}k",
        ]
    )
    return path


def fat_read(image: Path, name: str) -> bytes | None:
    proc = subprocess.run(["mtype", "-i", f"{image}@@{BOOT_OFFSET}", f"::{name}"], capture_output=True, env=TOOL_ENV)
    return proc.stdout if proc.returncode == 0 else None


def ext4(image: Path, request: str) -> str:
    return _run(["debugfs", "-R", request, f"{image}?offset={ROOT_OFFSET}"]).stdout.decode()


def ext4_read(image: Path, path: str) -> bytes:
    return _run(["debugfs", "-R", f"cat {path}", f"{image}?offset={ROOT_OFFSET}"]).stdout


def ext4_stat(image: Path, path: str) -> tuple[str, int, int, int]:
    """(type, permission bits, uid, gid) of a path in the root partition."""
    out = ext4(image, f"stat {path}")
    kind = re.search(r"Type:\s+(\S+)\s+Mode:\s+(\d+)", out)
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    assert kind and owner, f"{path} is not in {image}"
    return kind.group(1), int(kind.group(2), 8), int(owner.group(1)), int(owner.group(2))


def make_wheel(folder: Path, name: str, tag: str, version: str = "1.0") -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) with the given tag."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", metadata)
        zf.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def standin_version(requirement: Requirement, python: str = "3.11") -> str:
    """A version for a stand-in wheel that the requirement allows (numpy: the one the release's apt needs)."""
    if requirement.name == "numpy":
        return "1.26.4" if python == "3.11" else "2.2.4"
    return next(v for v in ("999.0", "1.0") if requirement.specifier.contains(v))


def write_lock(wheelhouse: Path) -> Path:
    """requirements.txt pinning every wheel in the folder at its version and sha256 (what download-wheelhouse does)."""
    lines = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        lines.append(f"{name}=={version} --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n")
    path = wheelhouse / "requirements.txt"
    path.write_text("# stand-in wheelhouse lock\n" + "".join(lines))
    return path


def kiosk_requirements(wheel: Path) -> list[Requirement]:
    """What the kiosk wheel requires (with its pi extra)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    names = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            spec = line.partition(":")[2].strip()
            if "extra ==" in spec and "'pi'" not in spec and '"pi"' not in spec:
                continue
            names.append(Requirement(spec))
    return names


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input of the image script: image, device list, gallery, CA folder, wheelhouse."""
    base = tmp_path_factory.mktemp("kit")
    src = base / "src"
    src.mkdir()
    for name in ("kiosk", "setup.cfg", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, src / name)
    wheelhouse = base / "wheelhouse"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(wheelhouse),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    kiosk_wheel = next(wheelhouse.glob("kiosk-*.whl"))
    for requirement in kiosk_requirements(kiosk_wheel):
        make_wheel(wheelhouse, requirement.name, "cp311-cp311-manylinux_2_28_aarch64", standin_version(requirement))
    make_wheel(wheelhouse, "pip", "py3-none-any")
    write_lock(wheelhouse)

    ca_dir = base / "ca"
    ca_dir.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA Pemkab Tana Tidung")])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (ca_dir / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (ca_dir / "ca.key").write_bytes(
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (ca_dir / "central.pub").write_bytes(signing.generate_key()[1])

    gallery = base / "gallery.kgal"
    rng = np.random.default_rng(1)
    Gallery([Person("198001012005011001", "Alex", "BKPSDM", rng.random((2, 128), np.float32))]).save(gallery)
    devices = base / "devices.csv"
    devices.write_text("\n".join([HEADER + ",timezone", *DEVICES]) + "\n")
    return {
        "image": build_image(base / "raspios-bookworm-arm64-lite.img"),
        "devices": devices,
        "gallery": gallery,
        "ca": ca_dir,
        "wheelhouse": wheelhouse,
        "unit": REPO / "systemd" / "kiosk.service",
        "base": base,
    }


def args(kit: dict[str, Path], out: Path, **override: Path) -> list[str]:
    given = {**kit, **override}
    return [
        "--image", str(given["image"]), "--devices", str(given["devices"]), "--gallery", str(given["gallery"]),
        "--ca-dir", str(given["ca"]), "--wheelhouse", str(given["wheelhouse"]), "--out", str(out),
        "--service-unit", str(given["unit"]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(kit: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The real script run once on the synthetic image: (output folder, its standard output)."""
    out = tmp_path_factory.mktemp("out") / "images"
    proc = subprocess.run([str(MAKE_IMAGES), *args(kit, out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout + proc.stderr


def device_ids() -> list[str]:
    return [row.split(",")[0] for row in DEVICES]


def pem_body(pem: bytes) -> bytes:
    """The base64 lines of a PEM block, the part that would leak the key."""
    return b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))


def test_each_device_gets_its_own_keys_only_in_its_own_image(built: tuple[Path, str], kit: dict[str, Path]) -> None:
    out, log = built
    images = {d: (out / "devices" / d / f"{d}.img").read_bytes() for d in device_ids()}
    base = (out / "base" / "base.img").read_bytes()
    ca_key = pem_body((kit["ca"] / "ca.key").read_bytes())
    for blob in [*images.values(), base]:
        assert ca_key[:60] not in blob  # the CA private key never goes into an image
    for device in device_ids():
        secrets = out / "devices" / device / "secrets"
        assert secrets.stat().st_mode & 0o777 == 0o700
        for name in ("device.key", "mqtt.key", "data.key"):
            key = (secrets / name).read_bytes()
            assert (secrets / name).stat().st_mode & 0o777 == 0o600
            image = out / "devices" / device / f"{device}.img"
            assert image.stat().st_mode & 0o777 == 0o600
            assert fat_read(image, f"/kiosk/{name}") == key
            marker = pem_body(key)[:60] if name != "data.key" else key
            assert marker not in base
            for other, blob in images.items():
                assert (marker in blob) == (other == device), (name, device, other)
            if name != "data.key":
                assert marker not in log.encode()
        assert len((secrets / "data.key").read_bytes()) == 32
    assert b"PRIVATE KEY" not in log.encode()
    public = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".img" and "secrets" not in p.parts]
    assert {p.name for p in public} == {"manifest.json", "registry.json", "mqtt.crt", "device.pub"}
    assert all(b"PRIVATE" not in p.read_bytes() for p in public)


def test_certificate_is_signed_by_the_ca_for_the_device(built: tuple[Path, str], kit: dict[str, Path]) -> None:
    out, _ = built
    ca = x509.load_pem_x509_certificate((kit["ca"] / "ca.crt").read_bytes())
    registry = {entry["device_id"]: entry for entry in json.loads((out / "registry.json").read_text())}
    for device in device_ids():
        image = out / "devices" / device / f"{device}.img"
        cert_pem = ext4_read(image, "/etc/kiosk/mqtt.crt")
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device
        mqtt_key = serialization.load_pem_private_key(fat_read(image, "/kiosk/mqtt.key") or b"", None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert mqtt_key.public_key().public_bytes(serialization.Encoding.DER, spki) == cert.public_key().public_bytes(
            serialization.Encoding.DER, spki
        )
        device_key = signing.private_key_from_pem(fat_read(image, "/kiosk/device.key") or b"")
        assert registry[device]["key_id"] == signing.key_id_of(device_key)
        assert registry[device]["office"] == CODES[device], "central's registry gets the office code"
        assert registry[device]["mqtt_cert_sha256"] == hashlib.sha256(cert_pem).hexdigest()
        assert ext4_read(image, "/etc/kiosk/ca.crt") == (kit["ca"] / "ca.crt").read_bytes()
        assert ext4_read(image, "/etc/kiosk/central.pub") == (kit["ca"] / "central.pub").read_bytes()


def test_kiosk_toml_loads_with_the_device_settings(built: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = built
    expected = {
        "kiosk-bkpsdm-01": ("broker.tanatidung.go.id", 8883, "tana-tidung", "BKPSDM Kabupaten Tana Tidung"),
        "kiosk-dinkes-01": ("10.20.0.5", 8883, "tana-tidung", "Dinas Kesehatan"),
        "kiosk-camat-01": ("broker.tanatidung.go.id", 1883, "sesayap", "Kantor Camat Sesayap"),
    }
    for device, (host, port, site, office) in expected.items():
        image = out / "devices" / device / f"{device}.img"
        path = tmp_path / f"{device}.toml"
        path.write_bytes(ext4_read(image, "/etc/kiosk/kiosk.toml"))
        cfg = load_config(path)
        assert (cfg.device.id, cfg.device.office, cfg.device.timezone) == (device, office, ZONES[device])
        assert cfg.device.office_code == CODES[device], "central's commands name the office by its code"
        assert (cfg.mqtt.enabled, cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.site) == (True, host, port, site)
        assert str(cfg.mqtt.tls_key_file) == "credential:mqtt-key"
        assert str(cfg.mqtt.tls_cert_file) == "/etc/kiosk/mqtt.crt"
        assert str(cfg.mqtt.tls_ca_file) == "/etc/kiosk/ca.crt"
        assert str(cfg.mqtt.central_key_file) == "/etc/kiosk/central.pub"
        assert str(cfg.events.signing_key_file) == "credential:device-key"
        assert (cfg.device.data_key, str(cfg.device.data_key_file)) == ("file", "credential:data-key")
        assert str(cfg.recognizer.gallery) == "/var/lib/kiosk/gallery.kgal"
        assert ext4_stat(image, "/etc/kiosk/kiosk.toml") == ("regular", 0o644, 0, 0)


def test_system_settings_and_first_boot_unit(built: tuple[Path, str], kit: dict[str, Path], tmp_path: Path) -> None:
    from kiosk_contract.gallery import Gallery
    from kiosk_contract.sealing import DataCipher

    out, _ = built
    for device in device_ids():
        image = out / "devices" / device / f"{device}.img"
        assert ext4_read(image, "/etc/hostname") == f"{device}\n".encode()
        hosts = ext4_read(image, "/etc/hosts").decode()
        assert f"127.0.1.1\t{device}" in hosts and "raspberrypi" not in hosts and "127.0.0.1\tlocalhost" in hosts
        assert ext4_read(image, "/etc/timezone") == f"{ZONES[device]}\n".encode()
        assert f'Fast link dest: "/usr/share/zoneinfo/{ZONES[device]}"' in ext4(image, "stat /etc/localtime")
        cmdline = (fat_read(image, "/cmdline.txt") or b"").decode()
        assert cmdline.startswith(CMDLINE.strip()) and cmdline.count("consoleblank=0") == 1
        assert "cfg80211.ieee80211_regdom=ID" in cmdline and cmdline.count("fsck.repair=yes") == 1
        fstab = ext4_read(image, "/etc/fstab").decode().splitlines()  # a failing card stops writing (docs/outbox.md)
        assert fstab[2].split() == ["PARTUUID=4e639091-02", "/", "ext4", "defaults,noatime,errors=remount-ro", "0", "1"]
        assert fstab[:2] == FSTAB.splitlines()[:2]
        assert b"NTP=0.id.pool.ntp.org" in ext4_read(image, "/etc/systemd/timesyncd.conf.d/kiosk.conf")
        wants = "/etc/systemd/system/multi-user.target.wants/kiosk-firstboot.service"
        assert 'Fast link dest: "/etc/systemd/system/kiosk-firstboot.service"' in ext4(image, f"stat {wants}")
        unit = (REPO / "systemd/kiosk-firstboot.service").read_bytes()
        assert ext4_read(image, "/etc/systemd/system/kiosk-firstboot.service") == unit
        assert ext4_read(image, "/etc/systemd/system/kiosk.service") == kit["unit"].read_bytes()
        script = (REPO / "provisioning/kiosk_provisioning/firstboot.py").read_bytes()
        assert ext4_read(image, "/opt/kiosk/firstboot.py") == script
        assert ext4_stat(image, "/opt/kiosk/firstboot.py") == ("regular", 0o755, 0, 0)
        assert ext4_stat(image, "/var/lib/kiosk") == ("directory", 0o700, 0, 0)
        assert ext4_read(image, "/usr/lib/sysusers.d/kiosk.conf") == (REPO / "systemd/kiosk.sysusers").read_bytes()
        sealed = tmp_path / f"{device}.kgal"  # sealed with this device's own data key: no plaintext template
        sealed.write_bytes(ext4_read(image, "/var/lib/kiosk/gallery.kgal"))
        plain = Gallery.load(kit["gallery"])
        assert sealed.read_bytes() != kit["gallery"].read_bytes()
        assert not any(nip.encode() in sealed.read_bytes() for nip in plain.nips)
        data_key = (out / "devices" / device / "secrets" / "data.key").read_bytes()
        assert Gallery.load(sealed, cipher=DataCipher(data_key, "test")).nips == plain.nips
        wheels = {w.name for w in kit["wheelhouse"].glob("*.whl")}
        listing = ext4(image, "ls -p /opt/kiosk/wheelhouse")
        assert wheels == set(re.findall(r"/([^/]+\.whl)/", listing))
        lock = (kit["wheelhouse"] / "requirements.txt").read_bytes()
        assert ext4_read(image, "/opt/kiosk/wheelhouse/requirements.txt") == lock
        wifi = fat_read(image, "/kiosk/wifi.nmconnection")
        if device == "kiosk-camat-01":
            assert wifi is None
        else:
            assert wifi is not None and b"type=wifi" in wifi and b"key-mgmt=wpa-psk" in wifi
        # the filesystem stays consistent after debugfs wrote into it
        _run(["e2fsck", "-fn", f"{image}?offset={ROOT_OFFSET}"])
    dinkes = fat_read(out / "devices/kiosk-dinkes-01/kiosk-dinkes-01.img", "/kiosk/wifi.nmconnection") or b""
    assert b"ssid=Dinkes WiFi\n" in dinkes and b"psk=kata sandi dinkes\n" in dinkes
    assert fat_read(out / "base" / "base.img", "/kiosk/device.key") is None


def test_second_run_changes_nothing_and_a_changed_row_keeps_the_device_identity(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert provision_main(["images", *args(kit, out)]) == 0
    images = {d: out / "devices" / d / f"{d}.img" for d in device_ids()}
    before = {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.rglob("*") if p.is_file()
    }
    log = io.StringIO()
    with redirect_stdout(log):
        assert provision_main(["images", *args(kit, out)]) == 0
    after = {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.rglob("*") if p.is_file()
    }
    assert after == before
    assert log.getvalue().count("unchanged") == 1 + len(images)

    changed = kit["base"] / "devices-moved.csv"
    changed.write_text(kit["devices"].read_text().replace("Dinas Kesehatan", "Dinas Kesehatan dan KB"))
    cert = ext4_read(images["kiosk-dinkes-01"], "/etc/kiosk/mqtt.crt")
    log = io.StringIO()
    with redirect_stdout(log):
        assert provision_main(["images", *args(kit, out, devices=changed)]) == 0
    assert "device kiosk-dinkes-01: writing" in log.getvalue()
    for device, image in images.items():
        assert (after[image] == (image.stat().st_mtime_ns, hashlib.sha256(image.read_bytes()).hexdigest())) == (
            device != "kiosk-dinkes-01"
        )
    assert b'office = "Dinas Kesehatan dan KB"' in ext4_read(images["kiosk-dinkes-01"], "/etc/kiosk/kiosk.toml")
    assert ext4_read(images["kiosk-dinkes-01"], "/etc/kiosk/mqtt.crt") == cert  # same identity, same certificate
    secrets = out / "devices/kiosk-dinkes-01/secrets"
    assert fat_read(images["kiosk-dinkes-01"], "/kiosk/device.key") == (secrets / "device.key").read_bytes()


def test_dry_run_writes_nothing_and_lists_the_files(kit: dict[str, Path], tmp_path: Path) -> None:
    compressed = tmp_path / "raspios.img.xz"
    compressed.write_bytes(lzma.compress(kit["image"].read_bytes(), preset=0))
    userconf = tmp_path / "userconf.txt"
    userconf.write_text("admin:$6$salt$hash\n")
    out = tmp_path / "out"
    log = io.StringIO()
    with redirect_stdout(log):
        options = ["--dry-run", "--userconf", str(userconf), "--ssh"]
        assert provision_main(["images", *args(kit, out, image=compressed), *options]) == 0
    assert not out.exists()
    text = log.getvalue()
    assert "boot /userconf.txt (19 bytes, FAT)" in text and "boot /ssh (0 bytes, FAT)" in text
    assert "dry run: nothing is written" in text and "Raspberry Pi OS bookworm arm64" in text
    assert "root /opt/kiosk/firstboot.py" in text and "root /etc/kiosk/kiosk.toml" in text
    assert text.count("boot /kiosk/device.key") == len(DEVICES)
    assert "secret, content not shown" in text and "PRIVATE KEY" not in text


def refused(argv: list[str]) -> str:
    """Run the script expecting a refusal (status 2); its error message."""
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert provision_main(["images", *argv]) == 2
    return err.getvalue()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ({"os_release": UBUNTU, "rpi_issue": False}, "is Ubuntu 24.04 LTS, not Raspberry Pi OS"),
        ({"os_release": BULLSEYE}, "is Debian GNU/Linux 11 (bullseye) (bullseye); use Raspberry Pi OS Lite 64-bit"),
        ({"loader": "ld-linux-armhf.so.3"}, "is a 32-bit image"),
        ({"desktop": True}, "is a desktop image"),
    ],
)
def test_wrong_system_is_refused(kit: dict[str, Path], tmp_path: Path, build: dict[str, object], message: str) -> None:
    image = build_image(tmp_path / "other.img", **build)  # type: ignore[arg-type]
    assert message in refused(args(kit, tmp_path / "out", image=image))
    assert not (tmp_path / "out").exists()


def test_not_an_image_is_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.img"
    text.write_text("not a disk\n" * 100)
    assert "not a disk image" in refused(args(kit, tmp_path / "out", image=text))
    truncated = tmp_path / "cut.img"
    truncated.write_bytes(kit["image"].read_bytes()[: ROOT_OFFSET + MIB])
    assert "partition 2 ends at byte" in refused(args(kit, tmp_path / "out", image=truncated))
    assert "the image file does not exist" in refused(args(kit, tmp_path / "out", image=tmp_path / "missing.img"))


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("device_id,site,office,hostname,wifi_ssid,broker\nk1,s,O,o,k1,,b.go.id\n", "missing column 'wifi_psk'"),
        (HEADER.replace("hostname", "hostnme") + "\n", "unknown column 'hostnme' (did you mean \"hostname\"?)"),
        (f"{HEADER}\nk1,s,O,o,h1,,,b.go.id\nk1,s,O,o,h2,,,b.go.id\n", "line 3: device_id 'k1' is already used"),
        (f"{HEADER}\nk1,s,O,o,h1,,,b.go.id\nk2,s,O,o,H1,,,b.go.id\n", "line 3, hostname: 'H1' is not a host name"),
        (f"{HEADER}\nk1,s,O,o,h1,,,b.go.id\nk2,s,O,o,h1,,,b.go.id\n", "hostname 'h1' is already used on line 2"),
        (f"{HEADER}\nk1,s,O,o,under_score,,,b.go.id\n", "line 2, hostname: 'under_score' is not a host name"),
        (f"{HEADER}\nk1,s,O,o,h1,,,mqtt://b.go.id\n", "line 2, broker: 'mqtt://b.go.id' is not a broker address"),
        (f"{HEADER}\nk1,s,O,o,h1,,,b.go.id:70000\n", "line 2, broker: port 70000 is out of range"),
        (f"{HEADER}\nk1,s,O,o,h1,,,bad_host!\n", "is not a host name or IPv4 address"),
        (f"{HEADER}\nk1,s,O,o,h1,Net,short,b.go.id\n", "line 2, wifi_psk: a WPA passphrase has 8 to 63"),
        (f"{HEADER}\nk1,s,O,Dinas Kesehatan,h1,,,b.go.id\n", "line 2, office_code: 'Dinas Kesehatan' is not an office"),
        (f"{HEADER}\nk/1,s,O,o,h1,,,b.go.id\n", "line 2, device_id: 'k/1' is not a device id"),
        (f"{HEADER}\n", "no devices"),
        (
            f"{HEADER},timezone\nk1,s,O,o,h1,,,b.go.id,Asia/Mataram\n",
            "line 2, timezone: 'Asia/Mataram' is not a time zone",
        ),
    ],
)
def test_bad_device_list_is_refused(kit: dict[str, Path], tmp_path: Path, csv: str, message: str) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text(csv)
    error = refused(args(kit, tmp_path / "out", devices=devices))
    assert f"{devices}: " in error and message in error


def test_missing_gallery_and_bad_ca_are_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    assert "the gallery does not exist; make it with `kiosk enroll" in refused(
        args(kit, tmp_path / "out", gallery=tmp_path / "none.kgal")
    )
    damaged = tmp_path / "damaged.kgal"
    damaged.write_bytes(kit["gallery"].read_bytes()[:-5])
    assert f"{damaged}: the gallery cannot be used" in refused(args(kit, tmp_path / "out", gallery=damaged))
    for missing in ("ca.crt", "ca.key", "central.pub"):
        folder = tmp_path / f"without-{missing}"
        shutil.copytree(kit["ca"], folder)
        (folder / missing).unlink()
        assert f"{folder}: the CA folder has no {missing}" in refused(args(kit, tmp_path / "out", ca=folder))
    garbage = tmp_path / "garbage-ca"
    shutil.copytree(kit["ca"], garbage)
    (garbage / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    assert f"{garbage / 'ca.key'}: cannot read the CA private key" in refused(args(kit, tmp_path / "out", ca=garbage))
    locked = tmp_path / "locked-ca"
    shutil.copytree(kit["ca"], locked)
    key = serialization.load_pem_private_key((kit["ca"] / "ca.key").read_bytes(), None)
    encryption = serialization.BestAvailableEncryption(b"sandi")
    (locked / "ca.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    assert "the CA key is encrypted; give its passphrase" in refused(args(kit, tmp_path / "out", ca=locked))
    other = tmp_path / "other-ca"
    shutil.copytree(kit["ca"], other)
    other_key = ec.generate_private_key(ec.SECP256R1())
    (other / "ca.key").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert "this private key does not belong to" in refused(args(kit, tmp_path / "out", ca=other))


def test_bad_options_are_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    userconf = tmp_path / "userconf.txt"
    userconf.write_text("admin:plaintext-password\n")
    out = tmp_path / "out"
    assert "expected one line USER:HASH" in refused([*args(kit, out), "--userconf", str(userconf)])
    assert "--timezone 'WITA' is not an IANA time zone" in refused([*args(kit, out), "--timezone", "WITA"])
    assert "give a two-letter country code" in refused([*args(kit, out), "--wifi-country", "Indonesia"])
    assert "the kiosk's service unit is missing" in refused(args(kit, out, unit=tmp_path / "none.service"))
    assert not out.exists()


def test_every_problem_is_reported_at_once(kit: dict[str, Path], tmp_path: Path) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text(f"{HEADER}\nk1,s,O,o,h_1,,,b.go.id\n")
    error = refused(args(kit, tmp_path / "out", devices=devices, gallery=tmp_path / "none.kgal", ca=tmp_path))
    assert "hostname: 'h_1'" in error and "the gallery does not exist" in error and "has no ca.crt" in error


def test_incomplete_wheelhouse_is_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(kit["wheelhouse"], wheelhouse)
    next(wheelhouse.glob("numpy-*.whl")).unlink()
    make_wheel(wheelhouse, "numpy", "cp311-cp311-manylinux_2_17_x86_64")
    next(wheelhouse.glob("dlib_bin-*.whl")).unlink()
    make_wheel(wheelhouse, "dlib-bin", "cp313-cp313-manylinux_2_28_aarch64", "999.0")
    next(wheelhouse.glob("cryptography-*.whl")).unlink()
    make_wheel(wheelhouse, "cryptography", "cp311-abi3-manylinux_2_28_aarch64")  # too old for the kiosk
    error = refused(args(kit, tmp_path / "out", wheelhouse=wheelhouse))
    assert (
        "numpy: only wheels for other platforms or Pythons (numpy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl)" in error
    )
    assert (
        "kiosk needs cryptography>=42, the wheelhouse has cryptography-1.0-cp311-abi3-manylinux_2_28_aarch64.whl"
        in error
    )
    assert "dlib-bin: only wheels for other platforms or Pythons" in error
    assert "run provisioning/download-wheelhouse" in error
    next(wheelhouse.glob("kiosk-*.whl")).unlink()
    assert "the wheelhouse has no kiosk wheel" in refused(args(kit, tmp_path / "out", wheelhouse=wheelhouse))


def wheelhouse_copy(kit: dict[str, Path], tmp_path: Path) -> Path:
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(kit["wheelhouse"], wheelhouse)
    return wheelhouse


def check_refusal(wheelhouse: Path, python: str = "3.11") -> str:
    with pytest.raises(ProvisionError) as refusal:
        check_wheelhouse(wheelhouse, python)
    return str(refusal.value)


def test_a_wheelhouse_without_its_lock_is_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    wheelhouse = wheelhouse_copy(kit, tmp_path)
    (wheelhouse / "requirements.txt").unlink()
    error = check_refusal(wheelhouse)
    assert f"{wheelhouse / 'requirements.txt'} is missing" in error
    assert f"run provisioning/download-wheelhouse --out {wheelhouse} --os bookworm" in error
    assert "requirements.txt is missing" in refused(args(kit, tmp_path / "out", wheelhouse=wheelhouse))
    (wheelhouse / "requirements.txt").write_text("numpy>=1.24\n")
    assert "requirements.txt: line 1 is not name==version with --hash=sha256" in check_refusal(wheelhouse)


def test_wheels_that_are_not_the_lock_are_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    wheelhouse = wheelhouse_copy(kit, tmp_path)
    numpy2 = make_wheel(wheelhouse, "numpy", "cp311-cp311-manylinux_2_28_aarch64", "2.4.6")  # beside numpy 1
    paho = next(wheelhouse.glob("paho_mqtt-*.whl"))
    with zipfile.ZipFile(paho, "a") as zf:  # still a valid wheel, but not the file the lock was made from
        zf.writestr("paho/extra.py", "tampered = True\n")
    next(wheelhouse.glob("gpiozero-*.whl")).unlink()
    error = check_refusal(wheelhouse)
    assert f"{numpy2.name} is not in requirements.txt (it pins numpy==1.26.4); remove it" in error
    assert re.search(rf"{paho.name}: its sha256 [0-9a-f]{{16}}\.\.\. is not a hash requirements.txt allows", error)
    assert "gpiozero==999.0 is pinned in requirements.txt but the wheelhouse has no wheel of it" in error
    assert "run provisioning/download-wheelhouse" in error


def test_numpy_2_for_bookworm_is_refused_even_when_locked(kit: dict[str, Path], tmp_path: Path) -> None:
    wheelhouse = wheelhouse_copy(kit, tmp_path)
    next(wheelhouse.glob("numpy-*.whl")).unlink()
    make_wheel(wheelhouse, "numpy", "cp311-cp311-manylinux_2_28_aarch64", "2.4.6")
    write_lock(wheelhouse)
    error = check_refusal(wheelhouse)
    assert "pins numpy==2.4.6, but Bookworm's apt simplejpeg and picamera2 are built against numpy 1.24" in error


def test_the_wheelhouse_is_the_device_lock_and_carries_no_server_or_image_script(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    """write_requirements (download-wheelhouse) on locks/device-bookworm.txt's packages, then the check."""
    device_lock = read_requirements(REPO / "locks" / "device-bookworm.txt")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    kiosk_wheel = shutil.copy(next(kit["wheelhouse"].glob("kiosk-*.whl")), wheelhouse)
    make_wheel(wheelhouse, "kiosk-contract", "py3-none-any", "0.2.0")
    lines = []
    for name, pin in device_lock.items():
        tag = "py3-none-any" if name in ("pip", "face-recognition-models") else "cp311-cp311-manylinux_2_28_aarch64"
        wheel = make_wheel(wheelhouse, name, tag, str(pin.version))
        # face_recognition_models: the lock holds its source's hash; the wheel built from it is hashed here
        digest = "0" * 64 if name == "face-recognition-models" else hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={pin.version} --hash=sha256:{digest}\n")
    lock = tmp_path / "device-bookworm.txt"
    lock.write_text("".join(lines))
    leftovers = [
        make_wheel(wheelhouse, "numpy", "cp311-cp311-manylinux_2_28_aarch64", "2.4.6"),
        make_wheel(wheelhouse, "kiosk-central", "py3-none-any", "0.2.0"),
    ]
    written, removed = write_requirements(wheelhouse, lock, "bookworm")
    assert removed == sorted(w.name for w in leftovers)
    pins = read_requirements(written)
    assert pins.keys() == device_lock.keys() | {"kiosk", "kiosk-contract"}
    assert pins["face-recognition-models"].hashes != {"0" * 64}
    assert {f.name for f in check_wheelhouse(wheelhouse, "3.11")} == {
        *(w.name for w in wheelhouse.glob("*.whl")),
        "requirements.txt",
    }
    # The device carries no server or image-script code: not as wheels, not inside the kiosk's wheel.
    assert not pins.keys() & {"kiosk-central", "kiosk-provisioning", "psycopg", "psycopg-binary"}
    with zipfile.ZipFile(kiosk_wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert names and not [n for n in names if n.startswith(("kiosk_central/", "kiosk_provisioning/", "kiosk/central"))]
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not [r for r in requires if "kiosk-central" in r or "kiosk-provisioning" in r]
    make_wheel(wheelhouse, "kiosk-central", "py3-none-any", "0.2.0")
    error = check_refusal(wheelhouse)
    central = "kiosk_central-0.2.0-py3-none-any.whl: the central server (kiosk-central) does not belong on the device"
    assert central in error
    lock.write_text(lock.read_text() + f"kiosk-provisioning==0.2.0 --hash=sha256:{'1' * 64}\n")
    with pytest.raises(ProvisionError, match=r"pins kiosk-provisioning \(the image script\)"):
        write_requirements(wheelhouse, lock, "bookworm")


def test_device_certificate_logs_in_to_mosquitto_as_the_device(tmp_path: Path) -> None:
    """The provisioned MQTT key and certificate, on a real broker that maps the certificate CN to the user."""
    with Broker(tmp_path / "broker", tls=True, acl=mosquitto_acl()) as broker:  # the ACL docs/provisioning.md shows
        authority = Authority(broker._ca_cert, broker._ca_key, broker.ca_file.read_bytes(), b"")
        folder = tmp_path / "kiosk-a"
        device_secrets(folder, "kiosk-a", authority, 30, keep=True)
        acks: dict[int, int] = {}
        done = threading.Event()

        def on_publish(client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
            acks[mid] = int(getattr(reason, "value", 0))
            if len(acks) == 3:
                done.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kiosk-a", protocol=mqtt.MQTTv5)
        client.tls_set(
            ca_certs=str(broker.ca_file), certfile=str(folder / "mqtt.crt"), keyfile=str(folder / "secrets/mqtt.key")
        )
        client.on_publish = on_publish
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            own = client.publish("presensi/v1/site/kiosk-a/event", b"{}", qos=1)
            other = client.publish("presensi/v1/site/kiosk-b/event", b"{}", qos=1)
            forged_ack = client.publish("presensi/v1/site/kiosk-a/ack", b"{}", qos=1)
            assert done.wait(5), "the broker did not acknowledge the three messages"
        finally:
            client.disconnect()
            client.loop_stop()
    assert acks[own.mid] in (0, 16)  # accepted (16: no subscribers yet): the certificate's CN is the user kiosk-a
    assert acks[other.mid] == 135  # not authorized: kiosk-a cannot publish as kiosk-b
    assert acks[forged_ack.mid] == 135  # nor write acks to itself: only the central server writes them


def test_a_trixie_image_is_provisioned_with_a_python_3_13_wheelhouse(kit: dict[str, Path], tmp_path: Path) -> None:
    image = build_image(tmp_path / "raspios-trixie-arm64-lite.img", os_release=TRIXIE, python="python3.13")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    kiosk_wheel = next(kit["wheelhouse"].glob("kiosk-*.whl"))
    shutil.copy(kiosk_wheel, wheelhouse)
    make_wheel(wheelhouse, "pip", "py3-none-any")
    needed = kiosk_requirements(kiosk_wheel)
    for requirement in needed[:-1]:  # the last one missing: refused, naming it
        version = standin_version(requirement, "3.13")
        make_wheel(wheelhouse, requirement.name, "cp313-cp313-manylinux_2_28_aarch64", version)
    write_lock(wheelhouse)
    devices = tmp_path / "devices.csv"
    devices.write_text("\n".join([HEADER + ",timezone", DEVICES[0]]) + "\n")
    out = tmp_path / "out"
    argv = [str(MAKE_IMAGES), *args(kit, out, image=image, wheelhouse=wheelhouse, devices=devices)]
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 2 and needed[-1].name in refused.stderr and not out.exists()
    version = standin_version(needed[-1], "3.13")
    make_wheel(wheelhouse, needed[-1].name, "cp313-cp313-manylinux_2_28_aarch64", version)
    write_lock(wheelhouse)
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "trixie" in done.stdout + done.stderr
    device = device_ids()[0]
    made = out / "devices" / device / f"{device}.img"
    assert ext4_read(made, "/etc/hostname") == f"{device}\n".encode()
    wants = "/etc/systemd/system/multi-user.target.wants/kiosk-firstboot.service"
    assert 'Fast link dest: "/etc/systemd/system/kiosk-firstboot.service"' in ext4(made, f"stat {wants}")
    key = fat_read(made, "/kiosk/device.key")
    assert key is not None and key == (out / "devices" / device / "secrets" / "device.key").read_bytes()
    assert fat_read(out / "base" / "base.img", "/kiosk/device.key") is None, "no private key in the shared base"


def test_a_revoked_kiosk_is_refused_by_the_broker_and_gets_a_new_identity(tmp_path: Path) -> None:
    """revoke: the stolen device's certificate on the CA's CRL (Mosquitto's crlfile), its keys destroyed."""
    import json

    from kiosk_provisioning.__main__ import main as provision

    crl = tmp_path / "out" / "crl.pem"
    broker = Broker(tmp_path / "broker", tls=True, crl=crl)
    authority = Authority(broker._ca_cert, broker._ca_key, broker.ca_file.read_bytes(), None)
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "ca.crt").write_bytes(broker.ca_file.read_bytes())
    (ca_dir / "ca.key").write_bytes(broker._ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    out = tmp_path / "out"
    stolen, kept = (device_secrets(out / "devices" / d, d, authority, 30, keep=True) for d in ("kiosk-a", "kiosk-b"))
    (out / "devices" / "kiosk-a" / "kiosk-a.img").write_bytes(b"image with keys")
    pems = {d: (out / "devices" / d / "mqtt.crt", out / "devices" / d / "secrets" / "mqtt.key")
            for d in ("kiosk-a", "kiosk-b")}
    saved = {d: (tmp_path / f"{d}.crt", tmp_path / f"{d}.key") for d in pems}  # what the thief has
    for d, (cert, key) in pems.items():
        shutil.copy(cert, saved[d][0])
        shutil.copy(key, saved[d][1])

    assert provision(["revoke", "--ca-dir", str(ca_dir), "--out", str(out), "kiosk-x"]) == 2, "unknown device"
    assert not crl.exists()
    assert provision(["revoke", "--ca-dir", str(ca_dir), "--out", str(out), "kiosk-a"]) == 0
    (record,) = json.loads((out / "revoked.json").read_text())
    assert record["device_id"] == "kiosk-a" and record["key_id"] == stolen.key_id
    assert not (out / "devices/kiosk-a/secrets").exists() and not (out / "devices/kiosk-a/kiosk-a.img").exists()
    assert (out / "devices/kiosk-b/secrets/device.key").read_bytes() == kept.device_key

    def connects(device: str) -> bool:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(broker.ca_file), certfile=str(saved[device][0]), keyfile=str(saved[device][1]))
        try:
            client.connect(broker.host, broker.port)
        except (OSError, ssl.SSLError):
            return False
        try:
            rc = client.loop(timeout=2.0)
            while rc == 0 and not client.is_connected():
                rc = client.loop(timeout=0.5)
            return client.is_connected()
        finally:
            client.disconnect()

    with broker:
        assert connects("kiosk-b")
        assert not connects("kiosk-a"), "the stolen certificate is on the CRL"
    fresh = device_secrets(out / "devices" / "kiosk-a", "kiosk-a", authority, 30, keep=True)
    assert fresh.key_id != stolen.key_id, "the replacement device gets a new identity"
    assert provision(["revoke", "--ca-dir", str(ca_dir), "--out", str(out)]) == 0  # a fresh CRL, same content
    assert len(json.loads((out / "revoked.json").read_text())) == 1


def test_the_liveness_models_are_installed_checked_and_configured(kit: dict[str, Path], tmp_path: Path) -> None:
    models = Path(os.environ.get("KIOSK_MINIFASNET_DIR", REPO.parent / "shared" / "models" / "minifasnet"))
    if not models.is_dir():
        pytest.skip(f"{models} is missing (set KIOSK_MINIFASNET_DIR to the MiniFASNet folder)")
    log = io.StringIO()
    with redirect_stdout(log):
        options = ["--dry-run", "--liveness-models", str(models)]
        assert provision_main(["images", *args(kit, tmp_path / "out"), *options]) == 0
    text = log.getvalue()
    for name in ("2.7_80x80_MiniFASNetV2.onnx", "4_0_0_80x80_MiniFASNetV1SE.onnx", "LICENSE", "NOTICE"):
        assert f"root /opt/kiosk/models/minifasnet/{name} (" in text
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    (copy / "2.7_80x80_MiniFASNetV2.onnx").chmod(0o644)
    (copy / "2.7_80x80_MiniFASNetV2.onnx").write_bytes(b"not a model")
    error = refused([*args(kit, tmp_path / "out"), "--liveness-models", str(copy)])
    assert "--liveness-models: recognizer.liveness.texture_models:" in error
    assert "2.7_80x80_MiniFASNetV2.onnx has sha256" in error


def test_the_boot_tests_x86_64_machine_needs_its_own_loader_and_wheels(kit: dict[str, Path], tmp_path: Path) -> None:
    """--machine x86_64 (only for scripts/boot-test's amd64 stand-in): the Pi's aarch64 image and wheelhouse are
    refused for it, each saying what is missing; aarch64 stays the default."""
    message = refused([*args(kit, tmp_path / "out"), "--machine", "x86_64"])
    assert "is not a x86_64 image (no /lib64/ld-linux-x86-64.so.2)" in message
    with pytest.raises(ProvisionError) as refusal:
        check_wheelhouse(kit["wheelhouse"], "3.11", "x86_64")
    why = str(refusal.value)
    assert "only wheels for other platforms" in why and "for x86_64 and CPython 3.11" in why
    assert "--machine x86_64" in why, "the fix names the machine"
    assert check_wheelhouse(kit["wheelhouse"], "3.11"), "aarch64 by default"


def test_the_selftest_clip_is_checked_and_installed_for_root_only(kit: dict[str, Path], tmp_path: Path) -> None:
    """--selftest-clip: a video goes to /opt/kiosk/selftest/walkup.mp4 (where `kiosk selftest` looks), 0600 in a
    0700 folder (people's faces); anything else is refused naming the option."""
    import cv2
    import numpy as np

    clip = tmp_path / "walkup.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    log = io.StringIO()
    with redirect_stdout(log):
        assert provision_main(["images", *args(kit, tmp_path / "out"), "--dry-run", "--selftest-clip", str(clip)]) == 0
    assert "root /opt/kiosk/selftest/ folder 0700" in log.getvalue()
    assert re.search(r"root /opt/kiosk/selftest/walkup\.mp4 \(\d+ bytes, 0600 0:0\)", log.getvalue())
    (tmp_path / "notes.mp4").write_text("not a video")
    error = refused([*args(kit, tmp_path / "out"), "--selftest-clip", str(tmp_path / "notes.mp4")])
    assert "--selftest-clip" in error and "not a video (MP4/MOV, Matroska/WebM, AVI)" in error
    assert "no such file" in refused([*args(kit, tmp_path / "out"), "--selftest-clip", str(tmp_path / "none.mp4")])
