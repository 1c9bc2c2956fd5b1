"""A coding agent that cannot leave its workspace and cannot finish while the tests fail.

python -m looplet.examples.coding_agent --scripted --workspace /tmp/demo     # no model, no key
python -m looplet.examples.coding_agent "add a subtract function with a test" --workspace .
python -m looplet.examples.coding_agent TASK --trace runs/                   # record the run
python -m looplet.examples.coding_agent --trace runs/ --fork runs/RUN --at 6 --system-prompt TEXT

The agent is `looplet.presets.coding_agent_preset`: read, write, edit,
multi_edit, list_dir, glob, grep, bash, think and done
(`looplet.workspace`). Every path stays inside the workspace, and
bash runs in bubblewrap when it can (no network, nothing outside the
workspace writable). Where bubblewrap cannot run (or with ``--sandbox
none``), each bash command is asked about first (y/N on a terminal, refused
without one) unless ``--allow-bash`` is given, and its steps say ``sandbox:
none``. Bash never runs network clients (curl, wget, nc, ssh...) nor touches
SSH keys, and no tool writes under ``.git/`` and the other protected paths.

A guard blocks ``done`` until the workspace's tests pass (``--test-command``,
by default pytest, run in the same sandbox); the model reads the failing
output and goes on. When the run ends the tests run once more, and two evals
grade it: the tests pass, and done was called and accepted. With ``--trace
DIR`` every prompt, response, call and result is recorded there
(`looplet.provenance.ProvenanceSink`); ``python -m looplet show`` prints it,
``python -m looplet eval`` grades it again.

``--fork RUN_DIR --at N`` starts a new run where the model turn of step N
started in a recorded run: the steps before it are replayed against the
recorded replies into the (fresh) workspace, so the files are as they were,
then the agent goes on, typically with ``--system-prompt`` changed. Record it
with ``--trace`` into the same directory and ``python -m looplet diff`` the
two runs.

With ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` set (and ``OPENAI_MODEL``) the
agent uses that model; otherwise, or with ``--scripted``, a scripted model
that writes ``calc.py`` with ``add`` and its test (the default task).

Exit codes: 0 when the run finished and the evals passed, 1 when it stopped
otherwise or an eval failed, 2 for a usage or setup error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looplet import ConfigError, FunctionBackend, PermissionHook, RunResult, ToolCall
from looplet.backends.env import read_env
from looplet.evals import EvalContext, EvalHook, EvalReport
from looplet.examples.arguments import (
    ExampleParser,
    add_model_options,
    openai_backend,
    run_guarded,
    step_budget,
)
from looplet.history import Message
from looplet.presets import (
    CODING_SYSTEM_PROMPT,
    AgentPreset,
    TestsPassGate,
    coding_agent_preset,
    coding_permissions,
    default_test_command,
    why_failed,
)
from looplet.workspace import Workspace, WorkspaceError

__all__ = [
    "main",
    "TestsPassGate",
    "why_failed",
    "default_test_command",
    "eval_tests_pass",
    "eval_done_called",
    "CODING_EVALS",
    "script",
]

NAME = "coding_agent"
#: Used when neither --model nor $OPENAI_MODEL names one.
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_WORKSPACE = Path("coding_agent_workspace")
DEFAULT_TASK = (
    "Create calc.py with a function add(a, b) that returns the sum of a and b, and a test for it "
    "in test_calc.py. The tests must pass."
)
#: The preset's prompt (kept here under its old name).
SYSTEM_PROMPT = CODING_SYSTEM_PROMPT


# -- the evals ----------------------------------------------------------------------------------


def eval_tests_pass(ctx: EvalContext) -> bool | str:
    """The workspace's tests pass: as run again at the end of the run (never as the model said),
    or, for a recorded trace without that artifact, as they ran when done was accepted."""
    outcome = ctx.artifacts.get("tests")
    if not isinstance(outcome, dict):
        accepted = [s for s in ctx.calls("done") if s.tool_result.ok]
        outcome = accepted[-1].tool_result.metadata.get("tests") if accepted else None
    if not isinstance(outcome, dict):
        return "no test outcome was recorded for this run"
    return bool(outcome.get("passed")) or f"{why_failed(outcome)}: {str(outcome.get('output', ''))[-300:]}"


def eval_done_called(ctx: EvalContext) -> bool | str:
    """The agent called done and the guard accepted it."""
    if not ctx.calls("done"):
        return "done was never called"
    return ctx.stop_reason == "done" or f"done was called but the run stopped with {ctx.stop_reason}"


CODING_EVALS = [eval_tests_pass, eval_done_called]


# -- the scripted model ---------------------------------------------------------------------------

TEST_FILE = """import unittest

