"""looplet side by side with peer agent frameworks, each in its own virtual environment.

    python3 benchmarks/compare.py                  # the full table (long: some peers are slow at N = 1000)
    python3 benchmarks/compare.py --quick          # N up to 100, fewer repeats (a few minutes)
    python3 benchmarks/compare.py --only checkout,langgraph
    python3 benchmarks/compare.py --fresh          # rebuild the virtual environments

One venv per framework under ``~/.cache/looplet-compare/<name>`` (``--cache``),
reused when present: this checkout (``pip install <repo>``, no extras: the row
every ratio is against), looplet's last release on PyPI, pydantic-ai-slim,
openai-agents, langgraph with langchain-core, smolagents, strands-agents, and a
minimal hand-written loop in plain Python (an empty venv). In each, a child
(``benchmarks/peers/measure.py`` with that framework's adapter) drives an agent
on an instant scripted model (the framework's own function model, or a tiny
class implementing its model interface: no network, no keys) that calls one
trivial tool on every turn, N times. Measured:

- **import**: a fresh interpreter running the adapter's ``IMPORTS`` (what a
  first agent imports) minus a fresh ``python -c pass``, in that venv; medians
  of interleaved runs after one warm-up, with bytecode writing on
  (``PYTHONDONTWRITEBYTECODE`` unset);
- **µs per step** at N = 10, 100, 1000: a whole run (building the agent
  included) divided by N, t_N / N, not fitted; median of the repeats. N = 10
  and 100 run in one process after a warm-up run of 2 steps; each N = 1000
  repeat is a fresh process;
- **peak RSS**: VmHWM from ``/proc/self/status`` read inside that N = 1000
  process at the end of its run (not ``ru_maxrss``, which a child inherits
  from its parent); median over the repeats;
- **bytes at the last step**: the messages the framework hands the model at the
  call asking for step N, serialized as JSON in the framework's own message
  form (tool schemas left out), and how many bytes each step adds;
- **packages** installed in the venv (``pip list`` minus pip, setuptools, wheel).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "peers"
INSTALLER_PACKAGES = {"pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class Peer:
    """One framework: its venv name, what to install, its adapter and its main distribution."""

    name: str
    label: str
    requirements: tuple[str, ...]
    adapter: str
    dist: str = ""


PEERS = (
    Peer("checkout", "looplet (this checkout)", (str(REPO),), "peer_looplet", "looplet"),
    Peer("looplet-pypi", "looplet (PyPI)", ("looplet",), "peer_looplet_pypi", "looplet"),
    Peer("hand-loop", "hand-written loop", (), "peer_hand_loop"),
    Peer("pydantic-ai", "pydantic-ai-slim", ("pydantic-ai-slim",), "peer_pydantic_ai", "pydantic-ai-slim"),
    Peer("openai-agents", "openai-agents", ("openai-agents",), "peer_openai_agents", "openai-agents"),
    Peer("langgraph", "langgraph", ("langgraph", "langchain-core"), "peer_langgraph", "langgraph"),
    Peer("smolagents", "smolagents", ("smolagents",), "peer_smolagents", "smolagents"),
    Peer("strands", "strands-agents", ("strands-agents",), "peer_strands", "strands-agents"),
)


@dataclass(frozen=True)
class Plan:
    """How much to measure: import rounds, the step counts with their repeats, where peak RSS is read."""

    import_rounds: int
    repeats: dict[int, int]
    fresh_process_n: int  # this N runs once per fresh process, which also reads VmHWM


FULL = Plan(import_rounds=11, repeats={10: 9, 100: 5, 1000: 3}, fresh_process_n=1000)
QUICK = Plan(import_rounds=5, repeats={10: 5, 100: 3}, fresh_process_n=100)


@dataclass
class Row:
    """What was measured for one framework (None where it failed; `problem` says why)."""

    peer: Peer
    version: str = ""
    packages: int | None = None
    import_ms: float | None = None
    bare_ms: float | None = None
    us_per_step: dict[int, float] = field(default_factory=dict)
    peak_mb: float | None = None
    last_bytes: dict[int, int] = field(default_factory=dict)
    problem: str = ""


# -- the virtual environments ---------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment the children run in: bytecode writing on, nothing of this checkout on the path."""
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def ensure_venv(peer: Peer, cache: Path, fresh: bool) -> Path:
    """The venv's python, building the venv if it is missing, stale or `fresh` is asked for.

    A venv is reused when its marker lists the same requirements; this checkout is
    reinstalled into its venv on every run, since the working tree may have changed.
    """
    where = cache / peer.name
    python = where / "bin" / "python"
    marker = where / "compare-requirements.json"
    wanted = json.dumps(peer.requirements)
    if fresh or not python.exists() or not marker.exists() or marker.read_text() != wanted:
        shutil.rmtree(where, ignore_errors=True)
        log(f"{peer.name}: creating {where}")
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
        if peer.requirements:
            pip_install(python, list(peer.requirements))
        marker.write_text(wanted)
    elif peer.name == "checkout":
        pip_install(python, ["--force-reinstall", "--no-deps", *peer.requirements])
    return python


