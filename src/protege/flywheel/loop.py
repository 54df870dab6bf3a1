"""One flywheel pass, and the watcher that repeats it.

`run_pass` (`protege flywheel run`):

1. review: every routed task's live evidence since its route last changed (fallbacks, invalid
   outputs, shadow agreement) goes through `review_live`: shadow → on, or demotion;
2. analyze: task discovery over the successful logged calls; task ids written to the store;
3. curate: failures and duplicates dropped, PII and secrets replaced by consistent fake values, a
   held-out split per task;
4. pick the tasks worth a specialist (most valuable first: monthly savings, then volume) that
   need one: none yet, `retrain_growth` more calls than its specialist saw, or demoted;
5. select + train: `train_task` (selection picks the base unless `model` is set) into a new
   versioned folder, so a serving specialist is never overwritten;
6. evaluate + calibrate as served (llama.cpp, pruned prompt, constrained decoding), base and
   LLM rows beside it → eval.json and calibration.json;
7. gate: `judge_calibration` promotes (to shadow first, by default) or holds, with evidence.

`watch` runs a pass in a child process (so a training run never shares memory or a GIL with
anything serving) whenever enough new calls arrived or a route changed, and reviews live
evidence in between.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protege.config import Settings
from protege.records import CallRecord
from protege.route.gates import apply_verdict, judge_calibration, live_stats, review_live
from protege.store.base import CallFilter, Store

log = logging.getLogger(__name__)


@dataclass
class FlywheelOptions:
    min_calls: int = 40
    """Fewest logged calls a task needs before it gets a specialist."""
    max_tasks: int | None = None
    """Train at most this many tasks per pass (most valuable first)."""
    tasks: list[str] | None = None
    """Only these task ids."""
    model: str | None = None
    """Base model for every specialist (None: selection chooses per task)."""
    max_train_calls: int = 200
    eval_calls: int = 40
    epochs: int = 3
    batch_size: int = 8
    """Sequences per step: small batches give a small task's few calls more updates for the same compute."""
    max_steps: int | None = None
    retrain_growth: float = 0.5
    embedder: str = "minilm"
    test_share: float = 0.2
    seed: int = 0
    threads: int | None = None
    """CPU threads for training and evaluation (None: all cores but one, which stays with serving: torch and
    llama.cpp threads spin-wait, so sharing every core with a busy gateway slows both several-fold)."""
    compare_base: bool = False
    """Also score the base model zero-shot (slow: full prompts, long answers); `protege eval` always does."""


@dataclass
class PassReport:
    reviewed: list[dict] = field(default_factory=list)
    trained: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    tasks: int = 0
    calls: int = 0
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def review_routes(store: Store, settings: Settings, say: Callable[[str], None] = log.info) -> list[dict]:
    """Judge every routed task's live evidence since its route last changed; apply the verdicts."""
    out = []
    for task_id, route in store.routes().items():
        if route.mode == "off":
            continue
        policy = settings.gates.for_task(task_id)
        records = [r for r in store.iter_calls(CallFilter(since=route.updated_ts, task_id=task_id))]
        records = records[-policy.live_window:]
        shadows = store.shadow_results(task_id, since=route.updated_ts)[-policy.live_window:]
        verdict = review_live(route, live_stats(records, shadows, route.min_confidence), policy)
        apply_verdict(store, task_id, verdict, actor="monitor")
        if verdict.action != "keep":
            say(f"{task_id}: {verdict.action} {route.mode} → {verdict.mode_to} ({verdict.reason})")
        out.append({"task": task_id, "action": verdict.action, "mode": verdict.mode_to, "reason": verdict.reason})
    return out


def _trained_calls(folder: str | None) -> int:
    if not folder:
        return 0
    manifest = Path(folder) / "specialist.json"
    if not manifest.is_file():
        return 0
    splits = json.loads(manifest.read_text()).get("splits", {})
    return splits.get("train", 0) + splits.get("validation", 0) + splits.get("test", 0)


