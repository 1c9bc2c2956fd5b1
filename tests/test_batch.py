"""Batch runs (`looplet.batch`): bounded concurrency, a results line per task, resuming, deadlines."""

from __future__ import annotations

import asyncio
import fcntl
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from looplet import BaseToolRegistry, LoopConfig, ToolCall, register_done_tool
from looplet.backends.mock import AsyncFunctionBackend, FunctionBackend
from looplet.batch import (
    BUILD_ERROR,
    BatchBusy,
    BatchInputError,
    BatchTask,
    arun_batch,
    check_tasks,
    read_tasks,
    run_batch,
    task_file_name,
)
from looplet.checkpoints import FileCheckpointStore, load_run
from looplet.hooks.decisions import Ask
from looplet.presets import AgentPreset

BATCHER = Path(__file__).parent / "data" / "cartridges" / "batcher"


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


class Tally:
    """An agent factory whose work tool counts its runs per task and the tasks running at once."""

    def __init__(self, hooks: list[Any] | None = None) -> None:
        self.ran: dict[str, int] = {}
        self.running = 0
        self.most_at_once = 0
        self.hooks = hooks or []

    def __call__(self, task: BatchTask) -> AgentPreset:
        tools = BaseToolRegistry()

        @tools.tool
        async def work(item: str) -> dict[str, str]:
            """Work on an item."""
            self.ran[item] = self.ran.get(item, 0) + 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            for _ in range(3):
                await asyncio.sleep(0)  # let the other tasks in while this one is running
            self.running -= 1
            return {"worked": item}

        register_done_tool(tools)
        return AgentPreset(config=LoopConfig(max_steps=5), tools=tools, hooks=list(self.hooks))


def script(task: BatchTask) -> FunctionBackend:
    """One work call, then done: picked by how many replies the history holds, so a continued run
    goes on where it stopped."""
    replies = [
        ToolCall("work", {"item": task.id}, call_id="w1"),
        ToolCall("done", {"answer": f"worked on {task.id}"}, call_id="d1"),
    ]
    return FunctionBackend(lambda request: replies[sum(m.role == "assistant" for m in request.messages)])


def test_two_hundred_tasks_at_concurrency_16_all_finish_with_at_most_16_at_once(tmp_path: Path) -> None:
    tally = Tally()
    tasks = [{"id": f"t{i}", "task": f"task {i}"} for i in range(200)]
    summary = run_batch(tally, tasks, concurrency=16, out_dir=tmp_path, llm=script)
    lines = results(tmp_path)
    assert (summary.total, summary.done, summary.failed, summary.paused) == (200, 200, 0, [])
    assert sorted(line["id"] for line in lines) == sorted(t["id"] for t in tasks)
    assert {line["status"] for line in lines} == {"done"}
    assert lines[0]["final_answer"] == {"answer": f"worked on {lines[0]['id']}"}
    assert set(lines[0]) >= {"stop_reason", "usage", "cost", "elapsed_s", "error"}
    assert tally.ran == {t["id"]: 1 for t in tasks}
    assert 2 <= tally.most_at_once <= 16


def test_a_rerun_skips_the_tasks_that_ended(tmp_path: Path) -> None:
    tally = Tally()
    tasks = [{"id": i, "task": "go"} for i in range(12)]
    run_batch(tally, tasks, concurrency=4, out_dir=tmp_path, llm=script)
    again = run_batch(tally, tasks, concurrency=4, out_dir=tmp_path, llm=script)
    assert (again.skipped, again.done, again.failed) == (12, 12, 0)
    assert tally.ran == {str(i): 1 for i in range(12)}
    assert len(results(tmp_path)) == 12


def test_a_hanging_task_hits_its_deadline_and_the_others_finish(tmp_path: Path) -> None:
    tasks = [{"id": "stuck", "task": "hang"}] + [{"id": f"q{i}", "task": "quick"} for i in range(6)]
    summary = run_batch(BATCHER, tasks, concurrency=3, out_dir=tmp_path, scripted=True, deadline_s=0.3)
    by_id = {line["id"]: line for line in results(tmp_path)}
    assert by_id["stuck"]["stop_reason"] == "deadline"
    assert by_id["stuck"]["status"] == "failed"
    assert all(by_id[f"q{i}"]["status"] == "done" for i in range(6))
    assert (summary.done, summary.failed) == (6, 1)


