"""Batches on a DBOS queue (``looplet batch --engine dbos``): each task a durable run, taken by any worker.

`run_queued_batch` puts each task of a batch on the agent's DBOS queue as a
durable run (`looplet.dbos_runs`), with at most `concurrency` of them running
at once across every worker (the queue's global limit, kept in the
database), then waits for them and writes ``results.jsonl`` as `run_batch`
does. By default this process works the queue too, so on the embedded SQLite
database one command does everything; with ``work=False`` the runs are left
to ``looplet worker`` processes, on this machine or others sharing a
PostgreSQL database.

Each run's id is ``<batch>-<task name>``, where ``<batch>`` is a digest of the
output directory's path: running the same command again skips the tasks with
a results line and waits for the rest, and a run already on the queue is
joined, never enqueued twice. Killing this process loses nothing: the runs
go on in the workers, and a run this process was working on is recovered
when it starts again (or by any worker with the same executor id).

A run paused for approval waits in its workflow, and it keeps its place in
the queue's concurrency while it waits. The batch lists it instead of
waiting: decide it with `looplet.dbos_runs.approve` / `reject` (by the run id
in the list) and run the command again to collect its result.

The queue's global limit is set before the first task is enqueued. Workers
already running reread it at their next poll, so when it changes the batch
waits a few polls first; a worker backing off after contention on the queue
(DBOS doubles its poll interval then) may take longer to see it.

Why the batch does not also bound each task by wall time from outside, as
`run_batch` does: a run here is a workflow thread, possibly in another
process, which cannot be cancelled from here. ``deadline_s`` still bounds
each run inside its loop.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .batch import (
    RESULTS_FILE,
    RUN_ERROR,
    BatchSummary,
    BatchTask,
    _as_tasks,
    _batch_lock,
    _check_settings,
    _failure,
    _finished_names,
    _result_line,
    load_agent,
    outcome_of,
    read_tasks,
)
from .errors import ConfigError
from .types import RunResult, StopReason, Usage

__all__ = ["run_queued_batch", "batch_run_id"]

#: the workflow states after which a run never changes again
_ENDED = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
#: how many of a worker's polls pass between changing a queue's limits and enqueuing under them
_SETTLE_POLLS = 3
#: how long every run left must stay paused before the batch stops waiting for them
_SETTLE_S = 0.5
#: how many runs one status query asks about
_CHUNK = 200


def batch_run_id(out_dir: str | os.PathLike[str], task: BatchTask) -> str:
    """The durable run id of `task` in the batch writing to `out_dir`: stable across reruns."""
    where = str(Path(out_dir).resolve()).encode("utf-8", "surrogatepass")
    return f"b{hashlib.sha256(where).hexdigest()[:10]}-{task.name}"


def run_queued_batch(
    agent: str | os.PathLike[str],
    tasks: Iterable[Mapping[str, Any] | BatchTask] | str | os.PathLike[str],
    *,
    concurrency: int,
    out_dir: str | os.PathLike[str],
    db_url: str | None = None,
    max_steps: int | None = None,
    scripted: bool = False,
    model: str | None = None,
    deadline_s: float | None = None,
    work: bool = True,
    poll_s: float = 0.1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Run every task of `tasks` as a durable run of `agent` on its DBOS queue; see the module's text.

    Args:
        agent: a cartridge folder or ``"module:factory"`` (a callable cannot
            travel to another process).
        tasks: ``{"id": ..., "task": ...}`` mappings, or the path of a JSONL file of them.
        concurrency: the queue's global limit: runs at once across all workers.
        out_dir: where ``results.jsonl`` goes (the run records stay in the
            database's store, `looplet.dbos_runs.store_for`).
        db_url: the DBOS system database (default: ``$DBOS_SYSTEM_DATABASE_URL``,
            else ``.looplet/dbos.sqlite`` here).
        max_steps: caps each run's step budget.
        scripted: build each run's model from the agent's ``scripted_responses``.
        model: the model name, for a worker that builds a real model.
        deadline_s: each run's wall-clock limit, inside its loop.
        work: also take runs from the queue in this process.
        poll_s: how often the runs' states are read.
        on_result: called with each result line's data as it is written, and
            with ``status="paused"`` for a run waiting for approval.

    Raises:
        BatchInputError: bad tasks, settings or agent, or another batch running in `out_dir`.
        ConfigError: DBOS is not installed, or the database is not set up for it.
    """
    from . import dbos_runs

    _check_settings(concurrency, max_steps, deadline_s)
    if callable(agent) and not isinstance(agent, str | os.PathLike):
        raise ConfigError(
            "a queued batch names its agent (a cartridge folder or 'module:factory'); a function "
            "cannot travel to a worker"
        )
    checked = read_tasks(tasks) if isinstance(tasks, str | os.PathLike) else _as_tasks(tasks)
    name = dbos_runs._agent_name(agent)
    load_agent(name, scripted=scripted, max_steps=max_steps, model=model)  # refuse a bad agent here
    root = Path(out_dir)
    started = time.monotonic()
    with _batch_lock(root), open(root / RESULTS_FILE, "a", encoding="utf-8") as results:
        finished, failed_before = _finished_names(root / RESULTS_FILE)
        summary = BatchSummary(total=len(checked), out_dir=root)
        summary.skipped = sum(1 for t in checked if t.name in finished)
        summary.failed = min(failed_before, summary.skipped)
        summary.done = summary.skipped - summary.failed
        url = dbos_runs.start_dbos(db_url) if work else dbos_runs._url(db_url)
        before = dbos_runs.queue_limits(name, db_url=url)
        if work:
            dbos_runs.serve_queue(name, url, global_concurrency=concurrency)
        else:
            dbos_runs.set_queue_limits(name, db_url=url, global_concurrency=concurrency)
        if before is not None and before[0] != concurrency:
            time.sleep(
                _SETTLE_POLLS * dbos_runs.POLL_S
            )  # running workers take a new limit at their next poll
        waiting = _enqueue_all(
            url,
            name,
            [t for t in checked if t.name not in finished],
            root,
            max_steps,
            dbos_runs._run_options(scripted, model, deadline_s),
        )

        def record(task: BatchTask, outcome: dict[str, Any]) -> None:
            results.write(_result_line(task, outcome))
            results.flush()
            summary.done += outcome["status"] == "done"
            summary.failed += outcome["status"] != "done"
            if on_result is not None:
                on_result({"id": task.id, **outcome})

        paused = _wait(url, waiting, record, poll_s)
        summary.paused = [f"{waiting[run_id].id} (run {run_id})" for run_id in paused]
        if on_result is not None:
            for run_id in paused:
                on_result(
                    {
                        "id": waiting[run_id].id,
                        "run_id": run_id,
                        "status": "paused",
                        "stop_reason": StopReason.APPROVAL_PENDING,
                    }
                )
    summary.elapsed_s = time.monotonic() - started
    return summary


