"""``python -m kiosk.central ...``: the central server's command line (kiosk/central/cli.py)."""

import sys

from kiosk.central.cli import main

sys.exit(main())
