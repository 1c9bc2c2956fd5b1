"""`AgentPreset`: an agent ready to run but for its model and its task.

A preset bundles what `composable_loop` needs besides the model and the task
(settings, tools, hooks, a state, a system prompt), so an agent can be built
once, handed around, described (``looplet blueprint``) and run many times. A
cartridge's ``build(runtime)`` returns one.

`minimal_preset` is the smallest one; the coding and research presets add
the workspace tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import LoopConfig
from .loop import AsyncLoop, Loop, async_composable_loop, composable_loop
from .state import DefaultState
from .tools.builtins import register_done_tool
from .tools.registry import BaseToolRegistry
from .types import RunResult

__all__ = ["AgentPreset", "minimal_preset"]


@dataclass
class AgentPreset:
    """Settings, tools, hooks, an optional state and a system prompt: all but the model and task.

    Attributes:
        config: the run's settings.
        tools: the tools the model may call.
        hooks: hook objects, in order.
        state: the state to record the run in. A state records one run, so a
            preset with a state runs once (a second run is refused, as for any
            state that already holds a run); leave it None to run many times.
        system_prompt: replaces ``config.system_prompt`` when given.
        name / description: what the agent is, for listings and blueprints.
    """

    config: LoopConfig = field(default_factory=LoopConfig)
    tools: BaseToolRegistry = field(default_factory=BaseToolRegistry)
    hooks: list[Any] = field(default_factory=list)
    state: DefaultState | None = None
    system_prompt: str | None = None
    name: str = ""
    description: str = ""

    def _arguments(self, llm: Any, task: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "llm": llm,
            "task": task,
            "tools": self.tools,
            "hooks": list(self.hooks),
            "config": self.config,
            "state": self.state,
            "system_prompt": self.system_prompt,
        }
        kwargs.update(overrides)
        return kwargs

    def loop(self, llm: Any, task: Any = None, **overrides: Any) -> Loop:
        """`composable_loop` with this preset; `overrides` are its other keyword arguments
        (``max_steps``, ``cancel_token``, ``store``...) or replace the preset's."""
        return composable_loop(**self._arguments(llm, task, overrides))

    def aloop(self, llm: Any, task: Any = None, **overrides: Any) -> AsyncLoop:
        """The async twin of `loop`."""
        return async_composable_loop(**self._arguments(llm, task, overrides))

    def run(self, llm: Any, task: Any = None, **overrides: Any) -> RunResult:
        """Run to the end and return the `RunResult`."""
        return self.loop(llm, task, **overrides).run()


def minimal_preset(*, max_steps: int = 15, system_prompt: str | None = None) -> AgentPreset:
    """The smallest agent: a done tool and the default settings; add tools and hooks to it."""
    tools = BaseToolRegistry()
    register_done_tool(tools)
    return AgentPreset(
        config=LoopConfig(max_steps=max_steps),
        tools=tools,
        system_prompt=system_prompt,
        name="minimal",
        description="A done tool and the default settings.",
    )
