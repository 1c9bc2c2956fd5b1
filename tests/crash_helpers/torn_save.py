"""Crash a checkpoint save (and a journal append) at every byte, then see what a fresh load finds (E1).

Usage: ``python torn_save.py WORKDIR``; prints one JSON object with, per series,
how many crash points were tried, how many children really crashed there, and
which loads found the old state, the new one, or anything else (``torn``).

Each crash is a forked child that ends with ``os._exit`` at its point: no
``finally``, no flush, no cleanup, as after SIGKILL. A process crash is not a
power loss, so this checks the write order, not the fsyncs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

from looplet.checkpoints import FileCheckpointStore
from looplet.errors import CheckpointError
from looplet.state import DefaultState
from looplet.types import Intent, ToolResult, args_hash

RUN = "run_crash"
CRASHED, FINISHED, FAILED = 41, 42, 43
RESULT = ToolResult(tool="refund", data={"refunded": 17, "note": "é😀"}, call_id="c1").to_dict()
ENTRIES = [{"type": "result", "call_id": "c1", "result": RESULT}]
EXTRA = {"type": "result", "call_id": "c2", "result": ToolResult(tool="refund", call_id="c2").to_dict()}


def records() -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint on disk before the save, and the one the save writes."""
    state = DefaultState(run_id=RUN, task={"goal": "refund order 17", "note": "日本"})
    args = {"order": 17}
    state.in_flight["c1"] = Intent("c1", "refund", args, args_hash(args))
    state.in_flight["c2"] = Intent("c2", "refund", {"order": 18}, args_hash({"order": 18}))
    old = state.to_dict()
    state.llm_calls, state.turns, state.stop_reason = 1, 1, "approval_pending"
    return old, state.to_dict()


def crash_after_bytes(k: int) -> None:
    """Let the next writes through until `k` bytes are written, then die."""
    real_write = os.write
    budget = [k]

    def write(fd: int, data: Any) -> int:
        data = bytes(data)
        if len(data) >= budget[0]:
            if budget[0]:
                real_write(fd, data[: budget[0]])
            os._exit(CRASHED)
        budget[0] -= len(data)
        return real_write(fd, data)

    os.write = write  # type: ignore[assignment]


def crash_around_rename(after: bool) -> None:
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if after:
            real_replace(src, dst)
        os._exit(CRASHED)

    os.replace = replace  # type: ignore[assignment]


def in_child(arm: Callable[[], None], act: Callable[[FileCheckpointStore], None], directory: str) -> int:
    """Run `act` in a forked child armed to crash; the child's exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            arm()
            act(FileCheckpointStore(directory))
            os._exit(FINISHED)
        except BaseException:
            os._exit(FAILED)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def outcome(directory: str, old: Any, new: Any) -> str:
    try:
        found = FileCheckpointStore(directory).load(RUN)
    except CheckpointError as exc:
        return f"torn: {exc.reason}"
    if found == old:
        return "old"
    if found == new:
        return "new"
    return "torn: another state"


def series(
    base: str,
    work: str,
    points: list[tuple[str, Callable[[], None]]],
    act: Callable[[FileCheckpointStore], None],
    old: Any,
    new: Any,
    after: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {"points": 0, "crashed": 0, "old": 0, "new": 0, "torn": []}
    files = {name: open(os.path.join(base, name), "rb").read() for name in os.listdir(base)}
    for name, arm in points:
        restore(work, files)
        code = in_child(arm, act, work)
        report["points"] += 1
        report["crashed"] += code == CRASHED
        seen = outcome(work, old, new)
        if seen.startswith("torn") or code == FAILED:
            report["torn"].append(f"{name}: {seen} (exit {code})")
        elif after is not None and after(work) != "ok":
            report["torn"].append(f"{name}: {seen}, then {after(work)}")
        else:
            report[seen] += 1
    return report


def restore(directory: str, files: dict[str, bytes]) -> None:
    """Put back exactly the base directory's files, and nothing else (such as a crashed save's temp file)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for name in set(os.listdir(directory)) - set(files):
        os.remove(os.path.join(directory, name))
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(data)


def append_after_a_crash(directory: str) -> str:
    """After a crash, the next append must work and come back last (a torn tail is cut off first)."""
    store = FileCheckpointStore(directory)
    _, before = store.load(RUN)
    try:
        store.append(RUN, EXTRA)
        _, after = store.load(RUN)
    except CheckpointError as exc:
        return f"the next append failed: {exc.reason}"
    return "ok" if after == before + [EXTRA] else f"the next append gave {len(after)} entries"


def bytes_written(base: str, scratch: str, act: Callable[[FileCheckpointStore], None], name: str) -> int:
    """How many bytes `act` writes to the file `name` (the save's temp file is the whole new file)."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(base, scratch)
    path = os.path.join(scratch, name)
    before = os.path.getsize(path) if name.endswith(".journal") else 0
    act(FileCheckpointStore(scratch))
    return os.path.getsize(path) - before


def main() -> int:
    work_root = sys.argv[1]
    base, work = os.path.join(work_root, "base"), os.path.join(work_root, "work")
    old, new = records()
    store = FileCheckpointStore(base)
    store.save(RUN, old)
    for entry in ENTRIES:
        store.append(RUN, entry)

    def save(s: FileCheckpointStore) -> None:
        s.save(RUN, new)

    def append(s: FileCheckpointStore) -> None:
        s.append(RUN, EXTRA)

    save_size = bytes_written(base, work, save, RUN + ".json")
    save_points = [(f"write {k}", lambda k=k: crash_after_bytes(k)) for k in range(save_size + 1)]
    save_points += [
        ("before the rename", lambda: crash_around_rename(after=False)),
        ("after the rename", lambda: crash_around_rename(after=True)),
    ]
    saves = series(base, work, save_points, save, (old, ENTRIES), (new, []))
    line_size = bytes_written(base, work, append, RUN + ".journal")
    append_points = [(f"write {k}", lambda k=k: crash_after_bytes(k)) for k in range(line_size + 1)]
    appends = series(
        base,
        work,
        append_points,
        append,
        (old, ENTRIES),
        (old, ENTRIES + [EXTRA]),
        after=append_after_a_crash,
    )
    print(json.dumps({"save_bytes": save_size, "line_bytes": line_size, "save": saves, "append": appends}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
