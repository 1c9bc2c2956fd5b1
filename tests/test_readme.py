"""What the README's snippets promise, checked on the snippets themselves.

Every block is read from README.md and run in order (`test_docs.run_doc`, the
same runner that checks the shown outputs), up to the block holding a marker
line; the tests then inspect what those blocks left behind or reuse the
classes they define. Nothing here is a hand copy of README code.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from test_docs import README, run_doc

from looplet import ErrorKind, MockLLMBackend, composable_loop

OPENING = "loop = composable_loop(llm=llm, tools=tools, task=task, config=cfg, state=state)"
TASK_IN_STATE = 'state = DefaultState(task="Find my notes about cats.")'
FIRST_AGENT = 'task={"goal": "Greet Alice and Bob, then finish."},'
SCRIPTED = "llm = MockLLMBackend(responses=["
HOOKS = "class RetryFlakyTool:"
RETRY_DEMO = "def web_search(query: str) -> list[str]:"


def readme_upto(marker: str) -> dict[str, Any]:
    """The namespace the README's blocks leave, run in order up to the one holding `marker`."""
    return run_doc(README, until=marker).namespace


def test_the_opening_loop_breaks_at_the_error_and_its_result_ends_the_run() -> None:
    ns = readme_upto(OPENING)
    loop, state, llm = ns["loop"], ns["state"], ns["llm"]
    assert [s.tool_call.tool for s in state.steps] == ["search", "serch"]
    assert loop.result.stop_reason == "cancelled"
    assert state.stop_reason == "cancelled", "reading loop.result after the break ended the run"
    assert len(llm.calls) == 2, "nothing ran after the break"
    assert "Find my notes about cats." in llm.calls[0].messages[0].content


def test_a_task_given_through_the_state_reaches_the_model() -> None:
    ns = readme_upto(TASK_IN_STATE)
    state, llm = ns["state"], ns["llm"]
    first_call_of_this_run = llm.calls[-3]
    assert state.task == "Find my notes about cats."
    assert first_call_of_this_run.messages[0].content.strip().endswith("Find my notes about cats.")
    assert state.stop_reason == "done"


def test_your_first_agent_sends_the_task_and_finishes() -> None:
    ns = readme_upto(FIRST_AGENT)
    llm = ns["llm"]  # the scripted stand-in for OpenAIBackend.from_env(...)
    assert "goal: Greet Alice and Bob, then finish." in llm.calls[0].messages[0].content
    assert len(llm.calls) == 3
    last = ns["step"]
    assert (last.number, last.tool_call.tool, last.tool_result.ok) == (3, "done", True)


def test_the_scripted_run_reports_the_done_tools_validated_arguments() -> None:
    ns = readme_upto(SCRIPTED)
    result = ns["result"]
    assert result.final_answer == {"summary": "Greeted Alice."}
    assert result.steps[-1].tool_call.args == result.final_answer


def test_redact_pii_scrubs_what_the_model_sees_but_not_the_history() -> None:
    ns = readme_upto(HOOKS)
    tools = ns["tools"]
    llm = MockLLMBackend(responses=['{"tool": "done", "args": {"answer": "ok"}}'])
    loop = composable_loop(
        llm=llm, tools=tools, task="Write to alice@example.com about the invoice.", hooks=[ns["RedactPII"]()]
    )
    assert [s.tool_call.tool for s in loop] == ["done"]
    sent = llm.calls[0].messages
    assert all("alice@example.com" not in m.content for m in sent)
    assert "[email]" in sent[0].content
    assert "alice@example.com" in loop.history[0].content


def test_retry_flaky_tool_holds_one_retry_back_after_an_error_then_lets_it_through() -> None:
    ns = readme_upto(RETRY_DEMO)
    attempts = ns["attempts"]
    assert attempts == ["looplet", "looplet"], "the first attempt failed, the denied one never ran"
    assert ns["step"].tool_call.tool == "done"

    retry_flaky_tool = ns["RetryFlakyTool"]
    tools = ns["tools"]
    attempts.clear()
    search = '{"tool": "web_search", "args": {"query": "x"}}'
    llm = MockLLMBackend(responses=[search, search, search, '{"tool": "done", "args": {"answer": "x"}}'])
    run = list(composable_loop(llm=llm, tools=tools, task="search", hooks=[retry_flaky_tool()]))
    kinds = [s.tool_result.error_kind for s in run]
    assert kinds == [ErrorKind.EXECUTION, ErrorKind.DENIED, None, None]
    assert run[1].tool_result.retriable is True
    assert "may retry this call later" in llm.calls[2].messages[-1].content
    assert attempts == ["x", "x"]


def test_retry_flaky_tool_leaves_other_tools_alone() -> None:
    ns = readme_upto(HOOKS)
    tools = ns["tools"]
    llm = MockLLMBackend(
        responses=[
            '{"tool": "greet", "args": {"name": 5}}',
            '{"tool": "greet", "args": {"name": "Eve"}}',
            '{"tool": "done", "args": {"answer": "x"}}',
        ]
    )
    run = list(composable_loop(llm=llm, tools=tools, task="greet", hooks=[ns["RetryFlakyTool"]()]))
    assert [s.tool_result.error_kind for s in run] == [ErrorKind.VALIDATION, None, None]


def test_hello_world_example_runs_scripted() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "looplet.examples.hello_world", "--scripted"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("#1 ✓ greet(name='Alice') → greeting: 'Hello, Alice!'")
    assert lines[1].startswith("#2 ✓ greet(name='Bob') → greeting: 'Hello, Bob!'")
    assert lines[2].startswith("#3 ✓ done(answer='Greeted Alice and Bob.')")
    assert "stopped: done" in proc.stdout
