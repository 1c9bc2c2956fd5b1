"""Fixtures of the backend suite: a real llmock server and a fault server, both on 127.0.0.1.

The backends are driven through the real ``openai`` and ``anthropic`` SDKs
over HTTP. llmock (PyPI ``llmock==0.2.2``) runs as a subprocess for the
whole session, on a free port, and is stopped by its pid at the end; each
test starts from a reset server. The few faults llmock cannot script come
from `loopback_faults.FaultServer`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback_faults import FaultServer

_PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_AUTH_TOKEN",
)


class LLMockServer:
    """A running llmock: where to point the SDKs, how to script it, what it received."""

    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process
        self.openai_url = f"{url}/v1"
        self.anthropic_url = f"{url}/anthropic"

    def base_url(self, provider: str) -> str:
        return self.openai_url if provider == "openai" else self.anthropic_url

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def reset(self) -> None:
        self._call("POST", "/_llmock/reset")

    def script(self, *behaviors: dict[str, Any]) -> None:
        """Queue behaviours (llmock's JSON form, e.g. ``{"type": "fail", "status": 429}``)."""
        self._call("POST", "/_llmock/scenario", {"behaviors": list(behaviors)})

    def records(self) -> list[dict[str, Any]]:
        """Every request served since the reset, oldest first (waits for ones in flight)."""
        out: list[dict[str, Any]] = self._call("GET", "/_llmock/requests")["requests"]
        return out

    @property
    def attempts(self) -> int:
        return len(self.records())

    def bodies(self) -> list[Any]:
        return [r["body"] for r in self.records()]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _llmock_command() -> list[str]:
    script = Path(sys.executable).with_name("llmock")
    exe = str(script) if script.exists() else shutil.which("llmock")
    if exe is None:
        return [sys.executable, "-c", "from llmock.cli import app; app()", "serve"]
    return [exe, "serve"]


@pytest.fixture(scope="session")
def llmock_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMockServer]:
    """One llmock server for the session, started on a free loopback port and stopped by pid."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_ENV}
    env.update({"LLMOCK_RESPONSE_STYLE": "static", "LLMOCK_TOOL_MODE": "auto", "NO_COLOR": "1"})
    log = tmp_path_factory.mktemp("llmock") / "server.log"
    command = _llmock_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = LLMockServer(f"http://127.0.0.1:{port}", process)
    try:
        _wait_ready(server, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(server: LLMockServer, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llmock exited early:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"llmock did not become ready:\n{log.read_text(errors='replace')}")


@pytest.fixture
def llm_server(llmock_process: LLMockServer) -> LLMockServer:
    """The session's llmock, reset: no queued behaviours, an empty journal."""
    llmock_process.reset()
    return llmock_process


@pytest.fixture(scope="session")
def _fault_server() -> Iterator[FaultServer]:
    server = FaultServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fault_server(_fault_server: FaultServer) -> FaultServer:
    """The session's loopback fault server, with an empty script and no requests seen."""
    _fault_server.reset()
    return _fault_server


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the provider variables they need; nothing leaks in from the shell."""
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
