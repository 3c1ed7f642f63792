"""Salvage: read what can still be read from a damaged outbox database and its write-ahead log.

When the outbox finds its files damaged it moves them aside (``<name>.corrupt-<stamp>``, ``-wal``, ``-shm``);
:func:`salvage` then reads the events rows (and their evidence) out of that set so they can be put into a new outbox.

Why this is written by hand: Python's ``sqlite3`` module has no ``.recover`` (that is a command of the separate
``sqlite3`` command-line program), and SQLite itself reads a WAL only up to its first frame whose checksum fails: one
flipped byte in the middle of the ``-wal`` file silently drops every transaction committed after it. A WAL frame's
checksum is computed from the checksum *stored* in the frame before it, so each frame can be checked on its own
against its predecessor: a damaged frame is found individually and the frames after it still verify. So this module

1. copies the database file into a private work folder (the inputs are only ever read),
2. applies the WAL's committed transactions to the copy page by page, skipping only frames that fail their own
   check (the older version of such a page stays), and
3. reads the copy through a read-only connection: a full scan when it works, otherwise seq by seq, so that rows
   on damaged pages cost only themselves (:attr:`Salvage.unreadable`).

WAL format: https://www.sqlite.org/fileformat2.html#walformat. Frames are numbered from 1, as SQLite does.
Evidence is returned as stored: sealed (bound to its seq) when the outbox had a data key (:attr:`Salvage.data_key_id`).
"""

from __future__ import annotations

import bisect
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["Salvage", "SalvagedEvent", "salvage"]

_MAX_SEQ = 2**63 - 1
_MIN_SEQ = -(2**63)
_STATES = ("pending", "published", "acknowledged")
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums over little-endian / big-endian words
_WAL_VERSION = 3007000
_WAL_HEADER = 32
_FRAME_HEADER = 24
_MASK = 0xFFFFFFFF
_MAX_FRAME_NOTES = 20  # per kind of frame fact; the rest are summed up in one note
EVIDENCE_BUDGET_BYTES = 256 << 20
"""Evidence photos held in memory by one salvage (about 17,000 photos): a full 4 GB backlog would not fit a Pi's
memory; the rest stay in the moved-aside file, and the events, which are what pays, are all kept."""
_STEPWISE = 4096  # seqs looked up one by one in a row before the end of a damaged stretch is found by bisection
_COLUMNS = "seq, event_id, kind, payload, state, created_at, published_at, publish_count, acknowledged_at"


@dataclass(frozen=True)
class SalvagedEvent:
    """One readable events row, with its evidence (as stored) when that is present and readable."""

    seq: int
    event_id: str
    kind: str
    payload: bytes
    state: str
    created_at: float
    published_at: float | None
    publish_count: int
    acknowledged_at: float | None
    evidence: bytes | None = field(repr=False)  # a photo in a log line is noise


@dataclass(frozen=True)
class Salvage:
    """What :func:`salvage` could read.

    ``unreadable`` holds inclusive seq ranges that were looked up and raised errors (rows on damaged pages; a range
    found by bisection may also cover seqs that never existed). ``wal_frames`` counts the WAL frames of the current
    generation (the header's salts, or a damaged salt with a verifying checksum); ``frames_damaged`` those whose
    checksum did not verify, whose page was therefore not applied. ``last_seq`` is the outbox's own record of the
    last seq it issued and ``data_key_id`` the id of the key that sealed the evidence, each None when unreadable or
    absent. ``absent`` holds the ranges of the ``probe`` range with neither a row nor an error: numbers never issued
    or pruned, or events lost with a damaged page whose older version was used (then ``frames_damaged`` is not 0),
    which nothing else can tell apart. ``notes`` are plain sentences for the log and the alarm.
    """

    events: tuple[SalvagedEvent, ...]
    unreadable: tuple[tuple[int, int], ...]
    wal_frames: int
    frames_damaged: int
    transactions_applied: int
    notes: tuple[str, ...]
    last_seq: int | None = None
    data_key_id: str | None = None
    absent: tuple[tuple[int, int], ...] = ()


