"""Driving ``dbos_child.py`` processes for the DBOS tests: start one, wait for a side-file line, kill it,
read its outcome. Shared by the SQLite and the PostgreSQL tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
WAIT_S = 60.0


def child_env(tmp_path: Path, scenario: str, **extra: str) -> dict[str, str]:
    """The environment of a child: looplet and the tests importable, its side file and scenario."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)]),
        "LOOPLET_SIDE": str(tmp_path / "side"),
        "LOOPLET_SCENARIO": scenario,
        **extra,
    }


def start_child(
    action: str, db_url: str, run_id: str, env: dict[str, str], cwd: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "dbos_child.py"), action, db_url, run_id],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def child_outcome(child: subprocess.Popen[str]) -> dict[str, Any]:
    """The outcome the child printed as it ended (it must exit 0)."""
    out, err = child.communicate(timeout=WAIT_S)
    assert child.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    outcome: dict[str, Any] = lines[-1]["outcome"]
    return outcome


def side_lines(tmp_path: Path) -> list[str]:
    """What the children's tool bodies wrote, in order: the ground truth of what ran."""
    path = tmp_path / "side"
    return path.read_text().splitlines() if path.exists() else []


def wait_for_line(tmp_path: Path, line: str, child: subprocess.Popen[str]) -> None:
    """Wait until the child's tools wrote `line` (the child must still be running)."""
    deadline = time.monotonic() + WAIT_S
    while line not in side_lines(tmp_path):
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, f"{line!r} never written"
        time.sleep(0.02)


def kill(child: subprocess.Popen[str]) -> None:
    """SIGKILL the child and reap it."""
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=WAIT_S)
    assert child.returncode == -signal.SIGKILL
