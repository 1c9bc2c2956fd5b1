"""``looplet export-code BUNDLE OUT.py``: one standalone Python file that builds and runs the same agent.

    looplet export-code examples/coder/skill /tmp/coder_agent.py
    python /tmp/coder_agent.py "Create a tiny add function with tests" --scripted --workspace /tmp/demo

The file carries the whole cartridge: every file of its folder is embedded
(text line by line, so the entrypoint and the instructions can be read in
the exported file; other files as base64), with the digest of exactly those
files. Run, it unpacks them into a private temporary folder, checks the
digest, and loads the entrypoint by the same rules as ``looplet run`` (a
unique module name, nothing shadowed), builds the agent within the same
limits and hook order, and runs it with the same options and output as
``looplet run``: the cartridge's folder is no longer needed, and the same
``--scripted`` run takes the same steps.

Nothing of the cartridge runs while exporting. OUT.py is written whole or
not at all (a temporary file beside it, renamed when complete).

Exit codes: 0 written, 2 for bad input (not a cartridge, a symlink or a
special file in it, a folder too big to embed).
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
from pathlib import Path
from typing import Any

from .terminal import missing_manifest, refuse

__all__ = ["add_parser", "run", "export_source", "bundle_files", "MAX_EXPORT_BYTES"]

VERB = "export-code"
#: A cartridge whose files add up to more than this is not embedded into one Python file.
MAX_EXPORT_BYTES = 8 * 1024 * 1024
#: Left out of the export: interpreter caches and version-control folders.
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn"})


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        VERB,
        help="write one standalone Python file that builds and runs a cartridge's agent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="the cartridge's folder")
    parser.add_argument("out", nargs="?", metavar="OUT.py", help="the Python file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cartridges import CartridgeError, atomic_file, checked_card
    from ..frontmatter import SkillFormatError
    from ..skills import inspect

    if not args.bundle or not args.out:
        return _fail("name the cartridge and the file to write: looplet export-code BUNDLE OUT.py")
    folder = Path(args.bundle)
    missing = missing_manifest(folder)
    if missing is not None:
        return _fail(missing)
    try:
        card = checked_card(inspect(folder))
        files = bundle_files(folder)
        digest = embedded_digest(files)
        source = export_source(card, files, digest)
        with atomic_file(args.out, mode=0o755) as work:
            work.write_text(source, encoding="utf-8")
    except (CartridgeError, SkillFormatError, OSError) as exc:
        return _fail(str(exc))
    print(f"wrote {args.out} ({len(files)} files of cartridge {card.name!r} embedded, digest {digest})")
    return 0


def bundle_files(folder: Path) -> dict[str, bytes]:
    """Every regular file of the cartridge by its relative POSIX path, sorted; caches left out.

    Raises:
        CartridgeError: a symlink or a special file is in the folder, or it is too big to embed.
    """
    from ..cartridges import CartridgeError

    found: dict[str, bytes] = {}
    total = 0
    root = folder.resolve()
    for top, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not _is_link(Path(top, d)))
        for name in sorted(names):
            path = Path(top, name)
            rel = path.relative_to(root).as_posix()
            if name.endswith((".pyc", ".pyo")):
                continue
            if path.is_symlink() or not path.is_file():
                raise CartridgeError(
                    f"{rel}: a symlink or special file; a cartridge to export holds plain files"
                )
            data = path.read_bytes()
            total += len(data)
            if total > MAX_EXPORT_BYTES:
                raise CartridgeError(
                    f"{folder}: more than {MAX_EXPORT_BYTES} bytes of files, too big to embed"
                )
            found[rel] = data
    return dict(sorted(found.items()))


def _is_link(path: Path) -> bool:
    from ..cartridges import CartridgeError

    if path.is_symlink():
        raise CartridgeError(f"{path.name}: a symlinked folder; a cartridge to export holds plain files")
    return False


def embedded_digest(files: dict[str, bytes]) -> str:
    """The digest `looplet.skills.inspect` gives a folder holding exactly `files`."""
    from ..skills import inspect

    with tempfile.TemporaryDirectory(prefix="looplet-export-") as tmp:
        folder = Path(tmp, "cartridge")
        unpack_into(folder, files)
        return str(inspect(folder).digest)


def unpack_into(folder: Path, files: dict[str, bytes]) -> None:
    """Write `files` under `folder` (the exported file does the same, with its own copy of this code)."""
    for rel, data in files.items():
        target = folder.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def export_source(card: Any, files: dict[str, bytes], digest: str) -> str:
    """The exported program: the embedded files, then the code that unpacks, checks, builds and runs."""
    embedded = "\n".join(_file_entry(rel, data) for rel, data in files.items())
    return TEMPLATE.format(
        name=card.name,
        description=_docstring_safe(" ".join(str(card.description).split())),
        digest=digest,
        files=embedded,
        name_literal=repr(card.name),
        digest_literal=repr(digest),
    )


def _docstring_safe(text: str) -> str:
    """`text` as it can sit inside the exported file's docstring (no closing quotes, no escapes)."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _file_entry(rel: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\r" not in text:
        lines = text.splitlines(keepends=True) or [""]
        body = "\n".join(f"        {line!r}" for line in lines)
        return f"    {rel!r}: (\n{body}\n    ).encode('utf-8'),"
    encoded = base64.b64encode(data).decode("ascii")
    chunks = "\n".join(f"        {encoded[i : i + 76]!r}" for i in range(0, len(encoded), 76)) or "        ''"
    return f"    {rel!r}: base64.b64decode(\n{chunks}\n    ),"


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)


