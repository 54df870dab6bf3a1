"""BFCL distillation: one SmolLM2-135M specialist for six BFCL categories, scored by BFCL's own checker.

    PYTHONPATH=src .venv/bin/python bench/bfcl.py                   # --budget cpu: reduced, 55 min on 2 shared cores
    PYTHONPATH=src .venv/bin/python bench/bfcl.py --budget full     # all data, CUDA training (bf16), 12 eval workers

1. BFCL v4's simple_python, multiple, parallel, parallel_multiple, live_simple and live_multiple
   questions (PyPI `bfcl-eval`) become logged calls (`bench/bfcl_data.py`): the question's messages and
   its functions as OpenAI tools, answered by the ground truth (the first acceptable value of each
   parameter) standing in for the big model's answer.
2. Each category is split 70/30 by call id (seeded hash, `protege.specialist.examples.split_examples`).
3. One specialist (task "bfcl") is distilled from the training part of all six categories with
   `protege.train.commands.train_task` (LoRA, the project's trainer; 10% of the training part is its
   validation set). Prompt pruning is off: every BFCL question brings its own functions, so a tool list
   seen in training must not be left out of the prompt (pruning drops known tool lists).
4. The held-out part of each category is answered by the base model zero-shot and by the specialist,
   each constrained (`tool_choice="required"`, llguidance grammar of the call schemas) and unconstrained
   (free decoding, then the output is parsed and validated), greedy, through protege's llama.cpp runtime
   with the exported `adapter.gguf` (`--runtime transformers`: the PEFT adapter on the transformers
   runtime the evaluation harness uses). Calls are scored with BFCL's `ast_checker`; "valid" = the
   output parsed as well-formed calls to known functions with schema-valid arguments. The reference
   row scores the converted ground truth itself (BFCL has a few items no answer passes).

The requests do not say how many calls are expected (`parallel_tool_calls` is left at its default),
so a model must decide between one call and several, as BFCL's own prompts ask. At most
1.5x the longest reference answer of the category's held-out calls + 16 tokens are generated
(`protege.evaluate.commands.generation_budget`).

Budgets (each setting can be overridden by its flag):
- cpu: at most 60 training and 25 held-out calls per category (both drawn by the id hash), training
  calls longer than 1,024 tokens left out, 1 epoch, CPU; evaluation in 2 worker processes of 1 thread
  each (llama.cpp's threads spin while they wait for each other: on a 2-core machine shared with other
  work, 2 threads in one process ran 2-7x slower than 1).
- full: every call (training calls longer than 4,096 tokens left out), 3 epochs, CUDA in bfloat16,
  evaluation in 12 worker processes (llama.cpp, 1 thread each).

Writes bench/results/bfcl.json (`--out`): command, machine, budget, wall times, the per-category table
(accuracy with a 95% bootstrap CI, valid %, error kinds, n) and whether the mission's targets are met
(>= 85% on simple and multiple, >= 70% on the others, 100% valid calls).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.bfcl_data import (  # noqa: E402
    CATEGORIES,
    as_bfcl_output,
    bfcl_records,
    decode_calls,
    load_category,
    load_checker,
)

log = logging.getLogger("bench.bfcl")

TARGETS = {"simple_python": 85.0, "multiple": 85.0, "parallel": 70.0, "parallel_multiple": 70.0,
           "live_simple": 70.0, "live_multiple": 70.0}
CANDIDATES = ("base", "specialist")
MODES = ("constrained", "unconstrained")


@dataclass
class Budget:
    train_per_category: int | None
    test_per_category: int | None
    max_length: int
    epochs: int
    device: str
    workers: int
    threads_per_worker: int | None


BUDGETS = {
    "cpu": Budget(train_per_category=60, test_per_category=25, max_length=1024, epochs=1, device="cpu", workers=2,
                  threads_per_worker=1),
    "full": Budget(train_per_category=None, test_per_category=None, max_length=4096, epochs=3, device="cuda",
                   workers=12, threads_per_worker=1),
}


# -- evaluation (runs in the main process or in workers) ------------------------------------------------


def build_eval_runtime(kind: str, model: str, folder: str, device: str, threads: int | None):
    """(runtime, specialist prompt renderer) with the specialist's adapter loaded as "specialist"."""
    from protege.specialist.artifact import load_specialist

    spec = load_specialist(folder)
    if kind == "llamacpp":
        from protege.models.catalog import default_catalog
        from protege.models.runtime import build_runtime

        runtime = build_runtime(default_catalog().get(model), n_ctx=8192, n_threads=threads)
        runtime.load_adapter("specialist", spec.folder / "adapter.gguf")
        if hasattr(runtime, "set_prompt_format"):
            runtime.set_prompt_format("specialist", spec.prompt_format.render)
    else:
        import torch

        from protege.evaluate.runtimes import specialist_runtime
        from protege.specialist.base import load_base

        if threads:
            torch.set_num_threads(threads)
        base = load_base(model)
        runtime = specialist_runtime(base.model, base.tokenizer, model_id=model, device=device, max_context=8192)
        runtime.add_specialist("specialist", spec.adapter_dir, spec.prompt_format)
    return runtime, spec.prompt_format.render


