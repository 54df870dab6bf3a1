"""Choosing the base SLM of a specialist: filter the catalog, probe what is left, pick by quality per cost.

`protege train TASK` calls `select_base` when no `--model` is given:

1. **Filter** every catalog entry, each rejection with its reason: served remotely (nothing
   to fine-tune here), licence not in the allow-list, memory footprint over the cap, context
   length shorter than the task's longest prompt plus its answer budget, weights not installed.
2. **Probe** the candidates left: each answers a small held-out sample of the task zero-shot
   and few-shot (the 3 most similar other calls as earlier turns) through its protege runtime
   (`protege.evaluate.harness`, greedy, constrained decoding where the request asks), scored
   with the task's headline metric.
3. **Pick** by quality per cost: quality = the better of the zero-shot and few-shot headline
   scores, cost = parameters in billions; the highest quality / cost wins, ties (within 0.001)
   go to the smaller model. Without a probe (`probe=False`), or when every candidate scores 0,
   the smallest candidate wins: fine-tuning, not the base's prompt-following, makes the
   specialist, and a smaller base is cheaper to train and serve.

The decision and its evidence (`Selection.to_dict()`) go into the specialist's folder as
selection.json.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from protege.models.catalog import ModelCatalog, ModelSpec, default_catalog
from protege.models.prompting import CHATML, render_prompt
from protege.specialist.examples import Example, split_examples
from protege.specialist.format import infer_output_kind, response_message, target_text

log = logging.getLogger(__name__)

SELECTION = "selection.json"

PERMISSIVE_LICENCES = ("Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Unlicense", "CC0-1.0",
                       "CC-BY-4.0")
"""The default allow-list. Write "permissive" in your own list to include these, e.g.
`licences=["permissive", "Gemma terms of use"]`."""

RULE = ("quality = max(zero-shot, few-shot) headline score on the probe sample; cost = parameters in billions; "
        "highest quality / cost wins, ties (within 0.001) to the smaller model; with no probe, or all qualities 0, "
        "the smallest candidate wins")

CHARS_PER_TOKEN = 4
"""Token estimate for prompts before any tokenizer is loaded (English text and JSON average ~4 chars a token)."""


@dataclass
class CandidateEvidence:
    """What selection found out about one catalog entry."""

    name: str
    kept: bool
    reason: str
    """Why it was rejected, or "passed the filters" / "probed" / "chosen"."""
    params: int | None = None
    context_length: int | None = None
    license: str = "unknown"
    memory_estimate: int | None = None
    zero_shot: float | None = None
    """Headline score answering the probe sample zero-shot."""
    few_shot: float | None = None
    zero_shot_valid: float | None = None
    few_shot_valid: float | None = None
    latency_p50_ms: float | None = None
    """Median zero-shot latency per call on this machine."""
    quality_per_cost: float | None = None
    """Quality / parameters in billions (see `RULE`)."""
    probe_errors: list[str] = field(default_factory=list)


@dataclass
class Selection:
    """The chosen base model and the evidence for it."""

    model: str
    rule: str
    output_kind: str
    headline_metric: str | None
    longest_prompt_tokens: int
    answer_budget_tokens: int
    licences: list[str]
    max_memory_bytes: int | None
    probe_ids: list[str]
    candidates: list[CandidateEvidence]

    def candidate(self, name: str) -> CandidateEvidence:
        return next(c for c in self.candidates if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# -- filters --------------------------------------------------------------------------------------


def allowed_licences(licences: Iterable[str] | None) -> list[str]:
    """The allow-list: `PERMISSIVE_LICENCES` by default; "permissive" in a given list expands to them."""
    if licences is None:
        return list(PERMISSIVE_LICENCES)
    out: list[str] = []
    for name in licences:
        out += list(PERMISSIVE_LICENCES) if name.strip().lower() == "permissive" else [name]
    return list(dict.fromkeys(out))


def _licence_key(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", "-").split())


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def prompt_tokens(request: dict) -> int:
    """Estimated tokens of the full prompt (tools and schema described, ChatML template)."""
    return estimate_tokens(render_prompt(request, CHATML))


def answer_budget(examples: Sequence[Example], kind: str) -> int:
    """Tokens a candidate may write: 1.5x the longest reference answer (estimated) plus 16, as evaluation does."""
    longest = max((estimate_tokens(target_text(ex.answer, kind)) for ex in examples), default=0)
    return int(longest * 1.5) + 16


def machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def filter_spec(spec: ModelSpec, *, allowed: Sequence[str], max_memory_bytes: int | None,
                needed_tokens: int) -> CandidateEvidence:
    """Check one catalog entry against the policy; the evidence says kept or why not."""
    memory = spec.memory_estimate()
    ev = CandidateEvidence(spec.name, False, "", spec.params, spec.context_length, spec.license, memory)
    keys = {_licence_key(a) for a in allowed}
    if spec.runtime == "remote":
        ev.reason = f"served remotely ({spec.base_url}): no local weights to fine-tune"
    elif _licence_key(spec.license) not in keys:
        ev.reason = (f"licence {spec.license!r} is not in the allow-list ({', '.join(allowed)}); allow it with "
                     f"licences=[..., {spec.license!r}]" + (" or declare the licence in models.toml"
                                                            if spec.license == "unknown" else ""))
    elif max_memory_bytes is not None and memory is not None and memory > max_memory_bytes:
        ev.reason = f"memory estimate {memory / 2**20:.0f} MiB exceeds the cap of {max_memory_bytes / 2**20:.0f} MiB"
    elif spec.context_length is not None and spec.context_length < needed_tokens:
        ev.reason = (f"context length {spec.context_length} is shorter than the task needs (~{needed_tokens} tokens: "
                     "longest prompt plus answer budget)")
    elif spec.file_size() is None:
        ev.reason = "weights not installed" + (f"; {spec.install_hint}" if spec.install_hint else "")
    else:
        ev.kept, ev.reason = True, "passed the filters"
    return ev


# -- probe --------------------------------------------------------------------------------------


def probe_candidate(spec: ModelSpec, ev: CandidateEvidence, sample: Sequence[Example], pool: Sequence[Example], *,
                    kind: str, labels: Sequence[str], max_tokens: int, needed_tokens: int) -> None:
    """Score one candidate zero-shot and few-shot on `sample`; fills in `ev` (a failure rejects it)."""
    from protege.evaluate.harness import FewShotCandidate, RuntimeCandidate, evaluate
    from protege.models.runtime import build_runtime

    options: dict[str, Any] = {}
    if spec.runtime == "llama.cpp" and needed_tokens > 4096:  # llama.cpp's runtime defaults to a 4096 window
        options["n_ctx"] = min(spec.context_length or needed_tokens, needed_tokens + 512)
    try:
        runtime = build_runtime(spec, **options)
    except Exception as exc:  # noqa: BLE001 - a base that cannot load is rejected, with the reason
        ev.kept, ev.reason = False, f"could not load: {type(exc).__name__}: {exc}"
        return
    try:
        candidates = [RuntimeCandidate("zero-shot", runtime, max_tokens=max_tokens)]
        if pool:
            candidates.append(FewShotCandidate("few-shot", runtime, pool, k=3, max_tokens=max_tokens))
        report = evaluate(sample, candidates, output_kind=kind, labels=labels or None)
    except Exception as exc:  # noqa: BLE001
        ev.kept, ev.reason = False, f"probe failed: {type(exc).__name__}: {exc}"
        return
    finally:
        runtime.close()
    zero = report.row("zero-shot")
    ev.zero_shot, ev.zero_shot_valid, ev.latency_p50_ms = zero.headline, zero.valid_rate, zero.latency_p50_ms
    ev.probe_errors = list(zero.errors[:2])
    if pool:
        few = report.row("few-shot")
        ev.few_shot, ev.few_shot_valid = few.headline, few.valid_rate
        ev.probe_errors += few.errors[:2]
    ev.reason = "probed"


def quality(ev: CandidateEvidence) -> float:
    return max(ev.zero_shot or 0.0, ev.few_shot or 0.0)


def pick(kept: Sequence[CandidateEvidence]) -> CandidateEvidence:
    """The candidate with the best quality per cost (see `RULE`); ties and unknown sizes go to the smaller one."""
    def size(ev: CandidateEvidence) -> float:
        return ev.params if ev.params else float("inf")

    for ev in kept:
        if ev.params and ev.zero_shot is not None:
            ev.quality_per_cost = round(quality(ev) / (ev.params / 1e9), 4)
    best = max((ev.quality_per_cost or 0.0) for ev in kept)
    tied = [ev for ev in kept if (ev.quality_per_cost or 0.0) >= best - 1e-3]
    return min(tied, key=lambda ev: (size(ev), ev.name))


# -- selection ------------------------------------------------------------------------------------


def select_base(examples: Sequence[Example], *, catalog: ModelCatalog | None = None,
                licences: Iterable[str] | None = None, max_memory_bytes: int | None = None, probe_n: int = 8,
                probe: bool | None = None, seed: int = 0) -> Selection:
    """Choose a base SLM for a task's examples: filter the catalog, probe what is left, pick by quality per cost.

    `licences` is the allow-list (default `PERMISSIVE_LICENCES`; "permissive" in the list adds them).
    `max_memory_bytes` caps the serving memory estimate (default: the machine's physical memory).
    `probe_n` examples (picked by a seeded hash of their ids) are the probe sample; the others are
    the few-shot pool; `probe=None` probes only when more than one model is left (True: always).
    Raises `ValueError` naming every rejection when no model is left.
    """
    examples = list(examples)
    if not examples:
        raise ValueError("no examples to choose a base model for: the task needs logged calls")
    catalog = catalog or default_catalog()
    allowed = allowed_licences(licences)
    cap = max_memory_bytes if max_memory_bytes is not None else machine_memory()
    answers = [(response_message(ex.answer) or {}).get("content") or "" for ex in examples]
    kind = infer_output_kind([ex.request for ex in examples], answers)
    longest = max(prompt_tokens(ex.request) for ex in examples)
    budget = answer_budget(examples, kind)
    evidence = [filter_spec(spec, allowed=allowed, max_memory_bytes=cap, needed_tokens=longest + budget)
                for spec in catalog.specs()]
    specs = {spec.name: spec for spec in catalog.specs()}

    pool, sample = split_examples(examples, min(0.5, probe_n / len(examples)), seed) if len(examples) > 1 else ([], examples)
    sample = sample[:probe_n]
    labels = sorted(set(answers)) if kind == "label" else []
    headline = None
    if probe is None and sum(ev.kept for ev in evidence) == 1:  # nothing to choose between: a probe only costs time
        only = next(ev for ev in evidence if ev.kept)
        only.reason = "the only model left after the filters (not probed)"
        probe = False
    if probe is None:
        probe = True
    if probe:
        from protege.evaluate.harness import HEADLINE

        headline = HEADLINE[kind]
        for ev in evidence:
            if ev.kept:
                log.info("probing %s on %d calls (zero-shot and few-shot)", ev.name, len(sample))
                probe_candidate(specs[ev.name], ev, sample, pool, kind=kind, labels=labels, max_tokens=budget,
                                needed_tokens=longest + budget)
    kept = [ev for ev in evidence if ev.kept]
    if not kept:
        reasons = "; ".join(f"{ev.name}: {ev.reason}" for ev in evidence) or "the catalog is empty"
        raise ValueError(f"no base model passes the selection ({reasons}); name one with: protege train TASK "
                         "--model NAME, or add a model to $PROTEGE_HOME/models.toml")
    chosen = pick(kept)
    chosen.reason = "chosen"
    log.info("base model for this task: %s (%s)", chosen.name, RULE)
    return Selection(chosen.name, RULE, kind, headline, longest, budget, allowed, cap,
                     [ex.id for ex in sample] if probe else [], evidence)
