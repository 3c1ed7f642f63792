"""1:N matching and the open-set decision rule (pure functions of distances; no dlib, no I/O).

A probe is accepted as a person only when its nearest identity is close (``accept_distance``) and clearly
nearer than the second-nearest identity (``min_margin``). A track is accepted when ``agreement`` of its
encodings accept the same person, or when the mean of at least ``agreement`` encodings passes the same rule at
the stricter ``fused_accept_distance``; in both cases no encoding may accept another person. Otherwise the
answer is "unknown".

The defaults come from the open-set benchmark on LFW-dev (``bench/lfw_identification.py``, docs/thresholds.md).
The margin to the second identity is the gallery-as-cohort normalisation that pays off there. Cohorts of more
neighbours (the distance minus the mean of the k nearest other identities, or z-scores) ranked a little better
on the tuning data but gave no measurable gain on held-out people, so the rule keeps its two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiosk.config import DecisionConfig
from kiosk_contract.gallery import Gallery


@dataclass(frozen=True)
class Match:
    """The nearest identities of one descriptor; ``margin`` is None with fewer than two people enrolled."""

    best_nip: str | None
    distance: float
    margin: float | None

    def accepted(self, rule: DecisionConfig, accept_distance: float | None = None) -> str | None:
        """The single-frame rule: the NIP this descriptor alone is accepted as, or None for unknown.

        ``accept_distance`` overrides the rule's (the fused descriptor of a track uses a stricter one).
        """
        limit = rule.accept_distance if accept_distance is None else accept_distance
        if self.best_nip is None or self.distance > limit:
            return None
        if self.margin is not None and self.margin < rule.min_margin:
            return None
        return self.best_nip


def match(gallery: Gallery, descriptor: np.ndarray) -> Match:
    """Compare one descriptor with every enrolled person (vectorised, float32)."""
    distances = gallery.person_distances(descriptor)
    return match_from_distances(gallery.nips, distances)


def match_from_distances(nips: list[str], distances: np.ndarray) -> Match:
    """Build a Match from per-person distances (used by benchmarks that precompute them)."""
    if len(distances) == 0:
        return Match(None, float("inf"), None)
    if len(distances) == 1:
        return Match(nips[0], float(distances[0]), None)
    two = np.argpartition(distances, 1)[:2]
    first, second = (two[0], two[1]) if distances[two[0]] <= distances[two[1]] else (two[1], two[0])
    return Match(nips[first], float(distances[first]), float(distances[second] - distances[first]))


class TrackVerdict:
    """The multi-frame rule for one track: collects matches until it can accept someone or give up."""

    def __init__(self, rule: DecisionConfig) -> None:
        self.rule = rule
        self.matches: list[Match] = []
        self.fused: Match | None = None

    def add(self, m: Match, fused: Match | None = None) -> None:
        """Record the match of one more encoding and, once there are ``agreement`` encodings, the match of
        their mean (averaging frames cancels part of the noise of each)."""
        self.matches.append(m)
        self.fused = fused

    @property
    def accepted_nip(self) -> str | None:
        """The NIP accepted by agreement or by the fused descriptor, provided no encoding accepts another."""
        votes = [m.accepted(self.rule) for m in self.matches]
        named = {v for v in votes if v is not None}
        if len(named) > 1:
            return None
        if named and votes.count(next(iter(named))) >= self.rule.agreement:
            return next(iter(named))
        if self.fused is None or len(self.matches) < self.rule.agreement:
            return None
        nip = self.fused.accepted(self.rule, self.rule.fused_accept_distance)
        return nip if nip is not None and named <= {nip} else None

    @property
    def exhausted(self) -> bool:
        """True when the track may not be encoded again: it is unknown unless already accepted."""
        return len(self.matches) >= self.rule.max_encodings

    @property
    def best(self) -> Match | None:
        """The closest match seen so far (reported with unknown decisions)."""
        return min(self.matches, key=lambda m: m.distance, default=None)
