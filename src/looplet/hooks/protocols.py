"""One structural Protocol per hook point. A hook is any object with some of these methods.

Arguments every slot shares:

- ``state``: the run's `DefaultState`.
- ``log``: the run's `History`, the one conversation record.
- ``ctx``: the `PromptContext` about to be sent (system prompt, messages, tools,
  and the user's own ``context=`` value).
- ``step``: the number the next step will get.

Error policy: a hook method that raises ends the run with stop reason
``hook_error`` naming the hook and method. Gates fail closed: when a
``pre_dispatch`` or ``check_done`` hook raises, the call does not run or the
done call is not accepted. Whatever happened before is recorded and kept.
``on_loop_end`` hooks are the exception: one that raises is logged and the
others still run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..backends.protocol import LLMRequest
    from ..history import History
    from ..prompt import PromptContext
    from ..state import DefaultState
    from ..tools.registry import PreparedCall
    from ..types import Step, ToolCall, ToolResult

__all__ = [
    "PreLoop",
    "PrePrompt",
    "PreDispatch",
    "PostDispatch",
    "CheckDone",
    "AfterStep",
    "ShouldStop",
    "OnLoopEnd",
    "LoopHook",
    "AroundLLM",
    "AroundTool",
    "HOOK_METHODS",
    "INTERCEPTOR_METHODS",
]


class PreLoop(Protocol):
    """Called once before the first prompt. Returns nothing."""

    def pre_loop(self, state: DefaultState, log: History, ctx: PromptContext) -> Any: ...


class PrePrompt(Protocol):
    """Called before each model call.

    May return None; a string or `InjectContext` to add to this prompt only;
    or a changed `PromptContext` (or change ``ctx`` in place), and the model
    then sees exactly that.
    """

    def pre_prompt(self, state: DefaultState, log: History, ctx: PromptContext, step: int) -> Any: ...


class PreDispatch(Protocol):
    """Called before each valid tool call runs.

    May return None; `Allow` (optionally with ``updated_args``); `Deny`; or a
    `ToolResult` to use instead of running the tool.
    """

    def pre_dispatch(self, state: DefaultState, log: History, tool_call: ToolCall, step: int) -> Any: ...


class PostDispatch(Protocol):
    """Called after each call (errors included).

    May return None; a string or `InjectContext` added to the result the model
    sees; a replacement `ToolResult`; or `Stop(reason)`.
    """

    def post_dispatch(
        self,
        state: DefaultState,
        log: History,
        tool_call: ToolCall,
        tool_result: ToolResult,
        step: int,
    ) -> Any: ...


class CheckDone(Protocol):
    """Called when the done tool is called. None accepts; a string or `Block` rejects."""

    def check_done(self, state: DefaultState, log: History, ctx: PromptContext, step: int) -> Any: ...


class AfterStep(Protocol):
    """Called once for every step, after it is in ``state.steps`` and its answer in the
    history, and before the loop yields it: the place to make it durable (a checkpoint
    commits here) or to observe it. Returns None; a hook that raises (or returns
    anything else) ends the run with ``hook_error`` (the step stays recorded and is
    still yielded).
    """

    def after_step(self, state: DefaultState, log: History, step: Step) -> Any: ...


class ShouldStop(Protocol):
    """Called after each step. `True` or `Stop(reason)` ends the run."""

    def should_stop(self, state: DefaultState, step: int) -> Any: ...


class OnLoopEnd(Protocol):
    """Called exactly once when the run ends by any path (``break`` and errors too)."""

    def on_loop_end(self, state: DefaultState, log: History, ctx: PromptContext, llm: Any) -> Any: ...


@runtime_checkable
class LoopHook(
    PreLoop, PrePrompt, PreDispatch, PostDispatch, CheckDone, AfterStep, ShouldStop, OnLoopEnd, Protocol
):
    """Every hook method at once: the original looplet's ``LoopHook``, kept for code written against it.

    A hook needs only the methods it uses (each slot has its own Protocol
    above, which is what a type checker should check a partial hook
    against); this one describes a hook that implements them all.
    """


class AroundLLM(Protocol):
    """An interceptor around every model call: ``return proceed(request)`` runs the call.

    It sees the request, the response or the exception, and the time between;
    interceptors nest in list order (the first is outermost). It may pass on a
    changed request or return another response; what it raises is the model
    call's failure. In `async_composable_loop` an ``async def around_llm``
    gets a `proceed` to await; a plain one runs in a worker thread.
    """

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any: ...


class AroundTool(Protocol):
    """An interceptor around every tool run: ``return proceed()`` runs the tool.

    `call` is the validated call that passed every gate (``call.call`` the
    `ToolCall`, ``call.spec`` the tool, ``call.args`` the final arguments);
    its intent is already in ``state.in_flight``. It returns the `ToolResult`;
    what it raises becomes that call's ``execution`` error. Nesting and async
    as for `AroundLLM`. Calls of a concurrent batch are intercepted from
    several threads (sync loop) or tasks (async loop) at once.
    """

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any: ...


#: The interceptor methods the loop looks for on hooks.
INTERCEPTOR_METHODS = ("around_llm", "around_tool")

#: The method names the loop looks for, in the order a turn reaches them.
HOOK_METHODS = (
    "pre_loop",
    "pre_prompt",
    "pre_dispatch",
    "post_dispatch",
    "check_done",
    "after_step",
    "should_stop",
    "on_loop_end",
)
