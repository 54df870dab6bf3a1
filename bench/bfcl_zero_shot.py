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
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from protege.models.catalog import default_catalog  # noqa: E402
from protege.models.constrain import OutputPlan  # noqa: E402
from protege.models.errors import RuntimeRequestError  # noqa: E402
from protege.models.runtime import Generation, SamplingParams, build_runtime  # noqa: E402

CATEGORIES = {"simple": "simple_python", "multiple": "multiple"}
TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "integer": "integer", "string": "string",
            "boolean": "boolean", "array": "array", "number": "number", "object": "object"}


def load_checker():
    """BFCL's ast_checker without its heavy dependencies (model_config stubbed)."""
    stub = types.ModuleType("bfcl_eval.constants.model_config")

    class _Config:
        underscore_to_dot = False

    class _Mapping(dict):
        def __getitem__(self, key):
            return _Config()

    stub.MODEL_CONFIG_MAPPING = _Mapping()
    sys.modules["bfcl_eval.constants.model_config"] = stub
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker, Language.PYTHON


def load_category(name: str, limit: int):
    import bfcl_eval

    data_dir = Path(bfcl_eval.__file__).parent / "data"
    questions = [json.loads(line) for line in (data_dir / f"BFCL_v4_{name}.json").read_text().splitlines() if line]
    answers = {a["id"]: a for a in (json.loads(line) for line in
               (data_dir / "possible_answer" / f"BFCL_v4_{name}.json").read_text().splitlines() if line)}
    return [(q, answers[q["id"]]) for q in questions[:limit]]


def to_json_schema(spec):
    """BFCL's parameter types ("dict", "float", "tuple", "any") as JSON Schema."""
    if isinstance(spec, list):
        return [to_json_schema(s) for s in spec]
    if not isinstance(spec, dict):
        return spec
    out = {}
    for key, value in spec.items():
        if key == "type":
            if value in TYPE_MAP:
                out["type"] = TYPE_MAP[value]
            continue  # "any": no type constraint
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value)
        elif key in ("description", "enum", "required", "default", "minimum", "maximum", "format"):
            if key == "format":
                continue  # BFCL formats are informal ("date", "YYYY-MM-DD"...)
            out[key] = value
    return out


def tools_for(question):
    """BFCL functions as OpenAI tools. Python functions take no unknown keyword arguments, so the top-level
    parameters get `additionalProperties: false` (as OpenAI's strict mode requires); without it a base model
    keeps inventing extra keys until max_tokens."""
    return [{"type": "function", "function": {"name": f["name"], "description": f.get("description", ""),
                                              "parameters": {**to_json_schema(f["parameters"]),
                                                             "additionalProperties": False}}}
            for f in question["function"]]


def run_one(runtime, question, constrained: bool, max_tokens: int):
    tools = tools_for(question)
    messages = question["question"][0]
    request = {"messages": messages, "tools": tools, "tool_choice": "required", "parallel_tool_calls": False,
               "max_tokens": max_tokens, "temperature": 0}
    functions = {t["function"]["name"]: t["function"] for t in tools}
    if constrained:
        response = runtime.complete(request)
        calls = response["choices"][0]["message"].get("tool_calls") or []
        return [{c["function"]["name"]: json.loads(c["function"]["arguments"])} for c in calls]
    # unconstrained: same prompt, free decoding, then parse (only valid calls count)
    gen = Generation(iter(()))
    text = "".join(runtime._generate(runtime.render(request), OutputPlan(kind="text"),
                                     SamplingParams(max_tokens=max_tokens), None, gen))
    plan = OutputPlan(kind="tools", functions=functions, require_call=True, parallel=True)
    _, calls = plan.parse(text.strip(), gen.finish_reason)
    return [{c["function"]["name"]: json.loads(c["function"]["arguments"])} for c in calls or []]


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
