"""Replay: a recorded run re-run against its recorded model replies, and where a new run parts from it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from looplet import (
    Allow,
    BaseToolRegistry,
    DefaultState,
    FunctionBackend,
    LLMRequest,
    MockLLMBackend,
    ToolCall,
    composable_loop,
    register_done_tool,
)
from looplet.errors import ConfigError, LLMError
from looplet.provenance import ProvenanceSink
from looplet.redaction import redact_value
from looplet.replay import (
    ReplayExhausted,
    ReplayLLM,
    ReplayMismatch,
    ReplayReport,
    async_replay_loop,
    diff_runs,
    fork_recording,
    replay_loop,
    step_difference,
)

# -- recording runs --------------------------------------------------------------------


def record(root: Path, llm: Any, tools: BaseToolRegistry, **kwargs: Any) -> tuple[Path, Any]:
    """Run a loop with a `ProvenanceSink`; returns the run's directory and its result."""
    sink = ProvenanceSink(root)
    hooks = [sink, *kwargs.pop("hooks", [])]
    kwargs.setdefault("task", "Price the basket")
    loop = composable_loop(llm, tools=tools, hooks=hooks, **kwargs)
    result = loop.run()
    return sink.path_of(loop.state.run_id), result


# -- a small shop --------------------------------------------------------------------------


class Shop:
    """Tools that count how often they really ran; `discount` is the one a test changes."""

    def __init__(self, discount: float = 0.1, *, failing: bool = False) -> None:
        self.ran: list[str] = []
        self.tools = BaseToolRegistry()
        register_done_tool(self.tools)

        @self.tools.tool
        def look_up(item: str) -> dict[str, Any]:
            """Look up an item's price."""
            self.ran.append("look_up")
            return {"item": item, "price": 40}

        @self.tools.tool
        def price(total: int) -> dict[str, Any]:
            """Apply the discount."""
            self.ran.append("price")
            if failing:
                raise RuntimeError("price service down")
            return {"total": round(total * (1 - discount), 2)}


def script() -> list[Any]:
    """The model's replies: two native calls, one call as JSON text, then done."""
    return [
        ToolCall("look_up", {"item": "tea"}, call_id="c1"),
        ToolCall("look_up", {"item": "cups"}, call_id="c2"),
        json.dumps({"tool": "price", "args": {"total": 80}}),
        ToolCall("done", {"answer": "72.0"}, call_id="c4"),
    ]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    shop = Shop()
    path, result = record(tmp_path / "traces", MockLLMBackend(script()), shop.tools)
    assert result.stop_reason == "done" and len(result.steps) == 4
    return path


def replay(mode: str, path: Path, **kwargs: Any) -> tuple[list[Any], ReplayReport]:
    """Replay to the end with the sync or the async loop; returns the steps and the report."""
    if mode == "sync":
        replayed = replay_loop(path, **kwargs)
        steps = list(replayed)
        return steps, replayed.report()

    async def main() -> tuple[list[Any], ReplayReport]:
        areplay = async_replay_loop(path, **kwargs)
        out = [step async for step in areplay]
        return out, areplay.report()

    return asyncio.run(main())


MODES = ["sync", "async"]


def _calls(steps: list[Any]) -> list[tuple[str, dict[str, Any], Any, str | None]]:
    return [(s.tool_call.tool, s.tool_call.args, s.tool_result.data, s.tool_result.error) for s in steps]


# -- replay reproduces ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_replay_of_a_recorded_run_reproduces_it_step_for_step(mode: str, recorded: Path) -> None:
    shop = Shop()
    steps, report = replay(mode, recorded, tools=shop.tools)
    original = [json.loads(p.read_text()) for p in sorted((recorded / "steps").glob("*.json"))]
    assert [(s.number, s.tool_call.tool, s.tool_call.args) for s in steps] == [
        (r["number"], r["call"]["tool"], r["call"]["args"]) for r in original
    ]
    assert [s.tool_result.data for s in steps] == [r["result"]["data"] for r in original]
    assert report.identical and report.divergence is None
    assert report.steps_compared == 4 and report.mismatches == []
    assert report.result is not None and report.result.stop_reason == "done"
    assert report.result.final_answer == {"answer": "72.0"}
    assert shop.ran == ["look_up", "look_up", "price"]  # the tools really ran
    assert "reproduced 4 steps (done)" in str(report)


