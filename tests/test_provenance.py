"""ProvenanceSink and read_run: the run directory (issue 9 item 1; RELIABILITY F1-F6, I4).

Every test drives real loops (both drivers where the loop matters) with scripted models,
then reads what is on disk: the files themselves, and `read_run`.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import multiprocessing
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from doubles import Driver

from looplet import (
    Allow,
    Block,
    Deny,
    LLMError,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    ToolResult,
    Usage,
    composable_loop,
    register_done_tool,
)
from looplet.provenance import (
    FORMAT,
    ProvenanceError,
    ProvenanceSink,
    read_run,
    run_dirs,
    step_from_record,
)
from looplet.tools.registry import BaseToolRegistry

HERE = Path(__file__).resolve().parent


def _tools() -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict[str, Any]:
        """Greet someone."""
        return {"greeting": f"Hi {name}"}

    @tools.tool
    def blob(size: int) -> dict[str, Any]:
        """Return a long text and values that are not JSON."""
        return {"text": "x" * size, "when": {1, 2}, "raw": b"\x00\x01"}

    register_done_tool(tools)
    return tools


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- F6: everything recorded --------------------------------------------------------------------


@dataclass
class ScriptedHooks:
    """A hook script: one decision of each kind, counted as it is returned."""

    returned: list[tuple[str, str]] = field(default_factory=list)

    def _note(self, slot: str, kind: str, out: Any) -> Any:
        self.returned.append((slot, kind))
        return out

    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        name = call.args.get("name")
        if name == "bob":
            return self._note("pre_dispatch", "rewrite", Allow(updated_args={"name": "Bob"}))
        if name == "Eve":
            return self._note("pre_dispatch", "deny", Deny("no Eve today"))
        if name == "Carol":
            return self._note("pre_dispatch", "allow", Allow())
        if name == "Dan":
            return self._note("pre_dispatch", "result", ToolResult("greet", data={"greeting": "cached"}))
        return None

    def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: ToolResult, step: int) -> Any:
        if call.args.get("name") == "Alice":
            return self._note("post_dispatch", "inject", "Alice is a regular")
        if call.args.get("name") == "Carol":
            return self._note(
                "post_dispatch", "replace", ToolResult("greet", data={"greeting": "Hello Carol"})
            )
        return None

    def check_done(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        if not state.metadata.get("blocked"):
            state.metadata["blocked"] = True
            return self._note("check_done", "block", Block("greet Dan first"))
        return None


SCRIPT: list[Any] = [
    '{"tool": "greet", "args": {"name": "Alice"}}',
    ToolCall("greet", {"name": "bob"}, call_id="n1"),
    '{"tool": "greet", "args": {"name": "Eve"}}',
    [ToolCall("greet", {"name": "Carol"}, call_id="b1"), ToolCall("greet", {"name": "Dan"}, call_id="b2")],
    '{"tool": "done", "args": {"answer": "early"}}',
    "I am thinking about it.",
    LLMResponse(
        tool_calls=[ToolCall("done", {"answer": "all greeted"}, call_id="d2")],
        usage=Usage(30, 5, 10, 0.25),
        model="scripted-1",
        request_id="req-7",
    ),
]


def test_a_scripted_run_records_every_prompt_response_call_result_and_decision(
    drive: Driver, tmp_path: Path
) -> None:
    llm = MockLLMBackend(SCRIPT, usage=Usage(10, 2))
    hooks = ScriptedHooks()
    sink = ProvenanceSink(tmp_path)
    steps, result = drive(llm, tools=_tools(), hooks=[hooks, sink], task="greet everyone")
    assert result.stop_reason == "done"
    run = read_run(tmp_path)

    # every prompt as sent, and every response as received
    assert len(run.llm_calls) == len(llm.calls) == len(SCRIPT)
    for record, request, item in zip(run.llm_calls, llm.calls, SCRIPT, strict=True):
        sent = record["request"]
        assert sent["system"] == request.system
        assert sent["messages"] == [m.to_dict() for m in request.messages]
        assert sent["tools"] == [dict(t) for t in request.tools]
        assert record["step"] == request.step
        if isinstance(item, str):
            assert record["response"]["text"] == item
    native = run.llm_calls[1]["response"]["tool_calls"]
    assert native == [{"id": "n1", "tool": "greet", "args": {"name": "bob"}}]
    last = run.llm_calls[-1]
    assert (last["response"]["model"], last["response"]["request_id"]) == ("scripted-1", "req-7")
    assert last["usage"] == {"input_tokens": 30, "output_tokens": 5, "cached_tokens": 10, "cost": 0.25}

    # every call as dispatched, every result
    assert [s["number"] for s in run.steps] == [s.number for s in steps]
    for record, step in zip(run.steps, steps, strict=True):
        assert record["call"]["args"] == step.tool_call.args
        assert record["call"]["tool"] == step.tool_call.tool
        assert record["result"]["data"] == step.tool_result.data
        assert record["result"]["error"] == step.tool_result.error
        assert record["pretty"] == step.pretty()
    rewritten = run.steps[1]["call"]
    assert (rewritten["args"], rewritten["original_args"]) == ({"name": "Bob"}, {"name": "bob"})

    # every hook decision, as a decision event and in its step's file
    kinds = sorted(e["kind"] for e in run.events if e["event"] == "decision")
    assert kinds == sorted(kind for _, kind in hooks.returned)
    assert len(hooks.returned) == 7
    in_files = sorted(d["decision"] for s in run.steps for d in s["decisions"])
    assert in_files == kinds
    rewrite = next(e for e in run.events if e["event"] == "decision" and e["kind"] == "rewrite")
    assert (rewrite["before"], rewrite["after"], rewrite["hook"]) == (
        {"name": "bob"},
        {"name": "Bob"},
        "ScriptedHooks",
    )

    # the manifest: the run as the loop reported it
    manifest = run.manifest
    assert manifest["format"] == FORMAT
    assert (manifest["status"], manifest["stop_reason"]) == ("ended", "done")
    assert manifest["final_answer"] == {"answer": "all greeted"} == result.final_answer
    assert manifest["steps"] == len(steps)
    assert manifest["llm_calls"] == result.llm_calls
    assert manifest["usage"] == result.usage.to_dict()
    assert manifest["task"] == "greet everyone"
    assert set(manifest["tools"]) == {"greet", "blob", "done"}
    trajectory = json.loads((run.path / "trajectory.json").read_text())
    assert trajectory["steps"] == run.steps and trajectory["stop_reason"] == "done"
    seqs = [e["seq"] for e in run.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["event"] for e in run.events][0] == "run_start"
    assert [e["event"] for e in run.events][-1] == "run_end"


def test_a_call_paused_for_approval_is_recorded_as_pending(tmp_path: Path) -> None:
    from looplet import Ask

    class AskFirst:
        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
            return Ask("may I greet?")

    llm = MockLLMBackend(['{"tool": "greet", "args": {"name": "Alice"}}'])
    loop = composable_loop(llm, tools=_tools(), task="greet", hooks=[AskFirst(), ProvenanceSink(tmp_path)])
    list(loop)
    assert loop.result is not None and loop.result.stop_reason == "approval_pending"
    run = read_run(tmp_path)
    pending = [e for e in run.events if e["event"] == "pending"]
    assert len(pending) == 1 and pending[0]["call"]["tool"] == "greet"
    assert run.stop_reason == "approval_pending"


def test_a_failed_model_call_is_recorded_with_its_error(drive: Driver, tmp_path: Path) -> None:
    llm = MockLLMBackend(
        ['{"tool": "greet", "args": {"name": "Alice"}}', LLMError("upstream is down", kind="server")]
    )
    steps, result = drive(llm, tools=_tools(), hooks=[ProvenanceSink(tmp_path)])
    assert result.stop_reason == "llm_error"
    run = read_run(tmp_path)
    assert len(run.llm_calls) == 2
    failed = run.llm_calls[1]
    assert failed["response"] is None
    assert failed["error"]["type"] == "LLMError" and "upstream is down" in failed["error"]["message"]
    assert failed["error"]["kind"] == "server"
    assert run.stop_reason == "llm_error" and "upstream is down" in run.manifest["detail"]


@dataclass
class _RetriedResponse(LLMResponse):
    """A response from a backend that says which attempts it made (the attribute the sink reads)."""

    retries: list[dict[str, Any]] = field(default_factory=list)


def test_retries_a_backend_reports_on_its_response_are_recorded(tmp_path: Path) -> None:
    attempts = [{"attempt": 1, "cause": "rate_limit (429)", "wait_s": 0.5}]
    answer = _RetriedResponse(text='{"tool": "done", "args": {"answer": "ok"}}', retries=attempts)
    composable_loop(
        MockLLMBackend([answer]), tools=_tools(), task="t", hooks=[ProvenanceSink(tmp_path)]
    ).run()
    assert read_run(tmp_path).llm_calls[0]["retries"] == attempts


# -- F2 / F3: a directory per run -------------------------------------------------------------


def _one_run(root: str, label: str) -> str:
    """One short scripted run into `root`; returns its run id."""
    llm = MockLLMBackend(
        [
            [
                ToolCall("greet", {"name": label}, call_id="same-1"),
                ToolCall("greet", {"name": label + "2"}, call_id="same-2"),
            ],
            ToolCall("done", {"answer": label}, call_id="same-3"),
        ]
    )
    loop = composable_loop(llm, tools=_tools(), task=f"task {label}", hooks=[_SHARED[root]])
    loop.run()
    return loop.state.run_id


_SHARED: dict[str, ProvenanceSink] = {}


def _check_run(directory: Path) -> str:
    """Validate one run directory (every line JSON, every record of this run); returns its label."""
    for line in (directory / "events.jsonl").read_bytes().splitlines():
        json.loads(line)
    run = read_run(directory)
    label = str(run.task).removeprefix("task ")
    assert run.stop_reason == "done" and run.final_answer == {"answer": label}
    assert [s["call"]["args"]["name"] for s in run.steps[:2]] == [label, label + "2"]
    assert len(run.llm_calls) == 2 and all(
        label in json.dumps(c["request"]["messages"]) for c in run.llm_calls
    )
    assert sum(e["event"] == "step" for e in run.events) == 3
    return label


def test_concurrent_runs_in_threads_share_one_sink_without_mixing(tmp_path: Path) -> None:
    _SHARED[str(tmp_path)] = ProvenanceSink(tmp_path)
    labels = [f"t{i}" for i in range(16)]
    threads = [threading.Thread(target=_one_run, args=(str(tmp_path), label)) for label in labels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 16
    assert sorted(_check_run(d) for d in dirs) == sorted(labels)


def test_concurrent_async_runs_share_one_sink_without_mixing(tmp_path: Path) -> None:
    from looplet import async_composable_loop

    sink = ProvenanceSink(tmp_path)

    async def one(label: str) -> None:
        llm = MockLLMBackend(
            [
                [
                    ToolCall("greet", {"name": label}, call_id="same-1"),
                    ToolCall("greet", {"name": label + "2"}, call_id="same-2"),
                ],
                ToolCall("done", {"answer": label}, call_id="same-3"),
            ]
        )
        await async_composable_loop(llm, tools=_tools(), task=f"task {label}", hooks=[sink]).run()

    async def main() -> None:
        await asyncio.gather(*(one(f"a{i}") for i in range(12)))

    asyncio.run(main())
    assert sorted(_check_run(d) for d in run_dirs(tmp_path)) == sorted(f"a{i}" for i in range(12))


def _worker(args: tuple[str, ProvenanceSink, int, int]) -> list[str]:
    root, sink, worker, runs = args
    _SHARED[root] = sink  # the sink arrives pickled: settings only
    return [_one_run(root, f"w{worker}r{i}") for i in range(runs)]


def test_processes_sharing_one_root_write_only_their_own_directories(tmp_path: Path) -> None:
    sink = ProvenanceSink(tmp_path)
    ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    with ctx.Pool(8) as pool:
        ids = pool.map(_worker, [(str(tmp_path), sink, w, 50) for w in range(8)])
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 400 == len({i for chunk in ids for i in chunk})
    labels = sorted(_check_run(d) for d in dirs)
    assert labels == sorted(f"w{w}r{i}" for w in range(8) for i in range(50))
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith("run_")]


def test_a_second_session_of_a_run_gets_a_fresh_directory(tmp_path: Path) -> None:
    from looplet import DefaultState

    sink = ProvenanceSink(tmp_path)
    long = MockLLMBackend(
        ['{"tool": "greet", "args": {"name": "A"}}'] * 3 + ['{"tool": "done", "args": {"answer": "x"}}']
    )
    composable_loop(
        long, tools=_tools(), state=DefaultState(task="t", run_id="run_fixed"), hooks=[sink]
    ).run()
    short = MockLLMBackend(['{"tool": "done", "args": {"answer": "y"}}'])
    composable_loop(
        short, tools=_tools(), state=DefaultState(task="t", run_id="run_fixed"), hooks=[sink]
    ).run()
    first, second = tmp_path / "run_fixed", tmp_path / "run_fixed.2"
    assert run_dirs(tmp_path) == [first, second]
    assert sink.path_of("run_fixed") == second
    assert len(read_run(first).steps) == 4 and len(read_run(second).steps) == 1
    assert sorted(p.name for p in (second / "steps").iterdir()) == ["0001.json"]


def test_a_run_id_that_is_not_a_safe_name_stays_inside_the_root(tmp_path: Path) -> None:
    from looplet import DefaultState

    root = tmp_path / "root"
    sink = ProvenanceSink(root)
    llm = MockLLMBackend(['{"tool": "done", "args": {"answer": "x"}}'])
    composable_loop(
        llm, tools=_tools(), state=DefaultState(task="t", run_id="../../escape me"), hooks=[sink]
    ).run()
    (made,) = run_dirs(root)
    assert made.parent == root and made.name.startswith("run_")
    assert [p.name for p in tmp_path.iterdir()] == ["root"]
    assert read_run(made).run_id == "../../escape me"


def test_a_fork_records_its_parent_and_the_steps_it_inherited(tmp_path: Path) -> None:
    script = ['{"tool": "greet", "args": {"name": "A"}}', '{"tool": "greet", "args": {"name": "B"}}']
    parent = composable_loop(
        MockLLMBackend(script + ['{"tool": "done", "args": {"answer": "x"}}']), tools=_tools(), task="t"
    )
    parent.run()
    fork = parent.state.fork(2)
    llm = MockLLMBackend(['{"tool": "done", "args": {"answer": "forked"}}'])
    composable_loop(llm, tools=_tools(), state=fork, hooks=[ProvenanceSink(tmp_path)]).run()
    run = read_run(tmp_path)
    assert run.parent_run_id == parent.state.run_id and run.manifest["forked_at"] == 2
    assert [s.get("inherited", False) for s in run.steps] == [True, False]
    assert run.steps[0]["call"]["args"] == {"name": "A"}
    assert run.final_answer == {"answer": "forked"}


# -- F4: big and non-JSON values --------------------------------------------------------------


def test_huge_and_non_json_values_are_cut_with_their_size_and_sha256(tmp_path: Path) -> None:
    llm = MockLLMBackend(
        ['{"tool": "blob", "args": {"size": 5000}}', '{"tool": "done", "args": {"answer": "x"}}']
    )
    composable_loop(llm, tools=_tools(), task="t", hooks=[ProvenanceSink(tmp_path, max_chars=1000)]).run()
    run = read_run(tmp_path)
    data = run.steps[0]["result"]["data"]
    cut = data["text"]
    assert cut["truncated"] is True and cut["size"] == 5000
    assert cut["sha256"] == hashlib.sha256(b"x" * 5000).hexdigest()
    assert cut["head"] == "x" * 500 and cut["tail"] == "x" * 500
    assert data["when"] == [1, 2] and data["raw"] == {"$bytes": "AAE="}
    # the model got the long text in its next prompt; the prompt's copy is cut the same way
    assert any("truncated" in json.dumps(m) for m in run.llm_calls[1]["request"]["messages"])
    assert max(p.stat().st_size for p in _files(run.path)) < 20_000


def test_a_value_with_a_lone_surrogate_is_still_written_and_read(tmp_path: Path) -> None:
    llm = MockLLMBackend(
        [ToolCall("greet", {"name": "x\udc80y"}), '{"tool": "done", "args": {"answer": "x"}}']
    )
    composable_loop(llm, tools=_tools(), task="t", hooks=[ProvenanceSink(tmp_path)]).run()
    assert read_run(tmp_path).steps[0]["call"]["args"] == {"name": "x\udc80y"}


# -- F5: late metadata ---------------------------------------------------------------------------


class TagLate:
    """A post_dispatch hook that runs after the sink's turn, and an after_step hook placed after it."""

    def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: ToolResult, step: int) -> None:
        result.metadata["reviewed_by"] = "late-reviewer"

    def after_step(self, state: Any, log: Any, step: Any) -> None:
        step.metadata["audited"] = step.number


