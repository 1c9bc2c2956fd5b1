"""``looplet eval TRACES``: the table, JSON and exit codes 0, 1 and 2, on real ProvenanceSink output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_evals import _script, _tools, write_run

from looplet import composable_loop
from looplet.cli import main
from looplet.evals import EvalCase, save_case
from looplet.provenance import ProvenanceSink, run_dirs

EVALS = """\
from looplet.evals import evaluation, skip

def eval_answer(ctx):
    if ctx.expected is None:
        skip("no case gives this task an expected answer")
    return ctx.answer == ctx.expected or f"expected {ctx.expected!r}, got {ctx.answer!r}"

def eval_few_steps(ctx):
    return 1.0 if len(ctx.steps) <= 2 else 0.0

@evaluation(required=False)
def eval_cheap(ctx):
    return len(ctx.steps) < 2
"""


def _record(root: Path, answer: str, task: str = "add 2 and 3") -> None:
    sink = ProvenanceSink(root)
    for _ in composable_loop(_script(answer), tools=_tools(), task=task, hooks=[sink]):
        pass


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    """Two recorded runs of one task: one answers 5, one 6."""
    root = tmp_path / "traces"
    _record(root, "5")
    _record(root, "6")
    assert len(run_dirs(root)) == 2
    return root


@pytest.fixture
def evals_file(tmp_path: Path) -> Path:
    path = tmp_path / "evals" / "eval_adding.py"
    path.parent.mkdir()
    path.write_text(EVALS)
    return path


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    save_case(path, EvalCase("add", "add 2 and 3", expected="5"))
    return path


def _eval(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_required_eval_passing_exits_zero_with_the_table(
    tmp_path: Path, evals_file: Path, cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "good"
    _record(root, "5")
    code, out, err = _eval([str(root), "--evals", str(evals_file), "--cases", str(cases)], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"1 run, 3 evals ({evals_file}), threshold 1",
        "eval            runs  passed  mean score",
        "eval_answer        1     1/1        1.00  ok",
        "eval_few_steps     1     1/1        1.00  ok",
        "eval_cheap         1     0/1        0.00  optional",
        "not passed:",
        f"  {_run_id(root)}: ✗ eval_cheap failed (score 0.00) [optional]",
        "ok: 2 required evals passed on every run",
    ]


def _run_id(root: Path) -> str:
    manifest = json.loads((run_dirs(root)[0] / "manifest.json").read_text())
    return str(manifest["run_id"])


def test_a_failing_run_exits_one_and_names_the_run_and_the_reason(
    traces: Path, evals_file: Path, cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _eval([str(traces), "--evals", str(evals_file), "--cases", str(cases)], capsys)
    assert code == 1
    assert "eval_answer        2     1/2        0.50  FAIL" in out
    assert "eval_few_steps     2     2/2        1.00  ok" in out
    assert ": ✗ eval_answer failed (score 0.00): expected '5', got '6'" in out
    assert out.rstrip().endswith("FAIL: 1 of 2 required evals did not pass on every run")


def test_a_required_eval_with_no_grader_fails_the_command(
    traces: Path, evals_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _eval([str(traces), "--evals", str(evals_file)], capsys)  # no --cases: no expected
    assert code == 1
    assert "eval_answer        2     0/2           -  FAIL (2 skipped)" in out
    assert "- eval_answer skipped: no case gives this task an expected answer" in out


def test_the_threshold_decides_whether_a_partial_score_passes(
    tmp_path: Path, traces: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "partial_evals.py"
    partial.write_text("def eval_partial(ctx):\n    return 0.75\n\ndef eval_zero(ctx):\n    return 0.0\n")
    code, out, _ = _eval([str(traces), "--evals", str(partial), "--threshold", "0.7"], capsys)
    assert code == 1 and "eval_partial     2     2/2        0.75  ok" in out
    assert "eval_zero        2     0/2        0.00  FAIL" in out
    code, out, _ = _eval([str(traces), "--evals", str(partial), "--threshold", "0"], capsys)
    assert code == 0 and "eval_zero        2     2/2        0.00  ok" in out
    code, _, _ = _eval([str(traces), "--evals", str(partial), "--threshold", "0.8"], capsys)
    assert code == 1


def test_without_evals_the_builtin_ones_run(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _eval([str(traces)], capsys)
    assert code == 0
    assert out.splitlines()[:4] == [
        "2 runs, 2 evals (built-in), threshold 1",
        "eval                 runs  passed  mean score",
        "eval_finished           2     2/2        1.00  ok",
        "eval_no_tool_errors     2     2/2        1.00  optional",
    ]


def test_json_output_holds_the_summary_and_every_result(
    traces: Path, evals_file: Path, cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _eval([str(traces), "--evals", str(evals_file), "--cases", str(cases), "--json"], capsys)
    document = json.loads(out)
    assert code == 1 and document["ok"] is False and document["threshold"] == 1.0
    answer = next(e for e in document["evals"] if e["name"] == "eval_answer")
    assert (answer["runs"], answer["passed"], answer["mean_score"], answer["ok"]) == (2, 1, 0.5, False)
    assert [len(run["results"]) for run in document["runs"]] == [3, 3]
    assert {run["run_id"] for run in document["runs"]} == {
        json.loads((d / "manifest.json").read_text())["run_id"] for d in run_dirs(traces)
    }


def test_one_run_directory_is_graded_on_its_own(
    traces: Path, evals_file: Path, cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = []
    for run_dir in run_dirs(traces):
        code, out, _ = _eval([str(run_dir), "--evals", str(evals_file), "--cases", str(cases)], capsys)
        results.append(code)
        assert out.startswith("1 run, 3 evals")
    assert sorted(results) == [0, 1]


def test_a_run_killed_before_its_end_is_graded_as_unfinished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(
        tmp_path,
        run_id="run_killed",
        task="t",
        steps=[("add", {"a": 1, "b": 2}, 3, None)],
        final_answer=None,
        stop_reason=None,
        ended=False,
    )
    code, out, _ = _eval([str(tmp_path)], capsys)
    assert code == 1
    assert "✗ eval_finished failed (score 0.00): the run stopped with no stop reason" in out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], "give TRACES, a run directory or a root of runs"),
        (["{missing}"], "no such file or directory"),
        (["{traces}", "--threshold", "1.5"], "--threshold must be a number between 0 and 1, not '1.5'"),
        (["{traces}", "--threshold", "nan"], "--threshold must be a number between 0 and 1, not 'nan'"),
        (["{traces}", "--threshold", "high"], "--threshold must be a number between 0 and 1, not 'high'"),
        (["{empty}"], "no recorded runs in"),
        (["{file}"], "is not a directory of recorded runs"),
        (["{traces}", "--evals", "{missing}"], "no such file or directory"),
        (["{traces}", "--evals", "{empty}"], "no eval_* functions in"),
        (["{traces}", "--evals", "{broken}"], "could not import it: SyntaxError"),
        (["{traces}", "--cases", "{bad_cases}"], "unknown field 'expcted'"),
        (["{corrupt}"], "run_corrupt"),
    ],
)
def test_bad_input_exits_two_with_a_one_line_reason(
    tmp_path: Path, traces: Path, argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "broken_evals.py").write_text("def eval_x(ctx):\n  return (\n")
    (tmp_path / "bad.jsonl").write_text('{"task": "t", "expcted": 1}\n')
    corrupt = tmp_path / "corrupt" / "run_corrupt"
    corrupt.mkdir(parents=True)
    (corrupt / "manifest.json").write_text("{not json")
    names = {
        "missing": tmp_path / "missing",
        "traces": traces,
        "empty": tmp_path / "empty",
        "file": tmp_path / "file",
        "broken": tmp_path / "broken_evals.py",
        "bad_cases": tmp_path / "bad.jsonl",
        "corrupt": tmp_path / "corrupt",
    }
    code, out, err = _eval([a.format(**names) for a in argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith("looplet eval: ") and reason in err
    assert err.count("\n") == 1  # one line


def test_an_eval_that_raises_fails_the_command_it_never_passes(
    tmp_path: Path, traces: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raising = tmp_path / "raising_evals.py"
    raising.write_text("def eval_boom(ctx):\n    raise RuntimeError('grader bug')\n")
    code, out, _ = _eval([str(traces), "--evals", str(raising)], capsys)
    assert code == 1
    assert "eval_boom     2     0/2           -  FAIL (2 error)" in out
    assert "! eval_boom error: raised RuntimeError: grader bug" in out


def test_python_dash_m_looplet_eval_runs_end_to_end(traces: Path, evals_file: Path, cases: Path) -> None:
    argv = [sys.executable, "-m", "looplet", "eval", str(traces), "--evals", str(evals_file)]
    failed = subprocess.run([*argv, "--cases", str(cases)], capture_output=True, text=True)
    assert failed.returncode == 1 and "FAIL: 1 of 2 required evals" in failed.stdout
    help_text = subprocess.run(
        [sys.executable, "-m", "looplet", "eval", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert help_text.startswith("usage: looplet eval TRACES [--evals PATH]")
    assert "--threshold X" in help_text
