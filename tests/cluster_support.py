"""Small synthetic agent logs for the curate and cluster tests (the demo traces are the big case)."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

from protege.records import CallRecord

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "src" / "protege" / "data" / "demo_traces.jsonl.gz"

TOPICS = ["the refund process", "a delayed parcel", "password resets", "the new pricing", "a broken charger",
          "shipping to Canada", "a duplicate charge", "the mobile app crash", "gift cards", "account deletion"]
PRODUCTS = ["kettle", "headphones", "desk lamp", "backpack", "blender", "monitor", "keyboard", "tent"]
ONE_OFFS = [
    "Write a limerick about a sleepy otter.", "What is the capital of Mongolia?", "Explain quantum tunnelling simply.",
    "Suggest a name for my sourdough starter.", "How do I fold a fitted sheet?", "Plan a picnic menu for six.",
    "Why do cats purr?", "Give me a pep talk before my exam.", "What rhymes with orange?", "Describe Saturn's rings.",
    "Is a tomato a fruit?", "Recommend a podcast about history.", "How tall is Mount Kilimanjaro?",
    "Tell me a fun fact about octopuses.", "What should I cook with leftover rice?", "Explain the Monty Hall problem.",
    "Draft a birthday message for my boss.", "How do solar panels work?", "Translate 'good luck' into Japanese.",
    "What's a good stretch for lower back pain?",
]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _resp(content=None, tool_calls=None, finish="stop") -> dict:
    msg = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {"object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}


def synthetic_log(n_per_task: int = 40, seed: int = 0) -> list[CallRecord]:
    """Four tasks (two without any system prompt: the template is in the user message) plus one-offs."""
    rng = random.Random(seed)
    out: list[tuple[dict, dict, str]] = []
    for _ in range(n_per_task):
        topic = rng.choice(TOPICS)
        out.append(({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": f"Summarize the following support chat in one sentence.\n\nChat:\nCustomer asked about {topic}. "
                                        f"Agent explained the steps and the customer said {rng.choice(['thanks', 'ok', 'great'])}."}]},
                    _resp(f"The customer asked about {topic} and got an answer."), "summarize"))
        label = rng.choice(["positive", "negative", "neutral"])
        out.append(({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": f"Classify the sentiment of this review as positive, negative or neutral.\nReview: "
                                        f"The {rng.choice(PRODUCTS)} is {rng.choice(['great', 'awful', 'fine', 'ok'])}, "
                                        f"{rng.choice(['would buy again', 'never again', 'it works'])}."}]},
                    _resp(label), "sentiment"))
        city = rng.choice(["Paris", "Lima", "Oslo", "Cairo", "Seoul"])
        out.append(({"model": "gpt-4o", "tools": [WEATHER_TOOL], "messages": [
            {"role": "system", "content": "You are the weather agent. Use get_weather for any weather question."},
            {"role": "user", "content": rng.choice([f"Weather in {city}?", f"Will it rain in {city} tomorrow?", f"How hot is {city} now"])}]},
                    _resp(None, [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]),
                    "weather"))
        product = rng.choice(PRODUCTS)
        out.append(({"model": "gpt-4o", "response_format": {"type": "json_schema", "json_schema": {"name": "product_order", "schema": {
            "type": "object", "properties": {"product": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["product", "qty"]}}},
            "messages": [{"role": "system", "content": "Extract the product and quantity the customer orders as JSON."},
                         {"role": "user", "content": f"Hi, I'd like {rng.randint(1, 9)} of the {product} please."}]},
                    _resp(json.dumps({"product": product, "qty": 2})), "extract"))
    for i, q in enumerate(ONE_OFFS):
        system = rng.choice([None, "You are a helpful assistant."])
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
        out.append(({"model": "gpt-4o", "messages": msgs}, _resp(f"Here is a thoughtful answer number {i}."), "open_ended"))
    rng.shuffle(out)
    return [CallRecord(id=f"c{i:05d}", ts=1_700_000_000 + i * 60, request=req, response=resp, metadata={"task": task})
            for i, (req, resp, task) in enumerate(out)]


def demo_records(limit: int | None = None, tmp_dir: Path | None = None) -> list[CallRecord]:
    """The bundled demo traces (generated into tmp_dir by the committed script when not bundled yet)."""
    path = DEMO
    if not path.exists():
        assert tmp_dir is not None
        path = tmp_dir / "demo_traces.jsonl.gz"
        if not path.exists():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_traces.py"), "--out", str(path)], check=True,
                           capture_output=True)
    out = []
    with gzip.open(path, "rt") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            row = json.loads(line)
            out.append(CallRecord(id=f"d{i:05d}", ts=row["metadata"]["ts"], request=row["request"], response=row["response"],
                                  metadata=row["metadata"]))
    return out
