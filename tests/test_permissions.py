"""PermissionEngine and PermissionHook: precedence, fail-closed, final arguments, once per call, the audit.

Reliability rows G1-G5 and G10 (precedence), INV-4 (a denied body never runs).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from doubles import Driver, as_text, batch, done

from looplet import (
    Allow,
    Ask,
    BaseToolRegistry,
    DefaultState,
    Deny,
    MockLLMBackend,
    ToolCall,
    composable_loop,
    register_done_tool,
)
from looplet.errors import ConfigError
from looplet.permissions import AUDIT_KEY, PermissionEngine, PermissionHook
from looplet.types import args_hash


class Kit:
    """Tools whose bodies record every run: `read`, `delete` (path) and `db_query` (sql)."""

    def __init__(self, *, concurrent_safe: bool = False) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.tools = BaseToolRegistry()

        @self.tools.tool(concurrent_safe=concurrent_safe)
        def read(path: str) -> dict[str, str]:
            """Read a file."""
            self.ran.append(("read", {"path": path}))
            return {"text": "..."}

        @self.tools.tool(concurrent_safe=concurrent_safe)
        def delete(path: str) -> dict[str, bool]:
            """Delete a file."""
            self.ran.append(("delete", {"path": path}))
            return {"deleted": True}

        @self.tools.tool
        def db_query(sql: str) -> dict[str, int]:
            """Run a query."""
            self.ran.append(("db_query", {"sql": sql}))
            return {"rows": 0}

        register_done_tool(self.tools)

    def count(self, tool: str) -> int:
        return sum(1 for name, _ in self.ran if name == tool)


def engine(default: str = "deny") -> PermissionEngine:
    """An engine that always lets `done` through, so runs can finish."""
    return PermissionEngine(default=default).allow("done")


def audit(state: DefaultState) -> list[dict[str, Any]]:
    entries = state.metadata.get(AUDIT_KEY, [])
    assert isinstance(entries, list)
    return entries


def entries_for(state: DefaultState, tool: str) -> list[dict[str, Any]]:
    return [e for e in audit(state) if e["tool"] == tool]


class Rewrite:
    """A pre_dispatch hook that rewrites the `path` of `tool` calls."""

    def __init__(self, tool: str, path: str) -> None:
        self.tool, self.path = tool, path

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        if tool_call.tool == self.tool:
            return Allow(updated_args={**tool_call.args, "path": self.path})
        return None


class CountingHandler:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    def __call__(self, tool_call: ToolCall, reason: str) -> Any:
        self.asked.append((tool_call.tool, reason))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


# -- the engine ------------------------------------------------------------------------


def test_an_engine_without_a_default_denies_a_call_no_rule_matches() -> None:
    decision = PermissionEngine().allow("read").decide("delete", {"path": "/a"})
    assert (decision.effect, decision.rule, decision.source) == ("deny", "default", "default")
    assert "no permission rule allows 'delete'" in decision.reason


@pytest.mark.parametrize("default", ["allow", "ask"])
def test_a_default_other_than_deny_is_an_explicit_choice(default: str) -> None:
    decision = PermissionEngine(default=default).decide("delete", {})
    assert (decision.effect, decision.source) == (default, "default")


@pytest.mark.parametrize("default", ["ALLOW", "yes", "", None, True])
def test_a_default_that_is_not_an_effect_is_a_config_error(default: Any) -> None:
    with pytest.raises(ConfigError, match="default must be"):
        PermissionEngine(default=default)


@pytest.mark.parametrize(
    ("effect", "tool", "matcher", "reason", "message"),
    [
        ("permit", "read", None, "", "effect must be"),
        ("allow", 5, None, "", "tool must be a tool name or glob"),
        ("allow", "", None, "", "tool must be a tool name or glob"),
        ("allow", ["read"], None, "", "tool must be a tool name or glob"),
        ("deny", "read", "path == '/etc'", "", "arg_matcher must be a callable"),
        ("ask", "read", None, 3, "reason must be a str"),
    ],
)
def test_a_bad_rule_is_refused_when_added(
    effect: str, tool: Any, matcher: Any, reason: Any, message: str
) -> None:
    permissions = PermissionEngine()
    with pytest.raises(ConfigError, match=message):
        permissions.add_rule(effect, tool, matcher, reason)
    assert permissions.rules == ()


def test_rules_chain_and_keep_the_order_written() -> None:
    permissions = PermissionEngine().allow("read").deny("delete", reason="no").ask("db_*")
    assert [(r.effect, r.tool, r.position) for r in permissions.rules] == [
        ("allow", "read", 1),
        ("deny", "delete", 2),
        ("ask", "db_*", 3),
    ]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([("allow", "*"), ("deny", "delete")], "deny"),
        ([("deny", "delete"), ("allow", "*")], "deny"),
        ([("allow", "delete"), ("ask", "delete")], "ask"),
        ([("ask", "*"), ("allow", "delete")], "ask"),
        ([("ask", "delete"), ("deny", "del*")], "deny"),
        ([("allow", "delete"), ("ask", "*"), ("deny", "d?lete")], "deny"),
        ([("allow", "del*")], "allow"),
    ],
)
def test_deny_beats_ask_beats_allow_whatever_the_order_written(
    rules: list[tuple[str, str]], expected: str
) -> None:
    permissions = PermissionEngine()
    for effect, tool in rules:
        permissions.add_rule(effect, tool)
    assert permissions.decide("delete", {"path": "/a"}).effect == expected


def test_tool_patterns_are_case_sensitive_globs() -> None:
    permissions = PermissionEngine().allow("db_*").allow("re?d")
    assert permissions.decide("db_query", {}).effect == "allow"
    assert permissions.decide("DB_query", {}).effect == "deny"
    assert permissions.decide("read", {}).effect == "allow"
    assert permissions.decide("reads", {}).effect == "deny"


def test_a_matcher_narrows_a_rule_to_some_arguments() -> None:
    permissions = PermissionEngine().allow("read").deny("read", lambda a: a["path"].startswith("/etc"))
    assert permissions.decide("read", {"path": "/tmp/x"}).effect == "allow"
    denied = permissions.decide("read", {"path": "/etc/passwd"})
    assert denied.effect == "deny" and denied.rule.startswith("#2 deny 'read' if ")


def test_a_rule_reason_is_the_decision_reason() -> None:
    permissions = PermissionEngine().deny("delete", reason="the archive is read-only")
    assert permissions.decide("delete", {}).reason == "the archive is read-only"


def test_a_matcher_cannot_change_the_arguments_it_is_shown() -> None:
    def meddle(args: dict[str, Any]) -> bool:
        args["path"] = "/elsewhere"
        args.setdefault("extra", []).append(1)
        return True

    args = {"path": "/a"}
    PermissionEngine().allow("read", meddle).decide("read", args)
    assert args == {"path": "/a"}


def _raises(args: dict[str, Any]) -> bool:
    raise KeyError("path")


async def _coroutine_matcher(args: dict[str, Any]) -> bool:
    return True


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        (_raises, "raised KeyError"),
        (lambda a: None, "returned NoneType None, not a bool"),
        (lambda a: "yes", "returned str 'yes', not a bool"),
        (lambda a: 1, "returned int 1, not a bool"),
        (_coroutine_matcher, "returned coroutine"),
    ],
    ids=["raises", "none", "str", "int", "coroutine"],
)
def test_a_matcher_that_fails_makes_the_decision_deny_naming_the_rule(matcher: Any, expected: str) -> None:
    permissions = PermissionEngine(default="allow").allow("*").allow("read", matcher)
    decision = permissions.decide("read", {"path": "/a"})
    assert (decision.effect, decision.source) == ("deny", "error")
    assert "#2 allow 'read' if " in decision.reason and expected in decision.reason
    assert permissions.decide("delete", {}).effect == "allow"  # the rule does not cover delete


# -- the hook in a run -----------------------------------------------------------------


def test_a_run_with_no_matching_rule_never_runs_the_tool(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    llm = MockLLMBackend([as_text("delete", path="/a"), done()])
    steps, result = drive(llm, tools=kit.tools, hooks=[PermissionHook(engine())], state=state)
    assert kit.ran == [] and result.stop_reason == "done"
    assert steps[0].tool_result.error_kind == "denied"
    assert "no permission rule allows 'delete'" in (steps[0].tool_result.error or "")
    assert [(e["tool"], e["effect"], e["source"]) for e in audit(state)] == [
        ("delete", "deny", "default"),
        ("done", "allow", "rule"),
    ]


def test_deny_listed_after_a_broad_allow_still_keeps_the_body_from_running(drive: Driver) -> None:
    kit = Kit()
    permissions = PermissionEngine().allow("*").deny("delete", reason="deleting is off")
    llm = MockLLMBackend([as_text("delete", path="/a"), as_text("read", path="/a"), done()])
    steps, _ = drive(llm, tools=kit.tools, hooks=[PermissionHook(permissions)])
    assert kit.ran == [("read", {"path": "/a"})]
    assert "denied: deleting is off" in (steps[0].tool_result.error or "")
    assert steps[0].tool_result.metadata["denied_by"] == "PermissionHook"


def test_a_matcher_that_raises_denies_the_call_and_is_audited_once(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    permissions = engine().allow("read", _raises)
    llm = MockLLMBackend([as_text("read", path="/a"), done()])
    steps, _ = drive(llm, tools=kit.tools, hooks=[PermissionHook(permissions)], state=state)
    assert kit.ran == []
    assert "raised KeyError" in (steps[0].tool_result.error or "")
    (entry,) = entries_for(state, "read")
    assert (entry["effect"], entry["source"], entry["rule"]) == (
        "deny",
        "error",
        "#2 allow 'read' if _raises",
    )


# -- ask, with a handler ---------------------------------------------------------------


async def _late_coroutine() -> bool:
    return True


@pytest.mark.parametrize(
    ("answer", "source", "why"),
    [
        (RuntimeError("terminal closed"), "error", "raised RuntimeError: terminal closed"),
        ("yes", "handler", "returned str 'yes'"),
        (1, "handler", "returned int 1"),
        (None, "handler", "not approved by the ask_handler"),
        (False, "handler", "not approved by the ask_handler"),
        (Deny("not today"), "handler", "not today"),
        ("coroutine", "error", "returned an awaitable"),
    ],
    ids=["raises", "str", "int", "none", "false", "deny", "coroutine"],
)
def test_an_ask_handler_that_does_not_say_yes_denies_and_is_audited_once(
    drive: Driver, answer: Any, source: str, why: str
) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    handler = CountingHandler(answer)
    if answer == "coroutine":
        handler = CountingHandler(None)
        handler.answer = _late_coroutine()
    permissions = engine().ask("delete", reason="delete /a?")
    llm = MockLLMBackend([as_text("delete", path="/a"), done()])
    steps, result = drive(llm, tools=kit.tools, hooks=[PermissionHook(permissions, handler)], state=state)
    assert kit.ran == [] and result.stop_reason == "done"
    assert len(handler.asked) == 1
    assert steps[0].tool_result.error_kind == "denied" and why in (steps[0].tool_result.error or "")
    (entry,) = entries_for(state, "delete")
    assert (entry["effect"], entry["source"], entry["phase"]) == ("deny", source, "pre_dispatch")


@pytest.mark.parametrize("answer", [True, Allow()], ids=repr)
def test_an_ask_handler_that_approves_runs_the_call_once(drive: Driver, answer: Any) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    handler = CountingHandler(answer)
    permissions = engine().ask("delete", reason="delete?")
    llm = MockLLMBackend([as_text("delete", path="/a"), done()])
    drive(llm, tools=kit.tools, hooks=[PermissionHook(permissions, handler)], state=state)
    assert kit.ran == [("delete", {"path": "/a"})]
    assert handler.asked == [("delete", "delete?")]
    (entry,) = entries_for(state, "delete")
    assert (entry["effect"], entry["source"]) == ("allow", "handler")
    assert entry["reason"] == "approved by the ask_handler: delete?"


def test_the_ask_handler_is_called_exactly_once_per_call_needing_ask(drive: Driver) -> None:
    kit = Kit()
    handler = CountingHandler(True)
    evaluated: list[str] = []

    def counted(args: dict[str, Any]) -> bool:
        evaluated.append(args["path"])
        return True

    permissions = engine().allow("read", counted).ask("delete")
    script = [
        as_text("delete", path="/a"),
        as_text("read", path="/b"),
        as_text("delete", path="/c"),
        as_text("read", path="/d"),
        done(),
    ]
    drive(MockLLMBackend(script), tools=kit.tools, hooks=[PermissionHook(permissions, handler)])
    assert len(handler.asked) == 2 == kit.count("delete")
    assert evaluated == ["/b", "/d"]  # once per call: the check before the body does not evaluate again


def test_an_async_ask_handler_is_awaited_in_the_async_loop() -> None:
    kit = Kit()
    asked: list[str] = []

    async def handler(tool_call: ToolCall, reason: str) -> bool:
        await asyncio.sleep(0)
        asked.append(tool_call.args["path"])
        return bool(tool_call.args["path"] != "/keep")

    permissions = engine().ask("delete")
    script = [as_text("delete", path="/a"), as_text("delete", path="/keep"), done()]
    steps, result = Driver("async")(
        MockLLMBackend(script), tools=kit.tools, hooks=[PermissionHook(permissions, handler)]
    )
    assert asked == ["/a", "/keep"] and kit.ran == [("delete", {"path": "/a"})]
    assert steps[1].tool_result.error_kind == "denied" and result.stop_reason == "done"


def test_an_async_ask_handler_that_does_not_answer_in_time_denies() -> None:
    kit = Kit()
    state = DefaultState(task="t")

    async def handler(tool_call: ToolCall, reason: str) -> bool:
        await asyncio.Event().wait()  # never set
        return True

    hook = PermissionHook(engine().ask("delete"), handler, ask_timeout_s=0.01)
    steps, _ = Driver("async")(
        MockLLMBackend([as_text("delete", path="/a"), done()]), tools=kit.tools, hooks=[hook], state=state
    )
    assert kit.ran == [] and "did not answer within 0.01s" in (steps[0].tool_result.error or "")
    (entry,) = entries_for(state, "delete")
    assert (entry["effect"], entry["source"]) == ("deny", "error")


def test_an_async_ask_handler_in_the_sync_loop_denies_saying_why() -> None:
    kit = Kit()
    called: list[str] = []

    async def handler(tool_call: ToolCall, reason: str) -> bool:
        called.append(reason)
        return True

    hook = PermissionHook(engine().ask("delete"), handler)
    steps, _ = Driver("sync")(
        MockLLMBackend([as_text("delete", path="/a"), done()]), tools=kit.tools, hooks=[hook]
    )
    assert kit.ran == [] and called == []
    assert "use async_composable_loop" in (steps[0].tool_result.error or "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "deny everything"}, "needs a PermissionEngine"),
        ({"engine": PermissionEngine(), "ask_handler": "yes"}, "ask_handler must be callable"),
        ({"engine": PermissionEngine(), "ask_timeout_s": 0}, "ask_timeout_s must be a positive"),
        ({"engine": PermissionEngine(), "ask_timeout_s": True}, "ask_timeout_s must be a positive"),
        ({"engine": PermissionEngine(), "name": ""}, "name must be a non-empty str"),
    ],
)
def test_a_permission_hook_with_a_bad_setting_is_a_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PermissionHook(**kwargs)


# -- final arguments (G4) --------------------------------------------------------------


def test_a_rewrite_after_the_permission_check_is_checked_again_before_the_body(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    permissions = engine().allow("read").deny("read", lambda a: a["path"].startswith("/etc"))
    hooks = [PermissionHook(permissions), Rewrite("read", "/etc/shadow")]
    llm = MockLLMBackend([as_text("read", path="/tmp/notes"), done()])
    steps, _ = drive(llm, tools=kit.tools, hooks=hooks, state=state)
    assert kit.ran == []
    result = steps[0].tool_result
    assert result.error_kind == "denied" and "#3 deny 'read' if " in (result.error or "")
    first, second = entries_for(state, "read")
    assert (first["effect"], first["phase"], first["args_hash"]) == (
        "allow",
        "pre_dispatch",
        args_hash({"path": "/tmp/notes"}),
    )
    assert (second["effect"], second["phase"], second["args_hash"]) == (
        "deny",
        "around_tool",
        args_hash({"path": "/etc/shadow"}),
    )


def test_a_rewrite_after_the_check_that_would_need_approval_is_denied(drive: Driver) -> None:
    kit = Kit()
    handler = CountingHandler(True)
    permissions = engine().allow("read").ask("read", lambda a: a["path"].startswith("/home"))
    hooks = [PermissionHook(permissions, handler), Rewrite("read", "/home/me/.ssh/id_rsa")]
    steps, _ = drive(MockLLMBackend([as_text("read", path="/tmp/x"), done()]), tools=kit.tools, hooks=hooks)
    assert kit.ran == [] and handler.asked == []
    assert "rewritten after the permission check" in (steps[0].tool_result.error or "")


def test_a_rewrite_after_the_check_to_allowed_arguments_runs_them(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    permissions = engine().allow("read", lambda a: a["path"].startswith("/tmp"))
    hooks = [PermissionHook(permissions), Rewrite("read", "/tmp/safe")]
    drive(MockLLMBackend([as_text("read", path="/tmp/x"), done()]), tools=kit.tools, hooks=hooks, state=state)
    assert kit.ran == [("read", {"path": "/tmp/safe"})]
    assert [e["effect"] for e in entries_for(state, "read")] == ["allow", "allow"]


def test_a_rewrite_before_the_permission_hook_is_what_is_checked(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    permissions = engine().allow("read").deny("read", lambda a: a["path"].startswith("/etc"))
    hooks = [Rewrite("read", "/etc/passwd"), PermissionHook(permissions)]
    drive(MockLLMBackend([as_text("read", path="/tmp/x"), done()]), tools=kit.tools, hooks=hooks, state=state)
    assert kit.ran == []
    (entry,) = entries_for(state, "read")
    assert (entry["effect"], entry["phase"]) == ("deny", "pre_dispatch")


# -- ask without a handler: the durable pause --------------------------------------------


def _paused_run(drive: Driver, kit: Kit, permissions: PermissionEngine) -> DefaultState:
    """A run paused on `delete /a`, saved as JSON and loaded back (as another process would)."""
    state = DefaultState(task="t", run_id="perm-1")
    llm = MockLLMBackend([as_text("delete", path="/a")])
    _, result = drive(llm, tools=kit.tools, hooks=[PermissionHook(permissions)], state=state)
    assert result.stop_reason == "approval_pending" and kit.ran == []
    loaded: DefaultState = DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))
    return loaded


def test_ask_without_a_handler_pauses_the_run_with_the_rule_reason(drive: Driver) -> None:
    kit = Kit()
    saved = _paused_run(drive, kit, engine().ask("delete", reason="delete /a for good?"))
    (pending,) = saved.pending
    assert (pending.tool, pending.reason, pending.decision) == ("delete", "delete /a for good?", None)
    (entry,) = audit(saved)
    assert (entry["effect"], entry["source"], entry["reason"]) == ("ask", "rule", "delete /a for good?")


def test_an_approved_call_runs_once_in_a_fresh_hook_and_the_audit_goes_on(drive: Driver) -> None:
    kit = Kit()
    permissions = engine().ask("delete", reason="delete?")
    saved = _paused_run(drive, kit, permissions)
    saved.approve(saved.pending[0].call_id)
    _, result = drive(
        MockLLMBackend([done()]), tools=kit.tools, hooks=[PermissionHook(permissions)], state=saved
    )
    assert result.stop_reason == "done" and kit.ran == [("delete", {"path": "/a"})]
    assert [(e["tool"], e["effect"], e["source"]) for e in audit(saved)] == [
        ("delete", "ask", "rule"),
        ("delete", "allow", "human"),
        ("done", "allow", "rule"),
    ]
    assert audit(saved)[1]["reason"] == "approved by a human: delete?"


def test_a_rejected_call_never_runs(drive: Driver) -> None:
    kit = Kit()
    permissions = engine().ask("delete")
    saved = _paused_run(drive, kit, permissions)
    saved.reject(saved.pending[0].call_id, "not that file")
    steps, result = drive(
        MockLLMBackend([done()]), tools=kit.tools, hooks=[PermissionHook(permissions)], state=saved
    )
    assert kit.ran == [] and result.stop_reason == "done"
    assert "not that file" in (steps[0].tool_result.error or "")


def test_an_approval_with_edited_arguments_runs_the_edit(drive: Driver) -> None:
    kit = Kit()
    permissions = engine().ask("delete")
    saved = _paused_run(drive, kit, permissions)
    saved.approve(saved.pending[0].call_id, args={"path": "/a.bak"})
    drive(MockLLMBackend([done()]), tools=kit.tools, hooks=[PermissionHook(permissions)], state=saved)
    assert kit.ran == [("delete", {"path": "/a.bak"})]
    human = [e for e in audit(saved) if e["source"] == "human"]
    assert [e["reason"] for e in human] == [
        "approved with edited arguments by a human: delete needs approval (permission rule #2 ask 'delete')"
    ]


def test_a_deny_rule_wins_over_an_approval_edited_into_denied_arguments(drive: Driver) -> None:
    kit = Kit()
    permissions = engine().ask("delete").deny("delete", lambda a: a["path"] == "/", reason="never the root")
    saved = _paused_run(drive, kit, permissions)
    saved.approve(saved.pending[0].call_id, args={"path": "/"})
    steps, _ = drive(
        MockLLMBackend([done()]), tools=kit.tools, hooks=[PermissionHook(permissions)], state=saved
    )
    assert kit.ran == [] and "never the root" in (steps[0].tool_result.error or "")
    assert [e["effect"] for e in entries_for(saved, "delete")] == ["ask", "deny"]


def test_a_rewrite_after_an_approval_is_checked_again(drive: Driver) -> None:
    kit = Kit()
    permissions = engine().ask("delete")
    saved = _paused_run(drive, kit, permissions)
    saved.approve(saved.pending[0].call_id)
    hooks = [PermissionHook(permissions), Rewrite("delete", "/everything")]
    steps, _ = drive(MockLLMBackend([done()]), tools=kit.tools, hooks=hooks, state=saved)
    assert kit.ran == [] and "rewritten after the permission check" in (steps[0].tool_result.error or "")


class AskAboutReads:
    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        return Ask("read this?") if tool_call.tool == "read" else None


def test_an_edit_approved_for_another_gate_is_still_checked_by_the_rules(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    permissions = engine().allow("read").deny("read", lambda a: a["path"].startswith("/etc"))
    hooks = [PermissionHook(permissions), AskAboutReads()]
    _, result = drive(
        MockLLMBackend([as_text("read", path="/tmp/x")]), tools=kit.tools, hooks=hooks, state=state
    )
    assert result.stop_reason == "approval_pending"
    state.approve(state.pending[0].call_id, args={"path": "/etc/shadow"})
    steps, _ = drive(MockLLMBackend([done()]), tools=kit.tools, hooks=hooks, state=state)
    assert kit.ran == [] and steps[0].tool_result.error_kind == "denied"
    assert [(e["effect"], e["phase"]) for e in entries_for(state, "read")] == [
        ("allow", "pre_dispatch"),
        ("deny", "around_tool"),
    ]


def test_an_approved_run_passed_back_twice_runs_the_call_once(drive: Driver) -> None:
    kit = Kit()
    permissions = engine().ask("delete")
    saved = _paused_run(drive, kit, permissions)
    saved.approve(saved.pending[0].call_id)
    hook = PermissionHook(permissions)
    drive(MockLLMBackend([]), tools=kit.tools, hooks=[hook], state=saved, max_steps=1)
    drive(MockLLMBackend([done()]), tools=kit.tools, hooks=[hook], state=saved, max_steps=2)
    assert kit.ran == [("delete", {"path": "/a"})]
    assert [e["source"] for e in entries_for(saved, "delete")] == ["rule", "human"]


def test_the_audit_is_json_data_in_the_saved_record(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    permissions = engine().allow("read").deny("delete").ask("db_*", lambda a: "drop" in a["sql"])
    hook = PermissionHook(permissions, CountingHandler(False))
    script = [
        as_text("read", path="/a"),
        as_text("delete", path="/a"),
        as_text("db_query", sql="drop table t"),
        done(),
    ]
    drive(MockLLMBackend(script), tools=kit.tools, hooks=[hook], state=state)
    loaded = DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert audit(loaded) == audit(state)
    assert [(e["tool"], e["effect"], e["source"], e["step"]) for e in audit(loaded)] == [
        ("read", "allow", "rule", 1),
        ("delete", "deny", "rule", 2),
        ("db_query", "deny", "handler", 3),
        ("done", "allow", "rule", 4),
    ]
    assert set(audit(loaded)[0]) == {
        "call_id", "tool", "args_hash", "effect", "reason", "rule", "source", "step", "phase", "gate",
    }  # fmt: skip


def test_each_call_of_a_concurrent_batch_is_decided_and_audited_once(drive: Driver) -> None:
    kit = Kit(concurrent_safe=True)
    state = DefaultState(task="t")
    permissions = engine().allow("read").deny("read", lambda a: a["path"] == "/b")
    reply = batch(("read", {"path": "/a"}), ("read", {"path": "/b"}), ("read", {"path": "/c"}))
    hooks = [PermissionHook(permissions)]
    drive(MockLLMBackend([reply, done()]), tools=kit.tools, hooks=hooks, state=state)
    assert sorted(args["path"] for _, args in kit.ran) == ["/a", "/c"]
    assert [e["effect"] for e in entries_for(state, "read")] == ["allow", "deny", "allow"]
    assert len({e["call_id"] for e in entries_for(state, "read")}) == 3


def test_two_permission_hooks_keep_their_own_audit_entries(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t")
    project = PermissionHook(engine().allow("read"), name="project")
    user = PermissionHook(engine().allow("read").deny("read", lambda a: a["path"] == "/tmp/y"), name="user")
    hooks = [project, Rewrite("read", "/tmp/y"), user]
    steps, _ = drive(
        MockLLMBackend([as_text("read", path="/x"), done()]), tools=kit.tools, hooks=hooks, state=state
    )
    assert kit.ran == [] and steps[0].tool_result.error_kind == "denied"
    assert [(e["gate"], e["effect"]) for e in entries_for(state, "read")] == [
        ("project", "allow"),
        ("user", "deny"),
    ]


def test_an_audit_slot_holding_something_else_stops_the_run_before_the_body(drive: Driver) -> None:
    kit = Kit()
    state = DefaultState(task="t", metadata={AUDIT_KEY: "mine"})
    llm = MockLLMBackend([as_text("read", path="/a"), done()])
    _, result = drive(llm, tools=kit.tools, hooks=[PermissionHook(engine().allow("read"))], state=state)
    assert kit.ran == [] and result.stop_reason == "hook_error"


# -- around_tool alone ----------------------------------------------------------------------


def _prepared(kit: Kit, tool: str, call_id: str = "c1", **args: Any) -> Any:
    prepared = kit.tools.prepare(ToolCall(tool=tool, args=args, call_id=call_id))
    assert not hasattr(prepared, "error_kind")
    return prepared


def test_a_call_the_hook_never_saw_is_decided_before_its_body() -> None:
    kit = Kit()
    state = DefaultState(task="t")
    hook = PermissionHook(engine().allow("read").ask("delete"))
    hook.pre_loop(state, state.history, None)  # type: ignore[arg-type]
    proceeded: list[str] = []

    def proceed() -> str:
        proceeded.append("ran")
        return "result"

    assert hook.around_tool(_prepared(kit, "read", path="/a"), proceed) == "result"
    refused = hook.around_tool(_prepared(kit, "delete", "c2", path="/a"), proceed)
    assert proceeded == ["ran"] and refused.error_kind == "denied"
    assert "did not pass the permission hook's pre_dispatch" in refused.error
    assert [(e["tool"], e["effect"], e["phase"]) for e in audit(state)] == [
        ("read", "allow", "around_tool"),
        ("delete", "deny", "around_tool"),
    ]


def test_a_call_id_reused_by_another_tool_is_decided_afresh() -> None:
    kit = Kit()
    state = DefaultState(task="t")
    hook = PermissionHook(engine().allow("read"))
    hook.pre_loop(state, state.history, None)  # type: ignore[arg-type]
    assert hook.around_tool(_prepared(kit, "read", path="/a"), lambda: "ran") == "ran"
    refused = hook.around_tool(_prepared(kit, "delete", path="/a"), lambda: "ran")
    assert refused != "ran" and refused.error_kind == "denied"


def test_a_hook_that_saw_no_run_start_refuses_to_run_anything() -> None:
    kit = Kit()
    hook = PermissionHook(PermissionEngine(default="allow"))
    refused = hook.around_tool(_prepared(kit, "read", path="/a"), lambda: pytest.fail("the body ran"))
    assert refused.error_kind == "denied" and "saw no run start" in refused.error


def test_the_loop_wires_the_hook_without_warnings() -> None:
    kit = Kit()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop = composable_loop(
            MockLLMBackend([done()]), tools=kit.tools, task="t", hooks=[PermissionHook(engine())]
        )
    assert list(loop)[0].tool_result.ok


def test_runs_sharing_one_hook_are_each_checked_against_their_own_record() -> None:
    """One hook serving two runs at once (a sub-agent inherits its parent's gates): a call's final
    check reads the record of the run the call belongs to, even when another run's call was
    decided in between (as in a concurrent batch whose sibling starts a sub-agent)."""
    kit = Kit()
    hook = PermissionHook(engine().allow("read"))
    parent, child = DefaultState(task="parent"), DefaultState(task="child")
    hook.pre_loop(parent, parent.history, None)  # type: ignore[arg-type]
    read = ToolCall("read", {"path": "/a"}, call_id="c1")
    assert hook.pre_dispatch(parent, parent.history, read, 1) is None
    assert hook.pre_dispatch(child, child.history, ToolCall("read", {"path": "/z"}, call_id="c9"), 1) is None
    prepared = _prepared(kit, "read", path="/a")
    prepared.run_id = parent.run_id
    assert hook.around_tool(prepared, lambda: "ran") == "ran"
    assert [(e["call_id"], e["phase"]) for e in audit(parent)] == [("c1", "pre_dispatch")]
    assert [(e["call_id"], e["phase"]) for e in audit(child)] == [("c9", "pre_dispatch")]
