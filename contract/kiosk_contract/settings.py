"""Typed TOML settings, shared by the kiosk's ``kiosk.toml``, the central server's ``central.toml`` and the image
script: frozen dataclasses whose fields carry their help text and allowed range, a loader that rejects unknown keys
and reports every problem at once with its key path (``recognizer.decision.accept_distance: ...``), secrets read from
files or systemd credentials, and the writer of commented TOML and of the markdown reference table.

Each field's ``metadata`` holds its help text (``doc``) and, for numbers, its allowed range (``min``/``max``); string
choices are ``Literal`` types. Hand-written rather than pydantic: the messages name the TOML key, the type TOML calls
it and a close match, the same dataclasses print the commented example files and the docs' reference tables, and the
device needs no extra compiled dependency.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import stat
import textwrap
import tomllib
import types
import typing
import zoneinfo
from dataclasses import field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from kiosk_contract.errors import ConfigError


def opt(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    min_items: int | None = None,
) -> Any:
    """A dataclass field with a default, help text, an optional numeric range and, for arrays, a least length.

    ``default=dataclasses.MISSING`` makes the key required (used for the keys of array-of-table entries).
    """
    meta: dict[str, Any] = {"doc": doc}
    if lo is not None:
        meta["min"] = lo
    if hi is not None:
        meta["max"] = hi
    if min_items is not None:
        meta["min_items"] = min_items
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)



_SECRET_WORDS = ("password", "secret", "token", "private")
_CREDENTIAL = "credential:"
TIME_ZONE_HINT = 'use an IANA name: "Asia/Makassar" (WITA), "Asia/Jakarta" (WIB) or "Asia/Jayapura" (WIT)'


class _Invalid(Exception):
    """A value that does not fit its field; the message says what was expected."""


_FAILED = object()
"""What ``TableParser.value`` returns for a value it reported a problem with (the field keeps its default)."""


class TableParser:
    """Walks the dataclass tree alongside the TOML tables, collecting problems instead of stopping.

    ``parser.table(Root, data, "")`` builds the dataclass; ``parser.problems`` then lists every finding, and
    ``report``/``clean``/``dirty`` let a caller add the checks that involve several keys.
    """

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.bad: set[str] = set()

    def report(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")
        self.bad.add(key)

    def clean(self, *keys: str) -> bool:
        """Whether none of these keys has a problem (checks between keys skip keys already reported)."""
        return not self.bad.intersection(keys)

    def check_time_zone(self, key: str, tz: str) -> None:
        """Report ``key`` unless ``tz`` is an IANA time zone this machine knows (with a close match as a hint)."""
        if not self.clean(key):
            return
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            by_lower = {name.lower(): name for name in zoneinfo.available_timezones()}
            close = difflib.get_close_matches(tz.lower(), list(by_lower), n=1)
            hint = f' (did you mean "{by_lower[close[0]]}"?)' if close else ""
            self.report(key, f"unknown time zone {toml_str(tz)}{hint}; {TIME_ZONE_HINT}")

    def dirty(self, prefix: str) -> bool:
        """Whether a problem was reported at ``prefix`` or anywhere inside it."""
        return any(k == prefix or k.startswith((prefix + ".", prefix + "[")) for k in self.bad)

    def table(self, cls: Any, data: object, path: str) -> Any:
        """An instance of dataclass ``cls`` from a TOML table; keys with problems keep their defaults.

        Returns ``_FAILED`` when a required key (a field without default) is missing or has a problem.
        """
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if _is_required(f)]
        if not isinstance(data, dict):
            where = "" if path.endswith("]") else f" ([{path}])"
            self.report(path, f"must be a table{where}, got {_describe(data)}")
            return _FAILED if required else cls()
        known = {f.name: f for f in fields}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for name, value in data.items():
            key = _join(path, name)
            if _is_secret_name(name):
                self.report(key, _secret_message(name))
            elif name not in known:
                self.report(key, _unknown_message(name, list(known), path))
            elif (converted := self.value(hints[name], known[name], value, key)) is not _FAILED:
                values[name] = converted
        absent = [name for name in required if name not in data]
        for name in absent:
            self.report(_join(path, name), f"required key missing; each entry needs {', '.join(required)}")
        if any(name not in values for name in required):
            return _FAILED
        return cls(**values)

    def value(self, tp: Any, f: dataclasses.Field[Any], value: object, key: str) -> Any:
        """The TOML ``value`` of field ``f`` as type ``tp``, or ``_FAILED`` after reporting its problems."""
        if dataclasses.is_dataclass(tp):
            return self.table(tp, value, key)
        if typing.get_origin(tp) is tuple:
            (inner,) = _tuple_item(tp)
            if not isinstance(value, list):
                self.report(key, f"must be an array, got {_describe(value)}")
                return _FAILED
            before = len(self.problems)
            items = [self.value(inner, f, item, f"{key}[{i}]") for i, item in enumerate(value)]
            if len(self.problems) > before:
                self.bad.add(key)
                return _FAILED
            least = f.metadata.get("min_items")
            if least is not None and len(items) < least:
                self.report(key, f"must have at least {least} item(s), got {len(items)}")
                return _FAILED
            return tuple(items)
        try:
            converted = _convert(tp, value, f.name, self.base_dir)
            _check_range(f, converted)
        except _Invalid as exc:
            self.report(key, str(exc))
            return _FAILED
        return converted


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _tuple_item(tp: Any) -> tuple[Any]:
    """X of ``tuple[X, ...]`` (the only tuple form the schema uses)."""
    args = typing.get_args(tp)
    if len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError(f"the config schema uses a tuple that is not tuple[X, ...]: {tp!r}")
    return (args[0],)


def _parse_time(value: object) -> time:
    """A TOML local time (``07:30:00``), or a string ``"07:30"`` / ``"07:30:00"`` (TOML 1.0 has no ``07:30``)."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise _Invalid(f"must be a local time without offset, got {value.isoformat()}")
        return value
    if isinstance(value, str) and len(value) in (5, 8) and value[2:3] == ":":
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise _Invalid(f'must be a local time (07:30:00, or the string "07:30"), got {_describe(value)}')


