"""Enrolment from a roster as HR exports it and real photos as they come: each row and photo judged with a reason,
every problem in one run, nothing written unless everything is right or --partial; exit status 0 / 1 / 2.

The files are made in the test from the shared photos (../shared/faces): nothing is copied into the repository.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, FACES, OBAMA, TEST_IMAGES, enroll, link_photos, need, write_roster
from PIL import Image

from kiosk.cli import main
from kiosk.config import QualityConfig
from kiosk.imageio import heif_support
from kiosk.recognizer import faces
from kiosk_contract.gallery import Gallery
from kiosk_contract.roster import RosterError, read_roster

BIDEN = "194211201972031002"
ALEX = "198001012005011001"
LIN = "198002022006021002"
JOLIE = "197506042000032001"
RUDD = "199101012016011005"
TWIN = "199001012015011001"
STRANGER = "197001012000011001"  # has a photo, is not on the roster
ORIENTATION = 0x0112
FACETS = FACES / "facenet_pytorch" / "data" / "test_images"


def _spaced(nip: str) -> str:
    """A NIP as it is printed: ``19800101 200501 1 001``."""
    return f"{nip[:8]} {nip[8:14]} {nip[14]} {nip[15:]}"


def _enroll(roster: Path, photos: Path, gallery: Path, *extra: str) -> int:
    return enroll(roster, photos, gallery, "--jitters", "0", "--json", *extra)


def _results(out: str) -> tuple[dict[str, dict], list[dict], dict]:
    """(people by NIP, problems, summary) of a --json run."""
    people, problems, summary = {}, [], {}
    for line in out.strip().splitlines():
        obj = json.loads(line)
        if "problem" in obj:
            problems.append(obj["problem"])
        elif "summary" in obj:
            summary = obj["summary"]
        else:
            people[obj["nip"]] = obj
    return people, problems, summary


def _rotated_by_exif(src: Path, dst: Path) -> Path:
    """The photo stored turned a quarter to the left, with EXIF orientation 6 (as a phone held upright saves it)."""
    with Image.open(need(src)) as img:
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        img.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(dst, "JPEG", quality=92, exif=exif.tobytes())
    return dst


def _save_as(src: Path, dst: Path, kind: str, mode: str = "RGB", scale: float = 1.0) -> Path:
    with Image.open(need(src)) as img:
        out = img.convert(mode)
        if scale != 1.0:
            out = out.resize((round(out.width * scale), round(out.height * scale)), Image.Resampling.LANCZOS)
        out.save(dst, kind)
    return dst


# ------------------------------------------------------------------------------------------ one pass, then fixed


def test_an_hr_export_with_every_problem_is_reported_in_one_run_and_enrols_once_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ';' CSV with a BOM and CRLF from Excel, Indonesian headers, printed NIPs; phone photos (EXIF-rotated,
    WebP, HEIC, an upper-case extension, no extension, 12 megapixels, greyscale); and every kind of problem at
    once. One run names them all and writes nothing; fixed as the report says, the next run enrols everyone."""
    if not heif_support():
        pytest.skip("pillow-heif is not installed (locks/dev.txt has it: run scripts/bootstrap)")
    photos = tmp_path / "foto"
    photos.mkdir()
    # photos as they come
    _rotated_by_exif(TEST_IMAGES / "obama.jpg", photos / f"{_spaced(OBAMA)}.JPG")
    _save_as(TEST_IMAGES / "biden.jpg", photos / f"{BIDEN}.webp", "WEBP")
    _save_as(EXAMPLES / "lin-manuel-miranda.png", photos / f"{LIN}.heic", "HEIF")
    _save_as(EXAMPLES / "alex-lacamoire.png", photos / ALEX, "PNG")  # no extension at all
    jolie_photos = photos / JOLIE
    jolie_photos.mkdir()
    jolie = need(FACETS / "angelina_jolie" / "1.jpg")
    _save_as(jolie, jolie_photos / "besar.jpg", "JPEG", scale=(12e6 / (1665 * 2048)) ** 0.5)  # 12 megapixels
    _save_as(jolie, jolie_photos / "abu-abu.tif", "TIFF", mode="L")  # greyscale
    # the problems
    blurred = cv2.GaussianBlur(cv2.imread(str(need(TEST_IMAGES / "obama3.jpg"))), (0, 0), 14)
    twin_photos = photos / TWIN
    twin_photos.mkdir()
    cv2.imwrite(str(twin_photos / "kabur.jpg"), blurred)  # refused: blurry
    (twin_photos / "group.jpg").symlink_to(need(EXAMPLES / "two_people.jpg"))  # refused: several faces
    _save_as(TEST_IMAGES / "obama2.jpg", twin_photos / "obama2.png", "PNG")  # the same face as Obama
    with Image.open(TEST_IMAGES / "obama.jpg") as img:  # a 3x4 passport crop, too small
        img.crop((288, 60, 701, 611)).resize((90, 120)).save(twin_photos / "pasfoto.jpg")
    (photos / f"{ALEX}_2.jpg").write_bytes(b"%PDF-1.4 a scanned form, not a photo")  # not a NIP name
    (photos / f"{STRANGER}.jpg").symlink_to(TEST_IMAGES / "obama3.jpg")  # nobody on the roster
    unreadable = photos / BIDEN
    unreadable.mkdir()
    (unreadable / "kosong.jpg").write_bytes(b"")
    (unreadable / "potong.jpg").write_bytes((TEST_IMAGES / "biden.jpg").read_bytes()[:3000])  # cut short
    roster = tmp_path / "pegawai.csv"
    rows = [
        ("NIP", "Nama Pegawai", "Unit Kerja", "Jabatan"),
        (_spaced(OBAMA), "Barack Obama", "Sekretariat Daerah", "Bupati"),
        (BIDEN, "José Núñez, S.E.", "BKPSDM", ""),
        (LIN, "Lin-Manuel O'Miranda", "Dinas Pendidikan", ""),
        (_spaced(ALEX), "Alex Lacamoire", "Dinas Pendidikan", ""),
        (JOLIE, "", "Dinas Kesehatan", ""),  # no name
        (TWIN, "Someone Else", "Dinas Kesehatan", ""),
        ("19900101201501100", "Short Nip", "BKPSDM", ""),  # 17 digits
        (f"{BIDEN[:8]}.{BIDEN[8:]}", "Joe Biden", "BKPSDM", ""),  # repeats row 3's NIP
        (RUDD, "Ni Luh Putu Ayu", "BKPSDM", ""),  # no photo yet
    ]
    roster.write_bytes(codecs.BOM_UTF8 + "".join(";".join(r) + "\r\n" for r in rows).encode())
    gallery, report = tmp_path / "galeri.kgal", tmp_path / "masalah.csv"

    assert _enroll(roster, photos, gallery, "--report", str(report)) == 1
    people, problems, summary = _results(capsys.readouterr().out)
    assert not gallery.exists(), "nothing is written while there are problems"
    assert summary["written"] is False
    found = {(p["nip"], Path(p["file"]).name if p["file"] else "", p["problem"]) for p in problems}
    assert found == {
        ("", "", "roster"),  # line 8: the 17-digit NIP (no valid NIP to name)
        (JOLIE, "", "roster"),  # line 6: no name
        (BIDEN, "", "roster"),  # line 9: BIDEN again
        (BIDEN, "kosong.jpg", "unreadable"),
        (BIDEN, "potong.jpg", "unreadable"),
        (TWIN, "kabur.jpg", "blurry"),
        (TWIN, "group.jpg", "several_faces"),
        (TWIN, "pasfoto.jpg", "too_small"),
        (TWIN, "", "same_face"),
        (RUDD, RUDD, "no_photos"),
        ("", f"{ALEX}_2.jpg", "not_a_nip"),
        ("", f"{STRANGER}.jpg", "not_in_roster"),
    }
    detail = {(p["nip"], p["problem"], Path(p["file"]).name if p["file"] else ""): p["detail"] for p in problems}
    assert "it has 17 digits" in next(p["detail"] for p in problems if p["row"] == 8)
    assert "already on line 3" in detail[(BIDEN, "roster", "")]
    assert "has no name" in detail[(JOLIE, "roster", "")]
    assert "empty file" in detail[(BIDEN, "unreadable", "kosong.jpg")]
    assert "damaged or incomplete" in detail[(BIDEN, "unreadable", "potong.jpg")]
    assert "face 52 px wide in the 90x120 photo, at least 80 px needed" in detail[(TWIN, "too_small", "pasfoto.jpg")]
    assert "2 faces: one person per photo" in detail[(TWIN, "several_faces", "group.jpg")]
    assert f"from {OBAMA}'s" in detail[(TWIN, "same_face", "")]
    assert "it contains '_'" in detail[("", "not_a_nip", f"{ALEX}_2.jpg")]
    # the phone's photos were all read, upright, and would have been enrolled
    assert people[OBAMA]["status"] == "added" and people[OBAMA]["name"] == "Barack Obama"
    assert people[LIN]["status"] == "added" and people[LIN]["name"] == "Lin-Manuel O'Miranda"
    assert people[ALEX]["status"] == "added"
    assert people[JOLIE]["status"] == "roster_problem" and all(p["ok"] for p in people[JOLIE]["photos"])
    assert len(people[JOLIE]["photos"]) == 2
    assert people[TWIN]["status"] == "flagged"
    assert summary["refused_blurry"] == 1 and summary["roster_problems"] == 3 and summary["stray_files"] == 2
    # the report opens in Excel: BOM, ';', NIPs as ="...", a line per problem
    data = report.read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert table[0] == ["row", "NIP", "name", "file", "problem", "what to do"] and len(table) == len(problems) + 1
    assert [f'="{TWIN}"', "Someone Else"] in [r[1:3] for r in table]

    # fixed as the report says: the rows corrected, the bad files removed, the missing photo added
    rows[5] = (JOLIE, "Nur Aisyah", "Dinas Kesehatan", "")
    del rows[6:9]  # TWIN was Obama's face under another NIP; the short NIP and the repeated row go
    roster.write_bytes(codecs.BOM_UTF8 + "".join(";".join(r) + "\r\n" for r in rows).encode())
    for folder in (twin_photos, unreadable):
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    (photos / f"{ALEX}_2.jpg").unlink()
    (photos / f"{STRANGER}.jpg").unlink()
    (photos / f"{RUDD}.jpeg").symlink_to(need(FACETS / "paul_rudd" / "1.jpg"))

    assert _enroll(roster, photos, gallery, "--report", str(report)) == 0
    people, problems, summary = _results(capsys.readouterr().out)
    assert problems == [] and summary["written"] is True
    g = Gallery.load(gallery)
    assert sorted(g.nips) == sorted([OBAMA, BIDEN, LIN, ALEX, JOLIE, RUDD])
    assert g.get(BIDEN).name == "José Núñez, S.E."  # type: ignore[union-attr]
    assert g.get(JOLIE).sources == ("abu-abu.tif", "besar.jpg")  # type: ignore[union-attr]
    assert len(list(csv.reader(io.StringIO(report.read_bytes().decode("utf-8-sig")), delimiter=";"))) == 1


