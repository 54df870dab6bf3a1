"""Local serving under load: bounded queues, batched decoding without cross-talk, token streaming."""

from __future__ import annotations

import functools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations

import jsonschema
import pytest

from protege.models.errors import QueueFullError
from protege.models.queueing import ServingQueue
from tests.models_support import random_lora, require_local_extra, smollm2_path

CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
        "additionalProperties": False}


def test_the_queue_admits_slots_plus_max_queue_then_refuses_with_a_retry_time():
    queue = ServingQueue("m", slots=2, max_queue=1)
    tickets = [queue.admit() for _ in range(3)]
    with pytest.raises(QueueFullError) as refused:
        queue.admit()
    assert refused.value.status == 429 and refused.value.retry_after_s >= 1
    assert "max_queue = 1" in refused.value.message and queue.describe()["refused"] == 1
    tickets[0].start()
    tickets[1].start()
    assert queue.estimated_wait_s() == pytest.approx(1.0)  # 2 ahead of a new one, 2 slots, 1 s assumed each
    time.sleep(0.05)
    tickets[0].release()
    tickets[0].release()  # idempotent: a slot is freed once
    assert (queue.running, queue.waiting) == (1, 1) and 0.04 < queue.service_s < 1.0
    assert queue.estimated_wait_s() == pytest.approx(queue.service_s / 2)
    tickets[2].release()  # released before it started: leaves the waiting line
    tickets[1].release()
    assert (queue.running, queue.waiting) == (0, 0) and queue.estimated_wait_s() == 0.0
    with pytest.raises(ValueError, match="max_queue"):
        ServingQueue("m", slots=0)


@functools.lru_cache(maxsize=1)
def batched_runtime():
    """SmolLM2 decoding 4 sequences per batch, with two random LoRA adapters loaded at 4x scale (so each
    answers differently from the base and from the other from the first token)."""
    require_local_extra()
    from protege.models.llamacpp import LlamaCppRuntime

    runtime = LlamaCppRuntime(smollm2_path(), model_id="smollm2-135m", n_ctx=512, n_threads=1, parallel=4,
                              max_queue=16)
    runtime.load_adapter("a", random_lora(1)[1], scale=4.0)
    runtime.load_adapter("b", random_lora(2)[1], scale=4.0)
    return runtime


def _request(i: int, **extra) -> dict:
    return {"messages": [{"role": "user", "content": f"Say something about the number {i}."}], "max_tokens": 12,
            "temperature": 0, **extra}


def test_concurrent_requests_to_different_adapters_each_get_their_own_answer():
    runtime = batched_runtime()
    json_request = _request(3, max_tokens=30, messages=[{"role": "user", "content": "The capital of Italy, as JSON."}],
                            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": CITY}})
    jobs = [(_request(1), None), (_request(1), "a"), (_request(1), "b"), (_request(2), "a"), (_request(2), "a"),
            (_request(5), None), (json_request, "b"), (json_request, None)]

    def answer(job):
        request, adapter = job
        return runtime.complete(request, adapter=adapter)["choices"][0]["message"]["content"]

    alone = [answer(job) for job in jobs]  # one at a time
    assert all(_shared_prefix(x, y) < 6 for x, y in combinations(alone[:3], 2))  # adapters change it at once
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(answer, jobs))  # 8 requests, 4 slots: batched, and some wait
    # Each caller gets its own answer: it follows its own sequential answer, not another request's or adapter's.
    # (Not always to the last token: llama.cpp rounds differently for other batch sizes, so a near-tie token
    # late in an answer may flip; cross-talk shows from the first token.)
    for i, got in enumerate(together):
        own = _shared_prefix(got, alone[i])
        assert own >= min(len(alone[i]), 12), (got, alone[i])
        assert all(own > _shared_prefix(got, other) for j, other in enumerate(alone) if jobs[j] != jobs[i]
                   and _shared_prefix(alone[i], other) < own), (got, alone)
    for text in (together[6], together[7]):
        jsonschema.validate(json.loads(text), CITY)  # the grammar held per sequence inside the batch
    assert runtime.queue.describe()["running"] == 0 and runtime.queue.waiting == 0


def _shared_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def test_a_batched_stream_sends_tokens_while_decoding_and_reassembles_to_the_answer():
    runtime = batched_runtime()
    request = {"messages": [{"role": "user", "content": "Count from 1 to 60, separated by commas."}],
               "max_tokens": 80, "temperature": 0}
    expected = runtime.complete(request)["choices"][0]["message"]["content"]
    chunks, still_decoding = [], None
    for chunk in runtime.stream(request):
        if still_decoding is None and chunk["choices"][0]["delta"].get("content"):
            still_decoding = runtime.queue.running == 1  # the first token arrived before the answer was done
        chunks.append(chunk)
    assert still_decoding
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == expected
    assert chunks[-1]["usage"]["completion_tokens"] > 10


def test_a_stream_dropped_midway_frees_its_slot():
    runtime = batched_runtime()
    stream = runtime.stream({"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 400})
    next(stream), next(stream)
    stream.close()
    deadline = time.time() + 10
    while runtime.queue.running and time.time() < deadline:
        time.sleep(0.02)
    assert runtime.queue.running == 0  # not decoded to 400 tokens for nobody


def test_an_unloaded_adapter_is_refused_not_served_by_the_base():
    runtime = batched_runtime()
    from protege.models.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not loaded"):
        runtime.complete(_request(1), adapter="missing")
