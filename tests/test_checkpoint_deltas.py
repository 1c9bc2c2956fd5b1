"""Incremental checkpoints: after a session's first whole save, `CheckpointHook` appends a ``delta`` per
write (what the step added and the fields that changed), so a checkpoint costs the same at step 10 and
step 190, and a run loaded from the store at any step equals the live one.

Round trips (both loops, batches, compaction, random runs), when a whole save is written instead,
deltas that are damaged, gapped, duplicated or torn, and the rule that a failed write before a tool
stops the run at the next step.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from doubles import Driver
from hypothesis import event, given
from hypothesis import strategies as st

from looplet import (
    BaseToolRegistry,
    CheckpointHook,
    DefaultState,
    FileCheckpointStore,
    MemoryRunStore,
    composable_loop,
    load_run,
    register_done_tool,
)
from looplet.backends.mock import MockLLMBackend
from looplet.checkpoints import RunStore
from looplet.errors import CheckpointError, ConfigError
from looplet.history import History, Message
from looplet.state import apply_journal, record_delta, record_fields
from looplet.types import Intent, Step, ToolCall, ToolResult, Usage

# -- the parts -------------------------------------------------------------------------------------


class CountingStore(MemoryRunStore):
    """A memory store that keeps a log of its writes: ("save", bytes) or (entry type, bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []
        self.saved_messages: list[int] = []  # the history's length in each whole save
        self.empty_deltas = 0  # deltas with no message and no step: fields only

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        super().save(run_id, record)
        self.writes.append(("save", len(json.dumps(record))))
        self.saved_messages.append(len(record["history"]))

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        super().append(run_id, entry)
        self.writes.append((str(entry["type"]), len(json.dumps(entry))))
        self.empty_deltas += entry["type"] == "delta" and not entry["messages"] and not entry["steps"]

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.writes if k == kind)


