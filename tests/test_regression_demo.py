"""The regression demo (examples/regression_demo): a failed run passes on replay after a one-line fix."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from looplet.evals import EvalContext, run_evals
from looplet.provenance import read_run

DEMO = Path(__file__).resolve().parent.parent / "examples" / "regression_demo" / "demo.py"
GRADER = DEMO.parent / "grader" / "evals.py"


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("regression_demo_main", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_fails_the_eval_before_the_fix_and_passes_it_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _demo().main(["--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    stages = [line for line in out.splitlines() if line.startswith("== ")]
    assert [s.split(":")[0] for s in stages] == [
        "== 1. capture",
        "== 2. fix",
        "== 3. replay",
        "== the required eval failed before the fix and passes after it",
    ]
    capture, replay = out.split("== 3. replay")
    assert "evals FAILED: 1/2 ok" in capture and "✗ eval_totals_match failed" in capture
    assert "evals passed: 2/2 ok" in replay
    # the fix is one line, and the replay parts from the recording exactly where the fixed tool ran
    diff = [line for line in capture.splitlines() if line.strip().startswith(("-  ", "+  "))]
    assert len(diff) == 2
    assert "first difference at step 2" in replay
    # what the grader read is what the tool left behind, in each workspace
    assert json.loads((tmp_path / "capture" / "totals.json").read_text()) == {"east": 170.0, "west": 45.5}
    assert json.loads((tmp_path / "replay" / "totals.json").read_text()) == {
        "east": 170.0,
        "north": 120.0,
        "west": 45.5,
    }


def test_the_captured_run_is_a_readable_trace_with_its_artifacts(tmp_path: Path) -> None:
    _demo().main(["--workdir", str(tmp_path)])
    run = read_run(tmp_path / "traces")
    assert run.stop_reason == "done"
    assert [s["call"]["tool"] for s in run.steps] == ["list_files", "summarize_sales", "done"]
    assert len(run.llm_calls) == 3
    # the outcome the collector read and the grader's verdicts are in the trace, for `looplet eval`
    assert run.manifest["artifacts"]["totals.json"] == {"east": 170.0, "west": 45.5}
    assert [r["name"] for r in run.manifest["evals"]] == ["eval_totals_match", "eval_finished"]
    recorded = EvalContext.from_trace(tmp_path / "traces")
    assert run_evals(recorded, GRADER).passed is False


def test_the_demo_runs_as_a_program_and_says_the_story_holds(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("passes after it: yes")


def test_the_demo_says_no_when_the_grader_cannot_tell_the_fix_made_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = _demo()
    demo.FIXED_LINE = demo.BUGGY_LINE  # a "fix" that changes nothing
    assert demo.main(["--workdir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.rstrip().endswith("passes after it: NO")
