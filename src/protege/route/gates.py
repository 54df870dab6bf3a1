"""Promotion gates: a specialist serves only what it has earned, and loses it when live evidence turns.

`judge_calibration` decides on held-out evidence (the calibration, see `calibrate`):
promote when at least `min_examples` calls were judged, the outputs it is sure enough to serve
(confidence at or above the calibrated threshold) were valid at `min_valid_rate`, the routed quality at the calibrated threshold is at least `min_quality_ratio`
of the LLM's and the specialist answers at least `min_coverage` of the calls itself. A promoted
specialist starts in `shadow` (answers beside the LLM, compared, never served) when the policy
says so; `review_live` judges the live shadow comparisons by the same task metric the gate used:
after `shadow_calls` answers it would have served, it moves the specialist from shadow to `on` when
those answers score at least `min_shadow_agreement` on average and the live routed quality
(specialist where sure, LLM elsewhere) is at least `min_quality_ratio`. Under a bar, it stays in
shadow while the evidence cannot exclude the bar yet (the bar is inside the 95% interval) and the
window of `live_window` comparisons is not full, and is demoted to `off` once it can or the window
is full; a specialist that serves is demoted when live invalid outputs or fallbacks pass their
thresholds. Shadow answers serve nobody, so waiting for evidence costs only compute, where
deciding on 10-20 comparisons lets one wrong answer decide. (Exact agreement is
kept in the evidence: for JSON a single wrong field makes an answer disagree, which a mean field F1
of 0.98 allows.) Every outcome is a `Decision` with its evidence in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from protege.config import GatePolicy
from protege.evaluate.metrics import wilson_ci
from protege.pricing import LOCAL_USD_PER_HOUR, local_cost
from protege.records import CallRecord
from protege.route.calibrate import Calibration
from protege.store.base import Decision, Route, ShadowResult, Store


@dataclass
class Verdict:
    action: str
    """"promote", "hold" or "demote" (or "keep": nothing to change)."""
    mode_to: str
    reason: str
    evidence: dict = field(default_factory=dict)


def expected_saving(cal: Calibration, llm_usd_per_call: float | None, usd_per_hour: float) -> float | None:
    """USD saved per call of the task: the served share pays no LLM, every call pays the specialist's time
    (a fallback pays both). None when the LLM's price is unknown."""
    if llm_usd_per_call is None:
        return None
    return cal.coverage * llm_usd_per_call - local_cost(cal.latency_p50_ms or 0.0, usd_per_hour)


def judge_calibration(cal: Calibration, policy: GatePolicy, current_mode: str = "off", *,
                      llm_usd_per_call: float | None = None, usd_per_hour: float = LOCAL_USD_PER_HOUR) -> Verdict:
    """Promote or hold a (new) specialist on its held-out calibration: quality at the threshold, validity,
    enough evidence, and a served share whose expected saving is positive."""
    ratio = cal.routed_quality / cal.reference_quality if cal.reference_quality else 0.0
    saving = expected_saving(cal, llm_usd_per_call, usd_per_hour)
    evidence = {
        "n": cal.n, "metric": cal.headline_metric, "quality": cal.quality, "quality_ci": list(cal.quality_ci),
        "valid_rate": cal.valid_rate, "served_valid_rate": cal.served_valid_rate, "threshold": cal.threshold, "coverage": cal.coverage,
        "routed_quality": cal.routed_quality, "reference_quality": cal.reference_quality,
        "quality_ratio": round(ratio, 4), "latency_p50_ms": cal.latency_p50_ms,
        "llm_usd_per_call": llm_usd_per_call, "saving_usd_per_call": saving, "policy": policy.model_dump(),
    }
    failures = []
    if cal.n < policy.min_examples:
        failures.append(f"{cal.n} held-out calls, needs {policy.min_examples}")
    if cal.served_valid_rate < policy.min_valid_rate:
        failures.append(f"{cal.served_valid_rate:.1%} valid outputs at the threshold, needs {policy.min_valid_rate:.0%}")
    if ratio < policy.min_quality_ratio:
        failures.append(f"routed {cal.headline_metric} {ratio:.1%} of the LLM's, needs {policy.min_quality_ratio:.0%}")
    if cal.coverage < policy.min_coverage:
        failures.append(f"answers {cal.coverage:.0%} of calls at the calibrated threshold, needs {policy.min_coverage:.0%}")
    elif saving is not None and saving <= 0:
        failures.append(f"serving {cal.coverage:.0%} of calls would cost more than it saves "
                        f"({saving * 1000:+.4f} USD per 1,000 calls)")
    if failures:
        return Verdict("hold", "off" if current_mode == "off" else current_mode, "; ".join(failures), evidence)
    mode = "shadow" if policy.shadow_first else "on"
    reason = (f"{cal.headline_metric} {cal.quality:.3f} alone, routed {ratio:.1%} of the LLM's with {cal.coverage:.0%} "
              f"served at confidence >= {cal.threshold:.3f} ({cal.served_valid_rate:.0%} of those valid, "
              f"{cal.valid_rate:.0%} of all) on {cal.n} held-out calls")
    return Verdict("promote", mode, reason, evidence)


