"""``python -m kiosk_central ...``: the central server's command line (kiosk/central/cli.py)."""

import sys

from kiosk_central.cli import main

sys.exit(main())
