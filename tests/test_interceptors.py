"""Interceptors: ``around_llm`` / ``around_tool`` wrapped around every model call and tool run.

Every test runs in both loops (the `drive` fixture) unless it is about one
loop only. Interceptors nest in list order: the first given is the outermost.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from doubles import Driver, Recorder, as_text, done, greeting_tools, native

from looplet import (
    AsyncFunctionBackend,
    BaseToolRegistry,
    ConfigError,
    DefaultState,
    FunctionBackend,
    LLMError,
    LLMRequest,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    ToolResult,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)
from looplet.tools.registry import PreparedCall

Event = tuple[str, str, str]


class Tracer:
    """Records entering and leaving each model call and tool run, what it saw, and how long it took."""

    def __init__(self, name: str, events: list[Event]) -> None:
        self.name = name
        self.events = events
        self.exchanges: list[tuple[LLMRequest, Any]] = []
        self.runs: list[tuple[PreparedCall, Any]] = []
        self.llm_seconds: list[float] = []
        self.tool_seconds: list[float] = []
        self.raised: list[BaseException] = []

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        self.events.append((self.name, "enter", "llm"))
        started = time.perf_counter()
        try:
            response = proceed(request)
        except BaseException as exc:
            self.raised.append(exc)
            raise
        finally:
            self.llm_seconds.append(time.perf_counter() - started)
        self.exchanges.append((request, response))
        self.events.append((self.name, "exit", "llm"))
        return response

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        self.events.append((self.name, "enter", call.spec.name))
        started = time.perf_counter()
        try:
            result = proceed()
        except BaseException as exc:
            self.raised.append(exc)
            raise
        finally:
            self.tool_seconds.append(time.perf_counter() - started)
        self.runs.append((call, result))
        self.events.append((self.name, "exit", call.spec.name))
        return result


class AsyncTracer(Tracer):
    """The same, as ``async def`` methods (awaited in the async loop)."""

    async def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Awaitable[Any]]) -> Any:
        self.events.append((self.name, "enter", "llm"))
        response = await proceed(request)
        self.exchanges.append((request, response))
        self.events.append((self.name, "exit", "llm"))
        return response

    async def around_tool(self, call: PreparedCall, proceed: Callable[[], Awaitable[Any]]) -> Any:
        self.events.append((self.name, "enter", call.spec.name))
        result = await proceed()
        self.runs.append((call, result))
        self.events.append((self.name, "exit", call.spec.name))
        return result


def _traced_backend(events: list[Event], script: list[str]) -> FunctionBackend:
    """A scripted backend that notes in `events` when it is really called."""
    replies = iter(script)

    def answer(request: LLMRequest) -> str:
        events.append(("backend", "call", "llm"))
        return next(replies)

    return FunctionBackend(answer)


def _around(subject: str) -> list[Event]:
    """Two interceptors, outer then inner, around one model call or tool run."""
    return [
        ("outer", "enter", subject),
        ("inner", "enter", subject),
        ("inner", "exit", subject),
        ("outer", "exit", subject),
    ]


# -- order, and what an interceptor sees ---------------------------------------------------


def test_the_first_interceptor_given_is_the_outermost_around_model_calls_and_tool_runs(
    drive: Driver,
) -> None:
    events: list[Event] = []
    outer, inner = Tracer("outer", events), Tracer("inner", events)
    tools, greeted = greeting_tools()
    llm = _traced_backend(events, [as_text("greet", name="Ada"), done("greeted")])

    steps, result = drive(llm, tools=tools, hooks=[outer, inner])

    assert result.stop_reason == "done" and greeted == ["Ada"]
    model_call = [*_around("llm")[:2], ("backend", "call", "llm"), *_around("llm")[2:]]
    assert events == [*model_call, *_around("greet"), *model_call, *_around("done")]


def test_an_interceptor_sees_the_request_and_response_and_the_call_and_its_result(drive: Driver) -> None:
    events: list[Event] = []
    outer, inner = Tracer("outer", events), Tracer("inner", events)
    tools, _ = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Ada"), done("greeted")])

    steps, _ = drive(llm, tools=tools, hooks=[outer, inner])

    assert [request.step for request, _ in outer.exchanges] == [1, 2]
    assert [request is sent for (request, _), sent in zip(inner.exchanges, llm.calls, strict=True)] == [
        True,
        True,
    ]
    first_request, first_response = outer.exchanges[0]
    assert "the task" in first_request.messages[0].content
    assert isinstance(first_response, LLMResponse) and "Ada" in first_response.text
    (greet_call, greet_result), (done_call, done_result) = outer.runs
    assert greet_call.call.tool == "greet" and greet_call.args == {"name": "Ada"}
    assert greet_call.call.call_id == steps[0].tool_call.call_id
    assert greet_result is steps[0].tool_result and greet_result.data == {"greeting": "Hello, Ada!"}
    assert done_call.spec.done and done_result is steps[1].tool_result


def test_an_interceptor_can_time_each_call_and_an_outer_one_spans_the_inner_one(drive: Driver) -> None:
    events: list[Event] = []
    outer, inner = Tracer("outer", events), Tracer("inner", events)
    tools, _ = greeting_tools()

    drive(MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=[outer, inner])

    assert len(outer.llm_seconds) == len(inner.llm_seconds) == 2
    assert len(outer.tool_seconds) == len(inner.tool_seconds) == 2
    # perf_counter is monotonic and the outer interval contains the inner one
    for mine, theirs in ((outer.llm_seconds, inner.llm_seconds), (outer.tool_seconds, inner.tool_seconds)):
        assert all(o >= i >= 0 for o, i in zip(mine, theirs, strict=True))


# -- around_llm ------------------------------------------------------------------------------


class AddsNote:
    """Passes a changed request on: one more text for this call."""

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        return proceed(replace(request, extra=(*request.extra, "note from the interceptor")))


def test_a_request_changed_by_an_interceptor_is_what_the_backend_and_inner_interceptors_see(
    drive: Driver,
) -> None:
    events: list[Event] = []
    inner = Tracer("inner", events)
    tools, _ = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Ada"), done()])

    _, result = drive(llm, tools=tools, hooks=[AddsNote(), inner])

    assert result.stop_reason == "done"
    assert [request.extra[-1:] for request in llm.calls] == [("note from the interceptor",)] * 2
    assert [request.extra for request, _ in inner.exchanges] == [r.extra for r in llm.calls]


class Overrules:
    """Answers the first model call itself, whatever the backend said."""

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        response = proceed(request)
        if request.step == 1:
            return LLMResponse(tool_calls=[native("greet", name="Grace")])
        return response


def test_a_response_returned_by_an_interceptor_is_the_one_the_loop_uses(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Ada"), done()])

    steps, result = drive(llm, tools=tools, hooks=[Overrules()])

    assert greeted == ["Grace"] and steps[0].tool_call.args == {"name": "Grace"}
    assert result.stop_reason == "done" and len(llm.calls) == 2


class Broken:
    """An interceptor whose own code fails."""

    def __init__(self) -> None:
        self.error = RuntimeError("the tracer lost its connection")

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        raise self.error


def test_an_interceptor_that_raises_around_the_model_call_stops_the_run_with_llm_error(
    drive: Driver,
) -> None:
    tools, _ = greeting_tools()
    broken = Broken()
    llm = MockLLMBackend([done()])

    steps, result = drive(llm, tools=tools, hooks=[broken])

    assert result.stop_reason == "llm_error" and steps == [] and llm.calls == []
    assert isinstance(result.error, LLMError) and result.error.__cause__ is broken.error
    assert "the tracer lost its connection" in result.detail


def test_the_stop_detail_names_the_interceptor_that_failed_around_the_model_call(drive: Driver) -> None:
    tools, _ = greeting_tools()

    _, result = drive(MockLLMBackend([done()]), tools=tools, hooks=[Broken()])

    assert result.stop_reason == "llm_error" and "Broken.around_llm" in result.detail


def test_an_exception_from_the_backend_reaches_the_interceptor_which_may_reraise_it(drive: Driver) -> None:
    events: list[Event] = []
    outer, inner = Tracer("outer", events), Tracer("inner", events)
    down = ConnectionError("the provider is down")
    tools, _ = greeting_tools()

    _, result = drive(MockLLMBackend([down]), tools=tools, hooks=[outer, inner])

    assert inner.raised == [down] and outer.raised == [down]
    assert [e for e in events if e[1] == "exit"] == []
    assert result.stop_reason == "llm_error" and result.error is not None
    assert result.error.__cause__ is down


class FallsBack:
    """Answers with its own response when the backend fails (a fallback model, say)."""

    def __init__(self) -> None:
        self.caught: list[BaseException] = []

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        try:
            return proceed(request)
        except ConnectionError as exc:
            self.caught.append(exc)
            return LLMResponse(text=done("from the fallback"))


def test_an_interceptor_that_catches_the_backends_exception_can_answer_instead(drive: Driver) -> None:
    fallback = FallsBack()
    tools, _ = greeting_tools()
    down = ConnectionError("the provider is down")

    _, result = drive(MockLLMBackend([down]), tools=tools, hooks=[fallback])

    assert fallback.caught == [down]
    assert result.stop_reason == "done" and result.final_answer == {"answer": "from the fallback"}


# -- around_tool -----------------------------------------------------------------------------


class Refuses:
    """Refuses to let `greet` run (the check fails before `proceed`)."""

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        if call.spec.name == "greet":
            raise PermissionError("not in this sandbox")
        return proceed()


def test_an_interceptor_raising_before_proceed_leaves_the_tool_unrun_and_answers_an_execution_error(
    drive: Driver,
) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Ada"), done()])

    steps, result = drive(llm, tools=tools, hooks=[Refuses()])

    assert greeted == []
    refused = steps[0].tool_result
    assert refused.error_kind == "execution" and refused.call_id == steps[0].tool_call.call_id
    assert refused.error is not None
    assert "Refuses.around_tool" in refused.error and "not in this sandbox" in refused.error
    assert refused.metadata["interceptor"] == "Refuses.around_tool"
    assert result.stop_reason == "done" and len(steps) == 2  # the run went on
    assert "Refuses.around_tool" in llm.calls[1].messages[-1].content  # and the model was told


class ReturnsJunk:
    """Runs `greet`, then returns something that is not a ToolResult."""

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        result = proceed()
        return {"greeting": "hi"} if call.spec.name == "greet" else result


def test_an_interceptor_returning_something_else_than_a_tool_result_gives_an_error_naming_it(
    drive: Driver,
) -> None:
    events: list[Event] = []
    outer = Tracer("outer", events)
    tools, greeted = greeting_tools()

    steps, result = drive(
        MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=[outer, ReturnsJunk()]
    )

    assert greeted == ["Ada"]
    junk = steps[0].tool_result
    assert junk.error_kind == "execution" and junk.error is not None
    assert "ReturnsJunk.around_tool returned dict" in junk.error and "ToolResult" in junk.error
    assert outer.runs[0][1] is junk and outer.raised == []  # the outer one sees a result, not an exception
    assert result.stop_reason == "done"


class Cached:
    """Answers `greet` from a cache, without running it."""

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        if call.spec.name == "greet":
            return ToolResult(tool="greet", data={"greeting": "cached hello"}, call_id=call.call.call_id)
        return proceed()


def test_a_result_returned_by_an_interceptor_replaces_the_tools(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Ada"), done()])

    steps, result = drive(llm, tools=tools, hooks=[Cached()])

    assert greeted == [] and steps[0].tool_result.data == {"greeting": "cached hello"}
    assert "cached hello" in llm.calls[1].messages[-1].content
    assert result.stop_reason == "done"


class CachedCarelessly:
    """Returns a replacement as a careless interceptor writes it: no call id, data not JSON-safe."""

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        if call.spec.name == "greet":
            return ToolResult(tool="greet", data={"greeting": "cached", "at": object()})
        return proceed()


def test_a_replacement_from_an_interceptor_is_tied_to_its_call_and_made_json_safe(drive: Driver) -> None:
    tools, _ = greeting_tools()

    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=[CachedCarelessly()]
    )

    assert steps[0].tool_result.call_id == steps[0].tool_call.call_id
    assert drive.loop is not None
    json.dumps(drive.loop.state.to_dict())


def _failing_tools() -> tuple[BaseToolRegistry, list[str]]:
    tools = BaseToolRegistry()
    attempts: list[str] = []

    @tools.tool
    def lookup(key: str) -> dict[str, str]:
        """Look a key up (always fails)."""
        attempts.append(key)
        raise KeyError(key)

    register_done_tool(tools)
    return tools, attempts


def test_an_exception_a_tool_raises_reaches_the_interceptor_as_an_error_result(drive: Driver) -> None:
    events: list[Event] = []
    tracer = Tracer("outer", events)
    tools, attempts = _failing_tools()

    steps, result = drive(MockLLMBackend([as_text("lookup", key="k"), done()]), tools=tools, hooks=[tracer])

    assert attempts == ["k"] and tracer.raised == []
    seen = tracer.runs[0][1]
    assert isinstance(seen, ToolResult) and seen.error_kind == "execution" and seen is steps[0].tool_result
    assert result.stop_reason == "done"


# -- concurrent batches --------------------------------------------------------------------


class MeetsAtBarrier:
    """Holds every `greet` until all of the batch's calls are inside it: proof that they overlap."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.seen: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        if call.spec.name == "greet":
            with self.lock:
                thread = threading.current_thread()
                self.seen.append((call.call.call_id, thread.ident or 0, thread.name))
            self.barrier.wait()
        return proceed()


