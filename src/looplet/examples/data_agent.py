"""A data agent that asks before it deletes, and whose runs survive the process.

python -m looplet.examples.data_agent --scripted --auto-approve   # no model, no questions
python -m looplet.examples.data_agent --clean                     # afresh: new data, no saved runs
python -m looplet.examples.data_agent --resume                    # continue the last run

The agent works on a small generated CSV of orders (``orders.csv`` in the
work directory, ``./checkpoints/data_agent`` unless ``--workdir`` names
another). It can describe the data, query rows and delete rows; deleting
needs a person's yes (`ApprovalHook`):

- ``--auto-approve`` answers yes;
- on a terminal, you are asked y/N;
- otherwise the run pauses: its record is saved, and the command to continue
  it is printed (exit code 0). ``--resume`` then asks for the decision (or
  takes ``--auto-approve`` / ``--reject``) and continues the run, which runs
  the approved delete exactly once.

Every run is saved as it goes in ``runs/`` under the work directory (a
`FileCheckpointStore`); ``last_run`` there names the run ``--resume``
continues. With ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` set (and
``OPENAI_MODEL``) the agent uses that model; otherwise, or with
``--scripted``, a scripted model that decides from the conversation.

Exit codes: 0 when the run finished or paused for a decision, 1 when it
stopped for another reason, 2 for a usage, setup or checkpoint error, 130 on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import csv
import json
import operator
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from looplet import (
    ApprovalHook,
    BaseToolRegistry,
    ConfigError,
    ContextBudget,
    DefaultState,
    FileCheckpointStore,
    FunctionBackend,
    LoopError,
    PruneToolResults,
    RunResult,
    ThresholdCompactHook,
    ToolCall,
    TruncateCompact,
    compact_chain,
    composable_loop,
    load_run,
)
from looplet.backends.env import read_env
from looplet.checkpoints import run_status
from looplet.examples.arguments import (
    ExampleParser,
    add_model_options,
    openai_backend,
    run_guarded,
    step_budget,
)
from looplet.history import Message
from looplet.tools import register_done_tool

NAME = "data_agent"
START_COMMAND = "python -m looplet.examples.data_agent"
DEFAULT_WORKDIR = Path("checkpoints") / "data_agent"
#: Used when neither --model nor $OPENAI_MODEL names one.
DEFAULT_MODEL = "gpt-4o-mini"
#: Orders placed before this year are past retention: the task deletes them.
CUTOFF_YEAR = 2020

TASK = {
    "goal": (
        f"orders.csv holds our orders. Orders placed before {CUTOFF_YEAR} are past retention: "
        "look at the data, find those orders, delete them, and report how many you deleted "
        "and how many remain."
    )
}

COLUMNS = ["order_id", "customer", "year", "amount", "status"]
CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
STATUSES = ["shipped", "delivered", "returned", "cancelled"]

# -- the data -------------------------------------------------------------------------------------


def generate_orders(count: int = 24) -> list[dict[str, str]]:
    """The same orders every time (no randomness), so runs and tests can be compared."""
    return [
        {
            "order_id": str(1000 + n),
            "customer": CUSTOMERS[n % len(CUSTOMERS)],
            "year": str(2016 + (n * 5) % 9),
            "amount": f"{(n * 37) % 250 + 10}.{(n * 13) % 100:02d}",
            "status": STATUSES[(n * 3) % len(STATUSES)],
        }
        for n in range(count)
    ]


def read_orders(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_orders(path: Path, rows: list[dict[str, str]]) -> None:
    """Replace the file whole (write a sibling, then rename), so a crash never leaves half a table."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


# -- the filter language --------------------------------------------------------------------------

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
CLAUSE = re.compile(r"\s*(\w+)\s*(==|!=|<=|>=|=|<|>)\s*(?:'([^']*)'|\"([^\"]*)\"|([^\s'\"]+))\s*")
FILTER_HELP = (
    "a filter is 'column op value' clauses joined by 'and', e.g. \"year < 2020 and status == 'returned'\"; "
    f"ops: ==, !=, <, <=, >, >=; columns: {', '.join(COLUMNS)}"
)

Predicate = Callable[[dict[str, str]], bool]


def as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_clause(text: str) -> Predicate:
    """One ``column op value``: numbers compare as numbers, anything else as text."""
    match = CLAUSE.fullmatch(text)
    if match is None:
        raise ValueError(f"cannot read the clause {text.strip()!r}: {FILTER_HELP}")
    column, op, *values = match.groups()
    if column not in COLUMNS:
        raise ValueError(f"no column {column!r}: {FILTER_HELP}")
    wanted = next(v for v in values if v is not None)
    compare = OPERATORS[op]
    wanted_number = as_number(wanted)

    def test(row: dict[str, str]) -> bool:
        cell_number = as_number(row[column])
        if wanted_number is not None and cell_number is not None:
            return compare(cell_number, wanted_number)
        return compare(row[column], wanted)

    return test


