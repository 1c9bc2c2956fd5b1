"""``looplet show DIR [--json] [--step N]``: a recorded run printed as a readable trace.

DIR is a directory a `ProvenanceSink` wrote (``run_<id>/``), or a root
holding exactly one. The trace has a header (run id, parent for a fork,
task, start and end), one ``pretty()`` line per step with the model calls
between them (tokens, time, model), the totals and the stop reason.
``--step N`` prints one step in full; ``--json`` prints the same as JSON for
other tools. A run that was killed prints too, as far as it got.

What is printed is masked again (`looplet.redaction`), also for a directory
recorded with ``redact=False``, and control characters are neutralised, so
a recorded value cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

__all__ = ["add_parser", "run", "render_run", "render_step"]

#: C0 and C1 control characters other than newline and tab: escape sequences start with them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("show", help="print a recorded run (a ProvenanceSink directory)")
    # Optional to argparse so that a mistake in the flags is reported first; run() asks for it.
    parser.add_argument("dir", nargs="?", metavar="DIR", help="a run directory, or a root holding one run")
    parser.add_argument("--json", action="store_true", help="print the run (or the step) as JSON")
    parser.add_argument("--step", type=int, metavar="N", help="print step N in full")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..provenance import ProvenanceError, read_run

    if not args.dir:
        return _fail("name the run's directory: looplet show DIR", code=2)
    try:
        recorded = read_run(args.dir)
    except ProvenanceError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.dir}: cannot be read ({exc.strerror or type(exc).__name__})")
    if args.step is not None:
        step = next((s for s in recorded.steps if s.get("number") == args.step), None)
        if step is None:
            have = f"steps 1-{len(recorded.steps)}" if recorded.steps else "no steps"
            return _fail(f"run {recorded.run_id} has no step {args.step} (it has {have})")
        if args.json:
            _print_json(step)
        else:
            _print_lines(render_step(recorded, step))
        return 0
    if args.json:
        _print_json(
            {
                "path": str(recorded.path),
                "manifest": recorded.manifest,
                "steps": recorded.steps,
                "llm_calls": recorded.llm_calls,
                "events": recorded.events,
            }
        )
    else:
        _print_lines(render_run(recorded))
    return 0


def _fail(message: str, code: int = 1) -> int:
    print(f"looplet show: {_safe(message)}", file=sys.stderr)
    return code


def _safe(text: str) -> str:
    from ..redaction import redact_text

    return _CONTROL.sub("?", redact_text(text))


def _print_lines(lines: list[str]) -> None:
    print(_safe("\n".join(lines)))


def _print_json(data: Any) -> None:
    from ..redaction import redact_value

    print(json.dumps(redact_value(data), indent=2, sort_keys=True, ensure_ascii=True))


# -- the trace ---------------------------------------------------------------------------------


def render_run(recorded: Any) -> list[str]:
    """The whole run: header, the steps with the model calls between them, totals, stop reason."""
    lines = _header(recorded.manifest)
    lines.append("")
    calls = sorted(recorded.llm_calls, key=lambda c: int(c.get("index") or 0))
    shown = 0
    for step in recorded.steps:
        number = int(step.get("number") or 0)
        while shown < len(calls) and _before(calls[shown], number):
            lines.append(_llm_line(calls[shown]))
            shown += 1
        lines.append(_step_line(step))
    lines.extend(_llm_line(c) for c in calls[shown:])
    if not recorded.steps and not calls:
        lines.append("(no steps recorded)")
    lines.append("")
    lines.extend(_footer(recorded))
    return lines


def _before(call: dict[str, Any], number: int) -> bool:
    """Whether a model call came before step `number` (it was made for that step or an earlier one)."""
    step = call.get("step")
    return isinstance(step, int) and step <= number


def _header(manifest: dict[str, Any]) -> list[str]:
    status = manifest.get("status") or "?"
    lines = [f"run {manifest.get('run_id') or '?'} · {status}"]
    if manifest.get("parent_run_id"):
        at = manifest.get("forked_at")
        where = f" (forked at step {at})" if at is not None else ""
        lines.append(f"parent: {manifest['parent_run_id']}{where}")
    lines.append(f"task: {_inline(manifest.get('task'))}")
    when = f"started {manifest.get('started_at') or '?'}"
    if manifest.get("ended_at"):
        when += f" · ended {manifest['ended_at']}"
    if manifest.get("looplet_version"):
        when += f" · looplet {manifest['looplet_version']}"
    lines.append(when)
    return lines


def _step_line(step: dict[str, Any]) -> str:
    line = str(step.get("pretty") or "")
    if not line:
        from ..provenance import step_from_record

        line = step_from_record(step).pretty()
    return line + (" (inherited)" if step.get("inherited") else "")


def _llm_line(call: dict[str, Any]) -> str:
    from ..types import format_ms

    index = call.get("index", "?")
    ms = format_ms(float(call.get("duration_ms") or 0))
    error = call.get("error")
    if isinstance(error, dict):
        return f"  model call {index} failed: {error.get('type')}: {_inline(error.get('message'))} · {ms}"
    parts = [f"  model call {index}", _tokens(call.get("usage") or {}), ms]
    response = call.get("response") or {}
    if response.get("model"):
        parts.append(str(response["model"]))
    retries = call.get("retries") or []
    if retries:
        parts.append(f"{len(retries)} retr{'y' if len(retries) == 1 else 'ies'}")
    return " · ".join(parts)


def _tokens(usage: dict[str, Any]) -> str:
    text = f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out tokens"
    if usage.get("cached_tokens"):
        text += f" ({usage['cached_tokens']} cached)"
    return text


def _footer(recorded: Any) -> list[str]:
    manifest = recorded.manifest
    usage = manifest.get("usage") or {}
    calls = manifest.get("llm_calls", len(recorded.llm_calls))
    totals = f"totals: {len(recorded.steps)} steps · {calls} model calls · {_tokens(usage)}"
    if usage.get("cost"):
        totals += f" · cost {float(usage['cost']):.4f}"
    lines = [totals]
    if manifest.get("status") != "ended":
        lines.append("stop reason: none: the run did not end (killed, or still running)")
        return lines
    detail = f" ({manifest['detail']})" if manifest.get("detail") else ""
    lines.append(f"stop reason: {manifest.get('stop_reason')}{detail}")
    if manifest.get("final_answer") is not None:
        lines.append(f"final answer: {_inline(manifest['final_answer'])}")
    return lines


def _inline(value: Any, limit: int = 300) -> str:
    """`value` on one line, cut to `limit`; masked first, as a secret cut in two no longer reads as one."""
    from ..redaction import redact_value

    value = redact_value(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- one step in full ---------------------------------------------------------------------------


def render_step(recorded: Any, step: dict[str, Any]) -> list[str]:
    """One step with everything recorded about it."""
    from ..types import format_ms

    call = step.get("call") or {}
    result = step.get("result") or {}
    lines = [f"step {step.get('number')} of run {recorded.run_id}", _step_line(step), ""]
    lines.append(f"tool: {call.get('tool')} · call id: {call.get('id') or '-'} · turn {step.get('turn')}")
    if call.get("reasoning"):
        lines.append(f"reasoning: {_inline(call['reasoning'], 2000)}")
    lines += _block("arguments (as dispatched)", call.get("args"))
    if "original_args" in call:
        lines += _block("arguments before a hook rewrote them", call["original_args"])
    if result.get("error"):
        retry = "retriable" if result.get("retriable") else "not retriable"
        lines.append(f"error ({result.get('error_kind')}, {retry}): {result['error']}")
    else:
        lines += _block("result", result.get("data"))
    for warning in result.get("warnings") or []:
        lines.append(f"warning: {warning}")
    lines += _decisions(step.get("decisions") or [])
    if result.get("metadata"):
        lines += _block("result metadata", result["metadata"])
    if step.get("metadata"):
        lines += _block("step metadata", step["metadata"])
    tool_ms = format_ms(float(result.get("duration_ms") or 0))
    lines.append(f"time: tool {tool_ms} · model call {format_ms(float(step.get('llm_ms') or 0))}")
    lines.append(f"usage of its model call: {_tokens(step.get('usage') or {})}")
    return lines


def _block(title: str, value: Any) -> list[str]:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return [f"{title}:", *("  " + line for line in text.splitlines())]


def _decisions(decisions: list[Any]) -> list[str]:
    if not decisions:
        return []
    lines = ["decisions:"]
    for d in decisions:
        if not isinstance(d, dict):
            continue
        line = f"  {d.get('slot', '?')} {d.get('hook', '?')}: {d.get('decision', '?')}"
        if "before" in d or "after" in d:
            line += f" {_inline(d.get('before'))} -> {_inline(d.get('after'))}"
        if d.get("reason"):
            line += f" ({_inline(d['reason'])})"
        lines.append(line)
    return lines
