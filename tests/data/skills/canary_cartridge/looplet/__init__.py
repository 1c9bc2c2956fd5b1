# Test fixture: importing this file writes a canary, so a test can tell whether it ran.
import os as _os
import pathlib as _pathlib

_pathlib.Path(_os.environ["LOOPLET_CANARY_DIR"], "looplet-package").write_text("imported")
