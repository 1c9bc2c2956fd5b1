"""Crash tests: a run SIGKILLed at a named point resumes with no yielded step lost, no side effect repeated.

Issue 7 item 6 and its "Crash tests"; RELIABILITY.md INV-2, INV-3, D2, D7, E1.
A `CrashRunner` runs sessions of one scripted run in child processes
(``tests/crash_child.py``) that share a `FileCheckpointStore` directory and a
side-effect log: the killed session, then a fresh session that continues the
run to its end. After each kill the parent loads the checkpoint (it must load:
no torn file) and after the last session it checks:

- INV-2: the steps every session yielded, in order, are exactly the final
  record's steps, and right after a kill the checkpoint holds exactly the steps
  yielded so far (the last durable step, nothing yielded lost);
- D7: after a kill between a call's intent and its result, the checkpoint holds
  that intent without a result; after ``after_result``, with it;
- INV-3 (from the side-effect log, the ground truth): a non-idempotent body ran
  at most once per call id, exactly once for a call that reported success; an
  idempotent one ran once more per session killed inside it, with the same
  ``ctx.call_id``; no body ran for a call that has no step;
- a call killed mid-call is reported ``interrupted`` (non-idempotent tool) or
  ran again (idempotent); no other call is reported ``interrupted``;
- the final answer is the one the model computes from what it was told; when
  no call was interrupted, the steps, answer, usage and model-call count equal
  the uninterrupted run's.

The matrix, 76 cases (about 30 s on two cores, two or three child processes each):

- 46 kills at a named point: the seven `POINTS` × their first, a middle and a
  last arrival (e.g. the ``done`` call's, the last save) × idempotent or not ×
  sync or async loop; all four tool-kind × loop combinations at the three
  mid-call points, where the kind decides the outcome, two elsewhere;
- 4 batch cases: two concurrent calls, one killed inside its body while its
  sibling's result is journaled or while the sibling still runs, × tool kind;
- 20 seeds of a random point, n and combination (D7), the odd ones killed a
  second time in the continuing session before a third one finishes the run;
- 4 uninterrupted runs (both loops × both tool kinds), equal to each other;
- 2 async batches as wide as the thread pool (a deadlock the batch cases found,
  fixed: plain interceptors in the async loop run in threads of their own).
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crash_child import AMOUNTS, POINTS, RUN, spawn

from looplet import DefaultState, FileCheckpointStore, load_run

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"

#: Points between a call's durable intent and its durable result: the call is in flight.
MID_CALL = ("after_intent", "in_tool", "during_journal_append")
SAVE_POINTS = ("during_checkpoint_write", "before_checkpoint_rename")
#: How often a fresh serial run reaches each point: 4 tool runs (3 charges and done);
#: 14 durable writes (the first save, per call its intent, its result and its step, the
#: last save); at least 2 whole saves (the first and the last: the checkpoint hook
#: journals steps as deltas in between); 4 steps.
ARRIVALS = {
    "after_intent": 4,
    "in_tool": 3,
    "during_journal_append": 4,
    "after_result": 4,
    "during_checkpoint_write": 14,
    "before_checkpoint_rename": 2,
    "after_step_yielded": 4,
}
LOOPS = ("sync", "async")


@dataclass
class Session:
    """What one child process did."""

    pid: int
    returncode: int
    steps: list[dict[str, Any]]  # the steps it yielded, as printed
    killed: dict[str, Any] | None  # {"killing": point, "call_id", "n", "write"} if it died there
    finished: bool  # it found the saved run already ended done
    stderr: str
    hung: bool = False  # its watchdog fired


def inside_call(killed: dict[str, Any]) -> str | None:
    """Whether the kill came between a call's intent and its result: ``"before_body"``,
    ``"after_body"`` (its side effect was made), or None."""
    point = killed["killing"]
    if point == "after_intent":
        return "before_body"
    if point in ("in_tool", "during_journal_append") or killed.get("write") == "result":
        return "after_body"
    return None


@dataclass
class CrashRunner:
    """Sessions of one scripted run, each a child process sharing the checkpoint store and side-effect log."""

    root: Path
    loop: str = "sync"
    idempotent: bool = False
    scenario: str = "serial"
    workers: int | None = None  # the async loop's default executor size (None: asyncio's default)
    watchdog_s: float | None = None
    sessions: list[Session] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.root / "store"

    @property
    def log(self) -> Path:
        return self.root / "effects.log"

    def run(self, kill: dict[str, Any] | None = None) -> Session:
        """One session; with `kill` it must die by SIGKILL at that point, without it end cleanly."""
        job = {
            "dir": str(self.directory),
            "log": str(self.log),
            "loop": self.loop,
            "idempotent": self.idempotent,
            "scenario": self.scenario,
            "kill": kill,
            "workers": self.workers,
            "watchdog_s": self.watchdog_s,
        }
        session = _parse(*spawn(str(CHILD), job, timeout=90))
        self.sessions.append(session)
        assert not session.hung, f"the session hung (no progress in {self.watchdog_s}s)"
        if kill is None:
            assert session.returncode == 0 and session.killed is None, session.stderr
        else:
            assert session.returncode == -signal.SIGKILL and session.killed is not None, (
                f"the child did not die at {kill}: exit {session.returncode}\n{session.stderr}"
            )
            assert session.killed["killing"] == kill["point"]
        return session

    def saved(self) -> DefaultState | None:
        """The run as a fresh process loads it (None if no save ever completed).

        A torn or unloadable checkpoint raises `CheckpointError` here, failing the test.
        """
        store = FileCheckpointStore(self.directory)
        if RUN not in store.list_runs():
            return None
        return load_run(store, RUN)

    @property
    def yielded(self) -> list[dict[str, Any]]:
        """Every step any session yielded, in order."""
        return [step for s in self.sessions for step in s.steps]

    def effects(self) -> list[dict[str, Any]]:
        """The side-effect log: one line per tool body run (each fsynced, so never torn)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


