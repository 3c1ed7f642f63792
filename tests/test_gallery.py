"""The gallery file: round trip, atomic writes, and clear errors for damaged files that are never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kiosk.cli import main
from kiosk.errors import GalleryError
from kiosk.recognizer.gallery import Gallery, Person


def _people(n: int, seed: int = 0, per: int = 2) -> list[Person]:
    rng = np.random.default_rng(seed)
    return [
        Person(
            f"19800101200501{i:04d}", f"Pegawai {i}", "Unit", rng.normal(size=(per, 128)).astype(np.float32)
        )
        for i in range(n)
    ]


def test_round_trip_keeps_people_templates_and_bumps_version(tmp_path: Path) -> None:
    g = Gallery(_people(5))
    path = tmp_path / "g.kgal"
    g.save(path)
    g.save(path)
    back = Gallery.load(path)
    assert back.version == 2
    assert [p.nip for p in back.people] == [p.nip for p in g.people]
    assert np.array_equal(back.matrix, g.matrix)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_distances_are_per_person_minimum(tmp_path: Path) -> None:
    people = _people(3)
    g = Gallery(people)
    probe = people[1].templates[1]
    d = g.person_distances(probe)
    assert d.dtype == np.float32
    assert d.argmin() == 1 and d[1] == pytest.approx(0.0, abs=1e-3)
    expected = [min(np.linalg.norm(t - probe) for t in p.templates) for p in people]
    assert np.allclose(d, expected, atol=1e-3)


def test_upsert_replaces_and_remove_reports_missing() -> None:
    g = Gallery(_people(3))
    again = _people(1, seed=9, per=3)[0]
    g.upsert(again)
    assert len(g) == 3 and len(g.get(again.nip).templates) == 3  # type: ignore[union-attr]
    assert g.remove([again.nip, "nobody"]) == ["nobody"]
    assert len(g) == 2 and g.get(again.nip) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "empty"])
def test_damaged_gallery_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "g.kgal"
    Gallery(_people(4)).save(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "magic":
        data[:4] = b"JUNK"
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=str(path)):
        Gallery.load(path)


def test_hmac_signed_gallery_needs_the_right_key(tmp_path: Path) -> None:
    path = tmp_path / "g.kgal"
    Gallery(_people(2)).save(path, key=b"k" * 32)
    assert len(Gallery.load(path, key=b"k" * 32)) == 2
    with pytest.raises(GalleryError, match="gallery_key_file"):
        Gallery.load(path)
    with pytest.raises(GalleryError, match="signature"):
        Gallery.load(path, key=b"x" * 32)


def test_failed_write_leaves_previous_gallery_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.kgal"
    Gallery(_people(2)).save(path)
    before = path.read_bytes()

    def crash(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(GalleryError, match="previous file is intact"):
        Gallery(_people(3)).save(path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*tmp*"))


def test_missing_gallery_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="kiosk enroll"):
        Gallery.load(tmp_path / "none.kgal")


def test_cli_list_show_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.kgal"
    people = _people(3)
    Gallery(people).save(path)
    assert main(["gallery", "list", "--gallery", str(path)]) == 0
    out = capsys.readouterr().out
    assert all(p.nip in out for p in people) and "version 1" in out
    assert main(["gallery", "show", "--gallery", str(path), people[0].nip]) == 0
    assert '"templates": 2' in capsys.readouterr().out
    assert main(["gallery", "remove", "--gallery", str(path), people[0].nip]) == 0
    assert Gallery.load(path).get(people[0].nip) is None
    assert main(["gallery", "remove", "--gallery", str(path), "nobody"]) == 1


def test_cli_reports_tampered_gallery_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.kgal"
    Gallery(_people(2)).save(path)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["gallery", "list", "--gallery", str(path)]) == 2
    assert "checksum" in capsys.readouterr().err


def test_cli_signs_with_the_configured_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "gallery.key"
    key.write_bytes(b"s" * 32)
    key.chmod(0o600)
    config = tmp_path / "kiosk.toml"
    config.write_text('[camera]\nsource = "v4l2"\n[recognizer]\ngallery_key_file = "gallery.key"\n')
    path = tmp_path / "g.kgal"
    people = _people(2)
    Gallery(people).save(path, key=b"s" * 32)
    assert main(["gallery", "remove", "--gallery", str(path), "--config", str(config), people[0].nip]) == 0
    assert Gallery.load(path, key=b"s" * 32).nips == [people[1].nip], "re-signed with the same key"
    assert main(["gallery", "list", "--gallery", str(path)]) == 2
    assert "gallery_key_file" in capsys.readouterr().err
    key.chmod(0o644)
    assert main(["gallery", "list", "--gallery", str(path), "--config", str(config)]) == 2
    assert "recognizer.gallery_key_file: the secret file is open to group or others" in capsys.readouterr().err


def test_gallery_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.kgal"
    g = Gallery(_people(2))
    g.model = "some_other_encoder"
    g.save(path)
    with pytest.raises(GalleryError, match="re-enrol"):
        Gallery.load(path)
