"""``DJANGO_SETTINGS_MODULE`` for gunicorn and management runs: the settings of ``$KIOSK_CENTRAL_CONFIG``
(default /etc/kiosk/central.toml), built by :func:`kiosk_central.site.django_settings`."""

import os
from pathlib import Path

from kiosk_central.settings import load_central_config
from kiosk_central.site import django_settings

globals().update(django_settings(load_central_config(Path(os.environ.get("KIOSK_CENTRAL_CONFIG",
                                                                          "/etc/kiosk/central.toml")))))
