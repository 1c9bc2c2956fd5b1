"""Coding tools confined to one directory: read, write, edit, multi_edit, list_dir, glob, grep and bash.

`coding_tools(Workspace(root))` gives a registry a coding agent can use
without reaching outside `root` (RELIABILITY.md group H). How each rule is kept:

- **Paths (H1).** A path is checked as text before anything is opened: it
  must be relative and plain. Refused, as "outside the workspace": ``..``
  anywhere, absolute paths, ``~``, ``$VAR`` / ``%VAR%`` / backquotes,
  backslashes (Windows and UNC forms), drive letters and ``scheme:`` prefixes
  (``file:``), URL-encoded bytes, NUL and other control characters (so also
  newlines in names), text that Unicode NFKC would change (fullwidth dots),
  names ending in a dot or a space, and paths over 1,024 characters or with a
  name over 255 bytes. Glob and grep patterns are checked the same way.
- **Symlinks (H2).** The path is then resolved (``realpath``) and must stay
  under the workspace. The resolved path is opened one name at a time from
  the workspace's own directory, each with ``O_NOFOLLOW``, so a link swapped
  in after the check makes the open fail instead of leading out; the opened
  file is re-verified through ``/proc/self/fd`` where Linux has it. A write
  goes to a temporary file in the same directory (``O_EXCL | O_NOFOLLOW``)
  renamed over the name, which replaces a link rather than following it; a
  write whose name is a dangling link is refused. A file with more than one
  hard link (``st_nlink > 1``) is refused for reading and writing: its other
  name may be outside.
- **Protected paths (H3)** are refused for writing (a deny, not a question: a
  git hook or a CI workflow runs code later, and no setting of the tool turns
  this off): anything under a ``.git/`` (at the top or nested), ``.github/workflows/``, ``.looplet/``,
  and every ``.env*`` file (``.envrc`` included), compared case-insensitively.
  ``.env*`` files are also refused for reading and skipped by grep: they hold
  secrets the model has no need to see. The sandboxed shell gets them
  read-only (and ``.env*`` files at the top as empty files).
- **No shell outside bash (H4).** The file tools run no program at all;
  grep is Python's ``re``. Bash's command line is an argv list whose shell
  gets the command after ``-c``, behind ``--`` for bubblewrap.
- **Bash (H5)** runs in bubblewrap when it works here (`probe_sandbox`):
  system directories and Python read-only, the workspace read-write, a
  private ``/tmp``, no network (``--unshare-all``), ``--clearenv``,
  ``--die-with-parent``, ``--new-session``. Without it the command runs
  directly and every result says ``sandbox: "none"``; the agent built on
  these tools should ask before each command (`coding_agent` does). Either
  way: an environment allowlist (never a variable named like a key, token,
  secret or password), resource limits, a time limit after which the whole
  process group is killed, and leftovers of the group killed when the
  command returns.
- **Reads (H6)** check the type and size with ``stat`` before reading:
  FIFOs, devices and sockets are refused; a large file is read as its head
  and tail; a file with NUL bytes is reported as binary, not shown.
- **Edits (H7)** replace bytes exactly: ``old_string`` must occur exactly
  once (an overlapping second occurrence counts), else a clear error; the
  file is replaced atomically and keeps its mode.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from .tools.builtins import register_done_tool, register_think_tool
from .tools.registry import BaseToolRegistry
from .types import ToolResult

__all__ = [
    "Workspace",
    "WorkspaceError",
    "OutsideWorkspace",
    "ProtectedPath",
    "Sandbox",
    "CommandOutput",
    "SandboxLabel",
    "probe_sandbox",
    "check_relative",
    "is_protected",
    "child_env",
    "coding_tools",
]

MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
#: The most a tool shows of one file or one command's output (head and tail kept).
MAX_SHOWN_BYTES = 64_000
#: The largest file edit and multi_edit load whole.
MAX_EDIT_BYTES = 4_000_000
MAX_ENTRIES = 500
MAX_MATCHES = 200
#: How many names glob and grep look at before they stop (a huge tree cannot hang a call).
MAX_WALKED = 50_000
DEFAULT_BASH_TIMEOUT_S = 120.0
MAX_BASH_TIMEOUT_S = 600.0

#: Environment variables a command may inherit, unless their name looks secret.
INHERITED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


class WorkspaceError(Exception):
    """A coding tool refused or failed; the message is meant for the model."""


class OutsideWorkspace(WorkspaceError):
    """A path or pattern that is, or could lead, outside the workspace."""


class ProtectedPath(WorkspaceError):
    """A path inside the workspace that the tools never write (git hooks, CI, secrets)."""


# -- checking a path as text ----------------------------------------------------------------------

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_PERCENT_VAR = re.compile(r"%[^%/]*%")
_URL_BYTE = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: (what makes a path unusable, what the model is told); the first that applies is reported.
_TEXT_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda p: len(p) > MAX_PATH_CHARS, f"it is longer than {MAX_PATH_CHARS} characters"),
    (lambda p: _CONTROL.search(p) is not None, "it holds a NUL, newline or other control character"),
    (lambda p: unicodedata.normalize("NFKC", p) != p, "it holds look-alike characters (e.g. fullwidth dots)"),
    (lambda p: p.startswith("/"), "it is absolute (give a path relative to the workspace)"),
    (lambda p: p.startswith("~"), "it starts with ~ (home directories are outside)"),
    (lambda p: "\\" in p, "it holds a backslash (Windows and UNC paths are not accepted)"),
    (lambda p: "$" in p or "`" in p or _PERCENT_VAR.search(p) is not None, "it names a variable"),
    (lambda p: _SCHEME.match(p) is not None, "it starts with a drive letter or scheme (like C: or file:)"),
    (lambda p: _URL_BYTE.search(p) is not None, "it holds URL-encoded bytes"),
)


def _refuse(what: str, why: str) -> OutsideWorkspace:
    # The path itself is not repeated: it may name a place outside, and the model knows what it sent.
    return OutsideWorkspace(
        f"{what} refused: {why}; only relative paths inside the workspace are allowed "
        "(nothing outside the workspace is read, listed or written)"
    )


def check_relative(path: str, what: str = "path") -> tuple[str, ...]:
    """The names of a plain relative path, or `OutsideWorkspace` saying why it is not one.

    ``"."`` and ``""`` are the workspace itself (no names).
    """
    if not isinstance(path, str):
        raise _refuse(what, "it is not text")
    for broken, why in _TEXT_RULES:
        if broken(path):
            raise _refuse(what, why)
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    for part in parts:
        if part == "..":
            raise _refuse(what, "it holds '..'")
        if part.rstrip(". ") != part:
            raise _refuse(what, "a name in it ends with a dot or a space")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise _refuse(what, f"a name in it is longer than {MAX_NAME_BYTES} bytes")
    return parts


def _lower(parts: Sequence[str]) -> list[str]:
    return [part.casefold() for part in parts]


def is_secret_file(parts: Sequence[str]) -> bool:
    """``.env``, ``.env.local``, ``.envrc``... anywhere in the tree."""
    return bool(parts) and parts[-1].casefold().startswith(".env")


def is_protected(parts: Sequence[str]) -> bool:
    """Whether the tools refuse to write this workspace path (compared case-insensitively)."""
    low = _lower(parts)
    if not low:
        return False
    if ".git" in low or low[0] == ".looplet" or low[:2] == [".github", "workflows"]:
        return True  # a nested repository's .git (a submodule, a vendored clone) runs hooks too
    return is_secret_file(parts)


# -- the workspace --------------------------------------------------------------------------------

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_NOCTTY | _O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Located:
    """A checked path: its names as given, and its names once links are resolved (both inside)."""

    given: tuple[str, ...]
    real: tuple[str, ...]

    @property
    def shown(self) -> str:
        return "/".join(self.given) or "."


class Workspace:
    """One directory the coding tools may touch, and the sandbox its commands run in.

    Args:
        root: the directory (created if missing); its real path is fixed now.
        sandbox: ``"auto"`` (bubblewrap when it works here), ``"bwrap"``
            (required) or ``"none"``.
    """

    def __init__(self, root: str | os.PathLike[str], *, sandbox: str = "auto") -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        self.root = os.path.realpath(root)
        self.sandbox = Sandbox.choose(sandbox)

    def __repr__(self) -> str:
        return f"Workspace({self.root!r}, sandbox={self.sandbox.kind!r})"

    # -- locating -----------------------------------------------------------------------------

    def locate(self, path: str, what: str = "path") -> Located:
        """Check `path` as text, then resolve its links: both must stay inside."""
        given = check_relative(path, what)
        resolved = os.path.realpath(os.path.join(self.root, *given))
        if resolved == self.root:
            return Located(given, ())
        if not resolved.startswith(self.root + os.sep):
            raise _refuse(what, "it leads outside the workspace through a symbolic link")
        return Located(given, tuple(resolved[len(self.root) + 1 :].split(os.sep)))

    def locate_for_write(self, path: str) -> Located:
        """`locate`, then refuse protected paths (as given or as resolved) and dangling links."""
        where = self.locate(path)
        if not where.given or not where.real:
            raise WorkspaceError("the workspace itself is a directory; name a file in it")
        if is_protected(where.given) or is_protected(where.real):
            raise ProtectedPath(
                f"{where.shown} is protected: the tools do not write under .git/, .github/workflows/ or "
                ".looplet/, nor .env* files (they run code later or hold secrets); ask the user to do it"
            )
        full = os.path.join(self.root, *where.given)
        if os.path.islink(full) and not os.path.exists(full):
            raise WorkspaceError(f"{where.shown} is a dangling symbolic link; writes never follow one")
        return where

    # -- opening --------------------------------------------------------------------------------

    def open_dir(self, names: Sequence[str], *, create: bool = False) -> int:
        """A descriptor of the directory `names` under the root, reached without following any link."""
        fd = os.open(self.root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            for name in names:
                fd = self._step_into(fd, name, create)
            self.verify(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _step_into(self, parent: int, name: str, create: bool) -> int:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o777, dir_fd=parent)
            child = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise WorkspaceError(
                    "a directory on the path is not a plain directory (it changed?)"
                ) from None
            raise
        finally:
            os.close(parent)
        return child

    def verify(self, fd: int) -> None:
        """Re-check where an open descriptor really points (Linux ``/proc``); outside means refuse."""
        link = f"/proc/self/fd/{fd}"
        if not os.path.exists(link):
            return  # no /proc: the O_NOFOLLOW walk alone guards the path
        real = os.path.realpath(link)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise _refuse("path", "it was changed to lead outside the workspace while being opened")

    def open_file(self, where: Located) -> tuple[int, os.stat_result]:
        """A regular file of the workspace, opened for reading after its type and links are checked."""
        if not where.real:
            raise WorkspaceError("the workspace itself is a directory; use list_dir")
        if is_secret_file(where.given) or is_secret_file(where.real):
            raise ProtectedPath(f"{where.shown} holds secrets (.env*); the tools do not read it")
        parent = self.open_dir(where.real[:-1])
        try:
            before = os.stat(where.real[-1], dir_fd=parent, follow_symlinks=False)
            _check_readable(where.shown, before)
            try:
                fd = os.open(where.real[-1], _READ_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise WorkspaceError(f"{where.shown} is a symbolic link loop") from None
                raise
        finally:
            os.close(parent)
        try:
            after = os.fstat(fd)
            if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                raise WorkspaceError(f"{where.shown} changed while it was being opened; try again")
            _check_readable(where.shown, after)
            self.verify(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd, after

    # -- reading and writing --------------------------------------------------------------------

    def read_shown(self, path: str, limit: int = MAX_SHOWN_BYTES) -> dict[str, Any]:
        """A file as the model sees it: text, or head and tail of a large one, or a binary notice."""
        where = self.locate(path)
        fd, info = self.open_file(where)
        try:
            head, tail = _head_and_tail(fd, info.st_size, limit)
        finally:
            os.close(fd)
        if b"\0" in head[:8192]:
            return {"path": where.shown, "size": info.st_size, "binary": True}
        shown: dict[str, Any] = {"path": where.shown, "size": info.st_size}
        if tail is None:
            shown["content"] = head.decode("utf-8", "replace")
        else:
            cut = info.st_size - len(head) - len(tail)
            shown["content"] = (
                head.decode("utf-8", "replace")
                + f"\n[... {cut} bytes not shown ...]\n"
                + tail.decode("utf-8", "replace")
            )
            shown["cut_bytes"] = cut
        return shown

    def read_bytes(self, path: str) -> tuple[Located, bytes, int]:
        """A whole file for editing (at most `MAX_EDIT_BYTES`): where, its bytes and its mode."""
        where = self.locate_for_write(path)
        fd, info = self.open_file(where)
        try:
            if info.st_size > MAX_EDIT_BYTES:
                raise WorkspaceError(
                    f"{where.shown} is {info.st_size} bytes, over {MAX_EDIT_BYTES} for an edit"
                )
            data = _read_upto(fd, MAX_EDIT_BYTES + 1)
        finally:
            os.close(fd)
        return where, data, stat.S_IMODE(info.st_mode)

    def write_bytes(self, path: str, data: bytes) -> Located:
        """Replace or create a file atomically: a private temporary file renamed over the name."""
        where = self.locate_for_write(path)
        parent = self.open_dir(where.real[:-1], create=True)
        try:
            _replace_in(parent, where, data)
        finally:
            os.close(parent)
        return where

    # -- walking ----------------------------------------------------------------------------------

    def walk(self, path: str) -> Iterator[tuple[str, list[str], list[str], int]]:
        """``os.fwalk`` of a workspace directory (links never followed), paths relative to the root.

        ``.git`` directories are not entered.
        """
        where = self.locate(path)
        top = self.open_dir(where.real)
        try:
            prefix = "/".join(where.real) or "."
            for folder, dirs, files, fd in os.fwalk(".", dir_fd=top):
                dirs[:] = sorted(d for d in dirs if d != ".git")
                rel = os.path.normpath(os.path.join(prefix, folder))
                yield ("" if rel == "." else rel), dirs, sorted(files), fd
        finally:
            os.close(top)


def _check_readable(shown: str, info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        raise WorkspaceError(f"{shown} is a symbolic link that changed while it was checked; try again")
    if stat.S_ISDIR(mode):
        raise WorkspaceError(f"{shown} is a directory; use list_dir")
    if not stat.S_ISREG(mode):
        raise WorkspaceError(f"{shown} is not a regular file (a FIFO, device or socket); it is not read")
    if info.st_nlink > 1:
        raise WorkspaceError(
            f"{shown} has {info.st_nlink} hard links; its other names may be outside the workspace, "
            "so the tools do not use it"
        )


def _read_upto(fd: int, limit: int, offset: int = 0) -> bytes:
    """Up to `limit` bytes from `offset` (``pread``: the descriptor's position does not matter)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.pread(fd, min(left, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _head_and_tail(fd: int, size: int, limit: int) -> tuple[bytes, bytes | None]:
    """The whole file when it fits in `limit` bytes; else its first and last halves of `limit`."""
    if size <= limit:
        return _read_upto(fd, limit), None
    half = limit // 2
    return _read_upto(fd, half), _read_upto(fd, half, size - half)


def _replace_in(parent: int, where: Located, data: bytes) -> None:
    name = where.real[-1]
    try:
        old: os.stat_result | None = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None:
        _check_replaceable(where.shown, old)
    temp = f".{secrets.token_hex(8)}.looplet-tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o666, dir_fd=parent)
    try:
        try:
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp, dir_fd=parent)
        raise


