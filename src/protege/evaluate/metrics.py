"""Task-aware metrics: each compares a candidate answer with the reference (the LLM's) answer.

Output kinds and their metrics:
- tool calls: function-name match, exact call match, BFCL-style AST match (types, optional
  parameters with their defaults, order-free parallel calls);
- JSON: schema validity, field-level exact match and F1 over leaf values;
- labels: accuracy (per example) and macro-F1 (over a set);
- free text: token F1 and ROUGE-L.

A metric is a class with one `score(candidate, reference, context) -> dict[str, float]` method,
registered in `METRICS` by output kind, the same way a plugin would add one.
"""

from __future__ import annotations

import json
import math
import random
import re
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Context:
    """What a metric may need besides the two answers: the request's tools and schema."""

    tools: list[dict] | None = None
    schema: dict | None = None


class Metric(ABC):
    kind: str

    @abstractmethod
    def score(self, candidate: Any, reference: Any, context: Context) -> dict[str, float]:
        """Scores in [0, 1] for one example; the first key is the metric's headline."""


METRICS: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    METRICS[cls.kind] = cls
    return cls


# -- tool calls ---------------------------------------------------------------------------------


def parse_tool_calls(message: dict | None) -> list[tuple[str, Any]] | None:
    """`[(name, arguments)]` from an assistant message; None when the arguments are not JSON objects."""
    calls = []
    for tc in (message or {}).get("tool_calls") or []:
        fn = tc.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except (json.JSONDecodeError, TypeError):
            return None
        if not isinstance(args, dict):
            return None
        calls.append((fn.get("name"), args))
    return calls


def _norm_str(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).lower().strip()
    return re.sub(r"[\s,./\-_*^]+", " ", s).strip()


def values_match(candidate: Any, reference: Any) -> bool:
    """BFCL-style value equality: int accepted for float, strings compared loosely, lists in order, dicts by key."""
    if isinstance(reference, bool) or isinstance(candidate, bool):
        return type(candidate) is type(reference) and candidate == reference
    if isinstance(reference, float) and isinstance(candidate, (int, float)):
        return abs(candidate - reference) <= 1e-9 * max(1.0, abs(reference))
    if isinstance(reference, int) and isinstance(candidate, int):
        return candidate == reference
    if isinstance(reference, str) and isinstance(candidate, str):
        return _norm_str(candidate) == _norm_str(reference)
    if isinstance(reference, list) and isinstance(candidate, list):
        return len(candidate) == len(reference) and all(map(values_match, candidate, reference))
    if isinstance(reference, dict) and isinstance(candidate, dict):
        return candidate.keys() == reference.keys() and all(values_match(candidate[k], reference[k]) for k in reference)
    return candidate == reference


def _tool_params(tools: list[dict] | None, name: str) -> dict | None:
    for tool in tools or []:
        fn = tool.get("function", tool)
        if fn.get("name") == name:
            return fn.get("parameters") or {}
    return None


def call_matches(candidate: tuple[str, dict], reference: tuple[str, dict], tools: list[dict] | None) -> bool:
    """AST match of one call: same function, every required/reference argument present and equal,
    no argument the tool does not define, optional arguments missing only where the reference used the default."""
    (cname, cargs), (rname, rargs) = candidate, reference
    if cname != rname:
        return False
    params = _tool_params(tools, rname)
    props = (params or {}).get("properties") or {}
    required = set((params or {}).get("required") or [])
    if params is not None and any(k not in props for k in cargs):
        return False
    for key in required | set(rargs):
        if key in cargs and key in rargs:
            if not values_match(cargs[key], rargs[key]):
                return False
        elif key in cargs:  # the candidate set an optional argument the reference left out
            default = props.get(key, {}).get("default")
            if key in required or default is None or not values_match(cargs[key], default):
                return False
        else:  # missing in the candidate
            default = props.get(key, {}).get("default")
            if key in required or default is None or not values_match(rargs[key], default):
                return False
    return True


