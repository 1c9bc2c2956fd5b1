"""What watching a run costs: per-step time with no hook, the observer hooks.

    python benchmarks/bench_tracing.py            # full table
    python benchmarks/bench_tracing.py --quick    # fewer repeats

One workload for every row, bench_overhead's: `composable_loop` with an instant
scripted model (native tool calls, here with usage) and a no-op tool, N steps,
timed whole and divided by N.
Each figure is the median of several runs in this one process, the rows
interleaved so drift hits them alike. The OpenTelemetry row uses the SDK's
`TracerProvider` with a `SimpleSpanProcessor` into an `InMemorySpanExporter`
(what a test would use; a real exporter adds its own cost on top).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

from bench_overhead import InstantNative, run_looplet

STEP_COUNTS = (10, 100)


def _otel_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return provider


def _hooks(label: str) -> list[Any]:
    from looplet.metrics import MetricsHook
    from looplet.tracing import TracingHook

    if label == "no hook":
        return []
    if label == "TracingHook (memory)":
        return [TracingHook()]
    if label == "TracingHook + OpenTelemetry SDK":
        return [TracingHook(otel=_otel_provider())]
    return [MetricsHook()]


ROWS = ("no hook", "TracingHook (memory)", "TracingHook + OpenTelemetry SDK", "MetricsHook")


def run_once(n: int, label: str) -> float:
    """Seconds for one run of `n` steps with the hooks of `label` (built outside the timing)."""
    from looplet import Usage

    llm = InstantNative(usage=Usage(100, 10, 50), model="m")
    return run_looplet(n, "native", hooks=_hooks(label), llm=llm)[0]


def table(repeats: int) -> list[tuple[int, str, float]]:
    rows = []
    for n in STEP_COUNTS:
        samples: dict[str, list[float]] = {label: [] for label in ROWS}
        run_once(n, ROWS[2])  # warm up: imports, first spans
        for _ in range(repeats):
            for label in ROWS:
                samples[label].append(run_once(n, label))
        for label in ROWS:
            rows.append((n, label, statistics.median(samples[label]) / n * 1e6))
    return rows


def main(argv: list[str] | None = None, out: Callable[[str], Any] = print) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    import looplet

    out(f"looplet {looplet.__version__} · Python {sys.version.split()[0]} · {sys.platform}")
    out("")
    out("| observer, native mode | N | µs/step | added µs/step |")
    out("|---|---:|---:|---:|")
    rows = table(5 if args.quick else 15)
    base = {n: value for n, label, value in rows if label == "no hook"}
    for n, label, value in rows:
        added = "" if label == "no hook" else f"{value - base[n]:+.1f}"
        out(f"| {label} | {n} | {value:.1f} | {added} |")


if __name__ == "__main__":
    main()