def _check_replaceable(shown: str, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise WorkspaceError(f"{shown} is a directory")
    if stat.S_ISLNK(info.st_mode):
        raise WorkspaceError(f"{shown} is a symbolic link that changed while it was checked; try again")
    if not stat.S_ISREG(info.st_mode):
        raise WorkspaceError(f"{shown} is not a regular file (a FIFO, device or socket)")
    if info.st_nlink > 1:
        raise WorkspaceError(
            f"{shown} has {info.st_nlink} hard links; writing it could change a file outside the workspace"
        )


# -- editing --------------------------------------------------------------------------------------


class Edit(TypedDict):
    """One replacement of multi_edit."""

    old_string: str
    new_string: str


def replace_once(text: bytes, old: bytes, new: bytes, shown: str) -> bytes:
    """`text` with its one occurrence of `old` replaced by `new`; an error for 0 or several."""
    if not old:
        raise WorkspaceError("old_string is empty; give the exact text to replace")
    if old == new:
        raise WorkspaceError("old_string and new_string are the same; nothing would change")
    first = text.find(old)
    if first < 0:
        hint = " (the file has CRLF line endings)" if b"\r\n" in text and b"\r\n" not in old else ""
        raise WorkspaceError(f"old_string was not found in {shown}{hint}; copy it exactly, with its spacing")
    if text.find(old, first + 1) >= 0:
        count = _occurrences(text, old)
        raise WorkspaceError(
            f"old_string occurs {count} times in {shown}; include more surrounding lines so it is unique"
        )
    return text[:first] + new + text[first + len(old) :]


def _occurrences(text: bytes, old: bytes) -> int:
    count, at = 0, text.find(old)
    while at >= 0:
        count, at = count + 1, text.find(old, at + 1)
    return count


# -- the shell --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How commands run: ``kind`` is ``"bwrap"`` or ``"none"``; ``reason`` says why it is none."""

    kind: Literal["bwrap", "none"]
    reason: str = ""
    program: str = ""

    @classmethod
    def choose(cls, wanted: str) -> Sandbox:
        if wanted == "none":
            return cls("none", "turned off by the caller")
        if wanted not in ("auto", "bwrap"):
            raise ValueError(f"sandbox must be 'auto', 'bwrap' or 'none', got {wanted!r}")
        found = probe_sandbox()
        if found.kind == "none" and wanted == "bwrap":
            raise WorkspaceError(f"bubblewrap was asked for and cannot be used: {found.reason}")
        return found


@functools.lru_cache(maxsize=1)
def probe_sandbox() -> Sandbox:
    """Bubblewrap, if it is installed and can create its namespaces here (checked once per process)."""
    program = shutil.which("bwrap")
    if program is None:
        return Sandbox("none", "bwrap is not installed (apt-get install bubblewrap)")
    try:
        probe = subprocess.run(
            [program, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Sandbox("none", f"bwrap could not be started: {exc}")
    if probe.returncode != 0:
        why = probe.stderr.decode("utf-8", "replace").strip().splitlines()
        return Sandbox(
            "none", f"bwrap cannot create its namespaces here: {why[0] if why else probe.returncode}"
        )
    return Sandbox("bwrap", program=program)


def child_env(home: str) -> dict[str, str]:
    """A command's whole environment: a short allowlist, never a variable named like a secret."""
    path = os.pathsep.join(
        dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    )
    env = {
        "PATH": path,
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for name in INHERITED_ENV:
        value = os.environ.get(name)
        if value is not None and not SECRET_NAME.search(name):
            env[name] = value
    return env


_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "ssl")


def _python_dirs() -> list[str]:
    """The installation a command's ``python3`` needs, bound read-only in the sandbox."""
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    return [d for d in dict.fromkeys(os.path.realpath(d) for d in dirs) if not d.startswith(_SYSTEM_DIRS)]


def _guarded_binds(root: str) -> list[str]:
    """Protected paths that exist: read-only in the sandbox; top-level ``.env*`` files masked."""
    out: list[str] = []
    for rel in (".git", ".github/workflows", ".looplet"):
        full = os.path.join(root, rel)
        if os.path.isdir(full) and not os.path.islink(full):
            out += ["--ro-bind", full, full]
    with suppress(OSError):
        for entry in os.scandir(root):
            if is_secret_file([entry.name]) and entry.is_file(follow_symlinks=False):
                out += ["--ro-bind", "/dev/null", entry.path]
    return out


def bwrap_argv(program: str, root: str, env: dict[str, str], command: Sequence[str]) -> list[str]:
    """The bubblewrap command line running `command` (an argv list) in `root`."""
    argv = [program, "--die-with-parent", "--new-session", "--unshare-all", "--clearenv"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for folder in _SYSTEM_DIRS:
        argv += ["--ro-bind-try", folder, folder]
    for name in _ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for folder in _python_dirs():
        argv += ["--ro-bind", folder, folder]
    argv += ["--bind", root, root, *_guarded_binds(root), "--chdir", root]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *command]


def _limit_resources() -> None:  # pragma: no cover - runs in the child, between fork and exec
    import resource

    for kind, value in (
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, 1 << 30),
        (resource.RLIMIT_NOFILE, 1024),
    ):
        with suppress(ValueError, OSError):
            resource.setrlimit(kind, (value, value))


#: What the model reads beside a non-zero exit code, so that `grep` finding nothing is not taken for a crash.
EXIT_CODE_NOTE = (
    "exit code {code} is the command's answer, not a tool failure: e.g. grep exits 1 when nothing "
    "matched and diff 1 when the files differ; read the output to tell"
)


@dataclass(frozen=True, slots=True)
class CommandOutput:
    """What a command did: exit code (None when killed at the time limit) and bounded output."""

    exit_code: int | None
    output: str
    timed_out: bool
    sandbox: str

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "sandbox": self.sandbox,
            "output": self.output,
        }
        if self.exit_code:  # data, not a tool error: many commands answer with their exit code
            data["note"] = EXIT_CODE_NOTE.format(code=self.exit_code)
        return data


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_tree(pid: int) -> None:
    """Kill a still running (unreaped) `pid`, its descendants (even those that started a session
    of their own) and its process group.

    Everything is stopped first, the group and then each descendant found until no new one
    appears: a stopped process cannot fork or leave its session, so none slips out between
    the listing and the kill (as one could on a loaded machine).
    """
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGSTOP)
    stopped: set[int] = set()
    while True:
        fresh = [child for child in _descendants(pid) if child not in stopped]
        if not fresh:
            break
        for child in fresh:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGSTOP)
            stopped.add(child)
    for child in stopped:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    _kill_group(pid)


