"""Enrolment: a roster as HR exports it and photos as they come -> templates in the gallery, in one pass.

Every row of the roster (read by :mod:`kiosk_contract.roster`) and every file of the photo folder gets a verdict in
the same run, so that IT fixes everything at once (docs/enrolment.md). The photo folder holds ``<NIP>.<any>``
files (an extension is not needed: files are read by their content) and ``<NIP>/`` folders of several photos; the
NIP in a name may be printed with spaces or dots (:func:`kiosk_contract.nip.parse_nip`). A file whose name is not a
roster NIP is reported, never silently skipped.

:func:`enroll` works on a gallery in memory; whether it is written is the caller's choice (``--dry-run``,
``--partial``).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kiosk.config import RecognizerConfig
from kiosk.errors import ImageError
from kiosk.imageio import read_rgb
from kiosk.recognizer import faces
from kiosk_contract.fsutil import write_atomic
from kiosk_contract.gallery import Gallery, Person
from kiosk_contract.nip import NipError, parse_nip
from kiosk_contract.roster import RosterFile

ENROL_MIN_FACE_PX = 80  # an enrolment photo must show the face at least this wide
SECOND_FACE_RATIO = 0.5  # another face at least this fraction of the largest one makes the photo ambiguous
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})  # what Windows leaves in folders of pictures
ENROLLED = ("added", "updated")


@dataclass
class PhotoResult:
    """The verdict on one photo: ``reason`` is None when it gave a template; ``detail`` says what was measured and
    what to do."""

    path: Path
    reason: str | None
    detail: str = ""
    box: faces.Box | None = None  # the face, in the upright photo, when it gave a template


@dataclass
class PersonResult:
    """What happened to one person of the roster (``row``: the roster's line or row; ``name`` is empty for a row
    the roster reader refused)."""

    nip: str
    name: str
    unit: str
    row: int
    photos: list[PhotoResult] = field(default_factory=list)
    status: str = "pending"  # added | updated | flagged | not_enrolled | roster_problem
    similar_to: tuple[str, float] | None = None
    flagged: bool = False  # the face is within the accept distance of someone else's


@dataclass(frozen=True)
class StrayFile:
    """A file or folder of the photo folder that belongs to no roster row, with why."""

    path: Path
    reason: str  # not_a_nip | not_in_roster | nested_folder
    detail: str


@dataclass
class PhotoFolder:
    """The photo folder, indexed by NIP once."""

    root: Path
    by_nip: dict[str, list[Path]] = field(default_factory=dict)
    unnamed: list[Path] = field(default_factory=list)  # names that are not NIPs
    nested: list[Path] = field(default_factory=list)  # folders inside a person's folder


@dataclass(frozen=True)
class Finding:
    """One line of the report: something to fix, where, and what to do."""

    row: int  # roster row, 0 when it is not about one
    nip: str
    name: str
    file: str
    problem: str
    detail: str


@dataclass
class Enrolment:
    """The outcome of one run: every person, every roster problem, every file that belongs to nobody."""

    roster: RosterFile
    people: list[PersonResult]
    strays: list[StrayFile]

    def findings(self) -> list[Finding]:
        """Every problem, one per line: the roster's (in its row order), then each person's, then stray files."""
        out = []
        for p in self.roster.problems:
            value = f" {p.value!r}" if p.value and p.column else ""
            where = f"{p.column}{value}: " if p.column else ""
            name = next((r.name for r in self.people if r.nip == p.nip and r.name), "")
            out.append(Finding(p.row, p.nip, name, "", "roster", where + p.message))
        for r in self.people:
            for photo in r.photos:
                if photo.reason:
                    out.append(Finding(r.row, r.nip, r.name, str(photo.path), photo.reason, photo.detail))
            if r.flagged and r.similar_to:
                other, distance = r.similar_to
                out.append(Finding(r.row, r.nip, r.name, "", "same_face", (
                    f"the face is {distance:.3f} from {other}'s (the kiosk accepts at or under the accept distance): "
                    "the same person under two NIPs, or a look-alike; check, fix the NIP or the photo, or use "
                    "--allow-similar if they are really different people")))
        # by row, stable (a row's roster problems, then its photos); people of no row (the roster was refused as a
        # whole) after the roster's own problems
        out.sort(key=lambda f: (f.row == 0 and f.problem != "roster", f.row))
        out += [Finding(0, "", "", str(s.path), s.reason, s.detail) for s in self.strays]
        return out

    @property
    def ready(self) -> list[PersonResult]:
        """The people enrolled (into the gallery in memory) by this run."""
        return [r for r in self.people if r.status in ENROLLED]

    @property
    def complete(self) -> bool:
        """Nothing to fix: no roster problem, no refused photo, nobody flagged or left out (stray files, which
        belong to nobody on the roster, do not count)."""
        return not self.roster.problems and all(
            r.status in ENROLLED and all(p.reason is None for p in r.photos) for r in self.people)

    def summary(self) -> dict[str, int]:
        """The counts of the summary table: people by outcome, refused photos by reason, roster problems, stray
        files."""
        counts = Counter(r.status for r in self.people)
        refused = Counter(p.reason for r in self.people for p in r.photos if p.reason not in (None, "no_photos"))
        return {
            "people": len(self.people),
            "enrolled": counts["added"],
            "updated": counts["updated"],
            "flagged_same_face": counts["flagged"],
            "not_enrolled_no_usable_photo": counts["not_enrolled"],
            "without_photo": sum(any(p.reason == "no_photos" for p in r.photos) for r in self.people),
            "held_roster_problem": counts["roster_problem"],
            "roster_problems": len(self.roster.problems),
            **{f"refused_{reason}": n for reason, n in sorted(refused.items())},
            "photos_ok": sum(p.reason is None for r in self.people for p in r.photos),
            "stray_files": len(self.strays),
        }


def _nip_of(name: str) -> str | None:
    """The NIP a file or folder name stands for (``19800101 200501 1 001.JPG``, ``198001012005011001``)."""
    for candidate in (name, Path(name).stem):
        try:
            return parse_nip(candidate)
        except NipError:
            continue
    return None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower() not in SYSTEM_FILES


def _why_not_a_nip(path: Path) -> str:
    try:
        parse_nip(path.name if path.is_dir() else Path(path.name).stem, "name")
    except NipError as exc:
        return str(exc).removeprefix("name: ").split("; ")[0]
    return f"{path.name!r} is not a NIP"  # pragma: no cover - index_photos puts NIP names elsewhere


def index_photos(root: Path) -> PhotoFolder:
    """Which files of ``root`` are whose: ``<NIP>[.ext]`` files and every file of a ``<NIP>/`` folder."""
    folder = PhotoFolder(root)
    for entry in sorted(filter(_visible, root.iterdir())):
        nip = _nip_of(entry.name)
        if nip is None:
            folder.unnamed.append(entry)
        elif entry.is_dir():
            for inner in sorted(filter(_visible, entry.iterdir())):
                if inner.is_dir():
                    folder.nested.append(inner)
                else:
                    folder.by_nip.setdefault(nip, []).append(inner)
        else:
            folder.by_nip.setdefault(nip, []).append(entry)
    return folder


def _strays(folder: PhotoFolder, listed: set[str]) -> list[StrayFile]:
    out = [StrayFile(p, "not_a_nip", f"{_why_not_a_nip(p)}, so it is nobody's photo: name it <NIP>.jpg, or put a "
                     "person's photos in a folder named with the NIP") for p in folder.unnamed]
    out += [StrayFile(p, "nested_folder", f"a folder inside {p.parent.name}/ is not read: move its photos up into "
                      f"{p.parent.name}/") for p in folder.nested]
    for nip, paths in sorted(folder.by_nip.items()):
        if nip not in listed:
            out += [StrayFile(p, "not_in_roster", f"NIP {nip} is not on the roster: a typo in the file name or in "
                              "the roster, or someone who left (then remove the photo)") for p in paths]
    return out


def photo_template(path: Path, cfg: RecognizerConfig, jitters: int) -> tuple[np.ndarray | None, PhotoResult]:
    """Check one photo and encode it: readable, exactly one usable face, big, sharp, frontal enough."""
    try:
        rgb = read_rgb(path)
    except ImageError as exc:
        return None, PhotoResult(path, "unreadable", str(exc).removeprefix(f"{path}: "))
    found = faces.analyze_still(
        rgb, cfg.quality, min_face_px=ENROL_MIN_FACE_PX, jitters=jitters, encode_all=False
    )
    h, w = rgb.shape[:2]
    if not found:
        return None, PhotoResult(path, "no_face", f"no face found in the {w}x{h} photo: use a frontal, upright "
                                                  "photo of the face, or a larger one")
    main = found[0]
    others = [o for o in found[1:] if o.box.width >= SECOND_FACE_RATIO * main.box.width]
    if others:
        return None, PhotoResult(path, "several_faces", f"{len(others) + 1} faces: one person per photo (crop it "
                                                        "to this person)")
    if main.problems or main.descriptor is None:
        return None, PhotoResult(path, ",".join(main.problems), _what_to_do(main.quality, main.problems, cfg, w, h))
    return main.descriptor, PhotoResult(path, None, f"face {main.quality.face_px}px", main.box)


def _what_to_do(q: faces.Quality, problems: list[str], cfg: RecognizerConfig, w: int, h: int) -> str:
    qc = cfg.quality
    said = {
        "too_small": f"face {q.face_px} px wide in the {w}x{h} photo, at least {ENROL_MIN_FACE_PX} px needed: use "
                     "the original photo or a larger scan, not a thumbnail",
        "blurry": f"sharpness {q.sharpness:.0f}, at least {qc.min_sharpness:.0f} needed: retake it in focus, "
                  "holding still",
        "too_dark": f"brightness {q.brightness:.0f}, at least {qc.min_brightness:.0f} needed: retake it in more "
                    "light",
        "not_frontal": f"turned (yaw {q.yaw:.2f}, at most {qc.max_yaw:.2f}) or tilted (roll {q.roll_deg:.0f} deg, "
                       f"at most {qc.max_roll_deg:.0f}): retake it facing the camera",
    }
    return "; ".join(said.get(p, p) for p in problems)


def enroll(
    roster: RosterFile,
    photos: PhotoFolder,
    gallery: Gallery,
    cfg: RecognizerConfig,
    *,
    jitters: int = 5,
    allow_similar: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Enrolment:
    """Judge every roster row and photo and enrol the people who are ready into ``gallery`` (in memory).

    A person with a roster problem (or a NIP another row repeats) is held back, their photos still judged. A person
    whose templates come within ``accept_distance`` of someone else already enrolled is flagged and left out
    (unless ``allow_similar``): a look-alike the kiosk would confuse, or the same face under two NIPs. When the
    roster cannot be read as a whole (no header, missing columns), the people of the photo folder are judged, so
    that their photos' problems are in this run too.
    """
    held = roster.nips_with_problems
    people = [PersonResult(r.nip, r.name, r.unit, r.row) for r in roster.rows]
    ready_rows = {r.nip for r in roster.rows}
    first_row = {p.nip: p.row for p in reversed(roster.problems) if p.nip}  # rows the reader refused
    people += [PersonResult(nip, "", "", row) for nip, row in first_row.items() if nip not in ready_rows]
    whole_file_refused = any(p.row == 0 or not p.column for p in roster.problems) and not roster.listed
    if whole_file_refused:
        people += [PersonResult(nip, "", "", 0) for nip in sorted(photos.by_nip)]
        held = held | set(photos.by_nip)
    people.sort(key=lambda r: (r.row, r.nip))
    listed = {r.nip for r in people}
    for n, person in enumerate(people):
        _judge(person, photos, gallery, cfg, jitters, allow_similar, person.nip in held)
        if progress:
            progress(n + 1, len(people))
    return Enrolment(roster, people, _strays(photos, listed))


def _judge(person: PersonResult, photos: PhotoFolder, gallery: Gallery, cfg: RecognizerConfig, jitters: int,
           allow_similar: bool, held: bool) -> None:
    templates = []
    for path in photos.by_nip.get(person.nip, []):
        vec, photo = photo_template(path, cfg, jitters)
        person.photos.append(photo)
        if vec is not None:
            templates.append(vec)
    if not person.photos:
        person.photos.append(PhotoResult(photos.root / person.nip, "no_photos", (
            f"no photo of this NIP in {photos.root}: add {person.nip}.jpg (any image type), or a folder "
            f"{person.nip}/ with the photos")))
    if templates:
        person.similar_to = _nearest_other(gallery, person.nip, np.stack(templates))
        person.flagged = (person.similar_to is not None and not allow_similar
                          and person.similar_to[1] <= cfg.decision.accept_distance)
    if held:
        person.status = "roster_problem"
    elif not templates:
        person.status = "not_enrolled"
    elif person.flagged:
        person.status = "flagged"
    else:
        person.status = "updated" if gallery.get(person.nip) else "added"
        gallery.upsert(Person(
            person.nip, person.name, person.unit, np.stack(templates),
            enrolled_at=datetime.now(UTC).isoformat(timespec="seconds"),
            sources=tuple(p.path.name for p in person.photos if p.reason is None),
        ))


REFERENCE_MAX_PX = 400
"""The longest side of a reference photo: enough for a reviewer to compare faces, no more (UU 27/2022)."""


def reference_jpeg(photo: PhotoResult) -> bytes:
    """The enrolled face for HR's review page (central's ``import_reference_photos``): the photo upright, cropped to
    the face with half a face of margin around it, at most :data:`REFERENCE_MAX_PX` a side, a JPEG without metadata."""
    from PIL import Image

    if photo.box is None:
        raise ValueError(f"{photo.path}: no face was accepted in it")
    rgb = read_rgb(photo.path)
    b = photo.box
    mx, my = b.width // 2, (b.bottom - b.top) // 2
    crop = rgb[max(0, b.top - my):b.bottom + my, max(0, b.left - mx):b.right + mx]
    image = Image.fromarray(np.ascontiguousarray(crop))
    image.thumbnail((REFERENCE_MAX_PX, REFERENCE_MAX_PX))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def write_reference_photos(run: Enrolment, folder: Path) -> int:
    """``<nip>.jpg`` in ``folder`` (made 0700) for everyone enrolled in ``run``, from their first accepted photo,
    each written atomically; returns how many."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = 0
    for person in run.people:
        first = next((ph for ph in person.photos if ph.reason is None), None)
        if person.status in ENROLLED and first is not None:
            write_atomic(folder / f"{person.nip}.jpg", reference_jpeg(first))
            written += 1
    return written


def _nearest_other(gallery: Gallery, nip: str, templates: np.ndarray) -> tuple[str, float] | None:
    """The enrolled person (other than ``nip``) nearest to any of these templates."""
    best: tuple[str, float] | None = None
    for vec in templates:
        distances = gallery.person_distances(vec)
        for i in np.argsort(distances)[:2]:
            other = gallery.nips[i]
            if other != nip and (best is None or distances[i] < best[1]):
                best = (other, float(distances[i]))
    return best
