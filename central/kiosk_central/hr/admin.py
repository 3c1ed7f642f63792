"""The admin (superusers only): reviewer accounts with their NIP and offices, every change audited in UserAudit;
the audits, proposals, reference photos and the dated working hours and deduction tables read-only (a reference
photo can be deleted, never viewed here); the roster (employees and their assignments to offices with dates), every
change in the admin's history."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

from kiosk_central.hr import accounts
from kiosk_central.hr.models import LoginAudit, Proposal, ReferencePhoto, ReviewerProfile, UserAudit
from kiosk_central.ledger.models import DeductionVersion, Employee, EmployeeAssignment, OfficeHoursVersion
from kiosk_central.rules import ROSTER_EPOCH
from kiosk_central.store import utc_text
from kiosk_contract.nip import NipError, parse_nip
from kiosk_contract.roster import MAX_GRADE


class ReviewerInline(admin.StackedInline):
    model = ReviewerProfile
    can_delete = False


class AuditedUserAdmin(UserAdmin):
    """Django's user admin; each addition, change (a new password included) and deletion is also a UserAudit row."""

    inlines = (ReviewerInline,)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        accounts.audit(request.user.get_username(), "admin", "add", str(obj), str(message))
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        accounts.audit(request.user.get_username(), "admin", "change", str(obj), str(message))
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            accounts.audit(request.user.get_username(), "admin", "delete", str(obj))
        return super().log_deletions(request, queryset)


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UserAudit)
class UserAuditAdmin(ReadOnly):
    list_display = ("at", "actor", "via", "action", "target", "detail")


@admin.register(LoginAudit)
class LoginAuditAdmin(ReadOnly):
    list_display = ("at", "user_name", "name_hash", "remote", "outcome")


@admin.register(Proposal)
class ProposalAdmin(ReadOnly):
    list_display = ("case_id", "office", "nip", "kind", "proposed_by", "state", "second_by", "why")


@admin.register(ReferencePhoto)
class ReferencePhotoAdmin(ReadOnly):
    list_display = ("nip", "sha256", "source", "imported_at")
    exclude = ("jpeg",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


@admin.register(OfficeHoursVersion)
class OfficeHoursVersionAdmin(ReadOnly):
    """Read-only here: working hours change on /aturan/jam/ (checked, from a day on, audited) or by the rules file."""

    list_display = ("office", "valid_from", "source", "entered_by", "entered_at")
    list_filter = ("office",)


@admin.register(DeductionVersion)
class DeductionVersionAdmin(ReadOnly):
    """Read-only here: the table changes on /aturan/potongan/ or by the rules file."""

    list_display = ("valid_from", "source", "entered_by", "entered_at")


# ---------------------------------------------------------------------------------------------------- the roster


class AssignmentForm(forms.ModelForm):
    """An assignment with real dates (stored as ISO text, like the ledger's other dates)."""

    valid_from = forms.DateField(label="mulai (TMT)", help_text="hari pertama di kantor ini, 2026-02-15")
    valid_to = forms.DateField(label="selesai (hari terakhir)", required=False,
                               help_text="kosong: masih di kantor ini")

    class Meta:
        model = EmployeeAssignment
        fields = ("office", "valid_from", "valid_to")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("valid_from"), data.get("valid_to")
        if start and end and end < start:
            self.add_error("valid_to", "Hari terakhir tidak boleh sebelum TMT.")
        for name in ("valid_from", "valid_to"):
            value = data.get(name)
            data[name] = value.isoformat() if isinstance(value, date) else value
        return data


class AssignmentFormSet(forms.BaseInlineFormSet):
    """A person's assignments never overlap (a day belongs to at most one office)."""

    def clean(self) -> None:
        super().clean()
        periods = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or not data.get("valid_from"):
                continue
            periods.append((str(data["valid_from"]), str(data.get("valid_to") or "9999-12-31")))
        for (_, end), (start, _) in itertools.pairwise(sorted(periods)):
            if start <= end:
                raise forms.ValidationError(f"Penempatan mulai {start} bertumpang tindih dengan penempatan "
                                            f"sebelumnya (sampai {end}): tutup yang lama sehari sebelumnya.")


class AssignmentInline(admin.TabularInline):
    model = EmployeeAssignment
    form = AssignmentForm
    formset = AssignmentFormSet
    extra = 0
    fields = ("office", "valid_from", "valid_to", "entered_by", "entered_at")
    readonly_fields = ("entered_by", "entered_at")
    ordering = ("valid_from",)


class EmployeeForm(forms.ModelForm):
    class Meta:
        model = Employee
        fields = ("nip", "name", "position", "tpp_class")

    def clean_nip(self) -> str:
        try:
            return parse_nip(self.cleaned_data.get("nip", ""), "NIP")
        except NipError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_tpp_class(self) -> int | None:
        value = self.cleaned_data.get("tpp_class")
        if value is not None and not 1 <= value <= MAX_GRADE:
            raise forms.ValidationError(f"Kelas jabatan 1..{MAX_GRADE}.")
        return value


@admin.register(Employee)
class EmployeeAdmin(admin.ModelAdmin):
    """The roster: a person and their assignments (offices with dates); ``office`` is the current one, kept up to
    date from the assignments. Every change is in the admin's history (LogEntry: who, when, which fields)."""

    form = EmployeeForm
    inlines = (AssignmentInline,)
    list_display = ("nip", "name", "office", "position", "tpp_class", "joined", "left")
    list_filter = ("office",)
    search_fields = ("nip", "name")
    readonly_fields = ("office", "updated_at")
    ordering = ("name", "nip")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*self.readonly_fields, "nip") if obj is not None else self.readonly_fields

    @admin.display(description="bergabung")
    def joined(self, obj: Employee) -> str:
        first = obj.assignments.order_by("valid_from").first()
        return "-" if first is None or first.valid_from <= ROSTER_EPOCH.isoformat() else first.valid_from

    @admin.display(description="keluar")
    def left(self, obj: Employee) -> str:
        last = obj.assignments.order_by("valid_from").last()
        return "" if last is None or last.valid_to is None else str(last.valid_to)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.updated_at = utc_text()
        if not obj.office:
            obj.office = ""  # set from the assignments in save_related
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for assignment in formset.save(commit=False):
            assignment.entered_by, assignment.entered_at = f"admin {request.user.get_username()}", utc_text()
            assignment.save()
        for gone in formset.deleted_objects:
            gone.delete()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        current_office(form.instance)


def current_office(person: Employee, today: date | None = None) -> None:
    """``employees.office``: the office of the assignment valid today, else the latest before, else the first
    (:func:`kiosk_central.rules.refresh_current_offices`, through the ORM)."""
    today_text = (today or date.today()).isoformat()
    periods = list(person.assignments.order_by("valid_from"))
    if not periods:
        return
    current = (next((a for a in periods if a.valid_from <= today_text and (a.valid_to is None
                                                                          or a.valid_to >= today_text)), None)
               or next((a for a in reversed(periods) if a.valid_from <= today_text), None) or periods[0])
    if person.office != current.office_id:
        Employee.objects.filter(nip=person.nip).update(office=current.office_id, updated_at=utc_text())


@admin.register(EmployeeAssignment)
class EmployeeAssignmentAdmin(admin.ModelAdmin):
    """Every assignment, to look one up by office and date; changes are made on the person (overlaps checked)."""

    list_display = ("employee", "office", "valid_from", "valid_to", "entered_by", "entered_at")
    list_filter = ("office",)
    search_fields = ("employee__nip", "employee__name")
    ordering = ("employee__name", "valid_from")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
