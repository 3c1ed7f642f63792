"""Salvage of a damaged outbox: real SQLite files written by the real Outbox, then damaged byte by byte.

Each damage case checks what SQLite itself (a plain connection on a copy) would give, so that the test fails for a
salvage that only reads the files the way SQLite does. The WAL and b-tree pages are parsed here by a few lines of
independent code (frame headers, SQLite's checksum, table leaf cells) to find what to damage and what is on it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiosk.events.outbox import Outbox
from kiosk.events.salvage import Salvage, salvage
from kiosk_contract.sealing import DataCipher

COLUMNS = "seq, event_id, kind, payload, state, created_at, published_at, publish_count, acknowledged_at"
DATA_KEY = bytes(range(200, 232))
Row = tuple[object, ...]


def payload(i: int) -> bytes:
    # ~300 bytes: about a dozen events rows per 4 KB leaf page, so a page holds some rows, not all
    return json.dumps({"nip": f"{i:018d}", "kind": "in", "note": "x" * 250}).encode()


def jpeg(i: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + bytes([i % 251]) * 1200 + b"\xff\xd9"


def sql(ob: Outbox) -> sqlite3.Connection:
    """The outbox's own connection, to set pragmas and make states (only open/append/close are relied on)."""
    conn = ob._conn
    assert conn is not None
    return conn


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    """An open outbox that never checkpoints by itself, so its WAL keeps every frame."""
    ob = Outbox.open(tmp_path / "live" / "outbox.sqlite")
    sql(ob).execute("PRAGMA wal_autocheckpoint = 0")
    yield ob
    ob.close()


def fill(ob: Outbox, first: int, last: int, *, evidence: bool = True) -> None:
    for i in range(first, last + 1):
        ob.append(f"ev-{i}", "attendance", payload(i), evidence=jpeg(i) if evidence else None)


def snapshot(ob: Outbox, dest: Path) -> tuple[Path, Path]:
    """Copies of the open outbox's database and WAL, as a crash at this moment would leave them."""
    dest.mkdir(parents=True, exist_ok=True)
    db, wal = dest / "outbox.sqlite.corrupt-x", dest / "outbox.sqlite.corrupt-x-wal"
    shutil.copyfile(ob.path, db)
    shutil.copyfile(ob.path.with_name(ob.path.name + "-wal"), wal)
    return db, wal


def rows_of(conn: sqlite3.Connection) -> dict[int, Row]:
    sql = f"SELECT {COLUMNS}, (SELECT jpeg FROM evidence WHERE evidence.seq = events.seq) FROM events ORDER BY seq"
    return {int(r[0]): tuple(r) for r in conn.execute(sql)}


def sqlite_sees(db: Path, wal: Path | None, tmp: Path) -> dict[int, Row]:
    """What SQLite itself reads from these files (on copies, which it may change)."""
    tmp.mkdir(parents=True, exist_ok=True)
    copy = tmp / "naive.sqlite"
    shutil.copyfile(db, copy)
    if wal is not None:
        shutil.copyfile(wal, tmp / "naive.sqlite-wal")
    conn = sqlite3.connect(copy)
    try:
        return rows_of(conn)
    finally:
        conn.close()


def salvaged(s: Salvage) -> dict[int, Row]:
    return {
        e.seq: (
            e.seq,
            e.event_id,
            e.kind,
            e.payload,
            e.state,
            e.created_at,
            e.published_at,
            e.publish_count,
            e.acknowledged_at,
            e.evidence,
        )
        for e in s.events
    }


