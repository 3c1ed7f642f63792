"""Power cuts below SQLite: is every event the screen called "recorded" still in the outbox, or reported lost?

Issue 13 ("The outbox survives what an SD card does"). Three steps:

1. **Record.** A driver child (this file with ``--driver``) runs under the LD_PRELOAD shim
   ``bench/powercut/faultfs.c`` (built with gcc into a temp folder at run time). It opens an :class:`Outbox` in an
   empty state folder (``seq_block=50``, so the ``.seq`` side file is replaced often) and appends a few hundred
   events: ~1 KB payloads, one in five with a ~15 KB evidence blob, some ``mark_published``, ``acknowledge`` of
   earlier (seq, event_id) pairs, ``prune`` (an injected clock of 30 s per event against a one-hour retention, so
   acknowledged events really are deleted) and one close and reopen midway. After each ``append`` returns — the
   moment the kiosk's screen says "recorded" — it writes ``recorded <seq> <event_id> <sha256>`` to the file
   ``markers`` beside the state folder. The shim logs every state-changing call under the state folder (writes
   with their offset and bytes, truncates, fsync/fdatasync of files and folders, creates, renames, unlinks) and
   each marker, in one stream, in the order the calls happened.
2. **Replay.** For each of N cut points drawn at random (seeded) over the logged operations, the files are rebuilt
   as the card could hold them had the power gone at that point: every operation before the cut happened, none
   after it did (the one at the cut never did).
3. **Check.** Each rebuilt folder is opened by the real :class:`Outbox` (in this process, no shim). Every event
   marked "recorded" before the cut must be there (same seq, same payload) or its seq must lie in a range of
   ``outbox.recovery.lost`` (the outbox's own report of committed events it could not recover). Anything else is
   a **silent loss**. An open that raises is an **open failure** (the kiosk would not start). A pruned event (its
   acknowledgement and the prune that deleted it happened before the cut) may be gone. Then one more event is
   appended: its seq must be above every seq marked before the cut (no number is ever reused).

The disk model (what "could hold" means):

- **Sectors are 512 bytes; the card honours fsync.** ``fsync``/``fdatasync`` of a file makes every earlier write
  and truncate of that file durable: they survive any later cut exactly as written. Nothing is reordered across
  an fsync of the same file, and a durable sector is never damaged later (``--collateral`` drops that promise).
- **Volatile data.** Each write or truncate made to a file since its last fsync is volatile. At the cut each
  volatile write independently (seeded) *survives* whole, is *dropped* (the sectors keep what they held before),
  or is *torn*: only a prefix of it, ending on a 512-byte sector boundary, reaches the card (a write within one
  sector cannot tear). A volatile truncate survives or not. The surviving ones are applied in their original
  order, so volatile writes may land in any subset, as a page cache flushing in its own order would. A file
  ends at the furthest surviving byte (or its durable size); a hole left by a dropped write reads as zeros.
- **Names.** Creating a file, renaming and unlinking change its folder. An fsync of the folder makes those
  changes durable; without one, a random prefix (in log order) of the pending name changes survives, as with an
  ordered metadata journal (ext4, f2fs): a later rename never survives without the create before it. An fsync
  of a file does *not* make its name durable here (POSIX does not promise it; ext4 happens to). The state
  folder itself exists before the driver starts.
- **Not modelled.** The ``-shm`` wal-index (SQLite writes it through mmap and rebuilds it from the WAL when the
  first connection opens after a crash) is left out of the rebuilt folder. Cards that acknowledge an fsync and
  then lose the data are out of the default model. ``--collateral`` adds the best-known SD-card failure on top:
  a card rewrites a whole flash page to change one sector, so the write in flight at the cut damages the 4 KiB
  page under it: each of its eight 512-byte sectors is, with probability 1/2, replaced by garbage or zeros, even
  a sector made durable long before (say the commit frame of the previous transaction in the WAL).

Run: ``.venv/bin/python bench/powercut.py --cuts 1000 --seed 1`` (about 20 s on the development VM: one recording,
then 1,000 cuts under each model, ``--model honest|collateral|both``), ``--quick`` (60 cuts each), ``--json out.json``
for the figures, ``--keep`` to keep the work folder (recording, log, every failing state). Exits 1 when any event
was lost silently, an open failed, or a seq was issued twice.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, Progress, ensure_repo_on_path, markdown_table

ensure_repo_on_path()

from kiosk.events.outbox import Outbox, OutboxError  # noqa: E402

SHIM_SOURCE = Path(__file__).resolve().parent / "powercut" / "faultfs.c"
DB_NAME = "outbox.sqlite"
SECTOR = 512
FLASH_PAGE = 4096  # --collateral: the unit a card rewrites (and can destroy) when the power goes mid-write
T0 = 1_700_000_000.0  # the driver's clock starts here and advances STEP_S per event
STEP_S = 30.0
RETENTION_S = 3600.0
SEQ_BLOCK = 50

# Log operations (bench/powercut/faultfs.c).
WRITE, TRUNCATE, SYNC, CREATE, RENAME, UNLINK, DIRSYNC, MARKER, MKDIR, RMDIR = range(1, 11)
OP_NAMES = {
    WRITE: "write",
    TRUNCATE: "truncate",
    SYNC: "fsync",
    CREATE: "create",
    RENAME: "rename",
    UNLINK: "unlink",
    DIRSYNC: "dirsync",
    MARKER: "marker",
    MKDIR: "mkdir",
    RMDIR: "rmdir",
}
_HEADER = struct.Struct("=IIQQ")
_MAGIC = 0xFA170000

# Fates of a volatile write at the cut.
SURVIVED, DROPPED, TORN = "survived", "dropped", "torn"


# ---------------------------------------------------------------------- the shim


def build_shim(folder: Path) -> Path:
    """Compile faultfs.c into ``folder/faultfs.so``; raises RuntimeError when there is no C compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH: the faultfs shim cannot be built")
    out = folder / "faultfs.so"
    done = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out), str(SHIM_SOURCE), "-ldl", "-lpthread"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"building {SHIM_SOURCE} failed:\n{done.stderr}")
    return out


