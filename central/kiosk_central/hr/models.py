"""The HR application's own tables: who reviews which offices, the login throttle and audits, the two-person
approvals of decisions, and the enrolled reference photos kept centrally. The ledger's data (review cases, evidence,
decisions, recaps) stays behind :class:`kiosk_central.store.Ledger`; cases are named here by their id only."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ReviewerProfile(models.Model):
    """What a reviewer account (a Django user) adds: their own NIP (a case about that NIP is never theirs to decide)
    and the offices whose cases they see and decide. An admin (superuser) sees every office."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviewer")
    nip = models.CharField("NIP", max_length=18, blank=True, default="",
                           help_text="NIP reviewer sendiri (18 digit); kasus tentang NIP ini tidak bisa ia putus.")
    offices = models.CharField("kantor", max_length=500, blank=True, default="",
                               help_text="Kode kantor yang kasusnya ia lihat dan putus, dipisah koma.")

    class Meta:
        verbose_name = "profil reviewer"
        verbose_name_plural = "profil reviewer"

    def office_codes(self) -> list[str]:
        return sorted({code.strip() for code in self.offices.split(",") if code.strip()})

    def __str__(self) -> str:
        return f"{self.user} ({self.nip or '-'}; {', '.join(self.office_codes()) or '-'})"


class LoginThrottle(models.Model):
    """Password checks per user name (keyed by a keyed hash of the name, never the name itself: a password typed
    into the name field must not be stored): at most ``web.max_failed_logins`` per ``web.lockout_min``, reserved by
    one conditional UPDATE before the password is checked, so parallel attempts cannot exceed it."""

    key = models.CharField(max_length=64, primary_key=True)
    window_start = models.DateTimeField()
    checks = models.PositiveIntegerField(default=0)


class LoginAudit(models.Model):
    """Every login attempt and logout. ``user_name`` is set only for a name that exists; an unknown name is kept as
    its keyed hash (it may be a password typed into the wrong field)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user_name = models.CharField(max_length=150, blank=True, default="", db_index=True)
    name_hash = models.CharField(max_length=16)
    remote = models.CharField(max_length=64, blank=True, default="")
    outcome = models.CharField(max_length=20)  # ok, bad_password, unknown_user, locked, disabled, logout

    class Meta:
        ordering = ["-id"]  # noqa: RUF012 - Django reads Meta lists


class UserAudit(models.Model):
    """Every change to a reviewer account, from the CLI or the admin: who, when, what, to whom."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200)
    via = models.CharField(max_length=10)  # cli, admin, web, import
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=150)
    detail = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-id"]  # noqa: RUF012 - Django reads Meta lists


class Proposal(models.Model):
    """A decision that needs a second reviewer (two-person rule): accepting a case as the attendance of a person
    of another office than the kiosk's, or with another punch kind than the kiosk recorded. The case stays open in
    the ledger until a second reviewer approves; then the decision is made there."""

    PENDING, APPROVED, REFUSED, SUPERSEDED = "pending", "approved", "refused", "superseded"
    case_id = models.BigIntegerField(db_index=True)
    office = models.CharField(max_length=64, blank=True, default="")
    nip = models.CharField(max_length=18)
    kind = models.CharField(max_length=20)
    reason = models.TextField()
    why = models.CharField(max_length=200)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=12, default=PENDING)
    second_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True,
                                  blank=True)
    second_at = models.DateTimeField(null=True, blank=True)
    second_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]  # noqa: RUF012
        constraints = [  # noqa: RUF012
            models.UniqueConstraint(fields=["case_id"], condition=models.Q(state="pending"),
                                    name="one_pending_proposal_per_case"),
        ]


class ReferencePhoto(models.Model):
    """A person's enrolled reference photo, kept centrally so that a reviewer can compare it with the evidence
    photo. Personal data (UU 27/2022): shown only to logged-in reviewers of the person's or the case's office, never
    cached; deleted when the person leaves the enrolment folder (``import_reference_photos --prune``) or by an
    admin."""

    nip = models.CharField(max_length=18, unique=True)
    jpeg = models.BinaryField()
    content_type = models.CharField(max_length=40, default="image/jpeg")
    sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=255, blank=True, default="")
    imported_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "foto referensi"
        verbose_name_plural = "foto referensi"
