"""``kiosk-central web``: the site under gunicorn, started from the CLI with central.toml's ``[web]`` address and
gunicorn's own safety limits (sync workers behind a buffering proxy: a slow client holds one worker for at most
``timeout`` seconds, then the worker is replaced). Production runs the same through deploy/gunicorn.conf.py and
systemd; both first bring the HR tables up to date (``migrate``) and import the old page's reviewers."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from kiosk_central.settings import CentralConfig
from kiosk_contract.errors import KioskError

log = logging.getLogger(__name__)

APPS = ("contenttypes", "auth", "admin", "sessions", "hr")
DEFAULTS: dict[str, Any] = {
    "worker_class": "sync",
    "workers": 2,
    "timeout": 30,  # a request (or a slow client) longer than this has its worker replaced
    "graceful_timeout": 10,
    "keepalive": 2,
    "limit_request_line": 4094,
    "limit_request_fields": 50,
    "limit_request_field_size": 8190,
    "max_requests": 2000,  # workers are renewed now and then
    "max_requests_jitter": 200,
    "accesslog": None,  # access lines would carry paths and addresses: the proxy logs them
    "errorlog": "-",
    "proc_name": "kiosk-central-web",
    "forwarded_allow_ips": "127.0.0.1,::1",
    "control_socket_disable": True,  # no runtime control socket in $HOME (systemd's ProtectHome forbids it anyway)
}


def prepare(cfg: CentralConfig) -> None:
    """Configure Django, create or update the HR tables, import the old page's reviewers."""
    from django.core.management import call_command

    from kiosk_central.hr.apps import private_sqlite
    from kiosk_central.site import setup

    if cfg.database.url.startswith("sqlite:///"):
        private_sqlite(Path(cfg.database.url[len("sqlite:///"):]))
    setup(cfg)
    from kiosk_central.hr.management.commands.import_reviewers import old_reviewers

    for app in APPS:
        call_command("migrate", app, interactive=False, verbosity=0)
    from kiosk_central.hr import accounts

    added = accounts.import_reviewers(old_reviewers(), "kiosk-central web (start)")
    if added:
        log.info("HR web: imported %d reviewer(s) of the old page: %s", len(added), ", ".join(added))


class WebApplication(BaseApplication):
    """gunicorn around the site's WSGI application."""

    def __init__(self, cfg: CentralConfig, options: dict[str, Any]) -> None:
        self.central = cfg
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application()


def options_for(cfg: CentralConfig, config_file: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """gunicorn's settings: the defaults above, a gunicorn.conf.py, then the command line's."""
    options = dict(DEFAULTS)
    if config_file is not None:
        namespace: dict[str, Any] = {"__file__": str(config_file)}
        exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)  # the administrator's own file
        options.update({k: v for k, v in namespace.items() if not k.startswith("_") and not callable(v)
                        and isinstance(v, str | int | float | bool | list | tuple | type(None))})
    options["bind"] = [f"{cfg.web.host}:{cfg.web.port}" if ":" not in cfg.web.host
                       else f"[{cfg.web.host}]:{cfg.web.port}"]
    options.update({k: v for k, v in overrides.items() if v is not None})
    return options


def check_address(cfg: CentralConfig) -> None:
    """Refuse at once, naming the setting, when the address is taken (gunicorn would retry, then exit 1)."""
    family = socket.AF_INET6 if ":" in cfg.web.host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((cfg.web.host, cfg.web.port))
        except OSError as exc:
            raise KioskError(f"cannot listen on {cfg.web.host}:{cfg.web.port} ({exc.strerror or exc}): choose "
                             "another web.host or web.port in central.toml") from exc


def run(cfg: CentralConfig, config_path: Path, options: dict[str, Any]) -> int:
    """Serve until SIGTERM or SIGINT (gunicorn's arbiter handles the signals and stops the workers)."""
    check_address(cfg)
    os.environ["KIOSK_CENTRAL_CONFIG"] = str(config_path.absolute())
    prepare(cfg)
    from django.db import connections

    connections.close_all()  # the workers fork from here: each opens its own connections
    log.info("HR web: listening on http://%s (put TLS in front of it)", ", ".join(options["bind"]))
    WebApplication(cfg, options).run()
    return 0