def _convert(tp: Any, value: object, name: str, base_dir: Path | None) -> Any:
    """The TOML ``value`` as Python type ``tp``, or ``_Invalid`` saying what was expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        message = f"must be one of {', '.join(toml_str(c) for c in choices)}, got {_describe(value)}"
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        raise _Invalid(message + (f' (did you mean "{close[0]}"?)' if close else ""))
    if origin in (types.UnionType, typing.Union):
        (inner,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
        credential = isinstance(value, str) and value.startswith(_CREDENTIAL)
        if inner is Path and name.endswith("_file") and credential:
            _credential_name(str(value))
            return Path(str(value))
        return _convert(inner, value, name, base_dir)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"must be true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid(f"must be an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Invalid(f"must be a finite number, got {value}")
            return float(value)
        raise _Invalid(f"must be a number, got {_describe(value)}")
    if tp is time:
        return _parse_time(value)
    if tp is date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        raise _Invalid(f"must be a local date (2026-03-01), got {_describe(value)}")
    if tp is str or tp is Path:
        kind = "a string" if tp is str else "a path (string)"
        if not isinstance(value, str):
            raise _Invalid(f"must be {kind}, got {_describe(value)}")
        if not value:
            raise _Invalid(f"must be {kind}, not empty")
        if tp is str:
            return value
        path = Path(value)
        return Path(os.path.normpath(base_dir / path)) if base_dir is not None and not path.is_absolute() else path
    raise TypeError(f"the config schema uses a type the loader does not know: {tp!r}")


def _check_range(f: dataclasses.Field[Any], value: object) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if not isinstance(value, (int, float)):
        return
    if lo is not None and value < lo:
        raise _Invalid(f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise _Invalid(f"must be at most {hi}, got {value}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: object) -> str:
    """A TOML value as an error message shows it: its TOML type and a short form of it."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {toml_str(value if len(value) <= 60 else value[:57] + '...')}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime):
        return f"date-time {value.isoformat()}"
    if isinstance(value, date):
        return f"local date {value.isoformat()}"
    if isinstance(value, time):
        return f"local time {value.isoformat()}"
    return f"{type(value).__name__} {value}"


