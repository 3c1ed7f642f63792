"""The ledger's ingest on both backends (SQLite and the real PostgreSQL): events stored once and acknowledged only
after the commit, duplicates and replays dropped, forged, altered, misrouted and malformed messages rejected and
recorded, evidence tied to its signed hash and deleted after its retention, gaps asked for again, times corrected
from the boot's time anchor, migrations recorded."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from central_support import (
    ALEX,
    CENTRAL_KEYS,
    JPEG,
    LIN,
    Device,
    acked,
    acked_seqs,
    database,
    ingestor,
    registry_entry,
    wita,
    write_key,
)

from kiosk_central.ingest import sync_registry
from kiosk_central.settings import load_central_config
from kiosk_central.store import MIGRATIONS, Ledger, LedgerError, utc_ms
from kiosk_contract import schema, signing
from kiosk_contract.acks import Conflict, open_ack
from kiosk_contract.errors import ConfigError

DAY = "2026-02-02"  # a Monday


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    with database(request.param, tmp_path) as url, Ledger(url) as opened:
        yield opened


@pytest.fixture
def kiosk(ledger: Ledger, tmp_path: Path) -> tuple[Device, Any, list[float]]:
    """A registered device, the ingestor that knows it, and the ingestor's clock."""
    key, pub = write_key(tmp_path / "keys", "kiosk-1")
    registry = sync_registry(ledger, [registry_entry("kiosk-1", "bkpsdm", pub)])
    now = [wita(DAY, "08:00").timestamp()]
    return Device("kiosk-1", key), ingestor(ledger, registry, now, resend_interval_s=10, resend_max_tries=2), now


