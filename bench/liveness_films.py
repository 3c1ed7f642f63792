"""Liveness on the films (the stress case; bench/liveness.py measures the still-camera clips the kiosk meets):
APCER per simulated attack type, BPCER, extra time, and the cost per frame.

Bona fide presentations are windows of the real clips in ``../shared/faces`` (the Hamilton clip, the facenet-pytorch
walk-up video, the GIF of one face), filmed by moving cameras. Attacks are **simulated** from the same data:

* ``print``: a still photo (cropped to head and shoulders) held in a hand: the photo plane moves by smooth random
  rotations, shifts and scale with hand jitter, seen through a slightly defocused, noisy camera;
* ``phone``: the same photo on a phone: screen gamma, a moire pattern, a black bezel;
* ``replay``: a real clip shown on a tablet held in a hand: the clip warped by the same plane motions, with gamma and
  moire;
* ``replay on a stand``: the same tablet on a stand, still (not one of the issue's attacks: it shows what the
  surroundings check cannot see).

Each presentation is played to the liveness check of one tracked face (HOG detection of the largest face, dlib's
68-point landmarks, the motion of its surroundings, :class:`kiosk.recognizer.liveness.LivenessCheck`), at the levels
``passive`` and ``challenge`` (two actions, the default, and one).
A clip cannot answer a challenge, so for bona fide presentations the table gives the share that would see the
challenge (BPCER at level ``passive``); attacks that reach the challenge pass it only if the photo or the replayed
clip happens to do the action asked for. The Yale ``sleepy``/``wink`` images justify the blink ratio, and the
recognizer's cost on the Hamilton clip is measured with liveness off and on, in the same run.

Run: ``.venv/bin/python bench/liveness_films.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from _common import cache_dir, ensure_repo_on_path, faces_dir, markdown_table, pct

ensure_repo_on_path()

from kiosk.camera import Frame  # noqa: E402
from kiosk.config import LivenessConfig, RecognizerConfig  # noqa: E402
from kiosk.imageio import read_rgb  # noqa: E402
from kiosk.recognizer import enroll, faces  # noqa: E402
from kiosk.recognizer.liveness import LivenessCheck, Surroundings, eye_aspect_ratio  # noqa: E402
from kiosk.recognizer.pipeline import Pipeline  # noqa: E402
from kiosk_contract.gallery import Gallery, Person  # noqa: E402

FPS = 30.0
FRAME_W, FRAME_H = 640, 360
FOCAL_PX = 700.0  # the simulated camera: about a 50 degree horizontal field of view at 640 px


# ----------------------------------------------------------------------------------------- simulated attacks


def plane_homography(w: int, h: int, pose: dict[str, float]) -> np.ndarray:
    """The homography that shows a flat ``w`` x ``h`` picture, rotated and shifted in 3-D, in the camera's frame."""
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]]) * pose["s"]
    rot = cv2.Rodrigues(np.array([pose["rx"], pose["ry"], pose["rz"]]))[0]
    placed = corners @ rot.T + np.array([pose["tx"], pose["ty"], FOCAL_PX])
    uv = placed[:, :2] / placed[:, 2:] * FOCAL_PX + np.array([FRAME_W / 2, FRAME_H / 2])
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return cv2.getPerspectiveTransform(src, uv.astype(np.float32))


def hand_motion(n: int, rng: np.random.Generator, still: bool = False) -> list[dict[str, float]]:
    """``n`` poses of a hand-held plane: slow sums of sines (up to about 20 degrees of tilt) plus jitter; with
    ``still``, one random pose of the same range held by a stand."""
    if still:
        pose = hand_motion(1 + int(rng.integers(0, 60)), rng)[-1]
        return [pose] * n
    t = np.arange(n) / FPS

    def slow(amplitude: float) -> np.ndarray:
        phase, freq = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 1.0, 3)
        return amplitude * sum(np.sin(2 * np.pi * freq[k] * t + phase[k]) for k in range(3)) / 3

    def jitter(sd: float) -> np.ndarray:
        return rng.normal(0, sd, n)

    path = {
        "rx": slow(0.35) + jitter(0.01),
        "ry": slow(0.35) + jitter(0.01),
        "rz": slow(0.15) + jitter(0.005),
        "s": 1 + slow(0.1),
        "tx": slow(60) + jitter(1.5),
        "ty": slow(30) + jitter(1.5),
    }
    return [{k: float(v[i]) for k, v in path.items()} for i in range(n)]


