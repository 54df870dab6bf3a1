"""The evaluation harness: several candidates answer a task's held-out calls, one report compares them.

A candidate is anything that answers a logged request: the LLM's own logged answer (the
reference row), a local model through a protege runtime (base zero-shot, fine-tuned
specialist), a few-shot prompt built from the most similar training calls. `Candidate.answer`
is the one method to implement; built-ins register in `CANDIDATES` the way a plugin would.

Each row of the report has the share of valid outputs, the task's headline metric (chosen by
output kind, see `protege.evaluate.metrics`) with a bootstrap confidence interval, the other
metrics, p50/p95 latency, cost per 1,000 calls where known, and the number of examples.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from protege.evaluate.judge import Judge
from protege.evaluate.metrics import (
    METRICS,
    Context,
    bootstrap_ci,
    macro_f1,
    normalize_label,
    parse_tool_calls,
    percentile,
)
from protege.pricing import LOCAL_USD_PER_HOUR, local_cost
from protege.specialist.examples import Example
from protege.specialist.format import infer_output_kind, target_text

log = logging.getLogger(__name__)

HEADLINE = {"tool_call": "ast_match", "json": "field_f1", "label": "accuracy", "text": "rouge_l"}


@dataclass
class Answer:
    message: dict | None
    """The assistant message, or None when the candidate failed to produce a valid one."""
    latency_ms: float | None = None
    cost_usd: float | None = None
    error: str | None = None


class Candidate(ABC):
    """Something that answers a task's requests."""

    name: str = "candidate"

    @abstractmethod
    def answer(self, example: Example) -> Answer:
        """Answer `example.request` (the reference answer is `example.answer`: do not peek)."""


CANDIDATES: dict[str, type[Candidate]] = {}


def register_candidate(cls: type[Candidate]) -> type[Candidate]:
    CANDIDATES[cls.__name__] = cls
    return cls


@register_candidate
class ReferenceCandidate(Candidate):
    """The LLM's own logged answer: the ceiling every other row is measured against."""

    def __init__(self, name: str = "llm (reference)"):
        self.name = name

    def answer(self, example: Example) -> Answer:
        return Answer(example.answer, example.latency_ms, example.cost_usd)


@register_candidate
class RuntimeCandidate(Candidate):
    """A local model answering through a protege `Runtime` (constrained decoding where the request asks)."""

    def __init__(self, name: str, runtime: Any, *, adapter: str | None = None, max_tokens: int | None = None,
                 usd_per_hour: float = LOCAL_USD_PER_HOUR):
        self.name, self.runtime, self.adapter = name, runtime, adapter
        self.max_tokens = max_tokens
        self.usd_per_hour = usd_per_hour
        """A local answer costs its latency at this hourly machine price (`protege.pricing.local_cost`)."""

    def build_request(self, example: Example) -> dict:
        request = dict(example.request)
        if self.max_tokens:
            asked = request.get("max_completion_tokens") or request.get("max_tokens") or self.max_tokens
            request.pop("max_completion_tokens", None)
            request["max_tokens"] = min(int(asked), self.max_tokens)
        request["temperature"] = 0
        request.pop("stream", None)
        return request

    def answer(self, example: Example) -> Answer:
        from protege.models.errors import RuntimeRequestError

        request = self.build_request(example)
        start = time.perf_counter()
        try:
            if self.adapter is not None:
                completion = self.runtime.complete(request, adapter=self.adapter)
            else:
                completion = self.runtime.complete(request)
        except RuntimeRequestError as exc:
            latency = (time.perf_counter() - start) * 1000
            return Answer(None, latency, local_cost(latency, self.usd_per_hour), exc.message[:300])
        latency = (time.perf_counter() - start) * 1000
        return Answer(completion["choices"][0]["message"], latency, local_cost(latency, self.usd_per_hour))


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _user_text(request: dict) -> str:
    return " ".join(str(m.get("content") or "") for m in request.get("messages") or [] if m.get("role") == "user")


