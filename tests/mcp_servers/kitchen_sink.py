"""An MCP server with one tool per kind of result, for looplet's MCP tests.

Run as ``python kitchen_sink.py stdio`` or ``python kitchen_sink.py http PORTFILE``
(streamable HTTP on 127.0.0.1, on a port the OS picks; the port is written to
PORTFILE once the server listens).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
from collections import Counter
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

#: tools/call requests that reached the server, by tool name (counted before any server-side check)
CALLS: Counter[str] = Counter()

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def count_calls(ctx: Any, call_next: Any) -> Any:
    """Middleware: count every tools/call request before the server validates it."""
    if ctx.method == "tools/call" and isinstance(ctx.params, dict):
        CALLS[str(ctx.params.get("name"))] += 1
    return await call_next(ctx)


server = MCPServer("kitchen-sink", middleware=[count_calls], log_level="CRITICAL")


class Sum(BaseModel):
    total: int
    terms: int


class Point(BaseModel):
    x: float
    y: float


@server.tool()
def add(a: int, b: int) -> Sum:
    """Add two integers and return the total as structured data."""
    return Sum(total=a + b, terms=2)


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def distance(p: Point, q: Point) -> str:
    """The distance between two points (nested objects in the schema)."""
    return f"{((p.x - q.x) ** 2 + (p.y - q.y) ** 2) ** 0.5:g}"


@server.tool()
def picture() -> types.CallToolResult:
    """A caption and a one-pixel PNG."""
    return types.CallToolResult(
        content=[
            types.TextContent(type="text", text="a red pixel"),
            types.ImageContent(type="image", data=base64.b64encode(PNG).decode(), mime_type="image/png"),
        ]
    )


@server.tool()
def documents() -> types.CallToolResult:
    """An embedded text resource, an embedded blob and a link."""
    blob = base64.b64encode(b"\x00\x01\x02\x03").decode()
    return types.CallToolResult(
        content=[
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="file:///notes.txt", mime_type="text/plain", text="hello"
                ),
            ),
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(
                    uri="file:///data.bin", mime_type="application/octet-stream", blob=blob
                ),
            ),
            types.ResourceLink(
                type="resource_link", uri="file:///big.csv", name="big.csv", mime_type="text/csv", size=12345
            ),
        ]
    )


@server.tool()
def fail(reason: str) -> types.CallToolResult:
    """Answer with an error result (isError) carrying the reason."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=reason)], is_error=True)


@server.tool()
def crash() -> str:
    """Raise inside the tool (the server turns it into an error result)."""
    raise RuntimeError("the tool broke")


@server.tool(name="text.upper")
def upper(text: str) -> str:
    """Upper-case the text (a dotted name, which model providers refuse)."""
    return text.upper()


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of one HTTP header of this request ("" over stdio or when absent)."""
    headers = ctx.headers or {}
    return str(headers.get(name.lower(), ""))


@server.tool()
def getenv(name: str) -> str:
    """The value of an environment variable of the server's process ("" when unset)."""
    return os.environ.get(name, "")


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def calls() -> dict[str, int]:
    """How many tools/call requests reached this server, by tool name."""
    return dict(CALLS)


@server.tool()
async def wait(seconds: float, marker: str = "") -> str:
    """Sleep, then answer: a call that is still running when the test acts.

    With `marker`, first create that file, so the test knows the call has arrived.
    """
    if marker:
        with open(marker, "w") as out:
            out.write(str(os.getpid()))
    await asyncio.sleep(seconds)
    return "waited"


def _serve_http(portfile: str) -> None:
    import anyio
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)

    async def main() -> None:
        async def announce() -> None:
            while not web.started:
                await anyio.sleep(0.01)
            tmp = portfile + ".tmp"
            with open(tmp, "w") as out:
                out.write(str(sock.getsockname()[1]))
            os.replace(tmp, portfile)

        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await web.serve(sockets=[sock])

    anyio.run(main)


if __name__ == "__main__":
    if sys.argv[1] == "http":
        _serve_http(sys.argv[2])
    else:
        server.run("stdio")
