"""Try to take a run's lock in a process of its own (for the two-process lock tests).

Usage: ``python lock_holder.py DIRECTORY RUN_ID``. Prints ``locked`` and holds the
lock until its stdin closes (or it is killed), or prints ``busy <reason>`` and exits 3.
"""

from __future__ import annotations

import sys

from looplet.checkpoints import FileCheckpointStore
from looplet.errors import CheckpointLocked


def main() -> int:
    directory, run_id = sys.argv[1], sys.argv[2]
    store = FileCheckpointStore(directory)
    try:
        lock = store.lock(run_id)
    except CheckpointLocked as exc:
        print("busy", exc.reason, flush=True)
        return 3
    print("locked", flush=True)
    sys.stdin.read()  # hold it until the test lets go
    lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
