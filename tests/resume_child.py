"""A scripted run that can be stopped and continued: the kit of the resume property, and its child process.

The model is stateless: it picks its reply from the history alone (the
number of assistant messages so far is the index of the reply), so a run
continued from a saved record gets exactly the replies the uninterrupted run
got. Every tool body counts its runs by the call's ``tag`` argument, so
"each body ran exactly once" can be checked across sessions and processes.

A *session* runs the loop once, from a fresh record or a saved one, and may be
stopped by a *plan* ``(kind, at)``:

- ``break``: break out of the ``for`` loop after its ``at``-th step, then read
  ``loop.result`` (which closes the run, as documented);
- ``close``: break inside ``with composable_loop(...) as loop:`` (closed on exit);
- ``abandon``: break and take the record without closing the loop (a simulated
  crash at a step boundary, where a checkpoint would have committed);
- ``cancel_tool`` / ``cancel_hook`` / ``cancel_model``: a `CancelToken` fired by
  the ``at``-th tool body, the ``at``-th ``pre_dispatch`` call, or the ``at``-th
  model call of the session (the reply is still returned: its calls stay open);
- ``budget``: ``max_steps`` is ``at`` more than the record has charged;
- ``llm_error``: the ``at``-th model call of the session fails.

Run as a program (``python resume_child.py < job.json``), it continues a saved
run in this fresh process and prints the session's outcome as JSON: nothing of
the parent's objects comes along, only the record.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from looplet import (
    BaseToolRegistry,
    CancelToken,
    DefaultState,
    LLMRequest,
    LLMResponse,
    Step,
    ToolCall,
    Usage,
    async_composable_loop,
    composable_loop,
)

#: Tool name -> (concurrent_safe, free, raises). ``done`` is added on its own.
TOOL_KINDS: dict[str, tuple[bool, bool, bool]] = {
    "step": (False, False, False),
    "fetch": (True, False, False),
    "fail": (False, False, True),
    "fail_par": (True, False, True),
    "note": (False, True, False),
}
TASK = "work through the script"
BIG_BUDGET = 500
ENDINGS = ("done", "no_tool_call")  # stops after which a run is over in the scripts used here
KINDS = ("break", "close", "abandon", "cancel_tool", "cancel_hook", "cancel_model", "budget", "llm_error")

Reply = dict[str, Any]  # {"text": str} or {"native": bool, "calls": [{"tool", "args"}]}
Plan = tuple[str, int] | None


class Counts:
    """How often each tool body ran, by tag, shared by every session of a run (thread-safe)."""

    def __init__(self, ran: dict[str, int] | None = None) -> None:
        self.ran: dict[str, int] = dict(ran or {})
        self._lock = threading.Lock()

    def body(self, tag: str, after: Callable[[], None]) -> None:
        with self._lock:
            self.ran[tag] = self.ran.get(tag, 0) + 1
        after()


def build_tools(counts: Counts, after_body: Callable[[], None]) -> BaseToolRegistry:
    """The tools of a scripted run, built fresh for every session."""
    tools = BaseToolRegistry()
    for name, (concurrent_safe, free, raises) in TOOL_KINDS.items():
        tools.register(
            _body(name, raises, counts, after_body), name=name, concurrent_safe=concurrent_safe, free=free
        )

    def finish(answer: str) -> dict[str, str]:
        """Finish with an answer.

        Args:
            answer: the final answer.
        """
        counts.body(f"done:{answer}", after_body)
        return {"answer": answer}

    tools.register(finish, name="done", done=True)
    return tools


def _body(name: str, raises: bool, counts: Counts, after_body: Callable[[], None]) -> Callable[..., Any]:
    def body(tag: str, n: int) -> dict[str, Any]:
        """A tool of the scripted run.

        Args:
            tag: names the call (unique in the script).
            n: a number to work on.
        """
        counts.body(tag, after_body)
        if raises:
            raise ValueError(f"{name} failed on {tag}")
        return {"tag": tag, "tool": name, "twice": 2 * n}

    return body


class ScriptedModel:
    """Replies from the script by the number of model replies already in the history.

    Logs what every call was sent, so the requests of a continued run can be
    compared with the uninterrupted run's.
    """

    def __init__(self, script: list[Reply], log: list[Any]) -> None:
        self.script = script
        self.log = log

    def complete(self, request: LLMRequest) -> LLMResponse:
        index = sum(1 for m in request.messages if m.role == "assistant")
        self.log.append([index, request.step, [m.to_dict() for m in request.messages]])
        reply = self.script[index]
        usage = Usage(
            input_tokens=100 + len(request.messages), output_tokens=10 + index, cost=0.001 * (index + 1)
        )
        response = LLMResponse(
            usage=usage, model="scripted", request_id=f"req-{index}", stop_reason="tool_use"
        )
        if "text" in reply:
            response.text = reply["text"]
        elif reply["native"]:
            calls = reply["calls"]
            response.tool_calls = [
                ToolCall(c["tool"], dict(c["args"]), call_id=f"id{index}_{i}") for i, c in enumerate(calls)
            ]
        elif len(reply["calls"]) == 1:
            response.text = json.dumps(reply["calls"][0])
        else:
            response.text = json.dumps({"tools": reply["calls"]})
        return response


@dataclass
class Session:
    """What one session of a run did."""

    steps: list[dict[str, Any]]  # the steps it yielded, as Step.to_dict()
    record: dict[str, Any]  # the run record after it, through JSON
    stop_reason: str | None  # None: abandoned without closing
    fired: bool  # whether its plan stopped it
    counters: dict[str, int] = field(default_factory=dict)


class _Interrupter:
    """Counts the session's tool bodies, gates and model calls, and fires the plan's token."""

    def __init__(self, plan: Plan) -> None:
        self.kind, self.at = plan if plan is not None else ("", 0)
        self.token = CancelToken()
        self.seen = {"cancel_tool": 0, "cancel_hook": 0, "cancel_model": 0, "llm_error": 0}
        self.fired = False
        self._lock = threading.Lock()

    def tick(self, what: str) -> bool:
        """Count one event of `what`; True when the plan stops the run here."""
        with self._lock:
            self.seen[what] += 1
            hit = self.kind == what and self.seen[what] == self.at
            if hit:
                self.fired = True
        return hit

    def after_body(self) -> None:
        if self.tick("cancel_tool"):
            self.token.cancel("a tool cancelled the run")

    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> None:
        if self.tick("cancel_hook"):
            self.token.cancel("a hook cancelled the run")


class _Backend:
    """The scripted model behind the plan's model-call interruptions."""

    def __init__(self, model: ScriptedModel, interrupter: _Interrupter) -> None:
        self.model = model
        self.interrupter = interrupter

    def complete(self, request: LLMRequest) -> LLMResponse:
        if self.interrupter.tick("llm_error"):
            raise ConnectionError("the provider is unreachable")
        reply = self.model.complete(request)
        if self.interrupter.tick("cancel_model"):
            self.interrupter.token.cancel("cancelled while the model answered")
        return reply