def _descendants(pid: int) -> list[int]:
    """Every process under `pid`, from ``/proc`` (none where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    with suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with suppress(OSError, ValueError, IndexError):
                    with open(f"/proc/{name}/stat", "rb") as f:
                        parent = int(f.read().rsplit(b")", 1)[1].split()[1])
                    children.setdefault(parent, []).append(int(name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_command(workspace: Workspace, command: Sequence[str], timeout_s: float) -> CommandOutput:
    """Run an argv list in the workspace (in the sandbox when there is one); never through ``sh``."""
    with tempfile.TemporaryDirectory(prefix="looplet-home-") as home, tempfile.TemporaryFile() as out:
        sandboxed = workspace.sandbox.kind == "bwrap"
        env = child_env("/tmp" if sandboxed else home)
        argv = list(command)
        if sandboxed:
            argv = bwrap_argv(workspace.sandbox.program, workspace.root, env, command)
        proc = subprocess.Popen(
            argv,
            cwd=workspace.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_limit_resources,
        )
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
            _kill_tree(proc.pid)  # not reaped yet, so its pid still names it
        finally:
            _kill_group(proc.pid)  # what the command left running in its group
            proc.wait()
        size = out.seek(0, os.SEEK_END)
        head, tail = _head_and_tail(out.fileno(), size, MAX_SHOWN_BYTES)
        text = head.decode("utf-8", "replace")
        if tail is not None:
            text += f"\n[... {size - len(head) - len(tail)} bytes of output not shown ...]\n"
            text += tail.decode("utf-8", "replace")
        return CommandOutput(code, text, code is None, workspace.sandbox.kind)


def bash_argv(command: str) -> list[str]:
    """bash reading `command` after ``-c`` (an argument, never a shell-parsed string of ours)."""
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "bash"
    return [shell, "--noprofile", "--norc", "-c", command]


class SandboxLabel:
    """``post_dispatch`` hook: bash's results say in their metadata how it ran (``sandbox``)."""

    def post_dispatch(self, state: Any, log: Any, tool_call: Any, tool_result: ToolResult, step: int) -> Any:
        data = tool_result.data
        if tool_result.tool != "bash" or not isinstance(data, dict) or "sandbox" not in data:
            return None
        labelled = ToolResult.from_dict(tool_result.to_dict())
        labelled.metadata["sandbox"] = data["sandbox"]
        return labelled


