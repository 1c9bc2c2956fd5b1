"""Durable runs on PostgreSQL: a real server (the system's ``initdb``/``postgres``) started per test
session (so per xdist worker) in a temporary directory on 127.0.0.1, stopped by its pid at the end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from postgres_server import PostgresServer, missing, start_server

psycopg = pytest.importorskip("psycopg")


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
