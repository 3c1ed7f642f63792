"""The lock files in locks/ (made by scripts/lock): well formed, in step with the declared requirements, and right
for the devices' Raspberry Pi OS releases.

- Every entry is ``name==version`` with sha256 hashes: no ranges, no pre-releases, no local or editable entries.
- Every requirement of setup.cfg and the pyprojects (extras resolved, markers evaluated for the lock's platform and
  Python) is pinned in its lock at a version that satisfies it, and nothing is pinned that the declared requirements
  do not reach (a stale pin). The edges between third-party packages are read from the lock's ``# via`` notes.
- Bookworm's lock has numpy 1.x (apt's simplejpeg and picamera2 are built against numpy 1.24) and an OpenCV that
  accepts it; Trixie's has numpy 2.2 or newer (apt's numpy); the dev lock tests on Bookworm's numpy and OpenCV.
- The ABI itself: simplejpeg 1.6.6 (built against numpy 1.x, like Bookworm's) imports and encodes a frame with
  device-bookworm.txt's numpy, and fails with "numpy.dtype size changed" beside a numpy 2.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from kiosk_provisioning.wheelhouse import marker_environment

REPO = Path(__file__).resolve().parent.parent
LOCKS = REPO / "locks"
OWN = {"kiosk", "kiosk-contract", "kiosk-central", "kiosk-provisioning"}
ENTRY = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+?)((?: --hash=sha256:[0-9a-f]{64})+)$")


@dataclass
class Pin:
    """One entry of a lock: its version, hashes and the packages (or inputs) that asked for it."""

    version: Version
    hashes: list[str]
    via: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, Pin]:
    """The entries of a pip requirements file as uv writes it (continuation lines and ``# via`` notes)."""
    pins: dict[str, Pin] = {}
    logical: list[str] = []
    current: Pin | None = None
    in_via = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#"):
            note = line[1:].strip()
            if current is not None and note.startswith("via"):
                rest = note[3:].strip()
                in_via = True
                if rest:
                    current.via.add(rest)
            elif current is not None and in_via and raw.startswith("    #   "):
                current.via.add(note)
            else:
                in_via = False
            continue
        in_via = False
        if not line:
            continue
        logical.append(line.rstrip("\\").strip())
        if line.endswith("\\"):
            continue
        text = " ".join(logical)
        logical = []
        match = ENTRY.match(text)
        assert match, f"{path.name}: not a name==version line with sha256 hashes: {text[:120]}"
        name, version, hashes = match.groups()
        current = Pin(Version(version), re.findall(r"[0-9a-f]{64}", hashes))
        assert canonicalize_name(name) not in pins, f"{path.name}: {name} is pinned twice"
        pins[str(canonicalize_name(name))] = current
    assert not logical, f"{path.name}: ends inside a continued line"
    return pins


def environment(machine: str, python: str) -> dict[str, str]:
    """PEP 508 marker values for CPython ``python`` on Linux ``machine`` (the image script's own)."""
    return marker_environment(python, machine)


X86_311 = environment("x86_64", "3.11")
# lock: (marker environment, what it must install: our parts with extras, and the inputs that are no part's
# requirement, each with the reason)
LOCK_ROOTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "dev.txt": (
        X86_311,
        # face_recognition is the benchmarks' baseline, pinned in scripts/lock, its dlib dropped (dlib-bin)
        ["kiosk[dev]", "kiosk-contract[mqtt]", "kiosk-central[test]", "kiosk-provisioning", "face-recognition==1.3.0"],
    ),
    "central.txt": (X86_311, ["kiosk-central"]),
    "central-test.txt": (X86_311, ["kiosk-central[test]"]),
    # pip runs the first boot's offline install from its own wheel
    "device-bookworm.txt": (environment("aarch64", "3.11"), ["kiosk[pi]", "pip"]),
    "device-trixie.txt": (environment("aarch64", "3.13"), ["kiosk[pi]", "pip"]),
}
# central-test.txt holds only what central.txt does not: the two are installed together.
COMPANIONS = {"central-test.txt": ["central.txt"]}


