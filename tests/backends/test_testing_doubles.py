"""`looplet.testing`: the test doubles, where downstream test suites import them from."""

from __future__ import annotations

import pytest

import looplet
import looplet.testing
from looplet import BaseToolRegistry, composable_loop
from looplet.backends import mock
from looplet.tools import register_done_tool


def test_the_test_doubles_are_importable_from_looplet_testing() -> None:
    from looplet.testing import AsyncFunctionBackend, FunctionBackend, MockLLMBackend

    assert MockLLMBackend is looplet.MockLLMBackend is mock.MockLLMBackend
    assert FunctionBackend is looplet.FunctionBackend is mock.FunctionBackend
    assert AsyncFunctionBackend is looplet.AsyncFunctionBackend is mock.AsyncFunctionBackend


def test_looplet_testing_holds_everything_the_mock_module_offers() -> None:
    offered = set(mock.__all__) | {"ScriptExhaustedError"}
    assert set(looplet.testing.__all__) == offered
    for name in mock.__all__:
        assert getattr(looplet.testing, name) is getattr(mock, name)
    assert looplet.testing.ScriptExhaustedError is looplet.ScriptExhaustedError


def test_a_scripted_run_with_the_doubles_from_looplet_testing() -> None:
    from looplet.testing import MockLLMBackend, ScriptExhaustedError

    tools = BaseToolRegistry()
    register_done_tool(tools)
    llm = MockLLMBackend(['{"tool": "done", "args": {"answer": "ok"}}'])
    loop = composable_loop(llm=llm, tools=tools, task="t", max_steps=2)
    list(loop)
    assert loop.result is not None and loop.result.stop_reason == "done"
    with pytest.raises(ScriptExhaustedError):
        llm.complete(llm.calls[0])
