"""Durable runs on PostgreSQL: a real server (the system's ``initdb``/``postgres``) started per test
session (so per xdist worker) in a temporary directory on 127.0.0.1, stopped by its pid at the end."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, missing, start_server
from store_conformance import RunStoreConformance

from looplet.checkpoints import RunLock, RunStore
from looplet.errors import CheckpointLocked

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("sqlalchemy")

from looplet.sql_store import SqlRunStore  # noqa: E402

SRC = Path(__file__).parent.parent / "src"


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
