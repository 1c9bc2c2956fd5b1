"""A scripted agent that SIGKILLs itself at a named point: the child process of ``test_crash_resume.py``.

Usage: ``python crash_child.py JOB`` where JOB is a JSON object:

- ``dir``: the `FileCheckpointStore` directory; ``log``: the side-effect log;
- ``loop``: ``"sync"`` or ``"async"``; ``idempotent``: how the tools are registered;
- ``scenario``: ``"serial"`` (three ``charge`` calls one turn each, then ``done``),
  ``"batch"`` (two concurrent-safe ``fetch`` calls in one turn, then ``done``) or
  ``"wide"`` (four of them);
- optional ``workers``: the size of the async loop's default executor; optional
  ``watchdog_s``: after that long the session prints ``{"hung": true}`` and exits 3
  (a deadlock shows as that, not as a test stuck until its timeout);
- ``kill``: None (run to the end) or ``{"point": POINT, "n": N}``: die the N-th
  time this session reaches POINT (see `POINTS`); in the batch scenario
  ``{"point": "in_tool", "sibling": "done" | "running"}`` kills inside ``fetch(b)``
  once the other call's result is journaled, or while it is still running.

A session continues the run saved in ``dir`` if there is one, else starts it.
Every tool body appends ``{"call_id", "tool", "args", "pid"}`` to the log and
fsyncs it before returning: the log is the ground truth of side effects. The
model is stateless (it picks its reply from the history), so a continued run
gets the replies the uninterrupted run got.

Stdout has one JSON object per line, each flushed: ``{"step": ...}`` for every
step the session yielded (before the next is asked for), ``{"killing": POINT,
"call_id": ...}`` just before the kill, ``{"finished": true}`` when the saved
run had already ended done, and ``{"end": {...}}`` when the session ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from looplet import (
    BaseToolRegistry,
    CheckpointHook,
    DefaultState,
    FileCheckpointStore,
    LLMRequest,
    LLMResponse,
    Step,
    ToolCall,
    ToolContext,
    Usage,
    async_composable_loop,
    composable_loop,
    load_run,
)
from looplet.tools.registry import PreparedCall

RUN = "crashrun"
TASK = "charge three orders, then report the total"
#: The named points a session can die at.
POINTS = (
    "after_intent",  # the intent is saved; the tool body has not started
    "in_tool",  # the tool body made its side effect and has not returned
    "during_journal_append",  # half of a tool result's journal line is written
    "after_result",  # the result is journaled; the step is not recorded or yielded
    "during_checkpoint_write",  # half of any durable write: a whole save's temp file or a journal line
    "before_checkpoint_rename",  # a whole save's temp file is complete and synced, not renamed
    "after_step_yielded",  # the step was yielded (and printed)
)
ORDERS = (1, 2, 3)  # the serial scenario charges these, one per turn
AMOUNTS = {"a": 5, "b": 7, "c": 11, "d": 13}  # what ``fetch`` returns by key
#: The scenarios with a batch: the keys fetched at once in the first turn.
BATCHES = {"batch": ("a", "b"), "wide": ("a", "b", "c", "d")}

_print_lock = threading.Lock()


def spawn(program: str, job: dict[str, Any], timeout: float) -> tuple[int, int, str, str]:
    """The parent's side: run `program` (a child like this one) with `job`, with the repo's
    src and tests on its path; returns (pid, exit code, stdout, stderr). A child still
    running after `timeout` seconds is killed and the timeout raised."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here.parent / "src"), str(here)]))
    child = subprocess.Popen(
        [sys.executable, program, json.dumps(job)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    return child.pid, child.returncode, out, err


def emit(line: dict[str, Any]) -> None:
    """Print one JSON line and flush it, so the parent has it even if we die right after."""
    with _print_lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


class Killer:
    """Counts the session's arrivals at each named point and dies at the chosen one."""

    def __init__(self, kill: dict[str, Any] | None) -> None:
        kill = kill or {}
        self.point: str | None = kill.get("point")
        self.n: int = int(kill.get("n", 1))
        self.seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, point: str) -> bool:
        """Count one arrival at `point`; True when this is the one to die at."""
        with self._lock:
            self.seen[point] = self.seen.get(point, 0) + 1
            return point == self.point and self.seen[point] == self.n

    def reach(self, point: str, call_id: str = "") -> None:
        if self.due(point):
            self.die(point, call_id)

    def die(self, point: str, call_id: str = "", write: str = "") -> None:
        """Die now; `write` names what a torn write was writing (``save`` or a journal entry's type)."""
        emit({"killing": point, "call_id": call_id, "n": self.n, "write": write})
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(70)  # not reached: SIGKILL cannot be caught; the parent would see 70, not -9


class SideEffects:
    """The ground truth of what tool bodies did: one fsynced line per body run."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, call_id: str, tool: str, args: dict[str, Any]) -> None:
        line = json.dumps({"call_id": call_id, "tool": tool, "args": args, "pid": os.getpid()})
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


# -- the store, torn on purpose ----------------------------------------------------------------


class TearingStore(FileCheckpointStore):
    """A `FileCheckpointStore` whose N-th write of a kind dies half-way through.

    The store has no seam of its own, so the ``os.write`` (or ``os.replace``)
    inside the chosen save or append is swapped for one that dies; the store's
    code runs unchanged up to that instant. Whether the checkpoint hook writes
    a step as a whole save or as a journal line, ``during_checkpoint_write``
    counts every durable write, in order.
    """

    def __init__(self, directory: str, killer: Killer) -> None:
        super().__init__(directory)
        self.killer = killer

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        if self.killer.due("during_checkpoint_write"):
            _tear_next_write(self.killer, "during_checkpoint_write", "", "save")
        if self.killer.due("before_checkpoint_rename"):
            _die_at_rename(self.killer)
        super().save(run_id, record)

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        kind, call_id = str(entry.get("type", "")), str(entry.get("call_id", ""))
        if self.killer.due("during_checkpoint_write"):
            _tear_next_write(self.killer, "during_checkpoint_write", call_id, kind)
        if kind == "result" and self.killer.due("during_journal_append"):
            _tear_next_write(self.killer, "during_journal_append", call_id, kind)
        super().append(run_id, entry)


def _tear_next_write(killer: Killer, point: str, call_id: str, kind: str) -> None:
    """Make the next ``os.write`` write half its bytes, then die."""
    real_write = os.write

    def torn_write(fd: int, data: Any) -> int:
        data = bytes(data)
        real_write(fd, data[: len(data) // 2])
        killer.die(point, call_id, kind)
        return 0  # not reached

    os.write = torn_write


def _die_at_rename(killer: Killer) -> None:
    """Make the next ``os.replace`` (the temp file, complete and synced, over the checkpoint) die."""

    def no_rename(src: Any, dst: Any, **kwargs: Any) -> None:
        killer.die("before_checkpoint_rename", "", "save")

    os.replace = no_rename


# -- the interceptors that kill -----------------------------------------------------------------


class BeforeBody:
    """Inside `CheckpointHook`: the intent is saved when this runs; dies before the body."""

    def __init__(self, killer: Killer) -> None:
        self.killer = killer

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        self.killer.reach("after_intent", call.call.call_id)
        return proceed()


class AfterJournal:
    """Outside `CheckpointHook`: the result is journaled when ``proceed`` returns; dies there."""

    def __init__(self, killer: Killer) -> None:
        self.killer = killer
        self.journaled: dict[str, threading.Event] = {key: threading.Event() for key in AMOUNTS}

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        result = proceed()
        self.returned(call)
        return result

    def returned(self, call: PreparedCall) -> None:
        key = call.args.get("key")
        if key in self.journaled:
            self.journaled[key].set()
        self.killer.reach("after_result", call.call.call_id)


class AsyncBeforeBody(BeforeBody):
    """`BeforeBody` for the async loop, where a plain interceptor would hold a worker thread."""

    async def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        self.killer.reach("after_intent", call.call.call_id)
        return await proceed()


class AsyncAfterJournal(AfterJournal):
    """`AfterJournal` for the async loop."""

    async def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        result = await proceed()
        self.returned(call)
        return result


# -- the agent ------------------------------------------------------------------------------------


def summary(messages: Any) -> str:
    """The answer the model gives: the amounts it was told about, and how many calls failed."""
    total = errors = 0
    for m in messages:
        if m.role != "tool" or m.name not in ("charge", "fetch"):
            continue
        if m.error:
            errors += 1
        else:
            total += json.loads(m.content)["amount"]
    return f"total={total} errors={errors}"


class ScriptedModel:
    """Replies by the number of model replies already in the history (so a resumed run gets the same)."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario

    def complete(self, request: LLMRequest) -> LLMResponse:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        usage = Usage(input_tokens=100 + turn, output_tokens=10 + turn, cost=0.001 * (turn + 1))
        calls = self._calls(turn, request)
        return LLMResponse(tool_calls=calls, usage=usage, model="scripted", request_id=f"req-{turn}")

    def _calls(self, turn: int, request: LLMRequest) -> list[ToolCall]:
        if self.scenario in BATCHES and turn == 0:
            return [ToolCall("fetch", {"key": key}, call_id=f"c0_{key}") for key in BATCHES[self.scenario]]
        if self.scenario == "serial" and turn < len(ORDERS):
            return [ToolCall("charge", {"order": ORDERS[turn]}, call_id=f"c{turn}")]
        return [ToolCall("done", {"answer": summary(request.messages)}, call_id=f"c{turn}_done")]


class Batch:
    """How the two ``fetch`` bodies of the killing session meet: both run at once, then one dies."""

    def __init__(self, kill: dict[str, Any] | None, killer: Killer, after: AfterJournal) -> None:
        self.sibling = (kill or {}).get("sibling")
        self.killer = killer
        self.after = after
        self.overlap = threading.Barrier(2) if self.sibling else None
        self.hold = threading.Event()  # never set: the sibling that is "still running" waits on it

    def meet(self, key: str, call_id: str) -> None:
        if self.overlap is None:
            return
        self.overlap.wait(timeout=20)  # BrokenBarrierError (a failed tool) if the calls ran one by one
        if key == "a":
            if self.sibling == "running":
                self.hold.wait(timeout=30)
            return
        if self.sibling == "done":
            self.after.journaled["a"].wait(timeout=20)
        self.killer.reach("in_tool", call_id)


def build_tools(effects: SideEffects, killer: Killer, batch: Batch, *, idempotent: bool) -> BaseToolRegistry:
    """``charge`` and ``fetch`` (registered idempotent or not) and ``done``; every body logs its run."""
    tools = BaseToolRegistry()

    def charge(order: int, ctx: ToolContext) -> dict[str, int]:
        """Charge an order.

        Args:
            order: the order number.
        """
        effects.record(ctx.call_id, "charge", {"order": order})
        killer.reach("in_tool", ctx.call_id)
        return {"order": order, "amount": 10 * order}

    def fetch(key: str, ctx: ToolContext) -> dict[str, Any]:
        """Fetch an amount.

        Args:
            key: which one.
        """
        effects.record(ctx.call_id, "fetch", {"key": key})
        batch.meet(key, ctx.call_id)
        return {"key": key, "amount": AMOUNTS[key]}

    def done(answer: str, ctx: ToolContext) -> dict[str, str]:
        """Finish with the answer.

        Args:
            answer: the final answer.
        """
        effects.record(ctx.call_id, "done", {"answer": answer})
        return {"answer": answer}

    tools.register(charge, idempotent=idempotent)
    tools.register(fetch, idempotent=idempotent, concurrent_safe=True)
    tools.register(done, done=True)
    return tools


# -- a session --------------------------------------------------------------------------------------


def session(job: dict[str, Any]) -> int:
    """Run (or continue) the saved run once, dying where the job says; 0 when it ends."""
    if job.get("watchdog_s"):
        watchdog = threading.Timer(job["watchdog_s"], _hung)
        watchdog.daemon = True
        watchdog.start()
    kill = job.get("kill")
    killer = Killer(kill)
    store = TearingStore(job["dir"], killer)
    is_async = job["loop"] == "async"
    after = AsyncAfterJournal(killer) if is_async else AfterJournal(killer)
    before = AsyncBeforeBody(killer) if is_async else BeforeBody(killer)
    tools = build_tools(
        SideEffects(job["log"]), killer, Batch(kill, killer, after), idempotent=job["idempotent"]
    )
    options: dict[str, Any] = {"tools": tools, "max_steps": 20}
    saved = RUN in store.list_runs()
    if saved and load_run(store, RUN).stop_reason == "done":
        emit({"finished": True})
        return 0
    if kill is None:  # the documented call: the loop adds the CheckpointHook and loads the run
        options["store"] = store
        if saved:
            options["resume"] = RUN
        else:
            options["state"] = DefaultState(run_id=RUN, task=TASK)
    else:  # the killing interceptors sit on either side of the checkpoint one
        options["state"] = load_run(store, RUN) if saved else DefaultState(run_id=RUN, task=TASK)
        options["hooks"] = [after, CheckpointHook(store), before]
    model = ScriptedModel(job["scenario"])
    if not is_async:
        loop = composable_loop(model, **options)
        for step in loop:
            _yielded(step, killer)
        result = loop.result
    else:
        result = asyncio.run(_drive_async(model, options, killer, job.get("workers")))
    assert result is not None
    end = {"stop_reason": result.stop_reason, "final_answer": result.final_answer, "seen": killer.seen}
    emit({"end": end})
    return 0


def _hung() -> None:
    emit({"hung": True})
    os._exit(3)


def _yielded(step: Step, killer: Killer) -> None:
    emit({"step": step.to_dict()})
    killer.reach("after_step_yielded", step.tool_call.call_id)


async def _drive_async(
    model: ScriptedModel, options: dict[str, Any], killer: Killer, workers: int | None
) -> Any:
    if workers is not None:  # the executor asyncio.to_thread uses (by default min(32, cores + 4) threads)
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers))
    loop = async_composable_loop(model, **options)
    async for step in loop:
        _yielded(step, killer)
    return loop.result


if __name__ == "__main__":
    sys.exit(session(json.loads(sys.argv[1])))
