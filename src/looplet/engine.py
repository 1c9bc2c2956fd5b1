"""The step engine: the whole turn logic, with no I/O.

`Engine.run()` is a generator. It yields *effects* (call a hook, call the
model, run these tools) and is sent their outcomes; it yields each `Step`
as it is recorded. `composable_loop` and `async_composable_loop` drive the
same generator, one with plain calls and one with awaits, so the sync and
async loops cannot drift apart. A driver that fails to carry out an effect
throws the exception back in, and the engine decides what it means.

A turn: build the prompt (``pre_prompt``) → call the model → read its tool
calls → for each call: validate → ``pre_dispatch`` → write its intent → run →
``check_done`` (done calls) → ``post_dispatch`` → record → ``after_step`` →
yield the Step → ``should_stop``.

Everything a run needs to continue is in the state (`DefaultState`): a run
started on a state that holds one first settles the calls its last turn left
open (journaled results, interrupted intents, decided approvals), then goes
on with new turns. A third driver drives this module as the two loops do
(`docs/durability.md`, "Driving the engine").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .backends.protocol import LLMRequest, LLMResponse
from .backends.text import FORMAT_HELP, parse_tool_calls
from .config import LoopConfig
from .errors import ConfigError, DeadlineReached, DecisionError, HookError, LLMError, LoopError, ParseError
from .history import History, Message, render_task, screened
from .hooks.decisions import Allow, Ask, Block, Continue, Deny, InjectContext, Stop
from .hooks.slots import HookSlots
from .prompt import PromptContext
from .redaction import redact_env_values, redact_text, redaction_version
from .state import DefaultState
from .tools.context import CancelToken, ToolContext
from .tools.dispatch import busy_result
from .tools.registry import BaseToolRegistry, PreparedCall, ToolSpec, error_result
from .tools.results import normalize_result, to_jsonable
from .types import (
    ErrorKind,
    Intent,
    PendingCall,
    RunResult,
    Step,
    StopReason,
    ToolCall,
    ToolResult,
    Usage,
    args_hash,
    text_of,
)

__all__ = ["Engine", "CallHook", "CallLLM", "RunTools", "Effect", "Contained"]


# -- effects -------------------------------------------------------------------------


class CallHook:
    """Call ``fn(*args)`` (awaiting it in the async loop) and send back what it returns."""

    __slots__ = ("hook", "method", "fn", "args")

    def __init__(self, hook: object, method: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.hook = hook
        self.method = method
        self.fn = fn
        self.args = args


class CallLLM:
    """Call the backend with `request` and send back its `LLMResponse`."""

    __slots__ = ("request",)

    def __init__(self, request: LLMRequest) -> None:
        self.request = request


class RunTools:
    """Run these calls (at once when there are several) and send back their results in order."""

    __slots__ = ("calls", "timeouts")

    def __init__(self, calls: list[PreparedCall], timeouts: list[float | None]) -> None:
        self.calls = calls
        self.timeouts = timeouts


Effect = CallHook | CallLLM | RunTools | Step
Flow = Generator[Effect, Any, Any]


class Contained(Exception):
    """A ``BaseException`` that user code raised and the run contains (see `looplet.errors`).

    The drivers throw it into the engine in place of the original, so that a
    stray ``GeneratorExit`` or ``SystemExit`` from a hook is never mistaken
    for the loop itself being closed.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


def _original(exc: Exception) -> BaseException:
    return exc.original if isinstance(exc, Contained) else exc