def answer_jobs(kind: str, model: str, folder: str, device: str, threads: int | None, jobs: list[dict]) -> list[dict]:
    """Each job {"id", "request", "max_tokens"} answered by the base and the specialist, both modes.

    Returns one row per (job, candidate, mode): BFCL-format calls, or the error that made the output invalid.
    """
    from protege.models.errors import RuntimeRequestError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # in a worker process
    runtime, specialist_render = build_eval_runtime(kind, model, folder, device, threads)
    out = []
    for candidate in CANDIDATES:  # candidate outermost: llama.cpp keeps its prompt cache while the adapter stays
        adapter = "specialist" if candidate == "specialist" else None
        for i, job in enumerate(jobs, 1):
            if i % 10 == 0:
                log.info("[pid %d] %s: %d/%d held-out calls", os.getpid(), candidate, i, len(jobs))
            prompt = specialist_render(job["request"]) if adapter else None
            if prompt is not None and kind == "llamacpp" and not hasattr(runtime, "set_prompt_format") \
                    and prompt != runtime.render(job["request"]):
                raise RuntimeError("llama.cpp renders this request unlike the specialist's prompt format; "
                                   "rerun with --runtime transformers")
            for mode in MODES:
                start = time.perf_counter()
                row = {"id": job["id"], "candidate": candidate, "mode": mode}
                try:
                    calls = decode_calls(runtime, job["request"], constrained=mode == "constrained",
                                         max_tokens=job["max_tokens"], adapter=adapter, prompt=prompt)
                    row["calls"] = as_bfcl_output(calls)
                except RuntimeRequestError as exc:
                    row["error"] = type(exc).__name__
                    row["message"] = str(exc)[:200]
                row["seconds"] = round(time.perf_counter() - start, 3)
                out.append(row)
        log.info("%s: %d calls answered", candidate, len(jobs))
    runtime.close()
    return out


def answer_all(kind, model, folder, device, budget: Budget, jobs: list[dict]) -> list[dict]:
    if budget.workers <= 1:
        return answer_jobs(kind, model, folder, device, budget.threads_per_worker, jobs)
    import multiprocessing

    shards = [jobs[i:: budget.workers] for i in range(budget.workers)]
    with ProcessPoolExecutor(budget.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(answer_jobs, kind, model, folder, device, budget.threads_per_worker, shard)
                   for shard in shards if shard]
        return [row for f in futures for row in f.result()]


# -- scoring ---------------------------------------------------------------------------------------------


def score(checker, language, category: str, question: dict, answer: dict, calls: list[dict]) -> tuple[bool, str]:
    try:
        verdict = checker(question["function"], calls, answer["ground_truth"], language, category, "protege")
    except Exception as exc:  # noqa: BLE001 - a checker crash on an odd output is a wrong answer
        return False, f"checker raised {type(exc).__name__}"
    return bool(verdict["valid"]), verdict.get("error_type", "")


def summarize(flags: list[bool], valid: list[bool], errors: Counter, wrong: Counter, seconds: float,
              samples: list[str] = ()) -> dict:
    from protege.evaluate.metrics import bootstrap_ci

    values = [float(f) for f in flags]
    lo, hi = bootstrap_ci(values)
    n = len(values)
    return {"n": n, "ast_accuracy": round(100 * sum(values) / n, 1), "ci95": [round(100 * lo, 1), round(100 * hi, 1)],
            "valid_pct": round(100 * sum(valid) / n, 1), "invalid_outputs": dict(errors),
            "wrong_answers": dict(wrong.most_common(5)), "seconds": round(seconds, 1),
            "sample_invalid": list(samples)[:3]}


# -- main ------------------------------------------------------------------------------------------------


