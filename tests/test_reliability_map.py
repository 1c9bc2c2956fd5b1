"""The reliability map cannot rot: every entry is still a test, every row is tested or says why not.

`tests/reliability_rows.py` maps rows of RELIABILITY.md groups A, B, C, D, E, G, I and L
to tests; `scripts/reliability.py` runs them and writes docs/reliability.md. A renamed test,
a dropped row or a page left with failures fails here. Collection runs once per session,
in a subprocess, without running anything.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import reliability_rows as rows_module
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reliability_rows import GROUPS, ROWS

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reliability.md"

# The rows of each group in RELIABILITY.md (section 5), written out so a row cannot go missing.
MATRIX = {"A": 11, "B": 9, "C": 12, "D": 9, "E": 11, "F": 6, "G": 10, "H": 9, "I": 4, "J": 6, "K": 5, "L": 7}


@pytest.fixture(scope="session")
def collected() -> list[str]:
    """Node ids pytest collects from every file the map names (collection only)."""
    files = sorted({entry.split("::")[0] for row in ROWS for entry in row.tests})
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            *files,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="session")
def script() -> ModuleType:
    """scripts/reliability.py, imported by path."""
    spec = importlib.util.spec_from_file_location("reliability_script", ROOT / "scripts" / "reliability.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def named(entry: str, collected: list[str], matches: Callable[[str, str], bool]) -> list[str]:
    return [nodeid for nodeid in collected if matches(entry, nodeid)]


def test_every_entry_of_the_map_is_a_collected_test(collected: list[str], script: ModuleType) -> None:
    stale = sorted(
        {entry for row in ROWS for entry in row.tests if not named(entry, collected, script.matches)}
    )
    assert stale == [], f"entries that name no test (renamed or removed?): {stale}"


def test_every_row_of_the_listed_groups_is_tested_or_says_why_not() -> None:
    expected = [f"{group}{n}" for group, count in MATRIX.items() for n in range(1, count + 1)]
    assert [row.id for row in ROWS] == expected
    assert set(GROUPS) == set(MATRIX)
    for row in ROWS:
        assert row.checks.strip(), f"{row.id} says what it checks"
        assert row.tests or row.gap.strip(), f"{row.id} has no test and no reason"
        assert len(set(row.tests)) == len(row.tests), f"{row.id} lists a test twice"


def test_every_group_of_the_matrix_is_listed_or_named_as_later() -> None:
    # the page's closing paragraph names the groups not listed; none may fall between the two
    assert set(GROUPS).isdisjoint(rows_module.LATER_GROUPS)
    assert sorted(set(GROUPS) | set(rows_module.LATER_GROUPS)) == list("ABCDEFGHIJKL")


def test_the_map_never_covers_fewer_rows_than_when_it_was_written() -> None:
    # a guard against emptying the map by mistake; raise these numbers as rows get tests
    tested = {group: sum(1 for row in rows_module.rows_of(group) if row.tests) for group in GROUPS}
    floor = {
        "A": 11,
        "B": 9,
        "C": 12,
        "D": 9,
        "E": 11,
        "F": 6,
        "G": 10,
        "H": 8,
        "I": 4,
        "J": 5,
        "K": 4,
        "L": 6,
    }
    assert all(tested[group] >= floor[group] for group in GROUPS), tested


def test_d9_tests_run_under_both_loops(collected: list[str], script: ModuleType) -> None:
    (d9,) = [row for row in ROWS if row.id == "D9"]
    for entry in d9.tests:
        drivers = {part for nodeid in named(entry, collected, script.matches) for part in params(nodeid)}
        assert {"sync", "async"} <= drivers, f"{entry} does not run under both loops"


def params(nodeid: str) -> list[str]:
    """The parametrization ids of a node id: ``t[sync-keep]`` gives ``["sync", "keep"]``."""
    if not nodeid.endswith("]"):
        return []
    return nodeid.rsplit("[", 1)[1].rstrip("]").split("-")


def test_passing_both_a_file_and_one_of_its_tests_runs_the_test_once(script: ModuleType) -> None:
    entries = ["tests/a.py", "tests/a.py::test_x", "tests/b.py::test_y", "tests/b.py::test_y"]
    assert script.entries_to_run(entries) == ["tests/a.py", "tests/b.py::test_y"]
    assert script.matches("tests/a.py::test_x", "tests/a.py::test_x[sync]")
    assert not script.matches("tests/a.py::test_x", "tests/a.py::test_x_more")


def test_the_examples_hypothesis_really_ran_are_counted(script: ModuleType) -> None:
    # a real run of the installed hypothesis: rejected examples are not counted, each run is
    ran: list[int] = []

    @settings(max_examples=7, database=None)
    @given(st.integers(0, 1000))
    def property_with_rejections(n: int) -> None:
        assume(n % 2 == 0)
        ran.append(n)

    @settings(max_examples=3, database=None)
    @given(st.integers(0, 1000))
    def small_property(n: int) -> None:
        ran.append(n)

    with script.counting_examples() as counts:
        property_with_rejections()
        small_property()
    assert counts == [7, 3] and len(ran) == 10


def test_the_page_has_a_summary_line_with_no_failure_for_each_group() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert "python3 scripts/reliability.py" in text, "the page names the command that wrote it"
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    for group in GROUPS:
        line = re.search(rf"^\| {group} \|.*$", summary, re.MULTILINE)
        assert line, f"no summary line for group {group}"
        cells = [cell.strip() for cell in line.group(0).strip("|").split("|")]
        rows_tested, cases, failures = cells[2], cells[4], cells[5]
        assert failures == "0", f"group {group}: {line.group(0)}"
        assert int(cases.replace(",", "")) > 0, f"group {group} tried no case"
        tested = sum(1 for row in rows_module.rows_of(group) if row.tests)
        assert rows_tested.startswith(f"{tested}/{MATRIX[group]}"), (
            f"group {group}: the page says {rows_tested}, the map has {tested} rows tested; "
            "run python3 scripts/reliability.py"
        )


def test_the_page_lists_every_row_not_covered_with_its_reason() -> None:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Rows not covered", 1)[1]
    for row in ROWS:
        if not row.tests:
            assert f"| {row.id} | {row.gap} |" in section, f"{row.id} is missing from the page"