def run_session(
    script: list[Reply], record: dict[str, Any] | None, plan: Plan, mode: str, counts: Counts, log: list[Any]
) -> Session:
    """Run (or continue) the scripted run once, stopped as `plan` says."""
    state = DefaultState() if record is None else DefaultState.from_dict(record)
    stopper = _Interrupter(plan)
    max_steps = BIG_BUDGET
    if stopper.kind == "budget":
        max_steps = state.steps_charged + stopper.at
    kwargs: dict[str, Any] = {
        "task": TASK if record is None else None,
        "tools": build_tools(counts, stopper.after_body),
        "hooks": [stopper],
        "state": state,
        "max_steps": max_steps,
        "cancel_token": stopper.token,
    }
    backend = _Backend(ScriptedModel(script, log), stopper)

    def save() -> dict[str, Any]:
        saved: dict[str, Any] = json.loads(json.dumps(state.to_dict()))  # the record travels as JSON only
        return saved

    runner = _run_sync if mode == "sync" else _run_async
    steps, stop_reason, broke, saved = runner(backend, kwargs, stopper, save)
    if stop_reason is not None:
        assert saved["stop_reason"] == stop_reason
    fired = broke or stopper.fired or (stopper.kind == "budget" and stop_reason == "max_steps")
    return Session([s.to_dict() for s in steps], saved, stop_reason, fired, dict(stopper.seen))


Outcome = tuple[list[Step], Any, bool, dict[str, Any]]


def _breaks_at(kind: str) -> bool:
    return kind in ("break", "close", "abandon")


def _run_sync(
    backend: Any, kwargs: dict[str, Any], stopper: _Interrupter, save: Callable[[], Any]
) -> Outcome:
    loop = composable_loop(backend, **kwargs)
    steps: list[Step] = []
    broke = False
    if stopper.kind == "close":
        with loop:
            for step in loop:
                steps.append(step)
                if len(steps) == stopper.at:
                    broke = True
                    break
    else:
        for step in loop:
            steps.append(step)
            if _breaks_at(stopper.kind) and len(steps) == stopper.at:
                broke = True
                break
    if stopper.kind == "abandon" and broke:
        return steps, None, True, save()  # never closed: the record is taken as it stands
    result = loop.result  # after a break, reading the result closes the run
    assert result is not None
    return steps, result.stop_reason, broke, save()


def _run_async(
    backend: Any, kwargs: dict[str, Any], stopper: _Interrupter, save: Callable[[], Any]
) -> Outcome:
    async def main() -> Outcome:
        loop = async_composable_loop(backend, **kwargs)
        steps: list[Step] = []
        broke = False
        if stopper.kind == "close":
            async with loop:
                async for step in loop:
                    steps.append(step)
                    if len(steps) == stopper.at:
                        broke = True
                        break
        else:
            async for step in loop:
                steps.append(step)
                if _breaks_at(stopper.kind) and len(steps) == stopper.at:
                    broke = True
                    break
            if stopper.kind == "abandon" and broke:
                # taken before asyncio.run shuts the abandoned loop down
                return steps, None, True, save()
            await loop.aclose()
        assert loop.result is not None
        return steps, loop.result.stop_reason, broke, save()

    return asyncio.run(main())


def main() -> None:
    """Continue the saved run given on stdin in this process; print the session as JSON."""
    job = json.load(sys.stdin)
    plan: Plan = (job["plan"][0], job["plan"][1]) if job.get("plan") else None
    counts = Counts()
    log: list[Any] = []
    session = run_session(job["script"], job["record"], plan, job["mode"], counts, log)
    out = asdict(session)
    out["ran"] = counts.ran
    out["log"] = log
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
