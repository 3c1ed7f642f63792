"""The device list: one CSV row per kiosk (id, site, office name and code, hostname, Wi-Fi, broker), checked as a
whole."""

from __future__ import annotations

import csv
import difflib
import ipaddress
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiosk_contract.topics import is_office_code
from kiosk_provisioning import ProvisionError

REQUIRED = ("device_id", "site", "office", "office_code", "hostname", "wifi_ssid", "wifi_psk", "broker")
OPTIONAL = ("timezone",)
DEFAULT_MQTT_PORT = 8883

# The device id is an MQTT topic segment, a certificate CN and a folder name (the event schema's rule).
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOSTNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Device:
    """One kiosk of the device list."""

    line: int
    device_id: str
    site: str
    office: str  # the name the screen shows
    office_code: str  # the office's code in the central server's rules: its gallery and commands name it
    hostname: str
    wifi_ssid: str
    wifi_psk: str
    broker_host: str
    broker_port: int
    timezone: str


def read_devices(path: Path, default_timezone: str) -> list[Device]:
    """Every row of the CSV, validated; ProvisionError lists every problem with its line and column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ProvisionError(f"{path}: the device list does not exist") from None
    except UnicodeDecodeError:
        raise ProvisionError(f"{path}: the device list is not UTF-8 text; save it as CSV (UTF-8)") from None
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read the device list ({exc.strerror})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    problems = _check_header(header)
    if problems:
        raise ProvisionError(_report(path, problems))
    devices: list[Device] = []
    seen_id: dict[str, int] = {}
    seen_host: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            problems.append(f"line {line}: more fields than columns in the header")
            continue
        if not any(values.values()):
            continue
        device = _parse_row(values, line, default_timezone, problems)
        if device is None:
            continue
        for seen, value, column in ((seen_id, device.device_id, "device_id"), (seen_host, device.hostname, "hostname")):
            key = value.lower()
            if key in seen:
                problems.append(
                    f"line {line}: {column} {value!r} is already used on line {seen[key]}; it must be unique"
                )
            else:
                seen[key] = line
        devices.append(device)
    if not devices and not problems:
        problems.append("no devices: the file has a header but no rows")
    if problems:
        raise ProvisionError(_report(path, problems))
    return devices


def _report(path: Path, problems: list[str]) -> str:
    return f"{path}: {len(problems)} problem(s) in the device list:\n" + "\n".join(f"  - {p}" for p in problems)


def _check_header(header: list[str]) -> list[str]:
    if not header:
        return [f"the file is empty; the first line must name the columns: {','.join(REQUIRED)}"]
    problems = []
    allowed = REQUIRED + OPTIONAL
    for name in header:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            problems.append(f"unknown column {name!r}{hint}; the columns are {', '.join(allowed)}")
    for name in REQUIRED:
        if name not in header:
            problems.append(f"missing column {name!r}; the header must have {', '.join(REQUIRED)}")
    return problems


def _parse_row(values: dict[str, str], line: int, default_timezone: str, problems: list[str]) -> Device | None:
    before = len(problems)

    def bad(column: str, message: str) -> None:
        problems.append(f"line {line}, {column}: {message}")

    device_id = values["device_id"]
    if not _ID_RE.match(device_id):
        bad(
            "device_id", f"{device_id!r} is not a device id: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    site = values["site"]
    if not _ID_RE.match(site):
        bad("site", f"{site!r} is not a site name (a topic segment): 1-64 of A-Z a-z 0-9 . _ -")
    office = values["office"]
    if not office or len(office) > 120:
        bad("office", "the office name must have 1 to 120 characters")
    office_code = values["office_code"]
    if not is_office_code(office_code):
        bad("office_code", f"{office_code!r} is not an office code (1-64 of A-Z a-z 0-9 . _ -): the code of the "
            "office in the central server's rules, like bkpsdm")
    hostname = values["hostname"]
    if not _HOSTNAME_RE.match(hostname):
        bad("hostname", f"{hostname!r} is not a host name: 1-63 of a-z 0-9 and -, not starting or ending with -")
    ssid, psk = values["wifi_ssid"], values["wifi_psk"]
    if ssid and not 1 <= len(ssid.encode()) <= 32:
        bad("wifi_ssid", "a Wi-Fi network name has 1 to 32 bytes")
    if ssid and not _valid_psk(psk):
        bad("wifi_psk", "a WPA passphrase has 8 to 63 printable ASCII characters (or 64 hex digits)")
    if not ssid and psk:
        bad("wifi_ssid", "a Wi-Fi passphrase is given but no network name; leave both empty for a wired kiosk")
    host, port = _parse_broker(values["broker"], lambda message: bad("broker", message))
    timezone = values.get("timezone") or default_timezone
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        bad("timezone", f'{timezone!r} is not a time zone; use "Asia/Makassar", "Asia/Jakarta" or "Asia/Jayapura"')
    if len(problems) > before:
        return None
    return Device(line, device_id, site, office, office_code, hostname, ssid, psk, host, port, timezone)


def _valid_psk(psk: str) -> bool:
    if len(psk) == 64:
        return all(c in "0123456789abcdefABCDEF" for c in psk)
    return 8 <= len(psk) <= 63 and all(" " <= c <= "~" for c in psk)


def _parse_broker(text: str, bad: Callable[[str], None]) -> tuple[str, int]:
    """(host, port) from ``host``, ``host:port`` or ``[v6]:port``; reports through ``bad``."""
    usage = "write host or host:port, e.g. broker.example.go.id:8883"
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text)
    if not text or match is None:
        bad(f"{text!r} is not a broker address; {usage}")
        return "", 0
    host = match.group(1) or match.group(3) or ""
    port = int(match.group(2) or match.group(4) or DEFAULT_MQTT_PORT)
    if not 1 <= port <= 65535:
        bad(f"port {port} is out of range (1-65535)")
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            bad(f"{host!r} is not an IPv6 address; {usage}")
    elif not _valid_host(host):
        bad(f"{host!r} is not a host name or IPv4 address; {usage}")
    return host, port


def _valid_host(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_DNS_LABEL_RE.match(label) for label in labels)
