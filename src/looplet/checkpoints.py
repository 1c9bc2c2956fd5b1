"""Where a run's record is kept between sessions: the `RunStore` protocol, two stores, `CheckpointHook`.

A store holds, per run, the last saved record (``state.to_dict()``) and a
journal of the entries appended since: deltas (what each step added, see
`looplet.state.record_delta`, which carry the intents) and tool results. `load_run`
rebuilds the state from both. Stores deal only in JSON data, so a
Redis or S3 store needs no looplet types; ``tests/store_conformance.py`` is the
suite such a store should pass.

Nothing here resumes a run by itself: you load it (`load_run`) and pass the
state back to the loop.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload, runtime_checkable

from .errors import CheckpointError, CheckpointLocked, ConfigError
from .state import DefaultState, apply_journal, record_delta, record_fields
from .tools.results import to_jsonable
from .types import ToolResult

if TYPE_CHECKING:
    from .history import History
    from .tools.registry import PreparedCall
    from .types import Step

__all__ = [
    "RunStore",
    "RunLock",
    "MemoryRunStore",
    "FileCheckpointStore",
    "CheckpointHook",
    "load_run",
    "run_status",
]

logger = logging.getLogger(__name__)

_fcntl: ModuleType | None
try:
    _fcntl = importlib.import_module("fcntl")
except ImportError:  # Windows: the lock falls back to an exclusively created file
    _fcntl = None

S = TypeVar("S", bound=DefaultState)

_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a pipe planted under a run's name must not hang us

_FORMAT = "looplet-checkpoint"
_FORMAT_VERSION = 1
_HEADER_KEYS = ("format", "format_version", "run_id", "seq", "status", "sha256")
_RECORD_MARK = b',"record":'
_ENTRY_MARK = b',"entry":'
_STATUSES = ("running", "paused", "finished", "stopped")


# -- the protocol ---------------------------------------------------------------------------


@runtime_checkable
class RunLock(Protocol):
    """A held run lock: `release()` (idempotent) or leave the ``with`` block."""

    def release(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class RunStore(Protocol):
    """Keeps runs as JSON data: a record per run and a journal of entries appended after it.

    Every failure is a `CheckpointError` (a lock held elsewhere, `CheckpointLocked`).
    """

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        """Durably replace the run's record; the journal written before it is subsumed."""
        ...

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        """Durably append one journal entry after the last save (the run must have been saved)."""
        ...

    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The last saved record and the entries appended after it, in order; an unknown run raises."""
        ...

    def list_runs(self) -> list[str]:
        """The run ids held."""
        ...

    def lock(self, run_id: str) -> RunLock:
        """Take the run's lock at once or raise `CheckpointLocked`: one process continues a run."""
        ...


def run_status(record: dict[str, Any]) -> str:
    """What a record's stop reason means for continuing it: running, paused, finished or stopped."""
    reason = record.get("stop_reason")
    if reason is None:
        return "running"
    if reason == "approval_pending":
        return "paused"
    if reason == "done":
        return "finished"
    return "stopped"


def _check_run_id(run_id: object) -> str:
    if isinstance(run_id, str) and _RUN_ID.fullmatch(run_id):
        return run_id
    raise ConfigError(f"run id {run_id!r:.80} cannot name a saved run: use 1-128 letters, digits, '_' or '-'")


def _json_text(where: str, value: Any, what: str) -> str:
    """`value` as compact strict JSON, or a CheckpointError saying it is not JSON data."""
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(
            where,
            f"the {what} is not JSON data ({type(exc).__name__}: {exc}); it may hold only dicts, lists, "
            "strings, finite numbers, booleans and None (state.to_dict() gives such data)",
        ) from None


def _check_record(where: str, run_id: str, record: object) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise CheckpointError(where, f"a record is a dict, got {type(record).__name__}")
    named = record.get("run_id", run_id)
    if named != run_id:
        raise CheckpointError(where, f"the record is run {named!r}'s; it cannot be saved as run {run_id!r}")
    return record


