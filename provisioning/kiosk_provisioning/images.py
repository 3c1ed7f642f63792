"""Make one ready image per kiosk: a shared base image, then a sparse copy of it per device with its own files.

The base holds what every kiosk shares (wheelhouse, first-boot unit, service unit, NTP, CA certificate, screen
blanking off); it never holds a private key or a template. Each device image is a sparse (or reflinked) copy of
the base with that device's hostname, time zone, kiosk.toml, certificate and gallery (sealed with its data key)
in the ext4 root and its private keys and Wi-Fi profile on the FAT partition, where the first boot moves them
into /etc/kiosk.

Every output has a manifest with a digest of its inputs: a second run with the same inputs rewrites nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import os
import subprocess
import tempfile
import tomllib
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import kiosk
from kiosk import config as kconfig
from kiosk import minifasnet
from kiosk_contract.errors import ConfigError, GalleryError, KioskError
from kiosk_contract.fsutil import write_atomic
from kiosk_provisioning import ProvisionError, firstboot
from kiosk_provisioning.credentials import Authority, DeviceSecrets, device_secrets, load_authority, read_passphrase
from kiosk_provisioning.devices import Device, read_devices
from kiosk_provisioning.diskimage import Ext4Partition, FatPartition, Node, read_partitions, require_tools
from kiosk_provisioning.wheelhouse import RELEASES, check_wheelhouse

REPO = Path(__file__).resolve().parents[2]
LOADERS = {
    "aarch64": ("/lib/ld-linux-aarch64.so.1", "/usr/lib/ld-linux-aarch64.so.1"),
    "x86_64": ("/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"),
}
"""The 64-bit dynamic loader of each machine (wheelhouse.MACHINES: x86_64 only for scripts/boot-test)."""
DESKTOP_MARKERS = ("/usr/share/xsessions", "/usr/share/wayland-sessions")
DEFAULT_NTP = ("0.id.pool.ntp.org", "1.id.pool.ntp.org", "2.id.pool.ntp.org", "3.id.pool.ntp.org")
FORMAT = 1  # bump when the layout written into images changes, so that old outputs are rebuilt
CHUNK = 1 << 20

Log = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """Everything ``make-images`` is told on its command line."""

    image: Path
    devices: Path
    gallery: Path
    ca_dir: Path
    wheelhouse: Path
    out: Path
    timezone: str = "Asia/Makassar"
    ntp: tuple[str, ...] = DEFAULT_NTP
    wifi_country: str = "ID"
    config_template: Path = REPO / "examples" / "kiosk.toml"
    service_unit: Path = REPO / "systemd" / "kiosk.service"
    userconf: Path | None = None
    ssh: bool = False
    cert_days: int = 1825
    ca_passphrase_file: Path | None = None
    dry_run: bool = False
    liveness_models: Path | None = None  # the MiniFASNet folder: installed and configured as the texture cue
    selftest_clip: Path | None = None  # the office camera's walk-up, recorded with consent: the self-test's clip
    machine: str = "aarch64"


@dataclass(frozen=True)
class Inputs:
    """The checked inputs."""

    devices: list[Device]
    authority: Authority
    wheels: list[Path]
    codename: str
    template: kconfig.KioskConfig


@dataclass(frozen=True)
class Change:
    """One thing written into an image: the partition (``boot`` or ``root``), a root node or a FAT file."""

    part: str
    node: Node
    secret: bool = False

    def describe(self) -> str:
        n = self.node
        if n.link is not None:
            return f"{self.part} {n.path} -> {n.link}"
        if n.data is None and n.source is None:
            return f"{self.part} {n.path}/ folder" + (f" {n.mode:04o}" if self.part == "root" else "")
        size = _size(n)
        what = "secret, content not shown" if self.secret else f"{n.mode:04o} {n.uid}:{n.gid}"
        if self.part == "boot" and not self.secret:
            what = "FAT"
        return f"{self.part} {n.path} ({size} bytes, {what})"


def make_images(opts: Options, log: Log = print) -> int:
    """Check every input, then build (or reuse) the base and each device image; 0 when all went well."""
    require_tools()
    with _raw_image(opts) as raw:
        inputs = check_inputs(opts, raw)
        boot_part, root_part = read_partitions(raw)
        fat_cmdline = new_cmdline(FatPartition(raw, boot_part).read("/cmdline.txt") or b"", opts.wifi_country)
        hosts = Ext4Partition(raw, root_part).read("/etc/hosts") or b""
        fstab = Ext4Partition(raw, root_part).read("/etc/fstab") or b""
        base_changes = base_plan(opts, inputs)
        if fstab:
            base_changes.append(Change("root", Node("/etc/fstab", data=kiosk_fstab(fstab))))
        base_digest = _digest(
            {
                "format": FORMAT,
                "image": _file_hash(opts.image),
                "changes": _changes_digest(base_changes),
                "cmdline": fat_cmdline,
                "kiosk": kiosk.__version__,
            }
        )
        base_dir = opts.out / "base"
        base_img = base_dir / "base.img"
        if opts.dry_run:
            log(
                f"dry run: nothing is written. Base image {base_img} from {opts.image} (Raspberry Pi OS "
                f"{inputs.codename} arm64):"
            )
            log(f"  boot /cmdline.txt: {fat_cmdline.strip()}")
            for change in base_changes:
                log("  " + change.describe())
        elif _manifest_digest(base_dir) == base_digest and base_img.exists():
            log(f"base image {base_img}: unchanged")
        else:
            log(f"base image {base_img}: building from {opts.image}")
            base_dir.mkdir(parents=True, exist_ok=True)
            _build(raw, base_img, base_changes, fat_cmdline, mode=0o644)
            _write_manifest(base_dir, {"digest": base_digest, "source": str(opts.image), "os": inputs.codename})
        registry = []
        for device in inputs.devices:
            registry.append(_device_image(opts, inputs, device, hosts, base_img, base_digest, log))
    if opts.dry_run:
        return 0
    _write_if_changed(opts.out / "registry.json", json.dumps(registry, indent=2, sort_keys=True).encode() + b"\n")
    listed = {d.device_id for d in inputs.devices}
    devices_dir = opts.out / "devices"
    for folder in sorted(devices_dir.iterdir()) if devices_dir.is_dir() else []:
        if folder.name not in listed:
            log(f"note: {folder} is not in {opts.devices}; left as it is (delete it yourself if retired)")
    log(f"registry of device keys and certificates for the central server: {opts.out / 'registry.json'}")
    return 0


def check_inputs(opts: Options, raw: Path) -> Inputs:
    """Every input checked, all problems reported together (each names its file and what to do)."""
    problems: list[str] = []

    def attempt(check: Callable[[], object]) -> object:
        try:
            return check()
        except ProvisionError as exc:
            problems.append(str(exc))
            return None

    codename = attempt(lambda: inspect_image(raw, opts.image, opts.machine))
    devices = attempt(lambda: read_devices(opts.devices, opts.timezone))
    attempt(lambda: _check_gallery(opts.gallery))
    authority = attempt(lambda: load_authority(opts.ca_dir, read_passphrase(opts.ca_passphrase_file)))
    wheels = None
    if isinstance(codename, str):
        wheels = attempt(lambda: check_wheelhouse(opts.wheelhouse, RELEASES[codename], opts.machine))
    template = attempt(lambda: _load_template(opts.config_template))
    attempt(lambda: _check_options(opts))
    if (liveness_models := opts.liveness_models) is not None:
        attempt(lambda: _check_liveness_models(liveness_models))
    if (clip := opts.selftest_clip) is not None:
        attempt(lambda: _check_selftest_clip(clip))
    if problems:
        raise ProvisionError("\n".join(problems))
    assert isinstance(codename, str) and isinstance(devices, list) and isinstance(authority, Authority)
    assert isinstance(wheels, list) and isinstance(template, kconfig.KioskConfig)
    return Inputs(devices, authority, wheels, codename, template)


def inspect_image(raw: Path, shown: Path, machine: str = "aarch64") -> str:
    """The release (bookworm or trixie) of a Raspberry Pi OS Lite 64-bit image; anything else is refused."""
    boot_part, root_part = read_partitions(raw)
    root, boot = Ext4Partition(raw, root_part), FatPartition(raw, boot_part)
    os_release = root.read("/etc/os-release")
    if os_release is None:
        raise ProvisionError(f"{shown}: the root partition has no /etc/os-release; not a Raspberry Pi OS image")
    fields = _os_release(os_release.decode("utf-8", "replace"))
    name = fields.get("PRETTY_NAME", "an unknown system")
    wanted = "use Raspberry Pi OS Lite 64-bit, Bookworm or Trixie, from raspberrypi.com/software/operating-systems"
    if root.stat("/etc/rpi-issue") is None:
        raise ProvisionError(f"{shown}: is {name}, not Raspberry Pi OS (no /etc/rpi-issue); {wanted}")
    codename = fields.get("VERSION_CODENAME", "")
    if codename not in RELEASES:
        raise ProvisionError(f"{shown}: is {name} ({codename or 'no codename'}); {wanted}")
    if not any(root.resolve(p) for p in LOADERS[machine]):
        what = "a 32-bit image" if machine == "aarch64" else f"not a {machine} image"
        raise ProvisionError(f"{shown}: is {what} (no {LOADERS[machine][0]}); {wanted}")
    if any(root.stat(p) for p in DESKTOP_MARKERS):
        raise ProvisionError(f"{shown}: is a desktop image (it has graphical sessions); {wanted}")
    python = f"/usr/bin/python{RELEASES[codename]}"
    if root.resolve(python) is None:
        raise ProvisionError(f"{shown}: has no {python}, which Raspberry Pi OS {codename} ships; {wanted}")
    for name in ("cmdline.txt", "config.txt"):
        if boot.read("/" + name) is None:
            raise ProvisionError(f"{shown}: the boot partition has no {name}; not a Raspberry Pi OS image")
    return codename


def base_plan(opts: Options, inputs: Inputs) -> list[Change]:
    """What the base image gets: shared by every device, no private key."""
    unit_dir = "/etc/systemd/system"
    changes = [Change("root", Node(p, 0o755)) for p in ("/opt/kiosk", "/opt/kiosk/wheelhouse", "/etc/kiosk")]
    changes += [Change("root", Node(f"/opt/kiosk/wheelhouse/{w.name}", 0o644, source=w)) for w in sorted(inputs.wheels)]
    changes += [
        Change("root", Node("/opt/kiosk/firstboot.py", 0o755, source=Path(firstboot.__file__))),
        Change("root", Node(f"{unit_dir}/kiosk-firstboot.service", source=REPO / "systemd/kiosk-firstboot.service")),
        Change("root", Node(f"{unit_dir}/kiosk.service", source=opts.service_unit)),
        Change("root", Node(f"{unit_dir}/multi-user.target.wants", 0o755)),
        Change(
            "root",
            Node(
                f"{unit_dir}/multi-user.target.wants/kiosk-firstboot.service",
                link=f"{unit_dir}/kiosk-firstboot.service",
            ),
        ),
        Change("root", Node("/etc/systemd/timesyncd.conf.d", 0o755)),
        Change("root", Node("/etc/systemd/timesyncd.conf.d/kiosk.conf", data=_timesyncd(opts.ntp))),
        Change("root", Node("/etc/kiosk/ca.crt", data=inputs.authority.cert_pem)),
        Change("root", Node("/usr/lib/sysusers.d", 0o755)),
        Change("root", Node("/usr/lib/sysusers.d/kiosk.conf", source=REPO / "systemd/kiosk.sysusers")),
        Change("root", Node("/var/lib/kiosk", 0o700)),
    ]
    changes.append(Change("root", Node("/etc/kiosk/central.pub", data=inputs.authority.central_pub)))
    if opts.liveness_models is not None:  # the texture cue's models, with their licence and NOTICE
        folder = minifasnet.DEVICE_DIR
        changes += [Change("root", Node(str(p), 0o755)) for p in (folder.parent, folder)]
        changes += [Change("root", Node(f"{folder}/{name}", 0o644, source=opts.liveness_models / name))
                    for name in minifasnet.FILES]
        changes += [Change("root", Node(f"{folder}/{name}", 0o644, source=REPO / "third_party" / "minifasnet" / name))
                    for name in ("LICENSE", "NOTICE")]
    if opts.selftest_clip is not None:  # people's faces: root's only (IT runs `sudo kiosk selftest`)
        changes += [Change("root", Node(str(kconfig.SELFTEST_CLIP.parent), 0o700)),
                    Change("root", Node(str(kconfig.SELFTEST_CLIP), 0o600, source=opts.selftest_clip))]
    if opts.userconf is not None:
        changes.append(Change("boot", Node("/userconf.txt", data=opts.userconf.read_bytes())))
    if opts.ssh:
        changes.append(Change("boot", Node("/ssh", data=b"")))
    return changes


def device_plan(
    opts: Options, inputs: Inputs, device: Device, secrets: DeviceSecrets, hosts: bytes, gallery: bytes
) -> list[Change]:
    """What one device's image gets on top of the base; ``gallery`` is the gallery sealed with its data key."""
    toml = device_config(opts, inputs, device)
    changes = [
        Change("root", Node("/var/lib/kiosk/gallery.kgal", 0o600, data=gallery)),
        Change("boot", Node("/kiosk", 0o700)),
        Change("boot", Node("/kiosk/device.key", 0o600, data=secrets.device_key), secret=True),
        Change("boot", Node("/kiosk/mqtt.key", 0o600, data=secrets.mqtt_key), secret=True),
        Change("boot", Node("/kiosk/data.key", 0o600, data=secrets.data_key), secret=True),
        Change("root", Node("/etc/hostname", data=f"{device.hostname}\n".encode())),
        Change("root", Node("/etc/hosts", data=_hosts(hosts, device.hostname))),
        Change("root", Node("/etc/timezone", data=f"{device.timezone}\n".encode())),
        Change("root", Node("/etc/localtime", link=f"/usr/share/zoneinfo/{device.timezone}")),
        Change("root", Node("/etc/kiosk/kiosk.toml", data=toml.encode())),
        Change("root", Node("/etc/kiosk/mqtt.crt", data=secrets.mqtt_cert)),
        Change("root", Node("/etc/kiosk/device.pub", data=secrets.device_pub)),
    ]
    if device.wifi_ssid:
        wifi = _nmconnection(device.wifi_ssid, device.wifi_psk, device.device_id)
        changes.append(Change("boot", Node(f"/kiosk/{firstboot.WIFI_FILE}", 0o600, data=wifi), secret=True))
    return changes