from calc import add


class AddTest(unittest.TestCase):
    def test_adds_two_numbers(self):
        self.assertEqual(add(2, 3), 5)

    def test_adds_negative_numbers(self):
        self.assertEqual(add(-2, -3), -5)
"""
STUB = 'def add(a, b):\n    """The sum of a and b."""\n    raise NotImplementedError\n'


def script(test_command: str) -> list[ToolCall]:
    """What a careful model does for the default task, including one done call the guard refuses."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("think", {"thought": "Write the test first, then add(), then run the tests before done."}),
        ("list_dir", {"path": "."}),
        ("write", {"path": "test_calc.py", "content": TEST_FILE}),
        ("write", {"path": "calc.py", "content": STUB}),
        ("done", {"answer": "Wrote calc.py and test_calc.py."}),  # too early: the guard says no
        ("read", {"path": "calc.py"}),
        (
            "edit",
            {"path": "calc.py", "old_string": "raise NotImplementedError", "new_string": "return a + b"},
        ),
        ("bash", {"command": test_command}),
        ("done", {"answer": "calc.add(a, b) returns a + b; test_calc.py tests it and passes."}),
    ]
    return [ToolCall(tool, args, call_id=f"call_{n}") for n, (tool, args) in enumerate(steps, 1)]


def scripted_reply(messages: Sequence[Message], calls: list[ToolCall]) -> ToolCall:
    """The next scripted call: the n-th reply is the n-th call; past the end, done again."""
    turn = sum(1 for m in messages if m.role == "assistant")
    if turn < len(calls):
        return calls[turn]
    return ToolCall("done", {"answer": "Stopped: the script has no more steps."}, call_id=f"call_{turn + 1}")


def make_llm(args: argparse.Namespace) -> Any:
    """The scripted model unless a real one is asked for and configured."""
    calls = script(args.test_command)
    scripted = FunctionBackend(lambda request: scripted_reply(request.messages, calls))
    if args.scripted:
        return scripted
    env = read_env("OPENAI")
    if not (env.api_key or env.base_url or args.base_url):
        print(f"{NAME}: OPENAI_API_KEY / OPENAI_BASE_URL are not set: using the scripted model")
        return scripted
    return openai_backend(args, DEFAULT_MODEL)


# -- bash without a sandbox ------------------------------------------------------------------------


def ask_on_terminal(call: ToolCall, reason: str) -> bool:
    """y/N for one bash command; no terminal (or end of input) is a no."""
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{reason}\n  $ {call.args.get('command', '')}\nrun it? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def bash_permission(workspace: Workspace, allow_bash: bool) -> PermissionHook:
    """The preset's permission layer, asking on this terminal where bash has no sandbox."""
    return coding_permissions(workspace, allow_bash=allow_bash, ask_handler=ask_on_terminal)


# -- running --------------------------------------------------------------------------------------


def build_preset(workspace: Workspace, args: argparse.Namespace) -> AgentPreset:
    """The coding agent preset for this command line."""
    return coding_agent_preset(
        workspace,
        test_command=args.test_command,
        allow_bash=args.allow_bash,
        ask_handler=ask_on_terminal,
        max_steps=args.max_steps,
        system_prompt=args.system_prompt,
    )


def build_hooks(preset: AgentPreset, args: argparse.Namespace) -> tuple[list[Any], EvalHook, Any]:
    """The run's hooks, in the order their end-of-run work must happen: tests, evals, then the trace."""
    evals = EvalHook(CODING_EVALS)
    hooks: list[Any] = [*preset.hooks, evals]
    sink = None
    if args.trace is not None:
        from looplet.provenance import ProvenanceSink

        sink = ProvenanceSink(args.trace)
        hooks.append(sink)
    return hooks, evals, sink


