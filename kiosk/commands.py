"""Central's commands that change this kiosk: which ones it carries out, and the durable record of what it applied.

The MQTT thread checks a command (kiosk_contract.commands.check_command: signed by the central key, for this office
and device, not expired, newer than the last version applied) and its parameters, and queues it; the frame loop
carries it out between two frames and only then records its version (``<state_dir>/commands.json``, written
atomically), so that a crash in between leaves the retained command to be applied again at the next connect, and a
replayed or older command is refused even after a restart. Versions are kept per channel (``gallery``, ``schedule``:
kiosk_contract.commands.CHANNELS): a replay is judged against the last command of its own channel, so a schedule
numbered 6 applied first does not refuse the gallery numbered 5 that the broker delivered after it.

:class:`CurrentSchedule` is the one holder of the punch schedule the kiosk runs: kiosk.toml's ``[schedule]`` until
central pushes one (``install_schedule``), then the pushed one, kept in ``<state_dir>/schedule.json`` (the signed
command itself, written atomically) and loaded again at every start. The recorder and the terminal read it there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk_contract.commands import (
    CHANNELS,
    CommandRefused,
    channel_of,
    check_command,
    parse_command,
    schedule_of_command,
)
from kiosk_contract.fsutil import write_atomic
from kiosk_contract.schedule import ScheduleConfig
from kiosk_contract.signing import wire

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from kiosk_contract.gallery import Gallery

log = logging.getLogger(__name__)

STATE_FORMAT = 2
"""``{"format": 2, "applied": {"gallery": 18, "schedule": 17}}``; format 1 (``{"format": 1, "applied_version": n}``, one
version for every command) is read as ``n`` on every channel and replaced by format 2 at the next record."""


class AppliedVersion:
    """The version of the last changing command this kiosk carried out on each channel (0 before the first), kept in
    a small JSON file written atomically. An unreadable file is refused at start rather than taken as 0, which would
    let a captured old command in again."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._versions = self._read()

    def _read(self) -> dict[str, int]:
        from kiosk.errors import KioskError

        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return dict.fromkeys(CHANNELS, 0)
        except (OSError, ValueError) as exc:
            raise KioskError(f"{self.path}: cannot read the record of applied commands ({exc}); restore it, or "
                             "remove it to accept central's commands from version 1 again") from None
        fields = data if isinstance(data, dict) else {}
        if fields.get("format") == 1 and _is_version(fields.get("applied_version")):
            return dict.fromkeys(CHANNELS, int(fields["applied_version"]))  # one version for all: the upgrade
        applied = fields.get("applied")
        if (fields.get("format") != STATE_FORMAT or not isinstance(applied, dict)
                or not all(_is_version(v) for v in applied.values())):
            raise KioskError(f"{self.path}: not a record of applied commands; restore it, or remove it to accept "
                             "central's commands from version 1 again")
        versions: dict[str, int] = dict.fromkeys(CHANNELS, 0)  # a channel never recorded has applied nothing yet
        return versions | {str(k): int(v) for k, v in applied.items()}

    def of(self, channel: str) -> int:
        """The version applied last on ``channel`` (0 before the first)."""
        with self._lock:
            return self._versions[channel]

    def versions(self) -> dict[str, int]:
        """The version applied last on every channel."""
        with self._lock:
            return dict(self._versions)

    @property
    def value(self) -> int:
        """The newest version applied on any channel."""
        with self._lock:
            return max(self._versions.values(), default=0)

    def record(self, channel: str, version: int) -> None:
        """Remember that ``version`` was carried out on ``channel`` (an older one changes nothing)."""
        if channel not in CHANNELS:
            raise ValueError(f"no command channel {channel!r}")
        with self._lock:
            if version <= self._versions[channel]:
                return
            versions = self._versions | {channel: version}
            write_atomic(self.path, (json.dumps({"format": STATE_FORMAT, "applied": versions}) + "\n").encode())
            self._versions = versions


