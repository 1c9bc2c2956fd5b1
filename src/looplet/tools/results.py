"""Turning whatever a tool returns into strict JSON data, by one documented rule.

The rule (`to_jsonable`) is applied once, right after a tool returns, so that
prompts, steps, checkpoints and traces never meet a value they cannot
serialise. It never raises (except ``KeyboardInterrupt`` and
``asyncio.CancelledError``, which are the user's or the event loop's), and
its output always passes ``json.dumps(out, allow_nan=False)``:

- ``str``, ``bool``, ``None`` and finite floats stay as they are (subclasses
  become the plain type, read without calling their overrides);
- ``int`` stays an int, unless its decimal text would be longer than Python
  allows (``sys.get_int_max_str_digits()``, 4,300 digits by default; beyond
  that ``json.dumps`` itself fails). Such an int becomes
  ``{"$int": "0x…"}`` (``"-0x…"`` when negative): its exact value in
  hexadecimal, which ``int(text, 16)`` reads back;
- ``NaN`` and infinities become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
- dicts and other mappings become dicts with string keys (see *Keys*);
  lists, tuples, sets, frozensets and other sequences become lists (sets
  sorted: naturally when their items compare, else by their JSON text).
  Non-builtin sequences and mappings are read up to 100,000 items, then
  ``"$truncated"`` ends the list;
- ``bytes`` become ``{"$bytes": "<base64>"}``;
- datetimes, dates and times become ISO 8601 strings; ``Decimal``, ``UUID``,
  ``Path`` and other `os.PathLike` become strings; an ``Enum`` becomes its value;
- dataclasses become dicts of their fields; objects with ``model_dump()``,
  ``to_dict()`` or ``tolist()`` use it;
- anything else becomes ``{"$repr": repr(value)}`` (cut to 2,000
  characters), or ``{"$repr": "<unrepresentable T: E>"}`` when ``repr``
  raised ``E``; when ``model_dump()``, ``to_dict()`` or ``tolist()`` raised
  first, an ``"error"`` entry beside ``"$repr"`` says which and what;
- a value met again inside itself becomes ``"$circular"``; nesting deeper than
  100 levels becomes ``"$too_deep"``.

Whatever raises while being read (a dataclass field that was never set, a
mapping whose ``items()`` raises, an iterator that fails half way) becomes,
in its place, ``{"$unconvertible": "<type name>", "error": "<what raised
what>"}``; the rest of the value is kept.

Keys: string keys are kept exactly. Any other key becomes its text
(``str(key)``; an Enum's value's text; an over-long int's ``0x…`` text). When
that text is already used by another key of the same dict, the key becomes
the first free ``"<text>~2"``, ``"<text>~3"``, … So no entry is ever lost,
and string keys always win their own name whatever the dict's order:
``{1: "a", "1": "b"}`` becomes ``{"1~2": "a", "1": "b"}``.

Then `normalize_result` wraps anything that is not a dict as ``{"result": value}``
(a tagged form such as ``{"$bytes": ...}`` is one value, so it is wrapped too).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import math
import os
import sys
from typing import Any

__all__ = ["to_jsonable", "normalize_result"]

_MAX_DEPTH = 100
_REPR_LIMIT = 2000
_ERROR_LIMIT = 300
_MAX_FOREIGN_ITEMS = 100_000
# Failures of a value's own code that become placeholders. KeyboardInterrupt
# and CancelledError are left to propagate: they are the user's or the loop's.
_CAUGHT = (Exception, SystemExit, GeneratorExit)


def normalize_result(value: Any) -> dict[str, Any]:
    """JSON-safe data as a dict: non-dict results become ``{"result": value}``."""
    data = to_jsonable(value)
    if isinstance(data, dict) and _TAGS.isdisjoint(data):
        return data
    return {"result": data}


#: Keys of the tagged forms `to_jsonable` makes; such a dict is one value, not a result's fields.
_TAGS = frozenset({"$int", "$bytes", "$repr", "$unconvertible"})


# Ints of at most this many bits have fewer than 640 decimal digits, the lowest
# limit Python lets `sys.set_int_max_str_digits` set, so they always print.
_SAFE_INT_BITS = 2000


def to_jsonable(value: Any) -> Any:
    """Convert `value` to strict JSON data by the module's rule; never raises."""
    if type(value) is dict and _is_flat_plain(value):
        return dict(value)  # the common case: a flat dict of plain values
    return _convert(value, set(), 0)


