"""What the commit record costs: ``Outbox.append`` with the record written after each commit, against the same
outbox with the record's write skipped (the append of the release before issue 13), interleaved in one run.

Both outboxes live in one folder on the same disk and take the same events (a 1 KiB payload; one in five with a
15 kB photo), alternating which goes first, ``--appends`` times each. Each append is a committed transaction with
``synchronous=FULL``; the record adds one ``pwrite`` of 512 bytes and one ``fdatasync``. The machine may be shared,
so the ratio is the figure to trust, not the absolute times.

Run: ``.venv/bin/python bench/commit_record.py`` (about 10 s here; ``--appends`` to change).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _common import ensure_repo_on_path, markdown_table

ensure_repo_on_path()

from kiosk.events.outbox import Outbox  # noqa: E402

PAYLOAD_BYTES = 1024
PHOTO_BYTES = 15_000


def pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--appends", type=int, default=1500, help="appends into each outbox (default 1500)")
    ap.add_argument("--dir", type=Path, default=None, help="folder for the outboxes (default: a temp folder)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-commit-", dir=args.dir))
    with_record = Outbox.open(work / "with" / "outbox.db", max_events=10**7)
    without = Outbox.open(work / "without" / "outbox.db", max_events=10**7)
    without._write_record = lambda: None  # type: ignore[method-assign]
    times: dict[str, list[float]] = {"with": [], "without": []}
    payload, photo = os.urandom(PAYLOAD_BYTES), os.urandom(PHOTO_BYTES)
    for i in range(args.appends):
        order = (("with", with_record), ("without", without))
        for name, ob in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            ob.append(f"{name}-{i}", "attendance", payload, photo if i % 5 == 0 else None)
            times[name].append((time.perf_counter() - start) * 1000)
    with_record.close()
    without.close()
    rows = [
        (label, f"{statistics.median(times[key]):.3f}", f"{pctl(times[key], 0.99):.3f}",
         f"{statistics.median(times[key]) / statistics.median(times['without']):.2f}")
        for label, key in (("commit record written (this release)", "with"), ("record skipped (before)", "without"))
    ]  # fmt: skip
    print(f"Outbox.append, {args.appends} each, interleaved; {platform.machine()}, folder {work}")
    print(markdown_table(["append", "median ms", "p99 ms", "median ratio"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
