"""``looplet diff DIR_A DIR_B [--json]``: two recorded runs step by step, the first divergence marked.

Made for "fork at step 7 with a changed prompt, run again, see what
changed": a fork recorded without the steps it kept from its parent shows
them as shared. Exits 0 when the runs are the same, 1 when they differ, 2
when a directory cannot be read (with a one-line reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["add_parser", "run", "render"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "diff",
        help="compare two recorded runs step by step",
        usage="%(prog)s [-h] [--json] DIR_A DIR_B",
        description="Compare two provenance run directories step by step: "
        "exit 0 when the same, 1 when different, 2 on bad input.",
    )
    # Optional here so that an unknown flag is reported as such; run() requires both.
    parser.add_argument("dir_a", nargs="?", metavar="DIR_A", help="the first run directory")
    parser.add_argument("dir_b", nargs="?", metavar="DIR_B", help="the second run directory (e.g. a fork)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..redaction import redact_text, redact_value
    from ..replay import diff_runs

    if not args.dir_a or not args.dir_b:
        print("looplet diff: error: give two run directories: looplet diff DIR_A DIR_B", file=sys.stderr)
        return 2
    try:
        diff = diff_runs(args.dir_a, args.dir_b)
    except Exception as exc:  # a missing, unreadable or foreign directory: one line, no traceback
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"looplet diff: error: {reason}", file=sys.stderr)
        return 2
    # A recording made with redact=False holds secrets as they were: mask what is printed anyway.
    if args.json:
        print(json.dumps(redact_value(diff.to_dict()), indent=2, ensure_ascii=False, default=str))
    else:
        print(redact_text(render(diff)))
    return 0 if diff.identical else 1


def render(diff: Any) -> str:
    """The diff as text: a header per run, one line per same step, an A and a B line per differing one."""
    lines = [_header("A", diff.a), _header("B", diff.b)]
    if diff.relation:
        lines.append(diff.relation)
    lines.append("")
    first = diff.divergence.step if diff.divergence is not None else None
    for pair in diff.pairs:
        if pair.number == first:
            lines.append(f"--- first divergence at step {pair.number}: {pair.difference[1]} ---")
        if pair.same:
            note = "  (shared, before the fork)" if pair.shared else ""
            lines.append(f"  = {_line(pair.a if pair.a is not None else pair.b, pair.number)}{note}")
        else:
            lines.append(f"  A {_line(pair.a, pair.number)}")
            lines.append(f"  B {_line(pair.b, pair.number)}")
    lines.append("")
    lines.extend(_ending(diff))
    return "\n".join(_printable(line) for line in lines)


def _header(label: str, run: Any) -> str:
    manifest = run.manifest if isinstance(run.manifest, dict) else {}
    parts = [f"{label}: {manifest.get('run_id') or run.path}"]
    if manifest.get("task") is not None:
        parts.append(f"task {_short(manifest.get('task'))}")
    parts.append(f"{len(run.steps)} steps")
    parts.append(f"stop {manifest.get('stop_reason') or manifest.get('status') or '?'}")
    return "  ".join(parts)


def _line(record: Mapping[str, Any] | None, number: int) -> str:
    if record is None:
        return f"#{number} (no such step)"
    pretty = record.get("pretty")
    if isinstance(pretty, str):
        return pretty
    call = record.get("call")
    tool = call.get("tool") if isinstance(call, dict) else None
    return f"#{number} {tool or '(no tool call)'}"


def _printable(text: str) -> str:
    """`text` with control characters replaced: a step file is data, not terminal commands."""
    return "".join(ch if ch.isprintable() else "�" for ch in text)


def _ending(diff: Any) -> list[str]:
    a = diff.a.manifest if isinstance(diff.a.manifest, dict) else {}
    b = diff.b.manifest if isinstance(diff.b.manifest, dict) else {}
    lines = [
        f"stop reason: A {a.get('stop_reason')} | B {b.get('stop_reason')}",
        f"final answer: A {_short(a.get('final_answer'))} | B {_short(b.get('final_answer'))}",
    ]
    if diff.prompt is not None:
        call, step, what = diff.prompt
        before = f" (before step {step})" if step is not None else ""
        lines.append(f"prompts: B's model call {call}{before} differs from A's in {what}")
    if diff.identical:
        lines.append("same: the runs took the same steps and ended the same way")
    elif diff.divergence is not None:
        lines.append(f"different: first at {diff.divergence}")
    else:
        lines.append("different: same steps and ending, but the prompts differ")
    return lines


def _short(value: Any, limit: int = 80) -> str:
    """`value` on one line, cut to `limit`; masked first, as a secret cut in two no longer reads as one."""
    from ..redaction import redact_value

    value = redact_value(value)
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
