"""JSON Schema for a tool, built from the function's type hints and docstring.

Supported hints: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``,
``list[X]`` (and ``Sequence``, ``set``, ``tuple[X, ...]``, fixed tuples),
``dict`` / ``dict[str, X]``, ``Optional`` and unions, ``Literal``, ``Enum``,
``TypedDict``, dataclasses, and ``Annotated[X, "description"]``. Values that
validate are converted back into the hinted Python type (an Enum member, a
dataclass instance, a tuple or a set) before the tool is called.

The signature shown to the model (`signature_text`) is read from the JSON
Schema alone, for derived and hand-written schemas alike, so what the model
is told and what is checked cannot disagree: ``name: type`` for a required
argument, ``name: type = default`` for one with a default, ``name?: type``
for an optional one without, and ``**kwargs`` when other names are allowed.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ToolDefinitionError

__all__ = ["ToolSignature", "describe_function", "schema_for_type", "parse_docstring", "signature_text"]

Converter = Callable[[Any], Any]
JSON = dict[str, Any]

_NONE_TYPE = type(None)


@dataclass
class ToolSignature:
    """What `describe_function` learns about a function."""

    description: str
    parameters: JSON
    converters: dict[str, Converter] = field(default_factory=dict)
    ctx_param: str | None = None
    text: str = ""


def describe_function(fn: Callable[..., Any], name: str, ctx_type: type | None = None) -> ToolSignature:
    """Build the schema, converters and a readable signature for `fn`."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError for an unresolvable forward reference, mostly
        raise ToolDefinitionError(f"cannot read the type hints of tool {name!r}: {exc}") from exc
    summary, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
    sig = inspect.signature(fn)
    properties: JSON = {}
    required: list[str] = []
    converters: dict[str, Converter] = {}
    ctx_param: str | None = None
    extra_ok = False
    for pname, param in sig.parameters.items():
        hint = hints.get(pname, Any)
        if pname == "ctx" or (ctx_type is not None and hint is ctx_type):
            ctx_param = pname
            continue
        if param.kind is param.VAR_POSITIONAL:
            raise ToolDefinitionError(f"tool {name!r}: *{pname} is not supported; use a list parameter")
        if param.kind is param.VAR_KEYWORD:
            extra_ok = True
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(f"tool {name!r}: positional-only parameter {pname!r} is not supported")
        schema, conv = schema_for_type(hint, f"{name}.{pname}")
        if pname in arg_docs and "description" not in schema:
            schema["description"] = arg_docs[pname]
        if param.default is inspect.Parameter.empty:
            required.append(pname)
        elif _is_json_literal(param.default):
            schema["default"] = param.default
        properties[pname] = schema
        if conv is not None:
            converters[pname] = conv
    parameters: JSON = {"type": "object", "properties": properties, "required": required}
    parameters["additionalProperties"] = extra_ok
    return ToolSignature(
        description=summary or name,
        parameters=parameters,
        converters=converters,
        ctx_param=ctx_param,
        text=signature_text(name, parameters),
    )


def signature_text(name: str, parameters: JSON) -> str:
    """The call as the model should write it, read from the JSON Schema alone."""
    props = parameters.get("properties") if isinstance(parameters, dict) else None
    props = props if isinstance(props, dict) else {}
    required = set(parameters.get("required") or ()) if isinstance(parameters, dict) else set()
    parts = []
    for pname, sub in props.items():
        text = schema_text(sub)
        if pname in required:
            parts.append(f"{pname}: {text}")
        elif isinstance(sub, dict) and "default" in sub:
            parts.append(f"{pname}: {text} = {sub['default']!r}")
        else:
            parts.append(f"{pname}?: {text}")
    extra = parameters.get("additionalProperties", True) if isinstance(parameters, dict) else True
    if isinstance(extra, dict):
        parts.append(f"**kwargs: {schema_text(extra)}")
    elif extra is not False:
        parts.append("**kwargs")
    return f"{name}({', '.join(parts)})"


_TYPE_NAMES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "array": "list",
    "object": "dict",
}


