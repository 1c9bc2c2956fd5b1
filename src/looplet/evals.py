"""Pytest-style evals: plain ``eval_*(ctx)`` functions that grade a run, live or recorded.

An eval is any function named ``eval_<something>`` that takes an `EvalContext`
(and, to use a judge model, an ``llm`` second parameter) and returns a verdict.
One function, `to_result`, turns whatever it returned into an `EvalResult`:

==================  ===================================================================
returned            result
==================  ===================================================================
``True``/``False``  score 1.0 / 0.0, passed / failed
a number            a score, which must lie in [0, 1]; passes when ``score >= threshold``
                    (0.0 is a score like any other, never "no score")
a string            a failure, the string being the message (see below)
a dict              ``passed``, ``score``, ``detail``, ``label``; other keys kept in ``data``
an `EvalResult`     kept as it is (its name filled in when empty)
``None``            an error: the eval forgot to return its verdict
==================  ===================================================================

An eval that raises ``AssertionError`` fails with the assertion's message, so
pytest habits work (``assert ctx.answer == "4", ctx.answer``). Any other
exception makes an *error* result, never a pass. `skip` (raising
`EvalSkipped`) marks it skipped. An eval is *required* unless declared with
``@evaluation(required=False)``; a required eval that fails, errors, is
skipped, or needs a judge model that was not given, fails the suite.

A string is a failure message, not a label, because an eval exists to say
whether the run was good, and an answer that does not say so must not count as
a pass: ``return f"expected 4, got {answer}"`` reads as the complaint it is.
To pass with a note or report a label, return ``{"passed": True, "detail": ...}``
or ``{"passed": ..., "label": "polite"}``.

This module imports nothing outside the standard library and looplet's core;
the pytest helpers import pytest only when called.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys
import tempfile
import threading
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import LoopError, propagates
from .redaction import redact_text
from .state import DefaultState
from .types import RunResult, Step, ToolCall, Usage

if TYPE_CHECKING:
    from .provenance import RecordedRun

__all__ = [
    "EvalContext",
    "EvalResult",
    "EvalReport",
    "EvalSummary",
    "EvalCase",
    "EvalHook",
    "EvalSkipped",
    "EvalInputError",
    "evaluation",
    "skip",
    "to_result",
    "run_evals",
    "discover_evals",
    "collect_evals",
    "load_cases",
    "save_case",
    "summarize",
    "format_table",
    "record_artifact",
    "ask_judge",
    "assert_evals_pass",
    "case_params",
    "DEFAULT_THRESHOLD",
    "STATUSES",
    "BUILTIN_EVALS",
    "eval_finished",
    "eval_no_tool_errors",
]

#: The score a numeric result must reach when no threshold is given: partial credit
#: passes only when the caller says how much is enough.
DEFAULT_THRESHOLD = 1.0

#: The statuses an `EvalResult` may have.
STATUSES = ("passed", "failed", "error", "skipped")

EvalFunction = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Any])


class EvalInputError(LoopError, ValueError):
    """An eval file, a case file or a trace could not be read (the message says which and why)."""


class EvalSkipped(Exception):
    """Raised by `skip`: this eval does not apply (or cannot be graded) for this run."""


def skip(reason: str) -> None:
    """Skip the calling eval for this run. A skipped *required* eval still fails the suite."""
    raise EvalSkipped(reason)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalResult:
    """One eval's verdict on one run.

    Attributes:
        name: the eval's name (its function name).
        score: a number in [0, 1], or None when the eval gave none (error, skip).
        passed: whether it passed; always False for an error or a skip.
        detail: why, in a sentence (a failure message, an error, a skip reason).
        status: ``passed``, ``failed``, ``error`` or ``skipped``.
        required: whether the suite fails when this result does not pass.
        label: a category the eval put the run in, when it gave one.
        data: further keys a dict result carried (counts, sub-scores...).
        run_id: the run it grades, when known.
    """

    name: str
    score: float | None
    passed: bool
    detail: str = ""
    status: str = ""
    required: bool = True
    label: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self) -> None:
        status = self.status or ("passed" if self.passed else "failed")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        object.__setattr__(self, "status", status)
        if status in ("error", "skipped", "failed"):
            object.__setattr__(self, "passed", False)
        elif not self.passed:
            object.__setattr__(self, "status", "failed")

    @property
    def blocks(self) -> bool:
        """Whether this result fails the suite: a required eval that did not pass."""
        return self.required and not self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "score": self.score,
            "passed": self.passed,
            "status": self.status,
            "detail": self.detail,
            "required": self.required,
            "label": self.label,
            "data": self.data,
            "run_id": self.run_id,
        }

    def line(self) -> str:
        """One readable line: ``✗ eval_answer failed (score 0.00): expected 4, got 5``."""
        mark = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "-"}[self.status]
        score = "" if self.score is None else f" (score {self.score:.2f})"
        optional = " [optional]" if not self.required else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{mark} {self.name} {self.status}{score}{optional}{detail}"


def _score(value: Any) -> float:
    """A number as a score; raises ValueError outside [0, 1] or for NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a score must be a number, not {type(value).__name__}")
    score = float(value)
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"a score must lie between 0 and 1, got {value!r}")
    return score


