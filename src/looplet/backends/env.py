"""Finding an SDK and a configuration: the lazy import, environment variables, and safe display.

The SDKs are optional extras, imported only when a backend is built, so
``import looplet`` never pulls them in. A missing SDK is one `ConfigError`
naming the extra to install.
"""

from __future__ import annotations

import importlib
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigError

__all__ = ["EnvConfig", "require_sdk", "read_env", "display_url", "url_problem", "PLACEHOLDER_KEY"]

#: Sent as the key when a base URL is set without one: local servers (Ollama,
#: vLLM, llama.cpp) ignore it, and the SDKs refuse to start with no key at all.
PLACEHOLDER_KEY = "looplet-no-key"


def require_sdk(name: str) -> ModuleType:
    """Import the SDK `name` (``openai`` or ``anthropic``), or say which extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f'the {name} SDK is not installed; install it with: pip install "looplet[{name}]"'
        ) from exc


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """What a provider's environment variables say (the key is never shown by `repr`)."""

    api_key: str | None
    base_url: str | None
    model: str | None

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return f"EnvConfig(api_key={key}, base_url={display_url(self.base_url)!r}, model={self.model!r})"


def read_env(prefix: str, environ: Mapping[str, str] | None = None) -> EnvConfig:
    """Read ``{prefix}_API_KEY``, ``{prefix}_BASE_URL`` and ``{prefix}_MODEL`` (blank counts as unset)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(f"{prefix}_{name}", "").strip()
        return value or None

    return EnvConfig(api_key=get("API_KEY"), base_url=get("BASE_URL"), model=get("MODEL"))


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def display_url(url: str | None) -> str | None:
    """`url` without any ``user:password@`` part, for reprs, logs and reports."""
    if url is None:
        return None
    return _USERINFO.sub("***@", url)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a backend's base URL (no scheme, not http(s), no host, a bad port), or None.

    Checked when a backend is built and by ``looplet doctor``, so a mistyped
    ``OPENAI_BASE_URL`` is named at once, not as a connection error three
    retries later.
    """
    text = url.strip()
    if not text:
        return "it is empty"
    if any(ch.isspace() for ch in text):
        return "it contains whitespace"
    if "://" not in text:
        return "it has no scheme; start it with http:// or https://"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        return f"the scheme {parts.scheme!r} is not supported; use http:// or https://"
    if not parts.hostname:
        return "it names no host"
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return None