def device_config(opts: Options, inputs: Inputs, device: Device) -> str:
    """The device's kiosk.toml: the template with this device's identity, broker and credentials."""
    cfg = inputs.template
    texture = minifasnet.DEVICE_DIR if opts.liveness_models else cfg.recognizer.liveness.texture_models
    cfg = dataclasses.replace(
        cfg,
        device=dataclasses.replace(
            cfg.device,
            id=device.device_id,
            office=device.office,
            office_code=device.office_code,
            timezone=device.timezone,
            state_dir=Path("/var/lib/kiosk"),
            data_key="file",
            data_key_file=Path("credential:data-key"),
        ),
        recognizer=dataclasses.replace(
            cfg.recognizer,
            gallery=Path("/var/lib/kiosk/gallery.kgal"),
            liveness=dataclasses.replace(cfg.recognizer.liveness, texture_models=texture),
        ),
        events=dataclasses.replace(cfg.events, signing_key_file=Path("credential:device-key")),
        mqtt=dataclasses.replace(
            cfg.mqtt,
            enabled=True,
            host=device.broker_host,
            port=device.broker_port,
            site=device.site,
            tls_ca_file=Path("/etc/kiosk/ca.crt"),
            tls_cert_file=Path("/etc/kiosk/mqtt.crt"),
            tls_key_file=Path("credential:mqtt-key"),
            central_key_file=Path("/etc/kiosk/central.pub"),
        ),
    )
    text = kconfig.config_to_toml(cfg)
    try:
        kconfig.parse_config(tomllib.loads(text), f"kiosk.toml of {device.device_id}", base_dir=Path("/etc/kiosk"))
    except ConfigError as exc:
        raise ProvisionError(
            f"{opts.devices}, line {device.line}: the generated configuration is invalid: {exc}"
        ) from None
    return text