def _check_threshold(threshold: float) -> float:
    try:
        return _score(threshold)
    except ValueError as exc:
        raise ValueError(f"threshold: {exc}") from None


def to_result(
    name: str, value: Any, *, threshold: float = DEFAULT_THRESHOLD, required: bool = True
) -> EvalResult:
    """Turn what an eval returned into an `EvalResult` (the rules are in the module's docstring)."""
    threshold = _check_threshold(threshold)
    if isinstance(value, EvalResult):
        return replace(value, name=value.name or name, required=required)
    if isinstance(value, bool):
        return EvalResult(name, 1.0 if value else 0.0, value, required=required)
    if isinstance(value, int | float):
        try:
            score = _score(value)
        except ValueError as exc:
            return _error(name, str(exc), required)
        return EvalResult(name, score, score >= threshold, _below(score, threshold), required=required)
    if isinstance(value, str):
        return EvalResult(name, 0.0, False, value or "failed (an empty message)", required=required)
    if isinstance(value, Mapping):
        return _from_mapping(name, value, threshold, required)
    if value is None:
        return _error(name, "returned None: return True/False, a score, a message or a dict", required)
    return _error(name, f"returned a {type(value).__name__}, which is not a verdict", required)


def _from_mapping(name: str, value: Mapping[Any, Any], threshold: float, required: bool) -> EvalResult:
    known = {"passed", "score", "detail", "label"}
    data = {str(k): v for k, v in value.items() if k not in known}
    passed, score = value.get("passed"), value.get("score")
    label = value.get("label")
    detail = value.get("detail")
    if passed is not None and not isinstance(passed, bool):
        return _error(name, f"'passed' must be true or false, not {passed!r}", required)
    if score is not None:
        try:
            score = _score(score)
        except ValueError as exc:
            return _error(name, str(exc), required)
    if passed is None and score is None:
        return _error(name, "a dict verdict needs 'passed' or 'score'", required)
    if passed is None:
        passed = score is not None and score >= threshold
        if detail is None and score is not None:
            detail = _below(score, threshold)
    if score is None:
        score = 1.0 if passed else 0.0
    return EvalResult(
        name,
        score,
        passed,
        "" if detail is None else str(detail),
        required=required,
        label=None if label is None else str(label),
        data=data,
    )


def _below(score: float, threshold: float) -> str:
    return "" if score >= threshold else f"score {score:g} is below the threshold {threshold:g}"


def _error(name: str, detail: str, required: bool) -> EvalResult:
    return EvalResult(name, None, False, detail, status="error", required=required)


# -- declaring evals -------------------------------------------------------------------------


@overload
def evaluation(fn: F, *, name: str | None = None, required: bool = True) -> F: ...


@overload
def evaluation(fn: None = None, *, name: str | None = None, required: bool = True) -> Callable[[F], F]: ...


def evaluation(fn: F | None = None, *, name: str | None = None, required: bool = True) -> Any:
    """Declare how an eval counts: ``@evaluation(required=False)`` reports it without failing the suite.

    Works bare (``@evaluation``) too. `name` replaces the function's name in
    results; the function stays callable as it was.
    """

    def mark(f: F) -> F:
        f.__dict__["eval_required"] = required
        if name is not None:
            f.__dict__["eval_name"] = name
        return f

    return mark(fn) if fn is not None else mark


def _name_of(fn: EvalFunction) -> str:
    return str(getattr(fn, "eval_name", None) or getattr(fn, "__name__", None) or type(fn).__name__)


def _required(fn: EvalFunction) -> bool:
    return bool(getattr(fn, "eval_required", True))