class Engine:
    """One run's turn logic and its bookkeeping; see the module docstring."""

    def __init__(
        self,
        *,
        llm: Any,
        tools: BaseToolRegistry,
        hooks: HookSlots,
        config: LoopConfig,
        state: DefaultState,
        task: Any,
        context: Any = None,
        cancel_token: CancelToken | None = None,
        history: History | None = None,
        approver: Callable[[str], Any] | None = None,
        text_format: bool = False,
    ) -> None:
        self.llm = llm
        self.tools = tools
        self.hooks = hooks
        # The run's limits come from the host, once: hooks and tools read `state.config`,
        # a copy, so changing it cannot raise the budget the engine keeps (decision 11).
        self.config = _settled_copy(config)
        self.state = state
        self.context = context
        self.approver = approver
        self.text_format = text_format
        if history is not None:
            state.history = history
        self.history = state.history  # the same object, for short access
        if task is None:
            task = state.task
        if task is None and not len(self.history):
            raise ConfigError(
                "no task: pass task=... to the loop (or a DefaultState(task=...), or a history to continue)"
            )
        continuing = _check_continuable(state, task)
        # The run's own token: yours (if given) cancels it once the run starts; the run
        # ending fires it (for orphaned tool threads) and unlinks it, without touching yours.
        self.cancel_token = CancelToken()
        self._your_token = cancel_token
        if not len(self.history):
            self.history.append(Message("user", render_task(task)))
        state.task = task
        state.config = _settled_copy(config)
        self._fingerprint(continuing)
        if continuing:
            self._check_decisions()  # before anything in the record changes
            state.stop_reason, state.detail = None, ""
        self.result: RunResult | None = None
        self.error: BaseException | None = None  # the exception behind the stop (not saved)
        self.last_ctx: PromptContext | None = None
        self._view: Any = None  # the history view handed to the last prompt
        self._view_step = 1  # the step number that prompt was for
        self._started = time.monotonic()
        # a continued run's deadline counts the time it already spent
        deadline_s = config.deadline_s
        self._deadline = None if deadline_s is None else self._started + deadline_s - state.elapsed_s
        self._rewrites: dict[str, dict[str, Any]] = {}
        self._decisions: dict[str, list[dict[str, Any]]] = {}  # what hooks decided, per call
        self._turn_llm: tuple[object, dict[str, str] | None] = (None, None)  # (last_turn, its ids)
        self._scratch: dict[str, dict[str, Any]] = {}  # per call, so batch siblings never share one
        # (tool, its thread's finished event) for each call of this run that timed out
        self._orphans: list[tuple[str, Any]] = []
        self._validated: dict[str, dict[str, Any]] = {}  # args of calls a hook answered
        self._tool_decisions: dict[str, dict[str, Any]] = {}  # for tools that asked: what was decided
        self._tool_usage: dict[str, Usage] = {}  # what tools spent on models, counted with their step
        self._rejected_in_turn = False  # a human rejected a call of the turn being settled
        self._system_key: tuple[str, object] | None = None  # the system prompt last screened
        self._system = ""
        self._call_ids: set[str] = {m.call_id for m in self.history if m.call_id}

    def _fingerprint(self, continuing: bool) -> None:
        """Note what the run runs with; a continued run with other tools or settings gets a warning."""
        cfg = self.config
        now = {
            "tools": _digest(self.tools.schemas()),
            "config": _digest([cfg.effective_system_prompt, cfg.max_tokens, cfg.temperature]),
        }
        before = self.state.fingerprint
        if continuing and before and before != now:
            changed = " and ".join(k for k in now if before.get(k) != now[k])
            import warnings

            from .hooks.slots import caller_level

            warnings.warn(
                f"run {self.state.run_id} is continued with other {changed} than it ran with",
                RuntimeWarning,
                stacklevel=caller_level(),
            )
        self.state.fingerprint = now

    def _check_decisions(self) -> None:
        """Refuse, before anything runs, a decision that cannot be carried out.

        Raises:
            DecisionError: a paused call is no longer open, names an unknown tool,
                had its arguments changed, or was approved with arguments that do
                not validate.
        """
        open_ids = {c.call_id for c in self.state.open_calls}
        for p in self.state.pending:
            if p.call_id not in open_ids:
                raise DecisionError(f"paused call {p.call_id!r} is not an open call of this run's history")
            if p.args_hash != args_hash(p.args):
                raise DecisionError(f"the arguments of paused call {p.call_id!r} changed after it paused")
            if p.decision not in (None, "approved", "rejected"):
                raise DecisionError(f"paused call {p.call_id!r} has an unknown decision {p.decision!r}")
            if p.decision != "approved" or p.asked_by == "tool":  # a tool's own question: its answer
                continue
            args = p.args if p.approved_args is None else p.approved_args
            checked = self._prepare(ToolCall(p.tool, args, call_id=p.call_id))
            if isinstance(checked, ToolResult):
                raise DecisionError(
                    f"call {p.call_id!r} was approved with arguments that do not validate: {checked.error}; "
                    "approve it again with corrected args="
                )

    # -- stopping --------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self.state.stop_reason is not None

    def stop(self, reason: str, detail: str = "", error: BaseException | None = None) -> None:
        """Record why the run stops; the first reason wins."""
        if self.state.stop_reason is None:
            self.state.stop_reason = reason
            self.state.detail = redact_text(detail)
            if isinstance(error, LoopError):  # ours to reword: its text must not carry secrets
                error.args = tuple(redact_text(a) if isinstance(a, str) else a for a in error.args)
            self.error = error

    def interrupted(self, exc: BaseException) -> None:
        """The driver was interrupted (``break``, ``close()``, Ctrl-C, task cancellation).

        The run's cancel token fires, so a backend waiting to retry and tools
        polling ``ctx.cancel_token`` stop too.
        """
        if isinstance(exc, GeneratorExit):
            self.stop(StopReason.CANCELLED, "the caller closed the loop")
        else:
            self.stop(StopReason.CANCELLED, f"interrupted by {type(exc).__name__}", exc)
        self.cancel_token.cancel(self.state.detail or "the run was interrupted")

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _limit_reached(self) -> bool:
        cfg = self.config
        if self.cancel_token.cancelled:
            self.stop(StopReason.CANCELLED, self.cancel_token.reason or "the cancel token fired")
        elif self.state.steps_charged >= cfg.max_steps:
            self.stop(StopReason.MAX_STEPS, f"the step budget (max_steps={cfg.max_steps}) is spent")
        elif self.state.llm_calls >= cfg.llm_call_cap:
            self.stop(StopReason.MAX_LLM_CALLS, f"the cap of {cfg.llm_call_cap} model calls is reached")
        elif self._deadline is not None and time.monotonic() > self._deadline:
            self.stop(StopReason.DEADLINE, f"the deadline of {cfg.deadline_s:g}s has passed")
        return self.stopped

    # -- the run ---------------------------------------------------------------------

    def run(self) -> Flow:
        """The run: pre_loop, then turns until something stops it."""
        if self._your_token is not None:
            self._your_token.link(self.cancel_token)
        try:
            if self.hooks.pre_loop:
                ctx = self._prompt_context()
                self.last_ctx = ctx
                for hook, fn in self.hooks.pre_loop:
                    yield from self._call(hook, "pre_loop", fn, self.state, self.history, ctx)
            open_calls = self.state.open_calls
            if open_calls and not self._limit_reached():
                yield from self._resume_turn(open_calls)
            while not self._limit_reached():
                yield from self._turn()
        except HookError as exc:
            self.stop(StopReason.HOOK_ERROR, str(exc), exc)

    def _resume_turn(self, calls: list[ToolCall]) -> Flow:
        """Settle the calls a stopped run left open, before any new model call.

        The steps share the turn that proposed them (`state.turns`, `state.last_turn`:
        its usage, already counted, and its model's ids).
        """
        yield from self._settle(calls)

    def _turn(self) -> Flow:
        ctx = yield from self._build_prompt(overflow=False)
        response = yield from self._ask(ctx)
        if response is None:
            return
        calls = list(response.tool_calls)
        if calls:  # native calls: the text beside them is the model's reasoning
            if response.text and not calls[0].reasoning:
                calls[0] = replace(calls[0], reasoning=response.text)
        elif response.text:
            try:
                calls = parse_tool_calls(response.text)
            except ParseError as exc:
                yield from self._unusable_reply(response, exc)
                return
        if not calls:
            yield from self._unusable_reply(response, None)
            return
        self.state.no_call_streak = 0
        calls = self._ordered(calls)  # the model's calls enter the history, then are settled
        self.history.append(Message("assistant", response.text, tuple(calls)))
        yield from self._settle(calls)

    def hook_ctx(self) -> PromptContext:
        """The context of the last prompt (for check_done and on_loop_end hooks), made on demand."""
        if self.last_ctx is not None:
            return self.last_ctx
        if self._view is None:  # no prompt yet
            return self._prompt_context()
        self.last_ctx = PromptContext(
            system=self.config.effective_system_prompt,
            messages=self._view,
            tools=self.tools.schemas(),
            context=self.context,
            step=self._view_step,
        )
        return self.last_ctx

    def _prompt_context(self) -> PromptContext:
        self._view = self.history.messages
        return PromptContext(
            system=self.config.effective_system_prompt,
            messages=self._view,
            tools=self.tools.schemas(),
            context=self.context,
            step=len(self.state.steps) + 1,
        )

    def _build_prompt(self, *, overflow: bool) -> Flow:
        """The prompt the pre_prompt hooks leave; None when there are none (the request is then
        built from the history and settings, and `hook_ctx` makes a context only if asked)."""
        if not self.hooks.pre_prompt:
            self._view = self.history.messages
            self._view_step = len(self.state.steps) + 1
            self.last_ctx = None
            return None
        ctx = self._prompt_context()
        ctx.overflow = overflow
        step = ctx.step
        record = (self.history.revision, len(self.history))
        for hook, fn in self.hooks.pre_prompt:
            out = yield from self._call(hook, "pre_prompt", fn, self.state, self.history, ctx, step)
            if isinstance(out, str):
                ctx.injected.append(out)
            elif isinstance(out, InjectContext):
                ctx.injected.append(text_of(out.text))
            elif isinstance(out, PromptContext):
                ctx = out
            elif out is not None and not isinstance(out, Continue):
                raise _bad_return(hook, "pre_prompt", out, "None, a str, InjectContext or a PromptContext")
            problem = self._prompt_problem(ctx)
            if problem:
                raise HookError(hook, "pre_prompt", TypeError(problem))
        if ctx.messages is self._view and (self.history.revision, len(self.history)) != record:
            self._view = ctx.messages = self.history.messages  # a hook edited the record: send it as is
        self.last_ctx = ctx
        return ctx

    def _prompt_problem(self, ctx: PromptContext) -> str | None:
        """What a pre_prompt hook left unsendable in the prompt context, or None."""
        if not isinstance(ctx.system, str):
            return f"left ctx.system as {type(ctx.system).__name__}; it must be a str"
        if not isinstance(ctx.injected, list):
            return f"left ctx.injected as {type(ctx.injected).__name__}; it must be a list of str"
        if ctx.messages is self._view:
            return None
        try:
            bad = next((m for m in ctx.messages if not isinstance(m, Message)), None)
        except TypeError:
            return f"left ctx.messages as {type(ctx.messages).__name__}; it must be a list of Message"
        if bad is not None:
            return f"put a {type(bad).__name__} in ctx.messages; each must be a Message"
        return None

    def _ask(self, ctx: PromptContext | None) -> Flow:
        """Call the model. On a context-length error, rebuild the prompt once (``ctx.overflow``
        tells the hooks to compact) and retry, unless the hooks left it unchanged."""
        retried = False
        request = self._request(ctx)
        while True:
            self.state.llm_calls += 1
            started = time.perf_counter()
            try:
                response: LLMResponse = yield CallLLM(request)
            except LLMError as exc:
                if exc.kind == "context_length" and not retried and self._may_call_again():
                    retried = True
                    smaller = self._request((yield from self._build_prompt(overflow=True)))
                    if not _same_prompt(request, smaller):
                        request = smaller
                        continue
                    exc.args = (f"{exc.args[0]}; no hook made the prompt smaller",)
                self._llm_failed(exc)
                return None
            except Exception as exc:
                cause = _original(exc)
                where = getattr(cause, "_looplet_interceptor", None)
                text = f"{type(cause).__name__}: {text_of(cause)}"
                wrapped = LLMError(f"{where} failed: {text}" if where else text, kind="unknown")
                wrapped.__cause__ = cause
                self._llm_failed(wrapped)
                return None
            problem = _response_problem(response)
            if problem:
                error = LLMError(f"the backend returned {problem}", kind="bad_response")
                self.stop(StopReason.LLM_ERROR, str(error), error)
                return None
            self.state.turns += 1
            self.state.usage.add(response.usage)
            ms = (time.perf_counter() - started) * 1000
            self.state.last_turn = {  # what the steps of this reply share
                "usage": response.usage,
                "llm_ms": ms,
                "model": response.model,
                "request_id": response.request_id,
                "response_id": response.response_id,
                "finish_reason": response.stop_reason,
            }
            return response

    def _may_call_again(self) -> bool:
        """Whether one more model call fits (checked without settling a stop reason)."""
        left = self._time_left()
        return (
            self.state.llm_calls < self.config.llm_call_cap
            and not self.cancel_token.cancelled
            and (left is None or left > 0)
        )

    def _llm_failed(self, exc: LLMError) -> None:
        if self.cancel_token.cancelled:  # e.g. a backend's retry wait was cut short
            self.stop(StopReason.CANCELLED, f"cancelled during the model call: {exc}")
            return
        if isinstance(exc, DeadlineReached):  # the run is out of time, not the provider
            self.stop(StopReason.DEADLINE, f"the run's deadline came first: {exc}", exc)
            return
        reason = _LLM_STOPS.get(exc.kind, StopReason.LLM_ERROR)
        self.stop(reason, f"the model call failed: {exc}", exc)

    def _request(self, ctx: PromptContext | None) -> LLMRequest:
        cfg = self.config
        tools: Sequence[Mapping[str, Any]]
        if ctx is None:  # no pre_prompt hook: the history as it is, and the settings
            messages, system, tools, step = (
                self._view,
                cfg.effective_system_prompt,
                self.tools.schemas(),
                self._view_step,
            )
            extra: tuple[str, ...] = ()
        else:
            messages, system, tools, step = ctx.messages, ctx.system, ctx.tools, ctx.step
            if messages is not self._view:  # a hook replaced them: what it wrote is not screened yet
                messages = [screened(m) for m in messages]
            extra = tuple(redact_env_values(text_of(t)) for t in ctx.injected) if ctx.injected else ()
        return LLMRequest(
            messages=messages,
            system=self._screened_system(system),
            tools=tools,
            extra=extra,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            options=cfg.llm_options,
            step=step,
            cancel_token=self.cancel_token,
            deadline=self._deadline,
            run_id=self.state.run_id,
        )

    def _screened_system(self, system: str) -> str:
        """The system prompt with secret env values masked; the same prompt is screened once
        (again only when the environment or the registered secrets changed)."""
        key = (system, redaction_version())
        if self._system_key != key:
            self._system_key, self._system = key, redact_env_values(system)
        return self._system

    # -- replies without a usable call --------------------------------------------------

    def _unusable_reply(self, response: LLMResponse, exc: ParseError | None) -> Flow:
        """A reply with no usable call: a text answer, chatter, or a broken call.

        Without a done tool, plain text is the answer. Otherwise the model is
        told what went wrong, in an uncharged step; `max_no_tool_calls` such
        replies in a row stop the run.
        """
        text = response.text
        self.history.append(Message("assistant", text))
        attempted = exc is not None and bool(getattr(exc, "attempted", False))
        if not attempted and self.tools.done_tool is None and text.strip():
            self.state.final_answer = {"answer": text}
            self.stop(StopReason.DONE, "the model answered in text and no done tool is registered")
            return
        self.state.no_call_streak += 1
        if self.state.no_call_streak > self.config.max_no_tool_calls:
            self.stop(
                StopReason.NO_TOOL_CALL,
                f"the model replied without a usable tool call {self.state.no_call_streak} times in a row",
            )
            return
        how = FORMAT_HELP if self.text_format else "Use your tool-calling interface, not text."
        if attempted:
            kind, message = ErrorKind.PARSE, f"Your reply could not be read as a tool call: {exc} {how}"
        else:
            done = self.tools.done_tool
            finish = f" When the task is complete, call {done.name}." if done else ""
            kind = ErrorKind.NO_TOOL_CALL
            message = f"Your reply had no tool call. Call one of the tools.{finish} {how}"
        call = ToolCall(tool="", reasoning=text[:2000], call_id="", parse_error=message)
        result = error_result(call, kind, message)
        self.history.append(Message("user", f"Error ({kind}): {message}"))
        step = self._record(call, result, None, [], history_done=True, free=True)
        if (yield from self._after_step(step)):
            yield step

    # -- dispatching a turn's calls ----------------------------------------------------

    def _settle(self, calls: list[ToolCall]) -> Flow:
        """Run a turn's open calls group by group, in call order.

        A call stays open (unanswered in the history) until its step is
        recorded: one the budget or a stop left out, one paused for approval,
        or one whose tool was running when the run was interrupted is settled
        when the run is continued, before the model is called again.
        """
        self._rejected_in_turn = False
        runnable = self._within_budget(calls)
        i = 0
        while i < len(runnable) and not (self.stopped or self._cancelled_or_late()):
            group = self._group_at(runnable, i)
            i += len(group)
            yield from self._run_group(group)
        waiting = [p.call_id for p in self.state.pending if p.decision is None] if self.state.pending else []
        if waiting:
            self.stop(
                StopReason.APPROVAL_PENDING,
                f"{len(waiting)} call(s) wait for a decision ({', '.join(waiting)}): "
                "state.approve(call_id) or state.reject(call_id, reason), then pass the state back",
            )

    def _cancelled_or_late(self) -> bool:
        cfg = self.config
        if self.cancel_token.cancelled:
            self.stop(StopReason.CANCELLED, self.cancel_token.reason or "the cancel token fired")
        elif self._deadline is not None and time.monotonic() > self._deadline:
            self.stop(StopReason.DEADLINE, f"the deadline of {cfg.deadline_s:g}s has passed")
        return self.stopped

    def _ordered(self, calls: list[ToolCall]) -> list[ToolCall]:
        """Give every call an id unique in the run, and put a done call after the others.

        A repeated id (in this turn or an earlier one) is renumbered, so each tool
        result in the history answers exactly one call.
        """
        seen = self._call_ids
        turn = self.state.turns
        has_done = self.tools.done_tool is not None
        out: list[ToolCall] = []
        done: list[ToolCall] = []
        for i, call in enumerate(calls, 1):
            call_id = call.call_id or f"call_{turn}_{i}"
            if call_id in seen:
                n = 2
                while f"{call_id}~{n}" in seen:
                    n += 1
                call_id = f"{call_id}~{n}"
            seen.add(call_id)
            if call_id != call.call_id:
                call = ToolCall(call.tool, call.args, call.reasoning, call_id, call.parse_error)
            (done if has_done and self._is_done(call) else out).append(call)
        return out + done if done else out

    def _is_done(self, call: ToolCall) -> bool:
        spec = self.tools.get(call.tool)
        return spec is not None and spec.done

    def _within_budget(self, calls: list[ToolCall]) -> list[ToolCall]:
        """The calls that fit in the remaining budget, in order.

        The rest stay open: the run stops on its budget, and a continued run
        with a larger one runs them. A second done call of a turn never runs:
        it is answered now.
        """
        remaining = self.config.max_steps - self.state.steps_charged
        keep: list[ToolCall] = []
        done_seen = False
        for call in calls:
            spec = self.tools.get(call.tool)
            if spec is not None and spec.done:
                if done_seen:
                    self._drop(call, "not run: only the first done call of a turn counts")
                    continue
                done_seen = True
            if spec is not None and spec.free:
                keep.append(call)
                continue
            if remaining <= 0:
                break
            remaining -= 1
            keep.append(call)
        return keep

    def _drop(self, call: ToolCall, why: str) -> None:
        """Answer a call that will never run, so the conversation stays well formed."""
        self.state.dropped_calls.append(call)
        self.history.append(Message("tool", why, call_id=call.call_id, name=call.tool, error=True))

    def _group_at(self, calls: list[ToolCall], i: int) -> list[ToolCall]:
        """A run of consecutive concurrent-safe calls, or the single call at `i`."""
        spec = self.tools.get(calls[i].tool)
        if spec is None or not spec.concurrent_safe:
            return [calls[i]]
        j = i + 1
        while j < len(calls):
            nxt = self.tools.get(calls[j].tool)
            if nxt is None or not nxt.concurrent_safe:
                break
            j += 1
        return calls[i:j]

    def _run_group(self, group: list[ToolCall]) -> Flow:
        """Gate each call, run the ones let through (at once), then conclude them in call order.

        If a gate stops the run, nothing of the group runs (the calls stay
        open), except the one whose gate produced a result. A done call waits
        while a call of its turn waits for approval.
        """
        gated: list[tuple[ToolCall, PreparedCall | ToolResult | PendingCall]] = []
        for call in group:
            if self._rejected_in_turn and self._is_done(call):
                self._drop(call, "not run: a human rejected a call of this turn; reconsider, then call done")
                continue
            if self.state.pending and self._is_done(call) and self._undecided():
                continue  # the model meant done after the paused calls: it stays open
            ahead = sum(1 for _, outcome in gated if not isinstance(outcome, PendingCall)) if gated else 0
            gated.append((yield from self._gate(call, len(self.state.steps) + 1 + ahead)))
            if self.stopped:
                break
        halted = self.stopped
        prepared = [] if halted else [p for _, p in gated if isinstance(p, PreparedCall)]
        results = yield from self._run_prepared(prepared)
        for call, outcome in gated:
            if isinstance(outcome, PendingCall):
                continue
            if isinstance(outcome, PreparedCall):
                if halted:
                    self._scratch.pop(call.call_id, None)
                    continue
                result = results[id(outcome)]
                if result.error_kind == ErrorKind.PAUSED:
                    self._paused_by_tool(call, outcome, result)
                    continue
                ctx = outcome.ctx
                if ctx is not None and (ctx.tool_usage.total_tokens or ctx.tool_usage.cost):
                    self._tool_usage[call.call_id] = ctx.tool_usage
                yield from self._conclude(call, result, outcome.spec, outcome.args)
            else:
                args = self._validated.pop(call.call_id, None)
                yield from self._conclude(call, outcome, self.tools.get(call.tool), args)

    def _undecided(self) -> bool:
        return any(p.decision is None for p in self.state.pending)

    def _run_prepared(self, prepared: list[PreparedCall]) -> Flow:
        """Run the calls through the driver; results keyed by ``id(prepared call)``.

        A call whose tool is still running from a timed-out call of this run
        is answered ``busy`` without running; one still running from another
        run runs, with a warning. If the driver fails to report, every call
        gets an error saying so: the run goes on and the steps are recorded.
        """
        out: dict[int, ToolResult] = {}
        runnable: list[PreparedCall] = []
        for p in prepared:
            if self._orphans and self._live_orphans(p.spec.name):
                out[id(p)] = busy_result(p)
            else:
                runnable.append(p)
        if not runnable:
            return out
        in_flight = self.state.in_flight
        for p in runnable:  # the intent is in the record before the tool body starts
            in_flight[p.call.call_id] = Intent(p.call.call_id, p.spec.name, p.args, "")
        try:
            if self._deadline is None and self.config.tool_timeout_s is None:
                limits = [p.spec.timeout_s or None for p in runnable]
            else:
                limits = [self._time_limit(p.spec) for p in runnable]
            results = yield RunTools(runnable, limits)
            if not isinstance(results, list) or len(results) != len(runnable):
                raise TypeError(f"the driver returned {type(results).__name__} for {len(runnable)} calls")
        except Exception as exc:
            cause = _original(exc)
            text = f"the call could not be completed ({type(cause).__name__}: {text_of(cause)})"
            results = [error_result(p.call, ErrorKind.EXECUTION, text) for p in runnable]
        for p, result in zip(runnable, results, strict=True):
            result = _tied(result, p.call)
            if result.metadata.get("orphaned"):
                self._orphans.append((p.spec.name, p.finished))
            elif p.spec.orphans and p.spec.orphans > self._live_orphans(p.spec.name):
                result.warnings.append(
                    f"an earlier call of {p.spec.name} (in another run) timed out and may still be running"
                )
            out[id(p)] = result
            intent = in_flight.get(p.call.call_id)
            if intent is not None:
                intent.result = result
        return out

    def _live_orphans(self, tool: str) -> int:
        """Calls of `tool` from this run that timed out and whose threads still run."""
        return sum(1 for name, done in self._orphans if name == tool and not (done is None or done.is_set()))

    def _time_limit(self, spec: ToolSpec) -> float | None:
        """The tool's own limit, else the run's default, never past the run's deadline."""
        limit = spec.timeout_s or self.config.tool_timeout_s
        left = self._time_left()
        if left is not None:
            limit = max(0.001, left) if limit is None else max(0.001, min(limit, left))
        return limit

    def _gate(self, call: ToolCall, step: int) -> Flow:
        """Validate and ask the pre_dispatch hooks.

        Returns (final call, outcome): a `PreparedCall` to run, a `ToolResult`
        that answers the call without running it, or the `PendingCall` of a
        call paused for approval.
        """
        self.state.scratch = self._scratch.setdefault(call.call_id, {})
        state = self.state
        original, first = call, 0  # the model's call; the first hook to ask
        if state.pending or state.in_flight:
            settled = self._settled(call, step)
            if isinstance(settled, _Approved):
                call, original, first = settled.call, settled.original, settled.after
            elif settled is not None:
                return settled
        prepared = self._prepare(call)
        if isinstance(prepared, ToolResult):
            return call, prepared
        hooks = self.hooks.pre_dispatch
        for i in range(first, len(hooks)):
            hook, fn = hooks[i]
            try:
                out = yield from self._call(hook, "pre_dispatch", fn, self.state, self.history, call, step)
                if out is not None and not isinstance(out, Continue):  # Continue: no decision
                    self._note_decision(call, hook, "pre_dispatch", out)
                if isinstance(out, Allow) and out.updated_args is not None:
                    call = replace(call, args=_checked_args(out.updated_args))
                    prepared = self._prepare(call)
                    if isinstance(prepared, ToolResult):
                        prepared.metadata["rewritten_by"] = type(hook).__name__
                        return call, prepared
                elif isinstance(out, Deny):
                    return call, _denied(call, out, hook)
                elif isinstance(out, Ask):
                    rewritten = None if call is original else original.args
                    return call, self._pause(call, prepared.args, out, rewritten, i)
                elif isinstance(out, ToolResult):
                    self._validated[call.call_id] = prepared.args
                    return call, _adopt(out, call, hook)
                elif out is not None and not isinstance(out, Continue | Allow):
                    raise _bad_return(hook, "pre_dispatch", out, "None, Allow, Deny, Ask or a ToolResult")
            except (HookError, TypeError) as exc:
                error = exc if isinstance(exc, HookError) else HookError(hook, "pre_dispatch", exc)
                self.stop(StopReason.HOOK_ERROR, str(error), error)
                return call, error_result(call, ErrorKind.HOOK_ERROR, f"not run: {error}")
        if call is not original:
            self._rewrites[call.call_id] = original.args
        return call, self._ready(prepared, call, step)

    def _ready(self, prepared: PreparedCall, call: ToolCall, step: int) -> PreparedCall:
        """The prepared call, tied to `call` and its run, and given its ToolContext."""
        prepared.call = call
        prepared.run_id = self.state.run_id
        if prepared.spec.ctx_param is not None:
            state = self.state
            prepared.ctx = ToolContext(
                llm=self.llm,
                call_id=call.call_id,
                tool=call.tool,
                step=step,
                cancel_token=self.cancel_token,
                metadata=state.metadata,
                approver=self.approver,
                run_id=state.run_id,
                # the budget left after this call and the calls of its batch ahead of it
                steps_left=max(0, self.config.max_steps - state.steps_charged - (step - len(state.steps))),
                gates=tuple(hook for hook, _ in self.hooks.pre_dispatch),
                decision=self._tool_decisions.pop(call.call_id, None) if self._tool_decisions else None,
            )
        return prepared

    def _pause(
        self, call: ToolCall, args: dict[str, Any], ask: Ask, original: dict[str, Any] | None, gate: int
    ) -> PendingCall:
        """Record `call` as waiting for a human; nothing of it enters the history.

        An approved call that a later gate asks about again waits again, with
        the new question (its earlier decision is replaced).
        """
        reason = text_of(ask.reason)
        pending = PendingCall(call.call_id, call.tool, dict(args), args_hash(args), reason)
        pending.original_args, pending.gate = original, gate
        self.state.pending[:] = [p for p in self.state.pending if p.call_id != call.call_id]
        self.state.pending.append(pending)
        self._scratch.pop(call.call_id, None)
        return pending

    def _paused_by_tool(self, call: ToolCall, prepared: PreparedCall, result: ToolResult) -> None:
        """The tool returned ``Ask``: its call waits for a person, like one a gate paused; the
        continued run calls the tool again with the decision (`_settled`)."""
        self.state.in_flight.pop(call.call_id, None)  # it asked, it did not finish: no intent left
        original = self._rewrites.pop(call.call_id, None)
        ask = Ask(text_of(result.metadata.get("ask", "")))
        pending = self._pause(call, prepared.args, ask, original, len(self.hooks.pre_dispatch) - 1)
        pending.asked_by = "tool"
        details = result.metadata.get("details")
        pending.details = details if isinstance(details, dict) else None

    def _settled(self, call: ToolCall, step: int) -> tuple[ToolCall, Any] | _Approved | None:
        """What an earlier session already settled for `call`, or None to gate it as new.

        - its tool ran and the result is in the record: that result (never run twice);
        - its tool started and no result was recorded: run again if the tool is
          idempotent, else an ``interrupted`` error (it may or may not have completed);
        - a human decided it: rejected is denied; undecided stays paused; approved
          goes on to the gates after the one that asked (`_Approved`): the decision
          answers that gate and the ones before it, and a later Deny still wins.
        """
        state = self.state
        intent = state.in_flight.get(call.call_id)
        if intent is not None:
            if intent.args != call.args:  # what ran: an approval's edit or a hook's rewrite
                self._rewrites[call.call_id] = call.args
                call = replace(call, args=intent.args)
            if intent.result is not None:
                self._validated[call.call_id] = intent.args
                return call, intent.result
            spec = self.tools.get(intent.tool)
            if spec is not None and spec.idempotent:
                return self._prepared_with(call, intent.args, step)
            self._validated[call.call_id] = intent.args
            return call, error_result(
                call,
                ErrorKind.INTERRUPTED,
                "this call may or may not have completed: the run stopped while it was running, and "
                f"{call.tool} is not marked idempotent, so it was not run again",
            )
        pending = next((p for p in state.pending if p.call_id == call.call_id), None)
        if pending is None:
            return None
        if pending.decision is None:
            return call, pending
        if pending.asked_by == "tool":  # the tool asked: it hears the decision, either way
            decided = {"decision": pending.decision, "args": pending.approved_args, "note": pending.note}
            self._tool_decisions[call.call_id] = decided
            return _Approved(call, call, len(self.hooks.pre_dispatch))
        if pending.decision == "rejected":
            note = pending.note or "rejected"
            self._rejected_in_turn = True
            text = f"denied: {note}. Do not retry this call; take another approach."
            return call, error_result(call, ErrorKind.DENIED, text, denied_by="human")
        args = pending.args if pending.approved_args is None else pending.approved_args
        final = call if args == call.args else replace(call, args=args)
        before = pending.original_args
        if before is None and args != pending.args:
            before = pending.args  # the human edited what they were shown
        original = final if before is None else replace(call, args=before)
        after = pending.gate + 1 if pending.gate >= 0 else len(self.hooks.pre_dispatch)
        return _Approved(final, original, after)

    def _prepared_with(self, call: ToolCall, args: dict[str, Any], step: int) -> tuple[ToolCall, Any]:
        """`call` with `args`, validated and ready (or the validation error)."""
        final = call if args == call.args else replace(call, args=args)
        prepared = self._prepare(final)
        if isinstance(prepared, PreparedCall):
            return final, self._ready(prepared, final, step)
        return final, prepared

    def _prepare(self, call: ToolCall) -> PreparedCall | ToolResult:
        cfg = self.config
        return self.tools.prepare(call, max_arg_chars=cfg.max_arg_chars, max_arg_depth=cfg.max_arg_depth)

    def _conclude(
        self, call: ToolCall, result: ToolResult, spec: ToolSpec | None, args: dict[str, Any] | None
    ) -> Flow:
        """check_done for done calls, then post_dispatch, then record and yield.

        A done call is accepted only if `check_done` accepted it and its result
        is still a success after every ``post_dispatch`` hook; the final answer
        is the arguments the done tool received (validated), not the raw ones.
        """
        self.state.scratch = self._scratch.pop(call.call_id, {})
        is_done = spec is not None and spec.done and result.ok and not self.stopped
        step = len(self.state.steps) + 1
        if is_done:
            verdict = yield from self._check_done(call, step)
            if verdict is not None:
                is_done = False
                text = f"done was not accepted: {verdict}"
                result = error_result(call, ErrorKind.BLOCKED, text, retriable=True)
        notes: list[str] = []
        stop_reason: str | None = None
        if self.hooks.post_dispatch:
            result, notes, stop_reason = yield from self._post_dispatch(call, result, step)
        if is_done and result.ok and not self.stopped:
            self.state.final_answer = dict(args if args is not None else call.args)
            self.stop(StopReason.DONE, f"{call.tool} was called and accepted")
        if stop_reason is not None:
            self.stop(
                f"{StopReason.HOOK_STOP}:{stop_reason}",
                f"a post_dispatch hook stopped the run: {stop_reason}",
            )
        # The stop is settled before the step is yielded, so a caller who breaks
        # on this step still reads the true reason.
        step_record = self._record(call, result, spec, notes, history_done=False)
        if not self.hooks.after_step or (yield from self._after_step(step_record)):
            yield step_record
        if self.hooks.should_stop and not self.stopped:
            try:
                yield from self._should_stop()
            except HookError as exc:  # the batch's other calls are still answered
                self.stop(StopReason.HOOK_ERROR, str(exc), exc)

    def _post_dispatch(self, call: ToolCall, result: ToolResult, step: int) -> Flow:
        """Run the post_dispatch hooks: (final result, notes, a hook's stop reason or None)."""
        notes: list[str] = []
        stop_reason: str | None = None
        for hook, fn in self.hooks.post_dispatch:
            try:
                out = yield from self._call(
                    hook, "post_dispatch", fn, self.state, self.history, call, result, step
                )
                if out is None or isinstance(out, Continue):
                    continue
                self._note_decision(call, hook, "post_dispatch", out)
                if isinstance(out, str | InjectContext):
                    notes.append(out if isinstance(out, str) else text_of(out.text))
                elif isinstance(out, ToolResult):
                    result = _adopt(out, call, hook)
                elif isinstance(out, Stop):
                    stop_reason = stop_reason or text_of(out.reason)
                else:
                    raise _bad_return(
                        hook, "post_dispatch", out, "None, a str, InjectContext, a ToolResult or Stop"
                    )
            except (HookError, TypeError) as exc:
                error = exc if isinstance(exc, HookError) else HookError(hook, "post_dispatch", exc)
                self.stop(StopReason.HOOK_ERROR, str(error), error)
                break
        return result, notes, stop_reason

    def _check_done(self, call: ToolCall, step: int) -> Flow:
        ctx = self.hook_ctx()
        for hook, fn in self.hooks.check_done:
            try:
                out = yield from self._call(hook, "check_done", fn, self.state, self.history, ctx, step)
            except HookError as exc:
                self.stop(StopReason.HOOK_ERROR, str(exc), exc)
                return f"a check_done hook failed ({exc})"
            if out is None or isinstance(out, Continue):
                continue
            self._note_decision(call, hook, "check_done", out)
            if isinstance(out, Block):
                return text_of(out.reason)
            if isinstance(out, str):
                return out
            bad = _bad_return(hook, "check_done", out, "None, a str or Block")
            self.stop(StopReason.HOOK_ERROR, str(bad), bad)
            return f"a check_done hook failed ({bad})"
        return None

    def _after_step(self, step: Step) -> Flow:
        """The after_step hooks; returns whether the step may be yielded.

        One that raises stops the run, and the step (recorded in the state) is
        not yielded: a yielded step is one every after_step hook, a checkpoint
        among them, has taken in (INV-2).
        """
        for hook, fn in self.hooks.after_step:
            try:
                out = yield from self._call(hook, "after_step", fn, self.state, self.history, step)
                if out is not None and not isinstance(out, Continue):
                    raise _bad_return(hook, "after_step", out, "None")
            except HookError as exc:
                self.stop(StopReason.HOOK_ERROR, str(exc), exc)
                return False
        return True

    def _should_stop(self) -> Flow:
        step = len(self.state.steps)
        for hook, fn in self.hooks.should_stop:
            out = yield from self._call(hook, "should_stop", fn, self.state, step)
            if out is True:
                self.stop(
                    f"{StopReason.HOOK_STOP}:{type(hook).__name__}",
                    f"{type(hook).__name__}.should_stop said stop",
                )
                return
            if isinstance(out, Stop):
                reason = text_of(out.reason)
                self.stop(f"{StopReason.HOOK_STOP}:{reason}", f"{type(hook).__name__}.should_stop: {reason}")
                return
            if out is not None and out is not False and not isinstance(out, Continue):
                raise _bad_return(hook, "should_stop", out, "None, False, True or Stop")

    # -- recording -------------------------------------------------------------------

    def _record(
        self,
        call: ToolCall,
        result: ToolResult,
        spec: ToolSpec | None,
        notes: list[str],
        *,
        history_done: bool,
        free: bool = False,
    ) -> Step:
        """Add the step to the state (and its result to the history); the caller yields it."""
        state = self.state
        turn = state.last_turn or {}  # the reply these steps come from (none before the first)
        usage = turn.get("usage")
        free = free or (spec is not None and spec.free)
        step = Step(
            number=len(state.steps) + 1,
            tool_call=call,
            tool_result=result,
            turn=state.turns,
            usage=usage if isinstance(usage, Usage) else Usage(),
            llm_ms=float(turn.get("llm_ms", 0.0)),
            started_at=time.time() - result.duration_ms / 1000,
            free=free,
        )
        original = self._rewrites.pop(call.call_id, None)
        if original is not None:
            step.metadata["original_args"] = original
        if notes:
            step.metadata["notes"] = list(notes)
        if self._decisions:
            decisions = self._decisions.pop(call.call_id, None)
            if decisions:
                step.metadata["decisions"] = decisions
        if self._tool_usage:
            spent = self._tool_usage.pop(call.call_id, None)
            if spent is not None:  # a sub-agent's tokens: in the run's totals with this step
                state.usage.add(spent)
                step.metadata["tool_usage"] = spent.to_dict()
        if self._turn_llm[0] is not state.last_turn:
            ids = {k: str(turn.get(k, "")) for k in _LLM_KEYS}
            self._turn_llm = (state.last_turn, ids if any(ids.values()) else None)
        llm = self._turn_llm[1]
        if llm is not None:
            step.metadata["llm"] = dict(llm)
        state.steps.append(step)
        if state.in_flight:
            state.in_flight.pop(call.call_id, None)
        if state.pending:
            self._decided(call.call_id, step)
        if not free:
            state.steps_charged += 1
        if not history_done:
            content = render_result(result, notes, self.config.max_result_chars)
            self.history.append(
                Message("tool", content, call_id=call.call_id, name=call.tool, error=bool(result.error))
            )
        return step

    def _decided(self, call_id: str, step: Step) -> None:
        """A paused call is concluded: its decision leaves `state.pending` and goes on the step."""
        for i, pending in enumerate(self.state.pending):
            if pending.call_id == call_id:
                del self.state.pending[i]
                approval = {"decision": pending.decision, "reason": pending.reason}
                if pending.note:
                    approval["note"] = pending.note
                step.metadata["approval"] = approval
                return

    # -- hooks -----------------------------------------------------------------------

    def _note_decision(self, call: ToolCall, hook: object, slot: str, out: object) -> None:
        """Keep what a hook decided about `call`; the step carries it as
        ``metadata["decisions"]`` (provenance and audits read it there)."""
        kind = _DECISION_KINDS.get(type(out), type(out).__name__)
        if slot == "check_done" and isinstance(out, str):
            kind = "block"
        elif slot == "post_dispatch" and isinstance(out, ToolResult):
            kind = "replace"
        entry: dict[str, Any] = {"hook": type(hook).__name__, "slot": slot, "decision": kind}
        if isinstance(out, Allow) and out.updated_args is not None:
            entry["decision"] = "rewrite"
            entry["before"], entry["after"] = call.args, out.updated_args
        reason = getattr(out, "reason", None) or getattr(out, "text", None)
        if isinstance(out, str):
            reason = out
        if reason is not None:
            entry["reason"] = text_of(reason)
        if isinstance(out, ToolResult):
            entry["error_kind"] = out.error_kind
        self._decisions.setdefault(call.call_id, []).append(entry)

    def _call(self, hook: object, method: str, fn: Callable[..., Any], *args: Any) -> Flow:
        try:
            return (yield CallHook(hook, method, fn, args))
        except Exception as exc:
            cause = _original(exc)
            raise HookError(hook, method, cause) from cause

    def finish(self) -> Flow:
        """End of run: settle the stop reason, run on_loop_end hooks once, build the result.

        Calls left open stay open in the record (a continued run settles them);
        the result lists the ones that did not run as dropped. The hooks see
        the result as ``ctx.result``.
        """
        if self.state.stop_reason is None:
            self.stop(StopReason.CANCELLED, "the loop ended before a stop reason was set")
        state = self.state
        state.elapsed_s += time.monotonic() - self._started
        self.cancel_token.cancel("the run ended")  # tells orphaned tool threads to give up
        self.cancel_token.detach()  # your token does not keep ended runs' tokens alive
        waiting = {p.call_id for p in state.pending} | set(state.in_flight)
        unrun = [c for c in state.open_calls if c.call_id not in waiting]
        self.result = result = RunResult(
            stop_reason=state.stop_reason or StopReason.CANCELLED,
            steps=state.steps,
            final_answer=state.final_answer,
            usage=state.usage,
            llm_calls=state.llm_calls,
            elapsed_s=state.elapsed_s,
            error=self.error,
            detail=state.detail,
            dropped_calls=state.dropped_calls + unrun,
            pending=state.pending,
        )
        ctx = self.hook_ctx()
        ctx.result = result
        failures: list[str] = []
        for hook, fn in self.hooks.on_loop_end:
            try:
                yield from self._call(hook, "on_loop_end", fn, self.state, self.history, ctx, self.llm)
            except HookError as exc:
                failures.append(str(exc))
        if failures:
            state.detail = f"{state.detail}; on_loop_end failed: {'; '.join(failures)}".lstrip("; ")
            result.detail = redact_text(state.detail)
        return result


