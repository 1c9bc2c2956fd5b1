"""``looplet doctor``, the examples, and the README's first agent, against llmock on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from backend_kit import Greeter, backend, reply, run

from looplet.backends.retry import RetryPolicy
from looplet.cli import main as cli
from looplet.examples import ollama_hello

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


# -- the README's first agent, unchanged ---------------------------------------------------

FIRST_AGENT = textwrap.dedent(
    '''
    from looplet import BaseToolRegistry, OpenAIBackend, composable_loop
    from looplet.tools import register_done_tool

    llm = OpenAIBackend.from_env(model="gpt-4o-mini")  # reads OPENAI_API_KEY etc

    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict:
        """Greet someone by name."""
        return {"greeting": f"Hello, {name}!"}

    register_done_tool(tools)

    for step in composable_loop(
        llm=llm,
        tools=tools,
        task={"goal": "Greet Alice and Bob, then finish."},
        max_steps=5,
    ):
        print(step.pretty())
    '''
)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_readme_first_agent_runs_on_any_compatible_server(llm_server: Any, provider: str) -> None:
    llm_server.script(*GREETINGS)
    code = FIRST_AGENT
    if provider == "anthropic":  # the same loop on Anthropic: only the backend line changes
        code = code.replace("OpenAIBackend", "AnthropicBackend").replace("gpt-4o-mini", "claude-sonnet-4-5")
        env = _env(ANTHROPIC_BASE_URL=llm_server.anthropic_url, ANTHROPIC_API_KEY="k")
    else:
        env = _env(OPENAI_BASE_URL=llm_server.openai_url, OPENAI_API_KEY="ollama", OPENAI_MODEL="llama3.1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("#1 ✓ greet(name='Alice')") and lines[2].startswith("#3 ✓ done(")
