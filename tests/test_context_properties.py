"""Compaction properties: never larger, pairs intact on both wires, the task and recent results kept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import LLMResponse, Message, ToolCall
from looplet.backends.anthropic import anthropic_messages
from looplet.backends.openai import openai_messages
from looplet.backends.pairing import pair_tool_results
from looplet.context import (
    SUMMARY_HEADER,
    TRUNCATION_HEADER,
    PruneToolResults,
    SummarizeCompact,
    TruncateCompact,
    compact_chain,
    messages_chars,
)

SIZES = st.one_of(st.integers(0, 12), st.integers(150, 400), st.integers(1000, 5000))


@st.composite
def histories(draw: st.DrawFn) -> list[Message]:
    """A task, then turns: assistant calls (1-3, some with text) each followed by their results,
    text replies and user notes, with text from empty to 5k chars."""
    out = [Message("user", "task " + "t" * draw(SIZES))]
    for turn in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["calls", "calls", "calls", "text", "note"]))
        if kind == "text":
            out.append(Message("assistant", "a" * draw(SIZES)))
        elif kind == "note":
            out.append(Message("user", "n" * draw(SIZES)))
        else:
            n = draw(st.integers(1, 3))
            calls = tuple(
                ToolCall(tool=f"tool{k}", args={"q": "q" * draw(st.integers(0, 40))}, call_id=f"c{turn}_{k}")
                for k in range(n)
            )
            out.append(Message("assistant", "r" * draw(st.sampled_from([0, 0, 30, 600])), calls))
            for call in calls:
                error = draw(st.booleans())
                out.append(
                    Message("tool", "o" * draw(SIZES), call_id=call.call_id, name=call.tool, error=error)
                )
    return out


class Summarizer:
    """A native backend whose reply is drawn: a short summary, empty, too long, or a failure."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0

    def complete(self, request: Any) -> LLMResponse:
        self.calls += 1
        if self.behaviour == "raise":
            raise RuntimeError("the summary model is down")
        text = {"ok": "goal: g; found: f; ids: c0_0", "empty": "  ", "long": "x" * 5000}[self.behaviour]
        return LLMResponse(text=text)


class TextSummarizer:
    """A text-only model (``generate``)."""

    def generate(self, prompt: str, **kwargs: Any) -> str:
        return "summary via generate"


def stages() -> st.SearchStrategy[tuple[str, Callable[..., list[Message]], Any]]:
    """(label, stage, llm) for each stage and for chains of them."""
    prune = st.builds(PruneToolResults, st.integers(0, 4), st.integers(0, 300))
    truncate = st.builds(TruncateCompact, st.integers(0, 8))
    summarize = st.builds(SummarizeCompact, st.integers(0, 8), st.sampled_from([100, 2000]))
    llms = st.one_of(
        st.sampled_from(["ok", "empty", "long", "raise"]).map(Summarizer), st.just(TextSummarizer())
    )
    return st.one_of(
        st.tuples(st.just("prune"), prune, st.none()),
        st.tuples(st.just("truncate"), truncate, st.none()),
        st.tuples(st.just("summarize"), summarize, llms),
        st.tuples(st.just("chain"), st.builds(compact_chain, prune, truncate), st.none()),
        st.tuples(st.just("chain3"), st.builds(compact_chain, prune, summarize, truncate), llms),
    )


# -- the checkers ------------------------------------------------------------------------


def pairing_errors(messages: Sequence[Message]) -> list[str]:
    """What the providers reject: a result not among those right after its call; a call without a result."""
    errors: list[str] = []
    open_ids: set[str] = set()
    after_calls = False  # inside the run of results right after an assistant's calls
    for message in messages:
        if message.role == "tool":
            if not after_calls or message.call_id not in open_ids:
                errors.append(f"orphan result {message.call_id}")
            open_ids.discard(message.call_id)
            continue
        if open_ids:
            errors.append(f"unanswered calls {sorted(open_ids)}")
        open_ids = {c.call_id for c in message.tool_calls} if message.role == "assistant" else set()
        after_calls = bool(open_ids)
    if open_ids:
        errors.append(f"unanswered calls {sorted(open_ids)}")
    return errors


def check_openai_wire(messages: Sequence[Message]) -> None:
    """Chat Completions: each assistant's tool_calls are followed at once by one tool message per id."""
    wire = openai_messages("system", messages)
    i = 0
    while i < len(wire):
        item = wire[i]
        i += 1
        assert item["role"] != "tool", f"tool message without its call at {i - 1}"
        ids = [c["id"] for c in item.get("tool_calls") or ()]
        answered = []
        while i < len(wire) and wire[i]["role"] == "tool":
            answered.append(wire[i]["tool_call_id"])
            i += 1
        assert sorted(answered) == sorted(ids)


def check_anthropic_wire(messages: Sequence[Message]) -> None:
    """Messages API: each tool_use is answered by a tool_result leading the next user turn, and only there."""
    wire = anthropic_messages(messages)
    expected: list[str] = []
    for turn in wire:
        blocks = turn["content"]
        if turn["role"] == "assistant":
            assert not expected, f"tool_use {expected} not answered before the next assistant turn"
            expected = [b["id"] for b in blocks if b["type"] == "tool_use"]
            continue
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        leading = [b["tool_use_id"] for b in blocks[: len(results)] if b["type"] == "tool_result"]
        assert leading == results, "tool_result blocks must come first in the user turn"
        assert sorted(results) == sorted(expected)
        expected = []
    assert not expected


