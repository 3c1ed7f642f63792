"""Roster and gallery distribution: each office's kiosks run the gallery of that office's employees.

``push`` cuts the master gallery (from ``kiosk enroll``) by the roster's offices, gives each office's gallery the
next version of that office (and names the office in the file), and for every kiosk of the office signs an
``install_gallery`` command with the central key, bound to that office and device with the device's next command
version and an expiry, and publishes it, retained and QoS 1, on that kiosk's gallery channel topic
(``…/cmd/set/gallery``), so that a kiosk that is offline gets it when it connects. Kiosks check the signature, the
target, the expiry and the version, verify the file, write it (sealed with their data key) atomically and swap it in;
they report the office and version they run in their status events (``kiosk-central gallery status``). A person
added, moved between offices or removed is one more push: the new version has them, or not (docs/central.md, "Gallery
distribution").

``push_schedules`` does the same for each office's punch schedule (``install_schedule``), made from the office's rules
as the ledger holds them by :func:`office_schedule`, the one mapping from working hours to punch windows
(docs/schedule.md, "One schedule, pushed"), retained on the schedule channel topic (``…/cmd/set/schedule``);
``kiosk-central schedule status`` compares what kiosks report. Each channel has its own retained topic because a
broker keeps one retained message per topic: on one topic the later push would replace the earlier for a kiosk that
is offline longer than its session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time as clock
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk_central.rules import Schedule, read_schedule
from kiosk_central.settings import BrokerConfig
from kiosk_central.store import Ledger, utc_text
from kiosk_contract.commands import Target, build_command, channel_of, schedule_command_fields
from kiosk_contract.errors import ConfigError
from kiosk_contract.gallery import Gallery
from kiosk_contract.schedule import (
    DAYS,
    Day,
    PunchWindow,
    RamadanPeriod,
    ScheduleConfig,
    ScheduleError,
    schedule_from_data,
    schedule_to_data,
    schedule_version_of,
)
from kiosk_contract.signing import wire
from kiosk_contract.topics import Topics

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class OfficePush:
    """One office's new gallery and the kiosks (device id, site) it goes to."""

    office: str
    gallery: Gallery
    devices: tuple[tuple[str, str], ...]
    unaddressed: tuple[str, ...]  # kiosks of the office that never published: their site (topic) is unknown


def plan(ledger: Ledger, master: Gallery, offices: Iterable[str] | None = None,
         today: date | None = None) -> list[OfficePush]:
    """Each office's gallery at its next version, cut from ``master`` by the roster; ``offices`` narrows it.

    An office's gallery holds the people assigned to it today or from a later day (a newcomer is recognised on their
    first day): not those who left it or moved away, whose faces it must no longer hold (docs/privacy.md)."""
    wanted = set(offices) if offices is not None else None
    since = (today or datetime.now(UTC).date()).isoformat()
    by_office: dict[str, set[str]] = {}
    for nip, office in ledger.rows("SELECT nip, office FROM employee_assignments WHERE valid_to IS NULL OR "
                                   "valid_to >= ?", (since,)):
        by_office.setdefault(str(office), set()).add(str(nip))
    sites = {str(d): str(s) for d, s in ledger.rows("SELECT device_id, site FROM device_progress")}
    devices: dict[str, list[str]] = {}
    for device_id, office in ledger.rows("SELECT device_id, office FROM devices WHERE revoked = 0"):
        devices.setdefault(str(office), []).append(str(device_id))
    plans = []
    for office in sorted(set(by_office) | set(devices)):
        if wanted is not None and office not in wanted:
            continue
        nips = by_office.get(office, set())
        gallery = Gallery([p for p in master.people if p.nip in nips], version=next_version(ledger, office),
                          model=master.model, office=office)  # fmt: skip
        kiosks = sorted(devices.get(office, []))
        plans.append(
            OfficePush(
                office,
                gallery,
                tuple((d, sites[d]) for d in kiosks if d in sites),
                tuple(d for d in kiosks if d not in sites),
            )
        )
    if wanted is not None and (unknown := wanted - {p.office for p in plans}):
        raise ValueError(f"no employee or kiosk of office(s) {', '.join(sorted(unknown))} in the ledger")
    return plans


def next_version(ledger: Ledger, office: str) -> int:
    """One more than the highest version pushed to ``office`` (1 for the first)."""
    versions = [int(v) for (v,) in ledger.rows("SELECT version FROM gallery_versions WHERE office = ?", (office,))]
    return max(versions, default=0) + 1


