"""What encryption at rest costs: gallery load and evidence photos, with and without a device data key, in one run.

* **gallery** — a 5,000-person gallery (3 templates each, HMAC-signed as central signs it) is written once in the
  clear and once sealed (``Gallery.save(..., cipher=...)``); ``Gallery.load`` of each is timed in this process,
  alternating which goes first, ``--repeats`` times. The page cache is warm (the files were just written), so the
  figure is the CPU cost of decryption against the cost of parsing and verifying, which is what a kiosk pays at
  start and at each gallery reload. Decryption alone (``DataCipher.open`` of the file's bytes) is timed too.
* **evidence** — ``Outbox.append`` of an event with a 15 kB photo, into two outboxes in the same folder (one
  opened with the cipher), alternating, ``--appends`` times each; and ``Outbox.evidence`` (the publisher's read).
  Each append is a committed, fsynced transaction, so the disk dominates.

Run: ``.venv/bin/python bench/atrest.py`` (about 20 s here). Times are medians; the machine may be shared, so the
ratios (sealed/plain, measured interleaved in the same run) are the numbers to trust, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import ensure_repo_on_path, markdown_table

ensure_repo_on_path()

from kiosk.events.outbox import Outbox  # noqa: E402
from kiosk_contract.gallery import DIM, Gallery, Person  # noqa: E402
from kiosk_contract.sealing import DataCipher  # noqa: E402

HMAC_KEY = bytes(range(32))
DATA_KEY = os.urandom(32)
PHOTO_BYTES = 15_000


def make_gallery(people: int, per: int, seed: int = 0) -> Gallery:
    """Synthetic unit-norm descriptors with realistic NIPs, names and units (the header is part of the cost)."""
    rng = np.random.default_rng(seed)
    persons = []
    for i in range(people):
        t = rng.normal(0, 0.09, size=(per, DIM)).astype(np.float32)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        persons.append(
            Person(f"19{i:016d}", f"Pegawai Negeri Sipil {i}", "Dinas Pendidikan Kabupaten Contoh", t, "2026-01-05")
        )
    return Gallery(persons)


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``a`` and ``b``, alternating which runs first."""
    ta: list[float] = []
    tb: list[float] = []
    for r in range(repeats):
        pair = ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta))
        for fn, times in pair:
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
    return ta, tb


def bench_gallery(work: Path, people: int, per: int, repeats: int, cipher: DataCipher) -> list[list[object]]:
    gallery = make_gallery(people, per)
    plain, sealed = work / "plain.kgal", work / "sealed.kgal"
    gallery.save(plain, HMAC_KEY)
    gallery.save(sealed, HMAC_KEY, cipher=cipher)
    blob = sealed.read_bytes()
    assert Gallery.load(sealed, HMAC_KEY, cipher=cipher).nips == Gallery.load(plain, HMAC_KEY).nips
    t_plain, t_sealed = interleaved(
        lambda: Gallery.load(plain, HMAC_KEY), lambda: Gallery.load(sealed, HMAC_KEY, cipher=cipher), repeats
    )
    t_open = [
        1000 * _timed(lambda: cipher.open("gallery", blob[16:], blob[:16])) for _ in range(repeats)
    ]
    mp, ms = statistics.median(t_plain), statistics.median(t_sealed)
    return [
        [f"gallery load, {people:,} people x {per}", f"{plain.stat().st_size / 1e6:.2f} MB", mp, ms, ms / mp],
        ["  of which decryption", "", "", statistics.median(t_open), ""],
    ]


def bench_evidence(work: Path, appends: int, cipher: DataCipher) -> list[list[object]]:
    photo = b"\xff\xd8\xff\xe0" + os.urandom(PHOTO_BYTES - 6) + b"\xff\xd9"
    with Outbox.open(work / "plain.db") as plain, Outbox.open(work / "sealed.db", cipher=cipher) as sealed:
        n = iter(range(10 * appends))
        t_plain, t_sealed = interleaved(
            lambda: plain.append(f"p{next(n)}", "attendance", b"{}", photo),
            lambda: sealed.append(f"s{next(n)}", "attendance", b"{}", photo),
            appends,
        )
        seqs_p = [e.seq for e in plain.pending(limit=appends)]
        seqs_s = [e.seq for e in sealed.pending(limit=appends)]
        assert all(sealed.evidence(s) == photo for s in seqs_s)
        r_plain, r_sealed = interleaved(
            lambda: [plain.evidence(s) for s in seqs_p], lambda: [sealed.evidence(s) for s in seqs_s], 5
        )
    ap, as_ = statistics.median(t_plain), statistics.median(t_sealed)
    rp, rs = statistics.median(r_plain) / len(seqs_p), statistics.median(r_sealed) / len(seqs_s)
    return [
        [f"outbox append with a {PHOTO_BYTES // 1000} kB photo (fsynced)", "", ap, as_, as_ / ap],
        ["outbox evidence(seq) read", "", rp, rs, rs / rp],
    ]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--templates", type=int, default=3, help="templates per person")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--appends", type=int, default=100)
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = ap.parse_args()
    cipher = DataCipher(DATA_KEY, "bench")
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1]) as tmp:  # on disk, not tmpfs
        work = Path(tmp)
        rows = bench_gallery(work, args.people, args.templates, args.repeats, cipher)
        rows += bench_evidence(work, args.appends, cipher)
    print(f"# encryption at rest: {platform.machine()}, Python {platform.python_version()}, medians")
    print(markdown_table(["what", "size", "plain ms", "sealed ms", "sealed/plain"], rows))
    if args.json:
        print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
