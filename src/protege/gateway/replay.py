"""A replay upstream: an OpenAI-compatible server that answers with recorded responses.

It stands in for a frontier LLM in the demo, the tests and the benchmarks (`protege replay
TRACES.jsonl`). A request is matched to a recorded one by its model, messages, tools and
response format; streaming requests get the recorded answer cut into chunks the way OpenAI
streams it (content by words, tool-call arguments in fragments, usage on request).

Fault injection for tests, by request header: `x-replay-status: 503` answers with that error;
`x-replay-delay-ms: 200` waits first; `x-replay-flaky: TOKEN:K` fails the first K requests
carrying TOKEN with 503; `x-replay-break-after: N` drops the connection after N stream chunks.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from protege.openai_format import error_body

MATCH_FIELDS = ("model", "messages", "tools", "response_format")


def request_key(request: dict) -> str:
    """The identity of a request for replay: a hash of the fields that decide the answer."""
    blob = orjson.dumps({k: request.get(k) for k in MATCH_FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def _messages_key(request: dict) -> str:
    return hashlib.sha256(orjson.dumps(request.get("messages"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def read_jsonl(path: str | Path) -> Iterable[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


class Recordings:
    """Recorded request/response pairs, looked up exactly, then by messages alone."""

    def __init__(self, pairs: Iterable[dict] = ()):
        self.exact: dict[str, dict] = {}
        self.by_messages: dict[str, dict] = {}
        for pair in pairs:
            self.add(pair["request"], pair["response"])

    @classmethod
    def from_files(cls, *paths: str | Path) -> Recordings:
        rec = cls()
        for path in paths:
            for pair in read_jsonl(path):
                if isinstance(pair.get("response"), dict):
                    rec.add(pair["request"], pair["response"])
        return rec

    def add(self, request: dict, response: dict) -> None:
        self.exact[request_key(request)] = response
        self.by_messages.setdefault(_messages_key(request), response)

    def find(self, request: dict) -> dict | None:
        return self.exact.get(request_key(request)) or self.by_messages.get(_messages_key(request))

    def __len__(self) -> int:
        return len(self.exact)


def stream_chunks(response: dict, include_usage: bool = False) -> list[dict]:
    """Cut a `chat.completion` into the `chat.completion.chunk`s OpenAI would have streamed."""
    base = {"id": response.get("id", "chatcmpl-replay"), "object": "chat.completion.chunk",
            "created": response.get("created", int(time.time())), "model": response.get("model")}
    chunks = []
    for choice in response.get("choices", []):
        idx, msg = choice.get("index", 0), choice.get("message") or {}

        def chunk(delta: dict, finish: str | None = None, idx: int = idx) -> dict:
            return base | {"choices": [{"index": idx, "delta": delta, "finish_reason": finish}]}

        chunks.append(chunk({"role": "assistant", "content": ""}))
        words = (msg.get("content") or "").split(" ")
        if msg.get("content"):
            chunks.extend(chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words))
        for t, tc in enumerate(msg.get("tool_calls") or []):
            fn = tc.get("function", {})
            chunks.append(chunk({"tool_calls": [{"index": t, "id": tc.get("id"), "type": "function",
                                                 "function": {"name": fn.get("name"), "arguments": ""}}]}))
            args = fn.get("arguments") or ""
            for i in range(0, len(args), 12):
                chunks.append(chunk({"tool_calls": [{"index": t, "function": {"arguments": args[i:i + 12]}}]}))
        chunks.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage and response.get("usage"):
        chunks.append(base | {"choices": [], "usage": response["usage"]})
    return chunks


def create_replay_app(recordings: Recordings) -> Starlette:
    flaky: Counter[str] = Counter()

    async def chat(request: Request) -> Response:
        h = request.headers
        if "x-replay-delay-ms" in h:
            await asyncio.sleep(float(h["x-replay-delay-ms"]) / 1000)
        if "x-replay-status" in h:
            status = int(h["x-replay-status"])
            return JSONResponse(error_body(f"injected error {status}", "server_error", "injected"), status)
        if "x-replay-flaky" in h:
            token, k = h["x-replay-flaky"].rsplit(":", 1)
            flaky[token] += 1
            if flaky[token] <= int(k):
                return JSONResponse(error_body("injected overload", "server_error", "overloaded"), 503)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse(error_body("invalid JSON body"), 400)
        response = recordings.find(body) if isinstance(body, dict) else None
        if response is None:
            return JSONResponse(error_body("No recorded response matches this request.", code="not_recorded"), 404)
        if not body.get("stream"):
            return Response(orjson.dumps(response), media_type="application/json")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = stream_chunks(response, include_usage)
        break_after = int(h.get("x-replay-break-after", -1))

        async def events():
            for i, c in enumerate(chunks):
                if i == break_after:
                    raise ConnectionAbortedError("injected stream break")
                yield b"data: " + orjson.dumps(c) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        names = sorted({r.get("model") for r in recordings.exact.values() if r.get("model")})
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "replay"} for n in names]})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", lambda r: JSONResponse({"status": "ok", "recordings": len(recordings)}), methods=["GET"]),
    ])
