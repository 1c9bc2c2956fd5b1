"""``looplet wrap-claude-skill SRC OUT_DIR``: a Claude Agent Skill folder as a runnable cartridge.

    looplet wrap-claude-skill ./claude-skills/pdf ./skills/pdf
    looplet run ./skills/pdf "Summarise report.pdf" --workspace .

SRC is a Claude Agent Skill: a folder with a ``SKILL.md`` (front matter with
``name`` and ``description``, the instructions as its body) and, optionally,
scripts and resources. OUT_DIR receives a copy of every file of it (caches
and version-control folders left out), with two changes:

- ``SKILL.md`` gains ``entrypoint: looplet_entry.py`` (and ``tags:
  [claude-skill]`` when it has no tags); everything else in it is kept as
  written, so the instructions are the skill's own;
- ``looplet_entry.py`` is added: the agent the cartridge builds.

That agent is deliberately conservative, because the skill's text is
instructions the model follows and its scripts are code: it may read, list,
glob and grep the workspace but not write to it; it may list and read the
skill's own files; and it may run a file from the skill's ``scripts/``
folder (python3 for ``.py``, bash for ``.sh``), with an argument list (never
a shell string), in the workspace, with a time limit and an environment
without secrets, only after a person approves each run on the terminal (no
terminal means no). The skill's instructions follow a short preamble in the
system prompt. ``--scripted`` lists and reads the skill's files and
finishes, to check the cartridge loads and runs.

Nothing of SRC runs while wrapping. A symlink or special file in SRC, a
``SKILL.md`` that does not read, or one that already names an entrypoint is
refused. OUT_DIR must not exist (an empty folder is fine); it is written
whole or not at all. Exit codes: 0 written, 2 for bad input.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .terminal import refuse

__all__ = ["add_parser", "run", "wrap_claude_skill", "ENTRYPOINT_NAME", "ENTRYPOINT_SOURCE"]

VERB = "wrap-claude-skill"
ENTRYPOINT_NAME = "looplet_entry.py"
#: Left out of the copy: interpreter caches and version-control folders.
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn"})
_CLOSING = re.compile(r"^---[ \t]*\r?$")


class WrapError(Exception):
    """The folder cannot be wrapped: the message says why."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        VERB,
        help="turn a Claude Agent Skill folder into a runnable cartridge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", nargs="?", metavar="SRC", help="the Claude Agent Skill folder (with SKILL.md)")
    parser.add_argument("out", nargs="?", metavar="OUT_DIR", help="the cartridge folder to create")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cartridges import CartridgeError
    from ..frontmatter import SkillFormatError

    if not args.src or not args.out:
        return _fail("name the skill folder and the cartridge folder: looplet wrap-claude-skill SRC OUT_DIR")
    try:
        card = wrap_claude_skill(args.src, args.out)
    except (WrapError, CartridgeError, SkillFormatError) as exc:
        return _fail(str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{args.src}: cannot be read ({exc})")
    print(f"wrote cartridge {card.name!r} to {args.out} (from {args.src})")
    print(f"  looplet run {args.out} TASK --workspace DIR")
    return 0


def wrap_claude_skill(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Any:
    """Copy the skill at `src` into a new cartridge folder `out`; returns the cartridge's `SkillCard`.

    Raises:
        WrapError: `src` is not a wrappable skill (the message says why).
        CartridgeError: `out` exists, or cannot be written.
    """
    from ..cartridges import atomic_folder
    from ..frontmatter import parse_front_matter
    from ..skills import inspect

    source = Path(src)
    manifest = source / "SKILL.md"
    if not source.is_dir() or not manifest.is_file() or manifest.is_symlink():
        raise WrapError(f"{source}: no SKILL.md there (a Claude Agent Skill is a folder with SKILL.md)")
    text = manifest.read_text(encoding="utf-8")
    data, _body = parse_front_matter(text)
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise WrapError(f"{manifest}: the front matter has no {key}")
    if "entrypoint" in data:
        raise WrapError(f"{manifest}: already names an entrypoint (it is a cartridge; run it as it is)")
    if Path(out).resolve().is_relative_to(source.resolve()):  # the copy would walk into itself
        raise WrapError(f"{out}: is inside the skill folder {source}; choose a folder outside it")
    with atomic_folder(out) as work:
        _copy_tree(source.resolve(), work)
        if (work / ENTRYPOINT_NAME).exists():
            raise WrapError(f"{source}: already holds a {ENTRYPOINT_NAME}; rename it to wrap the skill")
        (work / "SKILL.md").write_text(_with_entrypoint(text, add_tags="tags" not in data), encoding="utf-8")
        (work / ENTRYPOINT_NAME).write_text(ENTRYPOINT_SOURCE, encoding="utf-8")
        card = inspect(work)
        if card.problems:
            raise WrapError(f"the cartridge would not be valid: {'; '.join(card.problems)}")
    return inspect(out)


def _copy_tree(source: Path, target: Path) -> None:
    """Every regular file under `source` into `target`; a link or special file stops the copy."""
    for top, dirs, names in os.walk(source, followlinks=False):
        base = Path(top)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in [*dirs, *sorted(names)]:
            path = base / name
            rel = path.relative_to(source)
            if path.is_symlink():
                raise WrapError(
                    f"{rel.as_posix()}: a symbolic link; a skill to wrap holds plain files and folders"
                )
            if path.is_dir():
                (target / rel).mkdir(parents=True, exist_ok=True)
            elif name.endswith((".pyc", ".pyo")):
                continue
            elif path.is_file():
                shutil.copyfile(path, target / rel, follow_symlinks=False)
                shutil.copymode(path, target / rel, follow_symlinks=False)
            else:
                raise WrapError(f"{rel.as_posix()}: not a regular file (a FIFO, socket or device)")


def _with_entrypoint(text: str, *, add_tags: bool) -> str:
    """SKILL.md's text with ``entrypoint`` (and maybe ``tags``) added as the front matter's last lines."""
    lines = text.splitlines(keepends=True)
    closing = next(i for i in range(1, len(lines)) if _CLOSING.match(lines[i]))  # parse_front_matter found it
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    added = ([f"tags: [claude-skill]{newline}"] if add_tags else []) + [
        f"entrypoint: {ENTRYPOINT_NAME}{newline}"
    ]
    return "".join(lines[:closing] + added + lines[closing:])


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)


ENTRYPOINT_SOURCE = '''"""The looplet entry of a wrapped Claude Agent Skill (``looplet wrap-claude-skill``).

The skill's SKILL.md body is the agent's instructions. The agent may read,
list, glob and grep the workspace (it cannot write there), list and read the
skill's own files, and run a file from the skill's scripts/ folder with an
argument list, once a person approves that run on the terminal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from looplet import LoopConfig, PermissionEngine, PermissionHook, ToolCall
from looplet.workspace import Workspace, check_relative, coding_tools, run_command
from looplet.presets import AgentPreset

#: Tools of the coding agent this skill does not get: it reads the workspace, never writes it.
WRITING_TOOLS = ("write", "edit", "multi_edit", "bash")
#: How a script of the skill is run, by its suffix (an argv list, never a shell string).
INTERPRETERS = {".py": [sys.executable or "python3"], ".sh": ["bash", "--noprofile", "--norc"]}
SCRIPT_TIMEOUT_S = 120.0
PREAMBLE = (
    "You follow the skill below. You can read, list, glob and grep the workspace (the current "
    "directory; paths relative to it), read the skill's own files with skill_files and "
    "read_skill_file, and run one of the skill's scripts with run_skill_script (a person approves "
    "each run). You cannot write files. Call done with your answer.\\n\\n# Skill: "
)


def build(runtime):
    """A read-only agent with the skill's instructions, its files, and approved script runs."""
    workspace = Workspace(runtime.workspace, sandbox="none")
    skill = Workspace(runtime.folder, sandbox="none")
    tools = coding_tools(workspace)
    for name in WRITING_TOOLS:
        if name in tools:
            tools.unregister(name)

    @tools.tool(concurrent_safe=True)
    def skill_files() -> dict:
        """List the skill's own files (its references, scripts and resources)."""
        found = []
        for top, dirs, names in os.walk(skill.root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found += [os.path.relpath(os.path.join(top, n), skill.root) for n in sorted(names)]
        return {"files": found}

    @tools.tool(concurrent_safe=True)
    def read_skill_file(path: str) -> dict:
        """Read one of the skill's files, e.g. "reference.md".

        Args:
            path: relative to the skill's folder.
        """
        return skill.read_shown(path)

    @tools.tool
    def run_skill_script(script: str, args: list[str] | None = None) -> dict:
        """Run a script from the skill's scripts/ folder in the workspace (a person approves each run).

        Args:
            script: its path in the skill, e.g. "scripts/extract.py" (.py or .sh).
            args: its arguments, one string each (no shell: quotes and pipes are plain text).
        """
        parts = check_relative(script, "script")
        if not parts or parts[0] != "scripts":
            return {"error": "only files under the skill's scripts/ folder can be run"}
        where = skill.locate(script, "script")
        full = Path(skill.root, *where.real)
        interpreter = INTERPRETERS.get(full.suffix)
        if interpreter is None or not full.is_file():
            return {"error": f"{script}: not a .py or .sh file of the skill"}
        argv = [*interpreter, str(full), *[str(a) for a in args or []]]
        return run_command(workspace, argv, SCRIPT_TIMEOUT_S).to_data()

    engine = PermissionEngine(default="allow")
    engine.ask("run_skill_script", reason="a script of the skill would run, without a sandbox")
    card = runtime.card
    return AgentPreset(
        config=LoopConfig(max_steps=20),
        tools=tools,
        hooks=[PermissionHook(engine, ask_handler=ask_on_terminal)],
        system_prompt=PREAMBLE + card.name + "\\n\\n" + card.instructions,
        name=card.name,
        description=card.description,
    )


def ask_on_terminal(call, reason):
    """y/N for one script run; no terminal (or end of input) is a no."""
    if not sys.stdin.isatty():
        return False
    shown = " ".join([call.args.get("script", "?"), *map(str, call.args.get("args") or [])])
    try:
        answer = input(f"{reason}\\n  {shown}\\nrun it? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def scripted_responses(runtime):
    """A check that the cartridge loads and runs: list the skill's files, read SKILL.md, finish."""
    return [
        ToolCall("skill_files", {}, call_id="call_1"),
        ToolCall("read_skill_file", {"path": "SKILL.md"}, call_id="call_2"),
        ToolCall("done", {"answer": f"The {runtime.card.name} skill is ready."}, call_id="call_3"),
    ]
'''
