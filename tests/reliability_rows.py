"""Which tests check each row of every group (A to L) of RELIABILITY.md.

`scripts/reliability.py` runs exactly these tests and counts the cases they try;
`tests/test_reliability_map.py` keeps this map honest (every entry is still collected,
every row is either tested or says why not). An entry is a pytest node id relative to
the repository root: a file, ``file::test_function`` (all its parametrizations) or
``file::TestClass``.

A row with tests and a ``gap`` is tested in part: the gap says what is not, and why.
A row with no tests must have a gap. A group is listed whole, every row of it; a row
whose feature comes with a later issue says which.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One row of the fault matrix and the tests that check it."""

    id: str
    checks: str
    tests: tuple[str, ...] = ()
    gap: str = ""

    @property
    def group(self) -> str:
        return self.id[0]


GROUPS: dict[str, str] = {
    "A": "Bad model output (parse and validation)",
    "B": "Tool execution faults",
    "C": "LLM API faults",
    "D": "Interruption and lifecycle",
    "E": "Checkpoint durability and resume",
    "F": "Provenance directory",
    "G": "Permissions, hooks and approval",
    "H": "Coding agent: paths and shell",
    "I": "Secrets in records, errors, logs and requests",
    "J": "Loading a skill or cartridge from an untrusted folder",
    "K": "Prompt injection from tool results",
    "L": "Recursion, budgets, termination",
}

#: The groups of the matrix not listed yet, and the issue that brings them (none now).
LATER_GROUPS: dict[str, str] = {}

# Short names for the files, so the rows below stay readable.
PARSER = "tests/test_text_parser.py"
PARSER_PROPS = "tests/test_parser_properties.py"
VALIDATION = "tests/test_validation.py"
VALIDATION_PROPS = "tests/test_validation_properties.py"
BUDGET = "tests/test_budget.py"
BUDGET_PROPS = "tests/test_budget_properties.py"
LOOP = "tests/test_loop.py"
DISPATCH = "tests/test_dispatch.py"
RECORDS = "tests/test_records.py"
RESULTS = "tests/test_results.py"
REGISTRY = "tests/test_registry.py"
SCHEMA = "tests/test_schema.py"
HOOKS = "tests/test_hooks.py"
CONTAINMENT = "tests/test_fault_containment.py"
INTERRUPTION = "tests/test_interruption.py"
REDACTION = "tests/test_redaction.py"
HISTORY = "tests/test_history.py"
GAPS = "tests/test_reliability_gaps.py"
RETRY = "tests/backends/test_backend_retry.py"
ERRORS = "tests/backends/test_backend_errors.py"
STREAMS = "tests/backends/test_backend_stream_faults.py"
SETUP = "tests/backends/test_backend_setup.py"
REPLY_TYPES = "tests/backends/test_backend_reply_types.py"
COMMANDS = "tests/backends/test_backend_commands.py"
TURNS = "tests/test_turn_integrity.py"
CRASH = "tests/test_crash_resume.py"
CHECKPOINTS = "tests/test_checkpoints.py"
FILES = "tests/test_checkpoint_files.py"
DELTAS = "tests/test_checkpoint_deltas.py"
APPROVAL = "tests/test_approval_resume.py"
PERMISSIONS = "tests/test_permissions.py"
PERMISSION_PROPS = "tests/test_permissions_properties.py"
CRASH_APPROVAL = "tests/test_crash_approval.py"
RESUME = "tests/test_resume_property.py"
FORK = "tests/test_fork.py"
RECORD = "tests/test_run_record.py"
INTERCEPTORS = "tests/test_interceptors.py"
EFFECTS = "tests/test_engine_effects.py"


def _in(path: str, *names: str) -> tuple[str, ...]:
    """Node ids for test functions of one file."""
    return tuple(f"{path}::{name}" for name in names)


PROV = "tests/test_provenance.py"
PROV_PROPS = "tests/test_provenance_properties.py"
WS_PATHS = "tests/test_workspace_paths.py"
WS_TOOLS = "tests/test_workspace_tools.py"
CARTRIDGES = "tests/test_cartridges.py"
SKILL_LOADING = "tests/test_skill_loading.py"
SKILLS = "tests/test_skills.py"
FRONT = "tests/test_frontmatter.py"
BUNDLES = "tests/test_cli_bundles.py"
INJECTION = "tests/test_prompt_injection.py"
SUBAGENTS = "tests/test_subagents.py"
SUBAGENT_LIMITS = "tests/test_subagent_limits.py"

