"""``kiosk-central manage --config central.toml subscribe``: the ledger's MQTT subscriber as a Django management
command, the same code as ``kiosk-central serve`` (:func:`kiosk_central.cli.serve`): it stores, acknowledges and
re-dates the kiosks' events until SIGTERM or SIGINT. Either runs as its own systemd service beside gunicorn."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from kiosk_contract.runtime import stop_on_signals


class Command(BaseCommand):
    help = ("Subscribe to every kiosk: store, acknowledge and re-date their events (what `kiosk-central serve` "
            "does), until SIGTERM or SIGINT.")
    requires_system_checks = ()  # the web's checks are not the subscriber's

    def handle(self, *args: Any, **options: Any) -> None:
        from kiosk_central.cli import EXIT_OK, serve

        cfg = getattr(settings, "KIOSK_CENTRAL", None)
        if cfg is None:
            raise CommandError("no central.toml: run it as `kiosk-central manage --config central.toml subscribe`")
        with stop_on_signals() as stop:
            code = serve(cfg, stop)
        if code != EXIT_OK:
            raise CommandError(f"the subscriber stopped with status {code}", returncode=code)