def shim_env(shim: Path, root: Path, log: Path | None = None, fail: Path | None = None) -> dict[str, str]:
    """The environment of a child that runs under the shim (logging to ``log``, failing while ``fail`` exists)."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(shim)
    env["FAULTFS_ROOT"] = str(root)
    if log is not None:
        env["FAULTFS_LOG"] = str(log)
    if fail is not None:
        env["FAULTFS_FAIL"] = str(fail)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "contract"), str(REPO / "central"), str(REPO / "provisioning")]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


# ---------------------------------------------------------------------- the driver (child, under the shim)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def drive(state: Path, appends: int, seed: int) -> None:
    """The recorded workload; writes a marker after each append returns (see the module docstring)."""
    rng = random.Random(seed)
    now = [T0]

    def clock() -> float:
        return now[0]

    marker_fd = os.open(state.parent / "markers", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def mark(text: str) -> None:
        os.write(marker_fd, (text + "\n").encode())

    def opened() -> Outbox:
        ob = Outbox.open(state / DB_NAME, seq_block=SEQ_BLOCK, retention_s=RETENTION_S, clock=clock)
        mark(f"open recovery={getattr(ob, 'recovery', None)!r}")
        return ob

    outbox = opened()
    unacked: list[tuple[int, str, float]] = []
    acked: dict[int, tuple[str, float]] = {}
    for i in range(appends):
        now[0] += STEP_S
        event_id = f"{seed:04d}-{i:05d}-{rng.getrandbits(48):012x}"
        payload = json.dumps({"i": i, "nip": f"{rng.randrange(10**17, 10**18)}", "pad": rng.randbytes(480).hex()})
        body = payload.encode()
        evidence = rng.randbytes(15_000 + rng.randrange(1000)) if rng.random() < 0.2 else None
        event = outbox.append(event_id, "attendance", body, evidence)
        mark(f"recorded {event.seq} {event_id} {_sha(body)}")
        unacked.append((event.seq, event_id, now[0]))
        if i % 5 == 4:
            outbox.mark_published([s for s, _, _ in unacked[-5:]])
        if i % 7 == 6 and len(unacked) > 6:
            # the server acknowledges most of the older ones, in any order, a few stay unacknowledged
            older = unacked[:-4]
            chosen = [e for e in older if rng.random() < 0.8]
            rng.shuffle(chosen)
            if chosen:
                outbox.acknowledge([(s, e) for s, e, _ in chosen])
                for s, e, t in chosen:
                    acked[s] = (e, t)
                    mark(f"acked {s} {e}")
                unacked = [u for u in unacked if u[0] not in acked]
        if i % 40 == 39:
            cutoff = now[0] - RETENTION_S
            eligible = sorted(s for s, (_, t) in acked.items() if t < cutoff)
            mark("prune " + ",".join(map(str, eligible)))
            deleted = outbox.prune()
            mark(f"pruned {deleted}")
            for s in eligible:
                acked.pop(s, None)
        if i == appends // 2:
            outbox.close()
            mark("closed")
            outbox = opened()
    outbox.close()
    mark("done")
    os.close(marker_fd)


# ---------------------------------------------------------------------- the log


@dataclass(slots=True)
class Op:
    kind: int
    path: str  # relative to the state folder ("." for the folder itself); the markers file for a marker
    offset: int
    data: memoryview
    dest: str = ""  # rename: the new name


def read_log(log: Path, root: Path) -> list[Op]:
    """The operations of a faultfs log, paths made relative to ``root``."""
    raw = memoryview(log.read_bytes())
    prefix = str(root).rstrip("/") + "/"
    ops: list[Op] = []
    pos = 0

    def rel(p: str) -> str:
        if p == prefix[:-1]:
            return "."
        return p[len(prefix) :] if p.startswith(prefix) else p

    while pos < len(raw):
        magic_op, path_len, offset, data_len = _HEADER.unpack_from(raw, pos)
        if magic_op & 0xFFFF0000 != _MAGIC:
            raise ValueError(f"{log}: bad record at byte {pos}")
        pos += _HEADER.size
        path = bytes(raw[pos : pos + path_len]).decode("utf-8", "surrogateescape")
        pos += path_len
        data = raw[pos : pos + data_len]
        pos += data_len
        kind = magic_op & 0xFFFF
        if kind == RENAME:
            ops.append(Op(kind, rel(path), 0, memoryview(b""), rel(bytes(data).decode("utf-8", "surrogateescape"))))
        else:
            ops.append(Op(kind, rel(path) if kind != MARKER else path, offset, data))
    return ops


@dataclass
class Marked:
    """What the markers say happened before some point."""

    recorded: dict[str, tuple[int, str]] = field(default_factory=dict)  # event_id -> (seq, payload sha)
    pruned: set[int] = field(default_factory=set)  # seqs a prune (started before the cut) may have deleted
    pruned_done: set[int] = field(default_factory=set)  # seqs a prune deleted and returned before the cut
    _pruning: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)  # seqs whose acknowledge() returned
    max_seq: int = 0


def apply_marker(marked: Marked, text: str) -> None:
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "recorded":
            seq, event_id, sha = rest.split()
            marked.recorded[event_id] = (int(seq), sha)
            marked.max_seq = max(marked.max_seq, int(seq))
        elif word == "acked":
            marked.acked.add(int(rest.split()[0]))
        elif word == "prune":
            marked._pruning = {int(s) for s in rest.split(",")} if rest else set()
            marked.pruned |= marked._pruning
        elif word == "pruned":
            marked.pruned_done |= marked._pruning


# ---------------------------------------------------------------------- the disk model


@dataclass
class Inode:
    durable: bytearray = field(default_factory=bytearray)
    pending: list[Op] = field(default_factory=list)  # writes and truncates since the last fsync
    is_dir: bool = False


def _apply_data(buf: bytearray, op: Op, keep: int | None = None) -> None:
    """Apply a write (its first ``keep`` bytes when torn) or a truncate to ``buf``."""
    if op.kind == TRUNCATE:
        if op.offset < len(buf):
            del buf[op.offset :]
        else:
            buf.extend(bytes(op.offset - len(buf)))
        return
    data = op.data if keep is None else op.data[:keep]
    end = op.offset + len(data)
    if end > len(buf):
        buf.extend(bytes(end - len(buf)))
    buf[op.offset : end] = data


@dataclass
class CutState:
    """The files the card holds after one cut, with what happened to the volatile operations."""

    files: dict[str, bytes]
    dirs: list[str]
    fates: Counter[str]  # "<file kind> <fate>" -> count of volatile writes
    names_pending: int  # name changes not made durable by a folder fsync
    names_kept: int
    collateral: str = ""


def file_kind(name: str) -> str:
    for suffix, kind in (("-wal", "wal"), ("-shm", "shm"), (".seq", "seq"), (".commit", "commit"), (".lock", "lock")):
        if name.endswith(suffix):
            return kind
    if name.endswith(DB_NAME):
        return "db"
    return "tmp" if ".tmp" in name else "other"


class Disk:
    """Replays the log op by op, keeping what is durable; :meth:`cut` draws one possible post-cut state."""

    def __init__(self) -> None:
        self.inodes: dict[int, Inode] = {}
        self.names: dict[str, int] = {".": self._new(is_dir=True)}  # what the running system sees
        self.durable_names: dict[str, int] = dict(self.names)
        self.pending_names: list[Op] = []  # name changes since they were last made durable, in order
        self._pending_ids: list[int | None] = []  # the inode a CREATE/MKDIR made

    def _new(self, is_dir: bool = False) -> int:
        ino = len(self.inodes) + 1
        self.inodes[ino] = Inode(is_dir=is_dir)
        return ino

    def apply(self, op: Op) -> None:
        if op.kind in (WRITE, TRUNCATE):
            ino = self.names.get(op.path)
            if ino is None:  # a file that existed before the log started: cannot happen with an empty folder
                ino = self.names[op.path] = self.durable_names[op.path] = self._new()
            self.inodes[ino].pending.append(op)
        elif op.kind == SYNC:
            ino = self.names.get(op.path)
            if ino is not None:
                node = self.inodes[ino]
                for pending in node.pending:
                    _apply_data(node.durable, pending)
                node.pending.clear()
        elif op.kind in (CREATE, MKDIR):
            ino = self._new(is_dir=op.kind == MKDIR)
            self.names[op.path] = ino
            self.pending_names.append(op)
            self._pending_ids.append(ino)
        elif op.kind in (RENAME, UNLINK, RMDIR):
            _rename_or_unlink(self.names, op)
            self.pending_names.append(op)
            self._pending_ids.append(None)
        elif op.kind == DIRSYNC:
            # An ordered journal: everything up to the last change in this folder becomes durable.
            last = max(
                (i for i, p in enumerate(self.pending_names) if _touches(p, op.path)),
                default=-1,
            )
            for p, ino in zip(self.pending_names[: last + 1], self._pending_ids[: last + 1], strict=True):
                _apply_name(self.durable_names, p, ino)
            del self.pending_names[: last + 1]
            del self._pending_ids[: last + 1]

    def cut(
        self, rng: random.Random, in_flight: Op | None, collateral: bool = False, keep_names: int | None = None
    ) -> CutState:
        """One state the card may hold if the power goes now, before ``in_flight`` (None: after the last op);
        ``keep_names`` fixes how many pending name changes survive (else random)."""
        names = dict(self.durable_names)
        pending = len(self.pending_names)
        keep = rng.randint(0, pending) if keep_names is None else max(0, min(keep_names, pending))
        for p, ino in zip(self.pending_names[:keep], self._pending_ids[:keep], strict=True):
            _apply_name(names, p, ino)
        fates: Counter[str] = Counter()
        files: dict[str, bytes] = {}
        dirs: list[str] = []
        damage = ""
        for name, ino in sorted(names.items()):
            node = self.inodes[ino]
            if node.is_dir:
                if name != ".":
                    dirs.append(name)
                continue
            buf = bytearray(node.durable)
            kind = file_kind(name)
            if kind == "shm":  # left out: SQLite rebuilds the wal-index after a crash (module docstring)
                continue
            for op in node.pending:
                if op.kind == TRUNCATE:
                    if rng.random() < 0.5:
                        _apply_data(buf, op)
                        fates[f"{kind} truncate kept"] += 1
                    else:
                        fates[f"{kind} truncate lost"] += 1
                    continue
                boundaries = [b for b in range(_next_sector(op.offset), op.offset + len(op.data), SECTOR)]
                roll = rng.random()
                if roll < 0.4:
                    _apply_data(buf, op)
                    fates[f"{kind} {SURVIVED}"] += 1
                elif roll < 0.7 or not boundaries:
                    fates[f"{kind} {DROPPED}"] += 1
                else:
                    _apply_data(buf, op, rng.choice(boundaries) - op.offset)
                    fates[f"{kind} {TORN}"] += 1
            if (
                collateral
                and in_flight is not None
                and in_flight.kind == WRITE
                and self.names.get(in_flight.path) == ino
            ):
                damage = _destroy_flash_page(buf, in_flight, rng)
            files[name] = bytes(buf)
        return CutState(files, dirs, fates, len(self.pending_names), keep, damage)


def _next_sector(offset: int) -> int:
    return (offset // SECTOR + 1) * SECTOR


def _destroy_flash_page(buf: bytearray, op: Op, rng: random.Random) -> str:
    """--collateral: the flash page under the interrupted write is garbage (or zeros) sector by sector."""
    start = op.offset // FLASH_PAGE * FLASH_PAGE
    end = min(len(buf), start + FLASH_PAGE)
    hit = 0
    for s in range(start, end, SECTOR):
        if rng.random() < 0.5:
            buf[s : min(end, s + SECTOR)] = (
                rng.randbytes(min(end, s + SECTOR) - s) if rng.random() < 0.5 else bytes(min(end, s + SECTOR) - s)
            )
            hit += 1
    return f"{hit} sector(s) of {file_kind(op.path)} {op.path}'s flash page @{start} destroyed" if hit else ""


def _parent(path: str) -> str:
    return path.rpartition("/")[0] or "."


def _touches(op: Op, folder: str) -> bool:
    return _parent(op.path) == folder or (op.kind == RENAME and _parent(op.dest) == folder)


def _rename_or_unlink(names: dict[str, int], op: Op) -> None:
    if op.kind == RENAME:
        ino = names.pop(op.path, None)
        if ino is not None:
            # a renamed folder takes its entries along
            moved = {n: i for n, i in names.items() if n.startswith(op.path + "/")}
            for n, i in moved.items():
                del names[n]
                names[op.dest + n[len(op.path) :]] = i
            names[op.dest] = ino
    else:
        names.pop(op.path, None)


def _apply_name(names: dict[str, int], op: Op, ino: int | None) -> None:
    if op.kind in (CREATE, MKDIR):
        assert ino is not None
        names[op.path] = ino
    else:
        _rename_or_unlink(names, op)


# ---------------------------------------------------------------------- checking one cut


@dataclass
class CutResult:
    index: int  # ops before the cut
    op_at_cut: str
    checked: int = 0
    present: int = 0
    reported_lost: int = 0
    pruned_gone: int = 0
    over_reported: int = 0  # present (or pruned) events inside a reported-lost range
    pruned_back: int = 0  # present although a prune that deleted them had returned (salvaged old page versions)
    ack_undone: int = 0  # present, acknowledged before the cut, but not in state acknowledged now
    evidence_back: int = 0  # present, acknowledged before the cut (evidence deleted), with evidence again
    silently_lost: list[str] = field(default_factory=list)
    open_error: str = ""
    seq_reused: str = ""
    recovery: str = ""
    recovered_from: bool = False
    fates: Counter[str] = field(default_factory=Counter)
    names: str = ""
    collateral: str = ""
    leftover_journal: bool = False  # a rollback journal of the database is in the rebuilt folder

    @property
    def failed(self) -> bool:
        return bool(self.silently_lost or self.open_error or self.seq_reused)


def describe(op: Op | None) -> str:
    if op is None:
        return "after the last operation"
    name = OP_NAMES.get(op.kind, str(op.kind))
    if op.kind == WRITE:
        return f"{name} {op.path} @{op.offset} {len(op.data)} B"
    if op.kind == TRUNCATE:
        return f"{name} {op.path} to {op.offset}"
    if op.kind == RENAME:
        return f"{name} {op.path} -> {op.dest}"
    if op.kind == MARKER:
        return f"{name} {bytes(op.data).decode().strip()[:60]!r}"
    return f"{name} {op.path}"


@contextlib.contextmanager
def _quiet_outbox_logs() -> Iterator[None]:
    """The outbox logs every recovery it makes; a thousand of them are noise here. The level is put back after."""
    logger = logging.getLogger("kiosk")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_cut(folder: Path, state: CutState, marked: Marked, result: CutResult) -> None:
    """Write ``state`` into ``folder`` (emptied first), open it with the real Outbox and check every marked event."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for d in state.dirs:
        (folder / d).mkdir(parents=True, exist_ok=True)
    for name, data in state.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    clock_now = T0 + 10**6
    try:
        outbox = Outbox.open(folder / DB_NAME, seq_block=SEQ_BLOCK, retention_s=RETENTION_S, clock=lambda: clock_now)
    except OutboxError as exc:
        result.open_error = f"OutboxError: {exc}"
        return
    except Exception as exc:  # anything else is a crash of the kiosk at start
        result.open_error = f"{type(exc).__name__}: {exc}"
        return
    try:
        recovery = getattr(outbox, "recovery", None)
        lost: Sequence[tuple[int, int]] = tuple(getattr(recovery, "lost", ()) or ())
        result.recovery = repr(recovery) if recovery is not None else ""
        result.recovered_from = getattr(outbox, "recovered_from", None) is not None

        def in_lost(seq: int) -> bool:
            return any(first <= seq <= last for first, last in lost)

        for event_id, (seq, sha) in marked.recorded.items():
            result.checked += 1
            event = outbox.get(event_id)
            if event is not None and event.seq == seq and _sha(event.payload) == sha:
                result.present += 1
                result.over_reported += in_lost(seq)
                if seq in marked.acked:
                    result.ack_undone += event.state != "acknowledged"
                    result.evidence_back += event.has_evidence
                    result.pruned_back += seq in marked.pruned_done
            elif in_lost(seq):
                result.reported_lost += 1
            elif event is None and seq in marked.pruned:
                result.pruned_gone += 1
            elif event is None:
                result.silently_lost.append(f"seq {seq} ({event_id})")
            else:
                result.silently_lost.append(f"seq {seq} ({event_id}) came back as seq {event.seq}, altered")
        try:
            new = outbox.append(f"after-cut-{result.index}", "attendance", b"{}")
            if new.seq <= marked.max_seq:
                result.seq_reused = f"new event got seq {new.seq}, not above {marked.max_seq} marked before the cut"
        except OutboxError as exc:
            result.seq_reused = f"append after the cut failed: {exc}"
    finally:
        outbox.close()


