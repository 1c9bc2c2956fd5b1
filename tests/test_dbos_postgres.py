"""Durable runs on PostgreSQL: a real server (the system's ``initdb``/``postgres``) started per test
session (so per xdist worker) in a temporary directory on 127.0.0.1, stopped by its pid at the end."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbos_processes import (
    SRC,
    WAIT_S,
    child_env,
    child_outcome,
    kill,
    side_lines,
    start_child,
    wait_for_line,
)
from postgres_server import PostgresServer, missing, start_server
from store_conformance import RunStoreConformance

from looplet.checkpoints import RunLock, RunStore, load_run
from looplet.errors import CheckpointLocked

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("sqlalchemy")

from looplet.sql_store import SqlRunStore  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server with a database ``looplet``; skipped (with the reason) where none can run."""
    problem = missing()
    if problem is not None:
        pytest.skip(f"environment limit: {problem}")
    server = start_server("looplet")
    try:
        yield server
    finally:
        server.stop()


def test_the_server_runs_unprivileged_on_loopback_with_the_database(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.url("looplet"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_database(), host(inet_server_addr()), current_setting('server_version_num')"
        ).fetchone()
    assert row is not None
    assert row[0] == "looplet"
    assert row[1] == "127.0.0.1"
    assert int(row[2]) >= 140000
    owner = subprocess.run(["ps", "-o", "user=", "-p", str(postgres.pid)], capture_output=True, text=True)
    if os.geteuid() == 0:
        assert owner.stdout.strip() == "postgres"  # the postmaster is the pid we stop, and not root
    else:
        assert owner.stdout.strip() != ""


# -- the SQL run store ---------------------------------------------------------------------------------


class TestSqlRunStoreOnSqlite(RunStoreConformance):
    def make_store(self, tmp_path: Path) -> RunStore:
        return SqlRunStore(f"sqlite:///{tmp_path / 'runs.sqlite'}")


class TestSqlRunStoreOnPostgres(RunStoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, postgres: PostgresServer) -> None:
        self.url = postgres.url("looplet")

    def make_store(self, tmp_path: Path) -> RunStore:
        return SqlRunStore(self.url, namespace=f"t{secrets.token_hex(8)}")  # a fresh, empty store


LOCK_HOLDER = """
import sys
from looplet.sql_store import SqlRunStore
store = SqlRunStore(sys.argv[1], namespace=sys.argv[2])
held = store.lock("run_a")
print("held", flush=True)
sys.stdin.read()
"""


def _holder(url: str, namespace: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, url, namespace],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held", child.stderr.read() if child.stderr else ""
    return child


def _lock_when_free(store: SqlRunStore, attempts: int = 200) -> tuple[RunLock, int]:
    """Take the lock, retrying while a dead holder's session is being closed; returns it and the refusals."""
    for refused in range(attempts):
        try:
            return store.lock("run_a"), refused
        except CheckpointLocked:
            time.sleep(0.05)
    raise AssertionError(f"the lock was never freed after {attempts} tries")


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_run_lock_holds_across_processes_and_dies_with_its_holder(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").url("looplet")
    namespace = f"t{secrets.token_hex(8)}"
    store = SqlRunStore(url, namespace=namespace)
    holder = _holder(url, namespace)
    with pytest.raises(CheckpointLocked):
        store.lock("run_a")
    store.lock("run_b").release()  # another run's lock is free

    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)

    lock, _ = _lock_when_free(store)
    with pytest.raises(CheckpointLocked):
        store.lock("run_a")  # taken over: held here now
    lock.release()
    store.lock("run_a").release()
    store.close()


# -- durable runs on PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """A fresh database of the session's server, for one test (DBOS recovers every run it holds)."""
    return postgres.create_database(f"t{secrets.token_hex(6)}")


def test_a_run_on_postgres_killed_mid_tool_continues_from_its_record_in_the_database(
    database: str, tmp_path: Path
) -> None:
    block = tmp_path / "block"
    block.touch()
    env = child_env(tmp_path, "kill", LOOPLET_BLOCK=str(block))
    first = start_child("run", database, "run-kill", env, tmp_path)
    wait_for_line(tmp_path, "start c", first)
    kill(first)
    block.unlink()
    saved = load_run(SqlRunStore(database), "run-kill")  # the record is in the database
    assert [s.tool_call.call_id for s in saved.steps] == ["k1", "k2"]

    outcome = child_outcome(start_child("recover", database, "run-kill", env, tmp_path))

    assert outcome["stop_reason"] == "done"
    assert [s["tool_call"]["call_id"] for s in outcome["steps"]] == ["k1", "k2", "k3", "k4", "k5"]
    assert side_lines(tmp_path) == ["a", "b", "start c", "d"]  # each tool body ran once; c was not re-run
    assert outcome["steps"][2]["tool_result"]["error_kind"] == "interrupted"
    assert not (tmp_path / ".looplet").exists() and not (tmp_path / "runs").exists()


# -- two workers draining one queue --------------------------------------------------------------------

QUEUE_AGENT = "test_dbos_postgres:queue_agent"
TASKS = 50
GLOBAL = 4
EACH = 3  # per worker: two workers could run 6 at once without the queue's global limit


def queue_agent() -> tuple[Any, Any]:
    """The factory the workers build: ``work(task)`` writes ``<task> <worker> <running>`` to the side file.

    ``<running>`` is how many runs are inside `work` at that moment, across
    both workers: each holds a marker file ``<task>.<worker>`` in
    ``LOOPLET_RUNNING`` while it works. The first runs wait (up to 20 s) until `GLOBAL` are inside at once,
    so the test sees the limit reached, not only never passed. The worker with
    ``LOOPLET_BLOCK`` set blocks inside `work` once the side file holds
    ``LOOPLET_BLOCK_AFTER`` lines (touching ``<block>.reached`` first), so the
    test kills it midway with a run in flight.
    """
    from looplet import BaseToolRegistry, FunctionBackend, LoopConfig, ToolCall, register_done_tool
    from looplet.presets import AgentPreset

    tools = BaseToolRegistry()

    @tools.tool
    def work(task: str) -> dict[str, Any]:
        """Do the task's work (once)."""
        running = Path(os.environ["LOOPLET_RUNNING"])
        marker = running / f"{task}.{os.environ['LOOPLET_WORKER']}"
        marker.touch()
        _until(lambda: len(list(running.iterdir())) >= GLOBAL or (running / "reached").exists(), 20.0)
        inside = len([p for p in running.iterdir() if p.name != "reached"])
        if inside >= GLOBAL:
            (running / "reached").touch()
        side = os.environ["LOOPLET_SIDE"]
        with open(side, "a") as out:
            out.write(f"{task} {os.environ['LOOPLET_WORKER']} {inside}\n")
            out.flush()
            os.fsync(out.fileno())
        block = os.environ.get("LOOPLET_BLOCK", "")
        if block and len(Path(side).read_text().splitlines()) >= int(os.environ["LOOPLET_BLOCK_AFTER"]):
            Path(block + ".reached").touch()
            _until(lambda: not os.path.exists(block), 60.0)  # the test kills the worker here
        time.sleep(0.02)  # stay inside a moment, so runs overlap
        marker.unlink()
        return {"worked": task}

    register_done_tool(tools)

    def reply(request: Any) -> Any:
        task = next(str(m.content) for m in request.messages if m.role == "user").split()[-1]
        if not any(m.role == "assistant" for m in request.messages):
            return ToolCall("work", {"task": task}, call_id=f"w-{task}")
        return ToolCall("done", {"answer": task}, call_id=f"d-{task}")

    return AgentPreset(config=LoopConfig(max_steps=5), tools=tools), FunctionBackend(reply)


def _until(condition: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _worker(name: str, database: str, tmp_path: Path, *flags: str, **extra: str) -> subprocess.Popen[str]:
    """A ``looplet worker`` with its own DBOS executor id: a restart under that id recovers its runs."""
    env = child_env(tmp_path, "queue", LOOPLET_WORKER=name, DBOS__VMID=f"worker-{name}", **extra)
    worker = subprocess.Popen(
        [sys.executable, "-m", "looplet", "worker", QUEUE_AGENT, "--db", database, *flags],
        env={**env, "LOOPLET_RUNNING": str(tmp_path / "running")},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert "serving looplet:" in line, worker.stderr.read() if worker.stderr else line
    return worker


def _stop(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=WAIT_S)


def test_two_workers_drain_fifty_tasks_at_global_concurrency_four_and_a_killed_workers_run_is_recovered(
    database: str, tmp_path: Path
) -> None:
    (tmp_path / "running").mkdir()
    tasks = tmp_path / "tasks.jsonl"
    ids = [f"t{i:02d}" for i in range(TASKS)]
    tasks.write_text("".join(json.dumps({"id": i, "task": f"do {i}"}) + "\n" for i in ids))
    block = tmp_path / "block"
    block.touch()
    first = _worker(
        "a", database, tmp_path, "--concurrency", str(EACH), LOOPLET_BLOCK=str(block), LOOPLET_BLOCK_AFTER="9"
    )
    second = _worker("b", database, tmp_path)
    workers = [first, second]
    batch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "looplet",
            "batch",
            QUEUE_AGENT,
            str(tasks),
            "--engine",
            "dbos",
            "--db",
            database,
            "--concurrency",
            str(GLOBAL),
            "--out",
            str(tmp_path / "out"),
            "--no-local-worker",
        ],
        env=child_env(tmp_path, "queue"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while not (tmp_path / "block.reached").exists():
            assert first.poll() is None, first.communicate()[1]
            assert batch.poll() is None, batch.communicate()
            assert time.monotonic() < deadline, "worker a never reached the block"
            time.sleep(0.02)
        kill(first)  # worker a dies inside a tool, with its run in flight
        killed_in = [line.split()[0] for line in side_lines(tmp_path) if line.split()[1] == "a"][-1]
        for marker in (tmp_path / "running").glob("*.a"):
            marker.unlink()  # the runs that died in `work` with worker a no longer work
        block.unlink()
        workers.append(_worker("a", database, tmp_path))  # a restart under a's executor id recovers it
        out, err = batch.communicate(timeout=WAIT_S * 3)
    finally:
        if batch.poll() is None:
            batch.kill()
        for worker in workers:
            _stop(worker)

    assert batch.returncode == 0, (out, err)
    assert f"{TASKS} tasks: {TASKS} done, 0 failed, 0 paused" in out
    lines = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ids  # one results line per task
    assert {line["status"] for line in lines} == {"done"}
    side = [line.split() for line in side_lines(tmp_path)]
    worked = [task for task, _, _ in side]
    assert len(worked) == len(set(worked))  # no task's work ran twice, across all workers
    assert {worker for _, worker, _ in side} >= {"a", "b"}  # both workers took tasks
    seen = "; ".join(" ".join(line) for line in side)
    assert max(int(inside) for _, _, inside in side) == GLOBAL, seen  # the limit reached, never passed
    from looplet.dbos_runs import wait_for_run

    # the runs that died inside `work` with worker a (the blocked one and any other it had there, with
    # or without their line written) were reported interrupted, not run again; every other task worked
    interrupted = {
        line["id"]
        for line in lines
        if wait_for_run(line["run_id"], db_url=database)["steps"][0]["tool_result"]["error_kind"]
        == "interrupted"
    }
    assert killed_in in interrupted
    assert interrupted | set(worked) == set(ids)
    assert {worker for task, worker, _ in side if task in interrupted} == {"a"}  # only a's runs died
    assert len(interrupted) <= EACH  # worker a held at most its limit of runs when it died


def test_a_worker_masks_the_password_of_its_database_and_takes_its_executor_id(
    database: str, tmp_path: Path
) -> None:
    secret_url = database.replace("://postgres@", "://postgres:pw-canary-5150@", 1)
    assert "pw-canary-5150" in secret_url  # the test server trusts loopback, so any password works
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "looplet",
            "worker",
            QUEUE_AGENT,
            "--db",
            secret_url,
            "--executor-id",
            "box-7",
        ],
        env=child_env(tmp_path, "queue"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert "serving looplet:" in line and "pw-canary-5150" not in line, line
        assert "[REDACTED]" in line
    finally:
        _stop(worker)
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""