def test_events_are_stored_once_and_acked_after_commit(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    first = device.punch(ALEX, "masuk", wita(DAY, "07:25"))
    second = device.punch(LIN, "masuk", wita(DAY, "07:40"))
    out = ing.handle_batch([first[:2], second[:2]])
    assert acked(out) == [(1, first[2]["event_id"]), (2, second[2]["event_id"])]  # by seq and id, signed
    assert all(o.device == "kiosk-1" and o.site == "kantor" for o in out)
    assert ledger.rows("SELECT seq, nip, time_source FROM events ORDER BY seq") == [
        (1, ALEX, "device"), (2, LIN, "device")
    ]
    # The same message again (a lost ack, a republish): not stored twice, acknowledged again.
    again = ing.handle_batch([first[:2]])
    assert acked(again) == [(1, first[2]["event_id"])]
    assert ledger.one("SELECT COUNT(*) FROM events") == (2,)
    assert ing.snapshot()["duplicates"] == 1 and ing.snapshot()["stored"] == 2


def test_a_failed_transaction_acknowledges_nothing(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    topic, wire, _ = device.punch(ALEX, "masuk", wita(DAY, "07:25"))
    ledger.execute("DROP TABLE device_progress")  # the commit cannot happen
    with pytest.raises(Exception, match="device_progress"):
        ing.handle_batch([(topic, wire)])
    assert ledger.one("SELECT COUNT(*) FROM events") == (0,)


def test_forged_altered_misrouted_and_malformed_messages_are_rejected(ledger: Ledger, kiosk: Any,
                                                                     tmp_path: Path) -> None:
    device, ing, _ = kiosk
    stranger_key, _ = write_key(tmp_path / "other", "stranger")
    forged = Device("kiosk-1", stranger_key).punch(ALEX, "masuk", wita(DAY, "07:00"))  # a key not in the registry
    topic, wire, event = device.punch(ALEX, "masuk", wita(DAY, "07:10"))
    altered = dict(event, time_utc="2026-02-01T22:00:00.000Z", time_local="2026-02-02T06:00:00.000+08:00")
    unknown = Device("kiosk-9", device.key).punch(ALEX, "masuk", wita(DAY, "07:00"))
    out = ing.handle_batch([
        forged[:2],
        (topic, schema.to_bytes(altered)),
        unknown[:2],
        ("presensi/v1/kantor/kiosk-2/event", wire),  # kiosk-1's event on another device's topic
        (topic, b'{"v": 1, "type": "attendance"'),
        ("presensi/v1/kantor/kiosk-1/status", wire),
    ])
    assert out == []
    reasons = [r[0] for r in ledger.rows("SELECT reason FROM rejections ORDER BY id")]
    assert len(reasons) == 6, reasons
    assert "unknown key id" in reasons[0]
    assert "bad signature" in reasons[1]
    assert "unknown device 'kiosk-9'" in reasons[2]
    assert "published on 'kiosk-2'" in reasons[3]
    assert reasons[4].startswith("malformed event")
    assert "not an event or evidence topic" in reasons[5]
    assert ledger.one("SELECT COUNT(*) FROM events") == (0,)
    assert ing.snapshot()["rejected"] == 6
    # The genuine message still goes in afterwards.
    assert acked_seqs(ing.handle_batch([(topic, wire)])) == [1]


def test_revoked_device_and_reused_seq_are_rejected(ledger: Ledger, kiosk: Any, tmp_path: Path) -> None:
    device, ing, _ = kiosk
    ing.handle_batch([device.punch(ALEX, "masuk", wita(DAY, "07:10"))[:2]])
    other = device.punch(LIN, "masuk", wita(DAY, "07:11"))
    reused = device.seal(schema.build_attendance(device.stamp(wita(DAY, "07:12")), kind="masuk", nip=LIN,
                                                 decision=schema.manual_decision("key")), seq=1)
    out = ing.handle_batch([reused[:2], other[:2]])
    assert acked(out) == [(2, other[2]["event_id"])], "never the reused number's other event"
    (ack,) = [open_ack(signing.wire(o.payload), CENTRAL_KEYS, device="kiosk-1") for o in out if o.suffix == "ack"]
    assert ack.conflicts == (Conflict(1, reused[2]["event_id"], ledger.event_at_seq("kiosk-1", 1) or ""),)
    reason = ledger.one("SELECT reason FROM rejections")
    assert reason is not None and reason[0].startswith("seq conflict: seq 1 is already event")
    assert [a[2] for a in ledger.alarms()] == ["seq_conflict"], "an alarm for IT on the ledger's side too"
    pub = tmp_path / "keys" / "kiosk-1.pub"
    ing.registry = sync_registry(ledger, [registry_entry("kiosk-1", "bkpsdm", pub, revoked=True)])
    assert ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:10"))[:2]]) == []
    assert "revoked" in ledger.rows("SELECT reason FROM rejections ORDER BY id")[-1][0]


def test_an_event_with_a_photo_is_acknowledged_only_once_the_photo_is_held(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    topic, wire, event = device.punch(ALEX, "masuk", wita(DAY, "07:20"), evidence=JPEG)
    assert acked(ing.handle_batch([(topic, wire)])) == []  # stored, but its photo has not come
    ev_topic, envelope = device.evidence(event)
    wrong = device.evidence(event, JPEG[:-2] + b"\x00\xff\xd9")
    assert acked(ing.handle_batch([wrong])) == []
    assert "does not match" in ledger.rows("SELECT reason FROM rejections")[-1][0]
    assert acked_seqs(ing.handle_batch([(ev_topic, envelope)])) == [1]
    assert ledger.evidence("kiosk-1", event["event_id"]) == JPEG
    # A photo that comes before its event makes the event complete at once.
    t2, w2, e2 = device.punch(LIN, "masuk", wita(DAY, "07:21"), evidence=JPEG)
    assert acked_seqs(ing.handle_batch([device.evidence(e2), (t2, w2)])) == [2]
    # Retention: the photos go after it, the events stay.
    now[0] += 91 * 86400
    assert ing.purge_now() == 2
    assert ledger.evidence("kiosk-1", event["event_id"]) is None
    assert ledger.one("SELECT COUNT(*) FROM events") == (2,)


def test_review_events_wait_in_the_queue_and_keep_their_photo_past_retention(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    body = schema.build_review(device.stamp(wita(DAY, "07:35")), reason="manual_entry", nip=LIN, kind="masuk",
                               decision=schema.manual_decision(), evidence=JPEG)
    topic, wire, event = device.seal(body)
    ing.handle_batch([(topic, wire), device.evidence(event)])
    assert ledger.rows("SELECT device_id, event_id, reason, state FROM review_queue") == [
        ("kiosk-1", event["event_id"], "manual_entry", "open")
    ]
    now[0] += 365 * 86400
    assert ing.purge_now() == 0  # HR has not decided yet: the photo stays
    assert ledger.evidence("kiosk-1", event["event_id"]) == JPEG


def test_a_gap_is_asked_for_again_and_acked_by_id_meanwhile(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    one, two, three = (device.punch(n, "masuk", wita(DAY, t)) for n, t in ((ALEX, "07:01"), (LIN, "07:02"),
                                                                           (ALEX, "07:03")))
    out = ing.handle_batch([one[:2], three[:2]])
    assert acked_seqs(out) == [1, 3]  # each by its id: never anything over the hole
    assert [o for o in out if o.suffix == "cmd"] == []  # not at once: a late message may still come
    now[0] += 11
    cmds = ing.tick()
    assert [(c.suffix, c.payload["cmd"], c.payload["from_seq"]) for c in cmds] == [("cmd", "resend", 2)]
    assert ing.tick() == []  # rate-limited
    assert acked_seqs(ing.handle_batch([two[:2]])) == [2]
    now[0] += 11
    assert ing.tick() == []  # filled: nothing more to ask


def test_a_gap_that_never_fills_is_recorded_and_skipped(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    ing.handle_batch([device.punch(ALEX, "masuk", wita(DAY, "07:01"))[:2]])
    device.seq += 2  # the device skipped 2 and 3 (a crash between reserving and using its numbers)
    ing.handle_batch([device.punch(LIN, "masuk", wita(DAY, "07:02"))[:2]])
    sent = []
    for _ in range(4):
        now[0] += 11
        sent += ing.tick()
    assert [c.payload["from_seq"] for c in sent] == [2, 2]  # resend_max_tries = 2
    assert ledger.progress("kiosk-1")[:2] == (4, 4)  # type: ignore[index]
    reason = ledger.rows("SELECT reason FROM rejections")[-1][0]
    assert reason.startswith("seq 2..3 never arrived"), reason  # the missing range, not the stored 4
    assert [(a[1], a[2]) for a in ledger.alarms()] == [("kiosk-1", "gap_given_up")]
    assert acked_seqs(ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:01"))[:2]])) == [5]


def test_a_gap_given_up_is_never_acknowledged_and_its_event_is_stored_when_it_comes(ledger: Ledger,
                                                                                 kiosk: Any) -> None:
    device, ing, now = kiosk
    one, two, three = (device.punch(n, "masuk", wita(DAY, t)) for n, t in ((ALEX, "07:01"), (LIN, "07:02"),
                                                                           (ALEX, "07:03")))
    out = ing.handle_batch([one[:2], three[:2]])  # seq 2 is on a kiosk that went offline
    for _ in range(4):
        now[0] += 11
        out += ing.tick()
    out += ing.handle_batch([device.punch(LIN, "pulang", wita(DAY, "16:00"))[:2]])
    assert 2 not in acked_seqs(out), "the ledger gave up asking, and still acknowledges only what it holds"
    assert "seq 2 never arrived" in ledger.rows("SELECT reason FROM rejections")[-1][0]
    later = ing.handle_batch([two[:2]])  # the kiosk comes back and publishes it again
    assert acked(later) == [(2, two[2]["event_id"])]
    assert ledger.one("SELECT nip FROM events WHERE seq = 2") == (LIN,)


def test_times_taken_before_the_clock_synced_are_corrected_from_the_anchor(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    stale = wita("2026-01-30", "01:02")  # the clock of the last shutdown
    early = device.punch(ALEX, "masuk", stale, synced=False, mono_ns=12_500_000_000)
    ing.handle_batch([early[:2]])
    assert ledger.rows("SELECT time_ms, time_source FROM events") == [(None, "unanchored")]
    anchor_at = wita(DAY, "07:31:14.118")
    anchor = device.seal(schema.build_time_anchor(device.stamp(anchor_at, True, 31_002_000_000)))
    late = device.punch(LIN, "masuk", stale, synced=False, mono_ns=20_000_000_000)  # arrives after the anchor
    ing.handle_batch([anchor[:2], late[:2]])
    rows = dict(ledger.rows("SELECT nip, time_ms FROM events WHERE type = 'attendance'"))
    # true = anchor.time_utc - (anchor.mono_ns - event.mono_ns): 07:31:14.118 - 18.502 s = 07:30:55.616
    assert rows[ALEX] == utc_ms("2026-02-01T23:30:55.616Z")
    assert rows[LIN] == utc_ms("2026-02-01T23:31:03.116Z")  # 11.002 s before the anchor
    assert ledger.rows("SELECT DISTINCT time_source FROM events WHERE type = 'attendance'") == [("anchor",)]
    # Another boot's anchor does not re-date it.
    other_boot = Device("kiosk-1", device.key, boot_id="00000000-1111-4222-8333-444444444444")
    other_boot.seq = device.seq
    lost = other_boot.punch(ALEX, "pulang", stale, synced=False)
    ing.handle_batch([lost[:2]])
    assert ledger.event_counts()["unanchored"] == 1


def test_migrations_are_recorded_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url) as ledger:
        assert [r[0] for r in ledger.rows("SELECT version FROM schema_migrations")] == [v for v, _, _ in MIGRATIONS]
        assert ledger.migrate() == []
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'x')")
    with pytest.raises(LedgerError, match="newer than this program"):
        Ledger(url)


def test_bad_database_urls_and_config_are_named(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="neither postgresql"):
        Ledger("mysql://x")
    config = tmp_path / "central.toml"
    config.write_text('[broker]\nport = "1883"\nhots = "x"\n[[devices]]\nid = "a"\noffice = "o"\n')
    with pytest.raises(ConfigError) as err:
        load_central_config(config)
    text = str(err.value)
    assert "broker.port: must be an integer" in text
    assert "broker.hots" in text
    assert "devices[0].public_keys: required key missing" in text


def test_registry_refuses_a_key_shared_by_two_devices(ledger: Ledger, tmp_path: Path) -> None:
    _, pub = write_key(tmp_path, "k")
    with pytest.raises(signing.KeyFileError, match="already kiosk-a's key"):
        sync_registry(ledger, [registry_entry("kiosk-a", "x", pub), registry_entry("kiosk-b", "x", pub)])


def test_status_events_record_the_gallery_version(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    body = schema.build_status(device.stamp(wita(DAY, "07:00")), fps=15.0, outbox_depth=0,
                               oldest_pending_age_s=None, gallery_version="12", cpu_temp_c=None, free_disk_bytes=1)
    ing.handle_batch([device.seal(body)[:2]])
    assert ledger.one("SELECT gallery_version FROM devices WHERE device_id = 'kiosk-1'") == ("12",)
    assert json.loads(ledger.one("SELECT payload FROM events")[0])["fps"] == "15.0"  # type: ignore[index]


def test_the_registry_and_revocations_of_provisioning_are_loaded(ledger: Ledger, tmp_path: Path) -> None:
    key, pub = write_key(tmp_path / "keys", "kiosk-2")
    key_id = signing.key_id_of(key)
    entry = {"device_id": "kiosk-2", "site": "kantor", "office": "bkpsdm", "hostname": "kiosk-2", "key_id": key_id,
             "public_key": pub.read_text(), "mqtt_cert_sha256": "0" * 64}
    registry_file = tmp_path / "registry.json"
    registry_file.write_text(json.dumps([entry]))
    now = [wita(DAY, "08:00").timestamp()]
    ing = ingestor(ledger, sync_registry(ledger, [], registry_file), now)
    device = Device("kiosk-2", key)
    assert acked_seqs(ing.handle_batch([device.punch(ALEX, "masuk", wita(DAY, "07:10"))[:2]])) == [1]
    revoked_file = tmp_path / "revoked.json"
    revoked_file.write_text(json.dumps([{"device_id": "kiosk-2", "key_id": key_id, "cert_serial": "1",
                                         "revoked_at": "2026-02-02T01:00:00+00:00"}]))
    ing.registry = sync_registry(ledger, [], registry_file, revoked_file)
    assert ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:10"))[:2]]) == []
    assert f"signed with key {key_id} of 'kiosk-2', which is revoked" in ledger.rows(
        "SELECT reason FROM rejections")[-1][0]
    registry_file.write_text(json.dumps([dict(entry, key_id="0" * 16), {"device_id": "x"}]))
    with pytest.raises(ConfigError) as err:
        sync_registry(ledger, [], registry_file)
    assert "[0].key_id: 0000000000000000 is not the id of its public_key" in str(err.value)
    assert "[1]: needs the strings device_id, office, key_id and public_key" in str(err.value)