@pytest.mark.parametrize("mode", MODES)
def test_a_changed_tool_is_reported_at_the_step_where_it_first_differs(mode: str, recorded: Path) -> None:
    steps, report = replay(mode, recorded, tools=Shop(discount=0.5).tools)
    assert not report.identical
    divergence = report.divergence
    assert divergence is not None
    assert (divergence.step, divergence.kind, divergence.detail) == (3, "result", "different data")
    assert divergence.before is not None and "72.0" in divergence.before
    assert divergence.after is not None and "40.0" in divergence.after
    assert [s.tool_call.tool for s in steps] == ["look_up", "look_up", "price", "done"]  # same decisions
    assert str(report).endswith("diverged at step 3: different data")


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_that_now_fails_is_reported_as_error_against_data(mode: str, recorded: Path) -> None:
    _, report = replay(mode, recorded, tools=Shop(failing=True).tools)
    assert report.divergence is not None
    assert report.divergence.step == 3
    assert report.divergence.detail == "different result: data vs error (execution)"


@pytest.mark.parametrize("mode", MODES)
def test_a_hook_that_rewrites_arguments_is_reported_as_different_arguments(mode: str, recorded: Path) -> None:
    from looplet import Allow

    class Cheaper:
        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
            return Allow(updated_args={"item": "green tea"}) if call.tool == "look_up" else None

    _, report = replay(mode, recorded, tools=Shop().tools, hooks=[Cheaper()])
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (1, "args")
    assert report.divergence.detail == "different arguments to look_up: item differs"


@pytest.mark.parametrize("mode", MODES)
def test_recorded_results_replay_the_run_without_running_any_tool(mode: str, recorded: Path) -> None:
    shop = Shop(discount=0.9, failing=True)  # would differ, if it ran
    steps, report = replay(mode, recorded, tools=shop.tools, results="recorded")
    assert shop.ran == []
    assert report.identical and report.steps_compared == 4
    assert [s.tool_result.data for s in steps][2] == {"total": 72.0}


def test_results_other_than_recorded_are_refused(recorded: Path) -> None:
    with pytest.raises(ConfigError, match="results must be None"):
        replay_loop(recorded, tools=Shop().tools, results="live")  # type: ignore[arg-type]


# -- the recording runs out --------------------------------------------------------------------


def test_the_replay_backend_raises_a_clear_error_past_the_recording(recorded: Path) -> None:
    llm = ReplayLLM(recorded)
    assert llm.remaining == 4
    for _ in range(4):
        llm.complete(LLMRequest(messages=[]))
    with pytest.raises(ReplayExhausted) as info:
        llm.complete(LLMRequest(messages=[]))
    assert info.value.kind == "script_exhausted"
    assert "asked for model call 5, but the recording holds 4" in str(info.value)
    assert repr(llm) == "ReplayLLM(5/4 recorded replies used)"


@pytest.mark.parametrize("mode", MODES)
def test_a_replay_that_needs_more_model_calls_than_recorded_is_reported(mode: str, tmp_path: Path) -> None:
    shop = Shop()
    path, result = record(tmp_path, MockLLMBackend(script()), shop.tools, max_steps=2)
    assert result.stop_reason == "max_steps"
    _, report = replay(mode, path, tools=Shop().tools)  # no step budget this time
    assert report.result is not None and report.result.stop_reason == "llm_error"
    assert isinstance(report.result.error, ReplayExhausted)
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (3, "exhausted")
    assert "asked for model call 3, but the recording holds 2" in report.divergence.detail


