"""The gallery file: round trip, atomic writes, and clear errors for damaged files that are never overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ALEX, EXAMPLES, need

from kiosk.cli import main
from kiosk.errors import GalleryError
from kiosk_contract.gallery import SEALED_MAGIC, Gallery, Person, seal_bytes, seal_gallery, store_sealed
from kiosk_contract.sealing import DataCipher


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
    assert main(["gallery", "remove", "--gallery", str(path), "19990101 202001 1 001"]) == 1  # not enrolled
    before = path.read_bytes()
    assert main(["gallery", "remove", "--gallery", str(path), "nobody"]) == 2
    assert "NIP: 'nobody' is not a NIP" in capsys.readouterr().err and path.read_bytes() == before


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


# --- sealed galleries (device.data_key) -------------------------------------------------------------------------

DATA_KEY = bytes(range(100, 132))


def _sealing_config(tmp_path: Path, key: bytes = DATA_KEY, extra: str = "") -> Path:
    """A device config whose data key file holds ``key``."""
    key_path = tmp_path / "data.key"
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[device]\ndata_key = "file"\ndata_key_file = "data.key"\n[camera]\nsource = "v4l2"\n{extra}'
    )
    return config


def test_sealed_gallery_round_trip_and_the_file_reveals_no_template_or_identity(tmp_path: Path) -> None:
    people = _people(4, per=3)
    path = tmp_path / "g.kgal"
    cipher = DataCipher(DATA_KEY, "test")
    Gallery(people).save(path, cipher=cipher)
    back = Gallery.load(path, cipher=cipher)
    assert back.nips == [p.nip for p in people] and np.array_equal(back.matrix, Gallery(people).matrix)
    assert back.get(people[2].nip).name == "Pegawai 2"  # type: ignore[union-attr]
    data = path.read_bytes()
    assert data[:4] == SEALED_MAGIC
    for person in people:
        assert person.nip.encode() not in data and person.name.encode() not in data
        for template in person.templates:
            assert template.astype("<f4").tobytes()[:16] not in data  # not even one in four dimensions
    assert b"Unit" not in data and b'"people"' not in data


def test_sealed_gallery_without_key_with_wrong_key_and_plaintext_where_sealed_is_required(tmp_path: Path) -> None:
    sealed, plain = tmp_path / "sealed.kgal", tmp_path / "plain.kgal"
    Gallery(_people(2)).save(sealed, cipher=DataCipher(DATA_KEY, "test"))
    Gallery(_people(2)).save(plain)
    with pytest.raises(GalleryError, match=rf"{sealed} is encrypted with a device data key .*set device.data_key"):
        Gallery.load(sealed)
    other = DataCipher(bytes(reversed(DATA_KEY)), "the other key")
    with pytest.raises(GalleryError, match=rf"{sealed} was encrypted with another data key .*kiosk gallery seal"):
        Gallery.load(sealed, cipher=other)
    with pytest.raises(GalleryError, match=rf"{plain} is a plaintext gallery.*kiosk gallery seal --config"):
        Gallery.load(plain, cipher=DataCipher(DATA_KEY, "test"))


@pytest.mark.parametrize("damage", ["flip_body", "flip_header", "flip_tag", "truncate", "header_only", "stub"])
def test_damaged_sealed_gallery_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "g.kgal"
    cipher = DataCipher(DATA_KEY, "test")
    Gallery(_people(3)).save(path, cipher=cipher)
    data = bytearray(path.read_bytes())
    if damage == "flip_body":
        data[len(data) // 2] ^= 0x01
    elif damage == "flip_header":
        data[6] ^= 0x01  # the flags: part of the associated data
    elif damage == "flip_tag":
        data[-1] ^= 0x80
    elif damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "header_only":
        data = data[:20]
    else:
        data = data[:6]
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=rf"{path} (fails its authentication|is a truncated sealed gallery)"):
        Gallery.load(path, cipher=cipher)


def test_seal_keeps_version_and_signature_and_never_replaces_a_good_file_with_a_bad_one(tmp_path: Path) -> None:
    plain, sealed = tmp_path / "from-central.kgal", tmp_path / "gallery.kgal"
    people = _people(3)
    signed = Gallery(people)
    signed.save(plain, key=b"k" * 32)
    signed.save(plain, key=b"k" * 32)  # version 2
    cipher = DataCipher(DATA_KEY, "test")
    assert seal_gallery(plain, sealed, cipher, key=b"k" * 32).version == 2
    assert Gallery.load(sealed, key=b"k" * 32, cipher=cipher).version == 2  # the same file inside, signature too
    with pytest.raises(GalleryError, match="gallery_key_file"):
        Gallery.load(sealed, cipher=cipher)
    good = sealed.read_bytes()
    damaged = bytearray(plain.read_bytes())
    damaged[-3] ^= 0xFF
    plain.write_bytes(bytes(damaged))
    with pytest.raises(GalleryError, match="fails its signature"):
        seal_gallery(plain, sealed, cipher, key=b"k" * 32)
    with pytest.raises(GalleryError, match="already sealed"):
        seal_gallery(sealed, tmp_path / "twice.kgal", cipher, key=b"k" * 32)
    assert sealed.read_bytes() == good and not (tmp_path / "twice.kgal").exists()


def test_cli_seal_then_list_and_remove_keep_the_gallery_sealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _sealing_config(tmp_path)
    plain, sealed = tmp_path / "plain.kgal", tmp_path / "gallery.kgal"
    people = _people(3)
    Gallery(people).save(plain)
    assert main(["gallery", "seal", "--config", str(config), str(plain), str(sealed)]) == 0
    out = capsys.readouterr().out
    assert f"sealed {plain} -> {sealed}: version 1, 3 people, data key id" in out
    cipher = DataCipher(DATA_KEY, "test")
    assert cipher.key_id in out and Gallery.load(sealed, cipher=cipher).nips == [p.nip for p in people]
    assert main(["gallery", "list", "--gallery", str(sealed), "--config", str(config)]) == 0
    assert people[1].nip in capsys.readouterr().out
    assert main(["gallery", "remove", "--gallery", str(sealed), "--config", str(config), people[0].nip]) == 0
    assert sealed.read_bytes()[:4] == SEALED_MAGIC, "saved sealed again"
    assert Gallery.load(sealed, cipher=cipher).nips == [p.nip for p in people[1:]]
    assert main(["gallery", "list", "--gallery", str(sealed)]) == 2
    assert "set device.data_key" in capsys.readouterr().err


def test_cli_seal_needs_a_data_key_and_a_valid_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain, sealed = tmp_path / "plain.kgal", tmp_path / "gallery.kgal"
    Gallery(_people(2)).save(plain)
    no_key = tmp_path / "nokey.toml"
    no_key.write_text('[camera]\nsource = "v4l2"\n')
    assert main(["gallery", "seal", "--config", str(no_key), str(plain), str(sealed)]) == 2
    assert 'device.data_key = "none"' in capsys.readouterr().err
    config = _sealing_config(tmp_path, key=DATA_KEY + b"\n")
    assert main(["gallery", "seal", "--config", str(config), str(plain), str(sealed)]) == 2
    assert "this one is 33 bytes" in capsys.readouterr().err
    assert not sealed.exists()


def test_a_sealed_real_gallery_identifies_with_the_device_config(
    gallery_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _sealing_config(tmp_path)
    sealed = tmp_path / "sealed.kgal"
    assert main(["gallery", "seal", "--config", str(config), str(gallery_copy), str(sealed)]) == 0
    capsys.readouterr()
    photo = need(EXAMPLES / "alex-lacamoire.png")
    assert main(["identify", "--gallery", str(sealed), "--config", str(config), "--json", str(photo)]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert [f["nip"] for f in faces] == [ALEX]
    assert main(["identify", "--gallery", str(sealed), "--json", str(photo)]) == 2
    assert "is encrypted with a device data key" in capsys.readouterr().err


def test_a_received_gallery_is_sealed_before_it_touches_the_disk(tmp_path: Path) -> None:
    made = tmp_path / "central" / "g.kgal"
    made.parent.mkdir()
    Gallery(_people(3)).save(made, key=b"k" * 32)
    received = made.read_bytes()  # as it arrives from central: bytes in memory
    device = tmp_path / "device"
    device.mkdir()
    cipher = DataCipher(DATA_KEY, "test")
    assert len(store_sealed(received, device / "gallery.kgal", cipher, key=b"k" * 32)) == 3
    assert [f.name for f in device.iterdir()] == ["gallery.kgal"]
    assert device.joinpath("gallery.kgal").read_bytes()[:4] == SEALED_MAGIC
    good = device.joinpath("gallery.kgal").read_bytes()
    with pytest.raises(GalleryError, match="the received gallery fails its signature"):
        store_sealed(received[:-1] + bytes([received[-1] ^ 0xFF]), device / "gallery.kgal", cipher, key=b"k" * 32)
    assert device.joinpath("gallery.kgal").read_bytes() == good


def test_seal_bytes_makes_a_device_file_an_image_builder_can_write(tmp_path: Path) -> None:
    made = tmp_path / "g.kgal"
    Gallery(_people(2)).save(made)
    cipher = DataCipher(DATA_KEY, "test")
    gallery, sealed = seal_bytes(made.read_bytes(), cipher, origin=str(made))
    assert len(gallery) == 2 and sealed[:4] == SEALED_MAGIC
    (tmp_path / "image.kgal").write_bytes(sealed)
    assert Gallery.load(tmp_path / "image.kgal", cipher=cipher).nips == gallery.nips
    with pytest.raises(GalleryError, match=rf"{made} is not a kiosk gallery"):
        seal_bytes(b"JUNK" + made.read_bytes()[4:], cipher, origin=str(made))
