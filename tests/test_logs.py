"""Logging set-up: journal (systemd-python's JournalHandler, or <N>-prefixed stderr) under systemd, stderr elsewhere."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from kiosk.logs import STDERR_FORMAT, StructuredFields, set_device_id, setup_logging, syslog_priority

NIP = "198001012005011001"


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without the test runner's handlers (pytest adds them for the test's call), then restored."""
    logger = logging.getLogger()
    saved, level = logger.handlers[:], logger.level
    logger.handlers.clear()
    try:
        yield logger
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:] = saved
        logger.setLevel(level)


@pytest.fixture
def stderr(tmp_path: Path) -> Iterator[TextIO]:
    """A real file standing in for the kiosk's stderr."""
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as stream:
        yield stream


def journal_env(stream: TextIO) -> dict[str, str]:
    """What systemd sets when ``stream`` is connected to the journal (systemd.exec(5), $JOURNAL_STREAM)."""
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def written(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_outside_systemd_lines_carry_time_level_and_logger(stderr: TextIO) -> None:
    with bare_root() as root:
        handler = setup_logging("INFO", {}, stderr)
        assert root.handlers == [handler] and root.level == logging.INFO
        logging.getLogger("kiosk.test").info("kiosk kiosk-01 running")
        logging.getLogger("kiosk.test").debug("not at INFO")
        (line,) = written(stderr)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO kiosk.test: kiosk kiosk-01 running", line)
        assert handler.formatter is not None and handler.formatter._fmt == STDERR_FORMAT


def test_a_journal_stream_of_another_file_is_not_the_journal(stderr: TextIO, tmp_path: Path) -> None:
    with bare_root():
        with open(tmp_path / "elsewhere", "w") as other:  # stderr was redirected after systemd started the process
            environ = journal_env(other)
        setup_logging("INFO", environ, stderr)
        logging.getLogger("kiosk.test").warning("camera reopened")
        (line,) = written(stderr)
        assert line.endswith(" WARNING kiosk.test: camera reopened") and not line.startswith("<")


@pytest.mark.parametrize("value", ["", "garbage", "12:", ":34", "1:2:3"])
def test_a_malformed_journal_stream_is_not_the_journal(stderr: TextIO, value: str) -> None:
    with bare_root():
        setup_logging("INFO", {"JOURNAL_STREAM": value}, stderr)
        logging.getLogger("kiosk.test").info("hello")
        (line,) = written(stderr)
        assert line.endswith(" INFO kiosk.test: hello")


def test_journal_without_systemd_python_gets_priority_prefixes_and_no_time(
    stderr: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bare_root():
        monkeypatch.setitem(sys.modules, "systemd.journal", None)  # importing it raises ImportError
        setup_logging("DEBUG", journal_env(stderr), stderr)
        log = logging.getLogger("kiosk.test")
        log.debug("frame 12")
        log.info("kiosk running")
        log.warning("camera reopened")
        try:
            raise OSError("capture timed out")
        except OSError:
            log.exception("frame loop failed")
        log.critical("giving up")
        lines = written(stderr)
        assert lines[:4] == [
            "<7>kiosk.test: frame 12",
            "<6>kiosk.test: kiosk running",
            "<4>kiosk.test: camera reopened",
            "<3>kiosk.test: frame loop failed",
        ]
        traceback = lines[4:-1]
        assert traceback[0] == "<3>Traceback (most recent call last):"
        assert traceback[-1] == "<3>OSError: capture timed out"
        assert all(line.startswith("<3>") for line in traceback)  # journald splits lines: each keeps the level
        assert lines[-1] == "<2>kiosk.test: giving up"


def test_journal_with_systemd_python_sends_structured_fields(stderr: TextIO) -> None:
    with bare_root():
        from systemd.journal import JournalHandler

        handler = setup_logging("INFO", journal_env(stderr), stderr)
        assert isinstance(handler, JournalHandler)
        sent: list[tuple[str, dict[str, Any]]] = []
        handler.send = lambda MESSAGE, **fields: sent.append((MESSAGE, fields))  # journald does not run here
        log = logging.getLogger("kiosk.recorder")
        log.info("kiosk starting")
        set_device_id("kiosk-bkpsdm-01")
        event = {"event_id": "e-1", "seq": 41, "kind": "masuk", "nip": NIP}
        log.info("stored attendance masuk seq %d", 41, extra=event)
        log.warning("camera reopened")
        assert written(stderr) == []  # everything went to the journal

        (first, _), (event, fields), (warning, warning_fields) = sent
        assert first == "kiosk starting"
        assert event == "stored attendance masuk seq 41"
        assert (fields["PRIORITY"], fields["SYSLOG_IDENTIFIER"], fields["LOGGER"]) == ("6", "kiosk", "kiosk.recorder")
        assert {k: v for k, v in fields.items() if k.startswith("KIOSK_")} == {
            "KIOSK_DEVICE_ID": "kiosk-bkpsdm-01",
            "KIOSK_EVENT_ID": "e-1",
            "KIOSK_SEQ": "41",
            "KIOSK_KIND": "masuk",
            "KIOSK_NIP": NIP,
        }
        assert warning == "camera reopened" and warning_fields["PRIORITY"] == "4"
        assert {k for k in warning_fields if k.startswith("KIOSK_")} == {"KIOSK_DEVICE_ID"}  # no NIP without an event


def test_structured_fields_filter() -> None:
    fields = StructuredFields()
    record = logging.LogRecord("kiosk", logging.INFO, __file__, 1, "decision", None, None)
    record.nip = NIP
    record.event_id = None
    assert fields.filter(record)
    assert record.KIOSK_NIP == NIP
    assert not hasattr(record, "KIOSK_EVENT_ID") and not hasattr(record, "KIOSK_DEVICE_ID")
    fields.device_id = "kiosk-01"
    fields.filter(record)
    assert record.KIOSK_DEVICE_ID == "kiosk-01"


def test_an_existing_root_handler_is_left_alone(stderr: TextIO) -> None:
    with bare_root() as root:
        existing = logging.StreamHandler(stderr)
        root.addHandler(existing)
        setup_logging("DEBUG", {}, stderr)
        assert root.handlers == [existing]


@pytest.mark.parametrize(
    ("level", "priority"),
    [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2)],
)
def test_syslog_priority(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def test_the_documented_kiosk_kind_values_are_the_wires_punch_kinds() -> None:
    """docs/service.md lists KIOSK_KIND's values as the recorder logs them: the event's ``kind`` (lower case)."""
    import re

    from kiosk_contract.punch import PUNCH_KINDS

    docs = (Path(__file__).resolve().parents[1] / "docs/service.md").read_text()
    (row,) = [line for line in docs.splitlines() if line.startswith("| `kind` | `KIOSK_KIND` |")]
    assert tuple(re.findall(r"`([a-z_]+)`", row.split("|")[3])) == PUNCH_KINDS