def _device_image(
    opts: Options, inputs: Inputs, device: Device, hosts: bytes, base_img: Path, base_digest: str, log: Log
) -> dict[str, object]:
    """Write (or keep) one device's image; its entry of the registry."""
    folder = opts.out / "devices" / device.device_id
    image = folder / f"{device.device_id}.img"
    secrets = device_secrets(folder, device.device_id, inputs.authority, opts.cert_days, keep=not opts.dry_run)
    gallery = sealed_gallery(folder / "secrets", opts.gallery, secrets.data_key, keep=not opts.dry_run)
    if opts.dry_run:
        changes = device_plan(opts, inputs, device, secrets, hosts, gallery)
        log(f"device {device.device_id}: would write {image} (a sparse copy of the base) with:")
        for change in changes:
            log("  " + change.describe())
        return {}
    changes = device_plan(opts, inputs, device, secrets, hosts, gallery)
    digest = _digest({"base": base_digest, "changes": _changes_digest(changes)})
    if _manifest_digest(folder) == digest and image.exists():
        log(f"device {device.device_id}: {image} unchanged")
    else:
        log(f"device {device.device_id}: writing {image}")
        _build(base_img, image, changes, None, mode=0o600)
        _write_manifest(folder, {"digest": digest, "device": device.device_id, "key_id": secrets.key_id})
    cert_hash = hashlib.sha256(secrets.mqtt_cert).hexdigest()
    return {
        "device_id": device.device_id,
        "site": device.site,
        "office": device.office_code,
        "office_name": device.office,
        "hostname": device.hostname,
        "key_id": secrets.key_id,
        "public_key": secrets.device_pub.decode(),
        "mqtt_cert_sha256": cert_hash,
    }