def _parse(pid: int, returncode: int, out: str, err: str) -> Session:
    session = Session(pid, returncode, [], None, False, err)
    for line in out.splitlines():
        data = json.loads(line)  # every line was flushed whole before any kill
        if "step" in data:
            session.steps.append(data["step"])
        elif "killing" in data:
            session.killed = data
        elif "finished" in data:
            session.finished = True
        elif "hung" in data:
            session.hung = True
    return session


# -- what the checks compare ----------------------------------------------------------------


def as_json(steps: list[Any]) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(json.dumps([s.to_dict() for s in steps]))
    return data


def comparable(step: dict[str, Any]) -> dict[str, Any]:
    """A step without its times, which differ between equal runs. A step settled by a later
    session keeps its model call's usage and ``metadata["llm"]``, so those are compared."""
    result = {k: v for k, v in step["tool_result"].items() if k != "duration_ms"}
    return {**{k: v for k, v in step.items() if k not in ("llm_ms", "started_at")}, "tool_result": result}


def amount(call: dict[str, Any]) -> int:
    if call["tool"] == "charge":
        return 10 * int(call["args"]["order"])
    return AMOUNTS[call["args"]["key"]]


def expected_answer(steps: list[dict[str, Any]]) -> dict[str, str]:
    """What the scripted model answers after these steps: amounts of the calls that
    succeeded (from their arguments), and how many were interrupted."""
    total = errors = 0
    for step in steps:
        if step["tool_call"]["tool"] not in ("charge", "fetch"):
            continue
        if step["tool_result"]["error_kind"] == "interrupted":
            errors += 1
        else:
            total += amount(step["tool_call"])
    return {"answer": f"total={total} errors={errors}"}


@dataclass
class Reference:
    """The uninterrupted run."""

    steps: list[dict[str, Any]]
    record: dict[str, Any]


