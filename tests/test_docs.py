"""The README's and the docs' code blocks run, and the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Real-model lines in the docs, swapped for a scripted model so the blocks run offline.
SCRIPTED_GREETER = (
    "MockLLMBackend(responses=["
    '\'{"tool": "greet", "args": {"name": "Alice"}}\', '
    '\'{"tool": "greet", "args": {"name": "Bob"}}\', '
    '\'{"tool": "done", "args": {"answer": "Greeted Alice and Bob."}}\'])'
)
SUBSTITUTIONS = {'OpenAIBackend.from_env(model="gpt-4o-mini")': SCRIPTED_GREETER}

_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: Path, language: str) -> list[tuple[str, str]]:
    """(options, code) of each fenced block in `language`."""
    return [
        (m.group(2).strip(), m.group(3)) for m in _FENCE.finditer(path.read_text()) if m.group(1) == language
    ]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_run_in_order(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every ```python block (not marked no-run) runs, in order, in one namespace per file."""
    from looplet import MockLLMBackend

    namespace: dict[str, object] = {"__name__": f"doc_{path.stem}", "MockLLMBackend": MockLLMBackend}
    ran = 0
    for options, code in blocks(path, "python"):
        if "no-run" in options:
            continue
        for real, scripted in SUBSTITUTIONS.items():
            code = code.replace(real, scripted)
        exec(compile(code, f"{path.name}", "exec"), namespace)
        ran += 1
    if path.name == "README.md":
        assert ran >= 4
        out = capsys.readouterr().out
        assert "#1 ✓ greet(name='Alice') → greeting: 'Hello, Alice!'" in out


def test_readme_opens_with_the_two_commands() -> None:
    commands = [code.strip() for _, code in blocks(ROOT / "README.md", "bash")][:2]
    assert commands[0].endswith("python3 -m looplet.examples.hello_world --scripted")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, "CI must run exactly the README's second command"
