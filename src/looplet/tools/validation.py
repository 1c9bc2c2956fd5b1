"""Checking tool arguments against their JSON Schema before a tool runs.

The policy: values must already have the declared JSON type. The only
coercions are lossless ones:

- an integral float (``3.0``) where an integer is declared becomes ``3``;
- a value matching an ``enum`` / ``const`` (a ``Literal`` or an ``Enum``)
  becomes the declared value itself: ``2.0`` for ``Literal[1, 2, 3]``
  reaches the tool as the int ``2``;
- a string holding JSON, where an object or array is declared, is decoded
  once (models sometimes double-encode) and the result is checked again.

Nothing else is converted: ``"5"`` is not an integer, ``true`` is not ``1``
(at any depth, in enums too), strings are passed through byte for byte (no
stripping). ``NaN`` and infinities are refused anywhere in the arguments,
whatever the schema (also ``{}``, a bare ``dict`` or ``list``): JSON has no
such numbers, and a record holding one is not valid JSON.

Of a union (``anyOf``, ``oneOf``, a list of types) the first option that
accepts the value unchanged wins; only if none does, the first that accepts
it with a coercion (so ``int | float`` keeps ``2.0`` a float). ``oneOf`` is
read as ``anyOf``. ``allOf``, ``const``, ``minProperties`` and
``maxProperties`` are understood; object keywords (``required``,
``properties``) in a schema without ``type`` apply when the value is an
object, so ``"anyOf": [{"required": ["a"]}, {"required": ["b"]}]`` asks for
one of two keys.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "check_value",
    "validate_value",
    "fast_args",
    "plan_for",
    "validate_args",
    "suggest",
    "nesting_depth",
    "measure",
    "check_timeout",
    "timeout_problem",
]

JSON = dict[str, Any]


def validate_value(value: Any, schema: JSON) -> str | None:
    """The first problem with `value` against `schema`, or None if it is valid."""
    return _non_finite_problem(value, "") or check_value(value, schema, "")[1]


def validate_args(args: Any, schema: JSON, tool: str = "") -> tuple[dict[str, Any], list[str]]:
    """Validate a call's arguments object; returns (coerced args, problems)."""
    if not isinstance(args, dict):
        return {}, [f"arguments must be a JSON object, got {_kind(args)}"]
    odd = [key for key in args if not isinstance(key, str)]
    if odd:
        return {}, [f"argument names must be strings, got {_kind(odd[0])} {_show(odd[0])}"]
    props: JSON = schema.get("properties", {})
    problems = _count_problems(args, schema, props)
    out: dict[str, Any] = {}
    extra = schema.get("additionalProperties", True)
    for key, value in args.items():
        sub = props.get(key)
        if sub is None:
            if extra is False:
                problems.append(_unknown_arg(key, list(props), tool))
                continue
            sub = extra if isinstance(extra, dict) else {}
        fixed, problem = _check_argument(value, sub, key)
        if problem:
            problems.append(problem)
        else:
            out[key] = fixed
    if not problems and _has_combinator(schema):
        combined = {word: schema[word] for word in _COMBINATORS if word in schema}
        fixed, problem = check_value(out, combined, "")
        return (fixed, []) if problem is None else (out, [problem])
    return out, problems


_PLAIN_STRING = frozenset({"type", "description", "title"})


class FastPlan:
    """A flat schema's arguments checked in one pass: names, exact JSON types, required.

    Built for schemas whose parameters are plain strings, integers, numbers or
    booleans (no constraints, no nesting, no combinators); `fast_args` accepts
    only arguments that the full validation would pass unchanged, and says
    None for everything else, which then goes through `validate_args`, so
    every error message still comes from one place.
    """

    __slots__ = ("types", "required")

    def __init__(self, types: dict[str, type], required: tuple[str, ...]) -> None:
        self.types = types
        self.required = required


_FAST_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
_FAST_WORDS = frozenset({"type", "description", "title", "default"})
_FAST_OBJECT_WORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "description", "title"}
)


def fast_plan(schema: JSON) -> FastPlan | None:
    """The one-pass plan for `schema`, or None when it needs the full validation."""
    if type(schema) is not dict or schema.get("type", "object") != "object":
        return None
    if not schema.keys() <= _FAST_OBJECT_WORDS:
        return None
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    required = schema.get("required", [])
    if type(props) is not dict or extra not in (True, False) or type(required) is not list:
        return None
    types: dict[str, type] = {}
    for name, sub in props.items():
        if type(sub) is not dict or not sub.keys() <= _FAST_WORDS or sub.get("type") not in _FAST_TYPES:
            return None
        types[name] = _FAST_TYPES[sub["type"]]
    if not all(type(name) is str and name in types for name in required):
        return None
    return FastPlan(types, tuple(required))


_PLANS: dict[int, tuple[JSON, FastPlan | None]] = {}


def plan_for(schema: JSON) -> FastPlan | None:
    """`fast_plan(schema)`, made once per schema object (a schema edited in place after
    its first call is not seen again: register the tool again instead)."""
    entry = _PLANS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, fast_plan(schema))
        _PLANS[id(schema)] = entry
    return entry[1]