def test_metadata_hooks_add_after_the_sink_reaches_the_step_file(drive: Driver, tmp_path: Path) -> None:
    llm = MockLLMBackend(
        ['{"tool": "greet", "args": {"name": "A"}}', '{"tool": "done", "args": {"answer": "x"}}']
    )
    drive(llm, tools=_tools(), hooks=[ProvenanceSink(tmp_path), TagLate()])
    run = read_run(tmp_path)
    assert [s["result"]["metadata"].get("reviewed_by") for s in run.steps] == ["late-reviewer"] * 2
    assert [s["metadata"].get("audited") for s in run.steps] == [1, 2]
    assert [e["number"] for e in run.events if e["event"] == "step_update"] == [1, 2]


# -- I4: permissions ---------------------------------------------------------------------------


def test_files_are_0600_and_directories_0700(tmp_path: Path) -> None:
    root = tmp_path / "traces"
    old = os.umask(0)
    try:
        llm = MockLLMBackend(
            ['{"tool": "greet", "args": {"name": "A"}}', '{"tool": "done", "args": {"answer": "x"}}']
        )
        composable_loop(llm, tools=_tools(), task="t", hooks=[ProvenanceSink(root)]).run()
    finally:
        os.umask(old)
    paths = [root, *root.rglob("*")]
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert len(modes) == 11  # root, run dir, llm/, steps/, 2 + 2 records, manifest, events, trajectory
    for name, mode in modes.items():
        wanted = 0o700 if (tmp_path / name).is_dir() else 0o600
        assert mode == wanted, (name, oct(mode))