def _is_version(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class CurrentSchedule:
    """The punch schedule in force: kiosk.toml's ``[schedule]`` (``fallback``) until central pushes one, then the
    pushed one with its ``version`` (None while the fallback runs).

    ``path`` keeps the pushed ``install_schedule`` command (signed, as received); :meth:`load` reads it at start. A
    stored schedule that cannot be read or is not valid is not used: the fallback runs, and :meth:`load` says why
    (the kiosk logs it and stores an alarm); central's next push replaces it. Without ``path`` (tests, tools) nothing
    is stored. The frame loop switches it; the MQTT thread reads ``version`` for its results: a lock guards both.
    """

    def __init__(self, fallback: ScheduleConfig, path: Path | None = None, timezone: str = "Asia/Makassar") -> None:
        self.fallback = fallback
        self.path = None if path is None else Path(path)
        self.timezone = timezone
        self._lock = threading.Lock()
        self._current: tuple[ScheduleConfig, str | None] = (fallback, None)

    @property
    def current(self) -> ScheduleConfig:
        with self._lock:
            return self._current[0]

    @property
    def version(self) -> str | None:
        """Central's version of the pushed schedule that runs; None while kiosk.toml's runs."""
        with self._lock:
            return self._current[1]

    def load(self) -> str | None:
        """Run the stored pushed schedule, if there is one; the problem (and kiosk.toml's schedule runs) when it is
        unreadable or not valid, None otherwise (also when nothing was pushed yet)."""
        if self.path is None:
            return None
        try:
            payload = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no pushed schedule yet: running kiosk.toml's [schedule]")
            return None
        except OSError as exc:
            return self._unusable(f"cannot read it: {exc}")
        try:
            command = parse_command(payload)
            if command["cmd"] != "install_schedule":
                raise CommandRefused(f"it holds a {command['cmd']} command, not install_schedule", "invalid")
            schedule = schedule_of_command(command, timezone=self.timezone)
        except CommandRefused as exc:
            return self._unusable(str(exc))
        with self._lock:
            self._current = (schedule, command["schedule_version"])
        log.info("running the pushed schedule version %s (command version %d)", command["schedule_version"],
                 command["version"])
        return None

    def _unusable(self, why: str) -> str:
        problem = (f"the pushed schedule {self.path} is not usable, running kiosk.toml's [schedule] until central "
                   f"pushes it again: {why}")
        log.error("%s", problem)
        return problem

    def check(self, command: Mapping[str, Any]) -> ScheduleConfig:
        """The schedule of an ``install_schedule`` command; CommandRefused ``invalid`` naming the bad fields."""
        return schedule_of_command(command, timezone=self.timezone)

    def install(self, command: Mapping[str, Any], schedule: ScheduleConfig) -> None:
        """Keep the checked command (atomically: a crash leaves the old file or the new one) and run its schedule;
        OSError when it cannot be kept (then nothing changed)."""
        if self.path is not None:
            write_atomic(self.path, wire(dict(command)))
        with self._lock:
            old = self._current[1]
            self._current = (schedule, command["schedule_version"])
        log.info("schedule installed: version %s -> %s (%d windows, %d Ramadan ranges, %d holidays)",
                 old or "kiosk.toml", command["schedule_version"], len(schedule.windows), len(schedule.ramadan),
                 len(schedule.holidays))


ACTIONS = {"install_gallery": "install", "remove_people": "remove", "reload_gallery": "reload",
           "install_schedule": "schedule"}
"""The frame loop's action for each changing command."""
_CHANNEL_OF_ACTION = {action: channel_of(name) for name, action in ACTIONS.items()}


@dataclass(frozen=True)
class Queued:
    """A checked command for the frame loop: ``action`` (install, remove, reload, schedule; alarm), its argument and
    its version."""

    action: str
    argument: Any
    version: int

    @property
    def channel(self) -> str:
        """The channel of a command's action (kiosk_contract.commands.CHANNELS); KeyError for an alarm."""
        return _CHANNEL_OF_ACTION[self.action]


class CentralCommands:
    """Checks central's changing commands on the MQTT thread and queues them for the frame loop.

    ``gallery()`` is the running gallery (for the result); ``now()`` is the wall clock when it is synced, else None
    (an unsynced clock cannot judge an expiry: the version still refuses replays).
    """

    def __init__(
        self,
        *,
        device: str,
        office: str,
        central_keys: Mapping[str, Ed25519PublicKey],
        applied: AppliedVersion,
        work: queue.Queue[Queued],
        gallery: Callable[[], Gallery],
        now: Callable[[], datetime | None],
        schedule: CurrentSchedule | None = None,
    ) -> None:
        self.device = device
        self.office = office
        self.central_keys = dict(central_keys)
        self.applied = applied
        self.work = work
        self._gallery = gallery
        self._now = now
        self.schedule = schedule

    def handle(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """The result fields of a changing command that was queued; CommandRefused saying why not."""
        name = command["cmd"]
        check_command(command, self.central_keys, device=self.device, office=self.office,
                      applied=self.applied.of(channel_of(name)), now=self._now())
        action = ACTIONS[name]
        argument: Any
        if name == "install_schedule":
            if self.schedule is None:
                raise CommandRefused("this kiosk cannot install a schedule", "unsupported")
            argument = (dict(command), self.schedule.check(command))
        elif name == "install_gallery":
            argument = (self._gallery_file(command), command["gallery_version"], command["target"]["office"])
        elif name == "remove_people":
            argument = tuple(command["nips"])
        else:
            argument = None
        try:
            self.work.put_nowait(Queued(action, argument, command["version"]))
        except queue.Full:
            raise CommandRefused("the kiosk is still busy with earlier commands; try again", "busy") from None
        running = self._gallery()
        fields: dict[str, Any] = {"queued": True, "version": command["version"], "gallery_version": running.version,
                                  "gallery_office": running.office}
        if self.schedule is not None:
            fields["schedule_version"] = self.schedule.version  # what runs now; the status event says when it changed
        return fields

    def _gallery_file(self, command: Mapping[str, Any]) -> bytes:
        try:
            data = base64.b64decode(command["gallery_b64"], validate=True)
        except (ValueError, binascii.Error):
            raise CommandRefused("'gallery_b64' is not base64", "invalid") from None
        if hashlib.sha256(data).hexdigest() != command["sha256"]:
            raise CommandRefused("the gallery does not match its sha256", "invalid")
        return data
