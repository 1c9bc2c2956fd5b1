"""`BaseToolRegistry`, the ``@tool`` decorator, and checking a call before it runs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from ..errors import ToolDefinitionError
from ..types import ErrorKind, ToolCall, ToolResult, format_args
from .context import ToolContext
from .validation import measure, suggest, validate_args

__all__ = ["ToolSpec", "BaseToolRegistry", "tool", "PreparedCall"]

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS_ATTR = "__looplet_tool__"


@dataclass
class ToolSpec:
    """A registered tool: its function, schema and dispatch options.

    Attributes:
        free: calls do not spend the step budget (e.g. ``think``).
        concurrent_safe: may run at the same time as other such calls in one turn.
        timeout_s: time limit per call (None: the run's default, or no limit).
        done: this is the done tool; an accepted call ends the run.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    free: bool = False
    concurrent_safe: bool = False
    timeout_s: float | None = None
    done: bool = False
    is_async: bool = False
    ctx_param: str | None = None
    converters: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    signature: str = ""
    #: timed-out calls whose threads are still running (the tool refuses new calls meanwhile).
    orphans: int = 0

    def schema(self) -> dict[str, Any]:
        """The tool as a provider sees it: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(slots=True)
class PreparedCall:
    """A validated call, ready to run: the keyword arguments are final."""

    spec: ToolSpec
    call: ToolCall
    args: dict[str, Any]
    ctx: ToolContext | None = None

    def kwargs(self) -> dict[str, Any]:
        # Copies, so a tool that mutates its arguments cannot change the recorded call.
        out = {k: (copy.deepcopy(v) if isinstance(v, dict | list) else v) for k, v in self.args.items()}
        for name, convert in self.spec.converters.items():
            if name in out:
                out[name] = convert(out[name])
        if self.spec.ctx_param is not None:
            out[self.spec.ctx_param] = self.ctx
        return out


def _options(
    name: str | None,
    description: str | None,
    free: bool,
    concurrent_safe: bool,
    timeout_s: float | None,
) -> dict[str, Any]:
    if timeout_s is not None and not timeout_s > 0:
        raise ToolDefinitionError(f"timeout_s must be positive, got {timeout_s!r}")
    return {
        "name": name,
        "description": description,
        "free": free,
        "concurrent_safe": concurrent_safe,
        "timeout_s": timeout_s,
    }


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    free: bool = False,
    concurrent_safe: bool = False,
    timeout_s: float | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    free: bool = False,
    concurrent_safe: bool = False,
    timeout_s: float | None = None,
) -> Any:
    """Mark a function as a tool, bare (``@tool``) or with options (``@tool(free=True)``).

    The function stays an ordinary function; pass it to `BaseToolRegistry`
    (``BaseToolRegistry([fn])`` or ``tools.register(fn)``) to offer it to a model.
    """
    opts = _options(name, description, free, concurrent_safe, timeout_s)

    def mark(f: F) -> F:
        setattr(f, _OPTIONS_ATTR, opts)
        return f

    return mark(fn) if fn is not None else mark


class BaseToolRegistry:
    """The tools a run may call, with their schemas; validates calls before they run."""

    def __init__(self, tools: Iterable[Callable[..., Any] | ToolSpec] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._schemas: list[dict[str, Any]] | None = None
        self._done: ToolSpec | None = None
        for item in tools:
            self.register(item)

    # -- registering ------------------------------------------------------------

    @overload
    def tool(self, fn: F, /) -> F: ...
    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        free: bool = False,
        concurrent_safe: bool = False,
        timeout_s: float | None = None,
    ) -> Callable[[F], F]: ...
    def tool(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        free: bool = False,
        concurrent_safe: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """Register a function as a tool: ``@tools.tool`` or ``@tools.tool(name=..., free=True)``.

        The schema comes from the type hints; the description from the
        docstring (its Args section describes the parameters). Returns the
        function unchanged.
        """
        opts = _options(name, description, free, concurrent_safe, timeout_s)

        def add(f: F) -> F:
            self._add(f, **opts)
            return f

        return add(fn) if fn is not None else add

    def register(
        self,
        fn: Callable[..., Any] | ToolSpec,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        free: bool | None = None,
        concurrent_safe: bool | None = None,
        timeout_s: float | None = None,
        done: bool = False,
    ) -> ToolSpec:
        """Register a function (or a ready `ToolSpec`); options override ``@tool``'s.

        Pass `parameters` to give the JSON Schema yourself instead of deriving it.
        """
        if isinstance(fn, ToolSpec):
            return self._put(fn)
        marked: dict[str, Any] = dict(getattr(fn, _OPTIONS_ATTR, None) or {})
        given = {
            "name": name,
            "description": description,
            "free": free,
            "concurrent_safe": concurrent_safe,
            "timeout_s": timeout_s,
        }
        marked.update({k: v for k, v in given.items() if v is not None})
        opts = _options(
            marked.get("name"),
            marked.get("description"),
            bool(marked.get("free", False)),
            bool(marked.get("concurrent_safe", False)),
            marked.get("timeout_s"),
        )
        return self._add(fn, parameters=parameters, done=done, **opts)

    def _add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None,
        description: str | None,
        free: bool,
        concurrent_safe: bool,
        timeout_s: float | None,
        parameters: dict[str, Any] | None = None,
        done: bool = False,
    ) -> ToolSpec:
        if not callable(fn):
            raise ToolDefinitionError(f"a tool must be callable, got {type(fn).__name__}")
        tool_name = name or getattr(fn, "__name__", None)
        if not tool_name or not isinstance(tool_name, str):
            raise ToolDefinitionError("this callable has no __name__; pass name=...")
        import inspect

        from .schema import describe_function

        info = describe_function(fn, tool_name, ToolContext)
        if parameters is not None:
            info.parameters = parameters
            info.converters = {}
        spec = ToolSpec(
            name=tool_name,
            description=description or info.description,
            parameters=info.parameters,
            fn=fn,
            free=free,
            concurrent_safe=concurrent_safe,
            timeout_s=timeout_s,
            done=done,
            is_async=inspect.iscoroutinefunction(fn),
            ctx_param=info.ctx_param,
            converters=info.converters,
            signature=info.text,
        )
        return self._put(spec)

    def _put(self, spec: ToolSpec) -> ToolSpec:
        if spec.name in self._tools:
            raise ToolDefinitionError(
                f"a tool named {spec.name!r} is already registered; unregister it first or pick another name"
            )
        self._tools[spec.name] = spec
        self._schemas = None
        if spec.done and self._done is None:
            self._done = spec
        return spec

    def unregister(self, name: str) -> ToolSpec:
        spec = self._tools.pop(name)
        self._schemas = None
        if spec is self._done:
            self._done = next((s for s in self._tools.values() if s.done), None)
        return spec

    # -- reading ----------------------------------------------------------------

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._tools.values())

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def done_tool(self) -> ToolSpec | None:
        """The registered done tool, if any."""
        return self._done

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's ``{"name", "description", "parameters"}`` (cached until the next change)."""
        if self._schemas is None:
            self._schemas = [s.schema() for s in self._tools.values()]
        return self._schemas

    # -- checking a call -------------------------------------------------------

    def prepare(
        self, call: ToolCall, *, max_arg_chars: int = 1_000_000, max_arg_depth: int = 64
    ) -> PreparedCall | ToolResult:
        """Validate `call`: a `PreparedCall` ready to run, or an error `ToolResult` saying why not."""
        spec = self._tools.get(call.tool)
        if spec is None:
            return self._unknown(call)
        if call.parse_error is not None:
            return error_result(
                call,
                ErrorKind.PARSE,
                f"could not read the arguments of {call.tool}: {call.parse_error}. "
                f"Send them as a JSON object matching {spec.signature}.",
            )
        size_problem = _size_problem(call.args, max_arg_chars, max_arg_depth)
        if size_problem:
            return error_result(call, ErrorKind.VALIDATION, f"{size_problem}; call {spec.signature}")
        args, problems = validate_args(call.args, spec.parameters, spec.name)
        if problems:
            text = "; ".join(problems)
            sep = " " if text.endswith("?") else ". "
            return error_result(
                call,
                ErrorKind.VALIDATION,
                f"invalid arguments for {spec.name}: {text}{sep}Expected: {spec.signature}",
            )
        return PreparedCall(spec, call, args)

    def _unknown(self, call: ToolCall) -> ToolResult:
        names = self.names
        hint = suggest(call.tool, names)
        text = f"unknown tool {call.tool!r}."
        if hint:
            text += f" Did you mean {hint!r}?"
        text += f" Available tools: {', '.join(names) or 'none'}."
        return error_result(call, ErrorKind.VALIDATION, text)


def _size_problem(args: Any, max_chars: int, max_depth: int) -> str | None:
    depth, size = measure(args, max_depth)
    if depth > max_depth:
        return f"arguments nest deeper than {max_depth} levels"
    if size > max_chars:
        return f"arguments are about {size:,} characters, over the limit of {max_chars:,}"
    return None


def error_result(
    call: ToolCall, kind: str, message: str, *, retriable: bool = False, **metadata: Any
) -> ToolResult:
    """An error result for `call` (the tool did not produce data)."""
    return ToolResult(
        tool=call.tool,
        args_summary=format_args(call.args)[:200],
        error=message,
        error_kind=kind,
        retriable=retriable,
        call_id=call.call_id,
        metadata=dict(metadata),
    )
