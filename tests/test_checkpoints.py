"""Run stores and `CheckpointHook`: the store contract for both stores (E11), `load_run`, and the hook's
promise that an intent is durable before its tool runs and a step before it is yielded."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from store_conformance import CONTRACTS, RunStoreConformance, check_store

from looplet.checkpoints import (
    CheckpointHook,
    FileCheckpointStore,
    MemoryRunStore,
    RunLock,
    RunStore,
    load_run,
    run_status,
)
from looplet.errors import CheckpointError, CheckpointLocked, ConfigError
from looplet.history import History, Message
from looplet.state import DefaultState
from looplet.tools.registry import BaseToolRegistry, PreparedCall
from looplet.types import Intent, Step, ToolCall, ToolResult, args_hash

# -- the contract, for both stores ------------------------------------------------------------------


class TestMemoryRunStoreKeepsTheContract(RunStoreConformance):
    def make_store(self, tmp_path: Path) -> RunStore:
        return MemoryRunStore()


class TestFileCheckpointStoreKeepsTheContract(RunStoreConformance):
    def make_store(self, tmp_path: Path) -> RunStore:
        return FileCheckpointStore(tmp_path / "runs")


def test_check_store_runs_every_contract_without_pytest() -> None:
    assert check_store(MemoryRunStore) == [c.__name__ for c in CONTRACTS]
    assert len(CONTRACTS) >= 12


class _ReversingStore(MemoryRunStore):
    """Breaks one promise: the journal comes back newest first."""

    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        record, entries = super().load(run_id)
        return record, entries[::-1]


def test_the_suite_catches_a_store_that_breaks_the_contract() -> None:
    with pytest.raises(AssertionError, match="entries_load_in_the_order_appended"):
        check_store(_ReversingStore)


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    return MemoryRunStore() if request.param == "memory" else FileCheckpointStore(tmp_path / "runs")


def test_both_stores_are_run_stores(store: RunStore) -> None:
    assert isinstance(store, RunStore)
    with store.lock("run_a") as held:
        assert isinstance(held, RunLock)


@pytest.mark.parametrize(
    "run_id", ["", "../escape", "a/b", "a\\b", "a.json", "a\n", "é", "a" * 129, " a", None, 7]
)
def test_a_run_id_outside_the_safe_alphabet_is_refused(store: RunStore, run_id: Any) -> None:
    with pytest.raises(ConfigError, match="cannot name a saved run"):
        store.save(run_id, {"run_id": run_id})
    with pytest.raises(ConfigError):
        store.load(run_id)
    with pytest.raises(ConfigError):
        store.lock(run_id)
    assert store.list_runs() == []


def test_a_record_naming_another_run_is_refused(store: RunStore) -> None:
    with pytest.raises(CheckpointError, match="run 'run_b'"):
        store.save("run_a", DefaultState(run_id="run_b").to_dict())
    assert store.list_runs() == []


@pytest.mark.parametrize(
    ("stop_reason", "status"),
    [
        (None, "running"),
        ("approval_pending", "paused"),
        ("done", "finished"),
        ("max_steps", "stopped"),
        ("llm_error", "stopped"),
        ("cancelled", "stopped"),
    ],
)
def test_run_status_says_what_a_stop_reason_means_for_continuing(
    stop_reason: str | None, status: str
) -> None:
    assert run_status({"stop_reason": stop_reason}) == status


# -- load_run -----------------------------------------------------------------------------------------


def _step(number: int, call_id: str, data: Any = "ok") -> Step:
    call = ToolCall(tool="refund", args={"order": number}, call_id=call_id)
    return Step(
        number=number, tool_call=call, tool_result=ToolResult(tool="refund", data=data, call_id=call_id)
    )


def _intent(call_id: str, order: int = 17) -> Intent:
    args = {"order": order}
    return Intent(call_id=call_id, tool="refund", args=args, args_hash=args_hash(args))


def _state(**fields: Any) -> DefaultState:
    state = DefaultState(task={"goal": "refund"}, **fields)
    state.history.append(Message(role="user", content="refund order 17"))
    return state


def test_load_run_rebuilds_the_state_and_replays_the_journal(store: RunStore) -> None:
    state = _state(steps=[_step(1, "c1")], llm_calls=1)
    state.in_flight["c2"] = _intent("c2")
    store.save(state.run_id, state.to_dict())
    store.append(state.run_id, {"type": "intent", **_intent("c3", 18).to_dict()})
    result = ToolResult(tool="refund", data={"refunded": 17}, call_id="c2")
    store.append(state.run_id, {"type": "result", "call_id": "c2", "result": result.to_dict()})

    back = load_run(store, state.run_id)
    assert type(back) is DefaultState
    assert back.steps == state.steps and back.llm_calls == 1
    assert back.in_flight["c2"].result == result
    assert back.in_flight["c3"] == _intent("c3", 18)


@pytest.mark.parametrize("where", ["memory", "file"])
def test_load_run_builds_the_state_type_asked_for(where: str, tmp_path: Path) -> None:
    from dataclasses import dataclass, field

    @dataclass
    class TicketState(DefaultState):
        tickets: list[str] = field(default_factory=list)

    store: RunStore = MemoryRunStore() if where == "memory" else FileCheckpointStore(tmp_path)
    state = TicketState(tickets=["T-1"])
    store.save(state.run_id, state.to_dict())
    back = load_run(store, state.run_id, TicketState)
    assert isinstance(back, TicketState) and back.tickets == ["T-1"]


def test_load_run_refuses_an_unknown_run(store: RunStore) -> None:
    with pytest.raises(CheckpointError, match="no saved run 'run_nope'"):
        load_run(store, "run_nope")


def test_load_run_refuses_a_record_from_a_newer_looplet(store: RunStore) -> None:
    record = DefaultState(run_id="run_a").to_dict()
    record["schema_version"] = 99
    store.save("run_a", record)
    with pytest.raises(CheckpointError, match="run 'run_a' cannot be read.*newer looplet") as caught:
        load_run(store, "run_a")
    assert not isinstance(caught.value, ConfigError)


def test_load_run_refuses_a_record_that_is_not_a_run(store: RunStore) -> None:
    store.save("run_a", {"run_id": "run_a", "hello": "world"})
    with pytest.raises(CheckpointError, match="run 'run_a' cannot be read"):
        load_run(store, "run_a")


def test_load_run_refuses_a_damaged_journal_entry(store: RunStore) -> None:
    store.save("run_a", DefaultState(run_id="run_a").to_dict())
    store.append("run_a", {"type": "intent", "call_id": "c1"})  # no tool, no args
    with pytest.raises(CheckpointError, match="journal of run 'run_a' cannot be replayed"):
        load_run(store, "run_a")


class _WrongRunStore(MemoryRunStore):
    """A buggy store that answers every load with run_b's record."""

    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return super().load("run_b")


