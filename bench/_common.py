"""Small helpers shared by the benchmarks: where the data and the cache are, and markdown tables.

Benchmarks are run as scripts (``.venv/bin/python bench/<name>.py``) from a checkout that need not be
installed, so :func:`ensure_repo_on_path` puts the repository's packages first on ``sys.path`` before ``kiosk`` is
imported. Nothing here imports dlib.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure_repo_on_path() -> None:
    """Make ``import kiosk`` (and the contract, central and provisioning packages) find this checkout even when the
    packages are not installed."""
    for folder in (REPO / "provisioning", REPO / "central", REPO / "contract", REPO):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def faces_dir() -> Path:
    """The shared real-face data: ``KIOSK_FACES_DIR``, else ``<repo>/../shared/faces``."""
    override = os.environ.get("KIOSK_FACES_DIR")
    return Path(override) if override else REPO.parent / "shared" / "faces"


def cache_dir() -> Path:
    """``<repo>/.cache/bench`` (git-ignored), created on first use."""
    path = REPO / ".cache" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: floats rounded to ``digits`` decimals, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(num: float, den: float, digits: int = 2) -> str:
    """``num/den`` as a percentage cell (``–`` when the denominator is zero)."""
    return "–" if den == 0 else f"{100.0 * num / den:.{digits}f}%"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; numeric-looking columns are right-aligned."""
    body = [[fmt(c) for c in row] for row in rows]
    align = []
    for j in range(len(headers)):
        cells = [r[j] for r in body if j < len(r)]
        numeric = bool(cells) and all(_numeric(c) for c in cells)
        align.append("---:" if numeric else "---")
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    text = cell.strip().rstrip("%").replace(",", "")
    if text in ("", "–"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


class Progress:
    """Progress lines on stderr: ``label: done/total, rate, ETA`` at most every ``every_s`` seconds."""

    def __init__(self, label: str, total: int, every_s: float = 15.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        print(
            f"{self.label}: {done}/{self.total} ({rate:.1f}/s, elapsed {elapsed:.0f} s, ETA {eta:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