def schema_text(schema: Any) -> str:
    """A short Python-like type for one JSON Schema: ``list[str] | None``, ``Literal['a', 'b']``."""
    if not isinstance(schema, dict) or not schema:
        return "Any"
    if "const" in schema:
        return f"Literal[{schema['const']!r}]"
    if "enum" in schema:
        return f"Literal[{', '.join(repr(v) for v in schema['enum'])}]"
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return _joined(schema_text(o) for o in options)
    kind = schema.get("type")
    if isinstance(kind, list):
        return _joined(schema_text({**schema, "type": k}) for k in kind)
    if kind == "array":
        return _array_text(schema)
    if kind == "object":
        return _object_text(schema)
    if kind is None and "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return _TYPE_NAMES.get(kind, str(kind)) if kind is not None else "Any"


def _joined(texts: Any) -> str:
    return " | ".join(dict.fromkeys(texts))


def _array_text(schema: JSON) -> str:
    prefix = schema.get("prefixItems")
    if prefix:
        return f"tuple[{', '.join(schema_text(p) for p in prefix)}]"
    container = "set" if schema.get("uniqueItems") else "list"
    items = schema.get("items")
    return f"{container}[{schema_text(items)}]" if items else container


def _object_text(schema: JSON) -> str:
    props = schema.get("properties")
    if isinstance(props, dict) and props:
        required = set(schema.get("required") or ())
        fields = ", ".join(
            f"{key}{'' if key in required else '?'}: {schema_text(sub)}" for key, sub in props.items()
        )
        return f"{{{fields}}}"
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        return f"dict[str, {schema_text(extra)}]"
    return "dict"