# -- the hook's own manners -----------------------------------------------------------------------


def test_the_sink_leaves_no_context_variable_changed(drive: Driver, tmp_path: Path) -> None:
    before = dict(contextvars.copy_context())
    llm = MockLLMBackend(
        ['{"tool": "greet", "args": {"name": "A"}}', '{"tool": "done", "args": {"answer": "x"}}']
    )
    drive(llm, tools=_tools(), hooks=[ProvenanceSink(tmp_path)])
    if not drive.is_async:  # an async run's context is its task's, gone with it
        assert dict(contextvars.copy_context()) == before


def test_interleaved_runs_in_one_thread_are_kept_apart(tmp_path: Path) -> None:
    sink = ProvenanceSink(tmp_path)

    def loop(label: str) -> Any:
        script = [f'{{"tool": "greet", "args": {{"name": "{label}{i}"}}}}' for i in range(3)]
        llm = MockLLMBackend([*script, f'{{"tool": "done", "args": {{"answer": "{label}"}}}}'])
        return composable_loop(llm, tools=_tools(), task=f"task {label}", hooks=[sink])

    a, b = loop("a"), loop("b")
    for _ in range(4):
        next(a)
        next(b)
    a.close()
    b.close()
    for directory in run_dirs(tmp_path):
        run = read_run(directory)
        label = run.task[-1]
        assert all(label in json.dumps(c["request"]["messages"]) for c in run.llm_calls)
        greeted = [
            e["args"]["name"][0] for e in run.events if e["event"] == "tool_start" and e["tool"] == "greet"
        ]
        assert greeted == [label] * 3


