"""Validating messages against the contract's JSON Schemas: the contract's interpreter (kiosk_contract.validation)
against the reference library (``jsonschema``, Draft 2020-12), side by side in one run, on the same messages.

Why it matters: the ledger validates every event it ingests (bench/ingest.py) and the kiosk every event it builds;
the reference library took about 1 ms per event here, more than everything else the ledger does with one. Both
validators reach the same verdict on every message (tests/contract/test_validation.py checks it on thousands).

Run: ``.venv/bin/python bench/validation.py`` (prints a markdown table; a few seconds).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from _common import ensure_repo_on_path, markdown_table

ensure_repo_on_path()

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402
from referencing import Registry, Resource  # noqa: E402

from kiosk_contract import schema, signing, validation  # noqa: E402
from kiosk_contract.acks import build_acks  # noqa: E402

ROUNDS = 7


def messages() -> dict[str, tuple[str, dict[str, object]]]:
    key = Ed25519PrivateKey.generate()
    clock = schema.ClockInfo(synced=True, source="ntp", since_boot_synced=True)
    stamp = schema.Stamp("kiosk-1", "3f9c2a1e-7b4d-4c8e-9a10-5d2e6f7a8b9c", 10**9,
                         datetime(2026, 11, 29, 23, 21, tzinfo=UTC), "Asia/Makassar", clock)
    face = {"method": "face", "best_nip": "198001012005011001", "distance": "0.4100", "margin": "0.2000",
            "frames": 2, "liveness": {"level": "challenge", "result": "live", "method": "parallax", "score": "0.0610",
                                      "blinks": 1, "challenge": None, "extra_ms": 180, "moving_surroundings": 0}}
    body = schema.build_attendance(stamp, kind="masuk", nip="198001012005011001", decision=face, evidence=b"\xff")
    attendance = schema.from_bytes(signing.seal(schema.to_bytes(body), 7, key))
    pairs = [(i, schema.new_event_id()) for i in range(1, 201)]
    return {"attendance event": ("event", attendance),
            "ack of 200 events": ("ack", build_acks("kiosk-1", pairs, key)[0])}


def per_call_us(check: Callable[[], object], n: int) -> float:
    """The median over ROUNDS of the mean time of ``n`` calls, in microseconds."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(n):
            check()
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def _all_errors(reference: Draft202012Validator, message: object) -> list[object]:
    return list(reference.iter_errors(message))


def main() -> None:
    registry = Registry().with_resources(
        (validation.schema(n)["$id"], Resource.from_contents(validation.schema(n))) for n in validation.SCHEMA_NAMES)
    rows = []
    for label, (name, message) in messages().items():
        reference = Draft202012Validator(validation.schema(name), registry=registry)
        assert validation.problems(name, message) == [] and reference.is_valid(message)
        n = 2000 if name == "event" else 50
        ours = per_call_us(functools.partial(validation.problems, name, message), n)
        theirs = per_call_us(functools.partial(_all_errors, reference, message), n)
        rows.append([label, f"{ours:.0f}", f"{theirs:.0f}", f"{theirs / ours:.1f}x"])
    print(markdown_table(["message", "kiosk_contract.validation µs", "jsonschema µs", "ratio"], rows))


if __name__ == "__main__":
    main()
