"""The gallery: enrolled people and their face templates, in one versioned, checksummed file.

Layout (all integers little-endian)::

    b"KGAL" | u16 format version | u16 flags | u64 header length | header (UTF-8 JSON)
    | templates: float32[T, 128] | owner: uint32[T] (index into header["people"])
    | 32-byte digest of everything before it (SHA-256, or HMAC-SHA-256 when a key is used)

Templates of one person are contiguous, so per-person minima are one ``np.minimum.reduceat``. Photos are never
stored. Files are written to a temporary neighbour, fsynced and renamed, so a crash never leaves half a gallery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.errors import GalleryError
from kiosk.fsutil import write_atomic
from kiosk.models import MODEL_ID

MAGIC = b"KGAL"
FORMAT_VERSION = 1
FLAG_HMAC = 1
DIM = 128
_PREAMBLE = struct.Struct("<4sHHQ")
_DIGEST_LEN = 32


@dataclass(frozen=True)
class Person:
    """One enrolled person: identity, unit, and the templates that stand for their face."""

    nip: str
    name: str
    unit: str
    templates: np.ndarray  # float32[k, 128]
    enrolled_at: str = ""
    sources: tuple[str, ...] = ()  # photo file names the templates came from (names only, never pixels)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description without the templates."""
        return {
            "nip": self.nip,
            "name": self.name,
            "unit": self.unit,
            "templates": len(self.templates),
            "enrolled_at": self.enrolled_at,
            "sources": list(self.sources),
        }


@dataclass
class Gallery:
    """All enrolled people, with the matrices used for 1:N matching."""

    people: list[Person] = field(default_factory=list)
    version: int = 0  # bumped at every save; devices report the version they run
    model: str = MODEL_ID

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        """Build the flat template matrix, its squared norms and each person's first row."""
        self._by_nip = {p.nip: i for i, p in enumerate(self.people)}
        if len(self._by_nip) != len(self.people):
            raise GalleryError("gallery has the same NIP twice")
        mats = [p.templates for p in self.people]
        self.matrix = np.ascontiguousarray(np.concatenate(mats) if mats else np.zeros((0, DIM)), np.float32)
        self.sq_norms = np.einsum("ij,ij->i", self.matrix, self.matrix)
        counts = np.array([len(m) for m in mats], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if mats else counts
        self.nips = [p.nip for p in self.people]

    def __len__(self) -> int:
        return len(self.people)

    def get(self, nip: str) -> Person | None:
        """The person with this NIP, if enrolled."""
        i = self._by_nip.get(nip)
        return None if i is None else self.people[i]

    def upsert(self, person: Person) -> None:
        """Add a person or replace the one with the same NIP (re-enrolment updates, never duplicates)."""
        i = self._by_nip.get(person.nip)
        if i is None:
            self.people.append(person)
        else:
            self.people[i] = person
        self._index()

    def remove(self, nips: Iterable[str]) -> list[str]:
        """Remove people by NIP; returns the NIPs that were not enrolled."""
        wanted = set(nips)
        missing = sorted(wanted - set(self._by_nip))
        self.people = [p for p in self.people if p.nip not in wanted]
        self._index()
        return missing

    def person_distances(self, query: np.ndarray) -> np.ndarray:
        """Euclidean distance from one 128-d descriptor to each person's nearest template (float32[N])."""
        if not self.people:
            return np.zeros(0, np.float32)
        q = np.asarray(query, np.float32)
        sq = self.sq_norms - 2.0 * (self.matrix @ q) + float(q @ q)
        per_person = np.minimum.reduceat(sq, self.starts)
        return np.sqrt(np.maximum(per_person, 0.0))

    def save(self, path: Path, key: bytes | None = None) -> None:
        """Write atomically: temp file in the same folder, fsync, rename, fsync the folder."""
        self.version += 1
        header = {
            "format": FORMAT_VERSION,
            "version": self.version,
            "model": self.model,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "people": [
                {k: v for k, v in p.summary().items() if k != "templates"} | {"count": len(p.templates)}
                for p in self.people
            ],
        }
        head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
        owner = np.repeat(np.arange(len(self.people), dtype="<u4"), [len(p.templates) for p in self.people])
        body = b"".join(
            [
                _PREAMBLE.pack(MAGIC, FORMAT_VERSION, FLAG_HMAC if key else 0, len(head)),
                head,
                self.matrix.astype("<f4").tobytes(),
                owner.tobytes(),
            ]
        )
        path = Path(path)
        try:
            write_atomic(path, body + _digest(body, key))
        except OSError as exc:
            raise GalleryError(  # noqa: B904 - the OS error is quoted in the message
                f"cannot write gallery {path}: {exc.strerror or exc}; the previous file is intact"
            )

    @classmethod
    def load(cls, path: Path, key: bytes | None = None) -> Gallery:
        """Read and verify a gallery; every defect is a GalleryError that names the file and what to do."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise GalleryError(f"gallery {path} does not exist: enrol people with `kiosk enroll`") from None
        except OSError as exc:
            raise GalleryError(f"cannot read gallery {path}: {exc.strerror or exc}") from None
        restore = "restore it from a backup or re-run `kiosk enroll` into a new file"
        if len(data) < _PREAMBLE.size + _DIGEST_LEN or data[:4] != MAGIC:
            raise GalleryError(f"{path} is not a kiosk gallery (bad magic or too short): {restore}")
        _, fmt, flags, head_len = _PREAMBLE.unpack_from(data)
        if fmt != FORMAT_VERSION:
            raise GalleryError(f"{path} has gallery format {fmt}; this kiosk reads format {FORMAT_VERSION}")
        body, digest = data[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
        if flags & FLAG_HMAC and key is None:
            raise GalleryError(f"{path} is signed with a key: set recognizer.gallery_key_file")
        if not hmac.compare_digest(digest, _digest(body, key if flags & FLAG_HMAC else None)):
            what = "signature" if flags & FLAG_HMAC else "checksum"
            raise GalleryError(f"{path} fails its {what} (truncated, corrupted or tampered with): {restore}")
        try:
            header = json.loads(body[_PREAMBLE.size : _PREAMBLE.size + head_len])
            meta = header["people"]
            counts = [int(m["count"]) for m in meta]
            total = sum(counts)
            off = _PREAMBLE.size + head_len
            matrix = np.frombuffer(body, "<f4", total * DIM, off).reshape(total, DIM)
            owner = np.frombuffer(body, "<u4", total, off + total * DIM * 4)
            if off + total * (DIM * 4 + 4) != len(body):
                raise ValueError("size does not match the header")
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"{path} is malformed ({exc}): {restore}") from None
        if header.get("model") != MODEL_ID:
            raise GalleryError(
                f"{path} holds templates of model {header.get('model')!r}, but this kiosk encodes with "
                f"{MODEL_ID!r}: re-enrol the people with `kiosk enroll`"
            )
        if not np.array_equal(owner, np.repeat(np.arange(len(counts), dtype="<u4"), counts)):
            raise GalleryError(f"{path} is malformed (templates out of order): {restore}")
        starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
        people = [
            Person(
                nip=m["nip"],
                name=m["name"],
                unit=m["unit"],
                templates=matrix[starts[i] : starts[i + 1]],  # read-only views of one buffer
                enrolled_at=m.get("enrolled_at", ""),
                sources=tuple(m.get("sources", ())),
            )
            for i, m in enumerate(meta)
        ]
        return cls(people=people, version=int(header["version"]))


def _digest(body: bytes, key: bytes | None) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest() if key else hashlib.sha256(body).digest()