def install_command(data: bytes, gallery_version: int, target: Target, version: int, key: Ed25519PrivateKey,
                    ttl: timedelta) -> dict[str, Any]:
    """The signed ``install_gallery`` command of a gallery file's bytes for one kiosk (docs/mqtt.md, "Commands")."""
    return build_command(
        "install_gallery", key=key, target=target, version=version, ttl=ttl,
        request_id=f"gallery-{target.office}-{gallery_version}-{target.device}-{version}",
        gallery_version=gallery_version, sha256=hashlib.sha256(data).hexdigest(),
        gallery_b64=base64.b64encode(data).decode("ascii"),
    )


def push(
    ledger: Ledger,
    plans: list[OfficePush],
    key: Ed25519PrivateKey,
    publish: Callable[[str, bytes], None],
    topic_prefix: str,
    ttl: timedelta = timedelta(days=30),
) -> list[str]:
    """Publish every planned gallery to its kiosks, each command bound to its kiosk with that kiosk's next command
    version, and record the gallery version; returns a report line per office."""
    report = []
    for p in plans:
        data = p.gallery.to_bytes()
        with ledger.transaction():
            for device_id, site in p.devices:
                version = ledger.next_command_version(device_id)
                command = install_command(data, p.gallery.version, Target(p.office, device_id), version, key, ttl)
                publish(Topics.of(topic_prefix, site, device_id).channel(channel_of(command["cmd"])), wire(command))
            now = datetime.now(UTC).isoformat(timespec="seconds")
            ledger.execute(
                "INSERT INTO gallery_versions (office, version, sha256, created_at, published_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (p.office, str(p.gallery.version), hashlib.sha256(data).hexdigest(), now, now),
            )
        line = f"{p.office}: version {p.gallery.version}, {len(p.gallery)} people, to {len(p.devices)} kiosk(s)"
        if p.unaddressed:
            line += f"; not yet connected (push again later): {', '.join(p.unaddressed)}"
        report.append(line)
    return report


@dataclass(frozen=True)
class KioskGallery:
    """What a kiosk reports it runs, against what it should: its office's latest pushed version."""

    device: str
    office: str
    running_office: str | None
    running_version: str | None
    latest: int | None

    @property
    def state(self) -> str:
        """``current``; ``wrong office`` (it runs another office's gallery); ``behind``; ``unknown`` (no report)."""
        if self.running_version is None:
            return "unknown"
        if self.running_office is not None and self.running_office != self.office:
            return "wrong office"
        if self.latest is None or (self.running_office == self.office and int(self.running_version) >= self.latest):
            return "current" if self.latest is not None else "unknown"
        return "behind"


def status(ledger: Ledger) -> list[KioskGallery]:
    """Every kiosk: the gallery office and version it reports, and the latest version pushed to its office."""
    latest: dict[str, int] = {}
    for office, version in ledger.rows("SELECT office, version FROM gallery_versions"):
        latest[str(office)] = max(latest.get(str(office), 0), int(version))
    return [
        KioskGallery(str(d), str(o), None if ro is None else str(ro), None if v is None else str(v), latest.get(str(o)))
        for d, o, v, ro in ledger.rows(
            "SELECT device_id, office, gallery_version, gallery_office FROM devices ORDER BY office, device_id")
    ]


class RetainedPublisher:
    """A one-off MQTT connection that publishes retained QoS 1 messages and waits for the broker's PUBACKs."""

    def __init__(self, broker: BrokerConfig, what: str = "gallery") -> None:
        from kiosk_central.subscriber import broker_client

        self.broker = broker
        self.what = what
        self.client = broker_client(broker, f"{broker.client_id}-{what}-{int(clock.time())}", persistent=False)
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set() if not rc.is_failure else None
        self.pending: list[Any] = []

    def __enter__(self) -> RetainedPublisher:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        self.client.loop_start()
        if not self._connected.wait(PUBLISH_TIMEOUT_S):
            self.client.loop_stop()
            raise ConnectionError(f"cannot reach the broker {self.broker.host}:{self.broker.port}")
        return self

    def publish(self, topic: str, payload: bytes) -> None:
        self.pending.append(self.client.publish(topic, payload, qos=1, retain=True))

    def __exit__(self, *exc: object) -> None:
        try:
            deadline = clock.monotonic() + PUBLISH_TIMEOUT_S
            for info in self.pending:
                info.wait_for_publish(max(0.1, deadline - clock.monotonic()))
            unsent = sum(1 for info in self.pending if not info.is_published())
            if unsent and exc[0] is None:
                raise ConnectionError(f"{unsent} {self.what} message(s) not acknowledged by the broker")
        finally:
            self.client.disconnect()
            self.client.loop_stop()


# ------------------------------------------------------------------------------------------------ the schedule

