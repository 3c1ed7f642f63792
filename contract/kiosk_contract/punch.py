"""Punch kinds: the one list of what a punch can be, with its labels and what it means in a recap.

A device assigns a kind from its schedule (or the Masuk/Pulang keys); the ledger turns a day's punches into a check-in
and a check-out (docs/schedule.md, docs/central.md). A new kind is added here first, with its meaning, and the server
is upgraded before any device sends it (docs/architecture.md, "Changing the contract").
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

PunchKind = Literal["masuk", "pulang", "istirahat_keluar", "istirahat_masuk", "lembur_masuk", "lembur_pulang"]
PUNCH_KINDS: tuple[PunchKind, ...] = typing.get_args(PunchKind)

Meaning = Literal["check_in", "check_out", "break", "overtime"]


@dataclass(frozen=True)
class KindInfo:
    """A punch kind's labels (Bahasa Indonesia, English) and its meaning in a recap.

    ``check_in``: the day's first such punch is the check-in lateness is counted from; ``check_out``: the day's last
    is the check-out early leave is counted to; ``break`` and ``overtime`` are stored and shown, and change no
    deduction.
    """

    kind: PunchKind
    label_id: str
    label_en: str
    meaning: Meaning

    def label(self, language: str) -> str:
        return self.label_en if language == "en" else self.label_id


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo("masuk", "Masuk", "In", "check_in"),
        KindInfo("pulang", "Pulang", "Out", "check_out"),
        KindInfo("istirahat_keluar", "Istirahat keluar", "Break out", "break"),
        KindInfo("istirahat_masuk", "Istirahat masuk", "Break in", "break"),
        KindInfo("lembur_masuk", "Lembur masuk", "Overtime in", "overtime"),
        KindInfo("lembur_pulang", "Lembur pulang", "Overtime out", "overtime"),
    )
}
assert tuple(KINDS) == PUNCH_KINDS


def kinds_meaning(meaning: Meaning) -> tuple[str, ...]:
    """The kinds with this recap meaning (``kinds_meaning("check_in") == ("masuk",)``)."""
    return tuple(k for k, info in KINDS.items() if info.meaning == meaning)
