"""Property tests of permissions: the engine against a reference model (G1); final arguments (G4)."""

from __future__ import annotations

from collections import Counter
from fnmatch import fnmatchcase
from typing import Any

import pytest
from doubles import Driver, as_text, done
from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import Allow, BaseToolRegistry, DefaultState, MockLLMBackend, ToolCall, register_done_tool
from looplet.permissions import PermissionEngine, PermissionHook

TOOLS = ["read", "write", "db_query", "db_drop", "shell"]
PATTERNS = [*TOOLS, "*", "db_*", "?ead", "[rw]*", "DB_*", "nothing"]


def _raise(args: dict[str, Any]) -> bool:
    raise ValueError("matcher broke")


#: name -> (the matcher the engine gets, the model's reading: True, False or None for "fails")
PREDICATES: dict[str, tuple[Any, Any]] = {
    "has_path": (lambda a: "path" in a, lambda a: "path" in a),
    "big": (lambda a: a.get("n", 0) > 5, lambda a: a.get("n", 0) > 5),
    "even": (lambda a: a.get("n", 0) % 2 == 0, lambda a: a.get("n", 0) % 2 == 0),
    "etc": (
        lambda a: str(a.get("path", "")).startswith("/etc"),
        lambda a: str(a.get("path", "")).startswith("/etc"),
    ),
    "raises": (_raise, lambda a: None),
    "junk": (lambda a: "yes", lambda a: None),
    "raises_if_big": (lambda a: 1 / (a.get("n", 0) <= 5) > 0, lambda a: True if a.get("n", 0) <= 5 else None),
}

Rule = tuple[str, str, str | None]


def reference(rules: list[Rule], default: str, tool: str, args: dict[str, Any]) -> str:
    """What the engine must answer: deny > ask > allow > default; a failing matcher denies."""
    matched = set()
    for effect, pattern, predicate in rules:
        if fnmatchcase(tool, pattern):
            hit = True if predicate is None else PREDICATES[predicate][1](args)
            if hit is None:
                return "deny"
            if hit:
                matched.add(effect)
    return next((e for e in ("deny", "ask", "allow") if e in matched), default)


rules_st = st.lists(
    st.tuples(
        st.sampled_from(["allow", "deny", "ask"]),
        st.sampled_from(PATTERNS),
        st.none() | st.sampled_from(sorted(PREDICATES)),
    ),
    max_size=6,
)
args_st = st.fixed_dictionaries(
    {}, optional={"path": st.sampled_from(["/etc/passwd", "/tmp/x", "rel"]), "n": st.integers(0, 10)}
)
calls_st = st.lists(st.tuples(st.sampled_from([*TOOLS, "other"]), args_st), min_size=1, max_size=5)


def _enough(per: int) -> int:
    """How often a branch must be reached: one in `per` examples (once, in a short dev profile,
    whose first examples are the small ones hypothesis tries first)."""
    examples = settings().max_examples
    return examples // per if examples >= 300 else 1


def _engine(rules: list[Rule], default: str) -> PermissionEngine:
    engine = PermissionEngine(default=default)
    for effect, pattern, predicate in rules:
        engine.add_rule(effect, pattern, None if predicate is None else PREDICATES[predicate][0])
    return engine


def test_engine_decisions_match_the_reference_model() -> None:
    reached: Counter[str] = Counter()

    @given(rules=rules_st, default=st.sampled_from(["allow", "deny", "ask"]), calls=calls_st, data=st.data())
    def check(rules: list[Rule], default: str, calls: list[tuple[str, dict[str, Any]]], data: Any) -> None:
        engine = _engine(rules, default)
        shuffled = _engine(data.draw(st.permutations(rules)), default)
        for tool, args in calls:
            decision = engine.decide(tool, args)
            expected = reference(rules, default, tool, args)
            assert decision.effect == expected, (rules, default, tool, args, decision)
            assert shuffled.decide(tool, args).effect == expected  # the order written does not matter
            kind = f"{decision.effect} by {decision.source}"
            event(kind)
            reached[kind] += 1
            if decision.source == "error":
                assert "could not be checked" in decision.reason and decision.rule in decision.reason
            elif decision.source == "default":
                assert decision.rule == "default"

    check()
    for kind in ("deny by rule", "ask by rule", "allow by rule", "deny by error"):
        assert reached[kind] >= _enough(10), reached
    for kind in ("deny by default", "ask by default", "allow by default"):
        assert reached[kind] >= _enough(30), reached


