"""Guards: hooks that keep a model from spending its run going round in circles.

- `StagnationHook`: the same call over and over gets a nudge, then the run stops.
- `PerToolLimitHook`: a tool may be called at most so many times in a run.
- `BudgetWarningHook`: near the end of the step budget, the model is told how
  many steps remain.

Each derives what it counts from the run record (``state.steps``, and
``state.in_flight`` for calls already started), never from counters of its
own, so a run stopped and continued later, in another process and with fresh
hook objects, is guarded exactly as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError
from .hooks.decisions import Deny, InjectContext, Stop
from .types import ErrorKind, ToolCall, ToolResult, args_hash

__all__ = ["StagnationHook", "PerToolLimitHook", "BudgetWarningHook"]

#: Outcomes of a call whose tool was never let through: refused, unusable, or not run.
#: They are not calls in `PerToolLimitHook`'s count.
_NOT_RUN = frozenset(
    {
        ErrorKind.PARSE,
        ErrorKind.VALIDATION,
        ErrorKind.DENIED,
        ErrorKind.NO_TOOL_CALL,
        ErrorKind.HOOK_ERROR,
        ErrorKind.BUSY,
        ErrorKind.CANCELLED,
    }
)


def _count(value: Any, name: str, *, least: int) -> int:
    """`value` if it is an int of at least `least` (a bool is not a count); else a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an int of at least {least}, got {value!r}")
    return value


def _calls(n: int) -> str:
    return "1 call" if n == 1 else f"{n} calls"


class StagnationHook:
    """Nudges a model that repeats the same call, and stops the run if it keeps on.

    A call is the same when its tool and its arguments (as canonical JSON,
    `looplet.types.args_hash`) are. When the model makes the same call
    `repeats` times in a row, the result it sees carries a note saying so;
    every further repeat gets the note again, and the `patience`-th repeat after
    the first note stops the run with ``hook_stop:stagnation``
    (``patience=0`` stops at the `repeats`-th call, without a note).

    Denied and failed calls count like any other: repeating a refused call is
    just as stuck. Replies without a tool call (text, or a call that could not
    be read) neither count nor break a streak: a model that chats between
    identical calls is still getting the same result each time.

    Args:
        repeats: identical calls in a row that earn the note (at least 2).
        patience: further identical calls allowed after the first note.
        exempt: tools where repeating is expected (polling a job's status, say).
    """

    def __init__(self, repeats: int = 3, patience: int = 2, *, exempt: Iterable[str] = ()) -> None:
        self.repeats = _count(repeats, "StagnationHook(repeats=...)", least=2)
        self.patience = _count(patience, "StagnationHook(patience=...)", least=0)
        if isinstance(exempt, str):
            raise ConfigError(f"StagnationHook(exempt=...) takes tool names, not the string {exempt!r}")
        self.exempt = frozenset(exempt)

    def post_dispatch(
        self, state: Any, log: Any, tool_call: ToolCall, tool_result: ToolResult, step: int
    ) -> Stop | str | None:
        """A note from the `repeats`-th identical call on; `Stop` once patience has run out."""
        if tool_call.tool in self.exempt:
            return None
        streak = _streak(state.steps, tool_call)
        if streak >= self.repeats + self.patience:
            return Stop("stagnation")
        if streak >= self.repeats:
            return (
                f"you have called {tool_call.tool} with the same arguments {streak} times in a row; "
                "the result will not change. Try something else, or finish with what you have."
            )
        return None


def _streak(steps: list[Any], call: ToolCall) -> int:
    """How many times in a row `call` has now been made: itself plus the steps just before it.

    The call being concluded is not in ``steps`` yet; steps without a tool
    (replies without a call) are passed over.
    """
    digest: str | None = None
    n = 1
    for earlier in reversed(steps):
        made = earlier.tool_call
        if not made.tool:
            continue
        if made.tool != call.tool:
            break
        if digest is None:
            digest = args_hash(call.args)
        if args_hash(made.args) != digest:
            break
        n += 1
    return n


