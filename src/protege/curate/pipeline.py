"""Curation end to end: scrub, filter, split per task, and write training-ready JSONL.

`curate_calls` is what `protege curate` and training use. Filters judge each call as logged;
every kept call is scrubbed before anything is written, so no dataset carries raw PII. Output layout, under `out_dir`:

    report.json                      counts: scrubbed values by type, drops by reason, splits
    <task_id>/train.jsonl            one scrubbed call per line: {"id", "ts", "task_id", "request", "response"}
    <task_id>/test.jsonl
    _unassigned/...                  calls no task claimed (only with include_unassigned=True)

Each folder written is recorded in `$PROTEGE_HOME/curated.json` (curate/exports.py), so that deleting
a call (`protege forget`, retention) deletes its curated copies too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from protege.curate.exports import register_export
from protege.curate.filters import FilterReport, filter_calls
from protege.curate.scrub import Scrubber
from protege.curate.splits import Split, split_by_task
from protege.records import CallRecord

log = logging.getLogger(__name__)
UNASSIGNED = "_unassigned"


@dataclass
class CurationResult:
    scrubbed: Counter = field(default_factory=Counter)
    filters: FilterReport = field(default_factory=FilterReport)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    out_dir: Path | None = None
    datasets: dict[str | None, Split] = field(default_factory=dict)
    """The kept, scrubbed calls of each task, split (not part of `to_dict`)."""

    def to_dict(self) -> dict:
        return {
            "scrubbed": dict(self.scrubbed),
            "filters": self.filters.to_dict(),
            "splits": self.splits,
            "out_dir": str(self.out_dir) if self.out_dir else None,
        }


def curate_calls(
    records: Iterable[CallRecord],
    out_dir: str | Path | None = None,
    *,
    scrubber: Scrubber | None = None,
    scrub: bool = True,
    near_duplicate_threshold: float | None = 0.9,
    test_share: float = 0.2,
    min_test: int = 0,
    time_ordered: bool = False,
    seed: int = 0,
    include_unassigned: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CurationResult:
    """Scrub, filter and split `records`; write the datasets to `out_dir` when given."""
    result = CurationResult()
    scrubber = scrubber or (Scrubber() if scrub else None)

    # filters judge the call as it happened (a placeholder would break a schema pattern); only the
    # kept calls are scrubbed, and nothing is written before it is
    kept = filter_calls(records, near_duplicate_threshold=near_duplicate_threshold, report=result.filters)
    if not include_unassigned:
        kept = [r for r in kept if r.task_id is not None]
    if scrubber is not None:
        cleaned = []
        for i, r in enumerate(kept):
            r = scrubber.scrub_record(r)
            result.scrubbed.update(r.metadata.get("scrubbed", {}))
            cleaned.append(r)
            if progress and i % 100 == 0:
                progress(i)
        kept = cleaned
    splits = result.datasets = split_by_task(kept, test_share=test_share, min_test=min_test, time_ordered=time_ordered, seed=seed)
    for task, split in splits.items():
        result.splits[task or UNASSIGNED] = {"train": len(split.train), "test": len(split.test)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for task, split in splits.items():
            folder = out / (task or UNASSIGNED)
            folder.mkdir(parents=True, exist_ok=True)
            for name, rows in (("train", split.train), ("test", split.test)):
                with (folder / f"{name}.jsonl").open("wb") as f:
                    for r in rows:
                        f.write(orjson.dumps({"id": r.id, "ts": r.ts, "task_id": r.task_id, "request": r.request,
                                              "response": r.response}) + b"\n")
        result.out_dir = out
        (out / "report.json").write_bytes(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2))
        register_export(out)  # `protege forget` and retention find the copies here
    return result
