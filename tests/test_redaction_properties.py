"""Canary property (RELIABILITY I1, I2; INV-6): no planted secret reaches any output boundary.

A canary secret (an env value named like a secret, or a registered literal, holding
characters that escaping changes) is planted through an encoding (raw, JSON-escaped,
URL-encoded, base64 inside a ``Basic``/``Bearer`` shape) at a random depth of a random
structure, in one place of a run's records. Every boundary is then searched for the
canary in each encoded form and for any 6-character piece of it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

from doubles import Driver, as_text, done
from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import (
    BaseToolRegistry,
    Deny,
    MockLLMBackend,
    RunResult,
    Step,
    ToolCall,
    ToolResult,
    register_done_tool,
)
from looplet.redaction import redact_text, redact_value, register_secret, unregister_secret
from looplet.types import format_args

ENCODINGS = ["raw", "json", "url", "basic", "bearer"]
PLACES = ["args", "result", "exception", "warning", "reasoning", "detail", "metadata", "args_summary"]
SHAPES = ["list", "dict_value", "dict_key", "tuple"]
SOURCES = ["env", "registered"]

# Canary letters: upper case and none of R, E, D, A, C, T, I, O, so no 6-letter piece of a
# canary can occur in "[REDACTED]", in "Authorization" or in any word a record prints.
CORE = "BFGHJKLMNPQSUVWXYZ"
SPECIALS = ["\\", '"', "'", "/", "%", "+", " ", "&", "=", "é", "\n", "\t", ":", "@", "#"]
FILLER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.;-", max_size=8)
SECRET_ENV_NAMES = ["ACME_API_KEY", "SVC_TOKEN", "DB_PASSWORD", "APP_SECRET", "GCP_CREDENTIAL"]


@st.composite
def canaries(draw: st.DrawFn) -> str:
    chars = list(draw(st.text(alphabet=CORE, min_size=10, max_size=24)))
    for special in draw(st.lists(st.sampled_from(SPECIALS), max_size=4)):
        chars.insert(draw(st.integers(0, len(chars))), special)
    return "".join(chars)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def encode(canary: str, encoding: str, with_header: bool) -> str:
    if encoding == "json":
        return json.dumps(canary)[1:-1]
    if encoding == "url":
        return quote(canary, safe="")
    if encoding == "basic":
        return ("Authorization: " if with_header else "") + f"Basic {b64('svc:' + canary)}"
    if encoding == "bearer":
        return f"Bearer {b64(canary)}"
    return canary


@st.composite
def nested(draw: st.DrawFn, payload: str) -> Any:
    """`payload` at a random depth of random lists, tuples and dicts (as a value or a key)."""
    value: Any = payload
    for _ in range(draw(st.integers(0, 4))):
        shape = draw(st.sampled_from(SHAPES))
        if shape == "dict_key" and not isinstance(value, str):
            shape = "dict_value"
        event(f"shape: {shape}")
        fillers = draw(st.lists(FILLER | st.integers(), max_size=3))
        at = draw(st.integers(0, len(fillers)))
        if shape == "list":
            value = [*fillers[:at], value, *fillers[at:]]
        elif shape == "tuple":
            value = (*fillers[:at], value, *fillers[at:])
        elif shape == "dict_key":
            value = {value: draw(FILLER), **{f"f{i}": f for i, f in enumerate(fillers)}}
        else:
            value = {draw(FILLER): value, **{f"f{i}": f for i, f in enumerate(fillers)}}
    return value


def forbidden(canary: str) -> list[str]:
    """The canary in every form a leak could take, and every 6-letter piece of it."""
    once = json.dumps(canary)[1:-1]
    forms = {
        canary,
        once,
        json.dumps(canary, ensure_ascii=False)[1:-1],
        json.dumps(once)[1:-1],
        repr(canary)[1:-1],
        quote(canary, safe=""),
        quote_plus(canary),
        b64(canary),
        b64("svc:" + canary),
        canary.replace("\n", "⏎").replace("\t", " "),
    }
    for run in "".join(c if c in CORE else " " for c in canary).split():
        forms.update(run[i : i + 6] for i in range(len(run) - 5))
    return sorted(form for form in forms if len(form) >= 6)


@contextmanager
def planted(canary: str, source: str, env_name: str) -> Iterator[None]:
    """The canary as a secret env value or a registered secret, for the duration of the block."""
    if source == "env":
        os.environ[env_name] = canary
    else:
        register_secret(canary)
    try:
        yield
    finally:
        if source == "env":
            del os.environ[env_name]
        else:
            unregister_secret(canary)


def path_kinds(value: Any, payload: str) -> set[str]:
    """How `payload` is held in `value`: ``key`` (as a dict key), ``depth>=2``, the container types."""
    kinds: set[str] = set()
    level, depth = [value], 0
    while level:
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                kinds.add("dict")
                if payload in item:
                    kinds.add("key")
                inner.extend(item.values())
            elif isinstance(item, (list, tuple)):
                kinds.add(type(item).__name__)
                inner.extend(item)
        level, depth = inner, depth + 1
    if depth >= 3:
        kinds.add("depth>=2")
    return kinds


def assert_no_leak(canary: str, sinks: dict[str, str]) -> None:
    bad = forbidden(canary)
    for name, text in sinks.items():
        for form in bad:
            assert form not in text, f"{form!r} of canary {canary!r} leaks through {name}: {text!r}"


def records_with(place: str, payload: str, value: Any) -> tuple[ToolCall, ToolResult, Step, RunResult]:
    call = ToolCall("lookup", {"q": "plain"}, call_id="c1")
    result = ToolResult("lookup", data={"rows": 1}, duration_ms=1.5, call_id="c1")
    step = Step(1, call, result)
    run_error: BaseException | None = None
    detail = "the hook stopped the run"
    if place == "args":
        call.args = {"query": value, "limit": 3}
    elif place == "result":
        result.data = {"echo": value, "n": 2}
    elif place == "exception":
        result.error, result.error_kind = f"RuntimeError: {payload}", "execution"
        run_error = RuntimeError(payload)
    elif place == "warning":
        result.warnings = ["first", payload]
    elif place == "reasoning":
        call.tool, call.reasoning = "", f"let me think {payload}"
        result.error = "Your reply had no tool call."
    elif place == "detail":
        detail = f"Deny reason: {payload}"
    elif place == "metadata":
        step.metadata = {"note": value}
    else:
        result.args_summary = payload
    run = RunResult("hook_error", [step], error=run_error, detail=detail, dropped_calls=[call])
    return call, result, step, run


def test_no_canary_reaches_any_record_boundary() -> None:
    seen: Counter[str] = Counter()

    @given(
        canary=canaries(),
        source=st.sampled_from(SOURCES),
        env_name=st.sampled_from(SECRET_ENV_NAMES),
        encoding=st.sampled_from(ENCODINGS),
        with_header=st.booleans(),
        place=st.sampled_from(PLACES),
        around=st.tuples(FILLER, FILLER),
        data=st.data(),
    )
    def check(
        canary: str,
        source: str,
        env_name: str,
        encoding: str,
        with_header: bool,
        place: str,
        around: tuple[str, str],
        data: st.DataObject,
    ) -> None:
        payload = around[0] + encode(canary, encoding, with_header) + around[1]
        value = data.draw(nested(payload))
        for label in (f"encoding: {encoding}", f"place: {place}", f"source: {source}"):
            event(label)
            seen[label] += 1
        if any(c in canary for c in "\\\"'"):
            seen["quote or backslash"] += 1
        seen.update(f"held in: {kind}" for kind in path_kinds(value, payload))
        with planted(canary, source, env_name):
            call, result, step, run = records_with(place, payload, value)
            as_dict = run.to_dict()
            sinks = {
                "repr(call)": repr(call),
                "repr(result)": repr(result),
                "repr(step)": repr(step),
                "repr(run)": repr(run),
                "pretty()": step.pretty(),
                "to_dict error": str(as_dict["error"]),
                "to_dict detail": as_dict["detail"],
                "run.detail": run.detail,
                "error_text": str(run.error_text),
                "format_args": format_args(call.args),
                "redact_value": repr(redact_value(value)),
                "json(redact_value)": json.dumps(redact_value(value), default=repr),
                "json(redact_value) utf-8": json.dumps(redact_value(value), ensure_ascii=False, default=repr),
                "json(redact_value(step))": json.dumps(redact_value(step.to_dict())),
                "redact_text(json)": redact_text(json.dumps(step.to_dict())),
            }
            assert_no_leak(canary, sinks)

    check()
    examples = settings.default.max_examples
    for label in ENCODINGS:
        assert seen[f"encoding: {label}"] >= examples // 20, seen
    for label in PLACES:
        assert seen[f"place: {label}"] >= examples // 60, seen
    for label in SOURCES:
        assert seen[f"source: {label}"] >= examples // 5, seen
    assert seen["quote or backslash"] >= examples // 10, seen
    for kind in ("dict", "key", "list", "tuple", "depth>=2"):
        assert seen[f"held in: {kind}"] >= examples // 20, seen


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def leaky_run(mode: str, place: str, payload: str) -> tuple[list[Step], RunResult, MockLLMBackend]:
    """A scripted run whose tool, hooks or model carry `payload` to `place`."""
    tools = BaseToolRegistry()

    @tools.tool
    def fetch(query: str, ctx: Any = None) -> dict[str, Any]:
        """Fetch something."""
        if place == "exception":
            raise ConnectionError(f"cannot connect: {payload}")
        if place == "warning" and ctx is not None:
            ctx.warn(f"fell back: {payload}")
        return {"body": payload if place == "result" else "fine", "rows": [query]}

    register_done_tool(tools)

    class Gate:
        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
            if place == "deny" and call.tool == "fetch":
                return Deny(f"not allowed: {payload}")
            return None

        def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: Any, step: int) -> Any:
            if place == "hook_exception":
                raise RuntimeError(f"audit failed: {payload}")
            return None

    query = payload if place == "args" else "plain"
    llm = MockLLMBackend([as_text("fetch", query=query), done()])
    steps, result = Driver(mode)(llm, tools=tools, hooks=[Gate()])
    return steps, result, llm


def test_no_canary_leaves_a_real_run() -> None:
    seen: Counter[str] = Counter()
    places = ["args", "result", "exception", "warning", "deny", "hook_exception"]
    handler = LogLines()
    logger = logging.getLogger("looplet")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    @settings(max_examples=max(10, settings.default.max_examples * 2 // 5))
    @given(
        canary=canaries(),
        source=st.sampled_from(SOURCES),
        env_name=st.sampled_from(SECRET_ENV_NAMES),
        encoding=st.sampled_from(ENCODINGS),
        place=st.sampled_from(places),
        mode=st.sampled_from(["sync", "async"]),
    )
    def check(canary: str, source: str, env_name: str, encoding: str, place: str, mode: str) -> None:
        payload = encode(canary, encoding, with_header=False)
        for label in (f"encoding: {encoding}", f"place: {place}", f"mode: {mode}"):
            event(label)
            seen[label] += 1
        handler.lines.clear()
        with planted(canary, source, env_name):
            steps, result, llm = leaky_run(mode, place, payload)
            as_dict = result.to_dict()
            sinks = {
                "pretty()": "\n".join(s.pretty() for s in steps),
                "repr(steps)": repr(steps),
                "repr(result)": repr(result),
                "to_dict error": str(as_dict["error"]),
                "to_dict detail": as_dict["detail"],
                "logs": "\n".join(handler.lines),
                # I2: the provider never sees an env or registered secret (the model's own
                # arguments are echoed back to it, so the check covers what the loop adds)
                "prompts": json.dumps([[m.content for m in c.messages] for c in llm.calls[1:]]),
            }
            if place == "args":
                seen["args reached the tool"] += steps[0].tool_result.ok
            assert_no_leak(canary, sinks)

    try:
        check()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    examples = max(10, settings.default.max_examples * 2 // 5)
    for label in ENCODINGS:
        assert seen[f"encoding: {label}"] >= examples // 20, seen
    for label in places:
        assert seen[f"place: {label}"] >= examples // 20, seen
    assert min(seen["mode: sync"], seen["mode: async"]) >= examples // 5, seen
    assert seen["args reached the tool"] >= examples // 40, seen
