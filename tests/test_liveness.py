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
from kiosk.recognizer.liveness import LivenessCheck, Surroundings, eye_aspect_ratio, head_yaw, planar_residual

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import liveness_films as simulated  # bench/liveness_films.py: the simulated attacks on the films

YALE = EXAMPLES.parent.parent / "yalefaces" / "yalefaces"
FIXED = EXAMPLES.parent.parent / "fixed-camera"
FPS = 30.0
SHORT = LivenessConfig(level="passive", passive_timeout_s=1.5)  # 45 frames: enough for a real head, fast to test
Mark = tuple[np.ndarray, float | None]  # a frame's 68 landmarks and how far the face's surroundings moved


def largest_face_marks(frames: list[np.ndarray]) -> list[Mark]:
    """The 68 landmarks of the largest face of every frame that has one, with its surroundings' motion."""
    marks, _ = simulated.track_landmarks(frames)
    return [m for m in marks if m is not None]


def moving_share(marks: list[Mark], measured: int = 10) -> float:
    """The share of measured frames whose surroundings moved at least the configured amount (0 when none was)."""
    motions = [m for _, m in marks if m is not None]
    assert len(motions) >= measured, f"the surroundings were measured on {len(motions)} of {len(marks)} frames"
    return sum(m >= LivenessConfig().surroundings_motion for m in motions) / max(1, len(motions))


@pytest.fixture(scope="module")
def hamilton() -> list[np.ndarray]:
    return simulated.read_clip(need(EXAMPLES / "short_hamilton_clip.mp4"), 251)


@pytest.fixture(scope="module")
def lin_marks(hamilton: list[np.ndarray]) -> list[Mark]:
    """Lin-Manuel Miranda's shot (frames 82-139): he talks and turns his head to his right, and the film's camera
    pans with him."""
    return largest_face_marks(hamilton[82:140])


@pytest.fixture(scope="module")
def lin_points(lin_marks: list[Mark]) -> list[np.ndarray]:
    return [pts for pts, _ in lin_marks]


@pytest.fixture(scope="module")
def lin_photo() -> np.ndarray:
    photo = simulated.head_and_shoulders(read_rgb(need(EXAMPLES / "lin-manuel-miranda.png")), 110.0)
    assert photo is not None
    return photo


@pytest.fixture(scope="module")
def attack_marks(lin_photo: np.ndarray, hamilton: list[np.ndarray]) -> dict[str, list[Mark]]:
    """Lin-Manuel Miranda's photo held up printed, on a phone and propped on a stand, and his shot replayed on a
    tablet held in a hand (simulated), a little over 1.5 s each."""
    n = int(FPS * SHORT.passive_timeout_s) + 2
    clip = simulated.face_crop(hamilton[82:213])
    makers = {
        "print": lambda rng: simulated.print_attack(lin_photo, n, rng),
        "phone": lambda rng: simulated.phone_attack(lin_photo, n, rng),
        "print on a stand": lambda rng: simulated.print_attack(lin_photo, n, rng, still=True),
        "replay": lambda rng: simulated.replay_attack(clip, n, rng),
    }
    out = {}
    for attack, make in makers.items():
        marks = largest_face_marks(make(np.random.default_rng(3)))
        assert len(marks) >= 0.9 * n, f"the simulated {attack} is seen as a face"
        out[attack] = marks
    return out


def yale(subject: int, condition: str) -> np.ndarray:
    rgb = read_rgb(need(YALE / f"subject{subject:02d}.{condition}"))
    boxes = faces.detect(rgb, 1)
    assert boxes, f"no face in Yale subject {subject} {condition}"
    return faces.landmarks68(rgb, max(boxes, key=lambda b: b.width))


def play(marks: list[Mark], cfg: LivenessConfig, seed: int = 0) -> tuple[str, LivenessCheck, float]:
    """Feed landmarks at 30 fps until the check decides; returns (result, check, seconds taken)."""
    check = LivenessCheck(cfg, 0.0, random.Random(seed))
    result, t = "undecided", 0.0
    for i, mark in enumerate(marks):
        t = i / FPS
        check.observe(*mark)
        result = check.result(t)
        if result != "undecided":
            break
    return result, check, t


