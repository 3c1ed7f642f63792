"""MQTT topics: ``<prefix>/<site>/<device>/<suffix>``, built and parsed in one place (docs/mqtt.md, "Topics")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """The topics of one device: ``<prefix>/<site>/<device>/...``."""

    base: str

    @classmethod
    def of(cls, prefix: str, site: str, device: str) -> Topics:
        for name, value in (("site", site), ("device id", device)):
            if not value or any(c in value for c in "/+#\0"):
                raise ValueError(f"the {name} {value!r} cannot be a topic segment (no '/', '+', '#')")
        return cls(f"{prefix.strip('/')}/{site}/{device}")

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def evidence(self) -> str:
        return f"{self.base}/evidence"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def online(self) -> str:
        return f"{self.base}/status/online"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd/result"