# ---------------------------------------------------------------------- the run


@dataclass
class Recording:
    work: Path
    log: Path
    ops: list[Op]
    appends: int
    seconds: float


def record(work: Path, shim: Path, appends: int, seed: int) -> Recording:
    """Run the driver under the shim in ``work/rec/state``; the log is ``work/faultfs.log``."""
    state = work / "rec" / "state"
    state.mkdir(parents=True)
    state = state.resolve()
    log = work / "faultfs.log"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--driver",
            str(state),
            "--appends",
            str(appends),
            "--seed",
            str(seed),
        ],
        env=shim_env(shim, state, log=log),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    ops = read_log(log, state)
    return Recording(work, log, ops, appends, time.monotonic() - started)


def replay(
    rec: Recording,
    cuts: int,
    seed: int,
    collateral: bool = False,
    check_dir: Path | None = None,
    keep_failures: Path | None = None,
    progress: bool = True,
    points: Sequence[int] | None = None,
    keep_names: int | None = None,
) -> list[CutResult]:
    """Check ``cuts`` cut points drawn over the recording (seeded), or exactly ``points`` (each the number of
    operations that happened before the cut); returns one result per cut, in log order."""
    with _quiet_outbox_logs():
        return _replay(rec, cuts, seed, collateral, check_dir, keep_failures, progress, points, keep_names)


