"""Durable agent runs on DBOS: a run is a DBOS workflow that continues from its saved record.

A run started with `durable_run` is a DBOS workflow (its id is the run id).
The engine's own checkpoint makes it durable (in ``runs/`` beside a SQLite
database, in tables of a PostgreSQL one: `store_for`): a `CheckpointHook` saves every
step before it is yielded and every tool's intent before the tool starts.
When the process dies, DBOS recovers the workflow (at the next
``DBOS.launch()`` on the same system database, or by another worker); the
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

The agent is named by reference, ``"module:factory"``, so that any process
can build it again: ``factory()`` returns ``(preset, llm)``, an `AgentPreset`
and its model. ``dbos`` is imported only when a durable run is used
(``pip install "looplet[dbos]"``).
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checkpoints import FileCheckpointStore, RunStore, load_run
from .errors import ConfigError, DecisionError
from .presets import AgentPreset
from .state import DefaultState

__all__ = [
    "durable_run",
    "start_durable_run",
    "enqueue_run",
    "wait_for_run",
    "serve_queue",
    "queue_for",
    "start_dbos",
    "stop_dbos",
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
INSTALL_HINT = 'durable runs need DBOS: pip install "looplet[dbos]"'

#: the store location meaning "the run records are in the database DBOS runs on here"
IN_DATABASE = "looplet:in-database"

_workflow: Callable[..., Any] | None = None
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


def build_agent(reference: str) -> tuple[AgentPreset, Any]:
    """Build the agent named ``"module:factory"``: ``factory()`` returns ``(preset, llm)``."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"name the agent as 'module:factory', got {reference!r}")
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(factory):
        raise ConfigError(f"{reference}: {module_name} has no function {attribute}")
    built = factory()
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], AgentPreset)):
        raise ConfigError(
            f"{reference}: factory() must return (AgentPreset, llm), got {type(built).__name__}"
        )
    return built[0], built[1]


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
    }