def schema_for_type(hint: Any, where: str = "") -> tuple[JSON, Converter | None]:
    """The JSON Schema for one type hint, and a converter for values that need one."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema, conv = schema_for_type(args[0], where)
        texts = [a for a in args[1:] if isinstance(a, str)]
        if texts:
            schema["description"] = " ".join(texts)
        return schema, conv
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return dict(simple), None
    if hint is Any or hint is object:
        return {}, None
    if origin is typing.Union or origin is types.UnionType:
        return _union_schema(args, where)
    if origin is typing.Literal:
        return _literal_schema(args), None
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        values = [m.value for m in hint]
        schema = _literal_schema(tuple(values))
        return schema, _enum_converter(hint)
    if origin in (list, set, frozenset, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return _array_schema(origin, args, where)
    if hint in (list, set, frozenset, tuple):
        return {"type": "array"}, (None if hint is list else hint)
    if origin is dict or origin is collections.abc.Mapping or hint is dict:
        return _dict_schema(args, where)
    if _is_typeddict(hint):
        return _typeddict_schema(hint, where)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass_schema(hint, where)
    raise ToolDefinitionError(
        f"{where}: type {_type_text(hint)} has no JSON Schema; use str, int, float, bool, list, "
        "dict, Optional, Literal, Enum, TypedDict or a dataclass"
    )


_SIMPLE: dict[Any, JSON] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    None: {"type": "null"},
    _NONE_TYPE: {"type": "null"},
}


def _union_schema(args: tuple[Any, ...], where: str) -> tuple[JSON, Converter | None]:
    options = [schema_for_type(a, where) for a in args]
    convs = [c for _, c in options]
    schema: JSON = {"anyOf": [s for s, _ in options]}
    if not any(convs):
        return schema, None

    def convert(value: Any) -> Any:
        # The option the validator chose (unchanged first) converts the value.
        from .validation import pick_option

        chosen = pick_option(value, [sub for sub, _ in options])
        conv = options[chosen][1] if chosen is not None else None
        return conv(value) if conv else value

    return schema, convert


def _literal_schema(values: tuple[Any, ...]) -> JSON:
    schema: JSON = {"enum": list(values)}
    kinds = {type(v) for v in values}
    if len(kinds) == 1:
        only = _SIMPLE.get(kinds.pop())
        if only is not None:
            schema = {**only, **schema}
    return schema


def _enum_converter(cls: type[enum.Enum]) -> Converter:
    return lambda value: cls(value)


def _array_schema(origin: Any, args: tuple[Any, ...], where: str) -> tuple[JSON, Converter | None]:
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [schema_for_type(a, where) for a in args]
        schema: JSON = {
            "type": "array",
            "prefixItems": [s for s, _ in items],
            "minItems": len(items),
            "maxItems": len(items),
        }
        convs = [c for _, c in items]
        return schema, lambda v: tuple(c(x) if c else x for c, x in zip(convs, v, strict=True))
    item_schema, item_conv = schema_for_type(args[0], where) if args else ({}, None)
    schema = {"type": "array", "items": item_schema}
    if origin in (set, frozenset):
        schema["uniqueItems"] = True
    wrap: Callable[[Any], Any] | None = {set: set, frozenset: frozenset, tuple: tuple}.get(origin)
    if item_conv is None and wrap is None:
        return schema, None
    conv_item = item_conv or (lambda x: x)
    outer = wrap or list
    return schema, lambda v: outer(conv_item(x) for x in v)


def _dict_schema(args: tuple[Any, ...], where: str) -> tuple[JSON, Converter | None]:
    schema: JSON = {"type": "object"}
    if len(args) == 2:
        if args[0] is not str:
            raise ToolDefinitionError(f"{where}: dict keys must be str in JSON, got {_type_text(args[0])}")
        value_schema, conv = schema_for_type(args[1], where)
        schema["additionalProperties"] = value_schema
        if conv is not None:
            return schema, lambda v: {k: conv(x) for k, x in v.items()}
    return schema, None


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__required_keys__")


def _typeddict_schema(hint: Any, where: str) -> tuple[JSON, Converter | None]:
    hints = typing.get_type_hints(hint, include_extras=True)
    props: JSON = {}
    convs: dict[str, Converter] = {}
    required: list[str] = []
    for key, sub in hints.items():
        inner = sub
        marker = typing.get_origin(sub)
        # The resolved Required/NotRequired marker decides; `__required_keys__` is
        # wrong on Python 3.11 when the class was defined under postponed annotations.
        if marker in (typing.Required, typing.NotRequired):
            inner = typing.get_args(sub)[0]
        if marker is typing.Required or (marker is not typing.NotRequired and key in hint.__required_keys__):
            required.append(key)
        props[key], conv = schema_for_type(inner, f"{where}.{key}")
        if conv is not None:
            convs[key] = conv
    schema: JSON = {
        "type": "object",
        "properties": props,
        "required": sorted(required),
        "additionalProperties": False,
    }
    if not convs:
        return schema, None
    return schema, lambda v: {k: (convs[k](x) if k in convs else x) for k, x in v.items()}


def _dataclass_schema(cls: type, where: str) -> tuple[JSON, Converter | None]:
    hints = typing.get_type_hints(cls, include_extras=True)
    props: JSON = {}
    required: list[str] = []
    convs: dict[str, Converter] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        props[f.name], conv = schema_for_type(hints.get(f.name, Any), f"{where}.{f.name}")
        if conv is not None:
            convs[f.name] = conv
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema: JSON = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    doc = inspect.getdoc(cls)
    if doc and not doc.startswith(f"{cls.__name__}("):
        schema["description"] = doc.split("\n\n")[0]

    def convert(value: Any) -> Any:
        return cls(**{k: (convs[k](x) if k in convs else x) for k, x in value.items()})

    return schema, convert


def _is_json_literal(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return False


def _type_text(hint: Any) -> str:
    if hint is Any:
        return "Any"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return re.sub(r"\btyping\.", "", repr(hint)).replace("NoneType", "None")


# -- docstrings -----------------------------------------------------------------

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^:param\s+(?:[^:]+\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and per-argument descriptions.

    Reads Google-style ``Args:`` sections (and Sphinx ``:param x:`` lines).
    The description is everything before the first section.
    """
    lines = doc.splitlines()
    desc: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    base_indent = 0
    for raw in lines:
        stripped = raw.strip()
        head = _SECTION.match(stripped)
        if head and (len(raw) - len(raw.lstrip())) == 0:
            section = head.group(1).lower()
            current = None
            continue
        sphinx = _SPHINX.match(stripped)
        if sphinx:
            current = sphinx.group(1)
            args[current] = sphinx.group(2).strip()
            section = "sphinx"
            continue
        if section is None:
            desc.append(raw)
            continue
        if section not in ("args", "arguments", "parameters", "params", "sphinx"):
            continue
        if not stripped:
            continue
        indent = len(raw) - len(raw.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (current is None or indent <= base_indent):
            current = match.group(1).lstrip("*")
            base_indent = indent
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(desc).strip(), args