def test_the_rotated_phone_photo_has_no_face_unless_turned_by_its_exif(tmp_path: Path) -> None:
    """What the test above relies on: the stored pixels of the EXIF-rotated photo show no upright face."""
    path = _rotated_by_exif(TEST_IMAGES / "obama.jpg", tmp_path / "hp.jpg")
    with Image.open(path) as img:
        raw = np.asarray(img.convert("RGB"))
    assert faces.analyze_still(raw, QualityConfig(), min_face_px=80) == []


def test_an_xlsx_roster_with_printed_nips_enrols_directly(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Pegawai"
    sheet.append(["No", "NIP", "Nama", "OPD"])
    sheet.append([1, _spaced(OBAMA), "Barack Obama", "Setda"])
    sheet.append([2, _spaced(BIDEN), "Joe Biden", "Setda"])
    book.save(tmp_path / "pegawai.xlsx")
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg", BIDEN: TEST_IMAGES / "biden.jpg"})
    gallery = tmp_path / "g.kgal"
    assert _enroll(tmp_path / "pegawai.xlsx", photos, gallery) == 0
    assert {p.nip: p.unit for p in Gallery.load(gallery).people} == {OBAMA: "Setda", BIDEN: "Setda"}


def test_dry_run_writes_nothing_and_partial_enrols_the_ready_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg", BIDEN: TEST_IMAGES / "biden.jpg"})
    roster = write_roster(tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda"), (BIDEN, "", "Setda")])
    gallery = tmp_path / "g.kgal"
    assert enroll(roster, photos, gallery, "--jitters", "0", "--dry-run") == 1
    out = capsys.readouterr().out
    assert "dry run: nothing written; 1 people would be enrolled" in out
    assert f"{BIDEN} has no name" in out and not gallery.exists()
    assert enroll(roster, photos, gallery, "--jitters", "0") == 1
    assert "add --partial to enrol the 1 people who are ready now" in capsys.readouterr().out
    assert not gallery.exists()
    assert enroll(roster, photos, gallery, "--jitters", "0", "--partial") == 1
    out = capsys.readouterr().out
    assert Gallery.load(gallery).nips == [OBAMA] and "written, version 1, 1 people" in out
    for line in ("enrolled (new)", "held back: a problem in the roster row"):
        assert line in out
    good = write_roster(tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda"), (BIDEN, "Joe Biden", "Setda")])
    assert enroll(good, photos, gallery, "--jitters", "0", "--dry-run") == 0
    assert Gallery.load(gallery).version == 1
    assert enroll(good, photos, gallery, "--jitters", "0", "--dry-run", "--partial") == 2


# ------------------------------------------------------------------------------------------ what already worked


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
    assert _enroll(roster, photos, gallery, "--partial") == 1
    people, _, _ = _results(capsys.readouterr().out)
    reasons = {Path(p["path"]).name: p["reason"] for p in people[OBAMA]["photos"]}
    assert reasons["a.jpg"] is None and reasons["b.jpg"] is None
    assert reasons["c-blurred.jpg"] == "blurry"
    assert reasons["d-broken.jpg"] == "unreadable"
    assert reasons["e-dogs.jpg"] == "no_face"
    assert reasons["f-two.jpg"] == "several_faces"
    assert reasons["g-rgba.png"] is None, "a 32-bit RGBA PNG is an ordinary photo"
    assert people[OBAMA]["status"] == "added"
    assert people["199001012015011004"]["status"] == "not_enrolled"
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
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg", TWIN: TEST_IMAGES / "obama2.jpg"})
    roster = write_roster(
        tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda"), (TWIN, "Someone Else", "Dinas")]
    )
    gallery = tmp_path / "g.kgal"
    assert _enroll(roster, photos, gallery, "--partial") == 1
    people, problems, _ = _results(capsys.readouterr().out)
    assert people[TWIN]["status"] == "flagged"
    assert people[TWIN]["similar_to"]["nip"] == OBAMA
    assert [p["problem"] for p in problems] == ["same_face"] and "--allow-similar" in problems[0]["detail"]
    assert Gallery.load(gallery).nips == [OBAMA]
    assert _enroll(roster, photos, gallery, "--allow-similar") == 0
    assert sorted(Gallery.load(gallery).nips) == sorted([OBAMA, TWIN])


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


def test_a_roster_without_its_columns_still_has_its_photos_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = link_photos(tmp_path / "p", {OBAMA: TEST_IMAGES / "obama.jpg", BIDEN: EXAMPLES / "two_people.jpg"})
    roster = tmp_path / "r.csv"
    roster.write_text(f"nip,nama\n{OBAMA},Barack Obama\n{BIDEN},Joe Biden\n")
    assert _enroll(roster, photos, tmp_path / "g.kgal") == 1
    people, problems, _ = _results(capsys.readouterr().out)
    assert [p["problem"] for p in problems] == ["roster", "several_faces"]
    assert "missing column(s) unit" in problems[0]["detail"]
    assert {n: p["status"] for n, p in people.items()} == {OBAMA: "roster_problem", BIDEN: "roster_problem"}


def test_bad_usage_is_status_2(tmp_path: Path) -> None:
    roster = write_roster(tmp_path / "r.csv", [(OBAMA, "Barack Obama", "Setda")])
    assert _enroll(roster, tmp_path / "nope", tmp_path / "g.kgal") == 2
    assert _enroll(tmp_path / "nope.csv", tmp_path, tmp_path / "g.kgal") == 2
    with pytest.raises(SystemExit) as exc:
        main(["enroll", "--roster", str(roster)])
    assert exc.value.code == 2


def test_reference_photos_are_the_upright_faces_central_imports(tmp_path: Path) -> None:
    """``--reference-photos``: one small upright face per person enrolled (a HEIC-free, EXIF-free JPEG) that
    central's reviewers compare evidence with; central imports exactly those and names what it cannot take."""
    photos = tmp_path / "photos"
    photos.mkdir()
    _rotated_by_exif(TEST_IMAGES / "obama.jpg", photos / f"{OBAMA}.jpg")
    _save_as(TEST_IMAGES / "biden.jpg", photos / f"{BIDEN}.webp", "WEBP")
    roster = write_roster(tmp_path / "roster.csv", [(OBAMA, "Barack Obama", "setda"), (BIDEN, "Joe Biden", "setda")])
    out = tmp_path / "references"
    assert _enroll(roster, photos, tmp_path / "g.kgal", "--reference-photos", str(out), "--dry-run") == 0
    assert not out.exists(), "a dry run writes no reference photo either"
    assert _enroll(roster, photos, tmp_path / "g.kgal", "--reference-photos", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{BIDEN}.jpg", f"{OBAMA}.jpg"]
    assert out.stat().st_mode & 0o777 == 0o700
    with Image.open(out / f"{OBAMA}.jpg") as img:
        assert img.format == "JPEG" and max(img.size) <= 400 and not img.getexif()
        upright = np.asarray(img.convert("RGB"))
    found = faces.analyze_still(upright, QualityConfig(), min_face_px=40)
    assert len(found) == 1 and found[0].box.width >= 0.4 * upright.shape[1], "the face, upright, fills the photo"
    (out / "19800101.heic").write_bytes(b"x")
    (out / "folder").mkdir()
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "ledger.sqlite"}"\n')
    # central in its own processes (Django is configured once per process), as IT runs it
    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kiosk_central", "manage", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=120, check=False)

    assert manage("migrate", "-v", "0").returncode == 0
    done = manage("import_reference_photos", str(out))
    assert "reference photos: 2 imported, 2 skipped" in done.stdout, done
    assert "skipped 19800101.heic: not a <nip>.jpg or .png" in done.stderr
    assert "skipped folder/: not a <nip>.jpg or .png" in done.stderr