class Mirror:
    """Listed after the `CheckpointHook`: at every step, what a process loading the run now would get."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.checked = 0

    def after_step(self, state: DefaultState, log: History, step: Step) -> None:
        assert load_run(self.store, state.run_id, type(state)).to_dict() == state.to_dict()
        self.checked += 1


class Compactor:
    """Replaces the history with the task and a summary before the model calls named in `at`."""

    def __init__(self, at: set[int], *, same_length: bool = False) -> None:
        self.at = at
        self.same_length = same_length
        self.done = 0

    def pre_prompt(self, state: DefaultState, log: History, ctx: Any, step: int) -> None:
        if state.turns + 1 not in self.at or len(log) < 3:
            return
        if self.same_length:  # rewrite a message in place: the length stays, the revision moves
            messages = list(log)
            messages[1] = Message("user", f"summary of turn {state.turns}")
            log.replace(messages)
        else:
            log.replace([log[0], Message("user", f"summary of {len(log) - 1} messages")])
        self.done += 1


def tools() -> tuple[BaseToolRegistry, Counter[str]]:
    """`work` (may run concurrently), `note` (runs alone) and `done`; counts every body run by call."""
    registry = BaseToolRegistry()
    ran: Counter[str] = Counter()

    @registry.tool(concurrent_safe=True)
    def work(n: int) -> dict[str, Any]:
        """Do a unit of work."""
        ran[f"work{n}"] += 1
        return {"n": n, "out": "worked"}

    @registry.tool
    def note(text: str) -> str:
        """Write a note."""
        ran[f"note:{text}"] += 1
        return f"noted {text}"

    register_done_tool(registry)
    return registry, ran


def script(turns: list[list[str]]) -> list[Any]:
    """Native replies: each turn a list of tool names (``work`` / ``note``), then a done call."""
    replies: list[Any] = []
    counter = 0
    for t, names in enumerate(turns):
        calls = []
        for name in names:
            counter += 1
            args: dict[str, Any] = {"n": counter} if name == "work" else {"text": f"t{t}-{counter}"}
            calls.append(ToolCall(tool=name, args=args, call_id=f"call_{counter}"))
        replies.append(calls)
    replies.append([ToolCall(tool="done", args={"answer": "all done"}, call_id="call_done")])
    return replies


def llm(turns: list[list[str]]) -> MockLLMBackend:
    return MockLLMBackend(script(turns), usage=Usage(input_tokens=11, output_tokens=3, cost=0.5))


def run_checked(
    turns: list[list[str]],
    *,
    store: RunStore,
    hook: CheckpointHook | None = None,
    extra_hooks: tuple[Any, ...] = (),
    drive: Driver | None = None,
) -> tuple[DefaultState, Mirror, list[Step]]:
    """Run the script with a `Mirror` checking the store at every step; also checks the end."""
    registry, _ = tools()
    state = DefaultState(task={"goal": "work through the list"})
    mirror = Mirror(store)
    hooks = [hook or CheckpointHook(store), *extra_hooks, mirror]
    run = drive or Driver("sync")
    steps, result = run(llm(turns), tools=registry, hooks=hooks, state=state, max_steps=1000)
    assert result.stop_reason == "done", result.detail
    assert load_run(store, state.run_id).to_dict() == state.to_dict()
    return state, mirror, steps


# -- round trips -----------------------------------------------------------------------------------


MIXED = [["work"], ["work", "work", "work"], ["note"], ["work", "note", "work"], ["note", "note"]] * 4


def test_a_run_checkpointed_by_deltas_loads_equal_to_the_live_state_at_every_step(drive: Driver) -> None:
    store = CountingStore()
    state, mirror, steps = run_checked(MIXED, store=store, drive=drive)
    assert mirror.checked == len(steps) == len(state.steps) == 41
    assert store.count("save") == 2  # the first write and the last; everything between is a delta
    assert store.count("delta") >= 2 * len(steps) - 20  # one for the intents of a group, one per step


def test_a_run_checkpointed_to_files_loads_equal_from_a_fresh_store_at_every_step(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    registry, _ = tools()
    state = DefaultState(task="work")
    checked = 0
    for step in composable_loop(llm(MIXED[:10]), tools=registry, store=store, state=state, max_steps=100):
        fresh = FileCheckpointStore(tmp_path)  # another process: nothing cached
        assert load_run(fresh, state.run_id).to_dict() == state.to_dict(), step.number
        checked += 1
    assert checked == len(state.steps) == 21
    assert FileCheckpointStore(tmp_path).load(state.run_id)[1] == []  # the last save subsumed the deltas


def test_compaction_forces_a_whole_save_and_the_run_still_loads_equal() -> None:
    store = CountingStore()
    compactor = Compactor({4, 9})
    state, mirror, steps = run_checked(MIXED[:12], store=store, extra_hooks=(compactor,))
    assert compactor.done == 2 and mirror.checked == len(steps)
    assert store.count("save") == 2 + 2
    # the whole save is the first write after each compaction
    kinds = [k for k, _ in store.writes if k != "result"]
    assert kinds[0] == "save" and kinds[-1] == "save" and kinds.count("save") == 4


def test_a_history_rewritten_in_place_to_the_same_length_forces_a_whole_save() -> None:
    store = CountingStore()
    compactor = Compactor({5}, same_length=True)
    state, mirror, steps = run_checked(MIXED[:8], store=store, extra_hooks=(compactor,))
    assert compactor.done == 1 and mirror.checked == len(steps)
    assert store.count("save") == 3
    assert state.history[1].content.startswith("summary")


def test_a_history_put_in_place_of_the_old_one_forces_a_whole_save() -> None:
    store = CountingStore()
    hook = CheckpointHook(store)
    state = DefaultState(task="t")
    state.history.append(Message("user", "t"))
    hook.pre_loop(state, state.history, None)
    state.history.append(Message("assistant", "a"))
    hook.after_step(state, state.history, _step(state, 1))
    state.history = History([Message("user", "t"), Message("assistant", "other")])
    hook.after_step(state, state.history, _step(state, 2))
    assert [k for k, _ in store.writes] == ["save", "delta", "save"]
    assert load_run(store, state.run_id).to_dict() == state.to_dict()


def test_a_whole_save_follows_as_many_deltas_as_the_last_one_held_messages_or_deltas_per_save() -> None:
    store = CountingStore()
    run_checked(MIXED[:10], store=store, hook=CheckpointHook(store, deltas_per_save=5))
    kinds = "".join("s" if k == "save" else "d" for k, _ in store.writes if k != "result")
    after_each_save = [len(deltas) for deltas in kinds.split("s")[1:]]
    expected = [max(5, messages) for messages in store.saved_messages]
    assert after_each_save[:-2] == expected[:-2]  # the last two: cut short by the end of the run
    assert after_each_save[-2] <= expected[-2] and after_each_save[-1] == 0
    assert len(expected) >= 4 and expected[0] == 5 and expected[-2] > 5  # the gaps grew with the run


def test_deltas_per_save_zero_saves_the_whole_record_every_time() -> None:
    store = CountingStore()
    state, _, _ = run_checked(MIXED[:5], store=store, hook=CheckpointHook(store, deltas_per_save=0))
    assert store.count("delta") == 0 and store.count("save") > len(state.steps)


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, None])
def test_deltas_per_save_must_be_a_count(bad: Any) -> None:
    with pytest.raises(ConfigError, match="deltas_per_save"):
        CheckpointHook(MemoryRunStore(), deltas_per_save=bad)


# -- cost that does not grow -----------------------------------------------------------------------


def test_a_200_step_run_writes_few_whole_saves_and_deltas_that_do_not_grow() -> None:
    store = CountingStore()
    registry, ran = tools()
    state = DefaultState(task="t")
    per_step: dict[int, list[tuple[str, int]]] = {}
    seen = 0
    for step in composable_loop(
        llm([["work"]] * 200), tools=registry, store=store, state=state, max_steps=1000
    ):
        per_step[step.number] = store.writes[seen:]
        seen = len(store.writes)
    assert len(state.steps) == 201 and sum(ran.values()) == 200
    assert store.count("save") <= 2 + 400 // 100  # the first, the last, and one per 100 deltas
    assert store.count("delta") >= 390
    # a step of the same shape writes the same bytes at step 10 and at step 190
    tenth, late = per_step[10], per_step[190]
    assert [k for k, _ in tenth] == [k for k, _ in late] == ["delta", "result", "delta"]
    # The same up to the numbers' digits: counters gain a digit, and each timing float
    # (duration, model time, start, elapsed) prints in 3 to 22 characters, so a few of
    # them can differ by ~100 bytes; a delta that grew with the run would differ by KBs.
    assert abs(sum(b for _, b in late) - sum(b for _, b in tenth)) <= 160
    whole = [b for k, b in store.writes if k == "save"]
    assert sum(b for _, b in late) * 20 < whole[-1]  # a delta is a small part of the record


def test_a_step_costs_one_fsync_per_journal_line_on_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    registry, _ = tools()
    per_step = []
    seen = 0
    store = FileCheckpointStore(tmp_path)
    loop = composable_loop(llm([["work"]] * 30), tools=registry, store=store, task="t", max_steps=100)
    for _ in loop:
        per_step.append(len(synced) - seen)
        seen = len(synced)
    # the intent's delta and the step's delta: one fsync each (the result line is the third)
    assert per_step[1:-1] == [3] * (len(per_step) - 2)


def test_a_large_task_is_not_written_again_with_every_step() -> None:
    store = CountingStore()
    registry, _ = tools()
    task = {"document": "lorem ipsum " * 20_000}
    steps = list(composable_loop(llm([["work"]] * 5), tools=registry, store=store, task=task, max_steps=100))
    assert len(steps) == 6
    deltas = [b for k, b in store.writes if k == "delta"]
    assert len(deltas) >= 10 and max(deltas) < 4_000
    assert all(b > 240_000 for k, b in store.writes if k == "save")


def test_a_changed_field_is_written_even_when_it_compares_equal_in_python() -> None:
    store = CountingStore()
    hook = CheckpointHook(store)
    state = DefaultState(task="t")
    hook.pre_loop(state, state.history, None)
    for value in (1, True, 1.0, 0.0, -0.0, [1], [True], {"a": 1}, {"a": 1.0}):
        state.metadata["flag"] = value
        hook.after_step(state, state.history, _step(state, len(state.steps) + 1))
        back = load_run(store, state.run_id).metadata["flag"]
        assert json.dumps(back) == json.dumps(value), value
    assert store.count("delta") == 9 and store.count("save") == 1


def test_a_long_text_in_the_deltas_brings_a_whole_save() -> None:
    store = CountingStore()
    hook = CheckpointHook(store, deltas_per_save=1000)
    state = DefaultState(task="t")
    hook.pre_loop(state, state.history, None)
    for i in range(20):
        state.history.append(Message("tool", "y" * 50_000, call_id=f"c{i}", name="work"))
        hook.after_step(state, state.history, _step(state, i + 1))
    kinds = [k for k, _ in store.writes]
    # over 256K characters of deltas after a small saved history (6 x 50K), then more than the
    # 350K the saved history holds (8 x 50K)
    assert [i for i, k in enumerate(kinds) if k == "save"] == [0, 7, 16]
    assert load_run(store, state.run_id).to_dict() == state.to_dict()


# -- a failed write stops the run ------------------------------------------------------------------


class IntentFailsOnce(CountingStore):
    """A store whose first write holding a pending intent fails (a full disk for a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = 0

    def _fail_once(self, in_flight: Any) -> None:
        if in_flight and not self.failed:
            self.failed += 1
            raise OSError(28, "No space left on device")

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        self._fail_once(record["in_flight"])
        super().save(run_id, record)

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        if entry["type"] == "delta":
            self._fail_once(entry["fields"].get("in_flight"))
        super().append(run_id, entry)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_intent_write_stops_the_run_at_the_next_step_without_running_the_tool(mode: str) -> None:
    store = IntentFailsOnce()
    registry, ran = tools()
    state = DefaultState(task="t")
    steps, result = Driver(mode)(
        llm([["work"], ["work"], ["work"]]), tools=registry, store=store, state=state
    )
    assert store.failed == 1
    assert sum(ran.values()) == 0  # the intent was not durable, so the body never ran
    assert [s.tool_result.error_kind for s in state.steps] == ["execution"]  # answered, not run
    assert state.llm_calls == 1 and len(steps) <= 1  # stopped at that step: no second model call
    assert result.stop_reason == "hook_error"
    assert "earlier checkpoint of this run failed" in result.detail and "No space left" in result.detail
    assert load_run(store, state.run_id).to_dict() == state.to_dict()  # the end's whole save held


def test_after_a_failed_write_no_other_tool_of_the_session_runs() -> None:
    store = IntentFailsOnce()
    hook = CheckpointHook(store)
    state = DefaultState(task="t")
    hook.pre_loop(state, state.history, None)
    registry, _ = tools()
    ran: list[str] = []
    for call_id in ("a", "b"):
        state.in_flight[call_id] = Intent(call_id, "work", {"n": 1})
    prepared = [registry.prepare(ToolCall("work", {"n": 1}, call_id=c)) for c in ("a", "b")]
    for p in prepared:
        with pytest.raises(CheckpointError):
            hook.around_tool(p, lambda: ran.append("ran"))  # type: ignore[arg-type]
    assert ran == [] and store.failed == 1  # the second call did not even try the store again
    with pytest.raises(CheckpointError, match="earlier checkpoint"):
        hook.after_step(state, state.history, _step(state, 1))
    hook.on_loop_end(state, state.history, None, None)
    hook.pre_loop(state, state.history, None)  # a new session starts clean
    hook.after_step(state, state.history, _step(state, 2))
    assert load_run(store, state.run_id).to_dict() == state.to_dict()


# -- replaying deltas ------------------------------------------------------------------------------


def _step(state: DefaultState, number: int) -> Step:
    call = ToolCall(tool="work", args={"n": number}, call_id=f"s{number}")
    step = Step(
        number=number, tool_call=call, tool_result=ToolResult(tool="work", data=number, call_id=call.call_id)
    )
    state.steps.append(step)
    return step


def _journaled_run() -> tuple[DefaultState, dict[str, Any], list[dict[str, Any]], DefaultState]:
    """A saved record, three deltas after it, and the state they lead to."""
    state = DefaultState(task="t", run_id="run_d", started_at=1_700_000_000.0)  # equal on every call
    state.history.append(Message("user", "t"))
    record = json.loads(json.dumps(state.to_dict()))
    since = record_fields(state)
    entries = []
    h, s = len(state.history), len(state.steps)
    for i in range(1, 4):
        state.history.append(Message("assistant", f"reply {i}"))
        if i != 2:
            _step(state, len(state.steps) + 1)
        state.llm_calls = i
        delta = record_delta(state, h, s, since)
        entries.append(json.loads(json.dumps(delta)))
        since.update(delta["fields"])
        h, s = len(state.history), len(state.steps)
    state.stop_reason = "done"  # an empty delta: a field only
    entries.append(json.loads(json.dumps(record_delta(state, h, s, since))))
    return DefaultState.from_dict(record), record, entries, state


def test_deltas_replay_to_the_live_state() -> None:
    loaded, _, entries, live = _journaled_run()
    apply_journal(loaded, entries)
    assert loaded.to_dict() == live.to_dict()
    assert entries[-1]["messages"] == entries[-1]["steps"] == []
    assert set(entries[-1]["fields"]) == {"schema_version", "run_id", "stop_reason"}


@pytest.mark.parametrize(
    "order",
    [[0, 0, 1, 2, 3], [0, 1, 1, 2, 3], [0, 1, 2, 3, 3], [0, 1, 2, 0, 1, 3], [0, 1, 2, 3, 0, 1, 2, 3]],
    ids=["first twice", "second twice", "last twice", "two again", "all again"],
)
def test_a_delta_the_state_already_holds_is_skipped(order: list[int]) -> None:
    loaded, _, entries, live = _journaled_run()
    apply_journal(loaded, [entries[i] for i in order])
    assert loaded.to_dict() == live.to_dict()


def test_replaying_a_journal_twice_gives_the_same_state() -> None:
    loaded, _, entries, live = _journaled_run()
    apply_journal(loaded, entries)
    apply_journal(loaded, entries)
    assert loaded.to_dict() == live.to_dict()


def test_deltas_a_later_save_subsumed_are_skipped(store: RunStore) -> None:
    _, record, entries, live = _journaled_run()
    store.save("run_d", live.to_dict())
    for entry in entries[:3]:  # as a store that saved, then crashed before clearing its journal
        store.append("run_d", entry)
    assert load_run(store, "run_d").to_dict() == live.to_dict()


def _saved_with(store: RunStore, entries: list[dict[str, Any]]) -> None:
    _, record, _, _ = _journaled_run()
    store.save("run_d", record)
    for entry in entries:
        store.append("run_d", entry)


def _changed(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(entry)), **changes}


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    return MemoryRunStore() if request.param == "memory" else FileCheckpointStore(tmp_path)