def _wants_llm(fn: EvalFunction) -> bool:
    """Whether the eval takes a judge model: a parameter named ``llm``, or a second positional one."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.name == "llm" for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


# -- the context an eval reads ---------------------------------------------------------------


@dataclass
class EvalContext:
    """What an eval reads about one run, the same whether the run is live or recorded.

    Attributes:
        task: the task the run was given.
        steps: the steps in order (rebuilt as `Step` objects from a trace).
        final_answer: the done tool's arguments, or None when the run did not finish.
        stop_reason: why the run stopped (``done``, ``max_steps``, ...), None if unknown.
        usage: token totals of the run.
        artifacts: what the run produced beyond its answer: a dict tools and
            hooks fill with `record_artifact` (kept in ``state.metadata["artifacts"]``),
            or a caller passes in (e.g. files an outcome collector read from the
            workspace). Graders should trust these over what the model claimed.
        case: the `EvalCase` this run answers, when there is one (its ``expected``
            is for graders only; the agent never saw it).
        run_id: the run's id.
        llm_calls: model calls made.
        detail: the sentence saying why the run stopped.
        metadata: the run's state metadata (empty for a trace).
        trace: the recorded run (`looplet.provenance.RecordedRun`) when read from a directory.
    """

    task: Any = None
    steps: list[Step] = field(default_factory=list)
    final_answer: dict[str, Any] | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    artifacts: dict[str, Any] = field(default_factory=dict)
    case: EvalCase | None = None
    run_id: str = ""
    llm_calls: int = 0
    detail: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    trace: Any = None

    @property
    def answer(self) -> Any:
        """The done tool's ``answer`` (or ``summary``) argument; None without one."""
        final = self.final_answer or {}
        return final.get("answer", final.get("summary"))

    @property
    def expected(self) -> Any:
        """The case's expected value; None when there is no case or it gives none."""
        return None if self.case is None else self.case.expected

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [step.tool_call for step in self.steps]

    @property
    def tools_used(self) -> list[str]:
        """The tool of every step, in order (repeats kept)."""
        return [step.tool_call.tool for step in self.steps]

    @property
    def errors(self) -> list[Step]:
        """The steps whose tool failed (denials included)."""
        return [step for step in self.steps if step.tool_result.error]

    def calls(self, tool: str) -> list[Step]:
        """The steps that called `tool`."""
        return [step for step in self.steps if step.tool_call.tool == tool]

    @classmethod
    def from_run(
        cls,
        run: Any,
        *,
        state: DefaultState | None = None,
        case: EvalCase | None = None,
        artifacts: Mapping[str, Any] | None = None,
    ) -> EvalContext:
        """The context of a live run: a `Loop` (after iterating it), a `DefaultState` or a `RunResult`.

        A `RunResult` does not carry the task, run id or metadata; pass the
        run's `state` too for them (a `Loop` has both). A `Loop` left after a
        ``break`` is ended first, as reading ``loop.result`` does; to grade a
        run that should go on, pass ``loop.state``.
        """
        source: RunResult | DefaultState
        if isinstance(run, RunResult):
            source = run
        elif isinstance(run, DefaultState):
            state = source = run
        elif isinstance(getattr(run, "state", None), DefaultState):  # a Loop or an AsyncLoop
            loop_state: DefaultState = run.state
            state = state or loop_state
            source = run.result if run.result is not None else loop_state  # not ended: as it stands
        else:
            raise TypeError(f"cannot read a run from a {type(run).__name__}")
        metadata = dict(state.metadata) if state is not None else {}
        return cls(
            task=state.task if state is not None else None,
            steps=list(source.steps),
            final_answer=source.final_answer,
            stop_reason=source.stop_reason,
            usage=source.usage,
            artifacts={**_artifacts_in(metadata), **(artifacts or {})},
            case=case,
            run_id=state.run_id if state is not None else "",
            llm_calls=source.llm_calls,
            detail=source.detail,
            metadata=metadata,
        )

    @classmethod
    def from_trace(
        cls,
        path: str | os.PathLike[str],
        *,
        case: EvalCase | None = None,
        artifacts: Mapping[str, Any] | None = None,
    ) -> EvalContext:
        """The context of a recorded run: a provenance run directory (or a root holding one run)."""
        from .provenance import read_run

        return cls.from_recorded(read_run(path), case=case, artifacts=artifacts)

    @classmethod
    def from_recorded(
        cls, run: RecordedRun, *, case: EvalCase | None = None, artifacts: Mapping[str, Any] | None = None
    ) -> EvalContext:
        """The context of a `RecordedRun` already read with `looplet.provenance.read_run`."""
        manifest: Mapping[str, Any] = run.manifest or {}
        recorded = manifest.get("artifacts")
        return cls(
            task=run.task,
            steps=run.step_objects(),
            final_answer=run.final_answer,
            stop_reason=run.stop_reason,
            usage=Usage.from_dict(run.usage),
            artifacts={**(recorded if isinstance(recorded, dict) else {}), **(artifacts or {})},
            case=case,
            run_id=str(run.run_id or ""),
            llm_calls=int(manifest.get("llm_calls") or len(run.llm_calls)),
            detail=str(manifest.get("detail") or ""),
            trace=run,
        )


