"""Durable agent runs on DBOS: a run is a DBOS workflow that continues from its saved record.

A run started with `durable_run` is a DBOS workflow (its id is the run id).
The engine's own checkpoint makes it durable (in ``runs/`` beside a SQLite
database, in tables of a PostgreSQL one: `store_for`): a `CheckpointHook` saves every
step before it is yielded and every tool's intent before the tool starts.
When the process dies, DBOS recovers the workflow at the next
``DBOS.launch()`` on the same system database under the same executor id
(a restarted worker; DBOS hands runs between executors only through its
Conductor service, which looplet does not use); the
workflow loads the last saved record and continues it, so finished tools
never run again and a tool that started but did not finish is settled by the
journal's rule (``idempotent=True`` tools run again, any other is reported
``interrupted``). See ``docs/durability.md``.

Why not replay the engine's effects as DBOS steps: DBOS recovers a workflow
by running its code again from the start and feeding back recorded step
outputs, which asks every hook to be pure and the clock (deadlines, timings)
to be recorded, replays the whole run on each recovery, and still needs the
journal for a tool step that started but did not finish. Continuing from the
record needs none of that: the workflow's only DBOS operations are the wait
for an approval (``DBOS.recv``) and its status (``DBOS.set_event``), always
in that order, so a replayed workflow meets them in the order it recorded.

A run paused for approval waits durably: the workflow publishes the paused
calls (`run_status`) and waits for a decision, which `approve` / `reject`
send from any process (through a `DBOSClient`, which recovers nothing).

The agent is named by reference, as ``looplet batch`` names it (a cartridge
folder, or ``"module:factory"`` returning an `AgentPreset` or an
``(AgentPreset, model)`` pair: `build_agent`), so that any process can build
it again. ``dbos`` is imported only when a durable run is used
(``pip install "looplet[dbos]"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .checkpoints import FileCheckpointStore, RunStore, load_run
from .errors import ConfigError, DecisionError
from .presets import AgentPreset
from .redaction import redact_text
from .state import DefaultState

__all__ = [
    "durable_run",
    "start_durable_run",
    "enqueue_run",
    "wait_for_run",
    "serve_queue",
    "queue_for",
    "set_queue_limits",
    "queue_limits",
    "start_dbos",
    "stop_dbos",
    "shutdown",
    "approve",
    "reject",
    "run_status",
    "default_db_url",
    "store_for",
    "build_agent",
]

logger = logging.getLogger(__name__)

#: the DBOS workflow's registered name (a recovering process must register the same)
WORKFLOW_NAME = "looplet.durable_run"
#: the topic decisions are sent on, and the event key the paused calls are published under
DECISION_TOPIC = "looplet.decision"
STATUS_KEY = "looplet.status"
#: how long one wait for a decision lasts before the workflow publishes its status again
WAIT_S = 3600.0
#: the prefix of the DBOS queues: an agent's runs go on ``looplet:<agent>``, which its workers serve
QUEUE_NAME = "looplet"
#: the DBOS application name: a worker serves the queues registered under it
APP_NAME = "looplet"
#: runs at once per worker on a queue that was never given a limit
DEFAULT_WORKER_CONCURRENCY = 4
#: how often a worker looks for runs on its queue
POLL_S = 0.1
INSTALL_HINT = 'durable runs need DBOS: pip install "looplet[dbos]"'

#: the store location meaning "the run records are in the database DBOS runs on here"
IN_DATABASE = "looplet:in-database"

_workflow: Callable[..., Any] | None = None
#: the runs inside a workflow in this process, and those of them waiting for a decision
_working: set[str] = set()
_waiting: set[str] = set()
_runs_lock = threading.Lock()
_launched_url: str | None = None
_sql_stores: dict[str, RunStore] = {}


def _dbos() -> Any:
    """The ``dbos`` module, imported on first use."""
    try:
        return importlib.import_module("dbos")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def default_db_url(directory: str | os.PathLike[str] | None = None) -> str:
    """The embedded default: a SQLite file ``.looplet/dbos.sqlite`` under `directory` (default: here)."""
    root = Path(directory or os.getcwd()).resolve() / ".looplet"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'dbos.sqlite'}"


def store_for(db_url: str) -> RunStore:
    """Where the run records of `db_url`'s runs are kept.

    SQLite: ``runs/`` beside the database file (one machine). PostgreSQL: tables
    in the same database (`SqlRunStore`), which every worker on every machine reaches.
    """
    if db_url.startswith("sqlite:///"):
        return FileCheckpointStore(Path(db_url[len("sqlite:///") :]).parent / "runs")
    if db_url.startswith(("postgresql://", "postgres://", "postgresql+")):
        if db_url not in _sql_stores:
            from .sql_store import SqlRunStore

            _sql_stores[db_url] = SqlRunStore(db_url)
        return _sql_stores[db_url]
    raise ConfigError(f"{db_url.split(':')[0]} database: pass store_dir= (a directory all workers can reach)")


def _store_location(db_url: str, store_dir: str | os.PathLike[str] | None) -> str:
    """What the workflow is told about its store: a directory, or the database it runs on.

    The database's URL itself is not passed: DBOS keeps workflow arguments, and the URL may hold a password.
    """
    if store_dir is not None:
        return str(Path(store_dir).resolve())
    if db_url.startswith("sqlite:///"):
        return FileCheckpointStore(Path(db_url[len("sqlite:///") :]).parent / "runs").directory
    store_for(db_url)  # refuses a database it cannot keep records in, here rather than in a worker
    return IN_DATABASE


def _open_store(location: str) -> RunStore:
    """The store named by `_store_location`, in the process running the workflow."""
    return store_for(start_dbos()) if location == IN_DATABASE else FileCheckpointStore(location)


def build_agent(
    reference: str,
    task: Any = "",
    *,
    run_id: str = "run",
    scripted: bool = False,
    model: str | None = None,
    max_steps: int | None = None,
) -> tuple[AgentPreset, Any]:
    """Build the agent named `reference` for one run: its preset and its model.

    `reference` names the agent as ``looplet batch`` does: a cartridge folder
    (a folder with ``SKILL.md``), or ``"module:factory"`` where ``factory()``
    (or ``factory(task)``, given a `BatchTask`) returns an `AgentPreset` or an
    ``(AgentPreset, model)`` pair. The model: the factory's own; else, with
    `scripted`, the agent's ``scripted_responses``; else the OpenAI-compatible
    endpoint of this process's environment (``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL``, ``OPENAI_MODEL`` or `model`), so each worker brings
    its own credentials and none travel with the run.

    Raises:
        ConfigError: the agent cannot be found or built, or it has no model here.
    """
    from .batch import DEFAULT_MODEL, BatchTask, load_agent, task_file_name

    loaded = load_agent(reference, scripted=scripted, max_steps=max_steps, model=model)
    text = task if isinstance(task, str) else str(task)
    item = BatchTask(id=run_id, task=text, name=task_file_name(run_id))
    workspace = Path.cwd() / ".looplet" / "workspaces" / item.name
    if loaded.uses_workspace:
        workspace.mkdir(parents=True, exist_ok=True)
    try:
        preset, llm = loaded.make_preset(item, workspace, None)
        if llm is None and loaded.make_script is not None:
            llm = loaded.make_script(item, workspace)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{reference}: {' '.join(str(exc).split())}") from exc
    if llm is None:
        from .backends import OpenAIBackend

        llm = OpenAIBackend.from_env(model=model or DEFAULT_MODEL)  # ConfigError naming what to set
    return preset, llm


# -- the workflow ---------------------------------------------------------------------------------


def _outcome(state: DefaultState) -> dict[str, Any]:
    """What a durable run hands back: the record's ending, as JSON data."""
    return {
        "run_id": state.run_id,
        "stop_reason": state.stop_reason,
        "detail": state.detail,
        "final_answer": state.final_answer,
        "steps": [step.to_dict() for step in state.steps],
        "llm_calls": state.llm_calls,
        "usage": state.usage.to_dict(),
        "pending": [call.to_dict() for call in state.pending],
        "elapsed_s": state.elapsed_s,
    }


