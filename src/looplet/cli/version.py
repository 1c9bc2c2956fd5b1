"""``looplet version``: print the installed version."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("version", help="print looplet's version")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import __version__

    print(f"looplet {__version__}")
    return 0
