"""The scale benchmark (bench/ingest.py) at a tiny size, so that its code cannot rot: the rush's workload for 5 devices
and 50 employees, through a real Mosquitto and real ledger worker processes, into SQLite (one worker) and into
PostgreSQL (two workers, on a shared subscription and on a split of the devices). Every event must be stored once and
acknowledged. Nothing is timed.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from broker import Broker, available
from central_support import database

from kiosk_central.ingest import sync_registry
from kiosk_central.store import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ingest as scale  # bench/ingest.py

pytestmark = pytest.mark.skipif(not available(), reason="mosquitto is not installed")

DEVICES, EMPLOYEES = 5, 50


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> scale.Workload:
    return scale.make_workload(DEVICES, EMPLOYEES, tmp_path_factory.mktemp("keys"))


def test_the_workload_is_the_rush_of_every_employee_with_status_and_anchors(workload: scale.Workload) -> None:
    counts = workload.counts
    assert counts["attendance"] + counts["review"] == EMPLOYEES
    assert counts["review"] == counts["evidence"] > 0
    assert counts["status"] == DEVICES * scale.RUSH_S // scale.STATUS_EVERY_S
    assert counts["time_anchor"] == DEVICES
    assert workload.events == EMPLOYEES + counts["status"] + DEVICES
    assert [m.at for m in workload.messages] == sorted(m.at for m in workload.messages)
    for device, last in workload.seqs_by_device().items():
        seqs = [m.seq for m in workload.messages if m.device == device and m.seq is not None]
        assert seqs == list(range(1, last + 1)), device  # like an outbox: 1, 2, ... in time order


def test_every_event_of_the_rush_is_stored_once_and_acknowledged_on_sqlite(
    workload: scale.Workload, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Broker(tmp_path / "broker") as broker:
        result = scale.run_once("tiny", workload, url, broker, workers=1, verify=True, log_dir=tmp_path)
    assert result.acked == workload.events
    assert result.check == {"stored": workload.events, "missing": 0, "unexpected": 0, "photos_missing": 0,
                            "photos_waiting": 0, "reviews_missing": 0, "rejections": 0, "unanchored": 0,
                            "progress_behind": 0}
    assert result.ok
    (stats,) = result.worker_stats
    assert stats["counts"]["received"] == len(workload.messages)
    assert stats["counts"]["stored"] == workload.events
    assert "duplicates" not in stats["counts"] and "rejected" not in stats["counts"]
    assert stats["thread_cpu_s"]["verify"] > 0 and stats["batches"] >= 1
    # the ledger itself, read here: each device's seqs once, each photo as sent
    envelopes = [json.loads(m.payload) for m in workload.messages if m.seq is None]
    sent = {e["event_id"]: base64.b64decode(e["jpeg_b64"]) for e in envelopes}
    with Ledger(url) as ledger:
        for device, last in workload.seqs_by_device().items():
            rows = ledger.rows("SELECT seq FROM events WHERE device_id = ? ORDER BY seq", (device,))
            assert [r[0] for r in rows] == list(range(1, last + 1))
        held = {str(e): bytes(j) for e, j in ledger.rows("SELECT event_id, jpeg FROM evidence")}
    assert held == sent


def test_the_benchmark_check_finds_an_event_that_is_not_stored(workload: scale.Workload, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Broker(tmp_path / "broker") as broker:
        scale.run_once("tiny", workload, url, broker, workers=1, verify=True, log_dir=tmp_path)
    with Ledger(url) as ledger, ledger.transaction():
        ledger.execute("DELETE FROM events WHERE seq = 3")
    check = scale.check_ledger(url, workload)
    assert check["missing"] == DEVICES and check["stored"] == workload.events - DEVICES


@pytest.mark.parametrize("by_device", [False, True], ids=["shared-subscription", "devices-split"])
def test_two_workers_store_every_event_once_in_postgresql(
    workload: scale.Workload, tmp_path: Path, by_device: bool
) -> None:
    with database("postgresql", tmp_path) as url, Broker(tmp_path / "broker") as broker:
        result = scale.run_once("tiny-2", workload, url, broker, workers=2, verify=True, by_device=by_device,
                                log_dir=tmp_path)
    assert result.acked == workload.events
    assert result.ok, result.check
    received = [s["counts"].get("received", 0) for s in result.worker_stats]
    assert sum(received) == len(workload.messages)
    assert all(n > 0 for n in received), received  # the messages were split between the two
    assert not any("failed_batches" in s["counts"] for s in result.worker_stats)


def test_a_device_is_stored_by_one_worker_at_a_time_in_postgresql(workload: scale.Workload, tmp_path: Path) -> None:
    """The lock that keeps two workers from interleaving one device's progress, photo and event."""
    import psycopg

    device, other = workload.entries[0].id, workload.entries[1].id
    with database("postgresql", tmp_path) as url, Ledger(url) as first, Ledger(url) as second:
        sync_registry(first, workload.entries[:2])
        second.execute("SET lock_timeout = '50ms'")
        with first.transaction():
            first.lock_devices([device])
            with pytest.raises(psycopg.errors.LockNotAvailable), second.transaction():
                second.lock_devices([other, device])
            with second.transaction():
                second.lock_devices([other])  # another device is not held
        with second.transaction():
            second.lock_devices([other, device])  # free once the first transaction has ended
