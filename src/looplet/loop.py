"""`composable_loop` and `async_composable_loop`: two thin drivers of the same step engine."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import replace
from typing import Any

from .backends.text import wrap_backend
from .config import LoopConfig
from .engine import CallHook, CallLLM, Contained, Engine, Flow
from .errors import ConfigError, propagates
from .history import History
from .hooks.slots import HookSlots
from .interceptors import allm_chain, atool_chain, llm_chain, refuse_async, tool_chain
from .state import DefaultState
from .tools.context import CancelToken, is_async_callable
from .tools.dispatch import run_async, run_sync
from .tools.registry import BaseToolRegistry
from .types import RunResult, Step

__all__ = ["Loop", "AsyncLoop", "composable_loop", "async_composable_loop", "run_loop", "arun_loop"]


def _engine(
    llm: Any,
    *,
    task: Any,
    tools: BaseToolRegistry | None,
    hooks: Iterable[object] | None,
    config: LoopConfig | None,
    state: DefaultState | None,
    max_steps: int | None,
    system_prompt: str | None,
    context: Any,
    cancel_token: CancelToken | None,
    history: History | None,
    approver: Callable[[str], Any] | None,
    backend: Any,
    store: Any = None,
    resume: str | None = None,
) -> Engine:
    state, hooks = _durability(state, hooks, store, resume)
    overrides: dict[str, Any] = {}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    if system_prompt is not None:
        overrides["system_prompt"] = system_prompt
    if config is None:
        cfg = LoopConfig(**overrides)  # validated by __post_init__
    elif overrides:
        cfg = replace(config, **overrides)  # a copy: the caller's config is not changed
    else:
        cfg = config
        cfg.validate()  # it may have been changed since it was built
    if tools is None:
        tools = BaseToolRegistry()
    if not isinstance(tools, BaseToolRegistry):
        raise ConfigError(f"tools must be a BaseToolRegistry, got {type(tools).__name__}")
    return Engine(
        llm=llm,
        tools=tools,
        hooks=HookSlots(hooks or ()),
        config=cfg,
        state=state if state is not None else DefaultState(),
        task=task,
        context=context,
        cancel_token=cancel_token,
        history=history,
        approver=approver,
        # The JSON-in-text format is shown unless the backend calls tools natively.
        text_format=not getattr(backend, "native_tool_calls", False),
    )


def _durability(
    state: DefaultState | None, hooks: Iterable[object] | None, store: Any, resume: str | None
) -> tuple[DefaultState | None, list[object]]:
    """`store=` checkpoints the run (a `CheckpointHook`, first in the hooks); `resume=` loads it."""
    hooks = list(hooks or ())
    if store is None:
        if resume is not None:
            raise ConfigError(f"resume={resume!r} needs the store that holds the run: pass store=")
        return state, hooks
    from .checkpoints import CheckpointHook, RunStore, load_run

    if not isinstance(store, RunStore):
        kind = type(store).__name__
        raise ConfigError(f"store must be a RunStore (e.g. FileCheckpointStore(dir)), got {kind}")
    if any(isinstance(h, CheckpointHook) for h in hooks):
        raise ConfigError("pass store= or a CheckpointHook in hooks, not both")
    if resume is not None:
        if state is not None:
            raise ConfigError("pass state= or resume=, not both (resume= loads the state from the store)")
        state = load_run(store, resume)
    # First: it takes the run's lock before any other hook acts for the run.
    hooks.insert(0, CheckpointHook(store))
    return state, hooks


class _RunView:
    """What both loop wrappers show of their run."""

    engine: Engine

    @property
    def result(self) -> RunResult | None:
        """The run's outcome once it has ended (None while it is still open)."""
        return self.engine.result

    @property
    def state(self) -> DefaultState:
        return self.engine.state

    @property
    def history(self) -> History:
        return self.engine.history


