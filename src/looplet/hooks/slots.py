"""Sorting hooks into per-slot lists once, at the start of a run."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from .protocols import HOOK_METHODS, INTERCEPTOR_METHODS

_SLOTS = HOOK_METHODS + INTERCEPTOR_METHODS

__all__ = ["HookSlots"]

Bound = tuple[object, Callable[..., Any]]


class HookSlots:
    """The hooks of a run, as one list of bound methods per slot, in the user's order."""

    __slots__ = _SLOTS

    pre_loop: list[Bound]
    pre_prompt: list[Bound]
    pre_dispatch: list[Bound]
    post_dispatch: list[Bound]
    check_done: list[Bound]
    after_step: list[Bound]
    should_stop: list[Bound]
    on_loop_end: list[Bound]
    around_llm: list[Bound]
    around_tool: list[Bound]

    def __init__(self, hooks: Iterable[object] = ()) -> None:
        for name in _SLOTS:
            setattr(self, name, [])
        for hook in hooks:
            found = False
            for name in _SLOTS:
                method = getattr(hook, name, None)
                if callable(method):
                    getattr(self, name).append((hook, method))
                    found = True
            _warn_misspelled(hook, found)


#: Methods the original looplet called on hooks and this loop does not, with what replaces them.
#: A permission gate written as ``check_permission`` would otherwise be skipped without a word.
RETIRED_METHODS = {
    "check_permission": "pre_dispatch returning Deny(reason)",
    "should_compact": "pre_prompt (compact when ctx.overflow is set, editing log)",
    "build_briefing": "pre_prompt returning text or InjectContext",
    "build_prompt": "pre_prompt returning a changed PromptContext",
    "on_event": "post_dispatch (and on_loop_end)",
    "bind": "your hook's own __init__",
}


def _warn_misspelled(hook: object, found: bool) -> None:
    """Warn about methods that look like a misspelled or retired hook method (or a hook with none)."""
    import difflib

    level = caller_level()
    public = [n for n in dir(hook) if not n.startswith("_") and callable(getattr(hook, n, None))]
    for name in public:
        if name in _SLOTS:
            continue
        if name in RETIRED_METHODS:
            warnings.warn(
                f"hook {type(hook).__name__} has a method {name!r}, which the original looplet called "
                f"and this loop does not; use {RETIRED_METHODS[name]} (see docs/migrating.md)",
                stacklevel=level,
            )
            continue
        close = difflib.get_close_matches(name, _SLOTS, n=1, cutoff=0.8)
        if close:
            warnings.warn(
                f"hook {type(hook).__name__} has a method {name!r}, which is not a hook method; "
                f"did you mean {close[0]!r}?",
                stacklevel=level,
            )
    if not found:
        warnings.warn(
            f"hook {type(hook).__name__} has none of the hook methods "
            f"({', '.join(_SLOTS)}), so the loop will never call it",
            stacklevel=level,
        )


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caller_level() -> int:
    """The `stacklevel` that points a warning at the first frame outside looplet (the user's call)."""
    frame = sys._getframe(1)  # the function that will call warnings.warn (level 1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
