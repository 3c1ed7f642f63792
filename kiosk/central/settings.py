"""The central server's configuration (``central.toml``): database, broker, ingest tuning, evidence retention, the
rules files, the device registry and the HR review page. Loaded with the kiosk's own TOML loader (unknown keys,
types and ranges are reported with their paths, all at once); see examples/central.toml and docs/central.md."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kiosk.config import _f, _Parser
from kiosk.errors import ConfigError


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the ledger lives."""

    url: str = _f(
        "sqlite:///ledger.sqlite",
        "postgresql://user@host:5432/db for a regency, or sqlite:///file (relative to this file's folder) or "
        "sqlite:////absolute/file for a single office.",
    )


@dataclass(frozen=True)
class BrokerConfig:
    """The MQTT broker every kiosk publishes to."""

    host: str = _f("127.0.0.1", "Broker host name or address.")
    port: int = _f(1883, "Broker port (8883 with TLS).", lo=1, hi=65535)
    topic_prefix: str = _f("presensi/v1", "Topic prefix; devices publish under <prefix>/<site>/<device>/...")
    client_id: str = _f("kiosk-central", "MQTT client id; with a persistent session the broker keeps messages for it.")
    shared_group: str = _f("", "Subscribe as $share/<group>/... so several ledger workers split the load ('' = off).")
    protocol: Literal["5", "3.1.1"] = _f("5", "MQTT protocol version.")
    keepalive_s: int = _f(30, "Keepalive interval.", lo=5, hi=3600)
    session_expiry_s: int = _f(7 * 86400, "How long the broker keeps the session while the ledger is down.", lo=0)
    reconnect_min_s: float = _f(1.0, "First reconnect delay.", lo=0.1, hi=600)
    reconnect_max_s: float = _f(60.0, "Longest reconnect delay.", lo=0.1, hi=3600)
    username: str | None = _f(None, "User name, for brokers with password authentication.")
    password_file: Path | None = _f(None, "File with the password (chmod 600), or credential:NAME.")
    tls_ca_file: Path | None = _f(None, "CA certificate that signed the broker's certificate (enables TLS).")
    tls_cert_file: Path | None = _f(None, "The central server's client certificate.")
    tls_key_file: Path | None = _f(None, "Its private key (chmod 600), or credential:NAME.")


@dataclass(frozen=True)
class IngestConfig:
    """How events are batched, acknowledged and asked for again."""

    batch_max: int = _f(200, "Most messages stored in one transaction (and acknowledged together).", lo=1, hi=10000)
    batch_wait_s: float = _f(0.05, "How long a batch waits for more messages before it is committed.", lo=0, hi=5)
    resend_interval_s: float = _f(30.0, "Least time between two resend requests for the same gap.", lo=0.01, hi=86400)
    resend_max_tries: int = _f(10, "Resend requests for one gap before it is logged as lost on the device.", lo=1)


@dataclass(frozen=True)
class EvidenceConfig:
    """Evidence photos (UU 27/2022: kept only for a set retention)."""

    retention_days: float = _f(90.0, "Days a photo is kept (open review cases keep theirs until decided).", lo=0.001)
    max_bytes: int = _f(1_000_000, "Largest photo accepted.", lo=1000, hi=20_000_000)


@dataclass(frozen=True)
class RulesConfig:
    """The files that describe offices, people and excused absences (loaded into the database)."""

    file: Path | None = _f(None, "TOML: offices with their schedules and the deduction table (examples/rules.toml).")
    employees: Path | None = _f(None, "CSV nip,name,unit: the roster, unit = office code (examples/employees.csv).")
    excused: Path | None = _f(None, "CSV nip,start,end,kind,reference: duty letters, leave, sickness.")


@dataclass(frozen=True)
class RegistryFilesConfig:
    """The files `provisioning/make-images` writes for the central server (docs/provisioning.md)."""

    file: Path | None = _f(None, "registry.json: every provisioned device's id, office and event-signing public key.")
    revoked_file: Path | None = _f(None, "revoked.json: key ids of stolen or retired kiosks; their events are refused.")


@dataclass(frozen=True)
class WebConfig:
    """The HR review page (`kiosk central web`). It speaks plain HTTP: put TLS in front of it (a reverse proxy)."""

    host: str = _f("127.0.0.1", "Address to listen on (keep loopback behind a reverse proxy that adds TLS).")
    port: int = _f(8080, "Port to listen on.", lo=1, hi=65535)
    session_hours: float = _f(8.0, "A login lasts this long, then the reviewer logs in again.", lo=0.01, hi=720)
    cookie_secure: bool = _f(True, "Mark the session cookie Secure (only sent over HTTPS); false only for plain "
                                   "HTTP on loopback.")
    max_failed_logins: int = _f(5, "Failed logins of one user name within lockout_min that lock it.", lo=1,
                                hi=1000)
    lockout_min: float = _f(15.0, "How long failures count, and how long a locked name stays locked.", lo=0.1,
                                hi=1440)
    page_size: int = _f(25, "Cases per page of the queue and of the decided list.", lo=1, hi=500)


@dataclass(frozen=True)
class DeviceEntry:
    """One kiosk of the registry: its id, its office and the public keys its events are signed with."""

    id: str = _f(dataclasses.MISSING, "Device id (device.id in its kiosk.toml).")
    office: str = _f(dataclasses.MISSING, "Office code of the rules file.")
    public_keys: tuple[Path, ...] = _f(
        dataclasses.MISSING, "PEM files of the device's Ed25519 public keys.", min_items=1
    )
    revoked: bool = _f(False, "A revoked device's events are rejected (stolen or retired kiosk).")


@dataclass(frozen=True)
class CentralConfig:
    """The whole central.toml."""

    database: DatabaseConfig = _f(DatabaseConfig(), "The ledger database.")
    broker: BrokerConfig = _f(BrokerConfig(), "The MQTT broker.")
    ingest: IngestConfig = _f(IngestConfig(), "Batching, acks and resends.")
    evidence: EvidenceConfig = _f(EvidenceConfig(), "Evidence photos.")
    rules: RulesConfig = _f(RulesConfig(), "Rules files.")
    registry: RegistryFilesConfig = _f(RegistryFilesConfig(), "The device registry as provisioning writes it.")
    web: WebConfig = _f(WebConfig(), "The HR review page.")
    devices: tuple[DeviceEntry, ...] = _f((), "More devices of the registry, written by hand.")


def load_central_config(path: Path | str) -> CentralConfig:
    """Read and check central.toml; relative paths (and a relative sqlite:/// file) are taken from its folder."""
    path = Path(path)
    data = read_toml(path, "on the server it is /etc/kiosk/central.toml (start from examples/central.toml)")
    parser = _Parser(path.absolute().parent)
    cfg: CentralConfig = parser.table(CentralConfig, data, "")
    seen: dict[str, int] = {}
    for i, device in enumerate(cfg.devices):
        if device.id in seen:
            parser.report(f"devices[{i}].id", f"{device.id!r} is already devices[{seen[device.id]}]")
        seen.setdefault(device.id, i)
    if parser.problems:
        raise ConfigError(str(path), parser.problems)
    url = cfg.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        absolute = path.absolute().parent / url[len("sqlite:///") :]
        cfg = dataclasses.replace(cfg, database=DatabaseConfig(url=f"sqlite:///{absolute}"))
    return cfg


def read_toml(path: Path, hint: str) -> dict[str, Any]:
    """A TOML file as a dict; ConfigError naming the file and what to do when it is missing or malformed."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(str(path), [f"file not found; {hint}"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (bad byte at offset {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"TOML syntax error: {exc}"]) from None
