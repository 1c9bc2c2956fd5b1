"""Batch runs: many tasks through one agent, a few at a time, resumable after a crash.

`run_batch` / `arun_batch` run each task (``{"id": ..., "task": ...}``) in the
async loop, at most `concurrency` at once, each with its own state, its own
checkpoint (``out_dir/checkpoints/``) and, when asked, its own provenance
directory (``out_dir/traces/``). Every task that ends gets one line in
``out_dir/results.jsonl`` (appended and flushed at once): its id, status
(``done`` or ``failed``), stop reason, final answer, usage, cost, elapsed
time and error.

Running the same batch again continues it: a task with a line in
``results.jsonl`` is skipped; one with a checkpoint but no line (the process
died, or was interrupted) is continued from its checkpoint (``resume=``), or,
when the checkpoint shows it had already ended, recorded from it without
running again; a task paused for approval is continued (its decided calls go
on, undecided ones pause again) and listed in the summary. A task that fails
or hangs never stops the others: each has ``deadline_s`` on its loop and an
outer timeout behind it in case the loop itself does not return.

The agent is a cartridge folder (its ``build(runtime)`` is called once per
task; the runtime's ``options`` hold ``task_id`` and ``task``) or
``"module:factory"``, a function returning an `AgentPreset`, or an
``(AgentPreset, model)`` pair when it picks the model too (called once per
task, with the `BatchTask` when it takes an argument). With ``scripted=True``
the model is the cartridge's (or the module's) ``scripted_responses``.

Memory does not grow with the tasks that finish: workers pull tasks one at a
time, and nothing of a finished task is kept but the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, propagates
from .presets import AgentPreset
from .types import RunResult, StopReason

__all__ = [
    "BatchTask",
    "BatchSummary",
    "BatchInputError",
    "BatchBusy",
    "run_batch",
    "arun_batch",
    "read_tasks",
    "check_tasks",
    "load_agent",
    "task_file_name",
    "RESULTS_FILE",
    "BUILD_ERROR",
    "RUN_ERROR",
]

logger = logging.getLogger(__name__)

#: The results file in the output directory: one JSON line per task that ended.
RESULTS_FILE = "results.jsonl"
#: The stop reason of a task whose agent could not be built (its ``error`` says why).
BUILD_ERROR = "build_error"
#: The stop reason of a task whose loop raised instead of returning a result.
RUN_ERROR = "run_error"

#: The model name used when neither ``model`` nor ``$OPENAI_MODEL`` names one.
DEFAULT_MODEL = "gpt-4o-mini"
#: What a batch without a model is told.
NO_MODEL = "pass llm= (a backend, or a function of the task returning one), or scripted=True"

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LOCK_FILE = ".batch.lock"


class BatchInputError(ConfigError):
    """The tasks or the agent cannot be used as given: the message names the line or the name."""


class BatchBusy(BatchInputError):
    """Another process is running a batch in the same output directory."""


@dataclass(frozen=True)
class BatchTask:
    """One task of a batch: its id (as text), its file-safe name, the task, and any other fields."""

    id: str
    task: str
    name: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class BatchSummary:
    """How a batch went: counts, and the ids of the tasks waiting for a human.

    Attributes:
        total: tasks in the batch.
        skipped: tasks that had ended in an earlier session (not run again).
        done: tasks that ended ``done``, in this session or an earlier one.
        failed: tasks that ended otherwise, in this session or an earlier one.
        paused: ids of the tasks paused for approval (continue them by deciding
            their calls in the checkpoint and running the batch again).
        resumed: tasks continued from a checkpoint in this session.
        elapsed_s: wall time of this session.
        out_dir: the output directory; ``results`` the results file in it.
    """

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    paused: list[str] = field(default_factory=list)
    resumed: int = 0
    elapsed_s: float = 0.0
    out_dir: Path = Path(".")

    @property
    def results(self) -> Path:
        return self.out_dir / RESULTS_FILE

    @property
    def ok(self) -> bool:
        """True when no task failed or waits: every task of the batch is done (now or before)."""
        return self.failed == 0 and not self.paused


# -- tasks ------------------------------------------------------------------------------------


def task_file_name(task_id: str) -> str:
    """A name for `task_id` that is safe as a file name and a run id.

    Ids of 1-64 letters, digits, ``_`` and ``-`` are used as they are; any
    other id becomes its safe characters and a digest of the whole id, so two
    ids never share a name.
    """
    if _SAFE_NAME.fullmatch(task_id):
        return task_id
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", task_id)[:40]
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe}--{digest}"


def check_tasks(items: Iterable[Any], where: str = "task") -> list[BatchTask]:
    """Each item as a `BatchTask`, checked: a mapping with an ``id`` (text or integer, unique) and a
    non-empty ``task`` text.

    Raises:
        BatchInputError: naming the item (``where`` and its number, from 1) and what is wrong.
    """
    return _checked_tasks(enumerate(items, 1), where)


def _checked_tasks(numbered: Iterable[tuple[int, Any]], where: str) -> list[BatchTask]:
    tasks: list[BatchTask] = []
    seen: dict[str, int] = {}
    for number, item in numbered:
        task = _checked_task(item, f"{where} {number}")
        first = seen.setdefault(task.name, number)
        if first != number:
            raise BatchInputError(f"{where} {number}: id {task.id!r} is also the id of {where} {first}")
        tasks.append(task)
    return tasks


def _checked_task(item: Any, where: str) -> BatchTask:
    if not isinstance(item, Mapping):
        raise BatchInputError(f'{where}: a task is an object with "id" and "task", got {_kind(item)}')
    task_id = item.get("id")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int):
        raise BatchInputError(f'{where}: "id" must be a string or an integer, got {_kind(task_id)}')
    text = str(task_id)
    if not text.strip():
        raise BatchInputError(f'{where}: "id" is empty')
    task = item.get("task")
    if not isinstance(task, str) or not task.strip():
        raise BatchInputError(f'{where}: "task" must be a non-empty string, got {_kind(task)}')
    extra = {k: v for k, v in item.items() if k not in ("id", "task")}
    return BatchTask(id=text, task=task, name=task_file_name(text), extra=extra)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    return type(value).__name__


def read_tasks(path: str | os.PathLike[str]) -> list[BatchTask]:
    """The tasks of a JSONL file (one object per line; blank lines are skipped), checked.

    Raises:
        BatchInputError: the file cannot be read, or a line is not a valid task (its number is given).
    """
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return _checked_tasks(_parsed_lines(handle, where), f"{where} line")
    except OSError as exc:
        raise BatchInputError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{where}: is not UTF-8 text ({exc.reason})") from None


def _parsed_lines(handle: IO[str], where: str) -> Iterator[tuple[int, Any]]:
    """Each non-blank line's number and JSON value."""
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            why = (
                f"{exc.msg} at column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else "nested too deeply"
            )
            raise BatchInputError(f"{where} line {number}: not JSON ({why})") from None


