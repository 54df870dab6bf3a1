"""Request-time task assignment for the router: which task is this call (or none)?

The common case is a dictionary look-up: the request's static parts (system-prompt template,
tool set, response schema) hash to a signature that batch discovery saw (tens of microseconds).
Where one signature covers several tasks or none, the user-message template decides; for a
request whose static parts were never seen, the nearest task centroid (same tools and schema,
cosine >= `min_similarity`) answers when an embedder is allowed, else None. Signatures whose calls
were too diverse to be a task (generic assistants) answer None unless a user template matches.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from protege.cluster.catalog import TaskCatalog
from protege.cluster.discover import request_signature, user_signature
from protege.cluster.embed import CachedEmbedder, Embedder, make_embedder
from protege.cluster.features import CallView


@dataclass
class Assignment:
    task_id: str | None
    via: str
    """"signature", "user_template", "open" (diverse group: none), "centroid", or "unknown"."""


class TaskAssigner:
    """Assigns requests to catalog tasks; build once per catalog, call `assign` per request."""

    def __init__(self, catalog: TaskCatalog, embedder: Embedder | str | None = None, min_similarity: float = 0.5):
        if catalog.system_miner is None or catalog.user_miner is None:
            raise ValueError("The task catalog is empty: run `protege analyze` first to discover tasks.")
        self.catalog = catalog
        self.system_miner, self.user_miner = catalog.system_miner, catalog.user_miner
        self.open = set(catalog.open_signatures)
        owners: dict[str, set[str]] = defaultdict(set)
        user_owners: dict[str, set[str]] = defaultdict(set)
        for t in catalog.tasks.values():
            for s in t.signatures:
                owners[s].add(t.id)
            for s in t.user_signatures:
                user_owners[s].add(t.id)
        self.by_signature = {s: next(iter(ids)) for s, ids in owners.items() if len(ids) == 1 and s not in self.open}
        self.by_user_signature = {s: next(iter(ids)) for s, ids in user_owners.items() if len(ids) == 1}
        self._embedder_spec = embedder
        self._embedder: CachedEmbedder | None = None
        self.min_similarity = min_similarity
        self._centroids: dict[tuple, tuple[list[str], np.ndarray]] = {}
        groups: dict[tuple, list] = defaultdict(list)
        for t in catalog.tasks.values():
            if t.centroid:
                groups[(tuple(t.tools), t.schema_fp)].append(t)
        for key, tasks in groups.items():
            self._centroids[key] = ([t.id for t in tasks], np.asarray([t.centroid for t in tasks], dtype=np.float32))

    def assign(self, request: dict) -> str | None:
        return self.explain(request).task_id

    def explain(self, request: dict, allow_embedding: bool = True) -> Assignment:
        view = CallView.of_request(request)
        sig = request_signature(self.system_miner.mask(view.system).template, view.tools, view.schema_fp)
        task = self.by_signature.get(sig)
        if task is not None:
            return Assignment(task, "signature")
        task = self.by_user_signature.get(user_signature(sig, self.user_miner.mask(view.user).template))
        if task is not None:
            return Assignment(task, "user_template")
        if sig in self.open:
            return Assignment(None, "open")
        if not allow_embedding or self._embedder_spec is False:
            return Assignment(None, "unknown")
        ids, centroids = self._centroids.get((view.tools, view.schema_fp), ([], None))
        if not ids:
            return Assignment(None, "unknown")
        vec = self._embed(view.user or view.system)
        sims = centroids @ vec
        best = int(np.argmax(sims))
        return Assignment(ids[best] if sims[best] >= self.min_similarity else None, "centroid")

    def _embed(self, text: str) -> np.ndarray:
        if self._embedder is None:
            spec = self._embedder_spec or self.catalog.embedder
            inner = make_embedder(spec) if isinstance(spec, str) else spec
            self._embedder = inner if isinstance(inner, CachedEmbedder) else CachedEmbedder(inner)
        return self._embedder.embed([text])[0]