def _replay(
    rec: Recording,
    cuts: int,
    seed: int,
    collateral: bool,
    check_dir: Path | None,
    keep_failures: Path | None,
    progress: bool,
    points: Sequence[int] | None,
    keep_names: int | None,
) -> list[CutResult]:
    rng = random.Random(seed)
    total = len(rec.ops)
    if points is None:  # distinct points while there are enough operations
        drawn = rng.sample(range(1, total + 1), cuts) if cuts <= total else [rng.randint(1, total) for _ in range(cuts)]
        points = drawn
    points = sorted(points)
    folder = check_dir or rec.work / "check"
    disk = Disk()
    marked = Marked()
    results: list[CutResult] = []
    done_ops = 0
    bar = Progress("powercut: cuts checked", len(points)) if progress else None
    for n, point in enumerate(points):
        while done_ops < point:
            op = rec.ops[done_ops]
            if op.kind == MARKER:
                apply_marker(marked, bytes(op.data).decode())
            else:
                disk.apply(op)
            done_ops += 1
        in_flight = rec.ops[point] if point < total else None
        cut_rng = random.Random(f"{seed}:{n}:{point}")
        state = disk.cut(cut_rng, in_flight, collateral, keep_names)
        result = CutResult(
            point,
            describe(in_flight),
            fates=state.fates,
            names=f"{state.names_kept}/{state.names_pending}",
            collateral=state.collateral,
            leftover_journal=f"{DB_NAME}-journal" in state.files,
        )
        check_cut(folder, state, marked, result)
        if result.failed and keep_failures is not None:
            target = keep_failures / f"cut-{n:04d}-op{point}"
            if not target.exists():
                shutil.copytree(folder, target)
        results.append(result)
        if bar is not None:
            bar.update(n + 1)
    shutil.rmtree(folder, ignore_errors=True)
    return results


