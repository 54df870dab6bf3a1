"""The drop-in clients log in-process, and the rows match what the gateway logs for the same calls."""

from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

import protege
from protege.openai_format import reassemble_chat_stream
from tests.conftest import recorded_pairs
from tests.test_gateway import stored_calls

COMPARED = ("requested_model", "upstream_model", "stream", "has_tools", "prompt_tokens", "completion_tokens",
            "cost_usd", "status", "error", "workload")


def test_drop_in_client_logs_the_same_rows_as_the_gateway(start_gateway, upstream_url, home):
    gw = start_gateway()
    direct = protege.OpenAI(base_url=upstream_url, api_key="x", workload="agent", max_retries=0)
    proxied = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0, default_headers={"x-protege-workload": "agent"})
    for p in recorded_pairs()[:5]:
        for stream in (False, True):
            req = p["request"] | ({"stream": True, "stream_options": {"include_usage": True}} if stream else {})
            for client in (direct, proxied):
                out = client.chat.completions.create(**req)
                if stream:
                    list(out)
    assert protege.flush(10)
    calls = stored_calls(home, 20)
    mine, theirs = [c for c in calls if c.source == "client"], [c for c in calls if c.source == "gateway"]
    assert len(mine) == len(theirs) == 10
    for a, b in zip(mine, theirs):
        assert {f: getattr(a, f) for f in COMPARED} == {f: getattr(b, f) for f in COMPARED}
        assert a.request == b.request and a.response == b.response
        assert a.served_by.startswith("upstream:") and a.latency_ms > 0


def test_async_client_logs_streams_and_errors(upstream_url, home):
    async def go():
        client = protege.AsyncOpenAI(base_url=upstream_url, api_key="x", workload="async-agent", max_retries=0)
        req = recorded_pairs()[2]["request"]
        stream = await client.chat.completions.create(**req, stream=True)
        chunks = [c async for c in stream]
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(**req, extra_headers={"x-replay-status": "500"})
        await client.close()
        return chunks

    chunks = asyncio.run(go())
    assert chunks
    assert protege.flush(10)
    calls = stored_calls(home, 2)
    ok = next(c for c in calls if c.status == 200)
    bad = next(c for c in calls if c.status == 500)
    assert ok.stream and ok.workload == "async-agent"
    assert ok.response["choices"][0]["message"]["tool_calls"] == recorded_pairs()[2]["response"]["choices"][0]["message"]["tool_calls"]
    assert bad.error == "injected error 500" and bad.response is None


def test_logging_failure_never_breaks_the_call(upstream_url, home, monkeypatch):
    from protege import client as client_module

    def boom(*a, **k):
        raise OSError("disk on fire")

    monkeypatch.setattr(client_module, "_call_log", boom)
    c = protege.OpenAI(base_url=upstream_url, api_key="x", max_retries=0)
    out = c.chat.completions.create(**recorded_pairs()[0]["request"])
    assert out.choices[0].message.content == "billing"


def test_unreachable_upstream_is_logged_and_raised(home):
    c = protege.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert protege.flush(10)
    [call] = stored_calls(home, 1)
    assert call.status == 599 and "request failed" in call.error


def test_user_supplied_http_client_is_wrapped(upstream_url, home):
    c = protege.OpenAI(base_url=upstream_url, api_key="x", http_client=httpx2.Client(timeout=5))
    c.chat.completions.create(**recorded_pairs()[0]["request"])
    assert protege.flush(10)
    assert len(stored_calls(home, 1)) == 1


def test_reassembly_of_interleaved_parallel_tool_call_deltas():
    def chunk(delta, finish=None):
        return {"id": "c1", "model": "m", "created": 1, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": '{"y"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": 1'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": ": 2}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        chunk({}, "tool_calls"),
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ]
    out = reassemble_chat_stream(chunks)
    calls = out["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("a", "f", '{"x": 1}'), ("b", "g", '{"y": 2}')]
    assert out["choices"][0]["finish_reason"] == "tool_calls" and out["usage"]["total_tokens"] == 7
    assert out["choices"][0]["message"]["content"] is None and out["id"] == "c1"
