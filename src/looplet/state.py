"""`DefaultState`: the run record. What a run has done so far, readable by hooks and the caller.

Everything a run needs to be continued lives here (the history, the steps,
every counter, the outcome), so `to_dict` / `from_dict` round-trip a run
through versioned, JSON-safe data. The engine keeps no run data of its own.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DecisionError
from .history import History
from .types import Intent, PendingCall, Step, ToolCall, Usage, args_hash

if TYPE_CHECKING:
    from .config import LoopConfig

__all__ = ["DefaultState", "SCHEMA_VERSION", "apply_journal", "record_delta", "record_fields"]

#: The version of `DefaultState.to_dict`'s format; `from_dict` refuses a newer one.
SCHEMA_VERSION = 1


def _new_run_id() -> str:
    return "run_" + os.urandom(8).hex()


@dataclass
class DefaultState:
    """The run's state. Subclass it to carry domain data; the loop only needs these fields.

    Attributes:
        task: the task as given to the loop.
        steps: every step yielded so far.
        metadata: free-form data for hooks and the caller (kept in checkpoints).
        scratch: a dict for hooks to share within one step (one per call, so
            calls of a concurrent batch never see each other's).
        stop_reason: set when the run stops.
        llm_calls: model calls made so far.
        usage: token totals over all model calls.
        steps_charged: steps that spent budget (``free`` tools do not).
        run_id: the run's id (``run_<16 hex digits>``), kept across saves.
        history: the conversation, the one record the model sees.
        turns: model replies the run has received (a failed call is not one).
        no_call_streak: replies in a row without a usable tool call.
        final_answer: the done tool's (validated) arguments, once accepted.
        detail: a sentence saying why the run stopped.
        dropped_calls: calls the model asked for that were never run.
        elapsed_s: wall time the run has already spent (in earlier sessions too).
        pending: calls paused by a hook's ``Ask``, waiting for `approve` / `reject`.
        in_flight: calls whose tool started and that have no step yet, by call id
            (the intent journal; see `looplet.types.Intent`).
        parent_run_id: for a fork, the run it was forked from.
        forked_at: for a fork, the step of the parent it was forked before.
        fingerprint: hashes of the tools and settings the run last ran with.
        last_turn: the last model reply's usage, time, model, request id and finish
            reason, so steps a continued run settles from that turn still carry them.
    """

    task: Any = None
    steps: list[Step] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    llm_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    steps_charged: int = 0
    started_at: float = field(default_factory=time.time)
    config: LoopConfig | None = field(default=None, repr=False, compare=False)
    run_id: str = field(default_factory=_new_run_id)
    history: History = field(default_factory=History, repr=False)
    turns: int = 0
    no_call_streak: int = 0
    final_answer: dict[str, Any] | None = None
    detail: str = ""
    dropped_calls: list[ToolCall] = field(default_factory=list)
    elapsed_s: float = 0.0
    pending: list[PendingCall] = field(default_factory=list)
    in_flight: dict[str, Intent] = field(default_factory=dict)
    parent_run_id: str | None = None
    forked_at: int | None = None
    fingerprint: dict[str, str] = field(default_factory=dict)
    last_turn: dict[str, Any] | None = None

    @property
    def last_error(self) -> str | None:
        """The error of the most recent step, or None if it succeeded (or there is none).

        A hook's denial is a decision, not a failure: after a denied step this
        is None. So the seed's ``RetryFlakyTool`` (deny while ``last_error``
        is set) holds one retry back, then lets it through, instead of being
        kept denying by its own denials.
        """
        if not self.steps:
            return None
        last = self.steps[-1].tool_result
        return None if last.error_kind == "denied" else last.error

    @property
    def budget_remaining(self) -> int | None:
        """Steps left before ``max_steps`` (None before the run has a config)."""
        if self.config is None:
            return None
        return max(0, self.config.max_steps - self.steps_charged)

    @property
    def step_count(self) -> int:
        return len(self.steps)

    @property
    def open_calls(self) -> list[ToolCall]:
        """Calls of the last model turn with no answer in the history yet.

        A continued run settles these (runs, resumes or answers them) before it
        calls the model again; calls paused for approval are among them.
        """
        for i in range(len(self.history) - 1, -1, -1):
            message = self.history[i]
            if message.role == "assistant":
                if not message.tool_calls:
                    return []
                answered = {m.call_id for m in list(self.history)[i + 1 :] if m.role == "tool"}
                return [c for c in message.tool_calls if c.call_id not in answered]
        return []

    # -- approval --------------------------------------------------------------------

    def approve(
        self,
        call_id: str,
        args: dict[str, Any] | None = None,
        *,
        args_hash: str | None = None,
        always: bool = False,
    ) -> None:
        """Approve the paused call `call_id`; passing the state back to the loop runs it, once.

        Args:
            call_id: the `PendingCall.call_id`.
            args: edited arguments to run with instead (validated again when the
                run continues; the edit is recorded on the step).
            args_hash: the hash the person approving saw; if the call's arguments
                no longer match it, the decision is refused.
            always: also approve every later call of this same tool in this run
                (recorded in ``metadata["approval_always"]``, which `ApprovalHook`
                reads; never wider than this one tool).

        Raises:
            DecisionError: no paused call has this id, or its arguments changed.
        """
        pending = self._pending_call(call_id, args_hash)
        if args is not None:
            _check_saveable(call_id, args)
        if args is not None and not isinstance(args, dict):
            raise DecisionError(
                f"approve({call_id!r}, args=...) needs a dict of arguments, got {type(args).__name__}"
            )
        pending.decision = "approved"
        pending.approved_args = None if args is None else dict(args)
        pending.note = ""
        if always:
            remember_always(self, pending.tool)

    def reject(
        self, call_id: str, reason: str = "rejected by a human", *, args_hash: str | None = None
    ) -> None:
        """Reject the paused call `call_id`: it never runs; the model is told it was denied, and why.

        Raises:
            DecisionError: no paused call has this id, or its arguments changed.
        """
        pending = self._pending_call(call_id, args_hash)
        pending.decision = "rejected"
        pending.approved_args = None
        pending.note = str(reason)

    def _pending_call(self, call_id: str, expected_hash: str | None) -> PendingCall:
        for pending in self.pending:
            if pending.call_id == call_id:
                break
        else:
            waiting = ", ".join(p.call_id for p in self.pending) or "none"
            raise DecisionError(f"no call {call_id!r} is waiting for a decision (waiting: {waiting})")
        if pending.args_hash != args_hash(pending.args):
            raise DecisionError(f"the arguments of call {call_id!r} were changed after it was paused")
        if expected_hash is not None and expected_hash != pending.args_hash:
            raise DecisionError(
                f"call {call_id!r} now has arguments {pending.args_hash}, "
                f"not the {expected_hash} you decided on"
            )
        return pending

    # -- fork ------------------------------------------------------------------------

    def fork(self, at_step: int) -> Any:
        """A new run that starts just before the model turn that produced step `at_step`.

        The fork keeps the history and the steps before that turn (and the
        counters and usage that go with them), gets a new run id, and records
        `parent_run_id` and `forked_at`. Continue it with a changed prompt,
        hook or model and compare its steps with this run's.

        Raises:
            ConfigError: there is no step `at_step`, or the history no longer
                holds the turn that produced it (compaction removed it).
        """
        if not isinstance(at_step, int) or not 1 <= at_step <= len(self.steps):
            raise ConfigError(f"fork(at_step={at_step!r}): this run has steps 1..{len(self.steps)}")
        step = self.steps[at_step - 1]
        turn = step.turn
        kept = [s for s in self.steps if s.turn < turn and s.number < at_step]
        cut = _turn_start(self.history, self.steps, step)
        if cut is None:
            raise ConfigError(
                f"fork(at_step={at_step}): the history no longer holds the model turn of step {at_step} "
                "(was it compacted?)"
            )
        usage = Usage()
        seen: set[int] = set()
        for s in kept:
            if s.turn not in seen:
                seen.add(s.turn)
                usage.add(s.usage)
        extra = {
            f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name not in _RECORD_FIELDS
        }
        extra.pop("scratch", None)
        extra.pop("config", None)
        import copy

        fork = type(self)(
            task=copy.deepcopy(self.task),
            steps=copy.deepcopy(kept),
            metadata=copy.deepcopy(self.metadata),
            usage=usage,
            steps_charged=sum(1 for s in kept if not s.free),
            llm_calls=len(seen),
            history=History(list(self.history)[:cut]),
            turns=turn - 1,
            parent_run_id=self.run_id,
            forked_at=at_step,
            **copy.deepcopy(extra),
        )
        return fork

    # -- the record as data ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The run as versioned, JSON-safe data; `from_dict` rebuilds an equal state.

        Fields a subclass adds are kept under ``"extra"`` (converted to JSON-safe
        data); ``scratch`` (per step) and ``config`` (given by each run) are not kept.
        """
        from .tools.results import to_jsonable

        known = _RECORD_FIELDS | {"scratch", "config"}
        extra = {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in known}
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "task": to_jsonable(self.task),
            "history": self.history.to_list(),
            "steps": [s.to_dict() for s in self.steps],
            "metadata": to_jsonable(self.metadata),
            "stop_reason": self.stop_reason,
            "detail": self.detail,
            "final_answer": to_jsonable(self.final_answer),
            "dropped_calls": [c.to_dict() for c in self.dropped_calls],
            "llm_calls": self.llm_calls,
            "steps_charged": self.steps_charged,
            "turns": self.turns,
            "no_call_streak": self.no_call_streak,
            "usage": self.usage.to_dict(),
            "started_at": self.started_at,
            "elapsed_s": self.elapsed_s,
            "pending": [p.to_dict() for p in self.pending],
            "in_flight": [i.to_dict() for i in self.in_flight.values()],
            "parent_run_id": self.parent_run_id,
            "forked_at": self.forked_at,
            "fingerprint": dict(self.fingerprint),
            "last_turn": _turn_data(self.last_turn),
        }
        if extra:
            out["extra"] = extra
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """Rebuild a state saved by `to_dict` (an instance of `cls`, so subclasses work).

        Raises:
            ConfigError: the data is not a saved run, names an unknown field, or was
                written by a newer looplet (its ``schema_version`` is higher).
        """
        _check_record(data)
        try:
            state = cls(
                task=data.get("task"),
                steps=[Step.from_dict(s) for s in data.get("steps", [])],
                metadata=dict(data.get("metadata") or {}),
                stop_reason=data.get("stop_reason"),
                llm_calls=int(data.get("llm_calls", 0)),
                usage=Usage.from_dict(data.get("usage") or {}),
                steps_charged=int(data.get("steps_charged", 0)),
                started_at=float(data.get("started_at", 0.0)),
                run_id=str(data["run_id"]),
                history=History.from_list(data.get("history", [])),
                turns=int(data.get("turns", 0)),
                no_call_streak=int(data.get("no_call_streak", 0)),
                final_answer=data.get("final_answer"),
                detail=str(data.get("detail", "")),
                dropped_calls=[ToolCall.from_dict(c) for c in data.get("dropped_calls", [])],
                elapsed_s=float(data.get("elapsed_s", 0.0)),
                pending=[PendingCall.from_dict(p) for p in data.get("pending") or []],
                in_flight={i["call_id"]: Intent.from_dict(i) for i in data.get("in_flight") or []},
                parent_run_id=data.get("parent_run_id"),
                forked_at=data.get("forked_at"),
                fingerprint={str(k): str(v) for k, v in (data.get("fingerprint") or {}).items()},
                last_turn=_turn_from(data.get("last_turn")),
                **_extra_fields(cls, data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"this is not a readable saved run: {type(exc).__name__}: {exc}") from None
        return state


_RECORD_FIELDS = frozenset(
    {
        "task",
        "steps",
        "metadata",
        "stop_reason",
        "llm_calls",
        "usage",
        "steps_charged",
        "started_at",
        "run_id",
        "history",
        "turns",
        "no_call_streak",
        "final_answer",
        "detail",
        "dropped_calls",
        "elapsed_s",
        "pending",
        "in_flight",
        "parent_run_id",
        "forked_at",
        "fingerprint",
        "last_turn",
    }
)
_KEYS = _RECORD_FIELDS | {"schema_version", "extra"}


def _turn_data(turn: dict[str, Any] | None) -> dict[str, Any] | None:
    if turn is None:
        return None
    usage = turn.get("usage")
    return {**turn, "usage": usage.to_dict() if isinstance(usage, Usage) else usage}


def _turn_from(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    return {**data, "usage": Usage.from_dict(data.get("usage") or {})}


#: Where the tools a person approved "always" for are kept (a list of tool names, in the record).
ALWAYS_KEY = "approval_always"


def remember_always(state: DefaultState, tool: str) -> None:
    """Record that every later call of `tool` in this run is approved (the scope is this tool only)."""
    tools = state.metadata.get(ALWAYS_KEY)
    if not isinstance(tools, list):
        tools = state.metadata[ALWAYS_KEY] = []
    if tool not in tools:
        tools.append(tool)


def _check_saveable(call_id: str, args: Any) -> None:
    """Edited arguments must be JSON data, or the record holding them could not be saved."""
    import json

    if not isinstance(args, dict):
        return  # refused by the caller with its own message
    for key, value in args.items():
        try:
            json.dumps({key: value}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DecisionError(
                f"approve({call_id!r}, args=...): argument {key!r} is not JSON data ({exc}); use str, "
                "int, finite float, bool, None, list or dict with str keys"
            ) from None


def _turn_start(history: History, steps: list[Step], step: Step) -> int | None:
    """The history index of the assistant message of `step`'s model turn, or None."""
    call_ids = {s.tool_call.call_id for s in steps if s.turn == step.turn and s.tool_call.call_id}
    replies = [i for i, m in enumerate(history) if m.role == "assistant"]
    if call_ids:
        for i in replies:
            if any(c.call_id in call_ids for c in history[i].tool_calls):
                return i
        return None
    # a reply without a call: the turn-th model reply, if nothing removed replies before it
    return replies[step.turn - 1] if 0 < step.turn <= len(replies) else None


def apply_journal(state: DefaultState, entries: list[dict[str, Any]]) -> None:
    """Replay journal entries (``delta`` / ``intent`` / ``result``) written after the state was saved.

    A ``delta`` (see `record_delta`) must continue exactly where the state
    ends; one the state already holds (a duplicate, or one a later save
    subsumed) is skipped. An intent or result entry for a call that already
    has a step is skipped, and a result entry completes the intent of the same
    call. So replaying a journal twice gives the same state.

    Raises:
        ConfigError: an entry is not a journal entry, is damaged, or a delta
            leaves a gap or overlaps what the state holds with other content.
    """
    from .types import ToolResult

    concluded = {s.tool_call.call_id for s in state.steps}
    for entry in entries:
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind == "delta":
            held = len(state.steps)
            _apply_delta(state, entry)
            concluded.update(s.tool_call.call_id for s in state.steps[held:])
            continue
        if kind not in ("intent", "result"):
            raise ConfigError(f"not a journal entry: {entry!r:.80}")
        call_id = entry.get("call_id")
        if not isinstance(call_id, str) or call_id in concluded:
            continue
        try:
            if entry["type"] == "intent":
                if call_id not in state.in_flight:
                    state.in_flight[call_id] = Intent.from_dict(entry)
            elif call_id in state.in_flight:
                state.in_flight[call_id].result = ToolResult.from_dict(entry["result"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"a damaged journal entry for {call_id!r}: {type(exc).__name__}: {exc}"
            ) from None


# -- deltas: a checkpoint that costs what the step added ---------------------------------

#: fields every delta carries, changed or not: they tie it to its run and its format
_DELTA_ALWAYS = ("schema_version", "run_id")
#: state fields a delta never replaces: the growing lists travel as appended items
_DELTA_KEEPS = frozenset({"history", "steps", "run_id", "scratch", "config"})


def record_delta(
    state: DefaultState,
    history_from: int,
    steps_from: int,
    since: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The journal entry saying what changed in the record since a save (or delta) that held
    `history_from` messages and `steps_from` steps.

    The messages and steps appended since travel as themselves; every other
    field of the record travels whole, encoded exactly as `DefaultState.to_dict`
    encodes it (``"fields"``). Given `since` (the fields the last save or delta
    left in the store, see `record_fields`), fields whose value is unchanged are
    left out, so a delta costs what the step added, however long the run or
    large its task. `apply_journal` replays it.
    """
    history = state.history
    now = record_fields(state)
    if since is not None:
        now = {
            k: v
            for k, v in now.items()
            if k in _DELTA_ALWAYS or k not in since or not _same_data(v, since[k])
        }
    return {
        "type": "delta",
        "history_from": history_from,
        "messages": [history[i].to_dict() for i in range(history_from, len(history))],
        "steps_from": steps_from,
        "steps": [s.to_dict() for s in state.steps[steps_from:]],
        "fields": now,
    }


def record_fields(state: DefaultState) -> dict[str, Any]:
    """`state.to_dict()` without the history and the steps, at a cost that does not grow with them.

    `to_dict` runs on a shallow copy whose history and steps are empty, so the
    encoding (including a subclass's own fields and overrides) has one source.
    """
    import copy

    bare = copy.copy(state)
    bare.history = History()
    bare.steps = []
    data = bare.to_dict()
    del data["history"], data["steps"]
    return data


def _same_data(a: Any, b: Any) -> bool:
    """Whether two JSON values would be written the same (``1``, ``1.0`` and ``True`` differ)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            if key not in b or not _same_data(value, b[key]):
                return False
        return True
    if kind is list:
        return len(a) == len(b) and all(map(_same_data, a, b))
    if kind is float:
        return bool(a == b and (a != 0.0 or repr(a) == repr(b)))  # -0.0 is not 0.0 in JSON
    return bool(a == b)


def _apply_delta(state: DefaultState, entry: dict[str, Any]) -> None:
    """Append a delta's messages and steps and take its fields; skip one the state already holds."""
    history_from, messages, steps_from, steps, changed = _delta_parts(entry)
    held_messages, held_steps = len(state.history), len(state.steps)
    if (history_from, steps_from) != (held_messages, held_steps):
        if _holds(state, history_from, messages, steps_from, steps):
            return  # already applied: by an earlier copy of this entry, or by the save after it
        ends = (history_from + len(messages), steps_from + len(steps))
        gap = history_from > held_messages or steps_from > held_steps
        problem = "entries are missing before it" if gap else "it overlaps what the record holds"
        raise ConfigError(
            f"a delta for messages {history_from}..{ends[0]} and steps {steps_from}..{ends[1]} does not "
            f"continue the record ({held_messages} messages, {held_steps} steps): {problem}; "
            "the journal is damaged"
        )
    from .history import Message

    try:
        new_messages = [Message.from_dict(m) for m in messages]
        new_steps = [Step.from_dict(s) for s in steps]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"a damaged delta: {type(exc).__name__}: {exc}") from None
    updated = _with_fields(state, changed)
    for message in new_messages:
        state.history.append(message)
    state.steps.extend(new_steps)
    _take_fields(state, updated)


def _delta_parts(entry: dict[str, Any]) -> tuple[int, list[Any], int, list[Any], dict[str, Any]]:
    parts = (entry.get("history_from"), entry.get("messages"), entry.get("steps_from"), entry.get("steps"))
    history_from, messages, steps_from, steps = parts
    changed = entry.get("fields")
    counts_ok = all(type(n) is int and n >= 0 for n in (history_from, steps_from))
    if not (
        counts_ok and isinstance(messages, list) and isinstance(steps, list) and isinstance(changed, dict)
    ):
        raise ConfigError(
            "a damaged delta: it needs history_from and steps_from (counts), messages and steps (lists) "
            f"and fields (an object): {entry!r:.120}"
        )
    return history_from, messages, steps_from, steps, changed  # type: ignore[return-value]


def _holds(
    state: DefaultState, history_from: int, messages: list[Any], steps_from: int, steps: list[Any]
) -> bool:
    """Whether the state holds these messages and steps at these places, and nothing of it is new."""
    history = state.history
    if history_from + len(messages) > len(history) or steps_from + len(steps) > len(state.steps):
        return False
    same_messages = all(history[history_from + i].to_dict() == m for i, m in enumerate(messages))
    return same_messages and all(state.steps[steps_from + i].to_dict() == s for i, s in enumerate(steps))


def _with_fields(state: DefaultState, changed: dict[str, Any]) -> DefaultState:
    """A state of the same type with `changed` fields over the state's own, decoded by `from_dict`."""
    data = record_fields(state)
    data.update(changed)
    if data.get("run_id") != state.run_id:
        raise ConfigError(
            f"a delta of run {data.get('run_id')!r:.80} is in the journal of run {state.run_id!r}"
        )
    data["history"], data["steps"] = [], []
    updated: DefaultState = type(state).from_dict(data)
    return updated


def _take_fields(state: DefaultState, updated: DefaultState) -> None:
    """Copy the record's fields from `updated`, keeping results already known for calls still in flight.

    A delta's snapshot of ``in_flight`` can predate a result journaled before
    it; a result, once journaled, is never forgotten.
    """
    known = state.in_flight
    for f in fields(state):
        if f.name not in _DELTA_KEEPS:
            setattr(state, f.name, getattr(updated, f.name))
    for call_id, intent in state.in_flight.items():
        before = known.get(call_id)
        if intent.result is None and before is not None and before.result is not None:
            if before.tool == intent.tool:
                intent.result = before.result


def _check_record(data: Any) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"a saved run is a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError("this is not a saved looplet run: it has no schema_version")
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"this run was saved by a newer looplet (schema_version {version}; this one reads up to "
            f"{SCHEMA_VERSION}); upgrade looplet to continue it"
        )
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"a saved run has unknown fields {unknown}: it is damaged or not a looplet run")


def _extra_fields(cls: type, extra: dict[str, Any]) -> dict[str, Any]:
    """The subclass fields saved under "extra" that `cls` declares (others are refused)."""
    declared = {f.name for f in fields(cls) if f.init} - _RECORD_FIELDS
    unknown = sorted(set(extra) - declared)
    if unknown:
        raise ConfigError(f"the saved run has fields {unknown} that {cls.__name__} does not declare")
    return dict(extra)