# -- the agent --------------------------------------------------------------------------------


@dataclass
class _Agent:
    """How to build one task's preset and scripted model, from a cartridge or a factory.

    `make_preset` returns the preset and the model its factory built with it (None when it built none).
    """

    make_preset: Callable[[BatchTask, Path, Path | None], tuple[AgentPreset, Any]]
    make_script: Callable[[BatchTask, Path], Any] | None
    uses_workspace: bool


def load_agent(
    agent: Any, *, scripted: bool = False, max_steps: int | None = None, model: str | None = None
) -> Any:
    """Resolve `agent` once, before any task runs: a cartridge folder, ``"module:factory"``, or a
    callable returning an `AgentPreset`.

    Naming a cartridge or a module is trusting it: the cartridge's entrypoint
    or the module is imported (its module-level code runs; nothing else does
    until a task is built).

    Raises:
        BatchInputError: the folder is not a cartridge, the module or its factory cannot be found,
            or ``scripted`` is asked of an agent with no ``scripted_responses``.
    """
    if callable(agent) and not isinstance(agent, str | os.PathLike):
        return _factory_agent(agent, None, scripted)
    text = os.fspath(agent)
    if ":" in text and not Path(text).exists():
        return _module_agent(text, scripted)
    return _cartridge_agent(Path(text), scripted, max_steps, model)


