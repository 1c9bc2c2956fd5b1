"""Properties of the provenance directory: no canary secret in any file or printed line (RELIABILITY
I1, INV-6), and a log cut at any byte reads back as the steps committed before the cut (F1)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from doubles import WORK_PLACES, Canary, canary_tools, env_var, leak_forms, placed_canaries
from hypothesis import given, settings

from looplet import (
    BaseToolRegistry,
    Deny,
    FunctionBackend,
    LoopConfig,
    ToolCall,
    composable_loop,
    register_done_tool,
)
from looplet.cli import main as cli
from looplet.provenance import ProvenanceSink, read_run

ENV_NAME = "LOOPLET_PROVENANCE_CANARY_TOKEN"

#: where the canary is put: each is one way a value reaches the run directory
PLACES = (*WORK_PLACES, "deny_reason", "task", "system_prompt", "model_text")


class _DenyPlanted:
    def __init__(self, place: str, planted: str) -> None:
        self.place, self.planted = place, planted

    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        if self.place == "deny_reason" and call.tool == "work":
            return Deny(f"not with {self.planted}")
        return None


def _record(root: Path, place: str, planted: str, depth: int, redact: bool = True) -> None:
    """A scripted run that carries `planted` where `place` says, recorded into `root`."""
    tools = canary_tools(place, planted, depth)
    replies = [
        json.dumps({"tool": "work", "args": {"text": planted if place == "args" else "plain"}}),
        f"Let me think about {planted}." if place == "model_text" else "Let me think.",
        json.dumps({"tool": "done", "args": {"answer": "finished"}}),
    ]
    calls: list[Any] = []

    def answer(request: Any) -> str:
        calls.append(request)
        return replies[min(len(calls) - 1, 2)]

    config = LoopConfig(
        system_prompt=f"Operator note: {planted}" if place == "system_prompt" else "Be brief."
    )
    composable_loop(
        FunctionBackend(answer),
        tools=tools,
        task=f"do the work for {planted}" if place == "task" else "do the work",
        config=config,
        hooks=[_DenyPlanted(place, planted), ProvenanceSink(root, redact=redact)],
    ).run()


def _everything_written(root: Path) -> str:
    texts = [p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()]
    return "\n".join(texts)


def _everything_printed(root: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        for argv in (["show", str(root)], ["show", str(root), "--json"], ["show", str(root), "--step", "1"]):
            assert cli(argv) == 0
    return out.getvalue()


@settings(max_examples=150)
@given(canary=placed_canaries(PLACES, max_depth=5))
def test_a_canary_appears_in_no_file_and_no_printed_line(canary: Canary) -> None:
    canary.tally()
    root = Path(tempfile.mkdtemp(prefix="looplet-canary-"))
    try:
        with env_var(ENV_NAME, canary.env_value):
            _record(root, canary.place, canary.planted, canary.depth)
            sinks = {"files": _everything_written(root), "show": _everything_printed(root)}
        assert len(read_run(root).steps) >= 2
    finally:
        shutil.rmtree(root)
    for sink, text in sinks.items():
        for form in leak_forms(canary.secret):
            assert form not in text, f"{canary.place}/{canary.how}: the canary leaked into {sink}"


def test_every_place_of_the_property_carries_the_canary_into_the_directory(tmp_path: Path) -> None:
    # with redaction off, each place must put the marker in some file, or the property above
    # would pass without ever meeting the canary there
    reached = {}
    for place in PLACES:
        root = tmp_path / place
        _record(root, place, "Qz7PLANTED-marker-0001", 2, redact=False)
        reached[place] = "PLANTED-marker-0001" in _everything_written(root)
    assert all(reached.values()), [p for p, ok in reached.items() if not ok]


# -- F1: a log cut at any byte -----------------------------------------------------------------


def _long_run(root: Path) -> Path:
    tools = BaseToolRegistry()

    @tools.tool
    def work(n: int) -> dict[str, Any]:
        """Work."""
        return {"n": n, "text": "é😀" * n}

    register_done_tool(tools)
    replies = [json.dumps({"tool": "work", "args": {"n": i}}) for i in range(6)]
    replies.append(json.dumps({"tool": "done", "args": {"answer": "ok"}}))
    calls: list[Any] = []

    def answer(request: Any) -> str:
        calls.append(request)
        return replies[len(calls) - 1]

    sink = ProvenanceSink(root)
    loop = composable_loop(FunctionBackend(answer), tools=tools, task="work", hooks=[sink])
    loop.run()
    return sink.path_of(loop.state.run_id)


def test_a_log_cut_at_any_byte_reads_back_as_the_steps_committed_before_it(tmp_path: Path) -> None:
    # every byte offset, not a sample: the log is a few kilobytes
    recorded = _long_run(tmp_path / "root")
    log = (recorded / "events.jsonl").read_bytes()
    counts: Counter[str] = Counter()
    for cut in range(len(log) + 1):
        (recorded / "events.jsonl").write_bytes(log[:cut])
        run = read_run(recorded)
        kept = log[:cut]
        complete = kept[: kept.rfind(b"\n") + 1]
        committed = [json.loads(line) for line in complete.splitlines()]
        expected = [e["number"] for e in committed if e["event"] == "step"]
        assert [s["number"] for s in run.steps] == expected, cut
        assert run.events == committed, cut
        counts["torn" if cut != len(complete) else "clean"] += 1
        counts[f"steps={len(expected)}"] += 1
    assert counts["clean"] == log.count(b"\n") + 1 and counts["torn"] > 1000
    assert sorted(k for k in counts if k.startswith("steps=")) == [f"steps={n}" for n in range(8)]
