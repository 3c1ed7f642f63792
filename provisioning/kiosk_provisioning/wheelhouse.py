"""The wheelhouse: exactly the device lock of the image's release, as wheels for aarch64 and the image's CPython.

``provisioning/download-wheelhouse`` fills it from ``locks/device-<release>.txt`` and writes its
``requirements.txt`` (:func:`write_requirements`): the lock's pins with their hashes, and the sha256 of the wheels
built on the workstation (kiosk, kiosk-contract, face_recognition_models, whose PyPI release is source only). The
first boot installs exactly that, offline: ``pip install --no-index --find-links WHEELHOUSE --require-hashes
--no-deps -r WHEELHOUSE/requirements.txt``.

:func:`check_wheelhouse` (run by ``make-images`` and ``download-wheelhouse``) refuses, on the workstation rather
than at first boot without network, a wheelhouse without ``requirements.txt``, a pinned wheel missing or with a
hash the lock does not allow, a wheel the lock does not pin (a numpy 2 beside Bookworm's numpy 1, say), a wheel
for another platform or Python, and a server or image-script wheel (the device carries neither). It also follows
``Requires-Dist`` from the kiosk wheel (with its ``pi`` extra) through the wheels, evaluating markers for the
device, so a lock that misses a dependency is found too.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from kiosk_provisioning import ProvisionError

# Raspberry Pi OS releases and their CPython.
RELEASES = {"bookworm": "3.11", "trixie": "3.13"}
KIOSK = "kiosk"
KIOSK_EXTRAS = ("", "pi")
REQUIREMENTS = "requirements.txt"
# Built on the workstation, so their hashes are those of the wheels made there: this repository's device parts, and
# the packages whose PyPI release has no wheel (the lock holds the hash of their source).
LOCAL = ("kiosk", "kiosk-contract")
SDIST_ONLY = ("face-recognition-models",)
# Never on the device: the server and the image script, with their keys and registries, stay off the Pi.
NOT_ON_DEVICE = {"kiosk-central": "the central server", "kiosk-provisioning": "the image script"}
# The numpy the image's apt packages (simplejpeg, picamera2) were built against allows (locks/constraints/).
NUMPY = {
    "3.11": (SpecifierSet("<2"), "Bookworm's apt simplejpeg and picamera2 are built against numpy 1.24"),
    "3.13": (SpecifierSet(">=2.2,<3"), "Trixie's apt simplejpeg and picamera2 are built against numpy 2.2"),
}
# glibc of Raspberry Pi OS: Bookworm 2.36, Trixie 2.41 (manylinux_2_X wheels need X <= this).
GLIBC = {"3.11": (2, 36), "3.13": (2, 41)}
MACHINES = ("aarch64", "x86_64")
"""The device's machine: aarch64 (every Raspberry Pi OS 64-bit kiosk); x86_64 only for scripts/boot-test, whose
Debian amd64 image stands in for Raspberry Pi OS under systemd-nspawn (docs/boot-test.md)."""


def _manylinux_glibc(platform: str, machine: str) -> tuple[int, int] | None:
    """The glibc a manylinux platform tag needs on ``machine`` (None: not a manylinux tag of that machine)."""
    if platform == f"manylinux2014_{machine}":
        return (2, 17)
    match = re.fullmatch(rf"manylinux_(\d+)_(\d+)_{machine}", platform)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class Wheel:
    """One wheel file and what it is for."""

    path: Path
    name: str
    version: Version
    fits: bool


@dataclass(frozen=True)
class Pinned:
    """One line of a requirements file: ``name==version`` and the sha256 hashes allowed for its file."""

    name: str
    version: Version
    hashes: frozenset[str]

    def line(self) -> str:
        hashes = "".join(f" \\\n    --hash=sha256:{h}" for h in sorted(self.hashes))
        return f"{self.name}=={self.version}{hashes}\n"


def read_requirements(path: Path) -> dict[str, Pinned]:
    """The pins of a hash-pinned requirements file (a lock from scripts/lock or a wheelhouse's requirements.txt)."""
    pins: dict[str, Pinned] = {}
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        if match is None:
            raise ProvisionError(f"{path}: line {number} is not name==version with --hash=sha256 entries: {line[:80]}")
        name = str(canonicalize_name(match.group(1)))
        if name in pins:
            raise ProvisionError(f"{path}: {name} is pinned twice")
        pins[name] = Pinned(name, Version(match.group(2)), frozenset(re.findall(r"[0-9a-f]{64}", match.group(3))))
    return pins


def write_requirements(folder: Path, lock: Path, release: str, machine: str = "aarch64") -> tuple[Path, list[str]]:
    """Write ``folder/requirements.txt`` from the device lock and the wheels built here; remove unpinned wheels.

    Returns the file and the names of the wheels removed (left from an older lock or another release).
    """
    pins = read_requirements(lock)
    for name in NOT_ON_DEVICE:
        if name in pins:
            raise ProvisionError(f"{lock}: pins {name} ({NOT_ON_DEVICE[name]}), which has no place on the device")
    wheels = _wheels(folder, RELEASES[release], machine, [])
    for name in (*LOCAL, *(n for n in SDIST_ONLY if n in pins)):
        built = [w for w in wheels.get(name, []) if w.fits and (name in LOCAL or w.version == pins[name].version)]
        if len(built) != 1:
            found = ", ".join(w.path.name for w in wheels.get(name, [])) or "none"
            raise ProvisionError(f"{folder}: expected one wheel of {name} built here, found {found}")
        pins[name] = Pinned(name, built[0].version, frozenset({_sha256(built[0].path)}))
    removed = []
    for ws in wheels.values():
        for w in ws:
            pin = pins.get(w.name)
            if pin is None or pin.version != w.version or not w.fits:
                w.path.unlink()
                removed.append(w.path.name)
    header = (
        f"# The kiosk on Raspberry Pi OS {release} ({machine}, CPython {RELEASES[release]}): {lock.name} and the\n"
        "# wheels built by provisioning/download-wheelhouse. The first boot installs exactly this, offline:\n"
        "#   pip install --no-index --find-links WHEELHOUSE --require-hashes --no-deps -r WHEELHOUSE/requirements.txt\n"
    )
    out = folder / REQUIREMENTS
    tmp = out.with_name(f".{REQUIREMENTS}.tmp")
    tmp.write_text(header + "".join(pins[n].line() for n in sorted(pins)), encoding="utf-8")
    tmp.replace(out)
    return out, sorted(removed)


def check_wheelhouse(folder: Path, python: str, machine: str = "aarch64") -> list[Path]:
    """The files to copy into the image (the wheels and requirements.txt); ProvisionError lists every problem."""
    release = next(r for r, p in RELEASES.items() if p == python)
    fix = f"run provisioning/download-wheelhouse --out {folder} --os {release}" + (
        f" --machine {machine}" if machine != "aarch64" else "")
    if not folder.is_dir():
        raise ProvisionError(f"{folder}: the wheelhouse folder does not exist; {fix}")
    requirements = folder / REQUIREMENTS
    if not requirements.is_file():
        raise ProvisionError(
            f"{requirements} is missing: the wheelhouse has no lock, so the device could not check what it installs; "
            f"{fix}"
        )
    problems: list[str] = []
    try:
        pins = read_requirements(requirements)
    except ProvisionError as exc:
        raise ProvisionError(f"{exc}; {fix}") from None
    wheels = _wheels(folder, python, machine, problems)
    if KIOSK not in wheels:
        raise ProvisionError(f"{folder}: the wheelhouse has no kiosk wheel (kiosk-*.whl); {fix}")
    if "pip" not in pins:
        problems.append(f"{REQUIREMENTS} pins no pip: the device creates its venv without network and needs pip-*.whl")
    for name, what in NOT_ON_DEVICE.items():
        for w in wheels.get(name, []):
            problems.append(f"{w.path.name}: {what} ({name}) does not belong on the device; remove it")
        if name in pins and name not in wheels:
            problems.append(f"{REQUIREMENTS} pins {name} ({what}), which does not belong on the device")
    allowed, reason = NUMPY[python]
    if "numpy" in pins and not allowed.contains(pins["numpy"].version, prereleases=True):
        problems.append(f"{REQUIREMENTS} pins numpy=={pins['numpy'].version}, but {reason} (numpy{allowed})")
    for name, pin in sorted(pins.items()):
        if name in NOT_ON_DEVICE:
            continue
        candidates = wheels.get(name, [])
        exact = [w for w in candidates if w.fits and w.version == pin.version]
        if not exact:
            others = ", ".join(w.path.name for w in candidates)
            problems.append(
                f"{name}=={pin.version} is pinned in {REQUIREMENTS} but the wheelhouse has "
                + (f"only {others}" if others else "no wheel of it")
            )
        for w in exact:
            digest = _sha256(w.path)
            if digest not in pin.hashes:
                problems.append(
                    f"{w.path.name}: its sha256 {digest[:16]}... is not a hash {REQUIREMENTS} allows for "
                    f"{name}=={pin.version}; download it again"
                )
    for ws in wheels.values():
        for w in ws:
            locked = pins.get(w.name)
            if w.name in NOT_ON_DEVICE or (locked is not None and locked.version == w.version and w.fits):
                continue
            pinned = f" (it pins {w.name}=={locked.version})" if locked is not None else ""
            problems.append(f"{w.path.name} is not in {REQUIREMENTS}{pinned}; remove it")
    _check_requires(wheels, python, machine, problems)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ProvisionError(
            f"{folder}: the wheelhouse cannot install the kiosk offline on the device:\n{lines}\n{fix}"
        )
    return [w.path for ws in wheels.values() for w in ws] + [requirements]


def _wheels(folder: Path, python: str, machine: str, problems: list[str]) -> dict[str, list[Wheel]]:
    """The wheels in a folder by project name, each marked with whether it installs on the device."""
    wheels: dict[str, list[Wheel]] = {}
    for path in sorted(folder.glob("*.whl")):
        try:
            project, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            problems.append(f"{path.name}: not a valid wheel file name; remove it")
            continue
        fits = any(_fits(t.interpreter, t.abi, t.platform, python, machine) for t in tags)
        wheels.setdefault(str(project), []).append(Wheel(path, str(project), version, fits))
    return wheels


def _check_requires(wheels: dict[str, list[Wheel]], python: str, machine: str, problems: list[str]) -> None:
    """Follow Requires-Dist from kiosk[pi] through the wheels: every dependency has a wheel that fits and satisfies."""
    environment = marker_environment(python, machine)
    todo = [(KIOSK, extra, SpecifierSet(), "") for extra in KIOSK_EXTRAS]
    done: set[tuple[str, str, str]] = set()
    while todo:
        name, extra, wanted, needed_by = todo.pop()
        if (name, extra, str(wanted)) in done:
            continue
        done.add((name, extra, str(wanted)))
        candidates = wheels.get(name, [])
        fitting = [w for w in candidates if w.fits]
        usable = [w for w in fitting if wanted.contains(w.version, prereleases=True)]
        if not usable:
            others = ", ".join(w.path.name for w in candidates)
            if fitting:
                found = f"{needed_by} needs {name}{wanted}, the wheelhouse has {others}"
            elif others:
                found = f"{name}: only wheels for other platforms or Pythons ({others})"
            else:
                found = f"{name}: no wheel" + (f" ({needed_by} needs it)" if needed_by else "")
            problems.append(f"{found}; the device needs one for {machine} and CPython {python}")
            continue
        newest = max(usable, key=lambda w: w.version)
        for requirement in _requirements(newest.path, problems):
            if requirement.marker is None or requirement.marker.evaluate(dict(environment, extra=extra)):
                dependency = str(canonicalize_name(requirement.name))
                todo += [(dependency, e, requirement.specifier, name) for e in ("", *requirement.extras)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fits(interpreter: str, abi: str, platform: str, python: str, machine: str = "aarch64") -> bool:
    """Whether one wheel tag installs on CPython ``python`` for Linux on ``machine``."""
    major, minor = (int(x) for x in python.split("."))
    if platform != "any":
        glibc = _manylinux_glibc(platform, machine)
        if platform != f"linux_{machine}" and (glibc is None or glibc > GLIBC[python]):
            return False
    if interpreter in ("py3", f"py{major}{minor}"):
        return abi == "none"
    cp = re.fullmatch(r"cp(\d)(\d+)", interpreter)
    if cp is None or int(cp.group(1)) != major:
        return False
    if abi == "abi3":
        return int(cp.group(2)) <= minor
    return int(cp.group(2)) == minor and abi in (f"cp{major}{minor}", "none")


def marker_environment(python: str, machine: str = "aarch64") -> dict[str, str]:
    """PEP 508 marker values of CPython ``python`` on Linux ``machine`` (Raspberry Pi OS 64-bit by default)."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


def _requirements(wheel: Path, problems: list[str]) -> list[Requirement]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if not names:
                problems.append(f"{wheel.name}: no .dist-info/METADATA inside; not a wheel")
                return []
            metadata = archive.read(names[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile) as exc:
        problems.append(f"{wheel.name}: cannot be read as a wheel ({exc}); download it again")
        return []
    requirements = []
    for line in metadata.splitlines():
        if not line.strip():
            break
        if line.startswith("Requires-Dist:"):
            try:
                requirements.append(Requirement(line.partition(":")[2].strip()))
            except InvalidRequirement as exc:
                problems.append(f"{wheel.name}: unreadable requirement ({exc})")
    return requirements
