"""Dependency Doctor: audit a project's dependency files and print a report card.

    python examples/dep_doctor/agent.py examples/dep_doctor/demo_project --scripted   # no model, no key
    OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY=ollama OPENAI_MODEL=llama3.1 \\
        python examples/dep_doctor/agent.py /path/to/project

The agent finds requirements*.txt, pyproject.toml and package.json files in
PROJECT_DIR (and reads nothing outside it), parses them, grades every
dependency for security, license and maintenance against the offline tables
in ``skill/data/``, and prints a report card at the end. You watch every
evidence-gathering step as it happens; the card is computed from what the
tools found, not from what the model says.

The same agent is the cartridge ``examples/dep_doctor/skill/`` (``python -m
looplet run examples/dep_doctor/skill TASK --workspace PROJECT_DIR``); this
command imports its code from there.

Exit codes: 0 when the audit finished, 1 when the run stopped for another
reason, 2 for a usage or setup error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looplet import ConfigError, FunctionBackend
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

NAME = "dep_doctor"
HERE = Path(__file__).resolve().parent
#: Used when neither --model nor $OPENAI_MODEL names one.
DEFAULT_MODEL = "gpt-4o-mini"


cartridge = open_example(HERE / "skill").module
doctor: Any = cartridge.doctor


def make_llm(args: argparse.Namespace) -> Any:
    if args.scripted:
        return FunctionBackend(doctor.scripted_reply)
    return openai_backend(args, DEFAULT_MODEL)


def audit(llm: Any, project: Path, max_steps: int, task: str) -> int:
    """Run the doctor on `project`, printing each step, how it ended, and the report card."""
    preset, record = doctor.build_preset(project, max_steps=max_steps)
    result = print_steps(preset, llm, task).result
    assert result is not None
    code = print_outcome(result)
    print()
    print(record.card())
    return code


def project_dir(text: str) -> Path:
    """PROJECT_DIR: an existing directory."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = ExampleParser(NAME, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.prog = "python examples/dep_doctor/agent.py"
    parser.add_argument("project", type=project_dir, metavar="PROJECT_DIR", help="the project to audit")
    parser.add_argument("--scripted", action="store_true", help="use a scripted model (no key needed)")
    parser.add_argument(
        "--max-steps", type=step_budget, default=20, help="step budget, at least 1 (default 20)"
    )
    parser.add_argument("--task", default=doctor.TASK, help="what to ask the agent (default: a full audit)")
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)
    return run_guarded(
        NAME,
        lambda: make_llm(args),
        lambda llm: audit(llm, args.project, args.max_steps, args.task),
        (ConfigError, ImportError),
    )


if __name__ == "__main__":
    sys.exit(main())