def _needs_training(store: Store, task_id: str, calls: int, growth: float) -> str | None:
    route = store.routes().get(task_id)
    if route is None or not route.specialist:
        held = store.decisions(task_id, limit=1)
        if held and held[0].action == "hold":
            trained = held[0].evidence.get("trained_calls", 0)
            if calls < trained * (1 + growth):
                return None
            return f"held back before; now {calls} calls (was {trained})"
        return "no specialist yet"
    if route.mode == "off":
        last = store.decisions(task_id, limit=1)
        if last and last[0].action == "demote":
            return f"demoted: {last[0].reason}"
    trained = _trained_calls(route.specialist)
    if trained and calls >= trained * (1 + growth):
        return f"{calls} calls, the specialist saw {trained}"
    return None


def _next_folder(task_id: str) -> Path:
    from protege.train.artifact import default_folder

    root = default_folder(task_id)
    root.mkdir(parents=True, exist_ok=True)
    versions = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()]
    return root / f"v{max(versions, default=0) + 1}"


def run_pass(store: Store, settings: Settings, options: FlywheelOptions | None = None, *,
             pool: Any = None, say: Callable[[str], None] = log.info) -> PassReport:
    """One pass of the loop over everything logged so far (see the module docstring)."""
    from protege.cluster.analysis import analyze_calls
    from protege.curate.pipeline import curate_calls
    from protege.curate.scrub import Scrubber

    opts = options or FlywheelOptions()
    started = time.time()
    report = PassReport(reviewed=review_routes(store, settings, say))
    # the LLM's answers only: a specialist's or local model's output never becomes training data
    records = [r for r in store.iter_calls()
               if r.is_success and not (r.served_by or "").startswith(("specialist:", "local:"))]
    report.calls = len(records)
    if not records:
        say("nothing logged yet")
        return report
    say(f"analyzing {len(records)} LLM calls")
    analysis = analyze_calls(records, embedder=opts.embedder)
    store.set_task_ids(analysis.assignments)
    for r in records:
        r.task_id = analysis.assignments.get(r.id)
    report.tasks = len(analysis.profiles)
    say("curating (filters, scrubbing, splits)")
    # fake values, not <EMAIL_1> placeholders: a specialist trained on placeholders writes placeholders
    # when real text arrives (the shadow phase caught exactly that); realistic stand-ins keep the training
    # data private and shaped like what it will serve
    splits = curate_calls(records, scrubber=Scrubber(mode="fake"), test_share=opts.test_share,
                          seed=opts.seed).datasets
    profiles = sorted(analysis.profiles, key=lambda p: (-p.monthly_savings_usd[0], -p.calls))
    chosen = 0
    for profile in profiles:
        task_id = profile.task_id
        if opts.tasks is not None and task_id not in opts.tasks:
            continue
        if profile.calls < opts.min_calls:
            report.skipped[task_id] = f"{profile.calls} calls, needs {opts.min_calls}"
            continue
        reason = _needs_training(store, task_id, profile.calls, opts.retrain_growth)
        if reason is None:
            report.skipped[task_id] = "its specialist is current"
            continue
        if opts.max_tasks is not None and chosen >= opts.max_tasks:
            report.skipped[task_id] = f"over --max-tasks {opts.max_tasks} this pass"
            continue
        chosen += 1
        split = splits.get(task_id)
        if split is None or not split.test:
            report.skipped[task_id] = "no held-out calls after curation"
            continue
        say(f"{task_id} ({profile.calls} calls, {profile.output_kind}): {reason}")
        report.trained.append(train_and_gate(store, settings, task_id, split.train, split.test, opts, pool=pool,
                                             say=say))
    report.wall_s = round(time.time() - started, 1)
    return report


