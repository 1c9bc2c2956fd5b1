"""Context management: shrink the one history record before the prompt outgrows the model.

A stage is a callable ``stage(messages, target_chars, llm=None) -> messages``
that returns a list no larger than the one it was given (in characters and in
messages) and never splits a tool call from its result: both providers reject
such a history with HTTP 400. `compact_chain` runs stages in order until one
reaches the target. `ThresholdCompactHook` and `ContextPressureHook` are
``pre_prompt`` hooks that apply them to ``log`` (so what is compacted is what
the model stops seeing, and what a checkpoint saves) and write each compaction
to ``state.metadata["compactions"]``.

Sizes are measured in characters (`message_chars`): text, plus each tool call's
name and JSON arguments. Token estimates divide characters by
`ContextBudget.chars_per_token` unless the provider reported a count.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .backends.protocol import LLMRequest
from .history import History, Message

if TYPE_CHECKING:
    from .prompt import PromptContext
    from .state import DefaultState

__all__ = [
    "Stage",
    "PruneToolResults",
    "TruncateCompact",
    "SummarizeCompact",
    "CompactChain",
    "ChainResult",
    "compact_chain",
    "ContextBudget",
    "ThresholdCompactHook",
    "ContextPressureHook",
    "message_chars",
    "messages_chars",
    "pairing_problem",
    "SUMMARY_HEADER",
    "TRUNCATION_HEADER",
]

log_ = logging.getLogger(__name__)

#: A compaction stage: returns a list no larger than `messages`, pairing intact.
Stage = Callable[..., list[Message]]

#: The first line of the message `SummarizeCompact` puts in place of the older turns.
SUMMARY_HEADER = "[Summary of earlier turns, written to save context]"
#: The first words of the notice `TruncateCompact` puts in place of the dropped turns.
TRUNCATION_HEADER = "[Context trimmed:"


# -- sizes and pairing ------------------------------------------------------------------


def message_chars(message: Message) -> int:
    """Characters `message` puts in a prompt: its text and each call's name and JSON arguments."""
    size = len(message.content)
    for call in message.tool_calls:
        size += len(call.tool) + len(json.dumps(call.args, default=str, ensure_ascii=False))
    return size


def messages_chars(messages: Sequence[Message]) -> int:
    """Total `message_chars` of a conversation."""
    return sum(message_chars(m) for m in messages)


def pairing_problem(messages: Sequence[Message]) -> str | None:
    """Why the providers would reject `messages` (a call without its result, or a result
    not right after its call), or None when every pair is in place."""
    i, n = 0, len(messages)
    while i < n:
        message = messages[i]
        i += 1
        if message.role == "tool":
            return f"the result of {message.call_id!r} does not follow its call"
        if message.role != "assistant" or not message.tool_calls:
            continue
        pending = {c.call_id for c in message.tool_calls}
        while i < n and messages[i].role == "tool":
            if messages[i].call_id not in pending:
                return f"the result of {messages[i].call_id!r} does not follow its call"
            pending.discard(messages[i].call_id)
            i += 1
        if pending:
            return f"the call {sorted(pending)[0]!r} has no result"
    return None


def _task_index(messages: Sequence[Message]) -> int:
    """Index of the first user message (the task), or -1 when there is none."""
    return next((i for i, m in enumerate(messages) if m.role == "user"), -1)


def _units(messages: Sequence[Message]) -> list[list[int]]:
    """The messages grouped into removable units: an assistant turn with all its results,
    or any other single message. Removing a whole unit can never orphan a call or result."""
    units: list[list[int]] = []
    owner: dict[str, int] = {}  # call id -> its unit's index in `units`
    for i, message in enumerate(messages):
        if message.role == "tool" and message.call_id in owner:
            units[owner[message.call_id]].append(i)
            continue
        units.append([i])
        for call in message.tool_calls if message.role == "assistant" else ():
            owner[call.call_id] = len(units) - 1
    return units


def _droppable(messages: Sequence[Message], keep_recent: int) -> list[list[int]]:
    """Units, oldest first, that may go: not the task (nor before it), not in the last
    `keep_recent` messages."""
    task = _task_index(messages)
    recent = len(messages) - max(keep_recent, 0)
    return [u for u in _units(messages) if min(u) > task and max(u) < recent]


def _without(messages: Sequence[Message], drop: set[int], note: Message | None) -> list[Message]:
    """`messages` without the indices in `drop`; `note` stands where the first of them was."""
    out: list[Message] = []
    first = min(drop) if drop else -1
    for i, message in enumerate(messages):
        if i == first and note is not None:
            out.append(note)
        if i not in drop:
            out.append(message)
    return out


