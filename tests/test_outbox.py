"""The durable outbox: real SQLite files in tmp_path, an injected clock, no wall-time assertions."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kiosk.errors import KioskError
from kiosk.events import outbox as outbox_module
from kiosk.events.outbox import SCHEMA_VERSION, STATES, Outbox, OutboxError, OutboxEvent, OutboxFull
from kiosk_contract.sealing import DataCipher

REPO = Path(__file__).resolve().parent.parent
DAY = 86400.0
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"  # stands in for a small evidence JPEG


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.db"


def open_outbox(db: Path, clock: Clock | None = None, **kw: object) -> Outbox:
    return Outbox.open(db, clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def seqs(events: list[OutboxEvent]) -> list[int]:
    return [e.seq for e in events]


def test_lifecycle_append_publish_republish_ack(db: Path, clock: Clock) -> None:
    with open_outbox(db, clock) as ob:
        a = ob.append("ev-a", "attendance", b'{"nip":"1"}', JPEG)
        clock.t += 1
        b = ob.append("ev-b", "attendance", b'{"nip":"2"}')
        c = ob.append("ev-c", "alarm", b"{}")
        assert (a.seq, b.seq, c.seq) == (1, 2, 3)
        assert (a.state, a.created_at, a.has_evidence, b.has_evidence) == ("pending", clock.t - 1, True, False)
        assert seqs(ob.pending()) == [1, 2, 3]
        assert ob.pending(limit=2)[1] == b
        assert ob.evidence(a.seq) == JPEG and ob.evidence(b.seq) is None

        assert ob.mark_published([a.seq, b.seq]) == 2
        assert seqs(ob.pending()) == [3]
        assert ob.counts() == {"pending": 1, "published": 2, "acknowledged": 0}
        published = ob.get("ev-a")
        assert published is not None and (published.state, published.published_at) == ("published", clock.t)
        assert seqs(ob.pending(republish_after_s=60)) == [3]  # not yet overdue
        clock.t += 61
        assert seqs(ob.pending(republish_after_s=60)) == [1, 2, 3]  # the broker may have lost them
        assert seqs(ob.pending(limit=1, republish_after_s=60)) == [1]
        assert ob.mark_published([1]) == 1
        again = ob.get(1)
        assert again is not None and again.publish_count == 2

        assert ob.acknowledge([(a.seq, "ev-a"), (b.seq, b.event_id)]) == 2
        assert ob.evidence(a.seq) is None  # personal data goes once the server has the event
        assert ob.acknowledge([(a.seq, "ev-a"), (b.seq, b.event_id)]) == 0  # idempotent
        assert ob.acknowledge([(999, "nobody")]) == 0
        assert ob.unknown_acks == 1
        assert ob.acknowledge([(3, "ev-a")]) == 0  # another event under seq 3: nothing is released
        assert ob.mismatched_acks == 1 and ob.counts()["acknowledged"] == 2
        assert ob.mark_published([1]) == 0  # an acknowledged event never goes back
        acked = ob.get("ev-a")
        assert acked is not None and (acked.state, acked.acknowledged_at) == ("acknowledged", clock.t)
        assert seqs(ob.pending(republish_after_s=0)) == [3]
        assert ob.counts() == {"pending": 1, "published": 0, "acknowledged": 2}
        third = ob.get(3)
        assert third is not None
        assert ob.acknowledge([(3, third.event_id)]) == 1  # acknowledged before it was marked published
        assert ob.pending() == []


def test_pragmas_wal_and_synchronous_full(db: Path) -> None:
    with open_outbox(db) as ob:
        assert ob._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ob._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert ob._conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_duplicate_event_id_returns_the_stored_event(db: Path) -> None:
    with open_outbox(db) as ob:
        first = ob.append("ev-1", "attendance", b"payload", JPEG)
        assert ob.append("ev-1", "attendance", b"payload", JPEG) == first
        assert ob.append("ev-1", "attendance", b"something else") == first  # the first one is kept
        ob.mark_published([first.seq])
        retried = ob.append("ev-1", "attendance", b"payload")
        assert (retried.seq, retried.state) == (first.seq, "published")
        assert ob.counts()["published"] == 1 and ob.counts()["pending"] == 0
        assert ob.append("ev-2", "attendance", b"p").seq == first.seq + 1  # the duplicate consumed no number


def test_seq_strictly_increases_across_reopen_prune_and_blocks(db: Path, clock: Clock) -> None:
    issued: list[int] = []
    for round_ in range(4):
        with open_outbox(db, clock, seq_block=3, retention_s=DAY) as ob:
            for i in range(4):
                issued.append(ob.append(f"r{round_}-{i}", "attendance", b"x").seq)
            ob.acknowledge([(e.seq, e.event_id) for e in ob.pending(limit=100)])
            clock.t += 2 * DAY
            assert ob.prune() == 4
            assert sum(ob.counts().values()) == 0  # the database is empty, the numbering goes on
    assert issued == list(range(1, 17))  # strictly increasing, no repeat, no gap on normal restarts
    side = json.loads(db.with_name("outbox.db.seq").read_text())
    assert side["reserved_end"] >= issued[-1]


def test_event_survives_a_crash_right_after_append(db: Path) -> None:
    with open_outbox(db) as ob:
        ob.append("before", "attendance", b"1")
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from kiosk.events.outbox import Outbox\n"
        "ob = Outbox.open(Path(sys.argv[1]))\n"
        "e = ob.append('crash-ev', 'attendance', b'{\"nip\":\"42\"}', b'jpeg')\n"
        "print(e.seq, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(db)], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "2"
    assert db.with_name("outbox.db-wal").exists()  # never checkpointed: the event lives in the WAL
    with open_outbox(db) as ob:
        event = ob.get("crash-ev")
        assert event is not None and (event.seq, event.payload, event.state) == (2, b'{"nip":"42"}', "pending")
        assert ob.evidence(2) == b"jpeg"
        assert ob.append("after", "attendance", b"3").seq == 3


def _truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def _garbage(db: Path) -> None:
    db.write_bytes(bytes(range(256)) * 40)


@pytest.mark.parametrize("damage", [_garbage, _truncate], ids=["garbage", "truncated"])
def test_corrupt_database_is_moved_aside_and_numbering_continues(
    db: Path, clock: Clock, damage, caplog: pytest.LogCaptureFixture
) -> None:
    with open_outbox(db, clock, seq_block=10) as ob:
        for i in range(25):
            last = ob.append(f"old-{i}", "attendance", b"p" * 300, JPEG).seq
    db.with_name("outbox.db-wal").write_bytes(b"wal leftovers")  # companions travel with the database
    damage(db)
    damaged = db.read_bytes()
    with open_outbox(db, clock, seq_block=10) as ob:
        moved = ob.recovered_from
        assert moved is not None and moved.parent == db.parent
        assert re.fullmatch(r"outbox\.db\.corrupt-\d{8}T\d{6}Z", moved.name)
        assert moved.read_bytes() == damaged  # moved, never deleted or rewritten
        assert moved.with_name(moved.name + "-wal").read_bytes() == b"wal leftovers"
        assert str(moved) in caplog.text
        assert sum(ob.counts().values()) == 0
        new = ob.append("new-1", "alarm", b"outbox recovered")
        assert new.seq > last  # never repeats a number the lost database issued
        assert ob.acknowledge([(new.seq, "new-1")]) == 1
    with open_outbox(db, clock) as ob:  # the new database is healthy
        assert ob.recovered_from is None
        assert ob.append("new-2", "attendance", b"x").seq > new.seq


def test_corrupt_database_and_lost_seq_file_continue_after_the_commit_record(db: Path, clock: Clock) -> None:
    with open_outbox(db, clock) as ob:
        last = ob.append("old", "attendance", b"x").seq
    _garbage(db)
    db.with_name("outbox.db.seq").unlink()
    with open_outbox(db, clock) as ob:
        assert ob.recovered_from is not None and ob.recovery is not None and ob.recovery.lost == ((last, last),)
        assert ob.append("new", "attendance", b"x").seq == last + 1  # the record knows the last committed number


def test_corrupt_database_with_seq_file_and_commit_record_lost_falls_back_to_the_clock(db: Path, clock: Clock) -> None:
    with open_outbox(db, clock) as ob:
        last = ob.append("old", "attendance", b"x").seq
    _garbage(db)
    db.with_name("outbox.db.seq").unlink()
    db.with_name("outbox.db.commit").unlink()
    with open_outbox(db, clock) as ob:
        assert ob.recovered_from is not None
        assert ob.recovery is not None and ob.recovery.lost == () and "cannot be named" in ob.recovery.detail
        assert ob.append("new", "attendance", b"x").seq > max(last, int(clock.t * 1000))


def test_seq_file_ahead_of_database_is_never_reused(db: Path) -> None:
    """A crash after a block was reserved but before any of it was committed: the block is skipped."""
    with open_outbox(db, seq_block=10) as ob:
        ob.append("a", "attendance", b"x")
    db.with_name("outbox.db.seq").write_text(json.dumps({"format": 1, "reserved_end": 20}))
    with open_outbox(db, seq_block=10) as ob:
        assert ob.append("b", "attendance", b"x").seq == 21


def test_lost_or_unreadable_seq_file_with_healthy_database(db: Path) -> None:
    side = db.with_name("outbox.db.seq")
    with open_outbox(db, seq_block=10) as ob:
        ob.append("a", "attendance", b"x")
    side.unlink()
    with open_outbox(db, seq_block=10) as ob:
        b = ob.append("b", "attendance", b"x").seq
        assert b > 1
    side.write_text("not json")
    with open_outbox(db, seq_block=10) as ob:
        assert ob.append("c", "attendance", b"x").seq > b
    assert any(p.name.startswith("outbox.db.seq.corrupt-") for p in db.parent.iterdir())
    assert json.loads(side.read_text())["reserved_end"] >= b + 1


def test_max_events_refuses_and_stores_nothing(db: Path) -> None:
    with open_outbox(db, max_events=3) as ob:
        for i in range(3):
            ob.append(f"e{i}", "attendance", b"x")
        with pytest.raises(OutboxFull, match="max_events=3"):
            ob.append("e3", "attendance", b"x", JPEG)
        assert ob.get("e3") is None and ob.counts()["pending"] == 3
        assert ob.append("e0", "attendance", b"x").seq == 1  # a retry of a stored event is still answered
        ob.acknowledge([(1, "e0")])  # acknowledged events no longer count
        assert ob.append("e3", "attendance", b"x").seq == 4  # the refused attempt consumed no number
        with pytest.raises(OutboxFull):
            ob.append("e4", "attendance", b"x")


def test_max_bytes_refuses_and_stores_nothing(db: Path) -> None:
    with open_outbox(db, max_bytes=200_000) as ob:
        ob.append("small", "attendance", b"x", JPEG)
        with pytest.raises(OutboxFull, match="200000 bytes"):
            ob.append("big", "attendance", b"x", b"j" * 200_000)
        assert ob.get("big") is None and ob.counts()["pending"] == 1
        assert isinstance(OutboxFull("x"), KioskError)


def test_full_disk_becomes_outbox_full_and_acks_still_work(db: Path) -> None:
    with open_outbox(db) as ob:
        for i in range(6):
            ob.append(f"e{i}", "attendance", b"p" * 200, JPEG * 2)
        pages = ob._conn.execute("PRAGMA page_count").fetchone()[0]
        ob._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: not one page more
        with pytest.raises(OutboxFull, match="full"):
            for i in range(6, 20):
                ob.append(f"e{i}", "attendance", b"p" * 200, JPEG * 2)
        refused = f"e{i}"
        assert ob.get(refused) is None and ob.evidence(i + 1) is None
        stored = ob.counts()["pending"]
        assert seqs(ob.pending(limit=100)) == list(range(1, stored + 1))  # reads work
        assert ob.mark_published([1, 2]) == 2
        assert ob.acknowledge([(1, "e0"), (2, "e1"), (3, "e2")]) == 3  # acks work (evidence deletion frees pages)
        assert ob.evidence(1) is None
        assert ob.counts() == {"pending": stored - 3, "published": 0, "acknowledged": 3}
        ob._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        assert ob.append(refused, "attendance", b"p").seq == stored + 1


def test_retention_prunes_acked_events_and_old_evidence_but_keeps_unacked(db: Path, clock: Clock) -> None:
    with open_outbox(db, clock, retention_s=30 * DAY) as ob:
        old_acked = ob.append("old-acked", "attendance", b"1", JPEG)
        old_unacked = ob.append("old-unacked", "attendance", b"2", JPEG)
        old_published = ob.append("old-published", "attendance", b"3", JPEG)
        ob.mark_published([old_published.seq])
        ob.acknowledge([(old_acked.seq, "old-acked")])
        clock.t += 20 * DAY
        new_acked = ob.append("new-acked", "attendance", b"4", JPEG)
        new_pending = ob.append("new-pending", "attendance", b"5", JPEG)
        ob.acknowledge([(new_acked.seq, "new-acked")])
        assert ob.prune() == 0  # nothing is older than the retention yet
        assert ob.evidence(old_unacked.seq) == JPEG
        clock.t += 11 * DAY
        assert ob.prune() == 1
        assert ob.get(old_acked.seq) is None
        kept = ob.get(old_unacked.seq)
        assert kept is not None and kept.state == "pending" and not kept.has_evidence
        assert ob.evidence(old_unacked.seq) is None and ob.evidence(old_published.seq) is None
        assert ob.get(old_published.seq) is not None
        assert ob.get(new_acked.seq) is not None and ob.evidence(new_pending.seq) == JPEG
        clock.t += 365 * DAY
        assert ob.prune() == 1  # new-acked; unacknowledged events are never deleted
        assert ob.counts() == {"pending": 2, "published": 1, "acknowledged": 0}
        assert ob.prune() == 0


def test_prune_works_in_chunks(db: Path, clock: Clock) -> None:
    with open_outbox(db, clock, retention_s=DAY) as ob:
        with ob._transaction():  # 1,200 acknowledged events, quickly (one transaction)
            ob._conn.executemany(
                "INSERT INTO events (seq, event_id, kind, payload, state, created_at) "
                "VALUES (?, ?, 'attendance', x'00', 'acknowledged', ?)",
                [(s, f"e{s}", clock.t) for s in range(10_001, 11_201)],
            )
        ob.append("pending", "attendance", b"x")
        clock.t += 2 * DAY
        assert ob.prune() == 1200
        assert ob.counts() == {"pending": 1, "published": 0, "acknowledged": 0}


def test_newer_schema_version_is_refused_and_left_in_place(db: Path) -> None:
    with open_outbox(db) as ob:
        ob.append("a", "attendance", b"x")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(OutboxError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        open_outbox(db)
    assert db.read_bytes() == before  # left as it was, nothing moved aside
    assert not [p for p in db.parent.iterdir() if ".corrupt-" in p.name]
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    with open_outbox(db) as ob:  # and the lock was released
        assert ob.get("a") is not None and ob.recovered_from is None


def test_one_process_at_a_time_close_is_idempotent(db: Path) -> None:
    ob = open_outbox(db)
    with pytest.raises(OutboxError, match="already open"):
        open_outbox(db)
    ob.close()
    ob.close()
    with pytest.raises(OutboxError, match="closed"):
        ob.append("a", "attendance", b"x")
    with pytest.raises(OutboxError, match="closed"):
        ob.counts()
    with open_outbox(db) as again:
        assert again.counts() == dict.fromkeys(STATES, 0)


def test_bad_arguments(db: Path) -> None:
    with pytest.raises(ValueError):
        open_outbox(db, max_events=0)
    with open_outbox(db) as ob:
        with pytest.raises(ValueError):
            ob.append("", "attendance", b"x")
        with pytest.raises(TypeError):
            ob.append("a", "attendance", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ob.acknowledge([1])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            ob.acknowledge([(1.5, "x")])  # type: ignore[list-item]
        assert ob.counts() == dict.fromkeys(STATES, 0)


def test_threads_share_one_outbox(db: Path) -> None:
    errors: list[BaseException] = []
    with open_outbox(db, seq_block=7) as ob:

        def frame_loop(n: int) -> None:
            try:
                for i in range(25):
                    ob.append(f"t{n}-{i}", "attendance", b"x")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def mqtt() -> None:
            try:
                for _ in range(25):
                    ob.mark_published([e.seq for e in ob.pending(limit=10)])
                    ob.acknowledge([(e.seq, e.event_id) for e in ob.pending(limit=5, republish_after_s=0)])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=frame_loop, args=(n,)) for n in range(3)] + [threading.Thread(target=mqtt)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(ob.counts().values()) == 75
        all_seqs = [r[0] for r in ob._conn.execute("SELECT seq FROM events ORDER BY seq")]
        assert all_seqs == list(range(1, 76))


# --- personal data at rest --------------------------------------------------------------------------------------

DATA_KEY = bytes(range(200, 232))


def test_deleted_evidence_leaves_the_database_file(db: Path, clock: Clock) -> None:
    """Acknowledged and expired photos are overwritten (secure_delete), not left in free pages of the file."""
    with open_outbox(db, clock, retention_s=DAY) as ob:
        acked = ob.append("acked", "attendance", b"1", JPEG)
        ob.append("expired", "attendance", b"2", JPEG)
        ob.acknowledge([(acked.seq, acked.event_id)])
        clock.t += 2 * DAY
        ob.prune()
        assert ob.counts()["pending"] == 1
    assert bytes(range(256)) not in db.read_bytes()


def test_evidence_is_sealed_in_the_database_and_opened_by_evidence(db: Path) -> None:
    cipher = DataCipher(DATA_KEY, "test")
    with open_outbox(db, cipher=cipher) as ob:
        first = ob.append("ev-1", "attendance", b'{"nip":"1"}', JPEG)
        second = ob.append("ev-2", "attendance", b'{"nip":"2"}', JPEG)
        ob.append("ev-3", "attendance", b'{"nip":"3"}')
        assert ob.evidence(first.seq) == JPEG and ob.evidence(second.seq) == JPEG
        assert ob.pending()[0].payload == b'{"nip":"1"}' and ob.pending()[0].has_evidence
    conn = sqlite3.connect(db)
    stored = dict(conn.execute("SELECT seq, jpeg FROM evidence").fetchall())
    conn.close()
    assert set(stored) == {first.seq, second.seq}
    assert all(not blob.startswith(b"\xff\xd8") and bytes(range(256)) not in blob for blob in stored.values())
    assert b"\xff\xd8\xff\xe0" not in db.read_bytes() and bytes(range(256)) not in db.read_bytes()


def test_a_sealed_photo_moved_to_another_event_is_refused(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    cipher = DataCipher(DATA_KEY, "test")
    with open_outbox(db, cipher=cipher) as ob:
        first = ob.append("ev-1", "attendance", b"1", JPEG)
        second = ob.append("ev-2", "attendance", b"2", JPEG + b"other")
        blobs = dict(ob._conn.execute("SELECT seq, jpeg FROM evidence").fetchall())
        swapped = [(blobs[second.seq], first.seq), (blobs[first.seq], second.seq)]
        ob._conn.executemany("UPDATE evidence SET jpeg = ? WHERE seq = ?", swapped)  # as someone editing the file
        assert ob.evidence(first.seq) is None and ob.evidence(second.seq) is None
        assert ob.get(first.seq) is not None  # the event itself stays and is still published
    assert f"the evidence photo of event {first.seq} is unusable" in caplog.text


def test_wrong_or_missing_key_is_refused_and_nothing_is_changed(db: Path, clock: Clock) -> None:
    cipher = DataCipher(DATA_KEY, "test")
    with open_outbox(db, clock, cipher=cipher, retention_s=DAY) as ob:
        acked = ob.append("acked", "attendance", b"1", JPEG)
        ob.append("pending", "attendance", b"2", JPEG)
        ob.acknowledge([(acked.seq, acked.event_id)])
    before = db.read_bytes()
    clock.t += 10 * DAY  # everything acknowledged is past retention: a prune would delete it
    other = DataCipher(bytes(reversed(DATA_KEY)), "the other key")
    with pytest.raises(OutboxError, match=rf"was encrypted with another data key \(key id {cipher.key_id};"):
        open_outbox(db, clock, cipher=other, retention_s=DAY)
    with pytest.raises(OutboxError, match=rf"key id {cipher.key_id}\), but no data key is configured"):
        open_outbox(db, clock, retention_s=DAY)
    assert db.read_bytes() == before
    with open_outbox(db, clock, cipher=cipher, retention_s=DAY) as ob:  # the right key: all there, lock released
        assert ob.counts() == {"pending": 1, "published": 0, "acknowledged": 1}
        assert ob.evidence(2) == JPEG


def test_version_1_outbox_opens_and_its_clear_evidence_is_sealed_with_a_key(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)  # an outbox as the previous release wrote it
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(outbox_module._SCHEMA)
    conn.execute(
        "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (1, 'old', 'attendance', 'p', 1)"
    )
    conn.execute("INSERT INTO evidence (seq, created_at, jpeg) VALUES (1, 1, ?)", (JPEG,))
    conn.execute("UPDATE seq_state SET last_seq = 1")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    with open_outbox(db) as ob:  # no key: opens as before, migrated
        assert ob.evidence(1) == JPEG and ob.append("new", "attendance", b"q").seq == 2
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    cipher = DataCipher(DATA_KEY, "test")
    with open_outbox(db, cipher=cipher) as ob:  # the first open with a key seals what was stored in the clear
        assert ob.evidence(1) == JPEG
        ob.append("third", "attendance", b"r", JPEG)
        assert ob.evidence(3) == JPEG
    assert bytes(range(256)) not in db.read_bytes()
