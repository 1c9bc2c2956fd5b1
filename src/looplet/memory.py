"""Memory: the user's standing instructions, put at the top of every prompt.

A memory source gives blocks of text (`MemoryBlock`); `MemoryHook` renders
them, in the order the sources were given, into a ``# Memory`` section
appended to the system prompt:

- `StaticMemorySource(text)`: a fixed text;
- `CallableMemorySource(fn)`: whatever ``fn()`` returns (a note store, a
  database row, a profile);
- `FileMemorySource(root, start)`: ``AGENTS.md`` / ``CLAUDE.md`` style
  instruction files in each directory from `root` down to `start`, the
  most general first, each cut at a size cap. Nothing above `root` is read,
  and no symlink is followed out of it.

Why the system prompt: it is the start of every request, so memory rendered
right after it is part of the prefix a provider caches (see
`looplet.caching`), and the loop masks secret values in it once per change.
It is also what `ContextBudget` measures (``len(ctx.system)``), so memory
counts in the context budget as long as `MemoryHook` comes before the
compaction hooks in ``hooks=[...]`` (hooks run in list order).

Memory is trusted: the model reads it as the user's own instructions, with
the authority of the system prompt, unlike a tool result. An instruction
file found in a repository someone else wrote is their instructions, not
yours: read only trees you trust, or set `root` to a directory you control.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import ConfigError

if TYPE_CHECKING:
    from .history import History
    from .prompt import PromptContext
    from .state import DefaultState

__all__ = [
    "MemoryBlock",
    "MemorySource",
    "StaticMemorySource",
    "CallableMemorySource",
    "FileMemorySource",
    "MemoryHook",
    "render_memory",
    "MEMORY_HEADER",
    "INSTRUCTION_FILES",
]

log = logging.getLogger(__name__)

#: The first line of the memory section in the system prompt.
MEMORY_HEADER = "# Memory"
_PREAMBLE = "The user's standing instructions for this work; later sections are more specific."
#: The file names `FileMemorySource` looks for in each directory, in this order.
INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass(frozen=True)
class MemoryBlock:
    """One piece of memory: a title (a file's path, or a name you chose) and its text."""

    title: str
    text: str


@runtime_checkable
class MemorySource(Protocol):
    """Anything with ``load() -> list of MemoryBlock``; called when the memory is rendered."""

    def load(self) -> Sequence[MemoryBlock]: ...


class StaticMemorySource:
    """A fixed text, e.g. conventions you always want followed."""

    def __init__(self, text: str, *, title: str = "Instructions") -> None:
        if not isinstance(text, str):
            raise ConfigError(f"StaticMemorySource needs a str, not {type(text).__name__}")
        self.block = MemoryBlock(title, text)

    def load(self) -> list[MemoryBlock]:
        return [self.block] if self.block.text.strip() else []


class CallableMemorySource:
    """The text ``fn()`` returns when the memory is rendered (None or "" adds nothing).

    What `fn` raises ends the run as a hook error, like any hook's failure.
    """

    def __init__(self, fn: Callable[[], str | None], *, title: str = "Notes") -> None:
        if not callable(fn):
            raise ConfigError(f"CallableMemorySource needs a callable, not {type(fn).__name__}")
        self.fn = fn
        self.title = title

    def load(self) -> list[MemoryBlock]:
        text = self.fn()
        if text is None:
            return []
        if not isinstance(text, str):
            raise TypeError(f"the memory function {self.fn!r} returned {type(text).__name__}, not a str")
        return [MemoryBlock(self.title, text)] if text.strip() else []


class FileMemorySource:
    """Instruction files from `root` down to `start`: the most general first, the nearest last.

    In each directory, every name of `names` that is a regular file is read
    (a name that is a symlink to a file already read, such as ``CLAUDE.md``
    pointing at ``AGENTS.md``, is read once). A file whose real path is not
    inside `root` is skipped with a warning, as is anything that is not a
    regular file. Each file is cut at `max_bytes`, with a note saying so.
    Files are read each time the memory is rendered (by default once per run).

    Args:
        root: the top directory; nothing above it is ever read.
        start: where the search starts (a directory inside `root`; default `root`).
        names: the file names to look for, relative to each directory.
        max_bytes: the most bytes read from one file.

    Raises:
        ConfigError: `root` is not a directory, `start` is not inside it, or a
            name is absolute or has ``..`` in it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        start: str | os.PathLike[str] | None = None,
        *,
        names: Sequence[str] = INSTRUCTION_FILES,
        max_bytes: int = 32_768,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ConfigError(f"max_bytes must be a positive int, not {max_bytes!r}")
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise ConfigError(f"memory root {os.fspath(root)!r} is not a directory")
        here = Path(os.path.realpath(start if start is not None else root))
        if not _inside(here, self.root):
            where = os.fspath(start) if start is not None else ""
            raise ConfigError(f"memory start {where!r} is not inside the root {str(self.root)!r}")
        self.start = here
        self.names = tuple(_checked_name(n) for n in names)
        self.max_bytes = max_bytes

    def directories(self) -> list[Path]:
        """The directories searched, from `root` down to `start`."""
        out = [self.root]
        for part in self.start.relative_to(self.root).parts:
            out.append(out[-1] / part)
        return out

    def load(self) -> list[MemoryBlock]:
        blocks: list[MemoryBlock] = []
        seen: set[Path] = set()
        for directory in self.directories():
            for name in self.names:
                block = self._read(directory / name, seen)
                if block is not None:
                    blocks.append(block)
        return blocks

    def _read(self, path: Path, seen: set[Path]) -> MemoryBlock | None:
        if not os.path.lexists(path):
            return None
        real = Path(os.path.realpath(path))
        if not _inside(real, self.root):
            log.warning("memory file %s leads out of the root %s; not read", path, self.root)
            return None
        if real in seen:
            return None
        data, size = self._bytes(real)
        if data is None:
            return None
        seen.add(real)
        text = data[: self.max_bytes].decode("utf-8", errors="replace").removeprefix("\ufeff")
        title = real.relative_to(self.root).as_posix()
        if size > self.max_bytes:
            log.warning("memory file %s is %d bytes; only the first %d are used", title, size, self.max_bytes)
            text = text.rstrip("\ufffd") + f"\n[{title} cut: {size - self.max_bytes} more bytes not shown]"
        return MemoryBlock(title, text) if text.strip() else None

    def _bytes(self, real: Path) -> tuple[bytes | None, int]:
        """The first bytes of the regular file at `real` and its size; (None, 0) for anything else.

        Opened without following a last-moment symlink, and without blocking on a FIFO.
        """
        try:
            fd = os.open(real, _READ_FLAGS)
        except OSError as exc:
            log.warning("memory file %s could not be opened: %s", real, exc)
            return None, 0
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            log.warning("memory file %s is not a regular file; not read", real)
            return None, 0
        with os.fdopen(fd, "rb") as handle:
            return handle.read(self.max_bytes + 1), info.st_size


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _checked_name(name: str) -> str:
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or os.path.isabs(name) or ".." in pure.parts:
        raise ConfigError(f"memory file name {name!r} must be a relative path without '..'")
    return name


def render_memory(blocks: Iterable[MemoryBlock]) -> str:
    """The memory section for `blocks`, in their order ("" when there are none)."""
    parts = [f"## {b.title}\n\n{b.text.strip()}" for b in blocks if b.text.strip()]
    if not parts:
        return ""
    return "\n\n".join([MEMORY_HEADER, _PREAMBLE, *parts])


class MemoryHook:
    """A ``pre_prompt`` hook that appends the sources' memory to the system prompt.

    The memory is rendered once per run by default, so the system prompt, and
    the cached prefix behind it, stay the same for the whole run; with
    ``refresh=True`` the sources are read again before every prompt (for a
    note store the agent writes to). Put it before any compaction hook in
    ``hooks=[...]`` so the budget measures the prompt with its memory.

    Args:
        *sources: the memory sources, rendered in this order.
        refresh: read the sources before every prompt instead of once per run.
    """

    def __init__(self, *sources: MemorySource, refresh: bool = False) -> None:
        for source in sources:
            if not callable(getattr(source, "load", None)):
                raise ConfigError(f"{type(source).__name__} is not a memory source (it has no load())")
        self.sources = sources
        self.refresh = refresh
        self._rendered: dict[str, str] = {}  # per run id: this hook may serve several runs at once
        self._lock = threading.Lock()

    def render(self) -> str:
        """The memory section as it reads now."""
        blocks: list[MemoryBlock] = []
        for source in self.sources:
            loaded = source.load()
            bad = next((b for b in loaded if not isinstance(b, MemoryBlock)), None)
            if bad is not None:
                what = f"{type(source).__name__}.load() gave a {type(bad).__name__}"
                raise TypeError(f"{what}, not a MemoryBlock")
            blocks.extend(loaded)
        return render_memory(blocks)

    def pre_prompt(self, state: DefaultState, log: History, ctx: PromptContext, step: int) -> None:
        with self._lock:
            memory = None if self.refresh else self._rendered.get(state.run_id)
        if memory is None:
            memory = self.render()
            with self._lock:
                self._rendered[state.run_id] = memory
        if memory:
            ctx.system = f"{ctx.system}\n\n{memory}" if ctx.system else memory

    def on_loop_end(self, state: DefaultState, log: History, ctx: PromptContext, llm: Any) -> None:
        with self._lock:
            self._rendered.pop(state.run_id, None)
