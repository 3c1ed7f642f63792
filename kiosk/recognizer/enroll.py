"""Enrolment: roster + photos -> templates in the gallery, with a verdict for every photo."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kiosk.config import RecognizerConfig
from kiosk.errors import ImageError
from kiosk.imageio import read_rgb
from kiosk.recognizer import faces
from kiosk_contract.gallery import Gallery, Person
from kiosk_contract.roster import RosterEntry

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
ENROL_MIN_FACE_PX = 80  # an enrolment photo must show the face at least this wide
SECOND_FACE_RATIO = 0.5  # another face at least this fraction of the largest one makes the photo ambiguous


@dataclass
class PhotoResult:
    """The verdict on one photo: ``reason`` is None when it gave a template."""

    path: Path
    reason: str | None
    detail: str = ""


@dataclass
class PersonResult:
    """What happened to one person of the roster."""

    entry: RosterEntry
    photos: list[PhotoResult] = field(default_factory=list)
    status: str = "pending"  # added | updated | not_enrolled | flagged
    similar_to: tuple[str, float] | None = None


def find_photos(photos: Path, nip: str) -> list[Path]:
    """``DIR/<nip>/*.jpg|png`` and ``DIR/<nip>.jpg|png``, sorted."""
    found = [p for p in (photos / nip).glob("*") if p.suffix.lower() in PHOTO_SUFFIXES]
    found += [p for p in photos.glob(f"{glob_escape(nip)}.*") if p.suffix.lower() in PHOTO_SUFFIXES]
    return sorted(found)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def photo_template(path: Path, cfg: RecognizerConfig, jitters: int) -> tuple[np.ndarray | None, PhotoResult]:
    """Check one photo and encode it: readable, exactly one usable face, big, sharp, frontal enough."""
    try:
        rgb = read_rgb(path)
    except ImageError as exc:
        return None, PhotoResult(path, "unreadable", str(exc))
    found = faces.analyze_still(
        rgb, cfg.quality, min_face_px=ENROL_MIN_FACE_PX, jitters=jitters, encode_all=False
    )
    if not found:
        return None, PhotoResult(path, "no_face", "no face found")
    main = found[0]
    others = [o for o in found[1:] if o.box.width >= SECOND_FACE_RATIO * main.box.width]
    if others:
        return None, PhotoResult(path, "several_faces", f"{len(others) + 1} faces: one person per photo")
    if main.problems or main.descriptor is None:
        q = main.quality
        detail = (
            f"face {q.face_px}px, sharpness {q.sharpness:.0f}, brightness {q.brightness:.0f}, yaw {q.yaw:.2f}"
        )
        return None, PhotoResult(path, ",".join(main.problems), detail)
    return main.descriptor, PhotoResult(path, None, f"face {main.quality.face_px}px")


def enroll(
    roster: list[RosterEntry],
    photos: Path,
    gallery: Gallery,
    cfg: RecognizerConfig,
    *,
    jitters: int = 5,
    allow_similar: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[PersonResult]:
    """Enrol every roster entry into ``gallery`` (in memory; the caller saves it).

    A person whose templates come within ``accept_distance`` of someone else already enrolled is flagged and
    left out (unless ``allow_similar``): it is either a look-alike the kiosk would confuse, or the same face
    enrolled under two NIPs.
    """
    results = []
    for n, entry in enumerate(roster):
        result = PersonResult(entry)
        templates = []
        for path in find_photos(photos, entry.nip):
            vec, photo = photo_template(path, cfg, jitters)
            result.photos.append(photo)
            if vec is not None:
                templates.append(vec)
        if not result.photos:
            result.photos.append(
                PhotoResult(photos / entry.nip, "no_photos", "no DIR/<nip>/*.jpg|png or DIR/<nip>.jpg")
            )
        if not templates:
            result.status = "not_enrolled"
        else:
            result.similar_to = _nearest_other(gallery, entry.nip, np.stack(templates))
            if (
                result.similar_to
                and result.similar_to[1] <= cfg.decision.accept_distance
                and not allow_similar
            ):
                result.status = "flagged"
            else:
                result.status = "updated" if gallery.get(entry.nip) else "added"
                gallery.upsert(
                    Person(
                        entry.nip,
                        entry.name,
                        entry.unit,
                        np.stack(templates),
                        enrolled_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        sources=tuple(p.path.name for p in result.photos if p.reason is None),
                    )
                )
        results.append(result)
        if progress:
            progress(n + 1, len(roster))
    return results


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
