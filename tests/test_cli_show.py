"""``python -m looplet show DIR [--json] [--step N]`` (issue 9 item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from looplet import (
    Allow,
    BaseToolRegistry,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    Usage,
    composable_loop,
    register_done_tool,
)
from looplet.cli import main
from looplet.provenance import ProvenanceSink


class FixName:
    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        if call.args.get("name") == "bob":
            return Allow(updated_args={"name": "Bob"})
        return None


def _record(root: Path, script: list[Any] | None = None) -> tuple[Path, Any]:
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict[str, Any]:
        """Greet someone."""
        return {"greeting": f"Hi {name}"}

    register_done_tool(tools)
    script = script or [
        LLMResponse(
            tool_calls=[ToolCall("greet", {"name": "Alice"}, call_id="c1")],
            usage=Usage(120, 8, 100),
            model="m-1",
        ),
        LLMResponse(tool_calls=[ToolCall("greet", {"name": "bob"}, call_id="c2")], usage=Usage(140, 9)),
        LLMResponse(
            tool_calls=[ToolCall("done", {"answer": "greeted both"}, call_id="c3")], usage=Usage(160, 7)
        ),
    ]
    sink = ProvenanceSink(root)
    loop = composable_loop(
        MockLLMBackend(script), tools=tools, task="greet Alice and Bob", hooks=[FixName(), sink]
    )
    steps = list(loop)
    return sink.path_of(loop.state.run_id), (loop, steps)


def test_show_prints_header_steps_model_calls_totals_and_stop_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, (loop, steps) = _record(tmp_path)
    assert main(["show", str(directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run {loop.state.run_id} · ended"
    assert lines[1] == "task: greet Alice and Bob"
    assert lines[2].startswith("started ") and " · ended " in lines[2] and " · looplet " in lines[2]
    body = [line for line in lines if line.startswith(("#", "  model call"))]
    assert [line.split(" · ")[0].strip() if "model call" in line else line for line in body] == [
        "model call 1",
        steps[0].pretty(),
        "model call 2",
        steps[1].pretty(),
        "model call 3",
        steps[2].pretty(),
    ]
    assert "120 in / 8 out tokens (100 cached)" in body[0] and "m-1" in body[0]
    assert lines[-3] == "totals: 3 steps · 3 model calls · 420 in / 24 out tokens (100 cached)"
    assert lines[-2] == "stop reason: done (done was called and accepted)"
    assert lines[-1] == 'final answer: {"answer": "greeted both"}'


def test_show_of_a_root_holding_one_run_is_that_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _ = _record(tmp_path)
    assert main(["show", str(tmp_path)]) == 0
    from_root = capsys.readouterr().out
    assert main(["show", str(directory)]) == 0
    assert capsys.readouterr().out == from_root


def test_show_names_the_parent_of_a_fork(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, (parent, _) = _record(tmp_path / "parent")
    fork = parent.state.fork(2)
    tools = BaseToolRegistry()
    register_done_tool(tools)
    llm = MockLLMBackend(['{"tool": "done", "args": {"answer": "forked"}}'])
    composable_loop(llm, tools=tools, state=fork, hooks=[ProvenanceSink(tmp_path / "fork")]).run()
    assert main(["show", str(tmp_path / "fork")]) == 0
    out = capsys.readouterr().out
    assert f"parent: {parent.state.run_id} (forked at step 2)" in out.splitlines()
    assert " (inherited)" in out


def test_show_json_is_the_run_as_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory, (loop, steps) = _record(tmp_path)
    assert main(["show", str(directory), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"path", "manifest", "steps", "llm_calls", "events"}
    assert data["manifest"]["run_id"] == loop.state.run_id
    assert [s["pretty"] for s in data["steps"]] == [s.pretty() for s in steps]
    assert len(data["llm_calls"]) == 3 and data["events"][-1]["event"] == "run_end"


def test_show_step_prints_one_step_in_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory, (_, steps) = _record(tmp_path)
    assert main(["show", str(directory), "--step", "2"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == steps[1].pretty()
    assert "tool: greet · call id: c2 · turn 2" in lines
    assert "arguments (as dispatched):" in lines and '    "name": "Bob"' in lines
    assert "arguments before a hook rewrote them:" in lines and '    "name": "bob"' in lines
    assert '    "greeting": "Hi Bob"' in lines
    assert '  pre_dispatch FixName: rewrite {"name": "bob"} -> {"name": "Bob"}' in lines
    assert "usage of its model call: 140 in / 9 out tokens" in lines
    assert main(["show", str(directory), "--step", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["number"] == 2 and record["call"]["original_args"] == {"name": "bob"}


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (None, ["missing"], "missing: no such directory"),
        ("empty", ["."], "holds no recorded run"),
        ("bad manifest", ["."], "manifest.json: not JSON"),
        ("run", [".", "--step", "9"], "has no step 9 (it has steps 1-3)"),
        ("two runs", ["."], "holds 2 runs; name one: run_"),
    ],
)
def test_show_refuses_what_it_cannot_print_with_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str | None, argv: list[str], message: str
) -> None:
    root = tmp_path / "root"
    if make is not None:
        root.mkdir()
    if make in ("run", "two runs", "bad manifest"):
        directory, _ = _record(root)
        if make == "two runs":
            _record(root)
        if make == "bad manifest":
            (directory / "manifest.json").write_text("{not json")
    target = [str(root / argv[0]), *argv[1:]]
    assert main(["show", *target]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith("looplet show: ") and message in err[0]


def test_show_without_a_directory_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show"]) == 2
    assert capsys.readouterr().err == "looplet show: name the run's directory: looplet show DIR\n"


def test_show_neutralises_control_characters_in_recorded_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "done\x1b]0;pwned\x07\x9b31m"
    script = [LLMResponse(tool_calls=[ToolCall("done", {"answer": evil}, call_id="c1")], model=evil)]
    directory, _ = _record(tmp_path, script)
    for argv in (["show", str(directory)], ["show", str(directory), "--step", "1"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\x9b")


def test_python_dash_m_looplet_show_runs(tmp_path: Path) -> None:
    directory, _ = _record(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "looplet", "show", str(directory)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "stop reason: done" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "looplet", "show", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1


def test_show_masks_a_secret_before_cutting_a_long_value_to_width(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "ghp_" + "Q" * 36
    tools = BaseToolRegistry()
    register_done_tool(tools)
    sink = ProvenanceSink(tmp_path, redact=False)
    done = ToolCall("done", {"answer": "z" * 290 + " " + secret})
    loop = composable_loop(MockLLMBackend([done]), tools=tools, task="y" * 280 + " " + secret, hooks=[sink])
    loop.run()
    assert main(["show", str(sink.path_of(loop.state.run_id))]) == 0
    out = capsys.readouterr().out
    assert secret[:8] not in out
    assert "y [REDACTED]\n" in out  # the task: masked, and now short enough to show whole