def screen_look(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """How one phone or tablet shows pictures to a camera: its gamma, a moire pattern, a black bezel (drawn once)."""
    gamma = rng.uniform(0.7, 1.4)
    fx, fy, angle = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6), rng.uniform(0.5, 2.0)

    def show(picture: np.ndarray) -> np.ndarray:
        yy, xx = np.mgrid[: picture.shape[0], : picture.shape[1]]
        moire = 1 + 0.08 * np.sin(2 * np.pi * (fx * xx * np.cos(angle) + fy * yy * np.sin(angle)))
        shown = np.clip(255.0 * (picture / 255.0) ** gamma * moire[..., None], 0, 255).astype(np.uint8)
        return cv2.copyMakeBorder(shown, 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=(10, 10, 10))

    return show


def held_up(
    pictures: Callable[[int], np.ndarray], n: int, rng: np.random.Generator, still: bool = False
) -> list[np.ndarray]:
    """``n`` camera frames of ``pictures(i)`` (a photo, or frame i of a clip) held up by a hand (or a stand) before a
    plain wall."""
    wall = np.full((FRAME_H, FRAME_W, 3), int(rng.integers(60, 160)), np.uint8)
    frames = []
    for i, pose in enumerate(hand_motion(n, rng, still)):
        picture = pictures(i)
        homography = plane_homography(picture.shape[1], picture.shape[0], pose)
        frame = cv2.warpPerspective(picture, homography, (FRAME_W, FRAME_H), dst=wall.copy(),
                                    borderMode=cv2.BORDER_TRANSPARENT)
        frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.5, 1.0))
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    return frames


def head_and_shoulders(rgb: np.ndarray, face_px: float) -> np.ndarray | None:
    """The photo cropped around its largest face (the box grown by its width on each side), scaled so the face is
    ``face_px`` wide; None when no face is found."""
    boxes = faces.detect(rgb, faces.still_upsample(rgb))
    if not boxes:
        return None
    b = max(boxes, key=lambda b: b.width)
    h, w = rgb.shape[:2]
    top, bottom = max(0, b.top - b.height), min(h, b.bottom + b.height)
    crop = rgb[top:bottom, max(0, b.left - b.width) : min(w, b.right + b.width)]
    k = face_px / b.width
    size = (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)


def print_attack(photo: np.ndarray, n: int, rng: np.random.Generator, still: bool = False) -> list[np.ndarray]:
    """A printed photo held by a hand, or propped on a stand (simulated)."""
    return held_up(lambda i: photo, n, rng, still)


