"""One flywheel pass, and the watcher that repeats it.

`run_pass` (`protege flywheel run`):

1. review: every routed task's live evidence since its route last changed (fallbacks, invalid
   outputs, shadow agreement) goes through `review_live`: shadow → on, or demotion;
2. analyze: task discovery over the successful logged calls; task ids written to the store;
3. curate: failures and duplicates dropped, PII and secrets replaced by consistent fake values, a
   held-out split per task;
4. pick the tasks worth a specialist (most valuable first: monthly savings, then volume) that
   need one: none yet, `retrain_growth` more calls than its specialist saw, or demoted;
5. climb the ladder of specialist kinds (`protege.train.kinds`), cheapest first: answer reuse and
   the encoder classifier for every task (seconds each), then, for the tasks still unserved and
   the most saving per training token first, the base model with in-context examples (no
   training) and LoRA training, inside `lora_budget_s`; each build goes into a new versioned
   folder `vN-KIND`, so a serving specialist is never overwritten;
6. evaluate + calibrate each as served (its `Responder`: for LoRA llama.cpp, pruned prompt,
   constrained decoding) on its held-out calls → eval.json and calibration.json;
7. gate: `judge_calibration` promotes the first kind that passes (to shadow first, by default) or
   holds, and the decision records every candidate's evidence (`Ladder.decide`).

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
from protege.route.gates import Verdict, apply_verdict, judge_calibration, live_stats, review_live
from protege.store.base import CallFilter, Store
from protege.train.kinds import TaskData, kind_named, output_kind_of

log = logging.getLogger(__name__)

PSEUDONYM_SEED = 0
"""Seed of the fake values that replace PII in training calls; generative specialists replace a request's PII with
the same values before they answer it (`BuildOptions.pseudonymized_seed`)."""
MIN_LORA_S = 30.0
"""A LoRA training gets at least this much of the pass's budget, or does not start."""
FREE_TEXT_REASON = ("free text: the task metric (ROUGE-L against the LLM's own answer) cannot show 98% of the LLM's "
                    "quality, so the LLM keeps it; with an LLM judge configured, `--train-text` trains one")


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
    max_train_calls: int | None = None
    """Training calls for a generative (LoRA) specialist: None uses every curated call of the task."""
    kinds: list[str] | None = None
    """Only these specialist kinds (None: every registered kind, cheapest first)."""
    licences: list[str] | None = None
    """Licences the base model may have (None: selection's permissive default list)."""
    lora_budget_s: float | None = None
    """Seconds of LoRA training in a pass (None: no limit): the tasks that save the most per training token go
    first, each with an equal share of what is left (its optimizer steps stop there). Evaluating an in-context
    candidate, tried before a task's LoRA, runs on the same clock."""
    train_text: bool = False
    """Also train LoRA specialists for free-text tasks (only worth it with an LLM judge, see docs/routing.md)."""
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
        verdict = review_live(route, live_stats(records, shadows, route.min_confidence), policy,
                              _calibrated_coverage(store, task_id, route.specialist))
        apply_verdict(store, task_id, verdict, actor="monitor")
        if verdict.action != "keep":
            say(f"{task_id}: {verdict.action} {route.mode} → {verdict.mode_to} ({verdict.reason})")
        out.append({"task": task_id, "action": verdict.action, "mode": verdict.mode_to, "reason": verdict.reason})
    return out


def _calibrated_coverage(store: Store, task_id: str, specialist: str | None) -> float:
    """The share of calls the serving specialist's calibration expected it to answer (1.0 if unknown)."""
    for decision in store.decisions(task_id, limit=20):
        if decision.specialist == specialist and "coverage" in decision.evidence:
            return float(decision.evidence["coverage"])
    return 1.0


def _trained_calls(folder: str | None) -> int:
    if not folder:
        return 0
    manifest = Path(folder) / "specialist.json"
    if not manifest.is_file():
        return 0
    splits = json.loads(manifest.read_text()).get("splits", {})
    return splits.get("train", 0) + splits.get("validation", 0) + splits.get("test", 0)