def fast_args(plan: FastPlan, args: Any, max_chars: int) -> dict[str, Any] | None:
    """A copy of `args` if they pass `plan` exactly and fit `max_chars`; else None."""
    if type(args) is not dict:
        return None
    types = plan.types
    size = 2
    for key, value in args.items():
        want = types.get(key)
        if want is None:
            return None  # unknown (or an extra) argument: the full validation decides
        kind = type(value)
        if kind is str:
            if want is not str:
                return None
            size += len(key) + len(value) + 6
        elif kind is want or (want is float and kind is int):
            if kind is float and not math.isfinite(value):
                return None
            size += len(key) + 12
        else:
            return None
    if size > max_chars:
        return None
    for name in plan.required:
        if name not in args:
            return None
    return dict(args)


def _check_argument(value: Any, schema: JSON, name: str) -> tuple[Any, str | None]:
    if type(value) is str and type(schema) is dict and schema.get("type") == "string":
        if schema.keys() <= _PLAIN_STRING:
            return value, None  # the usual case: a plain string for a plain string parameter
    problem = _non_finite_problem(value, name)
    return (value, problem) if problem else check_value(value, schema, name)


def _count_problems(args: dict[str, Any], schema: JSON, props: JSON) -> list[str]:
    """Missing required arguments, and too few or too many of them."""
    problems: list[str] = []
    missing = [name for name in schema.get("required", ()) if name not in args]
    if missing:
        problems.append(f"missing required argument(s): {', '.join(missing)} (given: {_given(args)})")
    least, most = schema.get("minProperties"), schema.get("maxProperties")
    if isinstance(least, int) and len(args) < least:
        which = "one" if least == 1 else str(least)
        known = f" of: {', '.join(props)}" if props else " argument(s)"
        problems.append(f"give at least {which}{known} (given: {_given(args)})")
    if isinstance(most, int) and len(args) > most:
        problems.append(f"give at most {most} argument(s) (given: {_given(args)})")
    return problems


def _given(args: dict[str, Any]) -> str:
    return ", ".join(sorted(args)) or "nothing"


def _non_finite_problem(value: Any, path: str) -> str | None:
    """Where `value` holds a NaN or an infinity (JSON has neither), as a problem; else None."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return None
    stack: list[tuple[Any, str]] = [(value, path)]
    visited: set[int] = set()  # each container once, so a value holding itself ends
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                shown = "NaN" if item != item else ("Infinity" if item > 0 else "-Infinity")
                return f"{_at(where)}JSON has no NaN or Infinity, got {shown}"
            continue
        if not isinstance(item, dict | list | tuple) or id(item) in visited:
            continue
        visited.add(id(item))
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


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


_COMBINATORS = ("allOf", "anyOf", "oneOf")
_OBJECT_WORDS = frozenset(
    {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}
)
_ARRAY_WORDS = frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"})


def _has_combinator(schema: JSON) -> bool:
    return any(word in schema for word in _COMBINATORS)


def check_value(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    """Validate `value` against `schema`; returns the (possibly coerced) value and a problem."""
    if not isinstance(schema, dict):
        return value, None
    if _has_combinator(schema):
        return _check_combined(value, schema, path)
    if "const" in schema:
        return _check_enum(value, [schema["const"]], path)
    if "enum" in schema:
        return _check_enum(value, schema["enum"], path)
    kind = schema.get("type")
    if kind is None:
        return _check_untyped(value, schema, path)
    if isinstance(kind, list):
        return _check_union(value, [{**schema, "type": k} for k in kind], path)
    checker = _CHECKERS.get(kind)
    if checker is None:
        return value, None
    return checker(value, schema, path)


def _check_untyped(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    """No ``type``: object or array keywords still apply to a value of that kind."""
    if isinstance(value, dict) and not _OBJECT_WORDS.isdisjoint(schema):
        return _check_object(value, schema, path)
    if isinstance(value, list) and not _ARRAY_WORDS.isdisjoint(schema):
        return _check_array(value, schema, path)
    return value, None


def _check_combined(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    """The schema's own keywords first, then each of ``allOf``, ``anyOf``, ``oneOf``."""
    base = {k: v for k, v in schema.items() if k not in _COMBINATORS}
    value, problem = check_value(value, base, path)
    for word in _COMBINATORS:
        if problem is not None or word not in schema:
            continue
        options = list(schema[word] or ())
        if word == "allOf":
            for option in options:
                value, problem = check_value(value, option, path)
                if problem is not None:
                    break
        else:
            value, problem = _check_union(value, options, path)
    return value, problem


def pick_option(value: Any, options: list[JSON]) -> int | None:
    """Which option of a union takes `value`: the first taking it unchanged, else the first at all."""
    fallback: int | None = None
    for i, option in enumerate(options):
        fixed, problem = check_value(value, option, "")
        if problem is None:
            if _identical(fixed, value):
                return i
            if fallback is None:
                fallback = i
    return fallback


