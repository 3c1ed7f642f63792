"""The ledger's tables. Django's migrations (``ledger/migrations``) own the schema; :mod:`kiosk_central.store` runs
its own hand-tuned SQL on these same tables for the ingest, so every table, column, type, key, constraint and index
here is exactly what that SQL expects, on SQLite and PostgreSQL alike (the schema of the numbered migrations 1..4 the
ledger had before Django: tests/central/test_ingest.py compares the two).

The rules the SQL relies on:

- table and column names are the SQL's (``db_table``, fields named like their columns; a foreign key names its
  column with ``db_column``);
- ``TEXT``, ``INTEGER``, ``BIGINT``, ``BYTEA``/``BLOB`` and identity ``id`` columns; flags are ``INTEGER`` 0/1 (the
  SQL says ``revoked = 0``), times are RFC 3339 text or milliseconds in ``*_ms`` columns;
- defaults the SQL leaves to the database are ``db_default`` (``state`` is ``'open'``, counters and flags 0);
- composite keys are ``CompositePrimaryKey``; unique and CHECK constraints carry the names PostgreSQL gave the
  unnamed ones of the old schema (``events_device_id_seq_key``), so that a later migration finds them in a database
  adopted from it; indexes keep their old names; foreign keys get no index of their own (the old schema had none).

Change a table only with a new migration (``kiosk-central manage --config c.toml makemigrations ledger``), and
check that store.py's SQL still holds on both backends (tests/central).
"""

from __future__ import annotations

from typing import Any

from django.db import models


