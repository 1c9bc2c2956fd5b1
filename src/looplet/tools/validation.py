"""Checking tool arguments against their JSON Schema before a tool runs.

The policy: values must already have the declared JSON type. The only
coercions are lossless ones:

- an integral float (``3.0``) where an integer is declared becomes ``3``;
- a string holding JSON, where an object or array is declared, is decoded
  once (models sometimes double-encode) and the result is checked again.

Nothing else is converted: ``"5"`` is not an integer, ``true`` is not ``1``,
strings are passed through byte for byte (no stripping).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["check_value", "validate_value", "validate_args", "suggest", "nesting_depth", "measure"]

JSON = dict[str, Any]


def validate_value(value: Any, schema: JSON) -> str | None:
    """The first problem with `value` against `schema`, or None if it is valid."""
    return check_value(value, schema, "")[1]


def validate_args(args: Any, schema: JSON, tool: str = "") -> tuple[dict[str, Any], list[str]]:
    """Validate a call's arguments object; returns (coerced args, problems)."""
    if not isinstance(args, dict):
        return {}, [f"arguments must be a JSON object, got {_kind(args)}"]
    odd = [key for key in args if not isinstance(key, str)]
    if odd:
        return {}, [f"argument names must be strings, got {_kind(odd[0])} {_show(odd[0])}"]
    problems: list[str] = []
    props: JSON = schema.get("properties", {})
    required = schema.get("required", ())
    missing = [name for name in required if name not in args]
    if missing:
        given = ", ".join(sorted(args)) or "nothing"
        problems.append(f"missing required argument(s): {', '.join(missing)} (given: {given})")
    out: dict[str, Any] = {}
    extra = schema.get("additionalProperties", True)
    for key, value in args.items():
        sub = props.get(key)
        if sub is None:
            if extra is False:
                problems.append(_unknown_arg(key, list(props), tool))
                continue
            sub = extra if isinstance(extra, dict) else {}
        fixed, problem = check_value(value, sub, key)
        if problem:
            problems.append(problem)
        else:
            out[key] = fixed
    return out, problems


def _unknown_arg(key: str, known: list[str], tool: str) -> str:
    text = f"unknown argument {key!r}"
    if tool:
        text += f" for {tool}"
    hint = suggest(key, known)
    if hint:
        text += f"; did you mean {hint!r}?"
    elif known:
        text += f"; it takes: {', '.join(known)}"
    else:
        text += "; it takes no arguments"
    return text