def sealed_gallery(secret_dir: Path, source: Path, data_key: bytes, *, keep: bool) -> bytes:
    """The gallery sealed with the device's data key (docs/privacy.md): no image holds a plaintext template.

    Sealing takes a random nonce, so the sealed bytes are kept beside the device's keys and reused while the
    plaintext gallery is unchanged; a second run with the same inputs then rewrites nothing.
    """
    from kiosk_contract.gallery import seal_bytes
    from kiosk_contract.sealing import DataCipher

    plain = source.read_bytes()
    digest = hashlib.sha256(plain + data_key).hexdigest()
    cached, stamp = secret_dir / "gallery.sealed", secret_dir / "gallery.sealed.sha256"
    if cached.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return cached.read_bytes()
    try:
        _, sealed = seal_bytes(plain, DataCipher(data_key, "provisioning"), origin=str(source))
    except GalleryError as exc:
        raise ProvisionError(f"{source}: the gallery cannot be sealed: {exc}") from None
    if keep:  # the folder is the device's secrets/ (0700), made with its keys
        for path, data in ((cached, sealed), (stamp, f"{digest}\n".encode())):
            write_atomic(path, data)
            path.chmod(0o600)
    return sealed


def _build(src: Path, image: Path, changes: list[Change], cmdline: str | None, *, mode: int) -> None:
    """``image`` as a sparse copy of ``src`` with the changes, made under a temporary name and renamed.

    Device images hold private keys, so they are made 0600 before any key is written into them.
    """
    tmp = image.with_name(image.name + ".tmp")
    try:
        _sparse_copy(src, tmp)
        tmp.chmod(mode)
        _apply(tmp, changes, cmdline)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, image)