# -- glob -----------------------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regular expression on ``/``-separated paths: ``*``, ``?``, ``[...]`` and ``**/``."""
    parts = check_relative(pattern, "pattern")
    if not parts:
        raise WorkspaceError("the pattern is empty; e.g. '**/*.py'")
    pieces: list[str] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:.*/)?")
        else:
            pieces.append(_name_regex(part) + ("" if last else "/"))
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)


def _name_regex(part: str) -> str:
    """One name of a glob: ``*`` and ``?`` never cross a ``/``; ``[...]`` and ``[!...]`` are classes."""
    out: list[str] = []
    at = 0
    while at < len(part):
        char = part[at]
        close = part.find("]", at + 2) if char == "[" else -1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif close > 0:
            body = part[at + 1 : close]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            at = close
        else:
            out.append(re.escape(char))
        at += 1
    return "".join(out)


# -- the tools --------------------------------------------------------------------------------------


def coding_tools(workspace: Workspace, *, bash_timeout_s: float = DEFAULT_BASH_TIMEOUT_S) -> BaseToolRegistry:
    """The registry of a coding agent working in `workspace`: the file tools, bash, think and done."""
    tools = BaseToolRegistry()
    _file_tools(tools, workspace)
    _search_tools(tools, workspace)

    @tools.tool
    def bash(command: str, timeout_s: float = bash_timeout_s) -> dict[str, Any]:
        """Run a bash command in the workspace; its output (cut in the middle if long) and exit code.

        Args:
            command: the command line, e.g. "python3 -m pytest -q".
            timeout_s: seconds before the command and everything it started are killed
                (at most the host's limit).
        """
        limit = max(0.1, min(float(timeout_s), bash_timeout_s, MAX_BASH_TIMEOUT_S))
        return run_command(workspace, bash_argv(command), limit).to_data()

    register_think_tool(tools)
    register_done_tool(tools)
    return tools


