"""`protege analyze` as a library call: discover tasks, give them stable ids, profile them.

    analysis = analyze_calls(records, catalog_path=None)   # reads and updates $PROTEGE_HOME/tasks.json
    analysis.assignments   # call id -> task id or None
    analysis.profiles      # one TaskProfile per task, largest first
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from protege.cluster.catalog import TaskCatalog
from protege.cluster.discover import DiscoveryOptions, discover_tasks
from protege.cluster.embed import Embedder
from protege.cluster.profile import TaskProfile, profile_tasks
from protege.records import CallRecord


@dataclass
class Analysis:
    assignments: dict[str, str | None]
    profiles: list[TaskProfile]
    catalog: TaskCatalog
    stats: dict = field(default_factory=dict)
    catalog_path: Path | None = None

    def to_dict(self) -> dict:
        unclustered = sum(1 for t in self.assignments.values() if t is None)
        return {
            "stats": {**self.stats, "unclustered": unclustered},
            "tasks": [p.to_dict() for p in self.profiles],
            "catalog": str(self.catalog_path) if self.catalog_path else None,
        }


def analyze_calls(
    records: Iterable[CallRecord],
    *,
    catalog_path: str | Path | None = None,
    save_catalog: bool = True,
    embedder: Embedder | str = "minilm",
    options: DiscoveryOptions | None = None,
    scrub_examples: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    """Discover tasks in `records`, reconcile them with the saved catalog, and profile them."""
    records = list(records)
    discovery = discover_tasks(records, options, embedder=embedder, progress=progress)
    catalog = TaskCatalog.load(catalog_path)
    catalog.reconcile(discovery)
    path = catalog.save(catalog_path) if save_catalog else None
    scrubber = None
    if scrub_examples:
        from protege.curate.scrub import Scrubber

        scrubber = Scrubber()
    names = {t.id: t.name for t in catalog.tasks.values()}
    profiles = profile_tasks(records, discovery.assignments, names=names, scrubber=scrubber)
    for p in profiles:
        p.evidence.append(f"discovered from {catalog.tasks[p.task_id].evidence}")
    return Analysis(discovery.assignments, profiles, catalog, discovery.stats, path)