def describe_sandbox(workspace: Workspace, allow_bash: bool) -> str:
    if workspace.sandbox.kind == "bwrap":
        return "bash runs in bubblewrap (no network; only the workspace is writable)"
    how = "runs without asking (--allow-bash)" if allow_bash else "asks before each command"
    return f"bash has no sandbox ({workspace.sandbox.reason}); it {how}"


def report(result: RunResult, evals: EvalReport | None) -> int:
    print(f"stopped: {result.stop_reason}" + (f" ({result.detail})" if not result.ok else ""))
    if result.final_answer:
        print(f"answer: {result.final_answer.get('answer', result.final_answer)}")
    if evals is not None:
        print(evals)
    return 0 if result.ok and evals is not None and evals.passed else 1


def forked_state(workspace: Workspace, args: argparse.Namespace) -> Any:
    """The state of a run forked from ``--fork`` at ``--at``: the earlier steps replayed into `workspace`."""
    from looplet.replay import fork_recording

    replayed = build_preset(workspace, args)  # its own hooks: the replay's gate is not the run's
    state = fork_recording(
        args.fork, args.at, tools=replayed.tools, hooks=replayed.hooks, system_prompt=SYSTEM_PROMPT
    )
    print(f"forked {args.fork} at step {args.at}: {len(state.steps)} earlier step(s) replayed")
    if "fork_replay" in state.metadata:
        print(f"  note: {state.metadata['fork_replay']}")
    return state


def run_agent(llm: Any, args: argparse.Namespace) -> int:
    workspace = Workspace(args.workspace, sandbox=args.sandbox)
    print(f"workspace: {workspace.root}")
    print(describe_sandbox(workspace, args.allow_bash))
    state = forked_state(workspace, args) if args.fork is not None else None
    preset = build_preset(workspace, args)
    hooks, evals, sink = build_hooks(preset, args)
    loop = preset.loop(llm, None if state is not None else {"goal": args.task}, state=state, hooks=hooks)
    for step in loop:
        print(step.pretty())
    result = loop.result
    assert result is not None
    code = report(result, evals.report)
    if sink is not None:
        where = sink.path_of(loop.state.run_id)
        print(f"trace: {where}")
        print(f"  python -m looplet show {shlex.quote(str(where))}")
        print(f"  python -m looplet eval {shlex.quote(str(where))} --evals {shlex.quote(__file__)}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = ExampleParser(NAME, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", default=DEFAULT_TASK, metavar="TASK", help="what to do")
    parser.add_argument("--scripted", action="store_true", help="use a scripted model (no key needed)")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=DEFAULT_WORKSPACE,
        help=f"the directory the agent works in, created if missing (default: ./{DEFAULT_WORKSPACE})",
    )
    parser.add_argument("--trace", type=Path, default=None, metavar="DIR", help="record the run in DIR")
    parser.add_argument(
        "--max-steps", type=step_budget, default=20, help="step budget, at least 1 (default 20)"
    )
    parser.add_argument(
        "--test-command",
        default=default_test_command(),
        help="how the guard runs the tests, without a shell (default: %(default)s)",
    )
    parser.add_argument(
        "--sandbox",
        choices=["auto", "bwrap", "none"],
        default="auto",
        help="where bash runs: bubblewrap when it works here (auto), always (bwrap) or never (none)",
    )
    parser.add_argument(
        "--allow-bash",
        action="store_true",
        help="where there is no sandbox, run bash commands without asking",
    )
    parser.add_argument(
        "--fork", type=Path, default=None, metavar="RUN_DIR", help="fork this recorded run (with --at)"
    )
    parser.add_argument("--at", type=step_budget, default=None, metavar="N", help="the step to fork at")
    parser.add_argument("--system-prompt", default=None, metavar="TEXT", help="the system prompt to use")
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if not shlex.split(args.test_command):
        parser.error("--test-command is empty")
    if (args.fork is None) != (args.at is None):
        parser.error("--fork and --at go together")

    def run(llm: Any) -> int:
        try:
            return run_agent(llm, args)
        except (OSError, WorkspaceError) as exc:  # the workspace or trace directory cannot be used
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2

    return run_guarded(NAME, lambda: make_llm(args), run, (ConfigError, ImportError))


if __name__ == "__main__":
    sys.exit(main())
