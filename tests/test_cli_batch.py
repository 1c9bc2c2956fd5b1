"""``looplet batch``: progress lines, the summary, exit codes, and resuming after the process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from looplet.cli import main

BATCHER = Path(__file__).parent / "data" / "cartridges" / "batcher"


def write_tasks(path: Path, tasks: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks), encoding="utf-8")
    return path


def test_batch_prints_a_line_per_task_and_a_summary_and_exits_1_when_one_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [{"id": "a", "task": "quick"}, {"id": "b", "task": "build-fails"}, {"id": "c", "task": "quick"}],
    )
    argv = [
        "batch",
        str(BATCHER),
        str(tasks),
        "--concurrency",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--scripted",
    ]
    code = main(argv)
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    progress = [line for line in out if line.startswith("[")]
    assert sorted(line.split()[2] for line in progress) == ["a", "b", "c"]
    assert [line[:6] for line in progress] == ["[1/3] ", "[2/3] ", "[3/3] "]
    assert any("✗ b · build_error" in line for line in progress)
    assert "3 tasks: 2 done, 1 failed, 0 paused" in out[-2]
    assert out[-1] == f"results: {tmp_path / 'out' / 'results.jsonl'}"


def test_batch_exits_0_when_every_task_is_done_and_again_on_a_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"id": i, "task": "quick"} for i in range(3)])
    argv = ["batch", str(BATCHER), str(tasks), "--out", str(tmp_path / "out"), "--scripted", "--trace"]
    assert main(argv) == 0
    assert main(argv) == 0
    last = capsys.readouterr().out.splitlines()
    assert "3 had ended in an earlier session" in last[-2]
    assert len(list((tmp_path / "out" / "traces").iterdir())) == 3


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"id": 1, "task": "a"}\n{"id": 2, task}\n', "line 2: not JSON"),
        ('{"id": 1, "task": "a"}\n{"id": 1, "task": "b"}\n', "line 2: id '1' is also the id of"),
        ('{"task": "a"}\n', 'line 1: "id" must be a string or an integer'),
    ],
)
def test_a_bad_tasks_file_is_one_line_naming_the_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(content, encoding="utf-8")
    code = main(["batch", str(BATCHER), str(tasks), "--out", str(tmp_path / "out"), "--scripted"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert says in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["batch"], "name the agent and the tasks"),
        (["batch", str(BATCHER), "TASKS"], "--out DIR"),
        (["batch", "nowhere_module_xyz:make", "TASKS", "--out", "OUT", "--scripted"], "cannot be read"),
    ],
)
def test_missing_arguments_are_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    argv = [a.replace("TASKS", str(tmp_path / "t.jsonl")).replace("OUT", str(tmp_path / "o")) for a in argv]
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_an_agent_that_cannot_be_loaded_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"id": 1, "task": "x"}])
    code = main(["batch", "nowhere_module_xyz:make", str(tasks), "--out", str(tmp_path / "o"), "--scripted"])
    assert code == 2
    assert "cannot be imported" in capsys.readouterr().err


def ran_counts(out: Path, count: int) -> dict[str, int]:
    """How often each task's work tool started: the lines of ran.txt in its workspace."""
    counts = {}
    for i in range(count):
        ran = out / "workspaces" / f"t{i}" / "ran.txt"
        counts[f"t{i}"] = len(ran.read_text().splitlines()) if ran.exists() else 0
    return counts


def test_a_killed_batch_resumes_without_running_finished_tasks_again(tmp_path: Path) -> None:
    count = 40
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"id": f"t{i}", "task": "slow"} for i in range(count)])
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "looplet", "batch", str(BATCHER), str(tasks)]
    argv += ["--concurrency", "4", "--out", str(out), "--scripted"]
    results = out / "results.jsonl"
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while child.poll() is None and (not results.exists() or results.read_text().count("\n") < 8):
            time.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    before_lines = results.read_text().splitlines()
    finished_before = {json.loads(line)["id"] for line in before_lines}
    counts_before = ran_counts(out, count)
    assert 8 <= len(finished_before) < count

    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(f"t{i}" for i in range(count))
    counts_after = ran_counts(out, count)
    # finished tasks did not run again; no task's tool ran twice (one cut mid-tool is `interrupted`)
    assert all(counts_after[i] == counts_before[i] == 1 for i in finished_before)
    assert max(counts_after.values()) == 1
    resumed = [line for line in lines if line["resumed"]]
    assert all(line["status"] == "done" for line in lines)
    assert len(resumed) >= 1  # the tasks running when it was killed continued from their checkpoints
    assert f"{count} had ended in an earlier session" not in again.stdout
