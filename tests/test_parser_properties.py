"""Properties of the tool-call parser (row A1): only ParseError escapes; valid calls survive."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from looplet import ParseError, ToolCall
from looplet.backends.text import parse_tool_calls

json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
tool_names = st.text(
    st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-"),
    min_size=1,
    max_size=12,
)
arg_dicts = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@st.composite
def valid_calls(draw: Any) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """A reply in one of the documented shapes, and the calls it holds."""
    calls = draw(st.lists(st.tuples(tool_names, arg_dicts), min_size=1, max_size=3))
    shape = draw(
        st.sampled_from(["single", "batch", "array"]) if len(calls) > 1 else st.just("single")
    )
    ascii_only = draw(st.booleans())

    def one(name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"tool": name, "args": args}

    if shape == "single":
        text = "\n".join(json.dumps(one(*c), ensure_ascii=ascii_only) for c in calls)
    elif shape == "batch":
        text = json.dumps({"tools": [one(*c) for c in calls]}, ensure_ascii=ascii_only)
    else:
        text = json.dumps([one(*c) for c in calls], ensure_ascii=ascii_only)
    return text, calls


def parse_or_parse_error(text: str) -> list[ToolCall] | None:
    try:
        calls = parse_tool_calls(text)
    except ParseError as exc:
        assert str(exc)
        return None
    assert calls and all(isinstance(c, ToolCall) and isinstance(c.args, dict) for c in calls)
    return calls


@given(st.text(max_size=300))
def test_arbitrary_text_raises_nothing_but_parse_error(text: str) -> None:
    parse_or_parse_error(text)


@given(st.text(alphabet="{}[]\",:'\\ntruefalsnl0123 \n\ttoolargs", max_size=120))
def test_bracket_soup_raises_nothing_but_parse_error(text: str) -> None:
    parse_or_parse_error(text)


@given(valid_calls())
def test_valid_calls_parse_back_exactly(case: tuple[str, list[Any]]) -> None:
    text, calls = case
    parsed = parse_tool_calls(text)
    assert [(c.tool, c.args) for c in parsed] == calls
    assert all(c.parse_error is None for c in parsed)


prose = st.text(
    st.characters(blacklist_characters="{}[]\"'\x00", blacklist_categories=("Cs",)), max_size=60
)


@given(valid_calls(), prose, prose, st.sampled_from(["", "json", "JSON"]), st.booleans())
def test_valid_calls_survive_prose_and_code_fences(
    case: tuple[str, list[Any]], before: str, after: str, lang: str, fenced: bool
) -> None:
    text, calls = case
    body = f"```{lang}\n{text}\n```" if fenced else text
    parsed = parse_tool_calls(f"{before}\n{body}\n{after}")
    assert [(c.tool, c.args) for c in parsed] == calls


@given(valid_calls(), st.data())
def test_deleting_a_character_raises_nothing_but_parse_error(
    case: tuple[str, list[Any]], data: Any
) -> None:
    text, _ = case
    i = data.draw(st.integers(0, len(text) - 1))
    parse_or_parse_error(text[:i] + text[i + 1 :])


@given(valid_calls(), st.data(), st.sampled_from(['"', "'", "{", "]", ",", "\\", "\n"]))
def test_inserting_a_quote_or_bracket_raises_nothing_but_parse_error(
    case: tuple[str, list[Any]], data: Any, char: str
) -> None:
    text, _ = case
    i = data.draw(st.integers(0, len(text)))
    parse_or_parse_error(text[:i] + char + text[i:])


@given(valid_calls(), st.data())
def test_a_reply_cut_anywhere_never_yields_a_call_it_did_not_finish(
    case: tuple[str, list[Any]], data: Any
) -> None:
    text, calls = case
    i = data.draw(st.integers(0, len(text) - 1))
    parsed = parse_or_parse_error(text[:i])
    if parsed is None:
        return
    # whatever was read must be among the calls the model wrote completely
    for call in parsed:
        if call.parse_error is None:
            assert (call.tool, call.args) in calls


@given(st.text(max_size=200))
def test_double_encoded_arguments_are_decoded_once(inner: str) -> None:
    args = {"text": inner}
    text = json.dumps({"tool": "echo", "args": json.dumps(args)})
    (call,) = parse_tool_calls(text)
    assert call.args == args
