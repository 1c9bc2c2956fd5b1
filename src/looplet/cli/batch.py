"""``looplet batch AGENT TASKS.jsonl``: run many tasks through one agent, resumably.

    looplet batch ./skills/triage issues.jsonl --concurrency 8 --out runs/triage
    looplet batch my_agents:triage issues.jsonl --concurrency 8 --out runs/triage --scripted

AGENT is a cartridge folder or ``module:factory`` (a function returning an
AgentPreset, or ``(AgentPreset, model)``, imported from the current directory
or the installed packages).
Naming it is trusting it: its code is imported and run for every task.
Each line of TASKS.jsonl is an object with an ``id`` (unique) and a ``task``.

The results go to ``--out``: ``results.jsonl`` (a line per task as it ends:
id, status, stop reason, final answer, usage, cost, elapsed time, error),
``checkpoints/`` and, with ``--trace``, ``traces/``. Running the same command
again skips the tasks that ended, continues the interrupted ones from their
checkpoints, and lists those paused for approval.

The model: ``--scripted`` uses the agent's ``scripted_responses`` (no key, no
network); otherwise the OpenAI-compatible endpoint in ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` / ``OPENAI_MODEL`` (or ``--model``).

With ``--engine dbos`` each task is a durable run on the agent's DBOS queue,
at most ``--concurrency`` running at once across all workers:

    looplet batch my_agents:triage issues.jsonl --engine dbos --concurrency 4 --out runs/triage
    looplet batch my_agents:triage issues.jsonl --engine dbos --db "$DB" --no-local-worker ...

This process works the queue too unless ``--no-local-worker`` (then
``looplet worker`` processes run the tasks). The run
records stay in the database's store; ``results.jsonl`` is written here as
above, each line with its ``run_id``. A worker builds each run's model from
its own environment.

Exit codes: 0 when every task is done, 1 when any task failed or is paused,
2 for bad input (the tasks file, the agent, the flags), 130 on Ctrl-C
(rerun the command to continue).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..batch import DEFAULT_MODEL, BatchInputError
from .terminal import one_line, refuse, shown

__all__ = ["add_parser", "run", "summary_lines", "progress_line"]

VERB = "batch"


def add_parser(sub: Any) -> None:
    from ..examples.arguments import model_name, seconds, step_budget, whole_count

    parser = sub.add_parser(
        VERB,
        help="run many tasks (a JSONL file) through one agent, resumably",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("agent", nargs="?", metavar="AGENT", help="a cartridge folder or module:factory")
    parser.add_argument(
        "tasks", nargs="?", metavar="TASKS.jsonl", help='one {"id": ..., "task": ...} per line'
    )
    parser.add_argument(
        "--concurrency", type=whole_count, default=4, metavar="N", help="tasks at once (default 4)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where results and checkpoints go"
    )
    parser.add_argument(
        "--max-steps", type=step_budget, default=None, metavar="N", help="cap on each task's steps"
    )
    parser.add_argument("--scripted", action="store_true", help="use the agent's scripted model (no key)")
    parser.add_argument("--deadline", type=seconds, default=None, metavar="S", help="each task's time limit")
    parser.add_argument("--trace", action="store_true", help="record each task's run in DIR/traces")
    parser.add_argument(
        "--engine",
        choices=("local", "dbos"),
        default="local",
        help="local: this process, asyncio (default); dbos: durable runs on a DBOS queue",
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="with --engine dbos: the DBOS system database (default: $DBOS_SYSTEM_DATABASE_URL, "
        "else .looplet/dbos.sqlite here)",
    )
    parser.add_argument(
        "--no-local-worker",
        action="store_true",
        help="with --engine dbos: only enqueue and wait; `looplet worker` processes run the tasks",
    )
    parser.add_argument(
        "--model",
        type=model_name,
        default=None,
        help=f"model name (default: $OPENAI_MODEL, else {DEFAULT_MODEL})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.agent or not args.tasks:
        return _fail("name the agent and the tasks: looplet batch AGENT TASKS.jsonl --out DIR")
    if args.out is None:
        return _fail("name the output directory: --out DIR")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"looplet {VERB}: interrupted; run the same command again to continue", file=sys.stderr)
        if args.engine == "dbos":  # the runs go on in the workers, or at this command's next launch
            from .worker import end_dbos_process

            return end_dbos_process(130, grace_s=0.0)
        return 130


def _run(args: argparse.Namespace) -> int:
    from ..batch import read_tasks, run_batch

    try:
        tasks = read_tasks(args.tasks)
    except BatchInputError as exc:
        return _fail(str(exc))
    if args.engine == "dbos":
        return _run_on_dbos(args, tasks)
    if args.db is not None or args.no_local_worker:
        return _fail("--db and --no-local-worker go with --engine dbos")
    llm = None if args.scripted else _real_model(args)
    if llm is None and not args.scripted:
        return 2
    summary = _with_progress(
        len(tasks),
        lambda show: run_batch(
            args.agent,
            tasks,
            concurrency=args.concurrency,
            out_dir=args.out,
            max_steps=args.max_steps,
            scripted=args.scripted,
            deadline_s=args.deadline,
            trace=args.trace,
            llm=llm,
            model=args.model,
            on_result=show,
        ),
    )
    return summary if isinstance(summary, int) else _summarised(summary)


def _with_progress(total: int, start: Callable[[Any], Any]) -> Any:
    """`start(show)` under the progress display: the batch's summary, or the exit code of a refusal."""
    with _progress(total) as show:
        try:
            return start(show)
        except BatchInputError as exc:
            return _fail(str(exc))
        except Exception as exc:  # the agent's own code can raise anything: one line, never a traceback
            return _fail(one_line(exc))


