"""Skills and cartridges from folders: inspect without running anything, load only when trusted.

A skill is a folder with a ``SKILL.md`` (front matter and Markdown
instructions); when its front matter names an ``entrypoint`` it is also a
runnable cartridge. Folders come from anyone, so loading has two phases
(RELIABILITY J1):

1. `inspect` reads ``SKILL.md`` only, with the safe front matter reader,
   checks that every path the manifest names stays inside the folder, and
   hashes the folder's files. It runs nothing, whatever the folder holds.
2. `load_entrypoint` imports the entrypoint, and only when the caller trusts
   the folder (``trust=True``, or a `TrustList` holding its path and digest).
   It imports under a unique module name, never touches ``sys.path`` and never
   replaces a module the host already has (J2).

For lazy skills, `SkillStore` finds skills under roots, `skill_tools` gives
the model ``search_skills`` and ``activate_skill``, and `SkillHook` puts the
names and descriptions of all skills, and the instructions of the active ones
only, into the prompt.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import LoopError
from .frontmatter import MAX_FRONT_MATTER_CHARS, SkillFormatError, parse_front_matter

__all__ = [
    "SkillCard",
    "SkillFormatError",
    "SkillLoadError",
    "SkillCollisionError",
    "UntrustedSkillError",
    "inspect",
    "validate",
    "folder_digest",
    "KNOWN_KEYS",
    "PATH_KEYS",
]

SKILL_FILE = "SKILL.md"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_MAX_DESCRIPTION = 1024
_MAX_TAG = 64
_MAX_TAGS = 32
#: A folder with more files than this is refused rather than hashed.
MAX_FILES = 10_000
#: The keys format 1 gives a meaning to; others are kept and reported as warnings.
KNOWN_KEYS = frozenset({"name", "description", "tags", "entrypoint", "version"})
#: Keys whose values are paths: each must stay inside the folder, whatever else the key means.
PATH_KEYS = ("entrypoint", "extends", "tools", "hooks", "resources", "scripts", "files")
#: Folders never hashed nor searched: bytecode caches (never executed: see `load_entrypoint`) and VCS data.
_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn"})
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class UntrustedSkillError(LoopError, PermissionError):
    """Loading code from a skill folder the caller has not trusted (or whose files changed since)."""


class SkillLoadError(LoopError, ImportError):
    """A trusted cartridge's entrypoint failed while it was imported; the cause is chained."""


class SkillCollisionError(LoopError, ValueError):
    """Two skills (or a skill tool and a host tool) share a name; the message names both sources."""


@dataclass(frozen=True)
class SkillCard:
    """What `inspect` learns about a skill folder without running any of it.

    Attributes:
        name: the front matter's ``name`` ("" when missing or invalid).
        description: the one-line ``description``.
        tags: the ``tags``.
        entrypoint: the entrypoint file (inside `path`), or None for a plain skill.
        instructions: the Markdown body of SKILL.md (untrusted text).
        path: the folder, resolved.
        digest: sha256 over the folder's files (names, contents and link targets), for `TrustList`.
        problems: why the skill cannot be used; empty when it is valid.
        warnings: what is odd but harmless (unknown keys).
        version: the ``version`` value, as written (None when absent).
        metadata: the whole front matter, unknown keys included (data, never executed).
    """

    name: str
    description: str
    tags: tuple[str, ...]
    entrypoint: Path | None
    instructions: str
    path: Path
    digest: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    version: Any = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_cartridge(self) -> bool:
        """Whether the manifest names an entrypoint (valid or not)."""
        return self.entrypoint is not None

    @property
    def valid(self) -> bool:
        """Whether `problems` is empty."""
        return not self.problems

    def summary(self) -> str:
        """``name: description``, the line a prompt or a listing shows."""
        return f"{self.name}: {self.description}"


# -- inspect: no code runs -----------------------------------------------------------------


