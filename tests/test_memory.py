"""Memory sources and `MemoryHook`: what reaches the system prompt, in what order, from which files,
and how much of the context budget it takes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from doubles import Driver
from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import BaseToolRegistry, MockLLMBackend, ToolCall, register_done_tool
from looplet.context import ContextBudget, ThresholdCompactHook
from looplet.errors import ConfigError
from looplet.history import History, Message
from looplet.memory import (
    MEMORY_HEADER,
    CallableMemorySource,
    FileMemorySource,
    MemoryBlock,
    MemoryHook,
    StaticMemorySource,
    render_memory,
)
from looplet.prompt import PromptContext
from looplet.state import DefaultState


def _tools() -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def note(text: str) -> str:
        """Write a note.

        Args:
            text: the note.
        """
        return f"noted {text}"

    register_done_tool(tools)
    return tools


def _script(notes: int) -> list[Any]:
    calls: list[Any] = [ToolCall("note", {"text": f"n{i}"}, call_id=f"c{i}") for i in range(notes)]
    return [*calls, ToolCall("done", {"answer": "ok"}, call_id="end")]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- what the model sees --------------------------------------------------------------------


def test_memory_follows_the_system_prompt_in_source_order(drive: Driver) -> None:
    llm = MockLLMBackend(_script(1))
    hook = MemoryHook(StaticMemorySource("Use tabs."), CallableMemorySource(lambda: "User: Ada."))
    _, result = drive(llm, tools=_tools(), hooks=[hook], system_prompt="You are careful.")
    assert result.stop_reason == "done"
    system = llm.calls[0].system
    assert system.startswith("You are careful.\n\n" + MEMORY_HEADER)
    assert system.index("Use tabs.") < system.index("User: Ada.")
    assert all(call.system == system for call in llm.calls)  # the same prefix on every call


def test_memory_alone_is_the_system_prompt_when_there_is_none() -> None:
    ctx = PromptContext(system="", messages=[])
    MemoryHook(StaticMemorySource("Be brief.")).pre_prompt(DefaultState(), History(), ctx, 1)
    assert ctx.system.startswith(MEMORY_HEADER) and ctx.system.endswith("Be brief.")


def test_sources_with_nothing_leave_the_system_prompt_unchanged() -> None:
    ctx = PromptContext(system="base", messages=[])
    hook = MemoryHook(StaticMemorySource("  \n"), CallableMemorySource(lambda: None))
    hook.pre_prompt(DefaultState(), History(), ctx, 1)
    assert ctx.system == "base"


def test_memory_is_read_once_per_run_unless_refreshed(drive: Driver) -> None:
    reads: list[int] = []

    def notes() -> str:
        reads.append(1)
        return f"read {len(reads)}"

    llm = MockLLMBackend(_script(2))
    drive(llm, tools=_tools(), hooks=[MemoryHook(CallableMemorySource(notes))])
    assert len(reads) == 1 and {c.system for c in llm.calls} == {llm.calls[0].system}

    reads.clear()
    llm = MockLLMBackend(_script(2))
    drive(llm, tools=_tools(), hooks=[MemoryHook(CallableMemorySource(notes), refresh=True)])
    assert len(reads) == 3
    assert [c.system.rsplit("\n", 1)[-1] for c in llm.calls] == ["read 1", "read 2", "read 3"]


def test_a_shared_hook_renders_each_run_afresh(drive: Driver) -> None:
    text = ["first"]
    hook = MemoryHook(CallableMemorySource(lambda: text[0]))
    first = MockLLMBackend(_script(0))
    drive(first, tools=_tools(), hooks=[hook])
    text[0] = "second"
    second = MockLLMBackend(_script(0))
    drive(second, tools=_tools(), hooks=[hook])
    assert first.calls[0].system.endswith("first") and second.calls[0].system.endswith("second")
    assert hook._rendered == {}  # nothing kept once the runs ended


def test_a_failing_memory_function_ends_the_run_as_a_hook_error(drive: Driver) -> None:
    def broken() -> str:
        raise RuntimeError("store down")

    llm = MockLLMBackend(_script(0))
    _, result = drive(llm, tools=_tools(), hooks=[MemoryHook(CallableMemorySource(broken))])
    assert result.stop_reason == "hook_error" and llm.calls == []


def test_a_memory_function_returning_a_non_string_is_refused() -> None:
    source = CallableMemorySource(lambda: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned int"):
        source.load()


def test_secret_values_in_memory_are_masked_before_the_model_sees_them(
    drive: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-memory-canary-5f1e2d3c4b5a69788796"
    monkeypatch.setenv("MEMORY_TEST_API_KEY", secret)
    llm = MockLLMBackend(_script(0))
    drive(llm, tools=_tools(), hooks=[MemoryHook(StaticMemorySource(f"deploy key: {secret}"))])
    assert "deploy key:" in llm.calls[0].system and secret not in llm.calls[0].system


def test_render_memory_titles_each_block_in_order() -> None:
    text = render_memory([MemoryBlock("a.md", "one\n"), MemoryBlock("b.md", " "), MemoryBlock("c.md", "two")])
    assert text.startswith(MEMORY_HEADER)
    assert "## a.md\n\none" in text and "## c.md\n\ntwo" in text and "b.md" not in text
    assert text.index("a.md") < text.index("c.md")
    assert render_memory([]) == ""


# -- the context budget ----------------------------------------------------------------------


def test_the_budget_counts_memory_in_the_prompt_size() -> None:
    budget = ContextBudget(context_window=10_000)
    log = History([Message("user", "task")])
    state = DefaultState()
    plain = PromptContext(system="base", messages=log.messages)
    with_memory = PromptContext(system="base", messages=log.messages)
    MemoryHook(StaticMemorySource("x" * 4000)).pre_prompt(state, log, with_memory, 1)
    grown = budget.prompt_chars(log, with_memory) - budget.prompt_chars(log, plain)
    assert grown == len(with_memory.system) - len("base") and grown > 4000
    assert budget.estimate(state, log, with_memory) - budget.estimate(state, log, plain) == pytest.approx(
        grown / 4, abs=1
    )


def _long_run(hooks: list[Any]) -> tuple[MockLLMBackend, DefaultState]:
    tools = BaseToolRegistry()

    @tools.tool
    def read(part: int) -> str:
        """Read a part.

        Args:
            part: which part.
        """
        return "y" * 600

    register_done_tool(tools)
    script: list[Any] = [ToolCall("read", {"part": i}, call_id=f"r{i}") for i in range(6)]
    llm = MockLLMBackend([*script, ToolCall("done", {"answer": "ok"}, call_id="end")])
    state = DefaultState()
    Driver("sync")(llm, tools=tools, hooks=hooks, state=state, task="read it all")
    return llm, state


def test_memory_counts_toward_compaction_when_listed_before_it() -> None:
    memory = MemoryHook(StaticMemorySource("m" * 6000))

    def compactor() -> ThresholdCompactHook:
        return ThresholdCompactHook(ContextBudget(context_window=3000, warning_at=0.7), target=0.6)

    _, without = _long_run([compactor()])
    llm, with_memory = _long_run([memory, compactor()])
    assert not without.metadata.get("compactions")  # the history alone never nears the window
    compactions = with_memory.metadata.get("compactions")
    assert compactions and all(c["trigger"] == "threshold" for c in compactions)
    assert "m" * 6000 in llm.calls[-1].system  # memory is never what gets compacted


# -- files up the tree -------------------------------------------------------------------------


def test_instruction_files_are_read_from_the_root_down_to_the_start(tmp_path: Path) -> None:
    _write(tmp_path / "AGENTS.md", "root rules")
    _write(tmp_path / "pkg" / "CLAUDE.md", "pkg rules")
    _write(tmp_path / "pkg" / "sub" / "AGENTS.md", "sub rules")
    _write(tmp_path / "pkg" / "sub" / "CLAUDE.md", "sub claude rules")
    _write(tmp_path / "other" / "AGENTS.md", "not on the way")
    source = FileMemorySource(tmp_path, tmp_path / "pkg" / "sub")
    blocks = source.load()
    assert [b.title for b in blocks] == [
        "AGENTS.md",
        "pkg/CLAUDE.md",
        "pkg/sub/AGENTS.md",
        "pkg/sub/CLAUDE.md",
    ]
    assert [b.text for b in blocks][0] == "root rules"


def test_nothing_above_the_root_is_read(tmp_path: Path) -> None:
    _write(tmp_path / "AGENTS.md", "above the root")
    root = tmp_path / "repo"
    _write(root / "src" / "AGENTS.md", "inside")
    assert [b.text for b in FileMemorySource(root, root / "src").load()] == ["inside"]


def test_a_symlink_out_of_the_root_is_not_followed(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside" / "secret.md", "outside text")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "AGENTS.md").symlink_to(outside)
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    _write(root / "CLAUDE.md", "inside text")
    source = FileMemorySource(root, names=("AGENTS.md", "CLAUDE.md", "linked/secret.md"))
    assert [b.text for b in source.load()] == ["inside text"]


def test_a_start_reached_through_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    root = tmp_path / "repo"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(ConfigError, match="not inside the root"):
        FileMemorySource(root, root / "escape")
    with pytest.raises(ConfigError, match="not inside the root"):
        FileMemorySource(root, tmp_path)


def test_a_file_linked_twice_in_the_root_is_read_once(tmp_path: Path) -> None:
    _write(tmp_path / "AGENTS.md", "shared rules")
    (tmp_path / "CLAUDE.md").symlink_to(tmp_path / "AGENTS.md")
    assert [b.title for b in FileMemorySource(tmp_path).load()] == ["AGENTS.md"]


def test_a_large_file_is_cut_at_the_cap_with_a_note(tmp_path: Path) -> None:
    _write(tmp_path / "AGENTS.md", "é" * 100)  # 200 bytes; a cut at an odd byte splits a character
    (block,) = FileMemorySource(tmp_path, max_bytes=51).load()
    assert block.text.startswith("é" * 25) and "\ufffd" not in block.text
    assert block.text.endswith("[AGENTS.md cut: 149 more bytes not shown]")


def test_what_is_not_a_regular_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").mkdir()
    os.mkfifo(tmp_path / "CLAUDE.md")  # opening a FIFO for reading must not wait for a writer
    assert FileMemorySource(tmp_path).load() == []


@pytest.mark.parametrize("name", ["../AGENTS.md", "/etc/passwd", "a/../../b", ""])
def test_file_names_that_could_leave_a_directory_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="relative path"):
        FileMemorySource(tmp_path, names=(name,))


def test_a_root_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        FileMemorySource(tmp_path / "missing")


def test_instruction_files_reach_the_model_through_the_hook(tmp_path: Path, drive: Driver) -> None:
    _write(tmp_path / "AGENTS.md", "Run the tests before done.")
    llm = MockLLMBackend(_script(0))
    drive(llm, tools=_tools(), hooks=[MemoryHook(FileMemorySource(tmp_path))], system_prompt="Base.")
    assert llm.calls[0].system.endswith("## AGENTS.md\n\nRun the tests before done.")


# -- the property: found up the tree, never outside the root ---------------------------------

_LEVELS = 4  # directories d0/d1/d2/d3 under a base; the root and the start are chosen among them


@st.composite
def _trees(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, str]], list[tuple[int, str, str]]]:
    root = draw(st.integers(0, _LEVELS - 1))
    start = draw(st.integers(root, _LEVELS - 1))
    files = draw(
        st.lists(st.tuples(st.integers(0, _LEVELS - 1), st.sampled_from(["AGENTS.md", "CLAUDE.md"])))
    )
    links = draw(
        st.lists(
            st.tuples(
                st.integers(0, _LEVELS - 1),
                st.sampled_from(["AGENTS.md", "CLAUDE.md"]),
                st.sampled_from(["outside", "above", "inside"]),
            ),
            max_size=2,
        )
    )
    return root, start, files, links


@settings(max_examples=120)
@given(_trees())
def test_files_are_found_on_the_way_up_and_never_outside_the_root(
    tree: tuple[int, int, list[tuple[int, str]], list[tuple[int, str, str]]],
) -> None:
    root_level, start_level, files, links = tree
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        dirs = [base.joinpath(*[f"d{i}" for i in range(level + 1)]) for level in range(_LEVELS)]
        dirs[-1].mkdir(parents=True)
        _write(base / "outside.md", "OUTSIDE")
        placed: dict[tuple[int, str], str] = {}
        for level, name in files:
            placed[(level, name)] = f"text {level} {name}"
            _write(dirs[level] / name, placed[(level, name)])
        for level, name, where in links:
            if (level, name) in placed or (dirs[level] / name).is_symlink():
                continue
            target = {
                "outside": base / "outside.md",
                "above": dirs[0] / "above.md",
                "inside": dirs[level] / "in.md",
            }
            _write(target[where], f"LINKED {where} {level}")
            (dirs[level] / name).symlink_to(target[where])
        source = FileMemorySource(dirs[root_level], dirs[start_level])
        texts = [b.text for b in source.load()]
        expected_levels = range(root_level, start_level + 1)
        expected = [
            placed[(lv, n)] for lv in expected_levels for n in ("AGENTS.md", "CLAUDE.md") if (lv, n) in placed
        ]
        got_plain = [t for t in texts if not t.startswith("LINKED")]
        assert got_plain == expected
        assert "OUTSIDE" not in texts
        for text in texts:  # every file read lies inside the root, on the way from the start up
            if text.startswith("LINKED above"):
                assert root_level == 0
            if text.startswith("LINKED inside"):
                assert int(text.split()[-1]) in expected_levels
        event(f"files in range: {min(len(expected), 3)}")
        event(f"files outside the range: {min(len(files) - len(expected), 2)}")
        if any(where == "outside" and root_level <= lv <= start_level for lv, _, where in links):
            event("a symlink out of the root on the way")
