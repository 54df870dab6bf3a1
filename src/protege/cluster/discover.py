"""Task discovery: find the recurring task types in a log of calls, without being told how many.

1. **Structure.** Prompt templates are mined from system prompts and user messages
   (`TemplateMiner`); calls are grouped by their static parts: system-prompt template, tool set,
   response_format schema, and (batch only) the kind of answer (tool call, JSON, text). When the
   system prompt is generic (a few words, no tools or schema), the user-message template joins
   the key: the instructions then live in the user message.
2. **Merge.** Groups that are the same task written differently (prompt variants, a line that
   only some calls carry) are linked when their system templates share most of their words, or
   when their answers come from the same closed set (labels, JSON keys, tools called) and their
   inputs read alike (single linkage over a similarity threshold, within the same tools/schema/kind).
3. **Is it a task?** A merged group with at least `min_task_size` calls is a task when its user
   messages mostly follow shared templates, or when their embeddings (MiniLM, a sample per group)
   are clearly more cohesive than a null model of unrelated requests (`reference.py`). Groups
   that fail are split by user template; what stays small or diverse is left unclustered: one-off
   open-ended calls are not forced into a task.

The result carries the template miners and per-task signatures and centroids, from which
`TaskAssigner` answers at request time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import orjson

from protege.cluster.embed import CachedEmbedder, Embedder, make_embedder
from protege.cluster.features import CallView, text_of
from protege.cluster.reference import UNRELATED_PROMPTS
from protege.cluster.templates import WILDCARD, TemplateMiner
from protege.records import CallRecord

log = logging.getLogger(__name__)


@dataclass
class DiscoveryOptions:
    """Knobs of task discovery; the defaults need no tuning per log."""

    min_task_size: int | None = None
    """Fewest calls a task needs; default max(10, 1% of the calls)."""
    template_support: int | None = None
    """Fewest calls a line must appear in to count as template text; default max(3, 0.2% of the calls)."""
    merge_similarity: float = 0.5
    """Link two groups when their similarity (see module doc) reaches this."""
    templated_share: float = 0.5
    """A group whose user messages follow shared templates this often is a task."""
    cohesion_margin: float = 0.2
    """A group is cohesive when its cohesion >= null + margin * (1 - null)."""
    weak_system_tokens: int = 12
    """A system prompt with fewer static words (and no tools or schema) is generic: the user template counts too."""
    sample_per_group: int = 32
    seed: int = 0


def request_signature(system_template: str, tools: tuple[str, ...], schema_fp: str) -> str:
    """A stable hash of a request's static parts (what the request-time assigner looks up)."""
    blob = orjson.dumps([system_template, list(tools), schema_fp])
    return hashlib.sha1(blob).hexdigest()[:16]


def user_signature(signature: str, user_template: str) -> str:
    return hashlib.sha1(f"{signature}\x00{user_template}".encode()).hexdigest()[:16]


def cohesion(vectors: np.ndarray) -> float:
    """Length of the mean of unit vectors: 1 when identical, near 1/sqrt(n) when unrelated."""
    return float(np.linalg.norm(vectors.mean(axis=0))) if len(vectors) else 0.0


@dataclass
class Cluster:
    """One discovered task (before it gets a stable id from the catalog)."""

    call_ids: list[str]
    signatures: set[str]
    user_signatures: set[str]
    system_template: str
    user_template: str
    tools: tuple[str, ...]
    schema_fp: str
    schema_name: str
    kind: str
    centroid: np.ndarray | None = None
    evidence: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    """The closed set the answers come from (labels, JSON keys, tools called), most frequent first."""
    task_id: str | None = None
    name: str = ""


@dataclass
class Discovery:
    """What discovery found: tasks, per-call assignments and what the assigner needs."""

    clusters: list[Cluster]
    assignments: dict[str, str | None]
    """call id -> task id (None: left unclustered)."""
    system_miner: TemplateMiner
    user_miner: TemplateMiner
    embedder_name: str
    open_signatures: set[str]
    """Request signatures whose calls were too diverse to be one task (generic assistants)."""
    null_cohesion: float
    stats: dict = field(default_factory=dict)


@dataclass
class _Group:
    key: tuple
    views: list[CallView]
    answers: list[str]
    called: Counter
    system_tokens: frozenset[str]
    sample_vectors: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.views)


def _static_tokens(template: str) -> frozenset[str]:
    return frozenset(t.lower().strip(".,:;!?()\"'") for t in template.split() if t != WILDCARD and t != "<N>")


def _answer_text(record: CallRecord) -> str:
    choices = (record.response or {}).get("choices") or []
    msg = (choices[0].get("message") or {}) if choices else {}
    return text_of(msg.get("content")).strip()