CHECK_IN_OPENS_BEFORE_MIN = 150
"""A masuk window opens this long before the start of work (07:30 -> 05:00, the kiosk's default): early arrivals are
recorded."""
CHECK_OUT_CLOSES = time(23, 0)
"""A pulang window closes at 23:00 (or at the end of work, when that is later): overtime on the day still closes it."""


def office_schedule(rules: Schedule, on: date) -> ScheduleConfig:
    """The punch schedule of an office on the day ``on``, from its rules as the ledger holds them (what the recaps
    deduct against): the one mapping from working hours to punch windows (docs/schedule.md, "One schedule, pushed").
    The hours are those in force on ``on``: a version of the hours that starts later reaches the kiosks with the
    push on or after its first day (the daily ``kiosk-central schedule push`` timer, deploy/).

    For each set of days sharing the same hours (start S, end E): ``masuk`` from S - 150 min (not before 00:00) to the
    minute before the middle of the working day M = S + (E - S) / 2, and ``pulang`` from M to 23:00 (or E when it is
    later). The same for the Ramadan hours, which run on the Ramadan ranges; holidays and collective leave are the
    kiosk's holidays. Days without hours have no window: the kiosk records no punch there.
    """

    in_force = rules.hours_in_force(on)

    def windows(ramadan: bool) -> tuple[PunchWindow, ...]:
        groups: dict[tuple[time, time], list[Day]] = {}
        for day in DAYS:
            hours = in_force.get((ramadan, day))
            if hours is not None:
                groups.setdefault(hours, []).append(day)
        made: list[PunchWindow] = []
        for (start, end), days in groups.items():
            s, e = _minutes(start), _minutes(end)
            middle = s + max(1, (e - s) // 2)
            made.append(PunchWindow(tuple(days), "masuk", _clock(max(0, s - CHECK_IN_OPENS_BEFORE_MIN)),
                                    _clock(middle - 1)))
            made.append(PunchWindow(tuple(days), "pulang", _clock(middle), max(CHECK_OUT_CLOSES, end)))
        return tuple(made)

    ramadan = tuple(RamadanPeriod(start, end) for start, end in sorted(rules.ramadan))
    return ScheduleConfig(
        windows=windows(False),
        ramadan=ramadan,
        ramadan_windows=windows(True) if ramadan else (),
        holidays=tuple(sorted(rules.days_off)),
    )


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _clock(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


@dataclass(frozen=True)
class SchedulePush:
    """One office's punch schedule, its version, and the kiosks (device id, site) it goes to."""

    office: str
    timezone: str
    schedule: ScheduleConfig
    version: str
    devices: tuple[tuple[str, str], ...]
    unaddressed: tuple[str, ...]  # kiosks of the office that never published: their site (topic) is unknown


def schedule_of_office(ledger: Ledger, office: str, on: date | None = None) -> tuple[ScheduleConfig, str, str]:
    """The office's punch schedule from the ledger's rules on the day ``on`` (default: today in the office's zone),
    its time zone and its version; ConfigError when the office has no rules, ValueError when its hours give no valid
    schedule (the problems name the fields)."""
    rules = read_schedule(ledger, office)
    schedule = office_schedule(rules, on or datetime.now(zoneinfo.ZoneInfo(rules.timezone)).date())
    data = schedule_to_data(schedule)
    try:
        schedule_from_data(data)  # the kiosk's own checks, here first: a push a kiosk would refuse is never sent
    except ScheduleError as exc:
        raise ValueError(f"office {office}: its hours give no valid punch schedule: {exc}") from None
    if not schedule.windows:
        raise ValueError(f"office {office}: no working hours, so no punch window")
    return schedule, rules.timezone, schedule_version_of(data, rules.timezone)


def plan_schedules(ledger: Ledger, offices: Iterable[str] | None = None, on: date | None = None, *,
                   lagging_only: bool = False) -> list[SchedulePush]:
    """Each office's schedule (every office with rules, or ``offices``) on the day ``on`` (default: the office's
    today) for its kiosks that are not revoked; with ``lagging_only``, only for those that do not report running it
    (``devices.schedule_version``, as :func:`schedule_status` reads it): what the daily push timer sends."""
    known = [str(c) for (c,) in ledger.rows("SELECT code FROM offices ORDER BY code")]
    wanted = list(dict.fromkeys(offices)) if offices is not None else known
    if unknown := [o for o in wanted if o not in known]:
        raise ValueError(f"no rules for office(s) {', '.join(unknown)} in the ledger (known: "
                         f"{', '.join(known) or 'none'}); load the rules file")
    sites = {str(d): str(s) for d, s in ledger.rows("SELECT device_id, site FROM device_progress")}
    devices: dict[str, list[tuple[str, str | None]]] = {}  # office -> (device, the schedule version it reports)
    for device_id, office, running in ledger.rows(
            "SELECT device_id, office, schedule_version FROM devices WHERE revoked = 0 ORDER BY device_id"):
        devices.setdefault(str(office), []).append((str(device_id), running))
    plans = []
    for office in wanted:
        schedule, timezone, version = schedule_of_office(ledger, office, on)
        kiosks = [d for d, running in devices.get(office, []) if not (lagging_only and running == version)]
        addressed = tuple((d, sites[d]) for d in kiosks if d in sites)
        plans.append(SchedulePush(office, timezone, schedule, version, addressed,
                                  tuple(d for d in kiosks if d not in sites)))
    return plans


def schedule_command(plan: SchedulePush, target: Target, version: int, key: Ed25519PrivateKey,
                     ttl: timedelta) -> dict[str, Any]:
    """The signed ``install_schedule`` command of an office's schedule for one kiosk (docs/mqtt.md, "Commands")."""
    return build_command(
        "install_schedule", key=key, target=target, version=version, ttl=ttl,
        request_id=f"schedule-{target.office}-{plan.version}-{target.device}-{version}",
        **schedule_command_fields(plan.schedule, timezone=plan.timezone, schedule_version=plan.version),
    )


def push_schedules(
    ledger: Ledger,
    plans: list[SchedulePush],
    key: Ed25519PrivateKey,
    publish: Callable[[str, bytes], None],
    topic_prefix: str,
    ttl: timedelta = timedelta(days=30),
    pushed_by: str = "kiosk-central",
) -> list[str]:
    """Publish every office's schedule to its kiosks, each command bound to its kiosk with that kiosk's next command
    version (the same numbering as gallery pushes), and record each office's push (``schedule_pushes``: version,
    schedule, when, by whom, to how many kiosks); returns a report line per office."""
    report = []
    for p in plans:
        with ledger.transaction():
            for device_id, site in p.devices:
                version = ledger.next_command_version(device_id)
                command = schedule_command(p, Target(p.office, device_id), version, key, ttl)
                publish(Topics.of(topic_prefix, site, device_id).channel(channel_of(command["cmd"])), wire(command))
            if p.devices:
                ledger.execute("INSERT INTO schedule_pushes (office, version, schedule, pushed_at, pushed_by, kiosks) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (p.office, p.version, json.dumps(schedule_to_data(
                                   p.schedule), sort_keys=True), utc_text(), pushed_by, len(p.devices)))
        s = p.schedule
        line = (f"{p.office}: schedule {p.version} ({len(s.windows)} windows, {len(s.ramadan)} Ramadan range(s), "
                f"{len(s.holidays)} holiday(s)), to {len(p.devices)} kiosk(s)")
        if p.unaddressed:
            line += f"; not yet connected (push again later): {', '.join(p.unaddressed)}"
        report.append(line)
    return report


