"""Sealed data at rest: authenticated encryption of gallery files and evidence photos under a device data key.

One 32-byte device data key never touches data directly: HKDF-SHA256 derives one AES-256-GCM key per purpose. Every
blob is ``nonce (12 random bytes) | ciphertext | tag (16 bytes)``, and its associated data names the purpose and,
where the caller gives one, a context (the event seq of an evidence photo), so a blob cannot be moved to another
purpose or row. ``key_id`` (16 hex digits, also derived by HKDF) is stored beside encrypted data so that a wrong key
is told apart from damaged data. The device reads the key (kiosk/atrest.py); the image script seals each device's
gallery with it; both use this one definition. See docs/privacy.md.
"""

from __future__ import annotations

import os
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kiosk_contract.errors import KioskError

Purpose = Literal["gallery", "evidence"]
KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = NONCE_LEN + TAG_LEN  # bytes a sealed blob has beyond its plaintext
_INFO: dict[Purpose, bytes] = {"gallery": b"kiosk gallery v1", "evidence": b"kiosk evidence v1"}
_KEY_ID_INFO = b"kiosk key id v1"


class SealError(KioskError):
    """A sealed blob fails authentication: made with another key, for another purpose or row, or damaged."""


def _derive(device_key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(device_key)


class DataCipher:
    """AES-256-GCM with one key per purpose, derived from the device data key; ``source`` names where it came from.

    >>> cipher = DataCipher(os.urandom(32), "test")
    >>> cipher.open("evidence", cipher.seal("evidence", b"jpeg", b"7"), b"7")
    b'jpeg'
    """

    def __init__(self, device_key: bytes, source: str) -> None:
        if len(device_key) != KEY_LEN:
            raise ValueError(f"a device data key is {KEY_LEN} bytes, not {len(device_key)}")
        self.source = source
        self.key_id = _derive(device_key, _KEY_ID_INFO, 8).hex()
        self._aead = {purpose: AESGCM(_derive(device_key, info, KEY_LEN)) for purpose, info in _INFO.items()}

    def seal(self, purpose: Purpose, plaintext: bytes, context: bytes = b"") -> bytes:
        """``nonce | ciphertext | tag`` of ``plaintext``, bound to ``purpose`` and ``context``."""
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead[purpose].encrypt(nonce, plaintext, _INFO[purpose] + context)

    def open(self, purpose: Purpose, blob: bytes, context: bytes = b"") -> bytes:
        """The plaintext of a sealed blob; :class:`SealError` when it fails authentication."""
        if len(blob) < OVERHEAD:
            raise SealError(f"sealed {purpose} data is too short ({len(blob)} bytes): truncated")
        try:
            return self._aead[purpose].decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], _INFO[purpose] + context)
        except InvalidTag:
            raise SealError(
                f"sealed {purpose} data fails authentication (another key, truncated, damaged or tampered with)"
            ) from None

    def __repr__(self) -> str:
        return f"DataCipher(key_id={self.key_id!r}, source={self.source!r})"