def _is_flat_plain(value: dict[Any, Any]) -> bool:
    for key, item in value.items():
        if type(key) is not str:
            return False
        kind = type(item)
        if kind is int:
            if item.bit_length() > _SAFE_INT_BITS:
                return False
        elif kind is not str and kind is not bool and item is not None:
            return False
    return True


def _convert(value: Any, seen: set[int], depth: int) -> Any:
    """Convert one value; whatever its own code raises becomes a placeholder."""
    try:
        return _convert_unguarded(value, seen, depth)
    except _CAUGHT as exc:
        return _unconvertible(value, "converting it", exc)


def _convert_unguarded(value: Any, seen: set[int], depth: int) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if issubclass(kind, str):
        return str.__str__(value)
    if issubclass(kind, int):  # bool is handled above; IntEnum and other subclasses
        return _int(int.__int__(value))
    if issubclass(kind, float):
        return _float(float.__float__(value))
    if depth >= _MAX_DEPTH:
        return "$too_deep"
    key = id(value)
    if key in seen:
        return "$circular"
    seen.add(key)
    try:
        return _compound(value, kind, seen, depth + 1)
    finally:
        seen.discard(key)


def _int(number: int) -> Any:
    if number.bit_length() <= _SAFE_INT_BITS or not sys.get_int_max_str_digits():
        return number
    try:
        int.__repr__(number)
    except ValueError:  # longer than the interpreter will print
        return {"$int": hex(number)}
    return number


def _float(number: float) -> Any:
    if math.isfinite(number):
        return number
    return "NaN" if number != number else ("Infinity" if number > 0 else "-Infinity")


_BUILTIN_CONTAINERS = (dict, list, tuple, set, frozenset)


def _compound(value: Any, kind: type, seen: set[int], depth: int) -> Any:
    for base in _BUILTIN_CONTAINERS:
        if issubclass(kind, base):
            # The base class's own methods read what is stored, whatever a
            # subclass overrides (`items`, `__iter__`, `__len__`).
            if base is dict:
                return _mapping(dict.items(value), seen, depth)
            items = [_convert(item, seen, depth) for item in base.__iter__(value)]
            return _sorted(items) if base in (set, frozenset) else items
    return _other(value, kind, seen, depth)


def _mapping(entries: Any, seen: set[int], depth: int) -> dict[str, Any]:
    pairs = list(entries)
    names = _key_names([k for k, _ in pairs])
    return {name: _convert(item, seen, depth) for name, (_, item) in zip(names, pairs, strict=True)}


def _key_names(keys: list[Any]) -> list[str]:
    """String names for a dict's keys, by the module's collision rule (no key is lost)."""
    taken = {str.__str__(k) for k in keys if issubclass(type(k), str)}
    names: list[str] = []
    for key in keys:
        if issubclass(type(key), str):
            names.append(str.__str__(key))
            continue
        text = _key_text(key)
        name, n = text, 1
        while name in taken:
            n += 1
            name = f"{text}~{n}"
        taken.add(name)
        names.append(name)
    return names


def _key_text(key: Any) -> str:
    try:
        if issubclass(type(key), enum.Enum):
            key = key.value
        kind = type(key)
        if issubclass(kind, str):
            return str.__str__(key)
        if issubclass(kind, int) and kind is not bool:
            number = _int(int.__int__(key))
            return number["$int"] if isinstance(number, dict) else str(number)
        return str.__str__(str(key))
    except _CAUGHT as exc:
        return f"<unprintable {_type_name(key)} key: {_exception_text(exc)}>"