def match_calls(candidates: list, references: list, tools: list[dict] | None) -> bool:
    """Order-free matching of parallel calls (each reference call to a distinct candidate)."""
    if len(candidates) != len(references):
        return False
    left = list(candidates)
    for ref in references:
        hit = next((i for i, c in enumerate(left) if call_matches(c, ref, tools)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


@register
class ToolCallMetric(Metric):
    kind = "tool_call"

    def score(self, candidate: dict | None, reference: dict, context: Context) -> dict[str, float]:
        ref = parse_tool_calls(reference) or []
        cand = parse_tool_calls(candidate)
        if cand is None or (ref and not cand):
            return {"ast_match": 0.0, "exact_match": 0.0, "name_match": 0.0, "valid": 0.0 if cand is None else 1.0}
        canon = lambda calls: sorted((n, json.dumps(a, sort_keys=True)) for n, a in calls)  # noqa: E731
        return {
            "ast_match": float(match_calls(cand, ref, context.tools)),
            "exact_match": float(canon(cand) == canon(ref)),
            "name_match": float(Counter(n for n, _ in cand) == Counter(n for n, _ in ref)),
            "valid": 1.0,
        }


# -- JSON ---------------------------------------------------------------------------------------


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k2: v2 for k, v in value.items() for k2, v2 in _leaves(v, f"{path}.{k}").items()} or {path: {}}
    if isinstance(value, list):
        return {k2: v2 for i, v in enumerate(value) for k2, v2 in _leaves(v, f"{path}[{i}]").items()} or {path: []}
    return {path: value}


def _loads(text: Any) -> tuple[bool, Any]:
    if not isinstance(text, str):
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return False, None


@register
class JsonMetric(Metric):
    kind = "json"

    def score(self, candidate: str | None, reference: str, context: Context) -> dict[str, float]:
        ok, cand = _loads(candidate)
        _, ref = _loads(reference)
        if not ok:
            return {"field_f1": 0.0, "exact_match": 0.0, "schema_valid": 0.0, "parses": 0.0}
        valid = 1.0
        if context.schema is not None:
            import jsonschema

            valid = float(jsonschema.Draft202012Validator(context.schema).is_valid(cand))
        cl, rl = _leaves(cand), _leaves(ref)
        hits = sum(1 for k, v in cl.items() if k in rl and values_match(v, rl[k]))
        precision = hits / len(cl) if cl else float(not rl)
        recall = hits / len(rl) if rl else float(not cl)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"field_f1": f1, "exact_match": float(cand == ref), "schema_valid": valid, "parses": 1.0}


# -- labels and free text -----------------------------------------------------------------------


def normalize_label(text: str | None) -> str:
    return _norm_str(text or "").strip(" .!\"'")


@register
class LabelMetric(Metric):
    kind = "label"

    def score(self, candidate: str | None, reference: str, context: Context) -> dict[str, float]:
        return {"accuracy": float(normalize_label(candidate) == normalize_label(reference))}


def macro_f1(candidates: Sequence[str | None], references: Sequence[str]) -> float:
    """Macro-averaged F1 over the reference labels."""
    cands = [normalize_label(c) for c in candidates]
    refs = [normalize_label(r) for r in references]
    f1s = []
    for label in sorted(set(refs)):
        tp = sum(c == r == label for c, r in zip(cands, refs))
        fp = sum(c == label and r != label for c, r in zip(cands, refs))
        fn = sum(r == label and c != label for c, r in zip(cands, refs))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


def _tokens(text: str | None) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text or "").lower())


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@register
class TextMetric(Metric):
    kind = "text"

    def score(self, candidate: str | None, reference: str, context: Context) -> dict[str, float]:
        c, r = _tokens(candidate), _tokens(reference)
        if not c or not r:
            same = float(c == r)
            return {"rouge_l": same, "token_f1": same}
        common = sum((Counter(c) & Counter(r)).values())
        token_f1 = 2 * common / (len(c) + len(r))
        lcs = _lcs(c, r)
        rouge_l = 2 * lcs / (len(c) + len(r))
        return {"rouge_l": rouge_l, "token_f1": token_f1}


# -- aggregation --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) with linear interpolation between ranks, rounded to 2 decimals; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(len(ordered) - 1, int(pos) + 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 2)


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    lo = means[int((1 - confidence) / 2 * samples)]
    hi = means[min(samples - 1, int((1 + confidence) / 2 * samples))]
    return (lo, hi)


def wilson_ci(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound for small n and rates near 0 or 1); `successes`
    may be a sum of scores in [0, 1]."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