class Key(models.TextField):
    """A ``TEXT`` primary key. On PostgreSQL it is spelled in capitals so that Django does not add its second,
    ``text_pattern_ops`` index for LIKE searches (it adds one to every unique ``text`` column): the ledger never
    searches its keys with LIKE, and the old schema, which databases are adopted from, has no such index."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "TEXT"
        return super().db_type(connection)


def _choices(field: str, values: tuple[str, ...]) -> models.Q:
    return models.Q(**{f"{field}__in": values})


# ---------------------------------------------------------------------------------------------------- devices


class Device(models.Model):
    """The device registry: who may publish, with which keys (``device_keys``); ``gallery_version``,
    ``gallery_office`` and ``schedule_version`` are what the device reports it runs in its latest status event
    (``status_seq``: a status event resent late never overwrites a newer one's); ``selftest`` is the summary of its
    latest ``kiosk selftest --publish`` (JSON, from the status event ``selftest_seq`` stamped ``selftest_at``)."""

    device_id = Key(primary_key=True)
    office = models.TextField()
    revoked = models.IntegerField(db_default=0)
    gallery_version = models.TextField(null=True)
    updated_at = models.TextField()
    gallery_office = models.TextField(null=True)
    schedule_version = models.TextField(null=True)
    status_seq = models.BigIntegerField(null=True)
    selftest = models.TextField(null=True)
    selftest_at = models.TextField(null=True)
    selftest_seq = models.BigIntegerField(null=True)

    class Meta:
        db_table = "devices"


class DeviceKey(models.Model):
    """A device's public key (Ed25519, hex) by key id; a revoked key's signatures are refused."""

    key_id = Key(primary_key=True)
    device = models.ForeignKey(Device, models.DO_NOTHING, db_column="device_id", db_index=False,
                               related_name="keys")
    public_key_hex = models.TextField()
    revoked = models.IntegerField(db_default=0)

    class Meta:
        db_table = "device_keys"


class DeviceProgress(models.Model):
    """Per device: every seq up to contiguous_seq is stored; highest_seq is the largest seen; a gap after
    contiguous_seq is asked for again with ``resend`` (resend_tries times, at most every interval)."""

    device_id = Key(primary_key=True)
    site = models.TextField()
    contiguous_seq = models.BigIntegerField()
    highest_seq = models.BigIntegerField()
    resend_from = models.BigIntegerField(null=True)
    resend_tries = models.IntegerField(db_default=0)
    last_resend_ms = models.BigIntegerField(null=True)

    class Meta:
        db_table = "device_progress"


class DeviceCommand(models.Model):
    """The version of the last changing command (install_gallery, install_schedule, ...) issued to a device: every
    new one is one more, so that a kiosk can refuse replays and older commands."""

    device_id = Key(primary_key=True)
    last_version = models.BigIntegerField()

    class Meta:
        db_table = "device_commands"


# ---------------------------------------------------------------------------------------------------- events


class Event(models.Model):
    """Every verified event, once. ``time_ms`` is the instant the ledger believes (the device's clock, or the clock
    corrected from the boot's time anchor); NULL while an unsynced event waits for its anchor."""

    pk = models.CompositePrimaryKey("device_id", "event_id")
    device_id = models.TextField()
    event_id = models.TextField()
    seq = models.BigIntegerField()
    type = models.TextField()
    kind = models.TextField(null=True)
    nip = models.TextField(null=True)
    boot_id = models.TextField()
    mono_ns = models.BigIntegerField()
    device_utc = models.TextField()
    time_ms = models.BigIntegerField(null=True)
    time_source = models.TextField()
    evidence_sha256 = models.TextField(null=True)
    evidence_ok = models.IntegerField()
    payload = models.TextField()
    received_at = models.TextField()

    class Meta:
        db_table = "events"
        constraints = (
            models.UniqueConstraint(fields=["device_id", "seq"], name="events_device_id_seq_key"),
            models.CheckConstraint(condition=_choices("time_source", ("device", "anchor", "unanchored")),
                                   name="events_time_source_check"),
        )
        indexes = (
            models.Index(fields=["nip", "time_ms"], name="events_nip_time"),
            models.Index(fields=["device_id", "boot_id", "type"], name="events_boot"),
            models.Index(fields=["device_id", "evidence_ok", "seq"], name="events_evidence_missing"),
        )


class Evidence(models.Model):
    """Evidence photos, deleted after their retention (``expires_ms``), kept while their review case is open."""

    pk = models.CompositePrimaryKey("device_id", "event_id", "sha256")
    device_id = models.TextField()
    event_id = models.TextField()
    sha256 = models.TextField()
    jpeg = models.BinaryField()
    received_at = models.TextField()
    expires_ms = models.BigIntegerField()

    class Meta:
        db_table = "evidence"
        indexes = (models.Index(fields=["expires_ms"], name="evidence_expiry"),)


class Rejection(models.Model):
    """A message the ledger refused, with why (also gaps given up and seqs reported lost)."""

    id = models.BigAutoField(primary_key=True)
    received_at = models.TextField()
    topic = models.TextField()
    device_id = models.TextField(null=True)
    event_id = models.TextField(null=True)
    reason = models.TextField()

    class Meta:
        db_table = "rejections"


class ReportedLoss(models.Model):
    """Inclusive seq ranges a device says it lost for good (its outbox was damaged), with the alarm event that said
    so: a gap they cover is closed at once instead of being asked for (``Ingestor.tick``)."""

    pk = models.CompositePrimaryKey("device_id", "event_id", "first_seq")
    device_id = models.TextField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    event_id = models.TextField()
    alarm_seq = models.BigIntegerField()
    alarm = models.TextField()
    reported_at = models.TextField()

    class Meta:
        db_table = "reported_losses"
        indexes = (models.Index(fields=["device_id", "first_seq", "last_seq"], name="reported_losses_range"),)


class LedgerAlarm(models.Model):
    """What IT must look at: a gap the ledger gave up asking for, a seq conflict, a device's alarm event."""

    id = models.BigAutoField(primary_key=True)
    at = models.TextField()
    device_id = models.TextField(null=True)
    kind = models.TextField()
    detail = models.TextField()

    class Meta:
        db_table = "ledger_alarms"
        indexes = (models.Index(fields=["device_id", "id"], name="ledger_alarms_device"),)


# ---------------------------------------------------------------------------------------------------- review


class ReviewCase(models.Model):
    """A review case for HR (unknown face, manual entry, suspected spoof). An accepted case counts as a punch of
    resolved_nip/resolved_kind; every decision is also written to ``review_audit``."""

    id = models.BigAutoField(primary_key=True)
    device_id = models.TextField()
    event_id = models.TextField()
    reason = models.TextField()
    state = models.TextField(db_default="open")
    resolved_nip = models.TextField(null=True)
    resolved_kind = models.TextField(null=True)
    decided_by = models.TextField(null=True)
    decided_at = models.TextField(null=True)
    decision_reason = models.TextField(null=True)

    class Meta:
        db_table = "review_queue"
        constraints = (
            models.UniqueConstraint(fields=["device_id", "event_id"], name="review_queue_device_id_event_id_key"),
            models.CheckConstraint(condition=_choices("state", ("open", "accepted", "rejected")),
                                   name="review_queue_state_check"),
        )


class ReviewAudit(models.Model):
    """A review decision: who, what, why, and the case before and after it (JSON)."""

    id = models.BigAutoField(primary_key=True)
    review = models.ForeignKey(ReviewCase, models.DO_NOTHING, db_column="review_id", db_index=False,
                               related_name="audit")
    actor = models.TextField()
    action = models.TextField()
    reason = models.TextField(null=True)
    at = models.TextField()
    before_state = models.TextField(null=True)
    after_state = models.TextField(null=True)

    class Meta:
        db_table = "review_audit"


# ---------------------------------------------------------------------------------------------------- rules


class Office(models.Model):
    """An office of the rules file (kiosk_central/rules.py) and its IANA time zone."""

    code = Key(primary_key=True)
    name = models.TextField()
    timezone = models.TextField()

    class Meta:
        db_table = "offices"


RULE_SOURCES = ("rules", "web")
"""Where a dated rule was entered: ``rules`` (the rules file, through ``kiosk-central load``) or ``web`` (the HR
pages under /aturan/)."""


class OfficeHoursVersion(models.Model):
    """An office's working hours (outside Ramadan and in it) from ``valid_from`` until the day before the next
    version's: the recap of a day uses the version in force on that day (kiosk_central/rules.py). ``hours`` is JSON
    in the rules file's shape: ``{"hours": [{"days": [...], "start": "07:30", "end": "16:00"}], "ramadan_hours":
    [...]}``. The first version of an office starts on 1970-01-01 ("since before the ledger")."""

    id = models.BigAutoField(primary_key=True)
    office = models.ForeignKey(Office, models.DO_NOTHING, db_column="office", db_index=False,
                               related_name="hours_versions", verbose_name="kantor")
    valid_from = models.TextField(verbose_name="berlaku mulai")
    hours = models.TextField(verbose_name="jam kerja (JSON)")
    source = models.TextField(db_default="rules", verbose_name="dari")
    entered_by = models.TextField(verbose_name="dicatat oleh")
    entered_at = models.TextField(verbose_name="dicatat pada")

    class Meta:
        db_table = "office_hours_versions"
        verbose_name = "jam kerja"
        verbose_name_plural = "jam kerja"
        constraints = (
            models.UniqueConstraint(fields=["office", "valid_from"], name="office_hours_versions_office_from_key"),
            models.CheckConstraint(condition=_choices("source", RULE_SOURCES),
                                   name="office_hours_versions_source_check"),
        )

    def __str__(self) -> str:
        return f"{self.office_id} {self.valid_from}"


class OfficeRamadan(models.Model):
    """The Ramadan periods of an office; ``source`` as for days off (``rules`` ones are replaced by a load)."""

    pk = models.CompositePrimaryKey("office", "start_date")
    office = models.ForeignKey(Office, models.DO_NOTHING, db_column="office", db_index=False,
                               related_name="ramadan")
    start_date = models.TextField()
    end_date = models.TextField()
    source = models.TextField(db_default="rules")

    class Meta:
        db_table = "office_ramadan"
        constraints = (models.CheckConstraint(condition=_choices("source", RULE_SOURCES),
                                              name="office_ramadan_source_check"),)


class OfficeDayOff(models.Model):
    """A public holiday or a day of collective leave of an office. ``source`` says where it was entered: ``rules``
    (the rules file; ``kiosk-central load`` replaces these) or ``web`` (the HR page /aturan/libur/; a load keeps
    these, except on a day the rules file now has itself)."""

    pk = models.CompositePrimaryKey("office", "day")
    office = models.ForeignKey(Office, models.DO_NOTHING, db_column="office", db_index=False,
                               related_name="days_off")
    day = models.TextField()
    kind = models.TextField()
    name = models.TextField()
    source = models.TextField(db_default="rules")

    class Meta:
        db_table = "office_days_off"
        constraints = (models.CheckConstraint(condition=_choices("kind", ("holiday", "collective_leave")),
                                              name="office_days_off_kind_check"),
                       models.CheckConstraint(condition=_choices("source", RULE_SOURCES),
                                              name="office_days_off_source_check"))


class Employee(models.Model):
    """A person of the roster: NIP, name, and ``office``, the office of their *current* assignment (the one valid
    on the day the roster last changed; for someone who left, their last office), kept for the SQL that wants "who
    is where now" (gallery distribution, review decisions). Which office a person belonged to on a given day is
    :class:`EmployeeAssignment`'s: the recaps read only that. A person is never deleted by a roster load (their
    history and name stay); joining and leaving are the first assignment's ``valid_from`` and the last one's
    ``valid_to``. ``position`` (jabatan) and ``tpp_class`` (kelas jabatan) are kept for the rules that will need
    them; no rule reads them yet."""

    nip = Key(primary_key=True)
    name = models.TextField()
    office = models.TextField()
    updated_at = models.TextField()
    position = models.TextField(null=True, blank=True, verbose_name="jabatan")
    tpp_class = models.IntegerField(null=True, blank=True, verbose_name="kelas jabatan")

    class Meta:
        db_table = "employees"
        verbose_name = "pegawai"
        verbose_name_plural = "pegawai"

    def __str__(self) -> str:
        return f"{self.name} ({self.nip})"


class EmployeeAssignment(models.Model):
    """A person in an office from ``valid_from`` to ``valid_to`` (ISO dates, both days included; NULL: still there).
    A person's assignments never overlap; a day no assignment covers is a day they were not employed (before
    joining, after leaving). Rows carried over from the roster of before history start on 1970-01-01 ("since before
    the ledger"): migration 0003."""

    id = models.BigAutoField(primary_key=True)
    employee = models.ForeignKey(Employee, models.CASCADE, db_column="nip", db_index=False,
                                 related_name="assignments", verbose_name="pegawai")
    office = models.ForeignKey(Office, models.DO_NOTHING, db_column="office", db_constraint=False, db_index=False,
                               related_name="+", verbose_name="kantor")
    valid_from = models.TextField(verbose_name="mulai (TMT)")
    valid_to = models.TextField(null=True, blank=True, verbose_name="selesai (hari terakhir)")
    entered_by = models.TextField(verbose_name="dicatat oleh")
    entered_at = models.TextField(verbose_name="dicatat pada")

    class Meta:
        db_table = "employee_assignments"
        verbose_name = "penempatan"
        verbose_name_plural = "penempatan"
        constraints = (
            models.UniqueConstraint(fields=["employee", "valid_from"],
                                    name="employee_assignments_nip_valid_from_key"),
            models.CheckConstraint(condition=models.Q(valid_to__isnull=True) | models.Q(valid_to__gte=models.F(
                "valid_from")), name="employee_assignments_period_check"),
        )
        indexes = (models.Index(fields=["office", "valid_from"], name="employee_assignments_office"),)

    def __str__(self) -> str:
        return f"{self.employee_id} {self.office_id} {self.valid_from}..{self.valid_to or ''}"


class Excused(models.Model):
    """An excused absence (official duty, leave, sick) with its reference and who entered it."""

    pk = models.CompositePrimaryKey("nip", "start_date", "kind")
    nip = models.TextField()
    start_date = models.TextField()
    end_date = models.TextField()
    kind = models.TextField()
    reference = models.TextField()
    entered_by = models.TextField()
    entered_at = models.TextField()

    class Meta:
        db_table = "excused"
        constraints = (models.CheckConstraint(condition=_choices("kind", ("duty", "leave", "sick")),
                                              name="excused_kind_check"),)


class DeductionVersion(models.Model):
    """The TPP deduction table (bands, absence, monthly cap) from ``valid_from`` until the next version's day; JSON in
    the rules file's ``[deductions]`` shape. The recap deducts each day by the version in force on it and caps a
    month by the version in force on its last day."""

    id = models.BigAutoField(primary_key=True)
    valid_from = models.TextField(unique=True, verbose_name="berlaku mulai")
    deductions = models.TextField(verbose_name="tabel potongan (JSON)")
    source = models.TextField(db_default="rules", verbose_name="dari")
    entered_by = models.TextField(verbose_name="dicatat oleh")
    entered_at = models.TextField(verbose_name="dicatat pada")

    class Meta:
        db_table = "deduction_versions"
        verbose_name = "tabel potongan"
        verbose_name_plural = "tabel potongan"
        constraints = (models.CheckConstraint(condition=_choices("source", RULE_SOURCES),
                                              name="deduction_versions_source_check"),)

    def __str__(self) -> str:
        return f"potongan {self.valid_from}"


class SchedulePush(models.Model):
    """A push of an office's punch schedule: its version and JSON, when, by whom, to how many kiosks."""

    id = models.BigAutoField(primary_key=True)
    office = models.TextField()
    version = models.TextField()
    schedule = models.TextField()
    pushed_at = models.TextField()
    pushed_by = models.TextField()
    kiosks = models.IntegerField()

    class Meta:
        db_table = "schedule_pushes"
        indexes = (models.Index(fields=["office", "pushed_at"], name="schedule_pushes_office"),)


class GalleryVersion(models.Model):
    """A signed gallery made for an office, and when it was published."""

    pk = models.CompositePrimaryKey("office", "version")
    office = models.TextField()
    version = models.TextField()
    sha256 = models.TextField()
    created_at = models.TextField()
    published_at = models.TextField(null=True)

    class Meta:
        db_table = "gallery_versions"


# ---------------------------------------------------------------------------------------------------- first review page


class Reviewer(models.Model):
    """A reviewer account of the first HR review page (scrypt hash); the HR web imports them as Django users."""

    name = Key(primary_key=True)
    role = models.TextField()
    password_hash = models.TextField()
    disabled = models.IntegerField(db_default=0)
    created_by = models.TextField()
    created_at = models.TextField()

    class Meta:
        db_table = "reviewers"
        constraints = (models.CheckConstraint(condition=_choices("role", ("reviewer", "admin")),
                                              name="reviewers_role_check"),)


class WebSession(models.Model):
    """A logged-in browser of the first review page: only the SHA-256 of its cookie's token is kept."""

    token_sha256 = Key(primary_key=True)
    user = models.ForeignKey(Reviewer, models.DO_NOTHING, db_column="user_name", db_index=False,
                             related_name="sessions")
    csrf = models.TextField()
    remote = models.TextField()
    created_ms = models.BigIntegerField()
    expires_ms = models.BigIntegerField()

    class Meta:
        db_table = "web_sessions"
        indexes = (models.Index(fields=["expires_ms"], name="web_sessions_expiry"),)


class LoginAttempt(models.Model):
    """A login attempt or logout on the first review page."""

    id = models.BigAutoField(primary_key=True)
    at = models.TextField()
    at_ms = models.BigIntegerField()
    user_name = models.TextField()
    remote = models.TextField()
    outcome = models.TextField()

    class Meta:
        db_table = "login_audit"
        indexes = (models.Index(fields=["user_name", "at_ms"], name="login_audit_user"),)


# ---------------------------------------------------------------------------------------------------- history


class LegacySchemaVersion(models.Model):
    """The numbered migrations of the ledger before Django (1..4), in databases made then, and version 5: "Django's
    migrations own the schema from here". A program of that time refuses a database at version 5 as newer than
    itself, so it never runs its own DDL on a database Django migrates."""

    version = models.IntegerField(primary_key=True)
    description = models.TextField()
    applied_at = models.TextField()

    class Meta:
        db_table = "schema_migrations"