def declared(part: str) -> tuple[list[str], dict[str, list[str]]]:
    """The requirements and extras a part of this repository declares: setup.cfg for kiosk, else its pyproject."""
    if part == "kiosk":
        cfg = configparser.ConfigParser()
        cfg.read(REPO / "setup.cfg", encoding="utf-8")

        def lines(value: str) -> list[str]:
            return [x.strip() for x in value.splitlines() if x.strip() and not x.strip().startswith("#")]

        extras = {k: lines(v) for k, v in cfg["options.extras_require"].items()}
        return lines(cfg["options"]["install_requires"]), extras
    folder = {"kiosk-contract": "contract", "kiosk-central": "central", "kiosk-provisioning": "provisioning"}[part]
    project = tomllib.loads((REPO / folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == part
    return list(project.get("dependencies", [])), dict(project.get("optional-dependencies", {}))


def third_party(roots: list[str], env: dict[str, str]) -> list[Requirement]:
    """The third-party requirements the roots reach through this repository's parts, for one environment."""
    found: list[Requirement] = []
    todo = [Requirement(r) for r in roots]
    seen: set[tuple[str, str]] = set()
    while todo:
        requirement = todo.pop()
        name = str(canonicalize_name(requirement.name))
        if name not in OWN:
            found.append(requirement)
            continue
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            base, extras = declared(name)
            assert not extra or extra in extras, f"{name} has no extra [{extra}]"
            for line in extras[extra] if extra else base:
                child = Requirement(line)
                if child.marker is None or child.marker.evaluate(dict(env, extra=extra)):
                    todo.append(child)
    return found


def lock(name: str) -> dict[str, Pin]:
    return read_lock(LOCKS / name)


def test_the_locks_are_there() -> None:
    names = {p.name for p in LOCKS.glob("*.txt")}
    assert names == {*LOCK_ROOTS, "abi-check.txt"}, "scripts/lock makes exactly these; a new one needs its test"


@pytest.mark.parametrize("name", [*sorted(LOCK_ROOTS), "abi-check.txt"])
def test_every_entry_is_an_exact_release_with_hashes(name: str) -> None:
    text = (LOCKS / name).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(-e|--editable|--index-url|--extra-index-url|--find-links|-f|-i)\b", text, re.M)
    assert not re.search(r"(file:|git\+|https?://|\s@\s)", re.sub(r"^#.*$", "", text, flags=re.M))
    pins = lock(name)
    assert pins, f"{name} pins nothing"
    for package, pin in pins.items():
        assert package not in OWN, f"{name}: {package} is this repository's own part, not a third-party pin"
        assert not pin.version.is_prerelease and not pin.version.is_devrelease, f"{name}: {package}=={pin.version}"
        assert pin.version.local is None, f"{name}: {package}=={pin.version} is a local version"
        assert pin.hashes, f"{name}: {package} has no hash"


@pytest.mark.parametrize("name", sorted(LOCK_ROOTS))
def test_the_locks_agree_with_setup_cfg_and_the_pyprojects(name: str) -> None:
    env, roots = LOCK_ROOTS[name]
    pins = lock(name)
    available = dict(pins)
    for companion in COMPANIONS.get(name, []):
        available.update(lock(companion))
    wanted = third_party(roots, env)
    problems = []
    for requirement in wanted:
        package = str(canonicalize_name(requirement.name))
        pin = available.get(package)
        if pin is None:
            problems.append(f"{requirement} is required but not pinned")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} is required but {package}=={pin.version} is pinned")
    # Stale pins: reachable from the declared requirements through the locks' own dependency notes.
    children: dict[str, set[str]] = {}
    for package, pin in available.items():
        for parent in pin.via:
            children.setdefault(str(canonicalize_name(parent)), set()).add(package)
    reached: set[str] = set()
    todo = [str(canonicalize_name(r.name)) for r in wanted]
    while todo:
        package = todo.pop()
        if package not in reached and package in available:
            reached.add(package)
            todo += sorted(children.get(package, ()))
    problems += [
        f"{package}=={pins[package].version} is pinned but nothing requires it" for package in pins.keys() - reached
    ]
    assert not problems, f"locks/{name} and the declared requirements disagree; run scripts/lock:\n" + "\n".join(
        problems
    )


def test_a_dropped_requirement_is_found_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above really fails: without Pillow in setup.cfg, the device lock's pillow is stale."""
    real = declared

    def without_pillow(part: str) -> tuple[list[str], dict[str, list[str]]]:
        base, extras = real(part)
        return [r for r in base if not r.lower().startswith("pillow")], extras

    monkeypatch.setattr(sys.modules[__name__], "declared", without_pillow)
    with pytest.raises(AssertionError, match=r"pillow==\S+ is pinned but nothing requires it"):
        test_the_locks_agree_with_setup_cfg_and_the_pyprojects("device-bookworm.txt")


def test_central_has_no_recognizer_and_the_dev_lock_no_dlib() -> None:
    central = lock("central.txt").keys() | lock("central-test.txt").keys()
    assert not central & {"dlib", "dlib-bin", "opencv-python-headless", "opencv-python", "pygame"}
    assert not central & {"face-recognition-models", "face-recognition"}
    assert "dlib" not in lock("dev.txt"), "dlib would be compiled; dlib-bin provides `import dlib`"
    assert "dlib-bin" in lock("dev.txt") and lock("dev.txt")["face-recognition"].version == Version("1.3.0")


def test_central_test_lock_agrees_with_central() -> None:
    central, extra = lock("central.txt"), lock("central-test.txt")
    assert not central.keys() & extra.keys(), "pip refuses a package listed twice under --require-hashes"


def test_bookworm_has_numpy_1_and_an_opencv_that_accepts_it() -> None:
    pins = lock("device-bookworm.txt")
    numpy, opencv = pins["numpy"].version, pins["opencv-python-headless"].version
    assert Version("1.24") <= numpy < Version("2"), "apt's simplejpeg/picamera2 on Bookworm are built against 1.24"
    try:
        installed = importlib.metadata.distribution("opencv-python-headless")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and Version(installed.version) == opencv:
        # The wheel's own Requires-Dist (the same in its x86_64 and aarch64 wheels), for CPython 3.11 on aarch64.
        env = environment("aarch64", "3.11")
        for line in installed.requires or []:
            requirement = Requirement(line)
            if requirement.name == "numpy" and (requirement.marker is None or requirement.marker.evaluate(env)):
                assert requirement.specifier.contains(numpy), f"opencv-python-headless {opencv} needs {requirement}"
    else:
        # opencv-python(-headless) 4.12.0.88 and later require numpy>=2 (their METADATA); 4.11.0.86 accepts 1.x.
        assert opencv < Version("4.12"), f"opencv-python-headless {opencv} needs numpy 2"


def test_trixie_has_apt_numpy_major_and_dev_has_bookworms_numpy_and_opencv() -> None:
    trixie = lock("device-trixie.txt")["numpy"].version
    assert Version("2.2") <= trixie < Version("3"), "Trixie's apt numpy is 2.2.4; its modules need 2.2 or newer 2.x"
    bookworm, dev = lock("device-bookworm.txt"), lock("dev.txt")
    for package in ("numpy", "opencv-python-headless"):
        assert dev[package].version == bookworm[package].version, f"dev.txt's {package} is not the device's"
    assert lock("abi-check.txt")["numpy"].version == bookworm["numpy"].version


def _entry(path: Path, package: str) -> str:
    """One entry of a lock with its hashes, as a requirements file."""
    pin = read_lock(path)[package]
    return f"{package}=={pin.version} " + " ".join(f"--hash=sha256:{h}" for h in pin.hashes) + "\n"


@pytest.fixture(scope="module")
def abi_venv() -> tuple[Path, Path]:
    """A venv with exactly locks/abi-check.txt, and a folder with central.txt's numpy 2 (built once, cached)."""
    numpy2 = _entry(LOCKS / "central.txt", "numpy")
    if not numpy2.startswith("numpy==2."):
        pytest.skip(f"central.txt's numpy is not 2.x ({numpy2.split()[0]}): no numpy 2 for the control")
    key = hashlib.sha256((LOCKS / "abi-check.txt").read_bytes() + numpy2.encode()).hexdigest()[:16]
    cache = REPO / ".cache" / "abi-check" / key
    venv, target = cache / "venv", cache / "numpy2"
    if not (cache / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps"]
        subprocess.run([*pip, "-r", str(LOCKS / "abi-check.txt")], check=True, capture_output=True)
        (cache / "numpy2.txt").write_text(numpy2)
        subprocess.run(
            [*pip, "--target", str(target), "-r", str(cache / "numpy2.txt")], check=True, capture_output=True
        )
        (cache / "ready").write_text("built from locks/abi-check.txt and central.txt's numpy\n")
    return venv / "bin/python", target


ENCODE = """
import numpy, simplejpeg
frame = numpy.zeros((480, 640, 3), numpy.uint8)
frame[100:300, 200:400] = (200, 120, 40)
jpeg = simplejpeg.encode_jpeg(frame, quality=85, colorspace="RGB")
assert jpeg[:2] == b"\\xff\\xd8" and simplejpeg.decode_jpeg(jpeg).shape == (480, 640, 3)
print(numpy.__version__, len(jpeg))
"""


def test_a_numpy_1_module_imports_and_encodes_with_bookworms_numpy(abi_venv: tuple[Path, Path]) -> None:
    python, _numpy2 = abi_venv
    done = subprocess.run([str(python), "-c", ENCODE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version, size = done.stdout.split()
    assert Version(version) == lock("device-bookworm.txt")["numpy"].version
    assert int(size) > 1000


def test_the_same_module_fails_beside_numpy_2(abi_venv: tuple[Path, Path]) -> None:
    """The control: what a pip numpy 2 does to Bookworm's apt simplejpeg (and so to picamera2)."""
    python, numpy2 = abi_venv
    done = subprocess.run(
        [str(python), "-c", ENCODE], capture_output=True, text=True, env={"PYTHONPATH": str(numpy2), "PATH": ""}
    )
    assert done.returncode != 0
    assert "numpy.dtype size changed" in done.stderr, done.stderr[-2000:]
