"""Walk-up replay: CPU per frame and per recognised person, encodings, decision latency, idle cost.

The kiosk's pipeline and face_recognition's two video examples (the baselines) run on the same decoded
frames in this one process, one after the other, so the ratios are fair on a shared, noisy machine:

* ``facerec_from_video_file.py``: every frame at full size, HOG with one upsample, every face encoded.
* ``facerec_from_webcam_faster.py``: every other frame at 1/4 size, same otherwise.

Both name a face when its nearest known face is within face_recognition's tolerance of 0.6. The clips: the
Hamilton film (640x360), the facenet-pytorch full-HD walk-up, and the still-camera walk-up of three people (Intel's
480x270 GIF, ``fixed-camera/``, scaled to the kiosk camera's 1280x720: at 480 px its 40-80 px faces are below what
the kiosk's HOG detector finds without upsampling, which a 1280x720 camera never needs), whose people are enrolled
from its last frame, where they stand facing the camera (crops written to ``.cache/bench``). The kiosk runs at the
shipped liveness default, the texture models included (``../shared/models/minifasnet``, as the image script installs
them), and with liveness off.
Run: ``.venv/bin/python bench/walkup.py`` (``--quick`` for a smoke run on a few frames).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from _common import cache_dir, ensure_repo_on_path, faces_dir, markdown_table

ensure_repo_on_path()

from kiosk.camera import Frame  # noqa: E402
from kiosk.config import LivenessConfig, RecognizerConfig  # noqa: E402
from kiosk.imageio import read_rgb  # noqa: E402
from kiosk.recognizer import enroll, faces  # noqa: E402
from kiosk.recognizer.pipeline import Pipeline  # noqa: E402
from kiosk_contract.gallery import Gallery, Person  # noqa: E402

TOLERANCE = 0.6
MODELS = faces_dir().parent / "models" / "minifasnet"
KIOSK_SIZE = (1280, 720)  # the kiosk camera's main stream (camera.width, camera.height): the GIF is a 480x270 preview


@dataclass
class Clip:
    """A clip, its decoded RGB frames, and the people enrolled for it (name -> photo)."""

    name: str
    path: Path
    people: dict[str, Path]
    frames: list[np.ndarray] = field(default_factory=list)
    fps: float = 30.0
    size: tuple[int, int] | None = None  # decoded frames are scaled to this (width, height)


@dataclass
class Run:
    """What one algorithm did on one clip."""

    algorithm: str
    cpu_s: float = 0.0
    frames: int = 0
    encodings: int = 0
    named: set[str] = field(default_factory=set)
    wrong: int = 0  # faces named as someone who is not in the clip (counted per decision or labelled frame)
    latency_ms: list[float] = field(default_factory=list)
    face_frame_cpu: list[float] = field(default_factory=list)
    idle_frame_cpu: list[float] = field(default_factory=list)


def still_walkup_people(path: Path) -> dict[str, Path]:
    """The three people of the still-camera walk-up, cropped from its last frame scaled to the kiosk camera's
    1280x720 (grown by a face on each side, as an enrolment photo) into ``.cache/bench``; named left to right."""
    cap = cv2.VideoCapture(str(path))
    last = None
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        last = bgr
    cap.release()
    assert last is not None, path
    last = cv2.resize(last, KIOSK_SIZE, interpolation=cv2.INTER_CUBIC)
    rgb = cv2.cvtColor(last, cv2.COLOR_BGR2RGB)
    people = {}
    for k, box in enumerate(sorted(faces.detect(rgb, 1), key=lambda b: b.left)):
        h, w = rgb.shape[:2]
        crop = last[max(0, box.top - box.height) : min(h, box.bottom + box.height),
                    max(0, box.left - box.width) : min(w, box.right + box.width)]
        photo = cache_dir() / f"walkup-person-{k + 1}.png"
        cv2.imwrite(str(photo), crop)
        people[f"walk-up person {k + 1}"] = photo
    return people


def clips(root: Path) -> list[Clip]:
    ex = root / "face_recognition" / "examples"
    fn = root / "facenet_pytorch"
    still = root / "fixed-camera" / "intel-walking-and-pause" / "face-demographics-walking-and-pause.gif"
    return [
        Clip("still-camera walk-up, 3 people (480x270 GIF scaled to 1280x720)", still, still_walkup_people(still),
             size=KIOSK_SIZE),
        Clip("short_hamilton_clip.mp4 (640x360)", ex / "short_hamilton_clip.mp4",
             {"Alex Lacamoire": ex / "alex-lacamoire.png", "Lin-Manuel Miranda": ex / "lin-manuel-miranda.png"}),
        Clip("facenet_pytorch video.mp4 (1920x1080)", fn / "examples" / "video.mp4",
             {p.name: p / "1.jpg" for p in sorted((fn / "data" / "test_images").iterdir())}),
    ]


def decode(clip: Clip, limit: int | None) -> None:
    cap = cv2.VideoCapture(str(clip.path))
    clip.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    while limit is None or len(clip.frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        if clip.size is not None:
            bgr = cv2.resize(bgr, clip.size, interpolation=cv2.INTER_CUBIC)
        clip.frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()


def kiosk_gallery(clip: Clip, cfg: RecognizerConfig) -> Gallery:
    """Enrol the clip's people the kiosk's way (quality-checked photos, jittered templates)."""
    g = Gallery()
    for name, photo in clip.people.items():
        vec, result = enroll.photo_template(photo, cfg, jitters=5)
        if vec is None:
            print(f"  {name}: enrolment photo rejected ({result.reason})", file=sys.stderr)
            continue
        g.upsert(Person(name, name, "", vec[None, :]))
    return g


def run_kiosk(clip: Clip, cfg: RecognizerConfig, realtime: bool, label: str = "kiosk") -> Run:
    """The kiosk's pipeline; in real time it is paced like a camera and late frames are dropped."""
    gallery = kiosk_gallery(clip, cfg)
    pipeline = Pipeline(gallery, cfg)
    run = Run(f"{label} (real time)" if realtime else label)
    start = time.monotonic()
    cpu0 = time.process_time()
    i = 0
    while i < len(clip.frames):
        c = time.process_time()
        result = pipeline.process(Frame(clip.frames[i], i, i / clip.fps))
        spent = time.process_time() - c
        (run.face_frame_cpu if result.tracks else run.idle_frame_cpu).append(spent)
        for d in result.decisions:
            if d.nip:
                run.named.add(d.nip)
                run.latency_ms.append(d.latency_ms)
        run.frames += 1
        if realtime:  # the next frame is the one due now; the ones in between are dropped
            due = (time.monotonic() - start) * clip.fps
            nxt = max(i + 1, int(due))
            if nxt == i + 1 and due < i + 1:
                time.sleep((i + 1 - due) / clip.fps)
            i = nxt
        else:
            i += 1
    run.cpu_s = time.process_time() - cpu0
    run.encodings = pipeline.stats.encodings
    return run


