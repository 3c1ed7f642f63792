"""The central server's configuration (``central.toml``): database, broker, ingest tuning, evidence retention, the
rules files, the device registry, the HR review page, what the reports print and the signing key. Loaded with the
contract's TOML loader (unknown keys, types and ranges are reported with their paths, all at once); see
examples/central.toml and docs/central.md."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kiosk_contract import signing
from kiosk_contract.errors import ConfigError
from kiosk_contract.settings import TableParser, opt, read_secret, read_toml

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the ledger lives."""

    url: str = opt(
        "sqlite:///ledger.sqlite",
        "postgresql://user@host:5432/db for a regency, or sqlite:///file (relative to this file's folder) or "
        "sqlite:////absolute/file for a single office.",
    )


@dataclass(frozen=True)
class BrokerConfig:
    """The MQTT broker every kiosk publishes to."""

    host: str = opt("127.0.0.1", "Broker host name or address.")
    port: int = opt(1883, "Broker port (8883 with TLS).", lo=1, hi=65535)
    topic_prefix: str = opt("presensi/v1", "Topic prefix; devices publish under <prefix>/<site>/<device>/...")
    client_id: str = opt("kiosk-central", "MQTT client id; with a persistent session the broker keeps messages for it.")
    shared_group: str = opt("", "Subscribe as $share/<group>/... so several ledger workers split the load ('' = off).")
    protocol: Literal["5", "3.1.1"] = opt("5", "MQTT protocol version.")
    keepalive_s: int = opt(30, "Keepalive interval.", lo=5, hi=3600)
    session_expiry_s: int = opt(7 * 86400, "How long the broker keeps the session while the ledger is down.", lo=0)
    reconnect_min_s: float = opt(1.0, "First reconnect delay.", lo=0.1, hi=600)
    reconnect_max_s: float = opt(60.0, "Longest reconnect delay.", lo=0.1, hi=3600)
    username: str | None = opt(None, "User name, for brokers with password authentication.")
    password_file: Path | None = opt(None, "File with the password (chmod 600), or credential:NAME.")
    tls_ca_file: Path | None = opt(None, "CA certificate that signed the broker's certificate (enables TLS).")
    tls_cert_file: Path | None = opt(None, "The central server's client certificate.")
    tls_key_file: Path | None = opt(None, "Its private key (chmod 600), or credential:NAME.")


@dataclass(frozen=True)
class IngestConfig:
    """How events are batched, acknowledged and asked for again."""

    batch_max: int = opt(200, "Most messages stored in one transaction (and acknowledged together).", lo=1, hi=10000)
    batch_wait_s: float = opt(0.05, "How long a batch waits for more messages before it is committed.", lo=0, hi=5)
    resend_interval_s: float = opt(30.0, "Least time between two resend requests for the same gap.", lo=0.01, hi=86400)
    resend_max_tries: int = opt(10, "Resend requests for one gap before it is logged as lost on the device.", lo=1)


@dataclass(frozen=True)
class EvidenceConfig:
    """Evidence photos (UU 27/2022: kept only for a set retention)."""

    retention_days: float = opt(90.0, "Days a photo is kept (open review cases keep theirs until decided).", lo=0.001)
    max_bytes: int = opt(1_000_000, "Largest photo accepted.", lo=1000, hi=20_000_000)


@dataclass(frozen=True)
class RulesConfig:
    """The files that describe offices, people and excused absences (loaded into the database)."""

    file: Path | None = opt(None, "TOML: offices with their schedules and the deduction table (examples/rules.toml).")
    employees: Path | None = opt(None, "CSV nip,name,unit: the roster, unit = office code (examples/employees.csv).")
    excused: Path | None = opt(None, "CSV nip,start,end,kind,reference: duty letters, leave, sickness.")


@dataclass(frozen=True)
class RegistryFilesConfig:
    """The files `provisioning/make-images` writes for the central server (docs/provisioning.md)."""

    file: Path | None = opt(None, "registry.json: every provisioned device's id, office and event-signing public key.")
    revoked_file: Path | None = opt(None, "revoked.json: key ids of stolen or retired kiosks (events refused).")


@dataclass(frozen=True)
class WebConfig:
    """The HR review page (`kiosk-central web`). It speaks plain HTTP: put TLS in front of it (a reverse proxy)."""

    host: str = opt("127.0.0.1", "Address to listen on (keep loopback behind a reverse proxy that adds TLS).")
    port: int = opt(8080, "Port to listen on.", lo=1, hi=65535)
    session_hours: float = opt(8.0, "A login lasts this long, then the reviewer logs in again.", lo=0.01, hi=720)
    cookie_secure: bool = opt(True, "Mark the session cookie Secure (only sent over HTTPS); false only for plain "
                                   "HTTP on loopback.")
    max_failed_logins: int = opt(5, "Failed logins of one user name within lockout_min that lock it.", lo=1,
                                hi=1000)
    lockout_min: float = opt(15.0, "How long failures count, and how long a locked name stays locked.", lo=0.1,
                                hi=1440)
    page_size: int = opt(25, "Cases per page of the queue and of the decided list.", lo=1, hi=500)
    secret_key_file: Path | None = opt(None, "File with the site's secret key (chmod 600, or credential:NAME); "
                                             "required with PostgreSQL, kept beside an SQLite ledger otherwise.")
    allowed_hosts: tuple[str, ...] = opt(("127.0.0.1", "localhost"), "Host names the site answers to (the proxy's "
                                                                    "server_name).")
    trusted_origins: tuple[str, ...] = opt((), "Origins allowed to post forms, e.g. https://presensi.example.go.id.")
    time_zone: str = opt("Asia/Makassar", "The zone pages show times in (WITA by default).")
    min_password_length: int = opt(12, "Shortest password accepted.", lo=8, hi=128)
    max_upload_bytes: int = opt(5_000_000, "Largest form or upload (a roster file) accepted.", lo=10_000,
                                hi=100_000_000)
    static_root: Path | None = opt(None, "Folder `kiosk-central manage collectstatic` fills for the proxy to serve.")


