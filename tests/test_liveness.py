"""Liveness checks on real frames (the Hamilton clip, Yale's closed eyes) and on simulated photo and phone attacks.

The rates over every attack type are measured by bench/liveness.py; these tests check each rule on a few frames.
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, need

from kiosk.config import LivenessConfig
from kiosk.imageio import read_rgb
from kiosk.recognizer import faces
from kiosk.recognizer.liveness import LivenessCheck, eye_aspect_ratio, head_yaw, planar_residual

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import liveness as simulated  # bench/liveness.py: the simulated attacks

YALE = EXAMPLES.parent.parent / "yalefaces" / "yalefaces"
FPS = 30.0
SHORT = LivenessConfig(level="passive", passive_timeout_s=1.5)  # 45 frames: enough for a real head, fast to test


def largest_face_landmarks(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The 68 landmarks of the largest face of every frame that has one."""
    marks = simulated.track_landmarks(frames)
    return [m for m in marks if m is not None]


@pytest.fixture(scope="module")
def lin_frames() -> list[np.ndarray]:
    """Lin-Manuel Miranda's shot of the Hamilton clip (frames 82-139): he talks and turns his head to his right."""
    return simulated.read_clip(need(EXAMPLES / "short_hamilton_clip.mp4"), 140)[82:140]


@pytest.fixture(scope="module")
def lin_marks(lin_frames: list[np.ndarray]) -> list[np.ndarray]:
    return largest_face_landmarks(lin_frames)


@pytest.fixture(scope="module")
def lin_photo() -> np.ndarray:
    photo = simulated.head_and_shoulders(read_rgb(need(EXAMPLES / "lin-manuel-miranda.png")), 110.0)
    assert photo is not None
    return photo


