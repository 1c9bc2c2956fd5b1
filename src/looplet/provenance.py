"""Provenance: every prompt, response, call, result and hook decision of a run, in a directory.

`ProvenanceSink(root)` is a hook. Pass it in ``hooks=`` of `composable_loop` or
`async_composable_loop` and each run it sees gets its own directory
``root/run_<id>/`` (format 1, described in ``docs/provenance.md``):

- ``manifest.json``: the run id, its parent for a fork, the task, start and end,
  the stop reason as the loop reported it, totals and usage;
- ``events.jsonl``: an append-only log, one JSON object per line, fsynced after
  each step, so a crash loses at most the step in flight;
- ``llm/0001.json``...: one file per model call, the exact request and the response;
- ``steps/0001.json``...: one file per step, written once every hook has run for it;
- ``trajectory.json``: the steps in order, written when the run ends.

It is built on the public hook slots and the ``around_llm`` / ``around_tool``
interceptors only, so it needs nothing from the engine. Every value passes
through `looplet.redaction.redact_value` before it is encoded (``redact=True``,
the default), values that are not JSON go through the tool results' one policy
(`looplet.tools.results.to_jsonable`), and long strings are cut with their size
and sha256 kept. Files are 0600, directories 0700.

`read_run(path)` reads a directory back as a `RecordedRun`, also one a killed
process left behind: a step counts once its line is in ``events.jsonl`` (the
line is the commit point), and a torn last line is ignored.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError, LoopError
from .redaction import redact_value, redaction_version
from .tools.results import to_jsonable
from .types import Step, ToolCall, ToolResult, Usage

__all__ = [
    "FORMAT",
    "DEFAULT_MAX_CHARS",
    "ProvenanceSink",
    "ProvenanceError",
    "RecordedRun",
    "read_run",
    "run_dirs",
    "step_from_record",
]

log = logging.getLogger(__name__)

#: The ``format`` written in every manifest.
FORMAT = "looplet.provenance/1"
#: Strings longer than this many characters are cut (head and tail kept, size and sha256 recorded).
DEFAULT_MAX_CHARS = 64 * 1024

_MANIFEST = "manifest.json"
_EVENTS = "events.jsonl"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
#: The run whose model call comes next in this context: set by ``pre_prompt``, read by
#: ``around_llm`` (an interceptor is handed the request, not the run).
_CURRENT_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "looplet_provenance_run", default=None
)


class ProvenanceError(LoopError):
    """A directory is not a readable provenance record (missing, not one, or of a newer format)."""


# -- encoding ----------------------------------------------------------------------------


class _Encoder:
    """Turns any value into the JSON data a file holds: JSON-safe, masked, cut."""

    __slots__ = ("redact", "max_chars")

    def __init__(self, redact: bool, max_chars: int) -> None:
        self.redact = redact
        self.max_chars = max_chars

    def value(self, value: Any) -> Any:
        data = to_jsonable(value)
        if self.redact:
            data = redact_value(data)
        return self._cut(data)

    def _cut(self, data: Any) -> Any:
        if isinstance(data, str):
            return self._cut_text(data) if len(data) > self.max_chars else data
        if isinstance(data, dict):
            return {k: self._cut(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self._cut(v) for v in data]
        return data

    def _cut_text(self, text: str) -> dict[str, Any]:
        raw = text.encode("utf-8", "surrogatepass")
        half = max(1, self.max_chars // 2)
        return {
            "truncated": True,
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "head": text[:half],
            "tail": text[-half:],
        }


def _dumps(data: Any, *, indent: int | None = 2) -> bytes:
    """Stable JSON (sorted keys, UTF-8); a lone surrogate is written as its ``\\udXXX`` escape."""
    text = json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False, default=_fallback)
    return (text + "\n").encode("utf-8", "backslashreplace")


#: Stands for the messages while the rest of a model-call record is encoded (see `_with_messages`).
_MESSAGES_SLOT = f"\x00messages-{os.urandom(8).hex()}\x00"


def _compact(data: Any) -> str:
    """One value as one line of JSON (the C encoder: about ten times faster than indented)."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=_fallback)


