"""Benchmark curate + analyze on the demo traces: throughput, memory peak, clustering quality.

    python bench/analyze.py                 # writes bench/results/analyze.json
    python bench/analyze.py --embedders hashing --calls 1000

Measures, on this machine: calls/s through curation (scrub + filters + split) and through task
discovery per embedder (MiniLM embeddings are batched and cached per distinct text), the peak
resident memory, clustering quality against the traces' true labels (adjusted Rand index, purity,
share left unclustered, share of open-ended calls left out), and the request-time assigner's
agreement with the batch clustering and its latency.

A second corpus, BFCL-derived calls (when `bfcl_eval` is installed: `pip install --no-deps bfcl-eval`),
measures clustering on messier tool-calling traffic: each question of the simple_python, multiple,
parallel, parallel_multiple, live_simple and live_multiple categories becomes a logged call with its
functions as OpenAI tools and its first possible answer as the LLM's tool calls; the true label is the
BFCL category. BFCL questions mostly carry their own functions (900 calls have 725 distinct tool sets;
the largest shared one covers 14 calls): the question is whether discovery still finds the recurring
*kinds* of call or, as it should for calls that share nothing, leaves them alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.bfcl_data import CATEGORIES as BFCL_CATEGORIES  # noqa: E402
from protege.cluster.assign import TaskAssigner  # noqa: E402
from protege.cluster.catalog import TaskCatalog  # noqa: E402
from protege.cluster.discover import discover_tasks  # noqa: E402
from protege.curate.pipeline import curate_calls  # noqa: E402
from tests.cluster_support import demo_records  # noqa: E402


def quality(records, assignments) -> dict:
    from sklearn.metrics import adjusted_rand_score

    truth = [r.metadata["task"] for r in records]
    pred = [assignments[r.id] or "<none>" for r in records]
    clustered = [(t, p) for t, p in zip(truth, pred) if p != "<none>"]
    by_cluster: dict[str, Counter] = {}
    for t, p in clustered:
        by_cluster.setdefault(p, Counter())[t] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / max(1, len(clustered))
    oe = [p for t, p in zip(truth, pred) if t == "open_ended"]
    return {
        "ari": round(adjusted_rand_score(truth, pred), 4),
        "purity": round(purity, 4),
        "tasks_found": len(by_cluster),
        "true_tasks": len(set(truth) - {"open_ended"}),
        "unclustered_share": round(pred.count("<none>") / len(pred), 4),
        "open_ended_left_out": round(sum(p == "<none>" for p in oe) / len(oe), 4) if oe else None,
    }


def bfcl_records(per_category: int) -> list:
    """BFCL questions as CallRecords (see the module docstring); [] when bfcl_eval is not installed."""
    try:
        import bfcl_eval  # noqa: F401  (bench.bfcl_data imports it only lazily)
    except ImportError:
        return []
    from bench.bfcl_data import bfcl_records as records_of

    return records_of(BFCL_CATEGORIES, per_category)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=None, help="Use only the first N calls.")
    ap.add_argument("--embedders", default="minilm,hashing")
    ap.add_argument("--bfcl-per-category", type=int, default=150, help="BFCL questions per category (0: skip BFCL).")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "analyze.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ.setdefault("PROTEGE_HOME", str(tmp / "home"))
    records = demo_records(args.calls, tmp_dir=tmp)
    n = len(records)
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                    "calls": n, "embedders": {}}

    t0 = time.perf_counter()
    discovery = discover_tasks(records, embedder="hashing")
    for r in records:
        r.task_id = discovery.assignments[r.id]
    t1 = time.perf_counter()
    cur = curate_calls(records, tmp / "curated")
    t2 = time.perf_counter()
    result["curate"] = {"seconds": round(t2 - t1, 2), "calls_per_s": round(n / (t2 - t1), 1),
                        "kept": cur.filters.kept, "dropped": dict(cur.filters.dropped), "scrubbed": dict(cur.scrubbed)}
    print(f"curate: {n / (t2 - t1):.1f} calls/s", flush=True)

    for name in args.embedders.split(","):
        t0 = time.perf_counter()
        d = discover_tasks(records, embedder=name)
        secs = time.perf_counter() - t0
        catalog = TaskCatalog()
        catalog.reconcile(d)
        assigner = TaskAssigner(catalog, embedder=name)
        lat, agree = [], 0
        for r in records:
            s = time.perf_counter()
            task = assigner.assign(r.request)
            lat.append(time.perf_counter() - s)
            agree += task == d.assignments[r.id]
        lat.sort()
        result["embedders"][name] = {
            "seconds": round(secs, 2),
            "calls_per_s": round(n / secs, 1),
            "embedded_texts": d.stats["embedded_texts"],
            "quality": quality(records, d.assignments),
            "assigner": {"agreement": round(agree / n, 4), "p50_us": round(statistics.median(lat) * 1e6, 1),
                         "p99_us": round(lat[int(0.99 * (n - 1))] * 1e6, 1)},
            "tasks": {c.task_id: len(c.call_ids) for c in d.clusters},
        }
        print(f"{name}: {json.dumps(result['embedders'][name])}", flush=True)
    bfcl = bfcl_records(args.bfcl_per_category) if args.bfcl_per_category else []
    if bfcl:
        tool_sets = Counter(json.dumps(r.request["tools"], sort_keys=True) for r in bfcl)
        result["bfcl"] = {"calls": len(bfcl), "categories": list(BFCL_CATEGORIES),
                          "distinct_tool_sets": len(tool_sets), "largest_shared_tool_set": max(tool_sets.values()),
                          "calls_sharing_a_tool_set": sum(v for v in tool_sets.values() if v > 1), "embedders": {}}
        category = {r.id: r.metadata["task"] for r in bfcl}
        for name in args.embedders.split(","):
            t0 = time.perf_counter()
            d = discover_tasks(bfcl, embedder=name)
            secs = time.perf_counter() - t0
            result["bfcl"]["embedders"][name] = {"seconds": round(secs, 2), "quality": quality(bfcl, d.assignments),
                                                 "tasks": {c.task_id: dict(Counter(category[i] for i in c.call_ids))
                                                           for c in d.clusters}}
            print(f"bfcl {name}: {json.dumps(result['bfcl']['embedders'][name])}", flush=True)
    else:
        print("BFCL corpus skipped: pip install --no-deps bfcl-eval (or --bfcl-per-category was 0)")
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
