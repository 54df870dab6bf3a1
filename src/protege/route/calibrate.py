"""Evaluate and calibrate a specialist where it will serve: its held-out calls through the serving runtime.

Each held-out call is answered by the specialist as the gateway would answer it (its `Responder`:
for a LoRA specialist the same runtime, pruned prompt and constrained decoding) with its
confidence (LoRA: `Generation.confidence`, the smallest top-1/top-2 probability margin over the
decoded tokens; classifier: the head's probability; reuse: how consistently the request was
answered). Sorting by confidence gives the
trade-off curve: at threshold t the specialist answers the calls with confidence >= t and a valid
output, the LLM answers the rest, and the routed quality is the mix. The chosen threshold is the
lowest (most calls served) whose routed quality still meets the gate's quality ratio.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protege.pricing import local_cost
from protege.specialist.examples import Example

CALIBRATION = "calibration.json"


@dataclass
class Point:
    id: str
    confidence: float | None
    score: float
    valid: bool


@dataclass
class Calibration:
    output_kind: str
    headline_metric: str
    n: int
    reference_quality: float
    """The LLM's own answers scored against themselves (1.0 for every metric protege uses)."""
    quality: float
    """The specialist alone, every call: its headline metric."""
    quality_ci: tuple[float, float]
    valid_rate: float
    """Share of valid outputs over every held-out call."""
    threshold: float
    coverage: float
    """Share of calls the specialist answers at `threshold`."""
    routed_quality: float
    """Quality of specialist-above-threshold plus LLM-for-the-rest."""
    target_quality: float
    latency_p50_ms: float | None
    served_valid_rate: float = 1.0
    """Share of valid outputs among those at or above `threshold`: what the router would serve if it did
    not validate (invalid outputs fall back anyway; this says whether it has to)."""
    labels: list[str] = field(default_factory=list)
    """For label tasks, the labels the LLM used: the router falls back on any other."""
    curve: list[dict] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    runtime: str = ""
    max_tokens: int = 256
    """The generation budget the calibration used; the router caps the specialist at it."""
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Calibration | None:
        path = Path(folder) / CALIBRATION
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["points"] = [Point(**p) for p in data.get("points", [])]
        data["quality_ci"] = tuple(data["quality_ci"])
        return cls(**data)


def _scored_candidate(name: str, runtime: Any, max_tokens: int):
    from protege.evaluate.harness import Answer, RuntimeCandidate
    from protege.models.errors import RuntimeRequestError

    class Scored(RuntimeCandidate):
        confidences: dict[str, float | None]

        def answer(self, example: Example) -> Answer:
            start = time.perf_counter()
            try:
                completion, confidence = self.runtime.respond(self.build_request(example), example.scope)
            except RuntimeRequestError as exc:
                self.confidences[example.id] = None
                latency = (time.perf_counter() - start) * 1000
                return Answer(None, latency, local_cost(latency, self.usd_per_hour), exc.message[:300])
            self.confidences[example.id] = confidence
            latency = (time.perf_counter() - start) * 1000
            if completion is None:  # nothing to say (answer reuse: never asked before): the LLM answers
                return Answer(None, latency, local_cost(latency, self.usd_per_hour), "no answer")
            if completion["choices"][0]["finish_reason"] == "length":  # the router never serves a cut-off answer
                return Answer(None, latency, local_cost(latency, self.usd_per_hour), f"cut off at {self.max_tokens} tokens")
            return Answer(completion["choices"][0]["message"], latency, local_cost(latency, self.usd_per_hour))

    cand = Scored(name, runtime, max_tokens=max_tokens)
    cand.confidences = {}
    return cand


def tradeoff_curve(points: Sequence[Point], reference: float = 1.0) -> list[dict]:
    """Coverage, served quality and routed quality at every distinct confidence threshold."""
    n = len(points)
    thresholds = sorted({p.confidence for p in points if p.confidence is not None} | {0.0}) + [1.01]
    curve = []
    for t in thresholds:
        served = [p for p in points if p.valid and p.confidence is not None and p.confidence >= t]
        served_sum = sum(p.score for p in served)
        curve.append({
            "threshold": round(t, 6), "coverage": round(len(served) / n, 4),
            "served_quality": round(served_sum / len(served), 4) if served else None,
            "routed_quality": round((served_sum + (n - len(served)) * reference) / n, 4),
        })
    return curve


def choose_threshold(curve: Sequence[dict], target: float) -> dict:
    """The lowest threshold (most calls served) whose routed quality meets `target`."""
    meeting = [c for c in curve if c["routed_quality"] >= target]
    return min(meeting, key=lambda c: c["threshold"]) if meeting else curve[-1]


def evaluate_served(specialist: Any, examples: Sequence[Example], *, quality_ratio: float, base: Any | None = None,
                    max_tokens: int = 256, task: str | None = None, output_kind: str | None = None,
                    runtime_name: str = "", on_example: Callable[[str, int, int], None] | None = None,
                    ) -> tuple[Any, Calibration]:
    """Evaluate a specialist as served (`specialist`: a `protege.train.kinds.Responder`), with the base model
    (`base`, optional) and the LLM reference beside it; returns the `EvalReport` and the `Calibration`."""
    from protege.evaluate.harness import ReferenceCandidate, RuntimeCandidate, evaluate

    if not examples:
        raise ValueError("no held-out calls to evaluate on: the task needs more logged calls")
    scored = _scored_candidate("specialist", specialist, max_tokens)
    candidates = ([RuntimeCandidate("base zero-shot", base, max_tokens=max_tokens)] if base is not None else [])
    candidates += [scored, ReferenceCandidate()]
    report = evaluate(examples, candidates, task=task, output_kind=output_kind, on_example=on_example)
    row, reference = report.row("specialist"), report.row("llm (reference)")
    points = [Point(i, scored.confidences.get(i), score, valid) for i, score, valid in row.per_example]
    curve = tradeoff_curve(points, reference.headline)
    target = quality_ratio * reference.headline
    chosen = choose_threshold(curve, target)
    confident = [p for p in points if p.confidence is not None and p.confidence >= chosen["threshold"]]
    cal = Calibration(
        output_kind=report.output_kind, headline_metric=report.headline_metric, n=row.n,
        reference_quality=reference.headline, quality=row.headline, quality_ci=(row.ci_low, row.ci_high),
        valid_rate=row.valid_rate, threshold=chosen["threshold"], coverage=chosen["coverage"],
        routed_quality=chosen["routed_quality"], target_quality=round(target, 4), latency_p50_ms=row.latency_p50_ms,
        curve=curve, points=points, runtime=runtime_name, max_tokens=max_tokens,
        served_valid_rate=round(sum(p.valid for p in confident) / len(confident), 4) if confident else 1.0,
        labels=report.labels,
    )
    return report, cal