def _with_messages(record: dict[str, Any]) -> bytes:
    """A model-call record as `_dumps` writes it, but with one message per line: the
    conversation, most of the record, is encoded once per message, not once per call."""
    request = record["request"]
    lines: list[str] = request["messages"]
    text = _dumps({**record, "request": {**request, "messages": _MESSAGES_SLOT}})
    slot = json.dumps(_MESSAGES_SLOT, ensure_ascii=False).encode("utf-8", "backslashreplace")
    body = "[\n" + ",\n".join("      " + line for line in lines) + "\n    ]" if lines else "[]"
    return text.replace(slot, body.encode("utf-8", "backslashreplace"), 1)


def _fallback(value: Any) -> Any:
    return to_jsonable(value)


def _number(value: Any) -> float:
    """A finite float for a figure the loop reported (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- files -------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_file(path: Path, data: bytes) -> None:
    """Write `path` atomically (a temporary file, then ``os.replace``), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _dir_name(run_id: str) -> str:
    """``run_<id>``: the run id itself when it already reads so; an odd id is made safe and kept unique."""
    if _SAFE_ID.fullmatch(run_id):
        return run_id if run_id.startswith("run_") else f"run_{run_id}"
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:60]
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"run_{safe}-{digest}"


def _new_run_dir(root: Path, run_id: str) -> Path:
    """A fresh directory for the run: made with an exclusive mkdir, suffixed ``.2``, ``.3``... if taken."""
    base = _dir_name(run_id)
    n = 1
    while True:
        path = root / (base if n == 1 else f"{base}.{n}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            n += 1
            continue
        os.chmod(path, 0o700)  # whatever the umask allowed
        return path


# -- one run being recorded ----------------------------------------------------------------


class _RunWriter:
    """The directory of one run, its counters and its open event log."""

    def __init__(self, root: Path, state: Any, tools: list[str], encoder: _Encoder) -> None:
        self.state = state
        self.encoder = encoder
        self.lock = threading.Lock()
        self.dir = _new_run_dir(root, str(state.run_id))
        for sub in ("llm", "steps"):
            os.mkdir(self.dir / sub, 0o700)
        self.t0 = time.monotonic()
        self.seq = 0
        self.llm_count = 0
        self.records: list[dict[str, Any]] = []
        self.last: tuple[Step, Any] | None = None  # the last step and what hooks may still change (F5)
        self.token: contextvars.Token[str | None] | None = None
        self.failure: BaseException | None = None  # a write an interceptor could not report
        self.messages: dict[int, tuple[Any, Any]] = {}  # encoded messages, by the Message's id
        self.messages_version: object = None
        self.fd = os.open(self.dir / _EVENTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        try:
            self.manifest = self._first_manifest(state, tools)
            self.write_manifest()
            self.event("run_start", {"run_id": self.manifest["run_id"], "dir": self.dir.name}, sync=True)
        except BaseException:
            os.close(self.fd)
            raise

    def _first_manifest(self, state: Any, tools: list[str]) -> dict[str, Any]:
        from . import __version__

        enc = self.encoder.value
        return {
            "format": FORMAT,
            "run_id": enc(str(state.run_id)),
            "parent_run_id": enc(state.parent_run_id),
            "forked_at": state.forked_at,
            "task": enc(state.task),
            "started_at": _iso(time.time()),
            "ended_at": None,
            "status": "running",
            "stop_reason": None,
            "detail": "",
            "final_answer": None,
            "steps": 0,
            "llm_calls": 0,
            "usage": Usage().to_dict(),
            "tools": enc(tools),
            "looplet_version": __version__,
        }

    def event(self, kind: str, fields: dict[str, Any], *, sync: bool = False) -> None:
        """Append one line to the event log (``os.write``: flushed at once; fsynced when `sync`)."""
        with self.lock:
            self.seq += 1
            line = {**fields, "seq": self.seq, "event": kind, "t": round(time.monotonic() - self.t0, 6)}
            _write_all(self.fd, _dumps(line, indent=None))
            if sync:
                os.fsync(self.fd)

    def write_manifest(self) -> None:
        state = self.state
        self.manifest.update(
            steps=len(self.records),
            llm_calls=int(getattr(state, "llm_calls", 0) or 0),
            usage=_usage(getattr(state, "usage", None)),
        )
        _write_file(self.dir / _MANIFEST, _dumps(self.manifest))

    # -- model calls

    def llm_call(self, request: Any, outcome: Any, error: BaseException | None, ms: float) -> None:
        with self.lock:
            self.llm_count += 1
            index = self.llm_count
        name = f"llm/{index:04d}.json"
        record = {
            "index": index,
            "step": getattr(request, "step", None),
            "request": self._request(request),
            "response": None if error is not None else self._response(outcome),
            "usage": None if error is not None else _usage(getattr(outcome, "usage", None)),
            "duration_ms": round(ms, 3),
            "retries": self.encoder.value(_retries(error if error is not None else outcome)),
            "error": None if error is None else self._error(error),
        }
        _write_file(self.dir / name, _with_messages(record))
        fields: dict[str, Any] = {"index": index, "file": name, "step": record["step"]}
        if error is not None:
            fields["error"] = record["error"]["type"]
        self.event("llm_call", fields)

    def _request(self, request: Any) -> dict[str, Any]:
        enc = self.encoder.value
        return {
            "system": enc(getattr(request, "system", "")),
            "messages": self._messages(getattr(request, "messages", ())),
            "tools": enc(list(getattr(request, "tools", ()) or ())),
            "extra": enc(list(getattr(request, "extra", ()) or ())),
            "settings": enc(
                {
                    "max_tokens": getattr(request, "max_tokens", None),
                    "temperature": getattr(request, "temperature", None),
                    "options": dict(getattr(request, "options", None) or {}),
                }
            ),
        }

    def _messages(self, messages: Any) -> list[str]:
        """The conversation as sent, one JSON text per message. A message is encoded once and
        reused by later calls (messages are frozen; the cache is dropped when the secrets to
        mask change), so a call costs what its new messages cost, plus one join."""
        version = redaction_version()
        if version != self.messages_version:
            self.messages, self.messages_version = {}, version
        out = []
        for message in messages:
            known = self.messages.get(id(message))
            if known is None or known[0] is not message:
                to_dict = getattr(message, "to_dict", None)
                data = self.encoder.value(to_dict() if callable(to_dict) else message)
                known = (message, _compact(data))
                self.messages[id(message)] = known
            out.append(known[1])
        return out

    def _response(self, response: Any) -> dict[str, Any]:
        enc = self.encoder.value
        calls = getattr(response, "tool_calls", None) or []
        return {
            "text": enc(getattr(response, "text", None)),
            "tool_calls": [enc(_call_dict(c)) for c in calls] if isinstance(calls, list) else enc(calls),
            "stop_reason": enc(getattr(response, "stop_reason", "")),
            "model": enc(getattr(response, "model", "")),
            "request_id": enc(getattr(response, "request_id", "")),
            "raw": enc(getattr(response, "raw", None)),
        }

    def _error(self, error: BaseException) -> dict[str, Any]:
        try:
            message = str(error)
        except Exception:
            message = "<unprintable message>"
        return {
            "type": type(error).__name__,
            "message": self.encoder.value(message),
            "kind": self.encoder.value(getattr(error, "kind", None)),
        }

    # -- steps

    def step(self, step: Step, *, inherited: bool = False) -> None:
        """Write the step's file, then its event line (the commit point, fsynced), then the manifest."""
        self.recheck_last()
        record = self._step_record(step, inherited)
        name = f"steps/{step.number:04d}.json"
        data = _dumps(record)
        _write_file(self.dir / name, data)
        self.records.append(record)
        self.last = (step, _changeable(step))
        for decision in record["decisions"]:
            self.event("decision", _decision_event(decision, step.number, record["call"]["id"]))
        res = step.tool_result
        fields = {"number": step.number, "file": name, "tool": record["call"]["tool"]}
        fields.update(error_kind=res.error_kind, call_id=record["call"]["id"])
        if inherited:
            fields["inherited"] = True
        self.event("step", fields, sync=True)
        self.write_manifest()

    def recheck_last(self) -> None:
        """Rewrite the previous step's file if a hook changed the step after it was written (F5)."""
        if self.last is None:
            return
        step, seen = self.last
        if _changeable(step) != seen:
            record = self._step_record(step, bool(self.records[-1].get("inherited")))
            _write_file(self.dir / f"steps/{step.number:04d}.json", _dumps(record))
            self.records[-1] = record
            self.event("step_update", {"number": step.number, "file": f"steps/{step.number:04d}.json"})
        self.last = None

    def _step_record(self, step: Step, inherited: bool) -> dict[str, Any]:
        enc = self.encoder.value
        call, res = step.tool_call, step.tool_result
        metadata = dict(step.metadata) if isinstance(step.metadata, dict) else {}
        record: dict[str, Any] = {
            "number": step.number,
            "turn": step.turn,
            "call": enc(
                {"id": call.call_id, "tool": call.tool, "args": call.args, "reasoning": call.reasoning}
                | ({"original_args": metadata["original_args"]} if "original_args" in metadata else {})
                | ({"parse_error": call.parse_error} if call.parse_error is not None else {})
            ),
            "result": enc(
                {
                    "data": res.data,
                    "error": res.error,
                    "error_kind": res.error_kind,
                    "retriable": res.retriable,
                    "warnings": res.warnings,
                    "metadata": res.metadata,
                    "duration_ms": _number(res.duration_ms),
                }
            ),
            "free": bool(step.free),
            "llm_ms": round(_number(step.llm_ms), 3),
            "usage": _usage(step.usage),
            "started_at": _number(step.started_at),
            "decisions": enc(decisions_of(step)),
            "metadata": enc({k: v for k, v in metadata.items() if k != "decisions"}),
            "pretty": step.pretty(),
        }
        if inherited:
            record["inherited"] = True
        return record

    # -- the end

    def end(self, state: Any, result: Any) -> None:
        """Write the run's ending; the event log is closed whatever fails on the way."""
        try:
            self._end(state, result)
        finally:
            os.close(self.fd)

    def _end(self, state: Any, result: Any) -> None:
        self.recheck_last()
        enc = self.encoder.value
        stop = getattr(result, "stop_reason", None) or getattr(state, "stop_reason", None)
        detail = getattr(result, "detail", None) or getattr(state, "detail", "") or ""
        answer = getattr(result, "final_answer", None) if result is not None else state.final_answer
        for pending in list(getattr(result, "pending", None) or []):
            to_dict = getattr(pending, "to_dict", None)
            self.event("pending", {"call": enc(to_dict() if callable(to_dict) else pending)})
        dropped = [enc(_call_dict(c)) for c in getattr(result, "dropped_calls", None) or []]
        self.manifest.update(
            status="ended", ended_at=_iso(time.time()), stop_reason=enc(stop), detail=enc(detail)
        )
        self.manifest["final_answer"] = enc(answer)
        metadata = getattr(state, "metadata", None)
        for key in ("artifacts", "evals"):  # what graders read: the outcome, and verdicts already given
            if isinstance(metadata, dict) and key in metadata:
                self.manifest[key] = enc(metadata[key])
        trajectory = {
            "run_id": self.manifest["run_id"],
            "task": self.manifest["task"],
            "steps": self.records,
            "final_answer": self.manifest["final_answer"],
            "stop_reason": self.manifest["stop_reason"],
        }
        failure: OSError | None = None
        try:
            _write_file(self.dir / "trajectory.json", _dumps(trajectory))
        except OSError as exc:  # the steps are in their own files: still record the ending, then say so
            failure = exc
        self.write_manifest()
        fields = {"stop_reason": self.manifest["stop_reason"], "detail": self.manifest["detail"]}
        self.event("run_end", {**fields, "dropped_calls": dropped}, sync=True)
        if failure is not None:
            raise failure


def _changeable(step: Step) -> tuple[Any, ...]:
    """What a hook later in ``after_step`` may still add to a step: its metadata, its result's
    metadata and warnings (shallow copies: a key added or replaced shows)."""
    res = step.tool_result
    return (dict(step.metadata), dict(res.metadata), list(res.warnings), res.data, res.error)


def _usage(usage: Any) -> dict[str, Any]:
    if isinstance(usage, Usage):
        return {
            "input_tokens": int(usage.input_tokens),
            "output_tokens": int(usage.output_tokens),
            "cached_tokens": int(usage.cached_tokens),
            "cost": _number(usage.cost),
        }
    return Usage().to_dict()


def _call_dict(call: Any) -> Any:
    if isinstance(call, ToolCall):
        out: dict[str, Any] = {"id": call.call_id, "tool": call.tool, "args": call.args}
        if call.reasoning:
            out["reasoning"] = call.reasoning
        return out
    return call


def _retries(source: Any) -> list[Any]:
    """The attempts a backend made before this answer or failure, when it exposes them
    (an attribute ``retries``: a list of ``{"attempt", "cause", "wait_s"}``)."""
    found = getattr(source, "retries", None)
    return list(found) if isinstance(found, list | tuple) else []


def _decision_event(decision: dict[str, Any], number: int, call_id: Any) -> dict[str, Any]:
    """A decision as an event: the format's ``kind`` beside the engine's ``decision``."""
    return {**decision, "kind": decision.get("decision"), "step": number, "call_id": call_id}


def decisions_of(step: Step) -> list[dict[str, Any]]:
    """What the hooks decided about the step's call.

    The engine's own list (``step.metadata["decisions"]``) when it is there;
    otherwise what the step's metadata shows: a rewrite (``original_args``), a
    denial (``error_kind == "denied"``), an approval and injected notes.
    """
    metadata = step.metadata if isinstance(step.metadata, dict) else {}
    found = metadata.get("decisions")
    if isinstance(found, list):
        return [dict(d) for d in found if isinstance(d, dict)]
    out: list[dict[str, Any]] = []
    result = step.tool_result
    if "original_args" in metadata:
        hook = result.metadata.get("rewritten_by") if isinstance(result.metadata, dict) else None
        out.append(
            {
                "hook": hook or "?",
                "slot": "pre_dispatch",
                "decision": "rewrite",
                "before": metadata["original_args"],
                "after": step.tool_call.args,
            }
        )
    if "approval" in metadata:
        approval = metadata["approval"] if isinstance(metadata["approval"], dict) else {}
        out.append({"hook": "?", "slot": "pre_dispatch", "decision": "ask", "reason": approval.get("reason")})
    if result.error_kind == "denied":
        out.append({"hook": "?", "slot": "pre_dispatch", "decision": "deny", "reason": result.error})
    for note in metadata.get("notes") or []:
        out.append({"hook": "?", "slot": "post_dispatch", "decision": "inject", "reason": note})
    return out


# -- the hook ------------------------------------------------------------------------------


class ProvenanceSink:
    """Records every run it is a hook of in its own directory under `root`.

    One sink may serve several runs at once (threads, tasks, or processes that
    share the root): each run writes only into its own ``run_<id>/``, made with
    an exclusive ``mkdir``; a second session of the same run id (a resumed run)
    gets ``run_<id>.2``. Steps a run already had when it started (a fork, a
    resumed run) are written first, marked ``"inherited": true``.

    A write that fails in ``pre_loop`` or ``after_step`` ends the run with
    ``hook_error`` (nothing is yielded that is not recorded); one that fails
    around a model call or a tool does not fail that call, and is raised at the
    next ``after_step``.

    Args:
        root: the directory the runs' directories go into (created 0700 if missing).
        redact: mask secrets (`looplet.redaction.redact_value`) before anything is
            encoded. On by default; turn it off only for a directory no one else reads.
        max_chars: strings longer than this are cut; the cut keeps the head, the
            tail, the size in bytes and the sha256 of the (masked) text.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, redact: bool = True, max_chars: int = DEFAULT_MAX_CHARS
    ):
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 2:
            raise ConfigError(f"max_chars must be a whole number >= 2, got {max_chars!r}")
        self.root = Path(root)
        self.redact = bool(redact)
        self.max_chars = max_chars
        self._encoder = _Encoder(self.redact, max_chars)
        self._lock = threading.Lock()
        self._active: dict[str, _RunWriter] = {}
        self._dirs: dict[str, Path] = {}

    def __getstate__(self) -> dict[str, Any]:
        # For multiprocessing: a process gets the settings, never another process's open runs.
        return {"root": self.root, "redact": self.redact, "max_chars": self.max_chars}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__init__(data["root"], redact=data["redact"], max_chars=data["max_chars"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ProvenanceSink({str(self.root)!r}, redact={self.redact})"

    @property
    def runs(self) -> dict[str, Path]:
        """The directory of each run this sink has recorded in this process, by run id."""
        with self._lock:
            return dict(self._dirs)

    def path_of(self, run_id: str) -> Path:
        """The directory this sink recorded run `run_id` into (its latest session's)."""
        with self._lock:
            found = self._dirs.get(run_id)
        if found is None:
            raise KeyError(f"this sink has not recorded run {run_id!r}")
        return found

    # -- hook slots

    def pre_loop(self, state: Any, log: Any, ctx: Any) -> None:
        self._writer(state, ctx)

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> None:
        writer = self._writer(state, ctx)
        if _CURRENT_RUN.get() != state.run_id:
            token = _CURRENT_RUN.set(state.run_id)
            if writer.token is None:
                writer.token = token

    def after_step(self, state: Any, log: Any, step: Step) -> None:
        writer = self._writer(state, None)
        failure, writer.failure = writer.failure, None
        writer.step(step)
        if failure is not None:
            raise failure

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> None:
        writer = self._writer(state, ctx)
        with self._lock:
            self._active.pop(str(state.run_id), None)
        if writer.token is not None and _CURRENT_RUN.get() == state.run_id:
            try:
                _CURRENT_RUN.reset(writer.token)
            except ValueError:  # set in another context (a task that is gone): nothing to restore here
                pass
        writer.end(state, getattr(ctx, "result", None))

    # -- interceptors

    def around_llm(self, request: Any, proceed: Any) -> Any:
        writer = self._writer_of_request(request)
        started = time.perf_counter()
        try:
            response = proceed(request)
        except BaseException as exc:
            self._record_llm(writer, request, None, exc, started)
            raise
        self._record_llm(writer, request, response, None, started)
        return response

    def around_tool(self, call: Any, proceed: Any) -> Any:
        writer = self._writer_of_call(call)
        if writer is not None:
            try:
                spec = getattr(call, "spec", None)
                tool = getattr(spec, "name", None) or call.call.tool
                fields = {"call_id": call.call.call_id, "tool": tool, "args": self._encoder.value(call.args)}
                writer.event("tool_start", fields)
            except Exception as exc:  # recording must not fail the tool; raised at the next step
                writer.failure = writer.failure or exc
        return proceed()

    # -- finding the run

    def _writer(self, state: Any, ctx: Any) -> _RunWriter:
        """The run's writer, opened (its directory made) on first sight of the run."""
        run_id = str(state.run_id)
        with self._lock:
            writer = self._active.get(run_id)
            if writer is not None:
                return writer
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            tools = [t.get("name") for t in getattr(ctx, "tools", ()) or () if isinstance(t, dict)]
            writer = _RunWriter(self.root, state, [str(t) for t in tools], self._encoder)
            self._active[run_id] = writer
            self._dirs[run_id] = writer.dir
        for earlier in list(getattr(state, "steps", ()) or ()):
            writer.step(earlier, inherited=True)
        return writer

    def _writer_of_request(self, request: Any) -> _RunWriter | None:
        run_id = getattr(request, "run_id", None) or _CURRENT_RUN.get()
        with self._lock:
            writer = self._active.get(run_id) if run_id else None
            if writer is None and len(self._active) == 1:
                writer = next(iter(self._active.values()))
        return writer

    def _writer_of_call(self, call: Any) -> _RunWriter | None:
        """The run whose intent journal holds this call (the engine puts it there before the
        tool runs); among runs that reuse a call id, the one of this context."""
        run_id = getattr(call, "run_id", None)
        call_id = call.call.call_id
        with self._lock:
            if run_id:
                return self._active.get(run_id)
            holders = [w for w in self._active.values() if call_id in (w.state.in_flight or {})]
        if len(holders) == 1:
            return holders[0]
        current = _CURRENT_RUN.get()
        return next((w for w in holders if w.state.run_id == current), None)

    def _record_llm(
        self,
        writer: _RunWriter | None,
        request: Any,
        response: Any,
        error: BaseException | None,
        started: float,
    ) -> None:
        if writer is None:
            log.warning("ProvenanceSink: a model call of a run it does not know was not recorded")
            return
        try:
            writer.llm_call(request, response, error, (time.perf_counter() - started) * 1000)
        except Exception as exc:  # recording must not fail the model call; raised at the next step
            writer.failure = writer.failure or exc


# -- reading -------------------------------------------------------------------------------


@dataclass
class RecordedRun:
    """A run read back from its directory (see `read_run`).

    Attributes:
        path: the run's directory.
        manifest: ``manifest.json``; ``steps`` is the number of committed steps
            found (the manifest is rewritten after each step's line, so after a
            crash it may lag by one), and for a run that did not end ``llm_calls``
            counts the model calls found too.
        steps: the step records in order (``steps/NNNN.json``), only those
            whose line reached ``events.jsonl``.
        llm_calls: the model-call records in order (``llm/NNNN.json``).
        events: every complete line of ``events.jsonl``.
    """

    path: Path
    manifest: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or "")

    @property
    def parent_run_id(self) -> str | None:
        return self.manifest.get("parent_run_id")

    @property
    def task(self) -> Any:
        return self.manifest.get("task")

    @property
    def final_answer(self) -> Any:
        return self.manifest.get("final_answer")

    @property
    def stop_reason(self) -> str | None:
        return self.manifest.get("stop_reason")

    @property
    def usage(self) -> dict[str, Any]:
        return dict(self.manifest.get("usage") or Usage().to_dict())

    @property
    def ended(self) -> bool:
        """Whether the run ended (False for a run killed or still going)."""
        return self.manifest.get("status") == "ended"

    def step_objects(self) -> list[Step]:
        """The steps as `Step` records (see `step_from_record`)."""
        return [step_from_record(s) for s in self.steps]


def run_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """The run directories under `root`, sorted by name; ``[root]`` when `root` is one itself."""
    path = Path(root)
    if _is_run_dir(path):
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.name.startswith("run_") and _is_run_dir(p))


def _is_run_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and not path.is_symlink()
        and ((path / _MANIFEST).is_file() or (path / _EVENTS).is_file())
    )