def suggest(name: str, options: list[str]) -> str | None:
    """The closest option to a mistyped name (case and look-alike letters forgiven)."""
    if not options:
        return None
    import difflib

    folded = {_fold(o): o for o in options}
    key = _fold(name)
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def _fold(text: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFKC", text).strip().casefold()
    return text.translate(_CONFUSABLES)


# Cyrillic and Greek letters that look like Latin ones, for suggestions only.
_CONFUSABLES = str.maketrans("аеорсухкмтвнізєԁѕјӏαορτυνκιε", "aeopcyxkmtbhizedsjlaoptuvkie")


def check_value(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    """Validate `value` against `schema`; returns the (possibly coerced) value and a problem."""
    if "anyOf" in schema or "oneOf" in schema:
        return _check_union(value, schema, path)
    if "enum" in schema:
        return _check_enum(value, schema, path)
    kind = schema.get("type")
    if kind is None:
        return value, None
    if isinstance(kind, list):
        return _check_union(value, {"anyOf": [{**schema, "type": k} for k in kind]}, path)
    checker = _CHECKERS.get(kind)
    if checker is None:
        return value, None
    return checker(value, schema, path)


def _check_union(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    options = schema.get("anyOf") or schema.get("oneOf") or []
    problems = []
    for option in options:
        fixed, problem = check_value(value, option, path)
        if problem is None:
            return fixed, None
        problems.append(problem)
    expected = " or ".join(_expected(o) for o in options)
    return value, f"{_at(path)}expected {expected}, got {_kind(value)} {_show(value)}"


def _check_enum(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    for allowed in schema["enum"]:
        if _same_json(value, allowed):
            return value, None
    choices = ", ".join(json.dumps(v) for v in schema["enum"])
    return value, f"{_at(path)}expected one of {choices}, got {_show(value)}"


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and a == b
    )


def _check_string(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    if isinstance(value, str):
        return value, None
    return value, _wrong("string", value, path)


def _check_integer(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value), None
    return value, _wrong("integer", value, path)


def _check_number(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, float) and math.isfinite(value):
        return value, None
    return value, _wrong("number", value, path)


def _check_boolean(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, None
    return value, _wrong("boolean", value, path)


def _check_null(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    if value is None:
        return value, None
    return value, _wrong("null", value, path)


def _decode_once(value: Any, want: type) -> Any:
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            return value
        if isinstance(decoded, want):
            return decoded
    return value


def _check_array(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    value = _decode_once(value, list)
    if not isinstance(value, list):
        return value, _wrong("array", value, path)
    n = len(value)
    if n < schema.get("minItems", 0) or n > schema.get("maxItems", n):
        return value, f"{_at(path)}expected {schema.get('minItems')} items, got {n}"
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    out = []
    for i, item in enumerate(value):
        sub = prefix[i] if prefix and i < len(prefix) else items
        if sub:
            item, problem = check_value(item, sub, f"{path}[{i}]")
            if problem:
                return value, problem
        out.append(item)
    if schema.get("uniqueItems"):
        seen = [json.dumps(x, sort_keys=True, default=str) for x in out]
        if len(set(seen)) != len(seen):
            return value, f"{_at(path)}items must be unique"
    return out, None


def _check_object(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    value = _decode_once(value, dict)
    if not isinstance(value, dict):
        return value, _wrong("object", value, path)
    props: JSON = schema.get("properties", {})
    missing = [k for k in schema.get("required", ()) if k not in value]
    if missing:
        return value, f"{_at(path)}missing required key(s): {', '.join(missing)}"
    extra = schema.get("additionalProperties", True)
    out = {}
    for key, item in value.items():
        if not isinstance(key, str):
            return value, f"{_at(path)}keys must be strings, got {_kind(key)}"
        sub = props.get(key)
        if sub is None:
            if extra is False:
                hint = suggest(key, list(props))
                tail = f"; did you mean {hint!r}?" if hint else ""
                return value, f"{_at(path)}unknown key {key!r}{tail}"
            sub = extra if isinstance(extra, dict) else {}
        item, problem = check_value(item, sub, f"{path}.{key}" if path else key)
        if problem:
            return value, problem
        out[key] = item
    return out, None


_CHECKERS = {
    "string": _check_string,
    "integer": _check_integer,
    "number": _check_number,
    "boolean": _check_boolean,
    "null": _check_null,
    "array": _check_array,
    "object": _check_object,
}


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply `value` nests, counting up to ``limit + 1`` and no further (no recursion)."""
    return measure(value, limit)[0]


_SCALARS = (int, float, bool, type(None))


def measure(value: Any, depth_limit: int) -> tuple[int, int]:
    """(nesting depth, approximate JSON size in characters) of `value`, in one pass.

    Stops early once the depth passes `depth_limit`. Sizes count string
    lengths plus a few characters per item; close enough for a limit.
    """
    if type(value) is dict:  # fast path: a flat object of plain values, the usual case
        size = 2
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str:
                break
            if kind is str:
                size += len(key) + len(item) + 6
            elif kind in _SCALARS:
                size += len(key) + 12
            else:
                break
        else:
            return (1 if value else 0), size
    deepest = 0
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > depth_limit:
                break
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            size += 2
            for key, sub in item.items():
                size += len(key) + 4 if isinstance(key, str) else 8
                stack.append((sub, depth + 1))
        elif isinstance(item, list | tuple):
            size += 2 + len(item)
            stack.extend((v, depth + 1) for v in item)
        else:
            size += 8
    return deepest, size


def _wrong(expected: str, value: Any, path: str) -> str:
    return f"{_at(path)}expected {expected}, got {_kind(value)} {_show(value)}"


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _expected(schema: JSON) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind or "any value")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except Exception:  # circular, too deep, odd keys, a failing __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:59] + "…"
