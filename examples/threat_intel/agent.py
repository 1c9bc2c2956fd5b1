"""Threat intel: a local-first security briefing from offline feeds.

    python examples/threat_intel/agent.py --scripted                 # no model, no key
    python examples/threat_intel/agent.py --feeds ./my-feeds         # OPENAI_API_KEY / _BASE_URL / _MODEL

The analyst reads the feed folder (``skill/feeds/`` unless --feeds names
another, and nothing outside it): text advisories, a CVE feed, an ATT&CK
technique table and the inventory of what we run. It extracts the
indicators of compromise (defanged ones too), looks up and rates every CVE
the advisories mention (the rule is printed with each rating), maps the
activity to ATT&CK, and prints a briefing at the end, computed from what the
tools found.

The same agent is the cartridge ``examples/threat_intel/skill/`` (``python
-m looplet run examples/threat_intel/skill TASK``); this command imports its
code from there.

Exit codes: 0 when the briefing was made, 1 when the run stopped for another
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

NAME = "threat_intel"
HERE = Path(__file__).resolve().parent
#: Used when neither --model nor $OPENAI_MODEL names one.
DEFAULT_MODEL = "gpt-4o-mini"


cartridge = open_example(HERE / "skill").module
intel: Any = cartridge.intel


def make_llm(args: argparse.Namespace) -> Any:
    if args.scripted:
        return FunctionBackend(intel.scripted_reply)
    return openai_backend(args, DEFAULT_MODEL)


def brief(llm: Any, feeds: Path, max_steps: int, task: str) -> int:
    """Run the analyst over `feeds`, printing each step, how it ended, and the briefing."""
    preset, briefing = intel.build_preset(feeds, max_steps=max_steps)
    result = print_steps(preset, llm, task).result
    assert result is not None
    code = print_outcome(result)
    print()
    print(briefing.render())
    return code


def feed_dir(text: str) -> Path:
    """--feeds: an existing directory."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = ExampleParser(NAME, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.prog = "python examples/threat_intel/agent.py"
    parser.add_argument("--scripted", action="store_true", help="use a scripted model (no key needed)")
    parser.add_argument(
        "--feeds", type=feed_dir, default=intel.FEEDS, help="the feed folder (default: the shipped fixtures)"
    )
    parser.add_argument(
        "--max-steps", type=step_budget, default=25, help="step budget, at least 1 (default 25)"
    )
    parser.add_argument(
        "--task", default=intel.TASK, help="what to ask the analyst (default: a full briefing)"
    )
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)

    def run(llm: Any) -> int:
        try:
            return brief(llm, args.feeds, args.max_steps, args.task)
        except intel.IntelError as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2

    return run_guarded(NAME, lambda: make_llm(args), run, (ConfigError, ImportError))


if __name__ == "__main__":
    sys.exit(main())
