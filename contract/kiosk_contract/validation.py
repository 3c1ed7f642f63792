"""Validation against the contract's JSON Schemas (``kiosk_contract/schemas/*.schema.json``), with every problem as
``"<path>: <what>"`` in words an operator understands (``$.person.nip: '1985...' is not a NIP (18 digits, 0-9)``).

The schemas are the definition (draft 2020-12, published for other subscribers); this module applies them. It is a
small interpreter of the keywords the schemas use, written here instead of calling the ``jsonschema`` library on the
hot path because that library took about 1 ms per event (its reference resolution and ``unevaluatedProperties``),
45 times the rest of ingesting an event; this one takes a few tens of microseconds. A schema that uses any other
keyword is refused when it is loaded, and tests/contract/test_validation.py checks that this interpreter and the
reference library reach the same verdict on valid messages and on thousands of mutated ones.

A subschema's ``description`` says what a pattern means in messages, an ``x-message`` (an annotation other
validators ignore) gives the sentence for a rule between fields, and ``x-explain: nip`` words a NIP as
:func:`kiosk_contract.nip.nip_problem` does everywhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from kiosk_contract.nip import nip_problem

SCHEMA_NAMES = ("defs", "event", "evidence", "ack", "command", "command-result")
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "x-message", "x-explain", "$defs"})
_KEYWORDS = frozenset({
    "type", "enum", "const", "pattern", "minimum", "maximum", "maxLength", "minItems", "maxItems", "uniqueItems",
    "items", "required", "properties", "additionalProperties", "unevaluatedProperties", "allOf", "anyOf", "not",
    "if", "then", "else", "$ref",
})


def schema_text(name: str) -> str:
    """The JSON text of schema ``name`` (``event``, ``ack``, ...), as shipped in the package."""
    return resources.files("kiosk_contract").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")


@cache
def schema(name: str) -> dict[str, Any]:
    """Schema ``name`` as data; refuses a keyword this interpreter does not apply."""
    value: dict[str, Any] = json.loads(schema_text(name))
    _check_keywords(value, f"{name}.schema.json")
    return value


def _check_keywords(node: Any, where: str) -> None:
    if isinstance(node, list):
        for item in node:
            _check_keywords(item, where)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key not in _KEYWORDS | _ANNOTATIONS:
            raise ValueError(f"{where}: keyword {key!r} is not applied by kiosk_contract.validation; add it there")
        if key in ("properties", "$defs"):
            for sub in value.values():
                _check_keywords(sub, where)
        elif key not in ("enum", "const", "required", "type") and key not in _ANNOTATIONS:
            _check_keywords(value, where)


@cache
def _documents() -> dict[str, dict[str, Any]]:
    return {schema(n)["$id"]: schema(n) for n in SCHEMA_NAMES}


@dataclass(frozen=True)
class Finding:
    """One failed keyword: where in the instance, which keyword of which subschema, on what value."""

    path: tuple[Any, ...]
    keyword: str
    schema: dict[str, Any]
    instance: Any


def findings(name: str, instance: Any) -> list[Finding]:
    """Every failed keyword of schema ``name`` on ``instance``, in schema order."""
    out: list[Finding] = []
    _compiled(name)(instance, (), out)
    return out


def problems(name: str, instance: Any) -> list[str]:
    """Every finding of schema ``name`` on ``instance`` as ``"$.path: what"``, in schema order; [] when valid."""
    found: list[str] = []
    for f in findings(name, instance):
        found.extend(_words(f))
    return list(dict.fromkeys(found))  # the same finding reached through two rules is said once


def is_valid(name: str, instance: Any) -> bool:
    return not findings(name, instance)


# ---------------------------------------------------------------------------------------------------- compiler
# Each subschema becomes, once, a function check(value, path, out) that appends its findings to ``out``.

Check = Any  # Callable[[Any, tuple[Any, ...], list[Finding]], None]

_TYPES: dict[str, tuple[type, ...]] = {  # exact Python types of parsed JSON (bool is not an integer)
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@cache
def _compiled(name: str) -> Check:
    top = schema(name)
    return _Compiler().compile(top, top)


def _resolve(ref: str, doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The subschema a ``$ref`` names and the document it lives in (``#/...`` here, ``urn:...#/...`` elsewhere)."""
    base, _, pointer = ref.partition("#")
    target = _documents()[base] if base else doc
    node: Any = target
    for part in pointer.split("/")[1:]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, target