def test_a_model_that_ignores_the_deadline_is_cancelled_by_the_outer_timeout(tmp_path: Path) -> None:
    async def never(request: Any) -> Any:
        await asyncio.sleep(3600)

    def model(task: BatchTask) -> Any:
        return AsyncFunctionBackend(never) if task.id == "deaf" else script(task)

    tasks = [{"id": "deaf", "task": "x"}, {"id": "fine", "task": "y"}]
    summary = run_batch(Tally(), tasks, concurrency=2, out_dir=tmp_path, llm=model, deadline_s=0.1)
    by_id = {line["id"]: line for line in results(tmp_path)}
    assert by_id["deaf"]["stop_reason"] == "deadline"
    assert "did not stop within" in by_id["deaf"]["error"]
    assert by_id["fine"]["status"] == "done"
    assert summary.failed == 1


def test_a_build_failure_and_a_model_error_are_recorded_and_the_batch_goes_on(tmp_path: Path) -> None:
    tasks = [
        {"id": "a", "task": "quick"},
        {"id": "b", "task": "build-fails"},
        {"id": "c", "task": "model-fails"},
        {"id": "d", "task": "quick"},
    ]
    summary = run_batch(BATCHER, tasks, concurrency=1, out_dir=tmp_path, scripted=True)
    by_id = {line["id"]: line for line in results(tmp_path)}
    assert by_id["b"]["stop_reason"] == BUILD_ERROR
    assert "cannot be built" in by_id["b"]["error"]
    assert by_id["c"]["stop_reason"] == "llm_error"
    assert "the model is down" in by_id["c"]["error"]
    assert by_id["a"]["status"] == by_id["d"]["status"] == "done"
    assert (summary.done, summary.failed, summary.ok) == (2, 2, False)


def test_a_factory_that_raises_is_a_build_error_for_that_task_only(tmp_path: Path) -> None:
    def factory(task: BatchTask) -> AgentPreset:
        if task.id == "bad":
            raise ValueError("no agent for you")
        return Tally()(task)

    tasks = [{"id": "bad", "task": "x"}, {"id": "good", "task": "y"}]
    run_batch(factory, tasks, concurrency=2, out_dir=tmp_path, llm=script)
    by_id = {line["id"]: line for line in results(tmp_path)}
    assert by_id["bad"]["stop_reason"] == BUILD_ERROR
    assert "no agent for you" in by_id["bad"]["error"]
    assert by_id["good"]["status"] == "done"


class AskBeforeWork:
    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        return Ask("may it work?") if tool_call.args.get("item") == "careful" else None


def test_a_task_paused_for_approval_is_listed_and_continues_once_approved(tmp_path: Path) -> None:
    tally = Tally(hooks=[AskBeforeWork()])
    tasks = [{"id": "careful", "task": "x"}, {"id": "other", "task": "y"}]
    first = run_batch(tally, tasks[:1], concurrency=1, out_dir=tmp_path, llm=script)
    assert first.paused == ["careful"]
    assert not (tmp_path / "results.jsonl").read_text()
    assert tally.ran == {}

    store = FileCheckpointStore(tmp_path / "checkpoints")
    state = load_run(store, "careful")
    state.approve("w1")
    store.save("careful", state.to_dict())

    second = run_batch(tally, tasks, concurrency=2, out_dir=tmp_path, llm=script)
    assert (second.paused, second.done, second.resumed) == ([], 2, 1)
    by_id = {line["id"]: line for line in results(tmp_path)}
    assert by_id["careful"]["status"] == "done"
    assert by_id["careful"]["resumed"] is True
    assert by_id["other"]["resumed"] is False
    assert tally.ran == {"careful": 1, "other": 1}


def test_an_ended_run_whose_line_was_lost_is_recorded_from_its_checkpoint_not_run_again(
    tmp_path: Path,
) -> None:
    tally = Tally()
    tasks = [{"id": "once", "task": "x"}]
    run_batch(tally, tasks, concurrency=1, out_dir=tmp_path, llm=script)
    (tmp_path / "results.jsonl").write_text("")  # a crash between the last save and the line
    again = run_batch(tally, tasks, concurrency=1, out_dir=tmp_path, llm=script)
    assert tally.ran == {"once": 1}
    assert again.done == 1
    assert results(tmp_path)[0]["final_answer"] == {"answer": "worked on once"}


