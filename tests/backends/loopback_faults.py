"""A tiny loopback HTTP server for the faults llmock cannot script.

llmock covers most of group C. This server covers the rest, on raw sockets
so every byte is under the test's control:

- request ids in the provider's header (``x-request-id`` / ``request-id``);
- ``Retry-After`` as whole seconds only, or as an HTTP date;
- a 200 whose body is not JSON, or a JSON body without ``choices``;
- an SSE ``event: error`` (Anthropic) or an error object (OpenAI) after a 200;
- a connection reset (RST, ``SO_LINGER`` 0) after k stream chunks;
- response headers that arrive late (per-attempt timeouts);
- exact bodies for refusals, cached-token usage and error details.

Each request takes the next `Canned` response from the script; every
request is recorded with its arrival time.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Canned:
    """One scripted response.

    Attributes:
        status / headers / body: the response; a dict or list body is sent as JSON.
        chunks: send these instead of `body`, as a chunked (streamed) body.
        chunk_delay: seconds between chunks.
        end: ``"normal"``, ``"rst"`` (reset after the chunks, no terminator),
            or ``"truncate"`` (end the body cleanly right after the chunks).
        delay: seconds to wait before the status line (slow headers).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    chunks: list[bytes] = field(default_factory=list)
    chunk_delay: float = 0.0
    end: str = "normal"
    delay: float = 0.0


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.time() on arrival
    answered_at: float = 0.0  # time.time() when its response was sent


class FaultServer:
    """Serves scripted responses on 127.0.0.1 from a thread; `close()` stops it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self._sock.settimeout(0.05)  # so the accept loop notices close() quickly
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.script: deque[Canned] = deque()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self.answers = 0  # responses sent since the last reset
        self._generation = 0  # bumped by reset(): a slow answer from an earlier test is not counted
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        self._thread.start()

    # -- control -----------------------------------------------------------------

    def queue(self, *responses: Canned) -> FaultServer:
        with self._lock:
            self.script.extend(responses)
        return self

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.seen.clear()
            self.answers = 0
            self._generation += 1

    def wait_for_answers(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` responses were sent in full (False if `timeout` passed first).

        Lets a test act between two attempts (e.g. cancel after the first
        answer) by order of events rather than by sleeping.
        """
        with self._answered:
            return self._answered.wait_for(lambda: self.answers >= count, timeout)

    @property
    def attempts(self) -> int:
        with self._lock:
            return len(self.seen)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._sock.close()

    # -- serving -----------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            seen = self._read_request(conn)
            if seen is None:
                conn.close()
                return
            with self._lock:
                self.seen.append(seen)
                canned = self.script.popleft() if self.script else _unscripted()
                generation = self._generation
            self._respond(conn, canned, seen)
        except OSError:
            conn.close()
            return
        with self._answered:
            if generation == self._generation:
                self.answers += 1
                self._answered.notify_all()

    def _read_request(self, conn: socket.socket) -> Seen | None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return None
            data += piece
        arrived = time.time()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            rest += piece
        try:
            body: Any = json.loads(rest[:length] or b"null")
        except ValueError:
            body = rest[:length]
        return Seen(method, path, headers, body, arrived)

    def _respond(self, conn: socket.socket, canned: Canned, seen: Seen) -> None:
        if canned.delay:
            if self._closed.wait(canned.delay):
                conn.close()
                return
        streamed = bool(canned.chunks)
        body = canned.body
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            content_type = "application/json"
        else:
            payload = body if isinstance(body, bytes) else (body or "").encode()
            content_type = "text/event-stream" if streamed else "application/json"
        headers = {"content-type": content_type, "connection": "close", **canned.headers}
        if streamed:
            headers["transfer-encoding"] = "chunked"
        else:
            headers["content-length"] = str(len(payload))
        head = f"HTTP/1.1 {canned.status} {_reason(canned.status)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        seen.answered_at = time.time()
        conn.sendall(head.encode("latin-1") + (b"" if streamed else payload))
        if streamed:
            for chunk in canned.chunks:
                if canned.chunk_delay and self._closed.wait(canned.chunk_delay):
                    break
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if canned.end == "rst":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            conn.sendall(b"0\r\n\r\n")
        conn.close()


def _unscripted() -> Canned:
    return Canned(500, body={"error": {"message": "the fault server has no response scripted", "type": "x"}})


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# -- bodies in each provider's shape ------------------------------------------------


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def openai_error(
    message: str, *, type: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


def anthropic_error(message: str, *, type: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error}


def openai_completion(
    *,
    text: str | None = None,
    calls: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    finish: str = "stop",
    refusal: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": refusal}
    if calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for cid, name, args in calls
        ]
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 0,
        "model": "fault-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def anthropic_message(
    *,
    text: str = "",
    calls: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    stop: str = "end_turn",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": cid, "name": name, "input": args} for cid, name, args in calls]
    return {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": "fault-model",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 3, "output_tokens": 2},
    }


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "chatcmpl-fault",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fault-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def anthropic_stream_start() -> list[bytes]:
    return [
        sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_fault",
                    "type": "message",
                    "role": "assistant",
                    "model": "fault-model",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 3, "output_tokens": 1},
                },
            },
            "message_start",
        ),
    ]


def anthropic_tool_stream(
    call_id: str, name: str, args: dict[str, Any], stop: str = "tool_use"
) -> list[bytes]:
    """A whole streamed tool_use reply, its arguments in two pieces."""
    raw = json.dumps(args)
    half = len(raw) // 2
    return anthropic_stream_start() + [
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            },
            "content_block_start",
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": raw[:half]},
            },
            "content_block_delta",
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": raw[half:]},
            },
            "content_block_delta",
        ),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 4},
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]


def openai_tool_stream(
    call_id: str, name: str, args: dict[str, Any], finish: str = "tool_calls"
) -> list[bytes]:
    """A whole streamed tool call, its arguments in two pieces, then [DONE]."""
    raw = json.dumps(args)
    half = len(raw) // 2
    start = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return [
        openai_chunk({"role": "assistant", "content": None}),
        openai_chunk({"tool_calls": [start]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[:half]}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[half:]}}]}),
        openai_chunk({}, finish),
        sse("[DONE]"),
    ]