class Loop(_RunView, Iterator[Step]):
    """A run as an iterator of Steps (what `composable_loop` returns).

    Nothing runs until the first ``next()``. After a loop that ran to its
    end, `result` tells how and why it ended. A ``break`` leaves the run open
    (Python does not close an iterator on ``break``): call `close()`, which
    ends it cleanly (``on_loop_end`` hooks run once) and returns the result,
    or iterate inside ``with composable_loop(...) as loop:``.
    """

    def __init__(self, engine: Engine, backend: Any) -> None:
        self.engine = engine
        self._backend = backend
        self._gen = _drive(engine, backend)
        self._running = False
        self._started = False

    @property
    def result(self) -> RunResult | None:
        """The run's outcome. Read after a ``break``, it ends the run first (as `close()` does).

        None only for a loop that was never iterated (nothing ran).
        """
        if self.engine.result is None and self._started and not self._running:
            self.close()
        return self.engine.result

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Loop:
        return self

    def __next__(self) -> Step:
        if self._running:  # `_enter`, written out: this is once per step
            raise RuntimeError("loop is already running; a hook or tool cannot advance its own loop")
        self._running = self._started = True
        try:
            step: Step = self._gen.__next__()
            return step
        finally:
            self._running = False

    def send(self, value: None) -> Step:
        return self._enter(self._gen.send, value)

    def throw(self, exc: BaseException) -> Step:
        return self._enter(self._gen.throw, exc)

    def close(self) -> RunResult | None:
        """End the run (stop reason ``cancelled`` if it was still going) and return its result.

        The result is None only for a loop that was never iterated (nothing ran).
        """
        if self._running:
            raise RuntimeError("loop is already running; it cannot be closed from inside a hook or tool")
        self._gen.close()
        return self.engine.result

    def _enter(self, fn: Any, *args: Any) -> Step:
        if self._running:
            raise RuntimeError("loop is already running; a hook or tool cannot advance its own loop")
        self._running = True
        self._started = True
        try:
            step: Step = fn(*args)
            return step
        finally:
            self._running = False

    def run(self) -> RunResult:
        """Drain the loop and return its result."""
        for _ in self:
            pass
        assert self.engine.result is not None
        return self.engine.result


def _drive(engine: Engine, backend: Any) -> Generator[Step, None, None]:
    """Carry out the engine's effects with plain calls (through the interceptors)."""
    pool: Any = None
    complete = llm_chain(engine.hooks.around_llm, backend.complete)
    arounds = engine.hooks.around_tool

    def run_one(call: Any, timeout: float | None) -> Any:
        if not arounds:
            return run_sync(call, timeout)
        return tool_chain(arounds, call, lambda: run_sync(call, timeout))

    def execute(effect: Any) -> Any:
        nonlocal pool
        if isinstance(effect, CallHook):
            out = effect.fn(*effect.args)
            if inspect.isawaitable(out):
                _discard(out)
                raise TypeError(
                    f"{type(effect.hook).__name__}.{effect.method} is async; use async_composable_loop"
                )
            return out
        if isinstance(effect, CallLLM):
            return complete(effect.request)
        if len(effect.calls) == 1:
            return [run_one(effect.calls[0], effect.timeouts[0])]
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(engine.config.max_concurrency, thread_name_prefix="looplet-tools")
        # Each call runs in a copy of the caller's context, so tools see its ContextVars.
        pairs = zip(effect.calls, effect.timeouts, strict=True)
        futures = [pool.submit(contextvars.copy_context().run, run_one, c, t) for c, t in pairs]
        return [f.result() for f in futures]

    flow = engine.run()
    try:
        yield from _pump(flow, execute)
    except BaseException as exc:
        engine.interrupted(exc)
        raise
    finally:
        flow.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        _settle(engine.finish(), execute)


def _pump(
    flow: Flow, execute: Any, deferred: list[BaseException] | None = None
) -> Generator[Step, None, None]:
    """Run `flow`, yielding its Steps and carrying out its other effects.

    With `deferred` (the end-of-run phase), an interruption such as Ctrl-C or
    task cancellation inside one effect is kept there and reported to the
    flow as that effect's failure, so the rest of the clean-up still runs.
    """
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration:
            return
        send = error = None
        if isinstance(effect, Step):
            yield effect
            continue
        try:
            send = execute(effect)
        except BaseException as exc:
            error = _failure(exc, deferred)


def _failure(exc: BaseException, deferred: list[BaseException] | None) -> Exception:
    """What to throw into the flow for an effect that raised `exc` (see `looplet.errors`).

    User code's exceptions are handed over (a ``BaseException`` wrapped as
    `Contained`); Ctrl-C and cancellation propagate, or, in the end-of-run
    phase (`deferred`), are kept for later and reported as the effect's failure.
    """
    if not propagates(exc):
        return exc if isinstance(exc, Exception) else Contained(exc)
    if deferred is None:
        raise exc
    deferred.append(exc)
    return RuntimeError(f"interrupted by {type(exc).__name__}")


