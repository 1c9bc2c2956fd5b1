"""``looplet eval TRACES [--evals PATH] [--cases PATH] [--threshold X] [--json]``: grade recorded runs.

TRACES is a provenance run directory or a root holding several (each run is
graded). The evals are the ``eval_*`` functions found in ``--evals`` (a file or
a folder; may be repeated), or the built-in ones (`looplet.evals.BUILTIN_EVALS`)
without it. With ``--cases``, each run is matched to the case whose task
equals the run's, so graders can compare with ``expected``.

Prints one row per eval (runs, passed, mean score) and the failures. Exits 0
when every required eval passed on every run at the threshold, 1 when one did
not, 2 on bad input (with a one-line reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

USAGE = "looplet eval TRACES [--evals PATH] [--cases PATH] [--threshold X] [--json]"


class BadInput(Exception):
    """What makes the verb exit 2; the message is the one-line reason."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "eval",
        usage=USAGE,
        help="grade recorded runs with eval_* functions; exit 1 below the threshold",
        description="Grade recorded runs (provenance directories) with eval_* functions.",
    )
    # optional here so that a mistake in the options is reported as such, not as a missing TRACES
    parser.add_argument("traces", nargs="?", metavar="TRACES", help="a run directory or a root of runs")
    parser.add_argument(
        "--evals",
        action="append",
        metavar="PATH",
        help="a file or folder of eval_* functions (repeatable; default: the built-in evals)",
    )
    parser.add_argument("--cases", metavar="PATH", help="eval cases (.json/.jsonl) to match runs to by task")
    parser.add_argument(
        "--threshold",
        default="1.0",
        metavar="X",
        help="the score in [0, 1] a numeric result must reach (default 1.0)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        outcome = _grade(args)
    except BadInput as exc:
        print(f"looplet eval: {exc}", file=sys.stderr)
        return 2
    reports, summaries, threshold, evals_from = outcome
    ok = all(s.ok for s in summaries)
    if args.json:
        document = {
            "ok": ok,
            "threshold": threshold,
            "evals_from": evals_from,
            "evals": [s.to_dict() for s in summaries],
            "runs": [r.to_dict() for r in reports],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _print_text(reports, summaries, threshold, evals_from, ok)
    return 0 if ok else 1


def _grade(args: argparse.Namespace) -> tuple[list[Any], list[Any], float, str]:
    from .. import evals as ev

    if args.traces is None:
        raise BadInput("give TRACES, a run directory or a root of runs (see --help)")
    threshold = _threshold(args.threshold)
    runs = _runs(Path(args.traces))
    try:
        functions = ev.collect_evals(args.evals) if args.evals else list(ev.BUILTIN_EVALS)
        cases = ev.load_cases(args.cases) if args.cases else []
    except (ev.EvalInputError, OSError) as exc:
        raise BadInput(_one_line(exc)) from None
    if not functions:
        raise BadInput(f"no eval_* functions in {', '.join(args.evals)}")
    reports = []
    for recorded in runs:
        case = next((c for c in cases if c.task == recorded.task), None)
        ctx = ev.EvalContext.from_recorded(recorded, case=case)
        reports.append(ev.run_evals(ctx, functions, threshold=threshold))
    evals_from = ", ".join(args.evals) if args.evals else "built-in"
    return reports, ev.summarize(reports), threshold, evals_from


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"--threshold must be a number between 0 and 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise BadInput(f"--threshold must be a number between 0 and 1, not {text!r}")
    return value


def _runs(path: Path) -> list[Any]:
    """Every recorded run under `path`, read; a run that cannot be read is bad input."""
    from .. import provenance

    if not path.exists():
        raise BadInput(f"no such file or directory: {path}")
    if not path.is_dir():
        raise BadInput(f"{path} is not a directory of recorded runs")
    try:
        dirs = provenance.run_dirs(path)
    except Exception as exc:
        raise BadInput(_one_line(exc)) from None
    if not dirs:
        raise BadInput(f"no recorded runs in {path} (expected run_* directories with a manifest.json)")
    runs = []
    for run_dir in dirs:
        try:
            runs.append(provenance.read_run(run_dir))
        except Exception as exc:  # whatever the reader says is wrong with it, in one line
            raise BadInput(f"{run_dir}: {_one_line(exc)}") from None
    return runs


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _print_text(
    reports: list[Any], summaries: list[Any], threshold: float, evals_from: str, ok: bool
) -> None:
    from ..evals import format_table

    runs = f"{len(reports)} run{'s' if len(reports) != 1 else ''}"
    print(f"{runs}, {len(summaries)} evals ({evals_from}), threshold {threshold:g}")
    print(format_table(summaries))
    problems = [(report, result) for report in reports for result in report.results if not result.passed]
    if problems:
        print("not passed:")
        for report, result in problems:
            print(f"  {report.run_id or '?'}: {result.line()}")
    required = [s for s in summaries if s.required]
    failing = [s for s in required if not s.ok]
    if ok:
        print(f"ok: {len(required)} required evals passed on every run")
    else:
        print(f"FAIL: {len(failing)} of {len(required)} required evals did not pass on every run")