def check_invariants(before: list[Message], after: list[Message]) -> None:
    assert len(after) <= len(before)
    assert messages_chars(after) <= messages_chars(before)
    assert pairing_errors(after) == []
    assert pair_tool_results(after) == after  # the conversion had nothing to repair
    check_openai_wire(after)
    check_anthropic_wire(after)
    assert after[0] == before[0]  # the task


# -- properties --------------------------------------------------------------------------


def test_compaction_never_grows_and_keeps_pairs_on_the_wire() -> None:
    seen: Counter[str] = Counter()

    @given(histories(), stages(), st.floats(0, 1.2))
    @settings(max_examples=400)
    def prop(history: list[Message], labelled: tuple[str, Any, Any], fraction: float) -> None:
        label, stage, llm = labelled
        assert pairing_errors(history) == []
        target = int(messages_chars(history) * fraction)
        after = stage(list(history), target, llm)
        check_invariants(history, after)
        changed = after != history
        outcome = "shrunk" if changed else "unchanged"
        if changed and messages_chars(after) <= target:
            outcome += ", reached target"
        event(f"{label}: {outcome}")
        seen[f"{label}:{outcome.split(',')[0]}"] += 1
        if any(m.content.startswith(SUMMARY_HEADER) for m in after):
            seen["summary inserted"] += 1
        if any(m.content.startswith(TRUNCATION_HEADER) for m in after):
            seen["turns dropped"] += 1
        if any(m.role == "tool" for m in history) and len(after) < len(history):
            seen["turns with results dropped"] += 1

    prop()
    for label in ("prune", "truncate", "summarize", "chain", "chain3"):
        assert seen[f"{label}:shrunk"] >= 10, seen
        assert seen[f"{label}:unchanged"] >= 3, seen
    assert seen["summary inserted"] >= 10, seen
    assert seen["turns dropped"] >= 20, seen
    assert seen["turns with results dropped"] >= 20, seen


def test_prune_keeps_the_most_recent_results_whole() -> None:
    seen: Counter[str] = Counter()

    @given(histories(), st.integers(0, 5), st.integers(0, 300), st.floats(0, 1))
    def prop(history: list[Message], keep: int, max_chars: int, fraction: float) -> None:
        target = int(messages_chars(history) * fraction)
        after = PruneToolResults(keep_recent=keep, max_chars=max_chars)(list(history), target)
        check_invariants(history, after)
        results_before = [m for m in history if m.role == "tool"]
        results_after = [m for m in after if m.role == "tool"]
        assert [(m.call_id, m.name, m.error) for m in results_after] == [
            (m.call_id, m.name, m.error) for m in results_before
        ]
        recent = results_before[len(results_before) - keep :] if keep else []
        if recent:
            assert results_after[-len(recent) :] == recent
        cut = [a for a, b in zip(results_after, results_before, strict=True) if a != b]
        for a in cut:
            assert a.content.startswith(f"[result of {a.name} cut: ")
        if cut:
            seen["cut"] += 1
            event("some results cut")
        if cut and len(recent) == keep and keep and any(len(m.content) > max_chars for m in recent):
            seen["a big recent result survived"] += 1

    prop()
    assert seen["cut"] >= 50, seen
    assert seen["a big recent result survived"] >= 20, seen


def test_truncate_keeps_the_last_messages_turns() -> None:
    seen: Counter[str] = Counter()

    @given(histories(), st.integers(0, 8))
    def prop(history: list[Message], keep: int) -> None:
        after = TruncateCompact(keep_recent=keep)(list(history), 0)
        check_invariants(history, after)
        tail = history[len(history) - keep :] if keep else []
        if tail:
            assert after[-len(tail) :] == tail
        if after != history:
            seen["truncated"] += 1
            notes = [m for m in after if m.content.startswith(TRUNCATION_HEADER)]
            assert len(notes) == 1

    prop()
    assert seen["truncated"] >= 50, seen


def test_chain_stops_at_the_first_stage_that_reaches_the_target() -> None:
    seen: Counter[str] = Counter()

    @given(histories(), st.floats(0, 1))
    def prop(history: list[Message], fraction: float) -> None:
        target = int(messages_chars(history) * fraction)
        prune = PruneToolResults(keep_recent=1, max_chars=50)
        chain = compact_chain(prune, TruncateCompact(keep_recent=2))
        result = chain.run(history, target)
        check_invariants(history, result.messages)
        pruned = prune(list(history), target)
        if messages_chars(pruned) <= target and pruned != history:
            assert result.stages == ("PruneToolResults",)
            assert result.messages == pruned
            seen["prune was enough"] += 1
        elif "TruncateCompact" in result.stages:
            seen["fell through to truncate"] += 1

    prop()
    assert seen["prune was enough"] >= 20, seen
    assert seen["fell through to truncate"] >= 20, seen
