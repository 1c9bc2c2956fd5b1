"""A scripted agent run as a DBOS workflow: the child process of ``test_dbos_driver.py``.

Usage: ``python dbos_child.py ACTION DB_URL RUN_ID`` with the environment
``LOOPLET_SIDE`` (the side-effect file) and ``LOOPLET_SCENARIO``:

- ``run``: start the durable run (`durable_run`) and wait for it to end;
- ``recover``: launch DBOS on the database (which recovers the runs a dead
  process left) and wait for the run to end.

Each prints ``{"outcome": ...}`` on one line when the run ends.

Scenarios (the model is stateless: it picks its reply from the history, so a
recovered run gets the replies the first process got):

- ``kill``: ``note(a)``, ``note(b)``, ``slow_note(c)``, ``note(d)``, done.
  ``slow_note`` writes ``start c`` and then waits for the test to SIGKILL the
  process (``LOOPLET_BLOCK`` names a file; while it exists the tool waits).
  ``slow_note`` is idempotent when ``LOOPLET_IDEMPOTENT=1``.
- ``approval``: ``note(a)`` and ``refund(40)`` in one turn, then done; a hook
  asks before every refund.
- ``approval_then_kill``: ``refund(40)`` (asked about), then ``slow_note(c)``,
  which blocks as in ``kill``, then done.

Every tool body appends one line to the side file: the ground truth of what ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from looplet import Ask, BaseToolRegistry, FunctionBackend, LoopConfig, ToolCall, register_done_tool
from looplet.presets import AgentPreset


def _append(line: str) -> None:
    with open(os.environ["LOOPLET_SIDE"], "a") as side:
        side.write(line + "\n")
        side.flush()
        os.fsync(side.fileno())


def _tools() -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def note(text: str) -> dict[str, Any]:
        """Write a note."""
        _append(text)
        return {"noted": text}

    @tools.tool(idempotent=os.environ.get("LOOPLET_IDEMPOTENT") == "1")
    def slow_note(text: str) -> dict[str, Any]:
        """Write a note, slowly."""
        _append(f"start {text}")
        block = os.environ.get("LOOPLET_BLOCK", "")
        while block and os.path.exists(block):
            time.sleep(0.02)  # the test kills the process here
        return {"noted": text}

    @tools.tool
    def refund(amount: int) -> dict[str, Any]:
        """Refund an amount."""
        _append(f"refund {amount}")
        return {"refunded": amount}

    register_done_tool(tools)
    return tools


SCRIPTS: dict[str, list[Any]] = {
    "kill": [
        ToolCall("note", {"text": "a"}, call_id="k1"),
        ToolCall("note", {"text": "b"}, call_id="k2"),
        ToolCall("slow_note", {"text": "c"}, call_id="k3"),
        ToolCall("note", {"text": "d"}, call_id="k4"),
        ToolCall("done", {"answer": "noted"}, call_id="k5"),
    ],
    "approval": [
        [ToolCall("note", {"text": "a"}, call_id="c1"), ToolCall("refund", {"amount": 40}, call_id="c2")],
        ToolCall("done", {"answer": "refunded"}, call_id="c3"),
    ],
    "approval_then_kill": [
        ToolCall("refund", {"amount": 40}, call_id="c2"),
        ToolCall("slow_note", {"text": "c"}, call_id="c4"),
        ToolCall("done", {"answer": "refunded"}, call_id="c5"),
    ],
}


class AskBeforeRefund:
    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        if tool_call.tool == "refund":
            return Ask(f"refund {tool_call.args['amount']}?")
        return None


def agent() -> tuple[AgentPreset, Any]:
    """The factory `durable_run` names as ``dbos_child:agent``."""
    script = SCRIPTS[os.environ["LOOPLET_SCENARIO"]]

    def reply(request: Any) -> Any:
        return script[sum(1 for m in request.messages if m.role == "assistant")]

    preset = AgentPreset(config=LoopConfig(max_steps=10), tools=_tools(), hooks=[AskBeforeRefund()])
    return preset, FunctionBackend(reply)


def main(action: str, db_url: str, run_id: str) -> None:
    from looplet.dbos_runs import durable_run, start_dbos

    if action == "run":
        outcome = durable_run("dbos_child:agent", "take notes", db_url=db_url, run_id=run_id)
    else:
        start_dbos(db_url)
        from dbos import DBOS

        outcome = DBOS.retrieve_workflow(run_id).get_result()
    print(json.dumps({"outcome": outcome}), flush=True)
    os._exit(0)  # skip DBOS's shutdown: the test has what it needs


if __name__ == "__main__":
    main(*sys.argv[1:4])