_LLM_KEYS = ("model", "request_id", "response_id", "finish_reason")
_DECISION_KINDS: dict[type, str] = {
    Allow: "allow",
    Deny: "deny",
    Ask: "ask",
    Block: "block",
    Stop: "stop",
    InjectContext: "inject",
    str: "inject",
    ToolResult: "result",
}
_LLM_STOPS = {"context_length": StopReason.CONTEXT_OVERFLOW, "refused": StopReason.REFUSED}


def _settled_copy(config: LoopConfig) -> LoopConfig:
    """A copy of `config` that shares nothing mutable with it."""
    return replace(config, llm_options=dict(config.llm_options))


def _same_prompt(a: LLMRequest, b: LLMRequest) -> bool:
    """Whether two requests would send the model the same thing (only checked after an overflow)."""
    if (a.system, tuple(a.extra), len(a.messages)) != (b.system, tuple(b.extra), len(b.messages)):
        return False
    return all(x is y or x == y for x, y in zip(a.messages, b.messages, strict=True))


def _check_continuable(state: DefaultState, task: Any) -> bool:
    """Whether `state` holds a run to continue (False: a new run). A finished run is refused.

    Every stop but ``done`` may be continued by passing the state back:
    ``approval_pending`` after the decisions, a budget or the deadline with a
    larger one, ``cancelled``, ``llm_error`` and the others as they are.
    """
    if not (state.steps or state.stop_reason is not None or state.llm_calls or state.pending):
        return False
    if state.stop_reason == StopReason.DONE:
        raise ConfigError(
            f"run {state.run_id} ended done: it is finished and cannot be continued; "
            "to run it again from an earlier step, continue state.fork(at_step=k) instead"
        )
    if task is not None and state.task is not None and task != state.task:
        raise ConfigError(
            f"run {state.run_id} is continued with its own task; do not pass another task= "
            "(for another task, start a new run)"
        )
    return True


