"""The Django project of the central server: its settings are built from ``central.toml`` (one configuration for
the subscriber, the CLI and the web), so nothing is configured twice.

- gunicorn and ``manage``-style runs: ``KIOSK_CENTRAL_CONFIG=/etc/kiosk/central.toml`` and
  ``DJANGO_SETTINGS_MODULE=kiosk_central.site.settings`` (``kiosk_central.site.wsgi`` sets the latter).
- in-process (the CLI, tests): :func:`setup` with a loaded :class:`~kiosk_central.settings.CentralConfig`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from kiosk_contract.errors import ConfigError

if TYPE_CHECKING:
    from kiosk_central.settings import CentralConfig

_lock = threading.Lock()
_database_only = False  # configured by setup_for_database, not yet by setup
HERE = Path(__file__).resolve().parent


def database_settings(url: str) -> dict[str, Any]:
    """Django's ``DATABASES`` entry for a ledger URL (``postgresql://user:pw@host:port/db?options=...`` or
    ``sqlite:////absolute/file``), the same URLs :mod:`kiosk_central.store` opens."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError("database.url", [f"database.url {url!r}: give the file, like sqlite:////var/lib/x.db"])
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path,
                "OPTIONS": {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA synchronous=FULL;"}}  # fmt: skip
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        options: dict[str, Any] = {"connect_timeout": 10}
        if "options" in query:
            options["options"] = query["options"][0]
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ConfigError("database.url", [f"database.url: {url.split('@')[-1]!r} is neither postgresql://... nor "
                                       "sqlite:////path"])  # fmt: skip


def secret_key(cfg: CentralConfig) -> str:
    """The key Django signs sessions and tokens with: ``web.secret_key_file`` (chmod 600, or credential:NAME), else
    a key kept beside an SQLite ledger (made once, 0600): the embedded single-office default needs no setup."""
    from kiosk_contract.settings import read_secret

    if cfg.web.secret_key_file is not None:
        return read_secret(cfg.web.secret_key_file, key="web.secret_key_file").decode().strip()
    url = cfg.database.url
    if not url.startswith("sqlite:///"):
        raise ConfigError("web.secret_key_file", ["web.secret_key_file: not set; a PostgreSQL deployment keeps the "
                                                  "site's secret key in a file (python -c 'import secrets; "
                                                  "print(secrets.token_urlsafe(50))' > key; chmod 600 key)"])
    path = Path(url[len("sqlite:///") :]).with_name("web-secret.key")
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key + "\n")
        return key


def django_settings(cfg: CentralConfig, key: str | None = None) -> dict[str, Any]:
    """Every Django setting of the central server, from its configuration (``key``: the secret key, instead of
    :func:`secret_key`'s)."""
    web = cfg.web
    return {
        "DEBUG": False,
        "SECRET_KEY": secret_key(cfg) if key is None else key,
        "ALLOWED_HOSTS": list(web.allowed_hosts),
        "CSRF_TRUSTED_ORIGINS": list(web.trusted_origins),
        "DATABASES": {"default": database_settings(cfg.database.url)},
        "INSTALLED_APPS": [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "kiosk_central.ledger",
            "kiosk_central.hr",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.locale.LocaleMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "ROOT_URLCONF": "kiosk_central.site.urls",
        "TEMPLATES": [{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]},
        }],
        "WSGI_APPLICATION": "kiosk_central.site.wsgi.application",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        # Argon2id first (OWASP's first choice); PBKDF2 (Django's default, 1,000,000+ iterations) still verifies.
        "PASSWORD_HASHERS": [
            "django.contrib.auth.hashers.Argon2PasswordHasher",
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        ],
        "AUTH_PASSWORD_VALIDATORS": [
            {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
            {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
             "OPTIONS": {"min_length": web.min_password_length}},
            {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
            {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
        ],
        "LANGUAGE_CODE": "id",
        "LANGUAGES": [("id", "Bahasa Indonesia"), ("en", "English")],
        "USE_I18N": True,
        "TIME_ZONE": web.time_zone,
        "USE_TZ": True,
        "STATIC_URL": "/static/",
        "STATIC_ROOT": str(web.static_root) if web.static_root else None,
        "LOGIN_URL": "/login/",
        "LOGIN_REDIRECT_URL": "/",
        "SESSION_COOKIE_AGE": int(web.session_hours * 3600),
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": True,
        "SESSION_COOKIE_SECURE": web.cookie_secure,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "CSRF_COOKIE_SECURE": web.cookie_secure,
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Strict",
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",  # no-referrer makes Chromium post Origin: null, which CSRF refuses
        # HSTS and the redirect to HTTPS are the reverse proxy's (deploy/nginx-kiosk-central.conf), not Django's.
        "SILENCED_SYSTEM_CHECKS": ["security.W004", "security.W008"],
        "X_FRAME_OPTIONS": "DENY",
        "DATA_UPLOAD_MAX_MEMORY_SIZE": web.max_upload_bytes,
        "FILE_UPLOAD_MAX_MEMORY_SIZE": web.max_upload_bytes,
        "DATA_UPLOAD_MAX_NUMBER_FIELDS": 2000,
        "LOGGING_CONFIG": None,  # the central server's own logging (kiosk_contract.runtime) stays in charge
        "KIOSK_CENTRAL": cfg,
    }


def setup(cfg: CentralConfig) -> None:
    """Configure Django for this process from ``cfg`` and load the apps; a later call with another database (tests)
    points the default connection at it. After :func:`setup_for_database`, every setting is taken from ``cfg``."""
    global _database_only
    import django
    from django.conf import settings

    with _lock:
        if not settings.configured:
            settings.configure(**django_settings(cfg))
            django.setup()
            return
        from django.db import connections

        if _database_only:  # configured for a ledger alone: now the whole site's settings
            for name, value in django_settings(cfg).items():
                if name not in ("INSTALLED_APPS", "DATABASES"):
                    setattr(settings, name, value)
            _database_only = False

        wanted = database_settings(cfg.database.url)
        settings.KIOSK_CENTRAL = cfg
        current = connections.settings["default"]
        if {k: current.get(k) for k in wanted} != wanted:
            connections.close_all()
            current.update(wanted)
            for alias in list(connections):
                if alias == "default":
                    with contextlib.suppress(AttributeError):  # not opened in this thread yet
                        del connections[alias]


def setup_for_database(url: str) -> None:
    """Configure Django, when nothing has yet, for a process that needs only the ledger's database at ``url`` (the
    subscriber, the CLI's ledger commands, tests: :meth:`kiosk_central.store.Ledger.migrate`): central.toml's defaults
    with this database, and a secret key made for this process (such a process signs nothing with it). A later
    :func:`setup` replaces these settings with its configuration's."""
    global _database_only
    import django
    from django.conf import settings

    from kiosk_central.settings import CentralConfig, DatabaseConfig

    with _lock:
        if settings.configured:
            return
        settings.configure(**django_settings(CentralConfig(database=DatabaseConfig(url=url)),
                                             key=secrets.token_urlsafe(50)))
        django.setup()
        _database_only = True
