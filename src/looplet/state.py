"""`DefaultState`: what a run has done so far, readable by hooks and by the caller."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .types import Step, Usage

if TYPE_CHECKING:
    from .config import LoopConfig

__all__ = ["DefaultState"]


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
