"""The SKILL.md front matter reader: the safe subset it reads, what it refuses (with the line), and
that no text makes it raise anything else or run long (RELIABILITY J4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from looplet.frontmatter import (
    MAX_FRONT_MATTER_CHARS,
    SkillFormatError,
    parse_front_matter,
    render_front_matter,
)

HOSTILE = Path(__file__).parent / "data" / "skills" / "hostile"


def doc(*lines: str, body: str = "Body.\n") -> str:
    return "\n".join(["---", *lines, "---"]) + "\n" + body


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("name: my-agent", {"name": "my-agent"}),
    ("description: Run it: now # a comment", {"description": "Run it: now"}),
    ("tags: [coding, 'it''s', \"a, b\"]", {"tags": ["coding", "it's", "a, b"]}),
    ("tags: []", {"tags": []}),
    ("meta: {}", {"meta": {}}),
    ("version: 1", {"version": 1}),
    ("version: 1.5", {"version": "1.5"}),
    ("version: -007", {"version": -7}),
    ("flag: true\nother: False", {"flag": True, "other": False}),
    ("gone: null\ntilde: ~\nempty:", {"gone": None, "tilde": None, "empty": None}),
    ("empty: # only a comment", {"empty": None}),
    ('quoted: "tab\\there \\u00e9 \\"q\\""', {"quoted": 'tab\there é "q"'}),
    ("tags:\n  - a\n  - 'b'\n  -", {"tags": ["a", "b", None]}),
    ("tags:\n- a\n- 2", {"tags": ["a", 2]}),
    ("meta:\n  a: 1\n  b: [x, y]\n  c:", {"meta": {"a": 1, "b": ["x", "y"], "c": None}}),
    ("# a comment\n\nname: x\n   \n", {"name": "x"}),
]


@pytest.mark.parametrize(("lines", "expected"), ACCEPTED)
def test_reads_the_safe_subset(lines: str, expected: dict[str, Any]) -> None:
    data, body = parse_front_matter(doc(lines))
    assert data == expected
    assert body == "Body.\n"


def test_body_is_everything_after_the_closing_line_even_more_dashes() -> None:
    data, body = parse_front_matter("---\r\nname: x\r\n---\r\nline one\n---\nline two")
    assert data == {"name": "x"}
    assert body == "line one\n---\nline two"


def test_a_byte_order_mark_before_the_opening_line_is_allowed() -> None:
    assert parse_front_matter("\ufeff---\nname: x\n---\n") == ({"name": "x"}, "")


REFUSED: list[tuple[str, int, str]] = [
    ("anchor: &a [1, 2]", 2, "anchor"),
    ("alias: *a", 2, "alias"),
    ("obj: !!python/object/apply:os.system ['id']", 2, "tag"),
    ("obj: !custom x", 2, "tag"),
    ("tags: [a, *b]", 2, "alias"),
    ("tags:\n  - &x a", 3, "anchor"),
    ("meta:\n  cmd: !!python/name:os.system", 3, "tag"),
    ("text: |\n  block", 2, "block scalar"),
    ("text: >\n  folded", 2, "block scalar"),
    ("map: {a: 1}", 2, "flow mapping"),
    ("%YAML 1.2", 2, "directive"),
    ("? complex", 2, "complex key"),
    ("<<: *base", 2, "expected 'key: value'"),
    ("name: a\nname: b", 3, "duplicate key"),
    ("meta:\n  a: 1\n  a: 2", 4, "duplicate key"),
    ("a:\n  b:\n    c: 1", 4, "nesting"),
    ("a:\n  - [1, 2]", 3, "list inside a list"),
    ("a:\n  - x: 1", 3, "mapping inside a list"),
    ("a: [[1]]", 2, "inside a list"),
    ("a: [1, 2", 2, "close with ']'"),
    ("a: [1,, 2]", 2, "empty item"),
    ('a: "open', 2, "close on the same line"),
    ("a: 'open", 2, "close on the same line"),
    ('a: "bad \\q escape"', 2, "unknown escape"),
    ('a: "\\ud800"', 2, "not a character"),
    ('a: "x" trailing', 2, "after the quoted string"),
    ("a: [x] trailing", 2, "after the value"),
    ("a: 1234567890123456789", 2, "longer than"),
    ("\tname: x", 2, "tab"),
    ("name: x\n  indented: y", 3, "indentation"),
    ("- item", 2, "list item without a key"),
    ("name:x", 2, "space after ':'"),
    ("just text", 2, "expected 'key: value'"),
    ("a: x\x07y", 2, "control character"),
    ("a: 1\n...", 3, "document marker"),
    ("a: 1\n--- !tag", 3, "document marker"),
    ("a: - x", 2, "own line"),
]


@pytest.mark.parametrize(("lines", "line", "fragment"), REFUSED)
def test_refuses_what_is_outside_the_subset_naming_the_line(lines: str, line: int, fragment: str) -> None:
    with pytest.raises(SkillFormatError) as caught:
        parse_front_matter(doc(lines))
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must start with a line '---'"),
        ("name: x\n", "must start with a line '---'"),
        ("--- \nname: x\n---\n", "must start with a line '---'"),
        ("---\nname: x\n", "not closed"),
    ],
)
def test_refuses_a_text_without_a_closed_front_matter(text: str, fragment: str) -> None:
    with pytest.raises(SkillFormatError, match=fragment):
        parse_front_matter(text)


def test_refuses_what_is_not_text() -> None:
    with pytest.raises(SkillFormatError, match="expected text"):
        parse_front_matter(b"---\n---\n")  # type: ignore[arg-type]


# -- J4: bombs, tags, size, nesting ---------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_yaml_bomb_is_refused_at_its_first_anchor_without_expanding() -> None:
    text = (HOSTILE / "yaml_bomb" / "SKILL.md").read_text()
    with pytest.raises(SkillFormatError) as caught:
        parse_front_matter(text)
    assert caught.value.line == 4
    assert "anchor" in str(caught.value)


def test_a_python_object_tag_is_refused() -> None:
    text = (HOSTILE / "python_tag" / "SKILL.md").read_text()
    with pytest.raises(SkillFormatError, match=r"line 3: a tag \(!\)"):
        parse_front_matter(text)


@pytest.mark.timeout(10)
def test_deep_nesting_is_refused_at_the_second_level() -> None:
    text = (HOSTILE / "deep_nesting" / "SKILL.md").read_text()
    with pytest.raises(SkillFormatError, match="nesting deeper than one level") as caught:
        parse_front_matter(text)
    assert caught.value.line == 6


@pytest.mark.timeout(10)
def test_a_text_over_the_cap_is_refused_before_it_is_read() -> None:
    text = doc("name: x", body="x" * MAX_FRONT_MATTER_CHARS)
    with pytest.raises(SkillFormatError, match="over 262,144 characters") as caught:
        parse_front_matter(text)
    assert caught.value.line is None


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "lines",
    [
        [f"k{i}: [" + ", ".join(["'a''b'"] * 20) + "]" for i in range(1500)],
        ["tags:"] + ["  - " + '"' + "\\\\" * 40 + '"'] * 3000,
        ["a: " + "[" * 200_000],
        ["a: " + '"' + "\\" * 200_000],
        ["a: " + "'" + "''" * 100_000],
        ["a: " + " #" * 100_000],
        ["a:"] + ["  " + "b: " * 40_000],
        ["x" * 250_000],
    ],
    ids=[
        "many-lists",
        "many-escapes",
        "open-brackets",
        "backslashes",
        "quotes",
        "comments",
        "colons",
        "long-key",
    ],
)
def test_pathological_texts_under_the_cap_finish(lines: list[str]) -> None:
    """Each input is near the size cap and aims at a quadratic path; a hang fails by timeout."""
    text = doc(*lines)
    assert len(text) <= MAX_FRONT_MATTER_CHARS
    try:
        data, _ = parse_front_matter(text)
    except SkillFormatError as exc:
        assert exc.line is not None
    else:
        assert data


# -- rendering ------------------------------------------------------------------------------------


def test_render_writes_what_parse_reads() -> None:
    data = {
        "name": "my-agent",
        "description": "Run: it # now",
        "tags": ["yes", "1.5", "a, b", ""],
        "version": 3,
        "meta": {"on": True, "list": [None, -4], "empty": {}},
        "none": None,
    }
    text = render_front_matter(data, "Body\n")
    assert parse_front_matter(text) == (data, "Body\n")
    assert 'tags: ["yes", "1.5", "a, b", ""]' in text


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"a": 1.5}, "float is not a front matter value"),
        ({"a": {"b": {"c": 1}}}, "one level at most"),
        ({"a": [{"b": 1}]}, "dict is not a front matter value"),
        ({"a": [[1]]}, "list is not a front matter value"),
        ({"bad key": 1}, "not a front matter key"),
        ({"a": 10**20}, "longer than"),
    ],
)
def test_render_refuses_data_outside_the_subset(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SkillFormatError, match=fragment):
        render_front_matter(data)


# -- properties -----------------------------------------------------------------------------------

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1),
    st.text(max_size=30),
    st.sampled_from(
        ["null", "true", "yes", "~", "1.5", "-3", "a: b", "# x", "[x]", "'q'", '"q"', "&a", "*a"]
    ),
)
INLINE = st.one_of(SCALARS, st.lists(SCALARS, max_size=5))
VALUES = st.one_of(INLINE, st.dictionaries(KEYS, INLINE, max_size=4))
DATA = st.dictionaries(KEYS, VALUES, max_size=6)


@given(DATA, st.text(max_size=50))
def test_any_data_in_the_subset_renders_and_reads_back_equal(data: dict[str, Any], body: str) -> None:
    event("nested mapping" if any(isinstance(v, dict) and v for v in data.values()) else "flat")
    assert parse_front_matter(render_front_matter(data, body)) == (data, body)


# Entries with a {i} key, made unique by position, so most generated documents are well formed.
GOOD_ENTRIES = st.sampled_from(
    [
        "k{i}: x",
        "k{i}: a b: c # d",
        "k{i}: [a, 'b', \"c\"]",
        "k{i}:\n  - a\n  -\n  - 'q'",
        "k{i}:\n- b\n- 3",
        "k{i}:\n  k: v\n  k2: [1, 2]\n  k3:",
        "k{i}: {{}}",
        "k{i}: 12",
        "k{i}: 1.5",
        "k{i}: 'it''s'",
        'k{i}: "\\u00e9\\n"',
        "# comment {i}",
        "",
    ]
)
BAD_ENTRIES = st.sampled_from(
    [
        "    deep: 1",
        "a{i}: &x 1",
        "b{i}: *x",
        "c{i}: !!python/object:os.system",
        "d{i}: |",
        "...",
        "\tt{i}: 1",
        "x",
        "k{i}: [1, [2]]",
        'k{i}: "open',
    ]
)
ENTRY = st.one_of(*[GOOD_ENTRIES] * 8, BAD_ENTRIES, st.text(max_size=20))
FRONT_LIKE = st.builds(
    lambda entries, body: (
        "---\n"
        + "\n".join(entry.replace("{i}", str(i)).replace("{{}}", "{}") for i, entry in enumerate(entries))
        + "\n---\n"
        + body
    ),
    st.lists(ENTRY, max_size=8),
    st.text(max_size=20),
)
OUTCOMES: dict[str, int] = {"accepted": 0, "refused": 0}


@given(st.one_of(FRONT_LIKE, FRONT_LIKE, FRONT_LIKE, st.text(max_size=200)))
def _raises_only_skill_format_error(text: str) -> None:
    try:
        data, body = parse_front_matter(text)
    except SkillFormatError as exc:
        OUTCOMES["refused"] += 1
        event("refused")
        assert exc.line is None or exc.line >= 1
        return
    OUTCOMES["accepted"] += 1
    event("accepted")
    # What it accepts, it can write back, and that reads the same.
    assert parse_front_matter(render_front_matter(data, body)) == (data, body)


@pytest.mark.timeout(120)
def test_any_text_raises_nothing_but_skill_format_error_and_what_it_accepts_round_trips() -> None:
    OUTCOMES.update(accepted=0, refused=0)
    _raises_only_skill_format_error()
    # The strategy must reach both branches often, or the property proves little.
    assert OUTCOMES["accepted"] >= 30, OUTCOMES
    assert OUTCOMES["refused"] >= 30, OUTCOMES