def _file_tools(tools: BaseToolRegistry, workspace: Workspace) -> None:
    @tools.tool(concurrent_safe=True)
    def read(path: str) -> dict[str, Any]:
        """Read a text file of the workspace (a large file shows its beginning and end).

        Args:
            path: relative to the workspace, e.g. "src/app.py".
        """
        return workspace.read_shown(path)

    @tools.tool
    def write(path: str, content: str) -> dict[str, Any]:
        """Create or replace a file with `content` (missing directories are created).

        Args:
            path: relative to the workspace.
            content: the whole new text of the file.
        """
        data = content.encode("utf-8")
        where = workspace.write_bytes(path, data)
        return {"path": where.shown, "bytes": len(data)}

    @tools.tool
    def edit(path: str, old_string: str, new_string: str) -> dict[str, Any]:
        """Replace the one occurrence of `old_string` in a file with `new_string`, exactly.

        Args:
            path: relative to the workspace.
            old_string: text that occurs exactly once in the file, spacing included.
            new_string: what replaces it.
        """
        return _apply_edits(workspace, path, [Edit(old_string=old_string, new_string=new_string)])

    @tools.tool
    def multi_edit(path: str, edits: list[Edit]) -> dict[str, Any]:
        """Several exact replacements in one file, applied in order; all of them or none.

        Args:
            path: relative to the workspace.
            edits: each an old_string that occurs exactly once at that point, and its new_string.
        """
        return _apply_edits(workspace, path, edits)


