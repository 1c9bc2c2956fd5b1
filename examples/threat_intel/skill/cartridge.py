"""The threat-intel cartridge: the example's analyst, built for ``python -m looplet run``.

The tools, the shipped feeds and the scripted model live in the ``intel``
package and ``feeds/`` beside this file (a cartridge may use only files
inside its folder); ``examples/threat_intel/agent.py`` imports them from
here, so there is one copy. The ``feeds`` option (``runtime.options``) names
another feed folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from looplet.presets import AgentPreset

HERE = Path(__file__).resolve().parent
#: The step budget build() asks for; a host's smaller --max-steps wins.
MAX_STEPS = 25


def load_package(folder: Path, prefix: str) -> ModuleType:
    """Import the package in `folder` under a name unique to that folder, once per process.

    A plain ``import intel`` would need the folder on ``sys.path`` and could
    pick up, or shadow, a host module of the same name; a unique name can do
    neither. (Each cartridge carries this function: it may not import from
    outside its folder.)
    """
    name = f"{prefix}_{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


intel = load_package(HERE / "intel", "_threat_intel")


def build(runtime: Any) -> AgentPreset:
    """The analyst over the shipped feeds (or ``runtime.options["feeds"]``); it prints the briefing
    when the run ends."""
    options = getattr(runtime, "options", None) or {}
    feeds = Path(options["feeds"]) if options.get("feeds") else intel.FEEDS
    limit = runtime.max_steps
    steps = min(MAX_STEPS, limit) if limit else MAX_STEPS
    preset, _briefing = intel.build_preset(feeds, max_steps=steps, print_briefing=True)
    result: AgentPreset = preset
    return result


def scripted_responses(runtime: Any) -> Callable[[Any], Any]:
    """The scripted analyst for ``--scripted`` runs (a function of the conversation)."""
    reply: Callable[[Any], Any] = intel.scripted_reply
    return reply
