"""Permission rules for tool calls, and the hook that enforces them on every call.

`PermissionEngine` holds rules (``allow`` / ``deny`` / ``ask``, each for a tool
name or a glob pattern, optionally narrowed by a predicate on the arguments)
and decides one call at a time. `PermissionHook` puts an engine in front of
the tools of a run and keeps every decision in the run record.

How a decision is made:

- **Deny beats ask beats allow beats the default, whatever the order the rules
  were written in** (a rule written later never loosens an earlier deny).
  API.md §6 says "first matching rule wins"; issue 8 and RELIABILITY.md G1,
  which are newer and more specific, say this precedence, and it is what this
  module does: a broad ``allow("*")`` written first cannot open a tool that a
  ``deny`` written after it closes.
- Every rule whose tool pattern matches is evaluated, its matcher called in
  the order written, so a broken matcher shows on every call it covers rather
  than only when higher rules miss.
- **Fail closed.** A matcher that raises or returns anything but a bool makes
  the decision deny, with a reason naming the rule and the error. So does an
  ``ask_handler`` that raises, times out, or answers anything but ``True`` /
  ``Allow()``.
- **No rule matching uses an explicit default**: ``PermissionEngine()`` denies;
  ``PermissionEngine(default="allow")`` (or ``"ask"``) is an opt-in.

How `PermissionHook` applies it (G4, G5):

- ``pre_dispatch`` decides on the arguments as they reach it (the model's, or
  an earlier hook's rewrite): deny is a `Deny`; ask calls the ``ask_handler``
  once, or without one returns `Ask` so the run pauses durably
  (``approval_pending``) until ``state.approve`` / ``state.reject``; allow lets
  the call go on.
- ``around_tool`` runs right before the tool body and sees the **final**
  arguments. When a hook listed after the permission hook rewrote them, the
  rules are evaluated again on what will run; deny keeps the body from running.
  An ``ask`` at that point also denies: the run can no longer pause for this
  call, and a human never saw these arguments. Put rewriting hooks *before*
  the `PermissionHook` (then the rewrite is what gets checked, and asked about).
- Each distinct set of arguments of a call is evaluated once, and the
  ``ask_handler`` is called at most once per call.
- A call a human approved after an `Ask` runs: on the continued run the loop
  does not call ``pre_dispatch`` again for it (the decision answers that
  gate), and ``around_tool`` recognises it from the run record (the call's
  last audit entry is this hook's ``ask`` and ``state.pending`` holds the
  approval), so a new process with a fresh hook behaves the same. If the human
  edited the arguments, the rules are evaluated on the edit once: a deny rule
  still wins over the approval; anything else runs as approved.

The audit: every decision appends one JSON dict to
``state.metadata["permission_audit"]`` (call_id, tool, args_hash, effect,
reason, rule, source, step, phase, gate). ``source`` is ``"rule"``,
``"default"``, ``"handler"`` (an ``ask_handler`` answered), ``"human"`` (an
approval recorded with ``state.approve``) or ``"error"`` (a matcher, a handler
or the setup failed). It is part of the state, so it is saved with every
checkpoint and a continued run appends to it.

One `PermissionHook` serves one run at a time (``around_tool`` is not given
the state, so the hook keeps the one of the run it last saw); concurrent runs
need a hook each, and may share one engine. Two permission hooks in one run
need different ``name=`` (the audit tells their entries apart by it).

An async ``ask_handler`` is awaited in `async_composable_loop` (with
``ask_timeout_s`` as its time limit); in `composable_loop` it cannot be
awaited, and the call is denied with a reason saying so. A sync handler is
called on the loop's thread (in the async loop too, so keep it quick or make
it async); it cannot be interrupted, so a time limit applies only to async
handlers.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError
from .hooks.decisions import Ask, Deny
from .tools.context import approval_verdict, is_async_callable
from .tools.registry import error_result
from .types import ErrorKind, args_hash

if TYPE_CHECKING:
    from .history import History
    from .prompt import PromptContext
    from .state import DefaultState
    from .tools.registry import PreparedCall
    from .types import PendingCall, ToolCall, ToolResult

__all__ = ["PermissionEngine", "PermissionRule", "PermissionDecision", "PermissionHook", "AUDIT_KEY"]

Effect = Literal["allow", "deny", "ask"]
ArgMatcher = Callable[[dict[str, Any]], bool]

#: Where `PermissionHook` keeps its audit list in ``state.metadata``.
AUDIT_KEY = "permission_audit"

_EFFECTS: tuple[str, ...] = ("allow", "deny", "ask")
_PRECEDENCE = {"deny": 0, "ask": 1, "allow": 2}


@dataclass(frozen=True, slots=True)
class PermissionRule:
    """One rule: `effect` for calls of tools matching `tool` whose arguments pass `arg_matcher`."""

    effect: Effect
    tool: str
    arg_matcher: ArgMatcher | None
    reason: str
    position: int  # 1-based, in the order written

    @property
    def label(self) -> str:
        """A short name for the rule, as audits and reasons show it."""
        condition = "" if self.arg_matcher is None else f" if {_callable_name(self.arg_matcher)}"
        return f"#{self.position} {self.effect} {self.tool!r}{condition}"

    def covers(self, tool: str) -> bool:
        """Whether the tool pattern matches `tool` (fnmatch, case-sensitive)."""
        return fnmatchcase(tool, self.tool)


@dataclass(frozen=True, slots=True)
class PermissionDecision:
    """The engine's answer for one call.

    Attributes:
        effect: ``"allow"``, ``"deny"`` or ``"ask"``.
        reason: why, in words a model (for a deny) or a human (for an ask) reads.
        rule: the label of the deciding rule, or ``"default"``.
        source: ``"rule"``, ``"default"``, or ``"error"`` when a matcher failed.
    """

    effect: Effect
    reason: str
    rule: str
    source: str = "rule"


class PermissionEngine:
    """Rules deciding which tool calls may run: deny > ask > allow > `default`, whatever the order.

    Args:
        default: the effect when no rule matches: ``"deny"`` (the default),
            ``"allow"`` or ``"ask"``.

    Raises:
        ConfigError: `default` is not one of the three effects.
    """

    def __init__(self, default: str = "deny") -> None:
        if default not in _EFFECTS:
            raise ConfigError(f"default must be 'deny', 'allow' or 'ask', got {default!r}")
        self.default: Effect = default  # type: ignore[assignment]
        self._rules: tuple[PermissionRule, ...] = ()

    @property
    def rules(self) -> tuple[PermissionRule, ...]:
        """The rules, in the order written."""
        return self._rules

    def allow(self, tool: str, arg_matcher: ArgMatcher | None = None, reason: str = "") -> PermissionEngine:
        """Let calls of `tool` (a name or glob) run, unless a deny or ask rule also matches."""
        return self.add_rule("allow", tool, arg_matcher, reason)

    def deny(self, tool: str, arg_matcher: ArgMatcher | None = None, reason: str = "") -> PermissionEngine:
        """Refuse calls of `tool`; `reason` is what the model is told."""
        return self.add_rule("deny", tool, arg_matcher, reason)

    def ask(self, tool: str, arg_matcher: ArgMatcher | None = None, reason: str = "") -> PermissionEngine:
        """Have a human decide calls of `tool`, unless a deny rule matches; `reason` is their question."""
        return self.add_rule("ask", tool, arg_matcher, reason)

    def add_rule(
        self, effect: str, tool: str, arg_matcher: ArgMatcher | None = None, reason: str = ""
    ) -> PermissionEngine:
        """Add a rule, checked now so a typo fails at setup rather than during a run.

        Raises:
            ConfigError: an unknown effect, a tool pattern that is not a
                non-empty str, a matcher that is not callable, or a reason
                that is not a str.
        """
        if effect not in _EFFECTS:
            raise ConfigError(f"a rule's effect must be 'allow', 'deny' or 'ask', got {effect!r}")
        if not isinstance(tool, str) or not tool:
            raise ConfigError(
                f"a rule's tool must be a tool name or glob pattern (a non-empty str), got {tool!r}"
            )
        if arg_matcher is not None and not callable(arg_matcher):
            raise ConfigError(
                f"arg_matcher must be a callable taking the arguments dict and returning a bool, "
                f"got {type(arg_matcher).__name__}"
            )
        if not isinstance(reason, str):
            raise ConfigError(f"a rule's reason must be a str, got {type(reason).__name__}")
        rule = PermissionRule(effect, tool, arg_matcher, reason, len(self._rules) + 1)  # type: ignore[arg-type]
        self._rules = (*self._rules, rule)
        return self

    def decide(self, tool: str, args: dict[str, Any]) -> PermissionDecision:
        """Decide one call of `tool` with `args` (matchers get a copy, so they cannot change the call)."""
        best: PermissionRule | None = None
        seen = copy.deepcopy(args)
        for rule in self._rules:
            if not rule.covers(tool):
                continue
            if rule.arg_matcher is not None:
                matched, problem = _match(rule.arg_matcher, seen)
                if problem is not None:
                    return _broken(rule, problem)
                if not matched:
                    continue
            if best is None or _PRECEDENCE[rule.effect] < _PRECEDENCE[best.effect]:
                best = rule
        if best is None:
            return PermissionDecision(self.default, _default_reason(tool, self.default), "default", "default")
        return PermissionDecision(best.effect, best.reason or _rule_reason(tool, best), best.label)


def _match(matcher: ArgMatcher, args: dict[str, Any]) -> tuple[bool, str | None]:
    """Call a matcher: (matched, None), or (False, what went wrong)."""
    try:
        answer = matcher(args)
    except Exception as exc:
        return False, f"its arg_matcher raised {type(exc).__name__}: {exc}"
    if isinstance(answer, bool):
        return answer, None
    if isinstance(answer, Awaitable):
        _close(answer)
    return False, f"its arg_matcher returned {type(answer).__name__} {answer!r:.60}, not a bool"


def _broken(rule: PermissionRule, problem: str) -> PermissionDecision:
    reason = f"permission rule {rule.label} could not be checked ({problem}); denied (fails closed)"
    return PermissionDecision("deny", reason, rule.label, "error")


def _default_reason(tool: str, default: str) -> str:
    if default == "allow":
        return f"no permission rule matches {tool!r}; the default allows it"
    if default == "ask":
        return f"no permission rule matches {tool!r}; the default is to ask: may it run?"
    return f"no permission rule allows {tool!r} (the default is deny)"


def _rule_reason(tool: str, rule: PermissionRule) -> str:
    if rule.effect == "ask":
        return f"{tool} needs approval (permission rule {rule.label})"
    if rule.effect == "deny":
        return f"{tool} is not permitted (permission rule {rule.label})"
    return f"{tool} is permitted (permission rule {rule.label})"


def _callable_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)


def _close(awaitable: object) -> None:
    """Close an un-awaited coroutine, so Python does not warn that it was never awaited."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