def test_a_gap_in_the_deltas_is_refused(store: RunStore) -> None:
    _, _, entries, _ = _journaled_run()
    _saved_with(store, [entries[0], entries[2]])
    with pytest.raises(
        CheckpointError, match=r"journal of run 'run_d'.*does not continue.*entries are missing"
    ):
        load_run(store, "run_d")


def test_a_delta_that_overlaps_with_other_content_is_refused(store: RunStore) -> None:
    _, _, entries, _ = _journaled_run()
    other = _changed(entries[1], messages=[{"role": "assistant", "content": "a different reply"}])
    _saved_with(store, [entries[0], entries[1], other])
    with pytest.raises(CheckpointError, match="does not continue.*overlaps"):
        load_run(store, "run_d")
    longer = _changed(entries[0], messages=entries[0]["messages"] + entries[1]["messages"])
    _saved_with(store, [entries[0], longer])  # starts where the first did, ends past the state
    with pytest.raises(CheckpointError, match="overlaps"):
        load_run(store, "run_d")


@pytest.mark.parametrize(
    "damage",
    [
        {"history_from": "1"},
        {"history_from": -1},
        {"steps_from": None},
        {"messages": {"role": "user"}},
        {"steps": [{"number": 1}]},
        {"messages": [{"content": "no role"}]},
        {"fields": [1]},
        {"fields": {"run_id": "run_other", "schema_version": 1}},
        {"fields": {"run_id": "run_d", "schema_version": 99}},
        {"fields": {"run_id": "run_d", "schema_version": 1, "llm_calls": "many"}},
        {"fields": {"run_id": "run_d", "schema_version": 1, "no_such_field": 1}},
    ],
    ids=lambda d: ",".join(f"{k}={v!r:.20}" for k, v in d.items()),
)
def test_a_damaged_delta_is_refused(store: RunStore, damage: dict[str, Any]) -> None:
    _, _, entries, _ = _journaled_run()
    _saved_with(store, [_changed(entries[0], **damage)])
    with pytest.raises(CheckpointError, match="journal of run 'run_d' cannot be replayed"):
        load_run(store, "run_d")


