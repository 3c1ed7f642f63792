"""Commands from the central server to one kiosk, and the kiosk's results (``schemas/command*.schema.json``).

``ping``, ``status`` and ``resend`` change nothing on the device. Commands that change it (:data:`CHANGING`) are
signed with the central key and bound to their target: they name the office and the device, carry ``issued_at`` and
``expires_at``, and a ``version`` that grows with every such command to that device. A kiosk refuses, each with a
result that says why: another office's or device's command, an expired one, a replay of one it applied, and an
older version than one it applied (docs/mqtt.md, "Commands").

    cmd = build_command("install_gallery", target=Target("bkpsdm", "kiosk-a"), version=18, key=central_key,
                        ttl=timedelta(days=30), gallery_version=13, sha256=..., gallery_b64=...)
    command = parse_command(payload)                        # the kiosk: bounded JSON, then the schema
    check_command(command, central_keys, device="kiosk-a", office="bkpsdm", applied=17, now=now)  # of its channel

``install_schedule`` carries an office's punch schedule (:func:`schedule_command_fields`, docs/schedule.md): its
fields are those of :class:`kiosk_contract.schedule.ScheduleConfig` at the command's top level (so that the command
stays within :data:`MAX_COMMAND_DEPTH` and an older kiosk answers ``unknown_command``, not ``malformed``), with the
``schedule_version`` central names it by and the ``timezone`` its times are in. :func:`schedule_of_command` turns it
back into a checked ScheduleConfig on the kiosk.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kiosk_contract import signing
from kiosk_contract.errors import KioskError
from kiosk_contract.jsonbound import JsonLimitError, loads_bounded
from kiosk_contract.schedule import SCHEDULE_KEYS, ScheduleConfig, ScheduleError, schedule_from_data, schedule_to_data
from kiosk_contract.schema import format_utc
from kiosk_contract.validation import kind, problems

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

COMMAND_VERSION = 1
CHANNELS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "gallery": ("install_gallery", "remove_people", "reload_gallery"),
    "schedule": ("install_schedule",),
})
"""The channels of the changing commands: each has its own retained topic and its own applied version on a kiosk."""
CHANGING = tuple(name for names in CHANNELS.values() for name in names)
"""Commands that change the device: signed, targeted, versioned, expiring."""
MAX_COMMAND_BYTES = 48 * 1024 * 1024  # an install_gallery of ~25,000 people, base64
MAX_COMMAND_DEPTH = 4
CLOCK_SKEW = timedelta(minutes=10)
"""How far in the future ``issued_at`` may be on the kiosk's clock before the command is "not yet valid"."""


