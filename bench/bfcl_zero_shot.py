"""BFCL zero-shot baseline: SmolLM2-135M and Gemma-3-270M on BFCL simple_python and multiple.

Each model answers each BFCL question twice through protege's llama.cpp runtime, with the same
prompt (the functions described in the system message, `<tool_call>` format):
- unconstrained: free decoding, then the text is parsed for calls;
- constrained: `tool_choice="required"`, one call, decoded under the llguidance grammar of the
  call schema (function name enum + its parameters' JSON Schema).
Scored with BFCL's own AST checker (PyPI `bfcl-eval`, installed with --no-deps; its
`bfcl_eval.constants.model_config` is replaced by a stub so no heavy dependency is imported).
Reports AST accuracy and % of outputs that parse as valid calls. This is the "base" row every
specialist is compared with.

Run:  PYTHONPATH=src .venv/bin/python bench/bfcl_zero_shot.py [--limit 40] [--models smollm2-135m gemma3-270m]
Writes bench/results/bfcl_zero_shot.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.bfcl_data import as_bfcl_output, decode_calls, load_category, load_checker, tools_for  # noqa: E402
from protege.models.catalog import default_catalog  # noqa: E402
from protege.models.errors import RuntimeRequestError  # noqa: E402
from protege.models.runtime import build_runtime  # noqa: E402

CATEGORIES = {"simple": "simple_python", "multiple": "multiple"}


def run_one(runtime, question, constrained: bool, max_tokens: int):
    """One BFCL question, one call expected (`parallel_tool_calls: false`), as BFCL's model output."""
    request = {"messages": question["question"][0], "tools": tools_for(question), "parallel_tool_calls": False}
    return as_bfcl_output(decode_calls(runtime, request, constrained=constrained, max_tokens=max_tokens))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=40, help="questions per category (the first N)")
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bfcl_zero_shot.json"))
    args = ap.parse_args()
    checker, language = load_checker()
    catalog = default_catalog()
    results = {"setup": {"limit_per_category": args.limit, "max_tokens": args.max_tokens, "threads": args.threads,
                         "decoding": "greedy", "scorer": "bfcl_eval ast_checker"}, "models": {}}
    for model in args.models:
        runtime = build_runtime(catalog.get(model), n_ctx=4096, n_threads=args.threads)
        per_model = {}
        for cat_key, cat_name in CATEGORIES.items():
            items = load_category(cat_name, args.limit)
            for constrained in (False, True):
                correct = valid = 0
                t0 = time.perf_counter()
                errors: dict[str, int] = {}
                for question, answer in items:
                    try:
                        calls = run_one(runtime, question, constrained, args.max_tokens)
                    except RuntimeRequestError as exc:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        continue
                    valid += 1
                    verdict = checker(question["function"], calls, answer["ground_truth"], language, cat_name, model)
                    correct += bool(verdict["valid"])
                mode = "constrained" if constrained else "unconstrained"
                per_model[f"{cat_key}/{mode}"] = {
                    "n": len(items), "ast_accuracy": round(100 * correct / len(items), 1),
                    "valid_calls_pct": round(100 * valid / len(items), 1), "errors": errors,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                print(model, cat_key, mode, per_model[f"{cat_key}/{mode}"], flush=True)
        results["models"][model] = per_model
        runtime.close()
        results["setup"]["load_average_at_end"] = os.getloadavg()
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
