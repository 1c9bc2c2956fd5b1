"""Context management in real runs: threshold and overflow compaction, the summary's fallback,
the compaction record across a save and a continued run, in both loops."""

from __future__ import annotations

import json
from typing import Any

import pytest
from doubles import as_text, done

from looplet import (
    BaseToolRegistry,
    DefaultState,
    FunctionBackend,
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    MockLLMBackend,
    ToolCall,
    Usage,
    register_done_tool,
)
from looplet.context import (
    SUMMARY_HEADER,
    TRUNCATION_HEADER,
    ContextBudget,
    ContextPressureHook,
    PruneToolResults,
    SummarizeCompact,
    ThresholdCompactHook,
    TruncateCompact,
    compact_chain,
    messages_chars,
)
from looplet.prompt import PromptContext

BIG = 3000


def fetch_tools() -> BaseToolRegistry:
    """`fetch(i)`: a page of BIG characters, and `done`."""
    tools = BaseToolRegistry()

    @tools.tool
    def fetch(i: int) -> str:
        """Fetch page i."""
        return f"page {i}: " + "x" * BIG

    register_done_tool(tools)
    return tools


def fetch_script(n: int) -> list[Any]:
    return [as_text("fetch", i=i) for i in range(n)] + [done("read them all")]


def sizes(llm: Any) -> list[int]:
    return [messages_chars(list(call.messages)) for call in llm.calls]


def compactions(drive: Any) -> list[dict[str, Any]]:
    return list(drive.loop.state.metadata.get("compactions", []))


# -- ThresholdCompactHook ---------------------------------------------------------------


def test_a_long_run_compacts_its_history_and_the_prompt_stays_under_the_window(drive: Any) -> None:
    budget = ContextBudget(context_window=8000)  # 32k chars; warning at 22.4k
    llm = MockLLMBackend(fetch_script(55))
    steps, result = drive(llm, tools=fetch_tools(), hooks=[ThresholdCompactHook(budget)], max_steps=60)
    assert result.stop_reason == "done" and len(steps) == 56
    sent = sizes(llm)
    assert max(sent) < 8000 * 4  # never near the window, though 55 pages are 165k chars
    assert any(later < earlier for earlier, later in zip(sent, sent[1:], strict=False))
    records = compactions(drive)
    assert len(records) >= 2
    for record in records:
        assert record["hook"] == "ThresholdCompactHook" and record["trigger"] == "threshold"
        assert record["after_chars"] < record["before_chars"]
        assert record["estimated_tokens"] > budget.warning_tokens
    first = llm.calls[-1].messages[0]
    assert first.role == "user" and first.content == "the task"
    history = list(drive.loop.state.history)
    assert history == list(llm.calls[-1].messages) + [history[-2], history[-1]]


def test_without_the_hook_the_same_run_sends_every_page(drive: Any) -> None:
    llm = MockLLMBackend(fetch_script(55))
    _, result = drive(llm, tools=fetch_tools(), max_steps=60)
    assert result.stop_reason == "done"
    assert sizes(llm)[-1] > 55 * BIG


def test_the_providers_reported_input_tokens_trigger_compaction(drive: Any) -> None:
    """Few characters but a provider that counts many tokens: the hook trusts the provider."""
    budget = ContextBudget(context_window=100_000)
    script = iter(fetch_script(6))

    def reply(request: LLMRequest) -> LLMResponse:
        return LLMResponse(text=next(script), usage=Usage(input_tokens=10_000 * len(request.messages)))

    llm = FunctionBackend(reply)
    hook = ThresholdCompactHook(budget, compact_chain(PruneToolResults(keep_recent=1)))
    _, result = drive(llm, tools=fetch_tools(), hooks=[hook], max_steps=10)
    assert result.stop_reason == "done"
    records = compactions(drive)
    assert records, "the character estimate alone (about 6k tokens) would never fire"
    assert all(r["estimated_tokens"] > 70_000 for r in records)
    assert records[0]["stages"] == ["PruneToolResults"] and records[0]["cut_result_ids"]