def _digest(data: object) -> str:
    """A short fingerprint of `data`, to notice a change (not a security hash: crc32 and
    adler32 need no OpenSSL, which hashlib would load into every run)."""
    import zlib

    text = json.dumps(data, sort_keys=True, default=repr, separators=(",", ":"))
    raw = text.encode("utf-8", "surrogatepass")
    return f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"


def _checked_args(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"returned Allow(updated_args={type(value).__name__}); updated_args must be a dict")
    return dict(value)


def _response_problem(response: object) -> str | None:
    """What is wrong with a backend's answer, in words, or None if it is a well-formed LLMResponse."""
    if type(response) is LLMResponse and _plain_reply(response):
        return None
    if not isinstance(response, LLMResponse):
        return f"{type(response).__name__}, not an LLMResponse"
    checks = (
        ("text", response.text, str),
        ("usage", response.usage, Usage),
        ("tool_calls", response.tool_calls, list),
        ("stop_reason", response.stop_reason, str),
        ("model", response.model, str),
        ("request_id", response.request_id, str),
    )
    for name, value, kind in checks:
        if not isinstance(value, kind):
            return f"LLMResponse.{name} as {type(value).__name__}; it must be a {kind.__name__}"
    for i, call in enumerate(response.tool_calls):
        if not isinstance(call, ToolCall):
            return f"LLMResponse.tool_calls[{i}] as {type(call).__name__}; each must be a ToolCall"
        if not isinstance(call.tool, str) or not isinstance(call.args, dict):
            return f"LLMResponse.tool_calls[{i}] with tool={call.tool!r:.40} args={type(call.args).__name__}"
    return None


