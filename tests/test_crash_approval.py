"""Crash tests of approval: a paused call runs only once a durable approval says so, and at most once.

RELIABILITY.md G7 ("kill after approval is recorded, before execution; then
resume": unapproved executions = 0, double executions = 0), INV-2, INV-3;
issue 7 items 3, 4 and 6. An `ApprovalRunner` plays a script of sessions, each
a child process (``tests/crash_approval_child.py``) sharing one
`FileCheckpointStore` directory and one side-effect log:

1. a run session starts the run; a gate asks before every ``refund``, so the
   run stops ``approval_pending`` with the call in the checkpoint's ``pending``;
2. a decider session takes the lock, loads, approves (perhaps with edited
   arguments) or rejects, saves and releases; it may be SIGKILLed right after
   the save, or after deciding and before the save (the decision is lost);
3. run sessions continue the run with ``resume=``; one may be SIGKILLed at a
   named point (a torn first save, a complete unrenamed one, after the
   approved call's intent is durable, inside its body after the side effect,
   after its result is journaled, after its step is yielded);
4. a last run session finishes the run.

Checked from the side-effect log (the ground truth: one fsynced line per tool
body run) and the checkpoint, after every session and at the end:

- no ``refund`` body ran before an approval of that call was durable, nor in a
  decider's process, nor with arguments other than the approved ones, nor for
  a call whose last durable decision is a rejection (unapproved executions = 0);
- a ``refund`` not registered idempotent ran at most once, exactly once when
  its step reports success; one killed mid-call is reported ``interrupted``,
  an idempotent one ran once more per session killed after its body
  (double executions = 0 where it matters);
- the gate was asked once per call, never again after the decision;
- a session that finds a call still undecided stops ``approval_pending``
  again without a model call, a step or a tool run;
- the final record's steps are the steps every session yielded, in order
  (INV-2); with no call interrupted they, the final answer, usage and
  counters equal the uninterrupted run's;
- a finished run continued again is refused and runs nothing.

The matrix (38 cases, about 23 s on two cores, four to six child processes each):

- 22 approvals: the decider ends cleanly, is killed after its save, or is
  killed before it (then decides again) × the continuing session killed at
  none of or one of six named points (``after_intent`` and ``in_tool`` with
  both tool kinds) × approved as asked or with an edited amount, sync and
  async loops; two sessions killed one after the other;
- 6 rejections: clean, decider killed after the save, continuing session
  killed in its first save or after the denied step; an approval replaced by
  a rejection before anything ran; a lost decision decided again as a rejection;
- 3 two-call turns: approving one call does not approve the other, with a kill
  inside the approved call's body;
- 3 resumes of a run whose approved call finished (twice more after it ended);
- 3 steps settled after a crash from the intent of an approval with edited
  arguments: their ``tool_call`` holds the arguments that ran (a bug these
  tests found in ``Engine._settled``, fixed);
- 1 never decided: continued twice, it waits both times.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crash_approval_child import RUN, SCENARIOS
from crash_child import spawn

from looplet import DefaultState, FileCheckpointStore, load_run

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_approval_child.py"

ASKED = {"order": 17, "amount": 40}  # the refund the model asks for in the "single" scenario
EDITED = {"order": 17, "amount": 25}  # a partial refund the person approves instead


@dataclass
class Session:
    """What one child process did."""

    role: str
    pid: int
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str
    decisions: dict[str, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)

    def of(self, key: str) -> list[Any]:
        return [line[key] for line in self.lines if key in line]

    @property
    def killed(self) -> dict[str, Any] | None:
        found = [line for line in self.lines if "killing" in line]
        return found[0] if found else None

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.of("step")

    @property
    def durable_decisions(self) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """What this decider's save made durable: nothing if it died before saving."""
        if self.role != "decide" or self.returncode not in (0, -signal.SIGKILL):
            return {}
        if self.killed is not None and self.killed["killing"] == "before_save":
            return {}
        return self.decisions