def summarise(results: list[CutResult]) -> dict[str, Any]:
    fates: Counter[str] = Counter()
    for r in results:
        fates.update(r.fates)
    wal_hit = sum(1 for r in results if r.fates[f"wal {TORN}"] or r.fates[f"wal {DROPPED}"])
    return {
        "cuts": len(results),
        "recorded_checked": sum(r.checked for r in results),
        "present": sum(r.present for r in results),
        "reported_lost": sum(r.reported_lost for r in results),
        "pruned_gone": sum(r.pruned_gone for r in results),
        "silently_lost": sum(len(r.silently_lost) for r in results),
        "cuts_with_silent_loss": sum(1 for r in results if r.silently_lost),
        "open_failures": sum(1 for r in results if r.open_error),
        "seq_reused": sum(1 for r in results if r.seq_reused),
        "over_reported": sum(r.over_reported for r in results),
        "pruned_back": sum(r.pruned_back for r in results),
        "ack_undone": sum(r.ack_undone for r in results),
        "evidence_back": sum(r.evidence_back for r in results),
        "cuts_with_recovery": sum(1 for r in results if r.recovery),
        "cuts_moved_aside": sum(1 for r in results if r.recovered_from),
        "cuts_with_wal_torn_or_dropped": wal_hit,
        "cuts_with_collateral_damage": dict(
            sorted(Counter(r.collateral.split(" of ")[1].split()[0] for r in results if r.collateral).items())
        ),
        "volatile_write_fates": dict(sorted(fates.items())),
    }


