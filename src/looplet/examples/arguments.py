"""The examples' command line: errors in one line, and the values checked before anything runs.

A first-time user's typo (``--max-steps -1``, ``--base-url localhost:11434``)
should get one line saying what is wrong and exit 2, never a traceback or a
screenful of usage.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from ..backends.env import url_problem

__all__ = ["ExampleParser", "step_budget", "base_url", "model_name"]


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