def _session(
    agent: str, task: Any, run_id: str, store: RunStore, max_steps: int | None, options: dict[str, Any]
) -> DefaultState:
    """One session of the run: start it, or continue it from its saved record."""
    if run_id in store.list_runs():
        state = load_run(store, run_id)
        if state.stop_reason == "done":  # finished before the crash; DBOS had not recorded it yet
            return state
        _continue(agent, state, store, max_steps, options)
    else:
        state = DefaultState(task=task, run_id=run_id)
        _continue(agent, state, store, max_steps, options, task=task)
    return state


def _continue(
    agent: str,
    state: DefaultState,
    store: RunStore,
    max_steps: int | None,
    options: dict[str, Any],
    task: Any = None,
) -> None:
    """Run the loop on `state` (a new run when `task` is given) until it stops, saving as it goes."""
    preset, llm = build_agent(
        agent,
        state.task if task is None else task,
        run_id=state.run_id,
        scripted=bool(options.get("scripted")),
        model=options.get("model"),
        max_steps=max_steps,
    )
    overrides: dict[str, Any] = {"state": state, "store": store}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    if options.get("deadline_s") is not None:
        overrides["config"] = dataclasses.replace(preset.config, deadline_s=float(options["deadline_s"]))
    preset.loop(llm, task=task, **overrides).run()


