"""Replay a recorded run against its recorded model responses, and diff two recorded runs.

A provenance directory (see `looplet.provenance`) holds every model reply of
a run and every step it took. Replaying it answers "what would this run do
now?" without a model: `ReplayLLM` serves the recorded replies in order, the
tools really run (or give their recorded results, ``results="recorded"``),
and `replay_loop` reports the first step where the new run parts from the
recording: a different call, different arguments, or a different result.
`diff_runs` compares two recordings the same way (``python -m looplet diff``),
including a fork and the run it was forked from.

Values are compared as the recorder wrote them: made JSON-safe by the tool
result rule, secrets masked, and a string the recorder cut compared by its
sha256. Timings, usage and ids are not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .backends.protocol import LLMRequest, LLMResponse
from .errors import ConfigError, LLMError, ScriptExhaustedError
from .loop import AsyncLoop, Loop, async_composable_loop, composable_loop
from .provenance import RecordedRun, read_run
from .redaction import redact_value
from .state import DefaultState
from .tools.registry import BaseToolRegistry, PreparedCall
from .tools.results import to_jsonable
from .types import ErrorKind, RunResult, Step, ToolCall, ToolResult, Usage

__all__ = [
    "ReplayLLM",
    "ReplayExhausted",
    "ReplayMismatch",
    "Divergence",
    "ReplayReport",
    "Replay",
    "AsyncReplay",
    "replay_loop",
    "async_replay_loop",
    "fork_recording",
    "RecordedResults",
    "StepPair",
    "RunDiff",
    "diff_runs",
    "step_difference",
    "request_difference",
    "load_run",
]

Results = Literal["recorded"] | None


# -- reading a recording ---------------------------------------------------------------


def load_run(path: str | os.PathLike[str] | RecordedRun) -> RecordedRun:
    """The `RecordedRun` at `path` (a run directory, or a root holding one); a `RecordedRun` as is."""
    if isinstance(path, RecordedRun):
        return path
    return read_run(path)


def _steps_by_number(run: RecordedRun) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for record in run.steps:
        if isinstance(record, dict) and isinstance(record.get("number"), int):
            out[record["number"]] = record
    return out


def _manifest(run: RecordedRun) -> dict[str, Any]:
    return run.manifest if isinstance(run.manifest, dict) else {}


# -- comparing values as the recorder wrote them --------------------------------------


def _is_cut(value: Any) -> bool:
    """A string the recorder cut to its size limit: ``{"truncated": true, "sha256": ...}``."""
    return isinstance(value, dict) and value.get("truncated") is True and isinstance(value.get("sha256"), str)


def _digest(value: Any) -> str | None:
    if _is_cut(value):
        return str(value["sha256"])
    if isinstance(value, str):
        return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON data; a cut string equals the full string with the same sha256."""
    if _is_cut(a) or _is_cut(b):
        return _digest(a) is not None and _digest(a) == _digest(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _plain(value: Any) -> Any:
    """`value` as strict JSON data (tuples become lists), by the tool result rule."""
    return json.loads(json.dumps(to_jsonable(value), allow_nan=False))


def _matches(recorded: Any, live: Any) -> bool:
    """Whether a live value is what the recorder wrote: compared raw, then with secrets masked
    (a recording made with ``redact=False`` holds them raw)."""
    plain = _plain(live)
    return _same(recorded, plain) or _same(recorded, _plain(redact_value(plain)))


def _step_record(step: Step) -> dict[str, Any]:
    """The parts of a live `Step` a recording is compared on, in the step file's shape."""
    call, result = step.tool_call, step.tool_result
    return {
        "number": step.number,
        "call": {"id": call.call_id, "tool": call.tool, "args": call.args},
        "result": {"data": result.data, "error": result.error, "error_kind": result.error_kind},
        "pretty": step.pretty(),
    }


def _part(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = record.get(name)
    return value if isinstance(value, dict) else {}


def step_difference(
    a: Mapping[str, Any], b: Mapping[str, Any], *, live: bool = False
) -> tuple[str, str] | None:
    """How step record `b` differs from `a`: ``(kind, detail)`` with kind ``call``, ``args``
    or ``result``; None when they are the same step. With `live`, `b` is a live step's
    record (`step_record`) and is normalised as the recorder would have written it."""
    same = _matches if live else _same
    call_a, call_b = _part(a, "call"), _part(b, "call")
    if call_a.get("tool") != call_b.get("tool"):
        return "call", f"different call: {_name(call_a)} vs {_name(call_b)}"
    if not same(call_a.get("args"), call_b.get("args")):
        return "args", f"different arguments to {_name(call_a)}: {_args_detail(call_a, call_b, same)}"
    return _result_difference(_part(a, "result"), _part(b, "result"), same)


def _name(call: Mapping[str, Any]) -> str:
    tool = call.get("tool")
    return str(tool) if tool else "(no tool call)"


def _args_detail(a: Mapping[str, Any], b: Mapping[str, Any], same: Callable[[Any, Any], bool]) -> str:
    args_a, args_b = a.get("args"), b.get("args")
    if not isinstance(args_a, dict) or not isinstance(args_b, dict):
        return "the arguments differ"
    names = sorted(set(args_a) | set(args_b))
    changed = [n for n in names if n not in args_a or n not in args_b or not same(args_a[n], args_b[n])]
    return ", ".join(changed) + (" differs" if len(changed) == 1 else " differ")


def _result_difference(
    a: Mapping[str, Any], b: Mapping[str, Any], same: Callable[[Any, Any], bool]
) -> tuple[str, str] | None:
    error_a, error_b = a.get("error"), b.get("error")
    if bool(error_a) != bool(error_b):
        first = f"error ({a.get('error_kind')})" if error_a else "data"
        second = f"error ({b.get('error_kind')})" if error_b else "data"
        return "result", f"different result: {first} vs {second}"
    if error_a:
        if a.get("error_kind") != b.get("error_kind"):
            return "result", f"different error kind: {a.get('error_kind')} vs {b.get('error_kind')}"
        if not same(error_a, error_b):
            return "result", "different error message"
        return None
    if not same(a.get("data"), b.get("data")):
        return "result", "different data"
    return None


# -- the replay backend ---------------------------------------------------------------


class ReplayExhausted(ScriptExhaustedError):
    """The replayed run asked for more model calls than the recording holds."""


class ReplayMismatch(LLMError):
    """With ``strict=True``: a model call's request differs from the recorded one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="bad_request")


def _response_of(record: Mapping[str, Any]) -> LLMResponse:
    """The `LLMResponse` an ``llm/NNNN.json`` record holds (its recorded failure is raised)."""
    error = record.get("error")
    if isinstance(error, dict):
        kind = error.get("kind")
        kind = kind if isinstance(kind, str) else "unknown"
        raise LLMError(f"recorded failure: {error.get('type')}: {error.get('message')}", kind=kind)
    response = _part(record, "response")
    calls = [
        ToolCall(
            str(c.get("tool", "")),
            dict(c.get("args") or {}),
            reasoning=str(c.get("reasoning") or ""),
            call_id=str(c.get("id") or ""),
        )
        for c in response.get("tool_calls") or []
        if isinstance(c, dict)
    ]
    usage = record.get("usage")
    return LLMResponse(
        text=str(response.get("text") or ""),
        tool_calls=calls,
        usage=Usage.from_dict(usage) if isinstance(usage, dict) else Usage(),
        stop_reason=str(response.get("stop_reason") or ""),
        model=str(response.get("model") or ""),
        request_id=str(response.get("request_id") or ""),
    )


def _request_record(request: LLMRequest) -> dict[str, Any]:
    """The parts of a live request a recording is compared on, in the ``llm/`` file's shape."""
    return {
        "system": request.system,
        "messages": [m.to_dict() for m in request.messages],
        "tools": [dict(t) for t in request.tools],
        "extra": list(request.extra),
    }


_REQUEST_PARTS = (
    ("system", "the system prompt"),
    ("tools", "the tools offered"),
    ("extra", "the injected texts"),
)


def request_difference(a: Mapping[str, Any], b: Mapping[str, Any], *, live: bool = False) -> str | None:
    """Which part of request `b` differs from recorded request `a` (None: the same prompt)."""
    same = _matches if live else _same
    for key, words in _REQUEST_PARTS:
        if not same(a.get(key, "" if key == "system" else []), b.get(key, "" if key == "system" else [])):
            return words
    messages_a, messages_b = a.get("messages") or [], b.get("messages") or []
    for i, (x, y) in enumerate(zip(messages_a, messages_b, strict=False), 1):
        if not same(x, y):
            return f"message {i}"
    if len(messages_a) != len(messages_b):
        return f"the number of messages ({len(messages_a)} vs {len(messages_b)})"
    return None


class ReplayLLM:
    """A backend that answers with a recorded run's model replies, in order.

    Args:
        recording: a provenance run directory, a `RecordedRun`, or its list of
            ``llm/`` records.
        strict: raise `ReplayMismatch` when a request differs from the recorded
            one (default: note it in `mismatches` and answer anyway).
        native_tool_calls: whether to present itself as a native tool-calling
            backend (it changes the hint a reply without a call gets). None: as
            the recording shows.

    Attributes:
        calls: every request received, in order.
        mismatches: ``(call number, what differs)`` for requests that differ from the recording.

    Asked for more calls than were recorded, it raises `ReplayExhausted`.
    """

    def __init__(
        self,
        recording: Any,
        *,
        strict: bool = False,
        native_tool_calls: bool | None = None,
    ) -> None:
        if isinstance(recording, (list, tuple)):
            self.records: list[dict[str, Any]] = [r for r in recording if isinstance(r, dict)]
            run = None
        else:
            run = load_run(recording)
            self.records = [r for r in run.llm_calls if isinstance(r, dict)]
        self.strict = strict
        self.native_tool_calls = _native(run) if native_tool_calls is None else native_tool_calls
        self.calls: list[LLMRequest] = []
        self.mismatches: list[tuple[int, str]] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        n = len(self.calls)
        if n > len(self.records):
            raise ReplayExhausted(
                f"the replayed run asked for model call {n}, but the recording holds {len(self.records)}: "
                "it went past the recorded run (a changed hook, tool or setting made it take another turn)"
            )
        record = self.records[n - 1]
        recorded_request = record.get("request")
        if isinstance(recorded_request, dict):
            what = request_difference(recorded_request, _request_record(request), live=True)
            if what is not None:
                self.mismatches.append((n, what))
                if self.strict:
                    raise ReplayMismatch(f"model call {n} differs from the recording in {what}")
        return _response_of(record)

    @property
    def remaining(self) -> int:
        return max(0, len(self.records) - len(self.calls))

    def __repr__(self) -> str:
        return f"ReplayLLM({len(self.calls)}/{len(self.records)} recorded replies used)"


_NATIVE_HINT = "Use your tool-calling interface, not text."


def _native(run: RecordedRun | None) -> bool:
    """Whether the recorded backend called tools natively: the manifest says, or the hint a
    reply without a call was given shows it."""
    if run is None:
        return False
    flag = _manifest(run).get("native_tool_calls")
    if isinstance(flag, bool):
        return flag
    for record in run.steps:
        error = _part(record, "result").get("error") if isinstance(record, dict) else None
        if isinstance(error, str) and _NATIVE_HINT in error:
            return True
    return False


# -- recorded results ----------------------------------------------------------------


def _result_of(record: Mapping[str, Any], call_id: str) -> ToolResult:
    """The `ToolResult` a step file holds, tied to `call_id`."""
    result = _part(record, "result")
    call = _part(record, "call")
    metadata = result.get("metadata")
    return ToolResult(
        tool=str(call.get("tool", "")),
        data=result.get("data"),
        error=result.get("error") or None,
        error_kind=result.get("error_kind"),
        retriable=bool(result.get("retriable", False)),
        duration_ms=float(result.get("duration_ms") or 0.0),
        warnings=[str(w) for w in result.get("warnings") or []],
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        call_id=call_id,
    )


class RecordedResults:
    """An ``around_tool`` interceptor that answers each call with its recorded result.

    The call is found by its id and tool; a call the recording does not hold
    gets an ``execution`` error (the tool is never run behind your back).
    """

    def __init__(self, steps: Iterable[Mapping[str, Any]]) -> None:
        self.by_call: dict[tuple[str, str], Mapping[str, Any]] = {}
        for record in steps:
            call = _part(record, "call")
            if call.get("id"):
                self.by_call[(str(call["id"]), str(call.get("tool", "")))] = record

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> ToolResult:
        tool_call = call.call
        record = self.by_call.get((tool_call.call_id, tool_call.tool))
        if record is None:
            return ToolResult(
                tool=tool_call.tool,
                error=f"no recorded result for call {tool_call.call_id!r} to {tool_call.tool}: "
                "the replayed run made a call the recording does not have",
                error_kind=ErrorKind.EXECUTION,
                call_id=tool_call.call_id,
            )
        return _result_of(record, tool_call.call_id)


# -- the replay report --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where a run first parts from another.

    Attributes:
        step: the step number (None: the steps agree and the runs end differently).
        kind: ``call``, ``args``, ``result``, ``missing`` (the second run has no
            such step), ``extra`` (only the second run has it), ``exhausted``
            (the replay asked for more model calls than were recorded) or
            ``outcome`` (same steps, another stop reason or final answer).
        detail: what differs, in words.
        before: the first run's step as a `pretty()` line (None when it has none).
        after: the second run's (the replay's) step line.
    """

    step: int | None
    kind: str
    detail: str
    before: str | None = None
    after: str | None = None

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step is not None else "the end"
        return f"{where}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.kind,
            "detail": self.detail,
            "before": self.before,
            "after": self.after,
        }


@dataclass(slots=True)
class ReplayReport:
    """What a replay found.

    Attributes:
        run_dir: the recording replayed.
        result: the replayed run's `RunResult`.
        divergence: the first place the replay parts from the recording (None: it reproduced it).
        steps_compared: how many replayed steps were compared with recorded ones.
        mismatches: model calls whose prompt differed from the recorded one
            (``(call number, what differs)``); the recorded reply was used anyway.
    """

    run_dir: str
    result: RunResult | None
    divergence: Divergence | None
    steps_compared: int
    mismatches: list[tuple[int, str]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when the replay took the recorded steps and ended the same way."""
        return self.divergence is None

    def __str__(self) -> str:
        if self.divergence is None:
            stop = self.result.stop_reason if self.result else "not ended"
            return f"replay of {self.run_dir}: reproduced {self.steps_compared} steps ({stop})"
        return f"replay of {self.run_dir} diverged at {self.divergence}"


class _Comparison:
    """The recorded run, and the first divergence of the live steps shown to it."""

    def __init__(self, run: RecordedRun, first_step: int) -> None:
        self.run = run
        self.recorded = {n: r for n, r in _steps_by_number(run).items() if n >= first_step}
        self.divergence: Divergence | None = None
        self.compared = 0
        self.last_number = first_step - 1

    def see(self, step: Step) -> None:
        self.last_number = max(self.last_number, step.number)
        record = self.recorded.get(step.number)
        live = _step_record(step)
        if record is None:
            ended = _manifest(self.run).get("status") == "ended"
            text = "the recording has no such step" + ("" if ended else " (the recorded run did not end)")
            self._first(Divergence(step.number, "extra", text, None, live["pretty"]))
            return
        self.compared += 1
        found = step_difference(record, live, live=True)
        if found is not None:
            self._first(Divergence(step.number, found[0], found[1], _pretty(record), live["pretty"]))

    def end(self, result: RunResult | None) -> Divergence | None:
        """The divergence once the run ended: a step it did not take, or another ending."""
        if self.divergence is not None or result is None:
            return self.divergence
        if isinstance(result.error, ReplayExhausted):
            return Divergence(self.last_number + 1, "exhausted", str(result.error))
        missing = sorted(n for n in self.recorded if n > self.last_number)
        if missing:
            n = missing[0]
            text = f"the replayed run ended ({result.stop_reason}) before this step"
            return Divergence(n, "missing", text, _pretty(self.recorded[n]), None)
        manifest = _manifest(self.run)
        if manifest.get("status") != "ended":
            return None  # a recording that was cut short has no ending to compare
        return _outcome(manifest, result.stop_reason, result.final_answer, live=True)

    def _first(self, divergence: Divergence) -> None:
        if self.divergence is None:
            self.divergence = divergence


def _pretty(record: Mapping[str, Any] | None) -> str | None:
    if record is None:
        return None
    text = record.get("pretty")
    return str(text) if text is not None else f"#{record.get('number')} {_name(_part(record, 'call'))}"


def _outcome(
    manifest: Mapping[str, Any], stop_reason: Any, final_answer: Any, *, live: bool
) -> Divergence | None:
    same = _matches if live else _same
    if manifest.get("stop_reason") != stop_reason:
        detail = f"different stop reason: {manifest.get('stop_reason')} vs {stop_reason}"
        return Divergence(None, "outcome", detail)
    if not same(manifest.get("final_answer"), final_answer):
        return Divergence(None, "outcome", "different final answer")
    return None


# -- replay_loop --------------------------------------------------------------------


def _prepare(
    run_dir: str | os.PathLike[str] | RecordedRun,
    hooks: Iterable[object] | None,
    results: Results,
    kwargs: dict[str, Any],
    *,
    strict: bool,
    parent: str | os.PathLike[str] | RecordedRun | None,
) -> tuple[RecordedRun, ReplayLLM, list[object], int]:
    """The recording, its replay backend, the hooks, and the first step to compare."""
    if results not in (None, "recorded"):
        raise ConfigError(f'results must be None (run the tools) or "recorded", got {results!r}')
    run = load_run(run_dir)
    state = kwargs.get("state")
    hooks = list(hooks or ())
    if results == "recorded":
        hooks.append(RecordedResults(run.steps))  # innermost: the caller's interceptors see each call
    script = _script(run, parent, state)
    llm = ReplayLLM(script, strict=strict, native_tool_calls=_native(run))
    if state is None:
        kwargs.setdefault("task", _manifest(run).get("task"))
    first_step = 1 if state is None else len(state.steps) + 1
    return run, llm, hooks, first_step


def _script(
    run: RecordedRun, parent: str | os.PathLike[str] | RecordedRun | None, state: Any
) -> list[dict[str, Any]]:
    """The model replies to serve: the run's own, after the parent's for the turns it inherited.

    A fork (or a resumed session) is recorded with the steps it started with,
    marked ``inherited``, but only with its own model calls; replayed from the
    start, it needs the parent's replies for those turns. With ``state=`` (the
    state it started from) its own replies are enough.
    """
    own = [r for r in run.llm_calls if isinstance(r, dict)]
    inherited = [s.get("turn") for s in run.steps if isinstance(s, dict) and s.get("inherited")]
    kept = max((t for t in inherited if isinstance(t, int)), default=0)
    if kept == 0 or state is not None:
        return own
    manifest = _manifest(run)
    if parent is None:
        origin = manifest.get("parent_run_id") or "an earlier session"
        raise ConfigError(
            f"{run.path} continues {origin!r} from step {manifest.get('forked_at') or len(run.steps) + 1}: "
            "its first model replies are in that recording; pass parent=<its directory> "
            "(or state= the state it started from)"
        )
    prefix: list[dict[str, Any]] = []
    replies = 0
    for record in load_run(parent).llm_calls:
        if replies >= kept:
            break
        prefix.append(record)
        replies += record.get("error") is None
    if replies < kept:
        raise ConfigError(f"{parent}: holds {replies} model replies; {run.path} inherited {kept} turns")
    return prefix + own


class Replay(Iterator[Step]):
    """A replayed run as an iterator of Steps (what `replay_loop` returns).

    Iterate it like the loop, or call `run()`; `divergence` is the first
    divergence seen so far, and `report()` says what the replay found once it
    ended. `loop` is the underlying `Loop` (its `state` and `history`), `llm`
    the `ReplayLLM`.
    """

    def __init__(self, run: RecordedRun, llm: ReplayLLM, loop: Loop, first_step: int) -> None:
        self.llm = llm
        self.loop = loop
        self._compare = _Comparison(run, first_step)
        self._path = str(run.path)

    def __iter__(self) -> Replay:
        return self

    def __next__(self) -> Step:
        step = next(self.loop)
        self._compare.see(step)
        return step

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> RunResult | None:
        return self.loop.close()

    @property
    def result(self) -> RunResult | None:
        return self.loop.result

    @property
    def divergence(self) -> Divergence | None:
        return self._compare.divergence

    def report(self) -> ReplayReport:
        """What the replay found (read after the run ended; a run still open is ended first)."""
        result = self.loop.result
        return ReplayReport(
            self._path, result, self._compare.end(result), self._compare.compared, list(self.llm.mismatches)
        )

    def run(self) -> ReplayReport:
        """Replay to the end and return the report."""
        for _ in self:
            pass
        return self.report()


def replay_loop(
    run_dir: str | os.PathLike[str] | RecordedRun,
    *,
    tools: BaseToolRegistry | None = None,
    hooks: Iterable[object] | None = None,
    results: Results = None,
    strict: bool = False,
    parent: str | os.PathLike[str] | RecordedRun | None = None,
    **loop_kwargs: Any,
) -> Replay:
    """Re-run a recorded run against its recorded model replies.

    Args:
        run_dir: the provenance run directory (or a root holding one run).
        tools: the tools to run; they really run, unless `results` is ``"recorded"``.
        hooks: the hooks of the new run (a hook that changes what the model
            would see is noted in `ReplayReport.mismatches`).
        results: ``"recorded"`` answers every tool call with its recorded
            result, so nothing runs (hooks and validation still do).
        strict: stop the run (``llm_error``, `ReplayMismatch`) when a model
            call's prompt differs from the recorded one.
        parent: for a fork (or a resumed session) replayed from its start, the
            recording it continues: its model replies serve the inherited turns.
        loop_kwargs: passed to `composable_loop` (``config``, ``max_steps``,
            ``system_prompt``, ``context``, ``state``...). The task defaults
            to the recorded one.

    Returns:
        A `Replay`: iterate it for Steps, then read ``report()``; or ``run()``.
    """
    run, llm, hooks, first_step = _prepare(run_dir, hooks, results, loop_kwargs, strict=strict, parent=parent)
    loop = composable_loop(llm, tools=tools, hooks=hooks, **loop_kwargs)
    return Replay(run, llm, loop, first_step)


def fork_recording(
    run_dir: str | os.PathLike[str] | RecordedRun,
    at_step: int,
    *,
    tools: BaseToolRegistry | None = None,
    hooks: Iterable[object] | None = None,
    results: Results = None,
    parent: str | os.PathLike[str] | RecordedRun | None = None,
    **loop_kwargs: Any,
) -> DefaultState:
    """A new run that starts where the model turn of `at_step` started in a recorded run.

    The steps before that turn are replayed against the recorded replies: the
    tools really run (``results="recorded"``: they do not), so what they did,
    in a fresh workspace say, is done again. The replay must make the same
    calls with the same arguments; a result that now differs (a timing in a
    test report, a path) is kept as it is now, and said in
    ``state.metadata["fork_replay"]``. The state returned has those steps,
    a new run id, ``parent_run_id`` (the recorded run) and ``forked_at``;
    continue it with a changed prompt, hook or model, record it with the same
    `ProvenanceSink`, and ``looplet diff`` the two directories.

    Raises:
        ConfigError: there is no step `at_step` in the recording, or the replay
            of the steps before it parted from the recording (it names where).
    """
    run = load_run(run_dir)
    numbers = {s.get("number"): s for s in run.steps if isinstance(s, dict)}
    if not isinstance(at_step, int) or isinstance(at_step, bool) or at_step not in numbers:
        raise ConfigError(f"fork at step {at_step!r}: the recording {run.path} has steps 1..{len(numbers)}")
    turn = numbers[at_step].get("turn")
    first = min(n for n, s in numbers.items() if s.get("turn") == turn and isinstance(n, int))
    if first == 1:
        state = DefaultState(task=_manifest(run).get("task"))
    else:
        replay = replay_loop(run, tools=tools, hooks=hooks, results=results, parent=parent, **loop_kwargs)
        with replay:
            for step in replay:
                if step.number >= first - 1:
                    break  # the turn of `at_step` is not asked for: the fork asks its own
        parted = replay.divergence
        if parted is not None and parted.kind != "result" and (parted.step is None or parted.step < first):
            raise ConfigError(f"cannot fork {run.path} at step {at_step}: the replay parted at {parted}")
        state = replay.loop.state
        if parted is not None and parted.kind == "result" and parted.step is not None and parted.step < first:
            state.metadata["fork_replay"] = f"the same calls, but a result differs first at {parted}"
        if len(state.steps) != first - 1:
            raise ConfigError(
                f"cannot fork {run.path} at step {at_step}: the replay stopped after "
                f"{len(state.steps)} of {first - 1} steps ({state.stop_reason}: {state.detail})"
            )
    state.parent_run_id, state.forked_at = run.run_id, at_step
    state.fingerprint = {}  # a fork is meant to run with other settings: no warning for that
    return state


class AsyncReplay(AsyncIterator[Step]):
    """The async twin of `Replay` (what `async_replay_loop` returns)."""

    def __init__(self, run: RecordedRun, llm: ReplayLLM, loop: AsyncLoop, first_step: int) -> None:
        self.llm = llm
        self.loop = loop
        self._compare = _Comparison(run, first_step)
        self._path = str(run.path)

    def __aiter__(self) -> AsyncReplay:
        return self

    async def __anext__(self) -> Step:
        step = await self.loop.__anext__()
        self._compare.see(step)
        return step

    async def __aenter__(self) -> AsyncReplay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> RunResult | None:
        return await self.loop.aclose()

    @property
    def result(self) -> RunResult | None:
        return self.loop.engine.result

    @property
    def divergence(self) -> Divergence | None:
        return self._compare.divergence

    def report(self) -> ReplayReport:
        result = self.loop.engine.result
        return ReplayReport(
            self._path, result, self._compare.end(result), self._compare.compared, list(self.llm.mismatches)
        )

    async def run(self) -> ReplayReport:
        async for _ in self:
            pass
        return self.report()


def async_replay_loop(
    run_dir: str | os.PathLike[str] | RecordedRun,
    *,
    tools: BaseToolRegistry | None = None,
    hooks: Iterable[object] | None = None,
    results: Results = None,
    strict: bool = False,
    parent: str | os.PathLike[str] | RecordedRun | None = None,
    **loop_kwargs: Any,
) -> AsyncReplay:
    """The async twin of `replay_loop`, on `async_composable_loop` (async tools and hooks awaited)."""
    run, llm, hooks, first_step = _prepare(run_dir, hooks, results, loop_kwargs, strict=strict, parent=parent)
    loop = async_composable_loop(llm, tools=tools, hooks=hooks, **loop_kwargs)
    return AsyncReplay(run, llm, loop, first_step)


# -- diffing two recordings --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepPair:
    """One step number in both runs.

    Attributes:
        number: the step number.
        a, b: each run's step record (None: that run has no such step).
        difference: ``(kind, detail)`` when they differ, None when the same.
        shared: the step is before the fork point: the fork inherited it from its parent.
    """

    number: int
    a: Mapping[str, Any] | None
    b: Mapping[str, Any] | None
    difference: tuple[str, str] | None
    shared: bool = False

    @property
    def same(self) -> bool:
        return self.difference is None


@dataclass(slots=True)
class RunDiff:
    """Two recorded runs compared step by step (`diff_runs`).

    Attributes:
        a, b: the two `RecordedRun`s.
        relation: how they are related, in words (``"B is a fork of A at step 3"``), or "".
        pairs: one `StepPair` per step number either run has, in order.
        divergence: the first place they part (None: identical).
        prompt: the first model call whose prompt differs: ``(call in B, step, what)``, or None.
    """

    a: RecordedRun
    b: RecordedRun
    relation: str
    pairs: list[StepPair]
    divergence: Divergence | None
    prompt: tuple[int, int | None, str] | None = None

    @property
    def identical(self) -> bool:
        return self.divergence is None and self.prompt is None

    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON data (``looplet diff --json``)."""
        return {
            "identical": self.identical,
            "a": _summary(self.a),
            "b": _summary(self.b),
            "relation": self.relation or None,
            "first_divergence": self.divergence.to_dict() if self.divergence else None,
            "first_prompt_difference": None
            if self.prompt is None
            else {"model_call": self.prompt[0], "step": self.prompt[1], "what": self.prompt[2]},
            "steps": [
                {
                    "number": p.number,
                    "same": p.same,
                    "shared": p.shared,
                    "kind": p.difference[0] if p.difference else None,
                    "detail": p.difference[1] if p.difference else None,
                    "a": _pretty(p.a),
                    "b": _pretty(p.b),
                }
                for p in self.pairs
            ],
        }


def _summary(run: RecordedRun) -> dict[str, Any]:
    manifest = _manifest(run)
    keys = ("run_id", "parent_run_id", "forked_at", "task", "status", "stop_reason", "final_answer")
    out = {k: manifest.get(k) for k in keys}
    out["path"] = str(run.path)
    out["steps"] = len(run.steps)
    return out


def _fork_point(parent: RecordedRun, child: RecordedRun) -> int | None:
    """The step `child` was forked at, when it is a fork of `parent`."""
    manifest, parent_id = _manifest(child), _manifest(parent).get("run_id")
    at = manifest.get("forked_at")
    if parent_id and manifest.get("parent_run_id") == parent_id and isinstance(at, int):
        return at
    return None


def _relation(a: RecordedRun, b: RecordedRun) -> tuple[str, int | None, str | None]:
    """``(words, fork step, which side holds inherited steps: "a", "b" or "both")``."""
    at = _fork_point(a, b)
    if at is not None:
        return f"B is a fork of A at step {at}", at, "b"
    at = _fork_point(b, a)
    if at is not None:
        return f"A is a fork of B at step {at}", at, "a"
    ma, mb = _manifest(a), _manifest(b)
    parent, at_a, at_b = ma.get("parent_run_id"), ma.get("forked_at"), mb.get("forked_at")
    if parent and parent == mb.get("parent_run_id") and isinstance(at_a, int) and isinstance(at_b, int):
        words = f"A and B are forks of {parent} (A at step {at_a}, B at step {at_b})"
        return words, min(at_a, at_b), "both"
    return "", None, None


def _is_shared(
    n: int, at: int | None, side: str | None, x: Mapping[str, Any] | None, y: Mapping[str, Any] | None
) -> bool:
    """Whether step `n` is one a fork inherited (before its fork point): shown as shared."""
    if at is None or n >= at:
        return False
    sides = {"a": [x], "b": [y], "both": [x, y]}.get(side or "", [])
    return all(r is None or bool(r.get("inherited")) for r in sides)


def diff_runs(a: str | os.PathLike[str] | RecordedRun, b: str | os.PathLike[str] | RecordedRun) -> RunDiff:
    """Compare two recorded runs step by step (directories or `RecordedRun`s).

    When one is a fork of the other (or both are forks of one run), the steps
    before the fork point that the fork inherited are marked `shared`; a fork
    directory that lacks them is compared with its parent's.
    """
    run_a, run_b = load_run(a), load_run(b)
    relation, at, fork_side = _relation(run_a, run_b)
    steps_a, steps_b = _steps_by_number(run_a), _steps_by_number(run_b)
    pairs: list[StepPair] = []
    divergence: Divergence | None = None
    for n in sorted(set(steps_a) | set(steps_b)):
        x, y = steps_a.get(n), steps_b.get(n)
        shared = _is_shared(n, at, fork_side, x, y)
        difference = None if shared and (x is None or y is None) else _pair_difference(x, y)
        pairs.append(StepPair(n, x, y, difference, shared=shared))
        if difference is not None and divergence is None:
            divergence = Divergence(n, difference[0], difference[1], _pretty(x), _pretty(y))
    if divergence is None:
        manifest_b = _manifest(run_b)
        divergence = _outcome(
            _manifest(run_a), manifest_b.get("stop_reason"), manifest_b.get("final_answer"), live=False
        )
    return RunDiff(run_a, run_b, relation, pairs, divergence, _prompt_difference(run_a, run_b))


def _pair_difference(x: Mapping[str, Any] | None, y: Mapping[str, Any] | None) -> tuple[str, str] | None:
    if x is None:
        return "extra", "only B has this step"
    if y is None:
        return "missing", "only A has this step"
    return step_difference(x, y)


def _calls_by_step(run: RecordedRun) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for record in run.llm_calls:
        if isinstance(record, dict):
            out.setdefault(record.get("step"), []).append(record)
    return out


def _prompt_difference(a: RecordedRun, b: RecordedRun) -> tuple[int, int | None, str] | None:
    """The first model call of B whose prompt differs from A's call before the same step.

    Calls are paired by the step they came before (so a fork recorded without
    its parent's calls still pairs up), in order within that step.
    """
    calls_a = _calls_by_step(a)
    for step, records in sorted(_calls_by_step(b).items(), key=lambda kv: _order(kv[0])):
        for i, record in enumerate(records):
            others = calls_a.get(step, [])
            if i >= len(others):
                continue  # no counterpart: the steps already differ there
            what = request_difference(_part(others[i], "request"), _part(record, "request"))
            if what is not None:
                index = record.get("index")
                return (index if isinstance(index, int) else 0, step if isinstance(step, int) else None, what)
    return None


def _order(step: Any) -> tuple[int, int]:
    return (0, step) if isinstance(step, int) else (1, 0)
