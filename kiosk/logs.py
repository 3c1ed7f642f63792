"""Logging set-up: the journal with structured fields under systemd, plain stderr lines otherwise (docs/service.md).

Code logs as usual and may attach the event it is about; the fields are searchable with ``journalctl``::

    log.info("stored attendance masuk seq %d", seq,
             extra={"event_id": event_id, "seq": seq, "kind": "masuk", "nip": nip})
    # journalctl -u kiosk KIOSK_NIP=198001012005011001

Personal data (UU 27/2022): a NIP is logged only together with the event it belongs to; names and anything about a
face (photos, templates, distances to a named person) are never logged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

# extra= key -> journal field. Journal field names are upper case; the lower-case keys stay on the record.
FIELDS = {
    "event_id": "KIOSK_EVENT_ID",
    "seq": "KIOSK_SEQ",
    "kind": "KIOSK_KIND",
    "nip": "KIOSK_NIP",
}
DEVICE_FIELD = "KIOSK_DEVICE_ID"
SYSLOG_IDENTIFIER = "kiosk"
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_STDERR_FORMAT = "%(name)s: %(message)s"  # journald adds the time, the unit and the pid


class StructuredFields(logging.Filter):
    """Puts the device id on every record and copies the known ``extra=`` keys to their journal field names."""

    def __init__(self, device_id: str | None = None) -> None:
        super().__init__()
        self.device_id = device_id

    def filter(self, record: logging.LogRecord) -> bool:
        if self.device_id is not None:
            setattr(record, DEVICE_FIELD, self.device_id)
        for key, field in FIELDS.items():
            value = record.__dict__.get(key)
            if value is not None:
                setattr(record, field, str(value))
        return True


class SyslogPrefixFormatter(logging.Formatter):
    """Lines that start with ``<N>``, the syslog priority, which journald reads as the entry's level
    (SyslogLevelPrefix=, on by default); every line of a traceback gets it, since journald splits lines."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level: 7 debug, 6 info, 4 warning, 3 error, 2 critical."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def stream_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when ``stream`` is systemd's journal stream: ``$JOURNAL_STREAM`` is its ``device:inode``.

    This is the documented check (systemd.exec(5)); a child whose stderr was redirected elsewhere inherits the
    variable but fails the comparison."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # ValueError: closed, or a stream without a file descriptor
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def journal_handler() -> logging.Handler | None:
    """systemd-python's JournalHandler (native journal protocol, structured fields), or None when not installed."""
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    handler.setFormatter(logging.Formatter("%(message)s"))  # the level and logger are fields of their own
    return handler


def setup_logging(level: str, environ: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to the journal or to ``stream`` (stderr) at ``level``; return the handler.

    Under systemd (stderr is the journal stream): systemd-python's JournalHandler when installed, with the fields
    of ``StructuredFields``; without it, stderr lines with ``<N>`` priority prefixes and no time stamp. Elsewhere:
    "time LEVEL logger: message" on stderr. Like ``logging.basicConfig``, it leaves a root logger that already has
    handlers alone (a test runner's, for example).
    """
    stream = sys.stderr if stream is None else stream
    handler: logging.Handler | None = None
    if stream_is_journal(environ, stream):
        handler = journal_handler()
        if handler is None:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(SyslogPrefixFormatter(JOURNAL_STDERR_FORMAT))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler.addFilter(StructuredFields())
    logging.basicConfig(level=level, handlers=[handler])
    return handler


def set_device_id(device_id: str) -> None:
    """Put ``device_id`` (KIOSK_DEVICE_ID) on every record from now on; called once the config is loaded."""
    for handler in logging.getLogger().handlers:
        for fields in handler.filters:
            if isinstance(fields, StructuredFields):
                fields.device_id = device_id
