"""Deleting calls for good: `protege forget` and the retention the gateway enforces.

`forget(store, Selection(...))` finds the calls to delete on decrypted data in memory (request
bodies may be sealed, so no SQL can search them), then deletes them from

- the store (the calls and their shadow results; SQLite overwrites the freed pages and empties its WAL),
- the curated datasets recorded in `$PROTEGE_HOME/curated.json` (protege.curate.exports),
- the answer-reuse specialists of their tasks (an index entry is a copy of an answer),

and marks every specialist of those tasks for retraining: its manifest gets a `retrain` entry and the
store a `retrain` decision (actor "user") that the flywheel acts on in its next pass. A decision
names the selectors used, never their values (a user id or a searched phrase is itself personal).

`enforce_retention(store, days)` deletes what is older than `days` from the store and the curated
datasets; specialists are left alone (every specialist is eventually trained on calls that expire).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protege.curate.exports import drop_from_exports
from protege.records import CallRecord
from protege.store.base import CallFilter, Decision, Store

log = logging.getLogger(__name__)

MIN_MATCH = 3
MAX_MATCH = 10_000
MAX_USER = 1_000
USER_FIELDS = ("user", "safety_identifier")
"""Request fields that name the end user (OpenAI's `user` and its successor); `metadata.user_id` and
`metadata.user` count too."""


class SelectionError(ValueError):
    """A `forget` selection that is empty, too broad or malformed; the message names the flag."""


@dataclass
class Selection:
    """Which calls to forget: every given criterion must hold."""

    user: str | None = None
    """The end user: a request's `user` / `safety_identifier`, or `metadata.user_id` / `metadata.user`."""
    match: str | None = None
    """Text anywhere in the request, the response, the error or the metadata (case-insensitive)."""
    before: float | None = None
    """Unix time: calls that started before it."""

    def __post_init__(self) -> None:
        if self.user is None and self.match is None and self.before is None:
            raise SelectionError("Say which calls to forget: --user ID, --match TEXT and/or --before DATE.")
        if self.user is not None and not (0 < len(self.user.strip()) <= MAX_USER):
            raise SelectionError(f"--user must be a non-empty id of at most {MAX_USER} characters.")
        if self.match is not None and not (MIN_MATCH <= len(self.match.strip()) <= MAX_MATCH):
            raise SelectionError(f"--match must be {MIN_MATCH} to {MAX_MATCH:,} characters (not counting surrounding "
                                 "spaces): a shorter text would match almost every call.")
        if self.before is not None:
            if not math.isfinite(self.before) or self.before < 0:
                raise SelectionError("--before must be a date or a Unix time, not infinite, NaN or negative.")
            if self.before > time.time() + 60:
                raise SelectionError("--before is in the future, so it would forget every call; give a past date. "
                                     "To drop the whole log, delete the database file itself.")

    @property
    def used(self) -> list[str]:
        return [name for name in ("user", "match", "before") if getattr(self, name) is not None]

    def selects(self, record: CallRecord) -> bool:
        if self.before is not None and not record.ts < self.before:
            return False
        if self.user is not None and self.user not in _user_ids(record):
            return False
        return self.match is None or _contains(record, self.match.strip().casefold())


def _user_ids(record: CallRecord) -> set[str]:
    meta = record.request.get("metadata")
    sources = [record.request, meta if isinstance(meta, dict) else {}, record.metadata]
    keys = (*USER_FIELDS, "user_id")
    return {v for src in sources for k in keys if isinstance(v := src.get(k), str)}


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _contains(record: CallRecord, needle: str) -> bool:
    return any(needle in s.casefold() for s in _strings([record.request, record.response, record.error,
                                                         record.metadata]))


@dataclass
class ForgetReport:
    calls: list[str] = field(default_factory=list)
    by_task: dict[str, int] = field(default_factory=dict)
    curated: dict[str, int] = field(default_factory=dict)
    """Curated file → lines removed."""
    reuse_entries: dict[str, int] = field(default_factory=dict)
    """Answer-reuse specialist folder → index entries removed."""
    retrain: dict[str, list[str]] = field(default_factory=dict)
    """Task → the specialist folders marked for retraining."""
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {"deleted_calls": len(self.calls), "call_ids": self.calls, "by_task": self.by_task,
                "curated": self.curated, "reuse_entries": self.reuse_entries, "retrain": self.retrain,
                "dry_run": self.dry_run}


def forget(store: Store, selection: Selection, *, dry_run: bool = False) -> ForgetReport:
    """Delete the selected calls everywhere protege keeps a copy (see the module docstring)."""
    chosen = [r for r in store.iter_calls(CallFilter(until=selection.before)) if selection.selects(r)]
    report = ForgetReport(calls=[r.id for r in chosen], dry_run=dry_run)
    tasks: dict[str, list[CallRecord]] = defaultdict(list)
    for r in chosen:
        if r.task_id:
            tasks[r.task_id].append(r)
    report.by_task = {t: len(rs) for t, rs in sorted(tasks.items())}
    folders = _specialist_folders(store, set(tasks))
    if dry_run:
        report.retrain = {t: [str(f) for f in fs] for t, fs in folders.items()}
        return report
    ids = set(report.calls)
    batch = 500
    for i in range(0, len(report.calls), batch):
        store.delete_calls(report.calls[i:i + batch])
    report.curated = drop_from_exports(ids=ids)
    for task_id, records in sorted(tasks.items()):
        marked = []
        for folder in folders.get(task_id, []):
            removed = _purge_reuse_index(folder, records)
            if removed is not None:
                report.reuse_entries[str(folder)] = removed
            _mark_for_retraining(folder, len(records), selection)
            marked.append(str(folder))
        report.retrain[task_id] = marked
        route = store.routes().get(task_id)
        mode = route.mode if route else "off"
        store.add_decision(Decision(
            task_id, "retrain", mode, mode,
            f"{len(records)} of its calls were deleted (protege forget --{' --'.join(selection.used)}); a specialist "
            "trained before may have learnt from them", {"forgotten_calls": len(records), "specialists": marked,
                                                         "selectors": selection.used},
            specialist=route.specialist if route else None, actor="user"))
    log.info("forgot %d calls (%s)", len(ids), ", ".join(selection.used))
    return report


def _specialist_folders(store: Store, tasks: set[str]) -> dict[str, list[Path]]:
    """Each task's specialist folders: every specialist.json under $PROTEGE_HOME/specialists, and routed ones."""
    from protege.specialist.artifact import MANIFEST, specialists_home

    if not tasks:
        return {}
    found: dict[str, set[Path]] = defaultdict(set)
    manifests = list(specialists_home().rglob(MANIFEST)) if specialists_home().is_dir() else []
    manifests += [Path(r.specialist) / MANIFEST for r in store.routes().values() if r.specialist]
    for path in manifests:
        try:
            task = json.loads(path.read_text()).get("task")
        except (OSError, ValueError):
            continue
        if task in tasks:
            found[task].add(path.parent.resolve())
    return {t: sorted(fs) for t, fs in found.items()}


def _purge_reuse_index(folder: Path, records: list[CallRecord]) -> int | None:
    """Remove the forgotten calls from an answer-reuse specialist (answers and near-duplicate vectors); None for
    other kinds."""
    from protege.train.reuse import INDEX, forget_requests

    return forget_requests(folder, records) if (folder / INDEX).is_file() else None


def _mark_for_retraining(folder: Path, calls: int, selection: Selection) -> None:
    from protege.specialist.artifact import refresh_manifest

    refresh_manifest(folder, retrain={"reason": "calls it may have been trained on were deleted",
                                      "forgotten_calls": calls, "selectors": selection.used, "ts": time.time()})


def enforce_retention(store: Store, days: float, now: float | None = None) -> dict:
    """Delete calls older than `days` from the store and the curated datasets."""
    cutoff = (time.time() if now is None else now) - days * 86400
    deleted = store.delete_calls_before(cutoff)
    curated = drop_from_exports(before=cutoff)
    if deleted or curated:
        log.info("retention (%g days): deleted %d calls, %d curated lines", days, deleted, sum(curated.values()))
    return {"cutoff": cutoff, "deleted_calls": deleted, "curated": curated}
