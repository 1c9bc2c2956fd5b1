"""The data_agent example's commands, run as a user runs them: separate processes, no terminal, no model.

Each command is `python -m looplet.examples.data_agent ...` in a fresh working
directory, with stdin not a terminal and the OPENAI_* variables removed, so
the scripted model answers and an approval without --auto-approve pauses.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from doubles import run_as_user

from looplet.examples.data_agent import generate_orders, parse_filter

RESUME = "python -m looplet.examples.data_agent --resume"
#: The generated orders placed before 2020, the ones the scripted agent deletes.
OLD_ORDER_COUNT = 11
ALL_ORDER_COUNT = 24


def data_agent(cwd: Path, *args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return run_as_user("looplet.examples.data_agent", cwd, *args, stdin=stdin)


def workdir(cwd: Path) -> Path:
    return cwd / "checkpoints" / "data_agent"


def orders(cwd: Path) -> list[dict[str, str]]:
    with (workdir(cwd) / "orders.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def delete_steps(output: str) -> list[str]:
    return [line for line in output.splitlines() if "✓ delete_rows(" in line]


@pytest.fixture
def paused(tmp_path: Path) -> tuple[Path, str]:
    """A working directory whose last run paused at the delete; and that run's id."""
    out = data_agent(tmp_path, "--clean")
    assert out.returncode == 0, out.stderr
    (run_id,) = [
        line.split()[1] for line in out.stdout.splitlines() if line.startswith("run ") and "(saved in" in line
    ]
    return tmp_path, run_id


def test_scripted_auto_approved_run_deletes_exactly_the_old_orders(tmp_path: Path) -> None:
    out = data_agent(tmp_path, "--scripted", "--auto-approve")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert "stopped: done" in out.stdout
    assert f"answer: Deleted {OLD_ORDER_COUNT} orders from before 2020; 13 remain." in out.stdout
    assert len(delete_steps(out.stdout)) == 1
    rows = orders(tmp_path)
    assert len(rows) == ALL_ORDER_COUNT - OLD_ORDER_COUNT
    assert all(int(row["year"]) >= 2020 for row in rows)


def test_compaction_visibly_fires_and_shrinks_the_history(tmp_path: Path) -> None:
    import re

    out = data_agent(tmp_path, "--scripted", "--auto-approve")
    sizes = [
        (int(a), int(b))
        for a, b in re.findall(r"compacted the history: (\d+) -> (\d+) characters", out.stdout)
    ]
    assert sizes and all(after < before for before, after in sizes), out.stdout
    assert "stopped: done" in out.stdout


def test_without_a_terminal_the_delete_pauses_and_the_resume_command_is_printed(
    paused: tuple[Path, str],
) -> None:
    cwd, run_id = paused
    assert len(orders(cwd)) == ALL_ORDER_COUNT  # nothing deleted yet
    assert (workdir(cwd) / "runs" / f"{run_id}.json").exists()
    assert (workdir(cwd) / "last_run").read_text().strip() == run_id
    out = data_agent(cwd, "--resume")  # still no terminal, no --auto-approve: nothing to decide with
    assert out.returncode == 0, out.stderr
    assert f"run {run_id} needs a decision" in out.stdout
    assert "delete_rows" in out.stdout and len(orders(cwd)) == ALL_ORDER_COUNT


def test_the_pause_names_the_call_the_run_and_the_command(tmp_path: Path) -> None:
    out = data_agent(tmp_path, "--clean")
    assert out.returncode == 0, out.stderr
    assert "stopped: approval_pending" in out.stdout
    assert f"delete the {OLD_ORDER_COUNT} of {ALL_ORDER_COUNT} orders where year < 2020?" in out.stdout
    run_id = (workdir(tmp_path) / "last_run").read_text().strip()
    assert f"run {run_id} is saved and paused" in out.stdout
    assert RESUME in out.stdout
    assert delete_steps(out.stdout) == []


