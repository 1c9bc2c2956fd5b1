"""``looplet package MODULE:FACTORY OUT_DIR --name N --description D [--tag T]...``: a factory as a cartridge.

    looplet package my_agent:build ./skills/my-agent --name my-agent --description "Run my agent."

MODULE is a single-file Python module found on ``sys.path`` the way
``import MODULE`` would find it (the current directory first), FACTORY a
function in it returning an `AgentPreset`, taking the `CartridgeRuntime`
or nothing. The cartridge written to OUT_DIR holds:

- ``SKILL.md``: the name, description and tags, ``entrypoint: agent.py``, and
  the module's docstring as the instructions;
- ``agent.py``: the module's source unchanged, then (unless FACTORY is
  already ``build(runtime)``) a ``build(runtime)`` that calls FACTORY.

The module is read, never imported: its syntax is checked and FACTORY must
be defined at its top level. A module with relative imports is refused (it
would not work outside its package). Other modules it imports must be
installed wherever the cartridge runs. A ``scripted_responses`` defined in the
module makes the cartridge runnable with ``--scripted``.

OUT_DIR must not exist (an empty folder is fine); it is written whole or not
at all. Exit codes: 0 written, 2 for bad input.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from .terminal import refuse

__all__ = ["add_parser", "run", "find_module_file", "entrypoint_source", "NAME_PATTERN"]

VERB = "package"
#: A cartridge's name, as the cartridge format (and Claude Agent Skills) allow it.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_DESCRIPTION_CHARS = 1024
MAX_TAG_CHARS = 64


class PackageError(Exception):
    """The factory cannot be packaged: the message says why."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        VERB,
        help="turn a Python factory (MODULE:FACTORY) into a runnable cartridge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("factory", nargs="?", metavar="MODULE:FACTORY", help="e.g. my_agent:build")
    parser.add_argument("out", nargs="?", metavar="OUT_DIR", help="the cartridge folder to create")
    parser.add_argument("--name", default=None, help="the cartridge's name: a-z, 0-9 and '-', up to 64")
    parser.add_argument("--description", default=None, help="one line saying what the agent does")
    parser.add_argument("--tag", action="append", default=[], metavar="T", help="a tag (repeat for more)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cartridges import CartridgeError
    from ..frontmatter import SkillFormatError

    if not args.factory or not args.out:
        return _fail(
            "name the factory and the folder: looplet package MODULE:FACTORY OUT_DIR --name N --description D"
        )
    try:
        module, factory = _split_factory(args.factory)
        _check_manifest(args.name, args.description, args.tag)
        path = find_module_file(module)
        source = path.read_text(encoding="utf-8")
        written = _write(args, module, factory, source)
    except (PackageError, CartridgeError, SkillFormatError) as exc:
        return _fail(str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{args.factory}: cannot be read ({exc})")
    print(f"wrote cartridge {args.name!r} to {written} (from {path})")
    return 0


def _split_factory(spec: str) -> tuple[str, str]:
    module, colon, factory = spec.partition(":")
    if not colon or not factory:
        raise PackageError(f"{spec!r}: expected MODULE:FACTORY, e.g. my_agent:build")
    if not all(_IDENTIFIER.fullmatch(part) for part in module.split(".")):
        raise PackageError(f"{module!r} is not a module name")
    if not _IDENTIFIER.fullmatch(factory):
        raise PackageError(f"{factory!r} is not a function name")
    return module, factory


def _check_manifest(name: str | None, description: str | None, tags: list[str]) -> None:
    if not name:
        raise PackageError("--name is required (a-z, 0-9 and '-', up to 64 characters)")
    if not NAME_PATTERN.fullmatch(name):
        raise PackageError(
            f"--name {name!r}: use a-z, 0-9 and '-' (starting with a letter or digit), up to 64"
        )
    if not description or not description.strip():
        raise PackageError("--description is required: one line saying what the agent does")
    if "\n" in description or len(description) > MAX_DESCRIPTION_CHARS:
        raise PackageError(f"--description must be one line of at most {MAX_DESCRIPTION_CHARS} characters")
    for tag in tags:
        if not tag.strip() or len(tag) > MAX_TAG_CHARS or "\n" in tag:
            raise PackageError(f"--tag {tag!r}: a tag is one short line (at most {MAX_TAG_CHARS} characters)")


def find_module_file(module: str) -> Path:
    """The source file `import module` would load, found without importing anything (parents included)."""
    search: list[str] | None = [os.getcwd(), *sys.path]  # as `python -m` sees it, for the script too
    spec = None
    for depth, part in enumerate(module.split(".")):
        spec = PathFinder.find_spec(part, search)
        if spec is None:
            where = "sys.path (the current directory first)" if depth == 0 else "its package"
            raise PackageError(f"module {module!r} not found on {where}")
        search = list(spec.submodule_search_locations or [])
    assert spec is not None
    if spec.submodule_search_locations is not None:
        raise PackageError(f"{module!r} is a package; package a single module file (MODULE:FACTORY)")
    if not spec.origin or not spec.origin.endswith(".py"):
        raise PackageError(f"{module!r} is not a Python source file ({spec.origin})")
    return Path(spec.origin)


def _factory_arity(tree: ast.Module, factory: str, module: str) -> int | None:
    """How many positional arguments FACTORY requires (None when it is not a plain def)."""
    found: int | None = None
    defined = False
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            raise PackageError(
                f"{module!r} uses a relative import (line {node.lineno}); it would not run as a cartridge"
            )
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == factory:
            if isinstance(node, ast.AsyncFunctionDef):
                raise PackageError(f"{module}:{factory} is async; build(runtime) must return an AgentPreset")
            positional = node.args.posonlyargs + node.args.args
            found, defined = len(positional) - len(node.args.defaults), True
        elif _binds(node, factory):
            found, defined = None, True
    if not defined:
        raise PackageError(f"{module!r} defines no {factory!r} at its top level")
    return found


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign | ast.AugAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return isinstance(node, ast.ClassDef) and node.name == name


def entrypoint_source(module: str, factory: str, source: str) -> str:
    """``agent.py``: the module's source, then a ``build(runtime)`` calling FACTORY when it is not one.

    Raises:
        PackageError: the source does not parse, FACTORY is missing, async, or needs more than one argument.
    """
    try:
        tree = ast.parse(source, filename=f"{module}.py")
    except SyntaxError as exc:
        raise PackageError(f"{module!r} does not parse: line {exc.lineno}: {exc.msg}") from None
    arity = _factory_arity(tree, factory, module)
    if arity is not None and arity > 1:
        raise PackageError(f"{module}:{factory} needs {arity} arguments; it may take the runtime or nothing")
    if factory == "build" and arity == 1:
        return source
    call = "_packaged_factory(runtime)" if arity != 0 else "_packaged_factory()"
    return (
        source.rstrip("\n")
        + "\n\n\n# -- added by `looplet package`: the cartridge's entry --\n"
        + f"_packaged_factory = {factory}\n\n\n"
        + "def build(runtime):\n"
        + f'    """The cartridge\'s entry: {module}:{factory}."""\n'
        + f"    return {call}\n"
    )


def _instructions(source: str, module: str, factory: str) -> str:
    try:
        docstring = ast.get_docstring(ast.parse(source))
    except SyntaxError:
        docstring = None
    origin = f"Packaged from {module}:{factory} by `looplet package`."
    return f"{docstring.strip()}\n\n{origin}\n" if docstring else f"{origin}\n"


def _write(args: argparse.Namespace, module: str, factory: str, source: str) -> Path:
    from ..cartridges import atomic_folder
    from ..frontmatter import render_front_matter
    from ..skills import inspect

    entry = entrypoint_source(module, factory, source)
    manifest: dict[str, Any] = {"name": args.name, "description": args.description.strip()}
    if args.tag:
        manifest["tags"] = list(args.tag)
    manifest["entrypoint"] = "agent.py"
    with atomic_folder(args.out) as work:
        (work / "agent.py").write_text(entry, encoding="utf-8")
        (work / "SKILL.md").write_text(
            render_front_matter(manifest, _instructions(source, module, factory)), encoding="utf-8"
        )
        card = inspect(work)
        if card.problems:
            raise PackageError(f"the cartridge would not be valid: {'; '.join(card.problems)}")
    return Path(args.out)


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)