def _apply(image: Path, changes: list[Change], cmdline: str | None) -> None:
    boot_part, root_part = read_partitions(image)
    boot, root = FatPartition(image, boot_part), Ext4Partition(image, root_part)
    if cmdline is not None:
        boot.write("/cmdline.txt", cmdline.encode())
    nodes = [c.node for c in changes if c.part == "root"]
    needed = sum(_size(n) + 4096 for n in nodes)
    free = root.free_bytes()
    if needed > free:
        raise ProvisionError(
            f"{image}: the root filesystem has {free >> 20} MiB free but the kiosk needs {needed >> 20} MiB; "
            "use a newer Lite image or a smaller wheelhouse"
        )
    root.write(nodes)
    for change in changes:
        if change.part != "boot":
            continue
        node = change.node
        if node.data is None and node.source is None:
            boot.mkdir(node.path)
        else:
            boot.write(node.path, node.data if node.data is not None else Path(str(node.source)).read_bytes())


def _size(node: Node) -> int:
    if node.data is not None:
        return len(node.data)
    return node.source.stat().st_size if node.source is not None else 0


def new_cmdline(current: bytes, wifi_country: str) -> str:
    """cmdline.txt with screen blanking off, the Wi-Fi country set and the root file system repaired at boot
    (replacing earlier values): a card that went read-only after an error comes back checked at the next boot."""
    words = [
        w
        for w in current.decode("utf-8", "replace").split()
        if not w.startswith(("consoleblank=", "cfg80211.ieee80211_regdom=")) and w not in ("fsck.repair=no",)
    ]
    repair = [] if "fsck.repair=yes" in words else ["fsck.repair=yes"]
    return " ".join([*words, "consoleblank=0", f"cfg80211.ieee80211_regdom={wifi_country}", *repair]) + "\n"


