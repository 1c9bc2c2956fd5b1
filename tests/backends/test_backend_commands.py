"""``looplet doctor``, the examples, and the README's first agent, against llmock on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backend_kit import Greeter, backend, reply, run

from looplet.backends.retry import RetryPolicy
from looplet.cli import main as cli
from looplet.examples import hello_world, ollama_hello

SRC = Path(__file__).resolve().parents[2] / "src"
CANARY = "sk-canary-d0c70r-5e3cbe1f"
GREETINGS = [
    reply(("greet", {"name": "Alice"})),
    reply(("greet", {"name": "Bob"})),
    reply(("done", {"answer": "Greeted Alice and Bob."})),
]


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    return {**keep, **extra}


# -- doctor --------------------------------------------------------------------------------


def test_doctor_with_no_provider_reports_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "Python 3." in out and "the openai SDK" in out and "the anthropic SDK" in out
    assert "no provider is configured" in out and "1 problem found" in out


def test_doctor_shows_settings_but_never_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "llama3.1")
    assert cli(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "OPENAI_API_KEY set" in out and "OPENAI_MODEL=llama3.1" in out and "127.0.0.1:9/v1" in out
    assert CANARY not in out and "pw@" not in out
    assert "no problems found" in out


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_doctor_probe_sees_native_tool_calls(
    llm_server: Any, provider: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = provider.upper()
    monkeypatch.setenv(f"{prefix}_BASE_URL", llm_server.base_url(provider))
    monkeypatch.setenv(f"{prefix}_MODEL", "probe-model")
    assert cli(["doctor", "--probe", "--provider", provider]) == 0
    out = capsys.readouterr().out
    assert "native tool calls work" in out
    (body,) = llm_server.bodies()
    assert body["tools"]  # the probe offered its tool


def test_doctor_probe_notes_an_endpoint_that_answers_in_text(
    llm_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_server.script(reply(text="pong"))
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_url)
    monkeypatch.setenv("OPENAI_MODEL", "text-only")
    assert cli(["doctor", "--probe"]) == 0
    assert "JSON in the text" in capsys.readouterr().out


def test_doctor_probe_failure_exits_non_zero_and_names_the_variable(
    llm_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_server.script({"type": "fail", "status": 401, "times": None})
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_url)
    monkeypatch.setenv("OPENAI_MODEL", "m")
    assert cli(["doctor", "--probe"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "OPENAI_API_KEY" in out and CANARY not in out
    assert llm_server.attempts == 1


def test_doctor_flags_a_configured_provider_without_its_sdk() -> None:
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); from looplet.cli import main; "
    code += "sys.exit(main(['doctor']))"
    env = _env(OPENAI_API_KEY=CANARY, OPENAI_MODEL="m")
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert 'pip install "looplet[openai]"' in out.stdout and CANARY not in out.stdout


# -- examples ------------------------------------------------------------------------------


def test_hello_world_runs_against_an_openai_compatible_server(llm_server: Any) -> None:
    llm_server.script(*GREETINGS)
    env = _env(OPENAI_BASE_URL=llm_server.openai_url, OPENAI_API_KEY="local", OPENAI_MODEL="llama3.1")
    out = subprocess.run(
        [sys.executable, "-m", "looplet.examples.hello_world"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "#1 ✓ greet(name='Alice')" in out.stdout and "stopped: done" in out.stdout
    assert {b["model"] for b in llm_server.bodies()} == {"llama3.1"}


def test_ollama_hello_runs_against_the_given_server(
    llm_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    llm_server.script(*GREETINGS)
    assert ollama_hello.main(["--base-url", llm_server.openai_url, "--model", "llama3.1"]) == 0
    out = capsys.readouterr().out
    assert "#2 ✓ greet(name='Bob')" in out and "answer: Greeted Alice and Bob." in out
    assert llm_server.attempts == 3


def test_ollama_hello_scripted_needs_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert ollama_hello.main(["--scripted"]) == 0
    assert "stopped: done" in capsys.readouterr().out


def test_ollama_hello_says_what_to_do_when_nothing_answers(llm_server: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    llm = backend("openai", closed, retry=RetryPolicy(max_retries=0))
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert "is Ollama running" in (ollama_hello.hint(result, closed, "llama3.1") or "")

    llm_server.script({"type": "fail", "status": 404, "message": "model 'nope' not found"})
    _, result = run(backend("openai", llm_server.openai_url), is_async=False, tools=Greeter().tools, task="t")
    assert "ollama pull nope" in (ollama_hello.hint(result, llm_server.openai_url, "nope") or "")


def test_hello_world_refuses_a_negative_step_budget_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "looplet.examples.hello_world", "--max-steps", "-1"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "hello_world: error: argument --max-steps: the step budget must be at least 1, got -1 (see --help)"
    ]


BAD_VALUES = [
    (["--max-steps", "0"], "the step budget must be at least 1, got 0"),
    (["--max-steps=-5"], "the step budget must be at least 1, got -5"),
    (["--max-steps", "many"], "expected a whole number of steps, got 'many'"),
    (["--max-steps", "2.5"], "expected a whole number of steps, got '2.5'"),
    (["--base-url", "not-a-url"], "'not-a-url' is not a usable URL: it has no scheme"),
    (["--base-url", "ftp://127.0.0.1/v1"], "the scheme 'ftp' is not supported"),
    (["--base-url", "http:///v1"], "it names no host"),
    (["--model", " "], "the model name is empty"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
]


@pytest.mark.parametrize("example", [hello_world, ollama_hello], ids=["hello_world", "ollama_hello"])
@pytest.mark.parametrize(("argv", "reason"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_the_examples_refuse_a_bad_value_in_one_line(
    example: Any, argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--scripted", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    name = example.__name__.rsplit(".", 1)[1]
    (line,) = captured.err.splitlines()
    assert line.startswith(f"{name}: error: ") and reason in line and line.endswith("(see --help)")
    assert captured.out == ""


def test_an_error_from_the_run_itself_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from looplet import ConfigError

    def refuse(llm: Any, max_steps: int) -> Any:  # stands in for a loop that refuses its settings
        raise ConfigError("max_steps must be 0 or more, got -1")

    monkeypatch.setattr(hello_world, "run_and_report", refuse)
    assert hello_world.main(["--scripted"]) == 2
    assert capsys.readouterr().err.splitlines() == ["hello_world: max_steps must be 0 or more, got -1"]


# -- the README's first agent, unchanged ---------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def _first_agent() -> str:
    """The README's "Your first agent" block, read from the README itself so the test cannot drift."""
    section = README.read_text().split("## Your first agent", 1)[1]
    match = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no python block under 'Your first agent'"
    code = match.group(1)
    assert 'OpenAIBackend.from_env(model="gpt-4o-mini")' in code  # the backend line the test swaps
    return code


def _shown_output() -> list[str]:
    """The output the README shows right after that block (its ```text fence)."""
    section = README.read_text().split("## Your first agent", 1)[1]
    match = re.search(r"^```text\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, "README.md shows no output for its first agent"
    return match.group(1).splitlines()


def _without_timing(line: str) -> str:
    return re.sub(r" \[\d+(\.\d+)?ms\]$", "", line)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_readme_first_agent_runs_on_any_compatible_server(llm_server: Any, provider: str) -> None:
    llm_server.script(*GREETINGS)
    code = _first_agent()
    if provider == "anthropic":  # the same loop on Anthropic: only the backend line changes
        code = code.replace("OpenAIBackend", "AnthropicBackend").replace("gpt-4o-mini", "claude-sonnet-4-5")
        env = _env(ANTHROPIC_BASE_URL=llm_server.anthropic_url, ANTHROPIC_API_KEY="k")
    else:
        env = _env(OPENAI_BASE_URL=llm_server.openai_url, OPENAI_API_KEY="ollama", OPENAI_MODEL="llama3.1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert [_without_timing(line) for line in out.stdout.splitlines()] == [
        _without_timing(line) for line in _shown_output()
    ]