def test_resume_with_auto_approve_runs_the_paused_delete_once_and_finishes(paused: tuple[Path, str]) -> None:
    cwd, run_id = paused
    out = data_agent(cwd, "--resume", "--auto-approve")
    assert out.returncode == 0, out.stderr
    assert f"continuing run {run_id}" in out.stdout
    assert len(delete_steps(out.stdout)) == 1
    assert "#1 " not in out.stdout  # the steps before the pause are not taken again
    assert "stopped: done" in out.stdout
    assert len(orders(cwd)) == ALL_ORDER_COUNT - OLD_ORDER_COUNT

    again = data_agent(cwd, "--resume", "--auto-approve")
    assert again.returncode == 0, again.stderr
    assert f"run {run_id} is finished" in again.stdout
    assert "#" not in again.stdout and delete_steps(again.stdout) == []
    assert len(orders(cwd)) == ALL_ORDER_COUNT - OLD_ORDER_COUNT


def test_resume_with_reject_never_deletes_and_the_model_is_told(paused: tuple[Path, str]) -> None:
    cwd, _ = paused
    out = data_agent(cwd, "--resume", "--reject")
    assert out.returncode == 0, out.stderr
    assert "rejected delete_rows" in out.stdout
    assert "✗ delete_rows(" in out.stdout and delete_steps(out.stdout) == []
    assert "answer: Left the orders from before 2020 in place" in out.stdout
    assert len(orders(cwd)) == ALL_ORDER_COUNT


def test_resume_with_nothing_saved_says_how_to_start_in_one_line(tmp_path: Path) -> None:
    out = data_agent(tmp_path, "--resume")
    assert out.returncode == 2
    (line,) = [line for line in out.stderr.splitlines() if line]
    assert line.startswith("data_agent: no saved run") and "python -m looplet.examples.data_agent" in line
    assert "Traceback" not in out.stderr


def test_clean_removes_the_previous_data_and_runs(paused: tuple[Path, str]) -> None:
    cwd, first = paused
    assert data_agent(cwd, "--resume", "--auto-approve").returncode == 0
    assert len(orders(cwd)) == ALL_ORDER_COUNT - OLD_ORDER_COUNT
    (workdir(cwd) / "stray.txt").write_text("not ours")

    out = data_agent(cwd, "--clean")
    assert out.returncode == 0, out.stderr
    second = (workdir(cwd) / "last_run").read_text().strip()
    assert second != first
    assert sorted(p.name for p in (workdir(cwd) / "runs").iterdir() if p.suffix == ".json") == [
        f"{second}.json"
    ]
    assert len(orders(cwd)) == ALL_ORDER_COUNT  # the data is generated afresh
    assert (workdir(cwd) / "stray.txt").read_text() == "not ours"  # only the example's own files go


