"""Git detective: repository health from git history, as a report.

    python examples/git_detective/agent.py . --scripted
    OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY=ollama OPENAI_MODEL=llama3.1 \\
        python examples/git_detective/agent.py /path/to/repo

The agent is the cartridge in ``skill/`` (SKILL.md and ``detective.py``), run
here as ``python -m looplet run examples/git_detective/skill TASK --workspace
REPO`` runs it. It reads the history through five tools (overview,
contributors and bus factor, hotspots, files changed together, recent
activity), each a ``git`` argv list that cannot run the repository's own
programs, then gives its verdict; the report (Markdown) is printed at the end
and, with ``--report FILE``, written there.

With ``--scripted``, or when neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL``
is set, a scripted model calls each tool once and writes its verdict from
their results.

Exit codes: 0 when the agent finished, 1 when it stopped otherwise, 2 for a
usage or setup error (not a git repository, no git), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from looplet import ConfigError, FunctionBackend, LoopError, RunResult
from looplet.backends.env import read_env
from looplet.cartridges import CartridgeError, CartridgeRuntime, fit_to_host, make_runtime
from looplet.examples.arguments import (
    ExampleParser,
    add_model_options,
    open_example,
    openai_backend,
    print_steps,
    run_guarded,
    step_budget,
)
from looplet.skills import inspect

NAME = "git_detective"
SKILL = Path(__file__).resolve().parent / "skill"
DEFAULT_MODEL = "gpt-4o-mini"
TASK = "How healthy is this repository? Gather the evidence, then give your verdict."


def load_skill() -> ModuleType:
    """The cartridge's entrypoint, opened as ``looplet run`` opens it (nothing of the host is shadowed)."""
    return open_example(SKILL).module


def make_llm(skill: ModuleType, runtime: CartridgeRuntime, args: argparse.Namespace) -> Any:
    """The scripted model unless a real one is asked for and configured."""
    scripted = FunctionBackend(skill.scripted_responses(runtime))
    if args.scripted:
        return scripted
    if not (read_env("OPENAI").api_key or read_env("OPENAI").base_url or args.base_url):
        print(f"{NAME}: OPENAI_API_KEY / OPENAI_BASE_URL are not set: using the scripted model")
        return scripted
    return openai_backend(args, DEFAULT_MODEL)


def report(result: RunResult, text: str, out: Path | None) -> int:
    print(f"stopped: {result.stop_reason}" + (f" ({result.detail})" if not result.ok else ""))
    print()
    print(text, end="")
    if out is not None:
        out.write_text(text, encoding="utf-8")
        print(f"\nreport written to {out}")
    return 0 if result.ok else 1


def run_agent(llm: Any, skill: ModuleType, runtime: CartridgeRuntime, args: argparse.Namespace) -> int:
    observers: list[Any] = []
    if runtime.trace_dir is not None:
        from looplet.provenance import ProvenanceSink

        observers.append(ProvenanceSink(runtime.trace_dir))
    preset = fit_to_host(skill.build(runtime), runtime, observers=observers)
    print(preset.description)
    loop = print_steps(preset, llm, args.task)
    assert loop.result is not None
    (health,) = [h for h in preset.hooks if isinstance(h, skill.HealthReport)]
    code = report(loop.result, health.text, args.report)
    for sink in observers:
        where = sink.path_of(loop.state.run_id)
        print(f"trace: {where}\n  python -m looplet show {shlex.quote(str(where))}")
    return code


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ExampleParser(NAME, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.prog = "python examples/git_detective/agent.py"
    parser.add_argument("repo", type=Path, metavar="REPO", help="a git repository (its work tree)")
    parser.add_argument("--scripted", action="store_true", help="use the scripted model (no key needed)")
    parser.add_argument("--task", default=TASK, help="what to ask the detective")
    parser.add_argument(
        "--report", type=Path, default=None, metavar="FILE", help="also write the report here"
    )
    parser.add_argument("--trace", type=Path, default=None, metavar="DIR", help="record the run in DIR")
    parser.add_argument("--max-steps", type=step_budget, default=None, help="cap on tool steps (default 12)")
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if not args.repo.is_dir():
        parser.error(f"{args.repo} is not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        skill = load_skill()
    except (CartridgeError, LoopError, OSError) as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    try:
        runtime = make_runtime(
            inspect(SKILL),
            workspace=args.repo,
            scripted=args.scripted,
            max_steps=args.max_steps,
            model=args.model,
            trace_dir=args.trace,
        )
        skill.GitRepo(runtime.workspace)  # not a repository, or no git: say so before any model call
    except (CartridgeError, OSError, skill.GitError) as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2

    def run(llm: Any) -> int:
        try:
            return run_agent(llm, skill, runtime, args)
        except (OSError, skill.GitError) as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2

    return run_guarded(NAME, lambda: make_llm(skill, runtime, args), run, (ConfigError, ImportError))


if __name__ == "__main__":
    sys.exit(main())
