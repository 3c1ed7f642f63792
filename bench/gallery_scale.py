"""How the gallery scales: 1:N matching time, memory, file size, save and load time for 1k to 100k people.

Synthetic descriptors stand in for dlib's: draws of N(0, 0.09) per dimension normalised to norm 1 (real dlib
descriptors have norm ~1 and values in about [-0.3, 0.3]). Each person has 1 (or K) templates close to a
per-person centre; half of the probes are "genuine" (a person's centre plus noise, distance ~0.4 from their
templates) and half are "impostors" (fresh random descriptors, nobody's face).

For every gallery size:

* **matching** — ``kiosk.recognizer.matching.match(gallery, q)`` per probe, timed with ``time.perf_counter``,
  interleaved (alternating order) with the BASELINE, face_recognition's way: ``face_distance(known, q)`` =
  ``np.linalg.norm(known - q, axis=1)`` over a float64 array made from the list of float64 encodings, then
  ``np.argmin`` (as in face_recognition's examples). Both must name the same nearest identity. Matching runs
  in a subprocess with ``--blas-threads`` BLAS threads (default 1: the baseline never uses BLAS, and a kiosk
  shares its cores with dlib); the kiosk alone is then re-timed with 1 thread and with OpenBLAS's default,
  because a multithreaded ``sgemv`` on busy cores costs milliseconds of waiting for its helper thread;
* **memory** — bytes of the gallery's matrices (``matrix`` + ``sq_norms`` + ``starts``) and the growth of
  VmRSS (and of the peak, VmHWM) around ``Gallery.load`` in a fresh subprocess per load, so sizes never mix;
* **file** — size, save time (including the fsyncs), and load time in a fresh subprocess (no warm Python
  objects; the OS page cache is warm because the file was just written), with and without an HMAC key.

Run: ``.venv/bin/python bench/gallery_scale.py`` (two to three minutes on a 2-core box; ``--quick`` for a smoke
run). MB are 10^6 bytes. Times are medians over ``--repeats`` passes; the machine may be shared, so the
speed-up (baseline/kiosk, timed interleaved in the same run) is the number to trust, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import ensure_repo_on_path, markdown_table

ensure_repo_on_path()

from kiosk.recognizer.matching import match  # noqa: E402
from kiosk_contract.gallery import DIM, Gallery, Person  # noqa: E402

DEFAULT_SIZES = "1k,10k,100k,10kx3"
QUICK_SIZES = "1k,10kx3"
HMAC_KEY = bytes(range(32))
UNITS = [f"Dinas {n} Kabupaten Contoh" for n in ("Pendidikan", "Kesehatan", "Perhubungan", "Sosial", "Pertanian")]
TEMPLATE_SPREAD = 0.02  # per-dimension noise between one person's templates (distance ~0.23 between them)
PROBE_NOISE = 0.03  # per-dimension noise of a genuine probe around its person's centre (distance ~0.4)
HEADERS = [
    "people",
    "templates",
    "file MB",
    "load ms",
    "match median ms",
    "match p95 ms",
    "baseline median ms",
    "speed-up",
    "matrix MB",
    "RSS growth MB",
    "save ms",
    "load+HMAC ms",
    "peak RSS growth MB",
    "same nearest",
]

Distance = Callable[[Any, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------- baseline


def _face_distance_replica(face_encodings: Any, face_to_compare: np.ndarray) -> np.ndarray:
    """face_recognition.api.face_distance, verbatim (used only when face_recognition cannot be imported)."""
    if len(face_encodings) == 0:
        return np.empty(0)
    return np.linalg.norm(face_encodings - face_to_compare, axis=1)


def baseline_distance() -> tuple[Distance, str]:
    """face_recognition's own face_distance when importable (installed with --no-deps), else the replica."""
    try:
        from face_recognition.api import face_distance
    except (ImportError, SystemExit, RuntimeError) as exc:  # its models package may quit() on import
        return _face_distance_replica, f"replica of face_recognition.api.face_distance (import failed: {exc!r})"
    return face_distance, "face_recognition.api.face_distance (imported)"


