"""Count what the suite checks of the RELIABILITY.md groups in the row map, and write docs/reliability.md.

Runs exactly the tests that `tests/reliability_rows.py` maps to those rows, records for each
test invocation whether it failed and how many cases it tried, then writes one table per
group, a summary, and the rows not covered and why. A case is an example hypothesis really
executed, or one invocation of an ordinary test (each parametrization on its own), or the
number a test reports with ``record_property("cases", n)``.

    python3 scripts/reliability.py                     # ci profile, writes docs/reliability.md
    python3 scripts/reliability.py --profile nightly   # 10,000 examples per property
    python3 scripts/reliability.py --check             # also fail on skipped tests or stale entries

The exit status is non-zero when any mapped test fails (or pytest could not run them).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS_FILE = ROOT / "tests" / "reliability_rows.py"
DEFAULT_OUT = ROOT / "docs" / "reliability.md"
PROFILES = ("ci", "dev", "nightly")


# -- the map -------------------------------------------------------------------------------------


def load_rows(path: Path = ROWS_FILE) -> ModuleType:
    """Import the row map by its path (the tests folder is not a package)."""
    loaded = sys.modules.get("reliability_rows")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
        return loaded
    spec = importlib.util.spec_from_file_location("reliability_rows", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules["reliability_rows"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def matches(entry: str, nodeid: str) -> bool:
    """Whether a map entry (a file or ``file::test``) names this collected test invocation."""
    return nodeid == entry or nodeid.startswith((entry + "::", entry + "["))


def entries_to_run(entries: Iterable[str]) -> list[str]:
    """The entries to hand pytest, without those a whole-file entry already covers.

    Passing both ``f.py`` and ``f.py::t`` would make pytest run ``t`` twice.
    """
    unique = sorted(set(entries))
    files = {entry for entry in unique if "::" not in entry}
    return [entry for entry in unique if entry in files or entry.split("::")[0] not in files]


# -- counting while pytest runs ------------------------------------------------------------------


def examples_in(statistics: Mapping[str, Any]) -> int:
    """Examples one hypothesis run executed, summed over its phases.

    `statistics` is what hypothesis hands `hypothesis.statistics.collector`: per phase, a
    list of test cases with a status. Passing (valid) and failing (interesting) examples
    count; invalid ones (rejected by ``assume`` or a filter) never reached the assertions.
    """
    total = 0
    for key, phase in statistics.items():
        if key.endswith("-phase") and isinstance(phase, Mapping):
            cases = phase.get("test-cases", ())
            total += sum(1 for case in cases if case.get("status") in ("valid", "interesting"))
    return total


@contextmanager
def counting_examples() -> Iterator[list[int]]:
    """Collect the examples of every hypothesis run inside the block, one count per run.

    This sees properties written as ``@given`` tests and those a test runs inside itself
    (a nested ``@given`` function), and it passes the statistics on to whoever collected
    them before (hypothesis's pytest plugin), so nothing else changes.
    """
    # imported here: hypothesis must be first imported by pytest, which rewrites its plugin
    from hypothesis.statistics import collector

    counts: list[int] = []
    outer = collector.value

    def note(statistics: Mapping[str, Any]) -> None:
        counts.append(examples_in(statistics))
        if outer is not None:
            outer(statistics)

    with collector.with_value(cast(Any, note)):  # typed as holding None in hypothesis
        yield counts


@dataclass
class Outcome:
    """What one test invocation did."""

    cases: int = 0
    failed: bool = False
    skipped: bool = False
    ran: bool = False


class CaseCounter:
    """A pytest plugin recording, per test invocation, its outcome and the cases it tried."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}

    def _outcome(self, nodeid: str) -> Outcome:
        return self.outcomes.setdefault(nodeid, Outcome())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = self._outcome(report.nodeid)
        if report.failed:
            outcome.failed = True
            outcome.ran = True
        elif report.skipped:
            outcome.skipped = True
        elif report.when == "call":
            outcome.ran = True
        for name, value in report.user_properties:
            if name == "cases" and isinstance(value, int):
                outcome.cases = max(outcome.cases, value)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        # innermost wrapper: inside hypothesis's own, whose collector it chains to
        with counting_examples() as counts:
            try:
                return (yield)
            finally:
                outcome = self._outcome(item.nodeid)
                outcome.cases = max(outcome.cases, sum(counts))

    def finish(self) -> None:
        """An invocation that ran and reported no count tried one case."""
        for outcome in self.outcomes.values():
            if outcome.ran and outcome.cases == 0:
                outcome.cases = 1


def run_tests(entries: Sequence[str], profile: str) -> tuple[int, dict[str, Outcome]]:
    """Run the mapped tests in this process; pytest's exit code and each invocation's outcome."""
    os.environ["HYPOTHESIS_PROFILE"] = profile  # tests/conftest.py loads the profile from here
    counter = CaseCounter()
    args = [
        f"--rootdir={ROOT}",
        "-p",
        "no:cacheprovider",
        "--no-cov",
        *[str(ROOT / entry) for entry in entries_to_run(entries)],
    ]
    code = pytest.main(args, plugins=[counter])
    counter.finish()
    return int(code), counter.outcomes


# -- figures -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """Totals over a set of test invocations."""

    tests: int = 0
    cases: int = 0
    failures: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, nodeids: Iterable[str], outcomes: dict[str, Outcome]) -> Figure:
        figure = cls()
        for nodeid in set(nodeids):
            outcome = outcomes[nodeid]
            figure.tests += 1
            figure.cases += outcome.cases
            figure.failures += outcome.failed
            figure.skipped += outcome.skipped and not outcome.failed
        return figure