def _needs_training(store: Store, task_id: str, calls: int, growth: float) -> str | None:
    latest = store.decisions(task_id, limit=1)
    if latest and latest[0].action == "retrain":  # `protege forget` deleted calls its specialists may have learnt
        return f"retrain: {latest[0].reason}"
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
    from protege.specialist.artifact import default_folder

    root = default_folder(task_id)
    root.mkdir(parents=True, exist_ok=True)
    versions = [int(p.name[1:].split("-")[0]) for p in root.glob("v*") if p.name[1:].split("-")[0].isdigit()]
    return root / f"v{max(versions, default=0) + 1}"


def run_pass(store: Store, settings: Settings, options: FlywheelOptions | None = None, *,
             pool: Any = None, say: Callable[[str], None] = log.info) -> PassReport:
    """One pass of the loop over everything logged so far (see the module docstring)."""
    from protege.cluster.analysis import analyze_calls
    from protege.curate.pipeline import curate_calls
    from protege.curate.scrub import Scrubber

    opts = options or FlywheelOptions()
    for name in opts.kinds or []:  # a misspelt kind would silently build nothing
        kind_named(name)
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
    scrubber = Scrubber(mode="fake", seed=PSEUDONYM_SEED)
    splits = curate_calls(records, scrubber=scrubber, test_share=opts.test_share,
                          min_test=settings.gates.min_examples, seed=opts.seed).datasets
    raw = {r.id: r for r in records}
    profiles = sorted(analysis.profiles, key=lambda p: (-p.monthly_savings_usd[0], -p.calls))
    ladders: list[Ladder] = []
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
        if opts.max_tasks is not None and len(ladders) >= opts.max_tasks:
            report.skipped[task_id] = f"over --max-tasks {opts.max_tasks} this pass"
            continue
        split = splits.get(task_id)
        say(f"{task_id} ({profile.calls} calls, {profile.output_kind}): {reason}")
        history = sorted((r for r in records if r.task_id == task_id), key=lambda r: r.ts)
        # trained on the scrubbed calls, judged on the same held-out calls as they were sent: as they will be served
        data = TaskData(task_id, output_kind_of(history), split.train if split else [],
                        [raw[r.id] for r in split.test] if split else [], history)
        ladders.append(Ladder(store, settings, data, opts, profile.monthly_savings_usd[0], say))
    own_pool = pool is None
    try:
        for ladder in ladders:  # the cheap kinds first, for every task: seconds each
            pool = ladder.climb(lambda kind: not kind.generative, pool)
        # then the local language models, where they pay most per training token, inside the pass's budget
        for ladder in ladders:  # their own reasons not to build (free text, no held-out calls) come first
            if ladder.chosen is None:
                ladder.climb(lambda kind, lad=ladder: kind.generative and lad.unfit(kind) is not None, pool)
        waiting = sorted((lad for lad in ladders if lad.chosen is None and lad.untried_generative()),
                         key=lambda lad: -lad.value_per_training_char())
        lora_started = time.time()
        for i, ladder in enumerate(waiting):
            # in-context examples need no training: tried first, their evaluation inside the budget's clock
            pool = ladder.climb(lambda kind: kind.generative and kind.name != "lora", pool)
            if ladder.chosen is not None or "lora" not in ladder.untried_generative():
                continue
            if opts.lora_budget_s is not None:  # an equal share of what is left for each task still waiting
                left = opts.lora_budget_s - (time.time() - lora_started)
                if left < MIN_LORA_S:
                    ladder.candidates.append({"kind": "lora", "verdict": "skip", "reason": (
                        f"the pass's LoRA training budget ({opts.lora_budget_s:.0f} s, --lora-budget-s) went to "
                        "tasks that save more per training token; the next pass tries again")})
                    continue
                ladder.build.max_train_s = left / (len(waiting) - i)
            pool = ladder.climb(lambda kind: kind.name == "lora", pool)
    finally:
        if own_pool and pool is not None:
            pool.close()
    report.trained = [ladder.decide() for ladder in ladders]
    report.wall_s = round(time.time() - started, 1)
    return report


def _llm_usd_per_call(records: list[CallRecord]) -> float | None:
    costs = [r.cost_usd for r in records if r.cost_usd is not None]
    return sum(costs) / len(costs) if costs else None


