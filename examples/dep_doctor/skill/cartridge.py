"""The Dependency Doctor cartridge: the example's agent, built for ``python -m looplet run``.

The run's workspace is the project to audit. The tools, tables and scripted
model live in the ``doctor`` package and ``data/`` beside this file (a
cartridge may use only files inside its folder); ``examples/dep_doctor/agent.py``
imports them from here, so there is one copy.
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
MAX_STEPS = 20


def load_package(folder: Path, prefix: str) -> ModuleType:
    """Import the package in `folder` under a name unique to that folder, once per process.

    A plain ``import doctor`` would need the folder on ``sys.path`` and could
    pick up, or shadow, a host module of the same name; a unique name can do
    neither.
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


doctor = load_package(HERE / "doctor", "_dep_doctor")


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