def salvage(
    db: Path, wal: Path | None, *, probe: tuple[int, int] | None = None, workdir: Path | None = None
) -> Salvage:
    """Read the events (and evidence) that can still be read from the database ``db`` and its WAL ``wal``.

    ``wal`` None means there is no WAL. ``probe`` is an inclusive seq range to look up seq by seq when the events
    table cannot be scanned whole (default: from 1 to the highest seq the damaged file still names). The copy is
    made in a temporary folder inside ``workdir`` (default: next to ``db``, else the system's temporary folder) and
    deleted afterwards; the input files are never written. Damage of any kind ends up in the result and its notes;
    the only exception raised is :class:`OSError`, when an input file exists but cannot be read or the copy cannot
    be written.
    """
    db = Path(db)
    notes: list[str] = []
    tmp = _make_workdir(db, workdir)
    try:
        copy = tmp / "salvage.sqlite"
        replay = _build_copy(db, None if wal is None else Path(wal), copy, notes)
        found = _read_copy(copy, probe, notes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Salvage(
        events=found.events,
        unreadable=found.unreadable,
        wal_frames=replay.frames,
        frames_damaged=replay.damaged,
        transactions_applied=replay.transactions,
        notes=tuple(notes),
        last_seq=found.last_seq,
        data_key_id=found.data_key_id,
        absent=found.absent,
    )


def _make_workdir(db: Path, workdir: Path | None) -> Path:
    if workdir is not None:
        return Path(tempfile.mkdtemp(prefix=".salvage-", dir=workdir))
    try:
        return Path(tempfile.mkdtemp(prefix=f".{db.name}.salvage-", dir=db.parent))
    except OSError:  # a read-only folder (a mounted backup, say): the system's temporary folder will do
        return Path(tempfile.mkdtemp(prefix="kiosk-salvage-"))


# ---------------------------------------------------------------------- the WAL


def _wal_checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes) continuing from ``(s0, s1)``.

    Per pair of 32-bit words x, y: ``s0 += x + s1; s1 += y + s0`` modulo 2**32. ``s1`` is reduced only at the end
    (it stays far below 2**64 for a page), which is the same modulo 2**32 and a third faster in Python.
    """
    words = iter(struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data))
    for x, y in zip(words, words, strict=True):
        s0 = (s0 + x + s1) & _MASK
        s1 = s1 + y + s0
    return s0, s1 & _MASK


@dataclass(frozen=True)
class _WalHeader:
    big_endian: bool
    page_size: int
    salts: tuple[int, int]
    checksum: tuple[int, int]


@dataclass
class _Frame:
    """What the scan keeps of one frame (not its page): where it is and whether it can be applied."""

    number: int  # 1-based
    offset: int  # of the page data in the WAL file
    page: int
    db_size: int  # pages after commit; 0 when not a commit frame
    salts_match: bool
    verified: bool  # its checksum chains from the stored one of the frame before it (or see checksum_damaged)
    computed: tuple[int, int]  # its checksum computed from the stored checksum of the frame before it
    stored: tuple[int, int]
    checksum_damaged: bool = False  # the stored checksum was wrong, the content was vouched for by the next frame


@dataclass
class _Replay:
    frames: int = 0
    damaged: int = 0
    transactions: int = 0
    pages: dict[int, int] = field(default_factory=dict)  # page number -> offset of its newest applicable version
    db_pages: int | None = None  # database size after the last applied commit
    min_pages: int | None = None  # smallest size any applied commit truncated to
    page_size: int = 0


def _read_wal_header(f: BinaryIO, size: int, name: str, notes: list[str]) -> _WalHeader | None:
    if size == 0:
        notes.append(f"WAL {name} is empty: used the database file alone")
        return None
    if size < _WAL_HEADER:
        notes.append(f"WAL {name} is shorter than its header ({size} bytes): used the database file alone")
        return None
    raw = f.read(_WAL_HEADER)
    magic, version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", raw)
    problem = None
    if magic not in _WAL_MAGIC:
        problem = f"bad magic number {magic:#010x}"
    elif _wal_checksum(raw[:24], 0, 0, bool(magic & 1)) != (c1, c2):
        problem = "its header checksum does not verify"
    elif version != _WAL_VERSION:
        problem = f"unknown format version {version}"
    elif page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        problem = f"impossible page size {page_size}"
    if problem is not None:
        notes.append(f"WAL {name} has a bad header ({problem}): used the database file alone")
        return None
    return _WalHeader(bool(magic & 1), page_size, (salt1, salt2), (c1, c2))


def _scan_frames(f: BinaryIO, head: _WalHeader, count: int) -> Iterator[_Frame]:
    """Every whole frame, checked against the stored checksum of the frame before it.

    A frame fails when its first 8 header bytes or its page are damaged, or when its own stored checksum is; in the
    last case the next frame fails too, but verifies from this frame's *computed* checksum, which proves this
    frame's content intact: both are then good. Frames are yielded one behind, to allow that correction.
    """
    prev_stored = head.checksum
    pending: _Frame | None = None
    for i in range(count):
        offset = _WAL_HEADER + i * (_FRAME_HEADER + head.page_size)
        raw = f.read(_FRAME_HEADER + head.page_size)
        if len(raw) < _FRAME_HEADER + head.page_size:  # the file shrank while it was read
            break
        page, db_size, salt1, salt2, k1, k2 = struct.unpack(">6I", raw[:_FRAME_HEADER])
        body = raw[:8] + raw[_FRAME_HEADER:]
        computed = _wal_checksum(body, *prev_stored, head.big_endian)
        frame = _Frame(
            number=i + 1,
            offset=offset + _FRAME_HEADER,
            page=page,
            db_size=db_size,
            salts_match=(salt1, salt2) == head.salts,
            verified=computed == (k1, k2),
            computed=computed,
            stored=(k1, k2),
        )
        if (
            not frame.verified
            and pending is not None
            and not pending.verified
            and _wal_checksum(body, *pending.computed, head.big_endian) == frame.stored
        ):
            pending.verified = pending.checksum_damaged = True
            frame.verified = True
        if pending is not None:
            yield pending
        pending = frame
        prev_stored = frame.stored
    if pending is not None:
        yield pending


def _replay_wal(wal: Path, notes: list[str]) -> _Replay | None:
    """Scan the WAL and decide which version of which page the copy gets; None when the WAL is unusable."""
    name = wal.name
    try:
        f = wal.open("rb")
    except FileNotFoundError:
        notes.append(f"WAL {name} is missing: used the database file alone")
        return None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = _read_wal_header(f, size, name, notes)
        if head is None:
            return None
        frame_bytes = _FRAME_HEADER + head.page_size
        count, torn = divmod(size - _WAL_HEADER, frame_bytes)
        replay = _Replay(page_size=head.page_size)
        txn: dict[int, int] = {}  # pages of the transaction being read, not yet known to be committed
        uncommitted = foreign = 0
        facts: dict[str, list[str]] = {"damaged": [], "repaired": []}
        trusted = True  # the frame before is of the current generation (the header, for frame 1)
        for frame in _scan_frames(f, head, count):
            # The header's salts make a frame current. A frame with other salts is current only when its checksum
            # verifies and the frame before it is current (one salt byte damaged): frames of an earlier generation
            # verify against each other, never against the current chain, which starts from the header's checksum
            # (it covers the salts, and each WAL restart changes them).
            trusted = frame.salts_match or (frame.verified and trusted)
            if not trusted:
                foreign += 1
                continue
            replay.frames += 1
            if frame.checksum_damaged:
                facts["repaired"].append(
                    f"WAL frame {frame.number} (page {frame.page}): its stored checksum is damaged but its content "
                    "is vouched for by the next frame; applied"
                )
            elif not frame.salts_match:
                facts["repaired"].append(
                    f"WAL frame {frame.number} (page {frame.page}): salt damaged but its checksum verifies; applied"
                )
            if not frame.verified or frame.page == 0:
                replay.damaged += 1
                facts["damaged"].append(
                    f"WAL frame {frame.number} (page {frame.page} as stored) damaged: its checksum does not verify; "
                    "the older version of that page was kept"
                )
                uncommitted += 1
                continue
            txn[frame.page] = frame.offset
            uncommitted += 1
            if frame.db_size:  # a commit frame: this transaction and every one before it are committed
                replay.transactions += 1
                replay.pages.update((p, off) for p, off in txn.items() if p <= frame.db_size)
                txn.clear()
                uncommitted = 0
                if replay.db_pages is not None and frame.db_size < replay.db_pages:  # the database shrank
                    for page in [p for p in replay.pages if p > frame.db_size]:
                        del replay.pages[page]
                replay.db_pages = frame.db_size
                replay.min_pages = min(frame.db_size, replay.min_pages or frame.db_size)
    for kind in ("damaged", "repaired"):
        notes.extend(facts[kind][:_MAX_FRAME_NOTES])
        if len(facts[kind]) > _MAX_FRAME_NOTES:
            notes.append(f"... and {len(facts[kind]) - _MAX_FRAME_NOTES} more such WAL frames")
    if uncommitted:
        notes.append(
            f"WAL {name}: {uncommitted} frame(s) after the last commit (a transaction that never committed) not applied"
        )
    if torn:
        notes.append(f"WAL {name}: a partly written last frame ({torn} bytes) ignored")
    if foreign:
        notes.append(f"WAL {name}: {foreign} frame(s) of an earlier generation (other salts) ignored")
    notes.append(
        f"WAL {name}: {replay.transactions} committed transaction(s) applied from {replay.frames} frame(s)"
        + (f", {replay.damaged} damaged" if replay.damaged else "")
    )
    return replay


def _build_copy(db: Path, wal: Path | None, copy: Path, notes: list[str]) -> _Replay:
    """Copy ``db`` to ``copy`` and apply the WAL's committed pages to it; the copy is left a rollback-mode file."""
    shutil.copyfile(db, copy)  # raises OSError (missing, unreadable): the one failure the caller must see
    replay = None
    if wal is None:
        notes.append("no WAL given: used the database file alone")
    else:
        replay = _replay_wal(wal, notes)
    with copy.open("r+b") as out:
        if wal is not None and replay is not None and replay.db_pages is not None:
            size = replay.page_size
            have = os.fstat(out.fileno()).st_size
            if replay.min_pages is not None:  # pages past a truncation were only ever valid in the WAL
                out.truncate(min(have, replay.min_pages * size))
            out.truncate(replay.db_pages * size)
            with wal.open("rb") as f:
                for page in sorted(replay.pages):
                    f.seek(replay.pages[page])
                    out.seek((page - 1) * size)
                    out.write(f.read(size))
        out.seek(0)
        header = out.read(100)
        if len(header) == 100 and header.startswith(b"SQLite format 3\x00"):
            # Read and write version 1 (a rollback journal), so the copy opens read-only without -wal/-shm, and an
            # in-header page count of 0, so SQLite takes the size from the file (a stale page 1 may say less).
            out.seek(18)
            out.write(b"\x01\x01")
            out.seek(28)
            out.write(b"\x00\x00\x00\x00")
    return replay or _Replay()