def _cartridge_agent(folder: Path, scripted: bool, max_steps: int | None, model: str | None) -> _Agent:
    from .cartridges import CartridgeError, make_runtime, open_cartridge

    if not (folder / "SKILL.md").is_file():
        raise BatchInputError(
            f"{folder}: no SKILL.md there; name a cartridge folder or a module:factory (e.g. agents:build)"
        )
    try:
        cartridge = open_cartridge(folder, trust=True)
    except Exception as exc:
        if propagates(exc):
            raise
        raise BatchInputError(_one_line(exc)) from exc
    if scripted and not callable(getattr(cartridge.module, "scripted_responses", None)):
        raise BatchInputError(
            f"cartridge {cartridge.card.name!r} has no scripted_responses, so it cannot run scripted"
        )

    def runtime(task: BatchTask, workspace: Path, trace_dir: Path | None) -> Any:
        return make_runtime(
            cartridge.card,
            workspace=workspace,
            scripted=scripted,
            max_steps=max_steps,
            model=model,
            trace_dir=trace_dir,
            options={"task_id": task.id, "task": task.task, **task.extra},
        )

    def make_preset(task: BatchTask, workspace: Path, trace_dir: Path | None) -> tuple[AgentPreset, Any]:
        try:
            return cartridge.build(runtime(task, workspace, trace_dir)), None
        except CartridgeError as exc:
            raise _BuildFailed(_one_line(exc)) from exc

    def make_script(task: BatchTask, workspace: Path) -> Any:
        return cartridge.scripted_llm(runtime(task, workspace, None))

    return _Agent(make_preset, make_script if scripted else None, uses_workspace=True)


def _module_agent(spec: str, scripted: bool) -> _Agent:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise BatchInputError(f"{spec!r}: name the agent as module:factory, e.g. my_agents:triage")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        if propagates(exc):
            raise
        raise BatchInputError(
            f"{spec}: module {module_name!r} cannot be imported ({_one_line(exc)})"
        ) from exc
    factory: Any = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise BatchInputError(f"{spec}: module {module_name!r} has no function {attribute!r}")
    return _factory_agent(factory, getattr(module, "scripted_responses", None), scripted, spec)


def _factory_agent(factory: Callable[..., Any], script: Any, scripted: bool, name: str = "") -> _Agent:
    where = name or getattr(factory, "__qualname__", repr(factory))
    if scripted and not callable(script):
        raise BatchInputError(f"{where}: its module has no scripted_responses, so it cannot run scripted")

    def make_preset(task: BatchTask, workspace: Path, trace_dir: Path | None) -> tuple[AgentPreset, Any]:
        try:
            built = factory(task) if _takes_an_argument(factory) else factory()
        except Exception as exc:
            if propagates(exc):
                raise
            raise _BuildFailed(f"{where} failed: {_one_line(exc)}") from exc
        if isinstance(built, AgentPreset):
            return built, None
        if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], AgentPreset):
            return built[0], built[1]  # the factory chose the model too
        raise _BuildFailed(
            f"{where} returned {type(built).__name__}, not an AgentPreset or (AgentPreset, model)"
        )

    def make_script(task: BatchTask, workspace: Path) -> Any:
        from .backends.mock import FunctionBackend, MockLLMBackend

        made = script(task) if _takes_an_argument(script) else script()
        if callable(made) or hasattr(made, "complete"):
            return made if hasattr(made, "complete") else FunctionBackend(made)
        return MockLLMBackend(list(made))

    return _Agent(make_preset, make_script if scripted else None, uses_workspace=False)


class _BuildFailed(Exception):
    """The agent could not be built for one task (recorded as that task's ``build_error``)."""


def _takes_an_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the results file -------------------------------------------------------------------------