def test_the_sink_pickles_to_its_settings_alone(tmp_path: Path) -> None:
    sink = ProvenanceSink(tmp_path, redact=False, max_chars=99)
    composable_loop(
        MockLLMBackend(['{"tool": "done", "args": {"answer": "x"}}']), tools=_tools(), task="t", hooks=[sink]
    ).run()
    copy = pickle.loads(pickle.dumps(sink))
    assert (copy.root, copy.redact, copy.max_chars, copy.runs) == (tmp_path, False, 99, {})


def test_a_step_that_cannot_be_written_ends_the_run_with_hook_error(tmp_path: Path) -> None:
    import shutil

    sink = ProvenanceSink(tmp_path)
    script = ['{"tool": "greet", "args": {"name": "A"}}'] * 2 + ['{"tool": "done", "args": {"answer": "x"}}']
    loop = composable_loop(MockLLMBackend(script), tools=_tools(), task="t", hooks=[sink])
    next(loop)
    steps_dir = sink.path_of(loop.state.run_id) / "steps"
    shutil.rmtree(steps_dir)
    steps_dir.write_text("in the way")  # the next step file cannot be made, whoever runs the test
    list(loop)
    assert len(loop.state.steps) == 2  # the step stays recorded in the state
    assert loop.result is not None and loop.result.stop_reason == "hook_error"
    assert "ProvenanceSink.after_step" in loop.result.detail
    manifest = json.loads((sink.path_of(loop.state.run_id) / "manifest.json").read_text())
    assert manifest["stop_reason"] == "hook_error"


