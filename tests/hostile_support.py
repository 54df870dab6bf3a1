"""A misbehaving upstream and helpers to run gateways against it, for tests written as an attacker would.

`HostileUpstream` is a real HTTP server on 127.0.0.1. By default it answers every chat completion with
a valid completion that echoes the request; a test queues the next replies (`upstream.queue(Reply(...))`)
to make it hang, reset the connection, end a stream with a clean EOF before `[DONE]`, send error bodies
full of PII, or 429 with Retry-After. It records every request it received (`upstream.requests`).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import uvicorn


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict | None = None
    """The whole body (a dict is sent as JSON)."""
    chunks: list[bytes] = field(default_factory=list)
    """Sent one by one with no Content-Length after `body` (a stream that ends when the socket closes)."""
    headers: dict[str, str] = field(default_factory=dict)
    then: str = "close"
    """"close" (clean EOF), "reset" (TCP RST) or "hang" (keep the socket open for 30 s)."""


def completion(text: str, model: str = "gpt-4o-mini") -> dict:
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def sse(*events: dict | str) -> list[bytes]:
    """Server-sent events, one per chunk; a str is sent as raw data (e.g. "[DONE]")."""
    return [b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events]


def delta(text: str, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def echo(request: bytes) -> Reply:
    """The default answer: a completion whose text is the request's last message content as JSON, streamed
    when the request asks for it."""
    try:
        body = orjson.loads(request)
        text = orjson.dumps(body["messages"][-1].get("content")).decode()
    except Exception:  # the gateway forwarded something odd: say so in the answer
        body, text = {}, "unparseable request"
    if body.get("stream") is True:
        return Reply(chunks=sse(delta(text), delta("", "stop"), "[DONE]"))
    return Reply(body=completion(text))


class HostileUpstream:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[tuple[str, dict, bytes]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("content-length") or 0)))

            def _answer(self, raw: bytes) -> None:
                upstream.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, raw))
                reply = upstream.replies.popleft() if upstream.replies else echo(raw)
                body = reply.body
                body = orjson.dumps(body) if isinstance(body, dict) else body or b""
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream" if reply.chunks else "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if not reply.chunks:
                    self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                for chunk in reply.chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(0.01)
                if reply.then == "hang":
                    time.sleep(30)
                elif reply.then == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def completions(self) -> list[bytes]:
        return [raw for path, _, raw in self.requests if path.endswith("/chat/completions")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread of this process."""

    def __init__(self, app) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}/v1"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
