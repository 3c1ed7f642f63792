"""Django's ``migrate`` with the ledger's two guards, for every way it runs (``kiosk-central manage ... migrate``,
``Ledger.migrate`` at every ledger start, the HR web's start):

- **one at a time**: a PostgreSQL advisory lock per schema, or a lock file beside an SQLite ledger, so that the
  subscriber and the web starting together do not both create the tables;
- **adoption**: a database made by the ledger's numbered migrations before Django (its ``schema_migrations`` table
  at version 4, no ledger migration recorded) has exactly the tables of ``ledger/0001_initial``: their columns are
  checked and 0001 is recorded as applied without touching them (``--fake-initial``, for the ledger alone);
  ``0002`` then marks the old table with version 5;
- **refusal**: a database newer than this program (a ledger migration it does not have, or a ``schema_migrations``
  version above 5) or older than version 4 is refused with what to do, and nothing is changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import migrate
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

log = logging.getLogger(__name__)

APP = "ledger"
INITIAL = "0001_initial"
ADOPTED_VERSION = 4  # the last numbered migration of store.py before Django
MARKER_VERSION = 5  # written by 0002_schema_owned_by_django
LOCK_KEY = 0x4B43  # "KC": pg_advisory_lock(LOCK_KEY, hashtext(schema))


class Command(migrate.Command):
    help = (migrate.Command.help + " The ledger's database is migrated one process at a time; one made before Django "
            "(schema_migrations at version 4) is adopted as ledger 0001_initial; one newer than this program is "
            "refused.")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        with schema_lock(connection):
            adopted = prepare(connection)
            if adopted and options["verbosity"] >= 1:
                self.stdout.write(adopted)
            super().handle(*args, **options)


@contextlib.contextmanager
def schema_lock(connection: Any) -> Iterator[None]:
    """Hold the ledger's migration lock of this database while the block runs."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, hashtext(COALESCE(current_schema(), '')))", [LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(COALESCE(current_schema(), '')))", [LOCK_KEY])
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor != "sqlite" or not name or name.startswith((":", "file:")):
        yield
        return
    path = Path(name)
    fd = os.open(path.with_name(path.name + ".migrate-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the lock file, never the database: closing another descriptor of the
        yield  # database would drop SQLite's own POSIX locks in this process
    finally:
        os.close(fd)


def prepare(connection: Any) -> str:
    """Refuse a database this program must not migrate; adopt one made before Django. Returns what was adopted
    ("" when nothing was)."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    known = {name for app, name in loader.disk_migrations if app == APP}
    applied = {name for app, name in loader.applied_migrations if app == APP}
    unknown = sorted(applied - known)
    if unknown:
        raise CommandError(
            f"the ledger database has migration(s) {', '.join(unknown)} of the ledger, newer than this program's "
            f"(up to {max(known)}): upgrade the program, do not run an older one against it")
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        if "schema_migrations" not in tables:
            return ""
        cursor.execute("SELECT MAX(version) FROM schema_migrations")
        row = cursor.fetchone()
    version = None if row is None or row[0] is None else int(row[0])
    if version is not None and version > MARKER_VERSION:
        raise CommandError(
            f"the ledger database has schema version {version}, newer than this program's {MARKER_VERSION}: "
            "upgrade the program, do not run an older one against it")
    if applied:
        return ""
    if version != ADOPTED_VERSION:
        raise CommandError(
            f"the ledger database has the schema of before Django at version {version or 'none'} (schema_migrations); "
            f"this program adopts version {ADOPTED_VERSION} only: open it once with the release before Django "
            "(kiosk-central 0.x, `kiosk-central load`), which brings it to version 4, then with this one")
    problems = _differences(connection, loader, tables)
    if problems:
        raise CommandError("the ledger database has schema_migrations at version 4 but not its tables: "
                           + "; ".join(problems) + ". Nothing was changed")
    MigrationRecorder(connection).record_applied(APP, INITIAL)
    message = (f"ledger: adopted the database made before Django (schema_migrations version {version}) as "
               f"{APP}.{INITIAL}: its tables and rows are kept as they are")
    log.warning("%s", message)
    return message


def _differences(connection: Any, loader: MigrationLoader, tables: set[str]) -> list[str]:
    """What the database lacks of the tables and columns of ledger 0001_initial."""
    state = loader.project_state((APP, INITIAL), at_end=True)
    problems = []
    with connection.cursor() as cursor:
        for model in state.apps.get_app_config(APP).get_models():
            table = model._meta.db_table
            if table not in tables:
                problems.append(f"table {table} is missing")
                continue
            have = {column.name for column in connection.introspection.get_table_description(cursor, table)}
            want = {field.column for field in model._meta.local_concrete_fields if field.column}
            if want - have:
                problems.append(f"{table} lacks column(s) {', '.join(sorted(want - have))}")
    return problems
