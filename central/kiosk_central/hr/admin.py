"""The admin (superusers only): reviewer accounts with their NIP and offices, every change audited in UserAudit;
the audits, proposals and reference photos read-only (a reference photo can be deleted, never viewed here)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

from kiosk_central.hr import accounts
from kiosk_central.hr.models import LoginAudit, Proposal, ReferencePhoto, ReviewerProfile, UserAudit


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
