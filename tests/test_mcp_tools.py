"""MCP tools through the official SDK, against real MCP server processes (stdio and streamable HTTP).

The servers are tests/mcp_servers/kitchen_sink.py, written with the same SDK:
one stdio process and one HTTP process are shared by the module where a test
does not need its own (a test that kills or cancels starts its own).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from looplet import BaseToolRegistry, MockLLMBackend, ToolCall, register_done_tool
from looplet.errors import ConfigError, ToolDefinitionError
from looplet.loop import async_composable_loop, composable_loop
from looplet.mcp_tools import (
    MCPConnectionError,
    MCPServer,
    MCPTools,
    content_reference,
    inline_refs,
    result_data,
)

TASK = "use the tools"
KITCHEN = Path(__file__).resolve().parent / "mcp_servers" / "kitchen_sink.py"
ROOT = Path(__file__).resolve().parent.parent

#: set in this process before the shared stdio server starts; the server must not see it
SECRET = "LOOPLET_MCP_TEST_SECRET"
#: set too, and passed on by name through inherit_env
PASSED = "LOOPLET_MCP_TEST_PASSED"


def kitchen(name: str = "ks", **options: Any) -> MCPServer:
    return MCPServer.stdio(name, sys.executable, [str(KITCHEN), "stdio"], **options)


def alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie that was never reaped counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def threads_of(mcp: MCPTools) -> list[threading.Thread]:
    """The background threads of this MCPTools still running (they are named after it)."""
    return [t for t in threading.enumerate() if t.name == f"looplet-mcp-{id(mcp):x}" and t.is_alive()]


def call(tool: str, /, **args: Any) -> str:
    return json.dumps({"tool": tool, "args": args})


def wait_for_file(path: Path, limit: int = 3000) -> None:
    for _ in range(limit):
        if path.exists():
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


@pytest.fixture(scope="module")
def http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The kitchen sink over streamable HTTP on 127.0.0.1, on a port the OS chose; killed by pid."""
    portfile = tmp_path_factory.mktemp("mcp-http") / "port"
    proc = subprocess.Popen([sys.executable, str(KITCHEN), "http", str(portfile)])
    try:
        wait_for_file(portfile)
        yield f"http://127.0.0.1:{portfile.read_text()}/mcp"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def shared(http_url: str) -> Iterator[tuple[MCPTools, BaseToolRegistry]]:
    """One stdio and one HTTP server, registered once for the module's round trips."""
    os.environ[SECRET] = "do-not-leak"
    os.environ[PASSED] = "inherited"
    mcp = MCPTools(
        [
            kitchen(env={"GIVEN": "given"}, inherit_env=[PASSED]),
            MCPServer.http("web", http_url, headers={"X-Token": "t0ken"}, prefix="web_"),
        ]
    )
    tools = BaseToolRegistry()
    try:
        mcp.register(tools)
        yield mcp, tools
    finally:
        mcp.close()
        del os.environ[SECRET], os.environ[PASSED]


def run(tools: BaseToolRegistry, tool: str, /, **args: Any) -> Any:
    return tools.dispatch(ToolCall(tool=tool, args=args))


def server_calls(tools: BaseToolRegistry, prefix: str = "") -> dict[str, int]:
    """The server's own count of tools/call requests it received, by tool."""
    counts = run(tools, f"{prefix}calls").data
    counts.pop("calls", None)
    return dict(counts)


# -- registration --------------------------------------------------------------------------------


