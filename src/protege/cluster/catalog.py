"""The task catalog: discovered tasks under stable ids and readable names, saved as JSON.

Re-running discovery on a larger log maps each new cluster onto the task it continues: the one
sharing most of its request signatures (same static prompt, tools and schema), else the one
whose content centroid is nearest (cosine >= 0.85) with the same tools, schema and answer kind.
Only clusters that match nothing get a new id. Ids are slugs of the task's name
(`classify-billing-technical-account`, `tools-search-flights`), never reused.

The catalog also keeps the template miners, so the request-time assigner can be rebuilt from the
file alone (`$PROTEGE_HOME/tasks.json` by default).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

from protege.cluster.discover import Cluster, Discovery
from protege.cluster.templates import WILDCARD, TemplateMiner

CATALOG_VERSION = 1
_STOP = {
    "you", "are", "a", "an", "the", "of", "for", "and", "to", "in", "on", "your", "is", "be", "with", "from", "into",
    "using", "only", "each", "this", "that", "it", "as", "at", "by", "or", "our", "we", "step", "read", "reads", "given",
    "assistant", "helpful", "please", "following", "will", "must", "should", "always", "exactly", "one", "its",
}


def default_catalog_path() -> Path:
    from protege.store import protege_home

    return protege_home() / "tasks.json"


@dataclass
class Task:
    """A recurring task type, as the catalog keeps it."""

    id: str
    name: str
    kind: str
    tools: list[str]
    schema_fp: str
    schema_name: str
    signatures: list[str]
    user_signatures: list[str]
    centroid: list[float]
    size: int
    outputs: list[str] = field(default_factory=list)
    system_template: str = ""
    user_template: str = ""
    evidence: dict = field(default_factory=dict)
    created_ts: float = 0.0
    updated_ts: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> Task:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def slugify(text: str, max_words: int = 4) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]
    return "-".join(words[:max_words]) or "task"


def describe(cluster: Cluster) -> tuple[str, str]:
    """(readable name, id slug) for a cluster, from its tools, schema, labels or prompt."""
    if cluster.kind == "tool" and (cluster.outputs or cluster.tools):
        tools = cluster.outputs or list(cluster.tools)
        more = f" +{len(tools) - 3} more" if len(tools) > 3 else ""
        return f"tool calls: {', '.join(tools[:3])}{more}", "tools-" + slugify(tools[0].replace("_", " "), 3)
    if cluster.kind == "json":
        label = cluster.schema_name or " ".join(cluster.outputs[:3])
        return f"JSON extraction: {label.replace('_', ' ')}", "extract-" + slugify(label.replace("_", " "), 3)
    if cluster.outputs:
        return f"classify: {' / '.join(cluster.outputs[:6])}", "classify-" + slugify(" ".join(cluster.outputs), 3)
    source = cluster.system_template if cluster.system_template.strip(WILDCARD + " \n") else cluster.user_template
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+|\n+", source.replace(WILDCARD, " ").strip()) if x.strip()]
    # "You are the ops assistant of the platform team. Summarise incident reports..." -> the instruction
    while len(sentences) > 1 and re.match(r"(?i)(you are|you're|as an?|role:)\b", sentences[0]):
        sentences = sentences[1:]
    first = sentences[0] if sentences else ""
    slug = slugify(first)
    return (first[:80] or "free text"), slug


@dataclass
class TaskCatalog:
    """Tasks by id, plus what the request-time assigner needs (template miners, open signatures)."""

    tasks: dict[str, Task] = field(default_factory=dict)
    system_miner: TemplateMiner | None = None
    user_miner: TemplateMiner | None = None
    open_signatures: set[str] = field(default_factory=set)
    embedder: str = "minilm"
    null_cohesion: float = 0.0
    updated_ts: float = 0.0

    # --- persistence ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> TaskCatalog:
        """The catalog at `path` (default `$PROTEGE_HOME/tasks.json`); empty when there is none yet."""
        path = Path(path) if path else default_catalog_path()
        if not path.exists():
            return cls()
        data = orjson.loads(path.read_bytes())
        if data.get("version") != CATALOG_VERSION:
            raise ValueError(f"{path} has catalog version {data.get('version')}, expected {CATALOG_VERSION}; "
                             f"re-run `protege analyze` to rebuild it (move the old file away first).")
        return cls(
            tasks={t["id"]: Task.from_dict(t) for t in data["tasks"]},
            system_miner=TemplateMiner.from_dict(data["system_miner"]) if data.get("system_miner") else None,
            user_miner=TemplateMiner.from_dict(data["user_miner"]) if data.get("user_miner") else None,
            open_signatures=set(data.get("open_signatures", [])),
            embedder=data.get("embedder", "minilm"),
            null_cohesion=data.get("null_cohesion", 0.0),
            updated_ts=data.get("updated_ts", 0.0),
        )

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else default_catalog_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": CATALOG_VERSION,
            "updated_ts": self.updated_ts,
            "embedder": self.embedder,
            "null_cohesion": self.null_cohesion,
            "tasks": [asdict(t) for t in sorted(self.tasks.values(), key=lambda t: t.id)],
            "system_miner": self.system_miner.to_dict() if self.system_miner else None,
            "user_miner": self.user_miner.to_dict() if self.user_miner else None,
            "open_signatures": sorted(self.open_signatures),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        os.replace(tmp, path)
        return path

    # --- reconciliation ------------------------------------------------------------------------

    def reconcile(self, discovery: Discovery, now: float | None = None) -> dict[str, str]:
        """Give each discovered cluster a stable task id; returns provisional id -> stable id.

        Updates `discovery.clusters[*].task_id/name` and `discovery.assignments` in place.
        """
        now = now if now is not None else time.time()
        pairs = []
        for ci, c in enumerate(discovery.clusters):
            for t in self.tasks.values():
                if (t.kind, tuple(t.tools), t.schema_fp) != (c.kind, c.tools, c.schema_fp):
                    continue
                overlap = len(c.signatures & set(t.signatures)) / max(1, len(c.signatures))
                cos = float(np.dot(c.centroid, np.asarray(t.centroid, dtype=np.float32))) if t.centroid and c.centroid is not None and len(t.centroid) == len(c.centroid) else 0.0
                if overlap > 0 or cos >= 0.85:
                    pairs.append((overlap, cos, ci, t.id))
        mapping: dict[int, str] = {}
        used: set[str] = set()
        for _overlap, _cos, ci, tid in sorted(pairs, reverse=True):
            if ci not in mapping and tid not in used:
                mapping[ci] = tid
                used.add(tid)
        renamed: dict[str, str] = {}
        for ci, c in enumerate(discovery.clusters):
            name, slug = describe(c)
            tid = mapping.get(ci) or self._new_id(slug)
            old = self.tasks.get(tid)
            self.tasks[tid] = Task(
                id=tid,
                name=old.name if old else name,
                kind=c.kind,
                tools=list(c.tools),
                schema_fp=c.schema_fp,
                schema_name=c.schema_name,
                signatures=sorted(c.signatures | set(old.signatures if old else [])),
                user_signatures=sorted(c.user_signatures | set(old.user_signatures if old else [])),
                centroid=[round(float(x), 6) for x in c.centroid] if c.centroid is not None else [],
                size=len(c.call_ids),
                outputs=c.outputs[:50],
                system_template=c.system_template[:4000],
                user_template=c.user_template[:2000],
                evidence=c.evidence,
                created_ts=old.created_ts if old else now,
                updated_ts=now,
            )
            renamed[c.task_id] = tid
            c.task_id, c.name = tid, self.tasks[tid].name
        discovery.assignments = {cid: (renamed.get(t) if t else None) for cid, t in discovery.assignments.items()}
        self.system_miner, self.user_miner = discovery.system_miner, discovery.user_miner
        self.open_signatures = set(discovery.open_signatures)
        self.embedder, self.null_cohesion, self.updated_ts = discovery.embedder_name, discovery.null_cohesion, now
        return renamed

    def _new_id(self, slug: str) -> str:
        tid, k = slug, 2
        while tid in self.tasks:
            tid, k = f"{slug}-{k}", k + 1
        return tid
