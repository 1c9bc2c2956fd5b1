"""``looplet blueprint BUNDLE [--json] [--trust] [--workspace DIR]``: what a cartridge's agent is, for review.

The blueprint is complete and stable, so two of them can be diffed: the
card (name, description, tags, entrypoint, content digest, instructions),
the settings, the system prompt, every tool with its JSON schema and
dispatch options (sorted by name), and the hooks in the order they run, by
module and class, with their public settings.

Reviewing comes before trusting, so by default nothing of the cartridge runs:
the blueprint holds the card only (read from SKILL.md) and says so.
``--trust`` imports the entrypoint and calls ``build(runtime)`` to show the
tools, hooks and settings. ``build`` gets a temporary workspace unless
``--workspace`` names one; its path (and the cartridge's) are written
``$WORKSPACE`` and ``$CARTRIDGE``.

Exit codes: 0 printed, 2 for bad input or a cartridge that cannot be read or built.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from .terminal import json_text, missing_manifest, one_line, refuse, shown

__all__ = ["add_parser", "run", "render_blueprint", "card_blueprint"]

VERB = "blueprint"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        VERB,
        help="describe a cartridge's agent (tools, hooks, settings, prompt) for review and diffing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="the cartridge's folder")
    parser.add_argument("--json", action="store_true", help="print the blueprint as JSON")
    parser.add_argument(
        "--trust", action="store_true", help="import the entrypoint and build the agent (runs its code)"
    )
    parser.add_argument(
        "--workspace", type=Path, default=None, help="the workspace build() gets (default: a temporary one)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.bundle:
        return _fail("name the cartridge's folder: looplet blueprint BUNDLE")
    try:
        data = _describe(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # a trusted cartridge's own code can raise anything: one line
        return _fail(one_line(exc))
    if args.json:
        print(json_text(data, indent=2, sort_keys=True))
    else:
        print(shown("\n".join(render_blueprint(data))))  # the card's text is the folder's: no escapes
    return 0


def _describe(args: argparse.Namespace) -> dict[str, Any]:
    from ..cartridges import checked_card
    from ..skills import inspect

    folder = Path(args.bundle)
    missing = missing_manifest(folder)
    if missing is not None:
        raise ValueError(missing)
    card = checked_card(inspect(folder))
    if not args.trust:
        return card_blueprint(card)
    if args.workspace is not None:
        return _built(card, args.workspace)
    with tempfile.TemporaryDirectory(prefix="looplet-blueprint-") as workspace:
        return _built(card, Path(workspace))


def card_blueprint(card: Any) -> dict[str, Any]:
    """The blueprint of a cartridge that was not built: its card, and why the rest is missing."""
    from ..cartridges import BLUEPRINT_VERSION, card_data

    return {
        "blueprint": BLUEPRINT_VERSION,
        "built": False,
        "note": "the entrypoint was not imported (pass --trust to build the agent and show it whole)",
        "name": card.name,
        "description": card.description,
        "card": card_data(card),
    }


def _built(card: Any, workspace: Path) -> dict[str, Any]:
    from ..cartridges import blueprint, build_preset, make_runtime

    runtime = make_runtime(card, workspace=workspace)
    preset = build_preset(card, runtime, trust=True)
    return {"built": True, **blueprint(preset, card=card, runtime=runtime)}


# -- the readable form ------------------------------------------------------------------------------


def render_blueprint(data: dict[str, Any]) -> list[str]:
    """The blueprint as lines to read: the card, then (when built) settings, prompt, tools and hooks."""
    card = data.get("card") or {}
    lines = [f"agent: {data.get('name') or card.get('name') or '?'}"]
    if data.get("description"):
        lines.append(f"description: {data['description']}")
    if card:
        lines.append(f"cartridge: entrypoint {card.get('entrypoint')} · digest {card.get('digest')}")
        if card.get("tags"):
            lines.append(f"tags: {', '.join(card['tags'])}")
    if not data.get("built", True):
        lines.append(f"note: {data.get('note')}")
        lines += _indented("instructions", str(card.get("instructions") or ""))
        return lines
    config = data.get("config") or {}
    lines.append("settings: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(config.items())))
    lines += _indented("system prompt", str(data.get("system_prompt") or ""))
    tools = data.get("tools") or []
    lines.append(f"tools ({len(tools)}):")
    for tool in tools:
        lines += _tool_lines(tool)
    hooks = data.get("hooks") or []
    lines.append(f"hooks ({len(hooks)}, in run order):")
    for n, hook in enumerate(hooks, 1):
        lines.append(f"  {n}. {hook['class']} [{', '.join(hook['slots'])}]")
        for key, value in sorted(hook["settings"].items()):
            lines.append(f"       {key} = {json.dumps(value, ensure_ascii=False)}")
    if data.get("state"):
        lines.append(f"state: {data['state']}")
    if card:
        lines += _indented("instructions", str(card.get("instructions") or ""))
    return lines


def _tool_lines(tool: dict[str, Any]) -> list[str]:
    from ..tools.schema import signature_text

    flags = [name for name in ("done", "free", "concurrent_safe", "idempotent") if tool.get(name)]
    if tool.get("timeout_s") is not None:
        flags.append(f"timeout {tool['timeout_s']}s")
    head = f"  {signature_text(tool['name'], tool['parameters'])}"
    lines = [head + (f"  [{', '.join(flags)}]" if flags else "")]
    lines += [f"      {line}".rstrip() for line in str(tool.get("description") or "").splitlines()]
    return lines


def _indented(title: str, text: str) -> list[str]:
    body = text.strip("\n").splitlines() or ["(empty)"]
    return [f"{title}:", *(f"  {line}".rstrip() for line in body)]


def _fail(message: str, code: int = 2) -> int:
    return refuse(VERB, message, code)
