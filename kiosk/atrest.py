"""The device data key: read from a key file or the Raspberry Pi's OTP private key, it opens the sealed gallery and
evidence photos (kiosk_contract.sealing). See docs/privacy.md for what each key mode protects against.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

from kiosk.config import DeviceConfig, read_secret
from kiosk_contract.errors import ConfigError, KioskError
from kiosk_contract.sealing import KEY_LEN, DataCipher

# The firmware mailbox call of Raspberry Pi's `rpi-otp-private-key` (usbboot/rpi-eeprom tools): tag 0x00030081
# (get the customer private key), 40-byte value buffer: start row 0, 8 rows, 8 words for the answer.
OTP_TAG = 0x00030081
VCMAILBOX_ARGS = ("0x00030081", "40", "40", "0", "8", *("0",) * 8)
_RESPONSE_OK = 0x80000000
_OTP_HINT = (
    'device.data_key = "otp" reads the Raspberry Pi 4/5 OTP private key with vcmailbox, which needs /dev/vcio '
    "(the kiosk user in group video, and DeviceAllow=/dev/vcio in kiosk.service); otherwise use "
    'device.data_key = "file"'
)


class DataKeyError(KioskError):
    """The device data key cannot be obtained (OTP not readable or not programmed)."""


def open_cipher(device: DeviceConfig, *, read_otp: Callable[[], bytes] | None = None) -> DataCipher | None:
    """The cipher for ``device.data_key`` (None for "none"); ``read_otp`` replaces :func:`read_otp_key` in tests."""
    if device.data_key == "none":
        return None
    if device.data_key == "file":
        ref = device.data_key_file
        if ref is None:
            raise ConfigError(
                "device.data_key_file",
                ['device.data_key_file: required when device.data_key = "file" (a 32-byte key file, chmod 600)'],
            )
        key = read_secret(ref, key="device.data_key_file")
        if len(key) != KEY_LEN or not any(key):
            what = "all zeros" if len(key) == KEY_LEN else f"{len(key)} bytes"
            raise ConfigError(
                str(ref),
                [
                    f"device.data_key_file: the data key must be {KEY_LEN} random bytes, this one is {what}; "
                    f"create it with: head -c {KEY_LEN} /dev/urandom > FILE (chmod 600; not echo, which adds "
                    "a newline). A new key cannot read data sealed with the old one."
                ],
            )
        return DataCipher(key, f"device.data_key_file {ref}")
    return DataCipher((read_otp or read_otp_key)(), "the Raspberry Pi OTP private key")


def read_otp_key(vcmailbox: str = "vcmailbox", timeout_s: float = 10.0) -> bytes:
    """The 32-byte OTP private key of a Raspberry Pi 4/5, read through the firmware mailbox with ``vcmailbox``."""
    exe = shutil.which(vcmailbox)
    if exe is None:
        raise DataKeyError(f"{vcmailbox} is not installed (Raspberry Pi OS package raspi-utils); {_OTP_HINT}")
    try:
        done = subprocess.run(
            [exe, *VCMAILBOX_ARGS], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataKeyError(f"cannot run {exe}: {exc}; {_OTP_HINT}") from None
    if done.returncode != 0:
        said = " ".join((done.stdout + " " + done.stderr).split())[:300]
        raise DataKeyError(f"{exe} failed (exit status {done.returncode}): {said}; {_OTP_HINT}")
    return parse_otp_response(done.stdout)


def parse_otp_response(text: str) -> bytes:
    """The key in vcmailbox's answer to :data:`VCMAILBOX_ARGS` (16 words ``0x%08x``; the key is words 7 to 14).

    An all-zero key means the OTP rows were never programmed, which is refused.
    """
    try:
        words = [int(w, 16) for w in text.split()]
    except ValueError:
        raise DataKeyError(f"unexpected vcmailbox output {text.strip()[:200]!r}; {_OTP_HINT}") from None
    if len(words) < 16 or words[2] != OTP_TAG:
        raise DataKeyError(f"unexpected vcmailbox output {text.strip()[:200]!r} (expected 16 words); {_OTP_HINT}")
    if words[1] != _RESPONSE_OK or not words[4] & 0x80000000:
        raise DataKeyError(
            f"the firmware did not answer the OTP private key request (response 0x{words[1]:08x}, tag "
            f"0x{words[4]:08x}): this board or firmware has no OTP private key (Raspberry Pi 4 or 5 with current "
            f'firmware needed); use device.data_key = "file"'
        )
    key = b"".join(w.to_bytes(4, "big") for w in words[7:15])
    if not any(key):
        raise DataKeyError(
            "the Raspberry Pi OTP private key is not programmed (all zeros): program it once with "
            "`rpi-otp-private-key -w $(openssl rand -hex 32)` (permanent; keep a copy of the key if events must "
            'survive a dead board, see docs/privacy.md), or use device.data_key = "file"'
        )
    return key