def kiosk_fstab(current: bytes) -> bytes:
    """/etc/fstab with the ext4 root mounted ``noatime`` (no write per read) and ``errors=remount-ro``: after a card
    error the kernel stops writing instead of spreading damage, the kiosk says it cannot record (docs/outbox.md) and
    the next boot repairs it (``fsck.repair=yes``). Other lines are kept as they are."""
    lines = []
    for line in current.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.lstrip().startswith("#") and fields[1] == "/" and fields[2] == "ext4":
            options = [o for o in fields[3].split(",") if o not in ("defaults", "atime", "relatime", "noatime")
                       and not o.startswith("errors=")]  # fmt: skip
            fields[3] = ",".join(["defaults", "noatime", "errors=remount-ro", *options])
            line = " ".join(fields)
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def _check_gallery(path: Path) -> None:
    from kiosk_contract.gallery import Gallery

    if not path.is_file():
        raise ProvisionError(f"{path}: the gallery does not exist; make it with `kiosk enroll --gallery {path} ...`")
    try:
        Gallery.load(path)
    except GalleryError as exc:
        raise ProvisionError(f"{path}: the gallery cannot be used: {exc}") from None


def _check_liveness_models(folder: Path) -> None:
    """Both MiniFASNet files in ``folder``, with the sha256 the kiosk checks at load."""
    for name in minifasnet.FILES:
        try:
            minifasnet.read_checked(folder, name)
        except KioskError as exc:
            raise ProvisionError(f"--liveness-models: {exc}") from exc


SELFTEST_CLIP_MAX_BYTES = 200_000_000


VIDEO_SIGNATURES = {"MP4/MOV": (4, b"ftyp"), "Matroska/WebM": (0, b"\x1a\x45\xdf\xa3"), "AVI": (8, b"AVI ")}


def _check_selftest_clip(path: Path) -> None:
    """A video file (MP4, Matroska or AVI, by its first bytes) of at most 200 MB. Whether it decodes is the
    self-test's to say on the device: the image script carries no OpenCV."""
    if not path.is_file():
        raise ProvisionError(f"--selftest-clip {path}: no such file")
    if path.stat().st_size > SELFTEST_CLIP_MAX_BYTES:
        raise ProvisionError(f"--selftest-clip {path}: {path.stat().st_size} bytes, more than "
                             f"{SELFTEST_CLIP_MAX_BYTES}: cut it to the walk-up (20-60 s are enough)")
    with path.open("rb") as fh:
        head = fh.read(16)
    if not any(head[at:at + len(magic)] == magic for at, magic in VIDEO_SIGNATURES.values()):
        raise ProvisionError(f"--selftest-clip {path}: not a video ({', '.join(VIDEO_SIGNATURES)}): record it with "
                             "the office's camera as MP4")


def _load_template(path: Path) -> kconfig.KioskConfig:
    try:
        return kconfig.load_config(path)
    except ConfigError as exc:
        raise ProvisionError(f"the configuration template is invalid (--config-template): {exc}") from None


