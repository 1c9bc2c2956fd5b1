"""The threat-intel cartridge: the example's analyst, built for ``python -m looplet run``.

The tools, the shipped feeds and the scripted model live in the ``intel``
package and ``feeds/`` beside this file (a cartridge may use only files
inside its folder); ``examples/threat_intel/agent.py`` imports them from
here, so there is one copy. The ``feeds`` option (``runtime.options``) names
another feed folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from looplet.presets import AgentPreset

# This cartridge's own package, imported relatively: looplet finds it in the folder, under the
# cartridge's unique module name, and compiles it from source (never from a ``__pycache__``).
from . import intel

HERE = Path(__file__).resolve().parent
#: The step budget build() asks for; a host's smaller --max-steps wins.
MAX_STEPS = 25


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