def read_run(path: str | os.PathLike[str]) -> RecordedRun:
    """Read a run directory, or a root holding exactly one run.

    Raises:
        ProvenanceError: no such directory; it holds no run, or several
            (they are listed); its manifest is unreadable or of a newer format.
    """
    where = Path(path)
    if not where.is_dir():
        raise ProvenanceError(f"{where}: no such directory")
    found = run_dirs(where)
    if not found:
        raise ProvenanceError(
            f"{where} holds no recorded run (no manifest.json, events.jsonl or run_* directory)"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:10]) + (", ..." if len(found) > 10 else "")
        raise ProvenanceError(f"{where} holds {len(found)} runs; name one: {names}")
    return _read(found[0])


def _read(directory: Path) -> RecordedRun:
    events = read_events(directory / _EVENTS)
    manifest = _read_manifest(directory, events)
    steps = [_read_record(directory, e) for e in events if e.get("event") == "step"]
    llm = [_read_record(directory, e) for e in events if e.get("event") == "llm_call"]
    run = RecordedRun(
        directory,
        manifest,
        [s for s in steps if s is not None],
        [c for c in llm if c is not None],
        events,
    )
    manifest["steps"] = len(run.steps)  # the committed ones: the manifest may lag the log
    if manifest.get("status") != "ended":
        manifest["llm_calls"] = max(int(manifest.get("llm_calls") or 0), len(run.llm_calls))
    return run


