"""Evals: verdicts normalised, running, discovery, the contexts, the hook, case files, pytest helpers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from doubles import Driver

from looplet import (
    BaseToolRegistry,
    DefaultState,
    MockLLMBackend,
    ToolCall,
    composable_loop,
    register_done_tool,
)
from looplet.evals import (
    BUILTIN_EVALS,
    EvalCase,
    EvalContext,
    EvalHook,
    EvalInputError,
    EvalReport,
    EvalResult,
    ask_judge,
    assert_evals_pass,
    case_params,
    collect_evals,
    discover_evals,
    evaluation,
    format_table,
    load_cases,
    record_artifact,
    run_evals,
    save_case,
    skip,
    summarize,
    to_result,
)
from looplet.tools.context import ToolContext
from looplet.types import RunResult, Usage

# -- a small agent: add two numbers, then finish ---------------------------------------------


def _tools(answer_bug: int = 0) -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def add(a: int, b: int, ctx: ToolContext) -> int:
        """Add two numbers."""
        total = a + b + answer_bug
        record_artifact(ctx, "sum", total)  # what the tool really computed
        return total

    register_done_tool(tools)
    return tools


def _script(answer: str = "5") -> MockLLMBackend:
    return MockLLMBackend(
        responses=[
            ToolCall("add", {"a": 2, "b": 3}, call_id="c1"),
            ToolCall("done", {"answer": answer}, call_id="c2"),
        ]
    )


def eval_answer_is_five(ctx: EvalContext) -> bool | str:
    return ctx.answer == "5" or f"expected '5', got {ctx.answer!r}"


def eval_sum_artifact(ctx: EvalContext) -> bool:
    return bool(ctx.artifacts.get("sum") == 5)


# -- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "score", "passed", "status"),
    [
        (True, 1.0, True, "passed"),
        (False, 0.0, False, "failed"),
        (1, 1.0, True, "passed"),
        (0, 0.0, False, "failed"),
        (0.0, 0.0, False, "failed"),
        (0.75, 0.75, True, "passed"),
        (0.5, 0.5, False, "failed"),
        ("expected 4, got 5", 0.0, False, "failed"),
        ({"passed": True, "detail": "fine"}, 1.0, True, "passed"),
        ({"score": 0.0}, 0.0, False, "failed"),
        ({"score": 0.9, "label": "polite", "tokens": 12}, 0.9, True, "passed"),
        ({"score": 0.2, "passed": True}, 0.2, True, "passed"),
    ],
)
def test_each_verdict_shape_normalises_to_one_result(
    value: Any, score: float, passed: bool, status: str
) -> None:
    result = to_result("eval_x", value, threshold=0.6)
    assert (result.name, result.score, result.passed, result.status) == ("eval_x", score, passed, status)


def test_a_zero_score_is_a_score_not_a_missing_value() -> None:
    at_zero = to_result("eval_x", 0.0, threshold=0.0)
    assert (at_zero.score, at_zero.passed, at_zero.status) == (0.0, True, "passed")
    below = to_result("eval_x", 0.0, threshold=0.5)
    assert below.score == 0.0 and below.detail == "score 0 is below the threshold 0.5"
    assert summarize([EvalReport((below,)), EvalReport((to_result("eval_x", 1.0),))])[0].mean_score == 0.5
    assert "0.00" in format_table(summarize([EvalReport((below,))]))


def test_a_string_is_a_failure_message_and_a_dict_carries_labels_and_data() -> None:
    message = to_result("eval_x", "the answer was rude")
    assert (message.passed, message.detail) == (False, "the answer was rude")
    labelled = to_result("eval_x", {"passed": True, "label": "polite", "words": 3})
    assert (labelled.passed, labelled.label, labelled.data) == (True, "polite", {"words": 3})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "returned None"),
        (1.5, "between 0 and 1"),
        (-0.1, "between 0 and 1"),
        (7, "between 0 and 1"),
        (math.nan, "between 0 and 1"),
        ([True], "returned a list"),
        ({"detail": "no verdict"}, "needs 'passed' or 'score'"),
        ({"passed": "yes"}, "'passed' must be true or false"),
        ({"score": "high"}, "must be a number"),
    ],
)
def test_a_value_that_is_no_verdict_is_an_error_never_a_pass(value: Any, reason: str) -> None:
    result = to_result("eval_x", value)
    assert (result.status, result.passed, result.score) == ("error", False, None)
    assert reason in result.detail


def test_an_eval_result_is_kept_and_its_name_filled_in() -> None:
    mine = EvalResult("", 0.4, True, "partial credit accepted")
    result = to_result("eval_x", mine)
    assert (result.name, result.score, result.passed, result.detail) == (
        "eval_x",
        0.4,
        True,
        "partial credit accepted",
    )


def test_an_error_or_skip_status_can_never_pass() -> None:
    assert EvalResult("e", None, True, status="error").passed is False
    assert EvalResult("e", None, True, status="skipped").passed is False
    with pytest.raises(ValueError, match="status must be one of"):
        EvalResult("e", 1.0, True, status="great")


@pytest.mark.parametrize("threshold", [-0.1, 1.1, math.nan])
def test_a_threshold_outside_zero_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        run_evals(EvalContext(), [eval_answer_is_five], threshold=threshold)


# -- running ---------------------------------------------------------------------------------


def test_an_eval_that_raises_is_an_error_result_and_the_others_still_run() -> None:
    def eval_boom(ctx: EvalContext) -> bool:
        raise ValueError("no such file")

    report = run_evals(EvalContext(final_answer={"answer": "5"}), [eval_boom, eval_answer_is_five])
    assert [r.status for r in report] == ["error", "passed"]
    assert report["eval_boom"].detail == "raised ValueError: no such file"
    assert not report.passed and [r.name for r in report.failures] == ["eval_boom"]


def test_an_assertion_fails_the_eval_with_its_message() -> None:
    def eval_asserting(ctx: EvalContext) -> bool:
        assert ctx.answer == "4", f"got {ctx.answer!r}"
        return True

    result = run_evals(EvalContext(final_answer={"answer": "5"}), [eval_asserting])["eval_asserting"]
    assert (result.status, result.score, result.detail) == ("failed", 0.0, "got '5'")


def test_a_bare_assertion_in_an_eval_file_names_the_failing_line(tmp_path: Path) -> None:
    source = "def eval_bare(ctx):\n    assert ctx.answer == '4'\n    return True\n"
    (fn,) = discover_evals(_write(tmp_path / "eval_bare.py", source))  # not rewritten by pytest
    result = run_evals(EvalContext(final_answer={"answer": "5"}), [fn])["eval_bare"]
    assert (result.status, result.detail) == ("failed", "assertion failed: assert ctx.answer == '4'")


def test_a_required_eval_that_is_skipped_or_has_no_judge_fails_the_suite() -> None:
    def eval_needs_expected(ctx: EvalContext) -> bool:
        if ctx.expected is None:
            skip("the case gives no expected answer")
        return bool(ctx.answer == ctx.expected)

    def eval_judged(ctx: EvalContext, llm: Any) -> bool:
        return True

    report = run_evals(EvalContext(), [eval_needs_expected, eval_judged])
    assert [(r.status, r.passed, r.blocks) for r in report] == [("skipped", False, True)] * 2
    assert report["eval_judged"].detail == "needs a judge model (llm=...), and none was given"
    assert not report.passed


def test_an_optional_eval_is_reported_but_does_not_fail_the_suite() -> None:
    @evaluation(required=False)
    def eval_style(ctx: EvalContext) -> bool:
        return False

    report = run_evals(EvalContext(final_answer={"answer": "5"}), [eval_style, eval_answer_is_five])
    assert report["eval_style"].status == "failed" and not report["eval_style"].blocks
    assert report.passed


def test_no_evals_at_all_is_not_a_pass() -> None:
    report = run_evals(EvalContext(), [])
    assert not report.passed
    with pytest.raises(AssertionError, match="no evals ran"):
        assert_evals_pass(report)


def test_a_judge_model_is_passed_to_evals_that_take_one() -> None:
    judge = MockLLMBackend(responses=["PASS", "FAIL"])

    def eval_polite(ctx: EvalContext, llm: Any) -> bool:
        return ask_judge(llm, f"Is this polite? {ctx.answer}", system="Answer PASS or FAIL.") == "PASS"

    ctx = EvalContext(final_answer={"answer": "Thank you!"})
    assert run_evals(ctx, [eval_polite], llm=judge).passed
    assert not run_evals(ctx, [eval_polite], llm=judge).passed
    assert "Is this polite? Thank you!" in judge.last_prompt


def test_ask_judge_takes_a_text_model_too() -> None:
    class Echo:
        def generate(self, prompt: str, **kwargs: Any) -> str:
            return prompt.upper()

    assert ask_judge(Echo(), "yes?", system="be brief") == "BE BRIEF\n\nYES?"
    with pytest.raises(TypeError, match="complete"):
        ask_judge(object(), "hi")


def test_an_async_eval_is_awaited_with_or_without_a_running_event_loop() -> None:
    import asyncio

    async def eval_async(ctx: EvalContext) -> float:
        await asyncio.sleep(0)
        return 0.0

    ctx = EvalContext()
    assert run_evals(ctx, [eval_async], threshold=0.0)["eval_async"].score == 0.0

    async def inside() -> EvalReport:
        return run_evals(ctx, [eval_async], threshold=0.0)

    assert asyncio.run(inside())["eval_async"].passed


def test_an_eval_can_be_renamed_and_two_evals_with_one_name_are_refused() -> None:
    @evaluation(name="eval_answer")
    def eval_other(ctx: EvalContext) -> bool:
        return True

    assert [r.name for r in run_evals(EvalContext(), [eval_other])] == ["eval_answer"]

    def eval_answer(ctx: EvalContext) -> bool:
        return True

    with pytest.raises(EvalInputError, match="two evals are called 'eval_answer'"):
        collect_evals([eval_other, eval_answer])
    assert collect_evals([eval_answer, eval_answer, [eval_answer]]) == [eval_answer]


def test_keyboard_interrupt_in_an_eval_propagates() -> None:
    def eval_ctrl_c(ctx: EvalContext) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evals(EvalContext(), [eval_ctrl_c])


# -- the context of a live run ---------------------------------------------------------------


def test_the_context_of_a_live_run_holds_task_steps_answer_stop_usage_and_artifacts(drive: Driver) -> None:
    steps, result = drive(_script(), tools=_tools(), task={"goal": "add 2 and 3"})
    assert drive.loop is not None
    ctx = EvalContext.from_run(drive.loop)
    assert ctx.task == {"goal": "add 2 and 3"}
    assert [s.tool_call.tool for s in ctx.steps] == ["add", "done"] == ctx.tools_used
    assert (ctx.final_answer, ctx.answer, ctx.stop_reason) == ({"answer": "5"}, "5", "done")
    assert ctx.usage is result.usage and ctx.llm_calls == 2
    assert ctx.artifacts == {"sum": 5} and ctx.run_id == drive.loop.state.run_id
    assert [s.number for s in ctx.calls("add")] == [1] and ctx.errors == []


def test_the_context_reads_a_state_or_a_bare_result() -> None:
    state = DefaultState(task="t", metadata={"artifacts": {"file": "x"}})
    from_state = EvalContext.from_run(state, artifacts={"extra": 1})
    assert (from_state.task, from_state.artifacts) == ("t", {"file": "x", "extra": 1})
    bare = EvalContext.from_run(RunResult("max_steps", [], usage=Usage(3, 4)))
    assert (bare.task, bare.stop_reason, bare.usage.total_tokens, bare.run_id) == (None, "max_steps", 7, "")
    with pytest.raises(TypeError, match="cannot read a run"):
        EvalContext.from_run("a string")


def test_record_artifact_keeps_artifacts_in_the_run_metadata() -> None:
    state = DefaultState()
    record_artifact(state, "report", {"lines": 3})
    record_artifact(state, "log", "ok")
    assert state.metadata["artifacts"] == {"report": {"lines": 3}, "log": "ok"}


# -- the hook --------------------------------------------------------------------------------


def test_eval_hook_grades_the_run_at_its_end_and_keeps_the_results(drive: Driver) -> None:
    hook = EvalHook([eval_answer_is_five, eval_sum_artifact, *BUILTIN_EVALS])
    assert hook.report is None and hook.results == [] and not hook.passed
    drive(_script(), tools=_tools(), hooks=[hook])
    assert hook.passed and [r.status for r in hook.results] == ["passed"] * 4
    assert drive.loop is not None
    recorded = drive.loop.state.metadata["evals"]
    assert [r["name"] for r in recorded] == [
        "eval_answer_is_five",
        "eval_sum_artifact",
        "eval_finished",
        "eval_no_tool_errors",
    ]
    assert assert_evals_pass(hook) is hook.report


def test_eval_hook_reads_what_the_tool_left_not_what_the_model_claimed(drive: Driver) -> None:
    hook = EvalHook([eval_answer_is_five, eval_sum_artifact])
    drive(_script(answer="5"), tools=_tools(answer_bug=1), hooks=[hook])
    assert [(r.name, r.passed) for r in hook.results] == [
        ("eval_answer_is_five", True),
        ("eval_sum_artifact", False),
    ]


def test_an_eval_that_raises_inside_the_hook_does_not_end_the_run_with_a_hook_error(drive: Driver) -> None:
    def eval_broken(ctx: EvalContext) -> bool:
        raise RuntimeError("grader bug")

    hook = EvalHook([eval_broken])
    _, result = drive(_script(), tools=_tools(), hooks=[hook])
    assert result.stop_reason == "done" and "on_loop_end failed" not in result.detail
    assert hook.results[0].status == "error" and not hook.passed


def test_eval_hook_gives_evals_its_case_and_judge(drive: Driver) -> None:
    def eval_expected(ctx: EvalContext, llm: Any) -> bool:
        return bool(ctx.answer == ctx.expected and ask_judge(llm, "ok?") == "yes")

    hook = EvalHook(eval_expected, llm=MockLLMBackend(responses=["yes"]), case=EvalCase("c1", "add", "5"))
    drive(_script(), tools=_tools(), hooks=[hook])
    assert hook.passed


def test_builtin_evals_report_an_unfinished_run_and_failed_steps() -> None:
    steps_run = composable_loop(
        MockLLMBackend(responses=[ToolCall("nope", {}, call_id="x")] * 3),
        tools=_tools(),
        max_steps=2,
        task="t",
    )
    for _ in steps_run:
        pass
    report = run_evals(EvalContext.from_run(steps_run), BUILTIN_EVALS)
    finished, no_errors = report.results
    assert not finished.passed and finished.detail.startswith("the run stopped with max_steps")
    assert (no_errors.score, no_errors.passed, no_errors.blocks) == (0.0, False, False)
    assert run_evals(EvalContext(), BUILTIN_EVALS)["eval_no_tool_errors"].passed


# -- discovery -------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_discovery_finds_eval_functions_in_files_and_folders_in_order(tmp_path: Path) -> None:
    _write(
        tmp_path / "evals" / "eval_answers.py", "def eval_b(ctx): return True\ndef eval_a(ctx): return 0.0\n"
    )
    _write(tmp_path / "evals" / "sub" / "style_evals.py", "def eval_c(ctx): return True\nEVAL = 1\n")
    _write(tmp_path / "evals" / "notes.py", "def eval_ignored(ctx): return True\n")
    _write(tmp_path / "evals" / ".hidden" / "eval_x.py", "def eval_hidden(ctx): return True\n")
    _write(tmp_path / "evals" / "eval_objects.py", "eval_threshold = 0.5\nclass eval_Kind: pass\n")
    found = discover_evals(tmp_path / "evals")
    assert [f.__name__ for f in found] == ["eval_b", "eval_a", "eval_c"]
    single = discover_evals(tmp_path / "evals" / "notes.py")
    assert [f.__name__ for f in single] == ["eval_ignored"]


def test_discovery_leaves_sys_path_and_helper_modules_as_they_were(tmp_path: Path) -> None:
    for name, value in (("one", 1), ("two", 2)):
        _write(tmp_path / name / "grading_helpers.py", f"VALUE = {value}\n")
        _write(
            tmp_path / name / "evals.py",
            "import grading_helpers\ndef eval_value(ctx): return grading_helpers.VALUE == 1\n",
        )
    path_before, modules_before = list(sys.path), set(sys.modules)
    first = discover_evals(tmp_path / "one")
    second = discover_evals(tmp_path / "two")
    assert sys.path == path_before
    assert "grading_helpers" not in sys.modules
    added = set(sys.modules) - modules_before
    assert len(added) == 2 and all(name.startswith("looplet_evals_") for name in added)
    assert first[0].__module__ != second[0].__module__  # one module name per file
    assert (first[0](None), second[0](None)) == (True, False)  # each file saw its own helper


def test_a_file_that_fails_to_import_is_reported_and_sys_path_restored(tmp_path: Path) -> None:
    bad = _write(tmp_path / "eval_bad.py", "def eval_x(ctx):\n  return (\n")
    path_before = list(sys.path)
    with pytest.raises(EvalInputError, match="eval_bad.py: could not import it: SyntaxError"):
        discover_evals(bad)
    assert sys.path == path_before
    with pytest.raises(EvalInputError, match="no such file or directory"):
        discover_evals(tmp_path / "missing")


def test_evals_are_collected_from_a_module_a_path_and_a_list() -> None:
    module = sys.modules[__name__]
    from_module = collect_evals(module)
    assert eval_answer_is_five in from_module and eval_sum_artifact in from_module
    with pytest.raises(TypeError, match="not an eval"):
        collect_evals(42)


# -- case files ------------------------------------------------------------------------------


def test_cases_round_trip_through_jsonl_and_json_and_an_update_replaces(tmp_path: Path) -> None:
    one = EvalCase("add", "add 2 and 3", expected=5, tags=("math",))
    two = EvalCase("zero", {"goal": "subtract"}, expected=0, metadata={"level": 1})
    for name in ("cases.jsonl", "cases.json"):
        path = tmp_path / name
        save_case(path, one)
        save_case(path, two)
        save_case(path, EvalCase("add", "add 2 and 3", expected=6))
        assert load_cases(path) == [EvalCase("add", "add 2 and 3", expected=6), two]
    lines = (tmp_path / "cases.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["expected"] == 0


def test_a_jsonl_case_with_unicode_line_separators_in_a_string_loads_back(tmp_path: Path) -> None:
    case = EvalCase("sep", "a\x85b\u2028c", expected="d\u2029e")
    save_case(tmp_path / "cases.jsonl", case)
    assert load_cases(tmp_path / "cases.jsonl") == [case]
    crlf = _write(tmp_path / "crlf.jsonl", '{"task": "t"}\r\n{"task": "u"}\r\n')
    assert [c.task for c in load_cases(crlf)] == ["t", "u"]


def test_load_cases_reads_one_object_a_list_blank_lines_and_a_folder(tmp_path: Path) -> None:
    _write(tmp_path / "c" / "a.json", '{"task": "one", "expected": false}')
    _write(tmp_path / "c" / "b.jsonl", '{"task": "two"}\n\n{"task": "three", "tags": ["x"]}\n')
    _write(tmp_path / "c" / "readme.txt", "not a case")
    cases = load_cases(tmp_path / "c")
    assert [(c.id, c.task, c.expected, c.tags) for c in cases] == [
        ("a-1", "one", False, ()),
        ("b-1", "two", None, ()),
        ("b-2", "three", None, ("x",)),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"task": "t"}\n{"task": "u", "expcted": 4}\n',
            r"cases.jsonl:2: unknown field 'expcted' \(did you mean 'expected'\?\)",
        ),
        (
            '{"task": "t"}\n{"id": "cases-1", "task": "u"}\n',
            "cases.jsonl:2: the id 'cases-1' is already used",
        ),
        ('{"task": "t"\n', "cases.jsonl:1: not valid JSON"),
        ('{"expected": 1}\n', "needs a 'task'"),
        ('["task"]\n', "must be a JSON object"),
        ('{"task": "t", "tags": "math"}\n', "'tags' must be a list of strings"),
        ('{"task": "t", "id": ""}\n', "'id' must be a non-empty string"),
        ('{"task": "t", "metadata": []}\n', "'metadata' must be an object"),
    ],
)
def test_a_malformed_case_file_is_refused_with_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "cases.jsonl", text)
    with pytest.raises(EvalInputError, match=message):
        load_cases(path)


def test_save_case_refuses_what_it_could_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match="ends in .json or .jsonl"):
        save_case(tmp_path / "cases.txt", EvalCase("a", "t"))
    with pytest.raises(EvalInputError, match="needs an id"):
        save_case(tmp_path / "cases.jsonl", EvalCase("", "t"))
    with pytest.raises(EvalInputError, match="is not JSON"):
        save_case(tmp_path / "cases.jsonl", EvalCase("a", "t", expected=math.nan))
    with pytest.raises(EvalInputError, match="no such file"):
        load_cases(tmp_path / "nothing.jsonl")
    assert not (tmp_path / "cases.jsonl").exists()


# -- pytest helpers --------------------------------------------------------------------------


def test_assert_evals_pass_names_each_failing_eval_with_score_and_reason() -> None:
    def eval_steps(ctx: EvalContext) -> float:
        return 0.25

    ctx = EvalContext(final_answer={"answer": "6"}, run_id="run_1")
    with pytest.raises(AssertionError) as failure:
        assert_evals_pass(ctx, evals=[eval_answer_is_five, eval_steps], threshold=0.5)
    assert str(failure.value) == (
        "2 of 2 required evals did not pass (threshold 0.5, run run_1):\n"
        "  ✗ eval_answer_is_five failed (score 0.00): expected '5', got '6'\n"
        "  ✗ eval_steps failed (score 0.25): score 0.25 is below the threshold 0.5"
    )
    passing = assert_evals_pass(EvalContext(final_answer={"answer": "5"}), evals=[eval_answer_is_five])
    assert passing.passed


def test_assert_evals_pass_takes_results_and_refuses_what_it_cannot_grade() -> None:
    good = EvalResult("eval_a", 1.0, True)
    assert assert_evals_pass([good]).passed and assert_evals_pass(good).passed
    with pytest.raises(AssertionError, match="eval_b failed"):
        assert_evals_pass([good, EvalResult("eval_b", 0.0, False)])
    with pytest.raises(TypeError, match="say which evals"):
        assert_evals_pass(EvalContext())
    with pytest.raises(TypeError, match="takes an EvalContext"):
        assert_evals_pass(["not a result"])
    with pytest.raises(AssertionError, match="did the run end"):
        assert_evals_pass(EvalHook([]))


def test_case_params_gives_one_param_per_case_with_its_id(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    save_case(path, EvalCase("first", "t1"))
    save_case(path, EvalCase("second", "t2"))
    params = case_params(path)
    assert [p.id for p in params] == ["first", "second"]
    assert [p.values[0].task for p in params] == ["t1", "t2"]
    assert [p.id for p in case_params(load_cases(path))] == ["first", "second"]


def test_importing_looplet_evals_imports_no_pytest() -> None:
    code = "import sys, looplet.evals; print('pytest' in sys.modules, '_pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- the context of a recorded run -----------------------------------------------------------

#: One recorded step: (tool, args, result data, error).
RecordedStep = tuple[str, dict[str, Any], Any, "str | None"]


def write_run(
    root: Path,
    *,
    run_id: str,
    task: Any,
    steps: list[RecordedStep],
    final_answer: dict[str, Any] | None,
    stop_reason: str | None,
    artifacts: dict[str, Any] | None = None,
    ended: bool = True,
) -> Path:
    """A run directory in provenance format 1, written by hand (see notes/provenance-format.md)."""
    run_dir = root / f"run_{run_id.removeprefix('run_')}"
    (run_dir / "steps").mkdir(parents=True)
    records = []
    for number, (tool, args, data, error) in enumerate(steps, 1):
        record = {
            "number": number,
            "turn": number,
            "call": {"id": f"c{number}", "tool": tool, "args": args, "reasoning": ""},
            "result": {
                "data": data,
                "error": error,
                "error_kind": "execution" if error else None,
                "retriable": False,
                "warnings": [],
                "metadata": {},
                "duration_ms": 0.5,
            },
            "free": False,
            "llm_ms": 1.0,
            "usage": {"input_tokens": 10, "output_tokens": 2, "cached_tokens": 0, "cost": 0.0},
            "decisions": [],
            "pretty": f"#{number} {tool}",
        }
        records.append(record)
        (run_dir / "steps" / f"{number:04d}.json").write_text(
            json.dumps(record, indent=2, sort_keys=True) + "\n"
        )
    manifest: dict[str, Any] = {
        "format": "looplet.provenance/1",
        "run_id": run_id,
        "parent_run_id": None,
        "forked_at": None,
        "task": task,
        "started_at": "2025-01-01T00:00:00Z",
        "ended_at": "2025-01-01T00:00:01Z" if ended else None,
        "status": "ended" if ended else "running",
        "stop_reason": stop_reason,
        "detail": "",
        "final_answer": final_answer,
        "steps": len(steps),
        "llm_calls": len(steps),
        "usage": {
            "input_tokens": 10 * len(steps),
            "output_tokens": 2 * len(steps),
            "cached_tokens": 0,
            "cost": 0.0,
        },
        "tools": sorted({s[0] for s in steps}),
        "looplet_version": "0.1.0",
    }
    if artifacts is not None:
        manifest["artifacts"] = artifacts
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    events = [{"seq": 1, "event": "run_start", "t": 0.0}]
    events += [
        {"seq": n + 1, "event": "step", "t": 0.1 * n, "number": n, "file": f"steps/{n:04d}.json"}
        for n in range(1, len(steps) + 1)
    ]
    if ended:
        events.append(
            {"seq": len(events) + 1, "event": "run_end", "t": 1.0, "stop_reason": stop_reason, "detail": ""}
        )
        trajectory = {
            "run_id": run_id,
            "task": task,
            "steps": records,
            "final_answer": final_answer,
            "stop_reason": stop_reason,
        }
        (run_dir / "trajectory.json").write_text(json.dumps(trajectory, indent=2, sort_keys=True) + "\n")
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    return run_dir


def test_the_context_of_a_recorded_run_rebuilds_steps_answer_and_usage(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path,
        run_id="run_aaaa",
        task="add 2 and 3",
        steps=[("add", {"a": 2, "b": 3}, 5, None), ("done", {"answer": "5"}, {"answer": "5"}, None)],
        final_answer={"answer": "5"},
        stop_reason="done",
        artifacts={"sum": 5},
    )
    ctx = EvalContext.from_trace(run_dir, case=EvalCase("c", "add 2 and 3", expected="5"))
    assert (ctx.task, ctx.run_id, ctx.stop_reason, ctx.answer, ctx.expected) == (
        "add 2 and 3",
        "run_aaaa",
        "done",
        "5",
        "5",
    )
    assert [(s.number, s.tool_call.tool, s.tool_call.args, s.tool_result.data) for s in ctx.steps] == [
        (1, "add", {"a": 2, "b": 3}, 5),
        (2, "done", {"answer": "5"}, {"answer": "5"}),
    ]
    assert ctx.usage.input_tokens == 20 and ctx.artifacts == {"sum": 5} and ctx.trace is not None
    assert run_evals(ctx, [eval_answer_is_five, eval_sum_artifact, *BUILTIN_EVALS]).passed


def test_a_recorded_run_gets_the_same_verdicts_as_the_live_one(tmp_path: Path, drive: Driver) -> None:
    from looplet.provenance import ProvenanceSink

    evals = [eval_answer_is_five, *BUILTIN_EVALS]
    hook = EvalHook(evals)
    drive(_script("6"), tools=_tools(), task="add 2 and 3", hooks=[hook, ProvenanceSink(tmp_path)])
    recorded = run_evals(EvalContext.from_trace(tmp_path), evals)
    assert hook.report is not None
    assert [r.to_dict() for r in recorded] == [r.to_dict() for r in hook.report]
    assert [r.status for r in recorded] == ["failed", "passed", "passed"]


def test_ask_judge_awaits_an_async_backend() -> None:
    from looplet import AsyncFunctionBackend

    async def answer(request: Any) -> str:
        return "PASS" if "polite" in request.messages[0].content else "FAIL"

    assert ask_judge(AsyncFunctionBackend(answer), "is it polite?") == "PASS"


def test_a_report_is_read_by_eval_name_and_a_run_not_ended_is_graded_as_it_stands() -> None:
    report = run_evals(EvalContext(steps=[]), [eval_answer_is_five])
    assert len(report) == 1 and report["eval_answer_is_five"].status == "failed"
    with pytest.raises(KeyError):
        report["eval_missing"]
    loop = composable_loop(_script(), tools=_tools(), task="t")
    next(loop)
    mid_run = EvalContext.from_run(loop.state)  # the state as it stands; the run goes on
    assert (mid_run.stop_reason, mid_run.tools_used, mid_run.task) == (None, ["add"], "t")
    assert next(loop).tool_call.tool == "done"
    with pytest.raises(StopIteration):
        next(loop)
    assert [c.tool for c in EvalContext.from_run(loop).tool_calls] == ["add", "done"]
    assert EvalResult("e", 1.0, False, status="passed").status == "failed"  # the flag and the status agree


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot say")


def test_an_eval_raising_an_exception_that_cannot_be_printed_is_an_error_result() -> None:
    def eval_raises(ctx: EvalContext) -> bool:
        raise _Unprintable()

    def eval_asserts(ctx: EvalContext) -> bool:
        raise AssertionError(_Unprintable())

    def eval_odd_detail(ctx: EvalContext) -> dict[str, Any]:
        return {"passed": True, "detail": _Unprintable()}

    report = run_evals(EvalContext(), [eval_raises, eval_asserts, eval_odd_detail])
    assert [r.status for r in report] == ["error", "failed", "error"]
    assert report["eval_raises"].detail == "raised _Unprintable: <unprintable message>"
    assert "cannot be read" in report["eval_odd_detail"].detail


def test_an_eval_taking_llm_as_a_keyword_only_parameter_gets_the_judge() -> None:
    judge = object()
    seen: list[Any] = []

    def eval_judged(ctx: EvalContext, *, llm: Any) -> bool:
        seen.append(llm)
        return True

    report = run_evals(EvalContext(), [eval_judged], llm=judge)
    assert report.passed and seen == [judge]


def test_a_case_file_that_is_not_utf8_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "cases.jsonl"
    bad.write_bytes(b'{"task": "\xff"}\n')
    with pytest.raises(EvalInputError, match="cases.jsonl.*UTF-8"):
        load_cases(bad)


def test_a_package_installed_under_the_eval_folder_stays_imported_once(tmp_path: Path) -> None:
    site = tmp_path / ".venv" / "site"
    (site / "vendored_pkg_for_evals").mkdir(parents=True)
    (site / "vendored_pkg_for_evals" / "__init__.py").write_text("LOADS = [1]\n")
    (tmp_path / "helper_for_evals.py").write_text("X = 1\n")
    (tmp_path / "eval_one.py").write_text(
        "import vendored_pkg_for_evals, helper_for_evals\ndef eval_one(ctx): return True\n"
    )
    (tmp_path / "eval_two.py").write_text(
        "import vendored_pkg_for_evals\ndef eval_two(ctx): return vendored_pkg_for_evals.LOADS == [1]\n"
    )
    sys.path.append(str(site))
    try:
        found = discover_evals(tmp_path)
        package = sys.modules.get("vendored_pkg_for_evals")
        assert package is not None  # imported from an installed place: kept, like any library
        assert all(fn.__globals__["vendored_pkg_for_evals"] is package for fn in found)
        assert "helper_for_evals" not in sys.modules  # a helper beside the evals is still forgotten
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("vendored_pkg_for_evals", None)
