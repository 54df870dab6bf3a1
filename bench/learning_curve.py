"""Learning curve: how a task's LoRA specialist improves with the number of training calls.

    .venv/bin/python bench/learning_curve.py --task order_extraction --sizes 32 64 128 256 0 --epochs 2

For each size (0 = every training call) a LoRA specialist is built by the flywheel's own kind
(`protege.train.lora.LoraKind`, the selected base) from the first N training calls of the task in
the bundled demo traces, then evaluated and calibrated as served (llama.cpp, constrained decoding)
on the same held-out calls, with the gate's quality ratio. The baseline in the same run is the
smallest size. Results go to bench/results/learning_curve.json after every size, so a partial run
still leaves its points.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results" / "learning_curve.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="order_extraction", help="a task label of the demo traces")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--eval-calls", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from protege.data import demo_traces_path
    from protege.models.serving import LocalModelPool
    from protege.records import CallRecord
    from protege.route.calibrate import evaluate_served
    from protege.train.kinds import BuildOptions, TaskData, output_kind_of
    from protege.train.lora import LoraKind

    with gzip.open(demo_traces_path(), "rt") as f:
        lines = [json.loads(line) for line in f]
    history = [CallRecord(id=f"c{i}", ts=row["metadata"]["ts"], request=row["request"], response=row["response"],
                          task_id=args.task)  # the demo's history: the first 70% of the traces
               for i, row in enumerate(lines[: int(len(lines) * 0.7)]) if row["metadata"]["task"] == args.task]
    test, train = history[-args.eval_calls:], history[: -args.eval_calls]  # held out: the most recent calls
    kind, output_kind = LoraKind(), output_kind_of(history)
    results = {"benchmark": "learning_curve", "command": "python bench/learning_curve.py " + " ".join(sys.argv[1:]),
               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "task": args.task, "output_kind": output_kind,
               "train_calls_available": len(train), "eval_calls": len(test), "epochs": args.epochs,
               "machine": {"cores": os.cpu_count(), "load_avg_before": os.getloadavg(),
                           "python": platform.python_version()}, "points": []}
    pool = LocalModelPool()
    try:
        for size in args.sizes:
            n = size or len(train)
            with tempfile.TemporaryDirectory(prefix="protege-curve-") as tmp:
                t0 = time.time()
                kind.build(TaskData(args.task, output_kind, train[:n], test), Path(tmp) / "spec",
                           BuildOptions(epochs=args.epochs, max_train_calls=n, threads=os.cpu_count()))
                train_s = time.time() - t0
                responder = kind.open(Path(tmp) / "spec", pool)
                examples = kind.heldout(TaskData(args.task, output_kind, [], test))
                longest = max(len(str(ex.answer)) for ex in examples)
                _, cal = evaluate_served(responder, examples, quality_ratio=0.98, output_kind=output_kind,
                                         max_tokens=min(1024, longest // 2 + 64))
            point = {"train_calls": n, "train_s": round(train_s, 1), "metric": cal.headline_metric,
                     "quality": cal.quality, "quality_ci": list(cal.quality_ci), "valid_rate": cal.valid_rate,
                     "threshold": cal.threshold, "served_share": cal.coverage, "routed_quality": cal.routed_quality,
                     "latency_p50_ms": cal.latency_p50_ms}
            results["points"].append(point)
            print(json.dumps(point), flush=True)
            results["load_avg_after"] = os.getloadavg()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
    finally:
        pool.close()


if __name__ == "__main__":
    main()
