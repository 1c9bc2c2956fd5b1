"""`ApprovalHook`: the calls that need a person's yes, asked for before they run.

Which calls: tools named in `tools`, calls a `when` predicate picks, or calls a
permission engine's ``ask`` rule matches. How they are answered:

- with no `handler`, the hook returns ``Ask(reason)``: the run pauses with
  ``approval_pending``, the record can be saved, and a person decides with
  ``state.approve(call_id, args=None)`` / ``state.reject(call_id, reason)``, in
  this process or another, before the run is continued (`docs/durability.md`);
- with a `handler` (a terminal prompt, a chat message that waits for a reply),
  it is asked on the spot. Only ``True`` or ``Allow()`` approves;
  ``Allow(updated_args=...)`` approves edited arguments (validated again before
  the tool runs); anything else refuses, and so does a handler that raises or
  returns a coroutine: approval fails closed, as ``ctx.approve`` does.

Every answer a handler gives is kept in ``state.metadata["approval_audit"]``,
part of the run record; paused calls keep theirs on the step
(``step.metadata["approval"]``).

"Always" (RELIABILITY G8): a handler that answers `ALWAYS`, or a person who
decides with ``state.approve(call_id, always=True)``, approves this call and
every later call of the same tool in this run, and no other tool. The scope is
kept in ``state.metadata["approval_always"]``, so it is saved with the record
and a continued run honours it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigError
from .hooks.decisions import Allow, Ask, Deny
from .state import ALWAYS_KEY, remember_always
from .types import ToolCall, args_hash, format_args

__all__ = ["ApprovalHook", "ALWAYS"]

AUDIT_KEY = "approval_audit"


class _Always:
    """A handler's answer: yes, and yes to every later call of this tool in this run."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ALWAYS"


ALWAYS = _Always()


class ApprovalHook:
    """Ask a person before the calls that need it run (see the module docstring).

    Args:
        tools: names of tools whose every call needs approval.
        when: ``when(tool_call) -> bool``: other calls that need it.
        permissions: an engine with ``decide(tool, args)`` (a `PermissionEngine`);
            calls it answers ``ask`` need approval.
        handler: ``handler(tool_call, reason)`` answers on the spot; without one
            the run pauses for the decision.
        reason: the question shown to the person: a string, or
            ``reason(tool_call) -> str``; by default the call itself.

    Raises:
        ConfigError: nothing would ever need approval, or an argument has the wrong type.
    """

    def __init__(
        self,
        tools: Iterable[str] = (),
        *,
        when: Callable[[ToolCall], Any] | None = None,
        permissions: Any = None,
        handler: Callable[[ToolCall, str], Any] | None = None,
        reason: str | Callable[[ToolCall], str] | None = None,
    ) -> None:
        if isinstance(tools, str):
            raise ConfigError(f"tools must be a list of tool names, not the string {tools!r}")
        self.tools = frozenset(tools)
        if not all(isinstance(t, str) for t in self.tools):
            raise ConfigError("tools must be tool names (strings)")
        if when is not None and not callable(when):
            raise ConfigError(f"when must be a function of the tool call, got {type(when).__name__}")
        if permissions is not None and not callable(getattr(permissions, "decide", None)):
            raise ConfigError("permissions must have decide(tool, args), e.g. a PermissionEngine")
        if handler is not None and not callable(handler):
            raise ConfigError(f"handler must be callable, got {type(handler).__name__}")
        if not (self.tools or when or permissions):
            raise ConfigError("ApprovalHook needs tools=, when= or permissions= (which calls need approval)")
        self.when = when
        self.permissions = permissions
        self.handler = handler
        self.reason = reason

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        question = self._question(tool_call)
        if question is None or _always_approved(state, tool_call.tool):
            return None
        if self.handler is None:
            return Ask(question)
        return self._answer_now(state, tool_call, question, step)

    def _question(self, call: ToolCall) -> str | None:
        """Why `call` needs approval (what the person reads), or None if it does not."""
        if not self._needs_approval(call):
            return None
        if callable(self.reason):
            return str(self.reason(call))
        if isinstance(self.reason, str):
            return self.reason
        return f"approve {call.tool}({format_args(call.args)})?"

    def _needs_approval(self, call: ToolCall) -> bool:
        if call.tool in self.tools:
            return True
        if self.when is not None and self.when(call):  # any truthy answer asks: fail towards asking
            return True
        if self.permissions is not None:
            decision = self.permissions.decide(call.tool, call.args)
            return getattr(decision, "effect", None) == "ask"
        return False

    def _answer_now(self, state: Any, call: ToolCall, question: str, step: int) -> Any:
        """Ask the handler; only True or Allow() approves, and everything else refuses."""
        assert self.handler is not None
        why: str | None
        try:
            answer = self.handler(call, question)
        except Exception as exc:
            answer, why = None, f"the approval handler raised {type(exc).__name__}: {exc}"
        else:
            why = _why_refused(answer)
        if answer is ALWAYS and hasattr(state, "metadata"):
            remember_always(state, call.tool)
        approved = why is None
        edited = isinstance(answer, Allow) and answer.updated_args is not None
        _audit(state, call, step, "approved" if approved else "refused", why or "", edited)
        if answer is ALWAYS:
            state.metadata[AUDIT_KEY][-1]["always"] = True
        if not approved:
            return Deny(f"not approved: {why}")
        return answer if edited else None


def _why_refused(answer: Any) -> str | None:
    """None when `answer` approves; otherwise what the person (or the handler) said, in words."""
    if answer is True or answer is ALWAYS or isinstance(answer, Allow):
        return None
    if inspect.isawaitable(answer):
        close = getattr(answer, "close", None)
        if callable(close):
            close()
        return "the approval handler is async; ApprovalHook needs a plain function that answers"
    if isinstance(answer, Deny):
        return str(answer.reason)
    if answer is False or answer is None:
        return "the person said no"
    return f"the approval handler answered {type(answer).__name__} {answer!r:.40}, not True or Allow()"


def _always_approved(state: Any, tool: str) -> bool:
    metadata = getattr(state, "metadata", None)
    tools = metadata.get(ALWAYS_KEY) if isinstance(metadata, dict) else None
    return isinstance(tools, list) and tool in tools


def _audit(state: Any, call: ToolCall, step: int, decision: str, why: str, edited: bool) -> None:
    metadata = getattr(state, "metadata", None)
    if not isinstance(metadata, dict):
        return
    if not isinstance(metadata.get(AUDIT_KEY), list):
        metadata[AUDIT_KEY] = []
    entry = {
        "call_id": call.call_id,
        "tool": call.tool,
        "args_hash": args_hash(call.args),
        "decision": decision,
        "by": "handler",
        "step": step,
    }
    if why:
        entry["reason"] = why
    if edited:
        entry["edited"] = True
    metadata[AUDIT_KEY].append(entry)