ROWS: tuple[Row, ...] = (
    # -- A. Bad model output --------------------------------------------------------------------
    Row(
        "A1",
        "malformed call JSON parses or is a PARSE step",
        _in(
            PARSER,
            "test_parses_when_the_intent_is_unambiguous",
            "test_reasoning_and_call_id_are_kept",
            "test_unreadable_replies_raise_parse_error_with_the_format",
            "test_non_text_is_a_parse_error",
            "test_many_false_starts_before_the_call_are_survived",
            "test_unambiguous_call_shapes_are_calls",
            "test_a_record_that_only_names_something_is_data_not_a_call",
            "test_a_name_among_unrelated_keys_is_never_a_call",
            "test_a_quoted_record_beside_a_call_does_not_run",
            "test_a_call_after_a_flood_of_brackets_is_read",
            "test_a_broken_call_beside_a_good_one_fails_the_whole_reply",
            "test_a_batch_with_an_item_that_is_not_a_call_fails_the_whole_reply",
            "test_plain_text_with_brackets_is_not_an_attempted_call",
            "test_a_broken_or_cut_off_call_is_an_attempted_call",
            "test_parse_error_is_not_an_attempt_unless_said_so",
        )
        + (PARSER_PROPS,)
        + _in(
            LOOP,
            "test_malformed_json_is_a_parse_error_step_and_the_loop_goes_on",
            "test_a_plain_text_answer_with_brackets_is_the_answer_when_there_is_no_done_tool",
        ),
        "no atheris fuzzing yet (the nightly 1M-exec target); hypothesis mutations and the seed table run",
    ),
    Row(
        "A2",
        "non-object args: decoded once or VALIDATION",
        _in(
            VALIDATION,
            "test_arguments_that_are_not_an_object_are_rejected",
            "test_json_string_is_decoded_once_where_an_object_or_array_is_declared",
            "test_double_encoded_json_string_is_decoded_only_once",
            "test_json_string_is_not_decoded_where_a_string_is_declared",
            "test_unreadable_arguments_from_the_parser_are_a_parse_error_naming_the_signature",
            "test_a_json_string_decoded_for_an_object_never_brings_nan_or_infinity",
        )
        + _in(
            PARSER,
            "test_arguments_that_are_not_an_object_are_a_problem_never_a_silent_empty_dict",
            "test_arguments_that_are_not_an_object_mark_the_call",
            "test_parse_arguments_accepts_objects_and_empties",
        )
        + _in(PARSER_PROPS, "test_double_encoded_arguments_are_decoded_once")
        + _in(LOOP, "test_final_answer_holds_the_arguments_the_done_tool_received_after_validation"),
    ),
    Row(
        "A3",
        "unknown tool: hint, never run, run-wide cap",
        _in(
            VALIDATION,
            "test_unknown_tool_suggests_the_closest_and_lists_the_tools",
            "test_hallucinated_or_empty_tool_name_lists_the_tools_without_a_guess",
            "test_unknown_tool_with_an_empty_registry_says_none",
            "test_suggest_handles_no_options_and_far_names",
            "test_unknown_tool_in_a_run_is_a_validation_step_and_never_runs",
        )
        + _in(BUDGET, "test_unknown_tool_names_spend_the_run_wide_budget")
        + _in(REGISTRY, "test_dispatch_answers_bad_calls_with_an_error_result_and_never_runs_them")
        + (BUDGET_PROPS,),
        "a tool registered only in a child registry needs subagents (later issue)",
    ),
    Row(
        "A4",
        "wrong types rejected or losslessly coerced",
        _in(
            VALIDATION,
            "test_wrong_types_are_rejected_with_path_and_expected_type",
            "test_integral_float_is_the_only_numeric_coercion",
            "test_oversized_int_is_an_int",
            "test_nested_types_are_checked_with_their_path",
            "test_validate_value_reports_the_first_problem",
            "test_enum_and_unique_and_tuple_shapes",
            "test_nan_and_infinity_are_refused_anywhere_in_the_arguments",
            "test_validate_value_refuses_nan_for_an_any_schema",
            "test_a_matching_number_reaches_the_tool_as_the_declared_value_and_type",
            "test_bools_ints_and_floats_are_not_confused_at_any_depth",
            "test_enum_values_compare_bools_strictly_inside_containers",
            "test_array_length_messages_say_which_bound",
        )
        + _in(
            VALIDATION_PROPS,
            "test_every_valid_value_is_accepted_unchanged",
            "test_wrong_typed_values_never_reach_the_tool",
        )
        + _in(
            SCHEMA,
            "test_schema_from_type_hints",
            "test_converted_values_reach_the_tool_as_python_types",
            "test_optional_enum_is_converted_only_when_present",
        ),
    ),
    Row(
        "A5",
        "missing required args: VALIDATION, never run",
        _in(
            VALIDATION,
            "test_missing_required_lists_what_is_missing_and_what_was_given",
            "test_optional_with_a_default_is_not_missing",
            "test_none_for_a_required_string_is_rejected_and_empty_string_is_a_string",
            "test_object_schema_rejects_unknown_keys_and_missing_ones",
            "test_done_without_answer_or_summary_says_what_it_takes",
        )
        + _in(VALIDATION_PROPS, "test_dropping_a_required_argument_never_runs_the_tool"),
    ),
    Row(
        "A6",
        "extra and reserved args: hint, never bound",
        _in(
            VALIDATION,
            "test_unknown_argument_gets_a_did_you_mean",
            "test_unknown_argument_without_a_close_match_lists_the_parameters",
            "test_unknown_argument_for_a_tool_without_parameters",
            "test_model_cannot_pass_framework_names",
            "test_model_sent_ctx_never_replaces_the_real_tool_context",
            "test_non_string_argument_names_are_rejected_not_crashing",
        )
        + _in(SCHEMA, "test_ctx_parameter_is_hidden_from_the_schema"),
    ),
    Row(
        "A7",
        "huge or deep args rejected before running",
        _in(
            VALIDATION,
            "test_deep_arguments_are_rejected_before_running",
            "test_huge_arguments_are_rejected_by_size",
            "test_many_keys_and_long_lists_count_toward_the_size_limit",
            "test_size_and_depth_limits_come_from_the_config",
        )
        + _in(
            PARSER,
            "test_huge_reply_is_refused_with_a_cut_raw",
            "test_deeply_nested_reply_raises_parse_error_not_recursion_error",
        )
        + _in(RECORDS, "test_pretty_survives_huge_and_deep_and_odd_arguments")
        + _in(GAPS, "test_a_huge_argument_is_refused_without_copying_it_over_and_over"),
        "provenance's truncated copy with sha256 arrives with the provenance issue; no atheris "
        "yet; the memory bound holds for a 10 MB string, but a 1e6-element list peaks near 8x its "
        "size while its size is measured (reported)",
    ),
    Row(
        "A8",
        "whitespace passes byte for byte",
        _in(VALIDATION, "test_strings_pass_through_byte_for_byte")
        + _in(VALIDATION_PROPS, "test_strings_pass_byte_for_byte_through_the_loop_into_the_tool")
        + _in(PARSER, "test_valid_json_strings_are_kept_byte_for_byte"),
    ),
    Row(
        "A9",
        "invalid Unicode never breaks serialisation",
        _in(VALIDATION_PROPS, "test_lone_surrogates_and_control_characters_never_break_serialisation"),
        "no test saves a lone surrogate to a checkpoint store (the stores' contract record carries "
        "NUL, U+2028 and an astral character); records' strict JSON is checked",
    ),
    Row(
        "A10",
        "many calls per turn: order, ids, budget cut",
        _in(
            BUDGET,
            "test_batch_past_the_budget_runs_only_what_fits_and_keeps_the_rest_open",
            "test_free_tools_do_not_spend_the_budget",
            "test_the_cut_is_a_prefix_everything_after_the_first_call_that_does_not_fit_is_dropped",
            "test_done_in_a_batch_runs_after_the_other_calls",
            "test_only_the_first_done_call_of_a_batch_counts",
            "test_done_that_does_not_fit_the_budget_is_dropped",
            "test_calls_after_a_stop_in_a_batch_are_dropped",
            "test_a_hundred_calls_in_one_turn_keep_their_order",
        )
        + _in(
            LOOP,
            "test_native_tool_calls_keep_their_ids",
            "test_a_call_id_reused_in_a_later_turn_is_renumbered",
        )
        + _in(PARSER, "test_every_call_of_a_long_reply_is_read_in_order")
        + _in(
            TURNS,
            "test_calls_cut_by_the_step_budget_run_when_the_run_continues_with_a_larger_one",
            "test_a_should_stop_failure_mid_sequential_batch_leaves_the_rest_open_for_a_continued_run",
        )
        + (BUDGET_PROPS,),
    ),
    Row(
        "A11",
        "text-only model: nudged k times, then stops",
        _in(
            BUDGET,
            "test_text_only_model_stops_within_both_caps",
            "test_text_only_replies_do_not_spend_the_tool_step_budget",
            "test_endless_chatter_stops_at_the_no_tool_call_cap",
        )
        + _in(
            LOOP,
            "test_text_replies_with_a_done_tool_are_nudged_then_stop",
            "test_a_tool_call_resets_the_no_tool_call_streak",
            "test_empty_reply_without_a_done_tool_is_a_no_tool_call_error",
            "test_a_text_answer_is_kept_in_the_step_and_shown_by_pretty",
        )
        + (BUDGET_PROPS,),
    ),
    # -- B. Tool execution faults ---------------------------------------------------------------
    Row(
        "B1",
        "tool exception: EXECUTION step, redacted",
        _in(
            DISPATCH,
            "test_tool_exception_is_an_execution_step_with_type_and_message",
            "test_secrets_in_a_tool_exception_are_redacted_everywhere",
            "test_long_exception_messages_are_cut",
            "test_exception_without_a_message_shows_the_type",
            "test_a_failing_argument_conversion_is_an_execution_error",
            "test_a_tools_own_timeout_error_is_an_execution_error_not_a_time_limit",
        )
        + _in(CONTAINMENT, "test_whatever_a_tool_raises_is_an_execution_error_step_in_both_loops")
        + _in(REGISTRY, "test_dispatch_turns_what_a_tool_raises_into_an_error_result"),
    ),
    Row(
        "B2",
        "Ctrl-C and cancel propagate; SystemExit contained",
        _in(
            DISPATCH,
            "test_system_exit_from_a_tool_is_an_execution_error",
            "test_generator_exit_from_a_tool_is_an_execution_error",
            "test_generator_exit_or_system_exit_from_an_async_tool_is_an_execution_error",
            "test_keyboard_interrupt_from_a_tool_propagates_after_cleanup",
            "test_cancelled_error_from_an_async_tool_propagates",
        )
        + _in(CONTAINMENT, "test_whatever_a_tool_raises_is_an_execution_error_step_in_both_loops"),
    ),
    Row(
        "B3",
        "hanging tool: TIMEOUT, async cancelled, thread orphaned",
        _in(
            DISPATCH,
            "test_sync_tool_past_its_limit_is_orphaned_and_refuses_new_calls_until_it_ends",
            "test_async_tool_past_its_limit_is_really_cancelled",
            "test_default_tool_timeout_comes_from_the_config_and_the_tools_own_wins",
            "test_timed_tool_that_finishes_in_time_returns_normally",
            "test_the_run_deadline_bounds_a_slow_tool_even_without_a_time_limit",
            "test_a_timed_out_call_does_not_make_its_batch_siblings_busy",
            "test_a_later_run_sharing_the_registry_is_warned_not_refused_about_an_orphan",
        )
        + _in(
            REGISTRY,
            "test_time_limits_threads_cannot_wait_for_are_refused_at_registration",
            "test_time_limits_in_range_are_kept",
            "test_the_time_limit_check_is_shared_with_the_config",
            "test_dispatch_honours_the_tools_time_limit",
        )
        + _in(BUDGET, "test_a_default_tool_time_limit_out_of_range_is_refused_when_the_config_is_built"),
        "subprocess tools (process-group kill) come with the coding agent's bash (group H)",
    ),
    Row(
        "B4",
        "non-JSON results converted by one rule",
        (RESULTS,)
        + _in(
            RECORDS,
            "test_to_jsonable_follows_the_documented_rule",
            "test_circular_and_too_deep_values_are_marked",
            "test_long_reprs_are_cut",
            "test_any_result_gives_a_json_step_that_round_trips",
            "test_error_steps_round_trip_too",
            "test_step_dicts_stay_lossless_so_records_round_trip",
            "test_nan_in_usage_or_data_never_breaks_json",
        )
        + _in(CONTAINMENT, "test_a_tool_that_ran_is_recorded_whatever_its_value_and_warnings_are"),
        "no case is saved to a checkpoint store and loaded one by one: the converted step's JSON "
        "round trip is checked, which is what a store writes",
    ),
    Row(
        "B5",
        "enormous output: head and tail in the prompt",
        _in(RECORDS, "test_results_longer_than_the_budget_are_cut_with_a_marker_naming_how_much"),
        "the spill file (0600, sha256) needs a run directory, which comes with the provenance "
        "directory (issue 9); a checkpoint store is not one",
    ),
    Row(
        "B6",
        "non-dict results wrapped as {'result': ...}",
        _in(
            RECORDS,
            "test_non_dict_results_are_wrapped",
            "test_hook_replacement_results_are_normalised_too",
            "test_pretty_summarises_the_data",
            "test_pretty_counts_one_item_in_the_singular",
        ),
    ),
    Row(
        "B7",
        "args recorded as dispatched; result snapshot",
        _in(DISPATCH, "test_tool_mutating_its_args_does_not_change_the_recorded_call"),
    ),
    Row(
        "B8",
        "parallel batch keeps every result in order",
        _in(
            DISPATCH,
            "test_one_failing_or_hanging_call_in_a_parallel_batch_keeps_its_siblings",
            "test_concurrent_safe_calls_in_one_turn_overlap_and_come_back_in_order",
            "test_concurrent_async_tools_overlap",
            "test_tools_not_marked_concurrent_safe_run_one_at_a_time",
            "test_a_timed_out_call_does_not_make_its_batch_siblings_busy",
            "test_tools_of_a_concurrent_batch_see_the_callers_context_variables",
            "test_each_call_of_a_concurrent_batch_has_its_own_scratch",
        )
        + _in(HOOKS, "test_pre_dispatch_failure_in_a_concurrent_group_runs_none_of_it"),
    ),
    Row(
        "B9",
        "exit codes that are not errors: data plus a note, not EXECUTION",
        _in(WS_TOOLS, "test_exit_codes_that_are_answers_come_back_as_data_with_a_note_not_as_errors"),
    ),
    # -- C. LLM API faults ----------------------------------------------------------------------
    Row(
        "C1",
        "429 waits for the hint; one retry layer",
        _in(
            RETRY,
            "test_rate_limit_waits_for_the_hint_then_succeeds",
            "test_attempts_equal_one_plus_the_configured_retries",
            "test_retry_after_in_whole_seconds_is_honoured",
            "test_retry_after_as_an_http_date_is_honoured",
            "test_a_hint_over_the_cap_is_cut_to_the_cap",
            "test_parse_retry_after_reads_ms_seconds_and_dates",
            "test_parse_retry_after_reads_every_form_and_never_raises",
        )
        + _in(SETUP, "test_a_given_client_is_used_with_its_retries_off"),
    ),
    Row(
        "C2",
        "quota and billing: no retry, kind=quota",
        _in(
            ERRORS,
            "test_quota_and_billing_errors_are_not_retried",
            "test_an_anthropic_spend_limit_is_read_from_its_error_code",
        )
        + _in(RETRY, "test_a_non_retriable_failure_is_raised_at_once"),
    ),
    Row(
        "C3",
        "5xx: backoff, then typed with status and id",
        _in(
            RETRY,
            "test_server_errors_back_off_exponentially",
            "test_exhausted_retries_keep_the_status_and_request_id",
            "test_a_run_stopped_by_server_errors_resumes_from_its_history",
            "test_backoff_grows_within_its_bounds",
            "test_a_policy_that_cannot_work_is_a_config_error",
        )
        + _in(SETUP, "test_a_response_carries_the_provider_request_id")
        + _in(
            LOOP, "test_llm_exception_stops_with_llm_error_not_budget", "test_typed_llm_error_is_kept_as_is"
        )
        + _in(APPROVAL, "test_a_run_stopped_by_a_failed_model_call_continues"),
        "no checkpoint store is loaded after a 5xx stop on its own: a run stopped by a failed model "
        "call continues from its state in both loops (and from its JSON record in the resume property)",
    ),
    Row(
        "C4",
        "529 overloaded retried like 503",
        _in(RETRY, "test_unavailable_and_overloaded_are_retried"),
    ),
    Row(
        "C5",
        "slow or refused: per-attempt timeout, cancellable",
        _in(
            RETRY,
            "test_slow_headers_time_out_each_attempt_then_retry",
            "test_a_stalled_stream_times_out_and_is_retried",
            "test_connection_refused_is_retried_then_typed",
            "test_cancelling_a_sync_backoff_stops_before_the_next_attempt",
            "test_cancelling_the_task_during_an_async_backoff_stops_before_the_next_attempt",
            "test_the_cancel_token_also_cuts_an_async_backoff",
            "test_a_retry_deadline_bounds_the_whole_call",
            "test_the_run_deadline_ends_a_retry_wait_it_cannot_outlast",
            "test_each_attempt_times_out_within_the_time_left",
            "test_no_call_is_made_after_the_run_deadline",
            "test_the_retry_state_never_waits_past_the_run_deadline",
        )
        + _in(
            DISPATCH,
            "test_the_request_carries_the_runs_deadline_for_the_backends_retry_waits",
            "test_cancelling_the_async_loop_fires_the_token_the_backend_and_tools_hold",
        ),
        "cancel latency is a benchmark figure, not a test (tests assert counts and order)",
    ),
    Row(
        "C6",
        "reset mid-stream: no call from a partial stream",
        _in(
            STREAMS,
            "test_a_dropped_stream_is_retried_and_its_call_runs_once",
            "test_a_partial_tool_call_is_never_run",
            "test_a_connection_reset_mid_stream_is_typed_and_retried",
            "test_a_reset_without_retries_left_is_a_connection_error",
            "test_a_stream_that_broke_after_text_was_shown_is_not_retried",
        ),
    ),
    Row(
        "C7",
        "SSE error event and malformed chunks typed",
        _in(
            STREAMS,
            "test_an_error_event_after_200_is_typed_and_retried",
            "test_an_error_event_without_retries_left_is_typed",
            "test_a_malformed_chunk_is_retried_when_nothing_was_shown",
        ),
    ),
    Row(
        "C8",
        "context too long: compact once, then overflow",
        _in(
            ERRORS,
            "test_a_context_overflow_compacts_once_then_retries",
            "test_a_prompt_still_too_long_after_compaction_stops_with_context_overflow",
            "test_a_502_that_mentions_413_and_too_long_is_a_server_error",
            "test_a_400_without_the_context_code_is_a_bad_request",
        )
        + _in(
            LOOP,
            "test_context_length_error_rebuilds_the_prompt_once_then_overflows",
            "test_context_length_error_is_not_retried_with_the_same_prompt",
            "test_context_length_error_then_success_goes_on",
            "test_a_context_length_error_on_the_last_allowed_call_is_reported_as_overflow_not_budget",
        )
        + _in(BUDGET, "test_llm_call_cap_counts_overflow_retries"),
    ),
    Row(
        "C9",
        "401/403: no retry, names the variable, no key",
        _in(
            ERRORS,
            "test_auth_errors_stop_at_once_and_name_the_variable",
            "test_the_key_never_leaks_into_errors_logs_or_reprs",
        )
        + _in(SETUP, "test_repr_shows_model_and_url_never_the_key_or_a_url_password"),
    ),
    Row(
        "C10",
        "bad 200 bodies: typed, cut calls never run",
        _in(
            STREAMS,
            "test_a_body_that_is_not_json_is_retried_then_typed",
            "test_a_200_that_is_not_a_reply_is_a_bad_response_that_says_what_came_back",
            "test_a_web_page_at_the_base_url_is_quoted_masked_and_cut",
            "test_an_empty_model_reply_is_a_step_without_a_tool_call",
            "test_a_call_cut_by_the_token_limit_is_never_run",
            "test_unreadable_tool_arguments_are_a_parse_step",
        )
        + (REPLY_TYPES,)
        + _in(
            CONTAINMENT, "test_a_backend_reply_of_the_wrong_shape_stops_with_llm_error_saying_what_was_wrong"
        )
        + _in(
            CONTAINMENT,
            "test_a_sync_backend_raising_stop_iteration_ends_both_loops_with_llm_error",
            "test_an_async_backend_raising_stop_async_iteration_ends_with_llm_error",
            "test_a_backend_raising_system_exit_does_not_end_the_host",
            "test_usage_of_the_wrong_type_inside_a_reply_never_reaches_the_totals",
        )
        + _in(LOOP, "test_backend_returning_the_wrong_type_is_an_llm_error"),
    ),
    Row(
        "C11",
        "refusal or content filter: stop_reason refused",
        _in(
            ERRORS,
            "test_a_content_filter_stop_is_a_refusal",
            "test_an_openai_refusal_message_is_a_refusal",
        )
        + _in(LOOP, "test_a_refusal_stops_the_run_as_refused"),
    ),
    Row(
        "C12",
        "missing SDK or env var: one ConfigError",
        _in(
            SETUP,
            "test_importing_looplet_imports_no_sdk",
            "test_a_missing_sdk_is_one_config_error_naming_the_extra",
            "test_from_env_with_nothing_set_names_the_variables",
            "test_from_env_without_a_model_names_the_model_variable",
            "test_a_malformed_base_url_is_a_config_error_naming_where_it_came_from",
        )
        + _in(COMMANDS, "test_doctor_flags_a_configured_provider_without_its_sdk")
        + _in("tests/test_exported_members.py", "test_import_looplet_pulls_in_no_sdk_and_no_asyncio"),
    ),
    # -- D. Interruption and lifecycle ----------------------------------------------------------
    Row(
        "D1",
        "Ctrl-C in the model call propagates, nothing recorded",
        _in(DISPATCH, "test_keyboard_interrupt_from_the_backend_propagates_and_nothing_is_recorded")
        + _in(INTERCEPTORS, "test_ctrl_c_inside_an_interceptor_propagates_and_the_run_ends_cancelled"),
        "no checkpoint is loaded after a Ctrl-C (SIGINT) in the model call: the crash tests kill around "
        "tools and durable writes, not inside the model call; the provenance 'interrupted' event comes "
        "with the provenance directory (issue 9)",
    ),
    Row(
        "D2",
        "Ctrl-C in a tool: call marked in flight",
        _in(
            CRASH,
            "test_a_run_killed_at_a_named_point_resumes_without_losing_a_step_or_repeating_a_side_effect",
            "test_a_run_killed_inside_one_of_two_concurrent_calls_settles_both_on_resume",
        )
        + _in(
            CHECKPOINTS,
            "test_the_intent_is_durable_before_the_tool_runs_and_the_result_after",
            "test_a_tool_that_raises_is_re_raised_and_no_result_is_journaled",
            "test_a_concurrent_group_is_saved_once_and_every_call_waits_for_it",
            "test_a_later_write_keeps_results_journaled_before_it",
            "test_a_later_whole_save_keeps_results_journaled_before_it",
            "test_a_call_without_an_intent_in_the_record_does_not_run",
            "test_around_tool_before_pre_loop_does_not_run_the_tool",
        )
        + _in(
            EFFECTS,
            "test_each_calls_intent_is_recorded_before_run_tools_and_its_result_before_its_step",
            "test_an_intent_names_its_arguments_by_their_hash",
        )
        + _in(
            INTERCEPTORS,
            "test_the_intent_is_in_the_run_record_when_around_tool_is_entered",
            "test_ctrl_c_inside_an_interceptor_propagates_and_the_run_ends_cancelled",
            "test_ctrl_c_inside_an_async_interceptor_propagates_and_the_run_ends_cancelled",
        )
        + _in(
            DISPATCH,
            "test_keyboard_interrupt_from_a_tool_propagates_after_cleanup",
            "test_cancelled_error_from_an_async_tool_propagates",
        ),
        "the tools killed mid-call are plain def tools (in the loop's thread, a worker thread or the "
        "async loop's executor): no subprocess tool (group H) and no async def tool is killed mid-call; "
        "the kills are SIGKILLs, and a Ctrl-C inside a tool is checked to propagate, not resumed after",
    ),
    Row(
        "D3",
        "break or close: durable before yield, ends once",
        _in(
            INTERRUPTION,
            "test_break_after_every_step_runs_nothing_more_and_ends_once",
            "test_closing_a_loop_that_never_started_runs_nothing",
        )
        + _in(
            LOOP,
            "test_close_after_a_step_runs_on_loop_end_once_and_reports_cancelled",
            "test_break_in_a_for_statement_finishes_the_run_when_the_loop_is_dropped",
            "test_closing_twice_and_running_after_close_are_harmless",
            "test_close_after_break_ends_the_run_and_returns_its_result",
            "test_reading_the_result_after_a_break_ends_the_run_and_gives_its_outcome",
            "test_close_before_iterating_runs_nothing",
            "test_with_block_ends_the_run_on_break",
            "test_async_with_block_ends_the_run_on_break",
            "test_breaking_on_the_accepted_done_step_still_reports_done",
        )
        + _in(
            TURNS,
            "test_breaking_after_the_first_step_of_a_batch_continues_with_the_call_not_run",
            "test_breaking_after_the_first_step_of_a_concurrent_batch_keeps_the_sibling_that_ran",
            "test_a_ran_sibling_is_concluded_through_after_step_when_the_run_continues",
        )
        + _in(DISPATCH, "test_breaking_out_of_the_sync_loop_fires_the_token_a_tool_thread_holds")
        + _in(
            HOOKS,
            "test_after_step_sees_each_step_recorded_before_the_caller_does",
            "test_a_failing_after_step_stops_the_run_and_its_step_is_recorded_but_not_yielded",
        )
        + _in(DELTAS, "test_a_run_checkpointed_to_files_loads_equal_from_a_fresh_store_at_every_step")
        + _in(CHECKPOINTS, "test_after_step_makes_the_step_durable")
        + _in(APPROVAL, "test_a_run_stopped_by_break_continues_with_the_calls_it_left_open")
        + _in(
            RESUME,
            "test_a_run_stopped_anywhere_and_continued_from_json_ends_as_if_never_stopped",
            "test_steps_of_a_continued_turn_keep_the_model_call_that_proposed_them",
        ),
        "flushing provenance and reaping child processes on close come with the provenance directory "
        "(issue 9) and subprocess tools (group H); no ContextVar diff is taken after a break",
    ),
    Row(
        "D4",
        "throw into the loop: cleanup, then propagates",
        _in(
            INTERRUPTION,
            "test_throw_into_the_loop_propagates_after_cleanup",
            "test_athrow_into_the_async_loop_propagates_after_cleanup",
        ),
    ),
    Row(
        "D5",
        "exception in a hook: contained in every slot",
        _in(
            HOOKS,
            "test_a_failing_hook_stops_the_run_with_hook_error_naming_it",
            "test_pre_dispatch_failure_in_a_concurrent_group_runs_none_of_it",
            "test_pre_dispatch_failure_after_a_finished_sequential_call_keeps_that_call",
            "test_on_loop_end_failure_is_reported_and_other_hooks_still_run",
            "test_hook_error_keeps_steps_done_before_it",
            "test_async_hook_in_the_sync_loop_is_a_hook_error_that_says_why",
        )
        + _in(
            CONTAINMENT,
            "test_whatever_a_hook_raises_in_any_slot_is_contained_by_both_loops",
            "test_ctrl_c_and_cancellation_from_a_hook_propagate_after_cleanup",
            "test_a_hook_result_with_wrong_typed_fields_stops_the_run_with_hook_error_naming_the_field",
            "test_allow_with_updated_args_that_are_not_a_dict_is_a_hook_error",
            "test_a_hook_exception_whose_str_fails_is_still_reported",
            "test_a_closed_loop_is_not_confused_with_a_hook_raising_generator_exit",
        )
        + _in(INTERRUPTION, "test_interrupt_inside_on_loop_end_still_builds_the_result_and_runs_the_others"),
    ),
    Row(
        "D6",
        "async cancel at every await propagates",
        _in(INTERRUPTION, "test_cancelling_the_task_at_any_await_point_propagates_and_cleans_up")
        + _in(
            DISPATCH,
            "test_cancelled_error_from_an_async_tool_propagates",
            "test_cancelling_the_async_loop_fires_the_token_the_backend_and_tools_hold",
        ),
        "no test cancels the async task with a checkpoint store attached and loads the store after; "
        "the resume property stops runs with a fired CancelToken (not a task cancel) and continues "
        "them from their JSON record (rows D3 and L6)",
    ),
    Row(
        "D7",
        "SIGKILL at any point: last durable step",
        _in(
            CRASH,
            "test_a_run_killed_at_a_named_point_resumes_without_losing_a_step_or_repeating_a_side_effect",
            "test_a_run_killed_at_random_points_resumes_from_its_last_durable_step",
            "test_a_run_killed_inside_one_of_two_concurrent_calls_settles_both_on_resume",
        )
        + _in(
            FILES,
            "test_a_crash_at_any_byte_of_a_save_or_an_append_leaves_the_old_or_the_new_state",
            "test_a_killed_holder_leaves_the_run_unlocked",
        )
        + _in(DELTAS, "test_a_crash_at_any_byte_of_a_delta_leaves_the_run_before_it"),
        "the seven named points sit around tool calls and durable writes, none inside the model call "
        "or a hook; 46 fixed kills and 20 random seeds over those points, not every point x 20 seeds",
    ),
    Row(
        "D8",
        "re-entrancy: 'loop is already running'",
        _in(
            HOOKS,
            "test_hook_advancing_its_own_loop_gets_a_runtime_error",
            "test_tool_advancing_its_own_loop_is_an_execution_error",
            "test_async_hook_advancing_its_own_loop_gets_a_runtime_error",
        ),
    ),
    Row(
        "D9",
        "D, E, G and L tests run in both loops",
        _in(
            INTERRUPTION,
            "test_break_after_every_step_runs_nothing_more_and_ends_once",
        )
        + _in(
            HOOKS,
            "test_a_failing_hook_stops_the_run_with_hook_error_naming_it",
            "test_check_done_rejected_forever_still_terminates",
        )
        + _in(
            BUDGET,
            "test_text_only_model_stops_within_both_caps",
            "test_llm_call_cap_defaults_to_three_times_max_steps",
            "test_explicit_llm_call_cap",
            "test_bad_max_steps_shorthand_fails_when_the_loop_is_built",
            "test_budget_remaining_counts_down",
        )
        + _in(
            LOOP,
            "test_max_steps_stop",
            "test_max_steps_zero_makes_no_llm_call",
            "test_deadline_stops_the_run",
        )
        + _in(GAPS, "test_a_compaction_that_never_shrinks_the_prompt_still_ends_the_run")
        + _in(
            CRASH,
            "test_an_uninterrupted_run_is_the_same_in_both_loops_and_for_both_tool_kinds",
            "test_a_run_killed_at_a_named_point_resumes_without_losing_a_step_or_repeating_a_side_effect",
        )
        + _in(
            DELTAS,
            "test_a_run_checkpointed_by_deltas_loads_equal_to_the_live_state_at_every_step",
            "test_a_failed_intent_write_stops_the_run_at_the_next_step_without_running_the_tool",
        )
        + _in(
            APPROVAL,
            "test_an_approved_call_runs_once_with_its_args_without_the_gates_and_nothing_is_counted_twice",
            "test_a_rejected_call_never_runs_and_the_model_is_told_it_was_denied_and_why",
            "test_a_run_stopped_on_its_step_budget_continues_only_with_a_larger_one",
        ),
        "these tests are the ones parametrized over both drivers (checked by test_reliability_map); "
        "D4 and D6 test each driver's own entry point (throw, athrow, task cancel); the store and file "
        "tests of group E drive no loop, and the resume property draws its drivers (sync, async, or "
        "both alternating on one record)",
    ),
    # -- E. Checkpoint durability and resume ------------------------------------------------------
    Row(
        "E1",
        "crash mid-write: the old or the new, never torn",
        _in(
            FILES,
            "test_a_crash_at_any_byte_of_a_save_or_an_append_leaves_the_old_or_the_new_state",
            "test_temp_files_of_a_crashed_save_are_removed_by_the_next_lock_holder",
            "test_a_torn_last_journal_line_is_ignored",
            "test_journal_lines_from_before_the_last_save_are_ignored",
            "test_a_full_disk_fails_an_append_and_the_next_append_cuts_the_torn_line",
        )
        + _in(DELTAS, "test_a_crash_at_any_byte_of_a_delta_leaves_the_run_before_it")
        + _in(
            CRASH,
            "test_a_run_killed_at_a_named_point_resumes_without_losing_a_step_or_repeating_a_side_effect",
        ),
        "the byte-by-byte crashes are process crashes (os._exit), not power losses, so the fsyncs of "
        "the file and the directory are not checked; each byte-by-byte series counts as one case here "
        "(the tests report no count of their crash points)",
    ),
    Row(
        "E2",
        "damaged checkpoint: CheckpointError, no silent fallback",
        _in(
            FILES,
            "test_a_damaged_or_wrong_checkpoint_is_refused_with_a_reason",
            "test_a_randomly_damaged_checkpoint_loads_exactly_or_is_refused",
            "test_a_randomly_damaged_journal_loads_a_prefix_or_is_refused",
            "test_a_damaged_journal_line_before_the_last_is_refused",
            "test_a_journal_ahead_of_its_checkpoint_means_an_older_copy_was_restored",
            "test_a_symlinked_journal_is_refused_and_never_written_through",
            "test_a_pipe_planted_as_the_journal_is_refused_without_hanging",
            "test_a_directory_that_is_a_file_is_refused",
        )
        + _in(
            CHECKPOINTS,
            "test_a_run_id_outside_the_safe_alphabet_is_refused",
            "test_load_run_refuses_a_record_that_is_not_a_run",
            "test_load_run_refuses_a_damaged_journal_entry",
        )
        + _in(
            DELTAS,
            "test_a_damaged_delta_is_refused",
            "test_a_gap_in_the_deltas_is_refused",
            "test_a_delta_that_overlaps_with_other_content_is_refused",
        )
        + _in(
            RECORD,
            "test_a_damaged_or_foreign_record_is_refused_with_a_clear_error",
            "test_something_that_is_not_a_record_at_all_is_refused",
        ),
        "no atheris fuzzing: hypothesis mutations (bit flips, cuts, insertions) of a valid checkpoint "
        "and journal instead; there is no on_corrupt='previous' fallback, a damaged checkpoint is "
        "always refused",
    ),
    Row(
        "E3",
        "version skew: newer refused, format 1 still loads",
        _in(
            RECORD,
            "test_a_damaged_or_foreign_record_is_refused_with_a_clear_error",
            "test_a_subclass_keeps_its_own_fields_through_a_round_trip",
        )
        + _in(CHECKPOINTS, "test_load_run_refuses_a_record_from_a_newer_looplet")
        + _in(
            FILES,
            "test_a_record_from_a_newer_looplet_is_refused_by_load_run",
            "test_a_format_1_checkpoint_still_loads_and_saves_again_unchanged",
            "test_a_damaged_or_wrong_checkpoint_is_refused_with_a_reason",
        )
        + _in(DELTAS, "test_a_damaged_delta_is_refused"),
        "only version 1 exists, so no older version is migrated; the frozen corpus is one format-1 "
        "checkpoint and journal kept inline in the test (not tests/fixtures/checkpoints/v1), holding "
        "a small record, not a whole run record",
    ),
    Row(
        "E4",
        "foreign, stale or finished run never resumed",
        _in(
            FILES,
            "test_runs_sharing_a_directory_each_load_their_own",
            "test_another_runs_journal_is_refused",
            "test_a_damaged_or_wrong_checkpoint_is_refused_with_a_reason",
        )
        + _in(
            CHECKPOINTS,
            "test_a_record_naming_another_run_is_refused",
            "test_load_run_refuses_an_unknown_run",
            "test_load_run_refuses_another_runs_record_from_a_buggy_store",
            "test_a_state_older_than_the_saved_run_is_refused",
            "test_a_state_missing_a_journaled_result_is_refused",
            "test_run_status_says_what_a_stop_reason_means_for_continuing",
        )
        + _in(DELTAS, "test_a_state_behind_the_deltas_in_the_store_is_refused_and_the_loaded_one_continues")
        + _in(
            APPROVAL,
            "test_a_run_that_ended_done_is_refused_with_an_error_pointing_to_fork",
            "test_a_finished_approved_run_passed_back_is_refused_with_a_pointer_to_fork",
        )
        + _in(FORK, "test_a_fork_ends_just_before_the_turn_of_its_step_and_names_its_parent")
        + _in(RECORD, "test_a_run_continued_with_other_tools_or_settings_warns_at_the_callers_line"),
        "a run continued with other tools or settings gets a warning (its fingerprint), not a "
        "refusal: changing a hook or a prompt on purpose is allowed; nothing resumes implicitly, "
        "so there is no auto-resume to pick a wrong run",
    ),
    Row(
        "E5",
        "saved data never revives classes",
        _in(FILES, "test_payloads_that_revive_classes_elsewhere_stay_plain_data"),
    ),
    Row(
        "E6",
        "round trip of the run record; counters go on",
        _in(
            RECORD,
            "test_any_run_survives_a_round_trip_through_json_unchanged",
            "test_the_record_holds_the_outcome_and_every_counter",
            "test_a_done_run_keeps_its_final_answer_and_dropped_calls_in_the_record",
            "test_a_subclass_keeps_its_own_fields_through_a_round_trip",
        )
        + _in(
            CHECKPOINTS,
            "test_load_run_rebuilds_the_state_and_replays_the_journal",
            "test_load_run_builds_the_state_type_asked_for",
        )
        + _in(
            DELTAS,
            "test_a_run_checkpointed_by_deltas_loads_equal_to_the_live_state_at_every_step",
            "test_a_run_checkpointed_to_files_loads_equal_from_a_fresh_store_at_every_step",
            "test_compaction_forces_a_whole_save_and_the_run_still_loads_equal",
            "test_a_history_rewritten_in_place_to_the_same_length_forces_a_whole_save",
            "test_a_history_put_in_place_of_the_old_one_forces_a_whole_save",
            "test_a_changed_field_is_written_even_when_it_compares_equal_in_python",
            "test_a_long_text_in_the_deltas_brings_a_whole_save",
            "test_a_subclass_field_travels_in_deltas",
            "test_deltas_replay_to_the_live_state",
            "test_random_runs_checkpointed_incrementally_load_equal_to_the_live_state",
            "test_the_random_runs_reached_compaction_batches_and_count_saves",
        )
        + _in(
            RESUME,
            "test_a_run_stopped_anywhere_and_continued_from_json_ends_as_if_never_stopped",
            "test_a_run_continued_in_fresh_processes_ends_as_if_never_stopped",
        )
        + _in(APPROVAL, "test_a_run_paused_in_one_process_is_approved_in_a_second_and_finished_in_a_third")
        + _in(FORK, "test_a_fork_survives_json_and_continues_in_the_other_loop"),
        "hypothesis draws scripted runs (replies, batches, stops) and compares their records, not "
        "Step or Message values drawn directly; messages hold text only, so there is no multi-block "
        "content to round-trip",
    ),
    Row(
        "E7",
        "checkpoint files 0600, directory 0700",
        _in(FILES, "test_checkpoint_files_are_private_whatever_the_umask"),
        "no canary scan of checkpoint files and no optional field redaction: a record keeps tool "
        "arguments and results raw (documented as sensitive in docs/durability.md)",
    ),
    Row(
        "E8",
        "two processes, one run: CheckpointLocked",
        _in(
            FILES,
            "test_a_second_process_cannot_lock_a_run_another_holds",
            "test_of_processes_racing_for_a_run_exactly_one_wins",
            "test_a_killed_holder_leaves_the_run_unlocked",
            "test_without_flock_the_lock_is_an_exclusive_file_naming_its_holder",
        )
        + _in(
            CHECKPOINTS,
            "test_pre_loop_locks_the_run_and_saves_it_so_it_is_listed",
            "test_a_locked_run_is_never_written",
            "test_on_loop_end_saves_the_outcome_and_releases_the_run",
            "test_one_hook_serves_one_run_at_a_time",
        ),
        "the race is 2 rounds of 5 processes, not 100 rounds",
    ),
    Row(
        "E9",
        "full disk or read-only: typed error, old one intact",
        _in(
            FILES,
            "test_a_full_disk_fails_the_save_and_keeps_the_previous_checkpoint",
            "test_a_failing_fsync_fails_the_save_and_keeps_the_previous_checkpoint",
            "test_a_full_disk_fails_an_append_and_the_next_append_cuts_the_torn_line",
            "test_a_read_only_directory_fails_the_save_and_keeps_the_previous_checkpoint",
        )
        + _in(
            CHECKPOINTS,
            "test_a_failed_save_stops_the_run_with_a_checkpoint_error",
            "test_a_result_that_cannot_be_journaled_is_kept_for_the_steps_save",
            "test_a_store_that_raises_something_else_is_reported_as_a_checkpoint_error",
        )
        + _in(
            DELTAS,
            "test_a_failed_intent_write_stops_the_run_at_the_next_step_without_running_the_tool",
            "test_after_a_failed_write_no_other_tool_of_the_session_runs",
        )
        + _in(HOOKS, "test_a_failing_after_step_stops_the_run_and_its_step_is_recorded_but_not_yielded"),
        "there is no durability='best_effort': a failed write always stops the run; the read-only "
        "directory test skips when run as root",
    ),
    Row(
        "E10",
        "ordered by a sequence, not clocks or names",
        _in(
            FILES,
            "test_saves_are_numbered_by_a_counter_that_survives_other_writers_and_clocks",
            "test_journal_lines_from_before_the_last_save_are_ignored",
            "test_a_journal_ahead_of_its_checkpoint_means_an_older_copy_was_restored",
        )
        + _in(
            DELTAS,
            "test_a_delta_the_state_already_holds_is_skipped",
            "test_replaying_a_journal_twice_gives_the_same_state",
            "test_deltas_a_later_save_subsumed_are_skipped",
            "test_a_gap_in_the_deltas_is_refused",
            "test_a_delta_that_overlaps_with_other_content_is_refused",
            "test_a_result_journaled_before_a_delta_is_kept_by_the_delta",
        ),
    ),
    Row(
        "E11",
        "one conformance suite for every store",
        _in(
            CHECKPOINTS,
            "TestMemoryRunStoreKeepsTheContract",
            "TestFileCheckpointStoreKeepsTheContract",
            "test_check_store_runs_every_contract_without_pytest",
            "test_the_suite_catches_a_store_that_breaks_the_contract",
            "test_both_stores_are_run_stores",
        ),
        "tests/store_conformance.py runs against the two stores looplet ships (and a broken one it "
        "must catch); it lives in tests/, not in the package, so a third-party store copies it, and "
        "the lock across processes is each store's own test",
    ),
    # -- F. Provenance directory ----------------------------------------------------------------
    Row(
        "F1",
        "a crash mid-run leaves the steps yielded, a torn last line ignored",
        _in(
            PROV,
            "test_a_run_killed_by_sigkill_leaves_a_directory_read_run_and_show_accept",
            "test_a_torn_last_line_of_the_event_log_is_ignored",
            "test_a_line_torn_in_the_middle_of_the_log_is_an_error",
        )
        + _in(PROV_PROPS, "test_a_log_cut_at_any_byte_reads_back_as_the_steps_committed_before_it"),
    ),
    Row(
        "F2",
        "concurrent runs sharing one directory each write their own run directory",
        _in(
            PROV,
            "test_concurrent_runs_in_threads_share_one_sink_without_mixing",
            "test_concurrent_async_runs_share_one_sink_without_mixing",
            "test_processes_sharing_one_root_write_only_their_own_directories",
            "test_interleaved_runs_in_one_thread_are_kept_apart",
        ),
    ),
    Row(
        "F3",
        "the same run id again never mixes with stale files",
        _in(
            PROV,
            "test_a_second_session_of_a_run_gets_a_fresh_directory",
            "test_a_run_id_that_is_not_a_safe_name_stays_inside_the_root",
        ),
    ),
    Row(
        "F4",
        "huge or non-JSON payloads cut with size and sha256",
        _in(
            PROV,
            "test_huge_and_non_json_values_are_cut_with_their_size_and_sha256",
            "test_a_value_with_a_lone_surrogate_is_still_written_and_read",
        ),
    ),
    Row(
        "F5",
        "metadata a later hook adds reaches the step record",
        _in(PROV, "test_metadata_hooks_add_after_the_sink_reaches_the_step_file"),
    ),
    Row(
        "F6",
        "every prompt, response, call, result, decision and retry is recorded",
        _in(
            PROV,
            "test_a_scripted_run_records_every_prompt_response_call_result_and_decision",
            "test_a_failed_model_call_is_recorded_with_its_error",
            "test_retries_a_backend_reports_on_its_response_are_recorded",
            "test_a_call_paused_for_approval_is_recorded_as_pending",
        )
        + ("tests/test_step_decisions.py", "tests/backends/test_backend_attempts.py"),
    ),
    # -- G. Permissions, hooks and approval -------------------------------------------------------
    Row(
        "G1",
        "deny > ask > allow whatever the order",
        _in(PERMISSION_PROPS, "test_engine_decisions_match_the_reference_model")
        + _in(
            PERMISSIONS,
            "test_deny_beats_ask_beats_allow_whatever_the_order_written",
            "test_deny_listed_after_a_broad_allow_still_keeps_the_body_from_running",
            "test_tool_patterns_are_case_sensitive_globs",
            "test_a_matcher_narrows_a_rule_to_some_arguments",
        ),
    ),
    Row(
        "G2",
        "no rule matches: deny by default",
        _in(
            PERMISSIONS,
            "test_an_engine_without_a_default_denies_a_call_no_rule_matches",
            "test_a_default_other_than_deny_is_an_explicit_choice",
            "test_a_default_that_is_not_an_effect_is_a_config_error",
            "test_a_run_with_no_matching_rule_never_runs_the_tool",
        ),
    ),
    Row(
        "G3",
        "a raising matcher or ask handler denies",
        _in(
            PERMISSIONS,
            "test_a_matcher_that_fails_makes_the_decision_deny_naming_the_rule",
            "test_a_matcher_that_raises_denies_the_call_and_is_audited_once",
            "test_an_ask_handler_that_does_not_say_yes_denies_and_is_audited_once",
            "test_an_async_ask_handler_that_does_not_answer_in_time_denies",
            "test_an_async_ask_handler_in_the_sync_loop_denies_saying_why",
        ),
        "a sync ask_handler cannot be interrupted, so only an async one has a time limit",
    ),
    Row(
        "G4",
        "the policy is checked on the final args",
        _in(PERMISSION_PROPS, "test_what_runs_always_passes_the_policy_whatever_the_hook_stack")
        + _in(
            PERMISSIONS,
            "test_a_rewrite_after_the_permission_check_is_checked_again_before_the_body",
            "test_a_rewrite_after_the_check_that_would_need_approval_is_denied",
            "test_a_rewrite_after_the_check_to_allowed_arguments_runs_them",
            "test_a_rewrite_before_the_permission_hook_is_what_is_checked",
            "test_a_deny_rule_wins_over_an_approval_edited_into_denied_arguments",
            "test_a_rewrite_after_an_approval_is_checked_again",
            "test_an_edit_approved_for_another_gate_is_still_checked_by_the_rules",
        ),
    ),
    Row(
        "G5",
        "each gate evaluated once per call",
        _in(
            PERMISSIONS,
            "test_the_ask_handler_is_called_exactly_once_per_call_needing_ask",
            "test_each_call_of_a_concurrent_batch_is_decided_and_audited_once",
            "test_an_approved_run_passed_back_twice_runs_the_call_once",
        ),
    ),
    Row(
        "G6",
        "approval denied: never runs, the model is told why",
        _in(
            APPROVAL,
            "test_a_rejected_call_never_runs_and_the_model_is_told_it_was_denied_and_why",
            "test_three_paused_calls_of_one_turn_are_decided_and_concluded_separately",
            "test_paused_calls_each_get_their_own_id_even_when_the_model_repeats_or_omits_ids",
            "test_a_rejected_done_call_sends_the_model_back_to_work",
            "test_a_gate_listed_after_the_one_that_asked_still_decides_an_approved_call",
        ),
        "the rejection's wording around the human's reason has no formatter to customise it; who and "
        "when are not recorded (the step's metadata keeps the decision, the ask's reason and the note), "
        "and provenance comes with the provenance directory (issue 9)",
    ),
    Row(
        "G7",
        "pause before a tool, decide, resume: runs once",
        _in(
            APPROVAL,
            "test_an_asked_call_waits_unrun_while_its_turns_allowed_calls_run_and_the_run_stops_approval_pending",
            "test_paused_calls_each_get_their_own_id_even_when_the_model_repeats_or_omits_ids",
            "test_calls_after_a_paused_call_in_a_concurrent_batch_see_the_step_number_they_are_recorded_as",
            "test_an_approved_call_runs_once_with_its_args_without_the_gates_and_nothing_is_counted_twice",
            "test_a_gate_listed_after_the_one_that_asked_still_decides_an_approved_call",
            "test_approved_edited_args_are_validated_again_and_the_edit_is_recorded_on_the_step",
            "test_approve_with_args_that_are_not_a_dict_is_refused_at_once",
            "test_approve_refuses_edited_args_the_record_could_not_save",
            "test_a_refused_decision_leaves_the_run_record_as_it_was",
            "test_a_hook_rewrite_before_the_pause_is_recorded_on_the_approved_step",
            "test_three_paused_calls_of_one_turn_are_decided_and_concluded_separately",
            "test_a_done_call_waits_while_a_call_of_its_turn_waits_for_a_decision",
            "test_a_paused_done_call_ends_the_run_when_approved",
            "test_a_decision_for_an_unknown_call_is_refused_and_names_the_waiting_calls",
            "test_a_decision_bound_to_other_arguments_is_refused",
            "test_a_saved_run_whose_pending_call_was_edited_by_hand_is_refused_when_the_loop_is_built",
            "test_deciding_on_a_call_whose_saved_args_were_edited_is_refused",
            "test_a_finished_approved_run_passed_back_is_refused_with_a_pointer_to_fork",
            "test_continuing_a_run_that_still_waits_runs_nothing_twice",
            "test_a_run_paused_in_one_process_is_approved_in_a_second_and_finished_in_a_third",
            "test_an_async_pre_dispatch_hook_pauses_a_call_in_the_async_loop",
        )
        + _in(EFFECTS, "test_a_call_a_hook_asks_about_gets_no_run_tools_and_the_run_stops_approval_pending")
        + (CRASH_APPROVAL,),
        "a pending call has no expiry, so an expired approval cannot ask again; a decision bound to "
        "changed arguments is refused with an error rather than asked again",
    ),
    Row(
        "G8",
        "always_approve keyed by the tool, never wider",
        _in(
            "tests/test_approval_hook.py",
            "test_always_from_a_handler_approves_later_calls_of_that_tool_only",
            "test_always_from_a_person_on_a_paused_run_is_kept_in_the_record",
        ),
        "keyed by the tool's name; MCP tools (keyed by server too) come with issue 11",
    ),
    Row(
        "G9",
        "a skill's hooks run after the host's gates",
        _in(
            CARTRIDGES,
            "test_host_gates_run_before_the_cartridges_hooks_and_observers_after",
            "test_a_cartridge_hook_cannot_undo_a_host_gates_deny",
        ),
    ),
    Row(
        "G10",
        "contradictory hook decisions: deny wins",
        _in(
            PERMISSIONS,
            "test_deny_beats_ask_beats_allow_whatever_the_order_written",
            "test_a_deny_rule_wins_over_an_approval_edited_into_denied_arguments",
        )
        + _in(APPROVAL, "test_a_gate_listed_after_the_one_that_asked_still_decides_an_approved_call"),
        "hook decisions are single values (Allow, Deny, Ask, a ToolResult), so no one decision can be "
        "contradictory; across hooks the first deny wins and a later deny beats an approval; a hook "
        "result of the wrong type or with wrong-typed fields is under D5",
    ),
    # -- H. Coding agent: paths and shell --------------------------------------------------------
    Row(
        "H1",
        "the path traversal corpus against every coding tool",
        _in(
            WS_PATHS,
            "test_the_payload_file_covers_every_kind_of_escape_the_matrix_names",
            "test_every_payload_against_every_tool_is_refused_and_nothing_outside_changes_or_shows",
            "test_glob_and_grep_walks_never_enter_a_link_out_of_the_workspace",
            "test_outside_errors_name_the_rule_and_never_echo_the_path",
        ),
    ),
    Row(
        "H2",
        "symlinks, hardlinks, dangling links, loops and the TOCTOU race",
        _in(
            WS_PATHS,
            "test_a_link_to_a_file_inside_is_followed_and_a_write_changes_the_target_not_the_link",
            "test_a_dangling_link_is_never_written_through_even_when_its_target_would_be_inside",
            "test_a_link_loop_is_an_error_not_a_hang",
            "test_a_hardlinked_file_is_refused_for_reading_and_writing",
            "test_a_link_swapped_between_inside_and_outside_during_writes_never_lets_one_out",
            "test_a_real_directory_replaced_by_a_link_out_during_writes_never_lets_one_out",
        ),
    ),
    Row(
        "H3",
        "protected paths inside the workspace",
        _in(
            WS_PATHS,
            "test_protected_paths_are_never_written_by_any_write_tool",
            "test_a_link_to_a_protected_directory_does_not_open_it_for_writing",
            "test_secret_files_are_neither_read_nor_searched",
        )
        + _in(WS_TOOLS, "test_in_the_sandbox_git_hooks_are_read_only_and_top_level_env_files_are_empty"),
    ),
    Row(
        "H4",
        "no shell from non-shell tools; argv lists only",
        _in(
            WS_TOOLS,
            "test_file_tools_start_no_process_whatever_the_names_and_patterns",
            "test_bash_starts_one_process_from_an_argv_list_with_the_command_after_dash_c",
            "test_the_done_guard_runs_the_test_command_as_an_argv_list",
        ),
    ),
    Row(
        "H5",
        "bash contained by the sandbox; process group killed on timeout",
        _in(
            WS_TOOLS,
            "test_a_command_killed_at_its_time_limit_leaves_no_process_behind",
            "test_background_work_a_command_leaves_in_its_group_is_killed_when_it_returns",
            "test_the_environment_of_a_command_holds_no_secret",
            "test_the_environment_is_an_allowlist_that_drops_secret_looking_names",
            "test_the_sandbox_keeps_the_outside_unchanged_unreachable_and_offline",
            "test_without_a_sandbox_bash_results_say_so_in_their_metadata",
        )
        + _in(
            "tests/test_coding_agent.py",
            "test_without_a_sandbox_bash_is_asked_about_and_refused_with_nobody_to_ask",
        ),
        "the 15-command bypass corpus and the fork bomb are not run yet; `kill -9 -1` is not run "
        "on a shared machine",
    ),
    Row(
        "H6",
        "huge files, FIFOs, devices, sparse and binary files",
        _in(
            WS_TOOLS,
            "test_a_fifo_is_refused_without_blocking",
            "test_devices_are_refused_inside_and_through_links",
            "test_a_sparse_ten_gigabyte_file_is_read_by_its_ends_only",
            "test_a_large_text_file_shows_its_head_and_tail_and_how_much_was_cut",
            "test_a_binary_file_is_reported_not_shown",
        ),
    ),
    Row(
        "H7",
        "edits byte-exact, atomic, mode kept; 0 or >1 matches a clear error",
        _in(
            WS_TOOLS,
            "test_edit_is_an_exact_single_replacement_like_str_replace_or_a_clear_error",
            "test_an_edit_that_misses_because_of_crlf_says_so",
            "test_multi_edit_applies_all_in_order_or_nothing",
            "test_concurrent_edits_never_leave_a_torn_file",
        ),
    ),
    Row(
        "H8",
        "terminal escapes neutralised in pretty(), raw in the record",
        _in(WS_TOOLS, "test_terminal_escapes_in_output_are_neutralised_in_pretty_and_kept_raw_in_the_result"),
    ),
    Row("H9", "web_fetch SSRF", (), "the coding agent has no web_fetch tool yet"),
    # -- I. Secrets -----------------------------------------------------------------------------
    Row(
        "I1",
        "canary secrets masked at every output",
        (REDACTION, "tests/test_redaction_properties.py", "tests/test_secrets_property.py")
        + _in(
            RECORDS,
            "test_pretty_masks_a_secret_that_a_cut_runs_through",
            "test_pretty_masks_the_escaped_form_of_a_secret",
            "test_pretty_masks_known_key_shapes_everywhere",
            "test_repr_of_every_record_masks_secrets",
            "test_run_result_masks_error_and_detail_text",
            "test_a_hooks_exception_is_masked_in_the_run_result",
        )
        + _in(HISTORY, "test_redaction_masks_known_shapes_and_secret_env_values")
        + _in(DISPATCH, "test_secrets_in_a_tool_exception_are_redacted_everywhere")
        + _in(ERRORS, "test_the_key_never_leaks_into_errors_logs_or_reprs")
        + _in(SETUP, "test_repr_shows_model_and_url_never_the_key_or_a_url_password")
        + _in(COMMANDS, "test_doctor_shows_settings_but_never_a_key")
        + (PROV_PROPS, "tests/test_tracing_otel.py::test_secrets_never_reach_span_attributes_or_events"),
        "checkpoint files are not scanned for canaries: a record keeps tool arguments and results "
        "raw by design (docs/durability.md; E7); every other output, provenance directories and "
        "trace spans included, is checked",
    ),
    Row(
        "I2",
        "the provider never sees env secret values",
        ("tests/test_secrets_to_provider.py",)
        + _in(REDACTION, "test_user_data_shaped_like_a_key_reaches_the_provider_unchanged")
        + _in("tests/test_redaction_properties.py", "test_no_canary_leaves_a_real_run")
        + _in("tests/test_secrets_property.py", "test_a_canary_never_shows_at_any_output_boundary"),
    ),
    Row(
        "I3",
        "bash env/printenv",
        _in(
            WS_TOOLS,
            "test_the_environment_of_a_command_holds_no_secret",
            "test_the_environment_is_an_allowlist_that_drops_secret_looking_names",
        ),
    ),
    Row(
        "I4",
        "files 0600, directories 0700",
        _in(FILES, "test_checkpoint_files_are_private_whatever_the_umask")
        + _in(PROV, "test_files_are_0600_and_directories_0700"),
    ),
    # -- J. Loading a skill or cartridge from an untrusted folder ----------------------------------
    Row(
        "J1",
        "no code runs on inspect, list or validate; load needs trust",
        _in(
            SKILL_LOADING,
            "test_inspect_list_and_validate_run_no_code",
            "test_a_declared_mcp_command_is_kept_as_data_and_never_started",
            "test_loading_untrusted_raises_before_any_code_runs",
            "test_a_trust_list_entry_lets_exactly_that_folder_as_it_is_load",
            "test_a_folder_changed_after_it_was_trusted_is_refused",
        )
        + _in(CARTRIDGES, "test_opening_without_trust_is_refused_before_any_code_runs")
        + _in(BUNDLES, "test_list_bundles_lists_cartridges_without_importing_them"),
    ),
    Row(
        "J2",
        "a cartridge's modules never shadow the host's; sys.path untouched",
        _in(
            SKILL_LOADING,
            "test_loading_replaces_no_host_module_and_leaves_sys_path_alone",
            "test_two_cartridges_with_the_same_helper_name_each_get_their_own",
            "test_no_bytecode_is_written_into_or_read_from_the_folder",
        )
        + _in(CARTRIDGES, "test_a_cartridge_module_named_json_does_not_replace_the_hosts"),
    ),
    Row(
        "J3",
        "every path a manifest names resolves inside the folder",
        _in(
            SKILL_LOADING,
            "test_the_payload_corpus_is_refused_in_every_path_key",
            "test_an_entrypoint_through_a_link_out_is_refused_and_never_runs",
            "test_a_linked_tool_directory_pointing_outside_is_a_problem",
            "test_a_helper_linked_to_outside_the_folder_is_not_imported",
            "test_a_skill_md_that_is_a_link_or_a_fifo_is_not_read",
        )
        + _in(CARTRIDGES, "test_a_cartridge_naming_a_path_outside_its_folder_is_refused"),
    ),
    Row(
        "J4",
        "YAML bombs, tags, deep nesting and huge manifests refused in bounded time",
        _in(
            FRONT,
            "test_a_yaml_bomb_is_refused_at_its_first_anchor_without_expanding",
            "test_a_python_object_tag_is_refused",
            "test_deep_nesting_is_refused_at_the_second_level",
            "test_a_text_over_the_cap_is_refused_before_it_is_read",
            "test_pathological_texts_under_the_cap_finish",
            "test_any_text_raises_nothing_but_skill_format_error_and_what_it_accepts_round_trips",
        )
        + _in(SKILLS, "test_a_huge_skill_md_is_refused_without_reading_it_all"),
    ),
    Row(
        "J5",
        "name collisions are an error naming both; the rest stay listed",
        _in(
            SKILLS,
            "test_two_skills_with_one_name_are_an_error_naming_both_and_the_rest_stay_listed",
            "test_skill_tools_refuse_to_replace_a_host_tool",
        )
        + _in(BUNDLES, "test_list_bundles_marks_two_cartridges_with_one_name_invalid_and_keeps_the_others"),
    ),
    Row(
        "J6",
        "archive install: zip slip, links in archives",
        (),
        "not supported by design: looplet installs no archives (a skill is a folder the user puts in "
        "place and trusts; docs/skills.md says why), so there is nothing to extract",
    ),
    # -- K. Prompt injection from tool results -------------------------------------------------
    Row(
        "K1",
        "an obeyed exfiltration is stopped by permissions and the sandbox, and recorded",
        _in(
            INJECTION,
            "test_the_listener_sees_an_exfiltration_when_every_layer_is_off",
            "test_curl_exfiltration_is_denied_by_the_permission_layer_and_recorded",
            "test_a_disguised_exfiltration_is_contained_by_the_sandbox",
            "test_without_a_sandbox_a_disguised_exfiltration_waits_for_a_human",
            "test_without_a_sandbox_a_human_who_says_no_stops_it",
        ),
        "there is no egress allowlist yet: the sandbox has no network at all",
    ),
    Row(
        "K2",
        "an injection cannot raise a sub-agent's limits",
        (SUBAGENT_LIMITS,)
        + _in(
            SUBAGENTS,
            "test_an_injected_call_cannot_set_depth_workspace_or_budget",
            "test_the_model_may_ask_for_fewer_steps_never_more",
        ),
        "the sub-agent tool has no workspace argument at all, so the allowlist of skill roots the "
        "row names has nothing to check",
    ),
    Row(
        "K3",
        "an injection cannot write to protected paths (persistence)",
        _in(
            INJECTION,
            "test_writes_into_protected_paths_are_denied_and_recorded",
            "test_writing_into_the_skill_folder_outside_the_workspace_is_refused",
            "test_a_git_hook_planted_through_bash_is_contained_by_the_sandbox",
            "test_without_a_sandbox_a_git_hook_through_bash_waits_for_a_human",
        ),
    ),
    Row(
        "K4",
        "taint mode: egress needs approval once untrusted content is in context",
        (),
        "optional in the matrix and not built: the coding tools have no egress but bash, which the "
        "sandbox keeps offline",
    ),
    Row(
        "K5",
        "results framed as untrusted data; no tool changes the system prompt",
        _in(
            INJECTION,
            "test_no_tool_result_changes_the_system_prompt",
            "test_a_tool_cannot_rewrite_the_system_prompt_through_its_context",
            "test_a_data_result_cannot_fake_a_new_turn_in_the_text_prompt",
            "test_tool_results_are_framed_as_untrusted_data_in_the_prompt",
        )
        + _in(
            "tests/test_text_parser.py",
            "test_a_tool_result_cannot_pass_for_a_turn_in_the_rendered_prompt",
            "test_the_system_prompt_comes_from_the_settings_whatever_a_tool_returns",
        ),
    ),
    # -- L. Recursion, budgets, termination -----------------------------------------------------
    Row(
        "L1",
        "any model behaviour stops within every cap",
        (BUDGET_PROPS,)
        + _in(
            BUDGET,
            "test_text_only_model_stops_within_both_caps",
            "test_llm_call_cap_defaults_to_three_times_max_steps",
            "test_explicit_llm_call_cap",
            "test_budget_remaining_counts_down",
        )
        + _in(HOOKS, "test_check_done_rejected_forever_still_terminates")
        + _in(
            LOOP,
            "test_max_steps_stop",
            "test_deadline_stops_the_run",
            "test_script_exhausted_is_an_llm_error_never_a_cycle",
        )
        + _in(DISPATCH, "test_the_run_deadline_bounds_a_slow_tool_even_without_a_time_limit")
        + _in(GAPS, "test_no_compaction_behaviour_makes_the_loop_resend_or_call_past_its_caps"),
        "the property draws scripts of behaviours, not a RuleBasedStateMachine; compaction every "
        "step waits for a built-in compactor",
    ),
    Row(
        "L2",
        "max_steps 0, negative, float, None, huge",
        _in(
            BUDGET,
            "test_bad_max_steps_is_a_config_error_which_is_a_value_error",
            "test_bad_max_steps_shorthand_fails_when_the_loop_is_built",
            "test_huge_max_steps_is_allowed",
            "test_other_bad_settings_are_config_errors",
            "test_a_config_mutated_into_nonsense_is_rejected_when_used",
        )
        + _in(LOOP, "test_max_steps_zero_makes_no_llm_call"),
    ),
    Row(
        "L3",
        "token and cost budget checked before a request",
        (),
        "looplet has no token or cost budget yet (only max_steps, max_llm_calls and deadline_s); "
        "the explicit cut of a batch past the step budget is under A10",
    ),
    Row(
        "L4",
        "subagent depth from the host",
        (SUBAGENT_LIMITS,)
        + _in(
            SUBAGENTS,
            "test_nested_subagents_go_exactly_to_the_depth_cap",
            "test_the_deepest_child_is_told_it_cannot_go_deeper",
            "test_a_nested_tool_with_a_larger_depth_cannot_raise_its_parents_limit",
            "test_a_subagent_started_from_a_thread_that_lost_the_context_is_refused",
            "test_the_childs_budget_is_at_most_what_the_parent_has_left",
            "test_the_tree_budget_bounds_concurrent_children_together",
        ),
    ),
    Row(
        "L5",
        "a child loop inherits the parent's gates",
        _in(
            SUBAGENTS,
            "test_the_child_keeps_its_parents_deny_gate_and_cannot_widen_it",
            "test_the_childs_denials_name_the_parents_gate",
            "test_a_child_paused_for_approval_pauses_its_parent_with_the_childs_call",
        ),
    ),
    Row(
        "L6",
        "resume keeps the budget",
        _in(
            APPROVAL,
            "test_a_run_stopped_on_its_step_budget_continues_only_with_a_larger_one",
            "test_a_run_past_its_deadline_continues_only_with_a_later_one",
            "test_a_run_stopped_by_a_failed_model_call_continues",
            "test_an_approved_call_runs_once_with_its_args_without_the_gates_and_nothing_is_counted_twice",
            "test_a_run_paused_in_one_process_is_approved_in_a_second_and_finished_in_a_third",
        )
        + _in(SUBAGENTS, "test_a_continued_run_keeps_counting_the_tree_budget")
        + _in(TURNS, "test_calls_cut_by_the_step_budget_run_when_the_run_continues_with_a_larger_one")
        + _in(
            RESUME,
            "test_a_run_stopped_anywhere_and_continued_from_json_ends_as_if_never_stopped",
            "test_a_run_continued_in_fresh_processes_ends_as_if_never_stopped",
            "test_steps_of_a_turn_continued_before_its_tools_keep_its_usage",
        )
        + _in(RECORD, "test_the_record_holds_the_outcome_and_every_counter")
        + _in(CHECKPOINTS, "test_load_run_rebuilds_the_state_and_replays_the_journal")
        + _in(
            CRASH,
            "test_a_run_killed_at_a_named_point_resumes_without_losing_a_step_or_repeating_a_side_effect",
        )
        + _in(FORK, "test_a_fork_ends_just_before_the_turn_of_its_step_and_names_its_parent"),
    ),
    Row(
        "L7",
        "compaction that does not shrink still stops",
        _in(
            GAPS,
            "test_a_compaction_that_never_shrinks_the_prompt_still_ends_the_run",
            "test_a_compaction_that_fits_lets_the_run_go_on",
            "test_no_compaction_behaviour_makes_the_loop_resend_or_call_past_its_caps",
        )
        + _in(
            LOOP,
            "test_context_length_error_rebuilds_the_prompt_once_then_overflows",
            "test_context_length_error_is_not_retried_with_the_same_prompt",
        ),
        "no built-in compactor yet, so 'size after <= size before' over generated histories "
        "waits for it; the loop's side (one rebuild per overflow) is tested",
    ),
)


def rows_of(group: str) -> tuple[Row, ...]:
    """The rows of one group, in matrix order."""
    return tuple(row for row in ROWS if row.group == group)
