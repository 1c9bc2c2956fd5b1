"""The docs cannot rot: every Python block in README.md and docs/*.md runs, and shown output is real output.

The rules, each enforced by a test below:

- Every fenced block declares a language we know. A Python block (``python``,
  ``py``, ``python3``, ``py3``, any capitalisation) runs, in file order, in one
  namespace per file. An interactive ``pycon`` block cannot be checked as
  written and is refused: write the code as a Python block and what it prints
  as a text block after it.
- A Python block may opt out only with ``no-run`` in its info string
  (```` ```python no-run ````), and every such block is listed in `NO_RUN` with
  the reason it cannot run here.
- Each doc file runs at least the number of blocks in `MINIMUMS`, so a doc
  whose blocks silently stop running (a fence spelled some new way, a block
  turned into prose) fails.
- A ``text`` block that directly follows a Python block (only blank lines
  between) shows that block's output: the block's stdout must equal it, once
  what varies from run to run (timings, elapsed seconds, memory addresses) is
  normalised on both sides.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "py3"})
#: Interactive transcripts: they would need a second checker; write them as python + text instead.
REFUSED_LANGUAGES = frozenset({"pycon", "python-console", "ipython", "doctest"})
OTHER_LANGUAGES = frozenset(
    {"text", "bash", "sh", "shell", "console", "toml", "json", "yaml", "ini", "mermaid", "diff"}
)

#: Blocks that may not run here, each found by a line it contains, with the reason.
NO_RUN: dict[tuple[str, str], str] = {
    ("backends.md", 'llm = OpenAIBackend.from_env(model="gpt-4o-mini")   # OPENAI_API_KEY'): (
        "runs a whole agent against the real OpenAI API (needs a key and the network)"
    ),
    ("backends.md", 'llm = AnthropicBackend.from_env(model="claude-sonnet-4-5")'): (
        "needs ANTHROPIC_API_KEY and the anthropic SDK installed"
    ),
    ("backends.md", 'retry=RetryPolicy(),     # see "Errors and retries"'): (
        "an annotated list of every constructor option; its values are placeholders to read, "
        "and it needs the openai SDK and a key"
    ),
    ("backends.md", 'llm = OpenAIBackend.from_env(model="gpt-4o-mini", stream=True, on_text_delta=show)'): (
        "needs OPENAI_API_KEY and the openai SDK installed"
    ),
}

#: Per file: (Python blocks that must run, shown outputs that must be checked), at least.
MINIMUMS: dict[str, tuple[int, int]] = {
    "README.md": (8, 6),
    "architecture.md": (0, 0),
    "backends.md": (2, 0),
    "benchmarks.md": (0, 0),
    "hooks.md": (10, 5),
    "migrating.md": (6, 6),
    "tutorial.md": (7, 6),
}

#: Real-model calls in the docs, swapped for a scripted model so the blocks run offline.
SUBSTITUTIONS = {'OpenAIBackend.from_env(model="gpt-4o-mini")': "_scripted_greeter()"}


def _scripted_greeter() -> Any:
    """The model that the README's first agent would need: greet Alice, greet Bob, finish."""
    from looplet.testing import MockLLMBackend

    return MockLLMBackend(
        responses=[
            '{"tool": "greet", "args": {"name": "Alice"}}',
            '{"tool": "greet", "args": {"name": "Bob"}}',
            '{"tool": "done", "args": {"answer": "Greeted Alice and Bob."}}',
        ]
    )


@dataclass(frozen=True)
class Fence:
    """One fenced block: its language, the rest of its info string, its code and where it sits."""

    language: str
    options: tuple[str, ...]
    code: str
    first_line: int  # 1-based line of the opening fence
    last_line: int  # 1-based line of the closing fence

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON_LANGUAGES

    @property
    def runs(self) -> bool:
        return self.is_python and "no-run" not in self.options


_OPENING = re.compile(r"^(?P<indent>\s*)(?P<mark>`{3,}|~{3,})(?P<info>[^`]*)$")


