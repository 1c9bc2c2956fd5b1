"""RELIABILITY I2: the provider never sees the values of secret env variables, whatever path
they take into the prompt (tool results and errors, denial reasons, hook notes, injected
context, the system prompt, a rewritten prompt, the task)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from doubles import as_text, done, greeting_tools

from looplet import (
    BaseToolRegistry,
    Deny,
    InjectContext,
    Message,
    MockLLMBackend,
    PromptContext,
    register_done_tool,
)

SECRET = "s3cr3t-value\\with\"quote"  # a backslash and a quote, as real passwords have


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_DB_PASSWORD", SECRET)
    return SECRET


def _everything_sent(llm: MockLLMBackend) -> str:
    parts: list[str] = []
    for request in llm.calls:
        parts.append(request.system)
        parts.extend(request.extra)
        parts.extend(m.content for m in request.messages)
        parts.extend(json.dumps(c.args) for m in request.messages for c in m.tool_calls)
    return "\n".join(parts)


def _leak_free(text: str, secret: str) -> bool:
    forms = {secret, json.dumps(secret)[1:-1], secret.replace("\\", "\\\\")}
    return not any(form in text for form in forms)


def test_a_secret_env_value_in_a_tool_result_or_error_never_reaches_the_provider(
    drive: Any, env_secret: str
) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def read_config() -> dict[str, str]:
        """Returns the secret in its data."""
        return {"dsn": f"host=db password={env_secret}"}

    @tools.tool
    def connect() -> str:
        """Fails with the secret in its message."""
        raise ConnectionError(f"login with {env_secret} refused")

    register_done_tool(tools)
    llm = MockLLMBackend([as_text("read_config"), as_text("connect"), done()])
    steps, _ = drive(llm, tools=tools)
    assert len(llm.calls) == 3
    assert _leak_free(_everything_sent(llm), env_secret)
    assert _leak_free(llm.last_prompt, env_secret)
    assert "[REDACTED]" in _everything_sent(llm)


def test_a_secret_env_value_in_a_denial_a_note_or_injected_context_never_reaches_the_provider(
    drive: Any, env_secret: str
) -> None:
    tools, _ = greeting_tools()

    class Leaky:
        def pre_prompt(self, state: Any, log: Any, ctx: PromptContext, step: int) -> Any:
            ctx.system += f" db password is {env_secret}"
            return InjectContext(f"remember {env_secret}")

        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> Any:
            if call.args.get("name") == "A":
                return Deny(f"not with {env_secret}")
            return None

        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> Any:
            return f"note: {env_secret}"

    llm = MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B"), done()])
    drive(llm, tools=tools, hooks=[Leaky()])
    sent = _everything_sent(llm)
    assert "not with [REDACTED]" in sent and "note: [REDACTED]" in sent
    assert _leak_free(sent, env_secret)


def test_a_prompt_rewritten_by_a_hook_and_messages_added_to_the_log_are_screened_too(
    drive: Any, env_secret: str
) -> None:
    tools, _ = greeting_tools()

    class Rewrite:
        def pre_prompt(self, state: Any, log: Any, ctx: PromptContext, step: int) -> Any:
            if step == 1:
                log.append(Message("user", f"added to the record: {env_secret}"))
            ctx.messages = [*ctx.messages, Message("user", f"only this prompt: {env_secret}")]
            return ctx

    llm = MockLLMBackend([done()])
    drive(llm, tools=tools, hooks=[Rewrite()], task=f"use {env_secret}")
    assert _leak_free(_everything_sent(llm), env_secret)
    assert all(_leak_free(m.content, env_secret) for m in drive.loop.history)


def test_key_shaped_user_data_is_not_rewritten_on_its_way_to_the_provider(drive: Any) -> None:
    # only env secret values are masked before the provider (I2); the model may need user data
    tools, _ = greeting_tools()
    llm = MockLLMBackend([done()])
    drive(llm, tools=tools, task="rotate the key sk-proj-abcdefghijklmnop1234 in the vault")
    assert "sk-proj-abcdefghijklmnop1234" in llm.calls[0].messages[0].content


def test_a_secret_set_in_the_environment_mid_run_is_masked_in_the_next_system_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The engine screens an unchanged system prompt once; a change of the environment
    # (a secret appearing) must still reach the next request.
    tools, _ = greeting_tools()
    system = f"You are careful. The vault code is {SECRET}."

    class SetsASecret:
        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> None:
            monkeypatch.setenv("VAULT_TOKEN", SECRET)

    llm = MockLLMBackend([as_text("greet", name="a"), done()])
    from looplet import composable_loop

    for _ in composable_loop(llm, tools=tools, task="t", system_prompt=system, hooks=[SetsASecret()]):
        pass
    first, second = (request.system for request in llm.calls)
    assert SECRET in first, "not a secret yet when the run began"
    assert SECRET not in second and "[REDACTED]" in second