# ------------------------------------------------------------------------------------------ synthetic data


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` dlib-like descriptors: N(0, 0.09) per dimension, rows normalised to norm 1 (float64)."""
    x = rng.normal(0.0, 0.09, (n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def renorm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def centres_for(people: int, templates: int) -> np.ndarray:
    """Each person's "true face" (float64[people, 128]); deterministic, so subprocesses can rebuild it."""
    return unit_rows(np.random.default_rng([people, templates]), people)


def make_gallery(people: int, templates: int) -> Gallery:
    """A gallery with realistic metadata: templates of one person are noisy copies of their centre."""
    rng = np.random.default_rng([people, templates, 1])
    centres = centres_for(people, templates)
    if templates == 1:
        tmpl = centres[:, None, :].astype(np.float32)
    else:
        noise = rng.normal(0.0, TEMPLATE_SPREAD, (people, templates, DIM))
        tmpl = renorm(centres[:, None, :] + noise).astype(np.float32)
    stamp = "2024-07-01T08:00:00+07:00"
    persons = []
    for i in range(people):
        nip = f"1980{i:014d}"
        persons.append(
            Person(
                nip=nip,
                name=f"Pegawai Contoh {i:06d}",
                unit=UNITS[i % len(UNITS)],
                templates=tmpl[i],
                enrolled_at=stamp,
                sources=tuple(f"{nip}_{j}.jpg" for j in range(templates)),
            )
        )
    return Gallery(people=persons)


def make_probes(centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` float64 probes (as dlib returns them): even ones genuine, odd ones impostors."""
    rng = np.random.default_rng(seed)
    who = rng.integers(0, len(centres), n)
    genuine = renorm(centres[who] + rng.normal(0.0, PROBE_NOISE, (n, DIM)))
    impostor = unit_rows(rng, n)
    return np.where((np.arange(n) % 2 == 0)[:, None], genuine, impostor)


# ------------------------------------------------------------------------------------ load in a subprocess


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (empty where /proc is missing)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def child_load(path: str, key_hex: str) -> None:
    """The --child-load mode: load one gallery, print its timing and memory as one JSON line."""
    key = bytes.fromhex(key_hex) if key_hex else None
    before = _proc_status()
    t0 = time.perf_counter()
    gallery = Gallery.load(Path(path), key)
    seconds = time.perf_counter() - t0
    after = _proc_status()
    result = {
        "load_s": seconds,
        "people": len(gallery),
        "rows": int(gallery.matrix.shape[0]),
        "matrix_bytes": int(gallery.matrix.nbytes + gallery.sq_norms.nbytes + gallery.starts.nbytes),
        "rss_growth": after.get("VmRSS", 0) - before.get("VmRSS", 0) if before else None,
        "peak_growth": after.get("VmHWM", 0) - before.get("VmRSS", 0) if before else None,
    }
    print(json.dumps(result))


def run_child(args: list[str], blas_threads: str) -> dict[str, Any]:
    """Run this script in a child mode in a fresh interpreter; return the JSON line it prints."""
    env = dict(os.environ)
    if blas_threads != "default":
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = blas_threads
    else:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(var, None)
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------------- matching


def child_match(path: str, people: int, templates: int, n_probes: int, passes: int, baseline: bool) -> None:
    """The --child-match mode: time kiosk's match (and the baseline) on a saved gallery; print one JSON line.

    Runs in a subprocess so that the BLAS thread count (an environment variable read when numpy is imported)
    can be chosen per run, and so the baseline's float64 copies never share a heap with the load measurements.
    """
    gallery = Gallery.load(Path(path))
    if len(gallery) != people or gallery.matrix.shape[0] != people * templates:
        raise RuntimeError(f"{path} holds {len(gallery)} people, expected {people} x {templates}")
    probes = make_probes(centres_for(people, templates), n_probes, seed=people + 7)
    face_distance, source = baseline_distance() if baseline else (_face_distance_replica, "")
    known_list = [row.astype(np.float64) for row in gallery.matrix]  # what face_encodings() returns
    known = np.array(known_list)
    counts = np.diff(np.append(gallery.starts, len(known)))
    row_nip = list(np.repeat(np.array(gallery.nips, dtype=object), counts))

    def kiosk(q: np.ndarray) -> tuple[str | None, float]:
        m = match(gallery, q)
        return m.best_nip, m.distance

    def base(q: np.ndarray) -> tuple[str | None, float]:
        d = face_distance(known, q)
        i = int(np.argmin(d))
        return row_nip[i], float(d[i])

    for q in probes[:10]:  # warm up both paths (allocator, BLAS threads, caches)
        kiosk(q)
        if baseline:
            base(q)
    kiosk_ms: list[float] = []
    base_ms: list[float] = []
    same = near_ties = total = 0
    max_diff = 0.0
    for _ in range(passes):
        for j, q in enumerate(probes):
            if not baseline:
                t0 = time.perf_counter()
                kiosk(q)
                kiosk_ms.append((time.perf_counter() - t0) * 1e3)
                continue
            t0 = time.perf_counter()
            if j % 2 == 0:  # alternate which one goes first so both see the same background noise
                k_nip, k_d = kiosk(q)
                t1 = time.perf_counter()
                b_nip, b_d = base(q)
                t2 = time.perf_counter()
                k_s, b_s = t1 - t0, t2 - t1
            else:
                b_nip, b_d = base(q)
                t1 = time.perf_counter()
                k_nip, k_d = kiosk(q)
                t2 = time.perf_counter()
                b_s, k_s = t1 - t0, t2 - t1
            kiosk_ms.append(k_s * 1e3)
            base_ms.append(b_s * 1e3)
            total += 1
            max_diff = max(max_diff, abs(k_d - b_d))
            if k_nip == b_nip:
                same += 1
            else:  # explain it: a near-tie in exact float64 arithmetic, or a real error
                d = np.minimum.reduceat(np.sqrt(((known - q) ** 2).sum(axis=1)), gallery.starts)
                two = np.sort(d)[:2]
                near_ties += int(two[1] - two[0] < 1e-5)
    list_ms = []
    if baseline:  # what most face_recognition scripts do: pass the Python list, made an array on every call
        for q in probes[:10]:
            t0 = time.perf_counter()
            int(np.argmin(face_distance(known_list, q)))
            list_ms.append((time.perf_counter() - t0) * 1e3)
    result = {
        "kiosk_median": statistics.median(kiosk_ms),
        "kiosk_p95": percentile(kiosk_ms, 95),
        "base_median": statistics.median(base_ms) if base_ms else None,
        "list_median": statistics.median(list_ms) if list_ms else None,
        "probes": total,
        "same": same,
        "near_ties": near_ties,
        "max_abs_diff": max_diff,
        "baseline_source": source,
    }
    print(json.dumps(result))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# -------------------------------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1k,10k,100k,10kx3"`` -> [(1000, 1), (10000, 1), (100000, 1), (10000, 3)]."""
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        people_s, _, k_s = item.partition("x")
        mult = 1000 if people_s.endswith("k") else 1
        people = int(float(people_s.rstrip("k")) * mult)
        templates = int(k_s) if k_s else 1
        if people < 2 or templates < 1:
            raise argparse.ArgumentTypeError(f"bad size {item!r}: need >= 2 people and >= 1 template")
        sizes.append((people, templates))
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def probes_per_pass(rows: int, quick: bool) -> int:
    """Enough probes for a stable p95 while keeping the baseline (~1 ms per 1k rows) to seconds per size."""
    n = int(1e7 / rows)
    return max(20, min(500, n)) if not quick else max(20, min(100, n // 5))


@dataclass
class SizeResult:
    row: list[str]
    people: int
    templates: int
    load_ms: float
    match: dict[str, Any]
    alone: dict[str, dict[str, Any]]  # kiosk-only timings by BLAS thread setting


def run_size(people: int, templates: int, args: argparse.Namespace, tmp: Path) -> SizeResult:
    label = f"{people} x {templates}"

    def say(what: str) -> None:
        print(f"[{label}] {what}", file=sys.stderr, flush=True)

    say("building and saving the gallery")
    gallery = make_gallery(people, templates)
    path, signed = tmp / f"gallery-{people}x{templates}.kgal", tmp / f"gallery-{people}x{templates}-hmac.kgal"
    save_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        gallery.save(path)
        save_s.append(time.perf_counter() - t0)
    gallery.save(signed, key=HMAC_KEY)
    del gallery

    say(f"{args.repeats} x 2 loads, each in a fresh subprocess")
    plain, keyed = [], []
    for _ in range(args.repeats):  # interleaved so both see the same background load
        plain.append(run_child(["--child-load", str(path)], args.blas_threads))
        keyed.append(run_child(["--child-load", str(signed), "--child-key", HMAC_KEY.hex()], args.blas_threads))
    for r in plain + keyed:
        if r["people"] != people or r["rows"] != people * templates:
            raise RuntimeError(f"a child loaded {r['people']} people / {r['rows']} rows, expected {label}")

    n_probes = probes_per_pass(people * templates, args.quick)
    say(f"matching {n_probes} probes x {args.repeats} passes (BLAS threads: {args.blas_threads})")
    common = ["--child-match", str(path), "--people", str(people), "--templates", str(templates)]
    common += ["--probes", str(n_probes), "--passes", str(args.repeats)]
    m = run_child(common, args.blas_threads)
    say("matching again, kiosk alone (no baseline between calls), with BLAS threads 1 and OpenBLAS's default")
    alone = {threads: run_child([*common, "--no-baseline"], threads) for threads in ("1", "default")}

    mb = 1e6
    load_ms = statistics.median(r["load_s"] for r in plain) * 1e3
    rss = [r["rss_growth"] for r in plain if r["rss_growth"] is not None]
    peak = [r["peak_growth"] for r in plain if r["peak_growth"] is not None]
    row = [
        f"{people:,}",
        str(templates),
        f"{path.stat().st_size / mb:.2f}",
        f"{load_ms:.0f}",
        f"{m['kiosk_median']:.3f}",
        f"{m['kiosk_p95']:.3f}",
        f"{m['base_median']:.3f}",
        f"{m['base_median'] / m['kiosk_median']:.1f}",
        f"{plain[0]['matrix_bytes'] / mb:.2f}",
        f"{statistics.median(rss) / mb:.1f}" if rss else "–",
        f"{statistics.median(save_s) * 1e3:.0f}",
        f"{statistics.median(r['load_s'] for r in keyed) * 1e3:.0f}",
        f"{statistics.median(peak) / mb:.1f}" if peak else "–",
        f"{m['same']}/{m['probes']}",
    ]
    path.unlink()
    signed.unlink()
    return SizeResult(row, people, templates, load_ms, m, alone)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--sizes", help=f"comma-separated PEOPLE[xTEMPLATES], k = 1000 (default {DEFAULT_SIZES})")
    parser.add_argument("--repeats", type=int, help="timing passes and subprocess loads per size (default 3)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: sizes {QUICK_SIZES}, 1 repeat, few probes")
    parser.add_argument(
        "--blas-threads",
        default="1",
        help="BLAS threads for the timed matching: a number, or 'default' for OpenBLAS's own choice "
        "(default 1: the baseline is single-threaded, and a kiosk shares its cores with dlib)",
    )
    child = parser.add_argument_group("internal (child processes)")
    child.add_argument("--child-load", help=argparse.SUPPRESS)
    child.add_argument("--child-key", default="", help=argparse.SUPPRESS)
    child.add_argument("--child-match", help=argparse.SUPPRESS)
    child.add_argument("--people", type=int, help=argparse.SUPPRESS)
    child.add_argument("--templates", type=int, help=argparse.SUPPRESS)
    child.add_argument("--probes", type=int, help=argparse.SUPPRESS)
    child.add_argument("--passes", type=int, help=argparse.SUPPRESS)
    child.add_argument("--no-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_load:
        child_load(args.child_load, args.child_key)
        return 0
    if args.child_match:
        child_match(args.child_match, args.people, args.templates, args.probes, args.passes, not args.no_baseline)
        return 0

    try:
        sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.blas_threads != "default" and not args.blas_threads.isdigit():
        parser.error("--blas-threads must be a number or 'default'")
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="gallery-scale-") as tmp:
        for people, templates in sizes:
            results.append(run_size(people, templates, args, Path(tmp)))
    elapsed = time.perf_counter() - started

    print(markdown_table(HEADERS, [r.row for r in results]))
    print()
    print(
        f"- baseline: {results[0].match['baseline_source']} over np.array(list of float64 encodings), "
        "then np.argmin; speed-up = baseline median / kiosk median, the two timed interleaved per probe"
    )
    print("- probes: half genuine (person's centre + noise, distance ~0.4), half impostors (random descriptors)")
    for r in results:
        m = r.match
        size = f"{r.people:,} x {r.templates}"
        disagree = m["probes"] - m["same"]
        ties = f" ({m['near_ties']} of them float64 near-ties < 1e-5)" if disagree else ""
        line = (
            f"- {size}: {m['probes']} probes; nearest identity differs on {disagree}{ties}; "
            f"max |kiosk - baseline distance| {m['max_abs_diff']:.1e}; "
            f"baseline given the Python list instead: {m['list_median']:.2f} ms"
        )
        one, dflt = r.alone["1"], r.alone["default"]
        line += (
            f"; kiosk alone, median/p95 ms: 1 BLAS thread {one['kiosk_median']:.3f}/{one['kiosk_p95']:.3f}, "
            f"OpenBLAS default threads {dflt['kiosk_median']:.3f}/{dflt['kiosk_p95']:.3f}"
        )
        print(line)
    print(
        "- load ms, load+HMAC ms: Gallery.load in a fresh subprocess (imports excluded; page cache warm, as the "
        "file was just written); RSS growth = VmRSS after - before the load; peak = VmHWM after - VmRSS before; "
        "matrix MB = matrix + sq_norms + starts; MB = 10^6 bytes"
    )
    for r in results:
        if r.people == 10_000 and r.templates == 1:
            m = r.match
            verdict = "MET" if m["kiosk_median"] <= 1.0 else "MISSED"
            print(
                f"- TARGET 10k match <= 1 ms: median {m['kiosk_median']:.3f} ms, p95 {m['kiosk_p95']:.3f} ms "
                f"-> {verdict}"
            )
            verdict = "MET" if r.load_ms <= 500.0 else "MISSED"
            print(f"- TARGET 10k load well under a second (taken as <= 500 ms): {r.load_ms:.0f} ms -> {verdict}")
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, BLAS threads {args.blas_threads}; load average {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; repeats {args.repeats}; ran {elapsed:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