def run_baseline(clip: Clip, faster: bool) -> Run:
    """face_recognition's example loop (video-file or webcam-faster variant) on the same frames."""
    import face_recognition

    known, names = [], []
    for name, photo in clip.people.items():
        enc = face_recognition.face_encodings(read_rgb(photo))
        if enc:
            known.append(enc[0])
            names.append(name)
    run = Run("facerec_from_webcam_faster" if faster else "facerec_from_video_file")
    first_seen: dict[str, int] = {}
    cpu0 = time.process_time()
    for i, rgb in enumerate(clip.frames):
        c = time.process_time()
        if faster and i % 2:
            run.idle_frame_cpu.append(time.process_time() - c)
            continue
        image = cv2.resize(rgb, (0, 0), fx=0.25, fy=0.25) if faster else rgb
        locations = face_recognition.face_locations(image)
        encodings = face_recognition.face_encodings(image, locations)
        run.encodings += len(encodings)
        for enc in encodings:
            distances = face_recognition.face_distance(known, enc)
            best = int(np.argmin(distances))
            if distances[best] <= TOLERANCE:
                run.named.add(names[best])
                first_seen.setdefault(names[best], i)
        spent = time.process_time() - c
        (run.face_frame_cpu if locations else run.idle_frame_cpu).append(spent)
    run.frames = len(clip.frames)
    run.cpu_s = time.process_time() - cpu0
    # The baseline names a face on the frame it first processes it: its latency is that frame's work.
    run.latency_ms = [1000 * float(np.mean(run.face_frame_cpu))] * len(first_seen) if run.face_frame_cpu else []
    return run