def _apply_edits(workspace: Workspace, path: str, edits: Sequence[Edit]) -> dict[str, Any]:
    if not edits:
        raise WorkspaceError("no edits given")
    where, text, _mode = workspace.read_bytes(path)
    for number, change in enumerate(edits, 1):
        try:
            text = replace_once(
                text, change["old_string"].encode("utf-8"), change["new_string"].encode("utf-8"), where.shown
            )
        except WorkspaceError as exc:
            prefix = f"edit {number} of {len(edits)}: " if len(edits) > 1 else ""
            raise WorkspaceError(f"{prefix}{exc}; the file was not changed") from None
    workspace.write_bytes(path, text)
    return {"path": where.shown, "edits": len(edits), "bytes": len(text)}


def _search_tools(tools: BaseToolRegistry, workspace: Workspace) -> None:
    @tools.tool(concurrent_safe=True)
    def list_dir(path: str = ".") -> dict[str, Any]:
        """List a directory of the workspace: names, kinds (file, dir, link, other) and file sizes.

        Args:
            path: relative to the workspace; "." is its top.
        """
        where = workspace.locate(path)
        fd = workspace.open_dir(where.real)
        try:
            entries = [_entry(e) for e in sorted(os.scandir(fd), key=lambda e: e.name)]
        finally:
            os.close(fd)
        listed: dict[str, Any] = {"path": where.shown, "entries": entries[:MAX_ENTRIES]}
        if len(entries) > MAX_ENTRIES:
            listed["more"] = len(entries) - MAX_ENTRIES
        return listed

    @tools.tool(concurrent_safe=True)
    def glob(pattern: str) -> dict[str, Any]:
        """Paths of the workspace matching a glob, e.g. "**/*.py" or "src/*.txt" (.git is skipped).

        Args:
            pattern: relative; * and ? stay within one name, ** spans directories.
        """
        matcher = glob_regex(pattern)
        found: list[str] = []
        for rel, dirs, files, _fd in _bounded(workspace.walk(".")):
            for name in (*dirs, *files):
                candidate = f"{rel}/{name}" if rel else name
                if matcher.match(candidate):
                    found.append(candidate)
        return {"pattern": pattern, "paths": found[:MAX_ENTRIES], "more": max(0, len(found) - MAX_ENTRIES)}

    @tools.tool(concurrent_safe=True)
    def grep(pattern: str, path: str = ".", include: str = "") -> dict[str, Any]:
        """Lines matching a regular expression (Python syntax) in the workspace's text files.

        Args:
            pattern: the regular expression, taken literally as an expression (never a flag).
            path: a file or directory to search, relative to the workspace.
            include: only files whose name matches this glob, e.g. "*.py".
        """
        return _grep(workspace, pattern, path, include)