def test_a_crash_at_any_byte_of_a_delta_leaves_the_run_before_it(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    _, record, entries, live = _journaled_run()
    store.save("run_d", record)
    for entry in entries[:2]:
        store.append("run_d", entry)
    before = load_run(store, "run_d").to_dict()
    journal = Path(store.path("run_d", ".journal"))
    kept = journal.read_bytes()
    store.append("run_d", entries[2])
    line = journal.read_bytes()[len(kept) :]
    outcomes: Counter[str] = Counter()
    for cut in range(len(line) + 1):
        journal.write_bytes(kept + line[:cut])
        loaded = load_run(FileCheckpointStore(tmp_path), "run_d").to_dict()
        outcomes["after" if loaded != before else "before"] += 1
        assert loaded == before or cut == len(line)
    assert outcomes == {"before": len(line), "after": 1}
    journal.write_bytes(kept + line[:50])  # torn, then the next append cuts the tear off
    store.append("run_d", entries[2])
    store.append("run_d", entries[3])
    assert load_run(FileCheckpointStore(tmp_path), "run_d").to_dict() == live.to_dict()


def test_a_state_behind_the_deltas_in_the_store_is_refused_and_the_loaded_one_continues(
    store: RunStore,
) -> None:
    stale, record, entries, live = _journaled_run()  # as a crash left it: a record, then deltas
    _saved_with(store, entries)
    with pytest.raises(CheckpointError, match=r"later point of run 'run_d' \(2 steps, 3 model calls\)"):
        CheckpointHook(store).pre_loop(stale, stale.history, None)
    loaded = load_run(store, "run_d")
    hook = CheckpointHook(store)
    hook.pre_loop(loaded, loaded.history, None)  # its first write is a whole save
    assert store.load("run_d") == (live.to_dict(), [])
    hook.on_loop_end(loaded, loaded.history, None, None)


def test_a_result_journaled_before_a_delta_is_kept_by_the_delta() -> None:
    state = DefaultState(task="t", run_id="run_r")
    state.in_flight["c1"] = Intent("c1", "work", {"n": 1})
    record = json.loads(json.dumps(state.to_dict()))
    since = record_fields(state)
    result = ToolResult(tool="work", data="done", call_id="c1")
    state.llm_calls = 1  # a delta whose snapshot of in_flight predates the result
    entries = [
        {"type": "result", "call_id": "c1", "result": result.to_dict()},
        json.loads(json.dumps(record_delta(state, 0, 0))),
    ]
    loaded = DefaultState.from_dict(record)
    apply_journal(loaded, entries)
    assert loaded.in_flight["c1"].result == result and loaded.llm_calls == 1
    assert since["in_flight"] == entries[1]["fields"]["in_flight"]


def test_a_subclass_field_travels_in_deltas() -> None:
    from dataclasses import dataclass, field

    @dataclass
    class TicketState(DefaultState):
        tickets: list[str] = field(default_factory=list)

    store = CountingStore()
    hook = CheckpointHook(store)
    state = TicketState(task="t")
    hook.pre_loop(state, state.history, None)
    state.tickets.append("T-1")
    hook.after_step(state, state.history, _step(state, 1))
    assert store.count("delta") == 1
    back = load_run(store, state.run_id, TicketState)
    assert back.tickets == ["T-1"] and back.to_dict() == state.to_dict()


# -- random runs -----------------------------------------------------------------------------------

TURNS = st.lists(st.lists(st.sampled_from(["work", "note"]), min_size=1, max_size=4), min_size=1, max_size=10)


@given(
    turns=TURNS,
    compact_at=st.sets(st.integers(2, 10), max_size=3),
    same_length=st.booleans(),
    deltas_per_save=st.sampled_from([0, 1, 3, 100]),
)
def test_random_runs_checkpointed_incrementally_load_equal_to_the_live_state(
    turns: list[list[str]], compact_at: set[int], same_length: bool, deltas_per_save: int
) -> None:
    store = CountingStore()
    compactor = Compactor(compact_at, same_length=same_length)
    hook = CheckpointHook(store, deltas_per_save=deltas_per_save)
    state, mirror, steps = run_checked(turns, store=store, hook=hook, extra_hooks=(compactor,))
    assert mirror.checked == len(steps) == sum(map(len, turns)) + 1
    saves = store.count("save")
    if deltas_per_save == 0:
        assert store.count("delta") == 0
    else:
        assert saves <= 2 + compactor.done + store.count("delta") // deltas_per_save
    event(f"compactions: {compactor.done}")
    event("batches" if any(len(t) > 1 for t in turns) else "single calls only")
    event(
        "a whole save for the journal's length"
        if 0 < deltas_per_save <= 3 and saves > 2 + compactor.done
        else "no count save"
    )
    _REACHED["compacted"] += compactor.done > 0
    _REACHED["mixed groups"] += any("work" in t and "note" in t for t in turns)
    _REACHED["count saves"] += 0 < deltas_per_save <= 3 and saves > 2 + compactor.done
    _REACHED["fields-only deltas"] += store.empty_deltas > 0  # a later group's intents, in one turn
    _REACHED["examples"] += 1


_REACHED: Counter[str] = Counter()


def test_the_random_runs_reached_compaction_batches_and_count_saves() -> None:
    if not _REACHED["examples"]:
        test_random_runs_checkpointed_incrementally_load_equal_to_the_live_state()
    n = _REACHED["examples"]
    assert n >= 100  # the profile's examples (300 in "ci")
    assert _REACHED["compacted"] >= n // 4
    assert _REACHED["mixed groups"] >= n // 4
    assert _REACHED["count saves"] >= n // 8
    assert _REACHED["fields-only deltas"] >= n // 4