BATCH = [native("greet", "a", name="Ada"), native("greet", "b", name="Bo"), native("greet", "c", name="Cy")]


def _check_batch_steps(steps: list[Any]) -> None:
    """Each step's result answers its own call."""
    names = {"a": "Ada", "b": "Bo", "c": "Cy"}
    batch_steps = steps[:3]
    assert [s.tool_call.call_id for s in batch_steps] == ["a", "b", "c"]
    for step in batch_steps:
        assert step.tool_result.call_id == step.tool_call.call_id
        assert step.tool_result.data == {"greeting": f"Hello, {names[step.tool_call.call_id]}!"}


def test_each_call_of_a_concurrent_batch_is_intercepted_once_at_the_same_time(drive: Driver) -> None:
    tools, greeted = greeting_tools(concurrent_safe=True)
    meets = MeetsAtBarrier(3)

    steps, result = drive(MockLLMBackend([BATCH, done()]), tools=tools, hooks=[meets])

    assert sorted(call_id for call_id, _, _ in meets.seen) == ["a", "b", "c"]
    assert len({ident for _, ident, _ in meets.seen}) == 3  # three threads, all in at once
    assert sorted(greeted) == ["Ada", "Bo", "Cy"]
    _check_batch_steps(steps)
    assert result.stop_reason == "done"


