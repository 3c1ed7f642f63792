"""Open-set 1:N identification on LFW-dev with the kiosk's own pipeline and decision rule.

An ISO/IEC 19795-1 style evaluation, printed as markdown tables on stdout (progress goes to stderr):

* every LFW-dev photo is encoded once with ``kiosk.recognizer.faces.analyze_still`` (QualityConfig()
  defaults, ``min_face_px=0``, the largest face is the subject, no face = failure to acquire), and the
  enrolment photos again with 5 and 10 jitters (5 is what ``kiosk enroll`` uses); everything is cached per
  photo in ``.cache/bench/lfw-dev-kiosk.npz``, so only new photos are ever encoded;
* gallery: the first photo with a face of each person with two or more photos; mate probes: up to four
  other photos of each enrolled person; non-mate probes: every photo of each one-photo person;
* FNIR counts a mate probe that is not returned as its own identity (rejected, wrong identity, or failure
  to acquire); FPIR counts a non-mate probe returned as anyone (a non-mate without a face is a rejection);
* scores compared: nearest distance, margin to the second identity, cohort normalisation against the
  gallery (distance minus the mean of the k nearest other identities, z-scores), jittered templates, and the
  face_recognition baseline (nearest ``face_distance`` / ``compare_faces`` with ``tolerance=0.6``);
* ``DecisionConfig.accept_distance`` / ``min_margin`` are tuned on half of the people and reported on the
  other half (repeated over 10 seeded splits to size the optimism of tuning, then one split shown both ways),
  with FPIR held at every gallery size from 25 people to the whole half; the final values are tuned the same
  way on all of LFW-dev, and the rule is re-run exactly as implemented by ``kiosk.recognizer.matching``;
* verification accuracy on ``pairs-dev.txt`` and a DET plot (``docs/img/det-lfw-dev.png``).

Run: ``.venv/bin/python bench/lfw_identification.py`` (see docs/thresholds.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, Progress, cache_dir, ensure_repo_on_path, faces_dir, markdown_table, pct

ensure_repo_on_path()

QUALITY_FIELDS = ("face_px", "sharpness", "brightness", "yaw", "roll_deg")
CACHE_NAME = "lfw-dev-kiosk.npz"
PIPELINE = "analyze_still/largest-face/still_upsample/chip150-pad0.25/v1"


# --------------------------------------------------------------------------------------------------------------
# Encoding (the only expensive part; cached per file in .cache/bench/lfw-dev-kiosk.npz)
# --------------------------------------------------------------------------------------------------------------


def _worker_init() -> None:
    import cv2

    from kiosk import models

    cv2.setNumThreads(1)
    models.frontal_detector()
    models.shape_predictor_5()
    models.face_encoder()


def _encode_plain(path: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The kiosk's still path: every face of the photo, the largest one is the subject (no jitter)."""
    from kiosk.config import QualityConfig
    from kiosk.imageio import read_rgb
    from kiosk.recognizer.faces import analyze_still

    obs = analyze_still(read_rgb(Path(path)), QualityConfig(), min_face_px=0)
    if not obs:
        return 0, np.zeros(4, np.int32), np.full(5, np.nan, np.float32), np.full(128, np.nan, np.float32)
    o = obs[0]
    q = np.array([getattr(o.quality, f) for f in QUALITY_FIELDS], np.float32)
    assert o.descriptor is not None
    return len(obs), np.array(o.box.as_list(), np.int32), q, o.descriptor.astype(np.float32)


def _encode_jittered(job: tuple[str, int]) -> np.ndarray:
    """The same largest face as analyze_still, encoded with ``jitters`` perturbed copies (enrolment)."""
    from kiosk.imageio import read_rgb
    from kiosk.recognizer import faces

    path, jitters = job
    rgb = read_rgb(Path(path))
    boxes = sorted(faces.detect(rgb, faces.still_upsample(rgb)), key=lambda b: -b.width)
    if not boxes:
        return np.full(128, np.nan, np.float32)
    return faces.encode(faces.chip(rgb, faces.landmarks(rgb, boxes[0])), jitters).astype(np.float32)


@dataclass
class Encodings:
    """Per-photo results of the plain pass, plus jittered descriptors of the enrolment photos."""

    files: list[str]  # relative to the lfw folder, sorted by person then number
    n_faces: np.ndarray  # int16[n]; 0 = failure to acquire
    boxes: np.ndarray  # int32[n, 4]
    quality: np.ndarray  # float32[n, 5] in QUALITY_FIELDS order
    desc: np.ndarray  # float32[n, 128]; NaN rows for failures to acquire
    jit: dict[int, dict[str, np.ndarray]]  # jitters -> photo -> descriptor

    def templates(self, photos: list[str], jitters: int) -> np.ndarray:
        """Descriptors of these photos: plain (``jitters`` = 0, from the first pass) or jittered."""
        if jitters == 0:
            row = {f: i for i, f in enumerate(self.files)}
            return self.desc[[row[f] for f in photos]]
        return np.array([self.jit[jitters][f] for f in photos], np.float32).reshape(-1, 128)


def _file_key(files: Sequence[str]) -> str:
    return hashlib.sha256(("\n".join(files) + "|" + PIPELINE).encode()).hexdigest()[:16]


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if str(data.get("pipeline", "")) != PIPELINE:
        print(f"{path}: made by another pipeline version, recomputing", file=sys.stderr)
        return {}
    return data


