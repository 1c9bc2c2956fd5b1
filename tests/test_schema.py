"""Tools from functions: JSON Schema from type hints, docstrings, registry options and conversions."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Optional, Required, TypedDict

import pytest

from looplet import BaseToolRegistry, ToolCall, ToolContext, ToolDefinitionError, ToolSpec, tool
from looplet.tools import PreparedCall
from looplet.tools.dispatch import run_sync
from looplet.tools.schema import parse_docstring, schema_for_type


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(TypedDict):
    street: str
    zip: NotRequired[int]
    lines: list[str]


class Partial(TypedDict, total=False):
    name: Required[str]
    note: str


@dataclass
class Box:
    """A box with a size."""

    width: int
    height: int = 1
    tags: list[str] = field(default_factory=list)


@pytest.mark.parametrize(
    "hint, schema",
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (Any, {}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (list, {"type": "array"}),
        (Sequence[str], {"type": "array", "items": {"type": "string"}}),
        (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (dict, {"type": "object"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045
        (int | str, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal["a", 1], {"enum": ["a", 1]}),
        (Color, {"type": "string", "enum": ["red", "blue"]}),
        (Annotated[int, "how many"], {"type": "integer", "description": "how many"}),
    ],
)
def test_schema_from_type_hints(hint: Any, schema: dict[str, Any]) -> None:
    assert schema_for_type(hint)[0] == schema


def test_fixed_tuple_schema() -> None:
    schema, convert = schema_for_type(tuple[int, str])
    assert schema == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert convert is not None and convert([1, "a"]) == (1, "a")


def test_typeddict_and_dataclass_schemas() -> None:
    assert schema_for_type(Address)[0] == {
        "type": "object",
        "properties": {
            "street": {"type": "string"},
            "zip": {"type": "integer"},
            "lines": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["lines", "street"],
        "additionalProperties": False,
    }
    assert schema_for_type(Partial)[0]["required"] == ["name"]
    schema, convert = schema_for_type(Box)
    assert schema["required"] == ["width"] and schema["description"] == "A box with a size."
    assert schema["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert convert is not None and convert({"width": 2}) == Box(2)


@pytest.mark.parametrize("hint", [complex, dict[int, str], bytes])
def test_types_without_a_json_schema_are_a_definition_error(hint: Any) -> None:
    with pytest.raises(ToolDefinitionError):
        schema_for_type(hint, "t.x")


def test_function_to_tool_with_docstring_descriptions() -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def search(query: str, limit: int = 10, kinds: list[str] | None = None) -> list[str]:
        """Search the index.

        Returns matching documents.

        Args:
            query: what to look for;
                may span lines.
            limit (int): at most this many.
            kinds: only these kinds.

        Returns:
            The matches.
        """
        return []

    spec = tools.get("search")
    assert spec is not None and search("x") == []  # still a plain function
    assert spec.description == "Search the index.\n\nReturns matching documents."
    props = spec.parameters["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for; may span lines."}
    assert props["limit"] == {"type": "integer", "description": "at most this many.", "default": 10}
    assert spec.parameters["required"] == ["query"]
    assert spec.parameters["additionalProperties"] is False
    assert spec.signature == "search(query: str, limit: int = 10, kinds: list[str] | None = None)"
    assert tools.schemas() == [spec.schema()] and tools.schemas() is tools.schemas()


def test_sphinx_style_docstrings_are_read() -> None:
    summary, args = parse_docstring("Do it.\n\n:param x: the x\n:param int y: the y")
    assert summary == "Do it." and args == {"x": "the x", "y": "the y"}


def test_converted_values_reach_the_tool_as_python_types() -> None:
    got: list[Any] = []

    @tool
    def paint(
        color: Color, box: Box, where: Address, pair: tuple[int, int], names: set[str]
    ) -> str:
        """Paint."""
        got.append((color, box, where, pair, names))
        return "ok"

    tools = BaseToolRegistry([paint])
    args = {
        "color": "red",
        "box": {"width": 3, "tags": ["a"]},
        "where": {"street": "Main", "lines": []},
        "pair": [1, 2],
        "names": ["b", "a"],
    }
    prepared = tools.prepare(ToolCall("paint", args))
    assert isinstance(prepared, PreparedCall)
    assert run_sync(prepared, None).ok
    assert got == [
        (Color.RED, Box(3, 1, ["a"]), {"street": "Main", "lines": []}, (1, 2), {"a", "b"})
    ]


def test_optional_enum_is_converted_only_when_present() -> None:
    got: list[Any] = []

    @tool
    def pick(color: Color | None = None) -> None:
        """Pick."""
        got.append(color)

    tools = BaseToolRegistry([pick])
    for args in ({"color": "blue"}, {"color": None}, {}):
        prepared = tools.prepare(ToolCall("pick", args))
        assert isinstance(prepared, PreparedCall) and run_sync(prepared, None).ok
    assert got == [Color.BLUE, None, None]


def test_tool_options_bare_and_with_arguments() -> None:
    @tool
    def plain() -> None:
        """Plain."""

    @tool(name="renamed", description="Custom.", free=True, concurrent_safe=True, timeout_s=2)
    def fancy() -> None:
        """Ignored docstring."""

    tools = BaseToolRegistry([plain, fancy])
    spec = tools.get("renamed")
    assert spec is not None and tools.names == ["plain", "renamed"]
    assert (spec.description, spec.free, spec.concurrent_safe, spec.timeout_s) == (
        "Custom.",
        True,
        True,
        2,
    )
    assert (
        "renamed" in tools and len(tools) == 2 and [s.name for s in tools] == ["plain", "renamed"]
    )


def test_register_options_override_the_decorator_and_explicit_parameters_win() -> None:
    @tool(free=True)
    def note(text: str) -> None:
        """Note."""

    tools = BaseToolRegistry()
    spec = tools.register(
        note, name="memo", free=False, parameters={"type": "object", "properties": {}}
    )
    assert spec.name == "memo" and spec.free is False and spec.parameters["properties"] == {}
    assert tools.register(ToolSpec("raw", "Raw.", {"type": "object"}, fn=lambda: 1)).name == "raw"


def test_registry_rejects_duplicates_and_bad_definitions() -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def once() -> None:
        """Once."""

    with pytest.raises(ToolDefinitionError, match="already registered"):
        tools.register(once)
    with pytest.raises(ToolDefinitionError, match="callable"):
        tools.register(42)  # type: ignore[arg-type]
    with pytest.raises(ToolDefinitionError, match="timeout_s"):
        tool(timeout_s=0)
    with pytest.raises(ToolDefinitionError, match="__name__"):
        tools.register(type("NoName", (), {"__call__": lambda self: None})())

    def star(*items: int) -> None: ...

    def positional(a: int, /) -> None: ...

    def unknown_type(x: complex) -> None: ...

    for fn, message in (
        (star, r"\*items"),
        (positional, "positional-only"),
        (unknown_type, "complex"),
    ):
        with pytest.raises(ToolDefinitionError, match=message):
            tools.register(fn)


def test_unresolvable_hint_is_a_definition_error() -> None:
    def broken(x: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Broken."""

    with pytest.raises(ToolDefinitionError, match="cannot read the type hints"):
        BaseToolRegistry([broken])


