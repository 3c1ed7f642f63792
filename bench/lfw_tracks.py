"""The kiosk's multi-frame track rule on LFW-dev: several photos of one person stand in for the frames of a
walk-up, and the rule is the one the pipeline runs (kiosk.recognizer.matching.TrackVerdict).

Uses the descriptors cached by bench/lfw_identification.py (run that first). People with three or more photos
are split at random into enrolled (first photo, 5-jitter template) and not enrolled, ten times; each person's
other photos, up to ``max_encodings``, are one track. The baseline is face_recognition's video example: a track
is named as soon as one of its frames has a nearest distance within the tolerance. LFW photos of one person are
taken years apart, so they vary far more than the frames of one walk-up: this is a harsh test of agreement.
Run: ``.venv/bin/python bench/lfw_tracks.py``.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
from _common import cache_dir, ensure_repo_on_path, markdown_table, pct

ensure_repo_on_path()

from kiosk.config import DecisionConfig  # noqa: E402
from kiosk.recognizer.matching import TrackVerdict, match  # noqa: E402
from kiosk_contract.gallery import Gallery, Person  # noqa: E402

SPLITS = 10


def kiosk_track(gallery: Gallery, frames: np.ndarray, rule: DecisionConfig) -> str | None:
    """What the pipeline would decide for a track with these encodings."""
    verdict = TrackVerdict(rule)
    for n, vec in enumerate(frames[: rule.max_encodings], start=1):
        fused = match(gallery, frames[:n].mean(axis=0)) if n >= rule.agreement else None
        verdict.add(match(gallery, vec), fused)
        if verdict.accepted_nip is not None:
            return verdict.accepted_nip
    return None


def baseline_track(gallery: Gallery, frames: np.ndarray, tolerance: float) -> str | None:
    """face_recognition's video example: the first frame whose nearest face is within the tolerance names it."""
    for vec in frames:
        m = match(gallery, vec)
        if m.distance <= tolerance:
            return m.best_nip
    return None


def main() -> int:
    path = cache_dir() / "lfw-dev-kiosk.npz"
    if not path.exists():
        print(f"lfw_tracks: {path} is missing: run bench/lfw_identification.py first", file=sys.stderr)
        return 2
    cache = np.load(path)
    files = [str(f) for f in cache["files"]]
    jit5 = {str(f): i for i, f in enumerate(cache["jit5_files"])}
    by_person: dict[str, list[int]] = collections.defaultdict(list)
    for i, f in enumerate(files):
        if cache["n_faces"][i] > 0:
            by_person[f.split("/")[-2]].append(i)
    people = sorted(p for p, idx in by_person.items() if len(idx) >= 3 and files[sorted(idx)[0]] in jit5)
    rule = DecisionConfig()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for seed in range(SPLITS):
        order = np.random.default_rng(seed).permutation(len(people))
        enrolled = [people[i] for i in order[: len(people) // 2]]
        strangers = [people[i] for i in order[len(people) // 2 :]]
        gallery = Gallery([
            Person(p, p, "", cache["jit5_desc"][jit5[files[sorted(by_person[p])[0]]]][None, :]) for p in enrolled
        ])
        tracks = [(p, cache["desc"][sorted(by_person[p])[1:][: rule.max_encodings]]) for p in enrolled]
        tracks += [(None, cache["desc"][sorted(by_person[p])[: rule.max_encodings]]) for p in strangers]
        deciders: dict[str, Callable[[np.ndarray], str | None]] = {
            "kiosk track rule": partial(kiosk_track, gallery, rule=rule),
            "kiosk, votes only (no fused descriptor)": partial(
                kiosk_track, gallery, rule=replace(rule, fused_accept_distance=0.0)
            ),
        }
        for tol in (0.6, 0.5, 0.45, 0.42, 0.4, 0.35):
            deciders[f"baseline, tolerance {tol}"] = partial(baseline_track, gallery, tolerance=tol)
        for name, decide in deciders.items():
            c = counts[name]
            for truth, frames in tracks:
                got = decide(frames)
                if truth is None:
                    c["strangers"] += 1
                    c["false_accept"] += got is not None
                else:
                    c["mates"] += 1
                    c["hit"] += got == truth
                    c["wrong"] += got is not None and got != truth
    rows = [
        [name, c["mates"], c["strangers"], pct(c["false_accept"], c["strangers"]),
         pct(c["mates"] - c["hit"], c["mates"]), pct(c["wrong"], c["mates"])]
        for name, c in counts.items()
    ]
    print(f"\n### Tracks of up to {rule.max_encodings} photos, {len(people)} people with 3+ photos, "
          f"{SPLITS} random enrolled/stranger splits (pooled)\n")
    print(f"Kiosk rule: accept_distance {rule.accept_distance}, min_margin {rule.min_margin}, agreement "
          f"{rule.agreement} of up to {rule.max_encodings}, fused_accept_distance {rule.fused_accept_distance}.\n")
    print(markdown_table(["decision", "mate tracks", "stranger tracks", "FPIR", "FNIR", "wrong identity (mates)"],
                         rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
