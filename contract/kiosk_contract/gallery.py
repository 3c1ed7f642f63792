"""The gallery: enrolled people and their face templates, in one versioned, checksummed file.

Layout (all integers little-endian)::

    b"KGAL" | u16 format version | u16 flags | u64 header length | header (UTF-8 JSON)
    | templates: float32[T, 128] | owner: uint32[T] (index into header["people"])
    | 32-byte digest of everything before it (SHA-256, or HMAC-SHA-256 when a key is used)

On a device with a data key (``device.data_key``, see docs/privacy.md) the file on disk is that whole file, sealed::

    b"KGAS" | u16 sealed-format version | u16 flags (0) | 8-byte key id
    | nonce (12) | AES-256-GCM ciphertext of the plaintext gallery file | tag (16)

with the first 16 bytes as associated data, so the file holds no template, name or NIP in the clear. The plaintext
inside keeps its checksum or HMAC signature, which is verified after decryption as before.

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

from kiosk_contract.errors import GalleryError
from kiosk_contract.fsutil import write_atomic
from kiosk_contract.sealing import DataCipher, SealError

MODEL_ID = "dlib_face_recognition_resnet_model_v1"
"""The encoder whose 128-d templates a gallery holds; a gallery of another model is refused everywhere."""
MAGIC = b"KGAL"
FORMAT_VERSION = 1
FLAG_HMAC = 1
DIM = 128
_PREAMBLE = struct.Struct("<4sHHQ")
_DIGEST_LEN = 32
SEALED_MAGIC = b"KGAS"
SEALED_VERSION = 1
_SEALED_HEAD = struct.Struct("<4sHH8s")
_RESTORE = "restore it from a backup or re-run `kiosk enroll` into a new file"


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
    office: str | None = None  # the office a gallery cut by central is for; kiosks report it with the version

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

    def save(self, path: Path, key: bytes | None = None, *, cipher: DataCipher | None = None) -> None:
        """Write atomically (temp file, fsync, rename, fsync the folder) as the next version; sealed with ``cipher``
        when given."""
        self.version += 1
        data = self.to_bytes(key)
        _write(Path(path), data if cipher is None else _seal(data, cipher))

    def to_bytes(self, key: bytes | None = None) -> bytes:
        """The plaintext gallery file of this version: a checksum, or an HMAC with ``key``."""
        header = {
            "format": FORMAT_VERSION,
            "version": self.version,
            "model": self.model,
            **({"office": self.office} if self.office is not None else {}),
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
        return body + _digest(body, key)

    @classmethod
    def from_bytes(cls, data: bytes, key: bytes | None = None, *, origin: str = "the gallery") -> Gallery:
        """A gallery from the bytes of a plaintext gallery file, verified (``origin`` names it in errors)."""
        return cls._parse(origin, data, key)

    @classmethod
    def load(cls, path: Path, key: bytes | None = None, *, cipher: DataCipher | None = None) -> Gallery:
        """Read and verify a gallery; every defect is a GalleryError that names the file and what to do.

        With ``cipher`` (the device has a data key) the file must be sealed with that key; a plaintext file is
        refused. Without it a sealed file is refused.
        """
        path = Path(path)
        return cls._parse(path, _unseal(path, _read(path), cipher), key)

    @classmethod
    def _parse(cls, path: Path | str, data: bytes, key: bytes | None) -> Gallery:
        """A gallery from the bytes of a plaintext gallery file (``path`` names it in errors), verified with its
        checksum or HMAC ``key``."""
        if len(data) < _PREAMBLE.size + _DIGEST_LEN or data[:4] != MAGIC:
            raise GalleryError(f"{path} is not a kiosk gallery (bad magic or too short): {_RESTORE}")
        _, fmt, flags, head_len = _PREAMBLE.unpack_from(data)
        if fmt != FORMAT_VERSION:
            raise GalleryError(f"{path} has gallery format {fmt}; this kiosk reads format {FORMAT_VERSION}")
        body, digest = data[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
        if flags & FLAG_HMAC and key is None:
            raise GalleryError(f"{path} is signed with a key: set recognizer.gallery_key_file")
        if not hmac.compare_digest(digest, _digest(body, key if flags & FLAG_HMAC else None)):
            what = "signature" if flags & FLAG_HMAC else "checksum"
            raise GalleryError(f"{path} fails its {what} (truncated, corrupted or tampered with): {_RESTORE}")
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
            raise GalleryError(f"{path} is malformed ({exc}): {_RESTORE}") from None
        if header.get("model") != MODEL_ID:
            raise GalleryError(
                f"{path} holds templates of model {header.get('model')!r}, but this kiosk encodes with "
                f"{MODEL_ID!r}: re-enrol the people with `kiosk enroll`"
            )
        if not np.array_equal(owner, np.repeat(np.arange(len(counts), dtype="<u4"), counts)):
            raise GalleryError(f"{path} is malformed (templates out of order): {_RESTORE}")
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
        office = header.get("office")
        return cls(people=people, version=int(header["version"]), office=office if isinstance(office, str) else None)


def seal_gallery(src: Path, dst: Path, cipher: DataCipher, key: bytes | None = None) -> Gallery:
    """Encrypt the plaintext gallery file ``src`` into ``dst`` for this device (``dst`` may be ``src``)."""
    src = Path(src)
    return store_sealed(_read(src), dst, cipher, key, origin=str(src))


def store_received(
    data: bytes,
    dst: Path,
    key: bytes | None,
    cipher: DataCipher | None,
    *,
    origin: str = "the received gallery",
    expect: tuple[int, str | None] | None = None,
) -> Gallery:
    """Verify a plaintext gallery file received from central and write it to ``dst`` as it is (its version kept),
    sealed when the device has a data key; ``dst`` is replaced atomically, and only by a gallery that verified and,
    with ``expect``, is of that (version, office)."""
    if cipher is not None:
        gallery, stored = seal_bytes(data, cipher, key, origin=origin)
    else:
        gallery, stored = Gallery._parse(origin, data, key), data
    if expect is not None and (gallery.version, gallery.office) != expect:
        raise GalleryError(f"{origin} is version {gallery.version} of office {gallery.office}, but its command says "
                           f"version {expect[0]} of office {expect[1]}; the gallery is unchanged")
    _write(Path(dst), stored)
    return gallery


def store_sealed(
    data: bytes, dst: Path, cipher: DataCipher, key: bytes | None = None, *, origin: str = "the received gallery"
) -> Gallery:
    """Verify the bytes of a plaintext gallery file (as received from central) and write them to ``dst`` sealed, so
    no plaintext copy touches the disk; ``dst`` is replaced atomically, and only by a gallery that verified."""
    gallery, sealed = seal_bytes(data, cipher, key, origin=origin)
    _write(Path(dst), sealed)
    return gallery


def seal_bytes(
    data: bytes, cipher: DataCipher, key: bytes | None = None, *, origin: str = "the gallery"
) -> tuple[Gallery, bytes]:
    """The gallery in ``data`` (a plaintext gallery file) and the bytes of its sealed file, for a device image.

    The data is verified first (checksum, or HMAC with ``key``) and sealed byte for byte, so its version and
    signature are kept. ``origin`` names the data in errors.
    """
    if data[:4] == SEALED_MAGIC:
        raise GalleryError(f"{origin} is already sealed with a device data key: give the plaintext gallery")
    return Gallery._parse(origin, data, key), _seal(data, cipher)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GalleryError(f"gallery {path} does not exist: enrol people with `kiosk enroll`") from None
    except OSError as exc:
        raise GalleryError(f"cannot read gallery {path}: {exc.strerror or exc}") from None


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise GalleryError(  # noqa: B904 - the OS error is quoted in the message
            f"cannot write gallery {path}: {exc.strerror or exc}; the previous file is intact"
        )


def _seal(data: bytes, cipher: DataCipher) -> bytes:
    head = _SEALED_HEAD.pack(SEALED_MAGIC, SEALED_VERSION, 0, bytes.fromhex(cipher.key_id))
    return head + cipher.seal("gallery", data, head)


def _unseal(path: Path, data: bytes, cipher: DataCipher | None) -> bytes:
    """The plaintext gallery file in ``data``: opened with ``cipher`` when sealed; refuses a mismatch either way."""
    if data[:4] != SEALED_MAGIC:
        if cipher is not None and data[:4] == MAGIC:
            raise GalleryError(
                f"{path} is a plaintext gallery, but this device keeps the gallery encrypted (device.data_key): "
                "seal it, as root on the device: `kiosk gallery seal --config /etc/kiosk/kiosk.toml IN OUT`, "
                "then remove the plaintext copy"
            )
        return data  # a plaintext gallery, or something that is not a gallery (reported by _parse)
    if len(data) < _SEALED_HEAD.size:
        raise GalleryError(f"{path} is a truncated sealed gallery: {_RESTORE}")
    _, version, _, key_id = _SEALED_HEAD.unpack_from(data)
    if version != SEALED_VERSION:
        raise GalleryError(f"{path} has sealed-gallery format {version}; this kiosk reads format {SEALED_VERSION}")
    if cipher is None:
        raise GalleryError(
            f"{path} is encrypted with a device data key (key id {key_id.hex()}): set device.data_key "
            "(and data_key_file) as on the device, and pass --config"
        )
    if key_id.hex() != cipher.key_id:
        raise GalleryError(
            f"{path} was encrypted with another data key (key id {key_id.hex()}; this device's key, from "
            f"{cipher.source}, has id {cipher.key_id}): it was copied from another kiosk or the key changed; "
            "seal the plaintext gallery from central for this device with `kiosk gallery seal`"
        )
    head = data[: _SEALED_HEAD.size]
    try:
        return cipher.open("gallery", data[_SEALED_HEAD.size :], head)
    except SealError:
        raise GalleryError(
            f"{path} fails its authentication (truncated, corrupted or tampered with): {_RESTORE}"
        ) from None


def _digest(body: bytes, key: bytes | None) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest() if key else hashlib.sha256(body).digest()