def _session(agent: str, task: Any, run_id: str, store: RunStore, max_steps: int | None) -> DefaultState:
    """One session of the run: start it, or continue it from its saved record."""
    preset, llm = build_agent(agent)
    if run_id in store.list_runs():
        state = load_run(store, run_id)
        if state.stop_reason == "done":  # finished before the crash; DBOS had not recorded it yet
            return state
        task = None
    else:
        state = DefaultState(task=task, run_id=run_id)
    overrides: dict[str, Any] = {"state": state, "store": store}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    preset.loop(llm, task=task, **overrides).run()
    return state


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
    agent: str, task: Any, run_id: str, store_dir: str, max_steps: int | None
) -> dict[str, Any]:
    """The workflow's body: run sessions until the run stops for any reason but a pending approval."""
    dbos = _dbos().DBOS
    store = _open_store(store_dir)
    state = _session(agent, task, run_id, store, max_steps)
    while state.stop_reason == "approval_pending":
        dbos.set_event(STATUS_KEY, _outcome(state))
        message = dbos.recv(DECISION_TOPIC, timeout_seconds=WAIT_S)
        decided = None if message is None else _apply(store, run_id, message)
        if decided is None:
            state = load_run(store, run_id)
            continue
        preset, llm = build_agent(agent)
        overrides: dict[str, Any] = {"state": decided, "store": store}
        if max_steps is not None:
            overrides["max_steps"] = max_steps
        preset.loop(llm, **overrides).run()
        state = decided
    outcome = _outcome(state)
    dbos.set_event(STATUS_KEY, outcome)
    return outcome


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
    url = db_url or os.environ.get("DBOS_SYSTEM_DATABASE_URL") or default_db_url()
    if _launched_url is not None:
        if url != _launched_url:
            raise ConfigError(
                f"DBOS already runs on {_launched_url} in this process; one database per process"
            )
        return url
    dbos = _dbos()
    _register()
    config = {
        "name": "looplet",
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


def start_durable_run(
    agent: str,
    task: Any,
    *,
    db_url: str | None = None,
    run_id: str | None = None,
    max_steps: int | None = None,
    store_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Start (or join, for a `run_id` already started) a durable run; returns the DBOS workflow handle."""
    if not isinstance(agent, str):
        raise ConfigError(
            "a durable run names its agent as 'module:factory' (factory() -> (preset, llm)), "
            f"so that another process can build it again; got {type(agent).__name__}"
        )
    url = start_dbos(db_url)
    directory = _store_location(url, store_dir)
    run_id = run_id or f"run_{secrets.token_hex(8)}"
    dbos = _dbos()
    with dbos.SetWorkflowID(run_id):
        return dbos.DBOS.start_workflow(_register(), agent, task, run_id, directory, max_steps)


def durable_run(
    agent: str,
    task: Any,
    *,
    db_url: str | None = None,
    run_id: str | None = None,
    max_steps: int | None = None,
    store_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run `agent` on `task` as a DBOS workflow and wait for it to end; returns its outcome.

    The outcome is JSON data: ``run_id``, ``stop_reason``, ``detail``,
    ``final_answer``, ``steps`` (each ``Step.to_dict()``), ``llm_calls``,
    ``usage``, ``pending``. A run that pauses for approval does not end: it
    waits (durably) for `approve` / `reject`, so this call waits too; use
    `start_durable_run` to get a handle instead.
    """
    handle = start_durable_run(
        agent, task, db_url=db_url, run_id=run_id, max_steps=max_steps, store_dir=store_dir
    )
    result: dict[str, Any] = handle.get_result()
    return result


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
) -> str:
    """Put a durable run on the agent's queue for a worker (``looplet worker AGENT``); returns its id.

    Enqueuing the same `run_id` again returns the run already there. Wait for
    it with `wait_for_run`.
    """
    url = db_url or os.environ.get("DBOS_SYSTEM_DATABASE_URL") or default_db_url()
    directory = _store_location(url, store_dir)
    run_id = run_id or f"run_{secrets.token_hex(8)}"
    options = {
        "queue_name": queue or queue_for(agent),
        "workflow_name": WORKFLOW_NAME,
        "workflow_id": run_id,
        "app_version": _app_version(),
    }
    client = _client(url)
    try:
        client.enqueue(options, agent, task, run_id, directory, max_steps)
    except Exception as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise ConfigError(
                f"{url} is not set up for DBOS yet: start a worker on it first (python -m looplet worker)"
            ) from None
        raise
    finally:
        client.destroy()
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
    return f"{QUEUE_NAME}:{agent}"


def serve_queue(
    agent: str,
    db_url: str | None = None,
    *,
    concurrency: int = 4,
    queue: str | None = None,
    poll_s: float = 0.1,
) -> str:
    """Launch DBOS and take `agent`'s runs from its queue, at most `concurrency` at a time here.

    The agent is built once first, so a worker that cannot build it refuses
    to start. Returns at once (DBOS works in background threads); launching
    also recovers the runs a dead process of this database left unfinished.
    Returns the database URL.
    """
    build_agent(agent)
    url = start_dbos(db_url)
    name = queue or queue_for(agent)
    _dbos().DBOS.register_queue(name, worker_concurrency=concurrency, polling_interval_sec=poll_s)
    return url


# -- deciding from any process --------------------------------------------------------------------


def _client(db_url: str | None) -> Any:
    url = db_url or os.environ.get("DBOS_SYSTEM_DATABASE_URL") or default_db_url()
    return _dbos().DBOSClient(system_database_url=url)


def run_status(run_id: str, *, db_url: str | None = None, timeout_s: float = 0.0) -> dict[str, Any] | None:
    """The run's last published status (its outcome, with the calls waiting in ``pending``), or None yet."""
    client = _client(db_url)
    try:
        status: dict[str, Any] | None = client.get_event(run_id, STATUS_KEY, timeout_s)
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
