"""``looplet doctor [--probe]``: is this environment ready to run an agent against a real model?

Checks the Python version, which SDK extras are installed, and which of
``OPENAI_*`` / ``ANTHROPIC_*`` are set (key values are never printed). With
``--probe`` it makes one model call per configured provider, offering one
tool, to see whether the endpoint answers with native tool calls or in text
(the loop handles both). Exits 1 when something would stop a run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["add_parser", "run", "Check", "environment_checks", "probe"]

MIN_PYTHON = (3, 11)
PROVIDERS = {
    "openai": ("OpenAI", "OPENAI", "OpenAIBackend"),
    "anthropic": ("Anthropic", "ANTHROPIC", "AnthropicBackend"),
}

_PING_TOOL = {
    "name": "ping",
    "description": "Answer a ping. Call it with the text you are asked to send.",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "the text to send"}},
        "required": ["text"],
    },
}


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: ``ok``, ``note``, ``warn`` or ``FAIL`` (only FAIL is a problem)."""

    status: str
    text: str

    @property
    def problem(self) -> bool:
        return self.status == "FAIL"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("doctor", help="check Python, SDK extras and provider settings")
    parser.add_argument("--probe", action="store_true", help="make one model call per configured provider")
    parser.add_argument(
        "--provider",
        choices=sorted(PROVIDERS),
        help="check only this provider (default: every configured one)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import __version__

    wanted = [args.provider] if args.provider else list(PROVIDERS)
    checks = environment_checks(wanted)
    print(f"looplet {__version__} doctor")
    _print(checks)
    if args.probe:
        configured = [p for p in wanted if _configured(p)]
        print("probe:")
        probes = [probe(p) for p in configured] or [
            Check("FAIL", "nothing to probe: no provider is configured")
        ]
        _print(probes)
        checks += probes
    problems = sum(c.problem for c in checks)
    print("no problems found" if not problems else f"{problems} problem{'s' if problems > 1 else ''} found")
    return 1 if problems else 0


def _print(checks: list[Check]) -> None:
    for check in checks:
        print(f"  {check.status:<5} {check.text}")


def environment_checks(providers: list[str]) -> list[Check]:
    """The report's first part: Python, the extras, and each provider's variables."""
    version = ".".join(str(v) for v in sys.version_info[:3])
    checks = [
        Check("ok", f"Python {version}")
        if sys.version_info[:2] >= MIN_PYTHON
        else Check("FAIL", f"Python {version}: looplet needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
    ]
    for provider in PROVIDERS:
        checks.append(_extra_check(provider, needed=_configured(provider) and provider in providers))
    configured = [p for p in providers if _configured(p)]
    for provider in providers:
        checks.append(_env_check(provider))
    if not configured:
        names = " or ".join(f"{PROVIDERS[p][1]}_API_KEY / {PROVIDERS[p][1]}_BASE_URL" for p in providers)
        checks.append(Check("FAIL", f"no provider is configured: set {names}"))
    return checks


def _extra_check(provider: str, *, needed: bool) -> Check:
    install = f'pip install "looplet[{provider}]"'
    if importlib.util.find_spec(provider) is None:
        if needed:
            return Check(
                "FAIL",
                f"the {provider} SDK is not installed, but {PROVIDERS[provider][1]}_* is set: {install}",
            )
        return Check("note", f"the {provider} SDK is not installed ({install})")
    try:
        version = importlib.metadata.version(provider)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return Check("ok", f"the {provider} SDK {version} is installed")


def _env_check(provider: str) -> Check:
    from ..backends.env import display_url, read_env, url_problem

    name, prefix, _ = PROVIDERS[provider]
    env = read_env(prefix)
    if not (env.api_key or env.base_url):
        return Check("note", f"{name}: not configured ({prefix}_API_KEY and {prefix}_BASE_URL are unset)")
    problem = url_problem(env.base_url) if env.base_url else None
    if problem is not None:
        return Check(
            "FAIL", f"{name}: {prefix}_BASE_URL={display_url(env.base_url)!r} is not a usable URL: {problem}"
        )
    parts = [f"{prefix}_API_KEY " + ("set" if env.api_key else "unset (a placeholder key is sent)")]
    parts.append(
        f"{prefix}_BASE_URL={display_url(env.base_url)}" if env.base_url else f"{prefix}_BASE_URL unset"
    )
    parts.append(f"{prefix}_MODEL={env.model}" if env.model else f"{prefix}_MODEL unset")
    status = "ok" if env.model else "warn"
    suffix = "" if env.model else f" (pass model= in code, or set {prefix}_MODEL)"
    return Check(status, f"{name}: " + ", ".join(parts) + suffix)


def _configured(provider: str) -> bool:
    from ..backends.env import read_env

    env = read_env(PROVIDERS[provider][1])
    return bool(env.api_key or env.base_url)


def probe(provider: str) -> Check:
    """One call offering one tool: does the endpoint answer with a native tool call?"""
    from .. import backends
    from ..backends.protocol import LLMRequest
    from ..backends.retry import RetryPolicy
    from ..errors import LoopError
    from ..history import Message

    name = PROVIDERS[provider][0]
    request = LLMRequest(
        messages=[Message("user", "Call the ping tool with the text 'pong'.")],
        system="You are checking that tool calling works. Call the ping tool; do not answer in text.",
        tools=[_PING_TOOL],
        max_tokens=200,
    )
    try:
        cls = getattr(backends, PROVIDERS[provider][2])
        llm = cls.from_env(retry=RetryPolicy(max_retries=1), timeout=60.0)
        started = time.perf_counter()
        response = llm.complete(request)
    except LoopError as exc:
        return Check("FAIL", f"{name}: {exc}")
    ms = (time.perf_counter() - started) * 1000
    where = f"{name} ({llm.model})"
    if any(call.tool == "ping" for call in response.tool_calls):
        return Check("ok", f"{where}: native tool calls work [{ms:.0f} ms]")
    if response.tool_calls:
        names = ", ".join(c.tool for c in response.tool_calls)
        return Check("warn", f"{where}: answered with a native call to {names}, not ping [{ms:.0f} ms]")
    return Check(
        "warn",
        f"{where}: answered in text, without a native tool call; the loop will read calls "
        f"as JSON in the text [{ms:.0f} ms]",
    )
