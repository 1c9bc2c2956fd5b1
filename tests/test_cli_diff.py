"""``looplet diff DIR_A DIR_B``: two recorded runs step by step, the first divergence marked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_replay import Shop, parent_and_fork, record, refund_reply, refund_tools, script

from looplet import DefaultState, FunctionBackend, MockLLMBackend
from looplet.cli import main
from looplet.replay import diff_runs


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["diff", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def basket(tmp_path: Path) -> Path:
    path, _ = record(tmp_path / "a", MockLLMBackend(script()), Shop().tools)
    return path


def test_two_identical_runs_exit_zero_and_show_every_step_as_same(
    basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again, _ = record(tmp_path / "b", MockLLMBackend(script()), Shop().tools)
    code, out, err = run_cli([str(basket), str(again)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    same = [line[:6] for line in lines if line.startswith("  = ")]
    assert same == ["  = #1", "  = #2", "  = #3", "  = #4"]
    assert "first divergence" not in out
    assert lines[-1] == "same: the runs took the same steps and ended the same way"


def test_a_changed_run_exits_one_and_marks_the_first_divergence(
    basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed, _ = record(tmp_path / "b", MockLLMBackend(script()), Shop(discount=0.5).tools)
    code, out, _ = run_cli([str(basket), str(changed)], capsys)
    assert code == 1
    lines = out.splitlines()
    marker = lines.index("--- first divergence at step 3: different data ---")
    assert lines[marker - 1].startswith("  = #2 ✓ look_up(item='cups')")
    assert lines[marker + 1].startswith("  A #3 ✓ price(total=80) → total: 72.0")
    assert lines[marker + 2].startswith("  B #3 ✓ price(total=80) → total: 40.0")
    assert lines[marker + 3].startswith("  = #4 ✓ done(")  # the same again after it
    assert lines[-1] == "different: first at step 3: different data"


def test_a_fork_and_its_parent_share_the_steps_before_the_fork(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent, child, _ = parent_and_fork(tmp_path)
    code, out, _ = run_cli([str(parent), str(child)], capsys)
    assert code == 1
    lines = out.splitlines()
    assert "B is a fork of A at step 3" in lines
    shared = [line for line in lines if line.endswith("(shared, before the fork)")]
    assert [line[:6] for line in shared] == ["  = #1", "  = #2"]
    marker = lines.index("--- first divergence at step 3: different call: done vs look_up ---")
    assert lines[marker + 1].startswith("  A #3 ✓ done(")
    assert lines[marker + 2].startswith("  B #3 ✓ look_up(order=17)")
    assert lines[marker + 3] == "  A #4 (no such step)"
    assert lines[marker + 4].startswith("  B #4 ✓ done(answer='refunded 40 of 40')")
    assert "prompts: B's model call 1 (before step 3) differs from A's in the system prompt" in lines


def test_the_fork_may_come_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent, child, _ = parent_and_fork(tmp_path)
    code, out, _ = run_cli([str(child), str(parent)], capsys)
    assert code == 1
    assert "A is a fork of B at step 3" in out
    assert out.count("(shared, before the fork)") == 2
    assert "--- first divergence at step 3: different call: look_up vs done ---" in out


def test_a_fork_rerun_unchanged_is_the_same_as_its_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools, _ = refund_tools()
    original = DefaultState(task="Refund order 17", run_id="refund-9")
    parent, _ = record(tmp_path, FunctionBackend(refund_reply), tools, state=original, task=None)
    fork = original.fork(at_step=2)
    child, _ = record(tmp_path, FunctionBackend(refund_reply), tools, state=fork, task=None)
    code, out, _ = run_cli([str(parent), str(child)], capsys)
    assert code == 0
    assert "B is a fork of A at step 2" in out
    assert out.count("(shared, before the fork)") == 1
    assert out.splitlines()[-1].startswith("same:")


def test_json_output_holds_the_steps_and_the_first_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent, child, _ = parent_and_fork(tmp_path)
    code, out, _ = run_cli([str(parent), str(child), "--json"], capsys)
    assert code == 1
    data = json.loads(out)
    assert data["identical"] is False
    assert data["relation"] == "B is a fork of A at step 3"
    assert data["first_divergence"]["step"] == 3 and data["first_divergence"]["kind"] == "call"
    assert data["first_prompt_difference"] == {"model_call": 1, "step": 3, "what": "the system prompt"}
    assert [(s["number"], s["same"], s["shared"], s["kind"]) for s in data["steps"]] == [
        (1, True, True, None),
        (2, True, True, None),
        (3, False, False, "call"),
        (4, False, False, "extra"),
    ]
    assert data["b"]["parent_run_id"] == "refund-1" and data["b"]["forked_at"] == 3


def test_a_run_killed_part_way_is_missing_the_steps_it_did_not_take(
    basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    killed = tmp_path / "killed" / basket.name
    shutil.copytree(basket, killed)
    lines = (killed / "events.jsonl").read_text().splitlines(keepends=True)
    steps_seen, kept = 0, []
    for line in lines:
        steps_seen += json.loads(line)["event"] == "step"
        if steps_seen > 2:
            break
        kept.append(line)
    (killed / "events.jsonl").write_text("".join(kept) + '{"seq": 99, "event": "st')  # a torn last line
    manifest = json.loads((killed / "manifest.json").read_text())
    manifest.update(status="running", stop_reason=None, final_answer=None, ended_at=None)
    (killed / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = run_cli([str(basket), str(killed)], capsys)
    assert code == 1
    assert "--- first divergence at step 3: only A has this step ---" in out
    assert "  B #3 (no such step)" in out and "  B #4 (no such step)" in out
    assert "stop reason: A done | B None" in out


def test_diff_runs_is_the_same_comparison_from_python(basket: Path, tmp_path: Path) -> None:
    changed, _ = record(tmp_path / "b", MockLLMBackend(script()), Shop(failing=True).tools)
    diff = diff_runs(basket, changed)
    assert not diff.identical and diff.divergence is not None
    assert (diff.divergence.step, diff.divergence.kind) == (3, "result")
    assert diff.divergence.detail == "different result: data vs error (execution)"
    assert [p.same for p in diff.pairs] == [True, True, False, True]  # the scripted done is the same


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "file", "empty", "two_runs", "corrupt_manifest", "newer_format"])
def test_a_directory_that_is_not_one_recorded_run_exits_two_with_one_line(
    case: str, basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    expected = {
        "missing": "no such directory",
        "file": "no such directory",
        "empty": "holds no recorded run",
        "two_runs": "holds 2 runs; name one:",
        "corrupt_manifest": "manifest.json: not JSON",
        "newer_format": "is newer than this looplet reads",
    }[case]
    if case == "file":
        bad.write_text("not a run")
    elif case == "empty":
        bad.mkdir()
    elif case == "two_runs":
        bad.mkdir()
        shutil.copytree(basket, bad / "run_one")
        shutil.copytree(basket, bad / "run_two")
    elif case in ("corrupt_manifest", "newer_format"):
        shutil.copytree(basket, bad)
        text = "{" if case == "corrupt_manifest" else json.dumps({"format": "looplet.provenance/9"})
        (bad / "manifest.json").write_text(text)
    code, out, err = run_cli([str(basket), str(bad)], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("looplet diff: error: ")
    assert expected in err


def test_one_directory_is_not_enough(basket: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli([str(basket)], capsys)
    assert (code, out) == (2, "")
    assert err == "looplet diff: error: give two run directories: looplet diff DIR_A DIR_B\n"


def test_python_dash_m_looplet_diff_exits_with_the_comparison(tmp_path: Path, basket: Path) -> None:
    changed, _ = record(tmp_path / "b", MockLLMBackend(script()), Shop(discount=0.5).tools)
    same = subprocess.run(
        [sys.executable, "-m", "looplet", "diff", str(basket), str(basket)], capture_output=True, text=True
    )
    differ = subprocess.run(
        [sys.executable, "-m", "looplet", "diff", str(basket), str(changed)], capture_output=True, text=True
    )
    assert (same.returncode, differ.returncode) == (0, 1)
    assert "--- first divergence at step 3: different data ---" in differ.stdout


def test_two_forks_of_one_run_share_what_they_both_inherited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_replay import second_thoughts

    tools, _ = refund_tools()
    original = DefaultState(task="Refund order 17", run_id="refund-5")
    record(tmp_path / "p", FunctionBackend(refund_reply), tools, state=original, task=None)
    fork_1, fork_2 = original.fork(at_step=3), original.fork(at_step=3)
    first, _ = record(tmp_path / "f1", FunctionBackend(refund_reply), tools, state=fork_1, task=None)
    second, _ = record(tmp_path / "f2", FunctionBackend(second_thoughts), tools, state=fork_2, task=None)
    code, out, _ = run_cli([str(first), str(second)], capsys)
    assert code == 1
    assert "A and B are forks of refund-5 (A at step 3, B at step 3)" in out
    assert out.count("(shared, before the fork)") == 2
    assert "--- first divergence at step 3: different call: done vs look_up ---" in out


def test_control_characters_in_a_step_file_are_not_printed(
    basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = tmp_path / "t" / basket.name
    shutil.copytree(basket, tampered)
    step = tampered / "steps" / "0001.json"
    data = json.loads(step.read_text())
    data["pretty"] = "#1 \x1b[2J\x1b]0;owned\x07 look_up"
    step.write_text(json.dumps(data))
    code, out, _ = run_cli([str(basket), str(tampered)], capsys)
    assert code == 0  # the pretty line is shown, not compared
    assert "\x1b" not in out and "\x07" not in out
    assert "  = #1 ✓ look_up(item='tea')" in out
    code, out, _ = run_cli([str(tampered), str(basket)], capsys)
    assert "  = #1 �[2J�]0;owned� look_up" in out


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("stop_reason", "max_steps", "different stop reason: done vs max_steps"),
        ("final_answer", {"answer": "80"}, "different final answer"),
    ],
)
def test_same_steps_that_end_differently_differ_at_the_end(
    field: str, value: Any, reason: str, basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "o" / basket.name
    shutil.copytree(basket, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest[field] = value
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = run_cli([str(basket), str(other)], capsys)
    assert code == 1
    assert out.count("  = #") == 4 and "first divergence" not in out
    assert out.splitlines()[-1] == f"different: first at the end: {reason}"


def test_a_changed_prompt_with_the_same_steps_still_differs(
    basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other, _ = record(tmp_path / "b", MockLLMBackend(script()), Shop().tools, system_prompt="Be brief.")
    code, out, _ = run_cli([str(basket), str(other)], capsys)
    assert code == 1
    assert "prompts: B's model call 1 (before step 1) differs from A's in the system prompt" in out
    assert out.splitlines()[-1] == "different: same steps and ending, but the prompts differ"


@pytest.mark.parametrize("as_json", [False, True])
def test_a_secret_in_an_unredacted_recording_is_not_printed(
    as_json: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from looplet import ToolCall, composable_loop
    from looplet.provenance import ProvenanceSink

    canary = "sk-canary-0123456789abcdefghij"
    monkeypatch.setenv("SHOP_API_TOKEN", canary)
    shop = Shop()
    paths = []
    for name, answer in (("a", "fine"), ("b", f"leaked {canary}")):
        replies = [ToolCall("look_up", {"item": canary}, call_id="c1"), ToolCall("done", {"answer": answer})]
        sink = ProvenanceSink(tmp_path / name, redact=False)
        loop = composable_loop(MockLLMBackend(replies), tools=shop.tools, hooks=[sink], task="t")
        loop.run()
        paths.append(sink.path_of(loop.state.run_id))
    assert canary in (paths[1] / "manifest.json").read_text()  # recorded raw, as asked
    code, out, _ = run_cli([str(paths[0]), str(paths[1]), *(["--json"] if as_json else [])], capsys)
    assert code == 1
    assert canary not in out and "[REDACTED]" in out


def test_a_recorded_replay_diffs_as_the_same_run_as_the_original(
    basket: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from looplet.provenance import ProvenanceSink
    from looplet.replay import replay_loop

    sink = ProvenanceSink(tmp_path / "replays")
    replayed = replay_loop(basket, tools=Shop().tools, hooks=[sink])
    assert replayed.run().identical
    again = sink.path_of(replayed.loop.state.run_id)
    code, out, _ = run_cli([str(basket), str(again)], capsys)
    assert code == 0, out
    changed = replay_loop(basket, tools=Shop(discount=0.5).tools, hooks=[sink])
    assert changed.run().divergence is not None
    code, out, _ = run_cli([str(basket), str(sink.path_of(changed.loop.state.run_id))], capsys)
    assert code == 1 and "--- first divergence at step 3: different data ---" in out


def test_a_secret_cut_at_the_width_of_a_line_is_masked_before_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from looplet import ToolCall, composable_loop
    from looplet.provenance import ProvenanceSink
    from looplet.redaction import REDACTED

    secret = "ghp_" + "Q" * 36
    task = "y" * 60 + " " + secret  # the task's shown form is cut inside the secret
    paths = []
    for name in ("a", "b"):
        sink = ProvenanceSink(tmp_path / name, redact=False)
        done = ToolCall("done", {"answer": f"{name} " + "z" * 60 + " " + secret})
        loop = composable_loop(MockLLMBackend([done]), tools=Shop().tools, hooks=[sink], task=task)
        loop.run()
        paths.append(sink.path_of(loop.state.run_id))
    code, out, _ = run_cli([str(paths[0]), str(paths[1])], capsys)
    assert code == 1
    assert secret[:8] not in out
    headers = out.splitlines()[:2]
    assert all(f"y {REDACTED}'" in line for line in headers), headers  # masked, and now short enough