def _unknown_message(name: str, allowed: list[str], path: str) -> str:
    close = difflib.get_close_matches(name.lower(), allowed, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    if path.endswith("]"):
        where = f"each [[{path[: path.rindex('[')]}]] entry"
    else:
        where = f"[{path}]" if path else "the top level"
    return f"unknown key{hint}; {where} allows: {', '.join(allowed)}"


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("_file")


def _secret_message(name: str) -> str:
    return (
        f"secrets must not be written in the configuration file; put the value in a file only the kiosk user "
        f"can read (chmod 600) and set {name}_file to its path, or use a systemd credential "
        f'(LoadCredential=NAME:... in the unit and {name}_file = "credential:NAME")'
    )


def _credential_name(ref: str) -> str:
    """NAME from ``credential:NAME``; it must be a plain file name inside $CREDENTIALS_DIRECTORY."""
    name = ref.removeprefix(_CREDENTIAL)
    if not name or "/" in name or name in (".", ".."):
        raise _Invalid(
            f'"{ref}" is not a valid credential; write "credential:NAME" with the name given to '
            "LoadCredential= (a plain name, no slashes)"
        )
    return name


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


# --- Secrets ----------------------------------------------------------------------------------------------


_credential_unit: Path | None = None
"""The unit whose ``LoadCredential=`` lines resolve ``credential:NAME`` outside systemd (see use_unit_credentials)."""


def use_unit_credentials(unit: Path | None) -> None:
    """Outside systemd (no ``$CREDENTIALS_DIRECTORY``), resolve ``credential:NAME`` the way ``unit`` does: from its
    ``LoadCredential=NAME:PATH`` lines and those of its drop-ins (``unit.d/*.conf``). This is how a tool run by IT as
    root on a device (``sudo kiosk gallery seal --config /etc/kiosk/kiosk.toml ...``) reads the same root-only key
    files the service gets, without a copy. None turns it off."""
    global _credential_unit
    _credential_unit = None if unit is None else Path(unit)


def unit_credentials(unit: Path) -> dict[str, Path]:
    """``{NAME: PATH}`` of the ``LoadCredential=NAME:PATH`` lines of a unit file and its drop-ins, in systemd's
    order (an empty ``LoadCredential=`` clears the earlier ones). A missing file gives no lines."""
    files = [unit, *sorted(unit.with_name(unit.name + ".d").glob("*.conf"))]
    found: dict[str, Path] = {}
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            setting, equals, value = line.strip().partition("=")
            if not equals or setting.strip() != "LoadCredential":
                continue
            name, colon, source = value.strip().partition(":")
            if not name:
                found.clear()
            elif colon and source.startswith("/"):
                found[name] = Path(source)
    return found


def secret_file(ref: Path | str, *, key: str = "secret") -> Path:
    """The file behind a ``*_file`` setting: ``credential:NAME`` is ``$CREDENTIALS_DIRECTORY/NAME`` (systemd
    ``LoadCredential=``), or outside systemd the unit's source file for NAME (use_unit_credentials); anything else
    the path itself. For libraries that want a path (TLS keys)."""
    text = str(ref)
    if not text.startswith(_CREDENTIAL):
        return Path(ref)
    try:
        name = _credential_name(text)
    except _Invalid as exc:
        raise ConfigError(text, [f"{key}: {exc}"]) from None
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        return Path(directory) / name
    if _credential_unit is not None:
        source = unit_credentials(_credential_unit).get(name)
        if source is not None:
            return source
        where = f"and {_credential_unit} has no LoadCredential={name}:... line"
    else:
        where = "(not started by systemd?)"
    raise ConfigError(
        text,
        [
            f"{key}: CREDENTIALS_DIRECTORY is not set {where}; add LoadCredential={name}:/path/to/secret to the "
            f"kiosk's unit, or point {key} at a file instead"
        ],
    )


def read_secret(ref: Path | str, *, key: str = "secret") -> bytes:
    """The bytes of a secret named by a ``*_file`` setting, exactly as stored (no newline is stripped).

    ``credential:NAME`` reads ``$CREDENTIALS_DIRECTORY/NAME`` (systemd ``LoadCredential=``); anything else
    is a file path, refused when group or others have any access to it. ``key`` names the setting in messages.
    """
    path = secret_file(ref, key=key)
    private = not str(ref).startswith(_CREDENTIAL)
    source = str(path)
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if private and stat.S_ISREG(mode) and mode & 0o077:
                raise ConfigError(
                    source,
                    [
                        f"{key}: the secret file is open to group or others (mode {stat.S_IMODE(mode):04o}); "
                        f"run: chmod 600 {path} (owned by the kiosk user)"
                    ],
                )
            data = fh.read()
    except FileNotFoundError:
        message = f"{key}: the secret file does not exist; create it (chmod 600) or fix {key}"
        raise ConfigError(source, [message]) from None
    except PermissionError as exc:
        message = f"{key}: cannot read the secret file: {exc.strerror or exc}; it is root-only: run the command as root"
        raise ConfigError(source, [message + " (sudo)"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"{key}: cannot read the secret file: {exc.strerror or exc}"]) from None
    if not data:
        raise ConfigError(source, [f"{key}: the secret file is empty; write the secret into it"])
    return data


# --- Writing: example files and the reference table -------------------------------------------------------

def to_toml(cfg: Any, header: str) -> str:
    """A settings dataclass as TOML after the comment lines ``header``, every table and key preceded by its help
    text and allowed values."""
    lines = [header.rstrip("\n")]
    _emit_table(cfg, "", lines)
    return "\n".join(lines) + "\n"


def _is_table_type(tp: Any) -> bool:
    """A dataclass (a [table]) or a tuple of dataclasses (an array of [[tables]])."""
    if typing.get_origin(tp) is tuple:
        return dataclasses.is_dataclass(_tuple_item(tp)[0])
    return dataclasses.is_dataclass(tp)


def _emit_table(
    obj: Any, path: str, lines: list[str], *, header: str = "", comments: bool = True, blank: bool = True
) -> None:
    hints = typing.get_type_hints(type(obj))
    fields = dataclasses.fields(obj)
    if path:
        doc = _comment((inspect.getdoc(obj) or "").replace("``", "`")) if comments else []
        lines += [*([""] if blank else []), *doc, header or f"[{path}]"]
    for f in fields:
        if _is_table_type(hints[f.name]):
            continue
        value = getattr(obj, f.name)
        if comments:
            lines += _comment(f.metadata["doc"])
            if rule := _rule(f, hints[f.name]):
                lines += _comment(f"Allowed: {rule}.")
        lines.append(f"# {f.name} = (not set)" if value is None else f"{f.name} = {_toml_value(value)}")
    for f in fields:
        tp, value, key = hints[f.name], getattr(obj, f.name), _join(path, f.name)
        if dataclasses.is_dataclass(tp):
            _emit_table(value, key, lines)
        elif _is_table_type(tp):
            item = _tuple_item(tp)[0]
            lines += ["", *_comment(f"[[{key}]]: {f.metadata['doc']}")]
            if not value:
                keys = ", ".join(g.name for g in dataclasses.fields(item))
                lines += _comment(f"None set; each entry is a [[{key}]] table with: {keys}.")
            for i, entry in enumerate(value):
                _emit_table(entry, key, lines, header=f"[[{key}]]", comments=i == 0, blank=i > 0)


def reference_markdown(root: type) -> str:
    """The markdown reference table of every key of the settings dataclass ``root``: path, type, default, allowed
    values and meaning."""
    rows = ["| Key | Type | Default | Allowed | Meaning |", "|---|---|---|---|---|"]

    def walk(cls: Any, obj: Any, path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key, tp = _join(path, f.name), hints[f.name]
            value = getattr(obj, f.name) if obj is not None else dataclasses.MISSING
            if dataclasses.is_dataclass(tp):
                walk(tp, None if value is dataclasses.MISSING else value, key)
                continue
            if value is dataclasses.MISSING:
                default = "required"
            else:
                default = "not set" if value is None else f"`{_toml_value(value)}`"
            cells = [f"`{key}`", _type_name(tp), default, _rule(f, tp), f.metadata["doc"]]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            if _is_table_type(tp):
                walk(_tuple_item(tp)[0], None, key + "[]")

    walk(root, root(), "")
    return "\n".join(rows) + "\n"


def _rule(f: dataclasses.Field[Any], tp: Any) -> str:
    """The allowed values of a field in words: its choices or its numeric range ("" when anything goes)."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(toml_str(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        inner = _rule(f, _tuple_item(tp)[0]) if not _is_table_type(tp) else ""
        least = f.metadata.get("min_items")
        parts = ([f"at least {least} item(s)"] if least is not None else []) + ([f"each {inner}"] if inner else [])
        return ", ".join(parts)
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    if lo is not None:
        return f"at least {lo}"
    return f"at most {hi}" if hi is not None else ""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        (inner,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
        return _type_name(inner) + " (optional)"
    if typing.get_origin(tp) is tuple:
        inner = _tuple_item(tp)[0]
        return "array of tables" if dataclasses.is_dataclass(inner) else f"array of {_type_name(inner)}"
    names = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        Path: "path",
        time: "local time",
        date: "local date",
    }
    return "string" if typing.get_origin(tp) is Literal else names[tp]


def _comment(text: str) -> list[str]:
    """TOML comment lines; a line longer than 120 characters is wrapped."""
    out: list[str] = []
    for line in text.splitlines():
        wrapped = textwrap.wrap(line, 118, break_on_hyphens=False) if len(line) > 118 else [line]
        out += [f"# {part}".rstrip() for part in wrapped]
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (time, date)):
        return value.isoformat()
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = (f"{f.name} = {_toml_value(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return "{" + ", ".join(pairs) + "}"
    return toml_str(str(value))


def toml_str(text: str) -> str:
    """A TOML basic string (double-quoted, with escapes)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


