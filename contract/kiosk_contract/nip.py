"""What a NIP is: the one definition every door uses (enrolment, roster load, the keypad, web forms, commands,
events).

A NIP (Nomor Induk Pegawai) is exactly 18 ASCII digits. HR systems print it in groups (``19800101 200501 1 001``)
or with dots; :func:`parse_nip` removes those separators and refuses anything else with one message that names the
field. On the wire (events, commands, galleries) a NIP is always the bare 18 digits (JSON Schema ``$defs/nip``).
"""

from __future__ import annotations

import re
from datetime import date

from kiosk_contract.errors import KioskError

NIP_LENGTH = 18
NIP_PATTERN = "^[0-9]{18}$"
"""The wire form, as written in the JSON Schemas."""
_WIRE = re.compile(r"[0-9]{18}")
_SEPARATORS = str.maketrans("", "", " .\t\u00a0\u202f")
NIP_RULE = "a NIP is 18 digits (0-9), like 198001012005011001"


class NipError(KioskError, ValueError):
    """A value that is not a NIP; the message names the field and says what a NIP is."""


def nip_problem(value: object) -> str | None:
    """Why ``value`` is not a NIP in its wire form (bare 18 ASCII digits), or None when it is one."""
    if not isinstance(value, str):
        return f"must be a string of 18 digits, not {type(value).__name__}"
    return None if _WIRE.fullmatch(value) else _why(value, value)


def _why(text: str, original: str) -> str:
    shown = repr(original[:40] + ("..." if len(original) > 40 else ""))
    odd = sorted({c for c in text if not ("0" <= c <= "9")})
    if odd:
        return f"{shown} is not a NIP: it contains {', '.join(repr(c) for c in odd[:5])}; {NIP_RULE}"
    return f"{shown} is not a NIP: it has {len(text)} digits; {NIP_RULE}"


def is_nip(value: object) -> bool:
    """Whether ``value`` is a NIP in its wire form."""
    return isinstance(value, str) and _WIRE.fullmatch(value) is not None


def parse_nip(value: object, field: str = "NIP") -> str:
    """The NIP in ``value``, with the spaces and dots of printed NIPs removed; :class:`NipError` naming ``field``.

    >>> parse_nip("19800101 200501 1 001")
    '198001012005011001'
    """
    if not isinstance(value, str):
        raise NipError(f"{field}: must be a string of 18 digits, not {type(value).__name__}")
    text = value.strip().translate(_SEPARATORS)
    if not _WIRE.fullmatch(text):
        raise NipError(f"{field}: {_why(text, value.strip())}")
    return text


def nip_typo(nip: str) -> str | None:
    """Whether a NIP typed on the keypad looks mistyped: its birth date (YYYYMMDD), its start-of-service month
    (YYYYMM) and its sex digit (1 or 2) must be possible. None when it looks right.

    Only for a number a person types at the kiosk, to catch a slip before a photo goes to HR; what a NIP *is*
    stays :func:`parse_nip` (a roster may hold numbers issued outside this pattern).
    """
    if not is_nip(nip):
        return "nip_length"
    try:
        date(int(nip[:4]), int(nip[4:6]), int(nip[6:8]))
    except ValueError:
        return "nip_invalid"
    if not 1 <= int(nip[12:14]) <= 12 or nip[14] not in "12":
        return "nip_invalid"
    return None
