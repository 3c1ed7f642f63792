"""`kiosk identify --json`: the command-line contract, on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES, OBAMA, TEST_IMAGES, enroll, link_photos, need, write_roster

from kiosk.cli import main


@pytest.fixture(scope="module")
def obama_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("obama")
    photos = link_photos(root / "p", {OBAMA: TEST_IMAGES / "obama.jpg"})
    roster = write_roster(root / "r.csv", [(OBAMA, "Barack Obama", "Setda")])
    gallery = root / "g.kgal"
    assert enroll(roster, photos, gallery) == 0
    return gallery


def _identify(gallery: Path, capsys: pytest.CaptureFixture[str], *images: Path) -> list[dict[str, object]]:
    status = main(["identify", "--gallery", str(gallery), "--json", *map(str, images)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(images)
    for line, image in zip(lines, images, strict=True):
        assert line["image"] == str(image)
    lines.append({"status": status})
    return lines


def test_enrolled_person_is_identified_in_another_photo(
    obama_gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _identify(
        obama_gallery, capsys, need(TEST_IMAGES / "obama2.jpg"), need(EXAMPLES / "obama-480p.jpg")
    )
    for line in out[:2]:
        (face,) = line["faces"]  # type: ignore[misc]
        assert face["nip"] == OBAMA and face["best_nip"] == OBAMA
        assert 0 <= face["distance"] < 0.5
        assert len(face["box"]) == 4
        top, right, bottom, left = face["box"]
        assert top < bottom and left < right
        assert face["margin"] is None  # one person enrolled: no second identity
    assert out[-1]["status"] == 0


def test_stranger_is_refused_but_nearest_is_reported(
    obama_gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (line, _) = _identify(obama_gallery, capsys, need(TEST_IMAGES / "biden.jpg"))
    (face,) = line["faces"]  # type: ignore[misc]
    assert face["nip"] is None
    assert face["best_nip"] == OBAMA and face["distance"] > 0.6


def test_two_faces_and_no_face_and_unreadable(
    obama_gallery: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    dogs = need(EXAMPLES.parent.parent / "dlib" / "examples" / "faces" / "dogs.jpg")
    two, none, bad, status = _identify(obama_gallery, capsys, need(EXAMPLES / "two_people.jpg"), dogs, broken)
    assert len(two["faces"]) == 2  # type: ignore[arg-type]
    assert {f["nip"] for f in two["faces"]} <= {OBAMA, None}  # type: ignore[union-attr]
    assert none["faces"] == []
    assert bad["faces"] == [] and "broken.jpg" in bad["error"]  # type: ignore[operator]
    assert status["status"] == 1


def test_a_phone_photo_is_read_upright_by_its_exif_orientation_and_as_heic(
    obama_gallery: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """identify reads through kiosk.imageio like enrolment: the EXIF-rotated JPEG and a HEIC copy find Obama."""
    from PIL import Image

    from kiosk.imageio import heif_support

    with Image.open(need(TEST_IMAGES / "obama2.jpg")) as img:
        exif = Image.Exif()
        exif[0x0112] = 8  # stored turned a quarter to the right: turn it left to show it
        turned = img.convert("RGB").transpose(Image.Transpose.ROTATE_270)
        turned.save(tmp_path / "hp.jpg", "JPEG", exif=exif.tobytes())
        images = [tmp_path / "hp.jpg"]
        if heif_support():
            img.convert("RGB").save(tmp_path / "hp", "HEIF")  # and without an extension
            images.append(tmp_path / "hp")
    out = _identify(obama_gallery, capsys, *images)
    assert [[f["nip"] for f in line["faces"]] for line in out[:-1]] == [[OBAMA]] * len(images)  # type: ignore[attr-defined]
    assert len(images) == 2, "pillow-heif is in locks/dev.txt: run scripts/bootstrap"