def encode_lfw(lfw: Path, files: list[str], enrol: list[str], jitters: Sequence[int], workers: int) -> Encodings:
    """Encode every photo once (plain) and the enrolment photos again per jitter count, reusing the cache.

    The cache holds one entry per photo (and per photo and jitter count), so a changed file list only encodes
    the new photos; it is rewritten atomically after each run that computed something.
    """
    import multiprocessing as mp

    cache = cache_dir() / CACHE_NAME
    old = _load_cache(cache)
    known = {str(f): i for i, f in enumerate(old.get("files", []))}
    plain: dict[str, tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {
        f: (int(old["n_faces"][i]), old["boxes"][i], old["quality"][i], old["desc"][i]) for f, i in known.items()
    }
    jit: dict[int, dict[str, np.ndarray]] = {}
    for n in (int(x) for x in old.get("jit_counts", [])):
        jit[n] = dict(zip((str(f) for f in old[f"jit{n}_files"]), old[f"jit{n}_desc"], strict=True))
    todo = [f for f in files if f not in plain]
    jit_todo = {n: [f for f in enrol if f not in jit.get(n, {})] for n in jitters if n > 0}
    computed = bool(todo) or any(jit_todo.values())
    if computed:
        with mp.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
            if todo:
                print(
                    f"encoding {len(todo)} photos ({len(files) - len(todo)} cached), {workers} workers", file=sys.stderr
                )
                prog = Progress("plain encodings", len(todo))
                results = pool.imap(_encode_plain, [str(lfw / f) for f in todo], chunksize=8)
                for k, (rel, res) in enumerate(zip(todo, results, strict=True)):
                    plain[rel] = res
                    prog.update(k + 1)
            for n, photos in jit_todo.items():
                if not photos:
                    continue
                print(f"encoding {len(photos)} enrolment photos with jitters={n}", file=sys.stderr)
                prog = Progress(f"jitters={n} encodings", len(photos))
                vecs = pool.imap(_encode_jittered, [(str(lfw / f), n) for f in photos], chunksize=2)
                for k, (rel, vec) in enumerate(zip(photos, vecs, strict=True)):
                    jit.setdefault(n, {})[rel] = vec
                    prog.update(k + 1)
    if computed:
        all_files = sorted(plain)
        rows = [plain[f] for f in all_files]
        arrays: dict[str, np.ndarray] = {
            "pipeline": np.array(PIPELINE),
            "key": np.array(_file_key(all_files)),
            "files": np.array(all_files),
            "n_faces": np.array([r[0] for r in rows], np.int16),
            "boxes": np.array([r[1] for r in rows], np.int32).reshape(-1, 4),
            "quality": np.array([r[2] for r in rows], np.float32).reshape(-1, 5),
            "desc": np.array([r[3] for r in rows], np.float32).reshape(-1, 128),
            "jit_counts": np.array(sorted(jit), np.int64),
        }
        for n, by_file in jit.items():
            names = sorted(by_file)
            arrays[f"jit{n}_files"] = np.array(names)
            arrays[f"jit{n}_desc"] = np.array([by_file[f] for f in names], np.float32).reshape(-1, 128)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, cache)
        print(f"cached in {cache}", file=sys.stderr)
    rows = [plain[f] for f in files]
    return Encodings(
        files=list(files),
        n_faces=np.array([r[0] for r in rows], np.int16),
        boxes=np.array([r[1] for r in rows], np.int32).reshape(-1, 4),
        quality=np.array([r[2] for r in rows], np.float32).reshape(-1, 5),
        desc=np.array([r[3] for r in rows], np.float32).reshape(-1, 128),
        jit={n: jit.get(n, {}) for n in jitters if n > 0},
    )


# --------------------------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------------------------