def _artifacts_in(metadata: Mapping[str, Any]) -> dict[str, Any]:
    found = metadata.get("artifacts")
    return dict(found) if isinstance(found, Mapping) else {}


def record_artifact(holder: Any, name: str, value: Any) -> None:
    """Keep `value` as artifact `name` of the run, for evals to read as ``ctx.artifacts[name]``.

    `holder` is the run's `DefaultState` (in a hook) or a tool's `ToolContext`
    (both have the run's ``metadata``); artifacts live in
    ``metadata["artifacts"]``, so checkpoints keep them.
    """
    holder.metadata.setdefault("artifacts", {})[name] = value


# -- built-in evals --------------------------------------------------------------------------


def eval_finished(ctx: EvalContext) -> bool | str:
    """The run ended with an accepted done call (not a budget, an error or a stop)."""
    if ctx.stop_reason == "done":
        return True
    why = f": {ctx.detail}" if ctx.detail else ""
    return f"the run stopped with {ctx.stop_reason or 'no stop reason'}{why}"


@evaluation(required=False)
def eval_no_tool_errors(ctx: EvalContext) -> dict[str, Any]:
    """Share of steps whose tool succeeded (reported, not required: agents recover from errors)."""
    if not ctx.steps:
        return {"passed": True, "score": 1.0, "detail": "no steps"}
    failed = ctx.errors
    detail = ", ".join(f"#{s.number} {s.tool_call.tool}" for s in failed[:5])
    return {
        "passed": not failed,
        "score": 1 - len(failed) / len(ctx.steps),
        "detail": detail,
        "failed": len(failed),
    }


#: What ``looplet eval`` runs when it is given no ``--evals``.
BUILTIN_EVALS: tuple[EvalFunction, ...] = (eval_finished, eval_no_tool_errors)


# -- running evals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalReport:
    """The results of a set of evals on one run.

    ``report.passed`` is True when at least one eval ran and no required one
    failed, errored or was skipped.
    """

    results: tuple[EvalResult, ...]
    threshold: float = DEFAULT_THRESHOLD
    run_id: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failures

    @property
    def failures(self) -> list[EvalResult]:
        """The results that fail the suite (required and not passed)."""
        return [r for r in self.results if r.blocks]

    def __iter__(self) -> Iterator[EvalResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, name: str) -> EvalResult:
        """The result of the eval called `name`."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "threshold": self.threshold,
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
        }

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        head = f"evals {verdict}: {len(self.results) - len(self.failures)}/{len(self.results)} ok"
        return "\n".join([f"{head} (threshold {self.threshold:g})", *(f"  {r.line()}" for r in self.results)])


def run_evals(
    ctx: EvalContext,
    evals: Any,
    *,
    llm: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> EvalReport:
    """Run every eval on `ctx`; never raises for what an eval does (that becomes its result).

    Args:
        evals: eval functions, a module, a path to discover them in, or a list of these.
        llm: the judge model for evals that take one; without it they are
            skipped as having no grader (a failure when required).
        threshold: the score a numeric result must reach to pass, in [0, 1].
    """
    threshold = _check_threshold(threshold)
    results = tuple(_run_one(fn, ctx, llm, threshold) for fn in collect_evals(evals))
    return EvalReport(results, threshold, ctx.run_id)


def _run_one(fn: EvalFunction, ctx: EvalContext, llm: Any, threshold: float) -> EvalResult:
    name, required = _name_of(fn), _required(fn)
    wants_llm = _wants_llm(fn)
    if wants_llm and llm is None:
        return _skipped(name, "needs a judge model (llm=...), and none was given", required, ctx)
    try:
        value = _call(fn, ctx, llm) if wants_llm else fn(ctx)
        if inspect.isawaitable(value):
            value = _await(value)
    except EvalSkipped as exc:
        return _skipped(name, _message(exc) or "skipped", required, ctx)
    except AssertionError as exc:
        return EvalResult(name, 0.0, False, _assertion_text(exc), required=required, run_id=ctx.run_id)
    except BaseException as exc:
        if propagates(exc):
            raise
        detail = redact_text(f"{type(exc).__name__}: {_message(exc)}")
        return replace(_error(name, f"raised {detail}", required), run_id=ctx.run_id)
    try:
        result = to_result(name, value, threshold=threshold, required=required)
    except Exception as exc:  # a verdict whose detail or label refuses to become text
        result = _error(name, f"returned a verdict that cannot be read ({type(exc).__name__})", required)
    return replace(result, run_id=ctx.run_id)


def _call(fn: EvalFunction, ctx: EvalContext, llm: Any) -> Any:
    """Call an eval that takes a judge: by name when it has an ``llm`` parameter (keyword-only
    works too), else as its second positional argument."""
    try:
        by_name = inspect.signature(fn).parameters.get("llm")
    except (TypeError, ValueError):
        by_name = None
    if by_name is not None and by_name.kind != by_name.POSITIONAL_ONLY:
        return fn(ctx, llm=llm)
    return fn(ctx, llm)


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception cannot be turned into text."""
    try:
        return str(exc)
    except Exception:
        return "<unprintable message>"


