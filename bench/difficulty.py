"""Can a difficulty check, trained on a specialist's own held-out successes and failures, tell the calls it will
get right before it generates, better than its confidence does after?

For every generative (LoRA) specialist in a flywheel home (`bench/flywheel.py --home DIR` keeps one), the
held-out calls of its calibration (`calibration.json` points: the call id, the answer's confidence, its score)
are labelled success (score >= 0.999) or failure. Two predictors of success, side by side, on the same calls:

* `confidence`: the answer's smallest token margin (what the router thresholds today, after generating);
* `difficulty check`: logistic regression on the MiniLM embedding of the request (`user_text`), before
  generating, scored leave-one-out (each call predicted by a model fitted on the others: the held-out calls
  are all the labelled data a pass has).

Reported per task: AUROC of each (0.5 = chance) and of their product. Writes bench/results/difficulty.json.

Run:  PYTHONPATH=src .venv/bin/python bench/difficulty.py --home /tmp/fw/home
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def auroc(labels: list[int], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 3) if 0 < sum(labels) < len(labels) else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True, help="a flywheel home: protege.db and specialists/")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "difficulty.json")
    args = ap.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from protege.store import open_store
    from protege.train.kinds import sentence_embedder, user_text

    tasks = {}
    with open_store(args.home / "protege.db") as store:
        for cal_path in sorted((args.home / "specialists").glob("*/*-lora/calibration.json")):
            points = json.loads(cal_path.read_text())["points"]
            calls = [store.get_call(p["id"]) for p in points]
            keep = [i for i, c in enumerate(calls) if c is not None and points[i]["confidence"] is not None]
            x = sentence_embedder().embed([user_text(calls[i].request) for i in keep])
            y = np.array([int(points[i]["score"] >= 0.999) for i in keep])
            confidence = [points[i]["confidence"] for i in keep]
            loo = []
            for j in range(len(y)):
                rest = np.arange(len(y)) != j
                if len(set(y[rest])) < 2:  # one class left: its rate is the only prediction
                    loo.append(float(y[rest].mean()))
                    continue
                model = LogisticRegression(C=1.0, max_iter=1000).fit(x[rest], y[rest])
                loo.append(float(model.predict_proba(x[j:j + 1])[0, 1]))
            task = cal_path.parent.parent.name
            tasks[task] = {"calls": len(y), "successes": int(y.sum()),
                           "auroc_confidence": auroc(y.tolist(), confidence),
                           "auroc_difficulty_check_loo": auroc(y.tolist(), loo),
                           "auroc_product": auroc(y.tolist(), [c * d for c, d in zip(confidence, loo)])}
            print(task, tasks[task], flush=True)
    result = {"benchmark": "difficulty", "command": f"python bench/difficulty.py --home {args.home}",
              "when": time.strftime("%Y-%m-%d %H:%M:%S"), "tasks": tasks,
              "note": "success = the specialist's answer scored >= 0.999 against the LLM's; AUROC 0.5 is chance"}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