def _plain_reply(r: LLMResponse) -> bool:
    """The usual reply, checked by exact types in one expression (anything else is looked at
    field by field, to say what is wrong)."""
    return (
        type(r.text) is str
        and type(r.usage) is Usage
        and type(r.tool_calls) is list
        and type(r.stop_reason) is str
        and type(r.model) is str
        and type(r.request_id) is str
        and all(type(c) is ToolCall and type(c.tool) is str and type(c.args) is dict for c in r.tool_calls)
    )


def _denied(call: ToolCall, decision: Deny, hook: object) -> ToolResult:
    reason = text_of(decision.reason)
    if decision.retry:
        text = f"denied: {reason}. You may retry this call later."
    else:
        text = f"denied: {reason}. Do not retry this call; take another approach."
    retry = bool(decision.retry)
    return error_result(call, ErrorKind.DENIED, text, retriable=retry, denied_by=type(hook).__name__)


_RESULT_FIELDS = (
    ("tool", str),
    ("args_summary", str),
    ("error", (str, type(None))),
    ("error_kind", (str, type(None))),
    ("retriable", bool),
    ("duration_ms", (int, float)),
    ("warnings", list),
    ("metadata", dict),
    ("call_id", str),
)


def _adopt(result: ToolResult, call: ToolCall, hook: object) -> ToolResult:
    """A hook's replacement result, checked, tied to `call`, and made JSON-safe like a tool's.

    Raises:
        TypeError: a field has the wrong type (the run stops with ``hook_error``).
    """
    for name, kind in _RESULT_FIELDS:
        value = getattr(result, name)
        if not isinstance(value, kind) or (name == "duration_ms" and isinstance(value, bool)):
            raise TypeError(f"returned a ToolResult whose {name} is {type(value).__name__} {value!r:.60}")
    if not 0 <= result.duration_ms < 1e12:  # also refuses NaN and huge ints that would overflow later
        raise TypeError(f"returned a ToolResult whose duration_ms is {result.duration_ms!r:.60}")
    result.warnings = [text_of(w) for w in result.warnings]
    result.call_id = call.call_id
    result.data = normalize_result(result.data) if result.ok else to_jsonable(result.data)
    result.metadata.setdefault("replaced_by", hook if isinstance(hook, str) else type(hook).__name__)
    return result


