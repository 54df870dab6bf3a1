"""The OpenAI chat-completions wire format: server-sent events, stream reassembly, error bodies."""

from __future__ import annotations

from typing import Any

import orjson


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> dict:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _event_data(block: bytes) -> bytes:
    """The data of one server-sent event (its `data:` lines joined)."""
    return b"\n".join(line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:"))


class SSEEvents:
    """Cuts a byte stream into server-sent events as they complete, wherever the chunks happen to split:
    `feed(chunk)` returns the data of every event the chunk finished."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *blocks, self._pending = (self._pending + chunk).replace(b"\r\n", b"\n").split(b"\n\n")
        return [data for block in blocks if (data := _event_data(block))]


def iter_sse_data(raw: bytes) -> list[dict]:
    """The JSON payloads of a complete server-sent-event stream, up to `data: [DONE]`."""
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = _event_data(block)
        if not data:
            continue
        if data == b"[DONE]":
            break
        try:
            events.append(orjson.loads(data))
        except orjson.JSONDecodeError:
            continue  # a keep-alive or a non-JSON comment line
    return events


def reassemble_chat_stream(chunks: list[dict]) -> dict[str, Any]:
    """Rebuild the `chat.completion` a non-streamed call would have returned from its chunks.

    Content, refusals and tool-call deltas (name and argument fragments, by index) are
    concatenated per choice; usage comes from the final chunk when the upstream sends it.
    """
    out: dict[str, Any] = {"object": "chat.completion", "choices": []}
    choices: dict[int, dict] = {}
    for chunk in chunks:
        if "error" in chunk and not chunk.get("choices"):
            out["error"] = chunk["error"]
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None and key not in out:
                out[key] = chunk[key]
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for ch in chunk.get("choices") or []:
            c = choices.setdefault(
                ch.get("index", 0),
                {"index": ch.get("index", 0), "message": {"role": "assistant", "content": None}, "finish_reason": None},
            )
            delta, msg = ch.get("delta") or {}, c["message"]
            if delta.get("role"):
                msg["role"] = delta["role"]
            for key in ("content", "refusal", "reasoning_content"):
                if delta.get(key):
                    msg[key] = (msg.get(key) or "") + delta[key]
            for tc in delta.get("tool_calls") or []:
                calls = msg.setdefault("tool_calls", [])
                idx = tc.get("index", len(calls))
                while len(calls) <= idx:
                    calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                call, fn = calls[idx], tc.get("function") or {}
                call["id"] = tc.get("id") or call["id"]
                call["type"] = tc.get("type") or call["type"]
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            if ch.get("logprobs") and ch["logprobs"].get("content"):
                c.setdefault("logprobs", {"content": []})["content"].extend(ch["logprobs"]["content"])
            if ch.get("finish_reason"):
                c["finish_reason"] = ch["finish_reason"]
    out["choices"] = [choices[i] for i in sorted(choices)]
    return out