def _apply(store: RunStore, run_id: str, decisions: Any) -> DefaultState | None:
    """The saved run with `decisions` taken, or None when none of them applies (a stale or bad one)."""
    state = load_run(store, run_id)
    taken = 0
    for decision in decisions if isinstance(decisions, list) else [decisions]:
        try:
            if decision.get("decision") == "approve":
                state.approve(decision["call_id"], decision.get("args"), args_hash=decision.get("args_hash"))
            else:
                reason = decision.get("reason") or "rejected by a human"
                state.reject(decision["call_id"], reason, args_hash=decision.get("args_hash"))
            taken += 1
        except (DecisionError, KeyError, AttributeError, TypeError) as exc:
            logger.warning("run %s: decision %r not taken: %s", run_id, decision, exc)
    return state if taken else None


def _run_workflow(
    agent: str,
    task: Any,
    run_id: str,
    store_dir: str,
    max_steps: int | None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The workflow's body: run sessions until the run stops for any reason but a pending approval."""
    dbos = _dbos().DBOS
    options = options or {}
    with _here(_working, run_id):
        store = _open_store(store_dir)
        state = _session(agent, task, run_id, store, max_steps, options)
        while state.stop_reason == "approval_pending":
            dbos.set_event(STATUS_KEY, _outcome(state))
            with _here(_waiting, run_id):
                message = dbos.recv(DECISION_TOPIC, timeout_seconds=WAIT_S)
            decided = None if message is None else _apply(store, run_id, message)
            if decided is None:
                state = load_run(store, run_id)
                continue
            _continue(agent, decided, store, max_steps, options)
            state = decided
        outcome = _outcome(state)
        dbos.set_event(STATUS_KEY, outcome)
        return outcome


@contextlib.contextmanager
def _here(runs: set[str], run_id: str) -> Iterator[None]:
    """Count `run_id` in `runs` (this process's working or waiting runs) while the block runs."""
    with _runs_lock:
        runs.add(run_id)
    try:
        yield
    finally:
        with _runs_lock:
            runs.discard(run_id)


def _register() -> Callable[..., Any]:
    """Register the workflow with DBOS (once per process, before launch)."""
    global _workflow
    if _workflow is None:
        _workflow = _dbos().DBOS.workflow(name=WORKFLOW_NAME)(_run_workflow)
    return _workflow


def start_dbos(db_url: str | None = None) -> str:
    """Configure and launch DBOS on `db_url`, once per process.

    With no URL: the database already launched here, else ``$DBOS_SYSTEM_DATABASE_URL``,
    else the embedded SQLite default (`default_db_url`).

    Launching recovers the runs this database holds that a dead process left
    unfinished. Returns the URL in use.
    """
    global _launched_url
    if db_url is None and _launched_url is not None:
        return _launched_url  # no URL named: the database this process already runs on
    url = _url(db_url)
    if _launched_url is not None:
        if url != _launched_url:
            raise ConfigError(
                f"DBOS already runs on {_launched_url} in this process; one database per process"
            )
        return url
    dbos = _dbos()
    _register()
    config = {
        "name": APP_NAME,
        "system_database_url": url,
        # fixed, so that a worker of the same looplet recovers runs whatever else it registered
        "application_version": _app_version(),
        "notification_listener_polling_interval_sec": 0.05,
        "log_level": "WARNING",
    }
    dbos.DBOS(config=config)
    dbos.DBOS.launch()
    _launched_url = url
    return url


def stop_dbos() -> None:
    """Shut DBOS down in this process (runs in flight are recovered by the next launch)."""
    global _launched_url
    if _launched_url is not None:
        _dbos().DBOS.destroy()
        _launched_url = None


def shutdown(grace_s: float = 30.0) -> bool:
    """Stop DBOS here once the runs working in this process have stopped, waiting at most `grace_s`.

    Returns True when no run holds a thread here any more. A run waiting for a
    decision holds one until the decision comes, and Python waits for every
    such thread before a process exits, so a caller that gets False ends its
    process with ``os._exit``. That loses nothing: the run is in its record,
    and DBOS recovers it, still waiting, at the next launch on its database.
    A run still working after `grace_s` is recovered the same way, its
    unfinished tool settled by the journal.
    """
    deadline = time.monotonic() + grace_s
    while _busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_dbos()
    return not (_busy() or _waiting)


def _busy() -> bool:
    """True while a run in this process is working (not waiting for a decision)."""
    with _runs_lock:
        return bool(_working - _waiting)


def _run_options(scripted: bool, model: str | None, deadline_s: float | None) -> dict[str, Any]:
    """How a worker builds and bounds the run (JSON: DBOS keeps it with the workflow's arguments)."""
    if deadline_s is not None and not (isinstance(deadline_s, int | float) and deadline_s > 0):
        raise ConfigError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
    return {"scripted": bool(scripted), "model": model, "deadline_s": deadline_s}


def start_durable_run(
    agent: str,
    task: Any,
    *,
    db_url: str | None = None,
    run_id: str | None = None,
    max_steps: int | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    scripted: bool = False,
    model: str | None = None,
    deadline_s: float | None = None,
) -> Any:
    """Start (or join, for a `run_id` already started) a durable run; returns the DBOS workflow handle.

    `agent` is a cartridge folder or ``"module:factory"`` (see `build_agent`);
    `scripted`, `model` and `deadline_s` are how the run is built and bounded,
    wherever it runs.
    """
    if not isinstance(agent, str | os.PathLike):
        raise ConfigError(
            "a durable run names its agent (a cartridge folder or 'module:factory'), "
            f"so that another process can build it again; got {type(agent).__name__}"
        )
    options = _run_options(scripted, model, deadline_s)
    url = start_dbos(db_url)
    directory = _store_location(url, store_dir)
    run_id = run_id or f"run_{secrets.token_hex(8)}"
    dbos = _dbos()
    with dbos.SetWorkflowID(run_id):
        return dbos.DBOS.start_workflow(
            _register(), _agent_name(agent), task, run_id, directory, max_steps, options
        )


def durable_run(agent: str, task: Any, **options: Any) -> dict[str, Any]:
    """Run `agent` on `task` as a DBOS workflow and wait for it to end; returns its outcome.

    Takes the arguments of `start_durable_run`. The outcome is JSON data:
    ``run_id``, ``stop_reason``, ``detail``, ``final_answer``, ``steps`` (each
    ``Step.to_dict()``), ``llm_calls``, ``usage``, ``pending``, ``elapsed_s``.
    A run that pauses for approval does not end: it waits (durably) for
    `approve` / `reject`, so this call waits too; use `start_durable_run` to
    get a handle instead.
    """
    result: dict[str, Any] = start_durable_run(agent, task, **options).get_result()
    return result


def _agent_name(agent: str | os.PathLike[str]) -> str:
    """The agent as every worker will name it: a folder as an absolute path, a factory as it is."""
    text = os.fspath(agent)
    if ":" in text and not Path(text).exists():
        return text
    return str(Path(text).resolve())


# -- queues and workers ---------------------------------------------------------------------------


def enqueue_run(
    agent: str,
    task: Any,
    *,
    db_url: str | None = None,
    run_id: str | None = None,
    max_steps: int | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    queue: str | None = None,
    scripted: bool = False,
    model: str | None = None,
    deadline_s: float | None = None,
) -> str:
    """Put a durable run on the agent's queue for a worker (``looplet worker AGENT``); returns its id.

    Enqueuing the same `run_id` again returns the run already there. Wait for
    it with `wait_for_run`.
    """
    url = _url(db_url)
    client = _client(url)
    try:
        return _enqueue(
            client,
            url,
            agent,
            task,
            run_id=run_id or f"run_{secrets.token_hex(8)}",
            max_steps=max_steps,
            store_dir=store_dir,
            queue=queue,
            options=_run_options(scripted, model, deadline_s),
        )
    finally:
        client.destroy()


def _enqueue(
    client: Any,
    url: str,
    agent: str,
    task: Any,
    *,
    run_id: str,
    max_steps: int | None,
    store_dir: str | os.PathLike[str] | None,
    queue: str | None,
    options: dict[str, Any],
) -> str:
    """Enqueue one run through an open `DBOSClient` (a batch enqueues many through one)."""
    name = _agent_name(agent)
    enqueue_options = {
        "queue_name": queue or queue_for(name),
        "workflow_name": WORKFLOW_NAME,
        "workflow_id": run_id,
        "app_version": _app_version(),
    }
    try:
        client.enqueue(
            enqueue_options, name, task, run_id, _store_location(url, store_dir), max_steps, options
        )
    except Exception as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise ConfigError(
                f"{redact_text(url)} is not set up for DBOS yet: start a worker on it first "
                "(python -m looplet worker AGENT --db URL)"
            ) from None
        raise
    return run_id


def _app_version() -> str:
    """Fixed per looplet release, so any worker of this looplet takes and recovers any run."""
    from . import __version__

    return f"looplet-{__version__}"


def wait_for_run(run_id: str, *, db_url: str | None = None) -> dict[str, Any]:
    """Wait for a durable run (run by any process) to end, and return its outcome."""
    client = _client(db_url)
    try:
        result: dict[str, Any] = client.retrieve_workflow(run_id).get_result()
        return result
    finally:
        client.destroy()


def queue_for(agent: str) -> str:
    """The DBOS queue an agent's runs go on."""
    return f"{QUEUE_NAME}:{_agent_name(agent)}"


def set_queue_limits(
    agent: str,
    *,
    db_url: str | None = None,
    global_concurrency: int | None = None,
    worker_concurrency: int | None = None,
    queue: str | None = None,
) -> tuple[int | None, int]:
    """Set how many of `agent`'s runs may run at once, in all and per worker; returns (global, per worker).

    DBOS keeps a queue's limits in the database and every worker rereads them
    as it polls, so a change reaches running workers. The per-worker limit is
    one value for the whole queue (the last one set), not one per process. A
    limit not given keeps its stored value (for a new queue: no global limit,
    `DEFAULT_WORKER_CONCURRENCY` per worker); the per-worker limit is held at
    or under the global one.
    """
    for name, value in (
        ("global_concurrency", global_concurrency),
        ("worker_concurrency", worker_concurrency),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
    client = _client(_url(db_url))
    try:
        name = queue or queue_for(agent)
        current = client.retrieve_queue(name)
        limits = _merged_limits(current, global_concurrency, worker_concurrency)
        client.register_queue(
            name,
            global_concurrency=limits[0],
            worker_concurrency=limits[1],
            polling_interval_sec=POLL_S,
            on_conflict="always_update",
            application_name=APP_NAME,
        )
        return limits
    finally:
        client.destroy()


def queue_limits(
    agent: str, *, db_url: str | None = None, queue: str | None = None
) -> tuple[int | None, int | None] | None:
    """The stored limits of `agent`'s queue, (global, per worker); None when the queue was never set up."""
    client = _client(_url(db_url))
    try:
        current = client.retrieve_queue(queue or queue_for(agent))
    finally:
        client.destroy()
    return None if current is None else (current.global_concurrency, current.worker_concurrency)


def _merged_limits(
    current: Any, global_concurrency: int | None, worker_concurrency: int | None
) -> tuple[int | None, int]:
    """The limits to store: the given, else the stored; the per-worker one capped by the global one."""
    total = (
        global_concurrency if global_concurrency is not None else getattr(current, "global_concurrency", None)
    )
    each = worker_concurrency or getattr(current, "worker_concurrency", None) or DEFAULT_WORKER_CONCURRENCY
    if total is not None and each > total:
        if worker_concurrency is not None:
            logger.warning("runs at once per worker (%d) held to the queue's global limit (%d)", each, total)
        each = total
    return total, each


def serve_queue(
    agent: str,
    db_url: str | None = None,
    *,
    concurrency: int | None = None,
    global_concurrency: int | None = None,
    queue: str | None = None,
) -> str:
    """Launch DBOS and take `agent`'s runs from its queue; returns the database URL.

    `concurrency` and `global_concurrency` set the queue's limits (see
    `set_queue_limits`; not given: the stored ones). The agent is built once
    first, so a worker that cannot build it refuses to start. Returns at once
    (DBOS works in background threads); launching also recovers the runs this
    executor left unfinished when it died.
    """
    from .batch import load_agent

    load_agent(_agent_name(agent))  # the folder or the module and its factory are there (else ConfigError)
    url = start_dbos(db_url)
    set_queue_limits(
        agent, db_url=url, global_concurrency=global_concurrency, worker_concurrency=concurrency, queue=queue
    )
    return url


# -- deciding from any process --------------------------------------------------------------------


def _url(db_url: str | None) -> str:
    """The database named, else ``$DBOS_SYSTEM_DATABASE_URL``, else the embedded SQLite default."""
    return db_url or os.environ.get("DBOS_SYSTEM_DATABASE_URL") or default_db_url()


def _client(db_url: str | None) -> Any:
    return _dbos().DBOSClient(system_database_url=_url(db_url))


def run_status(run_id: str, *, db_url: str | None = None, timeout_s: float = 0.0) -> dict[str, Any] | None:
    """The run's outcome once it has ended, else its last published status (a pause, with the calls
    waiting in ``pending``), else None (waiting up to `timeout_s` for one).

    An ended run answers from its result, not its event: a run recovered after
    a crash that followed its decision ends without publishing again (DBOS
    takes the replayed publish for the pause it recorded there).
    """
    client = _client(db_url)
    try:
        status: dict[str, Any] | None = client.get_event(run_id, STATUS_KEY, timeout_s)
        if status is None or status.get("stop_reason") != "approval_pending":
            return status
        [*found] = client.list_workflows(workflow_ids=[run_id], load_input=False)
        if found and found[0].status == "SUCCESS" and isinstance(found[0].output, dict):
            ended: dict[str, Any] = found[0].output
            return ended
        return status
    finally:
        client.destroy()


def _send(run_id: str, decision: dict[str, Any], db_url: str | None) -> None:
    client = _client(db_url)
    try:
        client.send(run_id, decision, DECISION_TOPIC)
    finally:
        client.destroy()


def approve(
    run_id: str,
    call_id: str,
    args: dict[str, Any] | None = None,
    *,
    args_hash: str | None = None,
    db_url: str | None = None,
) -> None:
    """Approve a paused call of a durable run (optionally with edited `args`), from any process."""
    _send(run_id, {"decision": "approve", "call_id": call_id, "args": args, "args_hash": args_hash}, db_url)


def reject(
    run_id: str,
    call_id: str,
    reason: str = "rejected by a human",
    *,
    args_hash: str | None = None,
    db_url: str | None = None,
) -> None:
    """Reject a paused call of a durable run, from any process: the model is told why."""
    _send(
        run_id, {"decision": "reject", "call_id": call_id, "reason": reason, "args_hash": args_hash}, db_url
    )
