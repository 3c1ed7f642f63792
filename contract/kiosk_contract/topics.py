"""MQTT topics: ``<prefix>/<site>/<device>/<suffix>``, built and parsed in one place (docs/mqtt.md, "Topics")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from kiosk_contract.commands import CHANNELS
from kiosk_contract.validation import schema

DEFAULT_PREFIX = "presensi/v1"
DEVICE_SUFFIXES = ("event", "evidence")
"""What a device publishes that the ledger stores (the rest: status, status/online, cmd/result)."""
CHANNEL_SUFFIX = "cmd/set"
"""``…/cmd/set/<channel>``: the retained topic of one channel of changing commands (kiosk_contract.commands.CHANNELS);
``…/cmd`` carries the commands that are not retained."""


@cache
def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(schema("defs")["$defs"][name]["pattern"])


def is_office_code(text: str) -> bool:
    """Whether ``text`` is an office code (the schemas' ``$defs/office``)."""
    return _pattern("office").match(text) is not None


def is_device_id(text: str) -> bool:
    """Whether ``text`` is a device id (the schemas' ``$defs/device_id``)."""
    return _pattern("device_id").match(text) is not None


def parse(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str, str]:
    """(site, device, suffix) of ``<prefix>/<site>/<device>/<suffix>``; ValueError naming the topic otherwise."""
    head = prefix.strip("/") + "/"
    parts = topic[len(head):].split("/", 2) if topic.startswith(head) else []
    if len(parts) != 3 or not all(parts) or not is_device_id(parts[1]):
        raise ValueError(f"topic {topic[:200]!r} is not {head}<site>/<device>/<suffix>")
    site, device, suffix = parts
    return site, device, suffix


@dataclass(frozen=True)
class Topics:
    """The topics of one device: ``<prefix>/<site>/<device>/...``."""

    base: str

    @classmethod
    def of(cls, prefix: str, site: str, device: str) -> Topics:
        for name, value in (("site", site), ("device id", device)):
            if not value or any(c in value for c in "/+#\0"):
                raise ValueError(f"the {name} {value!r} cannot be a topic segment (no '/', '+', '#')")
        return cls(f"{prefix.strip('/')}/{site}/{device}")

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def evidence(self) -> str:
        return f"{self.base}/evidence"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def online(self) -> str:
        return f"{self.base}/status/online"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd/result"

    def channel(self, name: str) -> str:
        """The retained topic of the channel ``name`` of changing commands (``…/cmd/set/gallery``)."""
        if name not in CHANNELS:
            raise ValueError(f"no command channel {name!r} (channels: {', '.join(CHANNELS)})")
        return f"{self.base}/{CHANNEL_SUFFIX}/{name}"

    @property
    def channels(self) -> dict[str, str]:
        """Every channel's retained topic, by channel."""
        return {name: self.channel(name) for name in CHANNELS}


DEVICE_WRITES = ("event", "evidence", "status", "status/online", "cmd/result")
"""What a device publishes; it only reads :data:`DEVICE_READS`, which only the central server writes."""
DEVICE_READS = ("ack", "cmd", *(f"{CHANNEL_SUFFIX}/{name}" for name in CHANNELS))
"""What a device reads: its acks, its commands, and the retained topic of every channel (each named: no wildcard, so
that a read rule never covers ``cmd/result``)."""


def mosquitto_acl(prefix: str = DEFAULT_PREFIX, central_user: str = "central") -> str:
    """The broker's ACL (mosquitto ``acl_file``) for devices named by their certificate's CN (``%u``, with
    ``use_identity_as_username``): a device writes only its own outgoing topics and reads only its own ack, command
    and channel topics, so a copy of its certificate cannot write acks or commands to it; the central server reads and
    writes everything."""
    base = prefix.strip("/")
    lines = [f"pattern write {base}/+/%u/{suffix}" for suffix in DEVICE_WRITES]
    lines += [f"pattern read {base}/+/%u/{suffix}" for suffix in DEVICE_READS]
    lines += [f"user {central_user}", f"topic readwrite {base}/#"]
    return "\n".join(lines) + "\n"
