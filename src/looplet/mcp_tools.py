"""Tools from MCP servers, called through the official ``mcp`` SDK (``pip install "looplet[mcp]"``).

`MCPServer` says how to reach one server: a command to start (stdio; the
command and its arguments as a list, never a shell string) or a URL
(streamable HTTP). `MCPTools` connects to several at once, lists their tools
and registers them in a `BaseToolRegistry` with the servers' own JSON Schemas
and descriptions, so a call is validated like a local tool's before anything
is sent. Pass the `MCPTools` in ``hooks=`` too: its ``on_loop_end`` closes the
sessions when the run ends, by any path (``break``, an error, cancellation).

Where the sessions live: one asyncio event loop in one background thread per
`MCPTools`, started on first use, owns every session. Each session is opened,
held and closed by a single task of its own on that loop, so the SDK's cancel
scopes are always entered and left in the same task, whatever the order in
which servers start, fail or close (mixing them up is what produces the
"exited non-innermost cancel scope" errors and orphaned servers seen
elsewhere). A tool call is handed to that loop; the caller only waits for the
answer: `async_composable_loop` awaits it on its own loop (cancelling the
caller's task cancels the call on the server), and `composable_loop` awaits it
on the fresh event loop it gives every async tool. Closing stops the sessions
(a stdio server's process is ended and reaped by the SDK) and then the thread;
the next use starts both again.

What the model sees: a text answer as text, structured content as that JSON
object, and anything else (images, audio, embedded resources, resource links)
as references with their type, URI, MIME type and size in bytes, never the
bytes themselves. A result the server marks ``isError`` is a tool error with
the server's text (`MCPToolError`). A server that dies during a call makes that
call an error (`MCPConnectionError`), and the next call to it starts it again
(or reconnects, over HTTP).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import copy
import importlib.util
import logging
import math
import os
import re
import sys
import threading
import weakref
from collections.abc import Awaitable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import ConfigError, ToolDefinitionError
from .tools.registry import BaseToolRegistry, ToolSpec, check_tool_name
from .tools.validation import check_timeout

__all__ = ["MCPServer", "MCPTools", "MCPToolError", "MCPConnectionError"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_INSTALL_HINT = 'MCP tools need the mcp SDK: pip install "looplet[mcp]"'

#: The JSON-RPC code the SDK (1.x and 2.x) gives a request whose connection closed.
_CONNECTION_CLOSED = -32000

#: How long a session may take to close cleanly before its task is cancelled.
_CLOSE_GRACE_S = 15.0

#: Pages of a tool listing read at most (a server repeating its cursor cannot loop us forever).
_MAX_LIST_PAGES = 100

_SERVER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NOT_IN_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


class MCPToolError(Exception):
    """An MCP tool answered with an error result (``isError``); the message is the server's text."""


class MCPConnectionError(ConnectionError):
    """An MCP server could not be started or reached, or its connection closed during a call."""