def test_load_run_refuses_another_runs_record_from_a_buggy_store() -> None:
    store = _WrongRunStore()
    store.save("run_b", DefaultState(run_id="run_b").to_dict())
    with pytest.raises(CheckpointError, match="gave run 'run_b'"):
        load_run(store, "run_a")


# -- CheckpointHook -----------------------------------------------------------------------------------


class _CountingStore(MemoryRunStore):
    """A memory store that counts its writes: whole saves, deltas and other entries."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0
        self.deltas = 0
        self.appends = 0

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        super().save(run_id, record)
        self.saves += 1

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        super().append(run_id, entry)
        if entry.get("type") == "delta":
            self.deltas += 1
        else:
            self.appends += 1


def _prepared(call_id: str, order: int = 17) -> PreparedCall:
    registry = BaseToolRegistry()

    @registry.tool
    def refund(order: int) -> str:
        return f"refunded {order}"

    prepared = registry.prepare(ToolCall(tool="refund", args={"order": order}, call_id=call_id))
    assert isinstance(prepared, PreparedCall)
    return prepared


def _started(
    store: RunStore, state: DefaultState | None = None, hook: CheckpointHook | None = None
) -> tuple[CheckpointHook, DefaultState]:
    state = state or _state()
    hook = hook or CheckpointHook(store)
    hook.pre_loop(state, state.history, None)
    return hook, state


def _saved_intents(store: RunStore, run_id: str) -> dict[str, dict[str, Any]]:
    """The intents a process loading the run now would find (the record with its journal replayed)."""
    return {c: i.to_dict() for c, i in load_run(store, run_id).in_flight.items()}


def _journaled_results(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    return [e for e in store.load(run_id)[1] if e["type"] == "result"]


def test_pre_loop_locks_the_run_and_saves_it_so_it_is_listed(store: RunStore) -> None:
    hook, state = _started(store)
    assert store.list_runs() == [state.run_id]
    assert load_run(store, state.run_id) == state
    with pytest.raises(CheckpointLocked):
        store.lock(state.run_id)


def test_the_intent_is_durable_before_the_tool_runs_and_the_result_after(store: RunStore) -> None:
    hook, state = _started(store)
    state.in_flight["c1"] = _intent("c1")
    seen: list[Any] = []

    def proceed() -> ToolResult:
        seen.append(_saved_intents(store, state.run_id).get("c1"))
        seen.append(_journaled_results(store, state.run_id))
        return ToolResult(tool="refund", data="refunded 17", call_id="c1")

    result = hook.around_tool(_prepared("c1"), proceed)
    assert seen == [_intent("c1").to_dict(), []]  # the intent was durable, and no result yet
    assert result.data == "refunded 17"
    _, entries = store.load(state.run_id)
    assert entries[-1] == {"type": "result", "call_id": "c1", "result": result.to_dict()}
    assert load_run(store, state.run_id).in_flight["c1"].result == result


def test_the_result_is_returned_unchanged(store: RunStore) -> None:
    hook, state = _started(store)
    state.in_flight["c1"] = _intent("c1")
    result = ToolResult(tool="refund", data={"x": 1}, call_id="c1")
    assert hook.around_tool(_prepared("c1"), lambda: result) is result


def test_a_tool_that_raises_is_re_raised_and_no_result_is_journaled(store: RunStore) -> None:
    hook, state = _started(store)
    state.in_flight["c1"] = _intent("c1")

    def proceed() -> ToolResult:
        raise TimeoutError("the payment API hung")

    with pytest.raises(TimeoutError):
        hook.around_tool(_prepared("c1"), proceed)
    assert _journaled_results(store, state.run_id) == []
    assert "c1" in _saved_intents(store, state.run_id)


def test_a_concurrent_group_is_saved_once_and_every_call_waits_for_it() -> None:
    store = _CountingStore()
    hook, state = _started(store)
    ids = [f"c{i}" for i in range(6)]
    for i, call_id in enumerate(ids):
        state.in_flight[call_id] = _intent(call_id, order=i)
    saves_before = store.saves
    assert store.deltas == 0
    start = threading.Barrier(len(ids))
    seen: dict[str, bool] = {}

    def run(call_id: str) -> None:
        start.wait()

        def proceed() -> ToolResult:
            seen[call_id] = call_id in _saved_intents(store, state.run_id)
            return ToolResult(tool="refund", data=call_id, call_id=call_id)

        hook.around_tool(_prepared(call_id), proceed)

    threads = [threading.Thread(target=run, args=(call_id,)) for call_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == dict.fromkeys(ids, True)
    assert (store.saves - saves_before, store.deltas) == (0, 1)  # one delta holds the group's intents
    assert store.appends == len(ids)
    back = load_run(store, state.run_id)
    assert {c: back.in_flight[c].result.data for c in ids} == {c: c for c in ids}  # type: ignore[union-attr]


def test_a_later_write_keeps_results_journaled_before_it() -> None:
    store = _CountingStore()
    hook, state = _started(store)
    state.in_flight["c1"] = _intent("c1")
    hook.around_tool(_prepared("c1"), lambda: ToolResult(tool="refund", data="first", call_id="c1"))
    state.in_flight["c2"] = _intent("c2", 18)  # a later group: its intent needs a new write (a delta)
    hook.around_tool(_prepared("c2"), lambda: ToolResult(tool="refund", data="second", call_id="c2"))
    assert store.deltas == 2
    back = load_run(store, state.run_id)
    assert back.in_flight["c1"].result.data == "first"  # type: ignore[union-attr]
    assert back.in_flight["c2"].result.data == "second"  # type: ignore[union-attr]


def test_a_later_whole_save_keeps_results_journaled_before_it() -> None:
    store = _CountingStore()
    hook, state = _started(store, hook=CheckpointHook(store, deltas_per_save=0))
    state.in_flight["c1"] = _intent("c1")
    hook.around_tool(_prepared("c1"), lambda: ToolResult(tool="refund", data="first", call_id="c1"))
    state.in_flight["c2"] = _intent(
        "c2", 18
    )  # a later group: with deltas_per_save=0, every write is a whole save
    hook.around_tool(_prepared("c2"), lambda: ToolResult(tool="refund", data="second", call_id="c2"))
    record, entries = store.load(state.run_id)
    in_flight = {i["call_id"]: i for i in record["in_flight"]}
    assert in_flight["c1"]["result"]["data"] == "first"  # the save that emptied the journal holds it
    assert [e["call_id"] for e in entries] == ["c2"]
    back = load_run(store, state.run_id)
    assert back.in_flight["c1"].result.data == "first"  # type: ignore[union-attr]
    assert back.in_flight["c2"].result.data == "second"  # type: ignore[union-attr]


def test_a_call_without_an_intent_in_the_record_does_not_run(store: RunStore) -> None:
    hook, state = _started(store)
    ran: list[str] = []
    with pytest.raises(CheckpointError, match="no intent"):
        hook.around_tool(_prepared("c1"), lambda: ran.append("c1"))
    assert ran == []


def test_around_tool_before_pre_loop_does_not_run_the_tool(store: RunStore) -> None:
    ran: list[str] = []
    with pytest.raises(CheckpointError, match="before pre_loop"):
        CheckpointHook(store).around_tool(_prepared("c1"), lambda: ran.append("c1"))
    assert ran == []


def test_after_step_makes_the_step_durable(store: RunStore) -> None:
    hook, state = _started(store)
    state.steps.append(_step(1, "c1"))
    state.llm_calls = 1
    hook.after_step(state, state.history, state.steps[-1])
    assert load_run(store, state.run_id).steps == state.steps


def test_on_loop_end_saves_the_outcome_and_releases_the_run(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    hook, state = _started(store)
    state.stop_reason = "done"
    hook.on_loop_end(state, state.history, None, None)
    assert load_run(store, state.run_id).stop_reason == "done"
    assert b'"status":"finished"' in Path(store.path(state.run_id)).read_bytes()
    store.lock(state.run_id).release()  # free again
    hook.on_loop_end(state, state.history, None, None)  # a second end writes nothing and does not fail


def test_a_locked_run_is_never_written(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    other = _state(steps=[_step(1, "c1")], llm_calls=1)
    store.save(other.run_id, other.to_dict())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    holder = store.lock(other.run_id)  # as another process continuing it would

    hook = CheckpointHook(store)
    mine = DefaultState.from_dict(other.to_dict())
    with pytest.raises(CheckpointLocked):
        hook.pre_loop(mine, mine.history, None)
    mine.steps.append(_step(2, "c2"))
    hook.after_step(mine, mine.history, mine.steps[-1])
    mine.stop_reason = "hook_error"
    hook.on_loop_end(mine, mine.history, None, None)
    with pytest.raises(CheckpointError):
        hook.around_tool(_prepared("c3"), lambda: None)

    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix != ".lock"}
    assert after == {k: v for k, v in before.items()}
    with pytest.raises(CheckpointLocked):
        store.lock(other.run_id)  # the hook did not release someone else's lock
    holder.release()


def test_a_state_older_than_the_saved_run_is_refused(store: RunStore) -> None:
    saved = _state(steps=[_step(1, "c1"), _step(2, "c2")], llm_calls=2)
    store.save(saved.run_id, saved.to_dict())
    stale = DefaultState(run_id=saved.run_id)
    with pytest.raises(CheckpointError, match="later point of run"):
        CheckpointHook(store).pre_loop(stale, stale.history, None)
    assert load_run(store, saved.run_id) == saved
    store.lock(saved.run_id).release()  # the refused hook let go of the lock


def test_a_state_missing_a_journaled_result_is_refused(store: RunStore) -> None:
    saved = _state()
    saved.in_flight["c1"] = _intent("c1")
    store.save(saved.run_id, saved.to_dict())
    store.append(
        saved.run_id, {"type": "result", "call_id": "c1", "result": ToolResult(tool="refund").to_dict()}
    )
    stale = DefaultState.from_dict(saved.to_dict())  # the record without its journal
    with pytest.raises(CheckpointError, match="later point"):
        CheckpointHook(store).pre_loop(stale, stale.history, None)
    loaded = load_run(store, saved.run_id)
    hook = CheckpointHook(store)
    # what load_run gives may continue, and its first save subsumes the journal
    hook.pre_loop(loaded, loaded.history, None)
    record, entries = store.load(saved.run_id)
    assert entries == [] and record["in_flight"][0]["result"]["tool"] == "refund"


def test_one_hook_serves_one_run_at_a_time(store: RunStore) -> None:
    hook, first = _started(store)
    second = _state()
    with pytest.raises(CheckpointError, match="its own hook"):
        hook.pre_loop(second, second.history, None)
    hook.on_loop_end(second, second.history, None, None)  # not its run: nothing happens
    with pytest.raises(CheckpointLocked):
        store.lock(first.run_id)
    hook.on_loop_end(first, first.history, None, None)
    hook.pre_loop(second, second.history, None)  # free for the next run
    assert sorted(store.list_runs()) == sorted([first.run_id, second.run_id])


class _FailingStore(MemoryRunStore):
    """Saves work until `broken` is set; then the disk is full."""

    broken = False

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        super().save(run_id, record)

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        super().append(run_id, entry)


def test_a_failed_save_stops_the_run_with_a_checkpoint_error() -> None:
    store = _FailingStore()
    hook, state = _started(store)
    store.broken = True
    state.steps.append(_step(1, "c1"))
    with pytest.raises(CheckpointError, match="could not append to it.*No space left"):
        hook.after_step(state, state.history, state.steps[-1])
    state.in_flight["c2"] = _intent("c2")
    ran: list[str] = []
    with pytest.raises(CheckpointError):
        hook.around_tool(_prepared("c2"), lambda: ran.append("c2"))
    assert ran == []  # no intent saved, so the tool did not run
    with pytest.raises(CheckpointError):
        hook.on_loop_end(state, state.history, None, None)
    store.lock(state.run_id).release()  # released even though the last save failed


def test_a_result_that_cannot_be_journaled_is_kept_for_the_steps_save(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _FailingStore()
    hook, state = _started(store)
    state.in_flight["c1"] = _intent("c1")
    hook.around_tool(_prepared("c1"), lambda: None)  # saves the intent (junk result: nothing journaled)
    store.broken = True
    result = ToolResult(tool="refund", data="refunded", call_id="c1")
    with caplog.at_level(logging.WARNING, logger="looplet.checkpoints"):
        assert hook.around_tool(_prepared("c1"), lambda: result) is result  # the model sees what ran
    assert "could not be journaled" in caplog.text
    store.broken = False
    hook.after_step(state, state.history, _step(1, "c0"))
    assert load_run(store, state.run_id).in_flight["c1"].result == result


def test_a_store_that_raises_something_else_is_reported_as_a_checkpoint_error() -> None:
    class Broken(MemoryRunStore):
        def save(self, run_id: str, record: dict[str, Any]) -> None:
            raise ValueError("redis is down")

    with pytest.raises(CheckpointError, match="ValueError: redis is down"):
        CheckpointHook(Broken()).pre_loop(_state(), History(), None)