def test_budget_estimate_adds_the_characters_since_the_providers_count() -> None:
    budget = ContextBudget(context_window=1000, chars_per_token=4)
    state = DefaultState(task="t")
    ctx = PromptContext(system="s" * 40, messages=[])
    log = [Message("user", "u" * 400)]
    assert budget.estimate(state, log, ctx) == 110  # (40 + 400) / 4: nothing reported yet
    budget.note_prompt(state, log, ctx)
    state.turns = 1
    state.last_turn = {"usage": Usage(input_tokens=500)}
    grown = [*log, Message("assistant", "a" * 80)]
    # 500 reported for 440 chars, then 80 chars more at that ratio
    assert budget.estimate(state, grown, ctx) == 500 + round(80 * 500 / 440)
    assert budget.chars_per_token_seen(state) == 440 / 500
    state.turns = 3  # a count for a prompt this budget did not see: characters again
    assert budget.estimate(state, grown, ctx) == 130
    assert budget.chars_per_token_seen(state) == 4


def test_budget_refuses_thresholds_out_of_order() -> None:
    with pytest.raises(ValueError, match="warning_at <= error_at"):
        ContextBudget(1000, warning_at=0.9, error_at=0.5)
    with pytest.raises(ValueError, match="context_window"):
        ContextBudget(0)


# -- overflow ---------------------------------------------------------------------------


def test_a_context_length_error_compacts_and_the_retry_succeeds(drive: Any) -> None:
    limit = 12 * BIG
    script = iter(fetch_script(15))
    refused: list[int] = []

    def reply(request: LLMRequest) -> Any:
        size = messages_chars(list(request.messages))
        if size > limit:
            refused.append(size)
            raise LLMError(f"prompt of {size} chars is too long", kind="context_length", status=400)
        return next(script)

    llm = FunctionBackend(reply)
    budget = ContextBudget(context_window=10_000_000)  # the estimate never fires: only the overflow does
    _, result = drive(llm, tools=fetch_tools(), hooks=[ThresholdCompactHook(budget)], max_steps=20)
    assert result.stop_reason == "done"
    assert refused, "the script must reach the provider's limit"
    records = compactions(drive)
    assert [r["trigger"] for r in records] == ["overflow"] * len(refused)
    after_refusal = [
        messages_chars(list(llm.calls[i + 1].messages))
        for i, call in enumerate(llm.calls[:-1])
        if messages_chars(list(call.messages)) > limit
    ]
    assert after_refusal and all(size <= limit for size in after_refusal)


def test_an_overflow_no_stage_can_shrink_stops_the_run_as_context_overflow(drive: Any) -> None:
    def reply(request: LLMRequest) -> Any:
        raise LLMError("too long", kind="context_length", status=400)

    hook = ThresholdCompactHook(ContextBudget(1_000_000))
    _, result = drive(FunctionBackend(reply), tools=fetch_tools(), hooks=[hook])
    assert result.stop_reason == "context_overflow"
    assert "no hook made the prompt smaller" in (result.detail or "")
    assert compactions(drive) == []


# -- SummarizeCompact -------------------------------------------------------------------


class Summaries:
    """A summary model: answers with `text`, or raises when `fail`."""

    def __init__(self, text: str = "", fail: bool = False) -> None:
        self.text = text
        self.fail = fail
        self.prompts: list[str] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.prompts.append(request.messages[0].content)
        if self.fail:
            raise LLMError("summary model unavailable", kind="server")
        return LLMResponse(text=self.text)


def summary_chain() -> Any:
    return compact_chain(SummarizeCompact(keep_recent=4), TruncateCompact(keep_recent=4))


def test_a_summary_replaces_the_older_turns_and_is_recorded(drive: Any) -> None:
    model = Summaries("Goal: read pages. Found: pages 0-9 are all x. Next: fetch the rest.")
    llm = MockLLMBackend(fetch_script(20))
    hook = ThresholdCompactHook(ContextBudget(8000), summary_chain(), llm=model)
    _, result = drive(llm, tools=fetch_tools(), hooks=[hook], max_steps=25)
    assert result.stop_reason == "done"
    records = compactions(drive)
    assert records and records[0]["stages"] == ["SummarizeCompact"]
    assert records[0]["summary"] == model.text
    assert records[0]["removed_call_ids"]
    assert "the task" in model.prompts[0] and "RESULT of fetch" in model.prompts[0]
    after = [call for call in llm.calls if any(m.content.startswith(SUMMARY_HEADER) for m in call.messages)]
    assert after and model.text in after[0].messages[1].content