# -- describing a server ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MCPServer:
    """How to reach one MCP server: a command to start (stdio) or a URL (streamable HTTP).

    Build one with `MCPServer.stdio` or `MCPServer.http`.

    Attributes:
        name: what errors and the model's error messages call the server.
        command: the executable to start (stdio); never a shell command line.
        args: its arguments, a list of strings.
        env: environment variables to set for the server.
        inherit_env: names of variables to copy from this process's environment.
            Nothing else is passed on, except the few the SDK always passes
            (on POSIX: ``HOME``, ``LOGNAME``, ``PATH``, ``SHELL``, ``TERM``, ``USER``),
            so your API keys do not reach a server that was not given them.
        cwd: the server's working directory.
        url: the streamable HTTP endpoint, e.g. ``http://127.0.0.1:8000/mcp``.
        headers: HTTP headers sent with every request (e.g. ``Authorization``).
        prefix: put before every tool name, to tell servers apart (``"github_"``).
        include: register only these tools (the server's names); None: all.
        timeout_s: time limit of one call (None: the run's default, or none).
        connect_timeout_s: time limit for starting the server and the handshake.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    inherit_env: tuple[str, ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    prefix: str = ""
    include: tuple[str, ...] | None = None
    timeout_s: float | None = None
    connect_timeout_s: float = 30.0

    @classmethod
    def stdio(
        cls,
        name: str,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        inherit_env: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
        prefix: str = "",
        include: Sequence[str] | None = None,
        timeout_s: float | None = None,
        connect_timeout_s: float = 30.0,
    ) -> MCPServer:
        """A server that looplet starts as a child process and talks to over its stdin and stdout."""
        return cls(
            name=name,
            command=command,
            args=_strings("args", args, name),
            env=dict(env or {}),
            inherit_env=_strings("inherit_env", inherit_env, name),
            cwd=os.fspath(cwd) if cwd is not None else None,
            prefix=prefix,
            include=None if include is None else _strings("include", include, name),
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    @classmethod
    def http(
        cls,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        prefix: str = "",
        include: Sequence[str] | None = None,
        timeout_s: float | None = None,
        connect_timeout_s: float = 30.0,
    ) -> MCPServer:
        """A server already running at `url`, reached over streamable HTTP."""
        return cls(
            name=name,
            url=url,
            headers=dict(headers or {}),
            prefix=prefix,
            include=None if include is None else _strings("include", include, name),
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SERVER_NAME.fullmatch(self.name):
            raise ConfigError(f"MCP server name {self.name!r}: use 1-64 letters, digits, '_', '-' or '.'")
        if (self.command is None) == (self.url is None):
            raise ConfigError(f"MCP server {self.name!r}: give a command (stdio) or a url (HTTP), not both")
        if self.command is not None:
            self._check_command(self.command)
        if self.url is not None and not (isinstance(self.url, str) and re.match(r"https?://", self.url)):
            raise ConfigError(f"MCP server {self.name!r}: url must start with http:// or https://")
        for what, mapping in (("env", self.env), ("headers", self.headers)):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
                raise ConfigError(f"MCP server {self.name!r}: {what} must map strings to strings")
        if not isinstance(self.prefix, str):
            raise ConfigError(f"MCP server {self.name!r}: prefix must be a string")
        check_timeout("timeout_s", self.timeout_s, error=ConfigError)
        check_timeout("connect_timeout_s", self.connect_timeout_s, error=ConfigError)
        for attr in ("args", "inherit_env") + (("include",) if self.include is not None else ()):
            object.__setattr__(self, attr, _strings(attr, getattr(self, attr), self.name))
        object.__setattr__(self, "env", dict(self.env))  # copies: changing yours later changes nothing here
        object.__setattr__(self, "headers", dict(self.headers))

    def _check_command(self, command: object) -> None:
        if not isinstance(command, str) or not command:
            raise ConfigError(f"MCP server {self.name!r}: command must be a non-empty string")
        if any(c.isspace() for c in command) and not os.path.exists(command):
            raise ConfigError(
                f"MCP server {self.name!r}: command {command!r} looks like a shell command line; "
                f"give the executable and its arguments apart, e.g. "
                f"MCPServer.stdio({self.name!r}, {command.split()[0]!r}, {command.split()[1:]!r})"
            )

    @property
    def transport(self) -> str:
        """``"stdio"`` or ``"http"``."""
        return "stdio" if self.command is not None else "http"

    def child_env(self) -> dict[str, str]:
        """The variables set for a stdio server, beyond the few the SDK always passes."""
        inherited = {k: os.environ[k] for k in self.inherit_env if k in os.environ}
        return inherited | dict(self.env)


def _strings(what: str, values: object, server: str) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ConfigError(
            f"MCP server {server!r}: {what} must be a list of strings, never one string "
            f"(got {values!r:.60}); no shell splits it for you"
        )
    items = tuple(values)
    if not all(isinstance(v, str) for v in items):
        raise ConfigError(f"MCP server {server!r}: every item of {what} must be a string")
    return items


# -- the background event loop ---------------------------------------------------------------


class _LoopThread:
    """One asyncio event loop running in a daemon thread: where sessions live and calls run."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            self.finished.set_result(None)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop_soon(self) -> None:
        """Ask the loop to stop; `finished` is set once the thread has cleaned up."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            pass


# -- one server's session --------------------------------------------------------------------


class _Link:
    """One server's session, opened on first use and held by one task until it is closed.

    Only code running on the background loop touches it.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.session: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._scope: Any = None
        self._lock: asyncio.Lock | None = None

    async def current(self) -> Any:
        """The open session, opening one first if there is none (or the last one ended)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.session is not None and self._owner is not None and not self._owner.done():
                return self.session
            await self.close()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._owner = asyncio.create_task(
                self._hold(ready, self._stop), name=f"looplet-mcp-{self.server.name}"
            )
            try:
                self.session = await asyncio.shield(ready)
            except BaseException:
                await self.close()
                raise
            return self.session

    async def _hold(self, ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        """The session's whole life, in this one task: open, initialize, wait for `stop`, close."""
        server = self.server
        try:
            _load_sdk()  # before the clock starts: the first import takes a while
            import anyio

            with anyio.CancelScope(deadline=anyio.current_time() + server.connect_timeout_s) as scope:
                if self._owner is asyncio.current_task():  # (not a session closed before it began)
                    self._scope = scope
                async with AsyncExitStack() as stack:
                    session = await _open_session(stack, server)
                    scope.deadline = math.inf  # the connect limit is over; the session stays open
                    ready.set_result(session)
                    await stop.wait()
            if scope.cancelled_caught and not ready.done():
                ready.set_exception(
                    MCPConnectionError(
                        f"the MCP server {server.name!r} did not answer within {server.connect_timeout_s:g}s"
                    )
                )
        except BaseException as exc:
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(exc if isinstance(exc, ConfigError) else _connect_error(server, exc))
            if not isinstance(exc, Exception):
                raise
            logger.info("MCP server %r: session ended with %s: %s", server.name, type(exc).__name__, exc)
        finally:
            if not ready.done():
                ready.set_exception(MCPConnectionError(f"the MCP server {server.name!r} closed at once"))

    async def drop(self, session: Any) -> None:
        """Close `session` if it is still the current one (a failed call calls this)."""
        if self.session is session:
            await self.close()

    async def close(self) -> None:
        """Let the owning task close the session, and wait for it (cancel it if it hangs)."""
        owner, stop, scope = self._owner, self._stop, self._scope
        self.session = self._owner = self._stop = self._scope = None
        if owner is None:
            return
        if stop is not None:
            stop.set()
        done, _ = await asyncio.wait({owner}, timeout=_CLOSE_GRACE_S)
        if not done:
            logger.warning(
                "MCP server %r did not close within %gs; cancelling", self.server.name, _CLOSE_GRACE_S
            )
            if scope is not None:
                scope.cancel()
            await asyncio.wait({owner}, timeout=_CLOSE_GRACE_S)
        if owner.done() and not owner.cancelled():
            owner.exception()  # retrieved: it was logged by the task itself

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server offers (all pages), as JSON objects with the wire's field names."""
        session = await self.current()
        from mcp import types

        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            if cursor is None:
                page = await session.list_tools()
            else:
                page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
            tools += [_wire(tool) for tool in page.tools]
            cursor = getattr(page, "next_cursor", None) or getattr(page, "nextCursor", None)
            if not cursor:
                break
        return tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call `tool`; its result as a JSON object with the wire's field names."""
        session = await self.current()
        try:
            result = await session.call_tool(tool, arguments)
        except Exception as exc:
            if not _connection_lost(exc):
                raise MCPToolError(
                    f"the MCP server {self.server.name!r} answered {tool} with an error: {exc}"
                ) from exc
            await self.drop(session)
            again = "starts it again" if self.server.transport == "stdio" else "reconnects"
            cause = _first_leaf(exc)
            raise MCPConnectionError(
                f"the connection to the MCP server {self.server.name!r} closed while {tool} ran "
                f"({type(cause).__name__}: {cause}); the call may or may not have taken effect. "
                f"The next call {again}"
            ) from exc
        return _wire(result)