def digest(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def run(db: Path, wal: Path | None, probe: tuple[int, int] | None = None) -> Salvage:
    """salvage(), checking that it left its inputs byte-identical and its work folder gone."""
    inputs = [p for p in (db, wal) if p is not None and p.exists()]
    before = digest(*inputs)
    listing = sorted(db.parent.iterdir())
    result = salvage(db, wal, probe=probe)
    assert digest(*inputs) == before
    assert sorted(db.parent.iterdir()) == listing
    assert [e.seq for e in result.events] == sorted(e.seq for e in result.events)
    return result


# ---------------------------------------------------------------------- an independent reader of the file format


def sqlite_checksum(data: bytes, s0: int, s1: int) -> tuple[int, int]:
    """The WAL checksum as the file format page describes it (little-endian words: magic 0x377f0682)."""
    words = struct.unpack(f"<{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based
    offset: int  # of the frame header
    page: int
    db_size: int
    salts: tuple[int, int]


def wal_frames(wal: bytes) -> tuple[int, tuple[int, int], list[Frame]]:
    magic, _v, page_size, _c, salt1, salt2 = struct.unpack(">6I", wal[:24])
    assert magic == 0x377F0682  # the machines that run these tests are little-endian
    frames = []
    for i in range((len(wal) - 32) // (24 + page_size)):
        off = 32 + i * (24 + page_size)
        page, db_size, s1, s2 = struct.unpack(">4I", wal[off : off + 16])
        frames.append(Frame(i, off, page, db_size, (s1, s2)))
    return page_size, (salt1, salt2), frames


def current_frames(wal: bytes) -> list[Frame]:
    _, salts, frames = wal_frames(wal)
    return [f for f in frames if f.salts == salts]


def page_of(wal: bytes, frame: Frame, page_size: int) -> bytes:
    return wal[frame.offset + 24 : frame.offset + 24 + page_size]


def varint(b: bytes, p: int) -> tuple[int, int]:
    v = 0
    for i in range(8):
        c = b[p + i]
        v = (v << 7) | (c & 0x7F)
        if c < 0x80:
            return v, p + i + 1
    return (v << 8) | b[p + 8], p + 9


def leaf(page: bytes, pgno: int) -> tuple[str | None, list[int]]:
    """("events" or "evidence", rowids) for a table leaf page of one of those tables, else (None, [])."""
    h = 100 if pgno == 1 else 0
    if page[h] != 0x0D:
        return None, []
    kinds, rowids = set(), []
    for k in range(int.from_bytes(page[h + 3 : h + 5], "big")):
        p = int.from_bytes(page[h + 8 + 2 * k : h + 10 + 2 * k], "big")
        _, p = varint(page, p)
        rowid, p = varint(page, p)
        size, q = varint(page, p)
        types = []
        while q < p + size:
            t, q = varint(page, q)
            types.append(t)
        if len(types) == 9 and types[0] == 0 and types[1] >= 13 and types[1] % 2:
            kinds.add("events")
        elif len(types) == 3 and types[0] == 0 and types[1] == 7:
            kinds.add("evidence")
        else:
            kinds.add("other")
        rowids.append(rowid)
    return (kinds.pop() if kinds in ({"events"}, {"evidence"}) else None), rowids


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def rewrite_frame(wal: bytearray, frame: Frame, page_size: int, *, db_size: int) -> None:
    """Change a frame's db-size field and redo the checksum chain from there on, as SQLite would have written it."""
    struct.pack_into(">I", wal, frame.offset + 4, db_size)
    at = frame.offset - page_size - 8 if frame.index else 24  # the previous frame's checksum, or the header's
    prev = struct.unpack(">2I", wal[at : at + 8])
    off = frame.offset
    while off + 24 + page_size <= len(wal):
        body = bytes(wal[off : off + 8] + wal[off + 24 : off + 24 + page_size])
        prev = sqlite_checksum(body, *prev)
        struct.pack_into(">2I", wal, off + 16, *prev)
        off += 24 + page_size


# ---------------------------------------------------------------------- 1. healthy


def test_healthy_database_and_wal_every_event_with_evidence_states_and_times(tmp_path: Path) -> None:
    cipher = DataCipher(DATA_KEY, "test")
    with Outbox.open(tmp_path / "live" / "outbox.sqlite", cipher=cipher) as ob:
        sql(ob).execute("PRAGMA wal_autocheckpoint = 0")
        fill(ob, 1, 30)
        ob.append("ev-plain", "alarm", b"{}")  # no evidence
        conn = sql(ob)  # the states as publishing and acknowledging leave them (their API is not relied on)
        conn.execute(
            "UPDATE events SET state = 'published', published_at = created_at + 5, publish_count = 2 "
            "WHERE seq BETWEEN 5 AND 14"
        )
        conn.execute(
            "UPDATE events SET state = 'acknowledged', acknowledged_at = created_at + 9 WHERE seq BETWEEN 5 AND 9"
        )
        conn.execute("DELETE FROM evidence WHERE seq BETWEEN 5 AND 9")
        expected = rows_of(sql(ob))
        db, wal = snapshot(ob, tmp_path / "aside")
    commits = [f for f in current_frames(wal.read_bytes()) if f.db_size]
    assert len(expected) == 31 and len(commits) > 31  # the test means something: the rows are in the WAL

    s = run(db, wal, probe=(1, 31))

    assert salvaged(s) == expected
    assert s.absent == ()
    assert {e.state for e in s.events} == {"pending", "published", "acknowledged"}
    assert s.events[6].published_at is not None and s.events[6].acknowledged_at is not None
    assert s.events[6].evidence is None and s.events[30].evidence is None  # acknowledged; never had one
    assert cipher.open("evidence", s.events[0].evidence or b"", (1).to_bytes(8, "big")) == jpeg(1)
    assert (s.unreadable, s.frames_damaged) == ((), 0)
    assert s.wal_frames == len(current_frames(wal.read_bytes()))
    assert s.transactions_applied == len(commits)
    assert (s.last_seq, s.data_key_id) == (31, cipher.key_id)


# ---------------------------------------------------------------------- 2. and 3. a damaged frame in the middle


@pytest.fixture
def middle(outbox: Outbox, tmp_path: Path) -> tuple[Path, Path, dict[int, Row], Frame, set[int]]:
    """60 events in the WAL; the frame holding the last version of an events leaf page in the middle of the log,
    and the events that only that version holds (the previous version of the page lacks them)."""
    fill(outbox, 1, 60)
    expected = rows_of(sql(outbox))
    db, wal = snapshot(outbox, tmp_path / "aside")
    data = wal.read_bytes()
    page_size, _, frames = wal_frames(data)
    versions: dict[int, list[Frame]] = {}
    for f in frames:
        kind, _rows = leaf(page_of(data, f, page_size), f.page)
        if kind == "events":
            versions.setdefault(f.page, []).append(f)
    third = len(frames) // 3
    chosen = [v for v in versions.values() if len(v) >= 2 and third <= v[-1].index < 2 * third]
    assert chosen, "no events leaf page whose last version lies in the middle of the WAL"
    *_, older, last = chosen[0]
    only_there = set(leaf(page_of(data, last, page_size), last.page)[1]) - set(
        leaf(page_of(data, older, page_size), older.page)[1]
    )
    assert only_there and len(leaf(page_of(data, older, page_size), older.page)[1]) >= 3
    return db, wal, expected, last, only_there


def test_flipped_byte_in_a_middle_frame_loses_at_most_that_page(
    middle: tuple[Path, Path, dict[int, Row], Frame, set[int]], tmp_path: Path
) -> None:
    db, wal, expected, frame, only_there = middle
    flip(wal, frame.offset + 24 + 2000)  # in the page data

    naive = sqlite_sees(db, wal, tmp_path / "naive")
    assert list(naive) == list(range(1, len(naive) + 1))  # SQLite stops at the damaged frame...
    assert len(naive) < min(only_there)  # ...and loses every transaction after it

    s = run(db, wal, probe=(1, 60))
    assert salvaged(s) == {seq: row for seq, row in expected.items() if seq not in only_there}
    assert s.frames_damaged == 1 and s.unreadable == ()
    assert s.absent == tuple((seq, seq) for seq in sorted(only_there))  # what the caller may count as lost
    assert any(f"WAL frame {frame.index + 1} (page {frame.page} as stored) damaged" in n for n in s.notes)


@pytest.mark.parametrize("where", ["page number", "salt", "stored checksum"])
def test_flipped_byte_in_a_frame_header(
    middle: tuple[Path, Path, dict[int, Row], Frame, set[int]], tmp_path: Path, where: str
) -> None:
    db, wal, expected, frame, only_there = middle
    flip(wal, frame.offset + {"page number": 2, "salt": 9, "stored checksum": 21}[where])

    naive = sqlite_sees(db, wal, tmp_path / "naive")
    assert len(naive) < min(only_there)

    s = run(db, wal)
    if where == "page number":  # covered by the checksum: the frame is damaged, its page keeps its older version
        assert salvaged(s) == {seq: row for seq, row in expected.items() if seq not in only_there}
        assert s.frames_damaged == 1
    else:  # not covered (salt), or the next frame vouches for the content (checksum): the frame is applied
        assert salvaged(s) == expected
        assert s.frames_damaged == 0
        assert any(f"WAL frame {frame.index + 1} (page {frame.page})" in n and "applied" in n for n in s.notes)
    assert s.wal_frames == len(wal_frames(wal.read_bytes())[2])


def test_a_damaged_frame_healed_by_a_later_version_of_its_page(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 40)
    expected = rows_of(sql(outbox))
    db, wal = snapshot(outbox, tmp_path / "aside")
    data = wal.read_bytes()
    page_size, _, frames = wal_frames(data)
    events_frames = [f for f in frames if leaf(page_of(data, f, page_size), f.page)[0] == "events"]
    early = next(
        f
        for f in events_frames[len(events_frames) // 3 :]
        if any(g.page == f.page and g.index > f.index for g in events_frames)
    )
    flip(wal, early.offset + 24 + 100)

    assert len(sqlite_sees(db, wal, tmp_path / "naive")) < len(expected)
    s = run(db, wal)
    assert salvaged(s) == expected
    assert s.frames_damaged == 1


# ---------------------------------------------------------------------- 4. to 6. the end of the log


def test_wal_cut_in_the_middle_of_a_frame_keeps_what_was_committed_before(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 30)
    expected = rows_of(sql(outbox))
    db, wal = snapshot(outbox, tmp_path / "aside")
    data = wal.read_bytes()
    page_size, _, frames = wal_frames(data)
    cut = frames[len(frames) // 2]
    wal.write_bytes(data[: cut.offset + 24 + page_size // 2])
    naive = sqlite_sees(db, wal, tmp_path / "naive")
    assert 0 < len(naive) < len(expected)

    s = run(db, wal)
    assert salvaged(s) == naive == {seq: row for seq, row in expected.items() if seq <= len(naive)}
    assert s.frames_damaged == 0 and s.wal_frames == cut.index
    assert any("partly written last frame" in n for n in s.notes)


def test_frames_of_a_transaction_that_never_committed_are_not_applied(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 20)
    before = rows_of(sql(outbox))
    fill(outbox, 21, 21)
    db, wal = snapshot(outbox, tmp_path / "aside")
    data = bytearray(wal.read_bytes())
    page_size, _, frames = wal_frames(bytes(data))
    last_commit = frames[-1]
    previous_commit = max(f.index for f in frames[:-1] if f.db_size)
    tail = frames[previous_commit + 1 :]
    assert any(21 in leaf(page_of(bytes(data), f, page_size), f.page)[1] for f in tail)
    rewrite_frame(data, last_commit, page_size, db_size=0)  # the same frames, but no commit frame among them
    wal.write_bytes(bytes(data))
    assert sqlite_sees(db, wal, tmp_path / "naive") == before  # SQLite agrees: nothing of event 21

    s = run(db, wal)
    assert salvaged(s) == before
    assert s.frames_damaged == 0 and s.wal_frames == len(frames)
    assert any(f"{len(tail)} frame(s) after the last commit" in n for n in s.notes)


def test_frames_of_an_earlier_wal_generation_are_ignored(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 40)
    sql(outbox).execute("PRAGMA wal_checkpoint(RESTART)")  # the next write starts the WAL over, new salts
    fill(outbox, 41, 45)
    expected = rows_of(sql(outbox))
    db, wal = snapshot(outbox, tmp_path / "aside")
    data = wal.read_bytes()
    page_size, _, frames = wal_frames(data)
    current = current_frames(data)
    old = frames[len(current) :]
    assert len(old) > 2 * len(current) and not any(f.salts == current[0].salts for f in old)
    # The old frames verify against each other (all but the first): salts, not checksums alone, tell them apart.
    chained = [
        f
        for p, f in itertools.pairwise(old)
        if sqlite_checksum(
            data[f.offset : f.offset + 8] + page_of(data, f, page_size),
            *struct.unpack(">2I", data[p.offset + 16 : p.offset + 24]),
        )
        == struct.unpack(">2I", data[f.offset + 16 : f.offset + 24])
    ]
    assert len(chained) == len(old) - 1
    assert {leaf(page_of(data, f, page_size), f.page)[0] for f in old} >= {"events"}  # stale versions of pages

    s = run(db, wal)
    assert salvaged(s) == expected
    assert s.wal_frames == len(current) and s.frames_damaged == 0
    assert any(f"{len(old)} frame(s) of an earlier generation" in n for n in s.notes)


# ---------------------------------------------------------------------- 7. the database file itself


def leaf_pages(db: Path, kind: str) -> list[tuple[int, list[int]]]:
    """(page number, rowids) of every leaf page of ``kind`` in the database file, in rowid order."""
    data = db.read_bytes()
    size = int.from_bytes(data[16:18], "big")
    found = []
    for n in range(len(data) // size):
        k, rowids = leaf(data[n * size : (n + 1) * size], n + 1)
        if k == kind:
            found.append((n + 1, rowids))
    return sorted(found, key=lambda p: min(p[1]))


def garble(db: Path, pgno: int) -> None:
    data = bytearray(db.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    data[(pgno - 1) * size : pgno * size] = b"\xa5" * size
    db.write_bytes(bytes(data))


def test_a_garbled_page_in_the_database_file(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 90)
    expected = rows_of(sql(outbox))
    sql(outbox).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db, wal = snapshot(outbox, tmp_path / "aside")
    assert wal.stat().st_size == 0
    events_leaves = leaf_pages(db, "events")
    page, lost = events_leaves[len(events_leaves) // 2]
    ev_page, no_photo = next((p, r) for p, r in leaf_pages(db, "evidence") if min(r) > max(lost) + 5 and max(r) < 85)
    garble(db, page)
    garble(db, ev_page)
    with pytest.raises(sqlite3.DatabaseError):
        sqlite_sees(db, None, tmp_path / "naive")

    s = run(db, wal)
    got = salvaged(s)
    assert set(got) == set(expected) - set(lost)
    assert s.unreadable == ((min(lost), max(lost)),) and sorted(lost) == list(range(min(lost), max(lost) + 1))
    for seq, row in got.items():
        assert row == ((*expected[seq][:-1], None) if seq in no_photo else expected[seq])
    assert any("WAL" in n and "is empty" in n for n in s.notes)
    assert any(f"evidence of {len(no_photo)} event(s) unreadable" in n for n in s.notes)
    # Probing further than the table reaches finds nothing more and nothing unreadable past the last row; a
    # narrower probe still gets every row some scan of the table or an index lists.
    wide = run(db, wal, probe=(1, 10_000))
    assert (wide.unreadable, wide.absent) == (s.unreadable, ((91, 10_000),))
    narrow = run(db, wal, probe=(min(lost) - 2, max(lost) + 2))
    assert salvaged(narrow) == got and (narrow.unreadable, narrow.absent) == (s.unreadable, ())


def test_sparse_seqs_in_a_garbled_page_are_bounded_by_bisection(outbox: Outbox, tmp_path: Path) -> None:
    sql(outbox).executemany(  # numbers far apart, as after a recovery that continued from the clock
        "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (?, ?, 'attendance', ?, ?)",
        [(1_000 + i * 10_000_000, f"ev-{i}", payload(i), 1.7e9 + i) for i in range(120)],
    )
    expected = rows_of(sql(outbox))
    sql(outbox).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db, wal = snapshot(outbox, tmp_path / "aside")
    leaves = leaf_pages(db, "events")
    page, lost = leaves[len(leaves) // 2]
    garble(db, page)

    s = run(db, wal)
    assert set(salvaged(s)) == set(expected) - set(lost)
    assert all(any(a <= seq <= b for a, b in s.unreadable) for seq in lost)
    assert not any(a <= seq <= b for a, b in s.unreadable for seq in salvaged(s))


def test_a_row_with_values_the_outbox_never_writes_is_unreadable(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 20, evidence=False)
    expected = rows_of(sql(outbox))
    sql(outbox).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db, wal = snapshot(outbox, tmp_path / "aside")
    page, _rows = leaf_pages(db, "events")[0]
    data = db.read_bytes()
    at = data.index(b"pending", (page - 1) * 4096)  # in a row, not in the schema or an index
    db.write_bytes(data[:at] + b"pendinX" + data[at + 7 :])  # SQLite has no page checksums: it reads this fine
    assert len(sqlite_sees(db, wal, tmp_path / "naive")) == 20

    s = run(db, wal, probe=(1, 20))
    ((bad, also),) = s.unreadable
    assert bad == also and salvaged(s) == {seq: row for seq, row in expected.items() if seq != bad}
    assert s.absent == ()


def test_ten_thousand_events_in_the_wal_then_with_a_garbled_page(outbox: Outbox, tmp_path: Path) -> None:
    conn = sql(outbox)  # one transaction: the per-event fsync of append() is not what this test is about
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (?, ?, 'attendance', ?, ?)",
        [(i, f"ev-{i}", payload(i), 1.7e9 + i) for i in range(1, 10_001)],
    )
    conn.executemany(
        "INSERT INTO evidence (seq, created_at, jpeg) VALUES (?, ?, ?)",
        [(i, 1.7e9 + i, jpeg(i)) for i in range(1, 10_001, 10)],
    )
    conn.execute("COMMIT")
    expected = rows_of(conn)
    db, wal = snapshot(outbox, tmp_path / "wal")
    assert salvaged(run(db, wal, probe=(1, 10_000))) == expected

    sql(outbox).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db, wal = snapshot(outbox, tmp_path / "garbled")
    leaves = leaf_pages(db, "events")
    for page, _rows in leaves[100:103]:
        garble(db, page)
    lost = {seq for _page, rows in leaves[100:103] for seq in rows}
    s = run(db, wal, probe=(1, 10_000))
    assert set(salvaged(s)) == set(expected) - lost
    assert s.unreadable == ((min(lost), max(lost)),) and s.absent == ()


# ---------------------------------------------------------------------- 8. not a database at all


@pytest.mark.parametrize("content", [b"", b"this is not a database, just some text\n" * 200])
def test_an_empty_or_garbage_database_file_gives_an_empty_salvage(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "outbox.sqlite.corrupt-x"
    db.write_bytes(content)
    for wal in (None, tmp_path / "outbox.sqlite.corrupt-x-wal"):  # none given; given but missing
        s = run(db, wal)
        assert (s.events, s.unreadable, s.wal_frames, s.transactions_applied) == ((), (), 0, 0)
        assert any("nothing salvaged" in n for n in s.notes)


def test_a_bad_wal_header_falls_back_to_the_database_file(outbox: Outbox, tmp_path: Path) -> None:
    fill(outbox, 1, 5)
    sql(outbox).execute("PRAGMA wal_checkpoint(PASSIVE)")
    checkpointed = rows_of(sql(outbox))
    fill(outbox, 6, 8)
    db, wal = snapshot(outbox, tmp_path / "aside")
    flip(wal, 13)  # the checkpoint sequence number, covered by the header's checksum
    s = run(db, wal)
    assert salvaged(s) == checkpointed
    assert any("bad header" in n for n in s.notes)
    wal.write_bytes(wal.read_bytes()[:20])
    assert salvaged(run(db, wal)) == checkpointed


def test_an_unreadable_input_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        salvage(tmp_path / "missing.sqlite", None)
