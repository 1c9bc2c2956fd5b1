"""Writes a canary file on import: proves that looking at this cartridge ran its code."""

import os
from pathlib import Path

_where = os.environ.get("LOOPLET_TEST_CANARY_DIR")
if _where:
    Path(_where, "helpers.imported").write_text("imported\n")
