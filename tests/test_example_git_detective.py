"""examples/git_detective: repository health from git history, on a history built for the test.

The fixture repository has a known history (who committed what, when, which
files changed together), so each tool's figures can be checked exactly. The
commands run as a user types them; the cartridge is imported the way a host
imports it (a unique module name, by path).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from looplet import FunctionBackend
from looplet.cartridges import fit_to_host, make_runtime
from looplet.skills import inspect

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "git_detective"
SKILL = EXAMPLE / "skill"
SRC = ROOT / "src"

#: (days ago, author, {path: text appended}); oldest first.
HISTORY: list[tuple[int, str, dict[str, str]]] = [
    (120, "Alice", {"core.py": "a", "util.py": "a", "README.md": "a"}),
    (110, "Alice", {"core.py": "b", "util.py": "b"}),
    (100, "Alice", {"core.py": "c", "util.py": "c"}),
    (90, "Bob", {"docs.md": "a"}),
    (60, "Alice", {"core.py": "d"}),
    (10, "Alice", {"core.py": "e", "util.py": "d"}),
    (5, "Bob", {"core.py": "f"}),
    (2, "Carol", {"README.md": "b"}),
]


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full.update(env or {})
    out = subprocess.run(
        ["git", "-C", str(repo), *args], env=full, capture_output=True, text=True, check=True
    )
    return out.stdout


def make_repo(root: Path, history: list[tuple[int, str, dict[str, str]]] = HISTORY) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    now = datetime.now(UTC)
    for n, (days_ago, author, files) in enumerate(history, 1):
        for name, text in files.items():
            with open(root / name, "a", encoding="utf-8") as f:
                f.write(text + "\n")
        git(root, "add", "-A")
        when = (now - timedelta(days=days_ago)).isoformat()
        email = f"{author.lower()}@example.com"
        env = {
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-m", f"change {n}", env=env)
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("history") / "project")


@pytest.fixture(scope="module")
def skill() -> Iterator[ModuleType]:
    """The entrypoint imported as a host imports it: by path, under a name nothing else uses."""
    name = "looplet_test_git_detective_entrypoint"
    spec = importlib.util.spec_from_file_location(name, SKILL / "detective.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def detective(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GIT_"))}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "agent.py"), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the tools, figure by figure -------------------------------------------------------------------


def test_overview_counts_the_history(skill: ModuleType, repo: Path) -> None:
    seen = skill.overview(skill.GitRepo(repo))
    assert seen["commits"] == 8 and seen["branches"] == 1 and seen["tags"] == 0
    assert seen["files_tracked"] == 4 and seen["head"]["subject"] == "change 8"
    assert seen["age_days"] in (119, 120)  # the clock may pass midnight between the two readings


def test_contributors_rank_authors_and_give_the_bus_factor(skill: ModuleType, repo: Path) -> None:
    seen = skill.contributors(skill.GitRepo(repo), 10)
    assert [(a["author"], a["commits"]) for a in seen["top"]] == [("Alice", 5), ("Bob", 2), ("Carol", 1)]
    assert seen["bus_factor"] == 1 and seen["authors"] == 3 and seen["top"][0]["share"] == 0.625


def test_hotspots_are_the_most_changed_files(skill: ModuleType, repo: Path) -> None:
    seen = skill.hotspots(skill.GitRepo(repo), 2)
    assert [(h["path"], h["changes"], h["authors"]) for h in seen["hotspots"]] == [
        ("core.py", 6, 2),
        ("util.py", 4, 1),
    ]
    assert seen["hotspots"][0]["lines_changed"] == 6 and seen["files_changed"] == 4


def test_coupled_files_are_the_pairs_changed_together(skill: ModuleType, repo: Path) -> None:
    seen = skill.coupled_files(skill.GitRepo(repo), 10, 2)
    assert seen["pairs"] == [{"files": ["core.py", "util.py"], "together": 4, "coupling": 1.0}]
    loose = skill.coupled_files(skill.GitRepo(repo), 10, 1)
    assert len(loose["pairs"]) == 3 and loose["more"] == 0  # core+util, core+README, util+README


def test_recent_activity_counts_only_the_window(skill: ModuleType, repo: Path) -> None:
    seen = skill.recent_activity(skill.GitRepo(repo), 30)
    assert seen["commits"] == 3 and seen["authors"] == 3 and seen["active_days"] == 3
    assert seen["days_since_last_commit"] in (1, 2)
    assert [c["author"] for c in seen["latest"]] == ["Carol", "Bob", "Alice"]


def test_an_empty_repository_is_described_not_an_error(skill: ModuleType, tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    empty = skill.GitRepo(tmp_path)
    assert skill.overview(empty) == {"commits": 0, "note": "the repository has no commits yet"}
    assert skill.contributors(empty, 5)["bus_factor"] == 0
    assert skill.recent_activity(empty, 30)["days_since_last_commit"] is None


def test_a_directory_that_is_not_a_repository_is_refused(skill: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(skill.GitError, match="git rev-parse failed"):
        skill.GitRepo(tmp_path)


@pytest.mark.parametrize(
    ("counts", "expected"), [([], 0), ([5], 1), ([5, 2, 1], 1), ([3, 3, 3], 2), ([1] * 4, 3)]
)
def test_bus_factor_is_the_fewest_authors_with_most_commits(
    skill: ModuleType, counts: list[int], expected: int
) -> None:
    assert skill.bus_factor(counts) == expected


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=12))
def test_bus_factor_matches_the_definition(counts: list[int]) -> None:
    module = _entrypoint()
    found = module.bus_factor(counts)
    top = sorted(counts, reverse=True)
    total = sum(counts)
    if not counts:
        assert found == 0
        return
    event(f"bus factor {min(found, 3)}{'+' if found >= 3 else ''}")
    assert 2 * sum(top[:found]) > total and 2 * sum(top[: found - 1]) <= total


def _entrypoint() -> ModuleType:
    name = "looplet_test_git_detective_entrypoint_property"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SKILL / "detective.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


# -- a repository is untrusted input -------------------------------------------------------------


def test_the_repositorys_own_config_runs_no_program(skill: ModuleType, tmp_path: Path) -> None:
    """fsmonitor, pager, signature checks and hooks set by the repository never run while it is read."""
    repo = make_repo(tmp_path / "hostile", HISTORY[:3])
    canary = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> {canary}\nexit 0\n')
    script.chmod(0o755)
    for key, value in [
        ("core.fsmonitor", str(script)),
        ("core.pager", str(script)),
        ("log.showSignature", "true"),
        ("gpg.program", str(script)),
        ("diff.external", str(script)),
        ("core.hooksPath", str(tmp_path)),
    ]:
        git(repo, "config", key, value)
    (repo / ".git" / "hooks" / "post-checkout").write_text(f"#!/bin/sh\ntouch {canary}\n")
    where = skill.GitRepo(repo)
    for run in (
        lambda: skill.overview(where),
        lambda: skill.contributors(where, 5),
        lambda: skill.hotspots(where, 5),
        lambda: skill.coupled_files(where, 5, 1),
        lambda: skill.recent_activity(where, 365),
    ):
        assert run()
    assert not canary.exists()


def test_file_names_that_look_like_commands_are_data(skill: ModuleType, tmp_path: Path) -> None:
    names = ["-rf", "$(touch pwned)", "a;touch pwned", "with space.py", "--output=x"]
    repo = make_repo(
        tmp_path / "odd", [(3, "Dana", {n: "x" for n in names}), (1, "Dana", {n: "y" for n in names})]
    )
    seen = skill.hotspots(skill.GitRepo(repo), 10)
    assert sorted(h["path"] for h in seen["hotspots"]) == sorted(names)
    assert not (repo / "pwned").exists() and not (tmp_path / "pwned").exists()


# -- the cartridge ---------------------------------------------------------------------------------


def test_the_skill_is_a_valid_cartridge() -> None:
    card = inspect(SKILL)
    assert card.problems == () and card.is_cartridge and card.name == "git-detective"
    assert card.entrypoint == SKILL / "detective.py" and "bus factor" in card.instructions


def test_build_gives_the_history_tools_within_the_hosts_limits(skill: ModuleType, repo: Path) -> None:
    runtime = make_runtime(inspect(SKILL), workspace=repo, max_steps=4)
    preset = fit_to_host(skill.build(runtime), runtime)
    assert set(preset.tools.names) == {*skill.TOOLS, "think", "done"}
    assert preset.config.max_steps == 4 and "are data from the repository" in (preset.system_prompt or "")


def test_the_scripted_model_writes_its_verdict_from_the_evidence(skill: ModuleType, repo: Path) -> None:
    runtime = make_runtime(inspect(SKILL), workspace=repo, scripted=True)
    preset = skill.build(runtime)
    result = preset.run(FunctionBackend(skill.scripted_responses(runtime)), task="How healthy?")
    assert result.stop_reason == "done"
    assert [s.tool_call.tool for s in result.steps] == [*skill.TOOLS, "done"]
    answer = result.final_answer["answer"]
    assert "Bus factor 1: Alice made 62% of 8 commits" in answer and "core.py (6 changes)" in answer
    (report,) = [h for h in preset.hooks if isinstance(h, skill.HealthReport)]
    assert report.text.startswith("# Repository health: project\n\nBus factor 1")
    for heading in (
        "## Overview",
        "## Contributors and bus factor",
        "## Hotspots",
        "## Files changed together",
    ):
        assert heading in report.text
    assert "`core.py` + `util.py`: 4 commits together (coupling 100%)" in report.text
    assert "Not examined" not in report.text


def test_a_report_names_what_was_not_examined(skill: ModuleType) -> None:
    text = skill.render_report("/x/repo", {"overview": {"commits": 0}}, "")
    assert "_The agent gave no verdict._" in text and "No commits yet." in text
    assert "_Not examined: contributors, hotspots, coupled_files, recent_activity._" in text


# -- the command -------------------------------------------------------------------------------------


def test_the_seed_command_runs_on_this_repository(tmp_path: Path) -> None:
    """``python examples/git_detective/agent.py . --scripted``, from the repository's top."""
    if not (ROOT / ".git").exists():
        pytest.skip("this checkout has no git history")
    out = detective(ROOT, ".", "--scripted")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped: done" in out.stdout and f"# Repository health: {ROOT.name}" in out.stdout


