"""Passwords and session tokens of the HR review page.

Passwords are hashed with scrypt (memory-hard, in the standard library): ``scrypt$n$r$p$salt$hash`` with a random
16-byte salt, so a copy of the ledger does not give the passwords away cheaply. Session and form tokens are 32 random
bytes; the ledger keeps only the SHA-256 of a session token, so a copy of the ledger cannot be used to log in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB of memory per check, about 50 ms here
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
USER_NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
ROLES = ("reviewer", "admin")


def hash_password(password: str) -> str:
    """The stored form of a new password."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        found = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(found, expected)


def spend_check_time(password: str) -> None:
    """Do the work of one check for a user name that does not exist, so that it answers no faster than a wrong
    password (response time must not tell which names exist)."""
    _scrypt(password, bytes(16), SCRYPT_N, SCRYPT_R, SCRYPT_P)


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"the password must have at most {MAX_PASSWORD_CHARS} characters"
    return None


def user_name_problem(name: str) -> str | None:
    """Why a new user name is not acceptable, or None."""
    if USER_NAME.fullmatch(name) is None:
        return f"user name {name!r}: use 2-64 characters a-z, 0-9, '.', '_' or '-', starting with a letter"
    return None


def new_token() -> str:
    """A fresh random token for a cookie or a form."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the ledger keeps of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
