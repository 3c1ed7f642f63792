# ruff: noqa: RUF012 - a migration's lists
"""Version 5 in the old ``schema_migrations``: Django's migrations own the ledger's schema from here. A ledger program
of before Django (store.py's numbered migrations 1..4) then refuses the database as newer than itself instead of
running its own DDL on it. Applied to new databases and to those adopted from version 4 alike."""

from datetime import UTC, datetime

from django.db import migrations

VERSION = 5
DESCRIPTION = "the schema is owned by Django's migrations (kiosk_central/ledger/migrations) from here"


def mark(apps, schema_editor):
    version = apps.get_model("ledger", "LegacySchemaVersion")
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    version.objects.using(schema_editor.connection.alias).get_or_create(
        version=VERSION, defaults={"description": DESCRIPTION, "applied_at": at})


def unmark(apps, schema_editor):
    version = apps.get_model("ledger", "LegacySchemaVersion")
    version.objects.using(schema_editor.connection.alias).filter(version=VERSION).delete()


class Migration(migrations.Migration):

    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(mark, unmark)]
