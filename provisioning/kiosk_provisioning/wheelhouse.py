"""Check that a wheelhouse installs the kiosk offline on the device: aarch64, the image's CPython, every dependency.

The check follows ``Requires-Dist`` from the kiosk wheel (with its ``pi`` extra) through every wheel it finds,
evaluating environment markers for the device, so a missing or wrong-platform wheel is found on the
workstation, not at first boot without network.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from kiosk_provisioning import ProvisionError

KIOSK = "kiosk"
KIOSK_EXTRAS = ("", "pi")
# glibc of Raspberry Pi OS: Bookworm 2.36, Trixie 2.41 (manylinux_2_X wheels need X <= this).
GLIBC = {"3.11": (2, 36), "3.13": (2, 41)}
_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_aarch64$")
_LEGACY_MANYLINUX = {"manylinux2014_aarch64": (2, 17)}


@dataclass(frozen=True)
class Wheel:
    """One wheel file and what it is for."""

    path: Path
    name: str
    version: Version
    fits: bool


def check_wheelhouse(folder: Path, python: str) -> list[Path]:
    """The wheels to copy into the image; ProvisionError lists everything the device would miss."""
    fix = f"run provisioning/download-wheelhouse --out {folder} --os {'bookworm' if python == '3.11' else 'trixie'}"
    if not folder.is_dir():
        raise ProvisionError(f"{folder}: the wheelhouse folder does not exist; {fix}")
    wheels: dict[str, list[Wheel]] = {}
    problems = []
    for path in sorted(folder.glob("*.whl")):
        try:
            project, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            problems.append(f"{path.name}: not a valid wheel file name; remove it")
            continue
        fits = any(_fits(t.interpreter, t.abi, t.platform, python) for t in tags)
        wheels.setdefault(str(project), []).append(Wheel(path, str(project), version, fits))
    if KIOSK not in wheels:
        raise ProvisionError(f"{folder}: the wheelhouse has no kiosk wheel (kiosk-*.whl); {fix}")
    if "pip" not in wheels:
        problems.append("no pip wheel: the device creates its venv without network and needs pip-*.whl")
    environment = _environment(python)
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
            problems.append(f"{found}; the device needs one for aarch64 and CPython {python}")
            continue
        newest = max(usable, key=lambda w: w.version)
        for requirement in _requirements(newest.path, problems):
            if requirement.marker is None or requirement.marker.evaluate(dict(environment, extra=extra)):
                dependency = str(canonicalize_name(requirement.name))
                todo += [(dependency, e, requirement.specifier, name) for e in ("", *requirement.extras)]
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ProvisionError(
            f"{folder}: the wheelhouse cannot install the kiosk offline on the device:\n{lines}\n{fix}"
        )
    return [w.path for ws in wheels.values() for w in ws if w.fits]


def _fits(interpreter: str, abi: str, platform: str, python: str) -> bool:
    """Whether one wheel tag installs on CPython ``python`` for aarch64 Linux."""
    major, minor = (int(x) for x in python.split("."))
    if platform != "any":
        legacy = _LEGACY_MANYLINUX.get(platform)
        match = _MANYLINUX_RE.match(platform)
        glibc = legacy or ((int(match.group(1)), int(match.group(2))) if match else None)
        if platform != "linux_aarch64" and (glibc is None or glibc > GLIBC[python]):
            return False
    if interpreter in ("py3", f"py{major}{minor}"):
        return abi == "none"
    cp = re.fullmatch(r"cp(\d)(\d+)", interpreter)
    if cp is None or int(cp.group(1)) != major:
        return False
    if abi == "abi3":
        return int(cp.group(2)) <= minor
    return int(cp.group(2)) == minor and abi in (f"cp{major}{minor}", "none")


def _environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of CPython ``python`` on Raspberry Pi OS 64-bit."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": "aarch64",
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