def parse_filter(where: str) -> Predicate:
    """A safe filter: a fixed grammar read by a regular expression, never `eval`.

    An empty filter is refused rather than matching every row: deleting the
    whole table should never be one missing argument away.
    """
    if not where.strip():
        raise ValueError(f"the filter is empty: {FILTER_HELP}")
    clauses = [parse_clause(part) for part in re.split(r"\s+and\s+", where.strip(), flags=re.IGNORECASE)]
    return lambda row: all(clause(row) for clause in clauses)


# -- the tools ------------------------------------------------------------------------------------


def describe_column(values: list[str]) -> dict[str, Any]:
    numbers = [n for n in map(as_number, values) if n is not None]
    if values and len(numbers) == len(values):
        return {"type": "number", "min": min(numbers), "max": max(numbers)}
    distinct = sorted(set(values))
    return {"type": "text", "distinct": len(distinct), "values": distinct[:8]}


def build_tools(data: Path) -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def describe() -> dict[str, Any]:
        """Describe orders.csv: its row count and, per column, the range or the distinct values."""
        rows = read_orders(data)
        return {"rows": len(rows), "columns": {c: describe_column([r[c] for r in rows]) for c in COLUMNS}}

    @tools.tool
    def query_rows(where: str, limit: int = 5) -> dict[str, Any]:
        """Count the orders that match a filter and show the first few.

        Args:
            where: clauses 'column op value' joined by 'and', e.g. "year < 2020 and status == 'returned'";
                ops ==, !=, <, <=, >, >=.
            limit: how many matching rows to show (the count covers them all).
        """
        matches = list(filter(parse_filter(where), read_orders(data)))
        return {"matched": len(matches), "rows": matches[: max(0, limit)]}

    @tools.tool
    def delete_rows(where: str) -> dict[str, Any]:
        """Delete the orders that match a filter. Cannot be undone; a person must approve it.

        Args:
            where: the same filter language as query_rows; an empty filter is refused.
        """
        keep_row = parse_filter(where)
        rows = read_orders(data)
        kept = [row for row in rows if not keep_row(row)]
        write_orders(data, kept)
        return {"deleted": len(rows) - len(kept), "remaining": len(kept)}

    register_done_tool(tools)
    return tools


# -- the scripted model ---------------------------------------------------------------------------

OLD_ORDERS = f"year < {CUTOFF_YEAR}"


def last_result(messages: Sequence[Message]) -> tuple[str, Any, bool]:
    """The last tool message: its tool, its data (JSON when it is JSON) and whether it was an error."""
    for message in reversed(messages):
        if message.role == "tool":
            try:
                data: Any = json.loads(message.content)
            except ValueError:
                data = message.content
            return message.name, data, message.error
    return "", None, False


def scripted_reply(messages: Sequence[Message]) -> ToolCall:
    """What a careful model does next, read from the conversation alone.

    Deciding from the history (not from a position in a list) lets another
    process continue a paused run and get the reply this one would have given.
    """
    turn = sum(1 for m in messages if m.role == "assistant") + 1
    tool, data, failed = last_result(messages)

    def call(name: str, **args: Any) -> ToolCall:
        return ToolCall(name, args, call_id=f"call_{turn}")

    if not tool:
        return call("describe")
    if tool == "describe":
        return call("query_rows", where=OLD_ORDERS)
    if tool == "query_rows":
        matched = data.get("matched", 0) if isinstance(data, dict) else 0
        if matched:
            return call("delete_rows", where=OLD_ORDERS)
        return call("done", answer=f"No orders from before {CUTOFF_YEAR}: nothing to delete.")
    if tool == "delete_rows" and not failed and isinstance(data, dict):
        return call(
            "done",
            answer=f"Deleted {data['deleted']} orders from before {CUTOFF_YEAR}; {data['remaining']} remain.",
        )
    if tool == "delete_rows":
        return call("done", answer=f"Left the orders from before {CUTOFF_YEAR} in place: {data}")
    return call("done", answer=f"Stopped after an unexpected {tool} result.")


def make_llm(args: argparse.Namespace) -> Any:
    """The scripted model unless a real one is asked for and configured."""
    if args.scripted:
        return FunctionBackend(lambda request: scripted_reply(request.messages))
    env = read_env("OPENAI")
    if not (env.api_key or env.base_url or args.base_url):
        print(f"{NAME}: OPENAI_API_KEY / OPENAI_BASE_URL are not set: using the scripted model")
        return FunctionBackend(lambda request: scripted_reply(request.messages))
    return openai_backend(args, DEFAULT_MODEL)


