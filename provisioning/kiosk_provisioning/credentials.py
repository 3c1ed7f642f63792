"""The regency CA and each device's own keys: event signing key, MQTT client key and certificate, data key.

The CA private key is only read, to sign; it is never written anywhere. A device's private keys are kept in
that device's output folder only (``secrets/``, 0700 with 0600 files), so that a rebuild gives the device the
same identity instead of a new one the central server does not know.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk_contract import signing
from kiosk_provisioning import ProvisionError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CENTRAL_PUB = "central.pub"
DATA_KEY_BYTES = 32
RENEW_BEFORE = dt.timedelta(days=30)

_IssuerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


@dataclass(frozen=True)
class Authority:
    """The regency CA (certificate and private key) and the central server's public key."""

    cert: x509.Certificate
    key: _IssuerKey
    cert_pem: bytes
    central_pub: bytes  # empty when loaded for a revocation, which writes no image


@dataclass(frozen=True)
class DeviceSecrets:
    """One device's keys: PEM private keys, the raw data key, and the public parts to publish."""

    device_key: bytes
    device_pub: bytes
    mqtt_key: bytes
    mqtt_cert: bytes
    data_key: bytes

    @property
    def key_id(self) -> str:
        return signing.key_id_of(signing.private_key_from_pem(self.device_key))


def load_authority(folder: Path, passphrase: bytes | None, *, images: bool = True) -> Authority:
    """The CA from ``folder`` (ca.crt, ca.key, and for making images central.pub); ProvisionError says what is
    wrong."""
    if not folder.is_dir():
        raise ProvisionError(f"{folder}: the CA folder does not exist")
    for name in (CA_CERT, CA_KEY, *((CENTRAL_PUB,) if images else ())):
        if not (folder / name).is_file():
            raise ProvisionError(
                f"{folder}: the CA folder has no {name}; it must hold the regency CA's certificate ({CA_CERT}) "
                f"and private key ({CA_KEY}, PEM), and the central server's Ed25519 public key ({CENTRAL_PUB}: the "
                "public half of central.toml's signing.key_file; kiosks release events only on acks signed with it)"
            )
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    cert_pem = _read(cert_path, "CA certificate")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ProvisionError(f"{cert_path}: not a PEM certificate ({exc})") from None
    key_data = _read(key_path, "CA private key")
    try:
        key = serialization.load_pem_private_key(key_data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise ProvisionError(
                f"{key_path}: the CA key is encrypted; give its passphrase with --ca-passphrase-file FILE"
            ) from None
        raise ProvisionError(f"{key_path}: the CA key is not encrypted; drop --ca-passphrase-file") from None
    except ValueError as exc:
        raise ProvisionError(
            f"{key_path}: cannot read the CA private key (not an unencrypted PEM key, or a wrong passphrase): {exc}"
        ) from None
    if not isinstance(key, _IssuerKey):
        raise ProvisionError(f"{key_path}: a {type(key).__name__} cannot sign certificates")
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise ProvisionError(f"{key_path}: this private key does not belong to {cert_path}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ProvisionError(f"{cert_path}: not a CA certificate (basicConstraints CA:TRUE is missing)")
    if cert.not_valid_after_utc < _now() + RENEW_BEFORE:
        raise ProvisionError(f"{cert_path}: the CA certificate expires on {cert.not_valid_after_utc:%Y-%m-%d}")
    if not images:
        return Authority(cert, key, cert_pem, b"")
    try:
        signing.load_public_key(folder / CENTRAL_PUB)
    except signing.KeyFileError as exc:
        raise ProvisionError(f"{exc} (the central server's Ed25519 public key)") from None
    return Authority(cert, key, cert_pem, (folder / CENTRAL_PUB).read_bytes())


def device_secrets(folder: Path, device_id: str, authority: Authority, days: int, *, keep: bool) -> DeviceSecrets:
    """The device's keys from ``folder`` (made when missing), and a certificate issued when none fits.

    With ``keep`` new keys and certificates are stored in ``folder`` (``secrets/`` mode 0700, keys 0600);
    without it (a dry run) they exist in memory only.
    """
    secret_dir = folder / "secrets"
    device_key = _existing(secret_dir / "device.key")
    if device_key is None:
        device_key, _ = signing.generate_key()
    private = signing.private_key_from_pem(device_key, str(secret_dir / "device.key"))
    device_pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mqtt_key = _existing(secret_dir / "mqtt.key")
    if mqtt_key is None:
        mqtt_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    data_key = _existing(secret_dir / "data.key") or secrets.token_bytes(DATA_KEY_BYTES)
    if len(data_key) != DATA_KEY_BYTES:
        raise ProvisionError(f"{secret_dir / 'data.key'}: holds {len(data_key)} bytes, a data key has 32")
    mqtt_cert = _existing(folder / "mqtt.crt")
    if mqtt_cert is None or not _cert_fits(mqtt_cert, mqtt_key, device_id, authority):
        mqtt_cert = issue_certificate(mqtt_key, device_id, authority, days)
    result = DeviceSecrets(device_key, device_pub, mqtt_key, mqtt_cert, data_key)
    if keep:
        secret_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, data in (("device.key", device_key), ("mqtt.key", mqtt_key), ("data.key", data_key)):
            if not (secret_dir / name).exists():
                signing.write_private_key(secret_dir / name, data)
        for name, data in (("mqtt.crt", mqtt_cert), ("device.pub", device_pub)):
            if _existing(folder / name) != data:
                (folder / name).write_bytes(data)
    return result


def issue_certificate(key_pem: bytes, device_id: str, authority: Authority, days: int) -> bytes:
    """A TLS client certificate for the key, CN = device id (Mosquitto's use_identity_as_username)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    public = key.public_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .issuer_name(authority.cert.subject)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + dt.timedelta(days=days), authority.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False)
    )
    digest = None if isinstance(authority.key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    return builder.sign(authority.key, digest).public_bytes(serialization.Encoding.PEM)


def _cert_fits(cert_pem: bytes, key_pem: bytes, device_id: str, authority: Authority) -> bool:
    """Whether a kept certificate is still right: this key, this CN, signed by this CA, not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert.verify_directly_issued_by(authority.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (
        _public_der(cert.public_key()) == _public_der(key.public_key())
        and [n.value for n in names] == [device_id]
        and cert.not_valid_after_utc > _now() + RENEW_BEFORE
    )


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _existing(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read ({exc.strerror})") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_passphrase(path: Path | None) -> bytes | None:
    """The CA key's passphrase from a file (its first line), or None."""
    if path is None:
        return None
    data = _read(path, "passphrase file").splitlines()
    if not data or not data[0]:
        raise ProvisionError(f"{path}: the passphrase file is empty")
    if os.stat(path).st_mode & 0o077:
        raise ProvisionError(f"{path}: the passphrase file is open to group or others; run chmod 600 {path}")
    return data[0]
