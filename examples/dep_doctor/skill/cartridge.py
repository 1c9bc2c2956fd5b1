"""The Dependency Doctor cartridge: the example's agent, built for ``python -m looplet run``.

The run's workspace is the project to audit. The tools, tables and scripted
model live in the ``doctor`` package and ``data/`` beside this file (a
cartridge may use only files inside its folder); ``examples/dep_doctor/agent.py``
imports them from here, so there is one copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from looplet.presets import AgentPreset

# This cartridge's own package, imported relatively: looplet finds it in the folder, under the
# cartridge's unique module name, and compiles it from source (never from a ``__pycache__``).
from . import doctor

HERE = Path(__file__).resolve().parent
#: The step budget build() asks for; a host's smaller --max-steps wins.
MAX_STEPS = 20


def build(runtime: Any) -> AgentPreset:
    """The doctor for ``runtime.workspace``; it prints the report card when the run ends."""
    limit = runtime.max_steps
    steps = min(MAX_STEPS, limit) if limit else MAX_STEPS
    preset, _audit = doctor.build_preset(Path(runtime.workspace), max_steps=steps, print_card=True)
    result: AgentPreset = preset
    return result


def scripted_responses(runtime: Any) -> Callable[[Any], Any]:
    """The scripted auditor for ``--scripted`` runs (a function of the conversation)."""
    reply: Callable[[Any], Any] = doctor.scripted_reply
    return reply
