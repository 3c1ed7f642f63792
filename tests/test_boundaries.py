"""The seams between the four parts: import boundaries (``.importlinter``, also run by scripts/test), a server
process that never loads the recognizer's or the screen's libraries, a device distribution that carries no server or
image-script code, and one wire contract that both sides import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"kiosk": REPO / "kiosk", "kiosk_contract": REPO / "contract" / "kiosk_contract",
            "kiosk_central": REPO / "central" / "kiosk_central",
            "kiosk_provisioning": REPO / "provisioning" / "kiosk_provisioning"}
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT), "--config", str(REPO / ".importlinter"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_packages(root: Path) -> None:
    for name, source in PACKAGES.items():
        shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))


def test_the_boundaries_hold_and_a_crossing_is_caught(tmp_path: Path) -> None:
    copy_packages(tmp_path)
    kept = lint(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "4 kept, 0 broken" in kept.stdout
    for where, crossing, contract in (
        ("kiosk_central/store.py", "import kiosk.app", "server imports no device module"),
        ("kiosk_central/recap.py", "import cv2", "server imports no device module"),
        ("kiosk_contract/schema.py", "import kiosk_central.store", "contract imports neither"),
        ("kiosk/app.py", "import kiosk_provisioning.images", "device imports neither"),
    ):
        path = tmp_path / where
        original = path.read_text()
        path.write_text(original + f"\n{crossing}  # a crossing the check must catch\n")
        broken = lint(tmp_path)
        path.write_text(original)
        assert broken.returncode != 0 and "BROKEN" in broken.stdout, (where, broken.stdout[-2000:])
        assert contract in broken.stdout.replace("\n", " "), broken.stdout[-2000:]


_SERVE = textwrap.dedent("""
    import sys, threading
    from kiosk_central.settings import load_central_config
    from kiosk_central import cli
    cfg = load_central_config(sys.argv[1])
    service = cli.start_service(cfg)       # the ledger, the ingestor with its key, paho's loop
    from kiosk_central.site import setup
    setup(cfg)                             # the Django site: the HR web's views, admin, reports
    import kiosk_central.hr.views, kiosk_central.hr.server, kiosk_central.hr.admin
    from kiosk_central import distribute, recap
    service.close()
    loaded = sorted(m for m in ("cv2", "dlib", "pygame", "face_recognition_models", "kiosk") if m in sys.modules)
    print("loaded:", ",".join(loaded) or "-")
""")


def test_running_the_server_loads_no_recognizer_screen_or_device_module(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "central.key"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "ledger.sqlite"}"\n[broker]\nport = 9\n'
                      f'[signing]\nkey_file = "{key}"\n')
    done = subprocess.run([sys.executable, "-c", _SERVE, str(config)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "loaded: -", done.stdout


@pytest.fixture(scope="module")
def device_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, timeout=300, capture_output=True)
    return next(out.glob("kiosk-*.whl"))


def test_the_device_distribution_carries_no_server_or_image_script_code(device_wheel: Path) -> None:
    with zipfile.ZipFile(device_wheel) as wheel:
        tops = {name.split("/", 1)[0] for name in wheel.namelist() if not name.split("/", 1)[0].endswith(".dist-info")}
        requires = [line for line in wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA")))
                    .decode().splitlines() if line.startswith("Requires-Dist:")]
    assert tops == {"kiosk"}, tops
    assert any("kiosk-contract" in r for r in requires), requires
    assert not any("psycopg" in r or "kiosk-central" in r for r in requires), requires
