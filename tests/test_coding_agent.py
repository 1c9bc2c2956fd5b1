"""The coding_agent example, as a user runs it (a separate process, no model, no key) and in-process.

The subprocess runs are what the README promises; the in-process ones let
coverage measure the example. Most runs use ``--test-command "python3 -m
unittest discover -q"`` (a second, not pytest's start-up with every plugin of
this environment); one run keeps the default.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from doubles import run_as_user

from looplet import Block, ToolCall, ToolResult
from looplet.evals import EvalContext, run_evals
from looplet.examples import coding_agent as example
from looplet.workspace import Workspace, probe_sandbox

UNITTEST = ["--test-command", "python3 -m unittest discover -q"]
#: Where bubblewrap cannot run, bash asks; these runs have nobody to ask, so they allow it.
BASH = [] if probe_sandbox().kind == "bwrap" else ["--allow-bash"]


def coding_agent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_as_user("looplet.examples.coding_agent", cwd, *args, timeout=120)


def looplet_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_as_user("looplet", cwd, *args)


def step_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("#")]


def test_scripted_run_writes_add_and_its_test_and_finishes_once_they_pass(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    out = coding_agent(tmp_path, "--scripted", "--workspace", str(demo), *BASH)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr == ""
    steps = step_lines(out.stdout)
    assert [line.split()[2].split("(")[0] for line in steps] == [
        "think", "list_dir", "write", "write", "done", "read", "edit", "bash", "done",
    ]  # fmt: skip
    assert "✗ done(" in steps[4] and "the tests fail" in steps[4]  # the guard refused the early done
    assert "✓ done(" in steps[8] and "exit_code: 0" in steps[7]
    assert "stopped: done" in out.stdout and "evals passed: 2/2 ok" in out.stdout
    assert "return a + b" in (demo / "calc.py").read_text()
    assert "from calc import add" in (demo / "test_calc.py").read_text()
    check = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=demo, capture_output=True, text=True)
    assert check.returncode == 0 and "Ran 2 tests" in check.stderr


def test_a_traced_run_can_be_shown_and_graded_again_from_the_command_line(tmp_path: Path) -> None:
    out = coding_agent(tmp_path, "--scripted", "--workspace", "ws", "--trace", "traces", *UNITTEST, *BASH)
    assert out.returncode == 0, out.stdout + out.stderr
    (run_dir,) = (tmp_path / "traces").iterdir()
    assert f"trace: {Path('traces') / run_dir.name}" in out.stdout
    shown = looplet_cli(tmp_path, "show", str(run_dir))
    assert shown.returncode == 0, shown.stderr
    assert len(step_lines(shown.stdout)) == 9 and "stop reason: done" in shown.stdout
    graded = looplet_cli(tmp_path, "eval", str(run_dir), "--evals", example.__file__, "--threshold", "1")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert "eval_tests_pass" in graded.stdout and "eval_done_called" in graded.stdout


def test_the_seeds_story_from_the_command_line_trace_show_eval_fork_and_diff(tmp_path: Path) -> None:
    """Run with --trace, show it, grade it, fork it at step 6 with another prompt, re-run, diff the two."""
    first = coding_agent(tmp_path, "--scripted", "--workspace", "ws", "--trace", "traces", *UNITTEST, *BASH)
    assert first.returncode == 0, first.stdout + first.stderr
    (original,) = (tmp_path / "traces").iterdir()
    assert looplet_cli(tmp_path, "show", str(original)).returncode == 0
    graded = looplet_cli(tmp_path, "eval", str(original), "--evals", example.__file__, "--threshold", "1")
    assert graded.returncode == 0, graded.stdout + graded.stderr

    fork_args = ["--fork", str(original), "--at", "6", "--system-prompt", "Double-check before done."]
    forked = coding_agent(
        tmp_path, "--scripted", "--workspace", "ws2", "--trace", "traces", *fork_args, *UNITTEST, *BASH
    )
    assert forked.returncode == 0, forked.stdout + forked.stderr
    assert f"forked {original} at step 6: 5 earlier step(s) replayed" in forked.stdout
    # the replay rebuilt the workspace as it was before step 6: the stub the run then fixed
    assert (tmp_path / "ws2" / "calc.py").read_text().count("return a + b") == 1
    (fork_dir,) = [d for d in (tmp_path / "traces").iterdir() if d != original]

    diffed = looplet_cli(tmp_path, "diff", str(original), str(fork_dir))
    assert diffed.returncode == 1, diffed.stdout + diffed.stderr  # the prompt changed
    assert "B is a fork of A at step 6" in diffed.stdout
    shared = [line for line in diffed.stdout.splitlines() if "(shared, before the fork)" in line]
    assert [line.split()[1] for line in shared[:4]] == ["#1", "#2", "#3", "#4"]
    # step 5 (the refused done) quotes the test run's output, whose timing may differ in the replay
    assert len(shared) == 5 or "first divergence at step 5: different error message" in diffed.stdout
    assert "differs from A's in the system prompt" in diffed.stdout


def test_a_fork_of_a_directory_that_is_not_a_recording_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = example.main(
        ["--scripted", "--workspace", str(tmp_path / "ws"), "--fork", str(tmp_path), "--at", "2"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds no recorded run" in err[0]


def test_fork_and_at_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        example.main(["--scripted", "--at", "3"])
    assert exit_.value.code == 2 and "--fork and --at go together" in capsys.readouterr().err


def test_the_same_run_in_process_with_its_trace_and_evals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = example.main(["--scripted", "--workspace", "ws", "--trace", "t", *UNITTEST, *BASH])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "✓ eval_tests_pass" in printed and "✓ eval_done_called" in printed
    (run_dir,) = (tmp_path / "t").iterdir()
    report = run_evals(EvalContext.from_trace(run_dir), example.CODING_EVALS)
    assert report.passed, str(report)
    done = [json.loads(p.read_text()) for p in sorted((run_dir / "steps").iterdir())][-1]
    assert "tests" in json.dumps(done)  # the outcome that let done through is in the trace


def test_without_a_sandbox_bash_is_asked_about_and_refused_with_nobody_to_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = example.main(["--scripted", "--workspace", "ws", "--sandbox", "none", *UNITTEST])
    printed = capsys.readouterr().out
    assert "bash has no sandbox (turned off by the caller); it asks before each command" in printed
    (bash,) = [line for line in step_lines(printed) if " bash(" in line]
    assert "✗ bash(" in bash and "without a sandbox" in bash
    assert code == 0 and "stopped: done" in printed  # the guard still ran the tests


def test_with_allow_bash_an_unsandboxed_command_runs_and_its_step_says_sandbox_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = example.main(["--scripted", "--workspace", "ws", "--sandbox", "none", "--allow-bash", *UNITTEST])
    printed = capsys.readouterr().out
    assert code == 0, printed
    (bash,) = [line for line in step_lines(printed) if " bash(" in line]
    assert "✓ bash(" in bash and "sandbox: 'none'" in bash


def test_a_run_that_ends_before_the_tests_pass_fails_its_evals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = example.main(["--scripted", "--workspace", "ws", "--max-steps", "5", *UNITTEST, *BASH])
    printed = capsys.readouterr().out
    assert code == 1
    assert "stopped: max_steps" in printed and "evals FAILED" in printed
    assert "✗ eval_tests_pass" in printed and "✗ eval_done_called" in printed


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--max-steps", "0"], "the step budget must be at least 1"),
        (["--test-command", "  "], "--test-command is empty"),
        (["--sandbox", "docker"], "invalid choice: 'docker'"),
    ],
)
def test_a_usage_mistake_is_one_line(tmp_path: Path, args: list[str], reason: str) -> None:
    out = coding_agent(tmp_path, "--scripted", *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("coding_agent: error: ")
    assert reason in out.stderr
    assert not (tmp_path / "coding_agent_workspace").exists()


def test_a_workspace_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    out = coding_agent(tmp_path, "--scripted", "--workspace", "taken")
    assert out.returncode == 2 and out.stderr.startswith("coding_agent: ") and "Traceback" not in out.stderr


# -- the guard and the evals ---------------------------------------------------------------------


def gate_in(tmp_path: Path, files: dict[str, str]) -> example.TestsPassGate:
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return example.TestsPassGate(Workspace(root, sandbox="none"), "python3 -m unittest discover -q")


def test_the_gate_blocks_done_with_the_failing_output_while_the_tests_fail(tmp_path: Path) -> None:
    gate = gate_in(tmp_path, {"calc.py": example.STUB, "test_calc.py": example.TEST_FILE})
    state: Any = type("State", (), {"metadata": {}})()
    verdict = gate.check_done(state, None, None, 1)
    assert isinstance(verdict, Block)
    assert "the tests fail (exit code 1)" in verdict.reason and "NotImplementedError" in verdict.reason
    (tmp_path / "ws" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    assert gate.check_done(state, None, None, 2) is None
    noted = gate.post_dispatch(state, None, ToolCall("done"), ToolResult("done", data={"answer": "x"}), 2)
    assert noted.metadata["tests"]["passed"] is True and noted.data == {"answer": "x"}


def test_finding_no_tests_is_not_passing(tmp_path: Path) -> None:
    gate = gate_in(tmp_path, {"calc.py": "x = 1\n"})
    outcome = gate.run_tests()
    assert not outcome["passed"] and example.why_failed(outcome) == "no tests were found: write a test first"


def test_the_evals_read_the_outcome_not_the_models_claim() -> None:
    claimed = EvalContext(
        steps=[],
        final_answer={"answer": "all tests pass"},
        stop_reason="done",
        artifacts={
            "tests": {"passed": False, "exit_code": 1, "timed_out": False, "command": "t", "output": "F"}
        },
    )
    report = run_evals(claimed, example.CODING_EVALS)
    assert not report["eval_tests_pass"].passed and "the tests fail" in report["eval_tests_pass"].detail
    assert not report["eval_done_called"].passed  # no done step in the record, whatever the answer says
    silent = run_evals(EvalContext(stop_reason="max_steps"), example.CODING_EVALS)
    assert "no test outcome" in silent["eval_tests_pass"].detail