@register_candidate
class FewShotCandidate(RuntimeCandidate):
    """In-context learning: the `k` most similar training calls (word overlap) shown as earlier turns."""

    def __init__(self, name: str, runtime: Any, pool: Sequence[Example], *, k: int = 3, **kwargs: Any):
        super().__init__(name, runtime, **kwargs)
        self.pool = [(ex, _words(_user_text(ex.request))) for ex in pool if len(ex.request.get("messages") or []) <= 3]
        self.k = k

    def build_request(self, example: Example) -> dict:
        request = super().build_request(example)
        words = _words(_user_text(example.request))
        ranked = sorted(self.pool, key=lambda p: -len(words & p[1]) / (len(words | p[1]) or 1))[: self.k]
        shots: list[dict] = []
        for ex, _ in reversed(ranked):
            users = [m for m in ex.request["messages"] if m.get("role") == "user"]
            if users:
                shots += [users[-1], {"role": "assistant", "content": target_text(ex.answer, "json")}]
        messages = list(request.get("messages") or [])
        at = next((i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")), len(messages))
        request["messages"] = messages[:at] + shots + messages[at:]
        return request


# -- scoring --------------------------------------------------------------------------------------


def _schema(request: dict) -> dict | None:
    rf = request.get("response_format") or {}
    return ((rf.get("json_schema") or {}).get("schema") if isinstance(rf, dict) else None) or None


def _content(message: dict | None) -> str | None:
    if message is None:
        return None
    return message.get("content") if isinstance(message.get("content"), str) else None


def score_answer(kind: str, answer: Answer, example: Example, labels: set[str]) -> tuple[dict[str, float], bool]:
    """(metric scores, is the output valid for its kind) of one answer."""
    metric = METRICS[kind]()
    request, reference = example.request, example.answer
    ctx = Context(tools=request.get("tools"), schema=_schema(request))
    if kind == "tool_call":
        scores = metric.score(answer.message, reference, ctx)
        calls = parse_tool_calls(answer.message) if answer.message is not None else None
        wanted = bool(reference.get("tool_calls"))
        valid = answer.message is not None and calls is not None and (bool(calls) or not wanted)
        if valid and calls:
            names = {(t.get("function") or t).get("name") for t in request.get("tools") or []}
            valid = all(n in names for n, _ in calls)
    elif kind == "json":
        scores = metric.score(_content(answer.message), _content(reference), ctx)
        valid = scores["parses"] == 1.0 and scores["schema_valid"] == 1.0
    elif kind == "label":
        scores = metric.score(_content(answer.message), _content(reference) or "", ctx)
        valid = normalize_label(_content(answer.message)) in labels
    else:
        scores = metric.score(_content(answer.message), _content(reference) or "", ctx)
        valid = bool((_content(answer.message) or "").strip())
    if answer.message is None:
        scores = {k: 0.0 for k in scores}
        valid = False
    return scores, valid


@dataclass
class Row:
    name: str
    n: int
    valid_rate: float
    headline: float
    ci_low: float
    ci_high: float
    metrics: dict[str, float]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_per_1k_usd: float | None
    errors: list[str] = field(default_factory=list)
    """A few error messages of invalid outputs, to show what went wrong."""
    per_example: list[tuple[str, float, bool]] = field(default_factory=list)
    """(example id, headline score, valid) of every example, in order."""


@dataclass
class EvalReport:
    task: str | None
    output_kind: str
    headline_metric: str
    n_examples: int
    rows: list[Row]
    created: float = field(default_factory=time.time)
    judge: str | None = None
    """The judge model behind the "judge" metric of free-text rows, when one graded them."""
    labels: list[str] = field(default_factory=list)
    """For label tasks, the labels an answer was judged valid against."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def table(self) -> list[dict[str, Any]]:
        """Rows as flat dicts for a terminal table: name, n, valid %, headline [CI], p50/p95, cost."""
        return [{"candidate": r.name, "n": r.n, "valid %": round(100 * r.valid_rate, 1),
                 self.headline_metric: f"{r.headline:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]",
                 "p50 ms": r.latency_p50_ms, "p95 ms": r.latency_p95_ms, "$/1k calls": r.cost_per_1k_usd}
                for r in self.rows]


def evaluate(examples: Sequence[Example], candidates: Sequence[Candidate], *, task: str | None = None,
             output_kind: str | None = None, labels: Sequence[str] | None = None,
             on_example: Callable[[str, int, int], None] | None = None, seed: int = 0,
             judge: Judge | None = None) -> EvalReport:
    """Every candidate answers every example; returns the comparison report.

    With a `judge` and free-text outputs, every row also gets the judge's score (metric "judge"),
    which becomes the headline in place of ROUGE-L; other output kinds ignore the judge.
    """
    if not examples:
        raise ValueError("no held-out examples to evaluate on: the task needs more logged calls")
    answers = [_content(ex.answer) or "" for ex in examples]
    kind = output_kind or infer_output_kind([ex.request for ex in examples], answers)
    label_set = {normalize_label(x) for x in (labels or answers)} if kind == "label" else set()
    judged = judge is not None and kind == "text"
    headline = "judge" if judged else HEADLINE[kind]
    rows = []
    for cand in candidates:
        per_metric: dict[str, list[float]] = {}
        valid, latencies, costs, errors, predicted, per_example = [], [], [], [], [], []
        for i, ex in enumerate(examples):
            ans = cand.answer(ex)
            scores, ok = score_answer(kind, ans, ex, label_set)
            if judged:
                scores["judge"] = judge.score(ex, _content(ans.message)) if ans.message is not None else 0.0
            for k, v in scores.items():
                per_metric.setdefault(k, []).append(v)
            valid.append(float(ok))
            per_example.append((ex.id, round(scores.get(headline, 0.0), 4), bool(ok)))
            if ans.latency_ms is not None:
                latencies.append(ans.latency_ms)
            if ans.cost_usd is not None:
                costs.append(ans.cost_usd)
            if ans.error and len(errors) < 5:
                errors.append(ans.error)
            predicted.append(_content(ans.message))
            if on_example is not None:
                on_example(cand.name, i + 1, len(examples))
        main = per_metric.get(headline, [0.0] * len(examples))
        lo, hi = bootstrap_ci(main, seed=seed)
        metrics = {k: round(statistics.fmean(v), 4) for k, v in per_metric.items()}
        if kind == "label":
            metrics["macro_f1"] = round(macro_f1(predicted, answers), 4)
        rows.append(Row(cand.name, len(examples), round(statistics.fmean(valid), 4), round(statistics.fmean(main), 4),
                        round(lo, 4), round(hi, 4), metrics, percentile(latencies, 0.5), percentile(latencies, 0.95),
                        round(1000 * statistics.fmean(costs), 4) if costs else None, errors, per_example))
        log.info("%s: %s %.3f [%.3f, %.3f], valid %.0f%%", cand.name, headline, rows[-1].headline, lo, hi,
                 100 * rows[-1].valid_rate)
    return EvalReport(task, kind, headline, len(examples), rows, judge=judge.name if judged else None,
                      labels=sorted(label_set))


def label_counts(examples: Sequence[Example]) -> Counter:
    return Counter(normalize_label(_content(ex.answer)) for ex in examples)