@dataclass
class LiveStats:
    """What the gateway saw a specialist do since its route last changed."""

    routed: int = 0
    """Calls of the task the specialist was asked to answer (modes canary/on)."""
    served: int = 0
    fallbacks: int = 0
    invalid: int = 0
    shadow: int = 0
    """Shadow answers the specialist would have served (valid, confident enough)."""
    shadow_agree: int = 0
    """Of those, the ones that match the LLM's (exact for labels, JSON and tool calls)."""
    shadow_score: float = 0.0
    """Of those, the sum of their task-metric scores against the LLM's answer (field F1, AST match...)."""
    shadow_total: int = 0
    """Every shadow comparison, served or not (an unserved one falls back: the LLM's own quality)."""

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.routed if self.routed else 0.0

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.routed if self.routed else 0.0

    @property
    def shadow_agreement(self) -> float | None:
        return self.shadow_agree / self.shadow if self.shadow else None

    @property
    def shadow_quality(self) -> float | None:
        """Mean task-metric score of the answers the specialist would have served."""
        return self.shadow_score / self.shadow if self.shadow else None

    @property
    def routed_quality(self) -> float | None:
        """Live quality of specialist-where-sure plus LLM-for-the-rest, the quantity the gate calibrated."""
        if not self.shadow_total:
            return None
        return (self.shadow_score + self.shadow_total - self.shadow) / self.shadow_total


def live_stats(records: Sequence[CallRecord], shadows: Sequence[ShadowResult],
               min_confidence: float | None = None) -> LiveStats:
    """Counts from the calls the router logged and the shadow comparisons. Only shadow answers the specialist
    would have served count (valid, confidence at or above `min_confidence`): the others fall back to the LLM."""
    stats = LiveStats()
    for r in records:
        route = r.metadata.get("route") or {}
        if not route.get("attempted") or route.get("fallback_reason") == "queue":
            continue  # a busy model says nothing about the specialist's answers
        stats.routed += 1
        if route.get("fallback"):
            stats.fallbacks += 1
            stats.invalid += route.get("fallback_reason") in ("invalid_output", "specialist_error")
        else:
            stats.served += 1
    served = [s for s in shadows if s.valid and (min_confidence is None or (s.confidence or 0.0) >= min_confidence)]
    stats.shadow, stats.shadow_total = len(served), len(shadows)
    stats.shadow_agree = sum(s.agree for s in served)
    stats.shadow_score = sum(s.score for s in served)
    return stats


def _may_pass(stats: LiveStats, policy: GatePolicy) -> bool:
    """Whether the shadow evidence so far still allows the bars (the 95% upper bounds of served and routed
    quality reach them): with 10-20 comparisons, one wrong answer can put an estimate under the bar."""
    _, served_hi = wilson_ci(stats.shadow_score, stats.shadow)
    routed_hi = (served_hi * stats.shadow + stats.shadow_total - stats.shadow) / stats.shadow_total
    return served_hi >= policy.min_shadow_agreement and routed_hi >= policy.min_quality_ratio


