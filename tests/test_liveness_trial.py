"""The texture models' loader, the field trial recorder and `kiosk liveness evaluate` on a small labelled set made here
from the shared still-camera clips (read in place) and a simulated print on a stand (bench/attacks.py)."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FACES, enroll, need, write_roster

from kiosk.camera import Frame
from kiosk.cli import main
from kiosk.config import LivenessConfig
from kiosk.errors import ModelError, TrialError
from kiosk.liveness_trial import TrialRecorder
from kiosk.recognizer.faces import Box, detect
from kiosk.recognizer.liveness import LivenessVerdict
from kiosk.recognizer.pipeline import Decision, FrameResult
from kiosk.recognizer.texture import TextureModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import attacks  # bench/attacks.py: the simulated attacks on still-camera clips

MODELS = Path(os.environ.get("KIOSK_MINIFASNET_DIR", FACES.parent / "models" / "minifasnet"))
FIXED = FACES / "fixed-camera"
G6 = "198507072010012006"  # GRID speaker G6, enrolled here from the clip's own first frame


def read_frames(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(need(path)))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames, fps


def test_a_model_whose_sha256_differs_is_refused_with_its_path(tmp_path: Path) -> None:
    for name in ("2.7_80x80_MiniFASNetV2.onnx", "4_0_0_80x80_MiniFASNetV1SE.onnx"):
        shutil.copyfile(need(MODELS / name), tmp_path / name)
    damaged = tmp_path / "4_0_0_80x80_MiniFASNetV1SE.onnx"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"4_0_0_80x80_MiniFASNetV1SE\.onnx has sha256 [0-9a-f]{64}, expected 2f4a"):
        TextureModel(tmp_path)
    damaged.unlink()
    with pytest.raises(ModelError, match=r"cannot read .*4_0_0_80x80_MiniFASNetV1SE\.onnx"):
        TextureModel(tmp_path)


def test_the_labelled_photos_score_live_and_spoof_on_the_kiosks_boxes() -> None:
    model = TextureModel(need(MODELS))
    threshold = LivenessConfig().texture_live
    scores = {}
    for name in ("T1", "F1", "F2"):
        rgb = cv2.cvtColor(cv2.imread(str(need(FIXED / "sfas-samples" / f"image_{name}.jpg"))), cv2.COLOR_BGR2RGB)
        assert rgb.shape[:2] == (640, 480), "the EXIF rotation is applied"
        scores[name] = model.real_score(rgb, max(detect(rgb, 1), key=lambda b: b.width))
    assert scores["T1"] > threshold > max(scores["F1"], scores["F2"]), scores


def verdict(result: str = "live") -> LivenessVerdict:
    return LivenessVerdict("challenge", result, "parallax", 0.05, 0, None, 120.0, 0, 0.97)  # type: ignore[arg-type]


def decision(track: int, t: float, latency_s: float) -> Decision:
    return Decision(track, 0, t, "198001012005011001", "198001012005011001", 0.4, 0.2, 2, 0.0, latency_s * 1000,
                    Box(10, 60, 60, 10), verdict())


def test_the_trial_recorder_keeps_the_decided_presentation_with_an_empty_label(tmp_path: Path) -> None:
    with pytest.raises(TrialError, match="trial_consent"):
        TrialRecorder(tmp_path / "trial", " ")
    old = tmp_path / "trial" / "20200101T000000.000000Z-t9"
    old.mkdir(parents=True)
    recorder = TrialRecorder(tmp_path / "trial", "BKPSDM 800/17/2026", seconds=1.0, keep_days=14)
    assert not old.exists(), "clips past keep_days are deleted"
    rgb = np.zeros((720, 1280, 3), np.uint8)
    written = []
    for i in range(60):  # 2 s at 30 fps; the decision at the last frame, its track born at 1.5 s
        t = i / 30
        decisions = [decision(3, t, 0.5)] if i == 59 else []
        written += recorder.frame(Frame(rgb, i, t), FrameResult([], decisions))
    assert len(written) == 1
    clip = written[0]
    frames = sorted((clip / "frames").glob("*.jpg"))
    record = json.loads((clip / "decision.json").read_text())
    assert len(frames) == len(record["times"]) == 16, "the track's 0.5 s: frames 44 to 59"
    assert cv2.imread(str(frames[0])).shape == (360, 640, 3), "kept at most 640 px wide"
    assert record["consent"] == "BKPSDM 800/17/2026"
    assert record["decision"]["liveness"]["texture"] == "0.9700"
    label = json.loads((clip / "label.json").read_text())
    assert label == {"presentation": None, "support": None, "presenter": "", "claimed": "198001012005011001",
                     "notes": ""}
    stale = datetime.now(UTC) - timedelta(days=15)
    stale_clip = tmp_path / "trial" / f"{stale:%Y%m%dT%H%M%S.%fZ}-t1"
    stale_clip.mkdir()
    recorder.prune()
    assert not stale_clip.exists() and clip.exists()


def write_clip(folder: Path, name: str, frames: list[np.ndarray], fps: float, label: dict[str, object]) -> None:
    clip = folder / name
    (clip / "frames").mkdir(parents=True)
    for k, rgb in enumerate(frames):
        cv2.imwrite(str(clip / "frames" / f"{k:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    record = {"consent": "test", "times": [k / fps for k in range(len(frames))], "decision": {"liveness": None}}
    (clip / "decision.json").write_text(json.dumps(record))
    (clip / "label.json").write_text(json.dumps(label))


def test_liveness_evaluate_reports_bpcer_apcer_per_attack_and_proposes_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need(MODELS)
    trial = tmp_path / "trial"
    rng = np.random.default_rng(4)
    bona, fps = read_frames(FIXED / "grid-lrwp9a" / "lrwp9a.mpg", 75)
    write_clip(trial, "a-bona", bona, fps, {"presentation": "bona fide", "presenter": "G6"})
    box = max(detect(bona[0], 1), key=lambda b: b.width)
    background = cv2.cvtColor(cv2.imread(str(need(FACES / "dlib/dlib/test/ffmpeg_data/horses.jpg"))), cv2.COLOR_BGR2RGB)
    printed = attacks.present(attacks.Attack(attacks.PRINT, hand=False), bona[:1], box, 60, rng, background, fps)
    write_clip(trial, "b-print", printed, attacks.FPS,
               {"presentation": "print", "support": "stand", "presenter": "tester", "claimed": "G6"})
    replayed = attacks.present(attacks.Attack(attacks.TABLET, hand=False), bona, box, 60, rng, background, fps)
    write_clip(trial, "c-replay", replayed, attacks.FPS, {"presentation": "tablet", "support": "stand"})
    write_clip(trial, "d-unlabelled", bona[:5], fps, {"presentation": None})

    assert main(["liveness", "evaluate", str(trial), "--models", str(MODELS)]) == 0
    out = capsys.readouterr().out
    assert "3 labelled clips (1 unlabelled)" in out
    settings = next(line for line in out.splitlines() if line.startswith("these settings"))
    assert "BPCER 0.0 %" in settings, out
    assert "print on a stand 0.0 %" in settings and "tablet on a stand 0.0 %" in settings, out
    assert "proposed" in out and "texture_live" in out.split("proposed")[1]

    (trial / "c-replay" / "label.json").write_text(json.dumps({"presentation": "tablet", "support": "shelf"}))
    assert main(["liveness", "evaluate", str(trial), "--models", str(MODELS)]) == 2
    assert "support 'shelf' must be hand or stand" in capsys.readouterr().err


def test_a_trial_kiosk_keeps_the_decided_presentation_and_evaluate_reads_its_own_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kiosk run` on a still-camera clip (GRID G6, enrolled from its first frame) with the texture cue and trial
    mode: the person is proven live passively, the decision is kept as a trial clip, and once labelled, `kiosk
    liveness evaluate` counts the kiosk's own decision."""
    clip = need(FIXED / "grid-lrwp9a" / "lrwp9a.mpg")
    need(MODELS)
    frames, _ = read_frames(clip, 1)
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / f"{G6}.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    roster = write_roster(tmp_path / "roster.csv", [(G6, "G6", "GRID")])
    assert enroll(roster, tmp_path / "photos", tmp_path / "gallery.kgal") == 0
    config = tmp_path / "kiosk.toml"
    body = (f'[device]\nid = "kiosk-trial"\nstate_dir = "{tmp_path}"\n'
            f'[camera]\nsource = "replay"\npath = "{clip}"\nrealtime = false\n'
            f'[display]\nbackend = "log"\n'
            f'[recognizer]\ngallery = "{tmp_path / "gallery.kgal"}"\n'
            f'[recognizer.liveness]\ntexture_models = "{MODELS}"\ntrial_dir = "{tmp_path / "trial"}"\n')
    config.write_text(body)
    assert main(["config", "check", str(config)]) == 1
    assert "recognizer.liveness.trial_consent: a field trial keeps clips of faces" in capsys.readouterr().err
    config.write_text(body + 'trial_consent = "BKPSDM 800/17/2026"\n')
    assert main(["run", "--config", str(config)]) == 0
    (kept,) = (tmp_path / "trial").iterdir()
    record = json.loads((kept / "decision.json").read_text())
    liveness = record["decision"]["liveness"]
    assert record["decision"]["nip"] == G6 and liveness["result"] == "live" and liveness["challenge"] is None
    assert float(liveness["texture"]) >= LivenessConfig().texture_live
    assert len(record["times"]) == len(list((kept / "frames").glob("*.jpg"))) >= 6
    label = json.loads((kept / "label.json").read_text())
    (kept / "label.json").write_text(json.dumps({**label, "presentation": "bona fide", "presenter": "G6"}))
    capsys.readouterr()
    assert main(["liveness", "evaluate", str(tmp_path / "trial"), "--config", str(config)]) == 0
    assert "bona fide | 1 | 1 of 1 | 1" in capsys.readouterr().out


