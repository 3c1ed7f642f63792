"""Device provisioning: turn an official Raspberry Pi OS Lite image into one ready image per kiosk.

Run by IT on a Linux workstation through ``provisioning/make-images`` (``python -m kiosk_provisioning images``);
see docs/provisioning.md. Images are written without mounting and without root: mtools for the FAT boot
partition, e2fsprogs' ``debugfs`` for the ext4 root. ``firstboot`` is the part that runs on the device.
"""

from __future__ import annotations

from kiosk_contract.errors import KioskError

__version__ = "0.2.0"


class ProvisionError(KioskError):
    """An input of the image script is wrong (the message names the file or field and what to do)."""
