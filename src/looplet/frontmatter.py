"""The front matter of a ``SKILL.md``: a small, safe subset of YAML, read without a YAML library.

A skill folder comes from anyone, so reading its manifest must never run code,
build objects, expand aliases or take more than linear time. What is read:

- ``key: value`` lines at the top level (keys are letters, digits, ``_`` and ``-``);
- scalars: strings (plain, ``'single'`` or ``"double"`` quoted), integers,
  ``true``/``false`` and ``null`` (``~`` or an empty value);
- flow lists of scalars (``[a, "b, c"]``), block lists of scalars (``- a``
  lines under a key), and one level of nested mapping whose values are scalars
  or flow lists; ``[]`` and ``{}`` are the empty list and mapping.

Everything else is refused with `SkillFormatError` naming the line: anchors
(``&``), aliases (``*``), tags (``!``, ``!!python/object``), block scalars
(``|``, ``>``), flow mappings, directives, a second document, duplicate keys,
tabs in indentation, deeper nesting, and a text over `MAX_FRONT_MATTER_CHARS`.
Floats are not a type here: ``version: 1.5`` reads as the string ``"1.5"``.

`render_front_matter` writes what `parse_front_matter` reads, so a tool that
creates a skill (``looplet package``) writes a manifest that reads back equal.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import LoopError

__all__ = [
    "SkillFormatError",
    "parse_front_matter",
    "render_front_matter",
    "MAX_FRONT_MATTER_CHARS",
]

#: The whole SKILL.md (front matter and body) is refused above this many characters.
MAX_FRONT_MATTER_CHARS = 256 * 1024
#: Integers longer than this are refused (Python's int() of huge digit strings is slow).
_MAX_INT_DIGITS = 18

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
_INT = re.compile(rf"[-+]?[0-9]{{1,{_MAX_INT_DIGITS}}}")
_LONG_INT = re.compile(r"[-+]?[0-9]+")
_NULLS = frozenset({"~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
#: First characters that start YAML features outside the subset, and what each is.
_REFUSED_START = {
    "&": "an anchor (&)",
    "*": "an alias (*)",
    "!": "a tag (!)",
    "|": "a block scalar (|)",
    ">": "a block scalar (>)",
    "{": "a flow mapping ({...})",
    "%": "a directive (%)",
    "@": "a reserved indicator (@)",
    "`": "a reserved indicator (`)",
    "?": "a complex key (?)",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Plain (unquoted) strings the renderer may write as they are.
_PLAIN_SAFE = re.compile(r"[A-Za-z_/.(][A-Za-z0-9 _./()+;=-]*")
#: Words YAML 1.1 readers (PyYAML) take for booleans: written quoted so they stay strings there too.
_YAML11_BOOLS = frozenset(
    word for base in ("y", "yes", "n", "no", "on", "off") for word in (base, base.capitalize(), base.upper())
)
_FLOATISH = re.compile(r"[-+]?(\.[0-9]|[0-9][0-9_]*(\.|[eE]))|\.(inf|nan|Inf|NaN|INF|NAN)|[-+]\.inf")
_DOUBLE_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "/": "/",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    " ": " ",
    "b": "\b",
    "f": "\f",
    "e": "\x1b",
    "a": "\a",
    "v": "\v",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}

Scalar = str | int | bool | None


class SkillFormatError(LoopError, ValueError):
    """A SKILL.md (or a skill folder) that cannot be read: what is wrong, and on which line.

    Attributes:
        line: the 1-based line of SKILL.md the problem is on, or None when it is not about one line.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a SKILL.md into its front matter (as plain data) and its Markdown body.

    The text must start with a line ``---`` and the front matter ends at the
    next line ``---``; the body is everything after that line. Runs in time
    linear in the text and raises nothing but `SkillFormatError`.
    """
    if not isinstance(text, str):
        raise SkillFormatError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_FRONT_MATTER_CHARS:
        raise SkillFormatError(f"SKILL.md is over {MAX_FRONT_MATTER_CHARS:,} characters")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if _strip_cr(lines[0]) != "---":
        raise SkillFormatError("SKILL.md must start with a line '---' (the front matter)", 1)
    end = _closing_line(lines)
    data = _Parser(lines[1:end]).parse()
    return data, "\n".join(lines[end + 1 :])


def _strip_cr(line: str) -> str:
    return line[:-1] if line.endswith("\r") else line


def _closing_line(lines: list[str]) -> int:
    for index in range(1, len(lines)):
        line = _strip_cr(lines[index])
        if line == "---":
            return index
        if line == "..." or line.startswith("... ") or line.startswith("--- "):
            raise SkillFormatError("a document marker inside the front matter (one document only)", index + 1)
    raise SkillFormatError("the front matter is not closed by a line '---'", 1)


class _Parser:
    """One pass over the front matter lines; each line is looked at a bounded number of times."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = [_strip_cr(line) for line in lines]
        self.index = 0
        self.data: dict[str, Any] = {}

    def parse(self) -> dict[str, Any]:
        while self.index < len(self.lines):
            number = self.index + 2  # 1-based, after the opening '---'
            line = self.lines[self.index]
            self.index += 1
            if _is_blank(line):
                continue
            _check_line(line, number)
            if line[0] == " ":
                raise SkillFormatError("unexpected indentation (nesting deeper than one level?)", number)
            key, rest = _split_key(line, number)
            if key in self.data:
                raise SkillFormatError(f"duplicate key {key!r}", number)
            self.data[key] = _parse_value(rest, number) if rest else self._block(number)
        return self.data

    def _children(self, allow_dash_at_zero: bool) -> list[tuple[int, str]]:
        """The lines below a key that belong to it: (line number, text), blank lines skipped."""
        found: list[tuple[int, str]] = []
        while self.index < len(self.lines):
            line = self.lines[self.index]
            if _is_blank(line):
                self.index += 1
                continue
            number = self.index + 2
            _check_line(line, number)
            dash_item = allow_dash_at_zero and not found and _is_item(line)
            belongs = line[0] == " " or (dash_item or (found and found[0][1][0] == "-" and _is_item(line)))
            if not belongs:
                break
            found.append((number, line))
            self.index += 1
        return found

    def _block(self, number: int) -> Any:
        children = self._children(allow_dash_at_zero=True)
        if not children:
            return None
        indent = len(children[0][1]) - len(children[0][1].lstrip(" "))
        for child_number, line in children:
            if len(line) - len(line.lstrip(" ")) != indent:
                raise SkillFormatError(
                    "inconsistent indentation (nesting deeper than one level?)", child_number
                )
        if _is_item(children[0][1].lstrip(" ")):
            return [_parse_item(line.lstrip(" "), n) for n, line in children]
        return _parse_mapping(children)