def inspect(path: str | os.PathLike[str]) -> SkillCard:
    """Read a skill folder's SKILL.md and check it, without running or importing anything.

    Never raises for a bad folder: what is wrong is in ``card.problems``
    (so a listing can show invalid skills beside valid ones).
    """
    folder = Path(path).resolve()
    problems: list[str] = []
    data: dict[str, Any] = {}
    body = ""
    parsed = True
    try:
        data, body = parse_front_matter(_read_manifest(folder))
    except SkillFormatError as exc:
        problems.append(f"{SKILL_FILE}: {exc}")
        parsed = False
    digest, tree_problems = _digest_and_links(folder)
    problems += tree_problems
    name = _text_field(data, "name", problems, required=parsed)
    if name and not _NAME.fullmatch(name):
        problems.append(f"name {name!r} must match [a-z0-9][a-z0-9-]{{0,63}}")
    description = _text_field(data, "description", problems, required=parsed)
    if description and ("\n" in description or len(description) > _MAX_DESCRIPTION):
        problems.append(f"description must be one line of at most {_MAX_DESCRIPTION} characters")
    entrypoint = _entrypoint(folder, data.get("entrypoint"), problems)
    for key in PATH_KEYS[1:]:
        if key in data:
            _check_paths(folder, key, data[key], problems)
    return SkillCard(
        name=name if name and _NAME.fullmatch(name) else "",
        description=description,
        tags=_tags(data.get("tags"), problems),
        entrypoint=entrypoint,
        instructions=body,
        path=folder,
        digest=digest,
        problems=tuple(problems),
        warnings=tuple(f"unknown key {key!r} (kept, not used)" for key in data if key not in KNOWN_KEYS),
        version=data.get("version"),
        metadata=data,
    )


def validate(path: str | os.PathLike[str]) -> list[str]:
    """The problems of a skill folder, then its warnings (prefixed ``warning:``); empty when all is well.

    Like `inspect`, runs nothing. A folder is usable when no line lacks the ``warning:`` prefix.
    """
    card = inspect(path)
    return list(card.problems) + [f"warning: {text}" for text in card.warnings]


