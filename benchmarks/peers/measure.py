"""The measuring child of ``benchmarks/compare.py``: runs one peer's adapter in its own venv.

    python measure.py peer_langgraph steps 10 9    # 9 timed runs of 10 steps, one process
    python measure.py peer_langgraph peak 1000     # one timed run of 1000 steps, with VmHWM

Each adapter (``peer_*.py`` beside this file) defines ``IMPORTS`` (what a first
agent imports, timed cold by compare.py), ``run(n)`` (build the agent on an
instant scripted model and let it make ``n`` calls of one trivial tool; returns
the number of tool calls made) and ``last_bytes()`` (the JSON size of the
messages handed to the model at its ``n``-th call, the one asking for the last
step). The whole of ``run(n)`` is timed, the building of the agent included.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
from typing import Any


def peak_rss_kb() -> int:
    """This process's high-water resident set (VmHWM), in kB, from /proc (not ru_maxrss,
    which a child inherits from its parent at exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed_run(adapter: Any, n: int) -> float:
    """Seconds for one whole run of `n` tool steps; fails loudly if the run made another count."""
    gc.collect()
    started = time.perf_counter()
    made = adapter.run(n)
    elapsed = time.perf_counter() - started
    if made != n:
        raise AssertionError(f"{adapter.__name__}: asked for {n} tool steps, the run made {made}")
    return elapsed


def main(argv: list[str]) -> None:
    name, mode, n = argv[0], argv[1], int(argv[2])
    repeats = int(argv[3]) if len(argv) > 3 else 1
    adapter = importlib.import_module(name)
    timed_run(adapter, 2)  # first-call caches and lazy imports, outside every timing
    seconds = [timed_run(adapter, n) for _ in range(repeats)]
    out: dict[str, Any] = {"n": n, "us_per_step": [s / n * 1e6 for s in seconds]}
    if mode == "peak":
        out["vmhwm_kb"] = peak_rss_kb()  # read before serializing the messages adds its own
    out["last_bytes"] = adapter.last_bytes()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