class _HeldLock:
    """A lock that runs its release function once."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._mutex = threading.Lock()

    def release(self) -> None:
        with self._mutex:
            release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        try:
            self.release()  # a lock nobody holds a reference to cannot be released later
        except Exception:
            pass

    def __enter__(self) -> _HeldLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# -- in memory --------------------------------------------------------------------------------


class MemoryRunStore:
    """Runs kept in this process, as JSON text: what you load is a copy, as from a file.

    Keeping text (not objects) means a record that is not JSON data fails at
    `save`, exactly as with `FileCheckpointStore`, and no caller can change a
    saved run through an object it still holds.
    """

    def __init__(self) -> None:
        self._records: dict[str, str] = {}
        self._journals: dict[str, list[str]] = {}
        self._locked: set[str] = set()
        self._mutex = threading.Lock()

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        run_id = _check_run_id(run_id)
        where = f"memory:{run_id}"
        text = _json_text(where, _check_record(where, run_id, record), "record")
        with self._mutex:
            self._records[run_id] = text
            self._journals[run_id] = []

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        run_id = _check_run_id(run_id)
        where = f"memory:{run_id}"
        if not isinstance(entry, dict):
            raise CheckpointError(where, f"a journal entry is a dict, got {type(entry).__name__}")
        text = _json_text(where, entry, "journal entry")
        with self._mutex:
            if run_id not in self._records:
                raise CheckpointError(where, f"no saved run {run_id!r}: save its record before appending")
            self._journals[run_id].append(text)

    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        run_id = _check_run_id(run_id)
        with self._mutex:
            text = self._records.get(run_id)
            journal = list(self._journals.get(run_id, ()))
        if text is None:
            raise CheckpointError(f"memory:{run_id}", f"no saved run {run_id!r} in this store")
        return json.loads(text), [json.loads(line) for line in journal]

    def list_runs(self) -> list[str]:
        with self._mutex:
            return sorted(self._records)

    def lock(self, run_id: str) -> RunLock:
        run_id = _check_run_id(run_id)
        with self._mutex:
            if run_id in self._locked:
                raise CheckpointLocked(
                    f"memory:{run_id}", f"run {run_id!r} is already locked in this process"
                )
            self._locked.add(run_id)

        def release() -> None:
            with self._mutex:
                self._locked.discard(run_id)

        return _HeldLock(release)


# -- files ------------------------------------------------------------------------------------


class FileCheckpointStore:
    """Runs kept as files in one directory: ``<run_id>.json``, ``<run_id>.journal``, ``<run_id>.lock``.

    A save writes a temporary file, syncs it, renames it over the old one and
    syncs the directory, so a crash leaves the old or the new checkpoint,
    never a torn one. The checkpoint is one line of JSON: a header (format,
    ``run_id``, a save counter ``seq``, a ``status`` and a sha256 of the
    header and the record's bytes) and the record. Journal lines carry the
    ``seq`` of the save they follow, so lines older than the checkpoint are
    ignored. Anything damaged is refused with `CheckpointError`; nothing
    falls back to an older file. The directory is created 0700 (an existing
    one is left as it is), files are 0600: checkpoints hold the whole
    conversation.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        _make_private_directory(self.directory)
        self._mutex = threading.RLock()
        #: run id -> (seq of the last save seen, identity of that file)
        self._seen: dict[str, tuple[int, tuple[int, ...]]] = {}

    def __repr__(self) -> str:
        return f"FileCheckpointStore({self.directory!r})"

    def path(self, run_id: str, suffix: str = ".json") -> str:
        """The file of `run_id` with `suffix` (``.json``, ``.journal`` or ``.lock``)."""
        return os.path.join(self.directory, _check_run_id(run_id) + suffix)

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        path = self.path(run_id)
        record = _check_record(path, run_id, record)
        record_text = _json_text(path, record, "record")
        with self._mutex:
            seq = self._last_seq(run_id) + 1
            data = _checkpoint_bytes(run_id, seq, run_status(record), record_text)
            identity = _replace_file(self.directory, path, data)
            self._seen[run_id] = (seq, identity)
            _empty_quietly(self.path(run_id, ".journal"))

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        path = self.path(run_id, ".journal")
        if not isinstance(entry, dict):
            raise CheckpointError(path, f"a journal entry is a dict, got {type(entry).__name__}")
        entry_text = _json_text(path, entry, "journal entry")
        with self._mutex:
            seq = self._saved_seq(run_id)
            _append_line(self.directory, path, _journal_line(run_id, seq, entry_text))

    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with self._mutex:
            header, record = self._read_checkpoint(run_id)
            return record, self._read_journal(run_id, header["seq"])

    def list_runs(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            raise CheckpointError(self.directory, f"cannot be listed ({exc.strerror or exc})") from None
        return sorted(n[:-5] for n in names if n.endswith(".json") and _RUN_ID.fullmatch(n[:-5]))

    def lock(self, run_id: str) -> RunLock:
        path = self.path(run_id, ".lock")
        lock = _take_lock(path, run_id)
        self._remove_stale_temporaries(run_id)
        return lock

    # -- reading ------------------------------------------------------------------------------

    def _read_checkpoint(self, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and the record of `run_id`'s checkpoint, checked; remembers its seq."""
        path = self.path(run_id)
        found = _read_file(path)
        if found is None:
            raise CheckpointError(path, f"no saved run {run_id!r} in {self.directory}")
        raw, identity = found
        header, record = _parse_checkpoint(path, raw)
        if header["run_id"] != run_id:
            raise CheckpointError(
                path,
                f"this checkpoint belongs to run {header['run_id']!r}, not {run_id!r} "
                "(copied or renamed from another run?); refusing to continue another run",
            )
        self._seen[run_id] = (header["seq"], identity)
        return header, record

    def _read_journal(self, run_id: str, seq: int) -> list[dict[str, Any]]:
        path = self.path(run_id, ".journal")
        found = _read_file(path)
        if found is None:
            return []  # nothing was appended
        lines = found[0].split(b"\n")
        if lines[-1]:
            logger.info("%s: ignored a torn last line (a crash while it was appended)", path)
        entries = []
        for number, line in enumerate(lines[:-1], 1):
            line_seq, entry = _parse_journal_line(path, number, run_id, line)
            if line_seq > seq:
                raise CheckpointError(
                    path,
                    f"line {number} follows save {line_seq}, but the checkpoint is save {seq}: "
                    "the checkpoint was replaced by an older copy; refusing to lose what came after",
                )
            if line_seq == seq:
                entries.append(entry)
        return entries

    def _saved_seq(self, run_id: str) -> int:
        """The seq of the checkpoint on disk (cached while the file is the one this store last saw)."""
        seen = self._seen.get(run_id)
        if seen is not None and seen[1] == _identity_of(self.path(run_id)):
            return seen[0]
        header, _ = self._read_checkpoint(run_id)
        seq: int = header["seq"]
        return seq

    def _last_seq(self, run_id: str) -> int:
        """The highest seq used so far for `run_id`, also by a damaged checkpoint's journal."""
        seen = self._seen.get(run_id)
        if seen is not None and seen[1] == _identity_of(self.path(run_id)):
            return seen[0]
        try:
            header, _ = self._read_checkpoint(run_id)
            seq: int = header["seq"]
        except CheckpointError:
            seq = 0  # none, or damaged: saving over it is the caller's decision
        return max(seq, _journal_max_seq(self.path(run_id, ".journal")))

    def _remove_stale_temporaries(self, run_id: str) -> None:
        """Delete temp files left by a crashed save of `run_id` (only the lock holder saves)."""
        prefix = f".{run_id}."
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                _remove_quietly(os.path.join(self.directory, name))


def _make_private_directory(directory: str) -> None:
    try:
        os.makedirs(directory, mode=0o700)
    except FileExistsError:
        if not os.path.isdir(directory):
            raise ConfigError(f"{directory} exists and is not a directory") from None
        return
    except OSError as exc:
        raise CheckpointError(directory, f"cannot be created ({exc.strerror or exc})") from None
    os.chmod(directory, 0o700)  # the umask may have narrowed it, never widened it: make it exact


def _checkpoint_bytes(run_id: str, seq: int, status: str, record_text: str) -> bytes:
    """One line: the header, then the record's JSON (its bytes are what the digest covers)."""
    header: dict[str, Any] = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "run_id": run_id,
        "seq": seq,
        "status": status,
    }
    record = record_text.encode("ascii")
    header["sha256"] = _digest(header, record)
    head = json.dumps(header, separators=(",", ":"))
    return head[:-1].encode("ascii") + _RECORD_MARK + record + b"}\n"


def _digest(header: dict[str, Any], body: bytes) -> str:
    fields = {k: v for k, v in header.items() if k != "sha256"}
    head = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(head.encode("ascii") + b"\n" + body).hexdigest()


def _parse_checkpoint(path: str, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a checkpoint file's bytes; its header and record, or a CheckpointError saying what is wrong."""
    data = _parse_json(path, raw)
    header = _check_header(path, data)
    if not raw.endswith(b"\n"):
        raise CheckpointError(path, "truncated: it lacks the newline looplet writes last")
    start = raw.find(_RECORD_MARK)
    body = raw[start + len(_RECORD_MARK) : -2] if start > 0 and raw.endswith(b"}\n") else None
    if body is None or header["sha256"] != _digest(header, body):
        raise CheckpointError(
            path,
            "checksum mismatch: the file changed after looplet wrote it (a damaged disk or an edit); "
            "refusing to continue from it",
        )
    record = data["record"]
    if record.get("run_id", header["run_id"]) != header["run_id"]:
        raise CheckpointError(
            path, f"the record inside is run {record.get('run_id')!r}'s, not {header['run_id']!r}'s"
        )
    if run_status(record) != header["status"]:
        raise CheckpointError(
            path, f"the status {header['status']!r} disagrees with the record's stop reason"
        )
    return header, record


def _parse_json(path: str, raw: bytes) -> Any:
    if not raw:
        raise CheckpointError(
            path, "the file is empty: looplet never leaves one empty, so it was emptied or replaced"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            path, f"not valid UTF-8 (a bad byte at offset {exc.start}): the file is damaged"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise CheckpointError(
            path, "nested too deeply to read: this is not a checkpoint looplet wrote"
        ) from None
    except ValueError as exc:
        if not raw.endswith(b"}\n"):
            raise CheckpointError(
                path, f"truncated: the file stops at byte {len(raw)} before the checkpoint ends ({exc})"
            ) from None
        raise CheckpointError(path, f"not valid JSON ({exc}): the file is damaged") from None


def _check_header(path: str, data: Any) -> dict[str, Any]:
    """The header fields of a parsed checkpoint, after checking its format, version and shape."""
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise CheckpointError(path, f'wrong shape: not a looplet checkpoint (no "format": "{_FORMAT}")')
    version = data.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(path, f"wrong shape: format_version is {version!r}, not a positive integer")
    if version > _FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"written by a newer looplet (checkpoint format {version}; this one reads up to "
            f"{_FORMAT_VERSION}): upgrade looplet to continue this run",
        )
    keys = set(_HEADER_KEYS) | {"record"}
    if set(data) != keys:
        odd = sorted(set(data) ^ keys)
        raise CheckpointError(path, f"wrong shape: the fields {odd} are missing or unknown")
    header = {k: data[k] for k in _HEADER_KEYS}
    problem = _header_problem(header, data["record"])
    if problem:
        raise CheckpointError(path, f"wrong shape: {problem}")
    return header


def _header_problem(header: dict[str, Any], record: Any) -> str | None:
    if not isinstance(header["run_id"], str) or not _RUN_ID.fullmatch(header["run_id"]):
        return f"run_id {header['run_id']!r:.80} is not a run id"
    if type(header["seq"]) is not int or header["seq"] < 1:
        return f"seq {header['seq']!r:.40} is not a positive integer"
    if header["status"] not in _STATUSES:
        return f"status {header['status']!r:.40} is not one of {', '.join(_STATUSES)}"
    if not isinstance(header["sha256"], str):
        return "sha256 is not a string"
    if not isinstance(record, dict):
        return f"the record is {type(record).__name__}, not an object"
    return None


def _journal_line(run_id: str, seq: int, entry_text: str) -> bytes:
    entry = entry_text.encode("ascii")
    digest = hashlib.sha256(f"{run_id}:{seq}\n".encode("ascii") + entry).hexdigest()
    return f'{{"seq":{seq},"sha256":"{digest}"'.encode("ascii") + _ENTRY_MARK + entry + b"}\n"


def _parse_journal_line(path: str, number: int, run_id: str, line: bytes) -> tuple[int, dict[str, Any]]:
    """A complete journal line's seq and entry; damage here is never a crash's doing, so it is refused."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        data = exc
    start = line.find(_ENTRY_MARK)
    ok = (
        isinstance(data, dict)
        and set(data) == {"seq", "sha256", "entry"}
        and type(data["seq"]) is int
        and isinstance(data["entry"], dict)
        and start > 0
        and line.endswith(b"}")
    )
    if ok:
        body = line[start + len(_ENTRY_MARK) : -1]
        expected = hashlib.sha256(f"{run_id}:{data['seq']}\n".encode("ascii") + body).hexdigest()
        ok = data["sha256"] == expected
    if not ok:
        raise CheckpointError(
            path,
            f"line {number} is damaged or belongs to another run (only a torn last line is expected "
            "after a crash); refusing to guess which calls completed",
        )
    entry: dict[str, Any] = data["entry"]
    return data["seq"], entry


def _journal_max_seq(path: str) -> int:
    """The highest seq on any readable line of a journal (0 if none): new saves must go past it."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
    except OSError:
        return 0
    best = 0
    for line in lines:
        match = re.match(rb'\{"seq":(\d{1,18}),', line)
        if match:
            best = max(best, int(match.group(1)))
    return best


# -- file primitives ----------------------------------------------------------------------------


def _identity_of(path: str) -> tuple[int, ...] | None:
    try:
        return _identity(os.lstat(path))
    except OSError:
        return None


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """Which file this is: a save always makes a new one (a new inode), so a change shows."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_file(path: str) -> tuple[bytes, tuple[int, ...]] | None:
    """A regular file's bytes (never through a symlink) and its identity; None if there is no file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(
            path, "is a symbolic link: looplet reads only files it wrote itself (put the file there instead)"
        )
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(path, "is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(path, "is not a regular file (a pipe or a device?)")
    try:  # O_NONBLOCK: should a pipe be swapped in after the check, opening it must not hang
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _BINARY | _NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(path, "is not a regular file")
            return handle.read(), _identity(st)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _replace_file(directory: str, path: str, data: bytes) -> tuple[int, ...]:
    """Write `data` to `path` atomically and durably; its identity. The old file survives any failure."""
    temporary = os.path.join(directory, f".{os.path.basename(path)[:-5]}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
            identity = _identity(os.fstat(fd))
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        _remove_quietly(temporary)
        raise CheckpointError(
            path, f"could not be saved ({exc.strerror or exc}); the previous checkpoint is unchanged"
        ) from exc
    except BaseException:
        _remove_quietly(temporary)
        raise
    try:
        _sync_directory(directory)
    except OSError as exc:
        raise CheckpointError(
            path,
            f"was replaced, but its directory could not be synced ({exc.strerror or exc}): "
            "the new checkpoint may not survive a power loss",
        ) from exc
    return identity


def _append_line(directory: str, path: str, line: bytes) -> None:
    """Append one journal line and sync it, first cutting off a torn line a crash left at the end."""
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _BINARY | _NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "the journal is not a regular file")
            _drop_torn_tail(fd)
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not existed:
            _sync_directory(directory)
    except OSError as exc:
        raise CheckpointError(path, f"could not append to the journal ({exc.strerror or exc})") from exc


def _drop_torn_tail(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or _read_at(fd, size - 1, 1) == b"\n":
        return
    os.ftruncate(fd, _read_at(fd, 0, size).rfind(b"\n") + 1)


def _read_at(fd: int, offset: int, size: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)  # not pread: Windows has none
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _empty_quietly(path: str) -> None:
    """Empty a journal a save has subsumed (its lines are ignored by seq anyway, so failure is harmless)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW | _BINARY | _NONBLOCK)
    except OSError:
        return
    os.close(fd)


def _sync_directory(directory: str) -> None:
    if os.name == "nt":  # directories cannot be opened there; NTFS journals the rename itself
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# -- locks --------------------------------------------------------------------------------------


def _take_lock(path: str, run_id: str) -> RunLock:
    """Lock the run at once or raise CheckpointLocked: one process continues a run."""
    if _fcntl is None:
        return _take_lock_file(path, run_id)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _BINARY, 0o600)
    except OSError as exc:
        raise CheckpointError(path, f"the lock file cannot be opened ({exc.strerror or exc})") from None
    try:
        _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(os.pread(fd, 32, 0))
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise CheckpointLocked(
                path, f"run {run_id!r} is being continued by {holder}; the lock goes when it ends or exits"
            ) from None
        raise CheckpointError(path, f"the lock cannot be taken ({exc.strerror or exc})") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass  # the pid is only there to name the holder in a message

    def release() -> None:
        assert _fcntl is not None
        try:
            os.ftruncate(fd, 0)
            _fcntl.flock(fd, _fcntl.LOCK_UN)
        finally:
            os.close(fd)

    return _HeldLock(release)


def _take_lock_file(path: str, run_id: str) -> RunLock:
    """Where there is no flock: a lock file created exclusively, with the holder's pid inside."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o600)
    except FileExistsError:
        try:
            with open(path, "rb") as handle:
                holder = _holder(handle.read(32))
        except OSError:
            holder = "another process"
        raise CheckpointLocked(
            path, f"run {run_id!r} is locked by {holder}; if that process is no longer running, delete {path}"
        ) from None
    except OSError as exc:
        raise CheckpointError(path, f"the lock file cannot be created ({exc.strerror or exc})") from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    finally:
        os.close(fd)
    return _HeldLock(lambda: _remove_quietly(path))


def _holder(text: bytes) -> str:
    pid = text.strip()
    return f"process {pid.decode('ascii')}" if pid.isdigit() else "another process"


# -- loading a run ------------------------------------------------------------------------------


@overload
def load_run(store: RunStore, run_id: str) -> DefaultState: ...


@overload
def load_run(store: RunStore, run_id: str, state_type: type[S]) -> S: ...


def load_run(store: RunStore, run_id: str, state_type: type[DefaultState] = DefaultState) -> Any:
    """The saved run `run_id` as a state: its record, with the journal written after it replayed.

    Pass the state to the loop (with a `CheckpointHook` on the same store) to
    continue the run; loading alone changes nothing.

    Raises:
        CheckpointError: the store does not hold the run, or what it holds cannot be read.
    """
    record, entries = store.load(run_id)
    where = store.path(run_id) if isinstance(store, FileCheckpointStore) else f"run {run_id}"
    try:
        state = state_type.from_dict(record)
    except ConfigError as exc:
        raise CheckpointError(where, f"run {run_id!r} cannot be read: {exc}") from None
    if state.run_id != run_id:
        raise CheckpointError(where, f"the store gave run {state.run_id!r}'s record for run {run_id!r}")
    try:
        apply_journal(state, entries)
    except ConfigError as exc:
        raise CheckpointError(where, f"the journal of run {run_id!r} cannot be replayed: {exc}") from None
    return state


# -- the hook -----------------------------------------------------------------------------------

#: deltas since the last whole save may hold this much message text before the saved history's
#: own length becomes the limit (a whole save is due once they hold more than both)
_JOURNAL_CHARS_FLOOR = 256 * 1024


@dataclass
class _Durable:
    """What the store holds of the run: the last whole save and the deltas appended after it."""

    history: History  # the object saved: one put in its place is a new history
    revision: int
    messages: int
    steps: int
    fields: dict[str, Any]  # the record's other fields as the store now has them
    intents: frozenset[str]
    saved_messages: int  # messages in the whole save
    saved_chars: int  # message text in the whole save
    deltas: int = 0
    delta_chars: int = 0  # message text the deltas added


class CheckpointHook:
    """Makes a run durable in `store`: every step before it is yielded, every intent before its tool runs.

    The first write of a session saves the whole record; later ones append a
    ``delta`` (what the step added and the fields that changed, see
    `looplet.state.record_delta`), so a checkpoint costs the same at step 10
    and at step 10,000. The whole record is saved again when compaction
    replaced the history (or anything shrank it), when the session ends, and
    when the journal has grown as large as the record: after
    `deltas_per_save` deltas or as many as the last whole save held messages,
    whichever is more, or once the deltas hold more message text than that
    save (and over 256K characters). Whole saves thus grow rarer as the run
    grows, so their cost per step stays flat too, and loading replays a
    journal no longer than the record. ``deltas_per_save=0`` saves the whole
    record every time.

    Messages and steps are written once, as they appear: a hook that changes
    a recorded step in place reaches the store at the next whole save.

    It locks the run for the whole session, so two processes never continue
    the same run. A write that fails stops the run (``hook_error``): going on
    without durability would lose steps the caller already saw. When it fails
    before a tool runs, that call is not run (it is answered with an error)
    and the step that follows stops the run. One hook serves one run at a time.
    """

    def __init__(self, store: RunStore, *, deltas_per_save: int = 100) -> None:
        if type(deltas_per_save) is not int or deltas_per_save < 0:
            raise ConfigError(f"deltas_per_save must be an int >= 0, got {deltas_per_save!r:.40}")
        self.store = store
        self.deltas_per_save = deltas_per_save
        self._mutex = threading.Lock()
        self._state: DefaultState | None = None
        self._lock: RunLock | None = None
        self._durable: _Durable | None = None
        #: the write that failed this session; the run must not go on after it
        self._failure: CheckpointError | None = None
        #: results this session saw since the last whole save: that save empties the journal holding
        #: them, and the state's intents get their results only once the whole group has run
        self._unsaved_results: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"CheckpointHook({self.store!r})"

    def pre_loop(self, state: DefaultState, log: History, ctx: Any) -> None:
        with self._mutex:
            if self._state is not None:
                raise CheckpointError(
                    f"run {state.run_id}",
                    f"this CheckpointHook is checkpointing run {self._state.run_id!r}; "
                    "give each run that runs at the same time its own hook",
                )
            lock = self.store.lock(state.run_id)
            try:
                self._refuse_going_back(state)
                self._failure = None
                self._save(state)
            except BaseException:
                lock.release()
                raise
            self._state, self._lock = state, lock

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        call_id = call.call.call_id
        with self._mutex:
            state = self._active("around_tool")
            if self._failure is not None:
                raise CheckpointError(
                    f"run {state.run_id}",
                    f"call {call_id!r} ({call.spec.name}) was not run: an earlier checkpoint failed "
                    f"({self._failure.reason}), so its intent cannot be made durable",
                )
            if self._durable is None or call_id not in self._durable.intents:
                if call_id not in state.in_flight:
                    raise CheckpointError(
                        f"run {state.run_id}",
                        f"call {call_id!r} ({call.spec.name}) has no intent in the run record; "
                        "refusing to run it without one",
                    )
                self._write(state)
        result = proceed()
        if isinstance(result, ToolResult):
            self._record_result(state, call_id, result)
        return result

    def after_step(self, state: DefaultState, log: History, step: Step) -> None:
        with self._mutex:
            if state is not self._state:
                return
            if self._failure is not None:
                raise CheckpointError(
                    f"run {state.run_id}",
                    f"an earlier checkpoint of this run failed ({self._failure.reason}); "
                    "stopping rather than going on without durability",
                )
            self._write(state)

    def on_loop_end(self, state: DefaultState, log: History, ctx: Any, llm: Any) -> None:
        with self._mutex:
            if state is not self._state:
                return  # not started, or locked out: nothing of this run is ours to write
            lock = self._lock
            self._state, self._lock = None, None
            try:
                self._save(state)
            finally:
                self._durable = None
                self._unsaved_results = {}
                if lock is not None:
                    lock.release()

    def _active(self, method: str) -> DefaultState:
        if self._state is None:
            raise CheckpointError("CheckpointHook", f"{method} was called before pre_loop took the run")
        return self._state

    def _record_result(self, state: DefaultState, call_id: str, result: ToolResult) -> None:
        """Append the result; if that fails, the next write (after the step) carries it instead.

        Raising here would tell the model a tool that ran had failed, and it might run it again.
        """
        data = to_jsonable(result.to_dict())
        with self._mutex:
            if self._state is not state:
                return
            self._unsaved_results[call_id] = data
            try:
                self.store.append(state.run_id, {"type": "result", "call_id": call_id, "result": data})
            except Exception as exc:
                logger.warning(
                    "run %s: the result of call %s could not be journaled (%s); the step's save will hold it",
                    state.run_id,
                    call_id,
                    exc,
                )

    def _write(self, state: DefaultState) -> None:
        """Make the state durable, by a delta or a whole save; a failure is remembered and raised."""
        try:
            if self._whole_save_due(state):
                self._save(state)
            else:
                self._append_delta(state)
        except CheckpointError as exc:
            self._failure = exc
            raise

    def _whole_save_due(self, state: DefaultState) -> bool:
        durable = self._durable
        if durable is None or not self.deltas_per_save:
            return True
        history = state.history
        return (
            history is not durable.history
            or history.revision != durable.revision
            or len(history) < durable.messages
            or len(state.steps) < durable.steps
            or durable.deltas >= max(self.deltas_per_save, durable.saved_messages)
            or durable.delta_chars > max(durable.saved_chars, _JOURNAL_CHARS_FLOOR)
        )

    def _append_delta(self, state: DefaultState) -> None:
        durable = self._durable
        assert durable is not None
        delta = record_delta(state, durable.messages, durable.steps, since=durable.fields)
        if any(i.result is None and c in self._unsaved_results for c, i in state.in_flight.items()):
            in_flight = record_fields(state)["in_flight"]  # the results of the journal failed to hold
            self._add_results(in_flight)
            delta["fields"]["in_flight"] = in_flight
        _through_store(state, "append to", self.store.append, delta)
        changed = delta["fields"]
        durable.messages += len(delta["messages"])
        durable.steps += len(delta["steps"])
        durable.fields.update(changed)
        if "in_flight" in changed:
            durable.intents = frozenset(str(i.get("call_id")) for i in changed["in_flight"])
        durable.deltas += 1
        durable.delta_chars += _text_length(delta["messages"])

    def _save(self, state: DefaultState) -> None:
        record = state.to_dict()
        self._add_results(record.get("in_flight") or [])
        _through_store(state, "save", self.store.save, record)
        messages, steps = record.pop("history"), record.pop("steps")
        self._durable = _Durable(
            history=state.history,
            revision=state.history.revision,
            messages=len(messages),
            steps=len(steps),
            fields=record,
            intents=frozenset(str(i.get("call_id")) for i in record.get("in_flight") or ()),
            saved_messages=len(messages),
            saved_chars=_text_length(messages),
        )
        self._unsaved_results = {}

    def _add_results(self, in_flight: list[dict[str, Any]]) -> None:
        """Give encoded intents the results this session saw that the state's intents lack yet."""
        for intent in in_flight:
            if "result" not in intent and intent.get("call_id") in self._unsaved_results:
                intent["result"] = self._unsaved_results[intent["call_id"]]

    def _refuse_going_back(self, state: DefaultState) -> None:
        """Refuse a state older than what the store holds: saving it would undo steps already taken."""
        if state.run_id not in self.store.list_runs():
            return
        record, entries = self.store.load(state.run_id)
        saved_steps, saved_calls = _saved_progress(record, entries)
        known = {s.tool_call.call_id for s in state.steps}
        known |= {i.call_id for i in state.in_flight.values() if i.result is not None}
        journaled = [e.get("call_id") for e in entries if isinstance(e, dict) and e.get("type") == "result"]
        if saved_steps > len(state.steps) or saved_calls > state.llm_calls or set(journaled) - known:
            raise CheckpointError(
                f"run {state.run_id}",
                f"the store holds a later point of run {state.run_id!r} ({saved_steps} steps, {saved_calls} "
                f"model calls) than this state ({len(state.steps)} steps, {state.llm_calls} model calls); "
                f"continue from load_run(store, {state.run_id!r}) instead, or fork this state",
            )


def _saved_progress(record: dict[str, Any], entries: list[dict[str, Any]]) -> tuple[int, int]:
    """The steps and model calls a saved run holds, its deltas included (read leniently: only compared)."""
    steps = len(record.get("steps") or ())
    calls = record.get("llm_calls")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "delta":
            continue
        start, added, changed = entry.get("steps_from"), entry.get("steps"), entry.get("fields")
        if type(start) is int and isinstance(added, list):
            steps = max(steps, start + len(added))
        if isinstance(changed, dict) and "llm_calls" in changed:
            calls = changed["llm_calls"]
    return steps, calls if type(calls) is int else 0


def _text_length(messages: list[dict[str, Any]]) -> int:
    """Characters of message text: the measure of how much a save or a delta holds."""
    return sum(len(m.get("content") or "") for m in messages)


def _through_store(state: DefaultState, what: str, write: Callable[[str, Any], None], data: Any) -> None:
    """`write(run_id, data)`; whatever a store raises other than CheckpointError becomes one."""
    try:
        write(state.run_id, data)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"run {state.run_id}", f"the store could not {what} it ({type(exc).__name__}: {exc})"
        ) from exc
