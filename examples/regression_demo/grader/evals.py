"""The grader's evals. The expected totals live next to this file, where the agent cannot see them."""

from __future__ import annotations

import json
from pathlib import Path

from looplet.evals import EvalContext

EXPECTED = json.loads((Path(__file__).parent / "expected.json").read_text())


def eval_totals_match(ctx: EvalContext) -> bool | str:
    """What the tool left in the workspace, not what it said it did."""
    found = ctx.artifacts.get("totals.json")
    if found is None:
        return "the run left no totals.json in its workspace"
    if found != EXPECTED:
        return f"totals.json holds {found}, expected {EXPECTED}"
    return True


def eval_finished(ctx: EvalContext) -> bool | str:
    return ctx.stop_reason == "done" or f"the run stopped with {ctx.stop_reason}"