def test_tools_are_registered_with_the_servers_schemas_and_descriptions(shared: Any) -> None:
    _, tools = shared
    add = tools.get("add")
    assert add is not None
    assert add.description == "Add two integers and return the total as structured data."
    assert add.parameters["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.parameters["required"] == ["a", "b"]
    # A name providers refuse ("text.upper") is registered with "_" in place of the dot.
    assert "text_upper" in tools and "text.upper" not in tools
    # The same server over HTTP: every tool again, each with the prefix.
    local = [n for n in tools.names if not n.startswith("web_")]
    assert [n for n in tools.names if n.startswith("web_")] == [f"web_{n}" for n in local]
    assert tools.get("web_add").parameters == add.parameters


def test_nested_definitions_are_written_out_so_nested_fields_are_checked(shared: Any) -> None:
    _, tools = shared
    params = tools.get("distance").parameters
    assert "$defs" not in params
    assert params["properties"]["p"]["properties"]["x"] == {"title": "X", "type": "number"}
    result = run(tools, "distance", p={"x": 0, "y": 0}, q={"x": 3, "y": "4"})
    assert result.error_kind == "validation"
    assert "q.y" in result.error


def test_a_recursive_definition_stays_a_reference() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/Node"}, "leaf": {"$ref": "#/$defs/Leaf"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            },
            "Leaf": {"type": "string"},
        },
    }
    out = inline_refs(schema)
    assert out["properties"]["leaf"] == {"type": "string"}
    node = out["properties"]["tree"]
    assert node["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert "Node" in out["$defs"]  # kept, since a reference to it remains
    assert schema["properties"]["tree"] == {"$ref": "#/$defs/Node"}  # the input is not changed


def test_a_name_taken_by_a_local_tool_is_refused_and_nothing_is_registered(shared: Any) -> None:
    mcp, _ = shared
    tools = BaseToolRegistry()

    @tools.tool
    def echo(text: str) -> str:
        """A local echo."""
        return text

    other = MCPTools([mcp.servers[0]])
    try:
        with pytest.raises(ToolDefinitionError, match=r"registry already has a tool named 'echo'.*prefix="):
            other.register(tools)
    finally:
        other.close()
    assert tools.names == ["echo"]


def test_two_servers_offering_the_same_names_need_a_prefix(http_url: str) -> None:
    mcp = MCPTools([kitchen(), MCPServer.http("web", http_url)])
    tools = BaseToolRegistry()
    try:
        with pytest.raises(ToolDefinitionError, match=r"'ks' \('add'\) and 'web' \('add'\).*prefix="):
            mcp.register(tools)
        assert len(tools) == 0
        # A failed registration closes what it opened.
        assert mcp.open_servers == [] and threads_of(mcp) == []
    finally:
        mcp.close()


def test_include_registers_only_the_named_tools(http_url: str) -> None:
    with MCPTools([MCPServer.http("web", http_url, include=["echo", "text.upper"])]) as mcp:
        tools = BaseToolRegistry()
        mcp.register(tools)
        assert tools.names == ["echo", "text_upper"]
    assert mcp.open_servers == []
    missing = MCPTools([MCPServer.http("web", http_url, include=["echo", "nope"])])
    with pytest.raises(ToolDefinitionError, match="'web' has no tool named nope"):
        missing.register(BaseToolRegistry())
    missing.close()


def test_a_server_that_cannot_start_fails_registration_with_its_command() -> None:
    mcp = MCPTools([MCPServer.stdio("ghost", "/nonexistent/mcp-server", ["--stdio"])])
    with pytest.raises(
        MCPConnectionError,
        match=r"could not start the MCP server 'ghost' \(/nonexistent/mcp-server --stdio\)",
    ):
        mcp.register(BaseToolRegistry())
    assert threads_of(mcp) == []


# -- calls and what the model sees ---------------------------------------------------------------


def test_stdio_round_trip_returns_structured_content(shared: Any) -> None:
    _, tools = shared
    assert run(tools, "add", a=2, b=3).data == {"total": 5, "terms": 2}
    assert run(tools, "text_upper", text="mcp").data == {"result": "MCP"}


def test_http_round_trip_sends_the_configured_headers(shared: Any) -> None:
    _, tools = shared
    assert run(tools, "web_add", a=20, b=22).data == {"total": 42, "terms": 2}
    assert run(tools, "web_header", name="X-Token").data == {"result": "t0ken"}


def test_bad_arguments_are_refused_before_the_server_is_called(shared: Any) -> None:
    _, tools = shared
    for prefix in ("", "web_"):
        before = server_calls(tools, prefix)
        bad = [
            run(tools, f"{prefix}add", a="2", b=3),  # a string is not an integer
            run(tools, f"{prefix}add", a=2),  # b is missing
            run(tools, f"{prefix}distance", p={"x": 0, "y": 0}, q={"x": 1}),  # nested field missing
        ]
        assert [r.error_kind for r in bad] == ["validation"] * 3
        assert server_calls(tools, prefix) == before  # none reached the server
        assert run(tools, f"{prefix}add", a=1, b=1).ok
        after = server_calls(tools, prefix)
        assert after.get("add", 0) == before.get("add", 0) + 1


def test_images_and_resources_become_references_with_mime_type_and_size(shared: Any) -> None:
    _, tools = shared
    assert run(tools, "picture").data == {
        "content": [
            {"type": "text", "text": "a red pixel"},
            {"type": "image", "mime_type": "image/png", "bytes": 70},
        ]
    }
    assert run(tools, "web_documents").data == {
        "content": [
            {
                "type": "resource",
                "uri": "file:///notes.txt",
                "mime_type": "text/plain",
                "text": "hello",
                "bytes": 5,
            },
            {
                "type": "resource",
                "uri": "file:///data.bin",
                "mime_type": "application/octet-stream",
                "bytes": 4,
            },
            {
                "type": "resource_link",
                "uri": "file:///big.csv",
                "name": "big.csv",
                "mime_type": "text/csv",
                "bytes": 12345,
            },
        ]
    }


def test_content_mapping_rules() -> None:
    assert (
        result_data("s", "t", {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
        == "a\nb"
    )
    assert result_data("s", "t", {"content": []}) == ""
    assert result_data(
        "s", "t", {"content": [{"type": "text", "text": "{}"}], "structuredContent": {"k": 1}}
    ) == {"k": 1}
    audio = {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"}
    assert result_data("s", "t", {"content": [audio], "structuredContent": {"k": 1}}) == {
        "content": [{"type": "audio", "mime_type": "audio/wav", "bytes": 3}],
        "structured": {"k": 1},
    }
    assert content_reference({"type": "something_new", "uri": "x:1"}) == {
        "type": "something_new",
        "uri": "x:1",
    }


def test_error_results_reach_the_model_as_tool_errors(shared: Any) -> None:
    _, tools = shared
    failed = run(tools, "fail", reason="the disk is full")
    assert (failed.error, failed.error_kind) == ("MCPToolError: the disk is full", "execution")
    crashed = run(tools, "web_crash")
    assert crashed.error_kind == "execution" and crashed.error.startswith("MCPToolError: ")
    assert run(tools, "echo", text="still fine").data == {"result": "still fine"}  # the session goes on
    with pytest.raises(Exception, match="gave no reason"):
        result_data("srv", "t", {"content": [], "isError": True})


def test_the_server_gets_only_the_environment_it_was_given(shared: Any) -> None:
    _, tools = shared
    assert run(tools, "getenv", name=SECRET).data == {"result": ""}
    assert run(tools, "getenv", name=PASSED).data == {"result": "inherited"}
    assert run(tools, "getenv", name="GIVEN").data == {"result": "given"}


def test_a_call_past_its_time_limit_is_cancelled_and_the_session_goes_on() -> None:
    with MCPTools([kitchen(timeout_s=0.5, include=["wait", "echo"])]) as mcp:
        tools = BaseToolRegistry()
        mcp.register(tools)
        timed_out = run(tools, "wait", seconds=60)
        assert timed_out.error_kind == "timeout"
        assert run(tools, "echo", text="after").data == {"result": "after"}


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MCPServer.stdio("s", "python", "server.py --stdio"), "list of strings, never one string"),
        (lambda: MCPServer.stdio("s", "python server.py"), "looks like a shell command line"),
        (lambda: MCPServer.stdio("s", "python", [1]), "must be a string"),  # type: ignore[list-item]
        (lambda: MCPServer.http("s", "ftp://x"), "http:// or https://"),
        (lambda: MCPServer("s"), "a command .* or a url"),
        (lambda: MCPServer.stdio("has space", "python"), "server name"),
        (lambda: MCPServer.stdio("s", "python", env={"A": 1}), "map strings to strings"),  # type: ignore[dict-item]
        (lambda: MCPServer.stdio("s", "python", timeout_s=-1), "timeout_s"),
        (lambda: MCPTools([kitchen(), kitchen()]), "two MCP servers are named 'ks'"),
    ],
)
def test_server_descriptions_are_checked_when_made(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_importing_looplet_does_not_import_the_sdk() -> None:
    code = (
        "import sys, looplet, looplet.mcp_tools\n"
        "s = looplet.mcp_tools.MCPServer.stdio('x', sys.executable, ['-V'])\n"
        "print('mcp' in sys.modules, 'anyio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what `import mcp` sees when it is not installed
    with pytest.raises(ConfigError, match=r'pip install "looplet\[mcp\]"'):
        MCPTools([kitchen()])


# -- in the loops: several servers, ends of runs ---------------------------------------------------


def two_server_tools(http_url: str) -> tuple[MCPTools, BaseToolRegistry]:
    mcp = MCPTools(
        [kitchen(include=["pid", "add"]), MCPServer.http("web", http_url, prefix="web_", include=["add"])]
    )
    tools = BaseToolRegistry()
    mcp.register(tools)
    register_done_tool(tools)
    return mcp, tools


TWO_SERVER_SCRIPT = [
    call("pid"),
    call("add", a=1, b=2),
    call("web_add", a=3, b=4),
    call("done", answer="3 and 7"),
]


def test_two_servers_in_one_sync_run_then_everything_is_closed(http_url: str) -> None:
    mcp, tools = two_server_tools(http_url)
    loop = composable_loop(MockLLMBackend(TWO_SERVER_SCRIPT), task=TASK, tools=tools, hooks=[mcp])
    steps = list(loop)
    pid = steps[0].tool_result.data["result"]
    assert [s.tool_result.data for s in steps[1:3]] == [{"total": 3, "terms": 2}, {"total": 7, "terms": 2}]
    assert loop.result is not None and loop.result.stop_reason == "done"
    assert (mcp.open_servers, alive(pid), threads_of(mcp)) == ([], False, [])


def test_two_servers_in_one_async_run_then_everything_is_closed(http_url: str) -> None:
    mcp, tools = two_server_tools(http_url)

    async def main() -> tuple[list[Any], list[asyncio.Task[Any]]]:
        loop = async_composable_loop(MockLLMBackend(TWO_SERVER_SCRIPT), task=TASK, tools=tools, hooks=[mcp])
        steps = [step async for step in loop]
        return steps, [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    steps, pending = asyncio.run(main())
    pid = steps[0].tool_result.data["result"]
    assert [s.tool_result.data for s in steps[1:3]] == [{"total": 3, "terms": 2}, {"total": 7, "terms": 2}]
    assert (mcp.open_servers, alive(pid), threads_of(mcp), pending) == ([], False, [], [])


def test_one_mcp_tools_serves_runs_one_after_the_other(http_url: str) -> None:
    mcp, tools = two_server_tools(http_url)
    pids = []
    for _ in range(2):
        steps = list(composable_loop(MockLLMBackend(TWO_SERVER_SCRIPT), task=TASK, tools=tools, hooks=[mcp]))
        pids.append(steps[0].tool_result.data["result"])
        assert steps[-1].tool_call.tool == "done"
    assert pids[0] != pids[1]  # the second run started the server again
    assert not any(alive(p) for p in pids) and mcp.open_servers == []


def test_break_out_of_the_loop_closes_the_sessions() -> None:
    mcp = MCPTools([kitchen(include=["pid"])])
    tools = BaseToolRegistry()
    mcp.register(tools)
    script = [call("pid"), call("pid"), call("pid")]
    with composable_loop(MockLLMBackend(script), task=TASK, tools=tools, hooks=[mcp]) as loop:
        for step in loop:
            pid = step.tool_result.data["result"]
            break
        assert alive(pid)  # still open: the run is only suspended here
    assert (alive(pid), mcp.open_servers, threads_of(mcp)) == (False, [], [])


def test_a_break_then_reading_the_result_closes_the_sessions() -> None:
    mcp = MCPTools([kitchen(include=["pid"])])
    tools = BaseToolRegistry()
    mcp.register(tools)
    loop = composable_loop(MockLLMBackend([call("pid"), call("pid")]), task=TASK, tools=tools, hooks=[mcp])
    for step in loop:
        pid = step.tool_result.data["result"]
        break
    assert loop.result is not None and loop.result.stop_reason == "cancelled"
    assert (alive(pid), mcp.open_servers) == (False, [])


def test_an_exception_in_the_callers_code_closes_the_sessions() -> None:
    mcp = MCPTools([kitchen(include=["pid"])])
    tools = BaseToolRegistry()
    mcp.register(tools)
    pid = 0
    with pytest.raises(KeyError):
        with composable_loop(
            MockLLMBackend([call("pid"), call("pid")]), task=TASK, tools=tools, hooks=[mcp]
        ) as loop:
            for step in loop:
                pid = step.tool_result.data["result"]
                raise KeyError("the caller's own bug")
    assert (alive(pid), mcp.open_servers, threads_of(mcp)) == (False, [], [])


def test_cancelling_the_async_run_mid_call_leaves_no_process_and_no_task(tmp_path: Path) -> None:
    marker = tmp_path / "arrived"
    mcp = MCPTools([kitchen(include=["pid", "wait"])])
    tools = BaseToolRegistry()
    script = [call("pid"), call("wait", seconds=600, marker=str(marker)), call("pid")]
    seen: list[Any] = []

    async def main() -> list[asyncio.Task[Any]]:
        await mcp.aregister(tools)
        loop = async_composable_loop(MockLLMBackend(script), task=TASK, tools=tools, hooks=[mcp])

        async def consume() -> None:
            async for step in loop:
                seen.append(step)

        task = asyncio.create_task(consume())
        for _ in range(3000):  # until the server has the call
            if marker.exists():
                break
            await asyncio.sleep(0.01)
        assert marker.exists()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    pending = asyncio.run(main())
    pid = seen[0].tool_result.data["result"]
    assert int(marker.read_text()) == pid and len(seen) == 1
    assert (alive(pid), mcp.open_servers, threads_of(mcp), pending) == (False, [], [], [])


def test_a_server_killed_mid_call_is_an_error_then_the_next_call_starts_it_again(tmp_path: Path) -> None:
    marker = tmp_path / "arrived"
    mcp = MCPTools([kitchen(include=["pid", "wait"])])
    tools = BaseToolRegistry()
    mcp.register(tools)
    register_done_tool(tools)
    first_pid = run(tools, "pid").data["result"]

    def kill_when_the_call_arrives() -> None:
        wait_for_file(marker)
        os.kill(first_pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_the_call_arrives)
    killer.start()
    script = [call("wait", seconds=600, marker=str(marker)), call("pid"), call("done", answer="ok")]
    steps = list(composable_loop(MockLLMBackend(script), task=TASK, tools=tools, hooks=[mcp]))
    killer.join()
    lost = steps[0].tool_result
    assert lost.error is not None and lost.error_kind == "execution"
    assert lost.error.startswith(
        "MCPConnectionError: the connection to the MCP server 'ks' closed while wait ran"
    )
    assert "The next call starts it again" in lost.error
    second_pid = steps[1].tool_result.data["result"]
    assert second_pid != first_pid
    assert steps[2].tool_call.tool == "done"
    assert (alive(first_pid), alive(second_pid), mcp.open_servers) == (False, False, [])


def test_a_server_killed_mid_call_in_the_async_loop(tmp_path: Path) -> None:
    marker = tmp_path / "arrived"
    mcp = MCPTools([kitchen(include=["pid", "wait"])])
    tools = BaseToolRegistry()
    script = [call("pid"), call("wait", seconds=600, marker=str(marker)), call("pid")]

    async def main() -> list[Any]:
        await mcp.aregister(tools)
        steps: list[Any] = []
        async for step in async_composable_loop(
            MockLLMBackend(script), task=TASK, tools=tools, hooks=[mcp], max_steps=3
        ):
            steps.append(step)
            if step.number == 1:
                pid = step.tool_result.data["result"]
                asyncio.get_running_loop().run_in_executor(None, _kill_on_arrival, marker, pid)
        return steps

    steps = asyncio.run(main())
    first_pid = steps[0].tool_result.data["result"]
    assert steps[1].tool_result.error.startswith("MCPConnectionError: ")
    second_pid = steps[2].tool_result.data["result"]
    assert second_pid != first_pid
    assert (alive(first_pid), alive(second_pid), mcp.open_servers, threads_of(mcp)) == (False, False, [], [])


def _kill_on_arrival(marker: Path, pid: int) -> None:
    wait_for_file(marker)
    os.kill(pid, signal.SIGKILL)


def test_the_hook_awaits_the_close_in_the_async_loop_and_blocks_elsewhere() -> None:
    mcp = MCPTools([kitchen(include=["pid"])])
    tools = BaseToolRegistry()

    async def main() -> tuple[bool, list[str], list[str]]:
        await mcp.aregister(tools)
        pid_tool = tools.get("pid")
        assert pid_tool is not None
        await pid_tool.fn()  # a call awaited on this loop, as async_composable_loop does
        ending = mcp.on_loop_end(None, None, None, None)
        before = mcp.open_servers
        assert inspect.isawaitable(ending)
        await ending
        return True, before, mcp.open_servers

    assert asyncio.run(main()) == (True, ["ks"], [])
    assert run(tools, "pid").ok  # opens again, from plain code
    assert mcp.on_loop_end(None, None, None, None) is None
    assert (mcp.open_servers, threads_of(mcp)) == ([], [])


def test_a_server_that_never_answers_the_handshake_times_out_and_is_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # Reads its stdin to the end and never answers (it ends when its stdin closes).
    silent = "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); sys.stdin.read()"
    mcp = MCPTools(
        [MCPServer.stdio("mute", sys.executable, ["-c", silent, str(pidfile)], connect_timeout_s=0.5)]
    )
    with pytest.raises(MCPConnectionError, match="'mute' did not answer within 0.5s"):
        mcp.register(BaseToolRegistry())
    assert (alive(int(pidfile.read_text())), mcp.open_servers, threads_of(mcp)) == (False, [], [])


def test_an_unreachable_http_server_is_named_with_its_url() -> None:
    with socket.socket() as probe:  # a port that nothing listens on: bound here, never listened to
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/mcp"

        async def main() -> None:
            async with MCPTools([MCPServer.http("away", url)]) as mcp:
                with pytest.raises(
                    MCPConnectionError, match=f"could not reach the MCP server 'away' at {url}"
                ):
                    await mcp.aregister(BaseToolRegistry())

        asyncio.run(main())