def still(points: list[np.ndarray]) -> list[Mark]:
    """Landmarks with the surroundings unmeasured (as in front of a plain wall)."""
    return [(pts, None) for pts in points]


# ---------------------------------------------------------------------------------------------- the measures


def test_eye_aspect_ratio_falls_with_closed_eyes_on_yale() -> None:
    for subject in (3, 7, 9, 10):  # Yale's "sleepy" images with the eyes shut
        normal, sleepy = eye_aspect_ratio(yale(subject, "normal")), eye_aspect_ratio(yale(subject, "sleepy"))
        assert 0.2 < normal < 0.5
        assert sleepy / normal < LivenessConfig().blink_ratio, f"subject {subject}: {sleepy:.3f} / {normal:.3f}"


def test_a_plane_fits_a_homography_and_a_turning_head_does_not(lin_points: list[np.ndarray]) -> None:
    first, later = lin_points[0], lin_points[20]  # two thirds of a second apart, the head has turned
    h = cv2.getPerspectiveTransform(
        np.float32([[0, 0], [1, 0], [1, 1], [0, 1]]), np.float32([[3, 1], [1.1, 0.05], [1.05, 0.9], [0.02, 1.1]])
    )
    warped = cv2.perspectiveTransform(first.reshape(1, -1, 2), h)[0]  # the same face moved as a plane would
    assert planar_residual(first, warped) < 1e-6
    assert planar_residual(first, later) > LivenessConfig().parallax_live


def test_head_yaw_follows_lin_turning_to_his_right(lin_points: list[np.ndarray]) -> None:
    yaws = [head_yaw(m) for m in lin_points]
    assert yaws[0] > 0.1 and yaws[-1] < -0.2, "the nose moves towards the image's left: his own right"


def test_surroundings_held_in_a_hand_move_and_a_still_background_does_not(
    attack_marks: dict[str, list[Mark]], hamilton: list[np.ndarray], lin_marks: list[Mark]
) -> None:
    assert moving_share(attack_marks["print"]) > 0.7, "a photo held in a hand carries its surroundings along"
    assert moving_share(attack_marks["phone"]) > 0.7
    assert moving_share(attack_marks["replay"]) > 0.7
    assert moving_share(attack_marks["print on a stand"], measured=0) == 0.0, "a photo on a stand moves nothing"
    second_shot = largest_face_marks(hamilton[217:251])  # the clip's second shot: the camera holds still
    moving = [m for _, m in second_shot if m is not None and m >= LivenessConfig().surroundings_motion]
    # OpenCV 4.11 (the Bookworm device's, locks/) sees one frame of 29 just above the threshold where 5.1 saw none:
    # never the surroundings_frames in a row that would bring the challenge
    assert moving_share(second_shot) < 0.05 and len(moving) < LivenessConfig().surroundings_frames, (
        "a real person before a still background")
    assert moving_share(lin_marks) > 0.3, "a film's panning camera moves the background as a hand would"


@pytest.mark.parametrize("clip", ["grid-bbaf2n/bbaf2n.mpg", "grid-brbk7n/brbk7n.mpg"])
def test_a_plain_studio_backdrop_does_not_move(clip: str) -> None:
    """GRID talking heads (tuning and reporting half) before a plain backdrop: its "corners" are MPEG-1 noise that
    changes from frame to frame; without the forward-backward check 18 and 30 of 74 frames "moved" by about a
    quarter of an inter-ocular distance and honest people were sent to the challenge."""
    marks = largest_face_marks(simulated.read_clip(need(FIXED / clip)))
    moving = [m for _, m in marks if m is not None and m >= LivenessConfig().surroundings_motion]
    assert len(marks) >= 70, "the talking head is found on nearly every frame"
    assert len(moving) < LivenessConfig().surroundings_frames, f"{len(moving)} frames of a still backdrop moved"


