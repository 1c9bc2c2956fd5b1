"""Properties of the tool-call parser (row A1): only ParseError escapes; valid calls survive,
every one of them and in order; data is never a call; a cut reply never runs what it cut.

Each property counts the branch it is about (``hypothesis.event``, and a counter checked
after the run), so a strategy too narrow to reach that branch fails instead of passing idly.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from looplet import ParseError, ToolCall
from looplet.backends.text import parse_tool_calls

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
tool_names = st.text(
    st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-"),
    min_size=1,
    max_size=12,
)
arg_dicts = st.dictionaries(st.text(max_size=10), json_values, max_size=4)

# Prose as models write it, brackets and quotes included: citations, links, templates, code,
# JSON data, stray quotes and apostrophes, half-open intervals, lone brackets before words.
PROSE_TOKENS = [
    "{x}",
    "{ }",
    "{{name}}",
    "{a: 1}",
    "[1]",
    "[2, 3]",
    "[docs](http://x.io/{id})",
    "[ ]",
    "- [x]",
    'f"{x}"',
    '"quoted"',
    "it's",
    "'single'",
    '"',
    "'",
    "{word",
    "}",
    "[see",
    "]",
    "(1, 2]",
    "[0, 1)",
    '{"a": 1}',
    '["a", "b"]',
    "{'k': 'v'}",
    "function f() { return [a, b]; }",
    "if (x) { y(); }",
    "[1, 2",
    '{"n": [1, {"m": null}]}',
    "Sure!",
    "```",
    "```json",
    ":",
    ",",
]
words = st.text(st.sampled_from("abcdefghij XYZ0123456789.,;:!?()-\n"), min_size=1, max_size=10)
prose = st.lists(st.sampled_from(PROSE_TOKENS) | words, max_size=8).map(" ".join)
# Quoted records: prose that holds a "name", never a call.
RECORDS = ['{"name": "Ann", "status": "ok"}', '[{"name": "purge", "id": 1}]']
prose_with_records = st.lists(st.sampled_from(PROSE_TOKENS + RECORDS) | words, max_size=8).map(" ".join)


def has_bracket(text: str) -> bool:
    return any(ch in text for ch in "{}[]")


def share(seen: Counter[str], key: str) -> float:
    return seen[key] / max(1, seen["examples"])


@st.composite
def valid_calls(draw: Any) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """A reply in one of the documented shapes, and the calls it holds."""
    calls = draw(st.lists(st.tuples(tool_names, arg_dicts), min_size=1, max_size=3))
    shape = draw(st.sampled_from(["single", "batch", "array"]) if len(calls) > 1 else st.just("single"))
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


def parse_or_parse_error(text: str) -> list[ToolCall] | ParseError:
    try:
        calls = parse_tool_calls(text)
    except ParseError as exc:
        assert str(exc) and isinstance(exc.attempted, bool)
        return exc
    assert calls and all(isinstance(c, ToolCall) and isinstance(c.args, dict) for c in calls)
    return calls


def outcome(result: list[ToolCall] | ParseError) -> str:
    """The branch a reply took: parsed, or which kind of ParseError."""
    if not isinstance(result, ParseError):
        return "parsed"
    for kind in ("cut off", "invalid", "not a tool call", "no JSON", "batch", "tangled"):
        if kind in str(result):
            return f"error: {kind}"
    return "error: other"


# -- only ParseError escapes ---------------------------------------------------------------------

fragments = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        '"',
        "'",
        ":",
        ",",
        "\\",
        '"tool"',
        '"args"',
        '"name"',
        '"tools"',
        "true",
        "None",
        "-",
        "1e",
        "\n",
        "```json",
    ]
)


@st.composite
def reply_like_text(draw: Any) -> str:
    """Text made of prose, JSON punctuation, and whole or cut calls, in any order."""
    call_text = valid_calls().map(lambda case: case[0])
    cut_call = st.tuples(call_text, st.floats(0, 1)).map(lambda c: c[0][: int(len(c[0]) * c[1])])
    chunks = st.lists(st.text(max_size=20) | fragments | call_text | cut_call | prose, max_size=8)
    return "".join(draw(chunks))


def test_arbitrary_text_raises_nothing_but_parse_error() -> None:
    seen: Counter[str] = Counter()

    @given(reply_like_text())
    def check(text: str) -> None:
        branch = outcome(parse_or_parse_error(text))
        event(branch)
        seen["examples"] += 1
        seen[branch] += 1
        seen["bracket"] += has_bracket(text)

    check()
    assert share(seen, "bracket") >= 0.6, seen
    assert share(seen, "parsed") >= 0.1, seen
    # several kinds of refusal are reached (how many of the rarer ones varies with what ran before)
    assert sum(1 for key in seen if key.startswith("error")) >= 3, seen
    assert seen["error: cut off"] >= 10 and seen["error: no JSON"] >= 10, seen


def test_bracket_soup_raises_nothing_but_parse_error() -> None:
    seen: Counter[str] = Counter()

    soup_tokens = st.sampled_from(
        [
            "{",
            "}",
            "[",
            "]",
            '{"',
            "['",
            "[{",
            '["',
            "{'",
            "[1",
            '"',
            "'",
            ":",
            ",",
            "\\",
            " ",
            "\n",
            "true",
            "fals",
            "None",
            "0",
            "-1.",
            '"tool"',
            '"args"',
            '"name"',
            '"arguments"',
            '"a"',
            "'b'",
            '"x y"',
        ]
    )

    @given(st.lists(soup_tokens, max_size=40).map("".join))
    def check(text: str) -> None:
        branch = outcome(parse_or_parse_error(text))
        event(branch)
        seen["examples"] += 1
        seen[branch] += 1
        seen["opens JSON"] += re.search(r"""\{\s*["']|\[\s*[{\["'0-9-]""", text) is not None

    check()
    # the soup reaches the JSON readers (cut off, invalid, not a call), not only "no JSON"
    assert share(seen, "opens JSON") >= 0.5, seen
    assert sum(1 for key in seen if key.startswith("error")) >= 3, seen


# -- valid calls survive -------------------------------------------------------------------------


@given(valid_calls())
def test_valid_calls_parse_back_exactly(case: tuple[str, list[Any]]) -> None:
    text, calls = case
    parsed = parse_tool_calls(text)
    assert [(c.tool, c.args) for c in parsed] == calls
    assert all(c.parse_error is None for c in parsed)


def test_valid_calls_survive_prose_and_code_fences() -> None:
    seen: Counter[str] = Counter()

    @given(valid_calls(), prose_with_records, prose, st.sampled_from(["", "json", "JSON"]), st.booleans())
    def check(case: tuple[str, list[Any]], before: str, after: str, lang: str, fenced: bool) -> None:
        text, calls = case
        body = f"```{lang}\n{text}\n```" if fenced else text
        parsed = parse_tool_calls(f"{before}\n{body}\n{after}")
        assert [(c.tool, c.args) for c in parsed] == calls
        around = "prose with brackets" if has_bracket(before + after) else "plain prose"
        event(around)
        seen["examples"] += 1
        seen[around] += 1
        seen["quotes"] += any(q in before + after for q in "\"'")

    check()
    assert share(seen, "prose with brackets") >= 0.5, seen
    assert share(seen, "quotes") >= 0.3, seen


CALLS = [
    ("a", {}),
    ("b_2", {"k": 1}),
    ("Zed", {"{": "}", "'": '"'}),
    ("ü", {"n": [1, {"m": None}], "s": "[x] {y}"}),
]
PROSE = [" ".join(tokens) for tokens in zip(PROSE_TOKENS, PROSE_TOKENS[3:] + RECORDS, strict=False)]
PROSE += ["", "Now:", "```json", "```", *PROSE_TOKENS, *RECORDS]


def test_every_call_among_prose_is_read_in_order() -> None:
    seen: Counter[str] = Counter()
    item = st.tuples(st.integers(0, len(CALLS) - 1), st.integers(0, len(PROSE) - 1))

    @given(st.integers(1, 200).flatmap(lambda n: st.lists(item, min_size=n, max_size=n)), prose)
    def check(items: list[tuple[int, int]], first: str) -> None:
        parts = [first]
        for call, after in items:
            name, args = CALLS[call]
            parts += [json.dumps({"tool": name, "args": args}), PROSE[after]]
        parsed = parse_tool_calls("\n".join(parts))
        assert [(c.tool, c.args) for c in parsed] == [CALLS[call] for call, _ in items]
        size = "over 64 calls" if len(items) > 64 else "64 calls or fewer"
        event(size)
        seen["examples"] += 1
        seen[size] += 1
        seen["prose with brackets"] += has_bracket("".join(PROSE[after] for _, after in items))

    check()
    assert share(seen, "over 64 calls") >= 0.3, seen
    assert share(seen, "prose with brackets") >= 0.5, seen


# -- data is never a call ------------------------------------------------------------------------

CALL_KEYS = {
    "tool",
    "tools",
    "tool_name",
    "function",
    "args",
    "arguments",
    "parameters",
    "input",
    "tool_input",
}
data_keys = st.sampled_from(["name", "status", "id", "type", "description", "value", "owner"]) | (
    st.text(max_size=8).filter(lambda k: k not in CALL_KEYS)
)
data_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(data_keys, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def records(draw: Any) -> dict[str, Any]:
    """A JSON object with no call shape: often a string "name", never a call key."""
    record: dict[str, Any] = draw(st.dictionaries(data_keys, data_values, max_size=4))
    if draw(st.booleans()):
        record["name"] = draw(tool_names)
    return record


def test_an_object_without_a_call_shape_is_data() -> None:
    seen: Counter[str] = Counter()

    @given(records(), prose, prose, st.booleans())
    def check(record: dict[str, Any], before: str, after: str, listed: bool) -> None:
        value: Any = [record, record] if listed else record
        result = parse_or_parse_error(f"{before} {json.dumps(value)} {after}")
        assert isinstance(result, ParseError) and result.attempted is False, result
        named = "a string name" if isinstance(record.get("name"), str) else "no name"
        event(named)
        seen["examples"] += 1
        seen[named] += 1

    check()
    assert share(seen, "a string name") >= 0.4, seen


def test_a_name_beside_arguments_and_unrelated_keys_is_not_a_call() -> None:
    seen: Counter[str] = Counter()
    arg_key = st.sampled_from(["args", "arguments", "parameters", "input", "tool_input"])

    @given(tool_names, arg_key, arg_dicts, st.dictionaries(data_keys, data_values, min_size=1, max_size=3))
    def check(name: str, key: str, args: dict[str, Any], extra: dict[str, Any]) -> None:
        extra.pop("name", None)
        extra.pop("id", None)
        extra.pop("type", None)
        if not extra:
            return
        result = parse_or_parse_error(json.dumps({"name": name, key: args, **extra}))
        assert isinstance(result, ParseError), result
        seen["examples"] += 1

    check()
    assert seen["examples"] >= 100, seen


# -- mutations: nothing but ParseError; a cut never runs what it cut ---------------------------


@given(valid_calls(), st.data())
def test_deleting_a_character_raises_nothing_but_parse_error(case: tuple[str, list[Any]], data: Any) -> None:
    text, _ = case
    i = data.draw(st.integers(0, len(text) - 1))
    event(outcome(parse_or_parse_error(text[:i] + text[i + 1 :])))


@given(valid_calls(), st.data(), st.sampled_from(['"', "'", "{", "]", ",", "\\", "\n"]))
def test_inserting_a_quote_or_bracket_raises_nothing_but_parse_error(
    case: tuple[str, list[Any]], data: Any, char: str
) -> None:
    text, _ = case
    i = data.draw(st.integers(0, len(text)))
    event(outcome(parse_or_parse_error(text[:i] + char + text[i:])))


cut_prose = st.lists(
    st.sampled_from([t for t in PROSE_TOKENS if '"' not in t or t == '"']) | words,
    min_size=2,
    max_size=8,
).map(" ".join)


@st.composite
def reply_with_spans(draw: Any) -> tuple[str, list[tuple[int, int, list[Any]]]]:
    """Calls between prose, and where each unit of calls (a call or a batch) starts and ends."""
    text = draw(cut_prose) + "\n"
    spans: list[tuple[int, int, list[Any]]] = []
    for _ in range(draw(st.integers(1, 3))):
        unit, calls = draw(valid_calls())
        # several single calls on their own lines are several units: a cut between them
        # leaves finished calls, which the parser rightly reads
        lines = unit.split("\n")
        pieces = list(zip(lines, ([c] for c in calls), strict=True)) if len(lines) > 1 else [(unit, calls)]
        for piece, piece_calls in pieces:
            spans.append((len(text), len(text) + len(piece), piece_calls))
            text += piece + "\n"
        text += draw(cut_prose) + "\n"
    return text, spans


def test_a_reply_cut_anywhere_never_yields_a_call_it_did_not_finish() -> None:
    seen: Counter[str] = Counter()

    @given(reply_with_spans(), st.data())
    def check(case: tuple[str, list[tuple[int, int, list[Any]]]], data: Any) -> None:
        text, spans = case
        # aim at the inside of a unit or at the prose after it (hypothesis pulls a plain
        # integer towards the start of its range, which would mostly cut the first call)
        start, end, _ = spans[data.draw(st.integers(0, len(spans) - 1))]
        after = next((s for s, _, _ in spans if s > start), len(text))
        low, high = data.draw(st.sampled_from([(start + 1, end - 1), (end, after - 1)]))
        i = low + data.draw(st.integers(0, 2**32)) % (high - low + 1)
        result = parse_or_parse_error(text[:i])
        complete = [call for start, end, calls in spans if end <= i for call in calls]
        if text[:i].rstrip(" \t\r\n").endswith(("{", "[")):
            # an opening bracket and nothing after it: whatever it opened was cut off
            branch = "cut after an opening bracket"
            assert isinstance(result, ParseError) and result.attempted, (text[:i], result)
        elif any(start < i < end for start, end, _ in spans):
            branch = "cut inside a call"
            assert isinstance(result, ParseError) and result.attempted, (text[:i], result)
        elif complete:
            branch = "cut between calls"
            assert not isinstance(result, ParseError), (text[:i], result)
            assert [(c.tool, c.args) for c in result] == complete
        else:
            branch = "cut before any call"
            assert isinstance(result, ParseError) and not result.attempted, (text[:i], result)
        event(branch)
        seen["examples"] += 1
        seen[branch] += 1

    check()
    assert share(seen, "cut inside a call") >= 0.2, seen
    assert share(seen, "cut between calls") >= 0.1, seen


@given(st.text(max_size=200))
def test_double_encoded_arguments_are_decoded_once(inner: str) -> None:
    args = {"text": inner}
    text = json.dumps({"tool": "echo", "args": json.dumps(args)})
    (call,) = parse_tool_calls(text)
    assert call.args == args
