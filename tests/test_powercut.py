"""Power cuts below SQLite (bench/powercut.py, issue 13) end to end, small: the faultfs shim is built with gcc, a
driver records ~120 appends under it, and cut states rebuilt from its log are opened with the real Outbox.

Also the shim's fail mode (FAULTFS_FAIL): storage that starts refusing writes under a running outbox.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import powercut  # bench/powercut.py

from kiosk.events import outbox as outbox_module

REPO = Path(__file__).resolve().parents[1]
JOURNAL = f"{powercut.DB_NAME}-journal"


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler (gcc/cc): the faultfs LD_PRELOAD shim cannot be built")
    return powercut.build_shim(tmp_path_factory.mktemp("shim"))


@pytest.fixture(scope="module")
def recording(shim: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[powercut.Recording]:
    work = tmp_path_factory.mktemp("powercut")
    rec = powercut.record(work, shim, appends=120, seed=7)
    yield rec


def test_the_log_sees_what_sqlite_and_the_outbox_do(recording: powercut.Recording) -> None:
    kinds = {(op.kind, powercut.file_kind(op.path)) for op in recording.ops}
    for expected in [
        (powercut.WRITE, "wal"),
        (powercut.SYNC, "wal"),  # SQLite's fdatasync
        (powercut.WRITE, "commit"),  # os.pwrite
        (powercut.SYNC, "commit"),  # os.fdatasync
        (powercut.CREATE, "db"),
        (powercut.RENAME, "tmp"),  # the .seq file's temp file renamed into place
        (powercut.DIRSYNC, "other"),  # "." : the state folder
        (powercut.MARKER, "other"),
    ]:
        assert expected in kinds, expected
    recorded = [op for op in recording.ops if op.kind == powercut.MARKER and bytes(op.data).startswith(b"recorded")]
    assert len(recorded) == 120
    # the marker of an append comes after the commit record's fdatasync of that append
    first = recording.ops.index(recorded[0])
    before = [op for op in recording.ops[:first] if op.kind == powercut.SYNC]
    assert before and powercut.file_kind(before[-1].path) == "commit"


def test_fifty_random_cuts_lose_nothing_silently(recording: powercut.Recording, tmp_path: Path) -> None:
    results = powercut.replay(recording, cuts=50, seed=3, check_dir=tmp_path / "check", progress=False)
    summary = powercut.summarise(results)
    assert summary["cuts"] == 50
    assert summary["silently_lost"] == 0, powercut.examples(results)
    assert summary["seq_reused"] == 0, powercut.examples(results)
    # Open failures other than the known leftover creation journal (test_hot_journal_... below) are failures.
    other = [r for r in results if r.open_error and not r.leftover_journal]
    assert not other, powercut.examples(other)
    # Not vacuous: events were checked, and cuts left volatile WAL writes torn or dropped.
    assert summary["recorded_checked"] > 1000
    assert summary["present"] > 1000
    assert summary["cuts_with_wal_torn_or_dropped"] > 5
    fates = summary["volatile_write_fates"]
    assert fates.get("wal torn", 0) > 0 and fates.get("wal dropped", 0) > 0


def test_a_card_that_damages_the_previous_commit_frame_is_reported_not_silent(
    recording: powercut.Recording, tmp_path: Path
) -> None:
    """--collateral: cuts on the first WAL write after a commit's fsync, whose flash page holds the previous
    (committed) frame: the commit record must make the outbox name what the WAL lost."""
    points: list[int] = []
    synced = False
    for i, op in enumerate(recording.ops):
        if powercut.file_kind(op.path) != "wal":
            continue
        if op.kind == powercut.SYNC:
            synced = True
        elif op.kind == powercut.WRITE:
            if synced and op.offset % powercut.FLASH_PAGE != 0:
                points.append(i)  # the power goes as this write starts: ops[:i] happened
            synced = False
    points = points[:: max(1, len(points) // 30)][:30]
    assert len(points) >= 20
    results = powercut.replay(
        recording, cuts=0, seed=5, collateral=True, check_dir=tmp_path / "check", progress=False, points=points
    )
    summary = powercut.summarise(results)
    assert summary["silently_lost"] == 0, powercut.examples(results)
    assert summary["seq_reused"] == 0, powercut.examples(results)
    assert summary["open_failures"] == 0, powercut.examples(results)
    assert summary["reported_lost"] > 0  # the damage really took committed events
    assert sum(1 for r in results if r.collateral) > 10


def test_hot_journal_left_by_the_databases_creation_does_not_stop_the_kiosk(
    recording: powercut.Recording, tmp_path: Path
) -> None:
    ops = recording.ops
    unlinks = [i for i, op in enumerate(ops) if op.kind == powercut.UNLINK and op.path == JOURNAL]
    if not unlinks:
        return  # the database is no longer created through a rollback journal: nothing to leave behind
    results = powercut.replay(
        recording,
        cuts=0,
        seed=1,
        check_dir=tmp_path / "check",
        progress=False,
        points=[unlinks[0] + 1],
        keep_names=0,
    )
    assert results[0].leftover_journal
    assert not results[0].open_error, results[0].open_error


CHILD = r"""
import json, sys
from pathlib import Path
from kiosk.events import outbox as m
ob = m.Outbox.open(Path(sys.argv[1]) / "outbox.sqlite", seq_block=5)
say = lambda **kw: print(json.dumps(kw), flush=True)
first = ob.append("ev-1", "attendance", b"{}")
say(step="first", seq=first.seq)
sys.stdin.readline()  # the parent created the control file
try:
    got = ob.append("ev-2", "attendance", b"{}")
    say(step="failing", stored=got.seq)
except m.OutboxError as exc:
    say(step="failing", raised=type(exc).__name__, message=str(exc), available=ob.available)
sys.stdin.readline()  # the parent removed it
retried = ob.retry() if hasattr(ob, "retry") else None
if retried is None:
    ob.close()
    ob = m.Outbox.open(Path(sys.argv[1]) / "outbox.sqlite", seq_block=5)
again = ob.append("ev-2", "attendance", b"{}")
third = ob.append("ev-3", "attendance", b"{}")
say(step="healed", retried=retried, seqs=[again.seq, third.seq], first=ob.get("ev-1") is not None)
ob.close()
"""


@pytest.mark.parametrize("code", [errno.EIO, errno.EROFS], ids=["EIO", "EROFS"])
def test_fail_mode_storage_that_refuses_and_comes_back(shim: Path, tmp_path: Path, code: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    control = tmp_path / "fail-now"
    env = powercut.shim_env(shim, state.resolve(), fail=control)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state)],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None

    def step() -> dict[str, object]:
        line = child.stdout.readline() if child.stdout else ""
        if not line:
            child.wait(timeout=30)
            raise AssertionError(f"the child stopped: {child.stderr.read() if child.stderr else ''}")
        answer: dict[str, object] = json.loads(line)
        return answer

    try:
        first = step()
        assert first == {"step": "first", "seq": 1}
        control.write_text(f"{code}\n")
        child.stdin.write("go\n")
        child.stdin.flush()
        failing = step()
        expected = getattr(outbox_module, "StorageUnavailable", outbox_module.OutboxError).__name__
        assert failing.get("raised") == expected, failing
        assert failing.get("available") is False
        control.unlink()
        child.stdin.write("go\n")
        child.stdin.flush()
        healed = step()
        assert healed["retried"] in (True, None)
        seqs = healed["seqs"]
        assert isinstance(seqs, list) and 1 < seqs[0] < seqs[1]
        assert healed["first"] is True
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
