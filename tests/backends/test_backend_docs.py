"""docs/backends.md stays true: its Python blocks, the ones needing a server included, run against llmock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from backend_kit import reply

DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"
_FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_every_python_block_of_the_backends_doc_runs(
    llm_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_url)
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.anthropic_url)
    llm_server.script(
        reply(("greet", {"name": "Alice"})),
        reply(("greet", {"name": "Bob"})),
        reply(("done", {"answer": "Greeted Alice and Bob."})),
    )
    namespace: dict[str, Any] = {"__name__": "doc_backends"}
    blocks = _FENCE.findall(DOC.read_text())
    assert len(blocks) >= 5
    for _, code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "#1 ✓ greet(name='Alice')" in out and "#3 ✓ done(" in out
    assert "RetryPolicy(max_retries=3" in out
    namespace["llm"].close()