def _load_sdk() -> None:
    """Import the SDK's client side (the first time, about a second), or say how to install it."""
    try:
        import mcp  # noqa: F401
        import mcp.client.stdio  # noqa: F401
        import mcp.client.streamable_http  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{_INSTALL_HINT} ({exc})") from exc


async def _open_session(stack: AsyncExitStack, server: MCPServer) -> Any:
    """Start the transport and the session on `stack`, and do the MCP handshake."""
    from mcp import ClientSession

    if server.command is not None:
        from mcp import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=server.command, args=list(server.args), env=server.child_env(), cwd=server.cwd
        )
        streams = await stack.enter_async_context(stdio_client(params, errlog=_stderr()))
    else:
        streams = await _open_http(stack, server)
    session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
    await session.initialize()
    return session


async def _open_http(stack: AsyncExitStack, server: MCPServer) -> Any:
    assert server.url is not None
    try:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
    except ImportError:  # an mcp 1.x from before `streamable_http_client`
        from mcp.client.streamable_http import (  # type: ignore[attr-defined,unused-ignore]
            streamablehttp_client,
        )

        return await stack.enter_async_context(
            streamablehttp_client(server.url, headers=dict(server.headers))
        )
    http = await stack.enter_async_context(create_mcp_http_client(headers=dict(server.headers)))
    return await stack.enter_async_context(streamable_http_client(server.url, http_client=http))