def _check_options(opts: Options) -> None:
    if not opts.service_unit.is_file():
        raise ProvisionError(f"{opts.service_unit}: the kiosk's service unit is missing (--service-unit)")
    try:
        zoneinfo.ZoneInfo(opts.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ProvisionError(f"--timezone {opts.timezone!r} is not an IANA time zone (e.g. Asia/Makassar)") from None
    if len(opts.wifi_country) != 2 or not opts.wifi_country.isalpha() or not opts.wifi_country.isupper():
        raise ProvisionError(f"--wifi-country {opts.wifi_country!r}: give a two-letter country code such as ID")
    if opts.userconf is not None:
        try:
            line = opts.userconf.read_text().strip()
        except OSError as exc:
            raise ProvisionError(f"{opts.userconf}: cannot read the userconf file ({exc.strerror})") from None
        user, _, hashed = line.partition(":")
        if not user or not hashed.startswith("$") or "\n" in line:
            raise ProvisionError(
                f"{opts.userconf}: expected one line USER:HASH; make it with: "
                'echo "admin:$(openssl passwd -6)" > userconf.txt'
            )
    if not 1 <= opts.cert_days <= 3650:
        raise ProvisionError(f"--cert-days {opts.cert_days}: give 1 to 3650 days")


@contextmanager
def _raw_image(opts: Options) -> Iterator[Path]:
    """The image as a raw file: the file itself, or an .xz decompressed (sparsely) into a temporary folder."""
    if opts.image.suffix != ".xz":
        yield opts.image
        return
    with tempfile.TemporaryDirectory(prefix="kiosk-image-") as tmp:
        raw = Path(tmp) / opts.image.stem
        try:
            with lzma.open(opts.image) as src, raw.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    if chunk.count(0) == len(chunk):
                        dst.seek(len(chunk), os.SEEK_CUR)
                    else:
                        dst.write(chunk)
                dst.truncate()
        except (lzma.LZMAError, EOFError) as exc:
            raise ProvisionError(f"{opts.image}: not a complete .xz file ({exc}); download it again") from None
        except FileNotFoundError:
            raise ProvisionError(f"{opts.image}: the image file does not exist") from None
        yield raw


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy an image keeping its holes (and sharing blocks where the filesystem can reflink)."""
    proc = subprocess.run(
        ["cp", "--sparse=always", "--reflink=auto", str(src), str(dst)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ProvisionError(f"cannot copy {src} to {dst}: {proc.stderr.strip()}")


def _os_release(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _timesyncd(servers: tuple[str, ...]) -> bytes:
    return f"# Written by provisioning/make-images.\n[Time]\nNTP={' '.join(servers)}\n".encode()


def _hosts(current: bytes, hostname: str) -> bytes:
    """/etc/hosts with the 127.0.1.1 line naming this host (Debian's convention)."""
    lines = [ln for ln in current.decode("utf-8", "replace").splitlines() if not ln.startswith("127.0.1.1")]
    return ("\n".join([*lines, f"127.0.1.1\t{hostname}"]) + "\n").encode()


def _nmconnection(ssid: str, psk: str, device_id: str) -> bytes:
    """A NetworkManager Wi-Fi profile (it holds the passphrase, so it travels like a key)."""
    uid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{device_id}.wifi.kiosk")
    return (
        f"[connection]\nid=kiosk-wifi\nuuid={uid}\ntype=wifi\nautoconnect=true\n\n"
        f"[wifi]\nmode=infrastructure\nssid={ssid}\n\n"
        f"[wifi-security]\nkey-mgmt=wpa-psk\npsk={psk}\n\n"
        "[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\naddr-gen-mode=default\n"
    ).encode()


def _changes_digest(changes: list[Change]) -> list[list[str]]:
    out = []
    for c in changes:
        n = c.node
        content = n.data if n.data is not None else (n.source.read_bytes() if n.source is not None else b"")
        out.append([c.part, n.path, f"{n.mode:o}", str(n.link), hashlib.sha256(content).hexdigest()])
    return out


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _manifest_digest(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "manifest.json").read_text())["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(folder: Path, manifest: dict[str, object]) -> None:
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)
