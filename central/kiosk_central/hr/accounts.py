"""Reviewer accounts on Django's users: adding, new passwords, disabling (CLI and admin, every change audited), the
login throttle, and the reviewers of the old review page (scrypt hashes, upgraded to Argon2 at their next login)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from kiosk_central.hr.models import LoginThrottle, ReviewerProfile, UserAudit
from kiosk_contract.errors import KioskError
from kiosk_contract.nip import NipError, parse_nip

USER_NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
ROLES = ("reviewer", "admin")
LEGACY_PREFIX = "kiosk_scrypt$"  # the old page's "scrypt$n$r$p$salt$hash", kept under a name no Django hasher owns


def name_hash(name: str) -> str:
    """A keyed hash of a typed user name: what the throttle, the audit and the log keep of a name that is not a
    user (it may be a password typed into the wrong field)."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, b"login-name:" + name.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:16]


def role_of(user: User) -> str:
    return "admin" if user.is_superuser else "reviewer"


def user_name_problem(name: str) -> str | None:
    if USER_NAME.fullmatch(name) is None:
        return f"user name {name!r}: use 2-64 characters a-z, 0-9, '.', '_' or '-', starting with a letter"
    return None


def password_problems(password: str, user: User | None = None) -> list[str]:
    """Django's validators (length from web.min_password_length, common, numeric, similar to the name)."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        return [str(m) for m in exc.messages]
    return []


def audit(actor: str, via: str, action: str, target: str, detail: str = "") -> None:
    UserAudit.objects.create(actor=actor[:200], via=via, action=action, target=target[:150], detail=detail)


def parse_offices(offices: list[str] | str) -> str:
    codes = offices.split(",") if isinstance(offices, str) else offices
    return ",".join(sorted({c.strip() for c in codes if c.strip()}))


def add_user(name: str, password: str, role: str, actor: str, via: str = "cli", nip: str = "",
             offices: list[str] | None = None) -> User:
    problem = user_name_problem(name)
    if problem:
        raise KioskError(problem)
    if nip:
        try:
            nip = parse_nip(nip, "--nip")
        except NipError as exc:
            raise KioskError(str(exc)) from None
    candidate = User(username=name)
    problems = password_problems(password, candidate)
    if problems:
        raise KioskError("password refused: " + " ".join(problems) + "; nothing was changed")
    with transaction.atomic():
        if User.objects.filter(username=name).exists():
            raise KioskError(f"reviewer {name!r} exists; use `kiosk-central user passwd {name}` to change the "
                             "password")
        user = User.objects.create_user(name, password=password, is_staff=role == "admin",
                                        is_superuser=role == "admin")
        codes = parse_offices(offices or [])
        ReviewerProfile.objects.create(user=user, nip=nip, offices=codes)
        audit(actor, via, "add", name, f"role={role} nip={nip or '-'} offices={codes or '-'}")
    return user


def set_password(name: str, password: str, actor: str, via: str = "cli") -> None:
    """A new password; Django's session hash then ends the user's sessions."""
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=name).first()
        if user is None:
            raise KioskError(f"no reviewer {name!r}; add one with `kiosk-central user add {name}`")
        problems = password_problems(password, user)
        if problems:
            raise KioskError("password refused: " + " ".join(problems) + "; nothing was changed")
        user.set_password(password)
        user.save(update_fields=["password"])
        audit(actor, via, "passwd", name)


def disable_user(name: str, actor: str, via: str = "cli") -> None:
    """Lock a reviewer out (is_active false ends their sessions at the next request); the audit stays."""
    with transaction.atomic():
        if User.objects.filter(username=name).update(is_active=False) != 1:
            raise KioskError(f"no reviewer {name!r}")
        audit(actor, via, "disable", name)


def set_scope(name: str, actor: str, via: str = "cli", nip: str | None = None,
              offices: list[str] | None = None) -> None:
    with transaction.atomic():
        user = User.objects.filter(username=name).first()
        if user is None:
            raise KioskError(f"no reviewer {name!r}")
        profile, _ = ReviewerProfile.objects.get_or_create(user=user)
        if nip is not None:
            try:
                profile.nip = parse_nip(nip, "--nip") if nip else ""
            except NipError as exc:
                raise KioskError(str(exc)) from None
        if offices is not None:
            profile.offices = parse_offices(offices)
        profile.save()
        audit(actor, via, "scope", name, f"nip={profile.nip or '-'} offices={profile.offices or '-'}")


# ---------------------------------------------------------------------------------------------------- throttle


def reserve_check(name: str, max_checks: int, window: timedelta) -> bool:
    """Reserve one password check for ``name``: True when fewer than ``max_checks`` were made in the current window
    (a window older than ``window`` starts again). One conditional UPDATE does it, so two requests at once cannot
    both take the last check (PostgreSQL re-checks the WHERE after the row lock; SQLite has one writer)."""
    key = name_hash(name)
    now = timezone.now()
    LoginThrottle.objects.bulk_create([LoginThrottle(key=key, window_start=now, checks=0)], ignore_conflicts=True)
    expired = Q(window_start__lt=now - window)
    reserved = LoginThrottle.objects.filter(Q(key=key) & (expired | Q(checks__lt=max_checks))).update(
        checks=Case(When(expired, then=Value(1)), default=F("checks") + 1),
        window_start=Case(When(expired, then=Value(now)), default=F("window_start")),
    )
    return reserved == 1


def locked_until(name: str, window: timedelta) -> str:
    row = LoginThrottle.objects.filter(key=name_hash(name)).first()
    until = timezone.localtime((row.window_start if row else timezone.now()) + window)
    return f"{until:%H:%M}"


def clear_checks(name: str) -> None:
    """A successful login starts the count again."""
    LoginThrottle.objects.filter(key=name_hash(name)).update(checks=0)


def spend_check_time(password: str) -> None:
    """The work of one check for a name that is no user, so that the answer comes no faster."""
    make_password(password)


# ---------------------------------------------------------------------------------------------------- legacy


def legacy_hash(stored: str) -> str:
    """A Django password field for a reviewer of the old page (``scrypt$n$r$p$salt$hash``)."""
    return LEGACY_PREFIX + stored.split("$", 1)[1]


def check_legacy(password: str, stored: str) -> bool:
    """Whether ``password`` matches an old scrypt hash kept as :data:`LEGACY_PREFIX`."""
    try:
        n, r, p, salt, digest = stored[len(LEGACY_PREFIX):].split("$")
        expected = base64.b64decode(digest, validate=True)
        found = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt, validate=True), n=int(n),
                               r=int(r), p=int(p), maxmem=64 * 1024 * 1024, dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(found, expected)


def import_reviewers(rows: list[tuple[str, str, str, bool]], actor: str) -> list[str]:
    """Users for the old page's reviewers (name, role, scrypt hash, disabled) not yet known; their passwords move
    to Argon2 at their first login. Returns the names added."""
    added = []
    for name, role, stored, disabled in rows:
        if not stored.startswith("scrypt$") or User.objects.filter(username=name).exists():
            continue
        with transaction.atomic():
            user = User(username=name, is_active=not disabled, is_staff=role == "admin",
                        is_superuser=role == "admin", password=legacy_hash(stored))
            user.save()
            ReviewerProfile.objects.create(user=user)
            audit(actor, "import", "import", name, f"role={role} from the old review page (scrypt)")
        added.append(name)
    return added
