"""The first agent on a local model: greet two people through Ollama (or any OpenAI-compatible server).

python -m looplet.examples.ollama_hello                    # Ollama at 127.0.0.1:11434, llama3.1
python -m looplet.examples.ollama_hello --model qwen2.5    # another pulled model
python -m looplet.examples.ollama_hello --base-url http://127.0.0.1:8000/v1 --model my-model   # vLLM, ...
python -m looplet.examples.ollama_hello --scripted         # no server needed

Before the first run: ``ollama pull llama3.1`` (and ``ollama serve`` if it is not running).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from looplet import LLMError, MockLLMBackend, RunResult
from looplet.examples.arguments import ExampleParser, base_url, model_name, run_guarded, step_budget
from looplet.examples.hello_world import SCRIPT, run_and_report

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"
DEFAULT_MODEL = "llama3.1"


def make_llm(args: argparse.Namespace) -> Any:
    if args.scripted:
        return MockLLMBackend(responses=SCRIPT)
    from looplet import OpenAIBackend

    # Ollama ignores the key, but the SDK wants one; a real key in the environment is used if set.
    key = os.environ.get("OPENAI_API_KEY") or "ollama"
    return OpenAIBackend(args.model, base_url=args.base_url, api_key=key)


def hint(result: RunResult, base_url: str, model: str) -> str | None:
    """What to try when the run failed because nothing answered, or the model is unknown."""
    error = result.error
    if not isinstance(error, LLMError):
        return None
    if error.kind == "connection":
        return f"nothing answered at {base_url}; is Ollama running (`ollama serve`)?"
    if error.status == 404:
        return f"the server does not know {model!r}; pull it first (`ollama pull {model}`)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = ExampleParser("ollama_hello", description=__doc__)
    parser.add_argument("--scripted", action="store_true", help="use a scripted model (no server needed)")
    parser.add_argument(
        "--base-url", type=base_url, default=DEFAULT_BASE_URL, help=f"endpoint (default {DEFAULT_BASE_URL})"
    )
    parser.add_argument(
        "--model", type=model_name, default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--max-steps", type=step_budget, default=5, help="step budget, at least 1 (default 5)"
    )
    args = parser.parse_args(argv)

    def run(llm: Any) -> int:
        result = run_and_report(llm, args.max_steps)
        advice = hint(result, args.base_url, args.model)
        if advice:
            print(f"ollama_hello: {advice}", file=sys.stderr)
        return 0 if result.ok else 1

    return run_guarded("ollama_hello", lambda: make_llm(args), run)


if __name__ == "__main__":
    sys.exit(main())
