"""examples/coder and examples/git_detective against an OpenAI-compatible server on loopback.

Each command runs as a user runs it, with ``OPENAI_BASE_URL`` pointing at
llmock, so the real ``openai`` SDK carries a scripted exchange.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend_kit import reply

from looplet.workspace import probe_sandbox

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
BASH = [] if probe_sandbox().kind == "bwrap" else ["--allow-bash"]
UNITTEST = "python3 -m unittest discover -q"


def command(script: Path, cwd: Path, server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GIT_"))}
    env.update(
        PYTHONPATH=str(SRC),
        OPENAI_BASE_URL=server.openai_url,
        OPENAI_API_KEY="local",
        OPENAI_MODEL="llama3.1",
    )
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_coder_runs_against_an_openai_compatible_server(llm_server: Any, tmp_path: Path) -> None:
    test_file = "import unittest\nfrom add import add\n\n\nclass T(unittest.TestCase):\n"
    test_file += "    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n"
    llm_server.script(
        reply(("write", {"path": "test_add.py", "content": test_file})),
        reply(("write", {"path": "add.py", "content": "def add(a, b):\n    return a + b\n"})),
        reply(("bash", {"command": UNITTEST})),
        reply(("done", {"answer": "add() written and tested."})),
    )
    out = command(
        ROOT / "examples" / "coder" / "agent.py",
        tmp_path,
        llm_server,
        "Create a tiny add function with tests",
        "--workspace",
        "ws",
        "--test-command",
        UNITTEST,
        *BASH,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "using the scripted model" not in out.stdout
    assert "✓ bash(" in out.stdout and "answer: add() written and tested." in out.stdout
    assert (tmp_path / "ws" / "add.py").read_text() == "def add(a, b):\n    return a + b\n"
    bodies = llm_server.bodies()
    assert len(bodies) == 4 and {b["model"] for b in bodies} == {"llama3.1"}
    offered = {t["function"]["name"] for t in bodies[0]["tools"]}
    assert {"bash", "read", "write", "edit", "glob", "grep", "list_dir", "done"} <= offered
    assert "Work only inside the workspace" in bodies[0]["messages"][0]["content"]  # SKILL.md's guide


def test_the_git_detective_runs_against_an_openai_compatible_server(llm_server: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="Ann", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="Ann", GIT_COMMITTER_EMAIL="a@x"
    )
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True, env=env)
    for n in range(3):
        (repo / "app.py").write_text(f"VERSION = {n}\n")
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "commit", "-qm", f"v{n}"], check=True, env=env)
    llm_server.script(
        reply(("overview", {})),
        reply(("contributors", {"limit": 3})),
        reply(("hotspots", {"limit": 3})),
        reply(("coupled_files", {})),
        reply(("recent_activity", {"days": 7})),
        reply(("done", {"answer": "One author, one hot file: app.py."})),
    )
    out = command(ROOT / "examples" / "git_detective" / "agent.py", tmp_path, llm_server, str(repo))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# Repository health: repo\n\nOne author, one hot file: app.py." in out.stdout
    assert "- 1 author; bus factor **1**" in out.stdout and "| `app.py` | 3 |" in out.stdout
    assert "- 3 commits by 1 author" in out.stdout
    bodies = llm_server.bodies()
    assert len(bodies) == 6 and {b["model"] for b in bodies} == {"llama3.1"}
    assert {t["function"]["name"] for t in bodies[0]["tools"]} >= {"overview", "hotspots", "recent_activity"}
