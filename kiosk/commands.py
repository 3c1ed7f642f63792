"""Central's commands that change this kiosk: which ones it carries out, and the durable record of what it applied.

The MQTT thread checks a command (kiosk_contract.commands.check_command: signed by the central key, for this office
and device, not expired, newer than the last version applied) and its parameters, and queues it; the frame loop
carries it out between two frames and only then records its version (``<state_dir>/commands.json``, written
atomically), so that a crash in between leaves the retained command to be applied again at the next connect, and a
replayed or older command is refused even after a restart.
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

from kiosk_contract.commands import CommandRefused, check_command
from kiosk_contract.fsutil import write_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from kiosk_contract.gallery import Gallery

log = logging.getLogger(__name__)

STATE_FORMAT = 1


class AppliedVersion:
    """The version of the last changing command this kiosk carried out (0 before the first), kept in a small JSON
    file written atomically. An unreadable file is refused at start rather than taken as 0, which would let a
    captured old command in again."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._value = self._read()

    def _read(self) -> int:
        from kiosk.errors import KioskError

        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise KioskError(f"{self.path}: cannot read the record of applied commands ({exc}); restore it, or "
                             "remove it to accept central's commands from version 1 again") from None
        fields = data if isinstance(data, dict) else {}
        version = fields.get("applied_version")
        if fields.get("format") != STATE_FORMAT or isinstance(version, bool) or not isinstance(version, int):
            raise KioskError(f"{self.path}: not a record of applied commands; restore it, or remove it to accept "
                             "central's commands from version 1 again")
        return version

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    def record(self, version: int) -> None:
        """Remember that ``version`` was carried out (an older one changes nothing)."""
        with self._lock:
            if version <= self._value:
                return
            write_atomic(self.path, (json.dumps({"format": STATE_FORMAT, "applied_version": version}) + "\n").encode())
            self._value = version


@dataclass(frozen=True)
class Queued:
    """A checked command for the frame loop: ``action`` (install, remove, reload), its argument and its version."""

    action: str
    argument: Any
    version: int


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
    ) -> None:
        self.device = device
        self.office = office
        self.central_keys = dict(central_keys)
        self.applied = applied
        self.work = work
        self._gallery = gallery
        self._now = now

    def handle(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """The result fields of a changing command that was queued; CommandRefused saying why not."""
        check_command(command, self.central_keys, device=self.device, office=self.office,
                      applied=self.applied.value, now=self._now())
        name = command["cmd"]
        if name == "install_gallery":
            argument: Any = (self._gallery_file(command), command["gallery_version"], command["target"]["office"])
            action = "install"
        elif name == "remove_people":
            argument, action = tuple(command["nips"]), "remove"
        else:
            argument, action = None, "reload"
        try:
            self.work.put_nowait(Queued(action, argument, command["version"]))
        except queue.Full:
            raise CommandRefused("the kiosk is still busy with earlier commands; try again", "busy") from None
        running = self._gallery()
        return {"queued": True, "version": command["version"], "gallery_version": running.version,
                "gallery_office": running.office}

    def _gallery_file(self, command: Mapping[str, Any]) -> bytes:
        try:
            data = base64.b64decode(command["gallery_b64"], validate=True)
        except (ValueError, binascii.Error):
            raise CommandRefused("'gallery_b64' is not base64", "invalid") from None
        if hashlib.sha256(data).hexdigest() != command["sha256"]:
            raise CommandRefused("the gallery does not match its sha256", "invalid")
        return data
