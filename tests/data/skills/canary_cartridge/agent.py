# ruff: noqa: E402
# Test fixture: importing this file writes a canary, so a test can tell whether it ran.
import os as _os
import pathlib as _pathlib

_pathlib.Path(_os.environ["LOOPLET_CANARY_DIR"], "agent.py").write_text("imported")

import json  # the host's json, not the json.py beside this file
import typing  # the host's typing

import looplet  # the host's looplet, not the looplet/ folder beside this file

from . import helpers  # a helper module beside the entrypoint, imported relatively
from .lib.words import GREETING  # a helper package

JSON_FILE = json.__file__
TYPING_FILE = typing.__file__
LOOPLET_FILE = looplet.__file__
HELPER_VALUE = helpers.VALUE


def build(runtime: object) -> object:
    from looplet.presets import minimal_preset

    preset = minimal_preset(system_prompt=GREETING)
    preset.name = "canary-cartridge"
    return preset


def late_helper() -> str:
    """Imports a helper after the load, when the import machinery is back to normal."""
    from . import late

    return str(late.VALUE)