def test_the_surroundings_of_the_first_frame_and_after_a_gap_are_unknown(hamilton: list[np.ndarray]) -> None:
    frames = hamilton[217:222]
    marks, _ = simulated.track_landmarks(frames)
    pts = [m[0] for m in marks if m is not None]
    watch = Surroundings()
    assert watch.motion(frames[0], pts[0], 0.0) is None, "nothing to compare with yet"
    assert watch.motion(frames[1], pts[1], 1 / FPS) is not None
    assert watch.motion(frames[2], pts[2], 1.0) is None, "a gap of a second starts afresh"
    plain = np.full_like(frames[3], 128)
    assert watch.motion(plain, pts[3], 1.0 + 1 / FPS) is None
    assert watch.motion(plain, pts[4], 1.0 + 2 / FPS) is None, "a plain wall has no corners to follow"


# ---------------------------------------------------------------------------------------------- the checks


def test_a_real_head_is_live_by_parallax_within_a_second(lin_points: list[np.ndarray]) -> None:
    result, check, seconds = play(still(lin_points), SHORT)  # the head's own motion, as before a fixed camera
    assert result == "live" and check.verdict(seconds, 0.0).method == "parallax"
    assert seconds < 1.0


def test_a_blink_is_counted_against_the_persons_own_open_eyes() -> None:
    normal, sleepy = yale(3, "normal"), yale(3, "sleepy")
    result, check, _ = play(still([normal] * 8 + [sleepy] * 2 + [normal] * 2), SHORT)
    assert result == "live" and check.blinks == 1 and check.verdict(0.4, 0.0).method == "blink"
    steady, check, _ = play(still([normal] * 60), SHORT)
    assert steady == "spoof" and check.blinks == 0, "open eyes that never move prove nothing"


def nodding(pts: np.ndarray, amplitude: float, frames: int) -> list[np.ndarray]:
    """Landmarks whose nose moves against the rest of the face by ``amplitude`` inter-ocular distances, back and forth:
    a head that barely moves (as before a still camera), not a plane."""
    iod = float(np.linalg.norm(pts[42:48].mean(axis=0) - pts[36:42].mean(axis=0)))
    out = []
    for i in range(frames):
        moved = pts.copy()
        moved[27:36, 0] += amplitude * iod * (1 - np.cos(i / 4)) / 2
        out.append(moved)
    return out


TEXTURED = replace(SHORT, texture_models=Path("minifasnet"))  # the cue is on; scores are fed by hand here


def play_textured(points: list[np.ndarray], cfg: LivenessConfig, score: float) -> tuple[str, LivenessCheck, float]:
    """Feed landmarks with the texture ``score`` where the check asks for one, until it decides or asks to act."""
    check = LivenessCheck(cfg, 0.0, random.Random(0))
    result, t, asked = "undecided", 0.0, 0
    for i, pts in enumerate(points):
        t = i / FPS
        wanted = check.wants_texture
        asked += wanted
        check.observe(pts, None, score if wanted else None)
        result = check.result(t)
        if result != "undecided" or check.challenge is not None:
            break
    assert asked == len(check.textures) and asked <= (check.frames + 1) // 2, "scored on every second frame only"
    return result, check, t