def _read_manifest(folder: Path) -> str:
    """SKILL.md's text: a regular file inside the folder, read with a size cap and never through a link."""
    if not folder.is_dir():
        raise SkillFormatError(f"{folder} is not a folder")
    manifest = folder / SKILL_FILE
    try:
        fd = os.open(manifest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SkillFormatError(f"no {SKILL_FILE} in {folder}") from None
    except OSError as exc:
        raise SkillFormatError(f"cannot open {SKILL_FILE} (a link, or unreadable): {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SkillFormatError(f"{SKILL_FILE} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_FRONT_MATTER_CHARS * 4 + 1)
    finally:
        os.close(fd)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SkillFormatError(f"{SKILL_FILE} is not UTF-8 (byte {exc.start})") from None


def _text_field(data: dict[str, Any], key: str, problems: list[str], *, required: bool) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            problems.append(f"{key} is required")
        return ""
    if not isinstance(value, str):
        problems.append(f"{key} must be a string, got {type(value).__name__}")
        return ""
    return value


def _tags(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append("tags must be a list, e.g. tags: [coding, tests]")
        return ()
    tags = tuple(item for item in value if isinstance(item, str) and 0 < len(item) <= _MAX_TAG)
    if len(tags) != len(value) or len(tags) > _MAX_TAGS:
        problems.append(f"tags must be at most {_MAX_TAGS} non-empty strings of up to {_MAX_TAG} characters")
    return tags[:_MAX_TAGS]


def _entrypoint(folder: Path, value: Any, problems: list[str]) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"entrypoint must be a relative path, got {type(value).__name__}")
        return folder  # still a cartridge (an invalid one), and a path that names nothing outside
    target = _inside(folder, "entrypoint", value, problems)
    if target is None:
        return folder
    if target.suffix != ".py":
        problems.append(f"entrypoint {value!r} must be a .py file")
    elif not _is_regular_file(target):
        problems.append(f"entrypoint {value!r} is not a file in the folder")
    return target


def _check_paths(folder: Path, key: str, value: Any, problems: list[str]) -> None:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not isinstance(item, str):
            problems.append(f"{key} must name relative paths, got {type(item).__name__}")
        else:
            _inside(folder, key, item, problems)


def _inside(folder: Path, key: str, value: str, problems: list[str]) -> Path | None:
    """The path `value` names inside `folder`, links resolved; None (and a problem) when it escapes."""
    reason = _path_syntax_problem(value)
    if reason is None:
        try:
            target = (folder / value).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a name too long
            reason = f"cannot be resolved ({type(exc).__name__})"
        else:
            if target == folder or target.is_relative_to(folder):
                return target
            reason = "resolves outside the folder"
    shown = value if len(value) <= 80 else value[:77] + "..."
    problems.append(f"{key} {shown!r} {reason}: every path must stay inside the skill folder")
    return None


def _path_syntax_problem(value: str) -> str | None:
    """Why `value` is not a plain relative POSIX path, judged from its text alone."""
    if not value or not value.strip():
        return "is empty"
    if not value.isprintable():
        return "holds a control character"
    if len(value) > 4096:
        return "is too long"
    if "\\" in value:
        return "uses '\\' (write paths with '/')"
    if value.startswith(("/", "~")) or _WINDOWS_DRIVE.match(value):
        return "is absolute"
    if _URL_SCHEME.match(value):
        return "looks like a URL"
    if ".." in PurePosixPath(value).parts:
        return "climbs out with '..'"
    return None


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def folder_digest(path: str | os.PathLike[str]) -> str:
    """sha256 over a folder's files (sorted names, contents, link targets); opens only regular files.

    ``__pycache__`` and VCS folders are left out: looplet never executes
    bytecode from a skill folder, so they cannot change what runs.
    """
    return _digest_and_links(Path(path).resolve())[0]


def _digest_and_links(folder: Path) -> tuple[str, list[str]]:
    """The folder digest, and the problems seen while walking: links out, odd files, too many files."""
    problems: list[str] = []
    entries: list[tuple[str, bytes]] = []
    for relative, full in _walk(folder, problems):
        entries.append((relative, _entry_fingerprint(folder, relative, full, problems)))
    total = hashlib.sha256(b"looplet-skill-digest-1\0")
    for relative, fingerprint in sorted(entries):
        total.update(relative.encode("utf-8", "surrogateescape") + b"\0" + fingerprint)
    return total.hexdigest(), problems


def _walk(folder: Path, problems: list[str]) -> Iterator[tuple[str, Path]]:
    if not folder.is_dir():
        return
    count = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(name for name in dirs if name not in _SKIPPED_DIRS)
        base = Path(root)
        linked_dirs = [name for name in dirs if (base / name).is_symlink()]
        for name in sorted([*files, *linked_dirs]):
            count += 1
            if count > MAX_FILES:
                problems.append(f"the folder holds more than {MAX_FILES:,} files")
                return
            full = base / name
            yield full.relative_to(folder).as_posix(), full


def _entry_fingerprint(folder: Path, relative: str, full: Path, problems: list[str]) -> bytes:
    try:
        info = os.lstat(full)
    except OSError:
        return b"gone"
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(full)
        try:
            resolved = full.resolve()
            outside = not (resolved == folder or resolved.is_relative_to(folder))
        except (OSError, RuntimeError):
            outside = True
        if outside:
            problems.append(f"{relative!r} is a link that resolves outside the folder")
        return b"link\0" + os.fsencode(target)
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{relative!r} is not a regular file (a FIFO, socket or device)")
        return b"special"
    return b"file\0" + _file_hash(full)


def _file_hash(path: Path) -> bytes:
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b"unreadable"
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.digest()
