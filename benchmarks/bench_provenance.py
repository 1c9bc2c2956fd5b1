"""What `ProvenanceSink` costs per step: the same scripted run with and without it.

    python benchmarks/bench_provenance.py            # full table
    python benchmarks/bench_provenance.py --quick    # fewer repeats

Each figure is a median over several runs in this one process, both columns
measured in the same run of this script: bench_overhead's workload (an instant
native backend, a no-op tool, N steps), in the sync and the async loop. With
the sink, every step writes its step file, two event lines (one fsynced) and
the manifest, and every model call writes the whole request it was sent, so
the cost per step grows with the conversation. The directory goes to a temporary directory
(on this machine's disk; fsync is the largest part of it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from bench_overhead import InstantNative, echo_tools, run_looplet

STEP_COUNTS = (10, 100, 300)


def run_once(n: int, loop: str, sink: bool) -> float:
    """Seconds for one run of `n` steps."""
    from looplet.provenance import ProvenanceSink

    root = tempfile.mkdtemp(prefix="looplet-bench-")
    hooks = [ProvenanceSink(root)] if sink else []
    try:
        if loop == "sync":
            return run_looplet(n, "native", hooks=hooks)[0]
        return _run_async(n, hooks)
    finally:
        shutil.rmtree(root)


def _run_async(n: int, hooks: list[Any]) -> float:
    """`run_looplet`'s workload, driven by `async_composable_loop`."""
    from looplet import async_composable_loop

    async def drive() -> int:
        got = 0
        loop = async_composable_loop(
            InstantNative(), tools=echo_tools(), task="echo things", max_steps=n, hooks=hooks
        )
        async for _ in loop:
            got += 1
        return got

    gc.collect()
    started = time.perf_counter()
    count = asyncio.run(drive())
    elapsed = time.perf_counter() - started
    assert count == n, (count, n)
    return elapsed


def table(repeats: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for loop in ("sync", "async"):
        for n in STEP_COUNTS:
            reps = repeats if n <= 100 else max(3, repeats // 2)
            without = statistics.median(run_once(n, loop, False) for _ in range(reps)) / n * 1e6
            with_sink = statistics.median(run_once(n, loop, True) for _ in range(reps)) / n * 1e6
            rows.append((loop, n, without, with_sink))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    import looplet

    print(f"looplet {looplet.__version__} · Python {sys.version.split()[0]} · {sys.platform}")
    print()
    print("| per step | N | without sink µs | with ProvenanceSink µs | added µs/step |")
    print("|---|---:|---:|---:|---:|")
    for loop, n, without, with_sink in table(3 if args.quick else 7):
        print(f"| {loop} | {n} | {without:.1f} | {with_sink:.1f} | {with_sink - without:.1f} |")


if __name__ == "__main__":
    main()
