"""Seqs a kiosk reports lost (``lost_seqs`` of its ``outbox_recovered`` alarm, issue 13), on both backends: the gap
they leave is closed at once as ``reported_lost`` instead of being asked for ``resend_max_tries`` times, whatever the
order in which the alarm and the resend requests meet; a gap only partly reported is still asked for, for the rest;
the alarm says how many of the reported seqs the ledger already held; a reported seq that comes after all is stored
and acknowledged; a malformed ``lost_seqs`` is rejected naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from central_support import ALEX, LIN, Device, acked, acked_seqs, database, ingestor, registry_entry, wita, write_key

from kiosk_central.cli import main
from kiosk_central.ingest import Ingestor, Outgoing, sync_registry
from kiosk_central.store import Ledger
from kiosk_contract import schema, signing

DAY = "2026-02-02"
MOVED = "corrupt outbox moved aside to /var/lib/kiosk/outbox.db.corrupt-1"

Kiosk = tuple[Device, Ingestor, list[float]]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger(url) as opened:
        yield opened


@pytest.fixture
def kiosk(ledger: Ledger, tmp_path: Path) -> Kiosk:
    """A registered device and an ingestor that asks for a gap every 30 s, 10 times (the defaults)."""
    key, pub = write_key(tmp_path / "keys", "kiosk-1")
    registry = sync_registry(ledger, [registry_entry("kiosk-1", "bkpsdm", pub)])
    now = [wita(DAY, "08:00").timestamp()]
    return Device("kiosk-1", key), ingestor(ledger, registry, now), now


def punches(device: Device, n: int) -> list[tuple[str, bytes, dict[str, Any]]]:
    return [device.punch(ALEX if i % 2 else LIN, "masuk", wita(DAY, f"07:{i % 60:02d}")) for i in range(n)]


def recovered(device: Device, lost: list[tuple[int, int]], seq: int | None = None) -> tuple[str, bytes, dict[str, Any]]:
    """The alarm a kiosk stores after moving a damaged outbox aside, with the seq ranges it could not salvage."""
    body = schema.build_alarm(device.stamp(wita(DAY, "07:45")), alarm="outbox_recovered", detail=MOVED,
                              lost_seqs=lost)
    return device.seal(body, seq)


def resends(out: list[Outgoing]) -> list[int]:
    return [o.payload["from_seq"] for o in out if o.suffix == "cmd" and o.payload["cmd"] == "resend"]


def ticks(ing: Ingestor, now: list[float], n: int, step: float = 31) -> list[Outgoing]:
    out: list[Outgoing] = []
    for _ in range(n):
        now[0] += step
        out += ing.tick()
    return out


def alarms(ledger: Ledger) -> list[tuple[str, str]]:
    """(kind, detail) of the ledger's alarms, oldest first."""
    return [(kind, detail) for _, _, kind, detail in reversed(ledger.alarms())]


