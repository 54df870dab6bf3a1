"""Flywheel benchmark: the whole loop on the demo traces, measured against the all-LLM baseline in the same run.

    .venv/bin/python bench/flywheel.py                        # what `make demo` does (LoRA budget 540 s)
    .venv/bin/python bench/flywheel.py --lora-budget-s 2400   # more CPU for the LoRA specialists

The first 70% of the bundled traces is the history: it goes through a running gateway to the
replay upstream (the LLM) and the flywheel learns from it (analyze, curate, select, train,
evaluate as served, gate; shadow first). The last 30% is live traffic the flywheel never saw:
part of it while the new specialists answer in shadow, the rest after the live review has moved
them to `on`. Every live answer is scored against the LLM's reference answer with its task's
metric (labels: accuracy, JSON: field F1, tool calls: AST match, text: ROUGE-L), so "quality vs
LLM" is the share of the LLM's task quality kept; the all-LLM baseline is the same live calls
priced as LLM calls (the counterfactual of `protege report`).

Every task climbs the ladder of specialist kinds (answer reuse, MiniLM classifier, LoRA; see
docs/routing.md), so "by kind" in the results says which kind served each task.

Targets (issue 10): >= 70% of live calls served by specialists, >= 98% of the LLM's task quality
overall, >= 5x cheaper overall (the whole live traffic, cost-weighted), every served output valid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results" / "flywheel.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tasks", type=int, default=None, help="tasks to build specialists for (default: all)")
    ap.add_argument("--max-train-calls", type=int, default=None, help="LoRA training calls per task (default: all)")
    ap.add_argument("--lora-budget-s", type=float, default=540.0, help="seconds of LoRA training in the pass")
    ap.add_argument("--eval-calls", type=int, default=30)
    ap.add_argument("--shadow-calls", type=int, default=200)
    ap.add_argument("--calls", type=int, default=None, help="use only the first N calls of the traces")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--home", type=Path, default=None, help="run in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()

    from protege.demo import DemoOptions, run_demo

    opts = DemoOptions(calls=args.calls, max_tasks=args.max_tasks, max_train_calls=args.max_train_calls,
                       eval_calls=args.eval_calls, shadow_calls=args.shadow_calls, lora_budget_s=args.lora_budget_s)
    load_before = os.getloadavg()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="protege-bench-flywheel-") as tmp:
        summary = run_demo(args.home or Path(tmp) / "home", opts)
    totals, per_call = summary["report"], summary["usd_per_call"]
    served = summary["served_by_specialists"]
    results = {
        "benchmark": "flywheel", "command": "python bench/flywheel.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(time.time() - t0, 1),
        "machine": {"cores": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
                    "python": platform.python_version()},
        "options": opts.__dict__,
        "live_calls": summary["live_calls"],
        "share_served_by_specialists": summary["share_served_by_specialists"],
        "served_outputs_valid": f"{summary['served_valid']}/{served}",
        "quality_vs_llm": summary["quality_vs_llm"],
        "cost": {"all_llm_usd": totals.get("counterfactual_usd"), "actual_usd": totals.get("spend_usd"),
                 "llm_usd_per_call": per_call["llm"], "specialist_usd_per_call": per_call["specialist"],
                 "x_cheaper_per_served_call": _safe_div(per_call["llm"], per_call["specialist"]),
                 "x_cheaper_overall": totals.get("times_cheaper")},
        "fallback_rate": totals.get("fallback_rate"), "fallback_reasons": totals.get("fallback_reasons"),
        "routes": summary["routes"], "tasks": summary["tasks"], "demo_wall_s": summary["wall_s"],
        "gate": {t["task_id"]: {"mode": t["mode"], "kind": t.get("kind"),
                                "candidates": [{k: c.get(k) for k in ("kind", "verdict", "reason", "quality", "coverage",
                                                                      "n", "train_s")}
                                               for c in (t.get("gate") or {}).get("candidates", [])]}
                 for t in summary["report_tasks"]},
    }
    results["targets_met"] = {
        "served_ge_70pct": results["share_served_by_specialists"] >= 0.70,
        "quality_ge_98pct_of_llm": results["quality_vs_llm"] >= 0.98,
        "ge_5x_cheaper_overall": (results["cost"]["x_cheaper_overall"] or 0) >= 5,
        "every_served_output_valid": summary["served_valid"] == served,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: results[k] for k in ("share_served_by_specialists", "quality_vs_llm", "cost",
                                               "fallback_rate", "targets_met", "wall_s")}, indent=1))


def _safe_div(a, b):
    return round(a / b, 8) if a is not None and b else None


if __name__ == "__main__":
    main()