@dataclass
class ApprovalRunner:
    """The sessions of one paused run, each a child process sharing the store and the side-effect log."""

    root: Path
    scenario: str = "single"
    loop: str = "sync"
    idempotent: bool = False
    sessions: list[Session] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.root / "store"

    @property
    def log(self) -> Path:
        return self.root / "effects.log"

    def _child(self, job: dict[str, Any]) -> Session:
        job = {"dir": str(self.directory), "log": str(self.log), "scenario": self.scenario, **job}
        pid, returncode, out, err = spawn(str(CHILD), job, timeout=60)
        lines = [json.loads(line) for line in out.splitlines()]  # each flushed whole before any kill
        session = Session(job["role"], pid, returncode, lines, err)
        self.sessions.append(session)
        expected = 0 if job.get("kill") is None else -signal.SIGKILL
        assert session.returncode == expected, f"{job}: exit {session.returncode}\n{err}"
        if job.get("kill") is not None:
            assert session.killed is not None
        return session

    def run(self, kill: dict[str, Any] | None = None) -> Session:
        """A session that starts or continues the run; with `kill`, it must die there."""
        job = {"role": "run", "loop": self.loop, "idempotent": self.idempotent, "kill": kill}
        return self._child(job)

    def decide(
        self, decisions: dict[str, tuple[str, dict[str, Any] | None]], kill: str | None = None
    ) -> Session:
        """A decider session: ``{call_id: ("approve", edited args or None) | ("reject", None)}``."""
        listed = [
            {"call_id": call_id, "decision": what, "args": args, "reason": "not owed"}
            for call_id, (what, args) in decisions.items()
        ]
        session = self._child({"role": "decide", "decisions": listed, "kill": kill})
        session.decisions = dict(decisions)
        return session

    def saved(self) -> DefaultState:
        return load_run(FileCheckpointStore(self.directory), RUN)

    @property
    def yielded(self) -> list[dict[str, Any]]:
        return [step for s in self.sessions for step in s.steps]

    def effects(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def session_of(self, pid: int) -> int:
        """The index of the session whose process had `pid`."""
        found = [i for i, s in enumerate(self.sessions) if s.pid == pid]
        assert len(found) == 1, f"pid {pid} is not one session's"
        return found[0]

    def decisions_before(self, index: int) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """The decisions durable when session `index` began: the last saved one per call."""
        out: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for s in self.sessions[:index]:
            out.update(s.durable_decisions)
        return out


def asked_args(scenario: str) -> dict[str, dict[str, Any]]:
    return {c.call_id: c.args for c in SCENARIOS[scenario] if c.tool == "refund"}


def approved_args(runner: ApprovalRunner, call_id: str, decision: tuple[str, Any]) -> dict[str, Any]:
    return decision[1] if decision[1] is not None else asked_args(runner.scenario)[call_id]


# -- the checks after each session ------------------------------------------------------------------


def check_effects(runner: ApprovalRunner) -> None:
    """Unapproved executions = 0: every refund body ran in a run session that began after an
    approval of that call was durable, with exactly the approved arguments."""
    for line in runner.effects():
        index = runner.session_of(line["pid"])
        assert runner.sessions[index].role == "run", f"{line['call_id']} ran in a decider's process"
        if line["tool"] != "refund":
            continue
        decision = runner.decisions_before(index).get(line["call_id"])
        assert decision is not None and decision[0] == "approve", (
            f"{line['call_id']} ran in session {index} with no durable approval ({decision})"
        )
        assert line["args"] == approved_args(runner, line["call_id"], decision), "ran with other arguments"


def check_paused(runner: ApprovalRunner, session: Session, before: DefaultState | None) -> None:
    """A session that ended ``approval_pending``: the checkpoint holds the paused calls, and one
    that only found undecided calls made no model call, yielded no step and ran no tool."""
    saved = runner.saved()
    assert saved.stop_reason == "approval_pending"
    waiting = {p.call_id: p for p in saved.pending}
    assert set(waiting) <= set(asked_args(runner.scenario))
    for call_id, pending in waiting.items():
        assert pending.args == asked_args(runner.scenario)[call_id] and pending.tool == "refund"
        assert pending.args_hash.startswith("sha256:")
    assert any(p.decision is None for p in saved.pending), "paused with every call decided"
    if before is not None and before.pending and all(p.decision is None for p in before.pending):
        assert session.of("llm") == [] and session.steps == [] and session.of("asked") == []
        assert saved.llm_calls == before.llm_calls and len(saved.steps) == len(before.steps)
        assert not [e for e in runner.effects() if e["pid"] == session.pid]


def check_decided(runner: ApprovalRunner, session: Session, before: DefaultState) -> None:
    """After a decider: the checkpoint holds its decisions if it saved, and nothing new if not."""
    saved = runner.saved()
    assert saved.stop_reason == "approval_pending" and len(saved.steps) == len(before.steps)
    decided = {p.call_id: (p.decision, p.approved_args) for p in saved.pending}
    if session.durable_decisions:
        for call_id, (what, args) in session.decisions.items():
            assert decided[call_id] == ({"approve": "approved", "reject": "rejected"}[what], args)
    else:  # killed before its save: the run still waits as it did
        assert decided == {p.call_id: (p.decision, p.approved_args) for p in before.pending}
    assert session.of("pending") and session.of("decided"), "the decider did not see the paused call"


def check_killed_run(runner: ApprovalRunner, session: Session) -> None:
    """After a killed run session: the checkpoint loads and holds every step yielded so far (INV-2),
    and the state of the call it died in (D7)."""
    killed = session.killed
    assert killed is not None
    saved = runner.saved()
    assert [s.to_dict() for s in saved.steps] == json.loads(json.dumps(runner.yielded))
    intent = saved.in_flight.get(killed["call_id"])
    if killed["killing"] in ("after_intent", "in_tool"):
        assert intent is not None and intent.result is None
        decision = runner.decisions_before(len(runner.sessions) - 1)[killed["call_id"]]
        assert intent.args == approved_args(runner, killed["call_id"], decision), (
            "the intent holds other args"
        )
    elif killed["killing"] == "after_result":
        assert intent is not None and intent.result is not None
    elif killed["killing"] == "after_step_yielded":
        assert killed["call_id"] not in saved.in_flight
        assert killed["call_id"] not in {p.call_id for p in saved.pending}


def run_session(runner: ApprovalRunner, kill: dict[str, Any] | None = None) -> Session:
    """One run session and the checks that follow it."""
    before = runner.saved() if RUN in FileCheckpointStore(runner.directory).list_runs() else None
    session = runner.run(kill)
    check_effects(runner)
    if kill is not None:
        check_killed_run(runner, session)
    elif session.of("refused"):
        assert before is not None and before.stop_reason == "done"
    elif session.of("end")[0]["stop_reason"] == "approval_pending":
        check_paused(runner, session, before)
    return session


def decide_session(
    runner: ApprovalRunner, decisions: dict[str, tuple[str, Any]], kill: str | None = None
) -> Session:
    before = runner.saved()
    session = runner.decide(decisions, kill)
    check_effects(runner)
    check_decided(runner, session, before)
    return session


# -- the checks at the end ----------------------------------------------------------------------------


def killed_inside(runner: ApprovalRunner) -> dict[str, list[str]]:
    """Per call id, where sessions died inside it: ``before_body`` or ``after_body``."""
    out: dict[str, list[str]] = {}
    for s in runner.sessions:
        killed = s.killed
        if s.role == "run" and killed is not None and killed["killing"] in ("after_intent", "in_tool"):
            where = "before_body" if killed["killing"] == "after_intent" else "after_body"
            out.setdefault(killed["call_id"], []).append(where)
    return out


def expected_outcome(runner: ApprovalRunner, call_id: str) -> tuple[str | None, int]:
    """(error kind of the call's step, how many times its body ran), from the decisions and kills."""
    decision = runner.decisions_before(len(runner.sessions))[call_id]
    if decision[0] == "reject":
        return "denied", 0
    inside = killed_inside(runner).get(call_id, [])
    after_body = inside.count("after_body")
    if inside and not runner.idempotent:
        return "interrupted", after_body
    return None, 1 + after_body


def check_finished(runner: ApprovalRunner) -> DefaultState:
    """Every check on the finished run; returns its record."""
    final = runner.saved()
    assert final.stop_reason == "done" and not final.pending and not final.in_flight
    steps = [s.to_dict() for s in final.steps]
    assert steps == json.loads(json.dumps(runner.yielded)), (
        "the record's steps are not the yielded ones (INV-2)"
    )
    assert len({s["tool_call"]["call_id"] for s in steps}) == len(steps)
    runs: dict[str, list[dict[str, Any]]] = {}
    for line in runner.effects():
        runs.setdefault(line["call_id"], []).append(line)
    assert set(runs) <= {s["tool_call"]["call_id"] for s in steps}, "a body ran for a call with no step"
    by_call = {s["tool_call"]["call_id"]: s for s in steps}
    parts = []
    for call_id in asked_args(runner.scenario):
        kind, times = expected_outcome(runner, call_id)
        step = by_call[call_id]
        ran = runs.get(call_id, [])
        assert step["tool_result"]["error_kind"] == kind, f"{call_id}: {step['tool_result']['error']}"
        assert len(ran) == times, f"{call_id} ran {len(ran)} times, expected {times} (INV-3)"
        assert len({r["pid"] for r in ran}) == len(ran), "ran twice in one process"
        decision = runner.decisions_before(len(runner.sessions))[call_id]
        assert (
            step["metadata"]["approval"]["decision"]
            == {"approve": "approved", "reject": "rejected"}[decision[0]]
        )
        if kind is None:
            assert (
                step["tool_result"]["data"]["refunded"] == approved_args(runner, call_id, decision)["amount"]
            )
        parts.append(f"{call_id}={'error' if kind else approved_args(runner, call_id, decision)['amount']}")
    assert final.final_answer == {"answer": " ".join(parts)}
    asked = [c for s in runner.sessions for c in s.of("asked")]
    assert sorted(asked) == sorted(asked_args(runner.scenario)), "the gate was asked again after a decision"
    assert sum(len(s.of("llm")) for s in runner.sessions) == final.llm_calls == 2
    return final


def comparable(step: dict[str, Any]) -> dict[str, Any]:
    """A step without its times (which differ between equal runs)."""
    out = {k: v for k, v in step.items() if k not in ("llm_ms", "started_at")}
    out["tool_result"] = {k: v for k, v in step["tool_result"].items() if k != "duration_ms"}
    return out


_references: dict[str, dict[str, Any]] = {}


def reference(tmp_path_factory: pytest.TempPathFactory, approval: tuple[str, Any]) -> dict[str, Any]:
    """The uninterrupted run with this decision on ``c0_refund``: start, decide, finish."""
    key = json.dumps(approval)
    if key not in _references:
        runner = ApprovalRunner(tmp_path_factory.mktemp("reference"))
        runner.run()
        runner.decide({"c0_refund": approval})
        runner.run()
        _references[key] = runner.saved().to_dict()
    return _references[key]


def check_against_reference(final: DefaultState, ref: dict[str, Any]) -> None:
    assert [comparable(s.to_dict()) for s in final.steps] == [comparable(s) for s in ref["steps"]]
    record = final.to_dict()
    for key in ("final_answer", "llm_calls", "usage", "turns", "steps_charged"):
        assert record[key] == ref[key], key


# -- approvals ------------------------------------------------------------------------------------------

APPROVE = ("approve", None)
EDIT = ("approve", EDITED)


def _approval_cases() -> list[Any]:
    """(approval, decider kill, run kills, idempotent, loop)."""
    cases = [
        pytest.param(APPROVE, None, [], False, "sync", id="approve-clean"),
        pytest.param(EDIT, "after_save", [], False, "async", id="edit-decider_killed_after_save"),
        pytest.param(APPROVE, "before_save", [], False, "sync", id="approve-decider_killed_before_save"),
        pytest.param(EDIT, "before_save", [], True, "async", id="edit-decider_killed_before_save-idempotent"),
    ]
    points = {
        "during_checkpoint_write": (False,),  # the continuing session's first save, torn
        "before_checkpoint_rename": (False,),  # that save complete and synced, not renamed
        "after_intent": (False, True),
        "in_tool": (False, True),
        "after_result": (False,),
        "after_step_yielded": (False,),  # the approved call's step
    }
    for point, kinds in points.items():
        for approval, name, loop in ((APPROVE, "approve", "sync"), (EDIT, "edit", "async")):
            for idempotent in kinds:
                kind = "-idempotent" if idempotent else ""
                kill = [{"point": point, "n": 1}]
                cases.append(
                    pytest.param(approval, "after_save", kill, idempotent, loop, id=f"{name}-{point}{kind}")
                )
    twice = [{"point": "before_checkpoint_rename", "n": 1}, {"point": "in_tool", "n": 1}]
    cases.append(
        pytest.param(EDIT, "after_save", twice, True, "sync", id="edit-rename_then_in_tool-idempotent")
    )
    cases.append(pytest.param(APPROVE, None, twice, False, "async", id="approve-rename_then_in_tool"))
    return cases


@pytest.mark.parametrize(("approval", "decider_kill", "kills", "idempotent", "loop"), _approval_cases())
def test_an_approved_call_runs_once_with_the_approved_arguments_across_killed_sessions(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    approval: tuple[str, Any],
    decider_kill: str | None,
    kills: list[dict[str, Any]],
    idempotent: bool,
    loop: str,
) -> None:
    runner = ApprovalRunner(tmp_path, loop=loop, idempotent=idempotent)
    first = run_session(runner)
    assert first.of("end")[0]["stop_reason"] == "approval_pending" and first.of("asked") == ["c0_refund"]
    assert [e["tool"] for e in runner.effects()] == ["look_up"]
    decide_session(runner, {"c0_refund": approval}, decider_kill)
    if decider_kill == "before_save":  # the decision was lost: the run still waits, then is decided again
        run_session(runner)
        decide_session(runner, {"c0_refund": approval})
    for kill in kills:
        run_session(runner, kill)
    last = run_session(runner)
    assert last.of("end")[0]["stop_reason"] == "done"
    final = check_finished(runner)
    if not killed_inside(runner) or idempotent:
        check_against_reference(final, reference(tmp_path_factory, approval))


# -- rejections -----------------------------------------------------------------------------------------

REJECT = ("reject", None)


@pytest.mark.parametrize(
    ("decisions", "kills"),
    [
        pytest.param([(REJECT, None)], [], id="clean"),
        pytest.param(
            [(REJECT, "after_save")], [{"point": "after_step_yielded", "n": 1}], id="after_denied_step"
        ),
        pytest.param([(REJECT, None)], [{"point": "during_checkpoint_write", "n": 1}], id="first_save_torn"),
        pytest.param([(APPROVE, "after_save"), (REJECT, None)], [], id="approval_replaced_by_rejection"),
        pytest.param(
            [(APPROVE, "before_save"), (REJECT, "after_save")], [], id="lost_approval_then_rejection"
        ),
        pytest.param(
            [(EDIT, None), (REJECT, "after_save")],
            [{"point": "before_checkpoint_rename", "n": 1}],
            id="edited_approval_replaced-rename",
        ),
    ],
)
def test_a_rejected_call_never_runs_and_the_model_is_told(
    tmp_path: Path, decisions: list[tuple[tuple[str, Any], str | None]], kills: list[dict[str, Any]]
) -> None:
    runner = ApprovalRunner(tmp_path)
    run_session(runner)
    for decision, decider_kill in decisions:
        decide_session(runner, {"c0_refund": decision}, decider_kill)
    for kill in kills:
        run_session(runner, kill)
    run_session(runner)
    final = check_finished(runner)
    assert [e["tool"] for e in runner.effects()] == ["look_up", "done"]
    assert final.steps[1].tool_result.error_kind == "denied"
    assert final.steps[1].metadata["approval"]["note"] == "not owed"
    assert final.final_answer == {"answer": "c0_refund=error"}


# -- two paused calls in one turn ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kill", "idempotent"),
    [
        pytest.param(None, False, id="clean"),
        pytest.param({"point": "in_tool", "n": 1}, False, id="killed_in_approved_call"),
        pytest.param({"point": "in_tool", "n": 1}, True, id="killed_in_approved_call-idempotent"),
    ],
)
def test_approving_one_of_two_paused_calls_runs_only_that_one(
    tmp_path: Path, kill: dict[str, Any] | None, idempotent: bool
) -> None:
    runner = ApprovalRunner(
        tmp_path, scenario="pair", idempotent=idempotent, loop="async" if idempotent else "sync"
    )
    first = run_session(runner)
    assert first.of("asked") == ["c0_a", "c0_b"] and runner.effects() == []
    decide_session(runner, {"c0_a": ("approve", {"order": 17, "amount": 30})})
    if kill is not None:
        run_session(runner, kill)
    waiting = run_session(runner)  # c0_a settled; c0_b still undecided: paused again, no model call
    assert waiting.of("end")[0]["stop_reason"] == "approval_pending" and waiting.of("llm") == []
    saved = runner.saved()
    assert [(p.call_id, p.decision) for p in saved.pending] == [("c0_b", None)]
    assert [s.tool_call.call_id for s in saved.steps] == ["c0_a"]
    assert {e["call_id"] for e in runner.effects()} <= {"c0_a"}
    decide_session(runner, {"c0_b": ("approve", None)})
    run_session(runner)
    check_finished(runner)


