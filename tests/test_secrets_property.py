"""INV-6 / RELIABILITY I1-I2 as a property: a canary secret placed anywhere a run can carry it
(call arguments, tool results at any depth, exception text, warnings, hook reasons and notes,
hook and backend failures), raw or encoded, never shows at any output boundary: the requests
sent to the provider (env values), ``pretty()``, ``repr()`` of every record, ``RunResult``'s
error, detail and ``to_dict()``, and the log."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from doubles import (
    SECRET_ENCODINGS,
    WORK_PLACES,
    Canary,
    canary_tools,
    encode_secret,
    env_var,
    leak_forms,
    placed_canaries,
)
from hypothesis import given, settings

from looplet import (
    Block,
    Deny,
    FunctionBackend,
    LLMError,
    LLMResponse,
    Stop,
    ToolCall,
    composable_loop,
)

ENV_NAME = "LOOPLET_CANARY_API_KEY"

#: where a canary is put: the one place of a run it travels through
PLACES = (*WORK_PLACES, "deny_reason", "post_note", "block_reason", "stop_reason", "hook_error", "llm_error")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class _Planting:
    """Hooks that carry the canary in their reasons, notes and failures."""

    def __init__(self, place: str, planted: str) -> None:
        self.place = place
        self.planted = planted

    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        if self.place == "deny_reason" and call.tool == "work":
            return Deny(f"not with {self.planted}")
        if self.place == "hook_error":
            raise PermissionError(f"policy store {self.planted} unreachable")
        return None

    def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: Any, step: int) -> Any:
        if self.place == "post_note" and call.tool == "work":
            return f"noted {self.planted}"
        if self.place == "stop_reason" and call.tool == "work":
            return Stop(f"halt {self.planted}")
        return None

    def check_done(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        if self.place == "block_reason" and not state.metadata.get("blocked"):
            state.metadata["blocked"] = True
            return Block(f"missing {self.planted}")
        return None


def _run(place: str, planted: str, depth: int) -> tuple[Any, list[Any], list[LLMResponse | Any]]:
    tools = canary_tools(place, planted, depth)
    calls: list[Any] = []

    script = [
        {"tool": "work", "args": {"text": planted if place == "args" else "plain"}},
        {"tool": "done", "args": {"answer": "finished"}},
        {"tool": "done", "args": {"answer": "finished"}},
    ]

    def answer(request: Any) -> Any:
        calls.append(request)
        if place == "llm_error" and len(calls) == 2:
            raise LLMError(f"upstream said: bad key {planted}", kind="auth", status=401)
        return json.dumps(script[min(len(calls) - 1, 2)])

    hooks = [_Planting(place, planted)]
    loop = composable_loop(FunctionBackend(answer), tools=tools, task="do the work", hooks=hooks)
    steps = list(loop)
    return loop.result, steps, calls


@settings(max_examples=150)
@given(canary=placed_canaries(PLACES, max_depth=6))
def test_a_canary_never_shows_at_any_output_boundary(canary: Canary) -> None:
    canary.tally()
    capture = _Capture()
    logger = logging.getLogger("looplet")
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with env_var(ENV_NAME, canary.env_value):
            result, steps, requests = _run(canary.place, canary.planted, canary.depth)
            sinks = {
                "pretty": "\n".join(s.pretty() for s in steps),
                "repr": "\n".join(
                    [repr(result)]
                    + [repr(s) for s in steps]
                    + [repr(s.tool_call) for s in steps]
                    + [repr(s.tool_result) for s in steps]
                ),
                "error": str(result.error),
                "detail": result.detail,
                "to_dict": json.dumps({k: result.to_dict()[k] for k in ("error", "detail")}),
                "log": "\n".join(capture.lines),
            }
            if canary.as_env:  # the provider boundary masks env values only (I2)
                sinks["provider"] = "\n".join(
                    part for r in requests for part in [r.system, *r.extra, *(m.content for m in r.messages)]
                )
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    assert steps or canary.place in ("llm_error",)
    for sink, text in sinks.items():
        for form in leak_forms(canary.secret):
            assert form not in text, (
                f"{canary.place}/{canary.how}: the canary leaked into {sink}: {text[:300]!r}"
            )


def test_every_place_of_the_property_carries_the_canary_into_the_run() -> None:
    # the strategy above samples from these; make sure each place really carries the canary
    # into the run (a place that never reached a sink would make the property vacuous)
    seen: dict[str, bool] = {}
    for place in PLACES:
        result, steps, requests = _run(place, "Qz7PLANTED-marker-0001", 2)
        text = "\n".join(
            [str(result.error), result.detail]
            + [json.dumps(s.to_dict()) for s in steps]
            + [m.content for r in requests for m in r.messages]
        )
        seen[place] = "PLANTED-marker-0001" in text
    assert all(seen.values()), [p for p, ok in seen.items() if not ok]


@pytest.mark.parametrize("how", SECRET_ENCODINGS)
def test_each_encoding_of_an_env_secret_is_masked_in_a_tool_result(how: str) -> None:
    secret = 'Qz7pa$$\\word"with%odd/chars'
    with env_var(ENV_NAME, secret):
        result, steps, requests = _run("result", encode_secret(secret, how), 0)
        sent = "\n".join(m.content for r in requests for m in r.messages)
        shown = steps[0].pretty() + repr(steps[0])
    for form in leak_forms(secret):
        assert form not in sent and form not in shown
