"""`FileCheckpointStore` on a real disk: damaged, foreign or newer files are refused with a reason (E2-E4),
saved data stays data (E5), files are private (E7), one process continues a run (E8), a full disk
keeps the old checkpoint (E9), saves are ordered by their own counter (E10), and a crash at any byte
of a save or an append leaves the old state or the new one, never a torn one (E1)."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from looplet import checkpoints
from looplet.checkpoints import FileCheckpointStore, load_run
from looplet.errors import CheckpointError, CheckpointLocked
from looplet.history import Message
from looplet.state import DefaultState
from looplet.types import Step, ToolCall, ToolResult

RUN = "run_a"
HELPERS = Path(__file__).parent / "crash_helpers"
POSIX = pytest.mark.skipif(os.name != "posix", reason="needs fork, fifos and POSIX modes")


def _state(run_id: str = RUN, **fields: Any) -> DefaultState:
    call = ToolCall(tool="refund", args={"order": 17}, call_id="c1")
    step = Step(number=1, tool_call=call, tool_result=ToolResult(tool="refund", data="ok", call_id="c1"))
    fields = {"llm_calls": 1, "started_at": 1_700_000_000.0, **fields}  # equal records from equal calls
    state = DefaultState(run_id=run_id, task={"goal": "refund"}, steps=[step], **fields)
    state.history.append(Message(role="user", content="refund order 17"))
    return state


def _saved(tmp_path: Path) -> tuple[FileCheckpointStore, DefaultState, Path]:
    store = FileCheckpointStore(tmp_path / "runs")
    state = _state()
    store.save(RUN, state.to_dict())
    return store, state, Path(store.path(RUN))


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Parse the checkpoint, change it, and write it back as plain JSON."""
    data = json.loads(path.read_bytes())
    change(data)
    path.write_text(json.dumps(data) + "\n")


def _forged(path: Path, status: str, record: dict[str, Any]) -> None:
    """A checkpoint with a valid checksum that is still wrong."""
    text = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    path.write_bytes(checkpoints._checkpoint_bytes(RUN, 1, status, text))


def _replace_bytes(old: bytes, new: bytes) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        raw = path.read_bytes()
        assert old in raw
        path.write_bytes(raw.replace(old, new, 1))

    return change


def _other_runs_file(path: Path) -> None:
    other = FileCheckpointStore(path.parent)
    other.save("run_b", _state("run_b").to_dict())
    shutil.copyfile(path.parent / "run_b.json", path)


def _symlink_to_a_valid_checkpoint(path: Path) -> None:
    other = path.parent / "elsewhere.json"
    shutil.copyfile(path, other)
    path.unlink()
    path.symlink_to(other)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


REFUSALS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda p: p.unlink(), r"no saved run 'run_a' in"),
    "empty": (lambda p: p.write_bytes(b""), r"empty"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size * 2 // 3]), r"truncated"),
    "last newline cut": (lambda p: p.write_bytes(p.read_bytes()[:-1]), r"truncated"),
    "invalid UTF-8": (_replace_bytes(b'"goal":"refund"', b'"goal":"ref\xffund"'), r"not valid UTF-8"),
    "invalid JSON": (_replace_bytes(b'"record":{', b'"record":{{'), r"not valid JSON"),
    "a JSON list": (lambda p: p.write_text("[1, 2]\n"), r"wrong shape: not a looplet checkpoint"),
    "a bare record": (
        lambda p: p.write_text(json.dumps(_state().to_dict()) + "\n"),
        r"wrong shape: not a looplet checkpoint",
    ),
    "no format version": (
        lambda p: _rewrite(p, lambda d: d.pop("format_version")),
        r"wrong shape: format_version",
    ),
    "a field missing": (lambda p: _rewrite(p, lambda d: d.pop("seq")), r"wrong shape: the fields \['seq'\]"),
    "an unknown field": (lambda p: _rewrite(p, lambda d: d.update(x=1)), r"wrong shape: the fields \['x'\]"),
    "seq as text": (lambda p: _rewrite(p, lambda d: d.update(seq="1")), r"wrong shape: seq"),
    "unknown status": (lambda p: _rewrite(p, lambda d: d.update(status="odd")), r"wrong shape: status"),
    "record not an object": (
        lambda p: _rewrite(p, lambda d: d.update(record=[1])),
        r"wrong shape: the record",
    ),
    "a changed value": (_replace_bytes(b'"goal":"refund"', b'"goal":"refunD"'), r"checksum mismatch"),
    "a changed seq": (_replace_bytes(b'"seq":1,', b'"seq":7,'), r"checksum mismatch"),
    "re-indented": (lambda p: _rewrite(p, lambda d: None), r"checksum mismatch"),
    "another run's file": (_other_runs_file, r"belongs to run 'run_b', not 'run_a'"),
    "a record of another run inside": (
        lambda p: _forged(p, "running", _state("run_b").to_dict()),
        r"the record inside is run 'run_b'",
    ),
    "a status the record contradicts": (lambda p: _forged(p, "finished", _state().to_dict()), r"disagrees"),
    "a directory": (_directory, r"is a directory"),
    "a symlink": (_symlink_to_a_valid_checkpoint, r"is a symbolic link"),
    "a fifo": (_fifo, r"not a regular file"),
    "a newer format": (
        _replace_bytes(b'"format_version":1,', b'"format_version":2,'),
        r"newer looplet.*upgrade",
    ),
}


