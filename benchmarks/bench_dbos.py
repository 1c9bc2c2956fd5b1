"""Durable runs on DBOS: what a step and a run cost against the plain loop, on SQLite and on PostgreSQL.

    python benchmarks/bench_dbos.py            # the full table (about half a minute)
    python benchmarks/bench_dbos.py --quick    # fewer repeats

The agent (`agent`, named ``bench_dbos:agent`` as a durable run needs) has an
instant scripted model that calls one trivial tool at every turn; each run
stops at ``max_steps`` = N, for N = 10 and N = 100, so the per-step cost is
``(t100 - t10) / 90`` and the fixed cost of a run is ``t10 - 10 * per_step``.
Every run builds the agent, as a durable run does. Five ways to run it:

- the plain loop, no store (the baseline);
- the plain loop with the store a durable run saves into: a
  `FileCheckpointStore` for SQLite (``runs/`` beside the database file), a
  `SqlRunStore` on the same PostgreSQL database for PostgreSQL;
- `durable_run` on a SQLite system database in a temporary directory, and on
  PostgreSQL (the tests' throwaway server, ``tests/postgres_server.py``).

DBOS is launched once per process on one database, so each database is
measured in a child process of its own (this script, with a hidden flag),
which runs its baselines too, interleaved with the durable runs, repeat by
repeat, after one warm-up of each; it prints its medians as JSON. DBOS's
launch is timed on its own (once per process, before the warm-up).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from looplet import BaseToolRegistry, FileCheckpointStore, FunctionBackend, LoopConfig, ToolCall
from looplet.checkpoints import RunStore
from looplet.presets import AgentPreset

STEP_COUNTS = (10, 100)
AGENT = "bench_dbos:agent"
TASK = "echo things"
TESTS = Path(__file__).resolve().parent.parent / "tests"


def agent() -> tuple[AgentPreset, FunctionBackend]:
    """A model that answers at once, calling `echo` at every turn, and the one trivial tool."""
    tools = BaseToolRegistry()

    @tools.tool
    def echo(text: str, n: int = 0) -> dict[str, Any]:
        """Return the text."""
        return {"text": text, "n": n}

    turns = itertools.count(1)
    llm = FunctionBackend(lambda request: ToolCall("echo", {"text": "hello world", "n": next(turns)}))
    return AgentPreset(config=LoopConfig(max_steps=max(STEP_COUNTS)), tools=tools), llm


# -- one run of each kind, timed ------------------------------------------------------------------


def _timed(run: Callable[[], int], n: int) -> float:
    """Seconds for one run of `n` steps (`run` returns how many steps it took)."""
    gc.collect()
    started = time.perf_counter()
    steps = run()
    elapsed = time.perf_counter() - started
    assert steps == n, (steps, n)
    return elapsed


def plain_run(n: int, store: Any = None) -> int:
    """The plain loop, with `store` as its checkpoint store when given; returns the steps taken."""
    preset, llm = agent()
    extra = {} if store is None else {"store": store}
    return len(preset.loop(llm, task=TASK, max_steps=n, **extra).run().steps)


def durable(n: int, db_url: str) -> int:
    """A durable run on DBOS, waited for; returns the steps taken."""
    from looplet.dbos_runs import durable_run

    outcome = durable_run(AGENT, TASK, db_url=db_url, max_steps=n)
    assert outcome["stop_reason"] == "max_steps", outcome["stop_reason"]
    return len(outcome["steps"])


# -- a child: one database ------------------------------------------------------------------------


def _kinds(database: str, db_url: str, where: Path) -> dict[str, Callable[[int], int]]:
    """The three runs measured on `database`, by label: the plain loop, with the store, durable."""
    store: RunStore
    if database == "sqlite":
        stored_label, store = "plain loop + FileCheckpointStore", FileCheckpointStore(where / "plain-runs")
    else:
        from looplet.sql_store import SqlRunStore

        stored_label, store = "plain loop + SqlRunStore", SqlRunStore(db_url, namespace="bench-plain")
    return {
        "plain loop, no store": plain_run,
        stored_label: lambda n: plain_run(n, store),
        f"durable_run ({database})": lambda n: durable(n, db_url),
    }


def measure(database: str, db_url: str | None, repeats: int) -> dict[str, Any]:
    """Medians of each kind of run at each N, interleaved repeat by repeat, and DBOS's launch time."""
    from looplet.dbos_runs import start_dbos, stop_dbos

    where = Path(tempfile.mkdtemp(prefix="looplet-bench-dbos-"))
    url = db_url or f"sqlite:///{where / 'dbos.sqlite'}"
    try:
        started = time.perf_counter()
        start_dbos(url)
        launch_s = time.perf_counter() - started
        kinds = _kinds(database, url, where)
        for run in kinds.values():  # warm-up: imports, first connections, first table writes
            _timed(partial(run, STEP_COUNTS[0]), STEP_COUNTS[0])
        samples: dict[str, dict[int, list[float]]] = {label: {n: [] for n in STEP_COUNTS} for label in kinds}
        for _ in range(repeats):
            for n in STEP_COUNTS:
                for label, run in kinds.items():
                    samples[label][n].append(_timed(partial(run, n), n))
        medians = {
            label: {n: statistics.median(times) for n, times in by_n.items()}
            for label, by_n in samples.items()
        }
        return {"launch_s": launch_s, "medians": medians}
    finally:
        stop_dbos()
        shutil.rmtree(where, ignore_errors=True)


