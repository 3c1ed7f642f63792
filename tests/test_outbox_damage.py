"""What an SD card does to the outbox: a damaged WAL, a truncated or replaced database, a torn commit record, storage
that turns read-only. Real SQLite files; the writer is killed (``os._exit``) so the WAL is never checkpointed."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.events.commitrecord import SLOT_BYTES, CommitRecord, _decode
from kiosk.events.outbox import Outbox, StorageUnavailable

REPO = Path(__file__).resolve().parent.parent
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"

WRITER = """
import os, sys
from pathlib import Path
from kiosk.events.outbox import Outbox
db, n, acked = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ob = Outbox.open(db, seq_block=7)
events = [ob.append(f"ev-{i:04d}", "attendance", (f'{{"i":{i}}}' + "x" * 900).encode(),
                    bytes([i % 251]) * 3000 if i % 3 == 0 else None) for i in range(n)]
ob.acknowledge([(e.seq, e.event_id) for e in events[:acked]])
os._exit(0)  # no close, no checkpoint: the committed events are in the WAL
"""


def crash_after(db: Path, n: int, acked: int = 0) -> None:
    """Append ``n`` events (the first ``acked`` acknowledged) in a process that dies without closing."""
    subprocess.run([sys.executable, "-c", WRITER, str(db), str(n), str(acked)], check=True, cwd=REPO, timeout=60)


def wal_frames(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return (wal.stat().st_size - 32) // (24 + 4096)


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def plain_sqlite_count(db: Path, scratch: Path) -> int:
    """How many events SQLite itself sees in a copy of the set (it stops at the first bad WAL frame)."""
    scratch.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(db.with_name(db.name + suffix), scratch / ("copy.db" + suffix))
    with sqlite3.connect(scratch / "copy.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def accounted(ob: Outbox, n: int, acked: int = 0) -> tuple[int, int, list[str]]:
    """(present, reported lost, silently lost event ids) of events ev-0000.. appended as seqs 1..n, the first
    ``acked`` of them acknowledged by the server (delivered: the outbox may let them go)."""
    lost = ob.recovery.lost if ob.recovery else ()
    present = reported = 0
    silent = []
    for i in range(n):
        if i < acked or ob.get(f"ev-{i:04d}") is not None:
            present += 1
        elif any(a <= i + 1 <= b for a, b in lost):
            reported += 1
        else:
            silent.append(f"ev-{i:04d}")
    return present, reported, silent


def test_a_flipped_byte_in_the_wal_is_found_salvaged_and_named(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    crash_after(db, 60, acked=10)
    frames = wal_frames(db)
    assert frames > 40  # the events are in the WAL, not the database file
    flip(db.with_name("outbox.db-wal"), 32 + (frames // 2) * (24 + 4096) + 24 + 2000)  # page data of a middle frame
    sqlite_sees = plain_sqlite_count(db, tmp_path / "plain")
    assert sqlite_sees < 45  # SQLite alone silently drops every later commit: what the fault run found

    with Outbox.open(db) as ob:
        assert ob.recovery is not None and ob.recovery.reason == "behind"
        moved = ob.recovery.moved_to
        assert moved.exists() and moved.with_name(moved.name + "-wal").exists()
        present, reported, silent = accounted(ob, 60, acked=10)
        assert silent == []
        assert present > sqlite_sees  # frames after the damage were salvaged too
        assert present + reported == 60
        assert ob.recovery.salvaged >= present - 0  # every present event came from the salvage
        nxt = ob.append("after", "attendance", b"{}")
        assert nxt.seq > 60  # numbers are never reused (the bug: the same 13 seqs handed out again)
        assert ob.take_recoveries() == [ob.recovery] and ob.take_recoveries() == []
        salvaged = ob.get("ev-0003")
        assert salvaged is None or salvaged.state == "acknowledged"
        with_photo = ob.get("ev-0030")
        assert with_photo is None or ob.evidence(with_photo.seq) == bytes([30]) * 3000

    with Outbox.open(db) as again:  # the new outbox and the record agree: no second recovery
        assert again.recovery is None
        assert again.get("after") is not None


def test_a_database_truncated_to_nothing_with_its_wal_gone_reports_every_unacknowledged_seq(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    crash_after(db, 30, acked=12)
    with Outbox.open(db) as ob:  # checkpoint: the acknowledgements reach the database file and the record
        assert ob.recovery is None and ob.counts()["acknowledged"] == 12
    db.write_bytes(b"")
    assert not db.with_name("outbox.db-wal").exists()

    with Outbox.open(db) as ob:
        assert ob.recovery is not None and ob.recovery.reason == "behind"
        assert ob.recovery.lost == ((13, 30),)  # the acknowledged 1..12 are central's already
        assert "seq 13..30" in ob.recovery.detail
        assert ob.recovery.moved_to.stat().st_size == 0  # moved exactly as found, never deleted
        _, reported, silent = accounted(ob, 30, acked=12)
        assert silent == [] and reported == 18
        assert ob.append("next", "attendance", b"{}").seq > 30


def test_a_replaced_database_with_as_many_events_is_told_apart_by_the_digest(tmp_path: Path) -> None:
    db, other = tmp_path / "a" / "outbox.db", tmp_path / "b" / "outbox.db"
    for path, prefix in ((db, "ev"), (other, "zz")):
        with Outbox.open(path) as ob:
            for i in range(5):
                ob.append(f"{prefix}-{i:04d}", "attendance", b"{}")
    shutil.copy(other, db)  # IT restores the wrong file, or a card is swapped between kiosks
    with Outbox.open(db) as ob:
        assert ob.recovery is not None and ob.recovery.reason == "replaced"
        assert ob.recovery.salvaged == 5  # the other file's rows are kept (seq 1..5 of another history)...
        assert ob.recovery.lost == ()  # ...and this kiosk's seq 1..5 count as recovered by number only
        assert ob.append("next", "attendance", b"{}").seq == 6 or ob.get("next") is not None


def test_a_torn_commit_record_slot_costs_nothing(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    with Outbox.open(db) as ob:
        for i in range(4):
            ob.append(f"ev-{i:04d}", "attendance", b"{}")
    record = db.with_name("outbox.db.commit")
    data = record.read_bytes()
    slots = [_decode(data[i * SLOT_BYTES : (i + 1) * SLOT_BYTES]) for i in (0, 1)]
    assert all(slots)
    newer = max((0, 1), key=lambda i: slots[i][0])  # type: ignore[index]
    assert slots[newer][1].last_seq == 4  # type: ignore[index]
    start = newer * SLOT_BYTES  # a power cut tore the last write: its first 40 bytes are garbage
    record.write_bytes(data[:start] + b"\xff" * 40 + data[start + 40 :])
    left = CommitRecord.open(record)
    assert left.state is not None and left.state.last_seq in (3, 4) and not left.damaged
    left.close()
    with Outbox.open(db) as ob:
        assert ob.recovery is None
        assert ob.append("next", "attendance", b"{}").seq == 5


def test_the_database_one_commit_ahead_of_the_record_is_a_crash_not_a_loss(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    with Outbox.open(db) as ob:
        ob.append("ev-0000", "attendance", b"{}")
        before = bytes(db.with_name("outbox.db.commit").read_bytes())
        ob.append("ev-0001", "attendance", b"{}")
    db.with_name("outbox.db.commit").write_bytes(before)  # the record's write after seq 2 never reached the card
    with Outbox.open(db) as ob:
        assert ob.recovery is None
        assert ob.append("ev-0002", "attendance", b"{}").seq == 3


def test_an_outbox_from_before_the_commit_record_is_upgraded_without_alarm(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    with Outbox.open(db) as ob:
        ob.append("ev-0000", "attendance", b"{}")
    db.with_name("outbox.db.commit").unlink()
    with sqlite3.connect(db) as conn:  # a version 2 database: no digest columns
        conn.execute("ALTER TABLE seq_state DROP COLUMN digest")
        conn.execute("ALTER TABLE seq_state DROP COLUMN prev_digest")
        conn.execute("PRAGMA user_version = 2")
    with Outbox.open(db) as ob:
        assert ob.recovery is None
        assert ob.append("ev-0001", "attendance", b"{}").seq == 2
    with Outbox.open(db) as ob:
        assert ob.recovery is None


READ_ONLY_AT_START = """
import subprocess, sys
from pathlib import Path
from kiosk.events.outbox import Outbox, StorageUnavailable
state = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "none", str(state)], check=True)
remount = lambda mode: subprocess.run(["mount", "-o", f"remount,{mode}", str(state)], check=True)
db = state / "outbox.db"
with Outbox.open(db) as ob:
    ob.append("ev-1", "attendance", b"{}")
