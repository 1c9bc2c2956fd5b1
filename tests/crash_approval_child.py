"""One session of a refund run paused for approval: the child program of ``test_crash_approval.py``.

Usage: ``python crash_approval_child.py JOB`` where JOB is a JSON object with
``dir`` (the `FileCheckpointStore` directory), ``log`` (the side-effect log),
``scenario`` (see `SCENARIOS`) and ``role``:

- ``"run"``: start the run, or continue the one saved in ``dir`` (``loop``:
  ``"sync"`` or ``"async"``; ``idempotent``: how ``refund`` is registered;
  ``kill``: None, or ``{"point": POINT, "n": N}`` with a point of
  `crash_child.POINTS`: die the N-th time this session reaches it). A gate
  asks before every ``refund``; a run whose record ended done is passed to the
  loop anyway, to see it refused.
- ``"decide"``: the person deciding, in a process with no model and no tools:
  take the run's lock, load it, decide each of ``decisions`` (``{"call_id",
  "decision": "approve" | "reject", "args": edited args or None, "reason"}``,
  bound to the ``args_hash`` the pending call shows), save, release. ``kill``:
  None, ``"before_save"`` (die after the decisions are taken in memory, lock
  held, nothing saved) or ``"after_save"`` (die right after the save, before
  the lock is released or anything continues the run).

Every tool body appends ``{"call_id", "tool", "args", "pid"}`` to the log and
fsyncs it before it returns (``refund`` then dies there if the kill is
``in_tool``). Stdout has one flushed JSON object per line: ``{"asked": call_id,
"args": ...}`` when the gate is asked, ``{"llm": turn}`` per model call,
``{"step": ...}`` per yielded step, ``{"pending": [...]}`` and ``{"decided":
[...]}`` from a decider, ``{"killing": ...}`` just before a kill,
``{"refused": message}`` when the loop refused to continue a finished run, and
``{"end": {...}}`` when a run session ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from crash_child import (
    AfterJournal,
    AsyncAfterJournal,
    AsyncBeforeBody,
    BeforeBody,
    Killer,
    SideEffects,
    TearingStore,
    emit,
)

from looplet import (
    Ask,
    BaseToolRegistry,
    CheckpointHook,
    ConfigError,
    DefaultState,
    FileCheckpointStore,
    LLMRequest,
    LLMResponse,
    ToolCall,
    ToolContext,
    Usage,
    async_composable_loop,
    composable_loop,
    load_run,
)

RUN = "refundrun"
TASK = "refund what the customer is owed"
#: The model's first turn per scenario; its second turn is ``done`` (call id ``c1_done``).
SCENARIOS: dict[str, list[ToolCall]] = {
    # a lookup that runs at once and a refund that waits for a person
    "single": [
        ToolCall("look_up", {"order": 17}, call_id="c0_look"),
        ToolCall("refund", {"order": 17, "amount": 40}, call_id="c0_refund"),
    ],
    # two refunds paused in one turn, decided separately
    "pair": [
        ToolCall("refund", {"order": 17, "amount": 40}, call_id="c0_a"),
        ToolCall("refund", {"order": 18, "amount": 15}, call_id="c0_b"),
    ],
}


def answer(messages: Any) -> str:
    """What the model says at the end: per refund call, the amount refunded or ``error``."""
    parts = []
    for m in messages:
        if m.role == "tool" and m.name == "refund":
            parts.append(f"{m.call_id}={'error' if m.error else json.loads(m.content)['refunded']}")
    return " ".join(parts)


class ScriptedModel:
    """Replies by the number of model replies already in the history, so any session gets the same."""

    def __init__(self, scenario: str) -> None:
        self.first = SCENARIOS[scenario]

    def complete(self, request: LLMRequest) -> LLMResponse:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        emit({"llm": turn})
        usage = Usage(input_tokens=100 + turn, output_tokens=10 + turn, cost=0.001 * (turn + 1))
        calls = (
            list(self.first)
            if turn == 0
            else [ToolCall("done", {"answer": answer(request.messages)}, call_id=f"c{turn}_done")]
        )
        return LLMResponse(tool_calls=calls, usage=usage, model="scripted", request_id=f"req-{turn}")


class AskBeforeRefund:
    """The gate: every refund waits for a person; each time it is asked is printed."""

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Ask | None:
        if tool_call.tool != "refund":
            return None
        emit({"asked": tool_call.call_id, "args": tool_call.args})
        return Ask(f"refund {tool_call.args['amount']} on order {tool_call.args['order']}?")


def build_tools(effects: SideEffects, killer: Killer, *, idempotent: bool) -> BaseToolRegistry:
    """``look_up``, ``refund`` (registered idempotent or not) and ``done``; every body logs its run."""
    tools = BaseToolRegistry()

    def look_up(order: int, ctx: ToolContext) -> dict[str, int]:
        """Look up an order.

        Args:
            order: the order number.
        """
        effects.record(ctx.call_id, "look_up", {"order": order})
        return {"order": order, "total": 40}

    def refund(order: int, amount: int, ctx: ToolContext) -> dict[str, int]:
        """Refund an amount on an order.

        Args:
            order: the order number.
            amount: how much to refund.
        """
        effects.record(ctx.call_id, "refund", {"order": order, "amount": amount})
        killer.reach("in_tool", ctx.call_id)
        return {"order": order, "refunded": amount}

    def done(answer: str, ctx: ToolContext) -> dict[str, str]:
        """Finish with the answer.

        Args:
            answer: the final answer.
        """
        effects.record(ctx.call_id, "done", {"answer": answer})
        return {"answer": answer}

    tools.register(look_up)
    tools.register(refund, idempotent=idempotent)
    tools.register(done, done=True)
    return tools


# -- the person deciding ----------------------------------------------------------------------------


def decide(job: dict[str, Any]) -> int:
    """Lock, load, decide, save, release: the documented way to decide on a saved run."""
    store = FileCheckpointStore(job["dir"])
    kill = job.get("kill")
    with store.lock(RUN):
        paused = load_run(store, RUN)
        shown = {p.call_id: p for p in paused.pending}
        emit({"pending": [p.to_dict() for p in paused.pending]})
        for d in job["decisions"]:
            seen = shown[d["call_id"]].args_hash  # what the person was shown
            if d["decision"] == "approve":
                paused.approve(d["call_id"], d.get("args"), args_hash=seen)
            else:
                paused.reject(d["call_id"], d.get("reason", "no"), args_hash=seen)
        emit({"decided": [p.to_dict() for p in paused.pending]})
        if kill == "before_save":
            _die("before_save")
        store.save(paused.run_id, paused.to_dict())
        if kill == "after_save":
            _die("after_save")
    return 0


def _die(point: str) -> None:
    emit({"killing": point, "call_id": "", "n": 1, "write": ""})
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(70)  # not reached


# -- a run session ------------------------------------------------------------------------------------


def run(job: dict[str, Any]) -> int:
    """Start or continue the run once, dying where the job says; 0 when it ends (or is refused)."""
    kill = job.get("kill")
    killer = Killer(kill)
    store = TearingStore(job["dir"], killer)
    is_async = job["loop"] == "async"
    tools = build_tools(SideEffects(job["log"]), killer, idempotent=job["idempotent"])
    gate = AskBeforeRefund()
    options: dict[str, Any] = {"tools": tools, "max_steps": 20}
    saved = RUN in store.list_runs()
    if kill is None:  # the documented call: the loop adds the CheckpointHook and loads the run
        options.update(store=store, hooks=[gate])
        if saved:
            options["resume"] = RUN
        else:
            options["state"] = DefaultState(run_id=RUN, task=TASK)
    else:  # the killing interceptors sit on either side of the checkpoint one
        after = AsyncAfterJournal(killer) if is_async else AfterJournal(killer)
        before = AsyncBeforeBody(killer) if is_async else BeforeBody(killer)
        options["state"] = load_run(store, RUN) if saved else DefaultState(run_id=RUN, task=TASK)
        options["hooks"] = [after, CheckpointHook(store), before, gate]
    model = ScriptedModel(job["scenario"])
    try:
        result = (
            asyncio.run(_drive_async(model, options, killer)) if is_async else _drive(model, options, killer)
        )
    except ConfigError as exc:
        emit({"refused": str(exc)})
        return 0
    emit({"end": {"stop_reason": result.stop_reason, "final_answer": result.final_answer}})
    return 0


def _yielded(step: Any, killer: Killer) -> None:
    emit({"step": step.to_dict()})
    killer.reach("after_step_yielded", step.tool_call.call_id)


def _drive(model: ScriptedModel, options: dict[str, Any], killer: Killer) -> Any:
    loop = composable_loop(model, **options)
    for step in loop:
        _yielded(step, killer)
    return loop.result


async def _drive_async(model: ScriptedModel, options: dict[str, Any], killer: Killer) -> Any:
    loop = async_composable_loop(model, **options)
    async for step in loop:
        _yielded(step, killer)
    return loop.result


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    sys.exit(decide(job) if job["role"] == "decide" else run(job))
