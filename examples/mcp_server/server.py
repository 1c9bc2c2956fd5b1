"""A small MCP server for the MCP recipe in docs/recipes.md: two tools over stdio.

Run it yourself with ``python examples/mcp_server/server.py`` (it speaks MCP on
stdin and stdout), or let looplet start it:

    MCPServer.stdio("notes", sys.executable, ["examples/mcp_server/server.py"])
"""

from __future__ import annotations

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef,attr-defined,unused-ignore]

server = MCPServer("notes", log_level="WARNING")


@server.tool()
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@server.tool()
def shout(text: str, times: int = 1) -> str:
    """Upper-case a text and add exclamation marks."""
    return text.upper() + "!" * times


if __name__ == "__main__":
    server.run()