# ---------------------------------------------------------------------- reading the copy


@dataclass(frozen=True)
class _Found:
    events: tuple[SalvagedEvent, ...] = ()
    unreadable: tuple[tuple[int, int], ...] = ()
    last_seq: int | None = None
    data_key_id: str | None = None
    absent: tuple[tuple[int, int], ...] = ()


def _read_copy(copy: Path, probe: tuple[int, int] | None, notes: list[str]) -> _Found:
    try:
        conn = sqlite3.connect(copy.absolute().as_uri() + "?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        notes.append(f"the copy of the database cannot be opened ({exc}): nothing salvaged")
        return _Found()
    try:
        try:
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            notes.append(f"the database is not readable as SQLite ({exc}): nothing salvaged")
            return _Found()
        if "events" not in tables:
            notes.append("the database has no events table: nothing salvaged")
            return _Found()
        last_seq = _scalar(conn, "SELECT last_seq FROM seq_state WHERE id = 1", int, "seq_state", notes)
        key_id = None
        if "data_key" in tables:
            key_id = _scalar(conn, "SELECT key_id FROM data_key WHERE id = 1", str, "data_key", notes)
        unreadable: tuple[tuple[int, int], ...] = ()
        try:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            rows, unreadable = _probe_rows(conn, probe, last_seq, exc, notes)
        events, damaged = _events(conn, rows, "evidence" in tables, notes)
        unreadable = _merge([*unreadable, *((seq, seq) for seq in damaged)])
        absent: tuple[tuple[int, int], ...] = ()
        if probe is not None:
            absent = _gaps(probe, [(e.seq, e.seq) for e in events] + list(unreadable))
        if unreadable:
            notes.append(f"events unreadable (damaged pages): seqs {_spans(unreadable)}")
        if absent:
            notes.append(f"no events row for seqs {_spans(absent)} of the probed range (never issued, or lost)")
        notes.append(f"salvaged {len(events)} event(s)")
        return _Found(events, unreadable, last_seq, key_id, absent)
    finally:
        conn.close()


def _scalar(conn: sqlite3.Connection, sql: str, kind: type[Any], what: str, notes: list[str]) -> Any:
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.Error as exc:
        notes.append(f"{what} unreadable: {exc}")
        return None
    return row[0] if row is not None and isinstance(row[0], kind) and not isinstance(row[0], bool) else None


def _events(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], has_evidence: bool, notes: list[str]
) -> tuple[tuple[SalvagedEvent, ...], list[int]]:
    """The rows as events with their evidence, and the seqs of rows whose values are damaged."""
    events = []
    bad_rows: list[int] = []
    bad_evidence: list[int] = []
    budget, over_budget = EVIDENCE_BUDGET_BYTES, 0
    for row in rows:
        event = _event(row)
        if event is None:
            if isinstance(row[0], int):
                bad_rows.append(row[0])
            continue
        if has_evidence and event.state != "acknowledged":  # an acknowledged event's photo is central's now
            if budget <= 0:
                over_budget += 1
                events.append(event)
                continue
            try:
                found = conn.execute("SELECT jpeg FROM evidence WHERE seq = ?", (event.seq,)).fetchone()
            except sqlite3.Error:
                bad_evidence.append(event.seq)
            else:
                if found is not None and isinstance(found[0], bytes):
                    event = _with_evidence(event, found[0])
                    budget -= len(found[0])
                elif found is not None:
                    bad_evidence.append(event.seq)
        events.append(event)
    if bad_rows:
        notes.append(f"{len(bad_rows)} events row(s) with impossible values (damage) left out")
    if over_budget:
        notes.append(f"evidence of {over_budget} event(s) left in the moved file: over {EVIDENCE_BUDGET_BYTES} bytes")
    if bad_evidence:
        notes.append(
            f"evidence of {len(bad_evidence)} event(s) unreadable, their events kept (seqs {bad_evidence[:20]})"
        )
    return tuple(events), bad_rows


