"""The command line's core verbs: version, help, bad input, and `python -m looplet`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from looplet import __version__
from looplet.cli import main


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
