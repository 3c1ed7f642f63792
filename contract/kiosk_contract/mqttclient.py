"""The one paho-mqtt client factory of the kiosk's publisher, the ledger's subscriber and the gallery publisher: TLS,
user name and password from secret files, reconnect delays, MQTT 5 or 3.1.1. paho is imported only when a client is
made (the ``mqtt`` extra of kiosk-contract)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from kiosk_contract.settings import read_secret, secret_file

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt


class BrokerSettings(Protocol):
    """What a paho client needs to reach a broker: the kiosk's ``[mqtt]`` and the ledger's ``[broker]``."""

    @property
    def protocol(self) -> Literal["5", "3.1.1"]: ...
    @property
    def reconnect_min_s(self) -> float: ...
    @property
    def reconnect_max_s(self) -> float: ...
    @property
    def tls_ca_file(self) -> Path | None: ...
    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_file(self) -> Path | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password_file(self) -> Path | None: ...


def paho_client(cfg: BrokerSettings, client_id: str, section: str, *, persistent: bool) -> mqtt.Client:
    """A paho 2.x client with TLS, user name and password as configured (secrets read with their mode checked,
    errors naming ``<section>.<key>``); ``persistent`` keeps the session while the client is away."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
    )
    # paho types the delays as int but computes with any number: keep sub-second minimums as configured
    client.reconnect_delay_set(
        min_delay=cfg.reconnect_min_s,  # type: ignore[arg-type]
        max_delay=max(cfg.reconnect_min_s, cfg.reconnect_max_s),  # type: ignore[arg-type]
    )
    if cfg.tls_ca_file is not None:
        keyfile = None
        if cfg.tls_key_file is not None:
            read_secret(cfg.tls_key_file, key=f"{section}.tls_key_file")  # refuses a key open to group or others
            keyfile = str(secret_file(cfg.tls_key_file, key=f"{section}.tls_key_file"))
        client.tls_set(
            ca_certs=str(cfg.tls_ca_file),
            certfile=None if cfg.tls_cert_file is None else str(cfg.tls_cert_file),
            keyfile=keyfile,
        )
    if cfg.username is not None:
        password = None
        if cfg.password_file is not None:
            raw = read_secret(cfg.password_file, key=f"{section}.password_file")
            password = raw.decode("utf-8").rstrip("\r\n")
        client.username_pw_set(cfg.username, password)
    return client
