"""examples/coder: the coding agent command and its cartridge, as the README runs them.

Scripted runs (no model, no key) in a separate process, as a user types
them, and the cartridge's ``build`` imported the way a host imports it.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from looplet import MockLLMBackend
from looplet.cartridges import fit_to_host, make_runtime
from looplet.presets import CODING_SYSTEM_PROMPT, TestsPassGate
from looplet.provenance import read_run
from looplet.skills import inspect
from looplet.workspace import probe_sandbox

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "coder"
SKILL = EXAMPLE / "skill"
SRC = ROOT / "src"
TASK = "Create a tiny add function with tests"
UNITTEST = "python3 -m unittest discover -q"
SANDBOX = probe_sandbox().kind


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def coder(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "agent.py"), *args],
        cwd=cwd,
        env=user_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def step_tools(output: str) -> list[str]:
    return [line.split()[2].split("(")[0] for line in output.splitlines() if line.startswith("#")]


def workspace_tests_pass(folder: Path) -> bool:
    check = subprocess.run(
        [sys.executable, "-m", "unittest", "-q"], cwd=folder, capture_output=True, text=True
    )
    return check.returncode == 0 and "Ran 3 tests" in check.stderr


def load_entrypoint(name: str) -> ModuleType:
    """The cartridge's entrypoint, by path and under a unique module name, as a host loads it."""
    spec = importlib.util.spec_from_file_location(name, SKILL / "coder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the command -----------------------------------------------------------------------------------


def test_the_seed_command_writes_add_and_its_tests_and_they_pass(tmp_path: Path) -> None:
    """The seed's ``python examples/coder/agent.py "Create a tiny add function with tests" --scripted``."""
    out = coder(tmp_path, TASK, "--scripted")
    assert out.returncode == 0, out.stdout + out.stderr
    assert step_tools(out.stdout) == ["think", "list_dir", "write", "bash", "write", "bash", "done"]
    assert "stopped: done" in out.stdout and out.stderr == ""
    assert workspace_tests_pass(tmp_path / "coder_workspace")


def test_a_traced_run_records_every_step_and_the_test_outcome(tmp_path: Path) -> None:
    out = coder(
        tmp_path, TASK, "--scripted", "--workspace", "ws", "--trace", "traces", "--test-command", UNITTEST
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run = read_run(tmp_path / "traces")
    assert run.stop_reason == "done" and len(run.steps) == 7
    assert run.steps[-1]["result"]["metadata"]["tests"]["passed"] is True  # what let done through
    red, green = (s for s in run.steps if s["call"]["tool"] == "bash")
    if SANDBOX == "bwrap":
        assert red["result"]["data"]["exit_code"] != 0 and green["result"]["data"]["exit_code"] == 0
    assert f"trace: {run.path}" in out.stdout or "trace: " in out.stdout


def test_without_a_sandbox_bash_is_refused_with_nobody_to_ask_and_the_guard_still_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = load_agent()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = agent.main([TASK, "--scripted", "--workspace", str(tmp_path / "ws"), "--sandbox", "none"])
    printed = capsys.readouterr().out
    bash = [line for line in printed.splitlines() if " bash(" in line]
    assert len(bash) == 2 and all("✗ bash(" in line and "without a sandbox" in line for line in bash)
    assert code == 0 and "stopped: done" in printed  # the guard ran the tests itself
    assert workspace_tests_pass(tmp_path / "ws")


def test_a_run_cut_short_by_the_step_cap_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = load_agent()
    code = agent.main([TASK, "--scripted", "--workspace", str(tmp_path), "--max-steps", "3", "--allow-bash"])
    printed = capsys.readouterr().out
    assert code == 1 and "stopped: max_steps" in printed
    assert step_tools(printed) == ["think", "list_dir", "write", "bash"]  # think is free: 3 charged


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["   "], "the task is empty"),
        ([TASK, "--test-command", " "], "--test-command is empty"),
        ([TASK, "--max-steps", "0"], "the step budget must be at least 1"),
        ([TASK, "--sandbox", "docker"], "invalid choice: 'docker'"),
    ],
)
def test_usage_mistakes_are_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    out = coder(tmp_path, "--scripted", *args)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith("coder: error: ") and words in line
    assert not (tmp_path / "coder_workspace").exists()


def test_a_workspace_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    out = coder(tmp_path, TASK, "--scripted", "--workspace", "taken")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("coder: ")


def load_agent() -> ModuleType:
    name = "looplet_test_coder_agent_command"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE / "agent.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


# -- the cartridge -----------------------------------------------------------------------------------


def test_the_skill_is_a_valid_cartridge() -> None:
    card = inspect(SKILL)
    assert card.problems == () and card.is_cartridge and card.name == "coder"
    assert card.entrypoint == SKILL / "coder.py" and set(card.tags) == {"coding", "tests", "bash"}


def test_build_gives_the_coding_preset_with_the_skills_instructions_within_host_limits(
    tmp_path: Path,
) -> None:
    before = set(sys.modules)
    module = load_entrypoint("looplet_test_coder_entrypoint_build")
    assert "coder" not in sys.modules and set(sys.modules) - before <= {"looplet.examples.coding_agent"}
    card = inspect(SKILL)
    runtime = make_runtime(card, workspace=tmp_path / "ws", max_steps=5, options={"test_command": UNITTEST})
    preset = fit_to_host(module.build(runtime), runtime)
    assert preset.config.max_steps == 5  # the host's cap wins over the cartridge's 30
    assert {"bash", "read", "write", "edit", "list_dir", "glob", "grep", "done"} <= set(preset.tools.names)
    assert preset.system_prompt is not None and preset.system_prompt.startswith(CODING_SYSTEM_PROMPT)
    assert card.instructions.strip() in preset.system_prompt
    (gate,) = [h for h in preset.hooks if isinstance(h, TestsPassGate)]
    assert gate.command == UNITTEST and (tmp_path / "ws").is_dir()


def test_the_scripted_responses_finish_the_task_through_the_built_preset(tmp_path: Path) -> None:
    module = load_entrypoint("looplet_test_coder_entrypoint_run")
    options = {"test_command": UNITTEST, "allow_bash": True}
    runtime = make_runtime(inspect(SKILL), workspace=tmp_path, scripted=True, options=options)
    result = module.build(runtime).run(MockLLMBackend(module.scripted_responses(runtime)), task=TASK)
    assert result.stop_reason == "done" and len(result.steps) == 7
    assert result.steps[-1].tool_result.metadata["tests"]["passed"] is True
    assert workspace_tests_pass(tmp_path)


def test_the_readme_cartridge_command_passes_its_own_tests(tmp_path: Path) -> None:
    """The seed's ``python -m looplet run examples/coder/skill TASK --scripted --workspace DIR``."""
    demo = tmp_path / "demo"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "looplet",
            "run",
            "examples/coder/skill",
            TASK,
            "--scripted",
            "--workspace",
            str(demo),
        ],
        cwd=ROOT,
        env=user_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert step_tools(out.stdout) == ["think", "list_dir", "write", "bash", "write", "bash", "done"]
    assert "stopped: done" in out.stdout and workspace_tests_pass(demo)