@pytest.fixture(scope="module")
def attack_marks(lin_photo: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Landmarks of Lin-Manuel Miranda's photo held up printed and on a phone (simulated), a little over 1.5 s each."""
    n = int(FPS * SHORT.passive_timeout_s) + 2
    out = {}
    for attack, make in (("print", simulated.print_attack), ("phone", simulated.phone_attack)):
        marks = largest_face_landmarks(make(lin_photo, n, np.random.default_rng(3)))
        assert len(marks) >= 0.9 * n, f"the simulated {attack} photo is seen as a face"
        out[attack] = marks
    return out


def yale(subject: int, condition: str) -> np.ndarray:
    rgb = read_rgb(need(YALE / f"subject{subject:02d}.{condition}"))
    boxes = faces.detect(rgb, 1)
    assert boxes, f"no face in Yale subject {subject} {condition}"
    return faces.landmarks68(rgb, max(boxes, key=lambda b: b.width))


def play(marks: list[np.ndarray], cfg: LivenessConfig, seed: int = 0) -> tuple[str, LivenessCheck, float]:
    """Feed landmarks at 30 fps until the check decides; returns (result, check, seconds taken)."""
    check = LivenessCheck(cfg, 0.0, random.Random(seed))
    result, t = "undecided", 0.0
    for i, pts in enumerate(marks):
        t = i / FPS
        check.observe(pts)
        result = check.result(t)
        if result != "undecided":
            break
    return result, check, t


# ---------------------------------------------------------------------------------------------- the measures


def test_eye_aspect_ratio_falls_with_closed_eyes_on_yale() -> None:
    for subject in (3, 7, 9, 10):  # Yale's "sleepy" images with the eyes shut
        normal, sleepy = eye_aspect_ratio(yale(subject, "normal")), eye_aspect_ratio(yale(subject, "sleepy"))
        assert 0.2 < normal < 0.5
        assert sleepy / normal < LivenessConfig().blink_ratio, f"subject {subject}: {sleepy:.3f} / {normal:.3f}"


def test_a_plane_fits_a_homography_and_a_turning_head_does_not(lin_marks: list[np.ndarray]) -> None:
    first, later = lin_marks[0], lin_marks[20]  # two thirds of a second apart, the head has turned
    h = cv2.getPerspectiveTransform(
        np.float32([[0, 0], [1, 0], [1, 1], [0, 1]]), np.float32([[3, 1], [1.1, 0.05], [1.05, 0.9], [0.02, 1.1]])
    )
    warped = cv2.perspectiveTransform(first.reshape(1, -1, 2), h)[0]  # the same face moved as a plane would
    assert planar_residual(first, warped) < 1e-6
    assert planar_residual(first, later) > LivenessConfig().parallax_live


def test_head_yaw_follows_lin_turning_to_his_right(lin_marks: list[np.ndarray]) -> None:
    yaws = [head_yaw(m) for m in lin_marks]
    assert yaws[0] > 0.1 and yaws[-1] < -0.2, "the nose moves towards the image's left: his own right"


# ---------------------------------------------------------------------------------------------- the checks


def test_a_real_head_is_live_by_parallax_within_a_second(lin_marks: list[np.ndarray]) -> None:
    result, check, seconds = play(lin_marks, SHORT)
    assert result == "live" and check.verdict(seconds, 0.0).method == "parallax"
    assert seconds < 1.0


def test_a_blink_is_counted_against_the_persons_own_open_eyes() -> None:
    normal, sleepy = yale(3, "normal"), yale(3, "sleepy")
    result, check, _ = play([normal] * 8 + [sleepy] * 2 + [normal] * 2, SHORT)
    assert result == "live" and check.blinks == 1 and check.verdict(0.4, 0.0).method == "blink"
    steady, still, _ = play([normal] * 60, SHORT)
    assert steady == "spoof" and still.blinks == 0, "open eyes that never move prove nothing"


@pytest.mark.parametrize("attack", ["print", "phone"])
def test_a_photo_held_up_is_refused(attack: str, attack_marks: dict[str, list[np.ndarray]]) -> None:
    result, check, _ = play(attack_marks[attack], SHORT)
    assert result == "spoof"
    assert check.parallax < SHORT.parallax_live and check.blinks == 0


def test_the_challenge_comes_after_the_passive_time_and_a_photo_fails_it(
    attack_marks: dict[str, list[np.ndarray]],
) -> None:
    cfg = replace(SHORT, level="challenge", passive_timeout_s=0.5, challenge_timeout_s=1.0)
    marks = attack_marks["print"]
    check = LivenessCheck(cfg, 0.0, random.Random(1))
    results = []
    for i, pts in enumerate(marks):
        check.observe(pts)
        results.append((i / FPS, check.result(i / FPS), check.challenge))
    assert all(r == "undecided" and c is None for t, r, c in results if t < 0.5)
    assert all(c is not None for t, _, c in results if t >= 0.5), "the challenge is asked once time is up"
    assert results[-1][1] == "spoof"


def test_a_turn_challenge_passes_only_in_the_direction_asked(lin_marks: list[np.ndarray]) -> None:
    cfg = replace(SHORT, level="challenge", passive_timeout_s=0.0, challenge_timeout_s=1.5)  # the challenge at once
    outcomes = {}
    for seed in range(20):
        check = LivenessCheck(cfg, 0.0, random.Random(seed))
        check.observe(lin_marks[0])
        check.result(0.0)
        if check.challenge is None or check.challenge == "blink" or check.challenge in outcomes:
            continue
        result = "undecided"
        for i, pts in enumerate(lin_marks[1:], 1):
            check.observe(pts)
            result = check.result(i / FPS)
        outcomes[check.challenge] = result
    assert outcomes == {"turn_right": "live", "turn_left": "spoof"}, "Lin turns to his own right"


def test_level_off_is_always_live() -> None:
    check = LivenessCheck(LivenessConfig(level="off"), 0.0)
    assert check.result(100.0) == "live"


def test_the_event_field_carries_the_verdict_and_bad_values_are_named() -> None:
    from datetime import UTC, datetime

    from kiosk.events import schema
    from kiosk.events.schema import ClockInfo, Stamp
    from kiosk.recognizer.liveness import LivenessVerdict

    verdict = LivenessVerdict("passive", "live", "blink", 0.01234, 1, None, 1234.4)
    field = schema.liveness_field(verdict)
    assert field == {"level": "passive", "result": "live", "method": "blink", "score": "0.0123", "blinks": 1,
                     "challenge": None, "extra_ms": 1234}
    stamp = Stamp("kab-maros-01", "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c", 1, datetime(2026, 11, 30, tzinfo=UTC),
                  "Asia/Makassar", ClockInfo(True, "ntp", True))
    decision = {"method": "face", "best_nip": None, "distance": "0.5000", "margin": None, "frames": 2,
                "liveness": dict(field, method="magic", score=0.5, challenge="smile", extra=1)}
    body = schema.build_review(stamp, reason="unknown_face", decision={**decision, "liveness": field})
    body["decision"] = decision
    problems = schema.validate(body, complete=False)
    for path in ("method", "score", "challenge", "extra"):
        assert any(p.startswith(f"$.decision.liveness.{path}:") for p in problems), (path, problems)


def test_a_blink_ratio_above_the_reopen_ratio_is_a_config_error() -> None:
    from kiosk.config import parse_config
    from kiosk.errors import ConfigError

    data = {"camera": {"path": "clip.mp4"}, "recognizer": {"liveness": {"blink_ratio": 0.9, "reopen_ratio": 0.8}}}
    with pytest.raises(ConfigError, match=r"recognizer\.liveness\.blink_ratio: must be less than"):
        parse_config(data, "kiosk.toml", base_dir=Path("/etc/kiosk"))
    data["recognizer"]["liveness"]["level"] = "sometimes"  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"recognizer\.liveness\.level"):
        parse_config(data, "kiosk.toml", base_dir=Path("/etc/kiosk"))