class Ladder:
    """One task climbing the ladder of specialist kinds, cheapest first: each kind that fits is built,
    evaluated and calibrated as served on its held-out calls, and gated; the first that passes is
    promoted. Every candidate's evidence (or why it was skipped) goes into the recorded decision."""

    def __init__(self, store: Store, settings: Settings, task: TaskData, opts: FlywheelOptions, value_usd: float,
                 say: Callable[[str], None]):
        from protege.models.llamacpp import usable_cores
        from protege.train.kinds import BuildOptions

        self.store, self.settings, self.task, self.opts, self.say = store, settings, task, opts, say
        self.value_usd = value_usd
        self.version = _next_folder(task.task_id)
        self.threads = opts.threads or max(1, usable_cores() - 1)
        self.policy = settings.gates.for_task(task.task_id)
        self.current = store.routes().get(task.task_id)
        self.llm_usd = _llm_usd_per_call(task.history or task.test)
        self.candidates: list[dict] = []
        self.chosen: tuple[Verdict, Path, Any] | None = None
        self._last_progress = 0.0
        self.build = BuildOptions(seed=opts.seed, threads=self.threads, model=opts.model,
                                  max_train_calls=opts.max_train_calls, epochs=opts.epochs, batch_size=opts.batch_size,
                                  max_steps=opts.max_steps, licences=opts.licences, on_progress=self._progress,
                                  pseudonymized_seed=PSEUDONYM_SEED)

    def _progress(self, p) -> None:  # a line every 15 s, so a long run shows it is moving
        if time.time() - self._last_progress >= 15 or p.step == p.total_steps:
            self._last_progress = time.time()
            loss = f", loss {p.loss:.3f}" if p.loss is not None else ""
            speed = f", {p.tokens_per_s:,.0f} tok/s" if p.tokens_per_s else ""
            self.say(f"  {self.task.task_id}: {p.phase} step {p.step}/{p.total_steps}{loss}{speed}")

    def value_per_training_char(self) -> float:
        """Monthly saving per character of training text (what changes in the prompt, and the answer)."""
        from protege.specialist.format import response_message, target_text
        from protege.train.kinds import user_text

        chars = sum(len(user_text(r.request)) + len(target_text(response_message(r.response) or {}))
                    for r in self.task.train[: self.opts.max_train_calls])
        return self.value_usd / max(1, chars)

    def unfit(self, kind: Any) -> str | None:
        """Why `kind` will not be built for this task (None: it will)."""
        reason = kind.unfit(self.task)
        if reason is None and kind.generative and self.task.output_kind == "text" and not self.opts.train_text:
            reason = FREE_TEXT_REASON
        if reason is None:
            held_out = len(kind.heldout(self.task))
            if held_out < self.policy.min_examples:  # known before anything is trained: spend nothing on it
                reason = f"{held_out} held-out calls to judge it on, the gate needs {self.policy.min_examples}"
        return reason

    def tried(self, kind_name: str) -> bool:
        return any(c["kind"] == kind_name for c in self.candidates)

    def untried_generative(self) -> list[str]:
        """The generative kinds this pass may still build for the task."""
        from protege.train.kinds import kinds

        return [k.name for k in kinds() if k.generative and not self.tried(k.name)
                and (self.opts.kinds is None or k.name in self.opts.kinds)]

    def climb(self, which: Callable[[Any], bool], pool: Any) -> Any:
        """Try the kinds `which` selects until one passes; returns the `LocalModelPool` (made when needed)."""
        from protege.train.kinds import kinds

        for kind in kinds():
            if self.chosen is not None:
                break
            if not which(kind) or (self.opts.kinds is not None and kind.name not in self.opts.kinds):
                continue
            reason = self.unfit(kind)
            if reason is not None:
                self.candidates.append({"kind": kind.name, "verdict": "skip", "reason": reason})
                continue
            if kind.generative and pool is None:
                from protege.models.serving import LocalModelPool

                pool = LocalModelPool()  # llama.cpp's own default: decoding on half the cores (spin-wait)
            self._try(kind, pool)
        return pool

    def _try(self, kind: Any, pool: Any) -> None:
        from protege.route.calibrate import evaluate_served
        from protege.specialist.artifact import EVAL_REPORT, refresh_manifest

        task_id = self.task.task_id
        folder = self.version.with_name(f"{self.version.name}-{kind.name}")
        t0 = time.time()
        self.say(f"  {task_id}: building a {kind.name} specialist")
        try:
            kind.build(self.task, folder, self.build)
            train_s = time.time() - t0
            responder = kind.open(folder, pool, heldout=True)
            examples = kind.heldout(self.task)
            if kind.generative:  # generation is the slow part: a sample of the held-out calls
                examples = examples[: self.opts.eval_calls]
            longest = max(len(str(ex.answer)) for ex in examples)
            report, cal = evaluate_served(responder, examples, quality_ratio=self.policy.min_quality_ratio,
                                          max_tokens=min(1024, longest // 2 + 64), task=task_id,
                                          output_kind=self.task.output_kind, runtime_name=kind.name)
        except Exception as exc:  # one kind failing must not stop the ladder
            log.exception("building the %s specialist of %s failed", kind.name, task_id)
            self.candidates.append({"kind": kind.name, "verdict": "error", "reason": f"{type(exc).__name__}: {exc}"})
            return
        (folder / EVAL_REPORT).write_text(report.to_json())
        cal.save(folder)
        refresh_manifest(folder)  # its file list now has eval.json and calibration.json
        verdict = judge_calibration(cal, self.policy, self.current.mode if self.current else "off",
                                    llm_usd_per_call=self.llm_usd, usd_per_hour=self.settings.routing.local_usd_per_hour)
        self.candidates.append({
            "kind": kind.name, "folder": str(folder), "verdict": verdict.action, "reason": verdict.reason,
            "n": cal.n, "metric": cal.headline_metric, "quality": cal.quality, "quality_ci": list(cal.quality_ci),
            "coverage": cal.coverage, "threshold": cal.threshold, "routed_quality": cal.routed_quality,
            "valid_rate": cal.valid_rate, "served_valid_rate": cal.served_valid_rate,
            "latency_p50_ms": cal.latency_p50_ms, "saving_usd_per_call": verdict.evidence["saving_usd_per_call"],
            "train_s": round(train_s, 1), "eval_s": round(time.time() - t0 - train_s, 1)})
        self.say(f"  {task_id}: {kind.name}: {verdict.action}: {verdict.reason}")
        if verdict.action == "promote":
            verdict.reason = f"{kind.name}: {verdict.reason}"
            self.chosen = (verdict, folder, cal)

    def decide(self) -> dict:
        """Record the gate's decision for the task: the promoted kind, or a hold saying why each kind failed."""
        task_id = self.task.task_id
        if self.chosen is not None:
            verdict, folder, cal = self.chosen
        else:
            tried = [c for c in self.candidates if c["verdict"] != "skip"]
            reason = "; ".join(f"{c['kind']}: {c['reason']}" for c in tried or self.candidates)
            if not tried:  # nothing was built: every kind's reason to skip it (unfit, or the budget went elsewhere)
                reason = f"no specialist kind was built ({reason or 'no kind to try'})"
            verdict = Verdict("hold", self.current.mode if self.current else "off", reason, {})
            folder = cal = None
        verdict.evidence["candidates"] = self.candidates
        verdict.evidence["trained_calls"] = len(self.task.train) + len(self.task.test)
        apply_verdict(self.store, task_id, verdict, specialist=str(folder) if folder else None,
                      min_confidence=cal.threshold if cal else None)
        self.say(f"{task_id}: {verdict.action} → {verdict.mode_to}: {verdict.reason}")
        best = next((c for c in self.candidates if c["verdict"] == "promote"), None)
        return {"task": task_id, "action": verdict.action, "mode": verdict.mode_to, "reason": verdict.reason,
                "kind": best["kind"] if best else None, "folder": str(folder) if folder else None,
                "quality": cal.quality if cal else None, "coverage": cal.coverage if cal else None,
                "threshold": cal.threshold if cal else None, "candidates": self.candidates}


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