def in_child(database: str, repeats: int, db_url: str | None = None) -> dict[str, Any]:
    """Run `measure` for `database` in a fresh process (DBOS launches once per process); its result."""
    argv = [sys.executable, __file__, "--child", database, "--repeats", str(repeats)]
    if db_url is not None:
        argv += ["--url", db_url]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {database} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    result["medians"] = {
        label: {int(n): s for n, s in by_n.items()} for label, by_n in result["medians"].items()
    }
    return result


def on_postgres(repeats: int) -> dict[str, Any] | str:
    """The PostgreSQL measurements on a throwaway server, or why no server can run here."""
    sys.path.insert(0, str(TESTS))
    helper = importlib.import_module("postgres_server")
    problem: str | None = helper.missing()
    if problem is not None:
        return problem
    server = helper.start_server("looplet")
    try:
        return in_child("postgresql", repeats, server.url("looplet"))
    finally:
        server.stop()


# -- the table ------------------------------------------------------------------------------------


def split(medians: dict[int, float]) -> tuple[float, float]:
    """(seconds per step, fixed seconds per run) from the run times at N = 10 and N = 100."""
    low, high = STEP_COUNTS
    per_step = (medians[high] - medians[low]) / (high - low)
    return per_step, medians[low] - low * per_step


def rows(result: dict[str, Any]) -> list[str]:
    """One table row per kind of run; the ratios divide by this child's plain loop."""
    medians: dict[str, dict[int, float]] = result["medians"]
    plain = medians["plain loop, no store"]
    plain_step, _ = split(plain)
    lines = []
    for label, by_n in medians.items():
        per_step, fixed = split(by_n)
        lines.append(
            f"| {label} | {per_step * 1e6:,.1f} | {fixed * 1e3:,.2f} | {by_n[10] * 1e3:,.2f} "
            f"| {by_n[100] * 1e3:,.2f} | {per_step / plain_step:,.1f} | {by_n[100] / plain[100]:,.1f} |"
        )
    return lines


def dbos_share(result: dict[str, Any]) -> str:
    """What the durable run adds to the plain loop with the same store, and DBOS's launch."""
    labels = list(result["medians"])
    stored_step, stored_fixed = split(result["medians"][labels[1]])
    durable_step, durable_fixed = split(result["medians"][labels[2]])
    return (
        f"| {labels[2]} | {(durable_step - stored_step) * 1e6:+,.1f} "
        f"| {(durable_fixed - stored_fixed) * 1e3:+,.2f} | {result['launch_s'] * 1e3:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--child", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.url, args.repeats)))
        return
    repeats = 3 if args.quick else 15
    results = [in_child("sqlite", repeats)]
    postgres = on_postgres(repeats)
    if isinstance(postgres, str):
        skipped = f"PostgreSQL rows skipped: {postgres}"
    else:
        results.append(postgres)
        skipped = ""
    print(f"medians of {repeats} runs each, after a warm-up; each database in its own process\n")
    print(
        "| run | µs/step | fixed ms/run | ms/run, N=10 | ms/run, N=100 | × plain loop, per step "
        "| × plain loop, N=100 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print("\n".join(rows(result)))
    print("\n| what DBOS adds to the same store | µs/step | ms/run | DBOS launch, ms (once per process) |")
    print("|---|---:|---:|---:|")
    for result in results:
        print(dbos_share(result))
    if skipped:
        print(f"\n{skipped}")


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # the children run with cached bytecode
    main()
