"""Whatever JSON a server puts in its reply, a backend returns a well-typed `LLMResponse` or an `LLMError`.

The SDKs build their reply objects without validating them, so a server can
send a number where text belongs, a string where a token count belongs, or
a dict where a list of tool calls belongs. The loop relies on the declared
types (INV-1), so each property below puts a random JSON value at one place
of an otherwise valid reply, sends it over HTTP from the fault server, and
checks what `complete()` gives back. Each example draws one value of every
JSON kind and tries each at every place in turn; the tries are counted per
kind, so a strategy that stopped producing, say, strings or lists would
fail the test.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from typing import Any

import pytest
from backend_kit import TEST_KEY, fault_url
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st
from loopback_faults import (
    Canned,
    FaultServer,
    anthropic_message,
    anthropic_tool_stream,
    openai_completion,
    openai_tool_stream,
)

from looplet import LLMError, LLMRequest, LLMResponse, Message, ToolCall
from looplet.backends.anthropic import AnthropicBackend
from looplet.backends.openai import OpenAIBackend
from looplet.backends.retry import RetryPolicy

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
#: One value of every JSON kind per example, so each kind is tried at each place (counted below).
ONE_OF_EACH_KIND = st.tuples(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(_SCALARS | st.dictionaries(st.text(max_size=4), _SCALARS, max_size=2), max_size=3),
    st.dictionaries(st.text(max_size=4), _SCALARS | st.lists(_SCALARS, max_size=2), max_size=3),
)

CALL = ("c1", "greet", {"name": "Alice"})
#: Each example is a hundred HTTP calls: report a failing one as drawn rather than shrink it for minutes.
NO_SHRINKING = [Phase.explicit, Phase.reuse, Phase.generate]
#: Where a wrong value goes, as a path of keys and indexes into the reply's JSON.
OPENAI_PATHS = [
    ("choices",),
    ("choices", 0),
    ("choices", 0, "message"),
    ("choices", 0, "message", "content"),
    ("choices", 0, "message", "tool_calls"),
    ("choices", 0, "message", "tool_calls", 0),
    ("choices", 0, "message", "tool_calls", 0, "id"),
    ("choices", 0, "message", "tool_calls", 0, "function"),
    ("choices", 0, "message", "tool_calls", 0, "function", "name"),
    ("choices", 0, "message", "tool_calls", 0, "function", "arguments"),
    ("choices", 0, "finish_reason"),
    ("model",),
    ("usage",),
    ("usage", "prompt_tokens"),
    ("usage", "completion_tokens"),
]
ANTHROPIC_PATHS = [
    ("content",),
    ("content", 0),
    ("content", 0, "text"),
    ("content", 1, "id"),
    ("content", 1, "name"),
    ("content", 1, "input"),
    ("stop_reason",),
    ("model",),
    ("usage",),
    ("usage", "input_tokens"),
    ("usage", "output_tokens"),
]
#: In a stream: (chunk number, path inside that chunk's JSON).
OPENAI_STREAM_PATHS = [
    (0, ("model",)),
    (1, ("choices", 0, "delta", "tool_calls", 0, "index")),
    (1, ("choices", 0, "delta", "tool_calls", 0, "id")),
    (1, ("choices", 0, "delta", "tool_calls", 0, "function", "name")),
    (2, ("choices", 0, "delta", "tool_calls", 0, "function", "arguments")),
    (2, ("choices", 0, "delta", "content")),
    (2, ("choices", 0, "index")),
    (4, ("choices", 0, "finish_reason")),
]
ANTHROPIC_STREAM_PATHS = [
    (0, ("message", "model")),
    (0, ("message", "usage", "input_tokens")),
    (1, ("index",)),
    (1, ("content_block", "id")),
    (1, ("content_block", "name")),
    (2, ("index",)),
    (2, ("delta", "partial_json")),
    (5, ("delta", "stop_reason")),
    (5, ("usage", "output_tokens")),
]


def _placed(value: Any, path: tuple[Any, ...], body: Any) -> Any:
    """A copy of `body` with `value` at `path`."""
    out = copy.deepcopy(body)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _assert_well_typed(response: Any) -> None:
    assert type(response) is LLMResponse
    for name in ("text", "stop_reason", "model", "request_id"):
        assert isinstance(getattr(response, name), str), name
    assert isinstance(response.tool_calls, list)
    for call in response.tool_calls:
        assert type(call) is ToolCall
        assert isinstance(call.tool, str) and isinstance(call.call_id, str) and isinstance(call.args, dict)
        assert call.parse_error is None or isinstance(call.parse_error, str)
    usage = response.usage
    for count in (usage.input_tokens, usage.output_tokens, usage.cached_tokens):
        assert type(count) is int and count >= 0
    assert isinstance(usage.cost, float) and math.isfinite(usage.cost)


def _backend(provider: str, server: FaultServer, stream: bool) -> Any:
    cls = OpenAIBackend if provider == "openai" else AnthropicBackend
    return cls(
        "m",
        api_key=TEST_KEY,
        base_url=fault_url(provider, server.url),
        retry=RetryPolicy(max_retries=0),
        stream=stream,
        timeout=10.0,
    )


def _outcome(server: FaultServer, llm: Any, canned: Canned, where: str) -> str:
    """Send `canned` as the reply to one `complete()`; the kind of error, or "ok" for a checked response."""
    server.reset()
    server.queue(canned)
    try:
        response = llm.complete(LLMRequest(messages=[Message("user", "hi")]))
        _assert_well_typed(response)
    except LLMError as exc:
        return exc.kind
    except Exception as exc:  # say where the wrong value was, which the shrunk example alone does not
        raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
    return "ok"


def _kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


#: The JSON kinds every run must have tried at each place (a string where a number belongs, ...).
KINDS = {"null", "bool", "int", "float", "str", "list", "dict"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_reply_with_wrong_typed_fields_is_well_typed_or_an_llm_error(
    _fault_server: FaultServer, provider: str
) -> None:
    paths = OPENAI_PATHS if provider == "openai" else ANTHROPIC_PATHS
    body = (
        openai_completion(text="hi", calls=[CALL], finish="tool_calls")
        if provider == "openai"
        else anthropic_message(text="hi", calls=[CALL], stop="tool_use")
    )
    kinds: dict[str, int] = {}
    outcomes: dict[str, int] = {}

    @settings(max_examples=8, phases=NO_SHRINKING)
    @given(ONE_OF_EACH_KIND)
    def check(values: tuple[Any, ...]) -> None:
        for value, path in itertools.product(values, paths):
            kinds[_kind_of(value)] = kinds.get(_kind_of(value), 0) + 1
            canned = Canned(body=_placed(value, path, body))
            outcome = _outcome(_fault_server, llm, canned, f"{'.'.join(map(str, path))} = {value!r}")
            event(outcome)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    with _backend(provider, _fault_server, stream=False) as llm:
        check()
    assert {kind: kinds.get(kind, 0) >= 8 * len(paths) for kind in KINDS} == dict.fromkeys(KINDS, True), kinds
    assert outcomes.get("ok", 0) >= len(paths) * 20, outcomes  # most wrong values read as empty, not refused
    assert set(outcomes) <= {"ok", "bad_response", "refused"}, outcomes


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_with_wrong_typed_fields_is_well_typed_or_an_llm_error(
    _fault_server: FaultServer, provider: str
) -> None:
    paths = OPENAI_STREAM_PATHS if provider == "openai" else ANTHROPIC_STREAM_PATHS
    whole = openai_tool_stream(*CALL) if provider == "openai" else anthropic_tool_stream(*CALL)
    kinds: dict[str, int] = {}
    outcomes: dict[str, int] = {}

    @settings(max_examples=8, phases=NO_SHRINKING)
    @given(ONE_OF_EACH_KIND)
    def check(values: tuple[Any, ...]) -> None:
        for value, (number, path) in itertools.product(values, paths):
            kinds[_kind_of(value)] = kinds.get(_kind_of(value), 0) + 1
            chunks = list(whole)
            head, _, data = chunks[number].decode().rpartition("data: ")
            changed = _placed(value, path, json.loads(data))
            chunks[number] = (head + "data: " + json.dumps(changed) + "\n\n").encode()
            where = f"chunk {number}: {'.'.join(map(str, path))} = {value!r}"
            outcome = _outcome(_fault_server, llm, Canned(chunks=chunks), where)
            event(outcome)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    with _backend(provider, _fault_server, stream=True) as llm:
        check()
    assert {kind: kinds.get(kind, 0) >= 8 * len(paths) for kind in KINDS} == dict.fromkeys(KINDS, True), kinds
    assert outcomes.get("ok", 0) >= len(paths) * 20, outcomes
    assert set(outcomes) <= {"ok", "bad_response", "refused"}, outcomes
