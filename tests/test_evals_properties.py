"""Properties of evals: case files round-trip, every verdict normalises, nothing raised ever passes."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet.evals import (
    STATUSES,
    EvalCase,
    EvalContext,
    EvalReport,
    EvalResult,
    load_cases,
    run_evals,
    save_case,
    summarize,
    to_result,
)

# -- case files ------------------------------------------------------------------------------

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_falsy = st.sampled_from([0, 0.0, "", False, [], {}])
_cases = st.builds(
    EvalCase,
    id=st.text(min_size=1, max_size=12),
    task=st.text() | st.dictionaries(st.text(max_size=5), _json, max_size=3),
    expected=st.none() | _falsy | _json,
    tags=st.lists(st.text(max_size=6), max_size=3).map(tuple),
    metadata=st.dictionaries(st.text(max_size=5), _json, max_size=3),
)


def _is_falsy_expected(case: EvalCase) -> bool:
    return case.expected is not None and not case.expected


def test_cases_saved_to_a_file_load_back_equal_including_falsy_expected_values() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=150)
    @given(
        cases=st.lists(_cases, min_size=1, max_size=4, unique_by=lambda c: c.id),
        suffix=st.sampled_from([".jsonl", ".json"]),
    )
    def round_trip(cases: list[EvalCase], suffix: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"cases{suffix}"
            for case in cases:
                save_case(path, case)
            loaded = load_cases(path)
        assert loaded == cases
        assert [type(c.expected) for c in loaded] == [type(c.expected) for c in cases]
        falsy = sum(_is_falsy_expected(c) for c in cases)
        seen["falsy expected"] += falsy
        seen["dict task"] += sum(isinstance(c.task, dict) for c in cases)
        seen[suffix] += 1
        if falsy:
            event("a case expects a falsy value")

    round_trip()
    # the strategy really reaches what the round trip must keep
    assert seen["falsy expected"] >= 30 and seen["dict task"] >= 30, seen
    assert seen[".jsonl"] >= 30 and seen[".json"] >= 30, seen


# -- normalisation ---------------------------------------------------------------------------

_verdicts = (
    st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats()
    | st.sampled_from([0, 0.0, 1, 1.0])
    | st.text(max_size=8)
    | st.none()
    | st.lists(st.booleans(), max_size=2)
    | st.fixed_dictionaries(
        {},
        optional={
            "passed": st.booleans() | st.none() | st.text(max_size=2),
            "score": st.floats() | st.none() | st.sampled_from([0.0, 0]),
            "detail": st.text(max_size=5),
            "label": st.text(max_size=5),
            "extra": st.integers(),
        },
    )
)
_thresholds = st.sampled_from([0.0, 0.5, 1.0]) | st.floats(min_value=0.0, max_value=1.0)


def test_every_value_normalises_to_a_consistent_result() -> None:
    seen: Counter[str] = Counter()

    @given(value=_verdicts, threshold=_thresholds)
    def normalise(value: Any, threshold: float) -> None:
        result = to_result("eval_x", value, threshold=threshold)
        assert result.status in STATUSES and result.name == "eval_x"
        assert result.passed == (result.status == "passed")
        assert result.score is None or 0.0 <= result.score <= 1.0
        if result.status == "error":
            assert result.score is None and not result.passed
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and not math.isnan(value) and 0 <= value <= 1:
            assert result.score == value and result.passed == (value >= threshold)
            if value == 0:
                seen["zero score"] += 1
                event("a score of zero")
        if value is None or isinstance(value, list):
            assert result.status == "error"
        if isinstance(value, str):
            assert (result.passed, result.score) == (False, 0.0)
        seen[result.status] += 1

    normalise()
    assert seen["zero score"] >= 10 and min(seen[s] for s in ("passed", "failed", "error")) >= 30, seen


class _Raised(Exception):
    pass


_exceptions = st.sampled_from(
    [
        ValueError,
        TypeError,
        KeyError,
        RuntimeError,
        ZeroDivisionError,
        SystemExit,
        GeneratorExit,
        StopIteration,
        _Raised,
    ]
)


def test_an_eval_that_raises_anything_contained_is_never_a_pass() -> None:
    seen: Counter[str] = Counter()

    @given(kind=_exceptions, message=st.text(max_size=10), required=st.booleans())
    def raising(kind: type[BaseException], message: str, required: bool) -> None:
        def eval_raises(ctx: EvalContext) -> bool:
            raise kind(message)

        eval_raises.__dict__["eval_required"] = required
        report = run_evals(EvalContext(), [eval_raises])
        (result,) = report.results
        assert (result.status, result.passed, result.score) == ("error", False, None)
        assert report.passed is not required
        seen[kind.__name__] += 1

    raising()
    assert len(seen) == 9 and min(seen.values()) >= 5, seen


# -- several runs ----------------------------------------------------------------------------

_results = st.builds(
    EvalResult,
    name=st.sampled_from(["eval_a", "eval_b"]),
    score=st.none() | st.sampled_from([0.0, 0.5, 1.0]),
    passed=st.booleans(),
    status=st.sampled_from(["", "error", "skipped"]),
    required=st.booleans(),
)


def test_the_summary_counts_runs_passes_and_averages_the_scores_given() -> None:
    seen: Counter[str] = Counter()

    @given(runs=st.lists(st.lists(_results, max_size=3).map(tuple), min_size=1, max_size=4))
    def summary(runs: list[tuple[EvalResult, ...]]) -> None:
        reports = [EvalReport(results) for results in runs]
        flat = [r for results in runs for r in results]
        for row in summarize(reports):
            mine = [r for r in flat if r.name == row.name]
            scores = [r.score for r in mine if r.score is not None]
            assert (row.runs, row.passed) == (len(mine), sum(r.passed for r in mine))
            if scores:
                assert row.mean_score is not None and math.isclose(row.mean_score, sum(scores) / len(scores))
                seen["zero in mean"] += 0.0 in scores
            else:
                assert row.mean_score is None
            assert row.ok == (not row.required or row.passed == row.runs)
        for report in reports:
            assert report.passed == (bool(report.results) and not any(r.blocks for r in report.results))
            seen["failing report"] += not report.passed

    summary()
    assert seen["zero in mean"] >= 30 and seen["failing report"] >= 30, seen
