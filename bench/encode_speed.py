"""Face-encoding speed: the prebuilt dlib-bin wheel (no BLAS) against a BLAS-enabled dlib wheel, side by side.

The BLAS wheel is the one ``provisioning/build-dlib-wheel`` leaves in a wheelhouse (docs/dlib-blas.md). Each
build runs in its own worker subprocess: dlib-bin in this interpreter (or ``--dlib-bin-python``), the BLAS wheel
in a throwaway venv (``--work``, default a temporary folder) holding that wheel plus the same numpy and
opencv-python-headless versions as this interpreter. The workers are driven in interleaved rounds (A, B, then
B, A, ...) so that a shared, noisy machine slows both alike; only one worker computes at a time.

Per image (obama.jpg and ``--lfw`` LFW-dev images; the LFW-dev copy is grayscale, expanded to 3-channel RGB): HOG
detection with ``dlib.get_frontal_face_detector()`` (upsample 1), 5-point landmarks, then timed
``face_recognition_model_v1.compute_face_descriptor(img, shape)``; once per round (first ``--jitter-rounds``
rounds) the same with ``num_jitters=10`` (how enrolment templates are made); and HOG detection on a 640x360
frame (obama-720p.jpg scaled down, upsample 0 as for video frames) and on obama.jpg (upsample 1, as for
stills). Timing uses ``time.perf_counter`` around the single dlib call, after one warm-up call of each.

Reported: the median ms of each build, the speed-up (dlib-bin / BLAS), and the largest absolute difference
between the two builds' descriptors (they must agree within ``--tolerance``, default 1e-3, or the exit status
is 1). BLAS threads default to 1, as ``kiosk`` itself sets OPENBLAS_NUM_THREADS=1; ``--blas-threads default``
leaves OpenBLAS its own choice (one thread per core).

Run: ``.venv/bin/python bench/encode_speed.py --wheelhouse wheelhouse`` (a first run also creates the venv,
which downloads numpy and opencv-python-headless unless pip has them cached). Without a matching wheel in the
wheelhouse it says so and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import IO, Any

from _common import REPO, ensure_repo_on_path, faces_dir, markdown_table

ensure_repo_on_path()

from kiosk.models import models_dir  # noqa: E402  (no dlib import: it only locates the files)

SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
STILL = "face_recognition/examples/obama.jpg"
FRAME_SOURCE = "face_recognition/examples/obama-720p.jpg"
FRAME_SIZE = (640, 360)
LFW = "lfw-dev/lfw"
JITTERS = 10
METRICS = [
    ("encode", "encode, num_jitters=0 (ms per face)"),
    ("encode_j10", f"encode, num_jitters={JITTERS} (ms per face)"),
    ("detect_frame", "HOG detect, 640x360 frame, upsample 0 (ms)"),
    ("detect_still", "HOG detect, obama.jpg, upsample 1 (ms)"),
]
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def say(msg: str) -> None:
    print(f"encode_speed: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Worker (runs inside either build's interpreter; imports only numpy, cv2 and dlib)
# --------------------------------------------------------------------------------------------------------------


def _load_rgb(path: str, gray: list[str] | None = None) -> Any:
    """An image file as a 3-channel RGB array; grayscale files are expanded (and listed in ``gray``)."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"encode_speed worker: cannot read {path}")
    if img.ndim == 2 or img.shape[2] == 1:
        if gray is not None:
            gray.append(path)
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def worker(config_json: str) -> int:
    """Prepare the faces, report them, then answer ``round``/``quit`` commands on stdin with JSON lines."""
    import time

    import cv2
    import dlib
    import numpy as np

    cfg = json.loads(config_json)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(cfg["shape_model"])
    encoder = dlib.face_recognition_model_v1(cfg["resnet_model"])

    digest = hashlib.sha256()
    faces: list[tuple[str, Any, Any]] = []
    skipped: list[str] = []
    gray: list[str] = []
    for path in cfg["images"]:
        rgb = np.ascontiguousarray(_load_rgb(path, gray))
        rects = detector(rgb, 1)
        if len(rects) == 0:
            skipped.append(path)
            continue
        rect = max(rects, key=lambda r: r.width() * r.height())
        faces.append((path, rgb, predictor(rgb, rect)))
        digest.update(rgb.tobytes())
    if not faces:
        raise SystemExit("encode_speed worker: no face found in any image")
    src = _load_rgb(cfg["frame_source"])
    frame = np.ascontiguousarray(cv2.resize(src, tuple(cfg["frame_size"]), interpolation=cv2.INTER_AREA))
    still = np.ascontiguousarray(_load_rgb(cfg["still"]))
    digest.update(frame.tobytes())

    # Warm-up (allocations, BLAS thread start-up, page faults in the model weights), also the reference output.
    descriptors = [list(encoder.compute_face_descriptor(img, shape)) for _, img, shape in faces]
    jittered = list(encoder.compute_face_descriptor(faces[0][1], faces[0][2], JITTERS))
    detector(frame, 0)
    detector(still, 1)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit(
        {
            "ready": True,
            "dlib": dlib.__version__,
            "blas": bool(dlib.DLIB_USE_BLAS),
            "lapack": bool(dlib.DLIB_USE_LAPACK),
            "dlib_file": dlib.__file__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cv2": cv2.__version__,
            "images": [p for p, _, _ in faces],
            "skipped": skipped,
            "grayscale": gray,
            "input_sha256": digest.hexdigest(),
            "descriptors": descriptors,
            "jittered": jittered,
            "faces_in_frame": len(detector(frame, 0)),
        }
    )
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        times: dict[str, list[float]] = {key: [] for key, _ in METRICS}
        for _, img, shape in faces:
            t0 = time.perf_counter()
            encoder.compute_face_descriptor(img, shape)
            times["encode"].append((time.perf_counter() - t0) * 1e3)
        if len(cmd) > 1 and cmd[1] == "jitter":
            t0 = time.perf_counter()
            encoder.compute_face_descriptor(faces[0][1], faces[0][2], JITTERS)
            times["encode_j10"].append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        detector(frame, 0)
        times["detect_frame"].append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        detector(still, 1)
        times["detect_still"].append((time.perf_counter() - t0) * 1e3)
        emit({"times": times})
    return 0


