"""The command line's core verbs: version, help, bad input, and `python -m looplet`."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from looplet import __version__
from looplet.cli import VERBS, build_parser, main


def test_version_verb_and_flag_print_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"looplet {__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"looplet {__version__}"


def test_no_verb_prints_help_and_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: looplet" in out and "doctor" in out and "version" in out


def test_an_unknown_verb_is_refused_with_a_one_line_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_python_dash_m_looplet_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "looplet", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"looplet {__version__}"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [([verb, "--bogus"], "unrecognized arguments: --bogus") for verb in VERBS]
    + [
        (["doctor", "--provider", "nope"], "argument --provider: invalid choice: 'nope'"),
        (["doctor", "stray"], "unrecognized arguments: stray"),
    ],
    ids=[f"{verb}-unknown-flag" for verb in VERBS] + ["doctor-bad-choice", "doctor-stray-word"],
)
def test_a_mistake_in_a_verbs_arguments_is_one_line_naming_that_verb(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"looplet {argv[0]}: error: {reason}")
    assert err.endswith(f" (see looplet {argv[0]} --help)\n") and err.count("\n") == 1


def test_every_verb_is_covered_by_the_usage_test() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(VERBS)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("not-a-url", "it has no scheme"),
        ("localhost:11434/v1", "it has no scheme"),
        ("ftp://127.0.0.1/v1", "the scheme 'ftp' is not supported"),
        ("http://", "it names no host"),
        ("http://127.0.0.1:99999/v1", "its port is not a number"),
        ("http://127.0.0.1:11434/v1 /x", "it contains whitespace"),
    ],
)
def test_doctor_reports_a_base_url_that_is_not_a_url(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_MODEL", "llama3.1")
    assert main(["doctor", "--provider", "openai"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  OpenAI: OPENAI_BASE_URL=" in out and "is not a usable URL" in out and reason in out
    assert "1 problem found" in out


def test_doctor_accepts_a_well_formed_base_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://gateway.example:8443/openai/v1")
    monkeypatch.setenv("OPENAI_MODEL", "m")
    assert main(["doctor", "--provider", "openai"]) == 0
    assert "no problems found" in capsys.readouterr().out
