"""The outbox's commit record: what the kiosk committed, kept where damage to the outbox database cannot take it along.

SQLite treats a WAL frame with a bad checksum as the end of the log, by design, and opens a truncated or replaced
file as a healthy (smaller) database: the database alone cannot tell that committed events are missing. This small
file beside it can. After every committed append it holds the highest committed ``seq``, a running SHA-256 digest
of every committed ``(seq, event_id)`` (so a database replaced by another one with as many events is told apart),
and the lowest unacknowledged seq (so a loss names only events that central may not hold).

Layout: two 512-byte slots (one disk sector each), written alternately in place with ``pwrite`` + ``fdatasync``. A
power cut can tear only the slot being written; the other still holds the state one commit earlier, which the
outbox accepts (its database is then one commit ahead). Each slot carries a counter (the newer valid slot wins) and
a CRC-32. Hand-written because it is 80 lines of ``struct``; a second SQLite file would share the failure it guards.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from kiosk_contract.fsutil import fsync_dir

SLOT_BYTES = 512
MAGIC = b"KOCR"
FORMAT = 1
_LAYOUT = struct.Struct(">4sBxxxQQQ32s")  # magic, format, counter, last_seq, acked_below, digest
EMPTY_DIGEST = bytes(32)


@dataclass(frozen=True)
class CommitState:
    """What was committed: ``last_seq`` (0: nothing yet), the digest after it, and the lowest seq that may be
    unacknowledged (every seq below it is acknowledged)."""

    last_seq: int
    digest: bytes
    acked_below: int


def chain(digest: bytes, seq: int, event_id: str) -> bytes:
    """The running digest after committing event ``event_id`` as ``seq``."""
    return sha256(digest + seq.to_bytes(8, "big") + event_id.encode("utf-8")).digest()


class CommitRecord:
    """The two-slot record file; :meth:`open` it, :meth:`write` after each commit, :meth:`close` it."""

    def __init__(self, path: Path, fd: int, state: CommitState | None, counter: int, damaged: bool) -> None:
        self.path = path
        self.state = state  # None: a new file, or (``damaged``) one whose slots both fail their checks
        self.damaged = damaged
        self._fd = fd
        self._counter = counter

    @classmethod
    def open(cls, path: Path) -> CommitRecord:
        """Open or create the record; raises OSError when the storage refuses."""
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not existed:
                fsync_dir(path.parent)
            data = os.pread(fd, 2 * SLOT_BYTES, 0)
        except BaseException:
            os.close(fd)
            raise
        slots = [_decode(data[i * SLOT_BYTES : (i + 1) * SLOT_BYTES]) for i in range(2)]
        valid = [s for s in slots if s is not None]
        if not valid:
            return cls(path, fd, None, 0, damaged=any(data))
        counter, state = max(valid, key=lambda s: s[0])
        return cls(path, fd, state, counter, damaged=False)

    def write(self, state: CommitState) -> None:
        """Durably record ``state`` in the older slot; raises OSError when the storage refuses."""
        counter = self._counter + 1
        body = _LAYOUT.pack(MAGIC, FORMAT, counter, state.last_seq, state.acked_below, state.digest)
        slot = body + struct.pack(">I", zlib.crc32(body))
        os.pwrite(self._fd, slot.ljust(SLOT_BYTES, b"\0"), (counter % 2) * SLOT_BYTES)
        os.fdatasync(self._fd)
        self._counter = counter
        self.state = state
        self.damaged = False

    def close(self) -> None:
        os.close(self._fd)


def _decode(slot: bytes) -> tuple[int, CommitState] | None:
    size = _LAYOUT.size
    if len(slot) < size + 4:
        return None
    body, (crc,) = slot[:size], struct.unpack(">I", slot[size : size + 4])
    if zlib.crc32(body) != crc:
        return None
    magic, fmt, counter, last_seq, acked_below, digest = _LAYOUT.unpack(body)
    if magic != MAGIC or fmt != FORMAT:
        return None
    return counter, CommitState(last_seq, digest, acked_below)
