"""`BaseToolRegistry`, the ``@tool`` decorator, and checking a call before it runs.

What is checked at registration, so that a mistake shows where it is made and
not at the first call: the name (1-64 letters, digits, ``_`` or ``-``, what
OpenAI and Anthropic accept), the time limit (`check_timeout`), and that the
parameters are a JSON Schema object.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from ..errors import ToolDefinitionError
from ..types import ErrorKind, ToolCall, ToolResult
from .context import ToolContext
from .validation import check_timeout, fast_args, measure, plan_for, suggest, validate_args

__all__ = ["ToolSpec", "BaseToolRegistry", "tool", "PreparedCall", "check_tool_name"]

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
        idempotent: running it twice with the same arguments does no harm, so a
            call that a crash interrupted runs again on resume (otherwise the
            model is told it was ``interrupted``). ``ctx.call_id`` stays the same.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    free: bool = False
    concurrent_safe: bool = False
    timeout_s: float | None = None
    done: bool = False
    idempotent: bool = False
    is_async: bool = False
    ctx_param: str | None = None
    converters: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    #: timed-out calls whose threads are still running (the tool refuses new calls meanwhile).
    orphans: int = 0

    def schema(self) -> dict[str, Any]:
        """The tool as a provider sees it: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    @property
    def signature(self) -> str:
        """The call as the model should write it, e.g. ``read(path: str, limit: int = 10)``.

        Read from `parameters` each time, so it always says what validation checks.
        """
        from .schema import signature_text

        return signature_text(self.name, self.parameters)

    def catalog_entry(self) -> str:
        """The signature, the description and each parameter's description, indented for a list."""
        lines = [f"  {self.signature}"]
        lines += [f"    {line}".rstrip() for line in self.description.splitlines()]
        props = self.parameters.get("properties")
        for pname, sub in (props if isinstance(props, dict) else {}).items():
            about = sub.get("description") if isinstance(sub, dict) else None
            if about:
                lines.append(f"      {pname}: {' '.join(str(about).split())}")
        return "\n".join(lines)


@dataclass(slots=True)
class PreparedCall:
    """A validated call, ready to run: the keyword arguments are final."""

    spec: ToolSpec
    call: ToolCall
    args: dict[str, Any]
    ctx: ToolContext | None = None
    #: set by a run in a worker thread: fires when that thread ends (an orphan's end)
    finished: Any = None
    #: the arguments are flat scalars passed as they are (no converter, no ctx)
    plain: bool = False
    #: the run the call belongs to (set by the loop; for interceptors shared by several runs)
    run_id: str = ""

    def kwargs(self) -> dict[str, Any]:
        if self.plain:  # ``fn(**kwargs)`` copies the dict, and scalars cannot be mutated
            return self.args
        # Copies, so a tool that mutates its arguments cannot change the recorded call.
        out = {k: (copy.deepcopy(v) if isinstance(v, dict | list) else v) for k, v in self.args.items()}
        for name, convert in self.spec.converters.items():
            if name in out:
                out[name] = convert(out[name])
        if self.spec.ctx_param is not None:
            out[self.spec.ctx_param] = self.ctx
        return out


_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def check_tool_name(name: object) -> str:
    """Return `name` if model providers accept it as a tool name, else raise `ToolDefinitionError`."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    raise ToolDefinitionError(
        f"tool name {name!r} is not accepted by model providers (they allow 1-64 letters, digits, "
        "'_' and '-'); pass name=... (e.g. name='search_docs') when you register it"
    )


def _check_parameters(name: str, parameters: object) -> None:
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise ToolDefinitionError(
            f"tool {name!r}: parameters must be a JSON Schema object such as "
            f'{{"type": "object", "properties": {{...}}}}, got {parameters!r:.80}'
        )


def _options(
    name: str | None,
    description: str | None,
    free: bool,
    concurrent_safe: bool,
    timeout_s: float | None,
    idempotent: bool = False,
) -> dict[str, Any]:
    check_timeout("timeout_s", timeout_s)
    if name is not None:
        check_tool_name(name)
    return {
        "name": name,
        "description": description,
        "free": free,
        "concurrent_safe": concurrent_safe,
        "timeout_s": timeout_s,
        "idempotent": idempotent,
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
    idempotent: bool = False,
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
    idempotent: bool = False,
) -> Any:
    """Mark a function as a tool, bare (``@tool``) or with options (``@tool(free=True)``).

    The function stays an ordinary function; pass it to `BaseToolRegistry`
    (``BaseToolRegistry([fn])`` or ``tools.register(fn)``) to offer it to a model.
    """
    opts = _options(name, description, free, concurrent_safe, timeout_s, idempotent)

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
        idempotent: bool = False,
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
        idempotent: bool = False,
    ) -> Any:
        """Register a function as a tool: ``@tools.tool`` or ``@tools.tool(name=..., free=True)``.

        The schema comes from the type hints; the description from the
        docstring (its Args section describes the parameters). Returns the
        function unchanged.
        """
        opts = _options(name, description, free, concurrent_safe, timeout_s, idempotent)

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
        idempotent: bool | None = None,
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
            "idempotent": idempotent,
        }
        marked.update({k: v for k, v in given.items() if v is not None})
        opts = _options(
            marked.get("name"),
            marked.get("description"),
            bool(marked.get("free", False)),
            bool(marked.get("concurrent_safe", False)),
            marked.get("timeout_s"),
            bool(marked.get("idempotent", False)),
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
        idempotent: bool = False,
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

        check_tool_name(tool_name)
        info = describe_function(fn, tool_name, ToolContext)
        if parameters is not None:
            _check_parameters(tool_name, parameters)
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
            idempotent=idempotent,
            is_async=inspect.iscoroutinefunction(fn),
            ctx_param=info.ctx_param,
            converters=info.converters,
        )
        return self._put(spec)

    def _put(self, spec: ToolSpec) -> ToolSpec:
        check_tool_name(spec.name)
        check_timeout("timeout_s", spec.timeout_s)
        _check_parameters(spec.name, spec.parameters)
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

    def catalog(self) -> str:
        """A readable list of the tools, their signatures and descriptions, for a system prompt."""
        if not self._tools:
            return "No tools."
        return "\n".join(["Available tools:", *(s.catalog_entry() for s in self._tools.values())])

    # -- running one call (the original looplet's entry point) ---------------------

    def dispatch(self, call: ToolCall, *, ctx: ToolContext | None = None) -> ToolResult:
        """Validate and run one call now, outside any loop, within the tool's own ``timeout_s``.

        Never raises for a bad call or a failing tool: an unknown tool, wrong
        arguments, an exception or a timeout come back as an error `ToolResult`.
        A tool taking ``ctx`` gets `ctx`, or a fresh `ToolContext` for this call.
        """
        prepared = self.prepare(call)
        if isinstance(prepared, ToolResult):
            return prepared
        if prepared.spec.ctx_param is not None:
            prepared.ctx = ctx if ctx is not None else ToolContext(call_id=call.call_id, tool=call.tool)
        from .dispatch import run_sync

        return run_sync(prepared, prepared.spec.timeout_s)

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
        plan = plan_for(spec.parameters)
        if plan is not None:  # flat plain arguments that pass as they are: one pass
            fast = fast_args(plan, call.args, max_arg_chars)
            if fast is not None:
                plain = not spec.converters and spec.ctx_param is None
                return PreparedCall(spec, call, fast, plain=plain)
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
    depth, size = measure(args, max_depth, max_chars)
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
        error=message,
        error_kind=kind,
        retriable=retriable,
        call_id=call.call_id,
        metadata=dict(metadata),
    ).summary_of(call.args)