def test_a_refused_directory_stops_the_run_before_any_model_call(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    llm = MockLLMBackend(['{"tool": "done", "args": {"answer": "x"}}'])
    loop = composable_loop(llm, tools=_tools(), task="t", hooks=[ProvenanceSink(blocker / "root")])
    steps = list(loop)
    assert steps == [] and llm.calls == []
    assert loop.result is not None and loop.result.stop_reason == "hook_error"
    assert "ProvenanceSink.pre_loop" in loop.result.detail


def test_redaction_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-proj-" + "Q" * 30
    llm = MockLLMBackend([ToolCall("greet", {"name": key}), '{"tool": "done", "args": {"answer": "x"}}'])
    composable_loop(
        llm, tools=_tools(), task="t", hooks=[ProvenanceSink(tmp_path / "off", redact=False)]
    ).run()
    assert read_run(tmp_path / "off").steps[0]["call"]["args"] == {"name": key}
    llm = MockLLMBackend([ToolCall("greet", {"name": key}), '{"tool": "done", "args": {"answer": "x"}}'])
    composable_loop(llm, tools=_tools(), task="t", hooks=[ProvenanceSink(tmp_path / "on")]).run()
    assert read_run(tmp_path / "on").steps[0]["call"]["args"] == {"name": "[REDACTED]"}


# -- reading ----------------------------------------------------------------------------------


def _recorded(tmp_path: Path) -> Path:
    llm = MockLLMBackend(
        ['{"tool": "greet", "args": {"name": "A"}}', '{"tool": "done", "args": {"answer": "x"}}']
    )
    sink = ProvenanceSink(tmp_path)
    loop = composable_loop(llm, tools=_tools(), task="t", hooks=[sink])
    loop.run()
    return sink.path_of(loop.state.run_id)


def test_a_torn_last_line_of_the_event_log_is_ignored(tmp_path: Path) -> None:
    directory = _recorded(tmp_path)
    events = directory / "events.jsonl"
    whole = events.read_bytes()
    lines = whole.splitlines(keepends=True)
    # cut inside the line of step 2: step 2 is not committed
    step2 = next(i for i, line in enumerate(lines) if b'"number": 2' in line and b'"event": "step"' in line)
    events.write_bytes(b"".join(lines[:step2]) + lines[step2][:20])
    run = read_run(directory)
    assert [s["number"] for s in run.steps] == [1]
    assert run.manifest["steps"] == 1 and len(run.events) == step2


def test_a_line_torn_in_the_middle_of_the_log_is_an_error(tmp_path: Path) -> None:
    directory = _recorded(tmp_path)
    events = directory / "events.jsonl"
    lines = events.read_bytes().splitlines(keepends=True)
    events.write_bytes(lines[0][:10] + b"\n" + b"".join(lines[1:]))
    with pytest.raises(ProvenanceError, match="line 1 is not JSON"):
        read_run(directory)


def test_read_run_takes_a_root_with_one_run_and_refuses_several(tmp_path: Path) -> None:
    one = _recorded(tmp_path)
    assert read_run(tmp_path).path == one == read_run(one).path
    _recorded(tmp_path)
    with pytest.raises(ProvenanceError, match="holds 2 runs; name one: run_"):
        read_run(tmp_path)
    with pytest.raises(ProvenanceError, match="no such directory"):
        read_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProvenanceError, match="holds no recorded run"):
        read_run(tmp_path / "empty")


