"""Sub-agents: a tool that hands a task to a child loop, within limits only the host sets.

A sub-agent is a loop of its own (its own task, tools and run id) that a tool
call of its parent starts; the child's final answer (its done tool's
arguments) comes back as that call's result. Everything that bounds it is set
where the tool is made, never through the model's arguments:

- **depth**: how many sub-agents deep a call may start another (`max_depth`).
  The depth is kept in a ContextVar, which the sync loop copies into every
  tool call (its worker threads too) and the async loop into every task, and
  in the child's own record (``metadata["looplet.subagent"]``); the larger
  of the two counts. A nested tool with a larger `max_depth` cannot raise the
  limit it runs under.
- **steps**: a child's budget is at most the tool's `max_steps` and what the
  parent has left (`ToolContext.steps_left`); the model may ask for fewer.
- **the tree**: `tree_budget` caps the steps of all the sub-agents under one
  top-level run together. A child holds its whole budget while it runs (so
  concurrent children never overshoot) and gives back what it did not use;
  the steps used are counted in the top-level run's record, so a continued
  run keeps counting.
- **gates**: the child runs its own ``pre_dispatch`` hooks first and its
  parent's (`ToolContext.gates`) after them, so the parent's gates see the
  arguments that will run, and their ``Deny`` or ``Ask`` always holds: a
  child can add checks, never remove one.
- **approval**: a child that pauses for a person pauses its parent's call
  (``Ask``, with the child's waiting call in its details). The child's
  record waits in the parent's ``metadata["looplet.subagents"]`` under the
  parent call's id; the continued parent (in any process) applies the
  person's decision to the child's call and continues the child.

Usage: when a sub-agent call ends, its usage (its run's and, below it, its
own sub-agents') joins the parent's ``state.usage`` with that call's step
(`ToolContext.add_usage`; ``step.metadata["tool_usage"]`` shows it), once: a
call that pauses adds nothing until it ends, and a continued child reports
its whole usage then. The parent's record also keeps each call's usage
(`subagent_usage` sums those).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .config import LoopConfig
from .errors import ConfigError, DecisionError, LoopError
from .hooks.decisions import Ask
from .loop import async_composable_loop, composable_loop
from .state import DefaultState
from .tools.context import ToolContext, is_async_callable
from .tools.registry import BaseToolRegistry, ToolSpec
from .types import PendingCall, StopReason, Usage

__all__ = [
    "run_sub_loop",
    "arun_sub_loop",
    "subagent_tool",
    "async_subagent_tool",
    "SubagentResult",
    "SubagentError",
    "InheritedGate",
    "current_depth",
    "subagent_usage",
    "total_usage",
    "RECORD_KEY",
    "SELF_KEY",
]

#: In a parent's metadata: ``{"calls": {call_id: record}}``, and in a top-level run's,
#: ``"tree_steps"`` (the steps all its sub-agents took).
RECORD_KEY = "looplet.subagents"
#: In a child's metadata: its depth, its parent run and call, and its tree's top-level run.
SELF_KEY = "looplet.subagent"

DEFAULT_MAX_STEPS = 20
DEFAULT_MAX_DEPTH = 2
DEFAULT_TREE_BUDGET = 100


class SubagentError(LoopError):
    """A sub-agent could not start (a limit) or stopped without an answer.

    Raised from the sub-agent tool, it becomes the call's ``execution`` error
    result, which says why.
    """


# -- where a run stands in its tree ---------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """What a sub-agent runs under: its depth, the tightest limits met on the way down,
    and its tree (the top-level run's id and the record that counts the tree's steps)."""

    depth: int
    max_depth: int
    tree_budget: int | None
    root: str
    ledger: dict[str, Any] = field(compare=False, repr=False)


_FRAME: ContextVar[_Frame | None] = ContextVar("looplet_subagent_frame", default=None)
_LOCK = threading.Lock()  # guards the records below and the sub-agent records in metadata
_HELD: dict[str, int] = {}  # steps held by running sub-agents, per tree (its top-level run id)


def current_depth(ctx: ToolContext | None = None) -> int:
    """How many sub-agents deep the calling code runs (0 in a top-level run).

    The larger of the context's depth and, given a tool's `ctx`, the depth its
    run's record says it has: a context lost on the way (a thread started
    without copying it) never makes a run look shallower than it is.
    """
    frame = _FRAME.get()
    return max(frame.depth if frame is not None else 0, _recorded_depth(ctx))


def _recorded_depth(ctx: ToolContext | None) -> int:
    mine = ctx.metadata.get(SELF_KEY) if ctx is not None else None
    depth = mine.get("depth") if isinstance(mine, dict) else None
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0 else 0


def _tighter(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _records(metadata: dict[str, Any]) -> dict[str, Any]:
    """The sub-agent records in a run's metadata (made on first use); call with `_LOCK` held."""
    book = metadata.setdefault(RECORD_KEY, {})
    if not isinstance(book, dict) or not isinstance(book.setdefault("calls", {}), dict):
        raise SubagentError(f"metadata[{RECORD_KEY!r}] is not a sub-agent record; refusing to start one")
    return book


