"""How much context compaction shrinks a long run's prompts, and what it costs.

    python benchmarks/bench_context.py            # full table (a few seconds)
    python benchmarks/bench_context.py --quick    # fewer repeats for the timings

One scripted run of 200 steps: the model fetches page 0, 1, ... 198 (each
tool result is a 3 KB page) and then calls ``done``. Without compaction every
page stays in the history, so each prompt is larger than the one before. The
same run is repeated with each way of compacting, and for every run we count:

- the bytes of the requests handed to the backend over all model calls
  (system prompt, tool schemas, and every message's text, call names and
  JSON arguments, UTF-8), and the largest single request;
- the estimated tokens of all those requests at 4 characters a token (the
  `ContextBudget` default, used when the provider reports no count);
- the compactions recorded in ``state.metadata["compactions"]`` and the
  requests (and bytes) sent to the summary model, if there is one;
- wall time of the whole run (median of several runs; the model answers at
  once, so this is looplet's own work and the compaction's).

Bytes and counts are deterministic; only the time varies between runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STEPS = 200
PAGE_BYTES = 3000
#: The model's window in tokens: 64k characters at 4 a token; the run without
#: compaction passes it after about 15 pages.
WINDOW = 16_000
CHARS_PER_TOKEN = 4
#: A window so small that pruning alone cannot reach the target (the last three
#: pages are kept whole and already exceed it), so the summary stage runs too.
SMALL_WINDOW = 4_000


# -- the workload ------------------------------------------------------------------


def page(i: int) -> str:
    """Page `i`: about PAGE_BYTES of rows that differ from page to page."""
    rows = [f"page {i} row {k:03d}: sensor={(i * 31 + k * 7) % 997:04d} status=ok" for k in range(70)]
    return "\n".join(rows)[:PAGE_BYTES]


def tools() -> Any:
    from looplet import BaseToolRegistry, register_done_tool

    registry = BaseToolRegistry()

    @registry.tool
    def fetch(i: int) -> str:
        """Fetch page i of the sensor log."""
        return page(i)

    register_done_tool(registry)
    return registry


def request_bytes(request: Any) -> int:
    """UTF-8 bytes of one request: system prompt, tool schemas, and the messages."""
    size = len(request.system.encode()) + len(json.dumps(list(request.tools)).encode())
    for message in request.messages:
        size += len(message.content.encode())
        for call in message.tool_calls:
            size += len(call.tool.encode()) + len(json.dumps(call.args).encode())
    return size


@dataclass
class Meter:
    """The sizes of every request one model received."""

    sizes: list[int] = field(default_factory=list)

    def see(self, request: Any) -> None:
        self.sizes.append(request_bytes(request))


def scripted_model(meter: Meter) -> Any:
    """The agent's model: fetch pages 0..STEPS-2 in order, then done; measures each request."""
    from looplet import FunctionBackend, ToolCall

    replies = 0

    def reply(request: Any) -> Any:
        nonlocal replies
        meter.see(request)
        replies += 1
        if replies < STEPS:
            return ToolCall("fetch", {"i": replies - 1}, call_id=f"c{replies}")
        return ToolCall("done", {"answer": f"read {STEPS - 1} pages"}, call_id=f"c{replies}")

    return FunctionBackend(reply)


class ScriptedSummariser:
    """A summary model that answers at once with a short summary naming the pages it saw."""

    def __init__(self) -> None:
        self.meter = Meter()

    def complete(self, request: Any) -> Any:
        from looplet import LLMResponse

        self.meter.see(request)
        prompt = request.messages[0].content
        seen = prompt.count("RESULT of fetch")
        return LLMResponse(
            text=(
                f"Goal: read the sensor log page by page. Done so far: {seen} more pages fetched, "
                "every row status=ok, no anomaly found. Next: fetch the following page."
            )
        )


# -- the configurations ------------------------------------------------------------


@dataclass
class Setup:
    """One way of running: its label, the hooks (built fresh per run) and its summariser."""

    label: str
    hooks: Callable[[ScriptedSummariser], list[Any]]


def _none(_: ScriptedSummariser) -> list[Any]:
    return []


def _default_chain(_: ScriptedSummariser) -> list[Any]:
    from looplet import ContextBudget, ThresholdCompactHook

    return [ThresholdCompactHook(ContextBudget(context_window=WINDOW))]


def _full_chain(summariser: ScriptedSummariser, window: int = WINDOW) -> list[Any]:
    from looplet import (
        ContextBudget,
        PruneToolResults,
        SummarizeCompact,
        ThresholdCompactHook,
        TruncateCompact,
        compact_chain,
    )

    chain = compact_chain(
        PruneToolResults(keep_recent=3),
        SummarizeCompact(llm=summariser, keep_recent=6),
        TruncateCompact(keep_recent=6),
    )
    return [ThresholdCompactHook(ContextBudget(context_window=window), chain)]