# --------------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------------


def wheel_tag() -> str:
    """The tag a locally built CPython wheel gets for this interpreter: ``cp311-cp311-linux_x86_64``."""
    py = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    plat = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{py}-{py}-{plat}"


def find_wheel(wheelhouse: Path) -> Path | None:
    """The BLAS dlib wheel for this interpreter, preferring the installed dlib-bin's version."""
    candidates = sorted(wheelhouse.glob(f"dlib-*-{wheel_tag()}.whl"))
    if not candidates:
        return None
    try:
        want = re.sub(r"\.post\d+$", "", importlib.metadata.version("dlib-bin"))
    except importlib.metadata.PackageNotFoundError:
        want = ""
    for path in candidates:
        if path.name.startswith(f"dlib-{want}-"):
            return path
    return candidates[-1]


def pick_images(root: Path, n_lfw: int) -> list[Path]:
    """obama.jpg plus the first image of ``n_lfw`` LFW-dev people spread evenly over the sorted names."""
    images = [root / STILL]
    people = sorted(p for p in (root / LFW).iterdir() if p.is_dir()) if (root / LFW).is_dir() else []
    if n_lfw > 0 and not people:
        say(f"no LFW-dev folder at {root / LFW}; timing obama.jpg only")
    if people and n_lfw > 0:
        step = max(1, len(people) // n_lfw)
        for person in people[::step][:n_lfw]:
            jpgs = sorted(person.glob("*.jpg"))
            if jpgs:
                images.append(jpgs[0])
    return images


def blas_env(threads: str) -> dict[str, str]:
    env = dict(os.environ)
    for var in BLAS_VARS:
        if threads == "default":
            env.pop(var, None)
        else:
            env[var] = threads
    return env


def make_venv(work: Path, wheel: Path) -> Path:
    """A venv in ``work`` with the BLAS wheel and this interpreter's numpy and opencv; reused when up to date."""
    venv = work / "blas-venv"
    python = venv / "bin" / "python"
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("numpy", "opencv-python-headless")]
    stamp_text = hashlib.sha256(wheel.read_bytes()).hexdigest() + " " + " ".join(pins) + "\n"
    stamp = venv / ".encode-speed-stamp"
    if python.exists() and stamp.is_file() and stamp.read_text() == stamp_text:
        say(f"reusing {venv}")
        return python
    if venv.exists():
        shutil.rmtree(venv)
    say(f"creating {venv} with {wheel.name}, {', '.join(pins)}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps"]
    proc = subprocess.run([*pip, str(wheel), *pins])
    if proc.returncode != 0:
        raise SystemExit(f"encode_speed: could not install {wheel.name} and {' '.join(pins)} into {venv}")
    stamp.write_text(stamp_text)
    return python


