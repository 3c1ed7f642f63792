"""Revoking a stolen or lost kiosk: its MQTT certificate goes on the CA's revocation list, its keys are destroyed.

``revoke(out, authority, device_ids)`` records each device's certificate serial and event-signing key id in
``<out>/revoked.json``, writes ``<out>/crl.pem`` (every revoked serial, signed by the regency CA) for Mosquitto's
``crlfile``, and deletes the device's private keys, sealed gallery, manifest and image from ``<out>``, so that the
next ``make-images`` run gives a replacement device of the same id a new identity. The central server drops
events signed with a revoked key id (docs/provisioning.md, "Revoking a stolen kiosk").
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

from kiosk_contract import signing
from kiosk_contract.fsutil import write_atomic
from kiosk_provisioning import ProvisionError
from kiosk_provisioning.credentials import Authority

REVOKED = "revoked.json"
CRL = "crl.pem"
CRL_VALID = dt.timedelta(days=365)
"""A CRL past its next update makes Mosquitto refuse every client: run ``revoke`` (with no device) within a year
to sign a fresh one."""


def revoke(out: Path, authority: Authority, device_ids: list[str], *, now: dt.datetime | None = None) -> list[str]:
    """Revoke ``device_ids`` (none: only sign a fresh CRL); returns what was done, a line each."""
    now = now or dt.datetime.now(dt.UTC)
    path = out / REVOKED
    try:
        entries: list[dict[str, str]] = json.loads(path.read_text()) if path.exists() else []
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"{path}: cannot read the revocation record ({exc}); restore it from backup") from None
    done: list[str] = []
    plans = [_revocation(out, device_id, now) for device_id in device_ids]  # every input checked before any change
    for entry, folder in plans:
        entries.append(entry)
        for name in ("secrets", "manifest.json", f"{entry['device_id']}.img"):
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        done.append(
            f"{entry['device_id']}: certificate serial {entry['cert_serial']} and key {entry['key_id']} revoked; "
            f"its private keys and image are deleted from {folder}"
        )
    write_atomic(path, json.dumps(entries, indent=2, sort_keys=True).encode() + b"\n")
    write_atomic(out / CRL, revocation_list(authority, [int(e["cert_serial"]) for e in entries], now))
    done.append(f"{out / CRL}: {len(entries)} revoked certificate(s), valid until {now + CRL_VALID:%Y-%m-%d}")
    return done


def revocation_list(authority: Authority, serials: list[int], now: dt.datetime) -> bytes:
    """A PEM CRL of ``serials`` signed by the regency CA, valid for :data:`CRL_VALID`."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + CRL_VALID)
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    digest = None if isinstance(authority.key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    return builder.sign(authority.key, digest).public_bytes(serialization.Encoding.PEM)


def _revocation(out: Path, device_id: str, now: dt.datetime) -> tuple[dict[str, str], Path]:
    """The record for one device, from its certificate and public key in ``<out>/devices/<id>/``."""
    folder = out / "devices" / device_id
    cert_path, pub_path = folder / "mqtt.crt", folder / "secrets" / "device.key"
    if not cert_path.is_file() or not pub_path.is_file():
        raise ProvisionError(
            f"{folder}: no certificate or key of {device_id!r} here; give the --out folder its image was made in "
            "(or the device was already revoked: see revoked.json)"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key_id = signing.key_id_of(signing.private_key_from_pem(pub_path.read_bytes(), str(pub_path)))
    except (ValueError, signing.KeyFileError) as exc:
        raise ProvisionError(f"{folder}: cannot read {device_id}'s certificate or key: {exc}") from None
    entry = {
        "device_id": device_id,
        "cert_serial": str(cert.serial_number),
        "key_id": key_id,
        "revoked_at": now.isoformat(timespec="seconds"),
    }
    return entry, folder