# -- approval -------------------------------------------------------------------------------------


def delete_question(data: Path) -> Callable[[ToolCall], str]:
    """The question a person reads: what would be deleted, counted on the data as it is now."""

    def question(call: ToolCall) -> str:
        where = str(call.args.get("where", ""))
        try:
            rows = read_orders(data)
            count = sum(1 for row in rows if parse_filter(where)(row))
        except (OSError, ValueError) as exc:
            return f"delete the orders where {where!r}? (cannot count them: {exc})"
        return f"delete the {count} of {len(rows)} orders where {where}? This cannot be undone."

    return question


def ask_on_terminal(question: str) -> bool:
    """y/N on the terminal: anything but yes (or end of input) is a no."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def approval_mode(args: argparse.Namespace) -> str:
    """How this session answers: approve, reject, ask (a terminal) or pause (nobody to ask)."""
    if args.auto_approve:
        return "approve"
    if args.reject:
        return "reject"
    return "ask" if sys.stdin.isatty() else "pause"


def approval_hook(data: Path, mode: str) -> ApprovalHook:
    handlers: dict[str, Callable[[ToolCall, str], Any] | None] = {
        "approve": lambda call, reason: True,
        "reject": lambda call, reason: False,
        "ask": lambda call, reason: ask_on_terminal(reason),
        "pause": None,
    }
    return ApprovalHook(["delete_rows"], handler=handlers[mode], reason=delete_question(data))


# -- runs on disk ---------------------------------------------------------------------------------


class Workdir:
    """The example's files: the orders, the checkpoint store, and which run came last."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "orders.csv"
        self.runs = root / "runs"
        self.last_run_file = root / "last_run"

    def store(self) -> FileCheckpointStore:
        return FileCheckpointStore(self.runs)

    def clean(self) -> None:
        """Remove only what this example writes, never the rest of a directory given by --workdir."""
        for path in (self.data, self.last_run_file, self.data.with_name(self.data.name + ".partial")):
            path.unlink(missing_ok=True)
        if self.runs.is_dir():
            for child in self.runs.iterdir():
                child.unlink()
            self.runs.rmdir()
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            rows = generate_orders()
            write_orders(self.data, rows)
            print(f"wrote {len(rows)} orders to {self.data}")

    def command(self, *flags: str) -> str:
        """The command that works on this directory, for the messages that say what to run next."""
        where = () if self.root == DEFAULT_WORKDIR else ("--workdir", shlex.quote(str(self.root)))
        return " ".join((START_COMMAND, *flags, *where))

    def last_run(self) -> str | None:
        try:
            return self.last_run_file.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def remember(self, run_id: str) -> None:
        self.last_run_file.write_text(run_id + "\n", encoding="utf-8")


# -- running --------------------------------------------------------------------------------------


def report(result: RunResult, run_id: str, work: Workdir) -> int:
    """Say how the run ended and what to do next; the exit code."""
    if result.stop_reason == "approval_pending":
        print("stopped: approval_pending")
        for pending in result.pending:
            print(f"waiting for approval: {pending.tool}({pending.args}): {pending.reason}")
        print(f"run {run_id} is saved and paused; to decide and continue it, run:")
        choices = [
            (work.command("--resume"), "asks you on a terminal"),
            (work.command("--resume", "--auto-approve"), "approves"),
            (work.command("--resume", "--reject"), "refuses"),
        ]
        width = max(len(command) for command, _ in choices)
        for command, effect in choices:
            print(f"  {command.ljust(width)}  # {effect}")
        return 0
    print(f"stopped: {result.stop_reason}" + (f" ({result.detail})" if not result.ok else ""))
    if result.final_answer:
        print(f"answer: {result.final_answer.get('answer', result.final_answer)}")
    return 0 if result.ok else 1


def run_session(llm: Any, work: Workdir, args: argparse.Namespace, run_id: str, **where: Any) -> int:
    """One session of the run (`state=` a new one, or `resume=` a saved one), printing each step."""
    # A small window, so compaction visibly fires even in the short scripted run.
    chain = compact_chain(PruneToolResults(keep_recent=1, max_chars=120), TruncateCompact(keep_recent=4))
    compaction = ThresholdCompactHook(ContextBudget(context_window=COMPACT_WINDOW), chain)
    loop = composable_loop(
        llm=llm,
        tools=build_tools(work.data),
        hooks=[approval_hook(work.data, approval_mode(args)), compaction],
        store=work.store(),
        max_steps=args.max_steps,
        **where,
    )
    seen = len(loop.state.metadata.get("compactions", []))
    for step in loop:
        seen = print_compactions(loop.state, seen)  # made before the model call behind this step
        print(step.pretty())
    result = loop.result
    assert result is not None
    return report(result, run_id, work)


