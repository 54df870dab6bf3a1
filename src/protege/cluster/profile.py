"""A profile per task: volume, spend, tokens, what the answers look like, how consistent they are,
and an SLM-fit score with the evidence behind it and the savings a specialist could bring.

SLM fit (0-100) = 35% output narrowness (label > JSON > tool call > short text > long text)
+ 25% answer consistency + 20% volume (log scale, 1,000 calls = full) + 20% prompt length
(short prompts fit small context windows). Savings assume a self-hosted specialist costs
`specialist_usd_per_mtok` (a low-high range) per million tokens, in and out, against the LLM's
observed (or price-table) cost, scaled to 30 days of the observed traffic.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import orjson

from protege.cluster.features import answer_kind, text_of
from protege.records import CallRecord

SPECIALIST_USD_PER_MTOK = (0.02, 0.10)
"""Self-hosted specialist cost per million tokens (low, high): a 135M-1B model on one GPU or CPU."""


@dataclass
class TaskProfile:
    task_id: str
    name: str
    calls: int
    share_of_calls: float
    spend_usd: float
    share_of_spend: float
    prompt_tokens_mean: float
    completion_tokens_mean: float
    output_kind: str
    """"label", "json", "tool" or "text"."""
    output_detail: dict
    consistency: float
    slm_fit: int
    evidence: list[str] = field(default_factory=list)
    monthly_spend_usd: float = 0.0
    monthly_savings_usd: tuple[float, float] = (0.0, 0.0)
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _message(r: CallRecord) -> dict:
    choices = (r.response or {}).get("choices") or []
    return (choices[0].get("message") or {}) if choices else {}


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(v), "null")


def infer_schema(objects: list[dict]) -> dict:
    """A JSON-schema sketch of the answers: each key's observed types and how often it is present."""
    types: dict[str, Counter] = defaultdict(Counter)
    for o in objects:
        for k, v in o.items():
            types[k][_json_type(v)] += 1
    n = max(1, len(objects))
    return {
        "type": "object",
        "properties": {k: {"type": sorted(c)} for k, c in types.items()},
        "required": sorted(k for k, c in types.items() if sum(c.values()) == n),
    }


def _cost(r: CallRecord, prices) -> float:
    if r.cost_usd is not None:
        return r.cost_usd
    if prices is None:
        return 0.0
    usage = (r.response or {}).get("usage") or {}
    model = r.upstream_model or r.requested_model or (r.response or {}).get("model") or r.request.get("model")
    return prices.cost(model, r.prompt_tokens or usage.get("prompt_tokens"), r.completion_tokens or usage.get("completion_tokens")) or 0.0


def _tokens(r: CallRecord) -> tuple[int, int]:
    usage = (r.response or {}).get("usage") or {}
    return (r.prompt_tokens or usage.get("prompt_tokens") or 0, r.completion_tokens or usage.get("completion_tokens") or 0)


