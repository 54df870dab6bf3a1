"""Served through the gateway, a local model's call is logged with served-by and zero upstream cost."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import jsonschema
import pytest

from tests.models_support import require_local_extra

require_local_extra()
pytest.importorskip("starlette", reason="needs protege[serve]")


def test_a_local_model_is_served_and_logged_at_machine_cost(tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from protege.config import Settings
    from protege.gateway.app import create_app
    from protege.models.serving import LocalModelPool
    from protege.pricing import local_cost
    from protege.store.base import open_store

    monkeypatch.setenv("PROTEGE_HOME", str(tmp_path / "home"))
    settings = Settings(database=str(tmp_path / "calls.db"), spool_dir=str(tmp_path / "spool"))
    pool = LocalModelPool(models=["smollm2-135m"], runtime_options={"n_ctx": 1024, "n_threads": 1})
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"], "additionalProperties": False}
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Name the capital of Italy."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
            "max_tokens": 30}
    with TestClient(create_app(settings, local_models=pool)) as client:
        assert "smollm2-135m" in {m["id"] for m in client.get("/v1/models").json()["data"]}
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        jsonschema.validate(json.loads(answer["choices"][0]["message"]["content"]), schema)
        call_id = resp.headers["x-protege-call-id"]
        refused = client.post("/v1/chat/completions", json={**body, "response_format": {
            "type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "array", "uniqueItems": True}}}})
        assert refused.status_code == 400 and "uniqueItems" in refused.json()["error"]["message"]
        endless = {"type": "object", "properties": {"head": {"$ref": "#/$defs/node"}}, "required": ["head"],
                   "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}},
                                      "required": ["next"]}}}  # a list that must never end: no value satisfies it
        unsatisfiable = client.post("/v1/chat/completions", json={**body, "response_format": {
            "type": "json_schema", "json_schema": {"name": "c", "schema": endless}}})
        assert unsatisfiable.status_code == 400 and "can never be satisfied" in unsatisfiable.json()["error"]["message"]
    pool.close()
    with open_store(settings.database) as store:
        record = store.get_call(call_id)
    assert record is not None and record.served_by == "local:smollm2-135m"
    assert record.cost_usd == local_cost(record.latency_ms) > 0 and record.status == 200  # machine time, not free
    assert record.completion_tokens == answer["usage"]["completion_tokens"] > 0
    assert record.response["choices"][0]["message"]["content"] == answer["choices"][0]["message"]["content"]


def _gateway_settings(tmp_path, monkeypatch):
    from protege.config import Settings

    monkeypatch.setenv("PROTEGE_HOME", str(tmp_path / "home"))
    return Settings(database=str(tmp_path / "calls.db"), spool_dir=str(tmp_path / "spool"))


COUNT = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Count from 1 to 60, separated by commas."}],
         "max_tokens": 60}


def test_a_full_local_queue_answers_429_with_retry_after_at_once(tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from protege.gateway.app import create_app
    from protege.models.serving import LocalModelPool
    from protege.store.base import open_store

    settings = _gateway_settings(tmp_path, monkeypatch)
    pool = LocalModelPool(models=["smollm2-135m"], runtime_options={"n_ctx": 1024, "n_threads": 1},
                          llama_options={"parallel": 1, "max_queue": 0})
    with TestClient(create_app(settings, local_models=pool)) as client:
        held = pool.resolve("smollm2-135m").stream(COUNT)
        next(held), next(held)  # the only decode slot is taken by a stream that is not read on
        refused = [client.post("/v1/chat/completions", json=COUNT | extra) for extra in ({}, {"stream": True})]
        for resp in refused:
            assert resp.status_code == 429, resp.text
            assert int(resp.headers["retry-after"]) >= 1
            error = resp.json()["error"]
            assert error["code"] == "queue_full" and "max_queue" in error["message"]
        assert client.get("/health").json()["local_queues"]["smollm2-135m"]["refused"] == 2
        held.close()  # the slot is free again
        assert client.post("/v1/chat/completions", json=COUNT | {"max_tokens": 4}).status_code == 200
    pool.close()
    with open_store(settings.database) as store:
        record = store.get_call(refused[0].headers["x-protege-call-id"])
    assert record.status == 429 and "busy" in record.error


@contextlib.contextmanager
def serve_in_thread(app):
    """The app on a real uvicorn server on 127.0.0.1, in a thread of this process."""
    import uvicorn

    from protege.demo import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "the test gateway did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_local_stream_sends_tokens_as_decoded_and_logs_the_whole_call(tmp_path, monkeypatch):
    import httpx

    from protege.gateway.app import create_app
    from protege.models.serving import LocalModelPool
    from protege.store.base import open_store

    settings = _gateway_settings(tmp_path, monkeypatch)
    pool = LocalModelPool(models=["smollm2-135m"], runtime_options={"n_ctx": 1024, "n_threads": 1},
                          llama_options={"parallel": 2})
    runtime = pool.resolve("smollm2-135m")
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    constrained = COUNT | {"messages": [{"role": "user", "content": "Name the capital of Italy."}], "max_tokens": 30,
                           "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}}
    streams = []
    with serve_in_thread(create_app(settings, local_models=pool)) as base:
        for body in (COUNT, constrained):
            chunks, decoding_at_first_token = [], None
            with httpx.stream("POST", base + "/v1/chat/completions", json=body | {"stream": True}, timeout=120) as resp:
                assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
                events = []
                for line in resp.iter_lines():
                    if line:
                        events.append(line)
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if decoding_at_first_token is None and chunk["choices"][0]["delta"].get("content"):
                        decoding_at_first_token = runtime.queue.running == 1
                    chunks.append(chunk)
                assert events[-1] == "data: [DONE]"
            streams.append((resp.headers["x-protege-call-id"], chunks, decoding_at_first_token))
    pool.close()
    assert streams[0][2]  # the first token reached the caller while the model was still decoding the rest
    with open_store(settings.database) as store:
        for call_id, chunks, _ in streams:
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            record = store.get_call(call_id)
            assert record.status == 200 and record.served_by == "local:smollm2-135m" and record.stream
            assert record.response["choices"][0]["message"]["content"] == text
            assert record.response["choices"][0]["finish_reason"] == chunks[-1]["choices"][0]["finish_reason"]
            assert record.completion_tokens == chunks[-1]["usage"]["completion_tokens"] > 0
            assert 0 < record.ttft_ms < record.latency_ms
    jsonschema.validate(json.loads("".join(c["choices"][0]["delta"].get("content") or "" for c in streams[1][1])),
                        schema)