def invocations_of(row: Any, outcomes: dict[str, Outcome]) -> set[str]:
    """The collected test invocations a row's entries name."""
    return {nodeid for nodeid in outcomes for entry in row.tests if matches(entry, nodeid)}


def stale_entries(rows: Iterable[Any], outcomes: dict[str, Outcome]) -> list[str]:
    """Entries that named no test invocation in this run."""
    return sorted(
        {entry for row in rows for entry in row.tests if not any(matches(entry, n) for n in outcomes)}
    )


# -- the document --------------------------------------------------------------------------------


def number(n: int) -> str:
    return f"{n:,}"


def tested_rows(rows: Sequence[Any]) -> str:
    """``11/11`` or ``10/11 (3 in part)``: rows with tests over rows in the group."""
    with_tests = [row for row in rows if row.tests]
    in_part = sum(1 for row in with_tests if row.gap)
    text = f"{len(with_tests)}/{len(rows)}"
    return f"{text} ({in_part} in part)" if in_part else text


def summary_table(module: ModuleType, outcomes: dict[str, Outcome]) -> list[str]:
    lines = [
        "| Group | Area | Rows tested | Tests run | Cases tried | Failures |",
        "|---|---|---|---|---|---|",
    ]
    everything: set[str] = set()
    for group, title in module.GROUPS.items():
        rows = module.rows_of(group)
        nodeids = set().union(*(invocations_of(row, outcomes) for row in rows))
        everything |= nodeids
        figure = Figure.of(nodeids, outcomes)
        lines.append(
            f"| {group} | {title} | {tested_rows(rows)} | {number(figure.tests)} "
            f"| {number(figure.cases)} | {figure.failures} |"
        )
    total = Figure.of(everything, outcomes)
    lines.append(
        f"| all | each test counted once | {tested_rows(module.ROWS)} | {number(total.tests)} "
        f"| {number(total.cases)} | {total.failures} |"
    )
    return lines


