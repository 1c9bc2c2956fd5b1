"""The first agent: greet two people, then finish.

python -m looplet.examples.hello_world --scripted      # no model, no key
python -m looplet.examples.hello_world                 # OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_MODEL
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from looplet import BaseToolRegistry, ConfigError, MockLLMBackend, RunResult, composable_loop
from looplet.examples.arguments import (
    ExampleParser,
    add_model_options,
    openai_backend,
    run_guarded,
    step_budget,
)
from looplet.tools import register_done_tool

TASK = {"goal": "Greet Alice and Bob, then finish."}
#: Used when neither --model nor $OPENAI_MODEL names one.
DEFAULT_MODEL = "gpt-4o-mini"

#: What a well-behaved model answers, for --scripted runs.
SCRIPT = [
    '{"tool": "greet", "args": {"name": "Alice"}, "reasoning": "greet the first person"}',
    '{"tool": "greet", "args": {"name": "Bob"}, "reasoning": "then the second"}',
    '{"tool": "done", "args": {"answer": "Greeted Alice and Bob."}}',
]


def build_tools() -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict[str, str]:
        """Greet someone by name.

        Args:
            name: who to greet.
        """
        return {"greeting": f"Hello, {name}!"}

    register_done_tool(tools)
    return tools


def make_llm(args: argparse.Namespace) -> Any:
    if args.scripted:
        return MockLLMBackend(responses=SCRIPT)
    return openai_backend(args, DEFAULT_MODEL)


def run_and_report(llm: Any, max_steps: int) -> RunResult:
    """Run the greeter, printing each step and how the run ended."""
    loop = composable_loop(llm=llm, tools=build_tools(), task=TASK, max_steps=max_steps)
    for step in loop:
        print(step.pretty())
    result = loop.result
    assert result is not None
    print(f"stopped: {result.stop_reason}" + (f" ({result.detail})" if not result.ok else ""))
    if result.final_answer:
        print(f"answer: {result.final_answer.get('answer', result.final_answer)}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = ExampleParser("hello_world", description=__doc__)
    parser.add_argument("--scripted", action="store_true", help="use a scripted model (no key needed)")
    parser.add_argument(
        "--max-steps", type=step_budget, default=5, help="step budget, at least 1 (default 5)"
    )
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)
    return run_guarded(
        "hello_world",
        lambda: make_llm(args),
        lambda llm: 0 if run_and_report(llm, args.max_steps).ok else 1,
        (ConfigError, ImportError),
    )


if __name__ == "__main__":
    sys.exit(main())