@POSIX
@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_damaged_or_wrong_checkpoint_is_refused_with_a_reason(case: str, tmp_path: Path) -> None:
    store, _, path = _saved(tmp_path)
    damage, reason = REFUSALS[case]
    damage(path)
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(CheckpointError) as caught:
        store.load(RUN)
    assert caught.value.path == str(path)
    assert re.search(reason, caught.value.reason), caught.value.reason
    with pytest.raises(CheckpointError):
        load_run(FileCheckpointStore(path.parent), RUN)  # a fresh store, no cache
    assert sorted(p.name for p in path.parent.iterdir()) == before  # nothing repaired, nothing fallen back to


def test_a_record_from_a_newer_looplet_is_refused_by_load_run(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    record = _state().to_dict()
    record["schema_version"] = 2**31
    store.save(RUN, record)
    with pytest.raises(CheckpointError, match="newer looplet") as caught:
        load_run(store, RUN)
    assert caught.value.path == store.path(RUN)


def test_runs_sharing_a_directory_each_load_their_own(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    first, second = _state("run_a"), _state("run_b", stop_reason="done", final_answer={"answer": "42"})
    store.save("run_a", first.to_dict())
    store.save("run_b", second.to_dict())
    store.append("run_a", {"type": "result", "call_id": "x", "result": ToolResult(tool="t").to_dict()})
    assert store.list_runs() == ["run_a", "run_b"]
    assert load_run(store, "run_a") == first
    finished = load_run(store, "run_b")
    assert finished == second and finished.stop_reason == "done"
    assert json.loads(Path(store.path("run_b")).read_bytes())["status"] == "finished"
    assert store.load("run_b")[1] == []


PAYLOADS: list[Any] = [
    {"lc": 1, "type": "constructor", "id": ["langchain", "llms", "openai", "OpenAI"], "kwargs": {"key": "x"}},
    {"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]},
    {"py/object": "os.system", "py/reduce": [{"py/function": "os.system"}, {"py/tuple": ["touch pwned"]}]},
    {"__class__": "subprocess.Popen", "__reduce__": ["os.system", ["touch pwned"]], "__module__": "os"},
    "!!python/object/apply:os.system ['touch pwned']",
    {"tag": "!!python/name:os.system", "$type": "System.IO.File", "@class": "java.lang.Runtime"},
]


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return type(value) is dict and all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return type(value) is list and all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_payloads_that_revive_classes_elsewhere_stay_plain_data(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileCheckpointStore(tmp_path / "runs")
    state = _state()
    state.steps[0].tool_result.data = PAYLOADS
    state.metadata["payloads"] = PAYLOADS
    state.task = PAYLOADS[0]
    store.save(RUN, state.to_dict())
    store.append(RUN, {"type": "result", "call_id": "c9", "result": {"tool": "t", "data": PAYLOADS}})
    record, entries = store.load(RUN)
    assert _plain(record) and _plain(entries)
    back = load_run(store, RUN)
    assert back.steps[0].tool_result.data == PAYLOADS
    assert back.metadata["payloads"] == PAYLOADS and back.task == PAYLOADS[0]
    assert not (tmp_path / "pwned").exists()


@POSIX
def test_checkpoint_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = FileCheckpointStore(tmp_path / "new" / "runs")
        store.save(RUN, _state().to_dict())
        store.append(RUN, {"type": "intent", "call_id": "c2"})
        store.lock(RUN).release()
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "runs").stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "new" / "runs").iterdir()}
    assert modes == {f"{RUN}.json": 0o600, f"{RUN}.journal": 0o600, f"{RUN}.lock": 0o600}


#: Files written by checkpoint format 1, frozen: every later looplet must read them (E3's corpus).
V1_CHECKPOINT = (
    b'{"format":"looplet-checkpoint","format_version":1,"run_id":"run_v1","seq":1,"status":"paused",'
    b'"sha256":"19b09d208d71d82ed07de391c996d2564ff3397ae0d3f61385c9eca5907d4715","record":{"run_id":"run_v1",'
    b'"stop_reason":"approval_pending","task":"refund \\u00e9","n":[1,2.5,null,true,{"k":"\\u65e5"}]}}\n'
)
V1_JOURNAL = (
    b'{"seq":1,"sha256":"d1ebc6eece52d05e46a57ace1dd39acbba805a39316572f21ce8cb8c80e67114","entry":'
    b'{"type":"result","call_id":"c1","result":{"tool":"refund","data":"ok"}}}\n'
)
V1_RECORD = {
    "run_id": "run_v1",
    "stop_reason": "approval_pending",
    "task": "refund é",
    "n": [1, 2.5, None, True, {"k": "日"}],
}
V1_ENTRY = {"type": "result", "call_id": "c1", "result": {"tool": "refund", "data": "ok"}}


def test_a_format_1_checkpoint_still_loads_and_saves_again_unchanged(tmp_path: Path) -> None:
    (tmp_path / "run_v1.json").write_bytes(V1_CHECKPOINT)
    (tmp_path / "run_v1.journal").write_bytes(V1_JOURNAL)
    store = FileCheckpointStore(tmp_path)
    assert store.load("run_v1") == (V1_RECORD, [V1_ENTRY])
    store.save("run_v1", V1_RECORD)
    assert FileCheckpointStore(tmp_path).load("run_v1") == (V1_RECORD, [])
    header = json.loads((tmp_path / "run_v1.json").read_bytes())
    assert (header["format_version"], header["seq"], header["status"]) == (1, 2, "paused")


# -- two processes ------------------------------------------------------------------------------------


def _lock_holder(directory: Path, run_id: str = RUN) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HELPERS / "lock_holder.py"), str(directory), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@POSIX
def test_a_second_process_cannot_lock_a_run_another_holds(tmp_path: Path) -> None:
    holder = _lock_holder(tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        second = _lock_holder(tmp_path)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3
        assert out.startswith("busy") and f"process {holder.pid}" in out
        with pytest.raises(CheckpointLocked, match=f"process {holder.pid}"):
            FileCheckpointStore(tmp_path).lock(RUN)
        FileCheckpointStore(tmp_path).lock("run_other").release()  # other runs are free
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    FileCheckpointStore(tmp_path).lock(RUN).release()


@POSIX
def test_a_killed_holder_leaves_the_run_unlocked(tmp_path: Path) -> None:
    holder = _lock_holder(tmp_path)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    assert (tmp_path / f"{RUN}.lock").exists()  # the file stays; the lock on it died with the process
    FileCheckpointStore(tmp_path).lock(RUN).release()


@POSIX
def test_of_processes_racing_for_a_run_exactly_one_wins(tmp_path: Path) -> None:
    for round_ in range(2):
        racers = [_lock_holder(tmp_path, f"run_race{round_}") for _ in range(5)]
        try:
            lines = [r.stdout.readline() for r in racers if r.stdout is not None]
        finally:
            for racer in racers:
                racer.communicate("", timeout=60)
        assert Counter(line.split()[0] for line in lines) == {"locked": 1, "busy": 4}


def test_without_flock_the_lock_is_an_exclusive_file_naming_its_holder(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(checkpoints, "_fcntl", None)
    store = FileCheckpointStore(tmp_path)
    held = store.lock(RUN)
    assert (tmp_path / f"{RUN}.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(CheckpointLocked, match=f"process {os.getpid()}.*delete"):
        store.lock(RUN)
    held.release()
    assert not (tmp_path / f"{RUN}.lock").exists()
    with store.lock(RUN):
        pass


def test_temp_files_of_a_crashed_save_are_removed_by_the_next_lock_holder(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    (tmp_path / f".{RUN}.0a1b2c.tmp").write_bytes(b'{"format":')
    (tmp_path / ".run_b.0a1b2c.tmp").write_bytes(b"another run's")
    store.lock(RUN).release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run_b.0a1b2c.tmp", f"{RUN}.lock"]


# -- a failing disk -----------------------------------------------------------------------------------


def _no_space(after: int) -> Callable[[int, Any], int]:
    """An `os.write` that writes `after` bytes, then finds the disk full."""
    real = os.write
    left = [after]

    def write(fd: int, data: Any) -> int:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(data)[: left[0]])
        left[0] -= n
        return n

    return write


@pytest.mark.parametrize("after", [0, 100])
def test_a_full_disk_fails_the_save_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: Any, after: int
) -> None:
    store, state, path = _saved(tmp_path)
    store.append(RUN, {"type": "intent", "call_id": "c2", "tool": "t", "args": {}, "args_hash": "h"})
    before = path.read_bytes()
    newer = _state(llm_calls=5).to_dict()
    monkeypatch.setattr(os, "write", _no_space(after))
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is unchanged"):
        store.save(RUN, newer)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{RUN}.journal", f"{RUN}.json"]
    assert load_run(FileCheckpointStore(path.parent), RUN).in_flight["c2"].tool == "t"
    store.save(RUN, newer)  # space again: the next save works
    assert store.load(RUN) == (newer, [])


def test_a_failing_fsync_fails_the_save_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store, state, path = _saved(tmp_path)
    before = path.read_bytes()

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointError, match="previous checkpoint is unchanged"):
        store.save(RUN, _state(llm_calls=5).to_dict())
    monkeypatch.undo()
    assert path.read_bytes() == before and len(list(path.parent.iterdir())) == 1


def test_a_full_disk_fails_an_append_and_the_next_append_cuts_the_torn_line(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store, _, path = _saved(tmp_path)
    first = {"type": "result", "call_id": "c1", "result": {"tool": "t"}}
    store.append(RUN, first)
    monkeypatch.setattr(os, "write", _no_space(30))
    with pytest.raises(CheckpointError, match="could not append.*No space left"):
        store.append(RUN, {"type": "result", "call_id": "c2", "result": {"tool": "t"}})
    monkeypatch.undo()
    assert not Path(store.path(RUN, ".journal")).read_bytes().endswith(b"\n")  # 30 bytes of a line
    assert store.load(RUN) == (_state().to_dict(), [first])
    third = {"type": "result", "call_id": "c3", "result": {"tool": "t"}}
    store.append(RUN, third)
    assert FileCheckpointStore(path.parent).load(RUN)[1] == [first, third]


@POSIX
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_directory_fails_the_save_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    store, _, path = _saved(tmp_path)
    before = path.read_bytes()
    path.parent.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="Permission denied.*previous checkpoint is unchanged"):
            store.save(RUN, _state(llm_calls=5).to_dict())
        assert store.load(RUN)[0] == _state().to_dict()
    finally:
        path.parent.chmod(0o700)
    assert path.read_bytes() == before


# -- ordering and the journal ---------------------------------------------------------------------------


def _seq(store: FileCheckpointStore) -> int:
    seq: int = json.loads(Path(store.path(RUN)).read_bytes())["seq"]
    return seq


def test_saves_are_numbered_by_a_counter_that_survives_other_writers_and_clocks(tmp_path: Path) -> None:
    first, second = FileCheckpointStore(tmp_path), FileCheckpointStore(tmp_path)
    first.save(RUN, _state(turns=1).to_dict())
    second.save(RUN, _state(turns=2).to_dict())
    first.save(RUN, _state(turns=3).to_dict())  # it has not seen the second's save, and must not go back
    assert _seq(first) == 3
    os.utime(first.path(RUN), (0, 0))  # a clock far in the past changes nothing
    entry = {"type": "result", "call_id": "c1", "result": {"tool": "t"}}
    second.append(RUN, entry)
    assert first.load(RUN) == (_state(turns=3).to_dict(), [entry])
    first.save(RUN, _state(turns=4).to_dict())
    assert _seq(first) == 4 and second.load(RUN)[1] == []


def test_journal_lines_from_before_the_last_save_are_ignored(tmp_path: Path) -> None:
    store, _, path = _saved(tmp_path)
    journal = Path(store.path(RUN, ".journal"))
    store.append(RUN, {"type": "result", "call_id": "old", "result": {"tool": "t"}})
    left_over = journal.read_bytes()
    store.save(RUN, _state(turns=2).to_dict())
    journal.write_bytes(left_over)  # a crash between the rename and emptying the journal
    assert store.load(RUN) == (_state(turns=2).to_dict(), [])
    new = {"type": "result", "call_id": "new", "result": {"tool": "t"}}
    store.append(RUN, new)
    assert FileCheckpointStore(path.parent).load(RUN)[1] == [new]


def test_a_torn_last_journal_line_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, _, _ = _saved(tmp_path)
    entries = [{"type": "result", "call_id": f"c{i}", "result": {"tool": "t"}} for i in range(3)]
    for entry in entries:
        store.append(RUN, entry)
    journal = Path(store.path(RUN, ".journal"))
    raw = journal.read_bytes()
    journal.write_bytes(raw[:-20])
    with caplog.at_level(logging.INFO, logger="looplet.checkpoints"):
        assert store.load(RUN)[1] == entries[:2]
    assert "torn last line" in caplog.text


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda raw: raw.replace(b'"call_id":"c0"', b'"call_id":"cX"', 1), r"line 1 is damaged"),
        (lambda raw: raw.replace(b"\n", b"\n\n", 1), r"line 2 is damaged"),
        (lambda raw: b"garbage\n" + raw, r"line 1 is damaged"),
        (lambda raw: raw.replace(b'"seq":1,', b'"seq":9,', 1), r"line 1 is damaged"),
    ],
    ids=["a changed entry", "a blank line", "a line that is not JSON", "a changed seq"],
)
def test_a_damaged_journal_line_before_the_last_is_refused(
    tmp_path: Path, damage: Callable[[bytes], bytes], reason: str
) -> None:
    store, _, _ = _saved(tmp_path)
    for i in range(3):
        store.append(RUN, {"type": "result", "call_id": f"c{i}", "result": {"tool": "t"}})
    journal = Path(store.path(RUN, ".journal"))
    journal.write_bytes(damage(journal.read_bytes()))
    with pytest.raises(CheckpointError, match=reason) as caught:
        store.load(RUN)
    assert caught.value.path == str(journal)