def group_section(group: str, module: ModuleType, outcomes: dict[str, Outcome]) -> list[str]:
    rows = module.rows_of(group)
    lines = [
        f"## {group}. {module.GROUPS[group]}",
        "",
        "| Row | Checks | Tests run | Cases tried | Failures |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if not row.tests:
            lines.append(f"| {row.id} | {row.checks} | not covered | – | – |")
            continue
        figure = Figure.of(invocations_of(row, outcomes), outcomes)
        mark = " (in part)" if row.gap else ""
        lines.append(
            f"| {row.id} | {row.checks}{mark} | {number(figure.tests)} | {number(figure.cases)} "
            f"| {figure.failures} |"
        )
    partial = [row for row in rows if row.tests and row.gap]
    if partial:
        lines += ["", "Tested in part; what is not tested yet, and why:", ""]
        lines += [f"- **{row.id}**: {row.gap}." for row in partial]
    lines += ["", "<details><summary>The tests of each row</summary>", ""]
    for row in rows:
        if row.tests:
            lines.append(f"- **{row.id}**: " + ", ".join(f"`{entry}`" for entry in row.tests))
    lines += ["", "</details>", ""]
    return lines


def failed_and_skipped(module: ModuleType, outcomes: dict[str, Outcome]) -> list[str]:
    """Name the invocations that failed or were skipped, so no figure above is a mystery."""
    nodeids = set().union(*(invocations_of(row, outcomes) for row in module.ROWS))
    failed = sorted(n for n in nodeids if outcomes[n].failed)
    skipped = sorted(n for n in nodeids if outcomes[n].skipped and not outcomes[n].failed)
    lines: list[str] = []
    if failed:
        lines += [f"**Failed in this run** ({len(failed)}):", ""]
        lines += [f"- `{nodeid}`" for nodeid in failed] + [""]
    if skipped:
        lines += [f"**Skipped in this run** ({len(skipped)}; they count no case):", ""]
        lines += [f"- `{nodeid}`" for nodeid in skipped] + [""]
    return lines


def render(
    module: ModuleType, outcomes: dict[str, Outcome], *, command: str, profile: str, seconds: float
) -> str:
    """The whole of docs/reliability.md."""
    commit = current_commit()
    at = f", commit `{commit}`" if commit else ""
    lines = [
        "# Reliability figures",
        "",
        f"What the test suite checks of the fault matrix in RELIABILITY.md, groups "
        f"{listed(module.GROUPS)}, counted by running those tests. This page is written by a "
        "command; do not edit it by hand:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Hypothesis profile: `{profile}`. Run on {datetime.date.today().isoformat()}{at}, "
        f"in {seconds:.0f} s.",
        "",
        "`--profile nightly` runs 10,000 examples per property; `--check` also fails on a skipped",
        "test or on a map entry that names no test; `--out PATH` writes the page elsewhere.",
        "",
        "*Cases tried* counts what really ran: the examples hypothesis executed for a property",
        "(invalid ones excluded), one per invocation of any other test (each parametrization",
        'counts), or the number a test reports with `record_property("cases", n)`. *Failures*',
        "counts failing test invocations. A test that checks several rows of a group counts once",
        "in the group's total. Which tests check which row is kept in `tests/reliability_rows.py`;",
        "`tests/test_reliability_map.py` keeps that map in step with the suite.",
        "",
        "## Summary",
        "",
        *summary_table(module, outcomes),
        "",
        *failed_and_skipped(module, outcomes),
    ]
    for group in module.GROUPS:
        lines += group_section(group, module, outcomes)
    lines += [
        "## Rows not covered",
        "",
        "| Row | Why |",
        "|---|---|",
        *[f"| {row.id} | {row.gap} |" for row in module.ROWS if not row.tests],
        "",
        *later_groups(module),
    ]
    return "\n".join(lines)


def listed(names: Iterable[str]) -> str:
    """``A, B and C``."""
    items = list(names)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def later_groups(module: ModuleType) -> list[str]:
    """The closing paragraph: the groups of the matrix the map does not list yet, and where they wait."""
    later: dict[str, str] = getattr(module, "LATER_GROUPS", {})
    if not later:
        return []
    which = "; ".join(f"{group}, {what}" for group, what in later.items())
    return [f"Groups {listed(later)} belong to later issues and are not counted here ({which}).", ""]


def current_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


# -- the command ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", choices=PROFILES, default="ci", help="hypothesis profile (default: ci)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also fail when a mapped test was skipped or a map entry named no test",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the page")
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    """The command as a reader would type it from the repository root."""
    words = ["python3", "scripts/reliability.py"]
    if args.profile != "ci":
        words += ["--profile", args.profile]
    if args.check:
        words.append("--check")
    if args.out.resolve() != DEFAULT_OUT:
        words += ["--out", str(args.out)]
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    module = load_rows()
    entries = [entry for row in module.ROWS for entry in row.tests]
    started = time.monotonic()
    code, outcomes = run_tests(entries, args.profile)
    seconds = time.monotonic() - started
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        print(f"reliability: pytest could not run the mapped tests (exit code {code})", file=sys.stderr)
        return code
    text = render(module, outcomes, command=command_line(args), profile=args.profile, seconds=seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print()
    print("\n".join(summary_table(module, outcomes)))
    print(f"\nwrote {args.out} ({args.profile} profile, {seconds:.0f} s)")
    failures = sum(outcome.failed for outcome in outcomes.values())
    problems = []
    if failures:
        problems.append(f"{failures} mapped test invocations failed")
    if args.check:
        stale = stale_entries(module.ROWS, outcomes)
        skipped = sum(o.skipped and not o.failed for o in outcomes.values())
        if stale:
            problems.append("map entries that named no test: " + ", ".join(stale))
        if skipped:
            problems.append(f"{skipped} mapped test invocations were skipped")
    for problem in problems:
        print(f"reliability: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