# -- the parent's record -------------------------------------------------------------


def subagent_usage(state: DefaultState) -> Usage:
    """The usage of the sub-agents `state`'s run started, each counted once (theirs included)."""
    with _LOCK:
        book = state.metadata.get(RECORD_KEY)
        calls = book.get("calls") if isinstance(book, dict) else None
        records = list(calls.values()) if isinstance(calls, dict) else []
    total = Usage()
    for record in records:
        usage = record.get("usage") if isinstance(record, dict) else None
        if isinstance(usage, dict):
            total.add(Usage.from_dict(usage))
    return total


def total_usage(state: DefaultState) -> Usage:
    """A run's whole usage: `state.usage`, which counts each finished sub-agent call's usage
    (its run's and its own sub-agents') once, with that call's step (`ToolContext.add_usage`)."""
    return state.usage + Usage()


# -- the result ------------------------------------------------------------------------


@dataclass
class SubagentResult:
    """How a sub-agent's session ended.

    Attributes:
        run_id: the child's run id (its steps are recorded under it).
        stop_reason: the child's stop reason (``done`` when it answered).
        detail: the child's stop detail.
        final_answer: the child's done tool's arguments, when it answered.
        steps: the steps the child has charged (over all its sessions).
        usage: the child's usage and its own sub-agents', over all its sessions.
        depth: the child's depth (1 for a top-level run's sub-agent).
        asked: the child's call shown to the person, when it waits for a decision.
        waiting: how many of the child's calls wait for a decision.
        problem: why a decision could not be carried out (it is asked again).
        state: the child's record (continue it by passing it back, or through the parent).
    """

    run_id: str
    stop_reason: str
    detail: str
    final_answer: dict[str, Any] | None
    steps: int
    usage: Usage
    depth: int
    asked: PendingCall | None = None
    waiting: int = 0
    problem: str = ""
    state: DefaultState | None = field(default=None, repr=False)

    @property
    def question(self) -> str:
        """What the parent's paused call asks the person (the child's question, and whose)."""
        if self.asked is None:
            return ""
        why = f" ({self.problem})" if self.problem else ""
        return f"sub-agent {self.run_id} asks: {self.asked.reason}{why}"

    @property
    def details(self) -> dict[str, Any]:
        """The child's waiting call, as JSON data for the person deciding."""
        out: dict[str, Any] = {"run_id": self.run_id, "depth": self.depth, "waiting": self.waiting}
        asked = self.asked
        if asked is not None:
            call: dict[str, Any] = {
                "call_id": asked.call_id,
                "tool": asked.tool,
                "args": asked.args,
                "reason": asked.reason,
            }
            if asked.asked_by:
                call["asked_by"] = asked.asked_by
            if asked.details is not None:
                call["details"] = asked.details
            out["call"] = call
        if self.problem:
            out["problem"] = self.problem
        return out


# -- one session of a sub-agent ----------------------------------------------------------