def test_texture_refuse_above_texture_live_is_a_config_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text("[recognizer.liveness]\ntexture_live = 0.3\ntexture_refuse = 0.4\n")
    assert main(["config", "check", str(config)]) == 1
    assert "recognizer.liveness.texture_refuse: must be at most recognizer.liveness.texture_live" in (
        capsys.readouterr().err)


def test_a_replay_on_a_stand_is_refused_by_the_pipeline_with_the_texture_cue_and_passes_without_it() -> None:
    """The stand-replay hole, through the kiosk's whole pipeline: G6's clip on a simulated tablet on a stand (a real
    head's parallax and blinks before still surroundings) is identified as G6, and only the texture cue refuses it."""
    from kiosk.config import RecognizerConfig
    from kiosk.recognizer import faces
    from kiosk.recognizer.pipeline import Pipeline
    from kiosk_contract.gallery import Gallery, Person

    need(MODELS)
    clip, fps = read_frames(FIXED / "grid-lrwp9a" / "lrwp9a.mpg", 75)
    box = max(detect(clip[0], 1), key=lambda b: b.width)
    template = faces.encode(faces.chip(clip[0], faces.landmarks(clip[0], box)), 5)
    gallery = Gallery([Person(G6, "G6", "GRID", template[None, :])])
    background = cv2.cvtColor(cv2.imread(str(need(FACES / "dlib/dlib/test/ffmpeg_data/horses.jpg"))), cv2.COLOR_BGR2RGB)
    frames = attacks.present(attacks.Attack(attacks.TABLET, hand=False), clip, box, 120, np.random.default_rng(11),
                             background, fps)
    verdicts = {}
    for name, texture in (("texture cue", MODELS), ("no texture cue", None)):
        cfg = RecognizerConfig(liveness=LivenessConfig(texture_models=texture))
        pipeline = Pipeline(gallery, cfg, rng=random.Random(0))
        decisions = [d for i, rgb in enumerate(frames) for d in pipeline.process(Frame(rgb, i, i / 30)).decisions]
        claimed = [d for d in decisions if d.nip == G6]
        assert claimed, f"{name}: the replayed G6 is identified"
        verdicts[name] = claimed[0].liveness
    refused = verdicts["texture cue"]
    assert refused is not None and refused.result == "spoof" and refused.challenge is None
    assert refused.texture is not None and refused.texture < LivenessConfig().texture_refuse
    passed = verdicts["no texture cue"]
    assert passed is not None and passed.result == "live" and passed.method in ("parallax", "blink")
