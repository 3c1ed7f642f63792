"""The open-set decision rule: synthetic distance vectors for every branch, and one real-data check on the Johns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import FACES, need

from kiosk.config import DecisionConfig
from kiosk.recognizer.matching import Match, TrackVerdict, match, match_from_distances
from kiosk_contract.gallery import Gallery, Person

# Explicit values, so that these tests check the rule itself and not whatever the defaults are tuned to.
RULE = dataclasses.replace(
    DecisionConfig(), accept_distance=0.50, min_margin=0.08, agreement=2, max_encodings=4, fused_accept_distance=0.45
)
NIPS = ["198001012005011001", "198002022006021002", "196108041990031001"]
A, B, C = NIPS


def m(distances: list[float], nips: list[str] | None = None) -> Match:
    return match_from_distances(nips if nips is not None else NIPS[: len(distances)], np.array(distances, np.float32))


# ---- single frame --------------------------------------------------------------------------------------------


def test_nearest_identity_distance_and_margin() -> None:
    got = m([0.70, 0.30, 0.45])
    assert got.best_nip == B
    assert got.distance == pytest.approx(0.30)
    assert got.margin == pytest.approx(0.15)


def test_close_and_unambiguous_is_accepted() -> None:
    assert m([0.30, 0.70, 0.90]).accepted(RULE) == A


def test_too_far_is_rejected_whatever_the_margin() -> None:
    assert m([0.51, 1.20, 1.30]).accepted(RULE) is None


def test_threshold_and_margin_are_inclusive() -> None:
    assert Match(A, 0.50, 0.08).accepted(RULE) == A
    assert Match(A, 0.5001, 0.08).accepted(RULE) is None
    assert Match(A, 0.50, 0.0799).accepted(RULE) is None


def test_ambiguous_second_identity_is_rejected() -> None:
    # Close enough, but the second-nearest person is only 0.05 farther: refuse rather than guess.
    assert m([0.40, 0.45, 0.90]).accepted(RULE) is None
    # A tie is the extreme case.
    assert m([0.40, 0.40, 0.90]).accepted(RULE) is None


def test_single_person_gallery_has_no_margin_and_uses_the_threshold_only() -> None:
    only = m([0.42], [A])
    assert only.margin is None
    assert only.accepted(RULE) == A
    assert m([0.55], [A]).accepted(RULE) is None


def test_empty_gallery_matches_nobody() -> None:
    empty = match(Gallery(), np.zeros(128, np.float32))
    assert empty.best_nip is None
    assert empty.distance == float("inf")
    assert empty.accepted(RULE) is None
    verdict = TrackVerdict(RULE)
    verdict.add(empty)
    verdict.add(empty)
    assert verdict.accepted_nip is None
    assert verdict.best is empty


def test_match_takes_each_persons_nearest_template() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(3, 128)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True) / 2  # people ~2.8 apart
    probe = base[1] + 0.01
    people = [
        Person(A, "a", "u", base[[0]]),
        Person(B, "b", "u", np.stack([base[1] + 0.3, base[1] + 0.001])),  # the second template is the close one
        Person(C, "c", "u", base[[2]]),
    ]
    got = match(Gallery(people), probe)
    assert got.best_nip == B
    assert got.distance == pytest.approx(float(np.linalg.norm(probe - people[1].templates[1])), abs=1e-4)
    assert got.accepted(RULE) == B


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_match_agrees_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    counts = rng.integers(1, 4, size=n)
    people = [
        Person(f"{i:018d}", f"p{i}", "u", rng.normal(size=(int(k), 128)).astype(np.float32) * 0.1)
        for i, k in enumerate(counts)
    ]
    probe = rng.normal(size=128).astype(np.float32) * 0.1
    per_person = np.array([np.linalg.norm(p.templates - probe, axis=1).min() for p in people])
    order = np.argsort(per_person)
    got = match(Gallery(people), probe)
    assert got.best_nip == people[order[0]].nip
    assert got.distance == pytest.approx(per_person[order[0]], abs=1e-4)
    assert got.margin == pytest.approx(per_person[order[1]] - per_person[order[0]], abs=1e-4)


# ---- a track -------------------------------------------------------------------------------------------------


def verdict_of(*matches: Match, rule: DecisionConfig = RULE) -> TrackVerdict:
    v = TrackVerdict(rule)
    for x in matches:
        v.add(x)
    return v


def test_agreement_across_a_track_accepts() -> None:
    v = verdict_of(Match(A, 0.40, 0.20))
    assert v.accepted_nip is None  # one encoding is not enough with agreement = 2
    v.add(Match(A, 0.45, 0.15))
    assert v.accepted_nip == A


def test_rejected_encodings_do_not_block_agreement() -> None:
    # An encoding that accepts nobody (too far, or ambiguous) is not a vote against.
    v = verdict_of(Match(A, 0.40, 0.20), Match(B, 0.70, 0.30), Match(A, 0.42, 0.03), Match(A, 0.44, 0.20))
    assert v.accepted_nip == A


def test_conflicting_votes_are_unknown() -> None:
    v = verdict_of(Match(A, 0.40, 0.20), Match(B, 0.41, 0.20), Match(A, 0.39, 0.20))
    assert v.accepted_nip is None  # A has two votes, but another person was accepted once


def test_agreement_of_one_accepts_on_the_first_frame() -> None:
    one = dataclasses.replace(RULE, agreement=1)
    assert verdict_of(Match(C, 0.30, 0.30), rule=one).accepted_nip == C


def test_exhausted_after_max_encodings_and_best_is_the_closest() -> None:
    v = verdict_of(Match(A, 0.60, 0.2), Match(B, 0.55, 0.01), Match(A, 0.58, 0.2))
    assert not v.exhausted
    v.add(Match(C, 0.65, 0.2))
    assert v.exhausted
    assert v.accepted_nip is None
    assert v.best is not None and v.best.best_nip == B


def test_fused_descriptor_accepts_when_single_frames_fall_short() -> None:
    v = TrackVerdict(RULE)
    v.add(Match(A, 0.52, 0.20), fused=None)
    v.add(Match(A, 0.53, 0.20), fused=Match(A, 0.44, 0.20))
    assert v.accepted_nip == A


def test_fused_descriptor_needs_its_own_stricter_distance_and_the_margin() -> None:
    v = TrackVerdict(RULE)
    v.add(Match(A, 0.52, 0.20))
    v.add(Match(A, 0.53, 0.20), fused=Match(A, 0.46, 0.20))
    assert v.accepted_nip is None, "0.46 passes accept_distance but not fused_accept_distance"
    v.add(Match(A, 0.53, 0.20), fused=Match(A, 0.40, 0.05))
    assert v.accepted_nip is None, "ambiguous between two people"


def test_fused_descriptor_is_ignored_before_agreement_encodings_and_when_off() -> None:
    v = TrackVerdict(RULE)
    v.add(Match(A, 0.52, 0.20), fused=Match(A, 0.30, 0.30))
    assert v.accepted_nip is None
    off = TrackVerdict(dataclasses.replace(RULE, fused_accept_distance=0.0))
    off.add(Match(A, 0.52, 0.20))
    off.add(Match(A, 0.53, 0.20), fused=Match(A, 0.30, 0.30))
    assert off.accepted_nip is None


def test_fused_descriptor_never_overrides_an_encoding_that_accepted_someone_else() -> None:
    v = TrackVerdict(RULE)
    v.add(Match(B, 0.40, 0.20))
    v.add(Match(A, 0.53, 0.20), fused=Match(A, 0.44, 0.20))
    assert v.accepted_nip is None


def test_no_encodings_yet() -> None:
    v = TrackVerdict(RULE)
    assert v.accepted_nip is None
    assert v.best is None
    assert not v.exhausted


# ---- real faces ----------------------------------------------------------------------------------------------

JOHNS = FACES / "dlib" / "examples" / "johns"
ENROLLED = ("John_Savage", "John_Simm")
STRANGERS = ("John_Salley", "John_Schneider", "John_Shimkus")  # John_Schneider is the nearest to both enrolled


def _descriptors(folder: Path, photos: slice) -> list[np.ndarray]:
    from kiosk.config import QualityConfig
    from kiosk.imageio import read_rgb
    from kiosk.recognizer.faces import analyze_still

    out = []
    for path in sorted(folder.glob("*.jpg"))[photos]:
        # 150x150 chips: analyze_still upsamples photos under 1000 px once, which finds these faces.
        obs = analyze_still(read_rgb(path), QualityConfig(), min_face_px=0)
        assert obs and obs[0].descriptor is not None, f"no face found in {path}"
        out.append(obs[0].descriptor)
    return out


def test_two_enrolled_johns_are_recognised_and_three_other_johns_refused() -> None:
    """Five men called John (dlib's hard-negative examples): enrol two from two photos each; their held-out photos
    must be accepted as themselves, the other three Johns refused, frame by frame and as tracks, under the
    kiosk's default rule."""
    need(JOHNS)
    rule = DecisionConfig()
    gallery = Gallery(
        [
            Person(f"19800101200501{i:04d}", name, "Uji", np.stack(_descriptors(JOHNS / name, slice(0, 2))))
            for i, name in enumerate(ENROLLED)
        ]
    )
    for i, name in enumerate(ENROLLED):
        nip = f"19800101200501{i:04d}"
        track = TrackVerdict(rule)
        for vec in _descriptors(JOHNS / name, slice(2, 4)):
            got = match(gallery, vec)
            assert got.accepted(rule) == nip, f"{name} not accepted: {got}"
            track.add(got)
        assert track.accepted_nip == nip
    for name in STRANGERS:
        track = TrackVerdict(rule)
        for vec in _descriptors(JOHNS / name, slice(0, 2)):
            got = match(gallery, vec)
            assert got.accepted(rule) is None, f"{name} accepted as {got}"
            track.add(got)
        assert track.accepted_nip is None
