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

from .errors import ConfigError
from .history import History
from .types import Step, ToolCall, Usage

if TYPE_CHECKING:
    from .config import LoopConfig

__all__ = ["DefaultState", "SCHEMA_VERSION"]

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
                **_extra_fields(cls, data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"this is not a readable saved run: {type(exc).__name__}: {exc}") from None
        return state


_RECORD_FIELDS = frozenset(
    {
        "task", "steps", "metadata", "stop_reason", "llm_calls", "usage", "steps_charged",
        "started_at", "run_id", "history", "turns", "no_call_streak", "final_answer", "detail",
        "dropped_calls", "elapsed_s",
    }
)
_KEYS = _RECORD_FIELDS | {"schema_version", "extra"}


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
