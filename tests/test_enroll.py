"""Enrolment from a roster and real photos: each photo judged with a reason, exit status 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from conftest import EXAMPLES, FACES, OBAMA, TEST_IMAGES, enroll, link_photos, need, write_roster

from kiosk.cli import main
from kiosk_contract.gallery import Gallery
from kiosk_contract.roster import RosterError, read_roster

BIDEN = "194211201972031002"


def _enroll(roster: Path, photos: Path, gallery: Path, *extra: str) -> int:
    return enroll(roster, photos, gallery, "--jitters", "0", "--json", *extra)


def _results(out: str) -> dict[str, dict[str, object]]:
    return {r["nip"]: r for r in map(json.loads, out.strip().splitlines())}


def test_every_photo_is_judged_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    good = photos / OBAMA
    link_photos(good, {"a": TEST_IMAGES / "obama.jpg", "b": TEST_IMAGES / "obama2.jpg"})
    blurred = cv2.GaussianBlur(
        cv2.imread(str(need(TEST_IMAGES / "obama3.jpg"))), (0, 0), 14
    )  # ~5 % of the face
    cv2.imwrite(str(good / "c-blurred.jpg"), blurred)
    (good / "d-broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    link_photos(
        good,
        {"e-dogs": FACES / "dlib" / "examples" / "faces" / "dogs.jpg", "f-two": EXAMPLES / "two_people.jpg"},
    )
    link_photos(good, {"g-rgba": TEST_IMAGES / "32bit.png"})  # Obama again, as a 32-bit RGBA PNG
    roster = write_roster(
        tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda"), ("199001012015011004", "No Photos", "Unit")]
    )
    gallery = tmp_path / "g.kgal"
    assert _enroll(roster, photos, gallery) == 1
    res = _results(capsys.readouterr().out)
    reasons = {Path(p["path"]).name: p["reason"] for p in res[OBAMA]["photos"]}  # type: ignore[index,attr-defined]
    assert reasons["a.jpg"] is None and reasons["b.jpg"] is None
    assert reasons["c-blurred.jpg"] == "blurry"
    assert reasons["d-broken.jpg"] == "unreadable"
    assert reasons["e-dogs.jpg"] == "no_face"
    assert reasons["f-two.jpg"] == "several_faces"
    assert reasons["g-rgba.png"] is None, "a 32-bit RGBA PNG is an ordinary photo"
    assert res[OBAMA]["status"] == "added"
    assert res["199001012015011004"]["status"] == "not_enrolled"
    g = Gallery.load(gallery)
    assert g.nips == [OBAMA]
    assert g.get(OBAMA).sources == ("a.jpg", "b.jpg", "g-rgba.png")  # type: ignore[union-attr]


def test_all_good_is_status_0_and_rerun_updates_instead_of_duplicating(tmp_path: Path) -> None:
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg", BIDEN: TEST_IMAGES / "biden.jpg"})
    roster = write_roster(
        tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda"), (BIDEN, "Joe Biden", "Setda")]
    )
    gallery = tmp_path / "g.kgal"
    assert _enroll(roster, photos, gallery) == 0
    assert _enroll(roster, photos, gallery) == 0
    g = Gallery.load(gallery)
    assert g.nips == [OBAMA, BIDEN] and g.version == 2
    assert all(len(p.templates) == 1 for p in g.people)


def test_same_face_under_a_second_nip_is_flagged_not_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = "199001012015011001"
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg", twin: TEST_IMAGES / "obama2.jpg"})
    roster = write_roster(
        tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda"), (twin, "Someone Else", "Dinas")]
    )
    gallery = tmp_path / "g.kgal"
    assert _enroll(roster, photos, gallery) == 1
    res = _results(capsys.readouterr().out)
    assert res[twin]["status"] == "flagged"
    assert res[twin]["similar_to"]["nip"] == OBAMA  # type: ignore[index]
    assert Gallery.load(gallery).nips == [OBAMA]
    assert _enroll(roster, photos, gallery, "--allow-similar") == 0
    assert sorted(Gallery.load(gallery).nips) == sorted([OBAMA, twin])


def test_damaged_gallery_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg"})
    roster = write_roster(tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda")])
    gallery = tmp_path / "g.kgal"
    gallery.write_bytes(b"KGAL\x01\x00 truncated")
    before = gallery.read_bytes()
    assert _enroll(roster, photos, gallery) == 2
    assert "not a kiosk gallery" in capsys.readouterr().err
    assert gallery.read_bytes() == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nip,name\n1,A\n", "missing column"),
        ("nip,name,unit\n12 34,A,U\n", "line 2"),
        ("nip,name,unit\n198001012005011001,A,U\n19800101 200501 1 001,B,U\n", "already on line 2"),
        ("nip,name,unit\n198001012005011001,,U\n", "has no name"),
        ("nip,name,unit\n19850505201001102,A,U\n", "line 2, nip: '19850505201001102' is not a NIP: it has 17 digits"),
        ("nip,name,unit\n198505052010011023x,A,U\n", "line 2, nip: .* it contains 'x'"),
    ],
)
def test_bad_roster_is_reported_with_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(RosterError, match=message):
        read_roster(path)


def test_bad_usage_is_status_2(tmp_path: Path) -> None:
    roster = write_roster(tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda")])
    assert _enroll(roster, tmp_path / "nope", tmp_path / "g.kgal") == 2
    with pytest.raises(SystemExit) as exc:
        main(["enroll", "--roster", str(roster)])
    assert exc.value.code == 2