@dataclass(frozen=True)
class KioskSchedule:
    """The schedule a kiosk reports it runs, against the one its office's rules give now."""

    device: str
    office: str
    running: str | None  # the schedule_version of its latest status event; None: kiosk.toml's, or no report
    reported: bool  # it sent a status event at all
    expected: str | None  # the version of its office's schedule now; None: the office has no (valid) rules

    @property
    def state(self) -> str:
        """``current``; ``differs`` (push, or wait for the kiosk to apply it); ``kiosk.toml`` (it runs its own
        schedule: never pushed, or its stored one was unusable, see ``alarms``); ``unknown`` (no status event yet)."""
        if not self.reported:
            return "unknown"
        if self.running is None:
            return "kiosk.toml"
        return "current" if self.running == self.expected else "differs"


def schedule_status(ledger: Ledger, on: date | None = None) -> list[KioskSchedule]:
    """Every kiosk that is not revoked: the schedule version of its latest status event (``devices.schedule_version``,
    set by the ingest) and the version its office's rules give on ``on`` (default: the office's today)."""
    expected: dict[str, str | None] = {}
    rows = []
    for device_id, office, running, status_seq in ledger.rows(
            "SELECT device_id, office, schedule_version, status_seq FROM devices WHERE revoked = 0 "
            "ORDER BY office, device_id"):
        office = str(office)
        if office not in expected:
            try:
                expected[office] = schedule_of_office(ledger, office, on)[2]
            except (ConfigError, ValueError):
                expected[office] = None
        rows.append(KioskSchedule(str(device_id), office, running, status_seq is not None, expected[office]))
    return rows