def _identical(a: Any, b: Any) -> bool:
    """Same value and same types all the way down (``1`` and ``1.0`` differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _check_union(value: Any, options: list[JSON], path: str) -> tuple[Any, str | None]:
    chosen = pick_option(value, options)
    if chosen is not None:
        return check_value(value, options[chosen], path)
    expected = " or ".join(_expected(o) for o in options)
    return value, f"{_at(path)}expected {expected}, got {_kind(value)} {_show(value)}"


def _check_enum(value: Any, allowed_values: list[Any], path: str) -> tuple[Any, str | None]:
    for allowed in allowed_values:
        if _same_json(value, allowed):
            return allowed, None  # the declared value itself, of its declared type
    choices = ", ".join(json.dumps(v) for v in allowed_values)
    return value, f"{_at(path)}expected one of {choices}, got {_show(value)}"


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: ``1 == 1.0``, but a boolean equals only a boolean, at any depth."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b)


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
            decoded = json.loads(value, parse_constant=_refuse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            return value
        if isinstance(decoded, want):
            return decoded
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON has no {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as Infinity
        raise ValueError(f"{text} is out of range")
    return number


def _check_array(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    value = _decode_once(value, list)
    if not isinstance(value, list):
        return value, _wrong("array", value, path)
    length_problem = _length_problem(len(value), schema)
    if length_problem:
        return value, f"{_at(path)}{length_problem}"
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
        seen = [_unique_key(x) for x in out]
        if len(set(seen)) != len(seen):
            return value, f"{_at(path)}items must be unique"
    return out, None


def _length_problem(n: int, schema: JSON) -> str | None:
    least, most = schema.get("minItems", 0), schema.get("maxItems")
    if least == most and n != least:
        return f"expected {least} items, got {n}"
    if n < least:
        return f"expected at least {least} items, got {n}"
    if most is not None and n > most:
        return f"expected at most {most} items, got {n}"
    return None


def _unique_key(value: Any) -> Any:
    """A hashable key equal for equal JSON values (``1`` and ``1.0`` alike, ``true`` apart)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, dict):
        return ("object", frozenset((k, _unique_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_unique_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("other", repr(value))
    return (type(value).__name__, value)


def _check_object(value: Any, schema: JSON, path: str) -> tuple[Any, str | None]:
    value = _decode_once(value, dict)
    if not isinstance(value, dict):
        return value, _wrong("object", value, path)
    props: JSON = schema.get("properties", {})
    missing = [k for k in schema.get("required", ()) if k not in value]
    if missing:
        return value, f"{_at(path)}missing required key(s): {', '.join(missing)}"
    least, most = schema.get("minProperties", 0), schema.get("maxProperties")
    if len(value) < least or (most is not None and len(value) > most):
        bounds = f"at least {least}" if len(value) < least else f"at most {most}"
        return value, f"{_at(path)}expected {bounds} keys, got {len(value)}"
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


def measure(value: Any, depth_limit: int, size_limit: int | None = None) -> tuple[int, int]:
    """(nesting depth, approximate JSON size in characters) of `value`, in one pass.

    Stops early once the depth passes `depth_limit` or the size passes
    `size_limit` (so a huge argument costs no more than what proves it too
    big). Sizes count string lengths plus a few characters per item; close
    enough for a limit.
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
        if size_limit is not None and size > size_limit:
            break
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
            if size_limit is None or size <= size_limit:
                stack.extend((v, depth + 1) for v in item)
        else:
            size += 8
    return deepest, size


def _wrong(expected: str, value: Any, path: str) -> str:
    return f"{_at(path)}expected {expected}, got {_kind(value)} {_show(value)}"


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _expected(schema: JSON) -> str:
    if not isinstance(schema, dict):
        return "any value"
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind is None and schema.get("required"):
        return "an object with " + ", ".join(schema["required"])
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


def timeout_problem(name: str, value: object) -> str | None:
    """Why `value` cannot be a time limit in seconds, or None if it can (None means no limit).

    A limit must be a number above 0 and at most ``threading.TIMEOUT_MAX``
    (about 292 years on 64-bit builds): the waits of `threading` and
    `asyncio` raise ``OverflowError`` beyond it, which would only show on
    the first call.
    """
    import threading

    if value is None:
        return None
    allowed = (
        f"{name} must be a number of seconds above 0 and at most {threading.TIMEOUT_MAX:.0f} "
        "(threading.TIMEOUT_MAX), or None for no limit"
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{allowed}; got {type(value).__name__} {value!r:.60}"
    if not (0 < value <= threading.TIMEOUT_MAX):  # also False for NaN
        return f"{allowed}; got {value!r}"
    return None


def check_timeout(name: str, value: object, *, error: type[Exception] | None = None) -> float | None:
    """Return `value` as a time limit, or raise `error` (`ToolDefinitionError` by default) saying the range.

    `LoopConfig` passes ``error=ConfigError`` for ``tool_timeout_s``.
    """
    problem = timeout_problem(name, value)
    if problem is not None:
        if error is None:
            from ..errors import ToolDefinitionError

            error = ToolDefinitionError
        raise error(problem)
    return value  # type: ignore[return-value]  # checked: None, int or float