def _is_blank(line: str) -> bool:
    stripped = line.strip(" \t")
    return not stripped or stripped.startswith("#")


def _is_item(line: str) -> bool:
    return line == "-" or line.startswith("- ")


def _check_line(line: str, number: int) -> None:
    if _CONTROL.search(line):
        raise SkillFormatError("a control character in the front matter", number)
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" in indent:
        raise SkillFormatError("a tab in the indentation (use spaces)", number)


def _split_key(line: str, number: int) -> tuple[str, str]:
    match = _KEY.match(line)
    if match is None or not line[match.end() :].startswith(":"):
        if line[0] in _REFUSED_START:
            raise SkillFormatError(f"{_REFUSED_START[line[0]]} is not allowed", number)
        if _is_item(line):
            raise SkillFormatError("a list item without a key above it", number)
        raise SkillFormatError("expected 'key: value' (keys are letters, digits, '_' and '-')", number)
    after = line[match.end() + 1 :]
    if after and after[0] not in " \t":
        raise SkillFormatError("expected a space after ':' in 'key: value'", number)
    return match.group(), _value_text(after)


def _value_text(text: str) -> str:
    """What follows ``key:`` or ``-``, without surrounding spaces; a lone comment is no value."""
    text = text.strip(" \t")
    return "" if text.startswith("#") else text


