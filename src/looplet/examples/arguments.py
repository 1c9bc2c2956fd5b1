"""The examples' command line: errors in one line, and the values checked before anything runs.

A first-time user's typo (``--max-steps -1``, ``--base-url localhost:11434``)
should get one line saying what is wrong and exit 2, never a traceback or a
screenful of usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..backends.env import url_problem
from ..errors import ConfigError, LoopError

if TYPE_CHECKING:
    from ..cartridges import Cartridge
    from ..loop import Loop
    from ..presets import AgentPreset
    from ..types import RunResult

__all__ = [
    "ExampleParser",
    "step_budget",
    "whole_count",
    "seconds",
    "seconds_or_zero",
    "base_url",
    "model_name",
    "add_model_options",
    "openai_backend",
    "run_guarded",
    "open_example",
    "print_steps",
    "print_outcome",
]


class ExampleParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line: ``NAME: error: ... (see --help)``."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(prog=f"python -m looplet.examples.{name}", **kwargs)
        self.name = name

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.name}: error: {message} (see --help)\n")


def step_budget(text: str) -> int:
    """``--max-steps``: a whole number of steps, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of steps, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the step budget must be at least 1, got {value}")
    return value


def whole_count(text: str) -> int:
    """``--concurrency`` and the like: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    """``--deadline``: a positive, finite number of seconds."""
    value = _number_of_seconds(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def seconds_or_zero(text: str) -> float:
    """``--grace``: zero or more seconds, finite."""
    value = _number_of_seconds(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, got {text}")
    return value


def _number_of_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None


def base_url(text: str) -> str:
    """``--base-url``: an http(s) URL with a host, e.g. ``http://127.0.0.1:11434/v1``."""
    problem = url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable URL: {problem}")
    return text


def model_name(text: str) -> str:
    """``--model``: a non-blank model name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the model name is empty")
    return text


def openai_backend(args: argparse.Namespace, default_model: str) -> Any:
    """The OpenAI-compatible backend `add_model_options` describes (the SDK is imported here)."""
    from ..backends import OpenAIBackend

    kwargs: dict[str, Any] = {}
    if args.base_url:
        kwargs["base_url"] = args.base_url
    backend = OpenAIBackend.from_env(model=args.model or default_model, **kwargs)
    if args.model:
        backend.model = args.model  # an explicit --model wins over $OPENAI_MODEL
    return backend


def add_model_options(parser: argparse.ArgumentParser, default_model: str) -> None:
    """``--model`` and ``--base-url``, as every OpenAI-compatible example takes them."""
    parser.add_argument(
        "--model",
        type=model_name,
        default=None,
        help=f"model name (default: $OPENAI_MODEL, else {default_model})",
    )
    parser.add_argument(
        "--base-url",
        type=base_url,
        default=None,
        help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)",
    )


def run_guarded(
    name: str,
    make_llm: Callable[[], Any],
    run: Callable[[Any], int],
    setup_errors: tuple[type[Exception], ...] = (ConfigError,),
) -> int:
    """Build the model, then run; every failure is one line on stderr, never a traceback.

    Returns `run`'s exit code, 2 for a setup or loop error, 130 on Ctrl-C.
    """
    try:
        llm = make_llm()
    except setup_errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        print(f"{name}: or run with --scripted to use a scripted model", file=sys.stderr)
        return 2
    try:
        return run(llm)
    except LoopError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


# -- the repository examples: each is a cartridge, run by a command of its own --------------------


def open_example(folder: Path) -> Cartridge:
    """An example's own cartridge, opened as ``looplet run`` opens one.

    Its entrypoint gets a unique module name, its helper modules are its
    submodules (``from . import doctor``), and everything is compiled from
    source, so the command runs exactly what the cartridge would. The
    example ships the folder: running its command is the trust.

    Raises:
        CartridgeError: the folder is not a valid cartridge (the problems named).
        SkillLoadError: its code failed on import.
    """
    from ..cartridges import open_cartridge

    return open_cartridge(folder, trust=True)


def print_steps(preset: AgentPreset, llm: Any, task: str) -> Loop:
    """Run `preset`, printing each step's ``pretty()`` line as it happens; returns the finished loop."""
    loop = preset.loop(llm, task)
    for step in loop:
        print(step.pretty())
    return loop


def print_outcome(result: RunResult) -> int:
    """Print how the run stopped (with why, when not done) and its answer; return the exit code (0 or 1)."""
    from ..cli.terminal import shown

    print(shown(f"stopped: {result.stop_reason}" + (f" ({result.detail})" if not result.ok else "")))
    if result.final_answer:
        print(shown(f"answer: {result.final_answer.get('answer', result.final_answer)}"))
    return 0 if result.ok else 1
