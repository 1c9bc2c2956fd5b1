"""How much looplet itself costs: cold import, per-step overhead, memory, prompt size.

    python benchmarks/bench_overhead.py            # full table (about a minute)
    python benchmarks/bench_overhead.py --quick    # fewer repeats

Every figure is a median over several runs, measured in this one process
(or in fresh child processes for import time and peak RSS), next to a
baseline measured the same way in the same run:

- cold import: ``python -c "import looplet"`` vs ``python -c "pass"``, each
  in a fresh process with bytecode already compiled;
- per-step overhead: a whole run with an instant scripted model and a no-op
  tool, divided by the number of steps, at N = 10, 100 and 1000 steps, in
  native-message mode (the backend returns ready tool calls) and text mode
  (``generate(prompt) -> str``, so the loop renders prompts and parses JSON);
  the baselines are a minimal hand-written loop doing the same work, a
  minimal agent loop (plain dicts), and that agent loop keeping looplet's
  records (the "records floor": what the record alone costs);
- peak RSS of a fresh process that runs N = 1000 steps, vs one that only
  imports looplet;
- the size of what the backend receives at the last step.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

STEP_COUNTS = (10, 100, 1000)


# -- the workloads ------------------------------------------------------------------


def echo_tools() -> Any:
    """A registry of one no-op tool, `echo`."""
    from looplet import BaseToolRegistry

    tools = BaseToolRegistry()

    @tools.tool
    def echo(text: str, n: int = 0) -> dict[str, Any]:
        """Return the text."""
        return {"text": text, "n": n}

    return tools


class InstantNative:
    """A backend that answers at once with a ready tool call (native-message mode).

    `reply` adds fields to every reply (`usage`, `model`), for what reads them (tracing, metrics).
    """

    def __init__(self, **reply: Any) -> None:
        from looplet import LLMResponse, ToolCall

        self._response = LLMResponse
        self._call = ToolCall
        self._reply = reply
        self.last_request: Any = None
        self.i = 0

    @property
    def last_bytes(self) -> int:
        return _request_bytes(self.last_request)

    def complete(self, request: Any) -> Any:
        self.i += 1
        self.last_request = request
        call = self._call("echo", {"text": "hello world", "n": self.i})
        return self._response(tool_calls=[call], **self._reply)


class InstantText:
    """A backend with only ``generate(prompt) -> str`` (text mode)."""

    def __init__(self) -> None:
        self.last_prompt = ""
        self.i = 0

    @property
    def last_bytes(self) -> int:
        return len(self.last_prompt.encode())

    def generate(self, prompt: str) -> str:
        self.i += 1
        self.last_prompt = prompt
        return json.dumps({"tool": "echo", "args": {"text": "hello world", "n": self.i}})


def _request_bytes(request: Any) -> int:
    size = len(request.system.encode()) + len(json.dumps(list(request.tools)).encode())
    for message in request.messages:
        size += len(message.content.encode())
        for call in message.tool_calls:
            size += len(json.dumps(call.args).encode()) + len(call.tool)
    return size


def run_looplet(
    n: int, mode: str, store: Any = None, hooks: Sequence[Any] = (), llm: Any = None
) -> tuple[float, int]:
    """Seconds for one run of `n` steps, and the bytes the backend got at the last step.

    `llm`, when given, is the backend instead of the instant one of `mode`.
    """
    from looplet import composable_loop

    llm = llm or (InstantNative() if mode == "native" else InstantText())
    tools = echo_tools()
    extra: dict[str, Any] = {}  # older looplets (baselines) have no store=
    if store is not None:
        extra["store"] = store
    if hooks:
        extra["hooks"] = list(hooks)
    gc.collect()
    started = time.perf_counter()
    count = 0
    for _ in composable_loop(llm, tools=tools, task="echo things", max_steps=n, **extra):
        count += 1
    elapsed = time.perf_counter() - started
    assert count == n, (count, n)
    return elapsed, llm.last_bytes


def run_minimal(n: int) -> float:
    """The floor: a hand-written loop with the same calls, dict dispatch and a message list."""

    def echo(text: str, n: int = 0) -> dict[str, Any]:
        return {"text": text, "n": n}

    table = {"echo": echo}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "echo things"}]
    gc.collect()
    started = time.perf_counter()
    for i in range(n):
        call = {"tool": "echo", "args": {"text": "hello world", "n": i}}
        messages.append({"role": "assistant", "tool_calls": [call]})
        result = table[call["tool"]](**call["args"])
        messages.append({"role": "tool", "content": json.dumps(result)})
    return time.perf_counter() - started


def run_agent_loop(n: int) -> float:
    """A minimal hand-written *agent* loop doing what any agent loop must per step.

    It calls the same instant backend looplet calls, with a plain dict as its
    request (none of looplet's own records); looks the tool up; checks the arguments are a dict; times
    the call; encodes the result as JSON; appends the two messages; keeps a
    step record; and checks the budget and the done tool. This is the loop
    the issue's "at most 4x a minimal hand-written agent loop" compares with.
    """
    llm = InstantNative()

    def echo(text: str, n: int = 0) -> dict[str, Any]:
        return {"text": text, "n": n}

    table = {"echo": echo}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "echo things"}]
    steps: list[tuple[str, dict[str, Any], Any, float]] = []
    gc.collect()
    started = time.perf_counter()
    while len(steps) < n:
        response = llm.complete({"messages": messages, "system": "", "tools": ()})
        for call in response.tool_calls:
            fn = table.get(call.tool)
            if fn is None or not isinstance(call.args, dict):
                messages.append({"role": "tool", "content": "error: unknown tool or bad args"})
                continue
            t0 = time.perf_counter()
            result = fn(**call.args)
            took = time.perf_counter() - t0
            messages.append({"role": "assistant", "tool_calls": [(call.tool, call.args)]})
            messages.append({"role": "tool", "content": json.dumps(result)})
            steps.append((call.tool, call.args, result, took))
            if call.tool == "done" or len(steps) >= n:
                break
    return time.perf_counter() - started


#: What `run_records_floor` can leave out, one at a time, to show what each part of the record costs.
FLOOR_PARTS = ("screening", "request", "validation", "records", "call ids")


def run_records_floor(n: int, without: str = "") -> float:
    """The agent loop again, but keeping looplet's records as the contract requires them.

    Per step: an `LLMRequest` over the history's view, the reply's call given a
    run-unique id, the assistant and tool `Message`s appended to a `History`
    (which masks secret env values as they enter: RELIABILITY I2), the
    arguments validated by the registry (`prepare`), a `ToolResult` and a
    `Step`. No hooks, budget, journal, cancellation or deadline: what any loop
    that keeps this record pays before it does anything else. The gap from it
    to looplet is the engine; the gap from the agent loop to it is the record.
    `without` (one of `FLOOR_PARTS`) leaves that part out, to measure it.
    """
    from looplet import History, LLMRequest, Message, Step, ToolCall, ToolResult

    llm = InstantNative()
    tools = echo_tools()
    history = History([Message("user", "echo things")])
    # leaving the screening out: append to the history's list, past its secret screen
    append = history._messages.append if without == "screening" else history.append
    schemas = tools.schemas()
    steps: list[Any] = []
    turn = 0
    gc.collect()
    started = time.perf_counter()
    while len(steps) < n:
        request: Any = (
            {"messages": history.messages}
            if without == "request"
            else LLMRequest(messages=history.messages, tools=schemas, step=len(steps) + 1)
        )
        t0 = time.perf_counter()
        response = llm.complete(request)
        llm_ms = (time.perf_counter() - t0) * 1000
        turn += 1
        calls = (
            list(response.tool_calls)
            if without == "call ids"
            else [
                ToolCall(c.tool, c.args, c.reasoning, f"call_{turn}_{i}")
                for i, c in enumerate(response.tool_calls, 1)
            ]
        )
        append(Message("assistant", response.text, tuple(calls)))
        for call in calls:
            if without == "validation":
                fn, kwargs = tools.get(call.tool).fn, call.args  # type: ignore[union-attr]
            else:
                prepared = tools.prepare(call)
                if isinstance(prepared, ToolResult):
                    raise AssertionError(prepared.error)
                fn, kwargs = prepared.spec.fn, prepared.kwargs()
            t1 = time.perf_counter()
            value = fn(**kwargs)
            took = (time.perf_counter() - t1) * 1000
            if without == "records":
                steps.append((call, value, took))
            else:
                result = ToolResult(call.tool, data=value, duration_ms=took, call_id=call.call_id)
                steps.append(Step(len(steps) + 1, call, result, turn, response.usage, llm_ms, time.time()))
            append(Message("tool", json.dumps(value), call_id=call.call_id, name=call.tool))
            if len(steps) >= n:
                break
    return time.perf_counter() - started


# -- measuring -------------------------------------------------------------------------


def _median_time(fn: Any, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def floor_parts_table(repeats: int, n: int = 500) -> tuple[float, list[tuple[str, float]]]:
    """The records floor, and the floor with each part left out, interleaved (fastest of the runs:
    the differences are small, so the noisiest runs are left out rather than averaged in)."""
    times: dict[str, list[float]] = {part: [] for part in ("", *FLOOR_PARTS)}
    for _ in range(max(repeats, 11)):
        for part in times:
            times[part].append(run_records_floor(n, part) / n * 1e6)
    return min(times[""]), [(part, min(times[part])) for part in FLOOR_PARTS]


def per_step_table(repeats: int) -> list[tuple[str, int, float, float, float, float]]:
    rows = []
    for n in STEP_COUNTS:
        reps = repeats if n < 1000 else max(3, repeats // 2)
        base = _median_time(lambda n=n: run_minimal(n), reps) / n * 1e6
        agent = _median_time(lambda n=n: run_agent_loop(n), reps) / n * 1e6
        records = _median_time(lambda n=n: run_records_floor(n), reps) / n * 1e6
        for mode in ("native", "text"):
            looplet = _median_time(lambda n=n, mode=mode: run_looplet(n, mode)[0], reps) / n * 1e6
            rows.append((mode, n, looplet, base, agent, records))
    return rows


def journal_us(repeats: int) -> float:
    """What the in-memory journal costs per tool call: the engine's own bookkeeping of an
    intent (written before the tool runs, given its result after, removed by the step),
    done exactly as the engine does it, timed alone."""
    from looplet.types import Intent, ToolResult

    in_flight: dict[str, Any] = {}
    args = {"text": "hello world", "n": 1}
    result = ToolResult("echo", data={"text": "hello world"})
    ids = [f"call_{i}_1" for i in range(10_000)]

    def once() -> float:
        started = time.perf_counter()
        for call_id in ids:
            in_flight[call_id] = Intent(call_id, "echo", args, "")
            intent = in_flight.get(call_id)
            if intent is not None:
                intent.result = result
            if in_flight:
                in_flight.pop(call_id, None)
        return time.perf_counter() - started

    return statistics.median(once() for _ in range(repeats)) / len(ids) * 1e6


def checkpoint_table(repeats: int) -> list[tuple[str, int, float]]:
    """Per-step cost, native mode, without a store, with a MemoryRunStore and a FileCheckpointStore."""
    import shutil
    import tempfile

    from looplet import FileCheckpointStore, MemoryRunStore

    rows = []
    for n in (10, 100):
        rows.append(("no store", n, _median_time(lambda n=n: run_looplet(n, "native")[0], repeats) / n * 1e6))
        memory = _median_time(lambda n=n: run_looplet(n, "native", MemoryRunStore())[0], repeats)
        rows.append(("MemoryRunStore", n, memory / n * 1e6))

        def on_disk(n: int = n) -> float:
            where = tempfile.mkdtemp(prefix="looplet-bench-")
            try:
                return run_looplet(n, "native", FileCheckpointStore(where))[0]
            finally:
                shutil.rmtree(where, ignore_errors=True)

        rows.append(("FileCheckpointStore", n, _median_time(on_disk, max(3, repeats // 2)) / n * 1e6))
    return rows


def _fresh_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with cached bytecode, as an installed package
    return env


#: (label, code) of each cold start; the second pair shows looplet's own share
#: in a program that already uses typing and dataclasses, as most do.
FIRST_AGENT = "from looplet import composable_loop, BaseToolRegistry, register_done_tool, MockLLMBackend"
IMPORTS = (
    ("`python -c pass`", "pass"),
    ("`python -c 'import looplet'`", "import looplet"),
    ("what a first agent imports (`composable_loop`, `BaseToolRegistry`, ...)", FIRST_AGENT),
    ("`import typing, dataclasses, json`", "import typing, dataclasses, json"),
    ("the same, then what a first agent imports", f"import typing, dataclasses, json; {FIRST_AGENT}"),
)


def import_times(repeats: int) -> list[float]:
    """Median ms of each of `IMPORTS`, in fresh processes, interleaved so drift hits all alike."""
    env = _fresh_env()
    for _, code in IMPORTS:  # write every .pyc first: the figures must not include compiling
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

    def once(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return (time.perf_counter() - started) * 1000

    samples: list[list[float]] = [[] for _ in IMPORTS]
    for _ in range(repeats):
        for i, (_, code) in enumerate(IMPORTS):
            samples[i].append(once(code))
    return [statistics.median(times) for times in samples]


# VmHWM (peak resident set of this process image) rather than ru_maxrss, which
# Linux carries over from the parent across fork and exec.
_RSS_CODE = """
import sys
sys.path.insert(0, {here!r})
import bench_overhead as b
if {run}:
    b.run_looplet(1000, {mode!r})
print(b.peak_rss_kb())
"""


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB (Linux ``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss_mb(mode: str, run: bool, repeats: int) -> float:
    here = os.path.dirname(os.path.abspath(__file__))
    code = _RSS_CODE.format(here=here, run=run, mode=mode)
    values = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], env=_fresh_env(), check=True, capture_output=True, text=True
        )
        values.append(int(out.stdout.strip().splitlines()[-1]) / 1024)
    return statistics.median(values)


def prompt_bytes() -> dict[str, int]:
    return {mode: run_looplet(1000, mode)[1] for mode in ("native", "text")}


def pretty_us(repeats: int) -> float:
    """µs for one `Step.pretty()` line (it masks secrets, which reads the environment)."""
    from looplet import Step, ToolCall, ToolResult

    step = Step(1, ToolCall("greet", {"name": "Alice"}), ToolResult("greet", data={"greeting": "Hi"}))
    rounds = 2000

    def once() -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            step.pretty()
        return (time.perf_counter() - started) / rounds

    return _median_time(once, repeats) * 1e6


# -- report ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 5 if args.quick else 11
    import looplet

    print(f"looplet {looplet.__version__} · Python {sys.version.split()[0]} · {sys.platform}")
    print()
    times = import_times(max(9, repeats))
    print("| cold start (median of fresh processes) | ms |")
    print("|---|---:|")
    for (label, _), ms in zip(IMPORTS, times, strict=True):
        print(f"| {label} | {ms:.1f} |")
    print(f"| `import looplet` adds, to a bare start | {times[1] - times[0]:.1f} |")
    print(f"| a first agent's imports add, to a bare start | {times[2] - times[0]:.1f} |")
    print(f"| a first agent's imports add, with typing and dataclasses loaded | {times[4] - times[3]:.1f} |")
    print()
    rows = per_step_table(repeats)
    print(
        "| per-step overhead | N | looplet µs/step | floor loop | agent loop | records floor "
        "| × agent loop | × records floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, n, value, base, agent, records in rows:
        print(
            f"| {mode} | {n} | {value:.1f} | {base:.1f} | {agent:.1f} | {records:.1f} "
            f"| {value / agent:.1f} | {value / records:.1f} |"
        )
    native = {n: v for m, n, v, _, _, _ in rows if m == "native"}
    print()
    floor, parts = floor_parts_table(repeats)
    print(f"records floor at N = 500: {floor:.2f} µs/step; what each part costs (left out, same run):")
    print()
    print("| left out | µs/step | saves |")
    print("|---|---:|---:|")
    for part, value in parts:
        print(f"| {part} | {value:.2f} | {floor - value:.2f} |")
    print()
    print(f"native N=1000 / N=10: {native[1000] / native[10]:.2f}x")
    print()
    print("| checkpointing, native | N | µs/step |")
    print("|---|---:|---:|")
    for label, n, value in checkpoint_table(repeats):
        print(f"| {label} | {n} | {value:.1f} |")
    print()
    journal = journal_us(repeats)
    share = journal / native[100] * 100
    print(f"in-memory journal: {journal:.2f} µs per tool call, {share:.1f}% of a native step at N = 100")
    print()
    rss_base = peak_rss_mb("native", False, 3)
    print("| peak RSS (fresh process) | MB |")
    print("|---|---:|")
    print(f"| import looplet only | {rss_base:.1f} |")
    for mode in ("native", "text"):
        print(f"| {mode}, N = 1000 | {peak_rss_mb(mode, True, 3):.1f} |")
    print()
    sizes = prompt_bytes()
    print("| bytes handed to the backend at step 1000 | bytes |")
    print("|---|---:|")
    for mode, size in sizes.items():
        print(f"| {mode} | {size:,} |")
    print()
    print(f"`Step.pretty()`: {pretty_us(repeats):.1f} µs per line ({len(os.environ)} environment variables)")


if __name__ == "__main__":
    main()