def _key(value: Any) -> Any:
    """A hashable key for comparing an enum or const member with a scalar JSON value (true is not 1)."""
    return (type(value) is bool, value) if isinstance(value, bool | int | float | str | None) else (None, repr(value))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and true differ, 1 and 1.0 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b) and (a is None) == (b is None)


def _fails(check: Check, value: Any, path: tuple[Any, ...]) -> bool:
    out: list[Finding] = []
    check(value, path, out)
    return bool(out)


class _Compiler:
    """Turns subschemas into check functions (memoised by identity, so a shared ``$defs`` entry compiles once)."""

    def __init__(self) -> None:
        self._done: dict[int, Check] = {}
        self._names: dict[int, Any] = {}

    def compile(self, s: Any, doc: dict[str, Any]) -> Check:
        if s is True:
            return lambda value, path, out: None
        if s is False:
            return lambda value, path, out: out.append(Finding(path, "false", {}, value))
        key = id(s)
        if key in self._done:
            return self._done[key]
        steps: list[Check] = []
        if "$ref" in s:
            target, target_doc = _resolve(s["$ref"], doc)
            steps.append(self.compile(target, target_doc))
        guard: frozenset[type] | None = None
        if "type" in s:
            guard = frozenset(t for k in (s["type"] if isinstance(s["type"], list) else [s["type"]]) for t in _TYPES[k])
        if "enum" in s:
            choices = frozenset(_key(c) for c in s["enum"])
            steps.append(_finding("enum", s, lambda v: _key(v) not in choices))
        if "const" in s:
            const = _key(s["const"])
            steps.append(_finding("const", s, lambda v: _key(v) != const))
        if "pattern" in s:
            rx = re.compile(s["pattern"])
            steps.append(_finding("pattern", s, lambda v: isinstance(v, str) and not rx.search(v)))
        if "maxLength" in s:
            most = s["maxLength"]
            steps.append(_finding("maxLength", s, lambda v: isinstance(v, str) and len(v) > most))
        if "minimum" in s or "maximum" in s:
            lo, hi = s.get("minimum"), s.get("maximum")
            def bounds(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if type(value) in (int, float):
                    if lo is not None and value < lo:
                        out.append(Finding(path, "minimum", s, value))
                    elif hi is not None and value > hi:
                        out.append(Finding(path, "maximum", s, value))

            steps.append(bounds)
        for word, bad in (("minItems", lambda v, n: len(v) < n), ("maxItems", lambda v, n: len(v) > n)):
            if word in s:
                n = s[word]
                steps.append(_finding(word, s, lambda v, n=n, bad=bad: isinstance(v, list) and bad(v, n)))
        if s.get("uniqueItems"):
            steps.append(_finding("uniqueItems", s, lambda v: isinstance(v, list) and any(
                _same(a, b) for i, a in enumerate(v) for b in v[i + 1:])))
        if "items" in s:
            item = self.compile(s["items"], doc)

            def items(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if isinstance(value, list):
                    for i, x in enumerate(value):
                        item(x, (*path, i), out)

            steps.append(items)
        if "required" in s:
            required = s["required"]
            steps.append(_finding("required", s, lambda v: isinstance(v, dict) and any(k not in v for k in required)))
        if "properties" in s:
            props = {k: self.compile(sub, doc) for k, sub in s["properties"].items()}

            def properties(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if isinstance(value, dict):
                    for k, check in props.items():
                        if k in value:
                            check(value[k], (*path, k), out)

            steps.append(properties)
        if s.get("additionalProperties") is False:
            allowed = frozenset(s.get("properties", {}))
            steps.append(_finding("additionalProperties", s,
                                  lambda v: isinstance(v, dict) and not allowed.issuperset(v)))
        steps.extend(self.compile(sub, doc) for sub in s.get("allOf", ()))
        if "anyOf" in s:
            options = [self.compile(sub, doc) for sub in s["anyOf"]]

            def any_of(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if all(_fails(o, value, path) for o in options):
                    out.append(Finding(path, "anyOf", s, value))

            steps.append(any_of)
        if "not" in s:
            negated = self.compile(s["not"], doc)

            def not_(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if not _fails(negated, value, path):
                    out.append(Finding(path, "not", s, value))

            steps.append(not_)
        if "if" in s:
            condition = self.compile(s["if"], doc)
            then = self.compile(s["then"], doc) if "then" in s else None
            else_ = self.compile(s["else"], doc) if "else" in s else None

            def if_(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                branch = else_ if _fails(condition, value, path) else then
                if branch is not None:
                    branch(value, path, out)

            steps.append(if_)
        if s.get("unevaluatedProperties") is False:
            named = self.names(s, doc)

            def unevaluated(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if isinstance(value, dict):
                    seen = named(value)
                    if not seen.issuperset(value):
                        out.append(Finding(path, "unevaluatedProperties", {**s, "x-evaluated": sorted(seen)}, value))

            steps.append(unevaluated)

        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            if guard is not None and type(value) not in guard:
                out.append(Finding(path, "type", s, value))
                return  # the other keywords of this subschema say nothing useful about a value of the wrong type
            for step in steps:
                step(value, path, out)

        self._done[key] = check
        return check

    def names(self, s: Any, doc: dict[str, Any]) -> Any:
        """A function giving the property names the in-place applicators of ``s`` evaluate on an object: its own
        ``properties`` and those of ``$ref``, ``allOf`` and the ``if``/``then``/``else`` branches that apply."""
        if not isinstance(s, dict):
            return lambda value: set()
        own = frozenset(s.get("properties", {}))
        parts = []
        if "$ref" in s:
            parts.append(self.names(*_resolve(s["$ref"], doc)))
        parts.extend(self.names(sub, doc) for sub in s.get("allOf", ()))
        if "if" in s:
            condition = self.compile(s["if"], doc)
            from_if, then, else_ = self.names(s["if"], doc), self.names(s.get("then"), doc), self.names(
                s.get("else"), doc)
            parts.append(lambda value: else_(value) if _fails(condition, value, ()) else from_if(value) | then(value))

        def names(value: dict[str, Any]) -> set[str]:
            found = {k for k in own if k in value}
            for part in parts:
                found |= part(value)
            return found

        return names


def _finding(keyword: str, s: dict[str, Any], bad: Any) -> Check:
    def step(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
        if bad(value):
            out.append(Finding(path, keyword, s, value))

    return step


# ---------------------------------------------------------------------------------------------------- words


def path_of(parts: tuple[Any, ...]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def kind(value: Any) -> str:
    """How a JSON value is called in messages: "a string", "an integer", "null"..."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )


def short(value: Any) -> str:
    return repr(value[:80]) if isinstance(value, str) else kind(value)


_TYPE_WORDS = {"string": "a string", "integer": "an integer", "object": "an object", "array": "an array",
               "boolean": "true or false", "null": "null", "number": "a number"}


def _words(f: Finding) -> list[str]:
    path, s, value, keyword = path_of(f.path), f.schema, f.instance, f.keyword
    if s.get("x-message") and keyword not in ("required", "additionalProperties", "unevaluatedProperties"):
        return [f"{path}: {s['x-message']}"]
    if keyword == "required":
        return [f"{path}.{k}: missing" for k in s["required"] if k not in value]
    if keyword == "additionalProperties":
        return [f"{path}.{k}: unknown field" for k in value if k not in s.get("properties", {})]
    if keyword == "unevaluatedProperties":
        about = f" for type {value['type']}" if isinstance(value.get("type"), str) else ""
        return [f"{path}.{k}: unknown field{about}" for k in value if k not in s["x-evaluated"]]
    if keyword == "type":
        wanted = s["type"] if isinstance(s["type"], list) else [s["type"]]
        return [f"{path}: must be {' or '.join(_TYPE_WORDS[w] for w in wanted)}, not {kind(value)}"]
    if keyword == "enum":
        choices = ", ".join("null" if c is None else str(c) for c in s["enum"])
        return [f"{path}: {short(value)} is not one of {choices}"]
    if keyword == "const":
        return [f"{path}: must be {json.dumps(s['const'])}, not {short(value)}"]
    if keyword == "pattern" and s.get("x-explain") == "nip":
        return [f"{path}: {nip_problem(value)}"]  # the one message of kiosk_contract.nip, at every door
    if keyword == "pattern":
        return [f"{path}: {short(value)} is not {s.get('description') or 'well-formed'}"]
    if keyword in ("minimum", "maximum"):
        return [f"{path}: {value} is out of range {s.get('minimum', '-inf')}..{s.get('maximum', 'inf')}"]
    if keyword == "maxLength":
        return [f"{path}: longer than {s['maxLength']} characters"]
    if keyword in ("maxItems", "minItems"):
        most = keyword == "maxItems"
        return [f"{path}: must have {'at most' if most else 'at least'} {s[keyword]} item(s), not {len(value)}"]
    if keyword == "uniqueItems":
        return [f"{path}: has the same item twice"]
    if keyword == "anyOf":
        return [f"{path}: {short(value)} matches none of the allowed forms"]
    return [f"{path}: {short(value)} is not allowed here"]
