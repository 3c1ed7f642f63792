"""``kiosk-central manage import_reviewers``: the old review page's reviewers (ledger table ``reviewers``, scrypt
hashes) as Django users; their passwords become Argon2 hashes at their next login."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand

from kiosk_central.hr import accounts, data


class Command(BaseCommand):
    help = "Import the reviewers of the old review page (their scrypt hashes move to Argon2 at the next login)."

    def handle(self, *args: Any, **options: Any) -> None:
        added = accounts.import_reviewers(old_reviewers(), f"{getpass.getuser()} (cli)")
        self.stdout.write(f"imported {len(added)} reviewer(s): {', '.join(added) or '-'}")


def old_reviewers() -> list[tuple[str, str, str, bool]]:
    """(name, role, scrypt hash, disabled) of the ledger's ``reviewers`` table, empty when it is gone."""
    try:
        rows = data.ledger().rows("SELECT name, role, password_hash, disabled FROM reviewers ORDER BY name")
    except Exception:  # the table was dropped with the old page: nothing to import
        return []
    return [(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]