def _summarised(summary: Any) -> int:
    """Print how the batch went; its exit code."""
    for line in summary_lines(summary):
        print(shown(line))
    return 0 if summary.ok else 1


def _run_on_dbos(args: argparse.Namespace, tasks: list[Any]) -> int:
    """The tasks as durable runs on the agent's DBOS queue, at most --concurrency at once in all."""
    if args.trace:
        return _fail("--trace goes with --engine local; a durable run's record is in the run store")
    if not args.no_local_worker and not args.scripted and _real_model(args) is None:
        return 2
    from ..dbos_batch import run_queued_batch
    from .worker import end_dbos_process

    summary = _with_progress(
        len(tasks),
        lambda show: run_queued_batch(
            args.agent,
            tasks,
            concurrency=args.concurrency,
            out_dir=args.out,
            db_url=args.db,
            max_steps=args.max_steps,
            scripted=args.scripted,
            model=args.model,
            deadline_s=args.deadline,
            work=not args.no_local_worker,
            on_result=show,
        ),
    )
    return end_dbos_process(summary if isinstance(summary, int) else _summarised(summary), grace_s=30.0)


def _real_model(args: argparse.Namespace) -> Any:
    """The OpenAI-compatible backend from the environment; None (after one line) when it is not set up."""
    from ..backends.env import read_env

    env = read_env("OPENAI")
    if not (env.api_key or env.base_url):
        _fail("OPENAI_API_KEY / OPENAI_BASE_URL are not set; set them, or pass --scripted")
        return None
    from ..backends import OpenAIBackend

    backend = OpenAIBackend.from_env(model=args.model or DEFAULT_MODEL)
    if args.model:
        backend.model = args.model
    return backend


def progress_line(data: dict[str, Any]) -> str:
    """One finished task as a line: its id, status, stop reason, elapsed time, and the error if any."""
    mark = {"done": "✓", "paused": "‖"}.get(data.get("status", ""), "✗")
    line = f"{mark} {data['id']} · {data.get('stop_reason')} · {float(data.get('elapsed_s') or 0):.2f}s"
    if data.get("status") == "failed" and data.get("error"):
        line += f" · {' '.join(str(data['error']).split())[:200]}"
    return line


class _Plain:
    """Progress as plain lines (not a terminal, or rich is not installed)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, data: dict[str, Any]) -> None:
        self.count += 1
        print(shown(f"[{self.count}/{self.total}] {progress_line(data)}"), flush=True)


class _Rich:
    """Progress as a rich bar, each finished task's line printed above it."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
        )
        self.bar = self.progress.add_task("batch", total=total)

    def __enter__(self) -> _Rich:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, data: dict[str, Any]) -> None:
        from rich.text import Text

        self.progress.console.print(Text(shown(progress_line(data))))  # Text: no markup is read from it
        self.progress.advance(self.bar)


def _progress(total: int) -> Any:
    if sys.stdout.isatty():
        try:
            return _Rich(total)
        except ImportError:
            pass
    return _Plain(total)


def summary_lines(summary: Any) -> list[str]:
    """How the batch went: the counts, the tasks paused for approval, where the results are."""
    lines = [
        f"{summary.total} tasks: {summary.done} done, {summary.failed} failed, "
        f"{len(summary.paused)} paused"
        + (f" · {summary.skipped} had ended in an earlier session" if summary.skipped else "")
        + (f" ({summary.resumed} continued from checkpoints)" if summary.resumed else "")
        + f" · {summary.elapsed_s:.1f}s",
    ]
    if summary.paused:
        shown_ids = ", ".join(summary.paused[:20]) + (" ..." if len(summary.paused) > 20 else "")
        lines.append(f"paused for approval: {shown_ids} (decide them, then run the same command again)")
    lines.append(f"results: {summary.results}")
    return lines


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)