def _finished_names(path: Path) -> tuple[set[str], int]:
    """The names of the tasks with a line in the results file, and how many of those lines are not
    ``done``; a torn last line (a crash while it was written) is cut off first."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return set(), 0
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        logger.info("%s: cut a torn last line (a crash while it was written)", path)
        with open(path, "r+b") as handle:
            handle.truncate(end)
    names: set[str] = set()
    failed = 0
    for number, line in enumerate(raw[:end].splitlines(), 1):
        try:
            data = json.loads(line)
            names.add(task_file_name(str(data["id"])))
            failed += data.get("status") != "done"
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("%s line %d: not a result line; ignored", path, number)
    return names, failed


def _result_line(task: BatchTask, outcome: dict[str, Any]) -> str:
    data = {"id": task.id, **outcome}
    return json.dumps(data, ensure_ascii=False, default=str, allow_nan=False) + "\n"


def outcome_of(result: Any, elapsed_s: float, resumed: bool) -> dict[str, Any]:
    """A `RunResult` as the data of its results line (without the id)."""
    from .tools.results import to_jsonable

    usage = result.usage
    return {
        "status": "done" if result.stop_reason == StopReason.DONE else "failed",
        "stop_reason": result.stop_reason,
        "final_answer": to_jsonable(result.final_answer),
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "cost": usage.cost,
        "steps": len(result.steps),
        "llm_calls": result.llm_calls,
        "elapsed_s": round(elapsed_s, 4),
        "error": result.error_text
        or (None if result.stop_reason == StopReason.DONE else result.detail or None),
        "resumed": resumed,
    }


def _failure(stop_reason: str, error: str, elapsed_s: float, resumed: bool) -> dict[str, Any]:
    return {
        "status": "failed",
        "stop_reason": stop_reason,
        "final_answer": None,
        "usage": None,
        "cost": 0.0,
        "steps": 0,
        "llm_calls": 0,
        "elapsed_s": round(elapsed_s, 4),
        "error": error,
        "resumed": resumed,
    }


# -- running ----------------------------------------------------------------------------------


@dataclass
class _Batch:
    """What every worker shares: the agent, the settings, the results file and the counts."""

    agent: _Agent
    out_dir: Path
    max_steps: int | None
    deadline_s: float | None
    trace: bool
    llm: Any
    workspace: Path | None
    results: IO[str]
    summary: BatchSummary
    on_result: Callable[[dict[str, Any]], None] | None

    def workspace_of(self, task: BatchTask) -> Path:
        return self.workspace if self.workspace is not None else self.out_dir / "workspaces" / task.name

    def record(self, task: BatchTask, outcome: dict[str, Any]) -> None:
        """Append the task's line (flushed at once) and count it."""
        self.results.write(_result_line(task, outcome))
        self.results.flush()
        if outcome["status"] == "done":
            self.summary.done += 1
        else:
            self.summary.failed += 1
        if self.on_result is not None:
            self.on_result({"id": task.id, **outcome})


