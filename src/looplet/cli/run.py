"""``looplet run BUNDLE TASK``: run a cartridge, one ``step.pretty()`` line per step, then a summary.

    looplet run ./skills/coder "Fix the tests" --workspace .
    looplet run examples/coder/skill "Create a tiny add function with tests" --scripted --workspace /tmp/demo

Naming a cartridge to ``run`` is trusting it: its entrypoint is imported
(under a unique module name, never shadowing the host's modules) and its
``build(runtime)`` runs. Review it first with ``looplet blueprint``.

The model: ``--scripted`` uses the cartridge's ``scripted_responses`` (no key,
no network); otherwise the OpenAI-compatible endpoint in ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` / ``OPENAI_MODEL`` (or ``--model``). The run is recorded
(`ProvenanceSink`) in ``--trace-dir`` (default: ``.looplet/runs`` in the
workspace, a path the workspace tools protect) unless ``--no-trace``.

``--max-steps`` caps the cartridge's own step budget; a cartridge cannot raise it.

Exit codes: 0 when the run finished (done), 1 when it stopped otherwise,
2 for bad input or a cartridge that cannot be loaded or built, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .terminal import missing_manifest, one_line, refuse, shown

__all__ = ["add_parser", "run", "summary_lines", "DEFAULT_MODEL"]

VERB = "run"
#: Used when neither --model nor $OPENAI_MODEL names one.
DEFAULT_MODEL = "gpt-4o-mini"


def add_parser(sub: Any) -> None:
    from ..examples.arguments import model_name, step_budget

    parser = sub.add_parser(
        VERB,
        help="run a cartridge (a folder with SKILL.md and an entrypoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Optional to argparse so that a mistake in the flags is reported first; run() asks for them.
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="the cartridge's folder")
    parser.add_argument("task", nargs="?", metavar="TASK", help="what the agent should do")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path("."),
        help="where the agent works (default: the current directory)",
    )
    parser.add_argument("--max-steps", type=step_budget, default=None, metavar="N", help="cap on tool steps")
    parser.add_argument("--scripted", action="store_true", help="use the cartridge's scripted model (no key)")
    trace = parser.add_mutually_exclusive_group()
    trace.add_argument("--trace-dir", type=Path, default=None, metavar="DIR", help="record the run in DIR")
    trace.add_argument("--no-trace", action="store_true", help="do not record the run")
    parser.add_argument(
        "--model",
        type=model_name,
        default=None,
        help=f"model name (default: $OPENAI_MODEL, else {DEFAULT_MODEL})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.bundle or args.task is None:
        return _fail("name the cartridge and the task: looplet run BUNDLE TASK")
    if not args.task.strip():
        return _fail("the task is empty")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"looplet {VERB}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a cartridge's own code can raise anything: one line, never a traceback
        return _fail(one_line(exc))


def _run(args: argparse.Namespace) -> int:
    from ..cartridges import make_runtime, open_cartridge

    folder = Path(args.bundle)
    missing = missing_manifest(folder)
    if missing is not None:
        return _fail(missing)
    cartridge = open_cartridge(folder, trust=True)  # naming it on the command line is the trust
    trace_dir = None if args.no_trace else args.trace_dir
    if trace_dir is None and not args.no_trace:
        trace_dir = args.workspace / ".looplet" / "runs"
    runtime = make_runtime(
        cartridge.card,
        workspace=args.workspace,
        scripted=args.scripted,
        max_steps=args.max_steps,
        model=args.model,
        trace_dir=trace_dir,
    )
    observers: list[Any] = []
    sink = None
    if runtime.trace_dir is not None:
        from ..provenance import ProvenanceSink

        sink = ProvenanceSink(runtime.trace_dir)
        observers.append(sink)
    preset = cartridge.build(runtime, observers=observers)
    llm = cartridge.scripted_llm(runtime) if args.scripted else _real_model(args)
    if llm is None:
        return 2
    print(shown(f"cartridge: {cartridge.card.name} · workspace: {runtime.workspace}"))
    loop = preset.loop(llm, task=args.task)
    for step in loop:
        print(step.pretty())
    result = loop.result
    assert result is not None
    for line in summary_lines(result):
        print(shown(line))  # the answer is the model's text, and the model read the cartridge's
    if sink is not None:
        print(shown(f"trace: {sink.path_of(loop.state.run_id)}"))
    return 0 if result.ok else 1


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
        backend.model = args.model  # an explicit --model wins over $OPENAI_MODEL
    return backend


def summary_lines(result: Any) -> list[str]:
    """How the run ended: the stop reason (with why, when it did not finish), the counts, the answer."""
    head = f"stopped: {result.stop_reason}"
    if not result.ok and result.detail:
        head += f" ({result.detail})"
    lines = [head, f"{len(result.steps)} steps · {result.llm_calls} model calls"]
    if result.final_answer:
        answer = result.final_answer.get("answer", result.final_answer)
        lines.append(f"answer: {answer}")
    return lines


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)