def _assertion_text(exc: AssertionError) -> str:
    """The assertion's message (its first line: pytest appends an explanation), else the failing line."""
    lines = _message(exc).strip().splitlines()
    if lines:
        return redact_text(lines[0])
    frames = traceback.extract_tb(exc.__traceback__)
    source = frames[-1].line if frames else ""
    return redact_text(f"assertion failed: {source}" if source else "assertion failed")


def _skipped(name: str, reason: str, required: bool, ctx: EvalContext) -> EvalResult:
    return EvalResult(name, None, False, reason, status="skipped", required=required, run_id=ctx.run_id)


def _await(awaitable: Any) -> Any:
    """Run an async eval to completion, also from inside a running event loop (in a thread)."""

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    outcome: dict[str, Any] = {}

    def in_thread() -> None:
        try:
            outcome["value"] = asyncio.run(wait())
        except BaseException as exc:  # handed back to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=in_thread, name="looplet-eval")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# -- discovery -------------------------------------------------------------------------------

#: File names a directory's evals are read from.
EVAL_FILE_PATTERNS = ("eval_*.py", "*_evals.py", "evals.py")


def collect_evals(source: Any) -> list[EvalFunction]:
    """The eval functions in `source`: a function, a module, a path, or an iterable of these.

    Order is kept; the same function named twice runs once. Two different
    functions with one name are refused (their results could not be told apart).
    """
    found: list[EvalFunction] = []
    for fn in _flatten(source):
        if not any(fn is seen for seen in found):
            found.append(fn)
    by_name: dict[str, EvalFunction] = {}
    for fn in found:
        other = by_name.setdefault(_name_of(fn), fn)
        if other is not fn:
            raise EvalInputError(
                f"two evals are called {_name_of(fn)!r} ({_where(other)} and {_where(fn)}); rename one"
            )
    return found


def _flatten(source: Any) -> Iterator[EvalFunction]:
    if isinstance(source, str | os.PathLike):
        yield from discover_evals(source)
    elif isinstance(source, types.ModuleType):
        yield from _evals_in(source)
    elif callable(source):
        yield source
    elif isinstance(source, Iterable):
        for item in source:
            yield from _flatten(item)
    else:
        raise TypeError(f"not an eval, a module or a path: {source!r}")


def _where(fn: EvalFunction) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else repr(fn)


def _evals_in(module: types.ModuleType) -> list[EvalFunction]:
    """A module's ``eval_*`` callables in definition order (imported ones too, as pytest does)."""
    return [
        value
        for key, value in vars(module).items()
        if key.startswith("eval_") and callable(value) and not isinstance(value, type)
    ]


def discover_evals(*paths: str | os.PathLike[str]) -> list[EvalFunction]:
    """Import eval files and return their ``eval_*`` functions.

    A file is imported whatever its name; a directory contributes its
    ``eval_*.py``, ``*_evals.py`` and ``evals.py`` files, recursively, in path
    order. Each file is imported under a module name of its own (two
    ``evals.py`` in different folders do not collide); while it is imported its
    folder is on ``sys.path``, so it can import a helper beside it, and
    afterwards ``sys.path`` and the helper modules are as they were.

    Raises:
        EvalInputError: a path does not exist, or a file fails to import.
    """
    found: list[EvalFunction] = []
    for path in paths:
        for file in _eval_files(Path(path)):
            found.extend(_evals_in(_import_file(file)))
    return found