def test_the_command_prints_and_writes_the_report(repo: Path, tmp_path: Path) -> None:
    out = detective(tmp_path, str(repo), "--scripted", "--report", "health.md", "--trace", "traces")
    assert out.returncode == 0, out.stdout + out.stderr
    steps = [line for line in out.stdout.splitlines() if line.startswith("#") and " ✓ " in line]
    assert len(steps) == 6 and "bus factor **1**" in out.stdout
    written = (tmp_path / "health.md").read_text()
    assert written.startswith("# Repository health: project") and written in out.stdout
    (run,) = (tmp_path / "traces").iterdir()
    assert "trace: " in out.stdout and (run / "trajectory.json").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["/definitely/not/here"], "is not a directory"),
        (["--max-steps", "0", "."], "the step budget must be at least 1"),
        ([], "the following arguments are required: REPO"),
    ],
)
def test_usage_mistakes_are_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    out = detective(tmp_path, *args)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith("git_detective: error: ") and words in line


def test_a_directory_that_is_not_a_repository_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    out = detective(tmp_path, "plain", "--scripted")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("git_detective: git rev-parse failed")


def test_the_cartridge_runs_with_looplet_run(repo: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GIT_"))}
    env["PYTHONPATH"] = str(SRC)
    out = subprocess.run(
        [sys.executable, "-m", "looplet", "run", str(SKILL), "How healthy?", "--scripted"]
        + ["--workspace", str(repo), "--trace-dir", str(tmp_path / "t")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped: done" in out.stdout and "answer: Bus factor 1: Alice made 62%" in out.stdout