# -- G4: for random hook stacks, what runs passes the policy ------------------------------

VALUES = st.integers(0, 9)


class Rewriter:
    """Rewrites `act`'s n to `value` (only when n is even, if `only_even`)."""

    def __init__(self, value: int, only_even: bool) -> None:
        self.value, self.only_even = value, only_even

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        if tool_call.tool == "act" and (not self.only_even or tool_call.args["n"] % 2 == 0):
            return Allow(updated_args={"n": self.value})
        return None


class Handler:
    """Approves asks for n below `limit`, remembering exactly what it approved."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.approved: list[dict[str, Any]] = []

    def __call__(self, tool_call: ToolCall, reason: str) -> bool:
        if tool_call.args["n"] < self.limit:
            self.approved.append(dict(tool_call.args))
            return True
        return False


ACT_PREDICATES = {
    "big": lambda a: a["n"] > 5,
    "even": lambda a: a["n"] % 2 == 0,
    "three": lambda a: a["n"] == 3,
}
act_rules_st = st.lists(
    st.tuples(
        st.sampled_from(["allow", "deny", "ask"]),
        st.sampled_from(["act", "a*", "ac?"]),
        st.none() | st.sampled_from(sorted(ACT_PREDICATES)),
    ),
    max_size=5,
)
rewriters_st = st.lists(st.builds(Rewriter, VALUES, st.booleans()), max_size=2)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_what_runs_always_passes_the_policy_whatever_the_hook_stack(mode: str) -> None:
    reached: Counter[str] = Counter()

    @given(
        rules=act_rules_st,
        default=st.sampled_from(["allow", "deny", "ask"]),
        before=rewriters_st,
        after=rewriters_st,
        limit=st.none() | st.integers(2, 10),
        calls=st.lists(VALUES, min_size=1, max_size=4),
    )
    def check(
        rules: list[Rule],
        default: str,
        before: list[Rewriter],
        after: list[Rewriter],
        limit: int | None,
        calls: list[int],
    ) -> None:
        engine = PermissionEngine(default=default).allow("done")
        for effect, pattern, predicate in rules:
            engine.add_rule(effect, pattern, None if predicate is None else ACT_PREDICATES[predicate])
        ran: list[int] = []
        tools = BaseToolRegistry()

        @tools.tool
        def act(n: int) -> int:
            """Do something with n."""
            ran.append(n)
            return n

        register_done_tool(tools)
        handler = None if limit is None else Handler(limit)
        hooks = [*before, PermissionHook(engine, handler), *after]
        script = [as_text("act", n=n) for n in calls] + [done()]
        state = DefaultState(task="t")
        approved = [] if handler is None else handler.approved
        Driver(mode)(MockLLMBackend(script), tools=tools, hooks=hooks, state=state)
        humans = 0
        while state.stop_reason == "approval_pending":  # a human approves what they are shown
            for pending in state.pending:
                approved.append(dict(pending.args))
                state.approve(pending.call_id)
                humans += 1
            rest = MockLLMBackend(script[state.llm_calls :])
            Driver(mode)(rest, tools=tools, hooks=hooks, state=state)
        for n in ran:
            effect = engine.decide("act", {"n": n}).effect
            assert effect == "allow" or (effect == "ask" and {"n": n} in approved), (n, effect)
        audit = state.metadata["permission_audit"]
        rechecked = [e for e in audit if e["phase"] == "around_tool"]
        this = Counter(
            {
                "ran": len(ran),
                "ran after an approval": sum(
                    1 for n in ran if engine.decide("act", {"n": n}).effect == "ask"
                ),
                "re-checked after a rewrite": len(rechecked),
                "refused after a rewrite": sum(1 for e in rechecked if e["effect"] == "deny"),
                "approved by a human": humans,
            }
        )
        for kind, count in this.items():
            if count:
                event(kind)
        reached.update(this)

    check()
    kinds = ("ran", "ran after an approval", "re-checked after a rewrite", "refused after a rewrite")
    for kind in (*kinds, "approved by a human"):
        assert reached[kind] >= _enough(15), reached