def _enqueue_all(
    url: str, agent: str, tasks: list[BatchTask], root: Path, max_steps: int | None, options: dict[str, Any]
) -> dict[str, BatchTask]:
    """Enqueue each task (joining a run already there) through one client; the runs by id."""
    from . import dbos_runs

    runs: dict[str, BatchTask] = {}
    client = dbos_runs._client(url)
    try:
        for task in tasks:
            run_id = batch_run_id(root, task)
            dbos_runs._enqueue(
                client,
                url,
                agent,
                task.task,
                run_id=run_id,
                max_steps=max_steps,
                store_dir=None,
                queue=None,
                options=options,
            )
            runs[run_id] = task
    finally:
        client.destroy()
    return runs


def _wait(
    url: str,
    runs: dict[str, BatchTask],
    record: Callable[[BatchTask, dict[str, Any]], None],
    poll_s: float,
) -> list[str]:
    """Record each run as it ends; return the ids of those left waiting for approval.

    The batch stops waiting once every run left has been paused for `_SETTLE_S`
    (a decision sent before this session may still be on its way to its run).
    """
    from . import dbos_runs

    waiting = set(runs)
    store = dbos_runs.store_for(url)
    client = dbos_runs._client(url)
    all_paused_since: float | None = None
    try:
        while waiting:
            running: list[str] = []
            for status in _statuses(client, sorted(waiting)):
                if status.status in _ENDED:
                    record(runs[status.workflow_id], _line(status))
                    waiting.discard(status.workflow_id)
                elif status.status == "PENDING":
                    running.append(status.workflow_id)
            paused = [run_id for run_id in running if _is_paused(client, store, run_id)]
            if not waiting or len(paused) < len(waiting):
                all_paused_since = None
            elif all_paused_since is None:
                all_paused_since = time.monotonic()
            elif time.monotonic() - all_paused_since >= _SETTLE_S:
                return sorted(paused)
            if waiting:
                time.sleep(poll_s)
    finally:
        client.destroy()
    return []


def _statuses(client: Any, run_ids: list[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(run_ids), _CHUNK):
        found += client.list_workflows(workflow_ids=run_ids[start : start + _CHUNK], load_input=False)
    return found


def _is_paused(client: Any, store: Any, run_id: str) -> bool:
    """True when the run waits for a decision that nobody has taken yet.

    In the process running it, DBOS's wait itself says so. Elsewhere: its
    published status is a pause, and its record still holds an undecided call
    (the status stays a pause while a decided run works on, until it ends).
    """
    from . import dbos_runs
    from .checkpoints import load_run

    if run_id in dbos_runs._working:
        return run_id in dbos_runs._waiting
    status = client.get_event(run_id, dbos_runs.STATUS_KEY, 0)
    if not (isinstance(status, dict) and status.get("stop_reason") == StopReason.APPROVAL_PENDING):
        return False
    try:
        saved = load_run(store, run_id)
    except Exception:  # not saved yet, or being written: not known to be paused
        return False
    return saved.stop_reason == StopReason.APPROVAL_PENDING and any(
        call.decision is None for call in saved.pending
    )


def _line(status: Any) -> dict[str, Any]:
    """The results line of an ended workflow: its outcome, or why it has none."""
    outcome = status.output
    if status.status != "SUCCESS" or not isinstance(outcome, dict):
        reason = status.error if status.error is not None else status.status.lower()
        text = " ".join(str(reason).split()) or type(reason).__name__
        return _failure(RUN_ERROR, f"the durable run ended {status.status}: {text}", 0.0, False)
    result = RunResult(
        stop_reason=outcome["stop_reason"],
        steps=[],
        final_answer=outcome.get("final_answer"),
        usage=Usage.from_dict(outcome.get("usage") or {}),
        llm_calls=int(outcome.get("llm_calls") or 0),
        detail=outcome.get("detail") or "",
    )
    line = outcome_of(result, float(outcome.get("elapsed_s") or 0.0), False)
    line["steps"] = len(outcome.get("steps") or [])
    line["run_id"] = status.workflow_id
    return line
