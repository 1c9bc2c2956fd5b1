"""From a failed run to a regression test, with no model and no network.

    python examples/regression_demo/demo.py [--workdir DIR]

1. **Capture.** A scripted agent summarises sales.csv with a tool that has a
   bug. The tool says it succeeded; an outcome collector reads the file it
   actually left in the workspace, and the grader's required eval (whose
   expected totals the agent never sees) fails. The run is recorded by
   `ProvenanceSink`.
2. **Fix.** One line of the tool changes (shown as a diff).
3. **Replay.** The recorded model replies are replayed against the fixed tool
   in a fresh workspace: the same decisions, a different result at the step
   that ran the tool, and the required eval passes.

Exit code 0 when the story holds (the eval fails before the fix and passes
after), 1 otherwise.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from looplet import MockLLMBackend, ToolCall, composable_loop
from looplet.evals import EvalHook, record_artifact
from looplet.provenance import ProvenanceSink
from looplet.replay import replay_loop

HERE = Path(__file__).resolve().parent
GRADER = HERE / "grader" / "evals.py"
TASK = "Write the sales totals per region of sales.csv to totals.json."
SALES = "region,amount\nnorth,120\neast,100\neast,70\nwest,45.5\n"
BUGGY_LINE = "        for row in rows[1:]:\n"
FIXED_LINE = "        for row in rows:\n"


def scripted_model() -> MockLLMBackend:
    """The model's decisions, fixed so the demo needs no key: look, summarise, finish."""
    return MockLLMBackend(
        [
            [ToolCall("list_files", {}, call_id="c1")],
            [ToolCall("summarize_sales", {"source": "sales.csv", "out": "totals.json"}, call_id="c2")],
            [ToolCall("done", {"answer": "totals.json is written"}, call_id="c3")],
        ]
    )


class OutcomeCollector:
    """Reads what the run left in its workspace (every JSON file) into the run's artifacts,
    so graders judge the outcome rather than the tool's own report of it."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> None:
        for path in sorted(self.workspace.glob("*.json")):
            try:
                value = json.loads(path.read_text())
            except ValueError as exc:
                value = {"unreadable": str(exc)}
            record_artifact(state, path.name, value)


def fresh_workspace(root: Path, name: str) -> Path:
    workspace = root / name
    workspace.mkdir(parents=True)
    (workspace / "sales.csv").write_text(SALES)
    return workspace


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capture(work: Path, tools_module: ModuleType) -> tuple[Path, bool]:
    print("== 1. capture: run the agent, record it, grade what it left behind")
    workspace = fresh_workspace(work, "capture")
    sink = ProvenanceSink(work / "traces")
    grader = EvalHook(GRADER)
    hooks = [OutcomeCollector(workspace), grader, sink]  # the sink last: the trace keeps both
    loop = composable_loop(
        scripted_model(), tools=tools_module.build_tools(workspace), task=TASK, hooks=hooks
    )
    for step in loop:
        print("  ", step.pretty())
    assert loop.result is not None and grader.report is not None
    print(f"   stop: {loop.result.stop_reason}")
    print("  ", str(grader.report).replace("\n", "\n   "))
    return sink.path_of(loop.state.run_id), grader.report.passed


def fix(work: Path) -> ModuleType:
    print("== 2. fix: change one line of the tool")
    source = (HERE / "tools.py").read_text()
    if source.count(BUGGY_LINE) != 1:
        raise SystemExit(f"tools.py no longer has the line {BUGGY_LINE.strip()!r} to fix")
    fixed = source.replace(BUGGY_LINE, FIXED_LINE)
    path = work / "fixed_tools.py"
    path.write_text(fixed)
    diff = difflib.unified_diff(
        source.splitlines(keepends=True), fixed.splitlines(keepends=True), "tools.py", "tools.py (fixed)", n=1
    )
    print("   " + "   ".join(diff), end="")
    return load_module(path, "regression_demo_fixed_tools")


def replay(work: Path, run_dir: Path, tools_module: ModuleType) -> bool:
    print("== 3. replay: the recorded model replies against the fixed tool, in a fresh workspace")
    workspace = fresh_workspace(work, "replay")
    grader = EvalHook(GRADER)
    hooks = [OutcomeCollector(workspace), grader]
    run = replay_loop(run_dir, tools=tools_module.build_tools(workspace), hooks=hooks)
    for step in run:
        print("  ", step.pretty())
    report = run.report()
    first = report.divergence
    print(f"   replay: {'identical to the recording' if first is None else f'first difference at {first}'}")
    if first is not None and first.before is not None:
        print(f"     recorded: {first.before}\n     replayed: {first.after}")
    assert grader.report is not None
    print("  ", str(grader.report).replace("\n", "\n   "))
    return grader.report.passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="From a failed run to a regression test.")
    parser.add_argument("--workdir", help="where the workspaces and traces go (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="looplet-regression-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        buggy = load_module(HERE / "tools.py", "regression_demo_tools")
        run_dir, passed_before = capture(work, buggy)
        fixed = fix(work)
        passed_after = replay(work, run_dir, fixed)
    holds = not passed_before and passed_after
    print(f"== the required eval failed before the fix and passes after it: {'yes' if holds else 'NO'}")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