class Worker:
    def __init__(self, label: str, python: str, config: dict[str, Any], env: dict[str, str]) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info = self._read()
        self.times: dict[str, list[float]] = {key: [] for key, _ in METRICS}

    def _read(self) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        line = out.readline() if out is not None else ""
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"encode_speed: the {self.label} worker exited ({code}) without an answer")
        result: dict[str, Any] = json.loads(line)
        return result

    def round(self, jitter: bool) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("round jitter\n" if jitter else "round\n")
        self.proc.stdin.flush()
        for key, values in self._read()["times"].items():
            self.times[key].extend(values)

    def close(self) -> None:
        if self.proc.stdin is not None and self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for va, vb in zip(a, b, strict=True) for x, y in zip(va, vb, strict=True))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--wheelhouse", type=Path, default=REPO / "wheelhouse", help="folder with the BLAS dlib wheel")
    ap.add_argument("--work", type=Path, help="folder for the BLAS venv (kept and reused; default: temporary)")
    ap.add_argument("--dlib-bin-python", default=sys.executable, help="interpreter with dlib-bin (default: this)")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved rounds per build (default 12)")
    ap.add_argument("--jitter-rounds", type=int, default=3, help=f"rounds that also time num_jitters={JITTERS}")
    ap.add_argument("--lfw", type=int, default=5, help="LFW-dev images besides obama.jpg (default 5)")
    ap.add_argument("--blas-threads", default="1", help="OpenBLAS threads: a number or 'default' (default 1)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max |descriptor difference| (default 1e-3)")
    ap.add_argument("--json", type=Path, help="also write the raw timings and build facts here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)

    wheel = find_wheel(args.wheelhouse)
    if wheel is None:
        say(
            f"skipped: no BLAS dlib wheel dlib-*-{wheel_tag()}.whl in {args.wheelhouse}; "
            f"build one with `provisioning/build-dlib-wheel --python {sys.executable} --out {args.wheelhouse}`"
        )
        return 0
    root = faces_dir()
    images = pick_images(root, args.lfw)
    missing = [p for p in [*images, root / FRAME_SOURCE] if not p.is_file()]
    if missing:
        say(f"skipped: missing image(s) {', '.join(map(str, missing))} (set KIOSK_FACES_DIR)")
        return 0
    models = models_dir()
    config = {
        "images": [str(p) for p in images],
        "still": str(root / STILL),
        "frame_source": str(root / FRAME_SOURCE),
        "frame_size": list(FRAME_SIZE),
        "shape_model": str(models / SHAPE_5),
        "resnet_model": str(models / RESNET),
    }

    tmp = None
    if args.work is None:
        tmp = tempfile.mkdtemp(prefix="encode-speed-")
        work = Path(tmp)
    else:
        work = args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
    try:
        blas_python = make_venv(work, wheel)
        env = blas_env(args.blas_threads)
        say(f"starting the workers (OpenBLAS threads: {args.blas_threads})")
        a = Worker("dlib-bin", args.dlib_bin_python, config, env)
        b = Worker("BLAS wheel", str(blas_python), config, env)
        try:
            return run(args, wheel, a, b)
        finally:
            a.close()
            b.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, wheel: Path, a: Worker, b: Worker) -> int:
    if a.info["blas"]:
        say(f"note: the 'dlib-bin' interpreter's dlib ({a.info['dlib_file']}) has BLAS already")
    if not b.info["blas"]:
        raise SystemExit(f"encode_speed: {wheel.name} was built without BLAS (DLIB_USE_BLAS is False)")
    if a.info["images"] != b.info["images"] or a.info["input_sha256"] != b.info["input_sha256"]:
        raise SystemExit("encode_speed: the two workers did not see the same faces/pixels; descriptors not comparable")
    diff = max_abs_diff(a.info["descriptors"], b.info["descriptors"])
    diff_j = max_abs_diff([a.info["jittered"]], [b.info["jittered"]])

    n_faces = len(a.info["images"])
    say(f"{n_faces} faces; {args.rounds} interleaved rounds (A,B then B,A ...)")
    for r in range(args.rounds):
        jitter = r < args.jitter_rounds
        for w in (a, b) if r % 2 == 0 else (b, a):
            w.round(jitter)
        say(
            f"round {r + 1}/{args.rounds}: encode median so far {statistics.median(a.times['encode']):.1f} ms "
            f"(dlib-bin) vs {statistics.median(b.times['encode']):.1f} ms (BLAS)"
        )

    rows = []
    for key, label in METRICS:
        ta, tb = a.times[key], b.times[key]
        if not ta or not tb:
            continue
        ma, mb = statistics.median(ta), statistics.median(tb)
        rows.append([label, len(ta), f"{ma:.1f}", f"{mb:.1f}", f"{ma / mb:.2f}"])
    table = markdown_table(
        [
            "measurement",
            "samples per build",
            "dlib-bin median ms",
            "BLAS wheel median ms",
            "speed-up (dlib-bin / BLAS)",
        ],
        rows,
    )
    print(f"dlib-bin:   dlib {a.info['dlib']} (BLAS {a.info['blas']}) at {a.info['dlib_file']}")
    print(f"BLAS wheel: dlib {b.info['dlib']} (BLAS {b.info['blas']}, LAPACK {b.info['lapack']}) from {wheel}")
    print(
        f"CPU: {cpu_model()} x{os.cpu_count()}; Python {a.info['python']}; numpy {a.info['numpy']}; "
        f"opencv {a.info['cv2']}; OpenBLAS threads: {args.blas_threads}"
    )
    print(
        f"faces: {n_faces} ({', '.join(Path(p).name for p in a.info['images'])})"
        + (f"; grayscale (expanded to RGB): {len(a.info['grayscale'])}" if a.info["grayscale"] else "")
        + (f"; skipped (no face): {', '.join(a.info['skipped'])}" if a.info["skipped"] else "")
    )
    print()
    print(table)
    print()
    agree = diff <= args.tolerance
    print(
        f"descriptor agreement (num_jitters=0, {n_faces} faces x 128): max |difference| = {diff:.2e} "
        f"({'within' if agree else 'OUTSIDE'} {args.tolerance:g}); num_jitters={JITTERS}: {diff_j:.2e}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "wheel": str(wheel),
                    "blas_threads": args.blas_threads,
                    "cpu": cpu_model(),
                    "builds": {
                        "dlib-bin": {k: v for k, v in a.info.items() if k not in ("descriptors", "jittered")},
                        "blas": {k: v for k, v in b.info.items() if k not in ("descriptors", "jittered")},
                    },
                    "times_ms": {"dlib-bin": a.times, "blas": b.times},
                    "max_abs_descriptor_diff": diff,
                    "max_abs_descriptor_diff_jittered": diff_j,
                },
                indent=1,
            )
            + "\n"
        )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