#: Tokens of context the example pretends its model has (about 1,600 characters).
COMPACT_WINDOW = 400


def print_compactions(state: DefaultState, seen: int) -> int:
    """Print the compactions recorded since `seen`; returns how many there are now."""
    records = state.metadata.get("compactions", [])
    for record in records[seen:]:
        before, after = record.get("before_chars"), record.get("after_chars")
        stages = ", ".join(record.get("stages", [])) or "none"
        print(f"   compacted the history: {before} -> {after} characters ({stages})")
    return len(records)


def previous_is_paused(work: Workdir, run_id: str) -> bool:
    """Whether the last run waits for a decision; a run that cannot be read does not stop a new one."""
    try:
        return run_status(load_run(work.store(), run_id).to_dict()) == "paused"
    except LoopError:
        return False


def start(llm: Any, work: Workdir, args: argparse.Namespace) -> int:
    previous = work.last_run()
    if previous and previous_is_paused(work, previous):
        print(
            f"note: run {previous} was waiting for approval; it is left as it is, and --resume now "
            "continues the new run"
        )
    state = DefaultState(task=TASK)
    work.remember(state.run_id)
    print(f"run {state.run_id} (saved in {work.runs})")
    return run_session(llm, work, args, state.run_id, state=state)


def decide(work: Workdir, run_id: str, args: argparse.Namespace) -> bool:
    """Decide the paused run's undecided calls, then save; False when nobody can decide here."""
    store = work.store()
    mode = approval_mode(args)
    with store.lock(run_id):
        state = load_run(store, run_id)
        undecided = [p for p in state.pending if p.decision is None]
        if undecided and mode == "pause":
            for pending in undecided:
                print(f"waiting for approval: {pending.tool}({pending.args}): {pending.reason}")
            print(
                f"run {run_id} needs a decision: run `{work.command('--resume')}` on a terminal to be asked, "
                "or add --auto-approve or --reject"
            )
            return False
        for pending in undecided:
            if mode == "approve" or (mode == "ask" and ask_on_terminal(pending.reason)):
                state.approve(pending.call_id, args_hash=pending.args_hash)
                print(f"approved {pending.tool}({pending.args})")
            else:
                state.reject(pending.call_id, "a person said no", args_hash=pending.args_hash)
                print(f"rejected {pending.tool}({pending.args})")
        store.save(run_id, state.to_dict())
    return True


def resume(llm: Any, work: Workdir, args: argparse.Namespace) -> int:
    run_id = work.last_run()
    if run_id is None or run_id not in (work.store().list_runs() if work.runs.is_dir() else []):
        print(
            f"{NAME}: no saved run in {work.root} to resume; start one with `{work.command()}`",
            file=sys.stderr,
        )
        return 2
    state = load_run(work.store(), run_id)
    status = run_status(state.to_dict())
    if status == "finished":
        answer = (state.final_answer or {}).get("answer", state.final_answer)
        print(
            f"run {run_id} is finished (answer: {answer}); nothing to do. "
            f"Start a new one with `{work.command()}`"
        )
        return 0
    if status == "paused" and not decide(work, run_id, args):
        return 0
    print(f"continuing run {run_id} ({status})")
    return run_session(llm, work, args, run_id, resume=run_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ExampleParser(NAME, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripted", action="store_true", help="use a scripted model (no key needed)")
    answer = parser.add_mutually_exclusive_group()
    answer.add_argument("--auto-approve", action="store_true", help="approve every delete without asking")
    answer.add_argument("--reject", action="store_true", help="refuse every delete without asking")
    start_or_resume = parser.add_mutually_exclusive_group()
    start_or_resume.add_argument(
        "--clean", action="store_true", help="delete the data and the saved runs first, then start afresh"
    )
    start_or_resume.add_argument("--resume", action="store_true", help="continue the last run")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where the data and the runs live (default: ./{DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--max-steps",
        type=step_budget,
        default=12,
        help="step budget of the whole run, at least 1 (default 12)",
    )
    add_model_options(parser, DEFAULT_MODEL)
    args = parser.parse_args(argv)
    work = Workdir(args.workdir)

    def run(llm: Any) -> int:
        try:
            if args.clean:
                work.clean()
            if args.resume:
                return resume(llm, work, args)
            work.prepare()
            return start(llm, work, args)
        except OSError as exc:  # the work directory: missing rights, a full disk, a file in the way
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2

    return run_guarded(NAME, lambda: make_llm(args), run, (ConfigError, ImportError))


if __name__ == "__main__":
    sys.exit(main())
