"""The ``looplet`` command line: ``python -m looplet VERB ...``.

Each verb lives in its own module with ``add_parser(subparsers)``, which
registers its arguments and sets ``func`` to a function returning the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main", "build_parser"]

#: verbs, imported when the parser is built; a verb's module is its name with "-" as "_"
VERBS = (
    "version",
    "doctor",
    "show",
    "eval",
    "diff",
    "run",
    "blueprint",
    "export-code",
    "package",
    "wrap-claude-skill",
    "list-bundles",
    "batch",
    "worker",
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake told in one line: what was wrong, and where the usage is.

    The verbs' parsers are made by `add_subparsers`, which uses this class too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="looplet",
        description="The tool-calling loop for LLM agents.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"looplet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERBS:
        module = importlib.import_module(f".{name.replace('-', '_')}", __name__)
        module.add_parser(sub)
    for verb_parser in sub.choices.values():
        # so an argument the verb does not know is reported with the verb's usage (see main)
        verb_parser.set_defaults(verb_parser=verb_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the process exit code.

    A mistake in a verb's arguments is reported with that verb's usage
    (``usage: looplet doctor ...``), not the top-level one: argparse checks
    a verb's own options inside the verb's parser, but leaves arguments it
    does not know to the top-level parser, which would show its own usage.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    verb_parser: argparse.ArgumentParser = getattr(args, "verb_parser", None) or parser
    if unknown:
        verb_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