def examples(results: list[CutResult], per_category: int = 3) -> list[str]:
    lines: list[str] = []
    categories: list[tuple[str, list[CutResult]]] = [
        ("silently lost", [r for r in results if r.silently_lost]),
        ("open failures", [r for r in results if r.open_error]),
        ("seq reused", [r for r in results if r.seq_reused]),
        ("reported lost", [r for r in results if r.reported_lost]),
        ("recovery reported, nothing lost", [r for r in results if r.recovery and not r.reported_lost]),
        (
            "all present, WAL writes torn or dropped",
            [r for r in results if not r.failed and (r.fates[f"wal {TORN}"] or r.fates[f"wal {DROPPED}"])],
        ),
    ]
    for title, cases in categories:
        if not cases:
            continue
        lines.append(f"{title} ({len(cases)} cuts), e.g.:")
        for r in cases[:per_category]:
            fates = ", ".join(f"{k} {v}" for k, v in sorted(r.fates.items()))
            lines.append(f"  cut before op {r.index} ({r.op_at_cut}); names kept {r.names}; volatile: {fates or '-'}")
            if r.collateral:
                lines.append(f"    collateral: {r.collateral}")
            if r.silently_lost:
                more = f" (+{len(r.silently_lost) - 5} more)" if len(r.silently_lost) > 5 else ""
                lines.append(f"    silently lost: {', '.join(r.silently_lost[:5])}{more}")
            if r.open_error:
                lines.append(f"    open: {r.open_error[:300]}")
            if r.seq_reused:
                lines.append(f"    seq: {r.seq_reused}")
            if r.recovery:
                lines.append(f"    recovery: {r.recovery[:300]}")
            elif r.recovered_from:
                lines.append("    recovered_from set (database moved aside), no recovery report")
            lines.append(
                f"    checked {r.checked}: present {r.present}, reported lost {r.reported_lost}, pruned {r.pruned_gone}"
            )
    return lines


