"""Masking secrets in text before it reaches the model, a log line or an error message.

Known token shapes (OpenAI/Anthropic keys, AWS key ids, GitHub and Slack tokens,
bearer headers, JWTs, PEM private keys, passwords in URLs) and the values of
environment variables whose names say KEY, TOKEN, SECRET or PASSWORD are
replaced by ``[REDACTED]``.
"""

from __future__ import annotations

import os
import re

__all__ = ["redact_text", "REDACTED"]

REDACTED = "[REDACTED]"

_PATTERN_TEXT = "|".join(
    [
        r"sk-ant-[A-Za-z0-9_\-]{8,}",
        r"sk-[A-Za-z0-9_\-]{16,}",
        r"AKIA[0-9A-Z]{16}",
        r"gh[pousr]_[A-Za-z0-9]{20,}",
        r"xox[abposr]-[A-Za-z0-9\-]{10,}",
        r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*",
        r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",
    ]
)
_SECRET_NAME_TEXT = r"KEY|TOKEN|SECRET|PASSWORD|PASSWD"
_compiled: list[re.Pattern[str]] = []


def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(secret shapes, secret env names), compiled on first use to keep imports cheap."""
    if not _compiled:
        _compiled.append(re.compile(_PATTERN_TEXT))
        _compiled.append(re.compile(_SECRET_NAME_TEXT, re.IGNORECASE))
    return _compiled[0], _compiled[1]


def _env_secrets() -> list[str]:
    secret_name = _patterns()[1].search
    values = [v for k, v in os.environ.items() if len(v) >= 8 and secret_name(k)]
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, extra: list[str] | None = None) -> str:
    """`text` with known secret shapes, secret env values and `extra` literals masked."""
    for value in _env_secrets() + (extra or []):
        if value and value in text:
            text = text.replace(value, REDACTED)
    return _patterns()[0].sub(REDACTED, text)
