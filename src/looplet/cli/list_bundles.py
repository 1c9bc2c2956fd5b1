"""``looplet list-bundles ROOT... [--json] [--include-invalid]``: the cartridges under some folders.

    looplet list-bundles examples/coder --json

Each ROOT is a cartridge folder itself or a tree holding some: every folder
with a ``SKILL.md`` naming an entrypoint is one (a folder holding a
``SKILL.md`` is not searched further: its subfolders are its resources).
Only the Markdown is read (`looplet.skills.inspect`); nothing is imported or
run, so listing a folder from anyone is safe. Symbolic links to folders are
not followed; hidden folders, ``__pycache__`` and ``node_modules`` are
skipped.

Each cartridge is shown with its name, status, path and description. The
status is ``ok``, or ``invalid`` with its problems (a bad manifest, a path
escaping the folder, two cartridges with one name: each then names the
other). Invalid ones are left out unless ``--include-invalid``; the count of
those left out is still said. ``--json`` prints a list of objects.

Exit codes: 0 listed (even none), 2 for bad input (a ROOT that is not a folder).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .terminal import json_text, refuse, shown

__all__ = ["add_parser", "run", "find_bundles", "bundle_rows"]

VERB = "list-bundles"
#: Folders never searched for cartridges.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
#: How deep under a root the search goes.
MAX_DEPTH = 8


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        VERB,
        help="list the cartridges under folders, without importing any",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("roots", nargs="*", metavar="ROOT", help="folders to search")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--include-invalid", action="store_true", help="show invalid cartridges too")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.roots:
        return _fail("name at least one folder: looplet list-bundles ROOT...")
    for root in args.roots:
        if not Path(root).is_dir():
            return _fail(f"{root}: not a folder")
    rows = bundle_rows(find_bundles(args.roots))
    listed = [row for row in rows if args.include_invalid or row["status"] == "ok"]
    hidden = len(rows) - len(listed)
    if args.json:
        print(json_text(listed, indent=2))
    else:
        for line in _table(listed):
            print(shown(line))  # names, paths and descriptions are the folders' own text
        if not listed:
            print("no cartridges found")
    if hidden:
        print(f"{hidden} invalid cartridge(s) not shown (--include-invalid shows them)", file=sys.stderr)
    return 0


def find_bundles(roots: list[str]) -> list[Path]:
    """Every folder under `roots` holding a SKILL.md, in sorted order, each once."""
    found: dict[Path, None] = {}
    for root in roots:
        base = Path(root).resolve()
        for top, dirs, names in os.walk(base, followlinks=False):
            here = Path(top)
            if "SKILL.md" in names:
                found[here] = None
                dirs[:] = []
                continue
            depth = len(here.relative_to(base).parts)
            dirs[:] = [] if depth >= MAX_DEPTH else sorted(d for d in dirs if _searched(here / d))
    return sorted(found)


def _searched(path: Path) -> bool:
    return not (path.name.startswith(".") or path.name in SKIPPED_DIRS or path.is_symlink())


def bundle_rows(folders: list[Path]) -> list[dict[str, Any]]:
    """Name, status, path, description (and problems) of each cartridge among `folders`; skills without
    an entrypoint are not cartridges and are left out. Two cartridges with one name are both invalid."""
    from ..skills import inspect

    cards = [card for card in map(inspect, folders) if card.is_cartridge or (card.problems and _claims(card))]
    by_name: dict[str, list[Any]] = {}
    for card in cards:
        if card.name:
            by_name.setdefault(card.name, []).append(card)
    rows = []
    for card in cards:
        problems = list(card.problems)
        others = [str(o.path) for o in by_name.get(card.name, []) if o is not card]
        if others:
            problems.append(f"the name {card.name!r} is also used by {', '.join(others)}")
        rows.append(
            {
                "name": card.name or card.path.name,
                "status": "invalid" if problems else "ok",
                "path": str(card.path),
                "description": card.description,
                "tags": list(card.tags),
                "problems": problems,
            }
        )
    return rows


def _claims(card: Any) -> bool:
    """An invalid SKILL.md whose front matter could not be read may be a cartridge: list it as invalid."""
    return not card.metadata


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        lines.append(f"{row['name']}  [{row['status']}]  {row['path']}")
        if row["description"]:
            lines.append(f"    {row['description']}")
        lines += [f"    problem: {problem}" for problem in row["problems"]]
    return lines


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)