def test_another_runs_journal_is_refused(tmp_path: Path) -> None:
    store, _, _ = _saved(tmp_path)
    store.save("run_b", _state("run_b").to_dict())
    store.append("run_b", {"type": "result", "call_id": "b1", "result": {"tool": "t"}})
    shutil.copyfile(store.path("run_b", ".journal"), store.path(RUN, ".journal"))
    with pytest.raises(CheckpointError, match="belongs to another run"):
        store.load(RUN)


def test_a_journal_ahead_of_its_checkpoint_means_an_older_copy_was_restored(tmp_path: Path) -> None:
    store, _, path = _saved(tmp_path)
    backup = path.read_bytes()
    store.save(RUN, _state(turns=2).to_dict())
    store.append(RUN, {"type": "result", "call_id": "c1", "result": {"tool": "t"}})
    path.write_bytes(backup)
    with pytest.raises(CheckpointError, match="replaced by an older copy"):
        FileCheckpointStore(path.parent).load(RUN)


@POSIX
def test_a_symlinked_journal_is_refused_and_never_written_through(tmp_path: Path) -> None:
    store, _, _ = _saved(tmp_path)
    target = tmp_path / "outside.txt"
    target.write_bytes(b"")
    Path(store.path(RUN, ".journal")).symlink_to(target)
    with pytest.raises(CheckpointError, match="symbolic link"):
        store.load(RUN)
    with pytest.raises(CheckpointError, match="could not append"):
        store.append(RUN, {"type": "intent", "call_id": "c1"})
    store.save(RUN, _state(turns=2).to_dict())
    assert target.read_bytes() == b""


