# Test fixture: importing this file writes a canary.
import os as _os
import pathlib as _pathlib

_pathlib.Path(_os.environ["LOOPLET_CANARY_DIR"], "escape-extends").write_text("imported")
