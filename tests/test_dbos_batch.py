"""``looplet batch --engine dbos`` on the embedded SQLite database: each task a durable run on a DBOS queue.

The batches run as real ``python -m looplet`` processes in a temporary
working directory (so ``.looplet/dbos.sqlite`` is theirs); the agent is this
module's `agent` (``test_dbos_batch:agent``), scripted. Every tool body
appends a line to the side file: the ground truth of what ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from looplet import Ask, BaseToolRegistry, LoopConfig, ToolCall, register_done_tool
from looplet.batch import BatchTask, check_tasks
from looplet.presets import AgentPreset

pytest.importorskip("dbos")

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
AGENT = "test_dbos_batch:agent"
WAIT_S = 90.0


def _append(line: str) -> None:
    with open(os.environ["LOOPLET_SIDE"], "a") as side:
        side.write(line + "\n")
        side.flush()
        os.fsync(side.fileno())


class AskBeforeRefund:
    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        return Ask("refund?") if tool_call.tool == "refund" else None


def agent() -> AgentPreset:
    """``work(item)`` (which blocks while ``LOOPLET_BLOCK`` exists, for ``block`` tasks) and a refund
    that a hook asks about."""
    tools = BaseToolRegistry()

    @tools.tool
    def work(item: str) -> dict[str, Any]:
        """Work on an item, once."""
        _append(f"start {item}")
        block = os.environ.get("LOOPLET_BLOCK", "")
        while item.startswith("block") and block and os.path.exists(block):
            time.sleep(0.02)  # the test kills the batch here
        return {"worked": item}

    @tools.tool
    def refund(amount: int) -> dict[str, Any]:
        """Refund an amount."""
        _append(f"refund {amount}")
        return {"refunded": amount}

    register_done_tool(tools)
    return AgentPreset(config=LoopConfig(max_steps=6), tools=tools, hooks=[AskBeforeRefund()])


def scripted_responses(task: BatchTask) -> Any:
    """``refund N`` tasks refund; any other task works on its text; then done."""
    words = task.task.split()

    def reply(request: Any) -> Any:
        if not any(m.role == "assistant" for m in request.messages):
            if words[0] == "refund":
                return ToolCall("refund", {"amount": int(words[1])}, call_id="r1")
            return ToolCall("work", {"item": task.task}, call_id="w1")
        return ToolCall("done", {"answer": task.task}, call_id="d1")

    return reply


def _tasks(tmp_path: Path, texts: dict[str, str]) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"id": i, "task": t}) + "\n" for i, t in texts.items()))
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DBOS_SYSTEM_DATABASE_URL"}
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)]),
        "LOOPLET_SIDE": str(tmp_path / "side"),
        **extra,
    }


def _batch(tmp_path: Path, *flags: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "looplet",
            "batch",
            AGENT,
            "tasks.jsonl",
            "--engine",
            "dbos",
            "--scripted",
            *flags,
        ],
        env=_env(tmp_path, **extra),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=WAIT_S)
    return child.returncode, out, err


def _side(tmp_path: Path) -> list[str]:
    path = tmp_path / "side"
    return path.read_text().splitlines() if path.exists() else []


def _results(tmp_path: Path) -> dict[str, dict[str, Any]]:
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    return {data["id"]: data for data in map(json.loads, lines)}


def test_one_command_runs_the_batch_as_durable_runs_on_the_embedded_database_and_reruns_run_nothing_again(
    tmp_path: Path,
) -> None:
    texts = {f"t{i}": f"item {i}" for i in range(8)}
    _tasks(tmp_path, texts)

    code, out, err = _finish(_batch(tmp_path, "--concurrency", "3", "--out", "out"))
    assert code == 0, err
    assert "8 tasks: 8 done, 0 failed, 0 paused" in out
    assert (tmp_path / ".looplet" / "dbos.sqlite").is_file()  # the embedded default: no server, no flag
    results = _results(tmp_path)
    assert sorted(results) == sorted(texts)
    assert {r["status"] for r in results.values()} == {"done"}
    assert results["t3"]["final_answer"] == {"answer": "item 3"}
    assert results["t3"]["steps"] == 2 and results["t3"]["run_id"].endswith("-t3")
    assert sorted(_side(tmp_path)) == sorted(f"start {t}" for t in texts.values())

    code, out, _ = _finish(_batch(tmp_path, "--concurrency", "3", "--out", "out"))
    assert code == 0 and "8 had ended in an earlier session" in out

    (tmp_path / "out" / "results.jsonl").unlink()  # the results lost: the runs are joined, not run again
    code, out, _ = _finish(_batch(tmp_path, "--concurrency", "3", "--out", "out"))
    assert code == 0 and "8 tasks: 8 done" in out
    assert sorted(_results(tmp_path)) == sorted(texts)
    assert len(_side(tmp_path)) == 8  # every tool body ran once in all


def test_a_killed_batch_is_continued_by_the_same_command_and_no_tool_runs_twice(tmp_path: Path) -> None:
    texts = {"blocker": "block me", **{f"q{i}": f"quick {i}" for i in range(4)}}
    _tasks(tmp_path, texts)
    block = tmp_path / "block"
    block.touch()
    first = _batch(tmp_path, "--concurrency", "2", "--out", "out", LOOPLET_BLOCK=str(block))
    deadline = time.monotonic() + WAIT_S
    while "start block me" not in _side(tmp_path):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the blocking task never started"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)  # the batch dies with the blocking tool in flight
    first.communicate(timeout=WAIT_S)
    block.unlink()

    code, out, err = _finish(_batch(tmp_path, "--concurrency", "2", "--out", "out"))

    assert code == 0, err
    results = _results(tmp_path)
    assert sorted(results) == sorted(texts) and {r["status"] for r in results.values()} == {"done"}
    side = _side(tmp_path)
    assert len(side) == len(set(side))  # no tool body ran twice
    from looplet.dbos_runs import wait_for_run

    db = f"sqlite:///{tmp_path / '.looplet' / 'dbos.sqlite'}"
    interrupted = {
        task_id
        for task_id, line in results.items()
        if wait_for_run(line["run_id"], db_url=db)["steps"][0]["tool_result"]["error_kind"] == "interrupted"
    }
    assert "blocker" in interrupted  # its tool started and died with the batch: not run again
    # any other task either worked once or died inside its tool with the batch (at most one more ran)
    assert {f"start {texts[t]}" for t in set(texts) - interrupted} <= set(side)
    assert len(interrupted) <= 2


def test_a_paused_task_is_listed_with_its_run_id_and_finishes_after_approval_from_another_process(
    tmp_path: Path,
) -> None:
    _tasks(tmp_path, {"a": "item a", "r": "refund 40"})

    code, out, _ = _finish(_batch(tmp_path, "--concurrency", "2", "--out", "out"))

    assert code == 1  # not every task is done
    assert "2 tasks: 1 done, 0 failed, 1 paused" in out
    from looplet.dbos_batch import batch_run_id

    [task_r] = check_tasks([{"id": "r", "task": "refund 40"}])
    run_id = batch_run_id(tmp_path / "out", task_r)
    assert f"paused for approval: r (run {run_id})" in out
    assert _side(tmp_path) == ["start item a"]
    assert sorted(_results(tmp_path)) == ["a"]

    from looplet.dbos_runs import approve, run_status

    db = f"sqlite:///{tmp_path / '.looplet' / 'dbos.sqlite'}"
    status = run_status(run_id, db_url=db)
    assert status is not None and [p["call_id"] for p in status["pending"]] == ["r1"]
    approve(run_id, "r1", db_url=db)

    code, out, err = _finish(_batch(tmp_path, "--concurrency", "2", "--out", "out"))
    assert code == 0, (out, err)
    assert _results(tmp_path)["r"]["status"] == "done"
    assert _side(tmp_path) == ["start item a", "refund 40"]


def test_the_queue_limits_are_kept_in_the_database_and_merged(tmp_path: Path) -> None:
    _tasks(tmp_path, {"a": "item a"})
    assert _finish(_batch(tmp_path, "--concurrency", "3", "--out", "out"))[0] == 0
    from looplet.dbos_runs import queue_limits, set_queue_limits
    from looplet.errors import ConfigError

    db = f"sqlite:///{tmp_path / '.looplet' / 'dbos.sqlite'}"
    assert queue_limits(AGENT, db_url=db) == (3, 3)  # the batch's global limit; each worker held under it
    assert queue_limits("test_dbos_batch:other", db_url=db) is None
    assert set_queue_limits(AGENT, db_url=db, worker_concurrency=2) == (3, 2)
    assert set_queue_limits(AGENT, db_url=db, global_concurrency=1) == (1, 1)
    assert set_queue_limits(AGENT, db_url=db, worker_concurrency=5) == (1, 1)
    assert set_queue_limits(AGENT, db_url=db, global_concurrency=8) == (8, 1)
    assert queue_limits(AGENT, db_url=db) == (8, 1)
    with pytest.raises(ConfigError, match="global_concurrency must be a whole number"):
        set_queue_limits(AGENT, db_url=db, global_concurrency=0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trace"], "--trace goes with --engine local"),
        (["--engine", "local", "--no-local-worker"], "go with --engine dbos"),
        (["--engine", "local", "--db", "sqlite:///x.sqlite"], "go with --engine dbos"),
    ],
    ids=["trace", "no-local-worker", "db"],
)
def test_flags_that_do_not_fit_the_engine_are_refused_in_one_line(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    _tasks(tmp_path, {"a": "item a"})
    code, out, err = _finish(_batch(tmp_path, "--out", "out", *flags))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_queued_batch_refuses_an_agent_it_cannot_send_to_a_worker(tmp_path: Path) -> None:
    from looplet.dbos_batch import run_queued_batch
    from looplet.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot travel to a worker"):
        run_queued_batch(agent, [{"id": 1, "task": "x"}], concurrency=1, out_dir=tmp_path)  # type: ignore[arg-type]


def test_a_worker_without_an_executor_id_takes_the_host_name_not_the_shared_default(tmp_path: Path) -> None:
    import socket

    from looplet.dbos_runs import _client, enqueue_run, wait_for_run

    db = f"sqlite:///{tmp_path / 'dbos.sqlite'}"
    env = {k: v for k, v in _env(tmp_path).items() if k != "DBOS__VMID"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "looplet", "worker", "dbos_child:agent", "--db", db],
        env={**env, "LOOPLET_SCENARIO": "approval"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and "serving looplet:" in worker.stdout.readline()
        run_id = enqueue_run("dbos_child:agent", "x", db_url=db, run_id="host-run")
        from looplet.dbos_runs import approve, run_status

        assert run_status(run_id, db_url=db, timeout_s=WAIT_S) is not None
        approve(run_id, "c2", db_url=db)
        assert wait_for_run(run_id, db_url=db)["stop_reason"] == "done"
        client = _client(db)
        try:
            [status] = client.list_workflows(workflow_ids=[run_id], load_input=False)
        finally:
            client.destroy()
        assert status.executor_id == socket.gethostname() != "local"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=WAIT_S)
    assert worker.returncode == 0


def test_a_worker_stopped_with_a_paused_run_exits_and_its_restart_finishes_the_run_once_decided(
    tmp_path: Path,
) -> None:
    from looplet.dbos_runs import approve, enqueue_run, run_status, wait_for_run

    db = f"sqlite:///{tmp_path / 'dbos.sqlite'}"
    env = {**_env(tmp_path), "LOOPLET_SCENARIO": "approval", "DBOS__VMID": "box-1"}

    def start() -> subprocess.Popen[str]:
        worker = subprocess.Popen(
            [sys.executable, "-m", "looplet", "worker", "dbos_child:agent", "--db", db, "--grace", "5"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None and "serving looplet:" in worker.stdout.readline()
        return worker

    first = start()
    run_id = enqueue_run("dbos_child:agent", "x", db_url=db, run_id="paused-at-stop")
    status = run_status(run_id, db_url=db, timeout_s=WAIT_S)
    assert status is not None and status["stop_reason"] == "approval_pending"
    first.send_signal(signal.SIGTERM)
    first.communicate(
        timeout=WAIT_S
    )  # before shutdown(), Python waited on the paused run's thread for an hour
    assert first.returncode == 0
    assert _side(tmp_path) == ["a"]

    approve(run_id, "c2", db_url=db)
    second = start()  # the same executor id: it recovers the paused run, which takes the decision
    try:
        assert wait_for_run(run_id, db_url=db)["stop_reason"] == "done"
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=WAIT_S)
    assert _side(tmp_path) == ["a", "refund 40"]  # each tool body once, across both workers