# Keep in step with looplet/cli/run.py: the same options, the same output, the same exit codes.
TEMPLATE = '''#!/usr/bin/env python3
"""{name}: {description}

Exported from the cartridge {name!s} (digest {digest}) by ``looplet export-code``.
This file is the whole agent: the cartridge's files are embedded below, so its
folder is not needed. It runs as ``looplet run`` runs the cartridge:

    python THIS_FILE.py TASK [--workspace DIR] [--max-steps N] [--scripted]
                             [--trace-dir DIR | --no-trace] [--model M]

The files are unpacked into a private temporary folder (removed at exit),
their digest checked, and the entrypoint loaded under a unique module name;
then ``build(runtime)`` gives the agent (an AgentPreset), fitted to this
host's step cap, and it runs with plain looplet calls.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
import tempfile
from pathlib import Path

from looplet.cartridges import make_runtime, open_cartridge
from looplet.cli.terminal import one_line, shown
from looplet.skills import inspect

NAME = {name_literal}
DIGEST = {digest_literal}
DEFAULT_MODEL = "gpt-4o-mini"

#: The cartridge's files, by path inside its folder.
FILES = {{
{files}
}}


def unpack(root):
    """The cartridge's folder, recreated under `root`, with its digest checked."""
    folder = Path(root, NAME)
    for rel, data in FILES.items():
        target = folder.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    found = inspect(folder).digest
    if found != DIGEST:
        raise SystemExit(f"{{NAME}}: the embedded files do not match their digest ({{found}} != {{DIGEST}})")
    return folder


def model(args):
    """The OpenAI-compatible endpoint from OPENAI_BASE_URL / OPENAI_API_KEY / OPENAI_MODEL."""
    from looplet.backends import OpenAIBackend
    from looplet.backends.env import read_env

    env = read_env("OPENAI")
    if not (env.api_key or env.base_url):
        raise SystemExit(f"{{NAME}}: set OPENAI_API_KEY / OPENAI_BASE_URL, or pass --scripted")
    backend = OpenAIBackend.from_env(model=args.model or DEFAULT_MODEL)
    if args.model:
        backend.model = args.model
    return backend


def run(args, folder):
    from looplet.provenance import ProvenanceSink

    cartridge = open_cartridge(folder, trust=True)  # the digest above is the trust
    trace_dir = None if args.no_trace else (args.trace_dir or args.workspace / ".looplet" / "runs")
    runtime = make_runtime(
        cartridge.card,
        workspace=args.workspace,
        scripted=args.scripted,
        max_steps=args.max_steps,
        model=args.model,
        trace_dir=trace_dir,
    )
    sink = ProvenanceSink(trace_dir) if trace_dir is not None else None
    preset = cartridge.build(runtime, observers=[sink] if sink is not None else [])
    llm = cartridge.scripted_llm(runtime) if args.scripted else model(args)
    print(shown(f"cartridge: {{NAME}} · workspace: {{runtime.workspace}}"))
    loop = preset.loop(llm, task=args.task)
    for step in loop:
        print(step.pretty())
    result = loop.result
    why = f" ({{result.detail}})" if not result.ok and result.detail else ""
    print(shown(f"stopped: {{result.stop_reason}}{{why}}"))
    print(f"{{len(result.steps)}} steps · {{result.llm_calls}} model calls")
    if result.final_answer:
        print(shown(f"answer: {{result.final_answer.get('answer', result.final_answer)}}"))
    if sink is not None:
        print(shown(f"trace: {{sink.path_of(loop.state.run_id)}}"))
    return 0 if result.ok else 1


def steps(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("the step budget must be at least 1")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", metavar="TASK", help="what the agent should do")
    parser.add_argument("--workspace", type=Path, default=Path("."), help="where the agent works")
    parser.add_argument("--max-steps", type=steps, default=None, metavar="N", help="cap on tool steps")
    parser.add_argument("--scripted", action="store_true", help="use the cartridge's scripted model")
    trace = parser.add_mutually_exclusive_group()
    trace.add_argument("--trace-dir", type=Path, default=None, metavar="DIR", help="record the run in DIR")
    trace.add_argument("--no-trace", action="store_true", help="do not record the run")
    parser.add_argument("--model", default=None, help="model name (default: $OPENAI_MODEL)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix=f"looplet-{{NAME}}-")
    try:
        return run(args, unpack(root))
    except KeyboardInterrupt:
        print(f"{{NAME}}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"{{NAME}}: {{shown(one_line(exc))}}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
'''
