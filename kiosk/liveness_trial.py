"""The liveness field trial kit: a consented trial mode that keeps a short clip of every decision for labelling, and
``kiosk liveness evaluate DIR`` that measures a labelled set ISO/IEC 30107-3 style (docs/liveness.md, "Field trial").

A trial clip is a folder ``DIR/<UTC time>-t<track>/`` holding ``frames/00000.jpg`` ... (the served face's presentation,
from its track's first frame to the decision, at most ``seconds``), ``decision.json`` (what the kiosk decided, the
frame times, the consent reference) and ``label.json``, which the trial staff fill in::

    {"presentation": "bona fide" | "print" | "phone" | "tablet", "support": "hand" | "stand" | null,
     "presenter": "who stood there", "claimed": "whose NIP the kiosk named", "notes": ""}

``evaluate`` replays every labelled clip through the liveness checks (:func:`measure` then :func:`play`, the same
functions bench/liveness.py uses): BPCER (bona fide not proven live without the challenge), APCER per attack type
(attacks proven live without it), the time to live, what the kiosk itself decided, and thresholds it proposes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from kiosk.config import LivenessConfig, load_config
from kiosk.errors import TrialError
from kiosk_contract.fsutil import write_atomic

if TYPE_CHECKING:
    from kiosk.camera import Frame
    from kiosk.recognizer.faces import Box
    from kiosk.recognizer.pipeline import Decision, FrameResult
    from kiosk.recognizer.texture import TextureModel

PRESENTATIONS = ("bona fide", "print", "phone", "tablet")
SUPPORTS = ("hand", "stand")
CLIP_WIDTH = 640  # trial frames are kept at most this wide
ROI_FACE_PX = 100.0
TEXTURE_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PARALLAX_GRID = (0.015, 0.02, 0.025, 0.03, 0.035)  # parallax_textured (with the cue off: parallax_live)

Mark = tuple[np.ndarray, float | None, float | None] | None  # landmarks, surroundings motion, texture; None: no face


class TrialRecorder:
    """Keeps the last ``seconds`` of frames (JPEG, at most 640 px wide) and, for each liveness decision, writes them
    as a trial clip with an empty label. Only with a consent reference (the signed agreement of the people filmed);
    clips older than ``keep_days`` are deleted at start and after each clip."""

    def __init__(self, folder: Path, consent: str | None, seconds: float = 6.0, keep_days: int = 14) -> None:
        if consent is None or not consent.strip():
            raise TrialError("recognizer.liveness.trial_consent: a field trial keeps clips of faces: name the signed "
                             "consent (e.g. the letter's number) or unset trial_dir")
        self.folder, self.consent, self.seconds, self.keep_days = folder, consent, seconds, keep_days
        self._frames: deque[tuple[float, int, bytes]] = deque()
        folder.mkdir(parents=True, exist_ok=True)
        self.prune()

    def frame(self, frame: Frame, result: FrameResult) -> list[Path]:
        """Keep this frame; write a clip for each liveness decision it brought. Returns the clips written."""
        rgb = frame.rgb
        if rgb.shape[1] > CLIP_WIDTH:
            k = CLIP_WIDTH / rgb.shape[1]
            rgb = cv2.resize(rgb, (CLIP_WIDTH, round(rgb.shape[0] * k)), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok:
            self._frames.append((frame.t, frame.index, jpeg.tobytes()))
        while self._frames and frame.t - self._frames[0][0] > self.seconds:
            self._frames.popleft()
        written = [self._write(d) for d in result.decisions if d.liveness is not None]
        if written:
            self.prune()
        return written

    def _write(self, decision: Decision) -> Path:
        start = decision.t - decision.clip_latency_ms / 1000.0
        kept = [(t, i, b) for t, i, b in self._frames if start - 1e-6 <= t <= decision.t]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        clip = self.folder / f"{stamp}-t{decision.track}"
        (clip / "frames").mkdir(parents=True)
        for k, (_, _, data) in enumerate(kept):
            (clip / "frames" / f"{k:05d}.jpg").write_bytes(data)
        record = {"consent": self.consent, "times": [round(t - kept[0][0], 4) for t, _, _ in kept] if kept else [],
                  "decision": decision.as_json(), "box": decision.box.as_list()}
        write_atomic(clip / "decision.json", json.dumps(record, indent=1).encode())
        label = {"presentation": None, "support": None, "presenter": "", "claimed": decision.nip, "notes": ""}
        write_atomic(clip / "label.json", json.dumps(label, indent=1).encode())
        return clip

    def prune(self) -> None:
        """Delete the clips older than ``keep_days`` (by the time in their name)."""
        limit = datetime.now(UTC) - timedelta(days=self.keep_days)
        for clip in self.folder.iterdir():
            try:
                made = datetime.strptime(clip.name.split("-t")[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
            except ValueError:
                continue
            if made < limit:
                shutil.rmtree(clip, ignore_errors=True)


# ------------------------------------------------------------------------------------------- measuring a presentation


def find_face(rgb: np.ndarray, last: Box | None) -> Box | None:
    """The followed face: searched around its last box (scaled so it is about 100 px wide), else in the whole frame
    (one upsample when the frame is small)."""
    from kiosk.recognizer import faces

    h, w = rgb.shape[:2]
    if last is not None:
        pad_x, pad_y = round(last.width * 0.6), round(last.height * 0.6)
        top, bottom = max(0, last.top - pad_y), min(h, last.bottom + pad_y)
        left, right = max(0, last.left - pad_x), min(w, last.right + pad_x)
        if bottom - top >= 16 and right - left >= 16:
            grey = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
            k = ROI_FACE_PX / max(last.width, 1)
            grey = cv2.resize(grey, (max(1, round(grey.shape[1] * k)), max(1, round(grey.shape[0] * k))))
            found = faces.detect(grey)
            if found:
                return max(found, key=lambda b: b.width).scaled(1 / k, left, top)
    found = faces.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1 if w < 500 else 0)
    return max(found, key=lambda b: b.width) if found else None


def measure(frames: list[np.ndarray], times: list[float], texture: TextureModel | None
            ) -> tuple[list[Mark], dict[str, float]]:
    """Per frame: the followed face's 68 landmarks, its surroundings' motion and its texture score (None where no face
    is found); and the median CPU ms of each of the three."""
    from kiosk.recognizer import faces
    from kiosk.recognizer.liveness import Surroundings

    marks: list[Mark] = []
    surroundings = Surroundings()
    box: Box | None = None
    spent: dict[str, list[float]] = {"landmarks68": [], "surroundings": [], "texture": []}
    for rgb, t in zip(frames, times, strict=True):
        box = find_face(rgb, box)
        if box is None:
            marks.append(None)
            continue
        c0 = time.process_time()
        pts = faces.landmarks68(rgb, box)
        c1 = time.process_time()
        motion = surroundings.motion(rgb, pts, t)
        c2 = time.process_time()
        score = texture.real_score(rgb, box) if texture is not None else None
        c3 = time.process_time()
        spent["landmarks68"].append(c1 - c0)
        spent["surroundings"].append(c2 - c1)
        spent["texture"].append(c3 - c2)
        marks.append((pts, motion, score))
    return marks, {k: 1000 * statistics.median(v) for k, v in spent.items() if v}


@dataclass
class Outcome:
    """What the check said of one presentation, and when (source seconds after its first face)."""

    result: str  # live | spoof | undecided (the presentation ended first)
    method: str
    decided_s: float | None
    challenge: str | None
    texture: float | None
    check_ms: float  # median CPU of LivenessCheck.observe + result per frame
    why: str = ""  # why it was not proven passively: surroundings, texture, nothing shown, ended (empty when it was)


def play(marks: list[Mark], times: list[float], cfg: LivenessConfig, seed: int = 0) -> Outcome:
    """Play measured frames to a LivenessCheck from the first face on (texture scores only where it asks for one)."""
    from kiosk.recognizer.liveness import LivenessCheck

    check: LivenessCheck | None = None
    outcome = Outcome("undecided", "none", None, None, None, 0.0)
    cpu = []
    for mark, t in zip(marks, times, strict=True):
        if mark is None:
            continue
        c = time.process_time()
        if check is None:
            check = LivenessCheck(cfg, t, random.Random(seed))
        pts, motion, score = mark
        check.observe(pts, motion if check.watches_surroundings else None, score if check.wants_texture else None)
        result = check.result(t)
        cpu.append(time.process_time() - c)
        if result != "undecided":
            outcome.result, outcome.decided_s = result, t - check.start_t
            outcome.method = check.verdict(t, check.start_t).method
            break
    if check is not None:
        outcome.challenge, outcome.texture = check.challenge, check.texture
        outcome.check_ms = 1000 * statistics.median(cpu)
        if not passed_passively(outcome):
            outcome.why = (
                "moving surroundings" if check.surroundings_moved
                else "texture" if check.texture_spoof
                else "ended before a verdict" if outcome.challenge is None and outcome.result == "undecided"
                else "nothing shown in time"
            )
    return outcome


def passed_passively(o: Outcome) -> bool:
    """Proven live without the challenge (what a recording can show: it cannot answer a fresh challenge)."""
    return o.result == "live" and o.challenge is None


# ------------------------------------------------------------------------------------------- evaluating a trial


@dataclass
class Labelled:
    clip: Path
    kind: str  # "bona fide" or "<instrument> in a hand" / "<instrument> on a stand"
    presenter: str
    times: list[float]
    marks: list[Mark]
    decided: dict[str, Any]  # decision.liveness as the kiosk recorded it


def read_label(clip: Path) -> str | None:
    """The presentation kind of a labelled clip; None while unlabelled; a clear error for a bad label."""
    try:
        label = json.loads((clip / "label.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrialError(f"{clip / 'label.json'}: cannot be read as JSON ({exc})") from exc
    presentation, support = label.get("presentation"), label.get("support")
    if presentation is None:
        return None
    if presentation not in PRESENTATIONS:
        raise TrialError(f"{clip / 'label.json'}: presentation {presentation!r} must be one of "
                          + ", ".join(PRESENTATIONS))
    if presentation == "bona fide":
        return presentation
    if support not in SUPPORTS:
        raise TrialError(f"{clip / 'label.json'}: support {support!r} must be hand or stand for an attack")
    return f"{presentation} {'in a hand' if support == 'hand' else 'on a stand'}"


def load_trial(folder: Path, texture: TextureModel | None) -> tuple[list[Labelled], int]:
    """Every labelled clip of ``folder``, measured; and how many clips are still unlabelled."""
    labelled, unlabelled = [], 0
    for clip in sorted(p for p in folder.iterdir() if (p / "decision.json").is_file()):
        kind = read_label(clip)
        if kind is None:
            unlabelled += 1
            continue
        record = json.loads((clip / "decision.json").read_text(encoding="utf-8"))
        paths = sorted((clip / "frames").glob("*.jpg"))
        times = [float(t) for t in record.get("times", [])]
        if len(times) != len(paths):
            raise TrialError(f"{clip / 'decision.json'}: {len(times)} frame times for {len(paths)} frames")
        frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        marks, _ = measure(frames, times, texture)
        label = json.loads((clip / "label.json").read_text(encoding="utf-8"))
        liveness = (record.get("decision") or {}).get("liveness") or {}
        labelled.append(Labelled(clip, kind, str(label.get("presenter", "")), times, marks, liveness))
    return labelled, unlabelled


@dataclass
class Rates:
    bpcer: float | None
    apcer: dict[str, float]
    median_live_s: float | None


def rates(clips: list[Labelled], cfg: LivenessConfig) -> Rates:
    """BPCER, APCER per attack type and the bona fide median time to live, without the challenge."""
    bona, apcer, live_at = [], {}, []
    for kind in sorted({c.kind for c in clips}):
        outcomes = [play(c.marks, c.times, cfg) for c in clips if c.kind == kind]
        if kind == "bona fide":
            bona = [not passed_passively(o) for o in outcomes]
            live_at = [o.decided_s for o in outcomes if passed_passively(o) and o.decided_s is not None]
        else:
            apcer[kind] = sum(passed_passively(o) for o in outcomes) / len(outcomes)
    return Rates(sum(bona) / len(bona) if bona else None, apcer, statistics.median(live_at) if live_at else None)


def propose(clips: list[Labelled], cfg: LivenessConfig) -> list[tuple[float, float, Rates]]:
    """Every (texture_live, parallax residual) of the grid, best first: the lowest worst APCER, then the lowest BPCER,
    then the strictest thresholds. The residual is ``parallax_textured`` with the texture cue, else ``parallax_live``
    (the grid then runs from 0.03 up)."""
    if cfg.texture_models is not None:
        grid = [(tl, pl) for tl in TEXTURE_GRID if tl >= cfg.texture_refuse for pl in PARALLAX_GRID]
        scored = [(tl, pl, rates(clips, replace(cfg, texture_live=tl, parallax_textured=pl))) for tl, pl in grid]
    else:
        grid = [(cfg.texture_live, pl + 0.015) for pl in PARALLAX_GRID]
        scored = [(tl, pl, rates(clips, replace(cfg, parallax_live=pl))) for tl, pl in grid]
    return sorted(scored, key=lambda s: (max(s[2].apcer.values(), default=0.0), s[2].bpcer or 0.0, -s[0], -s[1]))


def evaluate(folder: Path, cfg: LivenessConfig, top: int = 5) -> str:
    """The report of ``kiosk liveness evaluate``, as text."""
    from kiosk.recognizer.texture import TextureModel

    texture = TextureModel(cfg.texture_models) if cfg.texture_models is not None else None
    started = time.monotonic()
    clips, unlabelled = load_trial(folder, texture)
    if not clips:
        raise TrialError(f"{folder}: no labelled trial clip (fill in label.json; {unlabelled} unlabelled)")
    lines = [f"{len(clips)} labelled clips ({unlabelled} unlabelled) in {folder}; texture cue "
             + ("on" if texture else "off") + f"; measured in {time.monotonic() - started:.0f} s", ""]
    lines.append("presentation | n | the kiosk's own decisions: live | without the challenge, these settings: live")
    for kind in sorted({c.kind for c in clips}):
        group = [c for c in clips if c.kind == kind]
        decided = [c for c in group if c.decided.get("result")]
        kiosk_live = sum(c.decided["result"] == "live" for c in decided)
        own = f"{kiosk_live} of {len(decided)}" if decided else "– (no liveness decision recorded)"
        passive = sum(passed_passively(play(c.marks, c.times, cfg)) for c in group)
        lines.append(f"{kind} | {len(group)} | {own} | {passive}")
    now = rates(clips, cfg)
    residual = "parallax_textured" if texture else "parallax_live"
    lines += ["", f"these settings (texture_live {cfg.texture_live}, texture_refuse {cfg.texture_refuse}, "
              f"parallax_textured {cfg.parallax_textured}, parallax_live {cfg.parallax_live}): " + _rates_text(now),
              "", "proposed (lowest worst APCER, then lowest BPCER, then the stricter):"]
    for tl, pl, r in propose(clips, cfg)[:top]:
        lines.append(f"  texture_live {tl}, {residual} {pl}: " + _rates_text(r))
    spent = [e.get("extra_ms", 0) for c in clips if c.kind == "bona fide" and (e := c.decided)]
    if spent:
        lines.append(f"\nbona fide: median extra time the kiosk waited for liveness {statistics.median(spent):.0f} ms")
    return "\n".join(lines)


def _rates_text(r: Rates) -> str:
    bpcer = "–" if r.bpcer is None else f"{100 * r.bpcer:.1f} %"
    apcer = ", ".join(f"{k} {100 * v:.1f} %" for k, v in sorted(r.apcer.items())) or "no attacks"
    live = "–" if r.median_live_s is None else f"{1000 * r.median_live_s:.0f} ms"
    return f"BPCER {bpcer}; APCER {apcer}; bona fide median time to live {live}"


def register(sub: Any) -> None:
    """Add ``kiosk liveness evaluate`` to the command line's subcommands."""
    live = sub.add_parser("liveness", help="liveness field trial tools")
    live_sub = live.add_subparsers(dest="liveness_command", required=True)
    ev = live_sub.add_parser("evaluate", help="APCER per attack type, BPCER, time, proposed thresholds of a trial")
    ev.add_argument("dir", type=Path, help="the trial folder (recognizer.liveness.trial_dir), labelled")
    ev.add_argument("--config", type=Path, help="the kiosk.toml whose liveness settings are evaluated")
    ev.add_argument("--models", type=Path, help="the MiniFASNet folder (overrides texture_models)")
    ev.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config).recognizer.liveness if args.config else LivenessConfig()
    if args.models is not None:
        cfg = replace(cfg, texture_models=args.models)
    if not args.dir.is_dir():
        raise TrialError(f"{args.dir}: not a folder of trial clips")
    print(evaluate(args.dir, cfg))
    return 0