async def arun_batch(
    agent: Any,
    tasks: Iterable[Mapping[str, Any] | BatchTask] | str | os.PathLike[str],
    *,
    concurrency: int,
    out_dir: str | os.PathLike[str],
    max_steps: int | None = None,
    scripted: bool = False,
    deadline_s: float | None = None,
    trace: bool = False,
    llm: Any = None,
    workspace: str | os.PathLike[str] | None = None,
    model: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Run every task of `tasks` with `agent`, at most `concurrency` at once; see the module's text.

    Args:
        agent: a cartridge folder, ``"module:factory"``, or a callable returning an `AgentPreset`.
        tasks: ``{"id": ..., "task": ...}`` mappings, or the path of a JSONL file of them.
        concurrency: how many tasks run at once (at least 1).
        out_dir: where ``results.jsonl``, ``checkpoints/``, ``traces/`` and
            ``workspaces/`` go (created if missing).
        max_steps: caps each task's step budget.
        scripted: use the agent's ``scripted_responses`` as the model (no key, no network).
        deadline_s: each task's wall-clock limit (the loop's ``deadline_s``; an
            outer timeout a little later catches a loop that does not return).
        trace: record each task's run with a `ProvenanceSink` in ``out_dir/traces``.
        llm: the model when not scripted: a backend shared by the tasks, or a
            function of the `BatchTask` returning one backend per task.
        workspace: one directory every task works in; by default each task
            gets ``out_dir/workspaces/<name>``.
        model: the model name a cartridge's runtime reports.
        on_result: called with each result line's data as it is written.

    Raises:
        BatchInputError: bad tasks, an agent that cannot be loaded, a bad
            setting, or another batch running in `out_dir`.
    """
    _check_settings(concurrency, max_steps, deadline_s)
    checked = read_tasks(tasks) if isinstance(tasks, str | os.PathLike) else _as_tasks(tasks)
    loaded = load_agent(agent, scripted=scripted, max_steps=max_steps, model=model)
    if not scripted and llm is None and loaded.uses_workspace:  # a cartridge never brings its own model
        raise BatchInputError(NO_MODEL)
    root = Path(out_dir)
    started = time.monotonic()
    with _batch_lock(root), open(root / RESULTS_FILE, "a", encoding="utf-8") as results:
        summary = BatchSummary(total=len(checked), out_dir=root)
        batch = _Batch(
            agent=loaded,
            out_dir=root,
            max_steps=max_steps,
            deadline_s=deadline_s,
            trace=trace,
            llm=llm,
            workspace=None if workspace is None else Path(workspace),
            results=results,
            summary=summary,
            on_result=on_result,
        )
        await _run_all(batch, checked, concurrency)
    summary.elapsed_s = time.monotonic() - started
    return summary


def run_batch(agent: Any, tasks: Any, **options: Any) -> BatchSummary:
    """`arun_batch` in a fresh event loop (for scripts and the command line); same arguments."""
    result: BatchSummary = asyncio.run(arun_batch(agent, tasks, **options))
    return result


def _check_settings(concurrency: int, max_steps: int | None, deadline_s: float | None) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise BatchInputError(f"concurrency must be a whole number of at least 1, got {concurrency!r}")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise BatchInputError(f"max_steps must be at least 1, got {max_steps!r}")
    if deadline_s is not None and (isinstance(deadline_s, bool) or not deadline_s > 0):
        raise BatchInputError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}")


def _as_tasks(items: Iterable[Mapping[str, Any] | BatchTask]) -> list[BatchTask]:
    plain = ({"id": t.id, "task": t.task, **t.extra} if isinstance(t, BatchTask) else t for t in items)
    return check_tasks(plain)


@contextlib.contextmanager
def _batch_lock(root: Path) -> Iterator[None]:
    """Hold ``out_dir/.batch.lock`` for the session: two processes must not run one batch's tasks."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / _LOCK_FILE, "a+b")  # noqa: SIM115 (held for the whole session)
    except OSError as exc:
        raise BatchInputError(f"{root}: cannot write there ({exc.strerror or exc})") from None
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no lock; do not run two batches in one directory
            pass
        except OSError:
            raise BatchBusy(
                f"{root}: another batch is running there; wait for it or choose another --out"
            ) from None
        yield
    finally:
        handle.close()


async def _run_all(batch: _Batch, tasks: list[BatchTask], concurrency: int) -> None:
    """Skip the tasks that ended before, then let `concurrency` workers take the rest one by one."""
    from .checkpoints import FileCheckpointStore

    finished, failed_before = _finished_names(batch.out_dir / RESULTS_FILE)
    saved = set(FileCheckpointStore(batch.out_dir / "checkpoints").list_runs())
    batch.summary.skipped = sum(1 for t in tasks if t.name in finished)
    batch.summary.failed = min(failed_before, batch.summary.skipped)
    batch.summary.done = batch.summary.skipped - batch.summary.failed
    queue = _pending(tasks, finished)
    del finished

    async def worker() -> None:
        for task in queue:
            await _run_one(batch, task, task.name in saved)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, max(1, len(tasks)))):
            group.create_task(worker())


def _pending(tasks: list[BatchTask], finished: set[str]) -> Iterator[BatchTask]:
    return (task for task in tasks if task.name not in finished)


async def _run_one(batch: _Batch, task: BatchTask, saved: bool) -> None:
    """Run (or continue) one task and record how it ended; nothing it raises reaches the batch."""
    started = time.monotonic()
    batch.summary.resumed += saved
    try:
        outcome = await _attempt(batch, task, saved)
    except _BuildFailed as exc:
        outcome = _failure(BUILD_ERROR, str(exc), time.monotonic() - started, saved)
    except _TimedOut as exc:
        outcome = _failure(StopReason.DEADLINE, str(exc), time.monotonic() - started, saved)
    except Exception as exc:
        if propagates(exc):
            raise
        outcome = _failure(RUN_ERROR, _one_line(exc), time.monotonic() - started, saved)
    if outcome.get("stop_reason") == StopReason.APPROVAL_PENDING:
        batch.summary.paused.append(task.id)
        if batch.on_result is not None:
            batch.on_result({"id": task.id, **outcome, "status": "paused"})
        return
    batch.record(task, outcome)


