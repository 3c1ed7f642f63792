"""Shared fixtures: the real face data in ../shared/faces (read in place, never copied) and small galleries."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("KIOSK_FACES_DIR", REPO.parent / "shared" / "faces"))
EXAMPLES = FACES / "face_recognition" / "examples"
# The Hamilton clip is a film: its camera pans with the performer, which a kiosk's fixed camera sees as a picture held
# up in a hand (the surroundings check, docs/liveness.md), so Lin-Manuel Miranda would be asked for a challenge a
# clip cannot answer. Tests that replay it for something other than liveness turn liveness off with this table;
# tests/test_liveness.py and tests/test_pipeline.py test liveness on the clip itself.
FILM_LIVENESS_TOML = '[recognizer.liveness]\nlevel = "off"\n'
TEST_IMAGES = FACES / "face_recognition" / "tests" / "test_images"

ALEX = "198001012005011001"
LIN = "198002022006021002"
OBAMA = "196108041990031001"


def need(path: Path) -> Path:
    """Skip the test, with the reason, when a piece of the shared face data is missing."""
    if not path.exists():
        pytest.skip(f"face data {path} is missing (set KIOSK_FACES_DIR to the shared faces folder)")
    return path


def link_photos(folder: Path, photos: dict[str, Path]) -> Path:
    """A photo folder ``<nip><suffix>`` made of symlinks to the shared data (nothing is copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for nip, src in photos.items():
        (folder / f"{nip}{need(src).suffix}").symlink_to(src)
    return folder


def write_roster(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("nip,name,unit\n" + "".join(f"{n},{m},{u}\n" for n, m, u in rows), encoding="utf-8")
    return path


def enroll(roster: Path, photos: Path, gallery: Path, *extra: str) -> int:
    """Run `kiosk enroll` in-process; returns its exit status."""
    from kiosk.cli import main

    return main(["enroll", "--roster", str(roster), "--photos", str(photos), "--gallery", str(gallery), *extra])


@pytest.fixture(scope="session")
def hamilton_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of the two people in short_hamilton_clip.mp4, enrolled once per test session."""
    root = tmp_path_factory.mktemp("hamilton")
    photos = link_photos(
        root / "photos", {ALEX: EXAMPLES / "alex-lacamoire.png", LIN: EXAMPLES / "lin-manuel-miranda.png"}
    )
    roster = write_roster(
        root / "roster.csv", [(ALEX, "Alex Lacamoire", "Musik"), (LIN, "Lin-Manuel Miranda", "Teater")]
    )
    gallery = root / "gallery.kgal"
    assert enroll(roster, photos, gallery, "--jitters", "1") == 0
    return gallery


@pytest.fixture
def gallery_copy(hamilton_gallery: Path, tmp_path: Path) -> Path:
    """A private copy of the Hamilton gallery a test may change."""
    dst = tmp_path / "gallery.kgal"
    shutil.copy(hamilton_gallery, dst)
    return dst


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """The first truthy value of ``pred()``, polled every 20 ms; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