def train_and_gate(store: Store, settings: Settings, task_id: str, train: list[CallRecord], test: list[CallRecord],
                   opts: FlywheelOptions, *, pool: Any = None, say: Callable[[str], None] = log.info) -> dict:
    """Train a specialist for one task, evaluate and calibrate it as served, and put it through the gate."""
    from protege.models.llamacpp import usable_cores
    from protege.models.serving import LocalModelPool
    from protege.route.calibrate import evaluate_served
    from protege.train.artifact import EVAL_REPORT, load_specialist, write_manifest
    from protege.train.commands import train_task
    from protege.train.examples import as_examples
    from protege.train.trainer import TrainConfig

    folder = _next_folder(task_id)
    t0 = time.time()
    threads = opts.threads or max(1, usable_cores() - 1)
    config = TrainConfig(epochs=opts.epochs, max_steps=opts.max_steps, seed=opts.seed, threads=threads,
                         batch_size=opts.batch_size)
    last = [0.0]

    def progress(p) -> None:  # a line every 15 s, so a long run shows it is moving
        if time.time() - last[0] >= 15 or p.step == p.total_steps:
            last[0] = time.time()
            loss = f", loss {p.loss:.3f}" if p.loss is not None else ""
            speed = f", {p.tokens_per_s:,.0f} tok/s" if p.tokens_per_s else ""
            say(f"  {task_id}: {p.phase} step {p.step}/{p.total_steps}{loss}{speed}")

    outcome = train_task(task_id, model=opts.model, records=train[: opts.max_train_calls], test_records=test,
                         out=folder, config=config, evaluate=False, on_progress=progress)
    train_s = time.time() - t0
    spec = load_specialist(folder)
    if spec.gguf_adapter is None:
        say(f"{task_id}: no GGUF adapter ({spec.manifest.get('gguf_export_error')}); it cannot be served")
        return {"task": task_id, "folder": str(folder), "error": "gguf export failed"}
    own_pool = pool is None
    pool = pool or LocalModelPool(models=[spec.base_model], runtime_options={"n_threads": threads})
    try:
        name = f"eval-{folder.parent.name}-{folder.name}"
        pool.register_adapter(spec.base_model, name, spec.gguf_adapter)
        runtime = pool.resolve(f"{spec.base_model}:{name}")
        runtime.base.set_prompt_format(name, spec.prompt_format.render)
        examples = as_examples(test)[: opts.eval_calls]
        longest = max(len(str(ex.answer)) for ex in examples)
        policy = settings.gates.for_task(task_id)
        report, cal = evaluate_served(runtime, examples, quality_ratio=policy.min_quality_ratio,
                                      base=pool.resolve(spec.base_model) if opts.compare_base else None, max_tokens=min(1024, longest // 2 + 64),
                                      task=task_id, output_kind=spec.manifest.get("output_kind"),
                                      runtime_name="llama.cpp")
        pool.unregister_adapter(spec.base_model, name)
    finally:
        if own_pool:
            pool.close()
    (folder / EVAL_REPORT).write_text(report.to_json())
    cal.save(folder)
    write_manifest(folder, {k: v for k, v in spec.manifest.items() if k not in ("format_version", "created", "files")})
    current = store.routes().get(task_id)
    verdict = judge_calibration(cal, policy, current.mode if current else "off")
    verdict.evidence["trained_calls"] = len(train) + len(test)
    apply_verdict(store, task_id, verdict, specialist=str(folder), min_confidence=cal.threshold)
    base_row = report.rows[0] if report.rows[0].name == "base zero-shot" else None
    say(f"{task_id}: {verdict.action} → {verdict.mode_to}: {verdict.reason}"
        + (f" (base {base_row.headline:.2f})" if base_row else ""))
    return {"task": task_id, "folder": str(folder), "action": verdict.action, "mode": verdict.mode_to,
            "reason": verdict.reason, "quality": cal.quality, "base_quality": base_row.headline if base_row else None,
            "coverage": cal.coverage, "threshold": cal.threshold, "train_s": round(train_s, 1),
            "eval_s": round(time.time() - t0 - train_s, 1), "steps": outcome.result.steps}


def watch(store_url: str | None, *, interval_s: float = 60.0, min_new_calls: int = 200, config: str | None = None,
          extra_args: list[str] | None = None, say: Callable[[str], None] = log.info, max_passes: int | None = None,
          ) -> None:
    """Review live evidence every `interval_s`; run a pass in a child process when `min_new_calls` calls arrived."""
    from protege.config import load_settings
    from protege.store.base import open_store

    settings = load_settings(config)
    last_total, passes = -1, 0
    while max_passes is None or passes < max_passes:
        with open_store(store_url) as store:
            review_routes(store, settings, say)
            total = store.stats()["total"]["calls"]
        if last_total < 0 or total - last_total >= min_new_calls:
            say(f"{total} calls logged: starting a flywheel pass")
            cmd = [sys.executable, "-m", "protege", "flywheel", "run", *(["--database", store_url] if store_url else []),
                   *(["--config", config] if config else []), *(extra_args or [])]
            rc = subprocess.call(cmd)
            if rc != 0:
                say(f"the flywheel pass exited with {rc}; retrying after the next interval")
            else:
                last_total = total
            passes += 1
        time.sleep(interval_s)