def _smaller(before: Sequence[Message], after: list[Message]) -> bool:
    return len(after) <= len(before) and messages_chars(after) < messages_chars(before)


# -- stages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneToolResults:
    """Replace old tool results by a one-line stub, oldest first, until the target is met.

    Old results are the bulk of a long run's prompt and the model rarely needs
    them verbatim once it acted on them; the stub keeps the call id, tool name
    and error flag, so pairing and the record of what happened stay intact.

    Args:
        keep_recent: the last this many tool results are never touched.
        max_chars: results this short or shorter are left as they are.
    """

    keep_recent: int = 3
    max_chars: int = 200

    def __call__(self, messages: list[Message], target_chars: int, llm: Any = None) -> list[Message]:
        tools = [i for i, m in enumerate(messages) if m.role == "tool"]
        old = tools[: max(len(tools) - max(self.keep_recent, 0), 0)]
        out = list(messages)
        size = messages_chars(out)
        for i in old:
            if size <= target_chars:
                break
            message = out[i]
            if len(message.content) <= self.max_chars:
                continue
            stub = f"[result of {message.name or 'a tool'} cut: {len(message.content)} chars]"
            if len(stub) >= len(message.content):
                continue
            out[i] = replace(message, content=stub)
            size -= len(message.content) - len(stub)
        return out if _smaller(messages, out) else messages


@dataclass(frozen=True)
class TruncateCompact:
    """Drop the oldest whole turns after the task until the target is met, leaving a notice.

    The deterministic last resort: nothing can fail, and a turn goes with all
    its results so no call is left unanswered. The notice tells the model that
    earlier work happened, so it does not start over blindly.

    Args:
        keep_recent: turns with a message among the last this many are kept.
    """

    keep_recent: int = 6

    def __call__(self, messages: list[Message], target_chars: int, llm: Any = None) -> list[Message]:
        original = messages_chars(messages)
        size, best_size, best_count = original, original, 0
        drop: set[int] = set()
        for count, unit in enumerate(_droppable(messages, self.keep_recent), start=1):
            drop.update(unit)
            size -= sum(message_chars(messages[i]) for i in unit)
            candidate = size + len(_truncation_note(count).content)
            if candidate < best_size:
                best_size, best_count = candidate, count
            if candidate <= target_chars:
                break
        if not best_count:
            return messages
        units = _droppable(messages, self.keep_recent)[:best_count]
        return _without(messages, {i for unit in units for i in unit}, _truncation_note(best_count))


def _truncation_note(turns: int) -> Message:
    what = "turn was" if turns == 1 else "turns were"
    return Message("user", f"{TRUNCATION_HEADER} {turns} earlier {what} removed to fit the context window.]")


_SUMMARY_SYSTEM = (
    "You compress an AI agent's working history so it can continue its task with less context. "
    "Write plain text only."
)

#: Below this, a summary could not carry the goal, findings and identifiers: no model call.
_MIN_SUMMARY_CHARS = 400

_SUMMARY_ASK = """Summarize the conversation excerpt below for the agent that produced it.
Keep: the goal of the task; what was found (facts, results, numbers); what was tried and failed;
open questions and next steps; every identifier needed to continue (file paths, ids, names, URLs).
Leave out pleasantries and raw data the findings already cover. At most {limit} characters.

The task:
{task}

The excerpt:
{transcript}"""


