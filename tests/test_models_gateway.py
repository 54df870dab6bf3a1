"""Served through the gateway, a local model's call is logged with served-by and zero upstream cost."""

from __future__ import annotations

import json

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