def test_unregister_and_done_tool_tracking() -> None:
    from looplet import register_done_tool

    tools = BaseToolRegistry()
    assert tools.done_tool is None
    spec = register_done_tool(tools, name="finish")
    assert tools.done_tool is spec
    register_done_tool(tools, name="finish2")
    assert tools.unregister("finish") is spec
    assert tools.done_tool is not None and tools.done_tool.name == "finish2"
    tools.unregister("finish2")
    assert tools.done_tool is None and tools.schemas() == []


def test_ctx_parameter_is_hidden_from_the_schema() -> None:
    @tool
    def uses(x: int, ctx: ToolContext) -> int:
        """Use ctx."""
        return x

    spec = BaseToolRegistry([uses]).get("uses")
    assert spec is not None and spec.ctx_param == "ctx"
    assert list(spec.parameters["properties"]) == ["x"] and spec.signature == "uses(x: int)"


def test_think_tool_is_free_and_done_tool_takes_custom_parameters() -> None:
    from looplet import register_done_tool, register_think_tool

    tools = BaseToolRegistry()
    think = register_think_tool(tools)
    assert think.free and think.parameters["required"] == ["thought"]
    done = register_done_tool(
        tools, parameters={"type": "object", "properties": {"score": {"type": "integer"}}}
    )
    prepared = tools.prepare(ToolCall("done", {"score": 3}))
    assert done.done and isinstance(prepared, PreparedCall)
    assert run_sync(prepared, None).data == {"score": 3}