def _entry(entry: os.DirEntry[str]) -> dict[str, Any]:
    if entry.is_symlink():
        return {"name": entry.name, "kind": "link"}  # its target is not shown: it may be outside
    if entry.is_dir(follow_symlinks=False):
        return {"name": entry.name, "kind": "dir"}
    if entry.is_file(follow_symlinks=False):
        return {"name": entry.name, "kind": "file", "size": entry.stat(follow_symlinks=False).st_size}
    return {"name": entry.name, "kind": "other"}


def _bounded(
    walk: Iterator[tuple[str, list[str], list[str], int]],
) -> Iterator[tuple[str, list[str], list[str], int]]:
    seen = 0
    for item in walk:
        seen += len(item[1]) + len(item[2])
        yield item
        if seen > MAX_WALKED:
            return


def _grep(workspace: Workspace, pattern: str, path: str, include: str) -> dict[str, Any]:
    try:
        expression = re.compile(pattern)
    except re.error as exc:
        raise WorkspaceError(f"the pattern is not a valid regular expression: {exc}") from None
    if include:
        check_relative(include, "include")
    where = workspace.locate(path)
    if where.real and not os.path.isdir(os.path.join(workspace.root, *where.real)):
        files = [where.shown]
    else:
        files = [
            f"{rel}/{name}" if rel else name
            for rel, _dirs, names, _fd in _bounded(workspace.walk(path))
            for name in names
            if not include or fnmatch.fnmatchcase(name, include)
        ]
    matches: list[dict[str, Any]] = []
    skipped = 0
    for rel in files:
        found = _grep_file(workspace, rel, expression, MAX_MATCHES - len(matches))
        if found is None:
            skipped += 1
            continue
        matches += found
        if len(matches) >= MAX_MATCHES:
            break
    return {"matches": matches, "files_searched": len(files) - skipped, "files_skipped": skipped}


def _grep_file(
    workspace: Workspace, rel: str, expression: re.Pattern[str], room: int
) -> list[dict[str, Any]] | None:
    """The matching lines of one file; None when it is skipped (binary, secret, special, too big)."""
    try:
        fd, info = workspace.open_file(workspace.locate(rel))
    except (WorkspaceError, OSError):
        return None
    try:
        if info.st_size > MAX_EDIT_BYTES:
            return None
        data = _read_upto(fd, MAX_EDIT_BYTES)
    finally:
        os.close(fd)
    if b"\0" in data[:8192]:
        return None
    found: list[dict[str, Any]] = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if expression.search(line):
            found.append({"path": rel, "line": number, "text": line[:300]})
            if len(found) >= room:
                break
    return found