@dataclass(frozen=True)
class SummarizeCompact:
    """Replace the older turns by one model-written summary (one model call).

    Keeps more meaning than dropping turns. When the call fails, or the reply
    is empty or longer than `max_summary_chars`, it returns the messages
    unchanged so a chain falls back to its next (deterministic) stage.

    Args:
        keep_recent: turns with a message among the last this many are kept verbatim.
        max_summary_chars: the longest summary accepted.
        llm: the backend to ask; when None, the one the chain or hook passes.
            A native backend gets ``complete(LLMRequest)``, a text one
            ``generate(prompt)``. An async backend is not awaited here (the
            stage runs inside a sync hook); pass a sync one.
        max_excerpt_chars: each message's text is cut to this in the excerpt sent.
    """

    keep_recent: int = 6
    max_summary_chars: int = 2000
    llm: Any = None
    max_excerpt_chars: int = 2000

    def __call__(self, messages: list[Message], target_chars: int, llm: Any = None) -> list[Message]:
        model = self.llm if self.llm is not None else llm
        units = _droppable(messages, self.keep_recent)
        if model is None or not units:
            return messages
        drop = {i for unit in units for i in unit}
        # A summary is worth a model call only if it can be much shorter than what it
        # replaces: ask for at most half, and do not ask when half is too little to say anything.
        limit = min(self.max_summary_chars, messages_chars([messages[i] for i in drop]) // 2)
        if limit < _MIN_SUMMARY_CHARS:
            return messages
        task = _task_index(messages)
        prompt = _SUMMARY_ASK.format(
            limit=limit,
            task=self._clip(messages[task].content) if task >= 0 else "(none)",
            transcript="\n\n".join(self._render(messages[i]) for i in sorted(drop)),
        )
        summary = _ask_model(model, prompt).strip()
        if not summary or len(summary) > limit:
            return messages
        note = Message("user", f"{SUMMARY_HEADER}\n{summary}")
        out = _without(messages, drop, note)
        return out if _smaller(messages, out) else messages

    def _clip(self, text: str) -> str:
        limit = self.max_excerpt_chars
        return text if len(text) <= limit else f"{text[:limit]} [... {len(text) - limit} chars cut]"

    def _render(self, message: Message) -> str:
        if message.role == "tool":
            flag = " (error)" if message.error else ""
            return f"RESULT of {message.name} [{message.call_id}]{flag}:\n{self._clip(message.content)}"
        calls = "".join(
            f"\nCALL {c.tool} [{c.call_id}] {json.dumps(c.args, default=str)[: self.max_excerpt_chars]}"
            for c in message.tool_calls
        )
        return f"{message.role.upper()}: {self._clip(message.content)}{calls}"


def _ask_model(model: Any, prompt: str) -> str:
    """The model's reply to `prompt`, or "" when the call fails (the caller then falls back)."""
    try:
        if callable(getattr(model, "complete", None)):
            reply = model.complete(LLMRequest(messages=[Message("user", prompt)], system=_SUMMARY_SYSTEM))
        else:
            reply = model.generate(prompt)
    except Exception as exc:  # any failure means: fall back to the next stage
        log_.warning("summary for compaction failed: %s: %s", type(exc).__name__, exc)
        return ""
    if inspect.iscoroutine(reply):  # an async backend: a sync hook cannot await it
        reply.close()
        log_.warning("summary for compaction: the backend is async; pass a sync one as llm=")
        return ""
    text = reply if isinstance(reply, str) else getattr(reply, "text", None)
    if not isinstance(text, str):
        log_.warning("summary for compaction: the backend returned %s, not text", type(reply).__name__)
        return ""
    return text


# -- the chain ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainResult:
    """What a chain did: the messages and the names of the stages that changed them."""

    messages: list[Message]
    stages: tuple[str, ...]


class CompactChain:
    """Stages run in order, each on the previous one's output, until one reaches the target.

    A stage whose output is larger than its input, or breaks a call/result pair
    its input had intact, is ignored, so a faulty custom stage cannot make
    things worse.
    """

    def __init__(self, *stages: Stage) -> None:
        if not stages:
            raise ValueError("compact_chain needs at least one stage")
        self.stages = stages

    def __call__(self, messages: list[Message], target_chars: int, llm: Any = None) -> list[Message]:
        return self.run(messages, target_chars, llm).messages

    def run(self, messages: Sequence[Message], target_chars: int, llm: Any = None) -> ChainResult:
        """Compact `messages` toward `target_chars`; returns the smallest result seen."""
        current = list(messages)
        intact = pairing_problem(current) is None
        used: list[str] = []
        for stage in self.stages:
            if messages_chars(current) <= target_chars:
                break
            out = list(stage(list(current), target_chars, llm))
            if not _smaller(current, out) or (intact and pairing_problem(out) is not None):
                continue
            current = out
            used.append(type(stage).__name__)
        return ChainResult(current, tuple(used))


def compact_chain(*stages: Stage) -> CompactChain:
    """A chain of stages: ``compact_chain(PruneToolResults(), SummarizeCompact(), TruncateCompact())``."""
    return CompactChain(*stages)


# -- budget ------------------------------------------------------------------------------


@dataclass
class ContextBudget:
    """The model's context window and when to act on it.

    The next prompt's size is estimated as follows. When the provider reported
    the input tokens of the last call (``state.last_turn["usage"].input_tokens``)
    and this budget saw that call's prompt, the estimate is that count plus the
    characters added since (or minus those removed) converted at the ratio
    that call showed (its characters per reported token); compaction targets
    use the same ratio. Otherwise it is the characters of the system prompt,
    the messages (text, call names and JSON arguments), the hooks' injected
    texts and the tools' JSON schemas, divided by `chars_per_token`. Four
    characters a token is about right for English text and JSON with the
    common tokenizers; lower it for code-heavy or non-English runs.

    Args:
        context_window: the model's context size in tokens.
        warning_at: fraction of the window at which compaction starts.
        error_at: fraction at which hooks act harder (see each hook).
        chars_per_token: characters per token for the character estimate.
    """

    context_window: int
    warning_at: float = 0.7
    error_at: float = 0.9
    chars_per_token: float = 4
    _seen: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)
    #: per history: (the history, its revision, messages counted, their characters), so a
    #: history that only grew is measured by its new messages alone
    _sizes: dict[int, tuple[Any, int, int, int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.context_window, int) or self.context_window <= 0:
            raise ValueError(f"context_window must be a positive int, not {self.context_window!r}")
        if not 0 < self.warning_at <= self.error_at <= 1:
            raise ValueError(
                f"need 0 < warning_at <= error_at <= 1, got warning_at={self.warning_at!r}, "
                f"error_at={self.error_at!r}"
            )
        if not self.chars_per_token > 0:
            raise ValueError(f"chars_per_token must be positive, not {self.chars_per_token!r}")

    def prompt_chars(self, log: History | Sequence[Message], ctx: PromptContext) -> int:
        """Characters of the prompt `ctx` would send with `log` as its messages."""
        tools = json.dumps(list(ctx.tools), default=str) if ctx.tools else ""
        extra = sum(len(t) for t in ctx.injected if isinstance(t, str))
        return len(ctx.system) + self._log_chars(log) + len(tools) + extra

    def _log_chars(self, log: History | Sequence[Message]) -> int:
        if not isinstance(log, History):
            return messages_chars(list(log))
        n, cached = len(log), self._sizes.get(id(log))
        if cached is not None and cached[0] is log and cached[1] == log.revision and cached[2] <= n:
            chars = cached[3] + messages_chars([log[i] for i in range(cached[2], n)])
        else:
            chars = messages_chars(list(log))
        self._sizes[id(log)] = (log, log.revision, n, chars)
        return chars

    def estimate(self, state: DefaultState, log: History | Sequence[Message], ctx: PromptContext) -> int:
        """Estimated tokens of the next prompt (see the class docstring for how)."""
        chars = self.prompt_chars(log, ctx)
        reported = _reported_input_tokens(state)
        seen = self._seen.get(state.run_id)
        if reported and seen is not None and seen[0] + 1 == state.turns and seen[1] > 0:
            return max(0, reported + round((chars - seen[1]) * reported / seen[1]))
        return round(chars / self.chars_per_token)

    def chars_per_token_seen(self, state: DefaultState) -> float:
        """Characters per token as the provider counted the last prompt, else `chars_per_token`."""
        reported = _reported_input_tokens(state)
        seen = self._seen.get(state.run_id)
        if reported and seen is not None and seen[0] + 1 == state.turns and seen[1] > 0:
            return seen[1] / reported
        return self.chars_per_token

    def note_prompt(self, state: DefaultState, log: History | Sequence[Message], ctx: PromptContext) -> None:
        """Remember the size of the prompt about to be sent, to pair with the provider's count."""
        self._seen[state.run_id] = (state.turns, self.prompt_chars(log, ctx))

    @property
    def warning_tokens(self) -> int:
        return int(self.context_window * self.warning_at)

    @property
    def error_tokens(self) -> int:
        return int(self.context_window * self.error_at)


def _reported_input_tokens(state: DefaultState) -> int:
    turn = state.last_turn
    usage = turn.get("usage") if isinstance(turn, Mapping) else None
    tokens = getattr(usage, "input_tokens", 0)
    return tokens if isinstance(tokens, int) and tokens > 0 else 0


# -- hooks -------------------------------------------------------------------------------


def _record(
    state: DefaultState,
    *,
    hook: str,
    trigger: str,
    step: int,
    before: Sequence[Message],
    after: Sequence[Message],
    stages: Sequence[str],
    estimate: int,
) -> dict[str, Any]:
    """Append what a compaction did to ``state.metadata["compactions"]`` and return the entry."""
    kept_calls = {c.call_id for m in after for c in m.tool_calls}
    removed = [c.call_id for m in before for c in m.tool_calls if c.call_id not in kept_calls]
    after_results = {m.call_id: m.content for m in after if m.role == "tool"}
    cut = [
        m.call_id
        for m in before
        if m.role == "tool" and m.call_id in after_results and after_results[m.call_id] != m.content
    ]
    summary = next((m.content[len(SUMMARY_HEADER) + 1 :] for m in after if _is_new_summary(m, before)), None)
    entry: dict[str, Any] = {
        "hook": hook,
        "trigger": trigger,
        "step": step,
        "turn": state.turns,
        "stages": list(stages),
        "estimated_tokens": estimate,
        "before_chars": messages_chars(before),
        "after_chars": messages_chars(after),
        "before_messages": len(before),
        "after_messages": len(after),
        "removed_call_ids": removed,
        "cut_result_ids": cut,
        "summary": summary,
    }
    state.metadata.setdefault("compactions", []).append(entry)
    return entry


def _is_new_summary(message: Message, before: Sequence[Message]) -> bool:
    return message.role == "user" and message.content.startswith(SUMMARY_HEADER) and message not in before


class ThresholdCompactHook:
    """A ``pre_prompt`` hook that compacts the history when the next prompt nears the window.

    It fires when the budget's estimate passes ``warning_at`` of the window, or
    when ``ctx.overflow`` says the provider refused the last prompt as too long.
    It then runs the chain on ``log`` toward `target` of the window (in
    characters, less what the system prompt and tools take; after an overflow,
    at most half the refused messages, since the provider's limit was lower
    than the budget thought) and replaces the
    record, so the model, the checkpoints and a resumed or forked run all see
    the compacted history. Each compaction is appended to
    ``state.metadata["compactions"]``.

    Args:
        budget: the window and thresholds.
        chain: the stages; by default `PruneToolResults` then `TruncateCompact`.
        llm: the backend a `SummarizeCompact` stage asks (hooks are not given the run's).
        target: fraction of the window the messages are compacted toward.
    """

    def __init__(
        self,
        budget: ContextBudget,
        chain: CompactChain | None = None,
        *,
        llm: Any = None,
        target: float = 0.5,
    ) -> None:
        if not 0 < target < 1:
            raise ValueError(f"target must be between 0 and 1, not {target!r}")
        self.budget = budget
        self.chain = chain if chain is not None else compact_chain(PruneToolResults(), TruncateCompact())
        self.llm = llm
        self.target = target

    def pre_prompt(self, state: DefaultState, log: History, ctx: PromptContext, step: int) -> None:
        estimate = self.budget.estimate(state, log, ctx)
        if ctx.overflow or estimate > self.budget.warning_tokens:
            self._compact(state, log, ctx, step, estimate)
        self.budget.note_prompt(state, log, ctx)

    def _compact(
        self, state: DefaultState, log: History, ctx: PromptContext, step: int, estimate: int
    ) -> None:
        before = list(log)
        overhead = self.budget.prompt_chars([], ctx)
        window_chars = self.budget.context_window * self.budget.chars_per_token_seen(state)
        target = max(0, int(window_chars * self.target) - overhead)
        if ctx.overflow:  # the provider's limit is below ours: at least halve what it refused
            target = min(target, messages_chars(before) // 2)
        result = self.chain.run(before, target, self.llm)
        if not result.stages:
            return
        log.replace(result.messages)
        trigger = "overflow" if ctx.overflow else "threshold"
        _record(
            state,
            hook=type(self).__name__,
            trigger=trigger,
            step=step,
            before=before,
            after=result.messages,
            stages=result.stages,
            estimate=estimate,
        )


class ContextPressureHook:
    """A ``pre_prompt`` hook that trims tool results while the prompt is near the window.

    Lighter than compaction: no turn is removed. Past ``warning_at`` it cuts
    results older than the last `keep_recent` that are longer than
    `max_result_chars`; past ``error_at`` it cuts every older result that a
    stub would shorten. Each trim is recorded like a compaction.
    """

    def __init__(self, budget: ContextBudget, keep_recent: int = 3, max_result_chars: int = 2000) -> None:
        self.budget = budget
        self.keep_recent = keep_recent
        self.max_result_chars = max_result_chars

    def pre_prompt(self, state: DefaultState, log: History, ctx: PromptContext, step: int) -> None:
        estimate = self.budget.estimate(state, log, ctx)
        if ctx.overflow or estimate > self.budget.warning_tokens:
            hard = ctx.overflow or estimate > self.budget.error_tokens
            prune = PruneToolResults(self.keep_recent, 0 if hard else self.max_result_chars)
            before = list(log)
            after = prune(before, 0)
            if after is not before:
                log.replace(after)
                _record(
                    state,
                    hook=type(self).__name__,
                    trigger="overflow" if ctx.overflow else ("error" if hard else "warning"),
                    step=step,
                    before=before,
                    after=after,
                    stages=[type(prune).__name__],
                    estimate=estimate,
                )
        self.budget.note_prompt(state, log, ctx)