class _TimedOut(Exception):
    """The outer timeout cancelled a task whose loop did not stop at its own deadline."""


def _backstop(deadline_s: float) -> float:
    """How long the outer timeout waits: the deadline and half as much again (at least a second)."""
    return deadline_s + max(1.0, deadline_s / 2)


async def _attempt(batch: _Batch, task: BatchTask, saved: bool) -> dict[str, Any]:
    """One task's run: from its checkpoint when it has one, else fresh; the outcome as a result line."""
    from .checkpoints import FileCheckpointStore, load_run, run_status

    store = FileCheckpointStore(batch.out_dir / "checkpoints")  # one per task: no per-run memory kept
    if saved:
        state = load_run(store, task.name)
        if run_status({"stop_reason": state.stop_reason}) in ("finished", "stopped") and (
            state.stop_reason != StopReason.CANCELLED
        ):
            return _recorded(state)  # it ended, but its line was lost: record it, do not run again
    workspace = batch.workspace_of(task)
    trace_dir = batch.out_dir / "traces" if batch.trace else None
    preset, own_model = batch.agent.make_preset(task, workspace, trace_dir)
    llm = own_model if own_model is not None else _model_for(batch, task, workspace)
    overrides = _overrides(batch, task, preset, store, saved)
    started = time.monotonic()
    result = await _within_backstop(preset.aloop(llm, **overrides).run(), batch.deadline_s)
    return outcome_of(result, result.elapsed_s or time.monotonic() - started, saved)


def _model_for(batch: _Batch, task: BatchTask, workspace: Path) -> Any:
    """The task's model: the scripted one, the shared backend, or the one `llm(task)` makes."""
    try:
        if batch.agent.make_script is not None:
            return batch.agent.make_script(task, workspace)
        if callable(batch.llm) and not hasattr(batch.llm, "complete"):
            return batch.llm(task)
    except _BuildFailed:
        raise
    except Exception as exc:
        raise _BuildFailed(f"the model could not be made: {_one_line(exc)}") from exc
    if batch.llm is None:
        raise _BuildFailed(f"{NO_MODEL}; or return (preset, model) from the factory")
    return batch.llm


def _overrides(
    batch: _Batch, task: BatchTask, preset: AgentPreset, store: Any, saved: bool
) -> dict[str, Any]:
    """The loop's arguments for this task: its store, its state or saved run, its limits, its sink."""
    overrides: dict[str, Any] = {"store": store}
    if saved:
        overrides["resume"] = task.name
        overrides["state"] = None
    else:
        from .state import DefaultState

        state = preset.state if preset.state is not None else DefaultState()
        state.run_id = task.name  # the checkpoint's name: how a later session finds this run
        overrides["task"] = task.task
        overrides["state"] = state
    if batch.deadline_s is not None:
        overrides["config"] = dataclasses.replace(preset.config, deadline_s=batch.deadline_s)
    if batch.max_steps is not None:
        overrides["max_steps"] = min(batch.max_steps, preset.config.max_steps)
    if batch.trace:
        from .provenance import ProvenanceSink

        overrides["hooks"] = [*preset.hooks, ProvenanceSink(batch.out_dir / "traces")]
    return overrides


async def _within_backstop(run: Coroutine[Any, Any, RunResult], deadline_s: float | None) -> RunResult:
    """Await the run; with a deadline, cancel it if it has not returned by `_backstop`."""
    if deadline_s is None:
        return await run
    limit = _backstop(deadline_s)
    try:
        async with asyncio.timeout(limit) as scope:
            return await run
    except TimeoutError:
        if not scope.expired():
            raise
        raise _TimedOut(
            f"the task did not stop within {limit:g}s (its deadline is {deadline_s:g}s); it was cancelled"
        ) from None


def _recorded(state: Any) -> dict[str, Any]:
    """The result line of a run that ended in an earlier session, from its saved record."""
    result = RunResult(
        stop_reason=state.stop_reason,
        steps=list(state.steps),
        final_answer=state.final_answer,
        usage=state.usage,
        llm_calls=state.llm_calls,
        elapsed_s=state.elapsed_s,
    )
    return outcome_of(result, state.elapsed_s, True)
