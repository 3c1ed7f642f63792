"""The HR web application (BKPSDM): login, review cases, recaps and reports, on Django."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from django.apps import AppConfig

log = logging.getLogger(__name__)


def private_sqlite(path: Path) -> None:
    """The SQLite ledger holds personal data: create it 0600 before anything opens it, and take group and other
    rights away from an existing one this user owns (its -wal and -shm files follow the database's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        log.warning("HR web: %s was readable by others (%o); now 0600", path, stat.S_IMODE(info.st_mode))
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


class HrConfig(AppConfig):
    name = "kiosk_central.hr"
    label = "hr"
    verbose_name = "Kepegawaian (HR)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        database = settings.DATABASES["default"]
        if database["ENGINE"].endswith("sqlite3") and database["NAME"] not in ("", ":memory:"):
            private_sqlite(Path(database["NAME"]))