remount("ro")
try:
    Outbox.open(db)
except StorageUnavailable as exc:
    print("open raises StorageUnavailable:", "Read-only" in str(exc))
down = Outbox.open_or_wait(db)
print("down:", down.available, bool(down.problem), down.pending(), down.counts())
try:
    down.append("ev-2", "attendance", b"{}")
except StorageUnavailable:
    print("append refused")
print("retry while ro:", down.retry())
remount("rw")
print("retry after rw:", down.retry(), down.available, down.problem)
print("stored after:", down.append("ev-2", "attendance", b"{}").seq, down.get("ev-1") is not None, down.recovery)
down.close()
"""


def test_a_read_only_state_folder_at_start_gives_a_down_outbox_that_comes_back(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("user and mount namespaces (unshare -rm) are not available here")
    state = tmp_path / "state"
    state.mkdir()
    run = subprocess.run(["unshare", "-rm", sys.executable, "-c", READ_ONLY_AT_START, str(state)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "open raises StorageUnavailable: True",
        "down: False True [] {'pending': 0, 'published': 0, 'acknowledged': 0}",
        "append refused",
        "retry while ro: False",
        "retry after rw: True True None",
        "stored after: 2 True None",
    ], run.stdout + run.stderr


@pytest.fixture
def ext4(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real ext4 file system on a loop device, mounted with errors=remount-ro (root and loop devices needed)."""
    image, mnt = tmp_path / "card.img", tmp_path / "card"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(32 << 20)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop,errors=remount-ro", str(image), str(mnt)], capture_output=True
    ).returncode == 0
    if not mounted:
        pytest.skip("cannot mount an ext4 image on a loop device here (needs root and /dev/loop*)")
    device = Path(subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], capture_output=True, text=True).stdout.strip())
    trigger = Path("/sys/fs/ext4") / device.name / "trigger_fs_error"
    try:
        if not trigger.exists():
            pytest.skip(f"{trigger} is missing: this kernel cannot be asked for an ext4 error")
        yield mnt, trigger
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_an_ext4_error_that_turns_the_card_read_only_mid_run_is_refused_not_a_crash(ext4) -> None:  # type: ignore[no-untyped-def]
    mnt, trigger = ext4
    ob = Outbox.open(mnt / "state" / "outbox.db")
    try:
        first = ob.append("ev-1", "attendance", b"{}", JPEG)
        trigger.write_text("kiosk test: the card failed\n")  # what the kernel does after an ext4 error
        with pytest.raises(StorageUnavailable, match="read-only"):
            ob.append("ev-2", "attendance", b"{}")
        assert not ob.available and ob.problem
        assert ob.get("ev-2") is None and ob.pending() == [] and ob.counts()["pending"] == 1
        assert ob.retry() is False  # still read-only: refused again, cleanly
        with pytest.raises(StorageUnavailable):
            ob.acknowledge([(first.seq, "ev-1")])
        with pytest.raises(StorageUnavailable):
            ob.prune()
    finally:
        ob.close()