# -- continuing a run whose approved call finished ----------------------------------------------------


@pytest.mark.parametrize(
    "kills",
    [
        pytest.param([{"point": "after_step_yielded", "n": 1}], id="killed_after_the_approved_step"),
        pytest.param([{"point": "after_step_yielded", "n": 2}], id="killed_after_the_done_step"),
        pytest.param([], id="finished"),
    ],
)
def test_continuing_a_run_after_its_approved_call_finished_runs_nothing_again(
    tmp_path: Path, kills: list[dict[str, Any]]
) -> None:
    runner = ApprovalRunner(tmp_path)
    run_session(runner)
    decide_session(runner, {"c0_refund": EDIT}, "after_save")
    for kill in kills:
        run_session(runner, kill)
    run_session(runner)
    before = runner.effects()
    for _ in range(2):
        again = run_session(runner)
        assert again.of("refused") and again.steps == [] and again.of("llm") == []
        assert "fork" in again.of("refused")[0]
    assert runner.effects() == before
    check_finished(runner)
    assert [e["call_id"] for e in before].count("c0_refund") == 1


# -- never decided -------------------------------------------------------------------------------------


def test_a_run_never_decided_waits_each_time_it_is_continued(tmp_path: Path) -> None:
    runner = ApprovalRunner(tmp_path, loop="async")
    run_session(runner)
    for _ in range(2):
        waiting = run_session(runner)
        assert waiting.of("end")[0]["stop_reason"] == "approval_pending" and waiting.of("llm") == []
    saved = runner.saved()
    assert saved.llm_calls == 1 and [p.decision for p in saved.pending] == [None]
    assert [e["tool"] for e in runner.effects()] == ["look_up"]


# -- the arguments a settled step records ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "idempotent"),
    [
        pytest.param("after_result", False, id="result_journaled"),
        pytest.param("after_intent", False, id="interrupted"),
        pytest.param("in_tool", True, id="run_again-idempotent"),
    ],
)
def test_a_step_settled_from_an_edited_approval_records_the_arguments_that_ran(
    tmp_path: Path, point: str, idempotent: bool
) -> None:
    runner = ApprovalRunner(tmp_path, idempotent=idempotent)
    run_session(runner)
    decide_session(runner, {"c0_refund": EDIT})
    run_session(runner, {"point": point, "n": 1})
    run_session(runner)
    check_finished(runner)
    step = runner.saved().steps[1]
    assert step.tool_call.call_id == "c0_refund"
    assert step.metadata.get("original_args") == ASKED, "the edit is not recorded on the step"
    assert step.tool_call.args == EDITED, "the step shows arguments other than the approved ones"