class PerToolLimitHook:
    """Denies a tool once it has been called its limit of times in the run.

    A call counts when it was let through to its tool (it ran, failed, timed
    out or was cut off); calls that were denied, invalid or never run do not.
    The model is told the tool's limit, and that it should take another way.
    Calls of one turn count as they pass this gate, so a batch of five calls
    to a tool limited to two runs two of them.

    Args:
        limits: the most calls each named tool may make in a run (0: never).
        default: the limit of every tool not in `limits` (None: unlimited).

    Raises:
        ConfigError: a limit is not a non-negative int, or a tool name is not a string.
    """

    def __init__(self, limits: Mapping[str, int], default: int | None = None) -> None:
        if not isinstance(limits, Mapping):
            raise ConfigError(f"PerToolLimitHook(limits=...) must map tool names to counts, got {limits!r}")
        checked: dict[str, int] = {}
        for tool, limit in limits.items():
            if not isinstance(tool, str) or not tool:
                raise ConfigError(f"PerToolLimitHook(limits=...) has a key {tool!r} that is not a tool name")
            checked[tool] = _count(limit, f"PerToolLimitHook limit of {tool!r}", least=0)
        self.limits = checked
        self.default = None if default is None else _count(default, "PerToolLimitHook(default=...)", least=0)
        # Calls this hook let through that have no step yet, by (run id, call id): the
        # gates of a concurrent batch all run before any of its calls is recorded. Only
        # a call between its gate and its step is here; a continued run gates such a
        # call again (or finds it in state.in_flight), so nothing here needs saving.
        self._passed: dict[tuple[str, str], str] = {}

    def limit_of(self, tool: str) -> int | None:
        """The most calls `tool` may make in a run (None: no limit)."""
        return self.limits.get(tool, self.default)

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Deny | None:
        """Deny the call if its tool has used up its limit; otherwise let it through."""
        limit = self.limit_of(tool_call.tool)
        if limit is None:
            return None
        made = self._calls_made(state, tool_call)
        if made >= limit:
            return Deny(
                f"{tool_call.tool} may make at most {_calls(limit)} in a run, and this run has made {made}"
            )
        self._passed[(state.run_id, tool_call.call_id)] = tool_call.tool
        return None

    def _calls_made(self, state: Any, call: ToolCall) -> int:
        """Calls of `call`'s tool in the run so far, not counting `call` itself."""
        tool, run = call.tool, state.run_id
        recorded: set[str] = set()
        made = 0
        for earlier in state.steps:
            recorded.add(earlier.tool_call.call_id)
            if earlier.tool_call.tool == tool and earlier.tool_result.error_kind not in _NOT_RUN:
                made += 1
        for key in [k for k in self._passed if k[0] == run and k[1] in recorded]:
            del self._passed[key]
        waiting = {cid for (r, cid), t in self._passed.items() if r == run and t == tool}
        waiting.update(cid for cid, i in state.in_flight.items() if i.tool == tool and cid not in recorded)
        waiting.discard(call.call_id)
        return made + len(waiting)


class BudgetWarningHook:
    """Tells the model, before each of its last calls, how many tool steps remain.

    When ``state.budget_remaining`` (steps left before ``max_steps``; ``free``
    tools spend none) is at most `at`, the prompt carries one line saying how
    many remain, and to finish with the done tool if the run offers it. The
    line is added to that prompt only, so warnings never pile up in the history.

    Args:
        at: warn from this many remaining steps down (at least 1).
        done_tool: the name of the tool that finishes the run.
    """

    def __init__(self, at: int = 3, *, done_tool: str = "done") -> None:
        self.at = _count(at, "BudgetWarningHook(at=...)", least=1)
        if not isinstance(done_tool, str):
            raise ConfigError(f"BudgetWarningHook(done_tool=...) must be a tool name, got {done_tool!r}")
        self.done_tool = done_tool

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> InjectContext | None:
        """The warning for this prompt, or None while the budget is larger than `at`."""
        left = state.budget_remaining
        if left is None or left > self.at:
            return None
        offered = any(t.get("name") == self.done_tool for t in ctx.tools)
        if left == 1:
            text = "1 tool step remains in this run."
            if offered:
                text += f" Call {self.done_tool} with your answer now."
        else:
            text = f"{left} tool steps remain in this run."
            if offered:
                text += f" Call {self.done_tool} with your answer before they run out."
        return InjectContext(text)