def test_a_gap_the_device_reported_lost_is_closed_at_once_without_resend_requests(ledger: Ledger,
                                                                                   kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    out = ing.handle_batch([p[:2] for p in punches(device, 5)])  # seq 1..5: the ledger holds 5
    device.seq = 7  # 6 and 7 were committed on the kiosk, then its WAL was damaged: never sent, now gone
    alarm = recovered(device, [(5, 7)])  # seq 8: the outbox recovered, 5..7 could not be salvaged
    later = punches(device, 2)  # seq 9, 10
    out += ing.handle_batch([later[0][:2], alarm[:2], later[1][:2]])
    assert acked_seqs(out) == [1, 2, 3, 4, 5, 8, 9, 10]
    assert ledger.progress("kiosk-1")[:2] == (10, 10), "closed at the tick of that batch"  # type: ignore[index]
    out += ticks(ing, now, 15)  # well past resend_max_tries * resend_interval_s
    assert resends(out) == [], "never asked for seqs the device said it lost"
    assert alarms(ledger) == [
        ("outbox_recovered", f"{MOVED}; reported lost seq 5..7 (3 seq(s)): the ledger already holds 1, 2 missing "
                             "for good (seq 6..7): not asked for again"),
        ("reported_lost", f"seq 6..7 reported lost by the device (its outbox_recovered alarm, event "
                          f"{alarm[2]['event_id']} (seq 8)): gap closed without resend requests; not acknowledged: "
                          "stored and acknowledged if it comes later"),
    ]
    assert ledger.rows("SELECT topic, event_id FROM rejections") == [("reported_lost", alarm[2]["event_id"])]
    assert ledger.rows("SELECT first_seq, last_seq, event_id, alarm_seq, alarm FROM reported_losses") == [
        (5, 7, alarm[2]["event_id"], 8, "outbox_recovered")
    ]
    assert ing.snapshot()["gaps_reported_lost"] == 1 and "gaps_given_up" not in ing.snapshot()


def test_the_alarm_may_come_between_resend_requests(ledger: Ledger, kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    out = ing.handle_batch([p[:2] for p in punches(device, 5)])
    device.seq = 7
    alarm = recovered(device, [(6, 7)])
    later = punches(device, 1)  # seq 9 overtakes the alarm (a reconnect): the gap is 6..8
    out += ing.handle_batch([later[0][:2]])
    out += ticks(ing, now, 3)
    assert resends(out) == [6, 6, 6], "before the report, the gap is asked for as always"
    out = ing.handle_batch([alarm[:2]])  # the kiosk's answer to the request: the alarm, which fills 8
    assert resends(out) == [] and resends(ticks(ing, now, 15)) == []
    assert ledger.progress("kiosk-1")[:4] == (9, 9, None, 0)  # type: ignore[index]
    assert [kind for kind, _ in alarms(ledger)] == ["outbox_recovered", "reported_lost"]
    assert "none is missing" not in alarms(ledger)[0][1]
    assert alarms(ledger)[0][1].endswith("reported lost seq 6..7 (2 seq(s)): the ledger already holds 0, 2 missing "
                                         "for good (seq 6..7): not asked for again")


def test_an_alarm_after_the_gap_was_given_up_is_still_accounted(ledger: Ledger, kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    ing.handle_batch([p[:2] for p in punches(device, 2)])
    device.seq = 4  # 3 and 4 lost
    alarm = recovered(device, [(3, 4)], seq=6)
    ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:00"), )[:2]])  # seq 5; the alarm (6) comes last
    assert resends(ticks(ing, now, 12)) == [3] * 10
    assert [kind for kind, _ in alarms(ledger)] == ["gap_given_up"]
    out = ing.handle_batch([alarm[:2]])
    assert acked_seqs(out) == [6] and resends(out) == []
    assert [kind for kind, _ in alarms(ledger)] == ["gap_given_up", "outbox_recovered"], "nothing left to close"
    assert "already holds 0, 2 missing for good (seq 3..4)" in alarms(ledger)[1][1]


def test_a_gap_partly_reported_lost_is_still_asked_for_the_rest(ledger: Ledger, kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    out = ing.handle_batch([p[:2] for p in punches(device, 5)])
    device.seq = 7  # 6..7 lost in the damaged outbox
    salvaged = punches(device, 2)  # 8..9 salvaged by the kiosk, still to be sent (lost on the way so far)
    alarm = recovered(device, [(6, 7)])  # seq 10
    out += ing.handle_batch([alarm[:2]])  # the gap is 6..9: 6..7 closed at once, 8..9 is a gap to ask for
    assert ledger.progress("kiosk-1")[:3] == (7, 10, 8), "8 waits one interval, as any new gap"  # type: ignore[index]
    assert [kind for kind, _ in alarms(ledger)][-1] == "reported_lost"
    assert alarms(ledger)[-1][1].startswith("seq 6..7 reported lost")
    out += ticks(ing, now, 3)
    assert resends(out) == [8, 8, 8], "the part nobody reported is asked for, from its first seq"
    assert acked_seqs(ing.handle_batch([s[:2] for s in salvaged])) == [8, 9]
    assert resends(ticks(ing, now, 3)) == []
    assert ledger.progress("kiosk-1")[:2] == (10, 10)  # type: ignore[index]


def test_requests_made_before_a_partial_report_count_for_the_rest(ledger: Ledger, kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    ing.handle_batch([p[:2] for p in punches(device, 5)])
    device.seq = 9  # 6..7 lost in the outbox, 8..9 salvaged but never arriving
    alarm = recovered(device, [(6, 7)])  # seq 10
    out = ing.handle_batch([punches(device, 1)[0][:2]])  # seq 11 comes first: the gap is 6..10
    out += ticks(ing, now, 3)
    assert resends(out) == [6, 6, 6]
    out = ing.handle_batch([alarm[:2]])
    assert ledger.progress("kiosk-1")[:4] == (7, 11, 8, 3)  # type: ignore[index]
    out += ticks(ing, now, 12)
    assert resends(out) == [8] * 7, "a resend from 6 asked for 8 too: 10 requests in all, then given up"
    assert [kind for kind, _ in alarms(ledger)] == ["outbox_recovered", "reported_lost", "gap_given_up"]
    assert alarms(ledger)[2][1].startswith("seq 8..9 never arrived after 10 resend requests")


def test_a_reported_range_after_an_unreported_one_closes_when_the_first_is_given_up(ledger: Ledger,
                                                                                   kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    ing.handle_batch([p[:2] for p in punches(device, 5)])
    device.seq = 9  # 6..7 never arrived (not reported: the kiosk does not know), 8..9 lost in its outbox
    alarm = recovered(device, [(8, 9)])  # seq 10
    out = ing.handle_batch([alarm[:2]])
    assert ledger.progress("kiosk-1")[:2] == (5, 10)  # type: ignore[index]
    out += ticks(ing, now, 12)
    assert resends(out) == [6] * 10, "asked from 6, the first seq nobody reported"
    kinds = [kind for kind, _ in alarms(ledger)]
    assert kinds == ["outbox_recovered", "gap_given_up", "reported_lost"]
    assert alarms(ledger)[1][1].startswith("seq 6..7 never arrived after 10 resend requests")
    assert alarms(ledger)[2][1].startswith("seq 8..9 reported lost by the device")
    assert ledger.progress("kiosk-1")[:2] == (10, 10)  # type: ignore[index]


def test_reported_seqs_the_ledger_holds_are_not_missing_and_late_ones_are_stored(ledger: Ledger,
                                                                                 kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    sent = punches(device, 4)
    ing.handle_batch([p[:2] for p in sent[:3]])  # 1..3 arrived before the damage; 4 did not
    late = sent[3]
    alarm = recovered(device, [(2, 4)])  # seq 5: the kiosk could read back neither 2..4
    out = ing.handle_batch([alarm[:2]])
    assert resends(out + ticks(ing, now, 12)) == []
    assert "the ledger already holds 2, 1 missing for good (seq 4)" in alarms(ledger)[0][1]
    assert alarms(ledger)[1][1].startswith("seq 4 reported lost by the device")
    # The kiosk salvaged 4 after all (a second pass over the moved-aside file): stored and acknowledged as usual.
    assert acked(ing.handle_batch([late[:2]])) == [(4, late[2]["event_id"])]
    assert ledger.one("SELECT COUNT(*) FROM events WHERE seq = 4") == (1,)
    # A republished alarm (its ack was lost) changes nothing.
    assert acked_seqs(ing.handle_batch([alarm[:2]])) == [5]
    assert ledger.one("SELECT COUNT(*) FROM reported_losses") == (1,)
    assert len(alarms(ledger)) == 2
    # All of them held: said so.
    again = recovered(device, [(1, 2), (2, 3)])  # seq 6; overlapping ranges are joined
    ing.handle_batch([again[:2]])
    assert alarms(ledger)[-1][1].endswith("reported lost seq 1..3 (3 seq(s)): the ledger already holds all of "
                                          "them, none is missing")


def test_only_seqs_below_the_alarms_own_count(ledger: Ledger, kiosk: Kiosk) -> None:
    device, ing, now = kiosk
    ing.handle_batch([p[:2] for p in punches(device, 2)])
    device.seq = 3
    alarm = recovered(device, [(3, 3), (4, 20)])  # seq 4: it cannot have lost 4..20, numbered after it
    ing.handle_batch([alarm[:2]])
    assert ledger.rows("SELECT first_seq, last_seq FROM reported_losses") == [(3, 3)]
    assert alarms(ledger)[0][1].endswith("; seq 4..20 ignored (not below the alarm's own seq 4)")
    device.seq = 5  # seq 5 goes missing on the way, 6 arrives: asked for as usual
    ing.handle_batch([device.punch(LIN, "pulang", wita(DAY, "16:00"))[:2]])
    assert resends(ticks(ing, now, 3)) == [5, 5, 5]


def test_an_alarm_that_reports_no_loss(ledger: Ledger, kiosk: Kiosk) -> None:
    device, ing, _ = kiosk
    ing.handle_batch([recovered(device, [])[:2]])
    assert alarms(ledger) == [("outbox_recovered", f"{MOVED}; reported no lost event")]
    ing.handle_batch([device.seal(schema.build_alarm(device.stamp(wita(DAY, "07:50")), alarm="tamper"))[:2]])
    assert alarms(ledger)[-1] == ("tamper", ""), "an alarm without lost_seqs is copied as before"


@pytest.mark.parametrize(
    ("lost", "expected"),
    [
        ([[7, 5]], "$.lost_seqs[0]: first seq 7 is after last seq 5 (a range is [first, last], first <= last)"),
        ([[5, "7"]], "$.lost_seqs[0][1]: must be an integer, not a string"),
        ([[0, 7]], "$.lost_seqs[0][0]: 0 is out of range 1..9223372036854775807"),
        ([[5]], "$.lost_seqs[0]: must be a range [first, last] of two seqs"),
        ([[n, n] for n in range(1, 102)], "$.lost_seqs: must have at most 100 item(s), not 101"),
    ],
)
def test_a_malformed_lost_seqs_is_rejected_naming_the_field(ledger: Ledger, kiosk: Kiosk, lost: Any,
                                                            expected: str) -> None:
    device, ing, _ = kiosk
    body = schema.build_alarm(device.stamp(wita(DAY, "07:45")), alarm="outbox_recovered", detail=MOVED)
    body["lost_seqs"] = lost  # past the builder and seal, which refuse it too: signed by the device all the same
    wire = schema.to_bytes(signing.sign(schema.with_seq(body, 200), device.key))
    assert ing.handle_batch([(device.topic, wire)]) == []
    (reason,) = ledger.one("SELECT reason FROM rejections") or ("",)
    assert reason == f"malformed event: invalid event: 1 problem(s): {expected}"
    assert ledger.one("SELECT COUNT(*) FROM reported_losses") == (0,) and ledger.alarms() == []


def test_kiosk_central_alarms_shows_the_accounting(url: str, kiosk: Kiosk, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    device, ing, _ = kiosk
    ing.handle_batch([p[:2] for p in punches(device, 5)])
    device.seq = 7
    ing.handle_batch([recovered(device, [(5, 7)])[:2]])
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    assert main(["alarms", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1:3] for line in lines] == [["kiosk-1", "reported_lost"],
                                                        ["kiosk-1", "outbox_recovered"]]
    assert lines[0].split("\t")[3].startswith("seq 6..7 reported lost by the device")
    assert "the ledger already holds 1, 2 missing for good (seq 6..7)" in lines[1]