def read_events(path: Path) -> list[dict[str, Any]]:
    """The complete lines of an event log; a torn (unterminated or unreadable) last line is left out."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    out = []
    for i, line in enumerate(lines[:-1]):  # the part after the last newline is torn or empty
        try:
            event = json.loads(line)
        except ValueError as exc:
            if i == len(lines) - 2:  # a last line cut inside (a crash that wrote part of a line)
                break
            raise ProvenanceError(f"{path}: line {i + 1} is not JSON ({exc})") from None
        if isinstance(event, dict):
            out.append(event)
    return out


def _read_manifest(directory: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    path = directory / _MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        start = next((e for e in events if e.get("event") == "run_start"), {})
        return {"format": FORMAT, "run_id": start.get("run_id", directory.name), "status": "running"}
    except ValueError as exc:
        raise ProvenanceError(f"{path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ProvenanceError(f"{path}: not a provenance manifest")
    fmt = str(manifest.get("format", ""))
    if not fmt.startswith("looplet.provenance/"):
        raise ProvenanceError(f"{path}: not a looplet provenance manifest (format {fmt!r})")
    if fmt != FORMAT:
        raise ProvenanceError(f"{path}: format {fmt!r} is newer than this looplet reads ({FORMAT})")
    return manifest


def _read_record(directory: Path, event: dict[str, Any]) -> dict[str, Any] | None:
    """The file an event names; None when it is missing (a power loss can lose an unsynced file)."""
    name = event.get("file")
    if not isinstance(name, str) or ".." in Path(name).parts or Path(name).is_absolute():
        return None
    path = directory / name
    if path.is_symlink():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except ValueError as exc:
        raise ProvenanceError(f"{path}: not JSON ({exc})") from None
    return record if isinstance(record, dict) else None


def step_from_record(record: dict[str, Any]) -> Step:
    """A `Step` rebuilt from a step record (values as recorded: masked and cut)."""
    call = record.get("call") or {}
    result = record.get("result") or {}
    metadata = dict(record.get("metadata") or {})
    if record.get("decisions"):
        metadata["decisions"] = record["decisions"]
    tool = str(call.get("tool") or "")
    return Step(
        number=int(record.get("number", 0)),
        tool_call=ToolCall(
            tool,
            dict(call.get("args") or {}),
            reasoning=str(call.get("reasoning") or ""),
            call_id=str(call.get("id") or ""),
            parse_error=call.get("parse_error"),
        ),
        tool_result=ToolResult(
            tool,
            data=result.get("data"),
            error=result.get("error"),
            error_kind=result.get("error_kind"),
            retriable=bool(result.get("retriable", False)),
            duration_ms=_number(result.get("duration_ms", 0.0)),
            warnings=list(result.get("warnings") or []),
            metadata=dict(result.get("metadata") or {}),
            call_id=str(call.get("id") or ""),
        ),
        turn=int(record.get("turn", 0)),
        usage=Usage.from_dict(record.get("usage") or {}),
        llm_ms=_number(record.get("llm_ms", 0.0)),
        started_at=_number(record.get("started_at", 0.0)),
        free=bool(record.get("free", False)),
        metadata=metadata,
    )