def test_a_live_texture_lets_a_barely_moving_head_through_and_a_screens_texture_asks_at_once(
    lin_points: list[np.ndarray],
) -> None:
    normal = yale(3, "normal")
    slight = nodding(normal, 0.12, 60)
    residual = max(planar_residual(a, b) for a in slight[:30] for b in slight[:30])
    assert TEXTURED.parallax_textured <= residual < TEXTURED.parallax_live, "a head that barely moves"

    result, check, seconds = play_textured(slight, TEXTURED, 0.95)
    assert result == "live" and check.verdict(seconds, 0.0).method == "texture" and seconds < 0.5
    assert check.verdict(seconds, 0.0).texture == pytest.approx(0.95)
    assert not check.wants_texture, "nothing more is scored once the face is proven"
    result, _, seconds = play_textured(slight, replace(TEXTURED, texture_models=None), 0.95)
    assert result == "spoof" and seconds >= SHORT.passive_timeout_s, "without the texture cue that head must act"

    for level in ("passive", "challenge"):  # a real head's parallax with a screen's texture: a replay on a stand
        result, check, seconds = play_textured(lin_points, replace(TEXTURED, level=level), 0.05)
        assert (result, check.challenge) == ("spoof", None), "below texture_refuse: refused without a challenge"
        assert seconds < 0.3 and check.verdict(seconds, 0.0).texture == pytest.approx(0.05)
    result, check, seconds = play_textured(lin_points, TEXTURED, 0.35)  # poor light, or a good screen
    assert result == "spoof" and seconds < 0.3, "level passive: refused as soon as the texture is known"
    result, check, seconds = play_textured(lin_points, replace(TEXTURED, level="challenge"), 0.35)
    assert check.challenge is not None and seconds < 0.3, "level challenge: asked to act at once"
    assert not check.wants_texture, "the challenge runs on landmarks only once the texture is known"

    shaken = LivenessCheck(replace(TEXTURED, level="challenge"), 0.0, random.Random(0))
    for i, pts in enumerate(lin_points[:12]):  # held in a hand: the challenge comes before the texture is known
        shaken.observe(pts, 1.0, 0.05 if shaken.wants_texture else None)
        result = shaken.result(i / FPS)
        if i == 3:
            assert shaken.challenge is not None and len(shaken.textures) < 3 and result == "undecided"
    assert result == "spoof", "the texture, scored on into the challenge, refuses the replay that might answer it"
    result, _, _ = play_textured(lin_points, replace(TEXTURED, texture_models=None), 0.05)
    assert result == "live", "without the cue the same replay passes on parallax (the stand-replay hole)"


@pytest.mark.parametrize("attack", ["print", "phone", "print on a stand"])
def test_a_photo_held_up_is_refused(attack: str, attack_marks: dict[str, list[Mark]]) -> None:
    result, check, seconds = play(attack_marks[attack], SHORT)
    assert result == "spoof"
    assert check.parallax < SHORT.parallax_live and check.blinks == 0
    if attack == "print on a stand":
        assert seconds >= SHORT.passive_timeout_s, "nothing moved: refused when the passive time is up"
    else:
        assert check.surroundings_moved and seconds < 0.5, "refused as soon as the surroundings moved"


def test_a_replayed_clip_in_a_hand_passes_parallax_but_its_moving_surroundings_bring_the_challenge(
    attack_marks: dict[str, list[Mark]],
) -> None:
    replay = attack_marks["replay"]
    blind = replace(SHORT, surroundings_motion=1.0)  # the surroundings check never fires
    result, check, _ = play(replay, blind)
    assert result == "live" and check.verdict(0, 0).method == "parallax", "a replayed head has real parallax"
    cfg = replace(SHORT, level="challenge")
    check = LivenessCheck(cfg, 0.0, random.Random(0))
    for i, mark in enumerate(replay[:15]):
        check.observe(*mark)
        if check.result(i / FPS) != "undecided" or check.challenge:
            break
    assert check.challenge is not None and i < 10, "asked at once, parallax or not"
    assert check.verdict(i / FPS, 0.0).method == "none", "not live until the challenge is done"
    assert not check.watches_surroundings, "the surroundings are not followed any more once the challenge runs"


def test_the_challenge_comes_after_the_passive_time_and_a_photo_fails_it(
    attack_marks: dict[str, list[Mark]],
) -> None:
    cfg = replace(SHORT, level="challenge", passive_timeout_s=0.5, challenge_timeout_s=0.4)
    check = LivenessCheck(cfg, 0.0, random.Random(1))
    results = []
    for i, mark in enumerate(attack_marks["print on a stand"]):
        check.observe(*mark)
        results.append((i / FPS, check.result(i / FPS), check.challenge))
    assert all(r == "undecided" and c is None for t, r, c in results if t < 0.5)
    assert all(c is not None for t, _, c in results if t >= 0.5), "the challenge is asked once time is up"
    assert results[-1][1] == "spoof"