def test_a_manifest_of_another_format_is_refused(tmp_path: Path) -> None:
    directory = _recorded(tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps(manifest | {"format": "looplet.provenance/9"}))
    with pytest.raises(ProvenanceError, match="newer"):
        read_run(directory)
    (directory / "manifest.json").write_text(json.dumps(manifest | {"format": "something/1"}))
    with pytest.raises(ProvenanceError, match="not a looplet provenance manifest"):
        read_run(directory)


def test_steps_read_back_as_step_records(tmp_path: Path) -> None:
    run = read_run(_recorded(tmp_path))
    rebuilt = run.step_objects()
    assert [s.pretty() for s in rebuilt] == [r["pretty"] for r in run.steps]
    assert step_from_record(run.steps[0]).tool_call.args == {"name": "A"}


# -- F1: a run killed by SIGKILL ------------------------------------------------------------------

CHILD = r"""
import asyncio, json, os, signal, sys
from looplet import BaseToolRegistry, LLMResponse, ToolCall, register_done_tool
from looplet import async_composable_loop, composable_loop
from looplet.provenance import ProvenanceSink

root, mode, point, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tools = BaseToolRegistry()
yielded = 0

def die():
    os.kill(os.getpid(), signal.SIGKILL)

@tools.tool
def work(n: int) -> dict:
    "Work."
    if point == "in_tool" and n == at:
        die()
    return {"n": n}

register_done_tool(tools)

class Model:
    calls = 0
    def complete(self, request):
        self.calls += 1
        if point == "in_model_call" and self.calls == at:
            die()
        if self.calls > 5:
            return LLMResponse(tool_calls=[ToolCall("done", {"answer": "ok"}, call_id="d")])
        return LLMResponse(tool_calls=[ToolCall("work", {"n": self.calls}, call_id=f"c{self.calls}")])

def seen(step):
    print(step.number, flush=True)
    if point == "after_yield" and step.number == at:
        die()

kwargs = dict(tools=tools, task="work five times", hooks=[ProvenanceSink(root)])
if mode == "sync":
    for step in composable_loop(Model(), **kwargs):
        seen(step)
else:
    async def main():
        async for step in async_composable_loop(Model(), **kwargs):
            seen(step)
    asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("point", "at"), [("in_tool", 3), ("in_model_call", 4), ("after_yield", 2)])
def test_a_run_killed_by_sigkill_leaves_a_directory_read_run_and_show_accept(
    tmp_path: Path, mode: str, point: str, at: int
) -> None:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), mode, point, str(at)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    yielded = [int(line) for line in child.stdout.split()]
    run = read_run(tmp_path)
    assert [s["number"] for s in run.steps] == yielded  # steps on disk = steps yielded
    assert not run.ended and run.manifest["status"] == "running" and run.stop_reason is None
    if point == "in_tool":  # the call in flight shows in the log, without a step
        starts = [e["call_id"] for e in run.events if e["event"] == "tool_start"]
        assert starts[-1] == f"c{at}" and len(run.steps) == at - 1
    shown = subprocess.run(
        [sys.executable, "-m", "looplet", "show", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert sum(line.startswith("#") for line in lines) == len(yielded)
    assert "stop reason: none: the run did not end (killed, or still running)" in lines


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_a_run_whose_last_files_cannot_be_written_still_closes_its_event_log(tmp_path: Path) -> None:
    sink = ProvenanceSink(tmp_path)
    tools = _tools()
    blocked: list[Path] = []

    @tools.tool
    def block_the_trajectory() -> str:
        """Put a directory where the sink will write trajectory.json."""
        (run_dir,) = set(sink.runs.values()) - set(blocked)
        (run_dir / "trajectory.json").mkdir()
        blocked.append(run_dir)
        return "blocked"

    script = [ToolCall("block_the_trajectory", {}), ToolCall("done", {"answer": "x"})]
    before = _open_fds()
    for _ in range(3):
        loop = composable_loop(MockLLMBackend(list(script)), tools=tools, task="t", hooks=[sink])
        assert loop.run().stop_reason == "done"
    assert len(blocked) == 3
    assert _open_fds() == before
    last = read_run(blocked[-1])
    assert [e["event"] for e in last.events][-1] == "run_end"  # the log still says the run ended
    assert last.ended and not [p.name for p in blocked[-1].iterdir() if p.name.endswith(".tmp")]