def profile_tasks(
    records: Iterable[CallRecord],
    assignments: dict[str, str | None],
    names: dict[str, str] | None = None,
    prices=None,
    scrubber=None,
    examples_per_task: int = 3,
) -> list[TaskProfile]:
    """Profiles of every task in `assignments`, largest first. `prices`: a `PriceTable` for calls without cost."""
    if prices is None:
        from protege.pricing import PriceTable

        prices = PriceTable()
    by_task: dict[str | None, list[CallRecord]] = defaultdict(list)
    total_spend, n, ts = 0.0, 0, []
    for r in records:
        by_task[assignments.get(r.id)].append(r)
        total_spend += _cost(r, prices)
        n += 1
        ts.append(r.ts)
    days = max(1.0, (max(ts) - min(ts)) / 86400) if ts else 1.0
    out = []
    for task_id, calls in by_task.items():
        if task_id is None:
            continue
        spend = sum(_cost(r, prices) for r in calls)
        toks = [_tokens(r) for r in calls]
        p_mean = statistics.fmean(t[0] for t in toks)
        c_mean = statistics.fmean(t[1] for t in toks)
        kind, detail, consistency = _outputs(calls)
        narrow = {"label": 1.0, "json": 0.9, "tool": 0.85}.get(kind, 0.55 if c_mean <= 80 else 0.3)
        volume = min(1.0, math.log10(max(1, len(calls))) / 3)
        length = 1.0 if p_mean <= 1000 else 0.6 if p_mean <= 4000 else 0.3
        fit = round(100 * (0.35 * narrow + 0.25 * consistency + 0.2 * volume + 0.2 * length))
        evidence = [
            f"output: {kind}" + (f" ({detail.get('summary')})" if detail.get("summary") else ""),
            f"consistency {consistency:.0%} ({detail.get('consistency_rule', '')})",
            f"{len(calls)} calls in {days:.1f} days",
            f"prompts average {p_mean:.0f} tokens, answers {c_mean:.0f}",
        ]
        monthly_spend = spend * 30 / days
        monthly_tokens = sum(a + b for a, b in toks) * 30 / days
        low, high = SPECIALIST_USD_PER_MTOK
        savings = (max(0.0, monthly_spend - monthly_tokens * high / 1e6), max(0.0, monthly_spend - monthly_tokens * low / 1e6))
        examples = []
        for r in calls[:examples_per_task]:
            rr = scrubber.scrub_record(r) if scrubber is not None else r
            msgs = rr.request.get("messages") or []
            user = next((text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
            msg = _message(rr)
            answer = text_of(msg.get("content")) or orjson.dumps(msg.get("tool_calls") or []).decode()
            examples.append({"call_id": r.id, "user": user[:600], "answer": answer[:600]})
        out.append(TaskProfile(
            task_id=task_id, name=(names or {}).get(task_id, task_id), calls=len(calls), share_of_calls=len(calls) / max(1, n),
            spend_usd=round(spend, 6), share_of_spend=spend / total_spend if total_spend else 0.0,
            prompt_tokens_mean=round(p_mean, 1), completion_tokens_mean=round(c_mean, 1), output_kind=kind,
            output_detail=detail, consistency=round(consistency, 4), slm_fit=fit, evidence=evidence,
            monthly_spend_usd=round(monthly_spend, 4), monthly_savings_usd=(round(savings[0], 4), round(savings[1], 4)),
            examples=examples,
        ))
    return sorted(out, key=lambda p: -p.calls)


def _outputs(calls: list[CallRecord]) -> tuple[str, dict, float]:
    """(output kind, details, consistency in [0, 1]) of a task's answers."""
    kinds = Counter(answer_kind(r) for r in calls)
    kind = kinds.most_common(1)[0][0]
    if kind == "tool":
        used: Counter = Counter()
        ok = 0
        for r in calls:
            tool_calls = _message(r).get("tool_calls") or []
            names = {(t.get("function") or {}).get("name") for t in r.request.get("tools") or []}
            fine = bool(tool_calls)
            for c in tool_calls:
                fn = c.get("function") or {}
                used[fn.get("name")] += 1
                try:
                    orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    fine = False
                fine = fine and (not names or fn.get("name") in names)
            ok += fine
        return "tool", {"tools": dict(used.most_common()), "summary": f"{len(used)} tools",
                        "consistency_rule": "calls a known tool with JSON arguments"}, ok / len(calls)
    if kind == "json":
        objs = []
        for r in calls:
            try:
                v = orjson.loads(text_of(_message(r).get("content")))
                if isinstance(v, dict):
                    objs.append(v)
            except orjson.JSONDecodeError:
                pass
        keysets = Counter(frozenset(o) for o in objs)
        top = keysets.most_common(1)[0][1] if keysets else 0
        schema = infer_schema(objs)
        return "json", {"schema": schema, "summary": f"{len(schema['properties'])} keys",
                        "consistency_rule": "answers with the most common key set"}, top / len(calls)
    answers = [text_of(_message(r).get("content")).strip() for r in calls]
    labels = Counter(a.lower() for a in answers)
    if len(labels) <= max(2, min(20, len(answers) // 5)) and max(len(a.split()) for a in labels) <= 4:
        return "label", {"labels": dict(labels.most_common(20)), "summary": f"{len(labels)} labels",
                         "consistency_rule": "answers within the label set"}, 1.0
    lengths = [len(a.split()) for a in answers]
    mean = statistics.fmean(lengths) if lengths else 0.0
    cv = statistics.pstdev(lengths) / mean if mean else 1.0
    return "text", {"words_mean": round(mean, 1), "summary": f"~{mean:.0f} words",
                    "consistency_rule": "1 - coefficient of variation of answer length"}, max(0.0, 1 - cv)