def list_lfw(lfw: Path) -> dict[str, list[str]]:
    """Person -> relative photo paths sorted by photo number."""
    people: dict[str, list[str]] = {}
    for d in sorted(p for p in lfw.iterdir() if p.is_dir()):
        photos = sorted(d.glob(f"{d.name}_*.jpg"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        if photos:
            people[d.name] = [f"{d.name}/{p.name}" for p in photos]
    return people


def enrolment_photo(photos: list[str], acquired: dict[str, bool]) -> str | None:
    """The first photo (by number) in which a face is found; an enrolment desk retakes a failed photo."""
    return next((p for p in photos if acquired.get(p, True)), None)


@dataclass
class Protocol:
    """Who is enrolled with which photo, and which photos probe the gallery."""

    gallery: list[str]  # enrolled people
    enrol_files: list[str]
    mate_files: list[str]
    mate_owner: list[str]
    nonmate_files: list[str]
    nonmate_people: list[str]
    enrol_retakes: int  # people whose first photo had no face, enrolled from a later one
    not_enrolled: list[str]  # people with >= 2 photos and no face in any


def build_protocol(people: dict[str, list[str]], acquired: dict[str, bool], max_mates: int = 4) -> Protocol:
    p = Protocol([], [], [], [], [], [], 0, [])
    for name, photos in people.items():
        if len(photos) == 1:
            p.nonmate_files.append(photos[0])
            p.nonmate_people.append(name)
            continue
        enrol = enrolment_photo(photos, acquired)
        if enrol is None:
            p.not_enrolled.append(name)
            continue
        p.enrol_retakes += enrol != photos[0]
        p.gallery.append(name)
        p.enrol_files.append(enrol)
        others = [f for f in photos if f != enrol][:max_mates]
        p.mate_files += others
        p.mate_owner += [name] * len(others)
    return p


@dataclass
class Data:
    """The protocol's descriptors: gallery templates per jitter count (0 = plain) and probes."""

    names: list[str]  # enrolled people
    templates: dict[int, np.ndarray]  # jitters -> float32[len(names), 128]
    probes: np.ndarray  # float32[P, 128], NaN rows = failure to acquire
    own: np.ndarray  # index into names, -1 for non-mates
    person: np.ndarray  # the probe's person

    def trial(self, jitters: int, people: set[str] | None = None, distractors: np.ndarray | None = None) -> Trial:
        """The trial of the people in ``people`` (all if None), optionally with extra enrolled templates."""
        keep = np.array([people is None or n in people for n in self.names])
        templates = self.templates[jitters][keep]
        names = [n for n, k in zip(self.names, keep, strict=True) if k]
        remap = np.cumsum(keep) - 1
        sel = np.ones(len(self.probes), bool) if people is None else np.isin(self.person, sorted(people))
        own = np.where(self.own[sel] >= 0, remap[np.maximum(self.own[sel], 0)], -1)
        if distractors is not None:
            templates = np.concatenate([templates, distractors])
            names = names + [f"distractor-{i}" for i in range(len(distractors))]
        return make_trial(templates, names, self.probes[sel], own)

    def exact_rates(self, jitters: int, rule: object, people: set[str] | None = None) -> Rates:
        """The single-frame rule exactly as kiosk.recognizer.matching runs it: a Gallery, match(), accepted()."""
        from kiosk.recognizer.matching import match
        from kiosk_contract.gallery import Gallery, Person

        keep = [i for i, n in enumerate(self.names) if people is None or n in people]
        gallery = Gallery(
            [
                Person(nip=self.names[i], name=self.names[i], unit="", templates=self.templates[jitters][i : i + 1])
                for i in keep
            ]
        )
        sel = np.ones(len(self.probes), bool) if people is None else np.isin(self.person, sorted(people))
        hits = wrong = fp = n_mate = 0
        for vec, own, who in zip(self.probes[sel], self.own[sel], self.person[sel], strict=True):
            n_mate += own >= 0
            if not np.isfinite(vec).all():
                continue  # failure to acquire: no descriptor, nobody is accepted
            nip = match(gallery, vec).accepted(rule)  # type: ignore[arg-type]
            if nip is None:
                continue
            if own < 0:
                fp += 1
            elif nip == who:
                hits += 1
            else:
                wrong += 1
        return Rates(n_mate, int(sel.sum()) - n_mate, hits, wrong, fp)


def split_people(gallery: list[str], singles: list[str], seed: int) -> tuple[set[str], set[str]]:
    """Two halves of the people; enrolled and one-photo people are shuffled separately (seeded)."""
    rng = np.random.default_rng(seed)
    g, s = rng.permutation(gallery), rng.permutation(singles)
    a = {str(x) for x in g[: len(g) // 2]} | {str(x) for x in s[: len(s) // 2]}
    return a, (set(gallery) | set(singles)) - a


# --------------------------------------------------------------------------------------------------------------
# Scores and error rates
# --------------------------------------------------------------------------------------------------------------

KMAX = 50  # the deepest cohort considered


@dataclass
class Trial:
    """One gallery and its probes: each probe's nearest identities, ascending (inf rows = failure to acquire)."""

    names: list[str]
    best: np.ndarray  # int[P], index into names
    d: np.ndarray  # float64[P, min(N, KMAX + 1)] ascending distances to distinct identities
    own: np.ndarray  # int[P], the probe's own identity index, -1 for non-mates

    @property
    def mate(self) -> np.ndarray:
        return self.own >= 0

    @property
    def acquired(self) -> np.ndarray:
        return np.isfinite(self.d[:, 0])

    @property
    def hit(self) -> np.ndarray:
        """Mate probes whose nearest identity is their own (rank-1 correct)."""
        return self.mate & (self.best == self.own) & self.acquired

    @property
    def n_mate(self) -> int:
        return int(self.mate.sum())

    @property
    def n_nonmate(self) -> int:
        return int((~self.mate).sum())

    def margin(self) -> np.ndarray:
        """Second-best minus best distance (inf with a single identity or no face: never limiting)."""
        if self.d.shape[1] < 2:
            return np.full(len(self.d), np.inf)
        with np.errstate(invalid="ignore"):
            return np.where(self.acquired, self.d[:, 1] - self.d[:, 0], np.inf)

    def cohort_gap(self, k: int) -> np.ndarray:
        """Mean distance to the k nearest *other* identities minus the best distance (the gallery is the cohort);
        k=1 is the margin. inf where there is no cohort or no face."""
        if k <= 0 or self.d.shape[1] < 2:
            return np.full(len(self.d), np.inf)
        with np.errstate(invalid="ignore"):
            return np.where(self.acquired, self.d[:, 1 : k + 1].mean(axis=1) - self.d[:, 0], np.inf)

    def zscore(self, k: int) -> np.ndarray:
        """(d1 - mean) / std of the k nearest other identities; inf without a face."""
        cohort = self.d[:, 1 : k + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (self.d[:, 0] - cohort.mean(axis=1)) / cohort.std(axis=1)
        return np.where(self.acquired, z, np.inf)


def score_distance(t: Trial) -> np.ndarray:
    """The nearest distance d1 (face_recognition's score)."""
    return t.d[:, 0]


def score_margin(t: Trial) -> np.ndarray:
    """d1 - d2 (minus the margin); inf without a face."""
    return np.where(t.acquired, -t.margin(), np.inf)


def score_cohort(t: Trial, k: int) -> np.ndarray:
    """d1 minus the mean distance of the k next identities; inf without a face."""
    return np.where(t.acquired, -t.cohort_gap(k), np.inf)


def score_z(t: Trial, k: int) -> np.ndarray:
    return t.zscore(k)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and b (float64); rows with NaN give NaN."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    sq = (a64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2.0 * a64 @ b64.T
    return np.sqrt(np.maximum(sq, 0.0))


def make_trial(templates: np.ndarray, names: list[str], probes: np.ndarray, own: np.ndarray) -> Trial:
    dist = pairwise(probes, templates)
    dist[~np.isfinite(dist).all(axis=1)] = np.inf  # failure to acquire: never matches
    keep = min(len(names), KMAX + 1)
    part = np.argpartition(dist, keep - 1, axis=1)[:, :keep] if keep < len(names) else np.argsort(dist, axis=1)
    dpart = np.take_along_axis(dist, part, axis=1)
    order = np.argsort(dpart, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return Trial(list(names), idx[:, 0], np.take_along_axis(dpart, order, axis=1), own)


@dataclass(frozen=True)
class Rule:
    """Accept the nearest identity when ``d1 <= accept``, ``d2 - d1 >= margin`` and, if ``k`` > 0,
    ``mean(d2 .. d(k+1)) - d1 >= gap`` (a cohort-normalised margin); ``k`` = 0 is the kiosk's rule."""

    accept: float
    margin: float = 0.0
    k: int = 0
    gap: float = 0.0

    def eligible(self, t: Trial) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            ok = (t.margin() >= self.margin) & t.acquired
            return ok & (t.cohort_gap(self.k) >= self.gap) if self.k else ok

    def cohort_label(self) -> str:
        return f"k={self.k}, gap ≥ {self.gap:.2f}" if self.k else "–"


@dataclass
class Rates:
    """Open-set outcomes of one rule on one trial (counts; rates are properties)."""

    n_mate: int
    n_nonmate: int
    hits: int  # mates accepted as themselves
    wrong: int  # mates accepted as another enrolled person
    false_pos: int  # non-mates accepted as anyone

    @property
    def fnir(self) -> float:
        return 1.0 - self.hits / self.n_mate

    @property
    def fpir(self) -> float:
        return self.false_pos / self.n_nonmate

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.n_mate


def rates(t: Trial, rule: Rule) -> Rates:
    ok = rule.eligible(t) & (t.d[:, 0] <= rule.accept)
    return Rates(
        t.n_mate,
        t.n_nonmate,
        int((ok & t.hit).sum()),
        int((ok & t.mate & ~t.hit).sum()),
        int((ok & ~t.mate).sum()),
    )


def curves(
    t: Trial, score: np.ndarray, thresholds: np.ndarray, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPIR, FNIR and wrong-identity rate at each threshold (accept eligible probes with score <= threshold)."""
    el = np.isfinite(score) if eligible is None else eligible & np.isfinite(score)
    nm = np.sort(score[el & ~t.mate])
    hit = np.sort(score[el & t.hit])
    wrong = np.sort(score[el & t.mate & ~t.hit])
    fpir = np.searchsorted(nm, thresholds, side="right") / t.n_nonmate
    fnir = 1.0 - np.searchsorted(hit, thresholds, side="right") / t.n_mate
    wrong_rate = np.searchsorted(wrong, thresholds, side="right") / t.n_mate
    return fpir, fnir, wrong_rate


def fnir_at_fpir(t: Trial, score: np.ndarray, alpha: float, eligible: np.ndarray | None = None) -> tuple[float, float]:
    """(FNIR, threshold) at the most permissive threshold whose FPIR is at most ``alpha``."""
    el = np.isfinite(score) if eligible is None else eligible & np.isfinite(score)
    nm = np.sort(score[el & ~t.mate])
    allowed = int(np.floor(alpha * t.n_nonmate + 1e-9))
    thr = float(nm[allowed]) if allowed < len(nm) else np.inf  # accept strictly below this score
    hits = int((el & t.hit & (score < thr)).sum())
    return 1.0 - hits / t.n_mate, thr


def det_curve(t: Trial, score: np.ndarray, eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FPIR and FNIR at every distinct threshold (for plotting)."""
    el = np.isfinite(score) if eligible is None else eligible & np.isfinite(score)
    thr = np.unique(score[el])
    fpir, fnir, _ = curves(t, score, thr, el)
    return np.concatenate([[0.0], fpir]), np.concatenate([[1.0], fnir])


# --------------------------------------------------------------------------------------------------------------
# Choosing the defaults
# --------------------------------------------------------------------------------------------------------------

MAX_FPIR = 0.01
MAX_WRONG = 0.005
ACCEPT_GRID = np.round(np.arange(0.30, 0.70 + 1e-9, 0.005), 3)
MARGIN_GRID = np.round(np.arange(0.0, 0.15 + 1e-9, 0.005), 3)
COHORT_MARGIN_GRID = np.round(np.arange(0.0, 0.15 + 1e-9, 0.01), 2)
GAP_GRID = np.round(np.arange(0.0, 0.30 + 1e-9, 0.02), 2)
COHORT_K = (5, 10)
GALLERY_SIZES = (25, 50, 100, 200, 400)  # smaller galleries drawn at random; the whole gallery is always added
DRAWS = 10  # random galleries per smaller size
TARGETS = (1.0, 0.85, 0.7)  # fractions of MAX_FPIR tried as the tuning target


@dataclass
class Sized:
    """Trials of one set of people at several gallery sizes (random subsets of the enrolled people, every
    non-mate kept); the last size is the whole gallery."""

    sizes: list[int]
    trials: list[list[Trial]]

    @property
    def full(self) -> Trial:
        return self.trials[-1][0]


def sized_trials(data: Data, jitters: int, people: set[str], seed: int) -> Sized:
    enrolled = sorted(set(data.names) & people)
    singles = people - set(data.names)
    rng = np.random.default_rng(seed)
    sizes, trials = [], []
    for n in GALLERY_SIZES:
        if n < len(enrolled):
            sizes.append(n)
            trials.append(
                [data.trial(jitters, set(rng.choice(enrolled, n, replace=False)) | singles) for _ in range(DRAWS)]
            )
    sizes.append(len(enrolled))
    trials.append([data.trial(jitters, people)])
    return Sized(sizes, trials)


def pooled(group: list[Trial], rule: Rule) -> Rates:
    """One rule's outcomes summed over the trials of one gallery size."""
    rs = [rates(t, rule) for t in group]
    return Rates(
        sum(r.n_mate for r in rs),
        sum(r.n_nonmate for r in rs),
        sum(r.hits for r in rs),
        sum(r.wrong for r in rs),
        sum(r.false_pos for r in rs),
    )


def worst_fpir(s: Sized, rule: Rule) -> tuple[float, int]:
    """The highest FPIR over the gallery sizes, and that size."""
    fpirs = [pooled(g, rule).fpir for g in s.trials]
    i = int(np.argmax(fpirs))
    return fpirs[i], s.sizes[i]


def tune(s: Sized, ks: Sequence[int], max_fpir: float = MAX_FPIR, max_wrong: float = MAX_WRONG) -> Rule | None:
    """The rule with the lowest FNIR on the whole gallery whose FPIR stays <= ``max_fpir`` and whose wrong
    identities stay <= ``max_wrong`` at *every* gallery size of ``s``.

    ``ks`` = [0] tunes the kiosk's rule (accept_distance, min_margin); k > 0 adds a cohort gap. Ties go to the
    larger margin and gap, then to the stricter threshold.
    """
    best_key: tuple[float, float, float, float] | None = None
    chosen = None
    for k in ks:
        for m in MARGIN_GRID if k == 0 else COHORT_MARGIN_GRID:
            for g in GAP_GRID if k else GAP_GRID[:1]:
                shape = Rule(0.0, float(m), k, float(g) if k else 0.0)
                worst = np.zeros(len(ACCEPT_GRID))
                fnir = np.ones(len(ACCEPT_GRID))
                for group in s.trials:
                    fp, hits, wrong, n_nm, n_m = curve_counts(group, shape)
                    worst = np.maximum(worst, np.maximum(fp / n_nm / max_fpir, wrong / n_m / max_wrong))
                    fnir = 1.0 - hits / n_m  # the last group is the whole gallery
                for i in np.flatnonzero(worst <= 1.0 + 1e-9):
                    key = (round(float(fnir[i]), 9), -float(m), -float(g), float(ACCEPT_GRID[i]))
                    if best_key is None or key < best_key:
                        best_key = key
                        chosen = Rule(float(ACCEPT_GRID[i]), float(m), k, float(g) if k else 0.0)
    return chosen


def curve_counts(group: list[Trial], shape: Rule) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Summed false positives, hits and wrong identities at every ACCEPT_GRID threshold, and the totals."""
    fp = np.zeros(len(ACCEPT_GRID))
    hits = np.zeros(len(ACCEPT_GRID))
    wrong = np.zeros(len(ACCEPT_GRID))
    n_nm = n_m = 0
    for t in group:
        el = shape.eligible(t)
        d1 = t.d[:, 0]
        fp += np.searchsorted(np.sort(d1[el & ~t.mate]), ACCEPT_GRID, side="right")
        hits += np.searchsorted(np.sort(d1[el & t.hit]), ACCEPT_GRID, side="right")
        wrong += np.searchsorted(np.sort(d1[el & t.mate & ~t.hit]), ACCEPT_GRID, side="right")
        n_nm += t.n_nonmate
        n_m += t.n_mate
    return fp, hits, wrong, n_nm, n_m


# --------------------------------------------------------------------------------------------------------------
# Verification on pairs-dev.txt
# --------------------------------------------------------------------------------------------------------------


def read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    """(photo a, photo b, same person) from LFW's pairs format; a leading all-numeric header line is skipped."""
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if not f or all(x.isdigit() for x in f):
            continue
        if len(f) == 3:
            a, b, same = (f[0], int(f[1])), (f[0], int(f[2])), True
        elif len(f) == 4:
            a, b, same = (f[0], int(f[1])), (f[2], int(f[3])), False
        else:
            raise ValueError(f"{path}: unexpected line {line!r}")
        out.append((f"{a[0]}/{a[0]}_{a[1]:04d}.jpg", f"{b[0]}/{b[0]}_{b[1]:04d}.jpg", same))
    return out


def best_threshold(dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising the accuracy of ``dist <= threshold`` on these pairs."""
    cands = np.unique(dist)
    mids = np.concatenate([[cands[0] - 1e-6], (cands[:-1] + cands[1:]) / 2, [cands[-1] + 1e-6]])
    order = np.argsort(dist)
    ds, ss = dist[order], same[order]
    k = np.searchsorted(ds, mids, side="right")  # pairs accepted at each candidate
    tp = np.concatenate([[0], np.cumsum(ss)])[k]
    tn = int((~ss).sum()) - np.concatenate([[0], np.cumsum(~ss)])[k]
    acc = (tp + tn) / len(dist)
    i = int(np.argmax(acc))
    return float(mids[i]), float(acc[i])


def cv_accuracy(dist: np.ndarray, same: np.ndarray, folds: int = 10, seed: int = 0) -> tuple[float, float, float]:
    """Mean and std of held-out accuracy (threshold fit on the other folds; stratified seeded split), and the
    mean fitted threshold."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(dist), np.int64)
    for cls in (True, False):
        idx = np.flatnonzero(same == cls)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    accs, thrs = [], []
    for f in range(folds):
        thr, _ = best_threshold(dist[fold != f], same[fold != f])
        accs.append(float(np.mean((dist[fold == f] <= thr) == same[fold == f])))
        thrs.append(thr)
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(thrs))


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------


def count(num: int, den: int) -> str:
    """``1.23% (12/975)``."""
    return f"{pct(num, den)} ({num}/{den})"


def rate_cells(r: Rates) -> list[str]:
    return [count(r.false_pos, r.n_nonmate), count(r.n_mate - r.hits, r.n_mate), count(r.wrong, r.n_mate)]


def tname(jitters: int) -> str:
    return f"jit{jitters}" if jitters else "plain"


def check_face_recognition(lfw: Path, enc: Encodings, n: int = 8) -> str:
    """Encode a few photos with face_recognition itself and compare with the kiosk's cached descriptors."""
    import face_recognition  # needs pkg_resources (setuptools < 81)

    picks = [i for i in np.linspace(0, len(enc.files) - 1, 4 * n).astype(int) if enc.n_faces[i]][:n]
    worst_desc, worst_box = 0.0, 0
    for i in picks:
        img = face_recognition.load_image_file(str(lfw / enc.files[i]))
        locs = face_recognition.face_locations(img, number_of_times_to_upsample=1, model="hog")
        vecs = face_recognition.face_encodings(img, locs, num_jitters=1, model="small")
        j = max(range(len(locs)), key=lambda k: locs[k][1] - locs[k][3])  # the largest face
        worst_desc = max(worst_desc, float(np.linalg.norm(vecs[j] - enc.desc[i])))
        worst_box = max(worst_box, int(np.abs(np.array(locs[j]) - enc.boxes[i]).max()))
    return (
        f"Check: face_recognition.face_encodings (HOG, upsample 1, 5-point model, num_jitters=1) on {len(picks)} "
        f"photos against the kiosk's plain descriptors: largest L2 difference {worst_desc:.1e}, largest box "
        f"difference {worst_box} px (the same computation)."
    )


def plot_det(
    path: Path,
    lines: list[tuple[str, np.ndarray, np.ndarray]],
    points: list[tuple[str, float, float, str]],
    n_nonmate: int,
    n_mate: int,
    n_enrolled: int,
) -> None:
    """FNIR against FPIR on log-log axes, saved as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo_x, lo_y = 0.5 / n_nonmate, 0.5 / n_mate
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for label, xs, ys in lines:
        ax.step(np.maximum(xs, lo_x), np.maximum(ys, lo_y), where="post", label=label, linewidth=1.4)
    for label, x, y, marker in points:
        ax.plot([max(x, lo_x)], [max(y, lo_y)], marker, markersize=8, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_x, 1.0)
    ax.set_ylim(0.05, 1.0)
    ax.axvline(MAX_FPIR, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(f"FPIR (non-mate accepted as anyone; {n_nonmate} non-mate probes)")
    ax.set_ylabel(f"FNIR (mate not returned as itself; {n_mate} mate probes)")
    ax.set_title(f"Open-set 1:N, single frame, LFW-dev ({n_enrolled} enrolled, one photo each)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Open-set 1:N identification on LFW-dev (markdown on stdout).")
    ap.add_argument("--data", type=Path, default=None, help="lfw-dev folder (default: $KIOSK_FACES_DIR/lfw-dev)")
    ap.add_argument("--workers", type=int, default=2, help="encoding processes (default 2)")
    ap.add_argument(
        "--jitters",
        type=int,
        nargs="+",
        default=[5, 10],
        help="jitter counts of the enrolment templates; the first is the one `kiosk enroll` uses (default 5 10)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the 2-fold split by person (default 0)")
    ap.add_argument("--repeats", type=int, default=10, help="seeds of the repeated 2-fold (default 10)")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "det-lfw-dev.png", help="DET plot PNG")
    ap.add_argument("--skip-baseline-check", action="store_true", help="do not import face_recognition")
    ap.add_argument("--encode-only", action="store_true", help="fill the cache and stop")
    args = ap.parse_args(argv)
    root = args.data or faces_dir() / "lfw-dev"
    lfw = root / "lfw"
    if not lfw.is_dir():
        print(f"{lfw} is missing: set KIOSK_FACES_DIR to the shared faces folder", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    people = list_lfw(lfw)
    files = [f for photos in people.values() for f in photos]
    # The enrolment photo depends on acquisition, known only after the plain pass: encode in two steps.
    enc = encode_lfw(lfw, files, [], args.jitters, args.workers)
    acquired = {f: bool(n) for f, n in zip(enc.files, enc.n_faces, strict=True)}
    proto = build_protocol(people, acquired)
    enc = encode_lfw(lfw, files, proto.enrol_files, args.jitters, args.workers)
    t_enc = time.monotonic() - t0
    print(f"encodings ready in {t_enc:.0f} s", file=sys.stderr)
    if args.encode_only:
        return 0

    from kiosk.config import DecisionConfig, QualityConfig

    kj = args.jitters[0]  # the templates the kiosk enrols
    sets = [0, *args.jitters]
    row = {f: i for i, f in enumerate(enc.files)}
    index = {n: i for i, n in enumerate(proto.gallery)}
    data = Data(
        names=proto.gallery,
        templates={j: enc.templates(proto.enrol_files, j) for j in sets},
        probes=enc.desc[[row[f] for f in proto.mate_files + proto.nonmate_files]],
        own=np.array([index[o] for o in proto.mate_owner] + [-1] * len(proto.nonmate_files)),
        person=np.array(proto.mate_owner + proto.nonmate_people),
    )
    fta = enc.n_faces == 0
    mate_fta = int(sum(fta[row[f]] for f in proto.mate_files))
    nonmate_fta = int(sum(fta[row[f]] for f in proto.nonmate_files))
    print(f"# LFW-dev open-set identification with the kiosk's pipeline (python {sys.version.split()[0]})")

    print("\n## Data and acquisition\n")
    print(
        markdown_table(
            ["item", "count"],
            [
                ["people / photos", f"{len(people)} / {len(files)}"],
                ["photos with no face found (failure to acquire)", count(int(fta.sum()), len(files))],
                ["photos with more than one face (the largest is taken)", int((enc.n_faces > 1).sum())],
                ["gallery: people enrolled, one photo each", len(proto.gallery)],
                ["... enrolled from a later photo (no face in the first)", proto.enrol_retakes],
                ["... people with >= 2 photos and no face in any (not enrolled)", len(proto.not_enrolled)],
                ["mate probes (up to 4 other photos per enrolled person)", len(proto.mate_files)],
                ["... no face found (counted as misses)", mate_fta],
                ["non-mate probes (every photo of a one-photo person)", len(proto.nonmate_files)],
                ["... no face found (counted as correct rejections)", nonmate_fta],
            ],
        )
    )
    if not args.skip_baseline_check:
        print("\n" + check_face_recognition(lfw, enc))

    # ---- quality measurements
    q = enc.quality[~fta]
    qcfg = QualityConfig()
    print("\n## Quality measurements of the acquired faces (kiosk.recognizer.faces.assess)\n")
    qrows: list[list[object]] = []
    for j, name in enumerate(QUALITY_FIELDS):
        vals = np.abs(q[:, j]) if name in ("yaw", "roll_deg") else q[:, j]
        qrows.append(
            [f"{name} (absolute)" if name in ("yaw", "roll_deg") else name, *np.percentile(vals, [1, 5, 50, 95])]
        )
    print(markdown_table(["measure", "p1", "p5", "p50", "p95"], qrows))
    sharp = q[:, 1]
    gate = [
        [f"sharpness < {qcfg.min_sharpness:g} (blurry)", count(int((sharp < qcfg.min_sharpness).sum()), len(q))],
        [
            f"brightness < {qcfg.min_brightness:g} (too_dark)",
            count(int((q[:, 2] < qcfg.min_brightness).sum()), len(q)),
        ],
        [
            f"abs(yaw) > {qcfg.max_yaw:g} or abs(roll) > {qcfg.max_roll_deg:g} (not_frontal)",
            count(int(((np.abs(q[:, 3]) > qcfg.max_yaw) | (np.abs(q[:, 4]) > qcfg.max_roll_deg)).sum()), len(q)),
        ],
    ] + [[f"sharpness < {s:g}", count(int((sharp < s).sum()), len(q))] for s in (50, 100, 150)]
    print("\n" + markdown_table(["QualityConfig() gate (defaults) and alternatives", "acquired faces failing"], gate))

    # ---- which score ranks best (all of LFW-dev, thresholds set on the same probes)
    trials = {j: data.trial(j) for j in sets}
    base = trials[0]
    n_mate, n_nonmate, n_gal = base.n_mate, base.n_nonmate, len(data.names)
    print(f"\n## Identification on all of LFW-dev ({n_gal} enrolled, {n_mate} mate, {n_nonmate} non-mate probes)\n")
    print(
        markdown_table(
            ["templates", "rank-1 (all mates)", "rank-1 (mates with a face)"],
            [
                [tname(j), count(int(t.hit.sum()), n_mate), pct(int(t.hit.sum()), n_mate - mate_fta)]
                for j, t in trials.items()
            ],
        )
    )
    print(
        "\nFNIR at FPIR = 1% and 0.1%, the threshold set on these same probes: how well each score separates "
        "mates from non-mates (in-sample; the defaults are chosen with held-out people below).\n"
    )
    specs: list[tuple[str, Callable[[Trial], np.ndarray]]] = [
        ("nearest distance d1 (face_recognition's score)", score_distance),
        ("margin only: d1 − d2", score_margin),
    ]
    specs += [(f"cohort: d1 − mean of the {k} next identities", partial(score_cohort, k=k)) for k in (3, 5, 10, 20, 50)]
    specs += [(f"cohort z-score, {k} next identities", partial(score_z, k=k)) for k in (10, 50)]
    score_rows: list[list[object]] = []
    for label, fn in specs:
        cells: list[object] = [label]
        for j in sets:
            cells += [f"{fnir_at_fpir(trials[j], fn(trials[j]), a)[0]:.3f}" for a in (0.01, 0.001)]
        score_rows.append(cells)
    cells = ["kiosk rule: d1 with margin ≥ m (best m per cell)"]
    for j in sets:
        t = trials[j]
        for a in (0.01, 0.001):
            f_best, m_best = min((fnir_at_fpir(t, t.d[:, 0], a, t.margin() >= m)[0], float(m)) for m in MARGIN_GRID)
            cells.append(f"{f_best:.3f} (m={m_best:.3f})")
    score_rows.append(cells)
    heads = ["score (accept the nearest identity when score ≤ threshold)"]
    heads += [f"{tname(j)} FNIR@{a}" for j in sets for a in ("1%", "0.1%")]
    print(markdown_table(heads, score_rows))

    # ---- the face_recognition baseline
    print("\n## Baseline: face_recognition's documented use (plain templates, tolerance 0.6)\n")
    d1 = base.d[:, 0]
    under = d1 <= 0.6
    nearest = Rates(
        n_mate,
        n_nonmate,
        int((under & base.hit).sum()),
        int((under & base.mate & ~base.hit).sum()),
        int((under & ~base.mate).sum()),
    )
    within = pairwise(data.probes, data.templates[0]) <= 0.6  # compare_faces(known, probe, 0.6), NaN -> False
    first = np.where(within.any(axis=1), within.argmax(axis=1), -1)  # "use the first match"
    first_rates = Rates(
        n_mate,
        n_nonmate,
        int(((first >= 0) & base.mate & (first == base.own)).sum()),
        int(((first >= 0) & base.mate & (first != base.own)).sum()),
        int(((first >= 0) & ~base.mate).sum()),
    )
    fn1, thr1 = fnir_at_fpir(base, d1, 0.01)
    print(
        markdown_table(
            ["face_recognition", "FPIR", "FNIR", "wrong identity (mates)"],
            [
                ["nearest face_distance ≤ 0.6", *rate_cells(nearest)],
                ["compare_faces(tolerance=0.6), first True in gallery order", *rate_cells(first_rates)],
                [f"nearest face_distance, threshold lowered to FPIR = 1% ({thr1:.3f})", "1.00%", pct(fn1, 1), "–"],
            ],
        )
    )

    # ---- choosing the defaults
    print("\n## Choosing accept_distance and min_margin\n")
    print(
        f"Constraint: FPIR ≤ {100 * MAX_FPIR:g}% and wrong identities (mates accepted as another enrolled person) "
        f"≤ {100 * MAX_WRONG:g}% at every gallery size — the whole gallery of the people tuned on and "
        f"{DRAWS} random smaller galleries of {', '.join(map(str, GALLERY_SIZES))} people (all non-mates kept); "
        f"objective: lowest FNIR on the whole gallery. Grid: accept_distance {ACCEPT_GRID[0]:.2f}–"
        f"{ACCEPT_GRID[-1]:.2f} and min_margin 0–{MARGIN_GRID[-1]:.2f} in steps of 0.005; the cohort variant adds "
        f"`mean(d2..d(k+1)) − d1 ≥ gap` with k in {COHORT_K}, gap 0–{GAP_GRID[-1]:.2f} step 0.02 (margin step 0.01)."
    )
    families = {"kiosk: distance + margin": [0], "+ cohort gap": list(COHORT_K)}

    # repeated 2-fold: how far tuning to the edge overshoots on new people, and whether the cohort gap helps
    print(
        f"\n### Repeated 2-fold by person ({args.repeats} seeds × 2 directions): tuned on one half, reported on the "
        "other\n"
    )
    rep: dict[tuple[int, str, float], list[tuple[list[float], float, float]]] = {}
    for seed in range(args.repeats):
        half_a, half_b = split_people(proto.gallery, proto.nonmate_people, seed)
        for j in (0, kj):
            halves = (sized_trials(data, j, half_a, seed), sized_trials(data, j, half_b, seed))
            for tune_on, report_on in ((halves[0], halves[1]), (halves[1], halves[0])):
                for fam, ks in families.items():
                    if j != kj and fam != "kiosk: distance + margin":
                        continue
                    for target in TARGETS:
                        r = tune(tune_on, ks, max_fpir=target * MAX_FPIR)
                        if r is None:
                            continue
                        per_size = [pooled(g, r).fpir for g in report_on.trials]
                        full = rates(report_on.full, r)
                        rep.setdefault((j, fam, target), []).append((per_size, full.fnir, full.wrong_rate))
        print(f"repeated 2-fold: seed {seed} done", file=sys.stderr)
    rep_rows = []
    safe: dict[tuple[int, str], float] = {}
    for (j, fam, target), res in rep.items():
        per_size = np.array([r[0] for r in res]).mean(axis=0)  # mean held-out FPIR at each size
        fnirs = np.array([r[1] for r in res])
        rep_rows.append(
            [
                tname(j),
                fam,
                f"{target * 100 * MAX_FPIR:.2f}%",
                f"{100 * per_size[-1]:.2f}%",
                f"{100 * per_size.max():.2f}%",
                f"{100 * fnirs.mean():.2f}% ± {100 * fnirs.std():.2f}",
                f"{100 * np.mean([r[2] for r in res]):.2f}%",
            ]
        )
        if per_size.max() <= MAX_FPIR and (j, fam) not in safe:
            safe[(j, fam)] = target  # TARGETS go from loose to strict: the first that holds is the loosest
    print(
        markdown_table(
            [
                "templates",
                "rule",
                "tuned to FPIR ≤",
                "held-out FPIR, whole half",
                "held-out FPIR, worst size",
                "held-out FNIR (mean ± sd)",
                "held-out wrong id",
            ],
            rep_rows,
        )
    )
    target = safe.get((kj, "kiosk: distance + margin"), TARGETS[-1])
    print(
        f"\nTuning target used from here on: FPIR ≤ {target * 100 * MAX_FPIR:.2f}% on the tuning people — the "
        f"loosest target whose mean held-out FPIR stays ≤ {100 * MAX_FPIR:g}% at every gallery size "
        f"({tname(kj)} templates, the kiosk's rule)."
    )

    fold_a, fold_b = split_people(proto.gallery, proto.nonmate_people, args.seed)
    print(
        f"\n### 2-fold by person (seed {args.seed}; A: {len(fold_a & set(proto.gallery))} enrolled + "
        f"{len(fold_a - set(proto.gallery))} one-photo people, B: {len(fold_b & set(proto.gallery))} + "
        f"{len(fold_b - set(proto.gallery))}), then all of LFW-dev\n"
    )
    fold_rows = []
    chosen: dict[tuple[int, str], Rule] = {}
    held_out: dict[str, tuple[Rule, set[str]]] = {}
    for j in sets:
        sa, sb = sized_trials(data, j, fold_a, args.seed), sized_trials(data, j, fold_b, args.seed)
        s_all = sized_trials(data, j, fold_a | fold_b, args.seed)
        for fam, ks in families.items():
            if j != kj and fam != "kiosk: distance + margin":
                continue
            for label, s_tune, s_eval, eval_people in (
                ("A → B", sa, sb, fold_b),
                ("B → A", sb, sa, fold_a),
                ("all → all", s_all, s_all, fold_a | fold_b),
            ):
                r = tune(s_tune, ks, max_fpir=target * MAX_FPIR)
                if r is None:
                    fold_rows.append([tname(j), fam, label, "–", "–", "–", "no rule meets the constraint"])
                    continue
                if label == "all → all":
                    chosen[(j, fam)] = r
                elif j == kj and fam == "kiosk: distance + margin":
                    held_out[label] = (r, eval_people)
                w_fpir, w_size = worst_fpir(s_eval, r)
                fold_rows.append(
                    [
                        tname(j),
                        fam,
                        label,
                        f"{r.accept:.3f}",
                        f"{r.margin:.3f}",
                        r.cohort_label(),
                        *rate_cells(rates(s_eval.full, r)),
                        f"{100 * w_fpir:.2f}% (N={w_size})",
                    ]
                )
    print(
        markdown_table(
            [
                "templates",
                "rule",
                "tuned → reported",
                "accept_distance",
                "min_margin",
                "cohort",
                "FPIR",
                "FNIR",
                "wrong identity",
                "worst FPIR over sizes",
            ],
            fold_rows,
        )
    )

    # ---- the kiosk's own rule, exactly as implemented
    final = chosen[(kj, "kiosk: distance + margin")]
    rule_now = DecisionConfig()
    rule_new = dataclasses.replace(rule_now, accept_distance=final.accept, min_margin=final.margin)
    print("\n## The kiosk's own single-frame rule, run through kiosk.recognizer.matching (Gallery, match, accepted)\n")
    kiosk_rows = []
    disagree: list[str] = []
    cases: list[tuple[str, Any, int, set[str] | None, str]] = []
    for j in sets:
        cases.append((f"current ({rule_now.accept_distance}, {rule_now.min_margin})", rule_now, j, None, "all"))
    for j in sets:
        cases.append((f"recommended ({final.accept:.3f}, {final.margin:.3f})", rule_new, j, None, "all"))
    for label, (r, fold_people) in held_out.items():
        rule_fold = dataclasses.replace(rule_now, accept_distance=r.accept, min_margin=r.margin)
        cases.append((f"tuned on {label[0]} ({r.accept:.3f}, {r.margin:.3f})", rule_fold, kj, fold_people, label[-1]))
    for label, rule, j, people_, where in cases:
        exact = data.exact_rates(j, rule, people_)
        vec = rates(data.trial(j, people_), Rule(rule.accept_distance, rule.min_margin))
        if (exact.hits, exact.wrong, exact.false_pos) != (vec.hits, vec.wrong, vec.false_pos):
            disagree.append(f"{label} {tname(j)}: matching.py {exact}, sweep {vec}")
        kiosk_rows.append(
            [
                label,
                tname(j),
                where,
                count(exact.false_pos, exact.n_nonmate),
                count(exact.n_mate - exact.hits, exact.n_mate),
                count(exact.wrong, exact.n_mate),
                count(exact.false_pos, exact.n_nonmate),
            ]
        )
    print(
        markdown_table(
            [
                "rule (accept_distance, min_margin)",
                "templates",
                "people",
                "FPIR",
                "FNIR",
                "wrong id: mate accepted as another person",
                "wrong id: non-mate accepted",
            ],
            kiosk_rows,
        )
    )

    print(
        "\nThe tuning sweeps above re-implement this rule vectorised; on these rows they agree with matching.py "
        "probe for probe."
        if not disagree
        else "\nWARNING, the vectorised sweep and matching.py disagree: " + "; ".join(disagree)
    )

    # errors by quality band (for QualityConfig): does a stricter gate remove errors on LFW?
    probe_rows = [row[f] for f in proto.mate_files + proto.nonmate_files]
    pq = enc.quality[probe_rows]
    ok_k = final.eligible(t_all := trials[kj]) & (t_all.d[:, 0] <= final.accept)
    bands: list[tuple[str, np.ndarray]] = [
        (f"sharpness {lo:g}–{hi:g}" if hi < np.inf else f"sharpness ≥ {lo:g}", (pq[:, 1] >= lo) & (pq[:, 1] < hi))
        for lo, hi in ((0, 100), (100, 150), (150, 250), (250, 400), (400, np.inf))
    ]
    bands += [
        (
            f"abs(yaw) {lo:g}–{hi:g}" if hi < np.inf else f"abs(yaw) ≥ {lo:g}",
            (np.abs(pq[:, 3]) >= lo) & (np.abs(pq[:, 3]) < hi),
        )
        for lo, hi in ((0, 0.1), (0.1, 0.2), (0.2, 0.35), (0.35, np.inf))
    ]
    band_rows = []
    for label, sel in bands:
        mates, nons = sel & t_all.mate, sel & ~t_all.mate
        band_rows.append(
            [
                label,
                count(int((mates & ~(ok_k & t_all.hit)).sum()), int(mates.sum())),
                count(int((mates & t_all.hit).sum()), int(mates.sum())),
                count(int((nons & ok_k).sum()), int(nons.sum())),
            ]
        )
    print(
        f"\nErrors of the recommended rule ({tname(kj)}, all of LFW-dev) by the probe's quality band (failures to "
        "acquire have no quality and are left out):\n"
    )
    print(markdown_table(["probe quality band", "FNIR", "rank-1", "FPIR"], band_rows))

    # gallery size: the recommended rule against the current defaults and the cohort variant
    print(
        "\nBy gallery size (random galleries of N enrolled people, every non-mate probe; the largest adds one-photo "
        "people as enrolled distractors, the non-mates then being the other half of them, both halves pooled):\n"
    )
    s_all = sized_trials(data, kj, fold_a | fold_b, args.seed + 1)  # other random galleries than in tuning
    singles = np.array(proto.nonmate_people)
    single_desc = enc.desc[[row[f] for f in proto.nonmate_files]]
    perm = np.random.default_rng(args.seed).permutation(len(singles))
    big = []
    halves_idx = (perm[: len(perm) // 2], perm[len(perm) // 2 :])
    for enrol_part, probe_part in (halves_idx, halves_idx[::-1]):
        extra = single_desc[enrol_part]
        extra = extra[np.isfinite(extra).all(axis=1)]
        big.append(data.trial(kj, set(proto.gallery) | {str(x) for x in singles[probe_part]}, distractors=extra))
    groups = [*s_all.trials, big]
    labels = [str(n) for n in s_all.sizes] + [f"~{np.mean([len(t.names) for t in big]):.0f} (+ distractors)"]
    compare = [("recommended", final), ("current", Rule(rule_now.accept_distance, rule_now.min_margin))]
    if (kj, "+ cohort gap") in chosen:
        compare.append(("cohort variant", chosen[(kj, "+ cohort gap")]))
    size_rows = []
    for label, group in zip(labels, groups, strict=True):
        size_cells: list[object] = [label]
        for _, r in compare:
            x = pooled(group, r)
            size_cells += [pct(x.false_pos, x.n_nonmate), pct(x.n_mate - x.hits, x.n_mate), pct(x.wrong, x.n_mate)]
        size_rows.append(size_cells)
    heads = ["enrolled N"]
    for name, r in compare:
        short = f"{name} ({r.accept:.3f}, {r.margin:.3f}{', ' + r.cohort_label() if r.k else ''})"
        heads += [f"{short} FPIR", "FNIR", "wrong id"]
    print(markdown_table(heads, size_rows))

    # ---- verification on pairs-dev.txt
    pairs = read_pairs(root / "pairs-dev.txt")
    ia = np.array([row[a] for a, _, _ in pairs])
    ib = np.array([row[b] for _, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    ok = ~fta[ia] & ~fta[ib]
    dist = np.linalg.norm(enc.desc[ia[ok]] - enc.desc[ib[ok]], axis=1)
    same_ok = same[ok]
    thr_best, _ = best_threshold(dist, same_ok)
    cv_mean, cv_sd, cv_thr = cv_accuracy(dist, same_ok)
    print(
        f"\n## Verification on pairs-dev.txt ({int(same.sum())} same / {int((~same).sum())} different pairs, plain "
        f"descriptors; {int((~ok).sum())} pairs with a failure to acquire left out)\n"
    )

    def at(thr: float, label: str) -> list[object]:
        acc = dist <= thr
        return [
            label,
            f"{100 * np.mean(acc == same_ok):.2f}%",
            count(int((acc & same_ok).sum()), int(same_ok.sum())),
            count(int((acc & ~same_ok).sum()), int((~same_ok).sum())),
        ]

    print(
        markdown_table(
            ["threshold", "accuracy", "true accepts", "false accepts"],
            [
                at(0.6, "0.6 (face_recognition's tolerance)"),
                at(thr_best, f"{thr_best:.3f}, best on all pairs (optimistic)"),
                [
                    f"10-fold CV, threshold fit on 9 folds (mean {cv_thr:.3f})",
                    f"{100 * cv_mean:.2f}% ± {100 * cv_sd:.2f}",
                    "–",
                    "–",
                ],
                at(final.accept, f"{final.accept:.3f}, the recommended accept_distance"),
            ],
        )
    )

    # ---- DET plot
    t_k = trials[kj]
    lines = [
        ("nearest distance, plain templates", *det_curve(base, base.d[:, 0])),
        (f"nearest distance, {tname(kj)} templates", *det_curve(t_k, t_k.d[:, 0])),
        (
            f"kiosk rule, margin ≥ {final.margin:.3f}, {tname(kj)} (sweeping accept_distance)",
            *det_curve(t_k, t_k.d[:, 0], t_k.margin() >= final.margin),
        ),
    ]
    rec = rates(t_k, final)
    cur = rates(t_k, Rule(rule_now.accept_distance, rule_now.min_margin))
    points = [
        ("face_recognition, tolerance 0.6 (plain)", nearest.fpir, nearest.fnir, "rX"),
        (f"current {rule_now.accept_distance}/{rule_now.min_margin} ({tname(kj)})", cur.fpir, cur.fnir, "ks"),
        (f"recommended {final.accept:.3f}/{final.margin:.3f} ({tname(kj)})", rec.fpir, rec.fnir, "g*"),
    ]
    plot_det(args.plot, lines, points, n_nonmate, n_mate, n_gal)
    try:
        shown = args.plot.resolve().relative_to(REPO)
    except ValueError:
        shown = args.plot
    print(f"\nDET plot: {shown} ({args.plot.stat().st_size / 1024:.0f} KB).")
    print(
        f"\nRun time: encodings {t_enc:.0f} s (cached photos cost nothing), analysis "
        f"{time.monotonic() - t0 - t_enc:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
