"""What a NIP is: one definition, one message, at every door (roster, web form, commands, events, the keypad)."""

from __future__ import annotations

import pytest

from kiosk_contract import validation
from kiosk_contract.nip import NIP_PATTERN, NipError, is_nip, nip_problem, nip_typo, parse_nip


@pytest.mark.parametrize("printed", ["19800101 200501 1 001", "19800101.200501.1.001", " 198001012005011001 ",
                                     "19800101\u00a0200501\u00a01\u00a0001"])
def test_printed_nips_from_hr_exports_are_normalised(printed: str) -> None:
    assert parse_nip(printed) == "198001012005011001"


@pytest.mark.parametrize(("value", "says"), [
    ("19850505201001102", "has 17 digits"),  # the 17-digit NIP that made the daemon exit
    ("1985050520100110233", "has 19 digits"),
    ("198505052010011023x", "contains 'x'"),  # re.match accepted trailing characters after 18 digits
    ("１９８５０５０５２０１００１１０２３", "contains"),  # full-width digits are not ASCII digits
    ("19850505-201001-1-023", "contains '-'"),
    ("", "has 0 digits"),
])
def test_anything_else_is_refused_with_one_message_naming_the_field(value: str, says: str) -> None:
    with pytest.raises(NipError) as info:
        parse_nip(value, "roster line 3, nip")
    message = str(info.value)
    assert message.startswith("roster line 3, nip: ") and says in message
    assert message.endswith("a NIP is 18 digits (0-9), like 198001012005011001")


def test_the_wire_form_is_the_schemas_and_its_message_is_parse_nips() -> None:
    assert validation.schema("defs")["$defs"]["nip"]["pattern"] == NIP_PATTERN
    assert is_nip("198001012005011001") and not is_nip("19800101 200501 1 001") and not is_nip(198001012005011001)
    wrong = "19850505201001102"
    assert validation.problems("command", {"v": 1, "request_id": "r", "cmd": "remove_people", "nips": [wrong],
                                           "target": {"office": "o", "device": "d"}, "version": 1,
                                           "issued_at": "2026-12-03T00:00:00.000Z",
                                           "expires_at": "2026-12-04T00:00:00.000Z",
                                           "sig": {"alg": "ed25519", "key_id": "0" * 16, "value": "A" * 86 + "=="}},
                               ) == [f"$.nips[0]: {nip_problem(wrong)}"]
    with pytest.raises(NipError, match="must be a string"):
        parse_nip(198001012005011001)


def test_the_keypad_also_catches_typing_slips_in_dates_and_the_sex_digit() -> None:
    assert nip_typo("198001012005011001") is None
    assert nip_typo("19800101200501100") == "nip_length"
    assert nip_typo("198013012005011001") == "nip_invalid"  # month 13
    assert nip_typo("198001012005131001") == "nip_invalid"  # service month 13
    assert nip_typo("198001012005013001") == "nip_invalid"  # sex digit 3
