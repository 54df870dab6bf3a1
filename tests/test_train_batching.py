"""Length-bucketed batches: budgets respected, every example once, deterministic per seed."""

from __future__ import annotations

import random

from protege.specialist.format import infer_output_kind
from protege.train.data import bucket_batches, epoch_order, fixed_batches


def test_bucketed_batches_cover_every_example_within_the_budget():
    rng = random.Random(1)
    lengths = [rng.randint(5, 300) for _ in range(200)]
    batches = bucket_batches(lengths, batch_tokens=1024, max_batch_size=16, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1024
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    plain = sum(max(lengths[i] for i in b) * len(b) for b in fixed_batches(200, 8, 0))
    assert padded < 0.8 * plain  # far less padding than shuffled fixed-size batches
    assert batches == bucket_batches(lengths, 1024, 16, seed=0)


def test_epoch_order_is_a_seeded_permutation():
    assert sorted(epoch_order(10, 0, 3)) == list(range(10))
    assert epoch_order(10, 0, 3) == epoch_order(10, 0, 3)
    assert epoch_order(10, 0, 3) != epoch_order(10, 0, 4)


def test_output_kind_inference():
    assert infer_output_kind([{"tools": [{"type": "function"}]}], [""]) == "tool_call"
    assert infer_output_kind([{"response_format": {"type": "json_object"}}], ["{}"]) == "json"
    assert infer_output_kind([{}] * 40, ["billing", "shipping", "other", "account"] * 10) == "label"
    assert infer_output_kind([{}] * 10, [f"a long free answer number {i}" for i in range(10)]) == "text"