def _full_chain_small_window(summariser: ScriptedSummariser) -> list[Any]:
    return _full_chain(summariser, SMALL_WINDOW)


def _summary_first(summariser: ScriptedSummariser) -> list[Any]:
    from looplet import ContextBudget, SummarizeCompact, ThresholdCompactHook, TruncateCompact, compact_chain

    chain = compact_chain(SummarizeCompact(llm=summariser, keep_recent=6), TruncateCompact(keep_recent=6))
    return [ThresholdCompactHook(ContextBudget(context_window=WINDOW), chain)]


def _pressure(_: ScriptedSummariser) -> list[Any]:
    from looplet import ContextBudget, ContextPressureHook

    return [ContextPressureHook(ContextBudget(context_window=WINDOW), keep_recent=3, max_result_chars=2000)]


SETUPS = [
    Setup("no compaction", _none),
    Setup("ThresholdCompactHook, default chain (Prune, Truncate)", _default_chain),
    Setup("compact_chain(Prune, Summarize, Truncate)", _full_chain),
    Setup(f"compact_chain(Prune, Summarize, Truncate), window {SMALL_WINDOW:,}", _full_chain_small_window),
    Setup("compact_chain(Summarize, Truncate)", _summary_first),
    Setup("ContextPressureHook", _pressure),
]


# -- measuring ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one run sent and did."""

    stop_reason: str
    steps: int
    sizes: tuple[int, ...]
    compactions: int
    stages: tuple[tuple[str, int], ...]
    summary_calls: int
    summary_bytes: int
    seconds: float


def run(setup: Setup) -> Outcome:
    from looplet import DefaultState, composable_loop

    meter = Meter()
    summariser = ScriptedSummariser()
    state = DefaultState(task="Read every page of the sensor log and report any anomaly.")
    loop = composable_loop(
        llm=scripted_model(meter),
        tools=tools(),
        hooks=setup.hooks(summariser),
        state=state,
        max_steps=STEPS + 10,
    )
    started = time.perf_counter()
    result = loop.run()
    seconds = time.perf_counter() - started
    records = state.metadata.get("compactions", [])
    return Outcome(
        stop_reason=result.stop_reason,
        steps=len(state.steps),
        sizes=tuple(meter.sizes),
        compactions=len(records),
        stages=tuple(sorted(Counter(stage for r in records for stage in r["stages"]).items())),
        summary_calls=len(summariser.meter.sizes),
        summary_bytes=sum(summariser.meter.sizes),
        seconds=seconds,
    )


def measure(setup: Setup, repeats: int) -> tuple[Outcome, float]:
    """One run's outcome (all runs must agree on it) and the median wall time."""
    outcomes = [run(setup) for _ in range(repeats)]
    first = outcomes[0]
    for other in outcomes[1:]:
        assert (other.sizes, other.compactions) == (first.sizes, first.compactions), "not deterministic"
    assert first.stop_reason == "done" and first.steps == STEPS, (first.stop_reason, first.steps)
    return first, statistics.median(o.seconds for o in outcomes)


def _stages(outcome: Outcome) -> str:
    if not outcome.stages:
        return ""
    short = {"PruneToolResults": "Prune", "SummarizeCompact": "Summarize", "TruncateCompact": "Truncate"}
    return " (" + ", ".join(f"{short.get(name, name)} {count}" for name, count in outcome.stages) + ")"


def _kb(size: int) -> str:
    return f"{size / 1000:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats for the timings")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    import looplet

    print(f"looplet {looplet.__version__} · Python {sys.version.split()[0]} · {sys.platform}")
    print(
        f"{STEPS} steps, {PAGE_BYTES} B per tool result, window {WINDOW:,} tokens "
        f"({WINDOW * CHARS_PER_TOKEN:,} chars at {CHARS_PER_TOKEN}/token), median of {repeats} runs"
    )
    print()
    print(
        "| run | kB sent (all calls) | largest request, kB | est. tokens (all calls) "
        "| largest, est. tokens | compactions (stages that acted) | summary calls (kB sent) | wall ms |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    baseline = 0
    for setup in SETUPS:
        outcome, seconds = measure(setup, repeats)
        total = sum(outcome.sizes)
        baseline = baseline or total
        share = f" ({total / baseline:.0%})" if total != baseline else ""
        summary = f"{outcome.summary_calls} ({_kb(outcome.summary_bytes)})" if outcome.summary_calls else "0"
        print(
            f"| {setup.label} | {_kb(total)}{share} | {_kb(max(outcome.sizes))} "
            f"| {total // CHARS_PER_TOKEN:,} | {max(outcome.sizes) // CHARS_PER_TOKEN:,} "
            f"| {outcome.compactions}{_stages(outcome)} | {summary} | {seconds * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