@dataclass
class _Session:
    ctx: ToolContext | None
    frame: _Frame
    state: DefaultState
    continuing: bool
    max_steps: int  # the child's whole budget (its state counts on from what it spent)
    record: dict[str, Any] | None  # this call's entry in the parent's metadata, from an earlier session
    problem: str = ""
    before: int = 0  # steps the child had charged when this session started
    held: int = 0  # steps of the tree this session holds

    @property
    def runnable(self) -> bool:
        return not self.problem and _undecided(self.state) is None


def _check_limits(max_steps: object, max_depth: object, tree_budget: object) -> None:
    for name, value in (("max_steps", max_steps), ("max_depth", max_depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    if tree_budget is not None and (isinstance(tree_budget, bool) or not isinstance(tree_budget, int)):
        raise ConfigError(f"tree_budget must be a whole number >= 1 or None, got {tree_budget!r}")
    if isinstance(tree_budget, int) and tree_budget < 1:
        raise ConfigError(f"tree_budget must be a whole number >= 1 or None, got {tree_budget!r}")


def _open(
    ctx: ToolContext | None, task: Any, max_steps: int, max_depth: int, tree_budget: int | None
) -> _Session:
    """Where the child stands (depth, tree, budget) and its record, new or continued.

    Raises:
        SubagentError: the depth limit is reached, or the run lost its tree's context.
    """
    outer = _FRAME.get()
    depth = current_depth(ctx)
    if outer is None and depth > 0:
        raise SubagentError(
            "this run is a sub-agent, but its context (depth and tree budget) was lost on the way "
            "(a thread started without copying it?); refusing to start another"
        )
    deepest = max_depth if outer is None else min(outer.max_depth, max_depth)
    if depth + 1 > deepest:
        raise SubagentError(
            f"no sub-agent started: the depth limit is {deepest} and this run is at depth {depth}"
        )
    frame = _child_frame(outer, ctx, depth + 1, deepest, tree_budget)
    record = _record_of(ctx)
    saved = record.get("state") if record is not None else None
    cap = max_steps if ctx is None or ctx.steps_left is None else min(max_steps, ctx.steps_left)
    if isinstance(saved, dict):
        session = _Session(ctx, frame, DefaultState.from_dict(saved), True, cap, record)
        _apply_decision(session, record or {})
        return session
    state = DefaultState(task=task)
    state.metadata[SELF_KEY] = {
        "depth": frame.depth,
        "parent_run_id": ctx.run_id if ctx is not None else None,
        "parent_call_id": ctx.call_id if ctx is not None else None,
        "root_run_id": frame.root,
    }
    return _Session(ctx, frame, state, False, cap, record)


def _child_frame(
    outer: _Frame | None, ctx: ToolContext | None, depth: int, deepest: int, tree_budget: int | None
) -> _Frame:
    if outer is not None:
        budget = _tighter(outer.tree_budget, tree_budget)
        return _Frame(depth, deepest, budget, outer.root, outer.ledger)
    if ctx is None:  # a tree of its own, counted in memory only
        return _Frame(depth, deepest, tree_budget, f"tree_{uuid.uuid4().hex}", {})
    with _LOCK:
        ledger = _records(ctx.metadata)
    return _Frame(depth, deepest, tree_budget, ctx.run_id or f"tree_{uuid.uuid4().hex}", ledger)


def _record_of(ctx: ToolContext | None) -> dict[str, Any] | None:
    """This call's record in the parent's metadata, if an earlier session left one."""
    if ctx is None:
        return None
    with _LOCK:
        record = _records(ctx.metadata)["calls"].get(ctx.call_id)
    return record if isinstance(record, dict) else None


def _undecided(state: DefaultState) -> PendingCall | None:
    return next((p for p in state.pending if p.decision is None), None)


def _apply_decision(session: _Session, record: dict[str, Any]) -> None:
    """Carry the person's decision about the parent's call over to the child's call they saw."""
    decision = session.ctx.decision if session.ctx is not None else None
    state = session.state
    asked = record.get("asked")
    target = next((p for p in state.pending if p.call_id == asked and p.decision is None), None)
    if not isinstance(decision, dict) or target is None:
        return
    try:
        if decision.get("decision") == "approved":
            args = decision.get("args")
            state.approve(target.call_id, args=args if isinstance(args, dict) else None)
        elif decision.get("decision") == "rejected":
            state.reject(target.call_id, str(decision.get("note") or "rejected by a human"))
    except DecisionError as exc:
        session.problem = str(exc)


def _undecide(state: DefaultState) -> None:
    """Take back the decisions a continued child refused, so the person is asked again."""
    for pending in state.pending:
        pending.decision, pending.approved_args, pending.note = None, None, ""


@contextmanager
def _running(session: _Session) -> Iterator[int]:
    """Hold the child's steps in its tree and enter its frame; yields the child's max_steps.

    On the way out the steps it spent are counted in the tree's record and the
    rest given back.

    Raises:
        SubagentError: there is no step left for the child (its own budget or the tree's).
    """
    state = session.state
    session.before = state.steps_charged
    wanted = session.max_steps - session.before
    if wanted <= 0:
        raise SubagentError(f"no sub-agent started: no step budget is left for it (max {session.max_steps})")
    frame = session.frame
    with _LOCK:
        taken = _count(frame.ledger.get("tree_steps")) + _HELD.get(frame.root, 0)
        held = wanted if frame.tree_budget is None else max(0, min(wanted, frame.tree_budget - taken))
        if held:
            _HELD[frame.root] = _HELD.get(frame.root, 0) + held
    if not held:
        raise SubagentError(
            f"no sub-agent started: the sub-agents' tree budget ({frame.tree_budget} steps) is spent"
        )
    session.held = held
    token = _FRAME.set(frame)
    try:
        yield session.before + held
    finally:
        _FRAME.reset(token)
        spent = max(0, state.steps_charged - session.before)
        with _LOCK:
            frame.ledger["tree_steps"] = _count(frame.ledger.get("tree_steps")) + spent
            left = _HELD.get(frame.root, 0) - held
            if left > 0:
                _HELD[frame.root] = left
            else:
                _HELD.pop(frame.root, None)


def _finish(session: _Session) -> SubagentResult:
    """The session's result; the parent's record keeps the child's record while it waits."""
    state = session.state
    asked = _undecided(state) if state.stop_reason == StopReason.APPROVAL_PENDING else None
    result = SubagentResult(
        run_id=state.run_id,
        stop_reason=state.stop_reason or StopReason.CANCELLED,
        detail=state.detail,
        final_answer=state.final_answer,
        steps=state.steps_charged,
        usage=total_usage(state),  # the child's, its own sub-agents' included
        depth=session.frame.depth,
        asked=asked,
        waiting=sum(1 for p in state.pending if p.decision is None),
        problem=session.problem,
        state=state,
    )
    ctx = session.ctx
    if ctx is not None:
        if asked is None:  # the call ends now: the parent counts the child's usage with its step
            ctx.add_usage(result.usage)
        saved = state.to_dict() if asked is not None else None
        with _LOCK:
            record = _records(ctx.metadata)["calls"].setdefault(ctx.call_id, {})
            record.update(
                run_id=state.run_id,
                depth=result.depth,
                stop_reason=result.stop_reason,
                steps=result.steps,
                usage=result.usage.to_dict(),
            )
            if saved is None:
                record.pop("state", None)
                record.pop("asked", None)
            else:
                record["state"], record["asked"] = saved, asked.call_id if asked else None
    return result


# -- the child's hooks ----------------------------------------------------------------------


class InheritedGate:
    """A parent's gate as a child runs it: its ``pre_dispatch`` only.

    Its other hook methods belong to the parent's run (a permission hook's
    ``pre_loop``/``on_loop_end`` would otherwise forget the parent). The type
    of each wrapper is named after the gate's, so steps and audits name the
    gate that decided.
    """

    __slots__ = ("_gate",)

    def __init__(self, gate: object) -> None:
        self._gate = gate

    def pre_dispatch(self, state: Any, log: Any, tool_call: Any, step: int) -> Any:
        return self._gate.pre_dispatch(state, log, tool_call, step)  # type: ignore[attr-defined]


_GATE_TYPES: dict[type, type[InheritedGate]] = {}


def _gate_type(kind: type) -> type[InheritedGate]:
    """The wrapper type for gates of type `kind`, named like it (made once per type)."""
    with _LOCK:
        made = _GATE_TYPES.get(kind)
        if made is None:
            made = _GATE_TYPES[kind] = type(kind.__name__, (InheritedGate,), {"__slots__": ()})
    return made


def _inherited(gate: object) -> InheritedGate:
    if isinstance(gate, InheritedGate):
        return gate
    return _gate_type(type(gate))(gate)


def _child_hooks(
    ctx: ToolContext | None, hooks: Iterable[object], observers: Iterable[object]
) -> list[object]:
    """The observers, the child's own hooks, then the parent's gates (last: they have the final say)."""
    gates = [_inherited(g) for g in (ctx.gates if ctx is not None else ())]
    return [*observers, *hooks, *gates]


def _sync_approver(ctx: ToolContext | None) -> Callable[[str], Any] | None:
    """The parent's approver for a sync child (an async one answered on the parent's event loop)."""
    if ctx is None or ctx.approver is None:
        return None
    if not is_async_callable(ctx.approver):
        return ctx.approver
    asker = ToolContext(approver=ctx.approver, event_loop=ctx.event_loop)
    return asker.approve


@dataclass(frozen=True)
class _Child:
    """What the host gave for the child: its backend, tools, hooks and settings."""

    llm: Any
    tools: BaseToolRegistry
    hooks: tuple[object, ...] = ()
    observers: tuple[object, ...] = ()
    config: LoopConfig | None = None
    system_prompt: str | None = None

    def arguments(
        self, task: str, ctx: ToolContext, max_steps: int, max_depth: int, tree_budget: int | None
    ) -> dict[str, Any]:
        """`run_sub_loop`'s keyword arguments for one call of a sub-agent tool (sync or async)."""
        return {
            "task": task,
            "tools": self.tools,
            "hooks": self.hooks,
            "observers": self.observers,
            "max_steps": max_steps,
            "max_depth": max_depth,
            "tree_budget": tree_budget,
            "ctx": ctx,
            "config": self.config,
            "system_prompt": self.system_prompt,
        }

    def loop_args(self, session: _Session, max_steps: int, approver: Any) -> dict[str, Any]:
        ctx = session.ctx
        return {
            "tools": self.tools,
            "hooks": _child_hooks(ctx, self.hooks, self.observers),
            "config": self.config,
            "state": session.state,
            "max_steps": max_steps,
            "system_prompt": self.system_prompt,
            "cancel_token": ctx.cancel_token if ctx is not None else None,
            "approver": approver,
        }


def _child(
    llm: Any,
    tools: BaseToolRegistry,
    hooks: Iterable[object],
    observers: Iterable[object],
    config: LoopConfig | None,
    system_prompt: str | None,
) -> _Child:
    if not isinstance(tools, BaseToolRegistry):
        raise ConfigError(f"tools must be a BaseToolRegistry, got {type(tools).__name__}")
    if config is not None and not isinstance(config, LoopConfig):
        raise ConfigError(f"config must be a LoopConfig, got {type(config).__name__}")
    return _Child(llm, tools, tuple(hooks or ()), tuple(observers or ()), config, system_prompt)


def _progress(session: _Session, text: str) -> None:
    if session.ctx is not None:
        session.ctx.report_progress(text)


def _started(session: _Session, max_steps: int) -> None:
    verb = "continued" if session.continuing else "started"
    n = max_steps - session.before
    _progress(session, f"sub-agent {session.state.run_id} {verb} at depth {session.frame.depth}, {n} step(s)")


def _ended(session: _Session) -> None:
    state = session.state
    _progress(
        session, f"sub-agent {state.run_id} stopped {state.stop_reason} after {state.steps_charged} step(s)"
    )


# -- running one --------------------------------------------------------------------------------


def run_sub_loop(
    llm: Any,
    *,
    task: Any,
    tools: BaseToolRegistry,
    hooks: Iterable[object] = (),
    observers: Iterable[object] = (),
    max_steps: int = DEFAULT_MAX_STEPS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    tree_budget: int | None = DEFAULT_TREE_BUDGET,
    ctx: ToolContext | None = None,
    config: LoopConfig | None = None,
    system_prompt: str | None = None,
) -> SubagentResult:
    """Run a child loop for `task`, within the host's limits and the parent's (from `ctx`).

    Called from a tool with its `ctx`, the child inherits the parent's gates,
    cancel token and approver, keeps within the parent's steps left, is
    recorded in the parent's metadata, and is continued (with the person's
    decision) when the parent's call is run again after a pause.

    Args:
        llm: the child's backend (sync).
        task: the child's task (a continued child keeps its own).
        tools: the child's tools (a done tool's arguments are its answer).
        hooks: the child's own hooks; they run before the parent's gates.
        observers: hooks the child shares with its parent to be seen (a
            `ProvenanceSink`, a `TracingHook`): the child's steps are recorded
            under the child's run id.
        max_steps: the child's step budget (its whole budget, over all sessions).
        max_depth: the deepest sub-agent this call may start (1: children of a
            top-level run only); a tighter limit met higher up wins.
        tree_budget: the steps all sub-agents under the top-level run may take
            together (None: no cap beyond each child's); a tighter one met higher up wins.
        ctx: the calling tool's `ToolContext` (None: a child of nobody).
        config: the child's settings (`max_steps` above overrides its own).
        system_prompt: the child's system prompt.

    Raises:
        SubagentError: a limit leaves no room for the child.
        ConfigError: a setting is wrong.
    """
    _check_limits(max_steps, max_depth, tree_budget)
    child = _child(llm, tools, hooks, observers, config, system_prompt)
    session = _open(ctx, task, max_steps, max_depth, tree_budget)
    if session.runnable:
        with _running(session) as limit:
            loop = _built(
                session, composable_loop, child.llm, child.loop_args(session, limit, _sync_approver(ctx))
            )
            if loop is not None:
                _started(session, limit)
                loop.run()
                _ended(session)
    return _finish(session)


async def arun_sub_loop(
    llm: Any,
    *,
    task: Any,
    tools: BaseToolRegistry,
    hooks: Iterable[object] = (),
    observers: Iterable[object] = (),
    max_steps: int = DEFAULT_MAX_STEPS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    tree_budget: int | None = DEFAULT_TREE_BUDGET,
    ctx: ToolContext | None = None,
    config: LoopConfig | None = None,
    system_prompt: str | None = None,
) -> SubagentResult:
    """The async twin of `run_sub_loop`: the child runs in `async_composable_loop`."""
    _check_limits(max_steps, max_depth, tree_budget)
    child = _child(llm, tools, hooks, observers, config, system_prompt)
    session = _open(ctx, task, max_steps, max_depth, tree_budget)
    if session.runnable:
        approver = ctx.approver if ctx is not None else None
        with _running(session) as limit:
            loop = _built(
                session, async_composable_loop, child.llm, child.loop_args(session, limit, approver)
            )
            if loop is not None:
                _started(session, limit)
                await loop.run()
                _ended(session)
    return _finish(session)


def _built(session: _Session, make: Callable[..., Any], llm: Any, kwargs: dict[str, Any]) -> Any:
    """The child's loop; None when a decision cannot be carried out (the person is asked again)."""
    try:
        return make(llm, **kwargs)
    except DecisionError as exc:
        _undecide(session.state)
        session.problem = str(exc)
        return None


# -- the tool -----------------------------------------------------------------------------------


def _answer(result: SubagentResult) -> Any:
    """The parent call's result: the child's answer, a pause for the person, or an error."""
    if result.stop_reason == StopReason.DONE and result.final_answer is not None:
        return result.final_answer
    if result.asked is not None:
        return Ask(result.question, details=result.details)
    detail = f": {result.detail}" if result.detail else ""
    raise SubagentError(
        f"sub-agent {result.run_id} stopped {result.stop_reason} after {result.steps} step(s) "
        f"without an answer{detail}"
    )


def _asked_steps(asked: object, cap: int) -> int:
    """The model's request for fewer steps, clamped to the host's cap (never more, at least 1)."""
    if isinstance(asked, int) and not isinstance(asked, bool):
        return max(1, min(asked, cap))
    return cap


_DESCRIPTION = (
    "Hand a self-contained task to a sub-agent, which works on it with its own tools and "
    "returns its final answer. Give it everything it needs in `task`."
)


def _tool_options(
    registry: BaseToolRegistry, name: str, max_steps: int, max_depth: int, tree_budget: int | None
) -> None:
    if not isinstance(registry, BaseToolRegistry):
        raise ConfigError(f"registry must be a BaseToolRegistry, got {type(registry).__name__}")
    _check_limits(max_steps, max_depth, tree_budget)


def subagent_tool(
    registry: BaseToolRegistry,
    llm: Any,
    tools: BaseToolRegistry,
    *,
    name: str = "subagent",
    description: str = _DESCRIPTION,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    tree_budget: int | None = DEFAULT_TREE_BUDGET,
    hooks: Iterable[object] = (),
    observers: Iterable[object] = (),
    config: LoopConfig | None = None,
    system_prompt: str | None = None,
    concurrent_safe: bool = False,
    timeout_s: float | None = None,
) -> ToolSpec:
    """Register a tool in `registry` that runs a sub-agent (`run_sub_loop`) on the model's task.

    The model gives the task and may ask for fewer steps (``max_steps``,
    clamped to `max_steps` and the parent's steps left); no argument sets
    depth, budget, tools or anything else. `tools` may hold this tool too (a
    recursive sub-agent), bounded by `max_depth` and `tree_budget`.

    Returns:
        The registered `ToolSpec`.
    """
    _tool_options(registry, name, max_steps, max_depth, tree_budget)
    child = _child(llm, tools, hooks, observers, config, system_prompt)
    cap = max_steps

    def subagent(task: str, ctx: ToolContext, max_steps: int | None = None) -> Any:
        limits = _asked_steps(max_steps, cap), max_depth, tree_budget
        return _answer(run_sub_loop(child.llm, **child.arguments(task, ctx, *limits)))

    return _register(registry, subagent, name, description, cap, concurrent_safe, timeout_s)


def async_subagent_tool(
    registry: BaseToolRegistry,
    llm: Any,
    tools: BaseToolRegistry,
    *,
    name: str = "subagent",
    description: str = _DESCRIPTION,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    tree_budget: int | None = DEFAULT_TREE_BUDGET,
    hooks: Iterable[object] = (),
    observers: Iterable[object] = (),
    config: LoopConfig | None = None,
    system_prompt: str | None = None,
    concurrent_safe: bool = False,
    timeout_s: float | None = None,
) -> ToolSpec:
    """The async twin of `subagent_tool` (for `async_composable_loop`; `llm` may be async)."""
    _tool_options(registry, name, max_steps, max_depth, tree_budget)
    child = _child(llm, tools, hooks, observers, config, system_prompt)
    cap = max_steps

    async def subagent(task: str, ctx: ToolContext, max_steps: int | None = None) -> Any:
        limits = _asked_steps(max_steps, cap), max_depth, tree_budget
        return _answer(await arun_sub_loop(child.llm, **child.arguments(task, ctx, *limits)))

    return _register(registry, subagent, name, description, cap, concurrent_safe, timeout_s)


def _register(
    registry: BaseToolRegistry,
    fn: Callable[..., Any],
    name: str,
    description: str,
    cap: int,
    concurrent_safe: bool,
    timeout_s: float | None,
) -> ToolSpec:
    parameters = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "description": "the whole task, with everything the sub-agent needs"},
            "max_steps": {
                "anyOf": [{"type": "integer"}, {"type": "null"}],
                "description": f"fewer steps than the sub-agent's budget (at most {cap}), if it needs fewer",
                "default": None,
            },
        },
        "required": ["task"],
        "additionalProperties": False,
    }
    return registry.register(
        fn,
        name=name,
        description=description,
        parameters=parameters,
        concurrent_safe=concurrent_safe,
        timeout_s=timeout_s,
    )