def _called_tools(record: CallRecord) -> list[str]:
    choices = (record.response or {}).get("choices") or []
    msg = (choices[0].get("message") or {}) if choices else {}
    return [(c.get("function") or {}).get("name", "") for c in msg.get("tool_calls") or []]


def output_profile(answers: list[str], called: Counter, kind: str) -> frozenset[str] | None:
    """The closed set the answers come from: labels, JSON keys or tools called; None for free text."""
    if kind == "tool":
        return frozenset(called)
    if kind == "json":
        keys: Counter = Counter()
        for a in answers[:200]:
            try:
                obj = orjson.loads(a)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                keys.update(obj.keys())
        return frozenset(k for k, c in keys.items() if c >= 0.2 * min(len(answers), 200)) or None
    counts = Counter(a.strip().lower() for a in answers)
    if answers and len(counts) <= max(2, min(20, len(answers) // 5)) and max(len(a.split()) for a in counts) <= 4:
        return frozenset(counts)
    return None


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def discover_tasks(
    records: Iterable[CallRecord],
    options: DiscoveryOptions | None = None,
    embedder: Embedder | str = "minilm",
    progress: Callable[[str], None] | None = None,
) -> Discovery:
    """Cluster `records` into tasks. Task ids are provisional (`TaskCatalog.reconcile` makes them stable)."""
    opts = options or DiscoveryOptions()
    emb = embedder if isinstance(embedder, CachedEmbedder) else CachedEmbedder(make_embedder(embedder) if isinstance(embedder, str) else embedder)
    say = progress or (lambda msg: log.info(msg))
    records = list(records)
    n = len(records)
    min_size = opts.min_task_size or max(10, math.ceil(0.01 * n))
    support = opts.template_support or max(3, math.ceil(0.002 * n))
    rng = np.random.default_rng(opts.seed)

    say(f"mining prompt templates from {n} calls")
    views = [CallView.of(r) for r in records]
    sys_miner = TemplateMiner(min_support=support).fit(v.system for v in views)
    user_miner = TemplateMiner(min_support=support).fit(v.user for v in views)
    sys_t = [sys_miner.mask(v.system).template for v in views]
    user_m = [user_miner.mask(v.user) for v in views]

    # a generic system prompt ("You are a helpful assistant.") does not define a task: then the
    # user-message template is part of the call's static structure
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for i, v in enumerate(views):
        weak = len(_static_tokens(sys_t[i])) < opts.weak_system_tokens and not v.tools and not v.schema_fp
        by_key[(sys_t[i], v.tools, v.schema_fp, v.kind, user_m[i].template if weak else None)].append(i)
    groups: list[_Group] = []
    for key, idx in sorted(by_key.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        called: Counter = Counter()
        for i in idx:
            called.update(_called_tools(records[i]))
        tokens = _static_tokens(key[0]) | (_static_tokens(key[4]) if key[4] is not None else frozenset())
        groups.append(_Group(key, [views[i] for i in idx], [_answer_text(records[i]) for i in idx], called, tokens))
    index_of = {id(g): idx for g, idx in zip(groups, [by_key[g.key] for g in groups])}
    say(f"{len(groups)} structural groups; embedding samples with {emb.name}")

    # the null model at each sample size: a few random subsets of unrelated prompts, averaged
    # (a small sample of anything looks more cohesive than a large one)
    ref = emb.embed(UNRELATED_PROMPTS)
    null_rng = np.random.default_rng(opts.seed)
    null_at: dict[int, float] = {}

    def threshold_at(size: int) -> float:
        k = min(size, opts.sample_per_group, len(ref))
        if k not in null_at:
            null_at[k] = float(np.mean([cohesion(ref[null_rng.choice(len(ref), k, replace=False)]) for _ in range(8)]))
        return null_at[k] + opts.cohesion_margin * (1 - null_at[k])

    null = float(np.mean([cohesion(ref[null_rng.choice(len(ref), min(opts.sample_per_group, len(ref)), replace=False)]) for _ in range(8)]))
    threshold = null + opts.cohesion_margin * (1 - null)

    def sample_vectors(idx: list[int]) -> np.ndarray:
        pick = idx if len(idx) <= opts.sample_per_group else sorted(rng.choice(idx, opts.sample_per_group, replace=False))
        return emb.embed([views[i].user or views[i].system for i in pick])

    # 2. merge groups that are the same task
    profiles = [output_profile(g.answers, g.called, g.key[3]) for g in groups]
    uf = _UnionFind(len(groups))
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            ga, gb = groups[a], groups[b]
            if ga.key[1:4] != gb.key[1:4]:
                continue
            sim = _jaccard(ga.system_tokens, gb.system_tokens) if ga.system_tokens and gb.system_tokens else 0.0
            if sim < opts.merge_similarity and profiles[a] and profiles[b] and ga.size >= min_size and gb.size >= min_size:
                if _jaccard(profiles[a], profiles[b]) >= 0.8:
                    if ga.sample_vectors is None:
                        ga.sample_vectors = sample_vectors(index_of[id(ga)])
                    if gb.sample_vectors is None:
                        gb.sample_vectors = sample_vectors(index_of[id(gb)])
                    ca, cb = ga.sample_vectors.mean(0), gb.sample_vectors.mean(0)
                    cos = float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))
                    sim = max(sim, cos)
            if sim >= opts.merge_similarity:
                uf.union(a, b)
    merged: dict[int, list[int]] = defaultdict(list)
    for gi in range(len(groups)):
        merged[uf.find(gi)].append(gi)

    # 3. keep the groups that are tasks
    clusters: list[Cluster] = []
    open_sigs: set[str] = set()
    assignments: dict[str, str | None] = {v.call_id: None for v in views}
    for root, members in sorted(merged.items()):
        idx = [i for gi in members for i in index_of[id(groups[gi])]]
        if len(idx) < min_size:
            continue
        templated = sum(1 for i in idx if user_m[i].static_tokens >= 3) / len(idx)
        vecs = sample_vectors(idx)
        coh = cohesion(vecs)
        needed = threshold_at(len(vecs))
        evidence = {"templated_share": round(templated, 3), "cohesion": round(coh, 3), "cohesion_threshold": round(needed, 3),
                    "groups": len(members)}
        if templated >= opts.templated_share or coh >= needed:
            clusters.append(_make_cluster(idx, views, sys_t, user_m, vecs, evidence, records))
            continue
        # too diverse to be one task: split by user template; what stays small is left out
        for i in idx:
            open_sigs.add(request_signature(sys_t[i], views[i].tools, views[i].schema_fp))
        by_user: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            if user_m[i].static_tokens >= 3:
                by_user[user_m[i].template].append(i)
        for _tpl, sub in sorted(by_user.items()):
            if len(sub) >= min_size:
                sv = sample_vectors(sub)
                clusters.append(_make_cluster(sub, views, sys_t, user_m, sv, {**evidence, "split_by_user_template": True}, records))

    for k, c in enumerate(clusters):
        c.task_id = f"cluster-{k}"
        for cid in c.call_ids:
            assignments[cid] = c.task_id
    stats = {
        "calls": n,
        "structural_groups": len(groups),
        "tasks": len(clusters),
        "unclustered": sum(1 for v in assignments.values() if v is None),
        "min_task_size": min_size,
        "template_support": support,
        "null_cohesion": round(null, 4),
        "cohesion_threshold": round(threshold, 4),
        "embedder": emb.name,
        "embedded_texts": len(emb.cache),
    }
    say(f"found {len(clusters)} tasks; {stats['unclustered']} of {n} calls left unclustered")
    return Discovery(clusters, assignments, sys_miner, user_miner, emb.name, open_sigs, null, stats)


def _make_cluster(idx: list[int], views: list[CallView], sys_t: list[str], user_m, vecs: np.ndarray, evidence: dict,
                  records: list[CallRecord]) -> Cluster:
    sys_common = Counter(sys_t[i] for i in idx).most_common(1)[0][0]
    user_common = Counter(user_m[i].template for i in idx).most_common(1)[0][0]
    first = views[idx[0]]
    kinds = Counter(views[i].kind for i in idx)
    centroid = vecs.mean(0)
    centroid = centroid / (np.linalg.norm(centroid) + 1e-12)
    sigs = {request_signature(sys_t[i], views[i].tools, views[i].schema_fp) for i in idx}
    usigs = {user_signature(request_signature(sys_t[i], views[i].tools, views[i].schema_fp), user_m[i].template) for i in idx}
    return Cluster(
        call_ids=[views[i].call_id for i in idx],
        signatures=sigs,
        user_signatures=usigs,
        system_template=sys_common,
        user_template=user_common,
        tools=first.tools,
        schema_fp=first.schema_fp,
        schema_name=first.schema_name,
        kind=kinds.most_common(1)[0][0] or "text",
        centroid=centroid.astype(np.float32),
        evidence=evidence,
        outputs=_closed_outputs([records[i] for i in idx], kinds.most_common(1)[0][0] or "text"),
    )


def _closed_outputs(records: list[CallRecord], kind: str) -> list[str]:
    called: Counter = Counter()
    for r in records:
        called.update(_called_tools(r))
    answers = [_answer_text(r) for r in records]
    profile = output_profile(answers, called, kind)
    if not profile:
        return []
    if kind == "tool":
        return [t for t, _ in called.most_common() if t in profile]
    counts = Counter(a.strip().lower() for a in answers) if kind == "text" else Counter()
    return sorted(profile, key=lambda x: (-counts.get(x, 0), x))