def test_a_turn_challenge_passes_only_in_the_direction_asked(lin_points: list[np.ndarray]) -> None:
    cfg = replace(SHORT, level="challenge", passive_timeout_s=0.0, challenge_timeout_s=1.5, challenge_steps=1)
    outcomes = {}
    for seed in range(20):
        check = LivenessCheck(cfg, 0.0, random.Random(seed))
        check.observe(lin_points[0])
        check.result(0.0)
        if check.challenge is None or check.challenge == "blink" or check.challenge in outcomes:
            continue
        result = "undecided"
        for i, pts in enumerate(lin_points[1:], 1):
            check.observe(pts)
            result = check.result(i / FPS)
        outcomes[check.challenge] = result
    assert outcomes == {"turn_right": "live", "turn_left": "spoof"}, "Lin turns to his own right"


def turned(pts: np.ndarray, yaw: float) -> np.ndarray:
    """The landmarks with the nose tip moved along the jaw line by ``yaw`` (head_yaw's unit)."""
    out = pts.copy()
    out[30] += yaw * (pts[16] - pts[0])
    return out


def challenged(steps: str, seed_limit: int = 200) -> LivenessCheck:
    """A check at level challenge that has just asked for ``steps`` (found by trying seeds)."""
    cfg = replace(SHORT, level="challenge", passive_timeout_s=0.0, challenge_timeout_s=1.0)
    normal = yale(3, "normal")
    for seed in range(seed_limit):
        check = LivenessCheck(cfg, 0.0, random.Random(seed))
        for _ in range(6):  # the open-eye level
            check.observe(normal)
        check.result(0.0)
        if check.challenge == steps:
            return check
    raise AssertionError(f"no seed below {seed_limit} draws {steps}")


def feed(check: LivenessCheck, frames: list[np.ndarray], t0: float) -> tuple[str, float]:
    result, t = "undecided", t0
    for i, pts in enumerate(frames):
        t = t0 + (i + 1) / FPS
        check.observe(pts)
        result = check.result(t)
        if result != "undecided":
            break
    return result, t


def test_a_challenge_is_a_sequence_of_different_actions_done_in_order() -> None:
    normal, sleepy = yale(3, "normal"), yale(3, "sleepy")
    left, blink = [turned(normal, 0.15)] * 3, [sleepy] * 2 + [normal] * 3
    check = challenged("turn_left+blink")
    assert check.action == "turn_left"
    result, t = feed(check, left, 0.0)
    assert result == "undecided" and check.action == "blink", "the screen now asks for the second action"
    result, t = feed(check, blink, t)
    verdict = check.verdict(t, 0.0)
    assert (result, verdict.method, verdict.challenge) == ("live", "challenge", "turn_left+blink")

    check = challenged("turn_left+blink")
    result, t = feed(check, blink + left, 0.0)  # both actions, in the wrong order
    result, t = feed(check, [turned(normal, 0.15)] * 60, t)
    assert result == "spoof" and check.action == "blink", "a blink before it was asked for does not count"

    check = challenged("turn_left+turn_right")
    result, t = feed(check, left + [normal] * 3, 0.0)  # back to the front only
    result, t = feed(check, [normal] * 40, t)
    assert result == "spoof", "turning back to the front is not a turn to the right: each turn is a full swing"

    check = challenged("turn_left+blink")
    cut = turned(normal, 0.15) + 2.0 * (normal[42:48].mean(axis=0) - normal[36:42].mean(axis=0))  # moved 2 IOD
    result, t = feed(check, [cut] * 40, 0.0)
    assert result == "spoof" and check.action == "turn_left", "a turn in one jump (a clip starting again) is no turn"

    drawn = {challenged_seed(seed) for seed in range(60)}
    assert all(a != b for a, b in (steps.split("+") for steps in drawn)), drawn
    assert len(drawn) == 6, "every ordered pair of two different actions is drawn"