def test_the_sync_loop_intercepts_a_concurrent_batch_from_its_worker_threads() -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    meets = MeetsAtBarrier(3)

    composable_loop(MockLLMBackend([BATCH, done()]), task="t", tools=tools, hooks=[meets]).run()

    main = threading.get_ident()
    assert all(ident != main and name.startswith("looplet-tools") for _, ident, name in meets.seen)


class AsyncMeetsAtBarrier:
    """`MeetsAtBarrier` as an ``async def``: the batch's calls overlap as tasks."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.seen: list[tuple[str, int]] = []

    async def around_tool(self, call: PreparedCall, proceed: Callable[[], Awaitable[Any]]) -> Any:
        if call.spec.name == "greet":
            self.seen.append((call.call.call_id, threading.get_ident()))
            await asyncio.wait_for(self._barrier().wait(), timeout=10)
        return await proceed()

    def _barrier(self) -> asyncio.Barrier:
        if not hasattr(self, "barrier"):
            self.barrier = asyncio.Barrier(self.parties)
        return self.barrier


def test_an_async_interceptor_sees_a_concurrent_batch_as_overlapping_tasks_on_the_event_loop() -> None:
    tools, greeted = greeting_tools(concurrent_safe=True)
    meets = AsyncMeetsAtBarrier(3)

    async def main() -> tuple[list[Any], int]:
        loop = async_composable_loop(MockLLMBackend([BATCH, done()]), task="t", tools=tools, hooks=[meets])
        steps = [step async for step in loop]
        return steps, threading.get_ident()

    steps, loop_thread = asyncio.run(main())

    assert sorted(call_id for call_id, _ in meets.seen) == ["a", "b", "c"]
    assert {ident for _, ident in meets.seen} == {loop_thread}
    assert sorted(greeted) == ["Ada", "Bo", "Cy"]
    _check_batch_steps(steps)


# -- sync and async interceptors -------------------------------------------------------------


class OnThread(Tracer):
    """A Tracer that also notes which thread it ran on."""

    def __init__(self, name: str, events: list[Event]) -> None:
        super().__init__(name, events)
        self.threads: list[int] = []

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        self.threads.append(threading.get_ident())
        return super().around_llm(request, proceed)

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        self.threads.append(threading.get_ident())
        return super().around_tool(call, proceed)


def _async_greeting_tools() -> tuple[BaseToolRegistry, list[str]]:
    tools = BaseToolRegistry()
    greeted: list[str] = []

    @tools.tool
    async def greet(name: str) -> dict[str, str]:
        """Greet someone by name (awaiting)."""
        await asyncio.sleep(0)
        greeted.append(name)
        return {"greeting": f"Hello, {name}!"}

    register_done_tool(tools)
    return tools, greeted


def _backend(kind: str, script: list[str]) -> Any:
    if kind == "sync":
        return MockLLMBackend(script)
    replies = iter(script)

    async def answer(request: LLMRequest) -> str:
        await asyncio.sleep(0)
        return next(replies)

    return AsyncFunctionBackend(answer)


def _run_async(llm: Any, **kwargs: Any) -> tuple[list[Any], Any, int]:
    """Run the async loop to its end: (steps, result, the event loop's thread)."""

    async def main() -> tuple[list[Any], Any, int]:
        loop = async_composable_loop(llm, task="the task", **kwargs)
        steps = [step async for step in loop]
        return steps, loop.result, threading.get_ident()

    return asyncio.run(main())


def test_the_async_loop_awaits_async_interceptors_on_the_event_loop() -> None:
    events: list[Event] = []
    tracer = AsyncTracer("outer", events)
    tools, greeted = greeting_tools()

    steps, result, _ = _run_async(
        MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=[tracer]
    )

    assert greeted == ["Ada"] and result.stop_reason == "done"
    assert [type(response) for _, response in tracer.exchanges] == [LLMResponse, LLMResponse]
    assert [result for _, result in tracer.runs] == [s.tool_result for s in steps]
    assert events == [*_pair("llm"), *_pair("greet"), *_pair("llm"), *_pair("done")]


def _pair(subject: str) -> list[Event]:
    return [("outer", "enter", subject), ("outer", "exit", subject)]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_plain_interceptor_in_the_async_loop_runs_in_a_thread_and_proceed_runs_the_rest(kind: str) -> None:
    events: list[Event] = []
    tracer = OnThread("outer", events)
    tools, greeted = greeting_tools() if kind == "sync" else _async_greeting_tools()

    steps, result, loop_thread = _run_async(
        _backend(kind, [as_text("greet", name="Ada"), done()]), tools=tools, hooks=[tracer]
    )

    assert greeted == ["Ada"] and result.stop_reason == "done"
    assert len(tracer.threads) == 4 and loop_thread not in tracer.threads
    assert [type(response) for _, response in tracer.exchanges] == [LLMResponse, LLMResponse]
    assert [result for _, result in tracer.runs] == [s.tool_result for s in steps]


@pytest.mark.parametrize("outer_kind", ["plain", "async"])
def test_plain_and_async_interceptors_nest_in_list_order_in_the_async_loop(outer_kind: str) -> None:
    events: list[Event] = []
    make = {"plain": Tracer, "async": AsyncTracer}
    inner_kind = "async" if outer_kind == "plain" else "plain"
    outer, inner = make[outer_kind]("outer", events), make[inner_kind]("inner", events)
    tools, greeted = greeting_tools()

    _, result, _ = _run_async(
        MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=[outer, inner]
    )

    assert greeted == ["Ada"] and result.stop_reason == "done"
    assert events == [*_around("llm"), *_around("greet"), *_around("llm"), *_around("done")]


class AsyncToolOnly:
    async def around_tool(self, call: PreparedCall, proceed: Callable[[], Awaitable[Any]]) -> Any:
        return await proceed()


@pytest.mark.parametrize(
    ("hook", "named"),
    [(AsyncTracer("t", []), "AsyncTracer.around_llm"), (AsyncToolOnly(), "AsyncToolOnly.around_tool")],
    ids=["around_llm", "around_tool"],
)
def test_an_async_interceptor_is_refused_by_the_sync_loop_when_it_is_built(hook: object, named: str) -> None:
    llm = MockLLMBackend([done()])
    tools, _ = greeting_tools()

    with pytest.raises(ConfigError, match=f"{named} is async; use async_composable_loop"):
        composable_loop(llm, task="t", tools=tools, hooks=[hook])

    assert llm.calls == []


class RaisesStopIteration:
    """A plain interceptor whose code raises StopIteration (a ``next()`` on an empty iterator, say)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        if self.where == "llm":
            raise StopIteration
        return proceed(request)

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        if self.where == "tool" and call.spec.name == "greet":
            raise StopIteration
        return proceed()


@pytest.mark.parametrize("where", ["llm", "tool"])
def test_a_plain_interceptor_raising_stop_iteration_fails_its_call_in_the_async_loop(where: str) -> None:
    tools, greeted = greeting_tools()

    async def main() -> tuple[list[Any], Any]:
        loop = async_composable_loop(
            MockLLMBackend([as_text("greet", name="Ada"), done()]),
            task="t",
            tools=tools,
            hooks=[RaisesStopIteration(where)],
        )
        steps = [step async for step in loop]
        return steps, loop.result

    steps, result = asyncio.run(asyncio.wait_for(main(), timeout=2))  # a guard: it hangs without a fix

    if where == "llm":
        assert result.stop_reason == "llm_error" and "StopIteration" in result.detail
    else:
        failed = steps[0].tool_result
        assert greeted == [] and failed.error_kind == "execution" and failed.error is not None
        assert "RaisesStopIteration.around_tool" in failed.error and result.stop_reason == "done"


# -- the run record and interruptions --------------------------------------------------------


class ChecksTheJournal:
    """Holds the state from pre_loop and notes, inside around_tool, what the journal says of the call."""

    def __init__(self) -> None:
        self.state: DefaultState | None = None
        self.seen: list[tuple[str, bool, bool, str, dict[str, Any]]] = []

    def pre_loop(self, state: DefaultState, log: Any, ctx: Any) -> None:
        self.state = state

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        assert self.state is not None
        call_id = call.call.call_id
        intent = self.state.in_flight.get(call_id)
        if intent is None:
            self.seen.append((call_id, False, False, "", {}))
        else:
            self.seen.append((call_id, True, intent.result is None, intent.tool, dict(intent.args)))
        return proceed()


def test_the_intent_is_in_the_run_record_when_around_tool_is_entered(drive: Driver) -> None:
    journal = ChecksTheJournal()
    tools, _ = greeting_tools()
    llm = MockLLMBackend(
        [ToolCall("greet", {"name": "Ada"}, call_id="g1"), native("done", "d1", answer="ok")]
    )

    _, result = drive(llm, tools=tools, hooks=[journal])

    assert journal.seen == [
        ("g1", True, True, "greet", {"name": "Ada"}),
        ("d1", True, True, "done", {"answer": "ok"}),
    ]
    assert journal.state is not None and journal.state.in_flight == {}  # each step concluded its call
    assert result.stop_reason == "done"


class Interrupts:
    """Raises KeyboardInterrupt around the model call or around the tool run."""

    def __init__(self, where: str) -> None:
        self.where = where

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        if self.where == "llm":
            raise KeyboardInterrupt
        return proceed(request)

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        if self.where == "tool":
            raise KeyboardInterrupt
        return proceed()


@pytest.mark.parametrize("where", ["llm", "tool"])
def test_ctrl_c_inside_an_interceptor_propagates_and_the_run_ends_cancelled(
    drive: Driver, where: str
) -> None:
    tools, greeted = greeting_tools()
    ends = Recorder()
    llm = MockLLMBackend([as_text("greet", name="Ada"), done()])

    with pytest.raises(KeyboardInterrupt):
        drive(llm, tools=tools, hooks=[Interrupts(where), ends])

    assert drive.loop is not None and drive.loop.result is not None
    assert drive.loop.result.stop_reason == "cancelled"
    assert greeted == [] and drive.loop.state.steps == []
    assert ends.count("on_loop_end") == 1


class AsyncInterrupts:
    async def around_tool(self, call: PreparedCall, proceed: Callable[[], Awaitable[Any]]) -> Any:
        raise KeyboardInterrupt


def test_ctrl_c_inside_an_async_interceptor_propagates_and_the_run_ends_cancelled() -> None:
    tools, greeted = greeting_tools()
    loops: list[Any] = []

    async def main() -> None:
        loop = async_composable_loop(
            MockLLMBackend([as_text("greet", name="Ada")]), task="t", tools=tools, hooks=[AsyncInterrupts()]
        )
        loops.append(loop)
        async for _ in loop:
            pass

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())

    assert loops[0].result.stop_reason == "cancelled" and greeted == []


# -- without interceptors -----------------------------------------------------------------


def test_hooks_without_interceptors_leave_the_plain_path_as_it_was(drive: Driver) -> None:
    recorder = Recorder()
    tools, greeted = greeting_tools()

    steps, result = drive(
        MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=[recorder]
    )

    assert drive.loop is not None
    assert drive.loop.engine.hooks.around_llm == [] and drive.loop.engine.hooks.around_tool == []
    assert greeted == ["Ada"] and result.stop_reason == "done"
    assert steps[0].tool_result.data == {"greeting": "Hello, Ada!"}