def test_a_failing_summary_falls_back_to_truncation(drive: Any) -> None:
    model = Summaries(fail=True)
    llm = MockLLMBackend(fetch_script(20))
    hook = ThresholdCompactHook(ContextBudget(8000), summary_chain(), llm=model)
    _, result = drive(llm, tools=fetch_tools(), hooks=[hook], max_steps=25)
    assert result.stop_reason == "done"
    records = compactions(drive)
    assert model.prompts, "the summary was asked for"
    assert records and all(r["stages"] == ["TruncateCompact"] and r["summary"] is None for r in records)
    assert any(m.content.startswith(TRUNCATION_HEADER) for m in llm.calls[-1].messages)


@pytest.mark.parametrize("reply", ["", "   ", "y" * 5000])
def test_an_empty_or_too_long_summary_leaves_the_messages_to_the_next_stage(reply: str) -> None:
    calls = (ToolCall(tool="fetch", args={"i": 1}, call_id="c1"),)
    history = [
        Message("user", "the task"),
        Message("assistant", "", calls),
        Message("tool", "z" * 4000, call_id="c1", name="fetch"),
        Message("assistant", "thinking " * 50),
        Message("user", "go on"),
    ]
    stage = SummarizeCompact(keep_recent=1, max_summary_chars=2000)
    assert stage(history, 100, Summaries(reply)) is history


def test_a_text_only_model_can_write_the_summary() -> None:
    class Text:
        def generate(self, prompt: str, **kwargs: Any) -> str:
            return "short summary"

    calls = (ToolCall(tool="fetch", args={"i": 1}, call_id="c1"),)
    history = [
        Message("user", "the task"),
        Message("assistant", "", calls),
        Message("tool", "z" * 4000, call_id="c1", name="fetch"),
        Message("user", "go on"),
    ]
    out = SummarizeCompact(keep_recent=1)(history, 100, Text())
    assert out == [history[0], Message("user", f"{SUMMARY_HEADER}\nshort summary"), history[-1]]


# -- the record across a save and a continued run ---------------------------------------


def test_the_compaction_record_survives_a_save_and_a_continued_run_sends_the_compacted_history(
    drive: Any,
) -> None:
    llm = MockLLMBackend(fetch_script(30))
    hook = ThresholdCompactHook(ContextBudget(8000), compact_chain(TruncateCompact(keep_recent=4)))
    drive.take(llm, 20, tools=fetch_tools(), hooks=[hook], max_steps=40)
    state = drive.loop.state
    assert state.metadata["compactions"]
    saved = json.loads(json.dumps(state.to_dict()))
    restored = DefaultState.from_dict(saved)
    assert restored.metadata["compactions"] == state.metadata["compactions"]
    assert list(restored.history) == list(state.history)
    removed = {cid for r in restored.metadata["compactions"] for cid in r["removed_call_ids"]}
    assert removed

    later = MockLLMBackend([done("continued")])
    _, result = drive(later, tools=fetch_tools(), state=restored, max_steps=40)
    assert result.stop_reason == "done"
    first = list(later.calls[0].messages)
    assert first == list(state.history)
    assert any(m.content.startswith(TRUNCATION_HEADER) for m in first)
    assert not {c.call_id for m in first for c in m.tool_calls} & removed


# -- ContextPressureHook -----------------------------------------------------------------