def _stderr() -> Any:
    """Where a stdio server's stderr goes: ours, when it is a real file (else nowhere)."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        import subprocess

        return subprocess.DEVNULL
    return sys.stderr


def _wire(model: Any) -> dict[str, Any]:
    """An SDK object as JSON with the protocol's field names (the same in SDK 1.x and 2.x)."""
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _connection_lost(exc: BaseException) -> bool:
    """Whether a failed call means the connection is gone (not that the server said no)."""
    code = getattr(getattr(exc, "error", None), "code", None)
    if code is not None:
        return bool(code == _CONNECTION_CLOSED)
    import anyio

    if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream | OSError):
        return True
    return any(cls.__module__.split(".")[0] in ("httpx", "httpx2", "httpcore") for cls in type(exc).__mro__)


def _connect_error(server: MCPServer, exc: BaseException) -> MCPConnectionError:
    if server.command is not None:
        doing = f"start the MCP server {server.name!r} ({' '.join([server.command, *server.args])})"
    else:
        doing = f"reach the MCP server {server.name!r} at {server.url}"
    cause = _first_leaf(exc)
    return MCPConnectionError(f"could not {doing}: {type(cause).__name__}: {cause}")


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: the one that says what went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# -- what the model sees ---------------------------------------------------------------------


def result_data(server: str, tool: str, result: Mapping[str, Any]) -> Any:
    """What a tool result becomes for the model (raises `MCPToolError` for an ``isError`` result).

    Text only: the text. Structured content (and text): that object. Anything
    else: ``{"content": [...], "structured": ...}`` with text blocks as text and
    every other block as a reference (see `content_reference`).
    """
    blocks = [b for b in result.get("content") or () if isinstance(b, Mapping)]
    if result.get("isError"):
        text = "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text").strip()
        raise MCPToolError(text or f"{tool} on the MCP server {server!r} failed and gave no reason")
    structured = result.get("structuredContent")
    if all(b.get("type") == "text" for b in blocks):
        if structured is not None:
            return structured
        return "\n".join(str(b.get("text", "")) for b in blocks)
    out: dict[str, Any] = {"content": [content_reference(b) for b in blocks]}
    if structured is not None:
        out["structured"] = structured
    return out