def idle_clip(root: Path, width: int, height: int, frames: int) -> Clip:
    """An empty scene (no person) as a fixed camera sees it: a still photo plus sensor noise and light drift."""
    scene = cv2.resize(read_rgb(root / "dlib" / "dlib" / "test" / "ffmpeg_data" / "horses.jpg"), (width, height))
    rng = np.random.default_rng(0)
    clip = Clip(f"empty scene ({width}x{height}, sensor noise)", Path("synthetic"), {})
    for i in range(frames):
        drift = 4 * np.sin(i / 40)
        clip.frames.append(np.clip(scene + drift + rng.normal(0, 2.5, scene.shape), 0, 255).astype(np.uint8))
    return clip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only 40 frames per clip (a smoke run)")
    args = ap.parse_args()
    root = faces_dir()
    if not root.is_dir():
        print(f"walkup: face data {root} is missing (set KIOSK_FACES_DIR)", file=sys.stderr)
        return 2
    limit = 40 if args.quick else None
    if not MODELS.is_dir():
        print(f"walkup: the texture models {MODELS} are missing", file=sys.stderr)
        return 2
    cfg = RecognizerConfig(liveness=LivenessConfig(texture_models=MODELS))  # the shipped default
    # The clips are films whose cameras move, so at the default level the kiosk asks their people for a challenge
    # they cannot answer and watches them for its whole length (docs/liveness.md); the recognizer alone, as well:
    no_liveness = RecognizerConfig(liveness=LivenessConfig(level="off"))
    rows, idle_rows = [], []
    for clip in clips(root):
        decode(clip, limit)
        print(f"{clip.name}: {len(clip.frames)} frames", file=sys.stderr)
        runs = [run_baseline(clip, faster=False), run_baseline(clip, faster=True), run_kiosk(clip, cfg, False),
                run_kiosk(clip, no_liveness, False, "kiosk, liveness off")]
        if not args.quick:
            runs.append(run_kiosk(clip, cfg, True))
        full = runs[0]
        for r in runs:
            per_frame = 1000 * r.cpu_s / max(r.frames, 1)
            people = len(r.named)
            rows.append([
                clip.name, r.algorithm, r.frames, round(per_frame, 1),
                round(1000 * full.cpu_s / max(full.frames, 1) / per_frame, 1) if per_frame else None,
                people, ", ".join(sorted(r.named)) or "–",
                round(1000 * r.cpu_s / people) if people else None,
                round(r.encodings / people, 1) if people else r.encodings,
                round(float(np.median(r.latency_ms))) if r.latency_ms else None,
                "yes" if full.named <= r.named else f"no: {', '.join(sorted(full.named - r.named))}",
            ])
        kiosk = runs[2]
        h, w = clip.frames[0].shape[:2]
        clip.frames.clear()
        idle = idle_clip(root, w, h, 40 if args.quick else 300)
        kiosk_idle = run_kiosk(idle, cfg, False)
        idle_ms = 1000 * kiosk_idle.cpu_s / kiosk_idle.frames
        face_ms = 1000 * float(np.mean(kiosk.face_frame_cpu)) if kiosk.face_frame_cpu else float("nan")
        base_idle = run_baseline(Clip(idle.name, idle.path, {}, idle.frames[:30]), faster=False)  # cost is flat
        idle_rows.append([f"{w}x{h}", kiosk_idle.frames, round(idle_ms, 2), len(kiosk.face_frame_cpu),
                          round(face_ms, 2), f"{100 * idle_ms / face_ms:.1f} %",
                          round(1000 * base_idle.cpu_s / base_idle.frames, 1)])
    print("\n### Walk-up replay (CPU per frame, per recognised person; same process, same frames)\n")
    print(markdown_table(
        ["clip", "algorithm", "frames", "CPU ms/frame", "x less CPU than full-size", "people named", "who",
         "CPU ms/person", "encodings/person", "median latency ms", "finds all the full-size baseline finds"],
        rows))
    print("\n### Idle cost: an empty scene against frames with a face, at the same resolution\n")
    print(markdown_table(["resolution", "empty-scene frames", "kiosk CPU ms/frame, empty", "clip frames with a face",
                          "kiosk CPU ms/frame with a face", "empty / with a face",
                          "full-size baseline CPU ms/frame, empty"], idle_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