def machine_info() -> dict:
    import torch

    info = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    from importlib.metadata import PackageNotFoundError, version

    for package in ("bfcl-eval", "llama-cpp-python", "transformers", "peft"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--runtime", choices=["llamacpp", "transformers"], default="llamacpp",
                    help="evaluation runtime: llama.cpp with adapter.gguf, or transformers with the PEFT adapter")
    ap.add_argument("--train-per-category", type=int, help="cap on training calls per category (0: all)")
    ap.add_argument("--test-per-category", type=int, help="cap on held-out calls per category (0: all)")
    ap.add_argument("--max-length", type=int, help="training calls longer than this many tokens are left out")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--device", help="training device (cpu, cuda); the transformers runtime evaluates there too")
    ap.add_argument("--workers", type=int, help="evaluation processes")
    ap.add_argument("--threads", type=int, help="threads per evaluation process (both budgets: 1)")
    ap.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    ap.add_argument("--seed", type=int, default=0, help="seed of the 70/30 split")
    ap.add_argument("--specialist-dir", help="where to write the specialist (default: a temporary folder)")
    ap.add_argument("--outputs", help="also write every answer (id, candidate, mode, calls or error) to this JSONL file")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the specialist in --specialist-dir again")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bfcl.json"))
    args = ap.parse_args()
    if args.eval_only and not args.specialist_dir:
        ap.error("--eval-only needs --specialist-dir (the folder of an earlier run's specialist)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    budget = Budget(**vars(BUDGETS[args.budget]))
    for name in ("train_per_category", "test_per_category", "max_length", "epochs", "device", "workers"):
        value = getattr(args, name)
        if value is not None:
            setattr(budget, name, None if name.endswith("per_category") and value == 0 else value)
    if args.threads:
        budget.threads_per_worker = args.threads
    started = time.perf_counter()
    result: dict = {"command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)]
                                                     + sys.argv[1:]),
                    "machine": machine_info(), "budget": {"name": args.budget, **vars(budget)},
                    "model": args.model, "eval_runtime": args.runtime, "scorer": "bfcl_eval ast_checker",
                    "split": {"test_share": 0.3, "seed": args.seed, "by": "sha256 of the BFCL id, per category"}}

    # 1-2. the logged calls and their split
    from protege.evaluate.commands import generation_budget
    from protege.specialist.base import load_base
    from protege.specialist.examples import as_examples, split_examples
    from protege.train.trainer import TrainConfig

    records = bfcl_records(args.categories)
    category = {r.id: r.metadata["task"] for r in records}
    examples = as_examples(records)
    for ex in examples:
        ex.task = "bfcl"
    base = load_base(args.model)
    fmt = base.prompt_format("tool_call")
    tok = base.tokenizer

    def n_tokens(ex) -> int:
        return len(tok(fmt.render(ex.request) + fmt.target(ex.answer), add_special_tokens=False).input_ids)

    train, test, per_category = [], {}, {}
    for cat in args.categories:
        cat_examples = [ex for ex in examples if category[ex.id] == cat]
        train_all, test_all = split_examples(cat_examples, 0.3, args.seed)
        fitting = [ex for ex in train_all if n_tokens(ex) <= budget.max_length]
        chosen = fitting[: budget.train_per_category] if budget.train_per_category else fitting
        held_out = test_all[: budget.test_per_category] if budget.test_per_category else test_all
        train += chosen
        test[cat] = held_out
        per_category[cat] = {"calls": len(cat_examples), "train_part": len(train_all), "test_part": len(test_all),
                             "train_too_long": len(train_all) - len(fitting), "trained_on": len(chosen),
                             "evaluated": len(held_out),
                             "max_tokens": generation_budget(held_out, tok, fmt) if held_out else 0}
        log.info("%s: %s", cat, per_category[cat])
    result["data"] = per_category
    del base

    # 3. one specialist over every category
    from protege.specialist.examples import data_hash
    from protege.train.commands import train_task

    folder = Path(args.specialist_dir) if args.specialist_dir else Path(tempfile.mkdtemp(prefix="bfcl-specialist-"))
    cfg = TrainConfig(epochs=budget.epochs, max_length=budget.max_length, device=budget.device, patience=2)
    t0 = time.perf_counter()
    if args.eval_only:
        log.info("evaluating the specialist already in %s", folder)
    else:
        train_task("bfcl", model=args.model, records=train, test_records=[], out=folder, config=cfg, prune=False,
                   evaluate=False, export_gguf=True)
    train_wall = time.perf_counter() - t0
    fit, val = split_examples(train, 0.1, 1)  # as train_task splits its validation calls off
    manifest = json.loads((folder / "specialist.json").read_text())
    if manifest.get("gguf_export_error") and args.runtime == "llamacpp":
        raise SystemExit(f"the adapter could not be exported to GGUF ({manifest['gguf_export_error']}); "
                         "rerun with --runtime transformers")
    r = manifest["training"]
    result["training"] = {"wall_s": round(train_wall, 1) if not args.eval_only else None,
                          "train_calls": manifest["splits"]["train"],
                          "validation_calls": manifest["splits"]["validation"],
                          "same_data_as_this_run": manifest["data_hash"] == data_hash(fit + val),
                          **{k: r[k] for k in ("steps", "epochs", "stopped_early", "best_val_loss", "train_tokens",
                                               "tokens_per_s", "cache_s", "device", "dtype")},
                          "loss_history": [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()}
                                           for h in manifest.get("history", [])],
                          "config": manifest["hyperparameters"], "specialist": str(folder)}
    log.info("trained in %.0f s: %s", train_wall, {k: result["training"][k] for k in ("steps", "best_val_loss")})

    # 4. base and specialist, constrained and unconstrained, on every held-out call
    jobs = [{"id": ex.id, "request": ex.request, "max_tokens": per_category[cat]["max_tokens"]}
            for cat in args.categories for ex in test[cat]]
    eval_device = budget.device if args.runtime == "transformers" else "cpu"
    t0 = time.perf_counter()
    rows = answer_all(args.runtime, args.model, str(folder), eval_device, budget, jobs)
    eval_wall = time.perf_counter() - t0
    result["evaluation"] = {"wall_s": round(eval_wall, 1), "calls": len(jobs), "decodes": len(rows),
                            "workers": budget.workers, "device": eval_device}

    if args.outputs:
        Path(args.outputs).write_text("".join(json.dumps(row) + "\n" for row in rows))
    checker, language = load_checker()
    truth = {q["id"]: (q, a) for cat in args.categories for q, a in load_category(cat)}
    by_key: dict[tuple, list[dict]] = {}
    for row in rows:
        by_key.setdefault((category[row["id"]], row["candidate"], row["mode"]), []).append(row)
    table: dict = {}
    for cat in args.categories:
        cat_rows = {}
        for cand in CANDIDATES:
            for mode in MODES:
                flags, valid, errors, wrong, secs, samples = [], [], Counter(), Counter(), 0.0, []
                for row in by_key.get((cat, cand, mode), []):
                    secs += row["seconds"]
                    if "error" in row:
                        flags.append(False)
                        valid.append(False)
                        errors[row["error"]] += 1
                        samples.append(f"{row['id']}: {row['message']}")
                        continue
                    q, a = truth[row["id"]]
                    ok, why = score(checker, language, cat, q, a, row["calls"])
                    flags.append(ok)
                    valid.append(True)
                    if not ok:
                        wrong[why] += 1
                if flags:
                    cat_rows[f"{cand}/{mode}"] = summarize(flags, valid, errors, wrong, secs, samples)
        ref = [score(checker, language, cat, *truth[ex.id], as_bfcl_output(ex.answer["tool_calls"]))[0]
               for ex in test[cat]]
        if ref:
            cat_rows["reference"] = summarize(ref, [True] * len(ref), Counter(), Counter(), 0.0)
        table[cat] = cat_rows
    result["categories"] = table

    # targets: the specialist's accuracy per category and 100% valid calls, per decoding mode
    targets = {}
    for mode in MODES:
        per = {}
        for cat in args.categories:
            row = table[cat].get(f"specialist/{mode}")
            if row:
                per[cat] = {"target": TARGETS[cat], "ast_accuracy": row["ast_accuracy"], "valid_pct": row["valid_pct"],
                            "met": row["ast_accuracy"] >= TARGETS[cat] and row["valid_pct"] == 100.0}
        targets[mode] = {"per_category": per, "all_met": all(p["met"] for p in per.values())}
    result["targets"] = targets
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'category':<18} {'n':>4}  " + "  ".join(f"{c + '/' + m[:5]:>22}" for c in CANDIDATES for m in MODES))
    for cat in args.categories:
        cells = []
        for cand in CANDIDATES:
            for mode in MODES:
                row = table[cat].get(f"{cand}/{mode}")
                cells.append(f"{row['ast_accuracy']:6.1f}% ({row['valid_pct']:5.1f}% valid)" if row else "")
        n = len(test[cat])
        print(f"{cat:<18} {n:>4}  " + "  ".join(f"{c:>22}" for c in cells))
    print(f"training {train_wall:.0f} s, evaluation {eval_wall:.0f} s, total {result['wall_s']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
