"""Tool calls as JSON in text: the format, a tolerant parser, and the adapter for text-only backends.

The format the model is asked for::

    {"tool": "greet", "args": {"name": "Alice"}, "reasoning": "why"}
    {"tools": [{"tool": "a", "args": {}}, {"tool": "b", "args": {}}]}

The parser forgives what models commonly get wrong when the intent is still
unambiguous: code fences and prose around the JSON, several objects or a
JSON array of calls, trailing commas, single quotes, Python's
``True``/``False``/``None``, raw newlines inside strings, bad backslash
escapes, a BOM or NUL bytes, and arguments double-encoded as a JSON string.
It never completes JSON that was cut off, and it raises only `ParseError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ConfigError, ParseError
from ..history import Message
from ..types import ToolCall
from .protocol import LLMRequest, LLMResponse

__all__ = [
    "FORMAT_HELP",
    "parse_tool_calls",
    "parse_arguments",
    "render_prompt",
    "render_tools",
    "TextBackend",
    "AsyncTextBackend",
]

FORMAT_HELP = (
    'Reply with JSON only: {"tool": "<name>", "args": {...}, "reasoning": "<why>"}; '
    'for several calls at once: {"tools": [{"tool": "<name>", "args": {...}}, ...]}.'
)

MAX_TEXT_CHARS = 2_000_000
_MAX_STARTS = 64
_NAME_KEYS = ("tool", "name", "tool_name")
_ARG_KEYS = ("args", "arguments", "parameters", "input", "tool_input")

_decoder = json.JSONDecoder()


# -- parsing ----------------------------------------------------------------------


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Read the tool calls in a model's reply.

    Raises:
        ParseError: no call could be read; the message says why and what the
            format is.
    """
    if not isinstance(text, str):
        raise ParseError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ParseError(f"the reply is {len(text):,} characters, over {MAX_TEXT_CHARS:,}", text[:200])
    # A BOM can only lead the reply; one inside a JSON string is data and stays.
    cleaned = text.replace("\x00", "").lstrip("\ufeff")
    calls: list[ToolCall] = []
    for value in _json_values(cleaned, text):
        found = _calls_from(value)
        if found:
            calls.extend(found)
    if calls:
        return calls
    return _parse_repaired(cleaned, text)


def _json_values(text: str, original: str) -> Iterator[Any]:
    """The JSON values in the text, in order, each read from its opening bracket.

    A value that is not strict JSON but looks like a call is read tolerantly as
    a whole, so a valid fragment inside it (one call of a broken batch) is never
    taken for the whole answer. A call that is cut off (never closes) is an error,
    never a partial batch.
    """
    pos = 0
    tries = 0
    while tries < _MAX_STARTS:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        tries += 1
        try:
            value, end = _decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            if not _looks_like_call(text, start):
                pos = start + 1
                continue
            span = _balanced_span(text, start)
            if span is None:
                raise ParseError(
                    "the JSON in the reply is cut off (a bracket or string is never closed). " + FORMAT_HELP,
                    original[:2000],
                ) from None
            pos = start + len(span)
            try:
                yield _loads_tolerant(span, original)
            except ParseError:
                pass
            continue
        yield value
        pos = end


def _looks_like_call(text: str, start: int) -> bool:
    """Whether the bracket at `start` opens JSON (not prose) with a tool name key after it."""
    j = start + 1
    while j < len(text) and text[j] in " \t\r\n":
        j += 1
    if j >= len(text) or text[j] not in "{[\"'":
        return False
    return any(text.find(key, start) >= 0 for key in ('"tool', "'tool", '"name', "'name"))


def _parse_repaired(cleaned: str, original: str) -> list[ToolCall]:
    start = _call_start(cleaned)
    if start < 0:
        raise ParseError("no JSON tool call found in the reply. " + FORMAT_HELP, original[:2000])
    span = _balanced_span(cleaned, start)
    if span is None:
        raise ParseError(
            "the JSON in the reply is cut off (a bracket or string is never closed). " + FORMAT_HELP,
            original[:2000],
        )
    value = _loads_tolerant(span, original)
    calls = _calls_from(value)
    if not calls:
        raise ParseError(
            'the JSON in the reply is not a tool call (no "tool" key). ' + FORMAT_HELP,
            original[:2000],
        )
    return calls


def _call_start(text: str) -> int:
    """Where the call most likely starts: the bracket before the first "tool" key."""
    for key in ('"tool', "'tool", '"name', "'name"):
        at = text.find(key)
        if at >= 0:
            brace = text.rfind("{", 0, at)
            if brace >= 0:
                bracket = text.rfind("[", 0, brace)
                between = text[bracket + 1 : brace] if bracket >= 0 else "x"
                return bracket if bracket >= 0 and not between.strip() else brace
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return min(starts) if starts else -1


