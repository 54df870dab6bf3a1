"""Training benchmark: protege's CPU LoRA trainer vs a plain PEFT loop, same data, same model, same epochs.

    .venv/bin/python bench/train.py --quick     # 48 training calls, 2 epochs, no ablations
    .venv/bin/python bench/train.py             # 240 training calls, 2 epochs, with ablations

The plain loop is what a first LoRA script does: LoRA (same rank, alpha, target modules) on every
layer, the full prompt (system prompt and tool/schema descriptions), fixed-size batches padded to
the longest example, `model(input_ids, attention_mask, labels)`, AdamW, the same learning-rate
schedule. protege's trainer uses its defaults: pruned prompts, length-bucketed batches, LoRA on the
top layers with the frozen lower layers cached, logits at target positions only.

Both adapters are then evaluated on the same held-out calls (transformers runtime, greedy,
constrained where the request asks), next to the base model zero-shot and the LLM reference.
Results go to bench/results/train.json with the machine's core count and load average: timings
taken while other jobs run are noisy; compare runs made on the same quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

log = logging.getLogger("bench.train")


def demo_traces() -> Path:
    bundled = ROOT / "src" / "protege" / "data" / "demo_traces.jsonl.gz"
    if bundled.is_file():
        return bundled
    out = Path(tempfile.gettempdir()) / "protege-bench-demo-traces.jsonl.gz"
    if not out.is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_traces.py"), "--out", str(out)], check=True)
    return out


def plain_peft_loop(model, tokenizer, examples, fmt, cfg, batch_size: int) -> dict:
    """The baseline: LoRA on all layers, full prompts, fixed padded batches, full logits."""
    import peft
    import torch

    from protege.train.data import collate, fixed_batches, tokenize_examples
    from protege.train.trainer import lr_at

    torch.manual_seed(cfg.seed)
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    model.train()
    items = tokenize_examples(examples, tokenizer, fmt, cfg.max_length)
    width = max(len(t) for t in items)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    batches = fixed_batches(len(items), batch_size, cfg.seed)
    total = len(batches) * cfg.epochs
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    step, tokens, start = 0, 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        for batch in batches:
            chosen = [items[i] for i in batch]
            ids, predicts = collate(chosen, pad, pad_to=width)
            attention = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for b, it in enumerate(chosen):
                attention[b, : len(it)] = 1
                labels[b, it.n_prompt: len(it)] = ids[b, it.n_prompt: len(it)]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg)
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            tokens += sum(len(t) for t in chosen)
            log.info("plain step %d/%d loss %.4f %.1fs", step, total, loss.item(), time.perf_counter() - start)
    wall = time.perf_counter() - start
    return {"model": model, "steps": step, "wall_s": round(wall, 2), "tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), "padded_width": width}


def protege_run(model, tokenizer, train, val, fmt, cfg) -> dict:
    from protege.train.data import tokenize_examples
    from protege.train.trainer import LoraTrainer

    items = tokenize_examples(train, tokenizer, fmt, cfg.max_length)
    val_items = tokenize_examples(val, tokenizer, fmt, cfg.max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start = time.perf_counter()
    trainer = LoraTrainer(model, items, val_items, cfg, pad_id=pad)
    result = trainer.run()
    wall = time.perf_counter() - start  # includes the activation cache and validation
    return {"model": trainer.model, "steps": result.steps, "wall_s": round(wall, 2),
            "train_loop_s": result.wall_s, "cache_s": result.cache_s, "tokens": result.train_tokens,
            "tokens_per_s": round(result.train_tokens / wall, 1), "best_val_loss": result.best_val_loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--task", default="ticket_triage")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--train", type=int, default=None, help="training examples")
    ap.add_argument("--test", type=int, default=None, help="held-out examples")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    n_train = args.train or (48 if args.quick else 240)
    n_test = args.test or (30 if args.quick else 100)
    epochs = args.epochs or 2

    import torch

    from protege.evaluate.harness import ReferenceCandidate, RuntimeCandidate, evaluate
    from protege.evaluate.runtimes import specialist_runtime
    from protege.specialist.base import load_base
    from protege.specialist.examples import read_examples, split_examples
    from protege.specialist.format import infer_output_kind, learn_pruning_rule, response_message
    from protege.train.trainer import TrainConfig

    examples = read_examples(demo_traces(), args.task)
    rest, test = split_examples(examples, n_test / len(examples), seed=0)
    train_all, val = split_examples(rest[: n_train + max(8, n_train // 10)], 0.1, seed=1)
    train = train_all[:n_train]
    kind = infer_output_kind([e.request for e in examples],
                             [(response_message(e.answer) or {}).get("content") or "" for e in examples])
    # the same batch size for both, so that equal epochs are equal optimizer steps
    cfg = TrainConfig(epochs=epochs, patience=10, batch_size=8)
    results: dict = {"task": args.task, "output_kind": kind, "model": args.model, "train_examples": len(train),
                     "val_examples": len(val), "test_examples": len(test), "epochs": epochs,
                     "config": cfg.to_dict(), "machine": {
                         "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "load_avg_before": os.getloadavg(), "python": platform.python_version(),
                         "torch": torch.__version__, "processor": platform.processor()}}

    runs = {}
    base = load_base(args.model)
    full_fmt = base.prompt_format(kind)  # no pruning: what the plain loop reads
    runs["plain_peft"] = plain_peft_loop(base.model, base.tokenizer, train, full_fmt, cfg, batch_size=cfg.batch_size)
    base = load_base(args.model)
    pruned_fmt = base.prompt_format(kind, learn_pruning_rule([e.request for e in train]))
    runs["protege"] = protege_run(base.model, base.tokenizer, train, val, pruned_fmt, cfg)
    formats = {"plain_peft": full_fmt, "protege": pruned_fmt}
    if not args.quick:  # ablations: which part buys what
        base = load_base(args.model)
        runs["protege_no_pruning"] = protege_run(base.model, base.tokenizer, train, val, full_fmt, cfg)
        formats["protege_no_pruning"] = full_fmt
        base = load_base(args.model)
        all_layers = TrainConfig(**{**cfg.to_dict(), "layers": None, "target_modules": tuple(cfg.target_modules)})
        runs["protege_all_layers"] = protege_run(base.model, base.tokenizer, train, val, pruned_fmt, all_layers)
        formats["protege_all_layers"] = pruned_fmt
    results["machine"]["load_avg_after_training"] = os.getloadavg()

    # quality: every adapter, reloaded from disk, on the same held-out calls
    base = load_base(args.model)
    runtime = specialist_runtime(base.model, base.tokenizer, model_id=args.model)
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs.items():
            run.pop("model").save_pretrained(f"{tmp}/{name}")
            runtime.add_specialist(name, f"{tmp}/{name}", formats[name])
        from protege.evaluate.commands import generation_budget

        budget = generation_budget(test, base.tokenizer, full_fmt)
        candidates = [RuntimeCandidate("base zero-shot", runtime, max_tokens=budget)]
        candidates += [RuntimeCandidate(name, runtime, adapter=name, max_tokens=budget) for name in runs]
        candidates.append(ReferenceCandidate())
        report = evaluate(test, candidates, task=args.task, output_kind=kind)
    results["runs"] = runs
    results["speedup_wall"] = round(runs["plain_peft"]["wall_s"] / runs["protege"]["wall_s"], 2)
    results["quality"] = report.to_dict()
    results["summary"] = {r.name: {"headline": r.headline, "ci": [r.ci_low, r.ci_high], "valid": r.valid_rate}
                          for r in report.rows}
    results["machine"]["load_avg_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: results[k] for k in ("speedup_wall", "summary")}, indent=2))
    for name, run in runs.items():
        print(f"{name:>20}: {run['wall_s']:8.1f} s  {run['tokens_per_s']:8.1f} tok/s  {run['steps']} steps")


if __name__ == "__main__":
    main()
