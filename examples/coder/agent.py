"""Coder: a coding agent with bash, read, write, edit, list, glob and grep, confined to its workspace.

    python examples/coder/agent.py "Create a tiny add function with tests" --scripted
    python examples/coder/agent.py "Add a subtract function with a test" --workspace ./ws --trace runs/
    OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY=ollama OPENAI_MODEL=llama3.1 \\
        python examples/coder/agent.py "Fix the failing test" --workspace .

The agent is the cartridge in ``skill/`` (its SKILL.md and ``coder.py``),
run here the way ``python -m looplet run examples/coder/skill TASK`` runs it:
the same preset (`looplet.presets.coding_agent_preset`), the same scripted
model, the same host limits. Every path stays inside the workspace; bash
runs in bubblewrap when it can (no network, only the workspace writable),
otherwise each command is asked about on the terminal; ``done`` is refused
while the workspace's tests fail. With ``--trace DIR`` every prompt, reply,
call and result is recorded there (``python -m looplet show DIR``).

With ``--scripted``, or when neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL``
is set, a scripted model writes ``add.py`` and its tests. Otherwise the model
is the OpenAI-compatible endpoint those variables (and ``OPENAI_MODEL`` or
``--model``) name.

Exit codes: 0 when the agent finished (done, tests passing), 1 when it
stopped otherwise, 2 for a usage or setup error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from looplet import ConfigError, LoopError, MockLLMBackend
from looplet.backends.env import read_env
from looplet.cartridges import CartridgeError, CartridgeRuntime, fit_to_host, make_runtime
from looplet.examples.arguments import (
    ExampleParser,
    add_model_options,
    open_example,
    openai_backend,
    print_outcome,
    print_steps,
    run_guarded,
    step_budget,
)
from looplet.skills import inspect
from looplet.workspace import WorkspaceError

NAME = "coder"
SKILL = Path(__file__).resolve().parent / "skill"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_WORKSPACE = Path("coder_workspace")
DEFAULT_TASK = "Create a tiny add function with tests"


def load_skill() -> ModuleType:
    """The cartridge's entrypoint, opened as ``looplet run`` opens it (nothing of the host is shadowed)."""
    return open_example(SKILL).module


def runtime_for(args: argparse.Namespace) -> CartridgeRuntime:
    options: dict[str, Any] = {"sandbox": args.sandbox, "allow_bash": args.allow_bash}
    if args.test_command:
        options["test_command"] = args.test_command
    return make_runtime(
        inspect(SKILL),
        workspace=args.workspace,
        scripted=args.scripted,
        max_steps=args.max_steps,
        model=args.model,
        trace_dir=args.trace,
        options=options,
    )


def make_llm(skill: ModuleType, runtime: CartridgeRuntime, args: argparse.Namespace) -> Any:
    """The scripted model unless a real one is asked for and configured."""
    if args.scripted:
        return MockLLMBackend(skill.scripted_responses(runtime))
    if not (read_env("OPENAI").api_key or read_env("OPENAI").base_url or args.base_url):
        print(f"{NAME}: OPENAI_API_KEY / OPENAI_BASE_URL are not set: using the scripted model")
        return MockLLMBackend(skill.scripted_responses(runtime))
    return openai_backend(args, DEFAULT_MODEL)


def run_agent(llm: Any, skill: ModuleType, runtime: CartridgeRuntime, task: str) -> int:
    observers: list[Any] = []
    if runtime.trace_dir is not None:
        from looplet.provenance import ProvenanceSink

        observers.append(ProvenanceSink(runtime.trace_dir))
    preset = fit_to_host(skill.build(runtime), runtime, observers=observers)
    print(f"workspace: {runtime.workspace}")
    print(preset.description)
    loop = print_steps(preset, llm, task)
    assert loop.result is not None
    code = print_outcome(loop.result)
    for sink in observers:
        where = sink.path_of(loop.state.run_id)
        print(f"trace: {where}\n  python -m looplet show {shlex.quote(str(where))}")
    return code


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ExampleParser(NAME, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.prog = "python examples/coder/agent.py"
    parser.add_argument("task", nargs="?", default=DEFAULT_TASK, metavar="TASK", help="what to do")
    parser.add_argument("--scripted", action="store_true", help="use the scripted model (no key needed)")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=DEFAULT_WORKSPACE,
        help=f"the directory the agent works in, created if missing (default: ./{DEFAULT_WORKSPACE})",
    )
    parser.add_argument("--trace", type=Path, default=None, metavar="DIR", help="record the run in DIR")
    parser.add_argument("--max-steps", type=step_budget, default=None, help="cap on tool steps (default 30)")
    parser.add_argument(
        "--test-command", default=None, help="how the tests run (default: pytest, else unittest)"
    )
    parser.add_argument(
        "--sandbox", choices=["auto", "bwrap", "none"], default="auto", help="where bash runs"
    )
    parser.add_argument(
        "--allow-bash", action="store_true", help="without a sandbox, run bash without asking"
    )
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if not args.task.strip():
        parser.error("the task is empty")
    if args.test_command is not None and not shlex.split(args.test_command):
        parser.error("--test-command is empty")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        skill = load_skill()
        runtime = runtime_for(args)
    except (CartridgeError, LoopError, OSError) as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2

    def run(llm: Any) -> int:
        try:
            return run_agent(llm, skill, runtime, args.task)
        except (OSError, WorkspaceError) as exc:  # the workspace or trace directory cannot be used
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2

    return run_guarded(NAME, lambda: make_llm(skill, runtime, args), run, (ConfigError, ImportError))


if __name__ == "__main__":
    sys.exit(main())