def challenged_seed(seed: int) -> str:
    check = LivenessCheck(replace(SHORT, level="challenge", passive_timeout_s=0.0), 0.0, random.Random(seed))
    check.result(0.0)
    assert check.challenge is not None
    return check.challenge


def test_level_off_is_always_live() -> None:
    check = LivenessCheck(LivenessConfig(level="off"), 0.0)
    assert check.result(100.0) == "live"


def test_the_event_field_carries_the_verdict_and_bad_values_are_named() -> None:
    from datetime import UTC, datetime

    from kiosk.recognizer.liveness import LivenessVerdict
    from kiosk_contract import schema
    from kiosk_contract.schema import ClockInfo, Stamp

    verdict = LivenessVerdict("passive", "live", "blink", 0.01234, 1, None, 1234.4)
    field = schema.liveness_field(verdict)
    assert field == {"level": "passive", "result": "live", "method": "blink", "score": "0.0123", "blinks": 1,
                     "challenge": None, "extra_ms": 1234, "moving_surroundings": 0, "texture": None}
    textured = schema.liveness_field(LivenessVerdict("challenge", "live", "texture", 0.03, 0, None, 200.0, 0, 0.98766))
    assert textured is not None and textured["texture"] == "0.9877" and textured["method"] == "texture"
    stamp = Stamp("kab-maros-01", "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c", 1, datetime(2026, 11, 30, tzinfo=UTC),
                  "Asia/Makassar", ClockInfo(True, "ntp", True))
    decision = {"method": "face", "best_nip": None, "distance": "0.5000", "margin": None, "frames": 2,
                "liveness": dict(field, method="magic", score=0.5, challenge="smile", extra=1)}
    body = schema.build_review(stamp, reason="unknown_face", decision={**decision, "liveness": field})
    body["decision"] = decision
    problems = schema.validate(body, complete=False)
    for path in ("method", "score", "challenge", "extra"):
        assert any(p.startswith(f"$.decision.liveness.{path}:") for p in problems), (path, problems)
    for texture, valid in (("0.9877", True), (None, True), (0.98, False), ("0.5", False), ("-0.1000", False)):
        decision["liveness"] = dict(field, texture=texture)
        problems = [p for p in schema.validate(body, complete=False) if "liveness.texture" in p]
        assert (problems == []) == valid, (texture, problems)
    decision["liveness"] = {k: v for k, v in field.items() if k != "texture"}
    assert not schema.validate(body, complete=False), "events of kiosks before the texture cue stay valid"
    for challenge, problem in (("turn_left+blink", None),
                               ("blink+smile", "'blink+smile' is not 1 to 3 of blink, turn_left, turn_right"),
                               ("blink+turn_left+blink+turn_right", "is not 1 to 3 of"),
                               (3, "must be a string or null")):
        decision["liveness"] = dict(field, challenge=challenge)
        problems = [p for p in schema.validate(body, complete=False) if "liveness.challenge" in p]
        assert (problems == []) if problem is None else (problem in problems[0]), (challenge, problems)


def test_a_blink_ratio_above_the_reopen_ratio_is_a_config_error() -> None:
    from kiosk.config import parse_config
    from kiosk.errors import ConfigError

    data = {"camera": {"path": "clip.mp4"}, "recognizer": {"liveness": {"blink_ratio": 0.9, "reopen_ratio": 0.8}}}
    with pytest.raises(ConfigError, match=r"recognizer\.liveness\.blink_ratio: must be less than"):
        parse_config(data, "kiosk.toml", base_dir=Path("/etc/kiosk"))
    data["recognizer"]["liveness"]["level"] = "sometimes"  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"recognizer\.liveness\.level"):
        parse_config(data, "kiosk.toml", base_dir=Path("/etc/kiosk"))