def recording_coverage(ops: list[Op]) -> dict[str, int]:
    """What the recording went through: checkpoints (fsyncs of the database), WAL restarts (its header rewritten
    at offset 0), commit-record writes, sequence-file replacements."""
    return {
        "checkpoints": sum(1 for o in ops if o.kind == SYNC and file_kind(o.path) == "db"),
        "wal_restarts": max(
            0, sum(1 for o in ops if o.kind == WRITE and file_kind(o.path) == "wal" and o.offset == 0) - 1
        ),
        "commit_record_writes": sum(1 for o in ops if o.kind == WRITE and file_kind(o.path) == "commit"),
        "seq_file_renames": sum(1 for o in ops if o.kind == RENAME and file_kind(o.dest) == "seq"),
    }


def _outbox_version() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h %cs", "--", "kiosk/events/outbox.py"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "kiosk/events/outbox.py"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return out + (" (+ uncommitted changes)" if dirty else "")


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="powercut-", dir=base)).resolve()
    try:
        yield path
    finally:
        if keep:
            print(f"work folder kept: {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


MODELS = ("honest", "collateral")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cuts", type=int, default=1000, help="cut points to check per model (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--appends", type=int, default=300, help="events the driver appends (default 300)")
    parser.add_argument("--quick", action="store_true", help="60 cuts over 200 appends")
    parser.add_argument(
        "--model",
        choices=[*MODELS, "both"],
        default="both",
        help="honest: the card honours fsync; collateral: also the write in flight at the cut damages its 4 KiB "
        "flash page (default: both, each with --cuts cuts)",
    )
    parser.add_argument("--collateral", action="store_true", help="same as --model collateral")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and every failing state")
    parser.add_argument("--driver", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver is not None:
        drive(args.driver, args.appends, args.seed)
        return 0
    if args.quick:
        args.cuts, args.appends = 60, 200
    models = ["collateral"] if args.collateral else list(MODELS) if args.model == "both" else [args.model]
    version = _outbox_version()
    started = time.monotonic()
    runs: dict[str, list[CutResult]] = {}
    with workspace(args.keep) as work:
        shim = build_shim(work)
        rec = record(work, shim, args.appends, args.seed)
        kinds = Counter(OP_NAMES[o.kind] for o in rec.ops)
        coverage = recording_coverage(rec.ops)
        print(
            f"recorded {args.appends} appends in {rec.seconds:.1f} s: {len(rec.ops)} operations "
            f"({', '.join(f'{k} {v}' for k, v in kinds.most_common())}); "
            f"{', '.join(f'{k} {v}' for k, v in coverage.items())}; outbox.py at {version}",
            file=sys.stderr,
        )
        for model in models:
            runs[model] = replay(
                rec,
                args.cuts,
                args.seed,
                collateral=model == "collateral",
                check_dir=work / f"check-{model}",
                keep_failures=work / f"failures-{model}" if args.keep else None,
            )
    summaries = {model: summarise(results) for model, results in runs.items()}
    print(f"outbox.py at {version}; {args.appends} appends, {len(rec.ops)} operations, seed {args.seed}\n")
    print(
        markdown_table(
            [
                "model",
                "cuts",
                "recorded checked",
                "present",
                "reported lost",
                "pruned (allowed)",
                "silently lost",
                "open failures",
                "seq reused",
            ],
            [
                [
                    model,
                    s["cuts"],
                    s["recorded_checked"],
                    s["present"],
                    s["reported_lost"],
                    s["pruned_gone"],
                    s["silently_lost"],
                    s["open_failures"],
                    s["seq_reused"],
                ]
                for model, s in summaries.items()
            ],
        )
    )
    for model, summary in summaries.items():
        print(f"\n## {model}\n")
        print(
            f"cuts N {summary['cuts']}, recorded checked R {summary['recorded_checked']}, present P "
            f"{summary['present']}, reported lost L {summary['reported_lost']}, silently lost S "
            f"{summary['silently_lost']}, open failures F {summary['open_failures']}"
        )
        if model == "collateral":
            print(
                f"cuts whose in-flight write damaged its flash page, by file: {summary['cuts_with_collateral_damage']}"
            )
        print(
            f"cuts with WAL writes torn or dropped: {summary['cuts_with_wal_torn_or_dropped']}; with a recovery "
            f"report: {summary['cuts_with_recovery']}; database moved aside: {summary['cuts_moved_aside']}; "
            f"present events inside a reported-lost range: {summary['over_reported']}"
        )
        print(
            f"acknowledged before the cut but back as unacknowledged: {summary['ack_undone']} (republished, central "
            f"deduplicates); with their evidence back: {summary['evidence_back']}; present again after a prune had "
            f"returned: {summary['pruned_back']} (counts over all cuts)"
        )
        fates = summary["volatile_write_fates"]
        print("volatile operations at the cuts: " + ", ".join(f"{k} {v}" for k, v in fates.items()))
        print()
        print("\n".join(examples(runs[model])))
    if args.json:
        report = {
            "seed": args.seed,
            "appends": args.appends,
            "operations": len(rec.ops),
            "recording": coverage,
            "outbox_version": version,
            "seconds": round(time.monotonic() - started, 1),
            "models": summaries,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    bad = any(s["silently_lost"] or s["open_failures"] or s["seq_reused"] for s in summaries.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
