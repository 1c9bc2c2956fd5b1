"""Running a cartridge: a folder with a ``SKILL.md`` whose entrypoint builds an `AgentPreset`.

Loading is two-phase (RELIABILITY J1): `looplet.skills.inspect` reads the
Markdown and runs nothing; `open_cartridge` imports the entrypoint, and only
with trust. The host then builds the preset with a `CartridgeRuntime` and
fits it to its own rules (`fit_to_host`):

- **Limits come from the host.** ``runtime.max_steps`` caps the preset's
  ``max_steps`` (and its model-call cap with it); a cartridge may ask for
  fewer steps, never more.
- **Hook order (G9).** The host's gates (permission and approval hooks) run
  first, then the cartridge's own hooks, then the host's observers
  (provenance, tracing), so an observer records every decision, the
  cartridge's included. A cartridge sees none of the host's hooks in
  ``build()`` and so cannot remove or reorder them.

The output helpers `atomic_folder` and `atomic_file` are how the command line
writes cartridges and exported code: into a temporary sibling first, renamed
into place only once complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect as pyinspect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import propagates
from .presets import AgentPreset

if TYPE_CHECKING:
    from .skills import SkillCard

__all__ = [
    "CartridgeError",
    "CartridgeRuntime",
    "Cartridge",
    "open_cartridge",
    "build_preset",
    "fit_to_host",
    "make_runtime",
    "atomic_folder",
    "atomic_file",
    "blueprint",
    "BLUEPRINT_VERSION",
    "card_data",
    "checked_card",
]


class CartridgeError(Exception):
    """A cartridge cannot be opened, built or written: the message says which and why."""


@dataclass(frozen=True)
class CartridgeRuntime:
    """What the host tells a cartridge's ``build(runtime)``.

    Attributes:
        card: the cartridge's `SkillCard` (``card.instructions`` is its SKILL.md body).
        folder: the cartridge's folder (resolved).
        workspace: the directory the agent works in (created if missing).
        scripted: the run uses the cartridge's ``scripted_responses`` instead of a model.
        max_steps: the host's step cap, or None; the host clamps the preset to it.
        model: the model name the host will use, or None.
        trace_dir: where the host records the run (provenance), or None.
        options: anything else the host passes, by name.
    """

    card: SkillCard
    folder: Path
    workspace: Path
    scripted: bool = False
    max_steps: int | None = None
    model: str | None = None
    trace_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def make_runtime(
    card: SkillCard,
    *,
    workspace: str | os.PathLike[str],
    scripted: bool = False,
    max_steps: int | None = None,
    model: str | None = None,
    trace_dir: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> CartridgeRuntime:
    """A `CartridgeRuntime` for `card`, with the workspace created (and resolved) first.

    Raises:
        CartridgeError: the workspace cannot be created, or ``max_steps`` is below 1.
    """
    if max_steps is not None and (isinstance(max_steps, bool) or max_steps < 1):
        raise CartridgeError(f"max_steps must be at least 1, got {max_steps!r}")
    root = Path(workspace).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CartridgeError(f"workspace {root}: cannot be created ({exc.strerror or exc})") from None
    if not root.is_dir():
        raise CartridgeError(f"workspace {root}: is not a directory")
    return CartridgeRuntime(
        card=card,
        folder=Path(card.path).resolve(),
        workspace=root.resolve(),
        scripted=scripted,
        max_steps=max_steps,
        model=model,
        trace_dir=None if trace_dir is None else Path(trace_dir),
        options=dict(options or {}),
    )


@dataclass(frozen=True)
class Cartridge:
    """An opened (imported, trusted) cartridge: its card and its entrypoint module."""

    card: SkillCard
    module: ModuleType

    def build(
        self,
        runtime: CartridgeRuntime,
        *,
        gates: Sequence[object] = (),
        observers: Sequence[object] = (),
    ) -> AgentPreset:
        """Call the entrypoint's ``build(runtime)`` and fit the preset to the host (`fit_to_host`).

        Raises:
            CartridgeError: ``build`` raised, or returned something other than an `AgentPreset`.
        """
        build = getattr(self.module, "build", None)
        if not callable(build):
            raise CartridgeError(f"{self._where()}: defines no build(runtime) function")
        try:
            preset = build(runtime)
        except BaseException as exc:  # SystemExit too: a cartridge does not end its host
            if propagates(exc):
                raise
            raise CartridgeError(f"{self._where()}: build(runtime) failed: {_describe(exc)}") from exc
        if not isinstance(preset, AgentPreset):
            raise CartridgeError(
                f"{self._where()}: build(runtime) returned {type(preset).__name__}, not an AgentPreset"
            )
        return fit_to_host(preset, runtime, gates=gates, observers=observers)

    def scripted_llm(self, runtime: CartridgeRuntime) -> Any:
        """The backend for ``--scripted`` runs, from the entrypoint's ``scripted_responses(runtime)``.

        A list becomes a `MockLLMBackend`, a callable (request -> reply) a `FunctionBackend`.

        Raises:
            CartridgeError: the cartridge has no ``scripted_responses``, or it failed.
        """
        from .backends.mock import FunctionBackend, MockLLMBackend

        make = getattr(self.module, "scripted_responses", None)
        if not callable(make):
            raise CartridgeError(
                f"{self._where()}: has no scripted_responses(runtime), so it cannot run scripted"
            )
        try:
            script = make(runtime) if _takes_an_argument(make) else make()
        except BaseException as exc:
            if propagates(exc):
                raise
            raise CartridgeError(f"{self._where()}: scripted_responses failed: {_describe(exc)}") from exc
        if callable(script):
            return FunctionBackend(script)
        if isinstance(script, list | tuple):
            return MockLLMBackend(list(script))
        raise CartridgeError(
            f"{self._where()}: scripted_responses returned {type(script).__name__}; "
            "return a list of replies or a function of the request"
        )

    def _where(self) -> str:
        return f"cartridge {self.card.name!r} ({self.card.entrypoint})"


def open_cartridge(path: str | os.PathLike[str], *, trust: Any) -> Cartridge:
    """Inspect the folder, then import its entrypoint (only with trust: see `looplet.skills.load_entrypoint`).

    Raises:
        CartridgeError: the folder is not a valid cartridge (the card's problems are named).
        UntrustedSkillError: `trust` does not cover this folder and its digest.
    """
    from .skills import inspect, load_entrypoint

    card = inspect(path)
    return Cartridge(card, load_entrypoint(checked_card(card), trust=trust))


def checked_card(card: SkillCard) -> SkillCard:
    """`card`, when it describes a valid cartridge; otherwise a `CartridgeError` naming why not."""
    if card.problems:
        raise CartridgeError(f"{card.path}: not a valid cartridge: {'; '.join(card.problems)}")
    if not card.is_cartridge:
        raise CartridgeError(f"{card.path}: a skill, not a cartridge: its SKILL.md names no entrypoint")
    return card


def build_preset(
    card: SkillCard,
    runtime: CartridgeRuntime,
    *,
    trust: Any,
    gates: Sequence[object] = (),
    observers: Sequence[object] = (),
) -> AgentPreset:
    """Import `card`'s entrypoint (with `trust`) and build its preset, fitted to the host."""
    from .skills import load_entrypoint

    module = load_entrypoint(checked_card(card), trust=trust)
    return Cartridge(card, module).build(runtime, gates=gates, observers=observers)


def fit_to_host(
    preset: AgentPreset,
    runtime: CartridgeRuntime,
    *,
    gates: Sequence[object] = (),
    observers: Sequence[object] = (),
) -> AgentPreset:
    """A copy of `preset` within the host's limits, with the host's hooks around the cartridge's.

    The hooks become ``[*gates, *preset.hooks, *observers]``. The step cap is
    ``min(preset's, runtime.max_steps)``; an explicit model-call cap is lowered
    to the host's default one (three per step) when it is higher. The settings
    are always a copy, so a cartridge that kept its own `LoopConfig` cannot
    change them once fitted (a hook raising ``max_steps`` mid-run, say).
    """
    config = dataclasses.replace(preset.config, llm_options=dict(preset.config.llm_options))
    cap = runtime.max_steps
    if cap is not None and config.max_steps > cap:
        config = dataclasses.replace(config, max_steps=cap)
    if cap is not None and config.max_llm_calls is not None and config.max_llm_calls > 3 * cap:
        config = dataclasses.replace(config, max_llm_calls=3 * cap)
    return dataclasses.replace(preset, config=config, hooks=[*gates, *preset.hooks, *observers])


def _takes_an_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = pyinspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- writing outputs whole or not at all -----------------------------------------------------------


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to `target`; on success rename it to `target`, else remove it.

    Raises:
        CartridgeError: `target` exists (and is not an empty folder), or its parent cannot be used.
    """
    final = Path(target)
    if final.is_symlink() or (final.exists() and (not final.is_dir() or any(final.iterdir()))):
        raise CartridgeError(f"{final}: already exists; choose a new folder (nothing was written)")
    parent = final.parent if str(final.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise CartridgeError(f"{parent}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield work
        os.chmod(work, 0o755)
        if final.is_dir():
            final.rmdir()  # empty (checked above); rename() will not replace it on every platform
        os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary file path next to `target`; on success it replaces `target`, else it is removed."""
    final = Path(target)
    if final.is_dir():
        raise CartridgeError(f"{final}: is a folder; name a file (nothing was written)")
    parent = final.parent if str(final.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise CartridgeError(f"{parent}: cannot write there ({exc.strerror or exc})") from None
    os.close(fd)
    work = Path(name)
    try:
        yield work
        os.chmod(work, mode)
        os.replace(work, final)
    except BaseException:
        with contextlib.suppress(OSError):
            work.unlink()
        raise


# -- the blueprint ---------------------------------------------------------------------------------

#: The blueprint's format; raised when a key changes meaning, so a stored blueprint is compared knowingly.
BLUEPRINT_VERSION = 1


def blueprint(
    preset: AgentPreset, *, card: SkillCard | None = None, runtime: CartridgeRuntime | None = None
) -> dict[str, Any]:
    """Everything that decides how `preset` behaves, as JSON data that is the same on every machine.

    The tools (sorted by name, with their schemas and dispatch options), the
    hooks (in their run order, which matters, by module and class with their
    public settings), the settings, the system prompt, and the cartridge's
    card when given. With a `runtime`, its workspace and folder paths are
    written ``$WORKSPACE`` and ``$CARTRIDGE``, and with a card the entrypoint's
    unique module name (which holds the digest) ``$CARTRIDGE_MODULE``, so two
    machines, a temporary workspace or an edit elsewhere in the cartridge do
    not change the blueprint's other lines.
    """
    config = preset.config
    data: dict[str, Any] = {
        "blueprint": BLUEPRINT_VERSION,
        "name": preset.name,
        "description": preset.description,
        "system_prompt": preset.system_prompt
        if preset.system_prompt is not None
        else config.effective_system_prompt,
        "config": _plain(dataclasses.asdict(config)),
        "tools": [_tool_entry(spec) for spec in sorted(preset.tools, key=lambda s: s.name)],
        "hooks": [_hook_entry(hook) for hook in preset.hooks],
        "state": None if preset.state is None else _class_name(preset.state),
        "card": None if card is None else card_data(card),
    }
    names: dict[str, str] = {}
    if card is not None:
        from .skills import module_name

        names[module_name(card)] = "$CARTRIDGE_MODULE"  # the unique import name changes with every edit
    if runtime is not None:
        names[str(runtime.workspace)] = "$WORKSPACE"
        names[str(runtime.folder)] = "$CARTRIDGE"
    return _placeholders(data, names) if names else data


def card_data(card: SkillCard) -> dict[str, Any]:
    """The card as JSON data (the entrypoint relative to the folder), for blueprints and exports."""
    folder = Path(card.path)
    entry = card.entrypoint
    if entry is not None and Path(entry).is_absolute():
        with contextlib.suppress(ValueError):
            entry = Path(entry).relative_to(folder.resolve())
    return {
        "name": card.name,
        "description": card.description,
        "tags": list(card.tags),
        "entrypoint": None if entry is None else Path(entry).as_posix(),
        "digest": card.digest,
        "instructions": card.instructions,
    }


def _tool_entry(spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "parameters": _plain(spec.parameters),
        "free": spec.free,
        "done": spec.done,
        "concurrent_safe": spec.concurrent_safe,
        "idempotent": spec.idempotent,
        "timeout_s": spec.timeout_s,
    }


def _hook_entry(hook: object) -> dict[str, Any]:
    from .hooks.slots import HookSlots

    slots = HookSlots([hook])
    methods = [name for name in HookSlots.__slots__ if getattr(slots, name)]
    return {"class": _class_name(hook), "slots": methods, "settings": _settings(hook)}


def _settings(hook: object) -> dict[str, Any]:
    """The hook's public attributes: plain values as they are, anything else by its class name."""
    names: list[str] = list(getattr(hook, "__dict__", {}))
    for klass in type(hook).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    found: dict[str, Any] = {}
    for name in sorted(set(names)):
        if name.startswith("_") or not hasattr(hook, name):
            continue
        found[name] = _plain(getattr(hook, name))
    return found


def _plain(value: Any, depth: int = 0) -> Any:
    """`value` as JSON data; objects that are not plain data become ``<module.Class>``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if depth < 6 and isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 6 and isinstance(value, list | tuple | frozenset | set):
        items = [_plain(v, depth + 1) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{getattr(value, '__module__', '?')}.{value.__qualname__}>"
    return f"<{_class_name(value)}>"


def _class_name(value: object) -> str:
    klass = type(value)
    return f"{klass.__module__}.{klass.__qualname__}"


def _placeholders(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for text, name in sorted(names.items(), key=lambda item: -len(item[0])):
            value = value.replace(text, name)
        return value
    if isinstance(value, dict):
        return {k: _placeholders(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, names) for v in value]
    return value