def test_pressure_trims_old_oversized_results_and_keeps_the_recent_ones(drive: Any) -> None:
    llm = MockLLMBackend(fetch_script(12))
    hook = ContextPressureHook(ContextBudget(8000), keep_recent=2, max_result_chars=1000)
    _, result = drive(llm, tools=fetch_tools(), hooks=[hook], max_steps=20)
    assert result.stop_reason == "done"
    records = compactions(drive)
    assert records and records[0]["hook"] == "ContextPressureHook" and records[0]["trigger"] == "warning"
    assert all(r["removed_call_ids"] == [] and r["cut_result_ids"] for r in records)
    results = [m for m in llm.calls[-1].messages if m.role == "tool"]
    assert len(results) == 12
    assert all(len(m.content) > BIG for m in results[-2:])
    cut = [m for m in results if m.content.startswith("[result of fetch cut: ")]
    assert cut and cut == results[: len(cut)]  # the oldest go first, and only while under pressure
    assert len(cut) <= 10
    assert max(sizes(llm)) < 8000 * 4


def test_a_fork_after_compaction_keeps_the_compacted_history_and_its_record(drive: Any) -> None:
    llm = MockLLMBackend(fetch_script(20))
    hook = ThresholdCompactHook(ContextBudget(8000), compact_chain(TruncateCompact(keep_recent=4)))
    _, result = drive(llm, tools=fetch_tools(), hooks=[hook], max_steps=30)
    state = drive.loop.state
    assert result.stop_reason == "done" and state.metadata["compactions"]
    fork = state.fork(at_step=len(state.steps))
    assert fork.metadata["compactions"] == state.metadata["compactions"]
    assert list(fork.history) == list(state.history)[: len(fork.history)]
    assert any(m.content.startswith(TRUNCATION_HEADER) for m in fork.history)
    later = MockLLMBackend([done("forked")])
    _, forked = drive(later, tools=fetch_tools(), state=fork, max_steps=30)
    assert forked.stop_reason == "done"
    assert list(later.calls[0].messages) == list(fork.history)[: len(later.calls[0].messages)]


def test_an_async_summary_backend_is_not_awaited_and_the_stage_falls_back() -> None:
    class AsyncModel:
        async def complete(self, request: LLMRequest) -> LLMResponse:
            return LLMResponse(text="never read")

    calls = (ToolCall(tool="fetch", args={"i": 1}, call_id="c1"),)
    history = [
        Message("user", "the task"),
        Message("assistant", "", calls),
        Message("tool", "z" * 4000, call_id="c1", name="fetch"),
        Message("user", "go on"),
    ]
    assert SummarizeCompact(keep_recent=1)(history, 100, AsyncModel()) is history


def test_a_summary_too_small_to_be_worth_it_costs_no_model_call() -> None:
    asked: list[str] = []

    class Counting:
        def generate(self, prompt: str) -> str:
            asked.append(prompt)
            return "short summary"

    call = ToolCall("fetch", {"url": "u"}, call_id="c1")
    small = [
        Message("user", "the task"),
        Message("assistant", "", (call,)),
        Message("tool", "tiny result", call_id="c1", name="fetch"),
        Message("assistant", "last words"),
    ]
    stage = SummarizeCompact(keep_recent=1, llm=Counting())
    assert stage(small, target_chars=10) == small and asked == [], "too little to summarize: no call"
    big = [*small[:2], Message("tool", "x" * 3000, call_id="c1", name="fetch"), small[3]]
    out = stage(big, target_chars=10)
    limit = messages_chars(big[1:3]) // 2  # at most half of what the summary replaces
    assert len(asked) == 1 and f"At most {limit} characters" in asked[0] and len(out) < len(big)


def test_the_budget_measures_a_growing_history_exactly_as_a_fresh_count() -> None:
    from looplet import History, Message
    from looplet.context import messages_chars

    budget = ContextBudget(context_window=10_000)
    ctx = PromptContext(system="s", messages=[])
    log = History([Message("user", "task")])
    for i in range(30):
        log.append(Message("tool", "r" * (i * 7), call_id=f"c{i}", name="t"))
        assert budget.prompt_chars(log, ctx) == 1 + messages_chars(list(log))
        if i == 15:  # compaction replaces the record: counted afresh
            log.replace([Message("user", "task"), Message("user", "summary")])
            assert budget.prompt_chars(log, ctx) == 1 + messages_chars(list(log))