def _parse_mapping(children: list[tuple[int, str]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for number, line in children:
        key, rest = _split_key(line.lstrip(" "), number)
        if key in mapping:
            raise SkillFormatError(f"duplicate key {key!r}", number)
        mapping[key] = _parse_value(rest, number) if rest else None
    return mapping


def _parse_item(line: str, number: int) -> Scalar:
    rest = _value_text(line[1:])
    if _is_item(rest):
        raise SkillFormatError("a list inside a list is not allowed", number)
    if rest.startswith("["):
        raise SkillFormatError("a list inside a list is not allowed", number)
    key = _KEY.match(rest)
    if key is not None and rest[key.end() :].startswith(": "):
        raise SkillFormatError("a mapping inside a list is not allowed", number)
    return _parse_scalar(rest, number) if rest else None


def _parse_value(text: str, number: int) -> Any:
    if text.startswith("["):
        return _parse_flow_list(text, number)
    if _strip_comment(text) == "{}":
        return {}
    if _is_item(text):
        raise SkillFormatError("a list item must start its own line", number)
    return _parse_scalar(text, number)


def _parse_flow_list(text: str, number: int) -> list[Scalar]:
    items: list[Scalar] = []
    position = 1
    while True:
        position = _skip_spaces(text, position)
        if position < len(text) and text[position] == "]" and not items:
            return _end_of_value(text, position + 1, number, items)
        item, position = _flow_item(text, position, number)
        items.append(item)
        position = _skip_spaces(text, position)
        if position >= len(text):
            raise SkillFormatError("a flow list must close with ']' on the same line", number)
        if text[position] == "]":
            return _end_of_value(text, position + 1, number, items)
        if text[position] != ",":
            raise SkillFormatError("expected ',' or ']' in the flow list", number)
        position += 1


def _end_of_value(text: str, position: int, number: int, value: list[Scalar]) -> list[Scalar]:
    if _strip_comment(text[position:]).strip(" \t"):
        raise SkillFormatError("unexpected text after the value", number)
    return value


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t":
        position += 1
    return position


def _flow_item(text: str, position: int, number: int) -> tuple[Scalar, int]:
    if position >= len(text):
        raise SkillFormatError("a flow list must close with ']' on the same line", number)
    first = text[position]
    if first in "\"'":
        value, end = _quoted(text, position, number)
        return value, end
    if first in "[{":
        raise SkillFormatError("a list or mapping inside a list is not allowed", number)
    end = position
    while end < len(text) and text[end] not in ",]":
        end += 1
    raw = text[position:end].strip(" \t")
    if not raw:
        raise SkillFormatError("an empty item in the flow list", number)
    if " #" in raw or "\t#" in raw:
        raise SkillFormatError("a flow list must close with ']' before a comment", number)
    return _parse_plain(raw, number), end


def _strip_comment(text: str) -> str:
    """A plain value without its trailing `` # comment``."""
    for marker in (" #", "\t#"):
        cut = text.find(marker)
        if cut != -1:
            text = text[:cut]
    return text.rstrip(" \t")


def _parse_scalar(text: str, number: int) -> Scalar:
    if text[0] in "\"'":
        value, end = _quoted(text, 0, number)
        if _strip_comment(text[end:]).strip(" \t"):
            raise SkillFormatError("unexpected text after the quoted string", number)
        return value
    return _parse_plain(_strip_comment(text), number)


def _parse_plain(text: str, number: int) -> Scalar:
    if not text:
        return None
    if text[0] in _REFUSED_START:
        raise SkillFormatError(f"{_REFUSED_START[text[0]]} is not allowed", number)
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.fullmatch(text):
        return int(text)
    if _LONG_INT.fullmatch(text):
        raise SkillFormatError(f"an integer longer than {_MAX_INT_DIGITS} digits (quote it)", number)
    return text


def _quoted(text: str, start: int, number: int) -> tuple[str, int]:
    """The quoted string starting at `start` (its quote character) and the index after it."""
    if text[start] == "'":
        return _single_quoted(text, start, number)
    return _double_quoted(text, start, number)


def _single_quoted(text: str, start: int, number: int) -> tuple[str, int]:
    parts: list[str] = []
    position = start + 1
    while True:
        end = text.find("'", position)
        if end == -1:
            raise SkillFormatError("a quoted string must close on the same line", number)
        parts.append(text[position:end])
        if text.startswith("''", end):
            parts.append("'")
            position = end + 2
            continue
        return "".join(parts), end + 1


def _double_quoted(text: str, start: int, number: int) -> tuple[str, int]:
    parts: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == '"':
            return "".join(parts), position + 1
        if char != "\\":
            parts.append(char)
            position += 1
            continue
        escaped, position = _escape(text, position + 1, number)
        parts.append(escaped)
    raise SkillFormatError("a quoted string must close on the same line", number)


def _escape(text: str, position: int, number: int) -> tuple[str, int]:
    if position >= len(text):
        raise SkillFormatError("a quoted string must close on the same line", number)
    code = text[position]
    if code in _DOUBLE_ESCAPES:
        return _DOUBLE_ESCAPES[code], position + 1
    width = _HEX_ESCAPES.get(code)
    digits = text[position + 1 : position + 1 + width] if width else ""
    if not width or len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise SkillFormatError(f"an unknown escape '\\{code}' in a quoted string", number)
    value = int(digits, 16)
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        raise SkillFormatError(f"'\\{code}{digits}' is not a character", number)
    return chr(value), position + 1 + width


# -- writing ---------------------------------------------------------------------------------


def render_front_matter(data: dict[str, Any], body: str = "") -> str:
    """A SKILL.md text holding `data` as front matter, then `body`: what `parse_front_matter` reads back.

    Raises `SkillFormatError` for data outside the subset (floats, nesting
    deeper than one mapping, lists of lists, keys that are not names).
    """
    lines = ["---"]
    for key, value in data.items():
        _check_key(key)
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            for sub_key, sub_value in value.items():
                _check_key(sub_key)
                if isinstance(sub_value, dict) and sub_value:
                    raise SkillFormatError(f"{key}.{sub_key}: mappings nest one level at most")
                lines.append(f"  {sub_key}: {_render_inline(sub_value, f'{key}.{sub_key}')}")
        else:
            lines.append(f"{key}: {_render_inline(value, key)}")
    lines.append("---")
    return "\n".join(lines) + "\n" + body


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise SkillFormatError(f"{key!r} is not a front matter key (letters, digits, '_' and '-')")


def _render_inline(value: object, where: str) -> str:
    if isinstance(value, dict):
        if value:
            raise SkillFormatError(f"{where}: mappings nest one level at most")
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_render_scalar(item, where) for item in value) + "]"
    return _render_scalar(value, where)


def _render_scalar(value: object, where: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if len(str(abs(value))) > _MAX_INT_DIGITS:
            raise SkillFormatError(f"{where}: an integer longer than {_MAX_INT_DIGITS} digits")
        return str(value)
    if isinstance(value, str):
        return value if _plain_ok(value) else _double_quote(value)
    raise SkillFormatError(f"{where}: {type(value).__name__} is not a front matter value")


def _plain_ok(text: str) -> bool:
    if not _PLAIN_SAFE.fullmatch(text) or text != text.rstrip(" ") or _FLOATISH.match(text):
        return False
    return not any(text in words for words in (_NULLS, _TRUE, _FALSE, _YAML11_BOOLS))


def _double_quote(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)