def _balanced_span(text: str, start: int) -> str | None:
    """The text from `start` to its matching close bracket, or None if it never closes."""
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            # A single quote opens a string only where a JSON string could start.
            if ch == '"' or _prev_token(text, i) in "{[,:":
                quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _prev_token(text: str, i: int) -> str:
    j = i - 1
    while j >= 0 and text[j] in " \t\r\n":
        j -= 1
    return text[j] if j >= 0 else ""


def _loads_tolerant(span: str, original: str) -> Any:
    repaired = _repair(span)
    try:
        return json.loads(repaired)
    except (ValueError, RecursionError) as exc:
        first_error = exc
    import ast

    try:
        return _literal(ast.parse(span.strip(), mode="eval").body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    raise ParseError(f"the JSON in the reply is invalid: {first_error}. " + FORMAT_HELP, original[:2000])


_VALID_ESCAPES = set('"\\/bfnrtu')
_LITERALS = {"True": "true", "False": "false", "None": "null"}


def _repair(span: str) -> str:
    """One pass outside/inside strings: escape raw control characters, fix bad escapes,
    drop trailing commas, and turn Python literals into JSON ones."""
    out: list[str] = []
    in_string = False
    i = 0
    n = len(span)
    while i < n:
        ch = span[i]
        if in_string:
            if ch == "\\":
                nxt = span[i + 1] if i + 1 < n else ""
                if nxt in _VALID_ESCAPES and not (nxt == "u" and not _is_hex4(span, i + 2)):
                    out.append(ch + nxt)
                    i += 2
                    continue
                out.append("\\\\")
            elif ch == '"':
                in_string = False
                out.append(ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
            i += 1
            continue
        if ch == '"':
            in_string = True
        elif ch in "}]":
            _drop_trailing_comma(out)
        elif ch.isalpha():
            word_end = i
            while word_end < n and span[word_end].isalnum():
                word_end += 1
            word = span[i:word_end]
            out.append(_LITERALS.get(word, word))
            i = word_end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _drop_trailing_comma(out: list[str]) -> None:
    j = len(out) - 1
    while j >= 0 and out[j] in (" ", "\n", "\r", "\t"):
        j -= 1
    if j >= 0 and out[j] == ",":
        del out[j]


def _is_hex4(text: str, at: int) -> bool:
    chunk = text[at : at + 4]
    return len(chunk) == 4 and all(c in "0123456789abcdefABCDEF" for c in chunk)


_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def _literal(node: Any) -> Any:
    """Python-literal syntax (single quotes, True/None) read as JSON values; nothing is run."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | type(None)):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking is not JSON")
        keys = [_literal(k) for k in node.keys]
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("object keys must be strings")
        return {k: _literal(v) for k, v in zip(keys, node.values, strict=True)}
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"not a JSON value: {type(node).__name__}")


def _calls_from(value: Any, depth: int = 0) -> list[ToolCall]:
    """The calls a decoded JSON value describes (empty if it is not a call at all).

    The documented shapes nest only a few levels (an array or a ``tools`` batch
    of calls); anything deeper is not a call.
    """
    if depth > 3:
        return []
    if isinstance(value, list):
        return [c for item in value for c in _calls_from(item, depth + 1)]
    if not isinstance(value, dict):
        return []
    batch = value.get("tools")
    if isinstance(batch, list) and not any(k in value for k in _NAME_KEYS):
        return [c for item in batch for c in _calls_from(item, depth + 1)]
    function = value.get("function")
    if isinstance(function, dict) and "name" in function:  # OpenAI's shape, pasted as text
        merged = {**function, "id": value.get("id", "")}
        return _calls_from(merged, depth + 1)
    name = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), None)
    if name is None or not name.strip():
        return []
    raw_args: Any = next((value[k] for k in _ARG_KEYS if k in value), {})
    args, problem = parse_arguments(raw_args)
    reasoning = value.get("reasoning") or value.get("thought") or ""
    call_id = value.get("call_id") or value.get("id") or ""
    return [
        ToolCall(
            tool=name,
            args=args,
            reasoning=reasoning if isinstance(reasoning, str) else json.dumps(reasoning),
            call_id=call_id if isinstance(call_id, str) else str(call_id),
            parse_error=problem,
        )
    ]


def parse_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Arguments as a dict, decoding a JSON string once; else ``({}, problem)``.

    Native backends use this for the provider's argument strings, so bad
    arguments become a reported problem, never a silent ``{}``.
    """
    if raw is None:
        return {}, None
    if isinstance(raw, str):
        if not raw.strip():
            return {}, None
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            try:
                raw = _loads_tolerant(raw, raw)
            except ParseError as exc:
                return {}, f"arguments are not valid JSON ({exc})".split(". Reply with")[0]
    if isinstance(raw, dict):
        return raw, None
    kind = "array" if isinstance(raw, list) else type(raw).__name__
    if raw is None:
        kind = "null"
    return {}, f"arguments must be a JSON object, got {kind}"


# -- rendering a request as one prompt ------------------------------------------


def render_tools(tools: Sequence[Any]) -> str:
    lines = []
    for spec in tools:
        params = json.dumps(spec.get("parameters", {}), ensure_ascii=False, separators=(",", ":"))
        lines.append(f"- {spec['name']}: {spec.get('description', '')}\n  parameters: {params}")
    return "\n".join(lines)


def render_message(message: Message) -> str:
    if message.role == "tool":
        label = f"[tool result: {message.name} #{message.call_id}]"
        return f"{label}\n{message.content}"
    if message.role == "assistant":
        body = message.content
        if not body and message.tool_calls:
            calls = [{"tool": c.tool, "args": c.args} for c in message.tool_calls]
            body = json.dumps(calls[0] if len(calls) == 1 else {"tools": calls}, ensure_ascii=False)
        return f"[assistant]\n{body}"
    return f"[{message.role}]\n{message.content}"


def render_prompt(request: LLMRequest, rendered: Sequence[str] | None = None) -> str:
    """The whole request as one prompt string (system, tools, format, conversation)."""
    parts = [request.system] if request.system else []
    if request.tools:
        parts.append("## Tools\n" + render_tools(request.tools) + "\n\n" + FORMAT_HELP)
    body = rendered if rendered is not None else [render_message(m) for m in request.messages]
    parts.append("## Conversation\n" + "\n\n".join(body))
    if request.extra:
        parts.append("[user]\n" + "\n\n".join(request.extra))
    return "\n\n".join(parts)


class _RenderCache:
    """Renders each message once; a history that only grows costs one message per call."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._texts: list[str] = []

    def render(self, messages: Sequence[Message]) -> list[str]:
        keep = 0
        limit = min(len(self._messages), len(messages))
        while keep < limit and self._messages[keep] is messages[keep]:
            keep += 1
        del self._messages[keep:], self._texts[keep:]
        for message in messages[keep:]:
            self._messages.append(message)
            self._texts.append(render_message(message))
        return self._texts


class TextBackend:
    """Adapts an object with ``generate(prompt: str) -> str`` to the native protocol.

    The whole request is rendered as one prompt; the reply comes back as text,
    and the loop reads the tool calls from it.
    """

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self._cache = _RenderCache()
        self.last_prompt = ""

    def _prompt(self, request: LLMRequest) -> str:
        self.last_prompt = render_prompt(request, self._cache.render(request.messages))
        return self.last_prompt

    def complete(self, request: LLMRequest) -> LLMResponse:
        return LLMResponse(text=_as_text(self.llm.generate(self._prompt(request))))

    def __repr__(self) -> str:
        return f"TextBackend({self.llm!r})"


class AsyncTextBackend(TextBackend):
    """`TextBackend` for an object whose ``generate`` is a coroutine function."""

    async def complete(self, request: LLMRequest) -> LLMResponse:  # type: ignore[override]
        return LLMResponse(text=_as_text(await self.llm.generate(self._prompt(request))))


def _as_text(reply: Any) -> str:
    if isinstance(reply, str):
        return reply
    raise TypeError(f"generate() must return a str, got {type(reply).__name__}")


def wrap_backend(llm: Any) -> tuple[Any, bool]:
    """The backend to call and whether its ``complete`` is async.

    Raises:
        ConfigError: `llm` has neither ``complete`` nor ``generate``.
    """
    import inspect

    complete = getattr(llm, "complete", None)
    if callable(complete):
        return llm, inspect.iscoroutinefunction(complete)
    generate = getattr(llm, "generate", None)
    if callable(generate):
        if inspect.iscoroutinefunction(generate):
            return AsyncTextBackend(llm), True
        return TextBackend(llm), False
    raise ConfigError(
        f"{type(llm).__name__} is not a backend: give it complete(request) -> LLMResponse "
        "or generate(prompt: str) -> str (see looplet.backends)"
    )
