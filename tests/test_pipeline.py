"""The recognizer pipeline: geometry, motion gate, tracker, and whole clips replayed end to end."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ALEX, EXAMPLES, LIN, OBAMA, TEST_IMAGES, enroll, link_photos, need, write_roster

from kiosk.camera import Frame
from kiosk.cli import main
from kiosk.config import GeometryConfig, LivenessConfig, QualityConfig, RecognizerConfig
from kiosk.imageio import read_rgb
from kiosk.recognizer import geometry
from kiosk.recognizer.faces import Box
from kiosk.recognizer.motion import MotionGate
from kiosk.recognizer.pipeline import Decision, Pipeline
from kiosk.recognizer.tracker import Tracker
from kiosk_contract.gallery import Gallery

BIDEN = "194211201972031002"


def test_detection_width_follows_the_geometry() -> None:
    geo = GeometryConfig()  # 66 degrees, faces served up to 1.5 m
    assert geometry.face_px(geo, 1280, 1.5) == pytest.approx(95.3, abs=0.5)
    assert geometry.detection_width(geo, 1920) == 1076  # a face at 1.5 m is then 80 px wide
    assert geometry.detection_width(geo, 640) == 640  # never upsampled
    assert geometry.detection_width(replace(geo, max_distance_m=0.75), 1920) == 538
    assert geometry.detection_width(replace(geo, detect_width=400), 1920) == 400
    assert geometry.min_face_px(geo, QualityConfig(), 1920) == 128
    assert geometry.min_face_px(geo, QualityConfig(min_face_px=70), 1920) == 70


def test_motion_gate_ignores_sensor_noise_but_sees_a_person() -> None:
    rng = np.random.default_rng(1)
    scene = rng.integers(40, 200, size=(360, 640, 3), dtype=np.uint8)
    gate = MotionGate(threshold=12.0)

    def noisy() -> np.ndarray:
        return np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)

    gate.moved(noisy())
    assert not any(gate.moved(noisy()) for _ in range(20))
    person = noisy()
    person[100:300, 250:400] = 230
    assert gate.moved(person)


def test_tracker_keeps_one_track_per_walking_face_and_ends_it() -> None:
    tracker = Tracker(min_iou=0.3, max_missed=2)
    born, _ = tracker.update([Box(100, 200, 200, 100)], 0, 0.0)
    assert len(born) == 1
    for i in range(1, 10):  # walks closer: the box grows and drifts
        born, ended = tracker.update([Box(100 - i, 200 + 2 * i, 200 + 2 * i, 100 - i)], i, i / 30)
        assert not born and not ended
    born, _ = tracker.update([Box(100, 200, 200, 100), Box(0, 600, 50, 550)], 10, 0.4)
    assert [t.id for t in born] == [2], "a second face is a second track"
    ended_ids = []
    for i in range(11, 15):
        ended_ids += [t.id for t in tracker.update([], i, i / 30)[1]]
    assert sorted(ended_ids) == [1, 2] and not tracker.tracks


@pytest.fixture(scope="module")
def obama_biden(tmp_path_factory: pytest.TempPathFactory) -> Gallery:
    root = tmp_path_factory.mktemp("ob")
    photos = link_photos(root / "p", {OBAMA: TEST_IMAGES / "obama.jpg", BIDEN: TEST_IMAGES / "biden.jpg"})
    roster = write_roster(root / "r.csv", [(OBAMA, "Barack Obama", "Setda"), (BIDEN, "Joe Biden", "Setda")])
    assert enroll(roster, photos, root / "g") == 0
    return Gallery.load(root / "g")


def test_nearest_face_is_served_first_and_each_face_is_its_own_track(obama_biden: Gallery) -> None:
    near = read_rgb(need(TEST_IMAGES / "obama2.jpg"))
    far = read_rgb(need(EXAMPLES / "biden.jpg"))
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    big = np.asarray(__import__("cv2").resize(near, (520, int(520 * near.shape[0] / near.shape[1]))))[:700]
    small = np.asarray(__import__("cv2").resize(far, (300, int(300 * far.shape[0] / far.shape[1]))))[:400]
    canvas[: big.shape[0], 700 : 700 + big.shape[1]] = big
    canvas[200 : 200 + small.shape[0], 50:350] = small
    cfg = RecognizerConfig(
        geometry=GeometryConfig(detect_width=1280),
        quality=QualityConfig(min_face_px=60),
        liveness=LivenessConfig(level="off"),  # two photos pasted on a canvas are a spoof by construction
    )
    pipeline = Pipeline(obama_biden, cfg)
    decisions = []
    for i in range(40):
        decisions += pipeline.process(Frame(canvas, i, i / 30)).decisions
    assert pipeline.stats.tracks == 2
    assert [d.nip for d in decisions] == [OBAMA, BIDEN], "the nearest (largest) face is decided first"
    assert decisions[0].frames_used == cfg.decision.agreement
    assert pipeline.stats.encodings == sum(d.frames_used for d in decisions), "no encoding after a decision"


def _replay(gallery: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    assert main(["replay", "--gallery", str(gallery), "--source", str(source), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_hamilton_clip_end_to_end(hamilton_gallery: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decisions, summary = _replay(hamilton_gallery, need(EXAMPLES / "short_hamilton_clip.mp4"), capsys)
    assert summary["frames"] == 275 and summary["dropped"] == 0
    assert {"detections", "encodings", "cpu_s", "peak_rss_mb"} <= summary.keys()
    accepted = [d for d in decisions if d["nip"]]
    assert {d["nip"] for d in accepted} == {LIN}, "Lin-Manuel Miranda is recognised, nobody else is named"
    for d in decisions:
        assert set(d) >= {"frame", "t", "track", "nip", "distance", "frames_used", "latency_ms"}
        assert d["frames_used"] <= RecognizerConfig().decision.max_encodings
    assert summary["encodings"] <= 3 * RecognizerConfig().decision.max_encodings, "encoded per track, not per frame"
    assert ALEX not in {d["nip"] for d in decisions}


def test_a_still_scene_lets_the_detector_rest(hamilton_gallery: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    scene = read_rgb(need(EXAMPLES.parent.parent / "dlib" / "examples" / "faces" / "dogs.jpg"))[:360, :640]
    rng = np.random.default_rng(2)
    folder = tmp_path / "still"
    folder.mkdir()
    from PIL import Image

    for i in range(60):
        noisy = np.clip(scene + rng.normal(0, 2, scene.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:03d}.bmp")
    _, summary = _replay(hamilton_gallery, folder, capsys)
    assert summary["frames"] == 60 and summary["detections"] == 0
    # The whole frame is searched once at the start, then only every idle_scan_every_s (5 s, longer than this clip).
    assert summary["full_scans"] == 1
    assert summary["idle_frames"] == 59


def _simulated_attacks():  # type: ignore[no-untyped-def]
    """bench/liveness_films.py, where the simulated attacks on the films are made."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import liveness_films

    return liveness_films


