"""The vectorised float32 1:N matcher agrees with a brute-force float64 search, before and after save/load.

A 2,000-person gallery with 1-3 templates per person (dlib-like synthetic descriptors, norm ~1): for genuine
and impostor probes, ``Gallery.person_distances`` and ``match`` must give the same nearest person and the same
distances (to 1e-4) as plain float64 subtraction over every template with a per-person minimum in Python.
Timing lives in bench/gallery_scale.py; nothing here is timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kiosk.recognizer.matching import match
from kiosk_contract.gallery import Gallery, Person

PEOPLE = 2_000
PROBES = 12  # of each kind; few, because a busy machine can make multithreaded BLAS calls take ~10 ms
TOL = 1e-4  # float32 arithmetic with the |a|^2 - 2ab + |b|^2 expansion, at distances >= ~0.2


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def scene() -> tuple[Gallery, np.ndarray, list[str], np.ndarray]:
    """The gallery, its templates as float64 with each row's owner, and the probes (float64, as dlib gives)."""
    rng = np.random.default_rng(20240701)
    centres = _unit(rng.normal(0.0, 0.09, (PEOPLE, 128)))
    counts = rng.integers(1, 4, PEOPLE)  # 1, 2 or 3 templates
    people: list[Person] = []
    rows: list[np.ndarray] = []
    owners: list[str] = []
    for i, (centre, k) in enumerate(zip(centres, counts, strict=True)):
        tmpl = _unit(centre + rng.normal(0.0, 0.02, (k, 128))).astype(np.float32)
        nip = f"1980{i:014d}"
        people.append(Person(nip=nip, name=f"Pegawai {i}", unit="Unit", templates=tmpl))
        rows.extend(tmpl.astype(np.float64))
        owners.extend([nip] * k)
    who = rng.integers(0, PEOPLE, PROBES)
    genuine = _unit(centres[who] + rng.normal(0.0, 0.03, (PROBES, 128)))  # ~0.4 from the person's templates
    impostor = _unit(rng.normal(0.0, 0.09, (PROBES, 128)))  # nobody enrolled
    assert set(counts.tolist()) == {1, 2, 3}
    return Gallery(people), np.array(rows), owners, np.concatenate([genuine, impostor])


def _brute_force(rows: np.ndarray, owners: list[str], q: np.ndarray) -> dict[str, float]:
    """Nearest-template distance per person: float64 differences over every template, minimum in Python."""
    dist = np.sqrt(((rows - q) ** 2).sum(axis=1))
    best: dict[str, float] = {}
    for nip, d in zip(owners, dist.tolist(), strict=True):
        if d < best.get(nip, np.inf):
            best[nip] = d
    return best


def _check(gallery: Gallery, rows: np.ndarray, owners: list[str], probes: np.ndarray) -> None:
    ties = 0
    for q in probes:
        want = _brute_force(rows, owners, q)
        expected = np.array([want[nip] for nip in gallery.nips])
        got = gallery.person_distances(q)
        assert got.shape == (PEOPLE,)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)

        order = np.argsort(expected)
        first, second = expected[order[0]], expected[order[1]]
        m = match(gallery, q)
        assert m.distance == pytest.approx(first, abs=TOL)
        assert m.margin == pytest.approx(second - first, abs=2 * TOL)
        if second - first > 2 * TOL:
            assert m.best_nip == gallery.nips[order[0]]
        else:  # a tie within float32 precision: either tied person is a correct answer
            ties += 1
            assert want[m.best_nip] == pytest.approx(first, abs=2 * TOL)  # type: ignore[index]
    assert ties <= 1, f"{ties} near-ties: the probes no longer test the nearest identity"


def test_vectorised_matching_equals_brute_force(scene: tuple[Gallery, np.ndarray, list[str], np.ndarray]) -> None:
    gallery, rows, owners, probes = scene
    assert len(gallery) == PEOPLE and gallery.matrix.shape == rows.shape
    _check(gallery, rows, owners, probes)


@pytest.mark.parametrize("key", [None, b"k" * 32], ids=["checksum", "hmac"])
def test_same_answers_after_save_and_load(
    scene: tuple[Gallery, np.ndarray, list[str], np.ndarray], tmp_path: Path, key: bytes | None
) -> None:
    gallery, rows, owners, probes = scene
    path = tmp_path / "gallery.kgal"
    gallery.save(path, key=key)
    back = Gallery.load(path, key=key)
    assert back.nips == gallery.nips
    assert np.array_equal(back.matrix, gallery.matrix) and np.array_equal(back.starts, gallery.starts)
    _check(back, rows, owners, probes)