@POSIX
def test_a_pipe_planted_as_the_journal_is_refused_without_hanging(tmp_path: Path) -> None:
    store, _, _ = _saved(tmp_path)
    os.mkfifo(store.path(RUN, ".journal"))
    with pytest.raises(CheckpointError, match="not a regular file"):
        store.load(RUN)
    with pytest.raises(CheckpointError, match="could not append"):
        store.append(RUN, {"type": "intent", "call_id": "c1"})
    store.save(RUN, _state(turns=2).to_dict())  # emptying the old journal does not block either
    assert _seq(store) == 2


def test_a_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception, match="not a directory"):
        FileCheckpointStore(tmp_path / "file")


# -- crashes ----------------------------------------------------------------------------------------------


@POSIX
def test_a_crash_at_any_byte_of_a_save_or_an_append_leaves_the_old_or_the_new_state(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HELPERS / "torn_save.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout)
    saves, appends = report["save"], report["append"]
    assert saves["torn"] == [] and appends["torn"] == []
    # every byte of the new checkpoint, plus just before and just after the rename
    assert saves["points"] == saves["crashed"] == report["save_bytes"] + 3
    assert (
        saves["new"] == 1 and saves["old"] == saves["points"] - 1
    )  # only a completed rename shows the new one
    assert appends["points"] == appends["crashed"] == report["line_bytes"] + 1
    assert appends["new"] == 1 and appends["old"] == appends["points"] - 1
    assert report["save_bytes"] > 500


# -- damage at random -------------------------------------------------------------------------------------

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from([b" ", b"\n", b"\t", b"\r\n"])),
)
MUTATIONS = st.lists(MUTATION, min_size=1, max_size=3)


