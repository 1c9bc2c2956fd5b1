"""The test doubles, where a downstream test suite imports them from: ``from looplet.testing import ...``.

The original looplet's frozen surface kept its doubles here, so code
written against it keeps working. They are the same objects as
``looplet.MockLLMBackend`` and the rest (defined in
`looplet.backends.mock`), only imported from a place whose name says what
they are for:

- `MockLLMBackend`: answers from a script, in order; raises
  `ScriptExhaustedError` when asked for more than it was given;
- `FunctionBackend` / `AsyncFunctionBackend`: answers computed by a
  function of the request;
- `to_response` and `ScriptItem`: what a script entry may be, and how it
  becomes an `LLMResponse`.
"""

from __future__ import annotations

from .backends.mock import AsyncFunctionBackend, FunctionBackend, MockLLMBackend, ScriptItem, to_response
from .errors import ScriptExhaustedError

__all__ = [
    "AsyncFunctionBackend",
    "FunctionBackend",
    "MockLLMBackend",
    "ScriptExhaustedError",
    "ScriptItem",
    "to_response",
]