def _settle(flow: Flow, execute: Any) -> None:
    """Run the end-of-run flow to its end, then re-raise an interruption it met."""
    deferred: list[BaseException] = []
    for _ in _pump(flow, execute, deferred):
        pass
    if deferred:
        raise deferred[0]


def _threadsafe_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call `fn` in a worker thread; a StopIteration it raises cannot cross into a future
    (asyncio would never resolve it), so it travels as a RuntimeError."""
    try:
        return fn(*args)
    except StopIteration as exc:
        raise RuntimeError(f"{getattr(fn, '__qualname__', fn)} raised StopIteration") from exc


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def composable_loop(
    llm: Any,
    *,
    task: Any = None,
    tools: BaseToolRegistry | None = None,
    hooks: Iterable[object] | None = None,
    config: LoopConfig | None = None,
    state: DefaultState | None = None,
    max_steps: int | None = None,
    system_prompt: str | None = None,
    context: Any = None,
    cancel_token: CancelToken | None = None,
    history: History | None = None,
    approver: Callable[[str], Any] | None = None,
    store: Any = None,
    resume: str | None = None,
) -> Loop:
    """Run an agent as an iterator of `Step`s.

    Args:
        llm: a backend (``complete(request)``) or any object with
            ``generate(prompt) -> str``.
        task: what to do: a string, or a dict rendered as ``key: value`` lines.
        tools: the tools the model may call.
        hooks: objects with hook methods (see `looplet.hooks`), run in order.
        config: settings; `max_steps` and `system_prompt` override it.
        state: a `DefaultState` (or subclass) to record into.
        context: your own value, handed to hooks as ``ctx.context``.
        cancel_token: set it from anywhere to stop the run between steps.
        history: an existing conversation to continue.
        approver: answers tools' ``ctx.approve(question)`` (e.g. by asking a
            human): only ``True`` or ``Allow()`` approves; without one, every
            approval is refused. An async approver needs `async_composable_loop`.
        store: a `RunStore` (e.g. ``FileCheckpointStore(dir)``) to make the run
            durable in: every step is saved before it is yielded, every tool's
            intent before it runs (a `CheckpointHook`, added first).
        resume: the id of a run saved in `store` to continue (instead of
            ``state=``). Nothing resumes implicitly.

    Raises:
        ConfigError: a setting is wrong, or the state holds a run that ended done.
        CheckpointError: `resume` names a run the store does not hold or cannot read.
        DecisionError: an approval decision in the state cannot be carried out.

    Returns:
        A `Loop`: iterate it for Steps, then read ``loop.result``.
    """
    backend, is_async = wrap_backend(llm)
    if is_async:
        raise ConfigError(
            f"{type(llm).__name__} is an async backend; use async_composable_loop, or its sync twin"
        )
    if approver is not None and is_async_callable(approver):
        raise ConfigError(
            "the approver is async; use async_composable_loop, or pass a plain function to composable_loop"
        )
    engine = _engine(
        llm,
        task=task,
        tools=tools,
        hooks=hooks,
        config=config,
        state=state,
        max_steps=max_steps,
        system_prompt=system_prompt,
        context=context,
        cancel_token=cancel_token,
        history=history,
        approver=approver,
        backend=backend,
        store=store,
        resume=resume,
    )
    refuse_async(engine.hooks.around_llm + engine.hooks.around_tool)
    return Loop(engine, backend)


def run_loop(llm: Any, **kwargs: Any) -> RunResult:
    """Run `composable_loop` to the end and return its `RunResult`."""
    return composable_loop(llm, **kwargs).run()


# -- async --------------------------------------------------------------------------


class AsyncLoop(_RunView, AsyncIterator[Step]):
    """The async twin of `Loop`: ``async for step in loop``, then ``loop.result``."""

    def __init__(self, engine: Engine, backend: Any, is_async: bool) -> None:
        self.engine = engine
        self._gen: Any = _adrive(engine, backend, is_async)
        self._running = False

    async def __aenter__(self) -> AsyncLoop:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncLoop:
        return self

    async def __anext__(self) -> Step:
        if self._running:
            raise RuntimeError("loop is already running; a hook or tool cannot advance its own loop")
        self._running = True
        try:
            step: Step = await self._gen.__anext__()
            return step
        finally:
            self._running = False

    async def athrow(self, exc: BaseException) -> Step:
        step: Step = await self._gen.athrow(exc)
        return step

    async def aclose(self) -> RunResult | None:
        """End the run and return its result (see `Loop.close`)."""
        await self._gen.aclose()
        return self.engine.result

    async def run(self) -> RunResult:
        """Drain the loop and return its result."""
        async for _ in self:
            pass
        assert self.engine.result is not None
        return self.engine.result


def _async_executor(engine: Engine, backend: Any, is_async: bool) -> Callable[[Any], Any]:
    """How the async loop carries out one effect (through the interceptors)."""
    import asyncio

    async def complete_once(request: Any) -> Any:
        if is_async:
            return await backend.complete(request)
        return await asyncio.to_thread(_threadsafe_call, backend.complete, request)

    complete = allm_chain(engine.hooks.around_llm, complete_once)
    arounds = engine.hooks.around_tool

    async def run_one(call: Any, timeout: float | None) -> Any:
        if not arounds:
            return await run_async(call, timeout)
        return await atool_chain(arounds, call, lambda: run_async(call, timeout))

    async def execute(effect: Any) -> Any:
        if isinstance(effect, CallHook):
            try:
                out = effect.fn(*effect.args)
            except StopIteration as exc:  # would become "coroutine raised StopIteration" here
                raise Contained(exc) from exc
            return (await out) if inspect.isawaitable(out) else out
        if isinstance(effect, CallLLM):
            return await complete(effect.request)
        loop = asyncio.get_running_loop()
        for call in effect.calls:
            if call.ctx is not None:
                call.ctx.event_loop = loop  # an async approver is answered here
        if len(effect.calls) == 1:
            return [await run_one(effect.calls[0], effect.timeouts[0])]
        limit = asyncio.Semaphore(engine.config.max_concurrency)

        async def bounded(call: Any, timeout: float | None) -> Any:
            async with limit:
                return await run_one(call, timeout)

        pairs = zip(effect.calls, effect.timeouts, strict=True)
        return list(await asyncio.gather(*(bounded(c, t) for c, t in pairs)))

    return execute


async def _adrive(engine: Engine, backend: Any, is_async: bool) -> AsyncIterator[Step]:
    """Carry out the engine's effects with awaits (sync hooks, tools and backends work too)."""
    execute = _async_executor(engine, backend, is_async)
    flow = engine.run()
    try:
        async for step in _apump(flow, execute):
            yield step
    except BaseException as exc:
        engine.interrupted(exc)
        raise
    finally:
        flow.close()
        deferred: list[BaseException] = []
        async for _ in _apump(engine.finish(), execute, deferred):
            pass
        if deferred:
            raise deferred[0]