def _sorted(items: list[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:  # mixed kinds: order by the JSON text, still deterministic
        import json

        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def _other(value: Any, kind: type, seen: set[int], depth: int) -> Any:
    """Everything that is not a plain scalar or a builtin container."""
    known = _known_scalar(value, kind)
    if known is not _NOT_KNOWN:
        return known
    if issubclass(kind, enum.Enum):
        return _convert(value.value, seen, depth)
    is_class = issubclass(kind, type)
    if hasattr(kind, "__dataclass_fields__") and not is_class:
        return _dataclass(value, kind, seen, depth)
    failures: list[str] = []
    for method in ("model_dump", "to_dict", "tolist"):
        try:
            fn = getattr(value, method, None)
        except _CAUGHT as exc:
            failures.append(f"looking up {method} raised {_exception_text(exc)}")
            continue
        if not callable(fn) or is_class:
            continue
        try:
            data = fn()
        except _CAUGHT as exc:  # a broken method: try the next way
            failures.append(f"{method}() raised {_exception_text(exc)}")
            continue
        return _convert(data, seen, depth)
    if issubclass(kind, collections.abc.Mapping):
        return _mapping(_first_items(value.items()), seen, depth)
    if issubclass(kind, collections.abc.Sequence | collections.abc.Set | collections.deque):
        return _foreign_items(value, kind, seen, depth)
    return _repr(value, failures)


_NOT_KNOWN = object()


def _known_scalar(value: Any, kind: type) -> Any:
    import datetime
    import decimal

    if issubclass(kind, bytes | bytearray | memoryview):
        import base64

        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if issubclass(kind, datetime.datetime | datetime.date | datetime.time):
        return str.__str__(value.isoformat())
    if issubclass(kind, decimal.Decimal) or kind.__module__ == "uuid":
        return str.__str__(str(value))
    if issubclass(kind, os.PathLike):
        path = os.fspath(value)
        return str.__str__(path) if isinstance(path, str) else _repr(value, [])
    return _NOT_KNOWN


def _dataclass(value: Any, kind: type, seen: set[int], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        try:
            item = getattr(value, f.name)
        except _CAUGHT as exc:  # e.g. a `field(init=False)` never set
            out[f.name] = _unconvertible(value, f"reading field {f.name!r}", exc)
            continue
        out[f.name] = _convert(item, seen, depth)
    return out


def _first_items(items: Any) -> list[Any]:
    import itertools

    return list(itertools.islice(items, _MAX_FOREIGN_ITEMS))


def _foreign_items(value: Any, kind: type, seen: set[int], depth: int) -> list[Any]:
    import itertools

    taken = list(itertools.islice(iter(value), _MAX_FOREIGN_ITEMS + 1))
    items = [_convert(item, seen, depth) for item in taken[:_MAX_FOREIGN_ITEMS]]
    if len(taken) > _MAX_FOREIGN_ITEMS:
        items.append("$truncated")
    if issubclass(kind, collections.abc.Set):
        return _sorted(items)
    return items


def _repr(value: Any, failures: list[str]) -> dict[str, str]:
    """``{"$repr": ...}``, plus ``"error"`` saying which conversion methods raised first."""
    try:
        text = str.__str__(repr(value))
    except _CAUGHT as exc:
        text = f"<unrepresentable {_type_name(value)}: {type(exc).__name__}>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 1] + "…"
    out = {"$repr": text}
    if failures:
        out["error"] = "; ".join(failures)
    return out


def _unconvertible(value: Any, doing: str, exc: BaseException) -> dict[str, str]:
    return {"$unconvertible": _type_name(value), "error": f"{doing} raised {_exception_text(exc)}"}


def _type_name(value: Any) -> str:
    try:
        return str.__str__(type(value).__qualname__)
    except _CAUGHT:
        return "object"


def _exception_text(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        detail = str.__str__(str(exc))
    except _CAUGHT:
        detail = ""
    text = f"{name}: {detail}" if detail else name
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"
