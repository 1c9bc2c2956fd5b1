"""Durable runs on DBOS (SQLite): a run survives SIGKILL of its process, and a paused run waits
durably for a decision sent from another process. Each test has its own database file and
runs its agents in child processes (`tests/dbos_child.py`)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dbos_processes import (
    WAIT_S,
    child_env,
    child_outcome,
    kill,
    side_lines,
    start_child,
    wait_for_line,
)

pytest.importorskip("dbos")

from looplet.dbos_runs import approve, reject, run_status  # noqa: E402
from looplet.errors import ConfigError  # noqa: E402


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dbos.sqlite'}"


@pytest.mark.parametrize("idempotent", [False, True], ids=["interrupted", "idempotent"])
def test_run_killed_mid_tool_is_recovered_by_a_new_process(tmp_path: Path, idempotent: bool) -> None:
    block = tmp_path / "block"
    block.touch()
    env = child_env(tmp_path, "kill", LOOPLET_BLOCK=str(block), LOOPLET_IDEMPOTENT="1" if idempotent else "0")
    first = start_child("run", _db(tmp_path), "run-kill", env, tmp_path)
    wait_for_line(tmp_path, "start c", first)
    kill(first)
    assert side_lines(tmp_path) == ["a", "b", "start c"]
    block.unlink()

    outcome = child_outcome(start_child("recover", _db(tmp_path), "run-kill", env, tmp_path))

    assert outcome["stop_reason"] == "done"
    assert [s["tool_call"]["call_id"] for s in outcome["steps"]] == ["k1", "k2", "k3", "k4", "k5"]
    third = outcome["steps"][2]["tool_result"]
    if idempotent:  # run again, with the same call id
        assert side_lines(tmp_path) == ["a", "b", "start c", "start c", "d"]
        assert third["error"] is None
    else:  # not run again: reported to the model as interrupted
        assert side_lines(tmp_path) == ["a", "b", "start c", "d"]
        assert third["error_kind"] == "interrupted"


def test_paused_run_continues_when_approved_from_another_process(tmp_path: Path) -> None:
    env = child_env(tmp_path, "approval")
    child = start_child("run", _db(tmp_path), "run-approve", env, tmp_path)
    status = run_status("run-approve", db_url=_db(tmp_path), timeout_s=WAIT_S)
    assert status is not None and status["stop_reason"] == "approval_pending"
    assert [p["call_id"] for p in status["pending"]] == ["c2"]
    assert side_lines(tmp_path) == ["a"]

    approve("run-approve", "c2", db_url=_db(tmp_path))

    outcome = child_outcome(child)
    assert outcome["stop_reason"] == "done"
    assert side_lines(tmp_path) == ["a", "refund 40"]
    assert run_status("run-approve", db_url=_db(tmp_path))["stop_reason"] == "done"  # type: ignore[index]


def test_paused_run_survives_its_process_and_a_rejection_reaches_the_model(tmp_path: Path) -> None:
    env = child_env(tmp_path, "approval")
    first = start_child("run", _db(tmp_path), "run-reject", env, tmp_path)
    status = run_status("run-reject", db_url=_db(tmp_path), timeout_s=WAIT_S)
    assert status is not None and status["stop_reason"] == "approval_pending"
    kill(first)

    reject("run-reject", "c2", "not without a receipt", db_url=_db(tmp_path))
    outcome = child_outcome(start_child("recover", _db(tmp_path), "run-reject", env, tmp_path))

    assert outcome["stop_reason"] == "done"
    assert side_lines(tmp_path) == ["a"]  # the refund never ran
    refund = next(s for s in outcome["steps"] if s["tool_call"]["call_id"] == "c2")
    assert refund["tool_result"]["error_kind"] == "denied"
    assert "not without a receipt" in refund["tool_result"]["error"]


def test_a_run_recovered_after_its_decision_reports_its_end_not_its_old_pause(tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.touch()
    env = child_env(tmp_path, "approval_then_kill", LOOPLET_BLOCK=str(block))
    first = start_child("run", _db(tmp_path), "run-late", env, tmp_path)
    status = run_status("run-late", db_url=_db(tmp_path), timeout_s=WAIT_S)
    assert status is not None and status["stop_reason"] == "approval_pending"
    approve("run-late", "c2", db_url=_db(tmp_path))
    wait_for_line(tmp_path, "start c", first)
    kill(first)  # dies after the decision, inside the next tool
    block.unlink()

    outcome = child_outcome(start_child("recover", _db(tmp_path), "run-late", env, tmp_path))

    assert outcome["stop_reason"] == "done"
    assert side_lines(tmp_path) == ["refund 40", "start c"]
    ended = run_status("run-late", db_url=_db(tmp_path))
    assert ended is not None and ended["stop_reason"] == "done"  # not the pause published before the crash
    assert ended["final_answer"] == {"answer": "refunded"}


def test_a_stale_or_unknown_decision_leaves_the_run_waiting(tmp_path: Path) -> None:
    env = child_env(tmp_path, "approval")
    child = start_child("run", _db(tmp_path), "run-stale", env, tmp_path)
    assert run_status("run-stale", db_url=_db(tmp_path), timeout_s=WAIT_S) is not None
    approve("run-stale", "c9", db_url=_db(tmp_path))  # no such call: ignored, the run waits on
    approve("run-stale", "c2", db_url=_db(tmp_path))

    assert child_outcome(child)["stop_reason"] == "done"
    assert side_lines(tmp_path) == ["a", "refund 40"]


def test_importing_looplet_does_not_import_dbos() -> None:
    code = "import sys, looplet; print('dbos' in sys.modules, 'looplet.dbos_runs' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_without_dbos_a_durable_run_names_the_extra_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['dbos'] = None\n"
        "from looplet.dbos_runs import start_dbos\n"
        "from looplet.errors import ConfigError\n"
        "try:\n    start_dbos()\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert 'pip install "looplet[dbos]"' in out.stdout


def test_durable_run_refuses_an_agent_object() -> None:
    from looplet.dbos_runs import start_durable_run
    from looplet.presets import minimal_preset

    with pytest.raises(ConfigError, match="module:factory"):
        start_durable_run(minimal_preset(), "task")  # type: ignore[arg-type]


def _worker(db_url: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "looplet", "worker", "dbos_child:agent", "--db", db_url, "--concurrency", "2"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert "serving looplet:dbos_child:agent" in worker.stdout.readline()
    return worker


def test_worker_runs_the_agents_queued_runs(tmp_path: Path) -> None:
    from looplet.dbos_runs import enqueue_run, wait_for_run

    env = child_env(tmp_path, "kill")
    worker = _worker(_db(tmp_path), env, tmp_path)
    try:
        ids = [
            enqueue_run("dbos_child:agent", "notes", db_url=_db(tmp_path), run_id=f"q{i}") for i in range(3)
        ]
        outcomes = [wait_for_run(run_id, db_url=_db(tmp_path)) for run_id in ids]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=WAIT_S)
    assert worker.returncode == 0
    assert [o["stop_reason"] for o in outcomes] == ["done"] * 3
    assert sorted(side_lines(tmp_path)) == sorted(["a", "b", "start c", "d"] * 3)


def test_a_killed_workers_run_is_finished_by_the_next_worker(tmp_path: Path) -> None:
    from looplet.dbos_runs import enqueue_run, wait_for_run

    block = tmp_path / "block"
    block.touch()
    env = child_env(tmp_path, "kill", LOOPLET_BLOCK=str(block))
    first = _worker(_db(tmp_path), env, tmp_path)
    enqueue_run("dbos_child:agent", "notes", db_url=_db(tmp_path), run_id="q-kill")
    wait_for_line(tmp_path, "start c", first)
    kill(first)
    block.unlink()

    second = _worker(_db(tmp_path), env, tmp_path)
    try:
        outcome = wait_for_run("q-kill", db_url=_db(tmp_path))
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=WAIT_S)
    assert outcome["stop_reason"] == "done"
    assert side_lines(tmp_path) == ["a", "b", "start c", "d"]
    assert outcome["steps"][2]["tool_result"]["error_kind"] == "interrupted"


def test_worker_refuses_an_agent_it_cannot_build(tmp_path: Path) -> None:
    env = child_env(tmp_path, "kill")
    out = subprocess.run(
        [sys.executable, "-m", "looplet", "worker", "no_such_module:agent", "--db", _db(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("looplet worker:") and "no_such_module" in out.stderr