def test_a_printed_photo_of_an_enrolled_person_is_a_suspected_spoof(hamilton_gallery: Path) -> None:
    import random

    simulated = _simulated_attacks()
    photo = simulated.head_and_shoulders(read_rgb(need(EXAMPLES / "lin-manuel-miranda.png")), 110.0)
    frames = simulated.print_attack(photo, 90, np.random.default_rng(5))
    cfg = RecognizerConfig(liveness=LivenessConfig(passive_timeout_s=1.0, challenge_timeout_s=1.0))
    pipeline = Pipeline(Gallery.load(hamilton_gallery), cfg, rng=random.Random(2))
    decisions, prompts = [], set()
    for i, rgb in enumerate(frames):
        result = pipeline.process(Frame(rgb, i, i / 30))
        decisions += result.decisions
        prompts |= {p for t in result.tracks for p in t.problems if p.startswith("challenge_")}
    assert len(decisions) == 1, decisions
    d = decisions[0]
    assert d.nip == LIN and not d.live, "recognised, but not as a live person"
    assert d.liveness is not None and d.liveness.result == "spoof" and d.liveness.challenge is not None
    assert d.liveness.moving_surroundings >= cfg.liveness.surroundings_frames, "the photo moved with its surroundings"
    first = d.liveness.challenge.split("+")[0]
    assert prompts == {f"challenge_{first}"}, "the screen asked for the first action, which a photo cannot do"
    assert d.liveness.extra_ms < 1000 * (cfg.liveness.passive_timeout_s + 2 * cfg.liveness.challenge_timeout_s)
    assert pipeline.stats.accepted == 0 and pipeline.stats.spoofs == 1 and pipeline.stats.challenges == 1


def replay_hamilton(cfg: RecognizerConfig, gallery: Path) -> tuple[list[Decision], Pipeline]:
    import cv2

    cap = cv2.VideoCapture(str(need(EXAMPLES / "short_hamilton_clip.mp4")))
    pipeline = Pipeline(Gallery.load(gallery), cfg, rng=random.Random(0))
    decisions, i = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decisions += pipeline.process(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), i, i / 30)).decisions
        i += 1
    return decisions, pipeline


def test_the_hamilton_clip_s_panning_camera_brings_the_challenge_and_its_head_has_parallax(
    hamilton_gallery: Path,
) -> None:
    decisions, pipeline = replay_hamilton(RecognizerConfig(), hamilton_gallery)
    (claimed,) = [d for d in decisions if d.best_nip == LIN and d.distance is not None and d.distance < 0.4]
    assert not claimed.live and claimed.liveness is not None, "a film is not a person at the kiosk"
    assert claimed.liveness.moving_surroundings >= 3 and claimed.liveness.challenge is not None
    assert pipeline.stats.challenges == 1 and pipeline.stats.accepted == 0

    blind = RecognizerConfig(liveness=LivenessConfig(surroundings_motion=1.0))  # the surroundings check never fires
    decisions, pipeline = replay_hamilton(blind, hamilton_gallery)
    accepted = [d for d in decisions if d.nip]
    assert [d.nip for d in accepted] == [LIN] and accepted[0].live
    assert accepted[0].liveness is not None and accepted[0].liveness.method == "parallax"
    assert accepted[0].liveness.extra_ms < 1000, "an honest, moving person waits well under a second more"
    assert pipeline.stats.liveness_frames < pipeline.stats.frames, "68 landmarks only while a decision is open"