def _mutate(raw: bytes, mutations: list[tuple[Any, ...]]) -> tuple[bytes, set[str]]:
    """Apply the mutations; also which kinds changed something."""
    kinds = set()
    for kind, position, *rest in mutations:
        if not raw and kind != "insert":
            continue
        at = position % (len(raw) + (1 if kind == "insert" else 0))
        before = raw
        if kind == "flip":
            raw = raw[:at] + bytes([raw[at] ^ (1 << rest[0])]) + raw[at + 1 :]
        elif kind == "truncate":
            raw = raw[:at]
        else:
            raw = raw[:at] + rest[0] + raw[at:]
        if raw != before:
            kinds.add(kind)
    return raw, kinds


def test_a_randomly_damaged_checkpoint_loads_exactly_or_is_refused(tmp_path: Path) -> None:
    store, state, path = _saved(tmp_path)
    entry = {"type": "result", "call_id": "c1", "result": {"tool": "refund", "data": "é"}}
    store.append(RUN, entry)
    pristine, expected = path.read_bytes(), (state.to_dict(), [entry])
    seen: Counter[str] = Counter()
    header = pristine[: pristine.index(b'"record":')]
    gaps = [i + 1 for i, byte in enumerate(header) if byte in b"{,:"]  # between the header's tokens
    harmless = st.tuples(
        st.just("insert"), st.sampled_from(gaps), st.sampled_from([b" ", b"\t", b"\n", b"\r"])
    )

    @given(mutations=st.lists(st.one_of(MUTATION, harmless), min_size=1, max_size=3))
    def damaged_loads(mutations: list[tuple[Any, ...]]) -> None:
        raw, kinds = _mutate(pristine, mutations)
        path.write_bytes(raw)
        try:
            found = FileCheckpointStore(path.parent).load(RUN)
        except CheckpointError as exc:
            outcome = "refused: " + exc.reason.split(":")[0].split("(")[0].strip()
        else:
            assert found == expected, (kinds, raw)
            outcome = "loaded unchanged" + (" (after a change)" if raw != pristine else "")
        event(outcome)
        seen[outcome.split(":")[0]] += 1

    damaged_loads()
    examples = sum(seen.values())
    assert seen["refused"] >= examples // 2
    assert seen["loaded unchanged (after a change)"] >= max(1, examples // 50)  # whitespace between fields


def test_a_randomly_damaged_journal_loads_a_prefix_or_is_refused(tmp_path: Path) -> None:
    store, state, path = _saved(tmp_path)
    entries = [
        {"type": "result", "call_id": f"c{i}", "result": {"tool": "refund", "data": i}} for i in range(3)
    ]
    for entry in entries:
        store.append(RUN, entry)
    journal = Path(store.path(RUN, ".journal"))
    pristine = journal.read_bytes()
    seen: Counter[str] = Counter()

    @given(mutations=MUTATIONS)
    def damaged_loads(mutations: list[tuple[Any, ...]]) -> None:
        raw, kinds = _mutate(pristine, mutations)
        journal.write_bytes(raw)
        try:
            record, found = FileCheckpointStore(path.parent).load(RUN)
        except CheckpointError:
            outcome = "refused"
        else:
            assert record == state.to_dict()
            assert found == entries[: len(found)], (kinds, raw)
            if len(found) < len(entries) - 1:
                assert "truncate" in kinds, (kinds, raw)  # one flip or insertion tears one line at most
            outcome = "all entries" if found == entries else "a torn tail dropped"
        event(outcome)
        seen[outcome] += 1

    damaged_loads()
    examples = sum(seen.values())
    assert seen["refused"] >= examples // 3 and seen["a torn tail dropped"] >= examples // 10
    assert seen["all entries"] >= 1