def _event(row: tuple[Any, ...]) -> SalvagedEvent | None:
    """The row as an event, or None when a value has a type or state the outbox never writes (damage)."""
    seq, event_id, kind, payload, state, created, published, count, acked = row

    def real(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if not (
        isinstance(seq, int)
        and isinstance(event_id, str)
        and isinstance(kind, str)
        and isinstance(payload, bytes)
        and state in _STATES
        and real(created)
        and (published is None or real(published))
        and isinstance(count, int)
        and (acked is None or real(acked))
    ):
        return None
    return SalvagedEvent(
        seq,
        event_id,
        kind,
        payload,
        state,
        float(created),
        None if published is None else float(published),
        count,
        None if acked is None else float(acked),
        None,
    )


def _with_evidence(event: SalvagedEvent, jpeg: bytes) -> SalvagedEvent:
    return SalvagedEvent(
        event.seq,
        event.event_id,
        event.kind,
        event.payload,
        event.state,
        event.created_at,
        event.published_at,
        event.publish_count,
        event.acknowledged_at,
        jpeg,
    )


def _listed_seqs(conn: sqlite3.Connection) -> set[int]:
    """Every seq that some scan of the table or of one of its indexes can still list, up to the damage."""
    seqs: set[int] = set()
    scans = [f"SELECT seq FROM events ORDER BY seq {d}" for d in ("", "DESC")]
    for index, column in (
        ("events_state_seq", "state"),
        ("events_created", "created_at"),
        ("sqlite_autoindex_events_1", "event_id"),
    ):
        scans += [f"SELECT seq FROM events INDEXED BY {index} ORDER BY {column} {d}" for d in ("", "DESC")]
    for sql in scans:
        try:
            for (seq,) in conn.execute(sql):
                if isinstance(seq, int):
                    seqs.add(seq)
        except sqlite3.Error:
            continue  # what came before the damage is kept
    return seqs


def _probe_rows(
    conn: sqlite3.Connection,
    probe: tuple[int, int] | None,
    last_seq: int | None,
    why: sqlite3.Error,
    notes: list[str],
) -> tuple[list[tuple[Any, ...]], tuple[tuple[int, int], ...]]:
    """The rows that can be read one at a time, and the seq ranges whose lookups raised.

    The probe range is walked with "next row at or after x" lookups, so healthy stretches cost one lookup per row
    however sparse the seqs; where that raises, seqs are looked up one by one (``WHERE seq = ?``), and a damaged
    stretch longer than :data:`_STEPWISE` seqs is bounded by bisection. Every seq that a table or index scan still
    lists is looked up too, inside the range or not.
    """
    listed = _listed_seqs(conn)
    if probe is not None:
        lo, hi = probe
    else:
        lo = min([1, *listed])
        hi = max([*listed, last_seq or 0]) or _MAX_SEQ
    lo, hi = max(lo, _MIN_SEQ), min(hi, _MAX_SEQ)
    notes.append(f"events table cannot be scanned whole ({why}): looked rows up one by one over seqs {lo}-{hi}")
    rows: dict[int, tuple[Any, ...]] = {}
    looked: set[int] = set()  # seqs looked up individually, whatever the outcome
    raised: list[int] = []
    spans: list[tuple[int, int]] = []

    def lookup(seq: int) -> None:
        looked.add(seq)
        try:
            row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.Error:
            raised.append(seq)
            return
        if row is not None:
            rows[seq] = row

    x, streak = lo, 0
    while x <= hi:
        try:
            row = _next_row(conn, x, hi)
        except sqlite3.Error:
            if streak < _STEPWISE:
                streak += 1
                lookup(x)
                x += 1
            else:
                end = _end_of_damage(conn, x, hi)
                spans.append((x, end - 1))
                x, streak = end, 0
            continue
        streak = 0
        if row is None:
            break
        rows[row[0]] = row
        x = row[0] + 1
    for seq in sorted(listed - looked - rows.keys()):
        lookup(seq)
    unreadable = _ranges(sorted(set(raised)), spans, sorted(rows))
    return [rows[s] for s in sorted(rows)], unreadable


def _next_row(conn: sqlite3.Connection, x: int, hi: int) -> tuple[Any, ...] | None:
    """The first row numbered ``x`` to ``hi``, or None; raises where a damaged page lies in the way."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT 1"
    row: tuple[Any, ...] | None = conn.execute(sql, (x, hi)).fetchone()
    return row


def _end_of_damage(conn: sqlite3.Connection, x: int, hi: int) -> int:
    """The first seq after ``x`` (at most ``hi + 1``) from which the next row can be looked up again."""

    def fails(y: int) -> bool:
        try:
            _next_row(conn, y, hi)
        except sqlite3.Error:
            return True
        return False

    bad, step = x, 1
    while True:
        y = x + step
        if y > hi:
            good = hi + 1
            break
        if not fails(y):
            good = y
            break
        bad, step = y, step * 2
    while good - bad > 1:
        mid = (bad + good) // 2
        if fails(mid):
            bad = mid
        else:
            good = mid
    return good


def _ranges(points: list[int], spans: list[tuple[int, int]], readable: list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted points and spans merged into inclusive ranges, minus the seqs that were read after all."""
    pieces = [(p, p) for p in points]
    for a, b in spans:  # a span found by bisection may hold rows a listed seq led to
        i = bisect.bisect_left(readable, a)
        while i < len(readable) and readable[i] <= b:
            if readable[i] > a:
                pieces.append((a, readable[i] - 1))
            a = readable[i] + 1
            i += 1
        if a <= b:
            pieces.append((a, b))
    return _merge(pieces)


def _merge(pieces: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Inclusive ranges, sorted and with overlapping or adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(pieces):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def _gaps(probe: tuple[int, int], covered: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The parts of the inclusive range ``probe`` that no range of ``covered`` touches."""
    lo, hi = probe
    gaps = []
    for a, b in _merge([(max(a, lo), min(b, hi)) for a, b in covered if b >= lo and a <= hi]):
        if a > lo:
            gaps.append((lo, a - 1))
        lo = b + 1
    if lo <= hi:
        gaps.append((lo, hi))
    return tuple(gaps)


def _spans(ranges: tuple[tuple[int, int], ...], most: int = 50) -> str:
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:most])
    return text + (f" and {len(ranges) - most} more ranges" if len(ranges) > most else "")