def phone_attack(photo: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The photo shown on a phone held by a hand (simulated)."""
    screen = screen_look(rng)(photo)
    return held_up(lambda i: screen, n, rng)


def replay_attack(clip: list[np.ndarray], n: int, rng: np.random.Generator, still: bool = False) -> list[np.ndarray]:
    """A real clip (cropped around its face) replayed in a loop on a tablet held by a hand, or on a stand
    (simulated)."""
    show = screen_look(rng)
    shown = [show(picture) for picture in clip]
    return held_up(lambda i: shown[i % len(shown)], n, rng, still)


# ----------------------------------------------------------------------------------------- presentations


@dataclass
class Presentation:
    """One presentation to the camera: its kind (``bona fide`` or an attack type), a label and how to make its
    frames (made when played, so that a few hundred presentations do not sit in memory at once)."""

    kind: str
    label: str
    frames: Callable[[], list[np.ndarray]]


@dataclass
class Outcome:
    """What the liveness check of the presentation's tracked face said, and when (source seconds)."""

    result: str  # live | spoof | undecided (the presentation ended first)
    method: str
    decided_s: float | None
    challenge: str | None
    frames: int = 0
    landmark_cpu_s: float = 0.0
    check_cpu_s: float = 0.0
    parallax: float = 0.0
    min_ear_ratio: float | None = None
    moving_surroundings: int = 0


Marks = list[tuple[np.ndarray, float | None] | None]  # per frame: the 68 landmarks and the surroundings' motion


def track_landmarks(frames: list[np.ndarray]) -> tuple[Marks, float]:
    """The 68 landmarks of the largest face of each frame and the motion of its surroundings (None where no face is
    found), and the median CPU ms of :meth:`Surroundings.motion`."""
    out: Marks = []
    surroundings = Surroundings()
    spent = []
    for i, rgb in enumerate(frames):
        boxes = faces.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        if not boxes:
            out.append(None)
            continue
        box = max(boxes, key=lambda b: b.width)
        pts = faces.landmarks68(rgb, box)
        c = time.process_time()
        out.append((pts, surroundings.motion(rgb, pts, i / FPS)))
        spent.append(time.process_time() - c)
    return out, 1000 * statistics.median(spent) if spent else 0.0


def present(marks: Marks, cfg: LivenessConfig, seed: int) -> Outcome:
    """Play the landmarks of one presentation to a LivenessCheck from its first face on."""
    check: LivenessCheck | None = None
    outcome = Outcome("undecided", "none", None, None)
    for i, mark in enumerate(marks):
        t = i / FPS
        if mark is None:
            continue
        c = time.process_time()
        if check is None:
            check = LivenessCheck(cfg, t, random.Random(seed))
        check.observe(*mark)
        result = check.result(t)
        outcome.check_cpu_s += time.process_time() - c
        outcome.frames += 1
        if result != "undecided":
            v = check.verdict(t, check.start_t)
            outcome.result, outcome.method, outcome.decided_s = result, v.method, t - check.start_t
            break
    if check is not None:
        outcome.challenge, outcome.parallax = check.challenge, check.parallax
        outcome.min_ear_ratio = check.min_ear_ratio
        outcome.moving_surroundings = check.moving_surroundings
    return outcome


def marks_of(p: Presentation) -> tuple[Marks, float]:
    """:func:`track_landmarks` of a presentation's frames (run in a worker process)."""
    return track_landmarks(p.frames())


def read_clip(path: Path, limit: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def real_clips(root: Path) -> dict[str, list[np.ndarray]]:
    """The real clips at 640 px wide: the Hamilton clip's two shots, the walk-up video, the GIF of one face."""
    ham = read_clip(root / "face_recognition" / "examples" / "short_hamilton_clip.mp4")
    walk = [cv2.resize(f, (FRAME_W * 3 // 2, FRAME_H * 3 // 2), interpolation=cv2.INTER_AREA)
            for f in read_clip(root / "facenet_pytorch" / "examples" / "video.mp4")]
    gif = read_clip(root / "dlib" / "dlib" / "test" / "ffmpeg_data" / "elon-musk-smoke.gif")
    return {
        "hamilton (Lin-Manuel Miranda shot)": ham[82:213],
        "hamilton (second shot)": ham[217:251],
        "walk-up video (960x540)": walk,
        "GIF of one face": gif,
    }


def face_crop(clip: list[np.ndarray]) -> list[np.ndarray]:
    """The clip cropped to the region its faces move in (grown by their size), as an attacker would zoom in."""
    boxes = [max(b, key=lambda x: x.width) for f in clip if (b := faces.detect(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)))]
    top, bottom = min(b.top for b in boxes), max(b.bottom for b in boxes)
    left, right = min(b.left for b in boxes), max(b.right for b in boxes)
    size = max(b.width for b in boxes)
    h, w = clip[0].shape[:2]
    y0, y1, x0, x1 = max(0, top - size), min(h, bottom + size), max(0, left - size), min(w, right + size)
    k = 110.0 / size
    return [cv2.resize(f[y0:y1, x0:x1], (round((x1 - x0) * k), round((y1 - y0) * k))) for f in clip]


def still_photos(root: Path) -> list[Path]:
    ex = root / "face_recognition" / "examples"
    photos = [ex / "lin-manuel-miranda.png", ex / "alex-lacamoire.png", ex / "obama.jpg", ex / "biden.jpg"]
    photos += sorted((root / "facenet_pytorch" / "data" / "test_images").glob("*/1.jpg"))
    photos += sorted((root / "deepface" / "tests" / "unit" / "dataset").glob("img*.jpg"))[:11]
    return photos


def windows(clip: list[np.ndarray], length: int, step: int) -> list[tuple[int, list[np.ndarray]]]:
    """Presentations cut from a real clip: from every ``step`` frames, up to ``length`` frames (at least one s)."""
    return [(s, clip[s : s + length]) for s in range(0, max(1, len(clip) - int(FPS)), step)]


# ----------------------------------------------------------------------------------------- measurements


def yale_blinks(root: Path) -> tuple[list[float], list[float], list[float]]:
    """EAR of ``sleepy`` (eyes closed), ``wink`` and ``happy`` over ``normal``, per Yale subject."""
    folder = root / "yalefaces" / "yalefaces"
    ratios: dict[str, list[float]] = {"sleepy": [], "wink": [], "happy": []}
    for s in range(1, 16):
        ears = {}
        for cond in ("normal", *ratios):
            rgb = read_rgb(folder / f"subject{s:02d}.{cond}")
            boxes = faces.detect(rgb, 1)
            if boxes:
                ears[cond] = eye_aspect_ratio(faces.landmarks68(rgb, max(boxes, key=lambda b: b.width)))
        for cond in ratios:
            if "normal" in ears and cond in ears:
                ratios[cond].append(ears[cond] / ears["normal"])
    return ratios["sleepy"], ratios["wink"], ratios["happy"]


@dataclass
class Cost:
    """CPU of the recognizer on one clip at the default liveness level, and the part of it that was liveness."""

    frames: int = 0
    cpu_s: float = 0.0
    liveness_s: float = 0.0  # inside faces.landmarks68, Surroundings.motion and LivenessCheck.observe
    liveness_frames: int = 0
    decisions: list[str] = field(default_factory=list)


def recognizer_cost(
    root: Path, frames: list[np.ndarray], configs: dict[str, LivenessConfig], runs: int = 3
) -> dict[str, Cost]:
    """Replay the clip through the pipeline at each liveness configuration, the configurations taking turns run
    after run (a shared machine's speed drifts); the liveness calls are timed where they run (the difference of
    whole runs, liveness off and on, drowns in that noise)."""
    ex = root / "face_recognition" / "examples"
    gallery = Gallery()
    for nip, photo in (("lin", ex / "lin-manuel-miranda.png"), ("alex", ex / "alex-lacamoire.png")):
        vec, _ = enroll.photo_template(photo, RecognizerConfig(), jitters=5)
        assert vec is not None
        gallery.upsert(Person(nip, nip, "", vec[None, :]))
    spent = [0.0]

    def timed(fn: Callable[..., object]) -> Callable[..., object]:
        def run(*args: object) -> object:
            c = time.process_time()
            try:
                return fn(*args)
            finally:
                spent[0] += time.process_time() - c

        return run

    originals = faces.landmarks68, LivenessCheck.observe, Surroundings.motion
    faces.landmarks68 = timed(originals[0])  # type: ignore[assignment]
    LivenessCheck.observe = timed(originals[1])  # type: ignore[method-assign, assignment]
    Surroundings.motion = timed(originals[2])  # type: ignore[method-assign, assignment]
    costs = {name: Cost(frames=len(frames) * runs) for name in configs}
    try:
        for _ in range(runs):
            for name, liveness in configs.items():
                cost = costs[name]
                pipeline = Pipeline(gallery, RecognizerConfig(liveness=liveness), rng=random.Random(0))
                spent[0] = 0.0
                c = time.process_time()
                for i, rgb in enumerate(frames):
                    for d in pipeline.process(Frame(rgb, i, i / FPS)).decisions:
                        cost.decisions.append(f"{d.nip or 'unknown'}:{d.liveness.method if d.liveness else 'off'}")
                cost.cpu_s += time.process_time() - c
                cost.liveness_s += spent[0]
                cost.liveness_frames += pipeline.stats.liveness_frames
    finally:
        faces.landmarks68, LivenessCheck.observe, Surroundings.motion = originals  # type: ignore[method-assign]
    return costs


def landmark_cost(frames: list[np.ndarray], repeat: int = 3) -> tuple[float, float]:
    """Median CPU ms of dlib's 5-point and 68-point predictors on the largest face of the frames."""
    five, sixty_eight = [], []
    for rgb in frames:
        boxes = faces.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        if not boxes:
            continue
        box = max(boxes, key=lambda b: b.width)
        for _ in range(repeat):
            c = time.process_time()
            faces.landmarks(rgb, box)
            five.append(time.process_time() - c)
            c = time.process_time()
            faces.landmarks68(rgb, box)
            sixty_eight.append(time.process_time() - c)
    return 1000 * statistics.median(five), 1000 * statistics.median(sixty_eight)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few presentations (a smoke run)")
    ap.add_argument("--cached", action="store_true",
                    help="reuse the landmarks of the last run (.cache/bench) to try other thresholds quickly")
    args = ap.parse_args()
    root = faces_dir()
    if not root.is_dir():
        print(f"liveness: face data {root} is missing (set KIOSK_FACES_DIR)", file=sys.stderr)
        return 2
    base = LivenessConfig()
    levels = {
        "passive": replace(base, level="passive"),
        "challenge": base,  # the default: two actions, asked at once when the surroundings move
        "one action": replace(base, challenge_steps=1),
        "no surroundings": replace(base, surroundings_motion=1.0),  # before the surroundings check: it never fires
        "always": replace(base, passive_timeout_s=0.0),  # the challenge for everyone, at once
        # not a level: the passive measures over the whole presentation, for the statistics and the checks' cost
        "watch": replace(base, level="passive", passive_timeout_s=60.0, surroundings_motion=1.0),
    }
    n = int(FPS * (base.passive_timeout_s + base.challenge_steps * base.challenge_timeout_s + 0.5))
    rng = np.random.default_rng(7)
    clips = real_clips(root)
    photos = still_photos(root)[: 4 if args.quick else None]

    presentations: list[Presentation] = []
    for name, clip in clips.items():
        for start, part in windows(clip, n, 15 if not args.quick else 60):
            presentations.append(Presentation("bona fide", f"{name} from frame {start}", partial(list, part)))
    for path in photos:
        photo = head_and_shoulders(read_rgb(path), float(rng.uniform(90, 140)))
        if photo is None:
            print(f"  {path.name}: no face, skipped", file=sys.stderr)
            continue
        seed = int(rng.integers(2**31))
        printed = partial(print_attack, photo, n, np.random.default_rng(seed))
        label = f"{path.parent.name}/{path.name}"
        presentations.append(Presentation("print", label, printed))
        phone = partial(phone_attack, photo, n, np.random.default_rng(seed + 1))
        presentations.append(Presentation("phone", label, phone))
    for name, clip in clips.items():
        cropped = face_crop(clip)
        for repeat in range(1 if args.quick else 3):
            attack = partial(replay_attack, cropped, n, np.random.default_rng(int(rng.integers(2**31))))
            presentations.append(Presentation("replay", f"{name} #{repeat}", attack))
        still = partial(replay_attack, cropped, n, np.random.default_rng(int(rng.integers(2**31))), True)
        presentations.append(Presentation("replay on a stand", name, still))

    cache_file = cache_dir() / f"liveness-marks-{n}{'-quick' if args.quick else ''}.pkl"
    cache: dict[str, tuple[Marks, float]] = {}
    if args.cached and cache_file.is_file():
        cache = pickle.loads(cache_file.read_bytes())
    todo = [p for p in presentations if f"{p.kind}/{p.label}" not in cache]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # detection dominates; one process per core
        for p, computed in zip(todo, pool.map(marks_of, todo), strict=True):
            cache[f"{p.kind}/{p.label}"] = computed
    cache_file.write_bytes(pickle.dumps(cache))
    results: list[tuple[Presentation, dict[str, Outcome]]] = []
    for i, p in enumerate(presentations):
        marks = cache[f"{p.kind}/{p.label}"][0]
        results.append((p, {lv: present(marks, cfg, seed=i) for lv, cfg in levels.items()}))
        print(f"  {p.kind:9s} {p.label}: " + ", ".join(
            f"{lv} {o.result} ({o.method}, {o.decided_s if o.decided_s is None else round(o.decided_s, 2)} s)"
            for lv, o in results[-1][1].items()) + f"; parallax {results[-1][1]['watch'].parallax:.3f}"
            f"; moving surroundings {results[-1][1]['passive'].moving_surroundings}", file=sys.stderr)

    kinds = ("bona fide", "print", "phone", "replay", "replay on a stand")
    rows = []
    for kind in kinds:
        group = [r for p, r in results if p.kind == kind]
        row: list[object] = [kind, len(group)]
        for lv in ("passive", "challenge", "one action", "no surroundings", "always"):
            outcomes = [r[lv] for r in group]
            wrong = sum((o.result != "live") if kind == "bona fide" else (o.result == "live") for o in outcomes)
            cannot_answer = kind == "bona fide" and lv != "passive"
            row.append("n/a" if cannot_answer else f"{pct(wrong, len(group), 1)} ({wrong})")
        asked = sum(r["challenge"].challenge is not None for r in group)
        row.append(f"{pct(asked, len(group), 0)} ({asked})")
        live_at = [o.decided_s for r in group if (o := r["challenge"]).result == "live" and o.decided_s is not None]
        row.append(round(1000 * statistics.median(live_at)) if live_at else None)
        rows.append(row)
    print("\n## Liveness: error rates per presentation type (simulated attacks)\n")
    print(markdown_table(
        ["presentation", "n", "passive: BPCER / APCER", "challenge (default): APCER", "one action: APCER",
         "no surroundings check: APCER", "challenge at once: APCER", "asked to act (default)",
         "median ms to live (default)"], rows))
    print("\nA clip cannot answer a challenge, so bona fide presentations have a BPCER only at the level passive; "
          "'asked to act' is the share of them that the default level would ask for the challenge.")
    for p, r in results:
        o = r["challenge"]
        if p.kind == "bona fide" and o.result != "live":
            moved = o.moving_surroundings >= base.surroundings_frames
            why = "ended before any verdict" if o.challenge is None else (
                f"surroundings moved on {o.moving_surroundings} frames" if moved
                else "nothing shown within passive_timeout_s")
            print(f"bona fide not proven passively: {p.label}: {why}")
    for lv in ("challenge", "one action", "always"):
        answered: dict[str, list[int]] = {}
        for p, r in results:
            o = r[lv]
            if p.kind.startswith("replay") and o.challenge is not None:
                answered.setdefault(o.challenge, [0, 0])[o.result == "live"] += 1
        print(f"replays against the challenge, {lv} (passed / asked): " + ", ".join(
            f"{c} {v[1]}/{v[0] + v[1]}" for c, v in sorted(answered.items())))

    methods: dict[str, int] = {}
    for p, r in results:
        if p.kind == "bona fide" and r["passive"].result == "live":
            methods[r["passive"].method] = methods.get(r["passive"].method, 0) + 1
    print("\nbona fide proven live at the level passive by: "
          + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))
    for kind in kinds:  # watched to the end (or to a passive proof)
        par = [r["watch"].parallax for p, r in results if p.kind == kind]
        ear = [e for p, r in results if p.kind == kind and (e := r["watch"].min_ear_ratio) is not None]
        moving = []
        for p, _ in results:
            if p.kind == kind:
                motions = [m[1] for m in cache[f"{p.kind}/{p.label}"][0] if m is not None and m[1] is not None]
                moving.append(sum(x >= base.surroundings_motion for x in motions) / max(1, len(motions)))
        print(f"{kind}: largest parallax residual median {statistics.median(par):.4f} max {max(par):.4f}; "
              + (f"lowest EAR ratio median {statistics.median(ear):.3f} min {min(ear):.3f}; " if ear else "")
              + f"share of frames with moving surroundings median {statistics.median(moving):.2f} "
              f"min {min(moving):.2f} max {max(moving):.2f}")
    surroundings_ms = statistics.median(ms for _, ms in cache.values() if ms)

    sleepy, wink, happy = yale_blinks(root)
    print("\n## Yale: eye aspect ratio over the same person's `normal` image\n")
    print(markdown_table(["image", "subjects", "median", "max", f"below blink_ratio {base.blink_ratio}"], [
        [name, len(v), round(statistics.median(v), 3), round(max(v), 3), sum(x < base.blink_ratio for x in v)]
        for name, v in (("sleepy (eyes closed)", sleepy), ("wink", wink), ("happy (smiling)", happy))
    ]))

    ham = read_clip(root / "face_recognition" / "examples" / "short_hamilton_clip.mp4")
    five, sixty_eight = landmark_cost(ham[82:140])
    costs = recognizer_cost(root, ham, {
        "off": replace(base, level="off"),
        "default": base,
        "still surroundings": replace(base, surroundings_motion=1.0),
    })
    checks = [o.check_cpu_s / o.frames for _, r in results if (o := r["watch"]).frames]
    print("\n## Cost (this machine)\n")
    print(markdown_table(["what", "CPU"], [
        ["5-point landmarks (the recognizer's), one face", f"{five:.2f} ms"],
        ["68-point landmarks (liveness), one face", f"{sixty_eight:.2f} ms"],
        ["liveness checks per frame (EAR, homographies)", f"{1000 * statistics.median(checks):.2f} ms"],
        ["surroundings motion per frame (corners, optical flow)", f"{surroundings_ms:.2f} ms"],
    ]))
    print("\nThe Hamilton clip through the recognizer: liveness off; the default (the film's panning camera moves "
          "the surroundings, so Lin-Manuel Miranda is asked for a challenge the clip cannot answer); and the default "
          "with the surroundings never counted, as an honest person before a still wall is proven by parallax.\n")
    off = costs["off"]
    rows = []
    for name, cost in costs.items():
        decisions = max(1, len(cost.decisions))
        rows.append([
            name,
            f"{1000 * cost.cpu_s / cost.frames:.2f} ms ({cost.cpu_s / off.cpu_s:.2f}x off)",
            f"{1000 * cost.liveness_s / cost.frames:.2f} ms",
            f"{1000 * cost.cpu_s / decisions:.0f} ms",
            f"{1000 * cost.liveness_s / decisions:.0f} ms",
            f"{cost.liveness_frames / decisions:.0f}",
            ", ".join(sorted(set(cost.decisions))),
        ])
    print(markdown_table(["liveness", "recognizer per frame", "of which liveness", "per decision",
                          "of which liveness", "watched frames per decision", "decisions"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
