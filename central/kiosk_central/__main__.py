"""``python -m kiosk_central ...``: the central server's command line (cli.py; installed as `kiosk-central`)."""

import sys

from kiosk_central.cli import main

sys.exit(main())