def pip_install(python: Path, args: list[str]) -> None:
    log(f"  pip install {' '.join(args)}")
    subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True, env=child_env())


def installed(python: Path) -> dict[str, str]:
    """Distribution name (lower case) to version, from the venv's ``pip list``."""
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    return {item["name"].lower(): item["version"] for item in json.loads(out)}


# -- the measurements -----------------------------------------------------------------


def adapter_imports(adapter: str) -> str:
    """The adapter's ``IMPORTS`` string, read without importing the adapter (its deps live in the venv)."""
    tree = ast.parse((PEERS_DIR / f"{adapter}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "IMPORTS" for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, str):
                return value
    raise ValueError(f"{adapter}.py has no IMPORTS string")


def wall_ms(python: Path, code: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", code], check=True, env=child_env(), cwd=cwd)
    return (time.perf_counter() - started) * 1000


def import_times(python: Path, statement: str, rounds: int, cwd: Path) -> tuple[float, float]:
    """Median ms of a bare start and of a start that runs `statement`, interleaved, after a warm-up
    round (which also writes any bytecode still missing)."""
    wall_ms(python, statement, cwd)
    bare, loaded = [], []
    for _ in range(rounds):
        bare.append(wall_ms(python, "pass", cwd))
        loaded.append(wall_ms(python, statement, cwd))
    return statistics.median(bare), statistics.median(loaded)


def run_child(python: Path, adapter: str, mode: str, n: int, repeats: int = 1) -> dict[str, Any]:
    """One measuring child in the venv; its JSON line (the last line it printed)."""
    command = [str(python), str(PEERS_DIR / "measure.py"), adapter, mode, str(n), str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), cwd=PEERS_DIR)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{adapter} {mode} N={n} failed: {tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_steps(row: Row, python: Path, plan: Plan) -> None:
    """Per-step overhead at every N, peak RSS and the bytes at the last step, into `row`."""
    for n, repeats in plan.repeats.items():
        if n == plan.fresh_process_n:
            runs = [run_child(python, row.peer.adapter, "peak", n) for _ in range(repeats)]
            times = [run["us_per_step"][0] for run in runs]
            row.peak_mb = statistics.median(run["vmhwm_kb"] for run in runs) / 1024
            row.last_bytes[n] = runs[-1]["last_bytes"]
        else:
            run = run_child(python, row.peer.adapter, "steps", n, repeats)
            times = run["us_per_step"]
            row.last_bytes[n] = run["last_bytes"]
        row.us_per_step[n] = statistics.median(times)
        log(f"  N={n}: {row.us_per_step[n]:,.1f} µs/step")


def measure(peer: Peer, cache: Path, plan: Plan, fresh: bool) -> Row:
    """Everything for one framework; a failure is recorded in the row, not raised."""
    row = Row(peer)
    try:
        python = ensure_venv(peer, cache, fresh)
        dists = installed(python)
        row.version = dists.get(peer.dist, "") if peer.dist else ""
        row.packages = len(set(dists) - INSTALLER_PACKAGES)
        statement = adapter_imports(peer.adapter)
        row.bare_ms, loaded = import_times(python, statement, plan.import_rounds, cache)
        row.import_ms = loaded - row.bare_ms
        log(f"  import: {row.import_ms:,.1f} ms (bare start {row.bare_ms:.1f} ms)")
        measure_steps(row, python, plan)
    except (OSError, RuntimeError, subprocess.CalledProcessError, ValueError) as error:
        row.problem = str(error)
        log(f"  FAILED: {error}")
    return row


# -- the table ------------------------------------------------------------------------


def with_ratio(value: float | None, base: float | None, digits: int = 0) -> str:
    """`value` and its ratio to our row's `base`, e.g. ``5,766 (×11)``."""
    if value is None:
        return "n/a"
    text = f"{value:,.{digits}f}"
    if base:
        ratio = value / base
        text += f" (×{ratio:.2g})" if ratio < 10 else f" (×{ratio:,.0f})"
    return text


def growth_per_step(row: Row) -> float | None:
    """Bytes each step adds to what the model is sent, between the two largest N measured."""
    if len(row.last_bytes) < 2:
        return None
    low, high = sorted(row.last_bytes)[-2:]
    return (row.last_bytes[high] - row.last_bytes[low]) / (high - low)


def render_table(rows: list[Row], plan: Plan) -> str:
    """The Markdown table, every ratio against this checkout's row (when it was measured)."""
    base = next((row for row in rows if row.peer.name == "checkout" and not row.problem), None)
    steps = list(plan.repeats)
    last_n = max(steps)
    head = ["framework", "version", "import ms"]
    head += [f"µs/step N={n}" for n in steps]
    head += [
        f"peak RSS MB (N={plan.fresh_process_n})",
        f"bytes at step {last_n}",
        "bytes added/step",
        "packages",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        if row.problem:
            lines.append(f"| {row.peer.label} | {row.version} | failed: {row.problem} |")
            continue
        cells = [row.peer.label, row.version or "-", with_ratio(row.import_ms, base and base.import_ms, 1)]
        cells += [with_ratio(row.us_per_step.get(n), base and base.us_per_step.get(n), 1) for n in steps]
        cells.append(with_ratio(row.peak_mb, base and base.peak_mb, 1))
        cells.append(with_ratio(row.last_bytes.get(last_n), base and base.last_bytes.get(last_n)))
        growth = growth_per_step(row)
        cells.append("n/a" if growth is None else f"{growth:,.0f}")
        cells.append(str(row.packages))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def chosen_peers(only: str) -> list[Peer]:
    if not only:
        return list(PEERS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - {peer.name for peer in PEERS})
    if unknown:
        known = ", ".join(peer.name for peer in PEERS)
        raise SystemExit(f"unknown peer(s): {', '.join(unknown)}; known: {known}")
    return [peer for peer in PEERS if peer.name in names]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N up to 100, fewer repeats")
    parser.add_argument(
        "--only", default="", help="comma-separated names: " + ",".join(p.name for p in PEERS)
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the virtual environments")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "looplet-compare", help="where the venvs live"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for peer in chosen_peers(args.only):
        log(f"{peer.label}:")
        rows.append(measure(peer, args.cache, plan, args.fresh))
    print(render_table(rows, plan))
    bare = [row.bare_ms for row in rows if row.bare_ms is not None]
    if bare:
        print(f"\nA bare `python -c pass` in these venvs: median {statistics.median(bare):.1f} ms.")
    print(f"Total time: {time.perf_counter() - started:,.0f} s.")


if __name__ == "__main__":
    main()