AskHandler = Callable[..., Any]


class PermissionHook:
    """Enforce a `PermissionEngine` on every call of a run, and audit each decision in the record.

    Args:
        engine: the rules.
        ask_handler: answers ``ask`` decisions on the spot:
            ``ask_handler(tool_call, reason)`` returning ``True`` or ``Allow()``
            approves; anything else, or raising, denies. Without one an ask
            pauses the run (``approval_pending``). An ``async def`` handler
            needs `async_composable_loop`.
        name: tells this hook's audit entries apart from another permission
            hook's in the same run.
        ask_timeout_s: a time limit for an async handler's answer (no answer
            in time denies).

    Raises:
        ConfigError: `engine` is not a `PermissionEngine`, `ask_handler` is not callable,
            `name` is empty, or `ask_timeout_s` is not a positive number.
    """

    def __init__(
        self,
        engine: PermissionEngine,
        ask_handler: AskHandler | None = None,
        *,
        name: str = "permissions",
        ask_timeout_s: float | None = None,
    ) -> None:
        if not isinstance(engine, PermissionEngine):
            raise ConfigError(f"PermissionHook needs a PermissionEngine, got {type(engine).__name__}")
        if ask_handler is not None and not callable(ask_handler):
            raise ConfigError(f"ask_handler must be callable, got {type(ask_handler).__name__}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name must be a non-empty str, got {name!r}")
        if ask_timeout_s is not None and not (
            isinstance(ask_timeout_s, int | float)
            and not isinstance(ask_timeout_s, bool)
            and ask_timeout_s > 0
        ):
            raise ConfigError(f"ask_timeout_s must be a positive number of seconds, got {ask_timeout_s!r}")
        self.engine = engine
        self.ask_handler = ask_handler
        self.name = name
        self.ask_timeout_s = ask_timeout_s
        self._async_handler = ask_handler is not None and is_async_callable(ask_handler)
        # The runs this hook gates, by run id: one hook may serve several runs at once (a
        # sub-agent inherits it), and `around_tool` must check each call against its own run's
        # record. Weak: a run's state is forgotten once nothing else holds it.
        self._states: weakref.WeakValueDictionary[str, DefaultState] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()  # the calls of a concurrent batch are intercepted at once

    # -- hook methods ------------------------------------------------------------------

    def pre_loop(self, state: DefaultState, log: History, ctx: PromptContext) -> None:
        """Remember the run's state: ``around_tool`` needs its record and is not given it."""
        self._states[state.run_id] = state

    def pre_dispatch(
        self, state: DefaultState, log: History, tool_call: ToolCall, step: int
    ) -> Deny | Ask | Awaitable[Deny | None] | None:
        """Decide the call on its arguments as they reach this hook."""
        self._states[state.run_id] = state
        decision = self.engine.decide(tool_call.tool, tool_call.args)
        if decision.effect == "ask" and self.ask_handler is not None:
            if self._async_handler:
                return self._ask_async(state, tool_call, step, decision)
            answer = self._ask_now(tool_call, decision.reason)
            return self._settle_ask(state, tool_call, step, decision, answer)
        self._audit(state, tool_call, tool_call.args, step, decision, phase="pre_dispatch")
        if decision.effect == "deny":
            return Deny(decision.reason)
        if decision.effect == "ask":
            return Ask(decision.reason)
        return None

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        """Check the final arguments right before the body runs; deny without calling `proceed`."""
        state = self._run_of(call)
        if state is None:
            return _refused(call, "the permission hook saw no run start (pre_loop); denied, failing closed")
        with self._lock:
            refusal = self._recheck(state, call)
        return proceed() if refusal is None else _refused(call, refusal)

    def _run_of(self, call: PreparedCall) -> DefaultState | None:
        """The state of the run `call` belongs to (a call made outside a loop, with no run id,
        belongs to the one run this hook knows, if it knows exactly one)."""
        if call.run_id:
            return self._states.get(call.run_id)
        known = list(self._states.values())
        return known[0] if len(known) == 1 else None

    def on_loop_end(self, state: DefaultState, log: History, ctx: PromptContext, llm: Any) -> None:
        """Forget the run, so a later run's record is never confused with it."""
        if self._states.get(state.run_id) is state:
            del self._states[state.run_id]

    # -- asking ------------------------------------------------------------------------

    def _ask_now(self, tool_call: ToolCall, reason: str) -> tuple[bool, str | None, str]:
        """Call a sync handler once: (approved, why not, audit source)."""
        assert self.ask_handler is not None
        try:
            answer = self.ask_handler(tool_call, reason)
        except Exception as exc:
            return False, f"the ask_handler raised {type(exc).__name__}: {exc}", "error"
        if isinstance(answer, Awaitable):
            _close(answer)
            return (
                False,
                "the ask_handler returned an awaitable; an async handler must be an async def",
                "error",
            )
        approved, why = approval_verdict(answer)
        return approved, why, "handler"

    def _ask_async(
        self, state: DefaultState, tool_call: ToolCall, step: int, decision: PermissionDecision
    ) -> Awaitable[Deny | None] | Deny | None:
        """An async handler's answer, for the async loop to await (or a deny in the sync loop)."""
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            why = "the ask_handler is async and this run is not; use async_composable_loop"
            return self._settle_ask(state, tool_call, step, decision, (False, why, "error"))

        async def answer() -> Deny | None:
            assert self.ask_handler is not None
            try:
                pending = self.ask_handler(tool_call, decision.reason)
                reply = await asyncio.wait_for(pending, self.ask_timeout_s)
            except TimeoutError:
                late = f"the ask_handler did not answer within {self.ask_timeout_s:g}s"
                return self._settle_ask(state, tool_call, step, decision, (False, late, "error"))
            except Exception as exc:
                raised = f"the ask_handler raised {type(exc).__name__}: {exc}"
                return self._settle_ask(state, tool_call, step, decision, (False, raised, "error"))
            approved, why_not = approval_verdict(reply)
            return self._settle_ask(state, tool_call, step, decision, (approved, why_not, "handler"))

        return answer()

    def _settle_ask(
        self,
        state: DefaultState,
        tool_call: ToolCall,
        step: int,
        decision: PermissionDecision,
        answer: tuple[bool, str | None, str],
    ) -> Deny | None:
        """Audit the handler's answer as the call's one decision; a refusal is a `Deny`."""
        approved, why, source = answer
        if approved:
            approval = f"approved by the ask_handler: {decision.reason}"
            final = PermissionDecision("allow", approval, decision.rule)
        else:
            refusal = f"{decision.reason} - not approved by the ask_handler" + (f" ({why})" if why else "")
            final = PermissionDecision("deny", refusal, decision.rule)
        self._audit(state, tool_call, tool_call.args, step, final, phase="pre_dispatch", source=source)
        return None if approved else Deny(final.reason)

    # -- the check before the body ---------------------------------------------------

    def _recheck(self, state: DefaultState, call: PreparedCall) -> str | None:
        """Why the call must not run now, or None; audits any new decision."""
        last = self._last_entry(state, call.call.call_id)
        if last is not None and last.get("tool") != call.call.tool:
            last = None  # not this call: an id reused by another tool is never trusted
        hashes = {args_hash(call.call.args), args_hash(call.args)}
        step = int(last["step"]) if last is not None else _step_of(state, call)
        if last is not None and last["effect"] == "ask":
            return self._approved_call(state, call, last, hashes, step)
        if last is not None and last["args_hash"] in hashes:
            return None if last["effect"] == "allow" else str(last["reason"])  # the decision stands
        return self._fresh_decision(state, call, step, last is not None)

    def _fresh_decision(
        self, state: DefaultState, call: PreparedCall, step: int, rewritten: bool
    ) -> str | None:
        """Evaluate the final arguments (a rewrite after the check, or a call this hook never saw)."""
        decision = self.engine.decide(call.spec.name, call.args)
        if decision.effect == "ask":
            why = (
                "its arguments were rewritten after the permission check and"
                if rewritten
                else "this call did not pass the permission hook's pre_dispatch, so it"
            )
            reason = (
                f"{decision.reason} - {why} needs approval, which cannot be asked for right before "
                "the tool runs; denied (list rewriting hooks before the PermissionHook)"
            )
            decision = PermissionDecision("deny", reason, decision.rule, decision.source)
        self._audit(state, call.call, call.args, step, decision, phase="around_tool")
        return None if decision.effect == "allow" else decision.reason

    def _approved_call(
        self, state: DefaultState, call: PreparedCall, asked: dict[str, Any], hashes: set[str], step: int
    ) -> str | None:
        """A call this hook asked about: it runs if a human approved exactly these arguments."""
        pending = _approved_pending(state, call.call.call_id)
        if pending is None:
            decision = PermissionDecision(
                "deny",
                f"{asked['reason']} - no approval is on record for this call; denied, failing closed",
                str(asked["rule"]),
                "error",
            )
            self._audit(state, call.call, call.args, step, decision, phase="around_tool")
            return decision.reason
        approved = pending.args if pending.approved_args is None else pending.approved_args
        if args_hash(approved) not in hashes and asked["args_hash"] not in hashes:
            return self._fresh_decision(state, call, step, rewritten=True)  # rewritten after the approval
        edited = pending.approved_args is not None and args_hash(pending.approved_args) != pending.args_hash
        if edited:
            checked = self.engine.decide(call.spec.name, call.args)
            if checked.effect == "deny":
                self._audit(state, call.call, call.args, step, checked, phase="around_tool")
                return checked.reason
        how = "approved with edited arguments by a human" if edited else "approved by a human"
        decision = PermissionDecision("allow", f"{how}: {asked['reason']}", str(asked["rule"]))
        self._audit(state, call.call, call.args, step, decision, phase="around_tool", source="human")
        return None

    # -- the audit ---------------------------------------------------------------------

    def _audit(
        self,
        state: DefaultState,
        tool_call: ToolCall,
        args: dict[str, Any],
        step: int,
        decision: PermissionDecision,
        *,
        phase: str,
        source: str | None = None,
    ) -> None:
        entry = {
            "call_id": tool_call.call_id,
            "tool": tool_call.tool,
            "args_hash": args_hash(args),
            "effect": decision.effect,
            "reason": decision.reason,
            "rule": decision.rule,
            "source": source or decision.source,
            "step": step,
            "phase": phase,
            "gate": self.name,
        }
        _audit_list(state).append(entry)

    def _last_entry(self, state: DefaultState, call_id: str) -> dict[str, Any] | None:
        for entry in reversed(_audit_list(state)):
            if isinstance(entry, dict) and entry.get("call_id") == call_id and entry.get("gate") == self.name:
                return entry
        return None


def _audit_list(state: DefaultState) -> list[dict[str, Any]]:
    audit = state.metadata.setdefault(AUDIT_KEY, [])
    if not isinstance(audit, list):
        kind = type(audit).__name__
        raise ConfigError(f"state.metadata[{AUDIT_KEY!r}] must be the permission audit list, got {kind}")
    return audit


def _approved_pending(state: DefaultState, call_id: str) -> PendingCall | None:
    for pending in state.pending:
        if pending.call_id == call_id and pending.decision == "approved":
            return pending
    return None


def _step_of(state: DefaultState, call: PreparedCall) -> int:
    """The step a call belongs to: its ToolContext knows; otherwise the next step's number."""
    if call.ctx is not None:
        return call.ctx.step
    return len(state.steps) + 1


def _refused(call: PreparedCall, reason: str) -> ToolResult:
    text = f"denied: {reason}. Do not retry this call; take another approach."
    return error_result(call.call, ErrorKind.DENIED, text, denied_by="PermissionHook")
