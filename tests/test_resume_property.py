"""A run stopped anywhere and continued from its JSON record ends as if it had never stopped (issue 7).

The property: for a random scripted run (single calls, sequential and
concurrent batches, tools that raise, invalid arguments, text replies, a
done), stop it after a drawn effect (``break``, ``close()``, an abandoned
loop, a cancel token fired by a tool, a hook or during the model call, a
step budget, a failed model call) one to three times, pass the record through
``json.dumps`` / ``DefaultState.from_dict`` with fresh tools and backend each
time, and continue to the end. The steps, the history the model was sent, the
final answer, usage, model calls and budget equal the uninterrupted run's, and
every tool body ran exactly once.

The scripted run, its tools and the ways to stop it live in `resume_child`,
which is also the program that continues a run in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, seed, settings
from hypothesis import strategies as st
from resume_child import ENDINGS, KINDS, Counts, Plan, Reply, Session, run_session

from looplet import DefaultState

ROOT = Path(__file__).resolve().parent.parent
#: The stop reason each way of stopping leaves in the record (None: the loop was abandoned, never closed).
STOPPED_AS = {
    "break": "cancelled",
    "close": "cancelled",
    "abandon": None,
    "cancel_tool": "cancelled",
    "cancel_hook": "cancelled",
    "cancel_model": "cancelled",
    "budget": "max_steps",
    "llm_error": "llm_error",
}
BETWEEN, MID, BEFORE_TOOLS = "between turns", "mid-batch", "after the reply, before its tools"
TOOL_CHOICES = ["step", "step", "fetch", "fetch", "fetch", "fetch", "fetch", "fail", "fail_par", "fail_par"]
TOOL_CHOICES += ["note", "invalid", "unknown"]


# -- strategies -----------------------------------------------------------------------------------


@st.composite
def calls(draw: st.DrawFn, reply: int, index: int) -> dict[str, Any]:
    """One call of reply `reply`; its tag is unique in the script, so every body run can be told apart."""
    tag = f"r{reply}c{index}"
    n = draw(st.integers(0, 99))
    choice = draw(st.sampled_from(TOOL_CHOICES))
    if choice == "invalid":  # fails validation: the body never runs
        tool = draw(st.sampled_from(["step", "fetch"]))
        return {"tool": tool, "args": {"tag": tag, "n": f"{n} apples"}}
    if choice == "unknown":
        return {"tool": "stepp", "args": {"tag": tag, "n": n}}
    return {"tool": choice, "args": {"tag": tag, "n": n}}


@st.composite
def scripts(draw: st.DrawFn) -> list[Reply]:
    """Replies of a run that ends with a done call (alone, or last of a batch)."""
    script: list[Reply] = []
    texts_in_a_row = 0
    for reply in range(draw(st.integers(1, 6))):
        if texts_in_a_row < 2 and draw(st.integers(0, 7)) == 0:  # two in a row are allowed by default
            script.append({"text": f"let me think about step {reply}"})
            texts_in_a_row += 1
            continue
        texts_in_a_row = 0
        size = draw(st.sampled_from([1, 2, 2, 3, 3, 4]))
        batch = [draw(calls(reply, i)) for i in range(size)]
        script.append({"native": draw(st.booleans()), "calls": batch})
    last = len(script)
    before = [draw(calls(last, i)) for i in range(draw(st.integers(0, 2)))]
    done = {"tool": "done", "args": {"answer": f"answer after {last} replies"}}
    script.append({"native": draw(st.booleans()), "calls": [*before, done]})
    return script


#: Stops after the first: none to two more, each a way of stopping and the session's effect it comes at.
more_stops = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 4)), max_size=2)


# -- comparing runs -------------------------------------------------------------------------------


def outcome(step: dict[str, Any]) -> dict[str, Any]:
    """What a step did: everything but its timings (its model call's identity included)."""
    result = {k: v for k, v in step["tool_result"].items() if k != "duration_ms"}
    metadata = dict(step["metadata"])
    return {
        "number": step["number"],
        "tool_call": step["tool_call"],
        "tool_result": result,
        "turn": step["turn"],
        "free": step["free"],
        "metadata": metadata,
    }


def usage_by_step(steps: list[dict[str, Any]], skip_turns: set[int]) -> list[Any]:
    """Each step's share of its model call's usage (turns in `skip_turns` left out)."""
    return [(s["number"], s["usage"]) for s in steps if s["turn"] not in skip_turns]


def position(record: dict[str, Any]) -> str:
    """Where in the run a stop left it: between turns, before a turn's tools, or in the middle of a batch."""
    state = DefaultState.from_dict(record)
    if not state.open_calls:
        return BETWEEN
    if any(s.turn == state.turns for s in state.steps):
        return MID
    return BEFORE_TOOLS


Runner = Callable[[list[Reply], dict[str, Any] | None, Plan, str, Counts, list[Any]], Session]


class Chain:
    """A run continued session by session, each from the JSON record of the one before."""

    def __init__(self, script: list[Reply], modes: list[str]) -> None:
        self.script = script
        self.modes = modes
        self.counts = Counts()
        self.log: list[Any] = []
        self.steps: list[dict[str, Any]] = []
        self.record: dict[str, Any] | None = None
        self.sessions: list[Session] = []
        self.stopped: dict[int, tuple[str, str]] = {}  # by session: (kind, position) of a plan's stop
        self.turns_cut_before_tools: set[int] = set()

    @property
    def ended(self) -> bool:
        return self.record is not None and self.record["stop_reason"] in ENDINGS

    @property
    def stops(self) -> list[tuple[str, str]]:
        return list(self.stopped.values())

    def session(self, plan: Plan, runner: Runner = run_session) -> None:
        """Run the next session (stopped as `plan` says) from the record the last one left."""
        assert not self.ended
        mode = self.modes[len(self.sessions) % len(self.modes)]
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # "continued with other tools" would fail here
            session = runner(self.script, self.record, plan, mode, self.counts, self.log)
        self.sessions.append(session)
        self.steps += session.steps
        self.record = session.record
        if plan is not None and session.fired and not self.ended:
            assert session.stop_reason == STOPPED_AS[plan[0]], (plan, session.record["detail"])
            where = position(session.record)
            self.stopped[len(self.sessions) - 1] = (plan[0], where)
            if where == BEFORE_TOOLS:
                self.turns_cut_before_tools.add(session.record["turns"])

    def run(self, plans: list[tuple[str, int]]) -> None:
        for plan in plans:
            self.session(plan)
            if self.ended:
                return
        self.session(None)

    @property
    def model_failures(self) -> int:
        return sum(1 for kind, _ in self.stops if kind == "llm_error")


def reference(script: list[Reply], mode: str) -> tuple[Session, Counts, list[Any]]:
    counts, log = Counts(), list[Any]()
    session = run_session(script, None, None, mode, counts, log)
    assert session.stop_reason == "done", session.record["detail"]
    return session, counts, log


def assert_same_run(chain: Chain, ref: Session, ref_counts: Counts, ref_log: list[Any]) -> None:
    """The continued run equals the uninterrupted one, and every tool body ran exactly once."""
    final = chain.record
    assert final is not None and final["stop_reason"] == "done", final and final["detail"]
    assert [outcome(s) for s in chain.steps] == [outcome(s) for s in ref.steps], "the yielded steps"
    assert [outcome(s) for s in final["steps"]] == [outcome(s) for s in ref.steps], "the recorded steps"
    assert usage_by_step(chain.steps, set()) == usage_by_step(ref.steps, set())
    assert chain.log == ref_log, "each model call was sent what the uninterrupted run sent, once"
    assert final["history"] == ref.record["history"]
    for key in ("final_answer", "usage", "turns", "steps_charged", "no_call_streak", "dropped_calls"):
        assert final[key] == ref.record[key], key
    assert final["llm_calls"] == ref.record["llm_calls"] + chain.model_failures
    assert final["pending"] == [] and final["in_flight"] == []
    assert chain.counts.ran == ref_counts.ran, "the same tool bodies ran"
    assert set(chain.counts.ran.values()) <= {1}, f"a body ran more than once: {chain.counts.ran}"


# -- the property ---------------------------------------------------------------------------------


def _floor(examples: int, share: float) -> int:
    return max(1, int(examples * share))


#: Drivers of the sessions, in turn: one loop throughout, or sync and async alternating on one record.
MODES = {"sync": ["sync"], "async": ["async"], "mixed": ["sync", "async"]}
#: Where each way of stopping can leave a run; the property must reach every one.
REACHABLE = {
    "break": [BETWEEN, MID, "sibling kept"],
    "close": [BETWEEN, MID, "sibling kept"],
    "abandon": [BETWEEN, MID, "sibling kept"],
    "cancel_tool": [BETWEEN, MID],
    "cancel_hook": [BETWEEN, MID],
    "cancel_model": [BEFORE_TOOLS],
    "budget": [BETWEEN, MID],
    "llm_error": [BETWEEN],
}


@pytest.mark.parametrize("first", KINDS)
def test_a_run_stopped_anywhere_and_continued_from_json_ends_as_if_never_stopped(first: str) -> None:
    """`first` is how the run is stopped first (a parameter, so every way is exercised); the
    drivers and any further stops are drawn."""
    reached: Counter[str] = Counter()
    examples = 0

    @settings(max_examples=max(20, settings().max_examples // len(KINDS)))
    @given(script=scripts(), at=st.integers(1, 4), more=more_stops, modes=st.sampled_from(list(MODES)))
    def continued_equals_uninterrupted(
        script: list[Reply], at: int, more: list[tuple[str, int]], modes: str
    ) -> None:
        nonlocal examples
        examples += 1
        reached[modes] += 1
        ref, ref_counts, ref_log = reference(script, MODES[modes][0])
        chain = Chain(script, MODES[modes])
        chain.run([(first, at), *more])
        for kind, where in chain.stops:
            event(f"stopped by {kind}, {where}")
        if 0 in chain.stopped:  # the first session was stopped as drawn
            reached[chain.stopped[0][1]] += 1
            if any(i.get("result") for i in chain.sessions[0].record["in_flight"]):
                event("a batch sibling that ran was kept, unconcluded")
                reached["sibling kept"] += 1
        event(f"{len(chain.sessions)} sessions")
        assert_same_run(chain, ref, ref_counts, ref_log)

    if settings().derandomize:  # fixed examples, but other scripts for each way of stopping
        continued_equals_uninterrupted = seed(zlib.crc32(first.encode()))(continued_equals_uninterrupted)
    continued_equals_uninterrupted()
    # Not vacuous: this way of stopping left runs in each place it can, in a fair share of examples.
    for where in REACHABLE[first]:
        assert reached[where] >= _floor(examples, 0.05), (first, where, reached, examples)
    stopped_first = sum(reached[where] for where in (BETWEEN, MID, BEFORE_TOOLS))
    assert stopped_first >= _floor(examples, 0.5), (first, reached, examples)
    for modes in MODES:
        assert reached[modes] >= 1, (modes, reached, examples)


# -- continued in a fresh process -----------------------------------------------------------------


def _call(tool: str, tag: str, n: int = 1) -> dict[str, Any]:
    return {"tool": tool, "args": {"tag": tag, "n": n}}


_DONE = {"tool": "done", "args": {"answer": "all done"}}
#: (script, the stop in this process then the stop of each child (None: to the end), where they left it)
IN_FRESH_PROCESSES: list[tuple[list[Reply], list[Plan], list[tuple[str, str]]]] = [
    (  # a concurrent batch cut after its first step (its siblings ran), then a reply cut before its tools
        [
            {"native": True, "calls": [_call("fetch", "a"), _call("fetch", "b"), _call("fail_par", "c")]},
            {"native": False, "calls": [_call("step", "d"), _call("fail", "e")]},
            {"native": True, "calls": [_DONE]},
        ],
        [("break", 1), ("cancel_model", 1), None],
        [("break", MID), ("cancel_model", BEFORE_TOOLS)],
    ),
    (  # a budget in the middle of a batch, then a loop abandoned without closing
        [
            {"native": False, "calls": [_call("step", "a")]},
            {"text": "thinking"},
            {"native": True, "calls": [_call("note", "b"), _call("fail_par", "c"), _call("fetch", "d")]},
            {"native": True, "calls": [_call("step", "e"), _DONE]},
        ],
        [("budget", 2), ("abandon", 2), None],
        [("budget", MID), ("abandon", MID)],
    ),
    (  # a failed model call, then a tool that cancels the run
        [
            {"native": True, "calls": [{"tool": "step", "args": {"tag": "a", "n": "many"}}]},
            {"native": True, "calls": [_call("fetch", "b"), _call("fetch", "c"), _call("step", "d")]},
            {"native": False, "calls": [_DONE]},
        ],
        [("llm_error", 2), ("cancel_tool", 1), None],
        [("llm_error", BETWEEN), ("cancel_tool", MID)],
    ),
]


def continue_in_child(
    script: list[Reply], record: dict[str, Any] | None, plan: Plan, mode: str, counts: Counts, log: list[Any]
) -> Session:
    """`run_session` in a new Python process, which gets nothing but the script and the JSON record."""
    job = json.dumps({"script": script, "record": record, "plan": plan, "mode": mode})
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = ROOT / "tests" / "resume_child.py"
    done = subprocess.run(
        [sys.executable, str(child)], input=job, capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for tag, n in out.pop("ran").items():
        counts.ran[tag] = counts.ran.get(tag, 0) + n
    log += out.pop("log")
    return Session(**out)


@pytest.mark.parametrize("case", range(len(IN_FRESH_PROCESSES)))
def test_a_run_continued_in_fresh_processes_ends_as_if_never_stopped(case: int) -> None:
    script, stops, where = IN_FRESH_PROCESSES[case]
    ref, ref_counts, ref_log = reference(script, "sync")
    chain = Chain(script, ["sync", "async"])  # the drivers alternate across processes too
    chain.session(stops[0])
    assert 0 in chain.stopped, "the first stop happened in this process"
    if case == 0:  # the batch's siblings ran before the break: their results travel in the record
        kept = chain.sessions[0].record["in_flight"]
        assert [i["call_id"] for i in kept if i.get("result")] == ["id0_1", "id0_2"]
    for plan in stops[1:]:
        chain.session(plan, continue_in_child)
    assert chain.stops == where
    assert_same_run(chain, ref, ref_counts, ref_log)


# -- found by the property ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_steps_of_a_continued_turn_keep_the_model_call_that_proposed_them(mode: str) -> None:
    script: list[Reply] = [
        {"native": True, "calls": [_call("step", "a"), _call("step", "b")]},
        {"native": True, "calls": [_DONE]},
    ]
    ref, ref_counts, ref_log = reference(script, mode)
    chain = Chain(script, [mode])
    chain.run([("break", 1)])
    assert_same_run(chain, ref, ref_counts, ref_log)
    assert ref.steps[1]["metadata"]["llm"]["request_id"] == "req-0"
    assert [s["metadata"].get("llm") for s in chain.steps] == [s["metadata"].get("llm") for s in ref.steps]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_steps_of_a_turn_continued_before_its_tools_keep_its_usage(mode: str) -> None:
    script: list[Reply] = [
        {"native": True, "calls": [_call("step", "a")]},
        {"native": False, "calls": [_call("fetch", "b"), _call("fetch", "c")]},
        {"native": True, "calls": [_DONE]},
    ]
    ref, ref_counts, ref_log = reference(script, mode)
    chain = Chain(script, [mode])
    chain.run([("cancel_model", 2)])
    assert chain.stops == [("cancel_model", BEFORE_TOOLS)]
    assert_same_run(chain, ref, ref_counts, ref_log)  # the run's usage total is right
    assert ref.steps[1]["usage"]["input_tokens"] > 0
    assert [s["usage"] for s in chain.steps] == [s["usage"] for s in ref.steps]
