"""Ablation of protege's trainer on the quick benchmark's data: prompt pruning, adapted layers, learning rate.

    .venv/bin/python bench/train_ablation.py        # 4 variants, 48 ticket_triage calls, 2 epochs, 30 held-out

Each variant trains on the same calls as `bench/train.py --quick` and is scored on the same held-out
calls (accuracy with a bootstrap CI, % valid labels). Results: bench/results/train-ablation.json.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {  # name: (prune, adapted layers, learning rate)
    "prune_l8_lr3e-3": (True, 8, 3e-3),
    "noprune_l8_lr1e-3": (False, 8, 1e-3),
    "prune_l16_lr2e-3": (True, 16, 2e-3),
    "noprune_l8_lr3e-3": (False, 8, 3e-3),
}


def main() -> None:
    from train import demo_traces, protege_run

    from protege.evaluate.commands import generation_budget
    from protege.evaluate.harness import RuntimeCandidate, evaluate
    from protege.evaluate.runtimes import specialist_runtime
    from protege.specialist.base import load_base
    from protege.specialist.examples import read_examples, split_examples
    from protege.specialist.format import learn_pruning_rule
    from protege.train.trainer import TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    examples = read_examples(demo_traces(), "ticket_triage")
    rest, test = split_examples(examples, 30 / len(examples), seed=0)
    train_all, val = split_examples(rest[: 48 + 8], 0.1, seed=1)
    train = train_all[:48]
    out: dict = {}
    for name, (prune, layers, lr) in VARIANTS.items():
        base = load_base("smollm2-135m")
        fmt = base.prompt_format("label", learn_pruning_rule([e.request for e in train]) if prune else None)
        cfg = TrainConfig(epochs=2, patience=10, batch_size=8, layers=layers, learning_rate=lr)
        run = protege_run(base.model, base.tokenizer, train, val, fmt, cfg)
        model = run.pop("model")
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            fresh = load_base("smollm2-135m")
            runtime = specialist_runtime(fresh.model, fresh.tokenizer)
            runtime.add_specialist("s", tmp, fmt)
            budget = generation_budget(test, fresh.tokenizer, fmt)
            row = evaluate(test, [RuntimeCandidate(name, runtime, adapter="s", max_tokens=budget)],
                           output_kind="label").rows[0]
        out[name] = {**run, "accuracy": row.headline, "ci": [row.ci_low, row.ci_high], "valid": row.valid_rate,
                     "p50_ms": row.latency_p50_ms}
        print(name, out[name], flush=True)
    path = ROOT / "bench" / "results" / "train-ablation.json"
    path.write_text(json.dumps({"note": "see the machine's load: timings on a shared machine are noisy",
                                "variants": out}, indent=1))


if __name__ == "__main__":
    main()
