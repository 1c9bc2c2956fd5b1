"""Writes a canary file on import: proves that looking at this cartridge ran its code."""

import os
from pathlib import Path

_where = os.environ.get("LOOPLET_TEST_CANARY_DIR")
if _where:
    Path(_where, "agent.imported").write_text("imported\n")

from . import helpers  # noqa: E402,F401  (so importing the entrypoint imports a helper too)


def build(runtime):
    from looplet.presets import minimal_preset

    return minimal_preset()