def test_a_module_factory_agent_runs_scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "batch_agents_fixture.py").write_text(
        textwrap.dedent(
            """
            from looplet import ToolCall
            from looplet.presets import minimal_preset

            def make():
                return minimal_preset(max_steps=3)

            def scripted_responses(task):
                return [ToolCall("done", {"answer": "hi " + task.task}, call_id="d1")]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    summary = run_batch(
        "batch_agents_fixture:make", [{"id": 1, "task": "there"}], concurrency=1, out_dir=out, scripted=True
    )
    assert summary.done == 1
    assert results(out)[0]["final_answer"] == {"answer": "hi there"}


@pytest.mark.parametrize(
    ("agent", "says"),
    [
        ("no_such_module_for_batch:make", "cannot be imported"),
        ("json:no_such_factory", "has no function"),
        ("./no/such/folder", "no SKILL.md"),
    ],
)
def test_an_agent_that_cannot_be_loaded_is_an_input_error(tmp_path: Path, agent: str, says: str) -> None:
    with pytest.raises(BatchInputError, match=says):
        run_batch(agent, [{"id": 1, "task": "x"}], concurrency=1, out_dir=tmp_path, scripted=True)


def test_a_bad_jsonl_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": 1, "task": "a"}\n\n{"id": 2, "task": "b"\n')
    with pytest.raises(BatchInputError, match=r"line 3: not JSON"):
        read_tasks(path)
    path.write_text('{"id": 1, "task": "a"}\n{"id": 1, "task": "b"}\n')
    with pytest.raises(BatchInputError, match=r"line 2: id '1' is also the id of .* line 1"):
        read_tasks(path)
    path.write_text('{"id": 1}\n')
    with pytest.raises(BatchInputError, match=r"line 1: \"task\" must be a non-empty string"):
        read_tasks(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(BatchInputError, match=r"line 1: a task is an object"):
        read_tasks(path)


def test_ids_that_are_not_file_names_get_safe_distinct_names() -> None:
    ids = ["plain-id_1", "a/b", "a_b", "a b", "../../etc", "é", "x" * 200]
    names = [task_file_name(i) for i in ids]
    assert names[0] == "plain-id_1"
    assert len(set(names)) == len(ids)
    assert all(FileCheckpointStore.__name__ and all(c.isalnum() or c in "_-" for c in n) for n in names)
    assert all(len(n) <= 128 for n in names)
    assert [t.name for t in check_tasks({"id": i, "task": "t"} for i in ids)] == names


def test_a_second_batch_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".batch.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BatchBusy, match="another batch is running"):
            run_batch(Tally(), [{"id": 1, "task": "x"}], concurrency=1, out_dir=tmp_path, llm=script)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": 2, "deadline_s": 0},
        {"concurrency": 2, "max_steps": 0},
    ],
)
def test_bad_settings_are_refused_before_anything_runs(tmp_path: Path, options: dict[str, Any]) -> None:
    options = {"llm": script, **options}
    with pytest.raises(BatchInputError):
        run_batch(Tally(), [{"id": 1, "task": "x"}], out_dir=tmp_path, **options)
    assert not (tmp_path / "results.jsonl").exists()


def test_a_cartridge_with_no_model_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="pass llm="):
        run_batch(BATCHER, [{"id": 1, "task": "x"}], concurrency=1, out_dir=tmp_path)
    assert not (tmp_path / "results.jsonl").exists()


def test_a_factory_that_returns_its_model_needs_no_llm_and_one_without_a_model_fails_each_task_saying_why(
    tmp_path: Path,
) -> None:
    tally = Tally()

    def with_model(task: BatchTask) -> tuple[AgentPreset, FunctionBackend]:
        return tally(task), script(task)

    summary = run_batch(with_model, [{"id": "a", "task": "x"}], concurrency=1, out_dir=tmp_path / "own")
    assert (summary.done, summary.failed) == (1, 0)
    assert tally.ran == {"a": 1}

    bare = run_batch(Tally(), [{"id": "b", "task": "x"}], concurrency=1, out_dir=tmp_path / "bare")
    [line] = results(tmp_path / "bare")
    assert bare.failed == 1 and line["stop_reason"] == "build_error"
    assert "pass llm=" in line["error"] and "(preset, model)" in line["error"]


def test_the_async_twin_runs_in_a_running_event_loop(tmp_path: Path) -> None:
    async def main() -> Any:
        return await arun_batch(
            Tally(), [{"id": "a", "task": "x"}], concurrency=1, out_dir=tmp_path, llm=script
        )

    assert asyncio.run(main()).done == 1
