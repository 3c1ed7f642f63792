"""The roster file HR exports (``nip,name,unit``): read by enrolment on the device side and by the central server's
``load``, with the same checks, so that a roster one accepts the other accepts too."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from kiosk_contract.errors import KioskError
from kiosk_contract.nip import NipError, parse_nip


class RosterError(KioskError, ValueError):
    """The roster CSV is missing columns, has a bad or repeated NIP, or cannot be read."""


@dataclass(frozen=True)
class RosterEntry:
    nip: str
    name: str
    unit: str


def read_roster(path: Path) -> list[RosterEntry]:
    """Read ``nip,name,unit`` rows; every problem is reported with its line number, all at once."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"nip", "name", "unit"} - {c.strip().lower() for c in reader.fieldnames or []}
            if missing:
                raise RosterError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected nip,name,unit")
            rows = [
                ({k.strip().lower(): (v or "").strip() for k, v in row.items() if k}, reader.line_num)
                for row in reader
            ]
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster ({exc.strerror or exc})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise RosterError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    problems: list[str] = []
    entries: list[RosterEntry] = []
    seen: dict[str, int] = {}
    for row, line in rows:
        try:
            nip = parse_nip(row.get("nip", ""), f"line {line}, nip")
        except NipError as exc:
            problems.append(str(exc))
            continue
        if nip in seen:
            problems.append(f"line {line}: NIP {nip} already on line {seen[nip]}")
        elif not row.get("name"):
            problems.append(f"line {line}: NIP {nip} has no name")
        else:
            seen[nip] = line
            entries.append(RosterEntry(nip, row["name"], row.get("unit", "")))
    if problems:
        raise RosterError(f"{path}: " + "; ".join(problems))
    return entries