class CommandRefused(KioskError, ValueError):
    """A command the kiosk does not carry out; ``reason`` is the word of the result's ``refused`` field, and
    ``request_id`` and ``cmd`` what could be read of the command (for its result)."""

    def __init__(self, message: str, reason: str, *, request_id: str | int | None = None,
                 cmd: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.request_id = request_id
        self.cmd = cmd


@dataclass(frozen=True)
class Target:
    office: str
    device: str


def build_command(
    cmd: str,
    *,
    key: Ed25519PrivateKey | None = None,
    target: Target | None = None,
    version: int | None = None,
    ttl: timedelta = timedelta(days=30),
    now: datetime | None = None,
    request_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A command as a dict that validates against the schema; a changing command needs ``key``, ``target`` and
    ``version`` and is signed."""
    issued = now or datetime.now(UTC)
    command: dict[str, Any] = {
        "v": COMMAND_VERSION,
        "request_id": request_id or f"{cmd.replace('_', '-')}-{uuid.uuid4().hex[:12]}",
        "cmd": cmd,
        **fields,
    }
    if cmd in CHANGING:
        if key is None or target is None or version is None:
            raise ValueError(f"{cmd} changes the device: it needs the central key, its target and a version")
        command.update(target={"office": target.office, "device": target.device}, version=version,
                       issued_at=format_utc(issued), expires_at=format_utc(issued + ttl))
    if key is not None:
        command = signing.sign(command, key)
    wrong = problems("command", command)
    if wrong:
        raise ValueError(f"the {cmd} command would be invalid: " + "; ".join(wrong))
    return command


def parse_command(payload: bytes) -> dict[str, Any]:
    """A command that is well-formed (bounded JSON, the schema); CommandRefused otherwise, carrying the request id
    and command name when they could be read, so that the refusal still gets its result."""
    try:
        value = loads_bounded(payload, max_bytes=MAX_COMMAND_BYTES, max_depth=MAX_COMMAND_DEPTH, what="command")
    except JsonLimitError as exc:
        raise CommandRefused(str(exc), "malformed") from None
    if not isinstance(value, dict):
        raise CommandRefused(f"a command must be a JSON object, not {kind(value)}", "malformed")
    rid = value.get("request_id")
    request_id = rid if problems("command-result", {"request_id": rid, "ok": True}) == [] else None
    name = value.get("cmd") if isinstance(value.get("cmd"), str) and len(value["cmd"]) <= 64 else None
    wrong = problems("command", value)
    if not wrong:
        return value
    if name is not None and name not in _KNOWN:
        raise CommandRefused(f"unknown command {name!r} (known: {', '.join(_KNOWN)})", "unknown_command",
                             request_id=request_id, cmd=name)
    if name in CHANGING and "sig" not in value:
        raise CommandRefused(f"{name} changes the device and must be signed by the central key, bound to this office "
                             "and device: it is not signed", "unsigned", request_id=request_id, cmd=name)
    raise CommandRefused("malformed command: " + "; ".join(wrong[:5]), "malformed", request_id=request_id, cmd=name)


_KNOWN = ("ping", "status", "resend", *CHANGING)


def channel_of(cmd: str) -> str:
    """The channel of the changing command ``cmd``; ValueError for any other command."""
    for channel, names in CHANNELS.items():
        if cmd in names:
            return channel
    raise ValueError(f"{cmd!r} is not a command that changes the device (those are: {', '.join(CHANGING)})")


def check_command(
    command: Mapping[str, Any],
    central_keys: Mapping[str, Ed25519PublicKey],
    *,
    device: str,
    office: str,
    applied: int | Mapping[str, int],
    now: datetime | None,
) -> None:
    """Raise CommandRefused unless this kiosk may carry out a changing ``command`` now: signed by the central key,
    for this office and device, not expired (when ``now``, a synced clock, is known), newer than the version
    ``applied`` last on the command's channel. ``applied`` is that version, or the versions by channel (a channel
    missing there has applied nothing: 0). A command of exactly that version is a ``replay`` (the retained copy at a
    reconnect); the versions of the other channels do not matter."""
    name = command["cmd"]
    channel = channel_of(name)
    last = applied if isinstance(applied, int) else applied.get(channel, 0)
    try:
        signing.verify(command, central_keys, what=f"{name} command",
                       unknown_key_hint="it is not the central server's key (mqtt.central_key_file)")
    except signing.SignatureError as exc:
        raise CommandRefused(f"{name} changes the device and must be signed by the central key: {exc}",
                             "bad_signature") from None
    target = command["target"]
    if target["device"] != device:
        raise CommandRefused(f"the command is for device {target['device']!r}, not this kiosk ({device!r})",
                             "wrong_device")
    if not office:
        raise CommandRefused("this kiosk has no office code (device.office_code): it cannot check the command's "
                             "office", "no_office")
    if target["office"] != office:
        raise CommandRefused(f"the command is for office {target['office']!r}, this kiosk is of {office!r}",
                             "wrong_office")
    version = command["version"]
    if version == last:
        raise CommandRefused(f"version {version} was already applied on the {channel} channel (a replay, or the "
                             "retained copy again)", "replay")
    if version < last:
        raise CommandRefused(f"version {version} is older than version {last}, applied already on the {channel} "
                             "channel", "older_version")
    if now is not None:
        issued = datetime.fromisoformat(command["issued_at"].replace("Z", "+00:00"))
        expires = datetime.fromisoformat(command["expires_at"].replace("Z", "+00:00"))
        if now >= expires:
            raise CommandRefused(f"the command expired at {command['expires_at']}", "expired")
        if issued - now > CLOCK_SKEW:
            raise CommandRefused(f"the command is issued at {command['issued_at']}, in the future of this kiosk's "
                                 "clock", "not_yet_valid")


def result(request_id: str | int | None, ok: bool, **fields: Any) -> dict[str, Any]:
    """A result for ``…/cmd/result`` that validates against its schema."""
    message = {"request_id": request_id, "ok": ok, **fields}
    wrong = problems("command-result", message)
    if wrong:
        raise ValueError("the command result would be invalid: " + "; ".join(wrong))
    return message


def schedule_command_fields(schedule: ScheduleConfig, *, timezone: str, schedule_version: str) -> dict[str, Any]:
    """The fields of an ``install_schedule`` command (for :func:`build_command`) that carry ``schedule``."""
    return {"schedule_version": schedule_version, "timezone": timezone, **schedule_to_data(schedule)}


def schedule_of_command(command: Mapping[str, Any], *, timezone: str) -> ScheduleConfig:
    """The checked schedule an ``install_schedule`` carries, for a kiosk in IANA zone ``timezone``; CommandRefused
    ``invalid`` naming every bad field (``schedule.windows[1].start: must be before ...``) or the other time zone."""
    if command.get("timezone") != timezone:
        raise CommandRefused(f"the schedule is in {command.get('timezone')!r} wall-clock time, this kiosk runs in "
                             f"{timezone!r} (device.timezone): one of them is wrong", "invalid",
                             request_id=command.get("request_id"), cmd=command.get("cmd"))
    try:
        return schedule_from_data({k: command[k] for k in SCHEDULE_KEYS if k in command})
    except ScheduleError as exc:
        raise CommandRefused("the pushed schedule is not valid: " + "; ".join(exc.problems[:10]), "invalid",
                             request_id=command.get("request_id"), cmd=command.get("cmd")) from None