_references: dict[str, Reference] = {}


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted run of a scenario (run once per scenario, in a child)."""

    def get(scenario: str) -> Reference:
        if scenario not in _references:
            runner = CrashRunner(tmp_path_factory.mktemp(f"reference-{scenario}"), scenario=scenario)
            runner.run()
            final = runner.saved()
            assert final is not None
            _references[scenario] = Reference(runner.yielded, final.to_dict())
        return _references[scenario]

    return get


# -- the checks ---------------------------------------------------------------------------------


def check_after_kill(runner: CrashRunner, session: Session) -> None:
    """The checkpoint loads and is the last durable step (plus the intent in flight)."""
    assert session.killed is not None
    point, call_id = session.killed["killing"], session.killed["call_id"]
    check_torn(runner, session.killed)
    saved = runner.saved()
    if saved is None:  # only a crash inside the very first save leaves no run at all
        assert point in SAVE_POINTS and len(runner.sessions) == 1 and not runner.yielded
        return
    assert as_json(saved.steps) == runner.yielded, "the checkpoint lost a yielded step (INV-2)"
    if inside_call(session.killed):
        intent = saved.in_flight.get(call_id)
        assert intent is not None and intent.result is None, f"no open intent for {call_id} after {point}"
    elif point == "after_result":
        intent = saved.in_flight.get(call_id)
        assert intent is not None and intent.result is not None, f"the result of {call_id} is not durable"
    elif point == "after_step_yielded":
        assert not saved.in_flight


def check_torn(runner: CrashRunner, killed: dict[str, Any]) -> None:
    """A kill inside a write really left it unfinished: a temp file beside the checkpoint, or a
    journal whose last line has no end (so the load above had something torn to refuse)."""
    if killed["write"] == "save":
        assert any(name.endswith(".tmp") for name in os.listdir(runner.directory))
    elif killed["write"]:
        journal = (runner.directory / f"{RUN}.journal").read_bytes()
        assert journal and not journal.endswith(b"\n")


def kill_and_resume(runner: CrashRunner, kills: list[dict[str, Any]]) -> DefaultState:
    """Kill a session at each of `kills` in turn, check the checkpoint each time, then finish the run."""
    for kill in kills:
        check_after_kill(runner, runner.run(kill))
    runner.run()
    final = runner.saved()
    assert final is not None
    if not runner.sessions[-1].finished:  # a session that continued the run took its lock
        leftovers = [n for n in os.listdir(runner.directory) if n.endswith(".tmp")]
        assert not leftovers, f"a crashed save's temp files were not cleaned up: {leftovers}"
    return final


def body_runs(runner: CrashRunner) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for line in runner.effects():
        runs.setdefault(line["call_id"], []).append(line)
    return runs


def killed_mid_call(runner: CrashRunner) -> tuple[set[str], Counter[str]]:
    """The calls some session died inside, and per call how many of those deaths came after its body ran."""
    inside: set[str] = set()
    after_body: Counter[str] = Counter()
    for s in runner.sessions:
        where = inside_call(s.killed) if s.killed is not None else None
        if s.killed is not None and where is not None:
            inside.add(s.killed["call_id"])
            if where == "after_body":
                after_body[s.killed["call_id"]] += 1
    return inside, after_body


def check_resumed_run(
    runner: CrashRunner,
    final: DefaultState,
    reference: Reference,
    *,
    also_inside: dict[str, int] | None = None,
) -> list[str]:
    """Every check after the last session; returns the call ids reported interrupted.

    `also_inside`: calls that were running when another call's body killed the
    process (call id -> 1 if their body had run), which no kill marker names.
    """
    steps = as_json(final.steps)
    assert final.stop_reason == "done"
    assert steps == runner.yielded, "the record's steps are not the steps the sessions yielded (INV-2)"
    inside, after_body = killed_mid_call(runner)
    for call_id, body_ran in (also_inside or {}).items():
        inside.add(call_id)
        after_body[call_id] += body_ran
    runs = body_runs(runner)
    assert set(runs) <= {s["tool_call"]["call_id"] for s in steps}, "a body ran for a call with no step"
    interrupted = []
    for step in steps:
        call_id, kind = step["tool_call"]["call_id"], step["tool_result"]["error_kind"]
        ran = runs.get(call_id, [])
        assert len({json.dumps(r["args"], sort_keys=True) for r in ran}) <= 1, (
            f"{call_id} ran twice, with other args"
        )
        again = runner.idempotent and step["tool_call"]["tool"] != "done"
        if call_id in inside and not again:
            assert kind == "interrupted", f"{call_id} was killed mid-call and not reported interrupted"
            assert len(ran) == after_body[call_id] <= 1, f"{call_id}: a non-idempotent body ran twice (INV-3)"
            interrupted.append(call_id)
            continue
        assert kind is None, f"{call_id} ended {kind}: {step['tool_result']['error']}"
        assert len(ran) == 1 + after_body[call_id], f"{call_id} ran {len(ran)} times (INV-3)"
        if after_body[call_id]:  # ran again, in a later process, under the same call id
            assert len({r["pid"] for r in ran}) == len(ran)
    assert final.final_answer == expected_answer(steps)
    if not interrupted:
        assert [comparable(s) for s in steps] == [comparable(s) for s in reference.steps]
        for key in ("final_answer", "llm_calls", "usage", "turns", "steps_charged"):
            assert final.to_dict()[key] == reference.record[key], key
    return interrupted


# -- the uninterrupted run --------------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
@pytest.mark.parametrize("loop", LOOPS)
def test_an_uninterrupted_run_is_the_same_in_both_loops_and_for_both_tool_kinds(
    tmp_path: Path, loop: str, idempotent: bool, reference: Any
) -> None:
    runner = CrashRunner(tmp_path, loop=loop, idempotent=idempotent)
    final = kill_and_resume(runner, [])
    assert check_resumed_run(runner, final, reference("serial")) == []
    assert final.final_answer == {"answer": "total=60 errors=0"}
    assert [line["call_id"] for line in runner.effects()] == ["c0", "c1", "c2", "c3_done"]


# -- one kill at each named point -------------------------------------------------------------


def _cases() -> list[Any]:
    """(point, n, idempotent, loop): all four tool-kind × loop combinations where the kind
    decides the outcome (mid-call), two elsewhere."""
    ns = {
        "after_intent": (1, 4),  # 4: the done call
        "in_tool": (1, 3),
        "during_journal_append": (2, 4),
        "after_result": (2, 4),
        # the first save; the first call's intent, its result, its step; the last save
        "during_checkpoint_write": (1, 2, 3, 4, 14),
        "before_checkpoint_rename": (1, 2),
        "after_step_yielded": (1, 4),  # 4: the last step (the run is then finished)
    }
    combos_all = [(i, lp) for i in (False, True) for lp in LOOPS]
    combos_two = [(False, "sync"), (True, "async")]
    out = []
    for point in POINTS:
        for n in ns[point]:
            for idem, lp in combos_all if point in MID_CALL else combos_two:
                kind = "idempotent" if idem else "plain"
                out.append(pytest.param(point, n, idem, lp, id=f"{point}-{n}-{kind}-{lp}"))
    return out


@pytest.mark.parametrize(("point", "n", "idempotent", "loop"), _cases())
def test_a_run_killed_at_a_named_point_resumes_without_losing_a_step_or_repeating_a_side_effect(
    tmp_path: Path, point: str, n: int, idempotent: bool, loop: str, reference: Any
) -> None:
    runner = CrashRunner(tmp_path, loop=loop, idempotent=idempotent)
    final = kill_and_resume(runner, [{"point": point, "n": n}])
    interrupted = check_resumed_run(runner, final, reference("serial"))
    killed = runner.sessions[0].killed
    assert killed is not None
    runs_again = idempotent and killed["call_id"] != "c3_done"  # done is never idempotent
    where = inside_call(killed)
    assert (where is not None) == (point in MID_CALL or (point, n) == ("during_checkpoint_write", 3))
    if where is not None and not runs_again:
        assert interrupted == [killed["call_id"]]
    else:
        assert interrupted == []
    if where == "after_body" and runs_again:
        assert len(body_runs(runner)[killed["call_id"]]) == 2


# -- a batch of concurrent calls ---------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
@pytest.mark.parametrize("sibling", ["done", "running"])
def test_a_run_killed_inside_one_of_two_concurrent_calls_settles_both_on_resume(
    tmp_path: Path, sibling: str, idempotent: bool, reference: Any
) -> None:
    """Both bodies run at once (they meet at a barrier before the kill); ``fetch(b)`` dies
    after ``fetch(a)``'s result is journaled, or while ``fetch(a)`` still runs."""
    loop = "async" if idempotent else "sync"
    runner = CrashRunner(tmp_path, loop=loop, idempotent=idempotent, scenario="batch")
    session = runner.run({"point": "in_tool", "sibling": sibling})
    check_after_kill(runner, session)
    saved = runner.saved()
    assert saved is not None and set(saved.in_flight) == {"c0_a", "c0_b"}
    a = saved.in_flight["c0_a"]
    assert (a.result is not None) == (sibling == "done")
    final = kill_and_resume(runner, [])
    also = {"c0_a": 1} if sibling == "running" else {}
    interrupted = check_resumed_run(runner, final, reference("batch"), also_inside=also)
    runs = {call_id: len(lines) for call_id, lines in body_runs(runner).items()}
    if idempotent:
        assert interrupted == []
        assert runs == {"c0_a": 1 if sibling == "done" else 2, "c0_b": 2, "c1_done": 1}
    else:
        assert interrupted == (["c0_b"] if sibling == "done" else ["c0_a", "c0_b"])
        assert runs == {"c0_a": 1, "c0_b": 1, "c1_done": 1}


