"""Turning whatever a tool returns into JSON-safe data, by one documented rule.

The rule (`to_jsonable`), applied once at dispatch so that prompts, steps,
checkpoints and traces never meet a value they cannot serialise:

- ``str``, ``int``, ``bool``, ``None`` and finite floats stay as they are;
  ``NaN`` and infinities become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
- dicts stay dicts (keys become strings); lists, tuples, sets and frozensets
  become lists (sets sorted when their items can be);
- ``bytes`` become ``{"$bytes": "<base64>"}``;
- datetimes, dates and times become ISO 8601 strings; ``Decimal``, ``UUID``,
  ``Path`` and other `os.PathLike` become strings; an ``Enum`` becomes its value;
- dataclasses become dicts; objects with ``model_dump()`` or ``to_dict()`` use it;
- anything else becomes ``{"$repr": repr(value)}`` (cut to 2,000 characters);
- a value met again inside itself becomes ``"$circular"``; nesting deeper than
  100 levels becomes ``"$too_deep"``.

Then `normalize_result` wraps anything that is not a dict as ``{"result": value}``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from typing import Any

__all__ = ["to_jsonable", "normalize_result"]

_MAX_DEPTH = 100
_REPR_LIMIT = 2000


def normalize_result(value: Any) -> dict[str, Any]:
    """JSON-safe data as a dict: non-dict results become ``{"result": value}``."""
    data = to_jsonable(value)
    if isinstance(data, dict):
        return data
    return {"result": data}


_PLAIN = (str, int, bool, type(None))


def to_jsonable(value: Any) -> Any:
    """Convert `value` to JSON-safe data by the module's rule."""
    if type(value) is dict and all(type(v) in _PLAIN and type(k) is str for k, v in value.items()):
        return dict(value)  # the common case: a flat dict of plain values
    return _convert(value, set(), 0)


def _convert(value: Any, seen: set[int], depth: int) -> Any:
    if value is None or isinstance(value, str | bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and type(value) is not int:
            return int(value)  # IntEnum-like subclasses
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if depth >= _MAX_DEPTH:
        return "$too_deep"
    if isinstance(value, dict | list | tuple | set | frozenset):
        key = id(value)
        if key in seen:
            return "$circular"
        seen.add(key)
        try:
            return _container(value, seen, depth + 1)
        finally:
            seen.discard(key)
    return _scalar(value, seen, depth)


def _container(value: Any, seen: set[int], depth: int) -> Any:
    if isinstance(value, dict):
        return {_key(k): _convert(v, seen, depth) for k, v in value.items()}
    items = [_convert(v, seen, depth) for v in value]
    if isinstance(value, set | frozenset):
        try:
            items.sort()
        except TypeError:
            pass
    return items


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return str(key.value)
    return str(key)


def _scalar(value: Any, seen: set[int], depth: int) -> Any:
    import base64
    import datetime
    import decimal

    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _convert(value.value, seen, depth + 1)
    if isinstance(value, decimal.Decimal) or type(value).__module__ == "uuid":
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value) if isinstance(os.fspath(value), str) else repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        key = id(value)
        if key in seen:
            return "$circular"
        seen.add(key)
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _convert(fields, seen, depth + 1)
        finally:
            seen.discard(key)
    for method in ("model_dump", "to_dict"):
        fn = getattr(value, method, None)
        if callable(fn) and not isinstance(value, type):
            try:
                return _convert(fn(), seen, depth + 1)
            except Exception:  # a broken to_dict falls through to repr
                break
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 1] + "…"
    return {"$repr": text}
