"""The coder cartridge: `looplet.presets.coding_agent_preset`, with this folder's SKILL.md as its guide.

    python -m looplet run examples/coder/skill "Create a tiny add function with tests" \\
        --scripted --workspace /tmp/demo

`build(runtime)` returns the preset: read, write, edit, multi_edit, list_dir,
glob, grep, bash, think and done, every path inside ``runtime.workspace``;
bash in bubblewrap when it works here (otherwise each command is asked about
on the terminal, and refused without one); ``done`` refused while the tests
fail. The host adds its own gates and the provenance record around it.

``runtime.options`` may set ``test_command`` (how the guard runs the tests,
default pytest when installed, else unittest), ``sandbox`` (``auto``,
``bwrap``, ``none``) and ``allow_bash`` (without a sandbox, run bash without
asking).

`scripted_responses(runtime)` is what a careful model does for "Create a
tiny add function with tests": the test first, a red run, the code, a green
run, done.
"""

from __future__ import annotations

from typing import Any

from looplet import ToolCall
from looplet.examples.coding_agent import ask_on_terminal
from looplet.presets import CODING_SYSTEM_PROMPT, AgentPreset, coding_agent_preset, default_test_command

#: The most steps this agent asks for; a host may allow fewer.
MAX_STEPS = 30

TEST_FILE = """import unittest

from add import add


class AddTest(unittest.TestCase):
    def test_adds_two_numbers(self):
        self.assertEqual(add(2, 3), 5)

    def test_adds_negative_numbers(self):
        self.assertEqual(add(-4, 1), -3)

    def test_adds_floats(self):
        self.assertAlmostEqual(add(0.1, 0.2), 0.3)
"""
CODE_FILE = '''def add(a, b):
    """The sum of a and b."""
    return a + b
'''


def how_to_test(runtime: Any) -> str:
    """The command the guard and the scripted model run the tests with."""
    chosen = dict(runtime.options).get("test_command")
    return str(chosen) if chosen else default_test_command()


def build(runtime: Any) -> AgentPreset:
    """The coding agent for `runtime.workspace`, guided by SKILL.md's instructions."""
    options = dict(runtime.options)
    instructions = runtime.card.instructions.strip()
    return coding_agent_preset(
        runtime.workspace,
        test_command=how_to_test(runtime),
        sandbox=str(options.get("sandbox", "auto")),
        allow_bash=bool(options.get("allow_bash", False)),
        ask_handler=ask_on_terminal,
        max_steps=MAX_STEPS,
        system_prompt=f"{CODING_SYSTEM_PROMPT}\n\n{instructions}" if instructions else None,
    )


def scripted_responses(runtime: Any) -> list[ToolCall]:
    """Test first, see it fail, write add(), see it pass, done."""
    tests = how_to_test(runtime)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("think", {"thought": "Test first: add(a, b) with a unittest file, then the code, then run both."}),
        ("list_dir", {"path": "."}),
        ("write", {"path": "test_add.py", "content": TEST_FILE}),
        ("bash", {"command": tests}),  # red: add.py does not exist yet
        ("write", {"path": "add.py", "content": CODE_FILE}),
        ("bash", {"command": tests}),  # green
        ("done", {"answer": "add.py defines add(a, b); test_add.py tests it (3 tests) and passes."}),
    ]
    return [ToolCall(tool, args, call_id=f"call_{n}") for n, (tool, args) in enumerate(steps, 1)]
