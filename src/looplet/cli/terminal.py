"""What the cartridge verbs print: one-line refusals, and a folder's own text made safe for a terminal.

A cartridge folder comes from anyone: its path, its manifest, its instructions
and the answers of a model that read them can hold escape sequences a
terminal would obey (clear the screen, hide the lines a reviewer should see,
set the window title). Every line the verbs print passes through `shown`, and
their JSON through `json_text`; every refusal is one line, through `refuse`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["shown", "json_text", "refuse", "one_line", "missing_manifest"]

#: C0 and C1 control characters other than newline and tab: escape sequences start with them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: The C1 range, which JSON leaves as it is in a string when non-ASCII text is kept.
_C1 = re.compile(r"[\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` with every control character but newline and tab replaced by ``?``."""
    return _CONTROL.sub("?", text)


def json_text(data: Any, **options: Any) -> str:
    """`data` as JSON (non-ASCII kept readable) with no raw control character left in it."""
    text = json.dumps(data, ensure_ascii=False, **options)  # escapes C0 itself
    return _C1.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def one_line(exc: BaseException) -> str:
    """An exception as one line of text: its message with line breaks folded, or its class name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def refuse(verb: str, message: str, code: int = 2) -> int:
    """Print ``looplet VERB: message`` as one line on stderr (secrets masked) and return `code`."""
    from ..redaction import redact_text

    print(f"looplet {verb}: {' '.join(shown(redact_text(message)).split())}", file=sys.stderr)
    return code


def missing_manifest(folder: Path) -> str | None:
    """Why `folder` is not worth inspecting as a cartridge (no SKILL.md in it), or None."""
    if (folder / "SKILL.md").is_file():
        return None
    return f"{folder}: no SKILL.md there (a cartridge is a folder with SKILL.md and an entrypoint)"