def content_reference(block: Mapping[str, Any]) -> dict[str, Any]:
    """One content block for the model: text as it is; images, audio and resources as references.

    A reference has the block's ``type``, its ``uri`` and ``name`` when it has
    them, ``mime_type`` and ``bytes`` (the size); an embedded text resource
    keeps its text, since it is text like any other. Binary data never goes
    into the prompt.
    """
    kind = str(block.get("type", ""))
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    ref: dict[str, Any] = {"type": kind}
    inner = block.get("resource") if kind == "resource" else block
    inner = inner if isinstance(inner, Mapping) else {}
    for key, name in (("uri", "uri"), ("name", "name"), ("mimeType", "mime_type")):
        if inner.get(key) is not None:
            ref[name] = inner[key]
    if isinstance(inner.get("text"), str):
        ref["text"] = inner["text"]
        ref["bytes"] = len(inner["text"].encode("utf-8"))
    for key in ("data", "blob"):
        if isinstance(inner.get(key), str):
            ref["bytes"] = _decoded_size(inner[key])
    if "bytes" not in ref and isinstance(inner.get("size"), int):
        ref["bytes"] = inner["size"]
    return ref


def _decoded_size(text: str) -> int:
    try:
        return len(base64.b64decode(text, validate=False))
    except ValueError:
        return len(text)


# -- turning listings into ToolSpecs ---------------------------------------------------------