class _Approved:
    """An approved paused call: run it through the gates after the one that asked."""

    __slots__ = ("call", "original", "after")

    def __init__(self, call: ToolCall, original: ToolCall, after: int) -> None:
        self.call = call
        self.original = original
        self.after = after


def _tied(result: Any, call: ToolCall) -> ToolResult:
    """A driver's result for `call`, as the engine records it.

    Results the loop's own dispatch makes are already tied to their call; one
    an interceptor (or a third driver) made is checked and made JSON-safe like
    a hook's, and anything that is not a ToolResult becomes an error.
    """
    if type(result) is ToolResult and result.call_id == call.call_id:
        return result
    if not isinstance(result, ToolResult):
        text = f"the driver returned {type(result).__name__} for this call, not a ToolResult"
        return error_result(call, ErrorKind.EXECUTION, text)
    try:
        return _adopt(result, call, "interceptor")
    except TypeError as exc:
        return error_result(call, ErrorKind.EXECUTION, f"a result made for this call is unusable: {exc}")


def _bad_return(hook: object, method: str, value: Any, expected: str) -> HookError:
    error = TypeError(f"returned {type(value).__name__}; expected {expected}")
    return HookError(hook, method, error)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _one_shot_encoder() -> Callable[[Any], str]:
    """`_ENCODER.encode`, minus what it rebuilds on every call (a C encoder object and a
    cycle-check dict): results are JSON-safe trees (normalised when they are made), and
    a cycle a hook added later still ends in RecursionError, which `_encoded` handles."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the plain encoder
        return _ENCODER.encode
    chunks = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def encode(data: Any) -> str:
        if type(data) is str:
            return json.encoder.encode_basestring(data)
        return "".join(chunks(data, 0))

    return encode


_ENCODE = _one_shot_encoder()


def _encoded(data: Any) -> str:
    """The data as JSON; a value that still cannot be encoded is converted once more, never raised."""
    try:
        return _ENCODE(data)
    except (TypeError, ValueError, RecursionError):
        try:
            return _ENCODER.encode(to_jsonable(data))
        except (TypeError, ValueError, RecursionError) as exc:
            return f"<result could not be encoded as JSON: {type(exc).__name__}>"


def render_result(result: ToolResult, notes: list[str], limit: int) -> str:
    """What the model sees of a result: errors whole, data as JSON cut to `limit` characters."""
    if result.error:
        text = f"Error ({result.error_kind or 'error'}): {result.error}"
    else:
        text = _encoded(result.data)
        if len(text) > limit:
            head = limit * 2 // 3
            tail = limit - head
            cut = len(text) - head - tail
            text = f"{text[:head]}\n… [cut {cut:,} of {len(text):,} characters] …\n{text[-tail:]}"
    if result.warnings:
        text += "\nWarnings: " + "; ".join(result.warnings)
    for note in notes:
        text += f"\nNote: {note}"
    return text
