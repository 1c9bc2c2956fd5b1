"""The ``looplet`` command line: ``python -m looplet VERB ...``.

Each verb lives in its own module with ``add_parser(subparsers)``, which
registers its arguments and sets ``func`` to a function returning the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

#: verb modules, imported when the parser is built
VERBS = ("version", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="looplet",
        description="The tool-calling loop for LLM agents.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"looplet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERBS:
        module = importlib.import_module(f".{name}", __name__)
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