def tool_name(server: MCPServer, mcp_name: str) -> str:
    """The name a server's tool gets in the registry: the prefix, then the name with every
    character that model providers refuse (such as ``.`` or ``/``) written as ``_``."""
    name = _NOT_IN_TOOL_NAME.sub("_", server.prefix + mcp_name)
    try:
        return check_tool_name(name)
    except ToolDefinitionError:
        raise ToolDefinitionError(
            f"the MCP server {server.name!r} offers a tool {mcp_name!r} whose name ({name!r}) is longer "
            "than model providers accept (64); leave it out with include=[...] or use a shorter prefix"
        ) from None


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with its local ``$ref``s (``#/$defs/...``) written out in place.

    The registry checks arguments against the schema, and written out, a
    nested object's fields are checked too. A recursive definition cannot be
    written out; it stays a ``$ref``, and ``$defs`` is kept for it.
    """
    out = copy.deepcopy(schema)
    defs = {**out.get("definitions", {}), **out.get("$defs", {})}
    if not defs:
        return out
    kept: set[str] = set()

    def expand(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [expand(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and re.fullmatch(r"#/(\$defs|definitions)/[^/]+", ref):
            key = ref.rsplit("/", 1)[1]
            if key in defs and key not in seen:
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**expand(copy.deepcopy(defs[key]), seen | {key}), **expand(rest, seen)}
            kept.add(key)
        return {k: (v if k in ("$defs", "definitions") else expand(v, seen)) for k, v in node.items()}

    out = dict(expand(out, frozenset()))
    if not kept:
        out.pop("$defs", None)
        out.pop("definitions", None)
    return out


def _parameters(server: MCPServer, tool: Mapping[str, Any]) -> dict[str, Any]:
    schema = tool.get("inputSchema")
    if not isinstance(schema, dict):
        schema = {"type": "object", "properties": {}}
    schema = inline_refs(schema)
    schema.setdefault("type", "object")
    if schema["type"] != "object":
        raise ToolDefinitionError(
            f"the MCP server {server.name!r} gives the tool {tool.get('name')!r} an input schema "
            f"that is not an object ({schema['type']!r}); leave it out with include=[...]"
        )
    return schema


def _description(server: MCPServer, tool: Mapping[str, Any]) -> str:
    for key in ("description", "title"):
        text = tool.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return f"{tool.get('name')} (a tool of the MCP server {server.name!r})"


# -- the public object -----------------------------------------------------------------------


class MCPTools:
    """The tools of several MCP servers, for a `BaseToolRegistry`; also the hook that closes them.

    ``mcp.register(tools)`` connects to every server (at once), lists its tools
    and registers them. Tools are listed at registration, not later: the model
    must see them in its first prompt, and the registry needs their schemas to
    check calls. A server's tool list is read once; register again in a new
    registry to see a changed list.

    Sessions stay open for the run's calls and close when the run ends (pass
    this object in ``hooks=``), when `close()` / `aclose()` is called, or at
    the end of a ``with`` block. A closed session opens again on the next
    call, so one `MCPTools` can serve several runs one after the other. Runs
    at the same time should each have their own: the first to end closes the
    sessions that the others are using (their calls then start them again).
    """

    def __init__(self, servers: Iterable[MCPServer]) -> None:
        if importlib.util.find_spec("mcp") is None:
            raise ConfigError(_INSTALL_HINT)
        self.servers: tuple[MCPServer, ...] = tuple(servers)
        names = [s.name for s in self.servers]
        for server in self.servers:
            if not isinstance(server, MCPServer):
                raise ConfigError(f"MCPTools takes MCPServer descriptions, got {type(server).__name__}")
            if names.count(server.name) > 1:
                raise ConfigError(f"two MCP servers are named {server.name!r}; give each its own name")
        self._links = {s.name: _Link(s) for s in self.servers}
        self._thread: _LoopThread | None = None
        self._thread_lock = threading.Lock()
        self._host_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        # What closing needs, in a box that does not hold `self`, so that a forgotten
        # MCPTools still closes its servers when it is collected or the program exits.
        self._state: dict[str, Any] = {"links": self._links, "thread": None}
        weakref.finalize(self, _shutdown, self._state)

    @property
    def open_servers(self) -> list[str]:
        """The names of the servers whose session is open now."""
        return [name for name, link in self._links.items() if link.session is not None]

    # -- registering ------------------------------------------------------------------------

    def register(self, registry: BaseToolRegistry) -> list[ToolSpec]:
        """Connect to every server, list its tools, and register them in `registry`.

        Nothing is registered unless every tool can be: a name already in the
        registry, or offered by two servers, raises `ToolDefinitionError` saying
        which (give one server a ``prefix=``).

        Raises:
            MCPConnectionError: a server could not be started or reached.
            ToolDefinitionError: a name collides, or a tool cannot be offered to a model.
        """
        try:
            return self._add(registry, self._wait(self._list_all()))
        except BaseException:
            self.close()  # nothing was registered: close what was opened
            raise

    async def aregister(self, registry: BaseToolRegistry) -> list[ToolSpec]:
        """`register`, awaited (the connections do not block your event loop)."""
        try:
            return self._add(registry, await self._await(self._list_all()))
        except BaseException:
            await self.aclose()
            raise

    async def _list_all(self) -> list[tuple[MCPServer, list[dict[str, Any]]]]:
        links = list(self._links.values())
        found = await asyncio.gather(*(link.list_tools() for link in links))
        return [(link.server, tools) for link, tools in zip(links, found, strict=True)]

    def _add(
        self, registry: BaseToolRegistry, listings: list[tuple[MCPServer, list[dict[str, Any]]]]
    ) -> list[ToolSpec]:
        specs: list[ToolSpec] = []
        origin: dict[str, tuple[str, str]] = {}
        for server, tools in listings:
            wanted = set(server.include) if server.include is not None else None
            for tool in tools:
                mcp_name = str(tool.get("name"))
                if wanted is not None and mcp_name not in wanted:
                    continue
                spec = self._spec(server, mcp_name, tool)
                _check_free(registry, origin, spec.name, server.name, mcp_name)
                origin[spec.name] = (server.name, mcp_name)
                specs.append(spec)
            missing = sorted((wanted or set()) - {str(t.get("name")) for t in tools})
            if missing:
                raise ToolDefinitionError(
                    f"the MCP server {server.name!r} has no tool named {', '.join(missing)}"
                )
        for spec in specs:
            registry.register(spec)
        return specs

    def _spec(self, server: MCPServer, mcp_name: str, tool: Mapping[str, Any]) -> ToolSpec:
        link = self._links[server.name]

        async def call_mcp_tool(**arguments: Any) -> Any:
            raw = await self._await(link.call(mcp_name, arguments))
            return result_data(server.name, mcp_name, raw)

        call_mcp_tool.__name__ = call_mcp_tool.__qualname__ = tool_name(server, mcp_name)
        return ToolSpec(
            name=tool_name(server, mcp_name),
            description=_description(server, tool),
            parameters=_parameters(server, tool),
            fn=call_mcp_tool,
            timeout_s=server.timeout_s,
            is_async=True,
        )

    # -- running on the background loop -----------------------------------------------------

    def _loop_thread(self) -> _LoopThread:
        with self._thread_lock:
            if self._thread is None or self._thread.loop.is_closed() or self._thread.finished.done():
                self._thread = self._state["thread"] = _LoopThread(f"looplet-mcp-{id(self):x}")
            return self._thread

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the background loop and block until it is done."""
        return self._loop_thread().submit(coro).result()

    async def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the background loop; cancelling the caller cancels it there too."""
        self._host_loop = weakref.ref(asyncio.get_running_loop())
        return await asyncio.wrap_future(self._loop_thread().submit(coro))

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close every session and stop the background thread (waits until they are gone)."""
        _shutdown(self._state)

    async def aclose(self) -> None:
        """`close`, awaited; a second cancellation meanwhile does not stop the closing."""
        thread = self._thread
        if thread is None or thread.finished.done():
            return
        closing = thread.submit(_close_links(list(self._links.values())))
        try:
            await asyncio.shield(asyncio.wrap_future(closing))
        finally:
            thread.stop_soon()
        await asyncio.shield(asyncio.wrap_future(thread.finished))

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> Awaitable[None] | None:
        """Hook: the run ended, so close the sessions.

        In `async_composable_loop` (recognised as the event loop that awaited
        this object's tools) this returns `aclose()` for the loop to await;
        elsewhere it closes before returning.
        """
        host = self._host_loop() if self._host_loop is not None else None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is host:
            return self.aclose()
        self.close()
        return None

    def __enter__(self) -> MCPTools:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MCPTools:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _check_free(
    registry: BaseToolRegistry, origin: Mapping[str, tuple[str, str]], name: str, server: str, mcp_name: str
) -> None:
    """Refuse a registry name that a local tool or another server's tool already has."""
    fix = f"give the server a prefix, e.g. MCPServer.stdio({server!r}, ..., prefix={server + '_'!r})"
    if name in registry:
        raise ToolDefinitionError(
            f"the MCP server {server!r} offers a tool {mcp_name!r}, registered as {name!r}, but the "
            f"registry already has a tool named {name!r}; {fix}"
        )
    if name in origin:
        other, other_name = origin[name]
        raise ToolDefinitionError(
            f"the MCP servers {other!r} ({other_name!r}) and {server!r} ({mcp_name!r}) would both "
            f"register a tool named {name!r}; {fix}"
        )


async def _close_links(links: list[_Link]) -> None:
    """Close every session at once; each is closed by its own task."""
    await asyncio.gather(*(link.close() for link in links), return_exceptions=True)


def _shutdown(state: dict[str, Any]) -> None:
    """Close the sessions and stop the thread (from `close()`, garbage collection or exit)."""
    thread: _LoopThread | None = state["thread"]
    if thread is None or thread.finished.done():
        return
    if threading.current_thread() is thread.thread:  # collected on the loop itself: cannot wait here
        thread.stop_soon()
        return
    try:
        thread.submit(_close_links(list(state["links"].values()))).result()
    finally:
        thread.stop_soon()
        thread.finished.result()