@pytest.mark.parametrize("mode", MODES)
def test_a_done_call_blocked_in_the_replay_is_the_divergence(mode: str, recorded: Path) -> None:
    class NotYet:
        def check_done(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
            return "check the cups first"

    _, report = replay(mode, recorded, tools=Shop().tools, hooks=[NotYet()])
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (4, "result")
    assert report.divergence.detail == "different result: data vs error (blocked)"
    assert report.result is not None and isinstance(report.result.error, ReplayExhausted)


@pytest.mark.parametrize("mode", MODES)
def test_a_replay_that_stops_early_reports_the_first_missing_step(mode: str, recorded: Path) -> None:
    _, report = replay(mode, recorded, tools=Shop().tools, max_steps=2)
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (3, "missing")
    assert report.divergence.detail == "the replayed run ended (max_steps) before this step"
    assert report.divergence.after is None


def test_a_recorded_model_failure_is_raised_again(tmp_path: Path) -> None:
    shop = Shop()
    llm = MockLLMBackend([ToolCall("look_up", {"item": "tea"}, call_id="c1"), LLMError("x", kind="server")])
    path, result = record(tmp_path, llm, shop.tools)
    assert result.stop_reason == "llm_error"
    replayed = replay_loop(path, tools=Shop().tools)
    report = replayed.run()
    assert report.identical  # the same step, then the same failure
    assert isinstance(report.result and report.result.error, LLMError)
    assert report.result is not None and report.result.error is not None
    assert getattr(report.result.error, "kind", None) == "server"


# -- the prompt changed ----------------------------------------------------------------------


def test_a_changed_prompt_is_noted_and_the_recorded_reply_still_used(recorded: Path) -> None:
    replayed = replay_loop(recorded, tools=Shop().tools, system_prompt="You are terse.")
    report = replayed.run()
    assert report.identical  # same replies, same tools: same steps
    assert report.mismatches[0] == (1, "the system prompt")
    assert len(report.mismatches) == 4


def test_strict_replay_stops_at_the_first_changed_prompt(recorded: Path) -> None:
    replayed = replay_loop(recorded, tools=Shop().tools, system_prompt="You are terse.", strict=True)
    report = replayed.run()
    assert report.result is not None and report.result.stop_reason == "llm_error"
    assert isinstance(report.result.error, ReplayMismatch)
    assert "model call 1 differs from the recording in the system prompt" in str(report.result.error)
    assert report.divergence is not None and report.divergence.kind == "missing"


def test_an_unchanged_prompt_is_not_a_mismatch_in_strict_mode(recorded: Path) -> None:
    report = replay_loop(recorded, tools=Shop().tools, strict=True).run()
    assert report.identical and report.mismatches == []


# -- forks -----------------------------------------------------------------------------


def refund_tools() -> tuple[BaseToolRegistry, list[int]]:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    refunds: list[int] = []

    @tools.tool
    def look_up(order: int) -> dict[str, Any]:
        """Look up an order."""
        return {"order": order, "total": 40}

    @tools.tool
    def refund(order: int, amount: int) -> dict[str, Any]:
        """Refund an order."""
        refunds.append(amount)
        return {"refunded": amount}

    return tools, refunds


def refund_reply(request: LLMRequest) -> ToolCall:
    replies = sum(1 for m in request.messages if m.role == "assistant")
    if replies == 0:
        return ToolCall("look_up", {"order": 17}, call_id="c1")
    if replies == 1:
        return ToolCall("refund", {"order": 17, "amount": 40}, call_id="c2")
    return ToolCall("done", {"answer": "order 17 refunded"}, call_id="c3")


def second_thoughts(request: LLMRequest) -> ToolCall:
    if sum(1 for m in request.messages if m.role == "assistant") == 2:
        return ToolCall("look_up", {"order": 17}, call_id="c4")
    return ToolCall("done", {"answer": "refunded 40 of 40"}, call_id="c5")


def parent_and_fork(root: Path) -> tuple[Path, Path, DefaultState]:
    """A refund run, and a fork of it at step 3 re-run with another prompt and model."""
    tools, _ = refund_tools()
    original = DefaultState(task="Refund order 17", run_id="refund-1")
    parent, _ = record(root, FunctionBackend(refund_reply), tools, state=original, task=None)
    fork = original.fork(at_step=3)
    start = original.fork(at_step=3)
    start.run_id = fork.run_id
    child, result = record(
        root, FunctionBackend(second_thoughts), tools, state=fork, task=None, system_prompt="Double-check."
    )
    assert result.final_answer == {"answer": "refunded 40 of 40"}
    return parent, child, start


@pytest.mark.parametrize("mode", MODES)
def test_a_fork_replays_from_the_start_with_its_parents_replies(mode: str, tmp_path: Path) -> None:
    parent, child, _ = parent_and_fork(tmp_path)
    tools, refunds = refund_tools()
    steps, report = replay(mode, child, tools=tools, parent=parent, system_prompt="Double-check.")
    assert [s.tool_call.tool for s in steps] == ["look_up", "refund", "look_up", "done"]
    assert refunds == [40]
    assert report.identical and report.steps_compared == 4
    assert report.result is not None and report.result.final_answer == {"answer": "refunded 40 of 40"}


def test_a_fork_replays_from_the_state_it_started_from(tmp_path: Path) -> None:
    _, child, start = parent_and_fork(tmp_path)
    tools, refunds = refund_tools()
    replayed = replay_loop(child, tools=tools, state=start, system_prompt="Double-check.")
    report = replayed.run()
    assert refunds == []  # the inherited steps are not run again
    assert report.identical and report.steps_compared == 2
    assert report.mismatches == []


def test_a_fork_without_its_parent_is_refused_with_what_to_pass(tmp_path: Path) -> None:
    _, child, _ = parent_and_fork(tmp_path)
    with pytest.raises(ConfigError, match=r"continues 'refund-1' from step 3.*pass parent="):
        replay_loop(child, tools=refund_tools()[0])


# -- comparing values as recorded ------------------------------------------------------------


def test_a_string_the_recorder_cut_compares_by_its_sha256() -> None:
    import hashlib

    text = "x" * 100_000
    digest = hashlib.sha256(text.encode()).hexdigest()
    cut = {"truncated": True, "size": 100_000, "sha256": digest, "head": "x", "tail": "x"}
    recorded = {"call": {"tool": "read", "args": {}}, "result": {"data": {"text": cut}, "error": None}}
    same = {"call": {"tool": "read", "args": {}}, "result": {"data": {"text": text}, "error": None}}
    other = {"call": {"tool": "read", "args": {}}, "result": {"data": {"text": text + "y"}, "error": None}}
    assert step_difference(recorded, same, live=True) is None
    assert step_difference(recorded, other, live=True) == ("result", "different data")


def test_values_compare_as_json_after_the_tool_result_rule() -> None:
    recorded = {"call": {"tool": "t", "args": {"xs": [1, 2]}}, "result": {"data": {"ok": True}}}
    live = {"call": {"tool": "t", "args": {"xs": (1, 2)}}, "result": {"data": {"ok": True}}}
    assert step_difference(recorded, live, live=True) is None
    flipped = {"call": {"tool": "t", "args": {"xs": [1, 2]}}, "result": {"data": {"ok": 1}}}
    assert step_difference(recorded, flipped) == ("result", "different data")  # True is not 1


def test_a_secret_masked_in_the_recording_still_matches_the_live_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOP_API_KEY", "sk-test-abcdefghijklmnop1234")
    args = {"note": "key sk-test-abcdefghijklmnop1234"}
    live = {"call": {"tool": "t", "args": args}, "result": {"data": {}}}
    masked = redact_value(args)
    assert masked != args
    recorded = {"call": {"tool": "t", "args": masked}, "result": {"data": {}}}
    assert step_difference(recorded, live, live=True) is None


# -- the replay backend presents itself as the recorded one -----------------------------------


class NativeScript(MockLLMBackend):
    """A scripted backend that says it calls tools natively (as the SDK backends do)."""

    native_tool_calls = True


@pytest.mark.parametrize("mode", MODES)
def test_a_native_backends_hint_for_a_reply_without_a_call_is_reproduced(mode: str, tmp_path: Path) -> None:
    replies: list[Any] = ["Let me think.", ToolCall("done", {"answer": "none"}, call_id="d1")]
    path, result = record(tmp_path, NativeScript(replies), Shop().tools)
    error = result.steps[0].tool_result.error
    assert error is not None and "Use your tool-calling interface" in error
    assert ReplayLLM(path).native_tool_calls is True
    _, report = replay(mode, path, tools=Shop().tools)
    assert report.identical and report.steps_compared == 2


def test_a_text_backends_hint_is_reproduced_too(tmp_path: Path) -> None:
    replies = ["No call here.", json.dumps({"tool": "done", "args": {}})]
    path, _ = record(tmp_path, MockLLMBackend(replies), Shop().tools)
    assert ReplayLLM(path).native_tool_calls is False
    assert replay_loop(path, tools=Shop().tools).run().identical


# -- iterating a replay like a loop ---------------------------------------------------------------


def test_a_replay_left_after_a_break_reports_the_steps_it_did_not_take(recorded: Path) -> None:
    with replay_loop(recorded, tools=Shop().tools) as replayed:
        for step in replayed:
            assert replayed.divergence is None
            if step.number == 2:
                break
    assert replayed.result is not None and replayed.result.stop_reason == "cancelled"
    report = replayed.report()
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (3, "missing")
    assert replayed.llm.remaining == 2


def test_an_async_replay_is_an_async_context_manager(recorded: Path) -> None:
    async def main() -> tuple[list[str], ReplayReport]:
        async with async_replay_loop(recorded, tools=Shop(discount=0.5).tools) as replayed:
            tools = [step.tool_call.tool async for step in replayed]
            assert replayed.divergence is not None and replayed.divergence.step == 3
            assert replayed.result is not None and replayed.result.stop_reason == "done"
        return tools, replayed.report()

    tools, report = asyncio.run(main())
    assert tools == ["look_up", "look_up", "price", "done"]
    assert report.divergence is not None and report.divergence.kind == "result"


@pytest.mark.parametrize("results", [None, "recorded"])
def test_a_step_the_recording_does_not_have_is_reported_as_extra(results: Any, tmp_path: Path) -> None:
    class StopAfterFirst:
        def should_stop(self, state: Any, step: int) -> Any:
            return True

    batch = [
        ToolCall("look_up", {"item": "tea"}, call_id="c1"),
        ToolCall("look_up", {"item": "cups"}, call_id="c2"),
    ]
    shop = Shop()
    path, result = record(tmp_path, MockLLMBackend([batch]), shop.tools, hooks=[StopAfterFirst()])
    assert len(result.steps) == 1 and shop.ran == ["look_up"]  # the second call of the batch never ran
    replayed = replay_loop(path, tools=shop.tools, results=results)
    steps = list(replayed)
    report = replayed.report()
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (2, "extra")
    assert report.divergence.before is None and report.divergence.after == steps[1].pretty()
    if results == "recorded":  # the call has no recorded result: it gets an error, the tool does not run
        assert shop.ran == ["look_up"]
        assert steps[1].tool_result.error == (
            "no recorded result for call 'c2' to look_up: "
            "the replayed run made a call the recording does not have"
        )
    else:
        assert shop.ran == ["look_up", "look_up", "look_up"]


def test_errors_differ_by_kind_before_message() -> None:
    def step(kind: str, error: str) -> dict[str, Any]:
        result = {"data": None, "error": error, "error_kind": kind}
        return {"call": {"tool": "t", "args": {}}, "result": result}

    assert step_difference(step("timeout", "slow"), step("execution", "slow")) == (
        "result",
        "different error kind: timeout vs execution",
    )
    assert step_difference(step("execution", "a"), step("execution", "b")) == (
        "result",
        "different error message",
    )
    assert step_difference(step("execution", "a"), step("execution", "a")) is None


def test_request_differences_name_the_first_part_that_differs() -> None:
    from looplet.replay import request_difference

    base = {"system": "s", "tools": [], "extra": [], "messages": [{"role": "user", "content": "hi"}]}
    longer = dict(base, messages=[*base["messages"], {"role": "assistant", "content": ""}])
    assert request_difference(base, dict(base)) is None
    assert request_difference(base, longer) == "the number of messages (1 vs 2)"
    assert request_difference(base, dict(base, tools=[{"name": "x"}])) == "the tools offered"
    assert request_difference(base, dict(base, messages=[{"role": "user", "content": "yo"}])) == "message 1"


def test_a_recording_cut_short_is_replayed_up_to_where_it_stops(recorded: Path, tmp_path: Path) -> None:
    import shutil

    killed = tmp_path / "killed" / recorded.name
    shutil.copytree(recorded, killed)
    kept = []
    for line in (killed / "events.jsonl").read_text().splitlines(keepends=True):
        event = json.loads(line)
        if event["event"] == "step" and event["number"] == 3:
            break  # killed while step 3's tool ran: its model call is recorded, the step is not
        kept.append(line)
    (killed / "events.jsonl").write_text("".join(kept))
    manifest = json.loads((killed / "manifest.json").read_text())
    manifest.update(status="running", stop_reason=None, final_answer=None)
    (killed / "manifest.json").write_text(json.dumps(manifest))

    replayed = replay_loop(killed, tools=Shop().tools)
    report = replayed.run()
    assert report.steps_compared == 2
    assert report.divergence is not None
    assert (report.divergence.step, report.divergence.kind) == (3, "extra")
    assert report.divergence.detail == "the recording has no such step (the recorded run did not end)"
    assert replayed.llm.remaining == 0


def test_a_parent_with_fewer_replies_than_the_fork_inherited_is_refused(tmp_path: Path) -> None:
    _, child, _ = parent_and_fork(tmp_path / "runs")
    short, _ = record(tmp_path / "short", MockLLMBackend([ToolCall("done", {"answer": "x"})]), Shop().tools)
    with pytest.raises(ConfigError, match="holds 1 model replies; .* inherited 2 turns"):
        replay_loop(child, tools=refund_tools()[0], parent=short)


def test_an_async_replay_runs_to_its_report(recorded: Path) -> None:
    report = asyncio.run(async_replay_loop(recorded, tools=Shop().tools).run())
    assert report.identical and report.steps_compared == 4


# -- property: any scripted run replays as it was recorded ---------------------------------------


def test_any_scripted_run_replays_as_it_was_recorded() -> None:
    """Scripts of data, errors (unknown tool, wrong argument type, a tool that raises) and
    replies without a call, in single calls and batches: the replay takes the same steps."""
    import tempfile
    from collections import Counter

    from hypothesis import event, given, settings
    from hypothesis import strategies as st

    from looplet import LoopConfig

    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
    call: st.SearchStrategy[tuple[str, dict[str, Any]]] = st.one_of(
        st.builds(lambda item: ("look_up", {"item": item}), text),
        st.builds(lambda total: ("price", {"total": total}), st.integers(-(10**6), 10**6)),
        st.builds(lambda total: ("price", {"total": total}), text),  # wrong type: validation error
        st.just(("lookup", {"item": "tea"})),  # unknown tool
        st.just(("explode", {})),  # raises
    )
    reply = st.one_of(st.lists(call, min_size=1, max_size=3), text.map(lambda t: f"no call: {t}"))
    seen: Counter[str] = Counter()

    def tools() -> BaseToolRegistry:
        shop = Shop()

        @shop.tools.tool
        def explode() -> str:
            """Always fails."""
            raise ValueError("kaboom")

        return shop.tools

    @settings(max_examples=60, deadline=None)
    @given(st.lists(reply, min_size=1, max_size=4))
    def replays_the_same(replies: list[Any]) -> None:
        script_items: list[Any] = []
        for turn, item in enumerate(replies):
            if isinstance(item, str):
                script_items.append(item)
            else:
                script_items.append([ToolCall(t, a, call_id=f"t{turn}_{i}") for i, (t, a) in enumerate(item)])
        script_items.append(ToolCall("done", {"answer": "ok"}, call_id="end"))
        with tempfile.TemporaryDirectory() as root:
            config = LoopConfig(max_no_tool_calls=10)
            path, result = record(Path(root), MockLLMBackend(script_items), tools(), config=config)
            report = replay_loop(path, tools=tools(), config=config).run()
            assert report.identical, str(report)
            assert report.steps_compared == len(result.steps)
            assert report.result is not None and report.result.stop_reason == result.stop_reason
        for step in result.steps:
            kind = "text" if not step.tool_call.tool else ("error" if step.tool_result.error else "data")
            seen[kind] += 1
            event(kind)

    replays_the_same()
    assert seen["data"] >= 30 and seen["error"] >= 30 and seen["text"] >= 10, seen


# -- fork_recording ----------------------------------------------------------------------


def _noting_tools(log: list[str], suffix: str = "") -> BaseToolRegistry:
    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool
    def note(text: str) -> dict[str, int | str]:
        """Keep a note."""
        log.append(text)
        return {"kept": len(log), "as": text + suffix}

    return tools


def _noting_model(request: Any) -> ToolCall:
    turn = sum(1 for m in request.messages if m.role == "assistant")
    if turn < 3:
        return ToolCall("note", {"text": f"n{turn}"}, call_id=f"c{turn}")
    return ToolCall("done", {"answer": "careful" if "careful" in request.system else "plain"}, call_id="cd")


def _recorded_notes(root: Path) -> tuple[Path, str]:
    sink = ProvenanceSink(root)
    loop = composable_loop(
        FunctionBackend(_noting_model), tools=_noting_tools([]), hooks=[sink], task="notes"
    )
    loop.run()
    return sink.path_of(loop.state.run_id), loop.state.run_id


def test_a_fork_of_a_recording_replays_the_steps_before_it_and_continues_from_there(tmp_path: Path) -> None:
    recorded, run_id = _recorded_notes(tmp_path / "t")
    redone: list[str] = []
    state = fork_recording(recorded, 3, tools=_noting_tools(redone))
    assert redone == ["n0", "n1"]  # the side effects before the fork, done again
    assert (state.parent_run_id, state.forked_at, len(state.steps)) == (run_id, 3, 2)
    assert state.run_id != run_id and "fork_replay" not in state.metadata
    sink = ProvenanceSink(tmp_path / "t")
    loop = composable_loop(
        FunctionBackend(_noting_model),
        tools=_noting_tools(redone),
        hooks=[sink],
        state=state,
        system_prompt="be careful",
    )
    assert [s.number for s in loop] == [3, 4] and loop.result.final_answer == {"answer": "careful"}
    diff = diff_runs(recorded, sink.path_of(state.run_id))
    assert diff.relation == "B is a fork of A at step 3"
    assert [(p.number, p.same, p.shared) for p in diff.pairs] == [
        (1, True, True),
        (2, True, True),
        (3, True, False),
        (4, False, False),
    ]


def test_a_fork_at_the_first_step_replays_nothing(tmp_path: Path) -> None:
    recorded, run_id = _recorded_notes(tmp_path / "t")
    redone: list[str] = []
    state = fork_recording(recorded, 1, tools=_noting_tools(redone))
    assert redone == [] and state.steps == [] and (state.parent_run_id, state.forked_at) == (run_id, 1)
    assert state.task == "notes"


def test_a_result_that_now_differs_before_the_fork_is_kept_and_said(tmp_path: Path) -> None:
    recorded, _ = _recorded_notes(tmp_path / "t")
    state = fork_recording(recorded, 3, tools=_noting_tools([], suffix="!"))
    assert state.steps[0].tool_result.data == {"kept": 1, "as": "n0!"}  # what happened now
    assert state.metadata["fork_replay"].startswith("the same calls, but a result differs first at step 1")


def test_a_fork_whose_replay_makes_other_calls_is_refused(tmp_path: Path) -> None:
    recorded, _ = _recorded_notes(tmp_path / "t")

    class Rewrite:
        def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
            return Allow(updated_args={"text": "other"}) if tool_call.tool == "note" else None

    with pytest.raises(ConfigError, match="cannot fork .* at step 3: the replay parted at step 1"):
        fork_recording(recorded, 3, tools=_noting_tools([]), hooks=[Rewrite()])


@pytest.mark.parametrize("at", [0, 5, -1, True, "2"])
def test_a_fork_at_a_step_the_recording_lacks_is_refused(tmp_path: Path, at: Any) -> None:
    recorded, _ = _recorded_notes(tmp_path / "t")
    with pytest.raises(ConfigError, match=r"has steps 1\.\.4"):
        fork_recording(recorded, at, tools=_noting_tools([]))
