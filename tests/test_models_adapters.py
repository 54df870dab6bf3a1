"""Conversion GGUF -> transformers, PEFT LoRA -> GGUF LoRA, and adapters switched per request on one base."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from tests.models_support import random_lora, require_local_extra, smollm2_runtime, smollm2_transformers_dir
from protege.models.errors import ModelFileError, ModelNotFoundError

pytestmark = pytest.mark.slow  # converts SmolLM2 to transformers once (~15-30 s on 2 cores)

require_local_extra()
torch = pytest.importorskip("torch", reason="needs protege[train]")
pytest.importorskip("peft", reason="needs protege[train]")

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a haiku about rain.<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox",
]


def test_gguf_converts_to_a_savable_trainable_transformers_model():
    from transformers import AutoModelForCausalLM

    folder = smollm2_transformers_dir()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    assert not getattr(model, "is_quantized", False)
    ids = torch.tensor([[1, 4093, 198, 1780, 314]])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_exported_adapter_changes_llamacpp_like_it_changes_transformers():
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    peft_dir, gguf_file = random_lora(1)
    runtime = smollm2_runtime()
    runtime.load_adapter("t-export", gguf_file)
    try:
        base = AutoModelForCausalLM.from_pretrained(str(smollm2_transformers_dir()), dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(peft_dir)).eval()
        changed = 0
        for prompt in PROMPTS:
            ids = torch.tensor([runtime.tokenize(prompt)])
            with torch.no_grad():
                hf_adapted = model(input_ids=ids).logits[0, -1].numpy()
                with model.disable_adapter():
                    hf_base = model(input_ids=ids).logits[0, -1].numpy()
            cpp_adapted = runtime.next_token_logits(prompt, "t-export")
            cpp_base = runtime.next_token_logits(prompt, None)
            # the adapter moves llama.cpp's logits in the same direction and by a similar amount
            assert np.corrcoef(hf_adapted - hf_base, cpp_adapted - cpp_base)[0, 1] > 0.95
            ratio = np.linalg.norm(cpp_adapted - cpp_base) / np.linalg.norm(hf_adapted - hf_base)
            assert 0.7 < ratio < 1.4
            # and picks the same likely next tokens (llama.cpp computes on the quantised weights: allow ties)
            top_hf, top_cpp = set(np.argsort(-hf_adapted)[:5]), set(np.argsort(-cpp_adapted)[:5])
            assert int(hf_adapted.argmax()) in top_cpp and len(top_hf & top_cpp) >= 3
            changed += int(hf_adapted.argmax() != hf_base.argmax())
        assert changed >= 1, "the random adapter should change at least one greedy next token"
    finally:
        runtime.unload_adapter("t-export")


def test_two_adapters_on_one_base_answer_differently_per_request():
    runtime = smollm2_runtime()
    runtime.load_adapter("t-a", random_lora(1)[1])
    runtime.load_adapter("t-b", random_lora(2)[1])
    request = {"messages": [{"role": "user", "content": "Name three fruits."}], "max_tokens": 12}
    try:
        def answer(adapter):
            return runtime.complete(request, adapter=adapter)["choices"][0]["message"]["content"]

        base1, a1, b1, a2, base2 = answer(None), answer("t-a"), answer("t-b"), answer("t-a"), answer(None)
        assert len({base1, a1, b1}) == 3
        assert a1 == a2 and base1 == base2  # switching back and forth is clean (no stale KV cache)
        assert runtime.with_adapter("t-b").complete(request)["model"] == "smollm2-135m:t-b"
    finally:
        runtime.unload_adapter("t-a")
        runtime.unload_adapter("t-b")
    with pytest.raises(ModelNotFoundError):
        runtime.complete(request, adapter="t-a")
    assert runtime.complete(request)["choices"][0]["message"]["content"] == base1


def test_a_corrupt_or_missing_adapter_names_the_file(tmp_path):
    runtime = smollm2_runtime()
    with pytest.raises(ModelFileError, match="does not exist"):
        runtime.load_adapter("x", tmp_path / "missing.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 50)
    with pytest.raises(ModelFileError, match=str(broken)):
        runtime.load_adapter("x", broken)
    assert "x" not in runtime.adapter_names()


def test_transformers_runtime_serves_constrained_outputs_with_adapters():
    from protege.models.hf import TransformersRuntime

    peft_dir, _ = random_lora(2)
    runtime = TransformersRuntime(smollm2_transformers_dir(), model_id="smollm2-hf", adapters={"b": peft_dir})
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                               "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
              "required": ["answer", "confidence"], "additionalProperties": False}
    request = {"messages": [{"role": "user", "content": "Is the sky blue?"}], "max_tokens": 40,
               "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}
    for adapter in (None, "b"):
        response = runtime.complete(request, adapter=adapter)
        jsonschema.validate(json.loads(response["choices"][0]["message"]["content"]), schema)
    plain = {"messages": [{"role": "user", "content": "Name three fruits."}], "max_tokens": 12}
    assert runtime.complete(plain)["choices"][0]["message"]["content"] != \
        runtime.complete(plain, adapter="b")["choices"][0]["message"]["content"]
