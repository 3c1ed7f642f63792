"""Ed25519 signatures over the canonical encoding of an event, an ack or a command (docs/events.md, "Signatures").

Canonical bytes: the event without its ``sig`` field, as JSON in UTF-8 with keys sorted (all keys are ASCII), no
whitespace (separators ``,`` and ``:``), non-ASCII characters as themselves (``ensure_ascii=False``). Values are
strings, integers (up to 2**63-1), booleans, null, objects; never floats (fractional quantities are fixed-decimal
strings), so every language produces the same bytes. The signature covers every field, ``seq`` included.

``key_id`` is the first 16 hex digits of SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk_contract import schema
from kiosk_contract.errors import KioskError

ALG = "ed25519"


class SignatureError(KioskError):
    """A message's signature is missing, made with an unknown key, malformed, or does not match its content."""


class KeyFileError(KioskError):
    """A key file is missing, unreadable, or not an Ed25519 key in PEM."""


def canonical_bytes(event: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: ``event`` without ``sig``, canonical JSON (raises TypeError on floats)."""
    _no_floats(event, "$")
    body = {k: v for k, v in event.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _no_floats(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise TypeError(f"{path}: floats are not allowed in a signed event (use a fixed-decimal string)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: keys must be strings, not {key!r}")
            _no_floats(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _no_floats(item, f"{path}[{i}]")
    elif not (value is None or isinstance(value, str | int | bool)):
        raise TypeError(f"{path}: {type(value).__name__} cannot be encoded in an event")


def wire(message: Mapping[str, Any]) -> bytes:
    """A signed ack, command or result as it goes on the wire: canonical JSON with its ``sig`` (events have
    :func:`kiosk_contract.schema.to_bytes`, which also bounds their size)."""
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return hashlib.sha256(raw_public_key(public)).hexdigest()[:16]


def sign(event: Mapping[str, Any], private_key: Ed25519PrivateKey, key_id: str | None = None) -> dict[str, Any]:
    """A copy of ``event`` with ``sig`` {alg, key_id, value}; ``key_id`` defaults to the key's own id."""
    kid = key_id if key_id is not None else key_id_of(private_key)
    signature = private_key.sign(canonical_bytes(event))
    signed = {k: v for k, v in event.items() if k != "sig"}
    signed["sig"] = {"alg": ALG, "key_id": kid, "value": base64.b64encode(signature).decode("ascii")}
    return signed


def verify(
    message: Mapping[str, Any],
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    what: str = "event",
    unknown_key_hint: str = "add the device's public key",
) -> None:
    """Return if ``message`` (an event, an ack, a command) carries a valid signature by one of ``public_keys`` (by key
    id); else SignatureError, worded for ``what``."""
    sig = message.get("sig") if isinstance(message, Mapping) else None
    if sig is None:
        raise SignatureError(f"the {what} has no signature (field sig is missing)")
    if not isinstance(sig, Mapping):
        raise SignatureError(f"the {what}'s sig field is not an object")
    if sig.get("alg") != ALG:
        raise SignatureError(f"unsupported signature algorithm {sig.get('alg')!r} (expected {ALG!r})")
    kid = sig.get("key_id")
    if not isinstance(kid, str) or kid not in public_keys:
        raise SignatureError(f"the {what} is signed with an unknown key id {str(kid)[:40]!r}; {unknown_key_hint}")
    value = sig.get("value")
    try:
        if not isinstance(value, str):
            raise ValueError
        signature = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError("the signature value is not base64") from exc
    if len(signature) != 64:
        raise SignatureError(f"the signature is {len(signature)} bytes, an Ed25519 signature is 64")
    try:
        data = canonical_bytes(message)
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"the {what} cannot be encoded canonically: {exc}") from exc
    try:
        public_keys[kid].verify(signature, data)
    except InvalidSignature:
        name = message.get("event_id") or message.get("request_id") or ""
        raise SignatureError(
            f"bad signature on {what} {str(name)[:40]!r} (key {kid}): the content was changed after signing, or it "
            "was signed by another key"
        ) from None


def seal(payload: bytes, seq: int, private_key: Ed25519PrivateKey, key_id: str | None = None) -> bytes:
    """The message to publish from a stored outbox body: add the outbox's ``seq``, sign, encode.

    Deterministic: the same body and seq always give the same bytes, so retries are identical.
    """
    body = schema.from_bytes(payload, complete=False)
    event = sign(schema.with_seq(body, seq), private_key, key_id)
    problems = schema.validate(event)
    if problems:
        raise schema.EventFormatError("sealed event is invalid: " + "; ".join(problems), problems)
    return schema.to_bytes(event)


def open_message(data: bytes, public_keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """Server side: parse, validate (EventFormatError) and verify (SignatureError) one message."""
    event = schema.from_bytes(data)
    verify(event, public_keys)
    return event


# ---------------------------------------------------------------------------------------------------- keys


def private_key_from_raw(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def generate_key() -> tuple[bytes, bytes]:
    """A new key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    return _private_pem(private), _public_pem(private.public_key())


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_private_key(path: Path, pem: bytes) -> None:
    """Write a private key readable by its owner only (0600), refusing to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file (unencrypted PKCS#8); KeyFileError says what is wrong."""
    return private_key_from_pem(_read(path, "private key"), str(path))


def private_key_from_pem(data: bytes, source: str = "private key") -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM bytes (e.g. from kiosk_contract.settings.read_secret); ``source`` names it."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{source}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{source}: the key is {type(key).__name__}, not Ed25519")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file; KeyFileError says what is wrong."""
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: the key is {type(key).__name__}, not Ed25519")
    return key


def load_public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """{key_id: key} for the given PEM files (what :func:`verify` takes)."""
    keys = [load_public_key(p) for p in paths]
    return {key_id_of(k): k for k in keys}


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path}: {what} file not found") from exc
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what} file ({exc.strerror})") from exc