def test_storage_unavailable_is_an_outbox_error_naming_the_file(tmp_path: Path) -> None:
    from kiosk.events.outbox import OutboxError

    assert issubclass(StorageUnavailable, OutboxError)
    blocked = tmp_path / "file"
    blocked.write_text("")
    os.chmod(tmp_path, 0o755)
    with pytest.raises(OutboxError, match="outbox"):
        Outbox.open(blocked / "outbox.db")  # the state folder is a file: a clear error, not a traceback


def test_a_salvage_that_fails_still_opens_the_outbox_and_names_the_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiosk.events import salvage

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug met a damaged page")

    db = tmp_path / "outbox.db"
    crash_after(db, 12, acked=4)
    with Outbox.open(db):  # checkpointed: the database file holds everything
        pass
    db.write_bytes(b"not a database at all" * 100)
    monkeypatch.setattr(salvage, "salvage", broken)
    with Outbox.open(db) as ob:
        assert ob.recovery is not None and ob.recovery.salvaged == 0
        assert ob.recovery.lost == ((5, 12),) and "salvage failed: a bug met a damaged page" in ob.recovery.detail
        assert ob.recovery.moved_to.exists()  # kept for IT: `sqlite3 <file> .recover`
        assert ob.append("next", "attendance", b"{}").seq > 12