# -- random points (D7) ----------------------------------------------------------------------------


def _second_kill(rng: random.Random, saved: DefaultState) -> dict[str, Any]:
    """A point the continued session surely reaches: its first save and its first step always;
    a tool run only when no call is in flight (one with a journaled result is not run again),
    and a charge's body perhaps never (only done may remain)."""
    points = list(SAVE_POINTS) + ["after_step_yielded"]
    if not saved.in_flight:
        points += ["after_intent", "during_journal_append", "after_result"]
    return {"point": rng.choice(points), "n": 1}


@pytest.mark.parametrize("seed", range(20))
def test_a_run_killed_at_random_points_resumes_from_its_last_durable_step(
    tmp_path: Path, seed: int, reference: Any
) -> None:
    """Half of the seeds kill the continued session too, before a third one finishes the run."""
    rng = random.Random(seed)
    point = rng.choice(POINTS)
    runner = CrashRunner(tmp_path, loop=rng.choice(LOOPS), idempotent=rng.random() < 0.5)
    check_after_kill(runner, runner.run({"point": point, "n": rng.randint(1, ARRIVALS[point])}))
    saved = runner.saved()
    kills = []
    if seed % 2 and saved is not None and saved.stop_reason != "done":
        kills.append(_second_kill(rng, saved))
    final = kill_and_resume(runner, kills)
    check_resumed_run(runner, final, reference("serial"))
    assert len([s for s in runner.sessions if s.killed]) == 1 + len(kills)


# -- a deadlock the batch cases found ----------------------------------------------------------


@pytest.mark.parametrize("workers", [5, 4])
def test_an_async_checkpointed_batch_as_wide_as_the_thread_pool_finishes(
    tmp_path: Path, workers: int
) -> None:
    """Four concurrent calls through `CheckpointHook` in the async loop, with a default executor of
    `workers` threads (the watchdog turns a deadlock into a failure after 5 s instead of a hang)."""
    runner = CrashRunner(tmp_path, loop="async", scenario="wide", workers=workers, watchdog_s=5)
    final = kill_and_resume(runner, [])
    assert final.final_answer == {"answer": "total=36 errors=0"}
    assert sorted(line["call_id"] for line in runner.effects()) == ["c0_a", "c0_b", "c0_c", "c0_d", "c1_done"]
