"""A throwaway PostgreSQL server for the tests: the system's ``initdb`` and ``postgres``, in a temporary
directory, on 127.0.0.1 and a free port, stopped by its pid.

``initdb`` and ``postgres`` refuse to run as root, so as root they run as the
``postgres`` system user (``runuser -u postgres --``), and the directory is
handed to that user. `missing()` says why a server cannot be started here
(an environment limit: no binaries, no user), so a fixture can skip with it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "missing", "start_server"]

BIN_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
USER = "postgres"
START_S = 30.0
STOP_S = 15.0


@dataclass
class PostgresServer:
    """A running server: connect with `url(database)`; `stop()` ends it and removes its files."""

    root: Path
    port: int
    pid: int
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (a fresh one per test keeps tests apart); returns its URL."""
        _create_database(self.port, name)
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster's pid), SIGKILL if it lingers; then remove the files."""
        _signal_quietly(self.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            _signal_quietly(self.pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout=STOP_S)
        shutil.rmtree(self.root, ignore_errors=True)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in BIN_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _as_root() -> bool:
    return os.geteuid() == 0


def missing() -> str | None:
    """Why no server can be started here (the binaries or the unprivileged user are missing), or None."""
    for name in ("initdb", "postgres"):
        if _binary(name) is None:
            return f"no PostgreSQL here: '{name}' is not on PATH nor in {', '.join(BIN_DIRS)}"
    if _as_root():
        if shutil.which("runuser") is None:
            return "running as root and 'runuser' is missing: initdb/postgres refuse to run as root"
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return f"running as root and there is no '{USER}' system user to run initdb/postgres as"
    return None


def _command(*argv: str) -> list[str]:
    """`argv` run as the unprivileged user when we are root (postgres refuses root)."""
    return ["runuser", "-u", USER, "--", *argv] if _as_root() else list(argv)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _make_root() -> Path:
    """A fresh directory the server's user owns (reachable: /tmp is world-searchable)."""
    root = Path(tempfile.mkdtemp(prefix="looplet-pg-"))
    if _as_root():
        user = pwd.getpwnam(USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    return root


def _initdb(root: Path) -> Path:
    data = root / "data"
    initdb = _binary("initdb")
    assert initdb is not None
    argv = [initdb, "-D", str(data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]
    done = subprocess.run(_command(*argv), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")
    return data


def _launch(root: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    postgres = _binary("postgres")
    assert postgres is not None
    argv = [
        postgres, "-D", str(data), "-p", str(port), "-k", str(root),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off", "-c", "max_connections=200",
    ]  # fmt: skip
    log = open(root / "server.log", "ab")  # noqa: SIM115 - the server writes to it while it runs
    try:
        return subprocess.Popen(_command(*argv), stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def _postmaster_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if first.strip().isdigit() else None


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(root: Path, data: Path, port: int, process: subprocess.Popen[bytes]) -> int:
    """The postmaster's pid once it accepts connections; raises with its log if it exits first."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (root / "server.log").read_text(errors="replace")
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log[-2000:]}")
        pid = _postmaster_pid(data)
        if pid is not None and _accepting(port) and "ready to accept" in _log(root):
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"postgres did not accept connections on port {port} within {START_S:.0f} s")


def _log(root: Path) -> str:
    try:
        return (root / "server.log").read_text(errors="replace")
    except OSError:
        return ""


def _create_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def start_server(database: str = "looplet", attempts: int = 3) -> PostgresServer:
    """Start a server and create `database` in it; a port taken meanwhile (a race) is retried."""
    problem = missing()
    if problem is not None:
        raise RuntimeError(problem)
    root = _make_root()
    try:
        data = _initdb(root)
        for attempt in range(attempts):
            port = _free_port()
            process = _launch(root, data, port)
            try:
                pid = _wait_ready(root, data, port, process)
            except RuntimeError:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=STOP_S)
                if attempt + 1 == attempts or "could not bind" not in _log(root):
                    raise
                continue
            server = PostgresServer(root=root, port=port, pid=pid, process=process)
            try:
                _create_database(port, database)
            except BaseException:
                server.stop()
                raise
            return server
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    raise AssertionError("unreachable")