@dataclass(frozen=True)
class ReportsConfig:
    """What the reports print beyond the recap (`kiosk-central recap` and the HR web's downloads and printable page;
    the CLI's --regency, --place and --signers override these)."""

    regency: str = opt("", "Printed above each report's title, like 'Pemerintah Kabupaten Contoh' ('' = none).")
    place: str = opt("", "The town printed before the date of the signature, like 'Tideng Pale' ('' = none).")
    signers_file: Path | None = opt(None, "CSV office,role,name,nip of who signs (role kepala or pengelola; office "
                                          "'*' for every office without its own); without one a block keeps blank "
                                          "lines to sign on.")


@dataclass(frozen=True)
class SigningConfig:
    """The central server's Ed25519 key: it signs every ack and command; kiosks trust its public key
    (mqtt.central_key_file in their kiosk.toml)."""

    key_file: Path | None = opt(None, "The central Ed25519 private key (PEM; chmod 600, or credential:NAME).")
    command_ttl_days: float = opt(
        30.0, "A command that changes a kiosk (a gallery push) expires this long after it is issued.", lo=0.01, hi=365
    )


@dataclass(frozen=True)
class DeviceEntry:
    """One kiosk of the registry: its id, its office and the public keys its events are signed with."""

    id: str = opt(dataclasses.MISSING, "Device id (device.id in its kiosk.toml).")
    office: str = opt(dataclasses.MISSING, "Office code of the rules file.")
    public_keys: tuple[Path, ...] = opt(
        dataclasses.MISSING, "PEM files of the device's Ed25519 public keys.", min_items=1
    )
    revoked: bool = opt(False, "A revoked device's events are rejected (stolen or retired kiosk).")


@dataclass(frozen=True)
class CentralConfig:
    """The whole central.toml."""

    database: DatabaseConfig = opt(DatabaseConfig(), "The ledger database.")
    broker: BrokerConfig = opt(BrokerConfig(), "The MQTT broker.")
    ingest: IngestConfig = opt(IngestConfig(), "Batching, acks and resends.")
    evidence: EvidenceConfig = opt(EvidenceConfig(), "Evidence photos.")
    rules: RulesConfig = opt(RulesConfig(), "Rules files.")
    registry: RegistryFilesConfig = opt(RegistryFilesConfig(), "The device registry as provisioning writes it.")
    web: WebConfig = opt(WebConfig(), "The HR review page.")
    reports: ReportsConfig = opt(ReportsConfig(), "Regency, place and signatories printed on the reports.")
    signing: SigningConfig = opt(SigningConfig(), "The central signing key.")
    devices: tuple[DeviceEntry, ...] = opt((), "More devices of the registry, written by hand.")


def load_central_config(path: Path | str) -> CentralConfig:
    """Read and check central.toml; relative paths (and a relative sqlite:/// file) are taken from its folder."""
    path = Path(path)
    data = read_toml(path, "on the server it is /etc/kiosk/central.toml (start from examples/central.toml)")
    parser = TableParser(path.absolute().parent)
    cfg: CentralConfig = parser.table(CentralConfig, data, "")
    seen: dict[str, int] = {}
    for i, device in enumerate(cfg.devices):
        if device.id in seen:
            parser.report(f"devices[{i}].id", f"{device.id!r} is already devices[{seen[device.id]}]")
        seen.setdefault(device.id, i)
    if parser.problems:
        raise ConfigError(str(path), parser.problems)
    if cfg.reports.signers_file is not None:
        from kiosk_central.reports import load_signers  # reports builds on the ledger; only its CSV check is needed

        try:
            load_signers(cfg.reports.signers_file)
        except ConfigError as exc:
            raise ConfigError(f"{path}: reports.signers_file {exc.source}", exc.problems) from None
    url = cfg.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        absolute = path.absolute().parent / url[len("sqlite:///") :]
        cfg = dataclasses.replace(cfg, database=DatabaseConfig(url=f"sqlite:///{absolute}"))
    return cfg


def signing_key(cfg: CentralConfig) -> Ed25519PrivateKey:
    """The central private key of ``[signing] key_file``; ConfigError when it is not set or not readable."""
    if cfg.signing.key_file is None:
        raise ConfigError("signing.key_file", ["signing.key_file: not set; the central server signs every ack and "
                                               "command with its Ed25519 key (generate it with provisioning's CA step "
                                               "or `openssl genpkey -algorithm ed25519`)"])
    data = read_secret(cfg.signing.key_file, key="signing.key_file")
    return signing.private_key_from_pem(data, "signing.key_file")