async def _apump(
    flow: Flow, execute: Any, deferred: list[BaseException] | None = None
) -> AsyncIterator[Step]:
    """The async twin of `_pump`."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration:
            return
        send = error = None
        if isinstance(effect, Step):
            yield effect
            continue
        try:
            send = await execute(effect)
        except BaseException as exc:
            error = _failure(exc, deferred)


def async_composable_loop(
    llm: Any,
    *,
    task: Any = None,
    tools: BaseToolRegistry | None = None,
    hooks: Iterable[object] | None = None,
    config: LoopConfig | None = None,
    state: DefaultState | None = None,
    max_steps: int | None = None,
    system_prompt: str | None = None,
    context: Any = None,
    cancel_token: CancelToken | None = None,
    history: History | None = None,
    approver: Callable[[str], Any] | None = None,
    store: Any = None,
    resume: str | None = None,
) -> AsyncLoop:
    """The async twin of `composable_loop`: same parameters, same Steps.

    Async backends, hooks and tools are awaited; sync ones work too (sync
    backends and tools run in a worker thread so the event loop stays free).
    """
    backend, is_async = wrap_backend(llm)
    engine = _engine(
        llm,
        task=task,
        tools=tools,
        hooks=hooks,
        config=config,
        state=state,
        max_steps=max_steps,
        system_prompt=system_prompt,
        context=context,
        cancel_token=cancel_token,
        history=history,
        approver=approver,
        backend=backend,
        store=store,
        resume=resume,
    )
    return AsyncLoop(engine, backend, is_async)


async def arun_loop(llm: Any, **kwargs: Any) -> RunResult:
    """Run `async_composable_loop` to the end and return its `RunResult`."""
    return await async_composable_loop(llm, **kwargs).run()