def fences(path: Path) -> list[Fence]:
    """Every fenced block of a Markdown file, in order (fences inside list items included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Fence] = []
    i = 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, mark = len(opening["indent"]), opening["mark"]
        words = opening["info"].strip().strip("{}").lstrip(".").split()
        end = i + 1
        while end < len(lines) and not _closes(lines[end], mark):
            end += 1
        code = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[i + 1 : end])
        language = words[0].lower() if words else ""
        found.append(Fence(language, tuple(words[1:]), code + "\n", i + 1, end + 1))
        i = end + 1
    return found


def _closes(line: str, mark: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(mark[0] * len(mark)) and set(stripped) == {mark[0]}


_VARYING = [
    (re.compile(r"\[\d+(?:\.\d+)?(?:ms|s)\]"), "[TIME]"),  # pretty()'s tool time: [0.1ms], [182ms]
    (re.compile(r"\b\d+\.\d+s\b"), "SECONDSs"),  # elapsed seconds: 0.003s
    (re.compile(r"\b0x[0-9a-fA-F]{4,}\b"), "0xADDRESS"),  # object reprs
]


def normalised(text: str) -> list[str]:
    """The lines of `text` with what varies between runs replaced, trailing blanks dropped."""
    for pattern, stand_in in _VARYING:
        text = pattern.sub(stand_in, text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@dataclass
class DocRun:
    """What running one doc did: blocks run, outputs checked, and the namespace they share."""

    path: Path
    namespace: dict[str, Any]
    ran: int = 0
    checked: int = 0
    outputs: list[str] = field(default_factory=list)


def run_doc(path: Path, *, until: str | None = None) -> DocRun:
    """Run a doc's Python blocks in order; check each shown output; stop after the block holding `until`.

    Raises:
        AssertionError: a shown output differs from what its block printed.
        Exception: whatever a block raised (the traceback names ``file:line``).
    """
    run = DocRun(path, {"__name__": f"doc_{path.stem}", "_scripted_greeter": _scripted_greeter})
    previous: Fence | None = None
    printed = ""
    all_fences = fences(path)
    for fence in all_fences:
        if fence.language == "text" and previous is not None and previous.runs:
            if _adjacent(path, previous, fence):
                real, shown = normalised(printed), normalised(fence.code)
                assert real == shown, (
                    f"{path.name}:{fence.first_line}: the shown output differs from what the block "
                    f"at line {previous.first_line} prints:\n"
                    + "\n".join(difflib.unified_diff(shown, real, "shown", "printed", lineterm=""))
                )
                run.checked += 1
        if fence.runs:
            printed = _execute(path, fence, run.namespace)
            run.outputs.append(printed)
            run.ran += 1
            if until is not None and until in fence.code:
                return run
        previous = fence
    if until is not None:
        raise AssertionError(f"no Python block of {path.name} contains {until!r}")
    return run


def _adjacent(path: Path, before: Fence, after: Fence) -> bool:
    lines = path.read_text(encoding="utf-8").splitlines()
    return all(not line.strip() for line in lines[before.last_line : after.first_line - 1])


def _execute(path: Path, fence: Fence, namespace: dict[str, Any]) -> str:
    """Run one block and return what it printed; tracebacks point at the block's real lines."""
    code = fence.code
    for real, scripted in SUBSTITUTIONS.items():
        code = code.replace(real, scripted)
    shown_as = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    compiled = compile("\n" * fence.first_line + code, shown_as, "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compiled, namespace)
    return out.getvalue()


# -- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_doc_blocks_run_and_print_what_they_show(path: Path) -> None:
    """Every Python block runs; every shown output matches; no fewer than the doc's minimum."""
    run = run_doc(path)
    min_ran, min_checked = MINIMUMS[path.name]
    assert run.ran >= min_ran, f"{path.name}: only {run.ran} Python blocks ran, expected at least {min_ran}"
    assert run.checked >= min_checked, (
        f"{path.name}: only {run.checked} shown outputs were checked, expected at least {min_checked}"
    )


def test_every_doc_has_a_minimum() -> None:
    """A new doc must say how many of its blocks run, so that losing one later is noticed."""
    names = {path.name for path in DOCS}
    missing = sorted(names - MINIMUMS.keys())
    assert not missing, f"add these docs to MINIMUMS with their counts (run, checked): {missing}"
    stale = sorted(MINIMUMS.keys() - names)
    assert not stale, f"MINIMUMS lists docs that no longer exist: {stale}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_fence_declares_a_known_language(path: Path) -> None:
    """An undeclared or unknown fence could hold Python that never runs; an interactive one cannot be run."""
    for fence in fences(path):
        where = f"{path.name}:{fence.first_line}"
        assert fence.language, f"{where}: a fence without a language; say python, text, bash..."
        assert fence.language not in REFUSED_LANGUAGES, (
            f"{where}: a {fence.language} block is not checked; write a python block and a text block"
        )
        known = PYTHON_LANGUAGES | OTHER_LANGUAGES
        assert fence.language in known, f"{where}: unknown fence language {fence.language!r}"


def test_every_opt_out_is_listed_with_a_reason() -> None:
    """A ``no-run`` block must be in NO_RUN, and every NO_RUN entry must still match a block."""
    opted_out = [
        (path.name, fence) for path in DOCS for fence in fences(path) if fence.is_python and not fence.runs
    ]
    unlisted = [
        f"{name}:{fence.first_line}"
        for name, fence in opted_out
        if not any(doc == name and marker in fence.code for doc, marker in NO_RUN)
    ]
    assert not unlisted, f"no-run blocks without a listed reason: {unlisted}"
    stale = [
        key for key in NO_RUN if not any(name == key[0] and key[1] in fence.code for name, fence in opted_out)
    ]
    assert not stale, f"NO_RUN entries that match no no-run block: {stale}"
    assert all(reason.strip() for reason in NO_RUN.values())


def test_readme_opens_with_the_two_commands() -> None:
    commands = [fence.code.strip() for fence in fences(README) if fence.language == "bash"][:2]
    assert commands[0].endswith("python3 -m looplet.examples.hello_world --scripted")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, "CI must run exactly the README's second command"


# -- the checker itself, on small made-up docs ------------------------------------------------


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sample.md"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("language", ["python", "py", "python3", "Python", "py3"])
def test_a_failing_block_fails_whatever_the_python_spelling(tmp_path: Path, language: str) -> None:
    path = _doc(tmp_path, f"Intro\n\n```{language}\nassert False, 'sabotage'\n```\n")
    with pytest.raises(AssertionError, match="sabotage"):
        run_doc(path)


def test_a_wrong_shown_output_fails(tmp_path: Path) -> None:
    path = _doc(tmp_path, "```python\nprint('real')\n```\n\n```text\nimagined\n```\n")
    with pytest.raises(AssertionError, match="shown output differs"):
        run_doc(path)


def test_timings_and_addresses_do_not_count_as_differences(tmp_path: Path) -> None:
    code = "print('#1 ✓ f() → 1 item [0.4ms]', '[182ms]', '0.731s', hex(id(object())))"
    shown = "#1 ✓ f() → 1 item [0.0ms] [3ms] 0.002s 0x7f0000001234"
    path = _doc(tmp_path, f"```python\n{code}\n```\n\n```text\n{shown}\n```\n")
    assert run_doc(path).checked == 1


def test_a_text_block_after_prose_is_not_taken_for_output(tmp_path: Path) -> None:
    path = _doc(tmp_path, "```python\nprint('x')\n```\n\nA diagram:\n\n```text\n[a] -> [b]\n```\n")
    run = run_doc(path)
    assert (run.ran, run.checked) == (1, 0)


def test_no_run_blocks_and_other_languages_do_not_run(tmp_path: Path) -> None:
    path = _doc(
        tmp_path,
        "```python no-run\nraise SystemExit\n```\n\n```bash\nexit 1\n```\n\n"
        "- a list item\n\n  ```python\n  print('indented')\n  ```\n",
    )
    run = run_doc(path)
    assert (run.ran, run.outputs) == (1, ["indented\n"])


def test_blocks_share_one_namespace_in_order(tmp_path: Path) -> None:
    path = _doc(tmp_path, "```python\nx = 2\n```\n\n```py\nprint(x * 21)\n```\n\n```text\n42\n```\n")
    run = run_doc(path)
    assert (run.ran, run.checked, run.namespace["x"]) == (2, 1, 2)


def test_a_traceback_points_at_the_docs_line(tmp_path: Path) -> None:
    path = _doc(tmp_path, "Title\n\n```python\nx = 1\nraise ValueError('boom')\n```\n")
    with pytest.raises(ValueError, match="boom") as raised:
        run_doc(path)
    innermost = raised.tb
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    assert (innermost.tb_frame.f_code.co_filename, innermost.tb_lineno) == ("sample.md", 5)
