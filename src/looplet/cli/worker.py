"""``looplet worker AGENT --db URL``: run an agent's durable runs from its DBOS queue until stopped.

    python -m looplet worker mypkg.agents:triage --db sqlite:///runs.sqlite --concurrency 8

AGENT names the agent as ``looplet batch`` does: a cartridge folder, or
``module:factory`` returning an AgentPreset or ``(AgentPreset, model)`` (the
working directory is importable). Runs put on the agent's queue
(``looplet batch --engine dbos``, `looplet.dbos_runs.enqueue_run`) are taken
and run. The queue's limits live in the database, shared by its workers:
``--concurrency`` (runs at once in each worker; one value for the whole
queue, the last one set) and ``--global-concurrency`` (runs at once across
all workers); a limit not given keeps its stored value. A run that is not
scripted gets its model from this worker's environment (``OPENAI_API_KEY`` /
``OPENAI_BASE_URL``, ``OPENAI_MODEL``). Starting a worker also recovers
the runs its executor left unfinished when it died: they continue from their
saved records. DBOS recovers by executor id, so give each worker its own,
stable across restarts (``--executor-id``; by default the host name, so two
workers on one machine need an id each) and restart a killed worker under
the same id. Workers take and recover only runs of their own looplet
release: finish or drain runs before upgrading. Without ``--db``:
``$DBOS_SYSTEM_DATABASE_URL``, else the SQLite file ``.looplet/dbos.sqlite``
here. The ready line masks a password in the URL.

The worker prints one line when it is ready, then runs until SIGTERM or
Ctrl-C (exit 0). Exit 2: the agent cannot be built, or DBOS is not installed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from typing import Any

from ..redaction import redact_text
from .terminal import one_line, refuse

__all__ = ["add_parser", "run"]

VERB = "worker"


def add_parser(sub: Any) -> None:
    from ..examples.arguments import seconds_or_zero, whole_count

    parser = sub.add_parser(
        VERB,
        help="run an agent's durable runs from its DBOS queue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Optional to argparse so that a mistake in the flags is reported first; run() asks for it.
    parser.add_argument("agent", nargs="?", metavar="AGENT", help="a cartridge folder or module:factory")
    parser.add_argument("--db", default=None, metavar="URL", help="the DBOS system database")
    parser.add_argument(
        "--concurrency", type=whole_count, default=None, metavar="N", help="runs at once in each worker"
    )
    parser.add_argument(
        "--global-concurrency",
        type=whole_count,
        default=None,
        metavar="N",
        help="runs at once across all the queue's workers",
    )
    parser.add_argument(
        "--executor-id",
        default=None,
        metavar="ID",
        help="this worker's DBOS executor id, stable across its restarts (e.g. the host name): a "
        "restarted worker recovers the runs it had when it died",
    )
    parser.add_argument(
        "--grace",
        type=seconds_or_zero,
        default=30.0,
        metavar="S",
        help="on SIGTERM, how long runs working here may take to finish before the worker exits "
        "(default 30; an unfinished run is recovered by the next worker with this executor id)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.agent:
        return refuse(
            VERB, "name the agent: looplet worker AGENT --db URL (a cartridge folder or module:factory)"
        )
    if "" not in sys.path:
        sys.path.insert(0, "")  # the agent's module may live in the working directory
    if args.executor_id is not None:
        if not args.executor_id.strip():
            return refuse(VERB, "--executor-id must not be empty")
        os.environ["DBOS__VMID"] = args.executor_id  # read by DBOS when it launches
    elif not os.environ.get("DBOS__VMID"):
        # not DBOS's shared default "local": a worker starting under it would take over the runs of
        # every other "local" process, live ones included
        os.environ["DBOS__VMID"] = socket.gethostname() or "looplet-worker"
    stop = threading.Event()
    try:
        from ..dbos_runs import queue_for, serve_queue

        url = serve_queue(
            args.agent, args.db, concurrency=args.concurrency, global_concurrency=args.global_concurrency
        )
    except Exception as exc:  # the agent's own code can raise anything: one line, never a traceback
        return refuse(VERB, one_line(exc))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    where = redact_text(str(url))  # a database URL may hold a password
    print(f"looplet worker: serving {queue_for(args.agent)} on {where}", flush=True)
    stop.wait()
    return end_dbos_process(0, args.grace)


def end_dbos_process(code: int, grace_s: float) -> int:
    """Stop DBOS, letting working runs finish for up to `grace_s`; return `code`, or end the process
    with it at once when runs waiting for a decision hold threads here (they are recovered later)."""
    from ..dbos_runs import shutdown

    if shutdown(grace_s):
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