def review_live(route: Route, stats: LiveStats, policy: GatePolicy, coverage: float = 1.0) -> Verdict:
    """Shadow → on, or demotion, from live evidence; "keep" when there is not enough of it. `coverage`: the
    share of calls the calibration expected the specialist to answer (the rest fall back by design)."""
    evidence = {"routed": stats.routed, "served": stats.served, "fallback_rate": round(stats.fallback_rate, 4),
                "invalid_rate": round(stats.invalid_rate, 4), "shadow_calls": stats.shadow,
                "shadow_agreement": None if stats.shadow_agreement is None else round(stats.shadow_agreement, 4),
                "shadow_quality": None if stats.shadow_quality is None else round(stats.shadow_quality, 4),
                "shadow_routed_quality": None if stats.routed_quality is None else round(stats.routed_quality, 4)}
    if stats.shadow >= policy.shadow_calls:
        live = (f"served answers scored {stats.shadow_quality:.1%} on {stats.shadow} shadow comparisons "
                f"({stats.shadow_agreement:.0%} exact), routed {stats.routed_quality:.1%} of the LLM's")
        short = []
        if stats.shadow_quality < policy.min_shadow_agreement:
            short.append(f"needs {policy.min_shadow_agreement:.0%} served")
        if stats.routed_quality < policy.min_quality_ratio:
            short.append(f"needs {policy.min_quality_ratio:.1%} routed")
        if short and route.mode == "shadow" and stats.shadow_total < policy.live_window and _may_pass(stats, policy):
            return Verdict("keep", route.mode, f"{live}; {', '.join(short)}, not excluded yet: more shadow "
                           f"comparisons decide (at most {policy.live_window})", evidence)
        if short:
            return Verdict("demote", "off", f"{live}; {', '.join(short)}", evidence)
        if route.mode == "shadow":
            return Verdict("promote", "on", live, evidence)
    elif route.mode == "shadow":
        return Verdict("keep", route.mode, f"{stats.shadow} of {policy.shadow_calls} shadow comparisons", evidence)
    if route.mode in ("on", "canary") and stats.routed >= policy.min_live_calls:
        if stats.invalid_rate > policy.max_invalid_rate:
            return Verdict("demote", "off", f"{stats.invalid_rate:.1%} invalid outputs live, allows "
                           f"{policy.max_invalid_rate:.0%}", evidence)
        allowed = min(1.0, 1.0 - coverage + policy.max_fallback_rate)
        if stats.fallback_rate > allowed:
            return Verdict("demote", "off", f"{stats.fallback_rate:.1%} of calls fell back to the LLM, allows "
                           f"{allowed:.0%} ({1 - coverage:.0%} calibrated + {policy.max_fallback_rate:.0%})", evidence)
    return Verdict("keep", route.mode, "within thresholds", evidence)


def apply_verdict(store: Store, task_id: str, verdict: Verdict, *, specialist: str | None = None,
                  min_confidence: float | None = None, actor: str = "gate") -> Route | None:
    """Record the verdict; change the route when it promotes or demotes. Returns the new route, if any."""
    current = store.routes().get(task_id)
    mode_from = current.mode if current else None
    decision = Decision(task_id, verdict.action, mode_from, verdict.mode_to, verdict.reason, verdict.evidence,
                        specialist or (current.specialist if current else None), actor)
    if verdict.action == "keep":
        return current
    if verdict.action == "hold":
        store.add_decision(decision)
        return current
    route = Route(task_id, verdict.mode_to, decision.specialist,
                  current.canary_share if current else 0.1,
                  min_confidence if min_confidence is not None else (current.min_confidence if current else None))
    store.set_route(route, decision)
    return route


def set_mode(store: Store, task_id: str, mode: str, *, specialist: str | None = None,
             min_confidence: float | None = None, canary_share: float | None = None,
             reason: str = "set by hand") -> Route:
    """A user's mode change (`protege promote TASK --mode ...`), recorded like a gate decision."""
    current = store.routes().get(task_id)
    specialist = specialist or (current.specialist if current else None)
    if mode != "off" and specialist is None:
        raise ValueError(f"task {task_id!r} has no specialist yet: train one (`protege train {task_id}`) "
                         "or pass --specialist FOLDER")
    route = Route(task_id, mode, specialist,
                  canary_share if canary_share is not None else (current.canary_share if current else 0.1),
                  min_confidence if min_confidence is not None else (current.min_confidence if current else None))
    store.set_route(route, Decision(task_id, "set", current.mode if current else None, mode, reason, {},
                                    specialist, "user"))
    return route