def test_a_new_run_keeps_the_data_as_the_last_run_left_it(tmp_path: Path) -> None:
    assert data_agent(tmp_path, "--scripted", "--auto-approve").returncode == 0
    out = data_agent(tmp_path, "--scripted", "--auto-approve")
    assert out.returncode == 0, out.stderr
    assert "answer: No orders from before 2020: nothing to delete." in out.stdout
    assert delete_steps(out.stdout) == []
    assert len(orders(tmp_path)) == ALL_ORDER_COUNT - OLD_ORDER_COUNT


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--clean", "--resume"], "argument --resume: not allowed with argument --clean"),
        (["--auto-approve", "--reject"], "argument --reject: not allowed with argument --auto-approve"),
        (["--max-steps", "0"], "the step budget must be at least 1"),
    ],
)
def test_a_usage_mistake_is_one_line(tmp_path: Path, args: list[str], reason: str) -> None:
    out = data_agent(tmp_path, *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("data_agent: error: ") and reason in out.stderr
    assert not workdir(tmp_path).exists()


def test_the_filter_language_compares_numbers_as_numbers_and_text_as_text() -> None:
    rows = generate_orders()
    old_returned = [r for r in rows if parse_filter("year < 2020 and status == 'returned'")(r)]
    assert old_returned == [r for r in rows if int(r["year"]) < 2020 and r["status"] == "returned"]
    assert old_returned  # the example data has such rows
    assert [r for r in rows if parse_filter("amount >= 100.5")(r)] == [
        r for r in rows if float(r["amount"]) >= 100.5
    ]


@pytest.mark.parametrize(
    ("where", "complaint"),
    [
        ("", "the filter is empty"),
        ("   ", "the filter is empty"),
        ("colour == red", "no column 'colour'"),
        ("__import__('os').system('true')", "cannot read the clause"),
        ("year < 2020 or year > 2022", "cannot read the clause"),
    ],
)
def test_a_filter_outside_the_grammar_is_refused_never_evaluated(where: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_filter(where)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize(
    ("answer", "left"), [("y", ALL_ORDER_COUNT - OLD_ORDER_COUNT), ("n", ALL_ORDER_COUNT)]
)
def test_on_a_terminal_the_delete_is_asked_y_or_n(tmp_path: Path, answer: str, left: int) -> None:
    leader, follower = os.openpty()
    try:
        os.write(leader, f"{answer}\n".encode())  # typed ahead: read when the question is asked
        out = data_agent(tmp_path, "--clean", stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert out.returncode == 0, out.stderr
    question = f"delete the {OLD_ORDER_COUNT} of {ALL_ORDER_COUNT} orders where year < 2020?"
    assert f"{question} This cannot be undone. [y/N]" in out.stdout
    assert "stopped: done" in out.stdout and "approval_pending" not in out.stdout
    assert len(delete_steps(out.stdout)) == (1 if answer == "y" else 0)
    assert len(orders(tmp_path)) == left


def test_resume_of_a_remembered_run_whose_checkpoint_is_gone_says_how_to_start(
    paused: tuple[Path, str],
) -> None:
    cwd, run_id = paused
    for path in (workdir(cwd) / "runs").iterdir():
        path.unlink()
    out = data_agent(cwd, "--resume", "--auto-approve")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("data_agent: no saved run")
    assert len(orders(cwd)) == ALL_ORDER_COUNT


def test_a_chosen_workdir_is_used_and_named_in_the_resume_command(tmp_path: Path) -> None:
    out = data_agent(tmp_path, "--workdir", "my data")
    assert out.returncode == 0, out.stderr
    assert "python -m looplet.examples.data_agent --resume --auto-approve --workdir 'my data'" in out.stdout
    assert not workdir(tmp_path).exists()
    done = data_agent(tmp_path, "--resume", "--auto-approve", "--workdir", "my data")
    assert done.returncode == 0, done.stderr
    assert len(delete_steps(done.stdout)) == 1 and "stopped: done" in done.stdout
    with (tmp_path / "my data" / "orders.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == ALL_ORDER_COUNT - OLD_ORDER_COUNT


def test_the_same_flows_in_process_pause_resume_and_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The subprocess tests above are what users run; this drives `main` in this process too,
    so the example's code is measured by coverage like the library's."""
    import io

    from looplet.examples import data_agent as example

    for name in [k for k in os.environ if k.startswith("OPENAI_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    assert example.main(["--clean"]) == 0
    paused = capsys.readouterr().out
    assert "--resume" in paused and len(orders(tmp_path)) == ALL_ORDER_COUNT
    assert example.main(["--resume"]) == 0
    assert "needs a decision" in capsys.readouterr().out
    assert example.main(["--resume", "--auto-approve"]) == 0
    finished = capsys.readouterr().out
    assert "stopped: done" in finished and len(delete_steps(finished)) == 1
    assert len(orders(tmp_path)) == ALL_ORDER_COUNT - OLD_ORDER_COUNT
    assert example.main(["--resume"]) == 0
    assert "finished" in capsys.readouterr().out
    assert example.main(["--scripted", "--reject", "--clean"]) in (0, 1)
    assert len(orders(tmp_path)) == ALL_ORDER_COUNT