def _eval_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise EvalInputError(f"no such file or directory: {path}")
    files = {
        file
        for pattern in EVAL_FILE_PATTERNS
        for file in path.rglob(pattern)
        if not any(part.startswith((".", "__")) for part in file.relative_to(path).parts[:-1])
    }
    return sorted(files)


def _import_file(file: Path) -> types.ModuleType:
    file = file.resolve()
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:12]
    name = f"looplet_evals_{digest}_{file.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise EvalInputError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(file.parent)
    before_path, before_modules = list(sys.path), set(sys.modules)
    sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and typing look the module up while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if propagates(exc):
            raise
        raise EvalInputError(f"{file}: could not import it: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path[:] = before_path
        _forget_helpers(folder, before_modules - {name}, keep=name, search_path=before_path)
    return module


def _forget_helpers(folder: str, before: set[str], keep: str, search_path: list[str]) -> None:
    """Drop modules imported from `folder` during an eval file's import, so the next folder's
    ``helpers.py`` is not mistaken for this one's.

    A module found through another entry of `search_path` inside `folder` (the
    site-packages of a ``.venv`` in the project) is an installed library, not a
    helper: it stays imported, or the next import would run it a second time.
    """
    here = Path(folder)
    installed = [
        entry
        for entry in (Path(p or ".").resolve() for p in search_path)
        if entry != here and entry.is_relative_to(here)
    ]
    for name in set(sys.modules) - before - {keep}:
        origin = getattr(sys.modules[name], "__file__", None)
        if not origin:
            continue
        where = Path(origin).resolve()
        if where.is_relative_to(here) and not any(where.is_relative_to(entry) for entry in installed):
            del sys.modules[name]


# -- the hook --------------------------------------------------------------------------------


class EvalHook:
    """Runs evals when a run ends and keeps what they said.

    Read the results as ``hook.report`` (an `EvalReport`, or None before a run
    ended) or ``hook.results``; they are also put in
    ``state.metadata["evals"]`` (as dicts), so a checkpoint or a trace written
    after this hook keeps them. An eval that raises becomes an error result;
    the hook itself never fails the run.

    Args:
        evals: eval functions, a module, a path or a list of these.
        llm: the judge model for evals that take one (the agent's own model is
            not used to grade itself unless you pass it here).
        threshold: the score a numeric result must reach.
        case: the `EvalCase` the run answers, for graders that compare with ``expected``.
    """

    def __init__(
        self,
        evals: Any,
        llm: Any = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        case: EvalCase | None = None,
    ) -> None:
        self.evals = collect_evals(evals)
        self.llm = llm
        self.threshold = _check_threshold(threshold)
        self.case = case
        self.report: EvalReport | None = None

    @property
    def results(self) -> list[EvalResult]:
        return list(self.report.results) if self.report is not None else []

    @property
    def passed(self) -> bool:
        return self.report is not None and self.report.passed

    def on_loop_end(self, state: DefaultState, log: Any, ctx: Any, llm: Any) -> None:
        result = getattr(ctx, "result", None)
        context = EvalContext.from_run(result if result is not None else state, state=state, case=self.case)
        self.report = run_evals(context, self.evals, llm=self.llm, threshold=self.threshold)
        state.metadata["evals"] = [r.to_dict() for r in self.report.results]


# -- cases -----------------------------------------------------------------------------------

_CASE_FIELDS = ("id", "task", "expected", "tags", "metadata")


@dataclass(frozen=True)
class EvalCase:
    """One task to run an agent on, with what graders should expect.

    Attributes:
        id: a unique name (test ids, file lookups); `load_cases` gives a case
            without one ``<file stem>-<n>``.
        task: the task, as given to the loop (a string or a JSON object).
        expected: what a correct run produces; for graders only, never shown to
            the agent. None means the case has no expected value (``0``,
            ``""`` and ``false`` are expected values like any other).
        tags: labels to select cases by.
        metadata: anything else the case needs (JSON).
    """

    id: str
    task: Any
    expected: Any = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "task": self.task}
        if self.expected is not None:
            out["expected"] = self.expected
        if self.tags:
            out["tags"] = list(self.tags)
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    @classmethod
    def from_dict(cls, data: Any, *, default_id: str = "") -> EvalCase:
        """Read a case object; unknown fields are refused (a misspelt ``expected`` would hide the grader)."""
        if not isinstance(data, dict):
            raise EvalInputError(f"a case must be a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - set(_CASE_FIELDS))
        if unknown:
            hint = difflib.get_close_matches(unknown[0], _CASE_FIELDS, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise EvalInputError(f"unknown field {unknown[0]!r}{maybe}; a case has {', '.join(_CASE_FIELDS)}")
        if "task" not in data:
            raise EvalInputError("a case needs a 'task'")
        case_id = data.get("id", default_id)
        tags = data.get("tags", [])
        metadata = data.get("metadata", {})
        if not isinstance(case_id, str) or not case_id:
            raise EvalInputError(f"'id' must be a non-empty string, not {case_id!r}")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise EvalInputError(f"'tags' must be a list of strings, not {tags!r}")
        if not isinstance(metadata, dict):
            raise EvalInputError(f"'metadata' must be an object, not {metadata!r}")
        return cls(case_id, data["task"], data.get("expected"), tuple(tags), metadata)


def load_cases(path: str | os.PathLike[str]) -> list[EvalCase]:
    """The cases in a ``.json`` file (one object or a list), a ``.jsonl`` file (one object a line,
    blank lines skipped), or a directory of such files (in name order).

    Raises:
        EvalInputError: a file is not valid JSON, a case is malformed, or two cases share an id;
            the message names the file and the line or position.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
    elif root.is_file():
        files = [root]
    else:
        raise EvalInputError(f"no such file or directory: {root}")
    cases: list[EvalCase] = []
    seen: dict[str, str] = {}
    for file in files:
        for where, case in _cases_in(file):
            if case.id in seen:
                raise EvalInputError(f"{where}: the id {case.id!r} is already used at {seen[case.id]}")
            seen[case.id] = where
            cases.append(case)
    return cases


def _cases_in(file: Path) -> Iterator[tuple[str, EvalCase]]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalInputError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if file.suffix == ".jsonl":
        # split on newlines only: str.splitlines would also cut at U+0085 or U+2028 inside a string
        entries = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
        for count, (n, line) in enumerate(entries, 1):
            where = f"{file}:{n}"
            yield where, _case(where, _parsed(where, line), f"{file.stem}-{count}")
        return
    data = _parsed(str(file), text)
    items = data if isinstance(data, list) else [data]
    for n, item in enumerate(items, 1):
        where = f"{file}[{n}]" if isinstance(data, list) else str(file)
        yield where, _case(where, item, f"{file.stem}-{n}")


def _parsed(where: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"{where}: not valid JSON: {exc}") from None


def _case(where: str, data: Any, default_id: str) -> EvalCase:
    try:
        return EvalCase.from_dict(data, default_id=default_id)
    except EvalInputError as exc:
        raise EvalInputError(f"{where}: {exc}") from None


def save_case(path: str | os.PathLike[str], case: EvalCase) -> None:
    """Add `case` to a ``.jsonl`` or ``.json`` case file (created if missing).

    A case with the same id is replaced where it stands, so saving a case
    again updates it. The file is rewritten atomically (a crash leaves the old
    file or the new one, never half of it); a ``.jsonl`` file gets one compact
    line a case, a ``.json`` file a list.
    """
    file = Path(path)
    if file.suffix not in (".json", ".jsonl"):
        raise EvalInputError(f"{file}: a case file ends in .json or .jsonl")
    _check_json(case)
    cases = load_cases(file) if file.exists() else []
    for i, existing in enumerate(cases):
        if existing.id == case.id:
            cases[i] = case
            break
    else:
        cases.append(case)
    if file.suffix == ".jsonl":
        text = "".join(json.dumps(c.to_dict(), ensure_ascii=False, sort_keys=True) + "\n" for c in cases)
    else:
        text = json.dumps([c.to_dict() for c in cases], ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    _write_atomically(file, text)


def _check_json(case: EvalCase) -> None:
    if not case.id:
        raise EvalInputError("a case to save needs an id")
    try:
        json.dumps(case.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EvalInputError(f"case {case.id!r} is not JSON: {exc}") from None


def _write_atomically(file: Path, text: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, file)
    except BaseException:
        os.unlink(temp)
        raise


# -- several runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSummary:
    """One eval over several runs: how many it graded, how many passed, the mean score."""

    name: str
    runs: int
    passed: int
    mean_score: float | None
    required: bool
    errors: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """Whether it passed on every run (an optional eval is always ok)."""
        return not self.required or self.passed == self.runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runs": self.runs,
            "passed": self.passed,
            "mean_score": self.mean_score,
            "required": self.required,
            "errors": self.errors,
            "skipped": self.skipped,
            "ok": self.ok,
        }


def summarize(reports: Iterable[EvalReport]) -> list[EvalSummary]:
    """Per eval, in first-seen order: runs, passes and the mean of the scores given (0.0 counts)."""
    grouped: dict[str, list[EvalResult]] = {}
    for report in reports:
        for result in report.results:
            grouped.setdefault(result.name, []).append(result)
    out = []
    for name, results in grouped.items():
        scores = [r.score for r in results if r.score is not None]
        out.append(
            EvalSummary(
                name,
                len(results),
                sum(r.passed for r in results),
                sum(scores) / len(scores) if scores else None,
                any(r.required for r in results),
                sum(r.status == "error" for r in results),
                sum(r.status == "skipped" for r in results),
            )
        )
    return out


def format_table(summaries: Iterable[EvalSummary]) -> str:
    """The per-eval table: eval, runs, passed, mean score, and FAIL where a required eval failed."""
    rows = [("eval", "runs", "passed", "mean score", "")]
    for s in summaries:
        mean = "-" if s.mean_score is None else f"{s.mean_score:.2f}"
        notes = [
            n
            for n in (f"{s.errors} error" if s.errors else "", f"{s.skipped} skipped" if s.skipped else "")
            if n
        ]
        verdict = ("ok" if s.ok else "FAIL") if s.required else "optional"
        extra = f" ({', '.join(notes)})" if notes else ""
        rows.append((s.name, str(s.runs), f"{s.passed}/{s.runs}", mean, verdict + extra))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines)


# -- judges ----------------------------------------------------------------------------------


def ask_judge(llm: Any, prompt: str, *, system: str = "") -> str:
    """Ask a judge model one question and return its text answer.

    Takes a looplet backend (``complete(request)``) or a text model
    (``generate(prompt)``); an async backend is awaited.
    """
    if hasattr(llm, "complete"):
        from .backends.protocol import LLMRequest
        from .history import Message

        response = llm.complete(LLMRequest(messages=[Message("user", prompt)], system=system))
        if inspect.isawaitable(response):
            response = _await(response)
        return str(response.text)
    if hasattr(llm, "generate"):
        return str(llm.generate(f"{system}\n\n{prompt}" if system else prompt))
    raise TypeError(f"a judge needs complete(request) or generate(prompt); {type(llm).__name__} has neither")


# -- pytest helpers --------------------------------------------------------------------------


def assert_evals_pass(
    ctx_or_results: Any,
    evals: Any = None,
    *,
    llm: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> EvalReport:
    """Fail the calling test unless every required eval passes; returns the report.

    `ctx_or_results` is an `EvalContext` (run `evals` on it), an `EvalHook`
    that ran, an `EvalReport`, or `EvalResult`s. The assertion message lists
    each failing eval with its score and why, so the test output says what
    went wrong without a debugger. No evals at all is a failure too.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    report = _report_of(ctx_or_results, evals, llm, threshold)
    if report.passed:
        return report
    failing = report.failures
    if not report.results:
        raise AssertionError("no evals ran: nothing says this run is good")
    lines = [
        f"{len(failing)} of {len(report.results)} required evals did not pass "
        f"(threshold {report.threshold:g}{', run ' + report.run_id if report.run_id else ''}):"
    ]
    lines += [f"  {r.line()}" for r in failing]
    raise AssertionError("\n".join(lines))


def _report_of(source: Any, evals: Any, llm: Any, threshold: float) -> EvalReport:
    if isinstance(source, EvalContext):
        if evals is None:
            raise TypeError("assert_evals_pass(ctx, evals=...): say which evals to run on the context")
        return run_evals(source, evals, llm=llm, threshold=threshold)
    if isinstance(source, EvalHook):
        if source.report is None:
            raise AssertionError("the EvalHook has no results: did the run end?")
        return source.report
    if isinstance(source, EvalReport):
        return source
    if isinstance(source, EvalResult):
        return EvalReport((source,), threshold, source.run_id)
    results = tuple(source)
    if not all(isinstance(r, EvalResult) for r in results):
        raise TypeError("assert_evals_pass takes an EvalContext, an EvalHook, an EvalReport or EvalResults")
    return EvalReport(results, threshold, results[0].run_id if results else "")


def case_params(cases: Iterable[EvalCase] | str | os.PathLike[str]) -> list[Any]:
    """``pytest.param``s of `cases` (or of a case file), each with the case's id as its test id.

    Use with ``@pytest.mark.parametrize("case", case_params("cases.jsonl"))``.
    pytest is imported here, when called, not when looplet is.
    """
    import pytest

    items = load_cases(cases) if isinstance(cases, str | os.PathLike) else list(cases)
    return [pytest.param(case, id=case.id) for case in items]
