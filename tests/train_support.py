"""Real parts for the training and evaluation tests: a tiny Llama with its own tokenizer, and a small task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

LABELS = ["billing", "shipping", "technical", "account"]
WORDS = {
    "billing": ["refund", "invoice", "charge", "price"],
    "shipping": ["parcel", "delivery", "courier", "tracking"],
    "technical": ["crash", "error", "bug", "timeout"],
    "account": ["password", "login", "profile", "email"],
}
SYSTEM = ("You are the triage step of a support pipeline. Classify the ticket into one queue. "
          "Labels: billing, shipping, technical, account. Respond with the label only.")


def triage_rows(n: int, seed: int = 0) -> list[dict]:
    """Demo-trace lines of a small label task: one keyword decides the label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        word = rng.choice(WORDS[label])
        filler = rng.choice(["hello", "please help", "thanks", "urgent", "hi team"])
        request = {"model": "gpt-4o", "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Ticket {i}: {filler}, my {word} is a problem."}]}
        response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": label},
                                 "finish_reason": "stop"}]}
        rows.append({"id": f"t{i:04d}", "request": request, "response": response,
                     "metadata": {"task": "triage", "latency_ms": 400.0 + i % 7, "cost_usd": 0.0002}})
    return rows


def tool_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                              "days": {"type": "integer"}},
                             "required": ["city"]}}}]
    rows = []
    for i in range(n):
        city = rng.choice(["Paris", "Rome", "Oslo", "Lima"])
        days = rng.randint(1, 5)
        request = {"model": "gpt-4o", "tools": tools, "messages": [
            {"role": "user", "content": f"Weather in {city} for {days} days?"}]}
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city, "days": days})}}
        response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                         "tool_calls": [call]}, "finish_reason": "tool_calls"}]}
        rows.append({"id": f"w{i:04d}", "request": request, "response": response, "metadata": {"task": "weather"}})
    return rows


def build_tiny_llama(folder: Path) -> Path:
    """A 2-layer randomly initialised Llama and a byte-level BPE tokenizer with ChatML tokens, saved as a
    transformers folder (what `protege.specialist.base.load_base` accepts)."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from protege.models.prompting import CHATML

    corpus = [json.dumps(r) for r in triage_rows(64) + tool_rows(32)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                                eos_token="<|im_end|>", pad_token="<|im_end|>",
                                                unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    import torch

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=512, tie_word_embeddings=True,
                                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                                      pad_token_id=fast.pad_token_id)
    model = transformers.LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder
