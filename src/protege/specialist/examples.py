"""Training examples: a task's logged calls as (request, the LLM's answer) pairs, and their hash.

Examples come from `CallRecord`s (the store, the curation stage's splits) or from JSONL files of
records or of demo-trace lines (``{"request", "response", "metadata": {"task": ...}}``). Failed
calls and calls without an answer are skipped. Nothing here imports torch.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protege.records import CallRecord, call_scope, content_call_id
from protege.specialist.format import response_message


@dataclass
class Example:
    """One logged call: what was asked and what the LLM answered."""

    id: str
    request: dict[str, Any]
    answer: dict[str, Any]
    """The LLM's assistant message (content and/or tool_calls)."""
    latency_ms: float | None = None
    cost_usd: float | None = None
    task: str | None = None
    scope: str | None = None
    """Who asked (`protege.records.call_scope`): answer reuse never crosses scopes."""


def example_from_record(record: CallRecord) -> Example | None:
    if not record.is_success:
        return None
    message = response_message(record.response)
    if not message or not (message.get("content") or message.get("tool_calls")):
        return None
    return Example(record.id, record.request, message, record.latency_ms, record.cost_usd, record.task_id,
                   call_scope(record.workload, record.client))


def example_from_line(row: dict) -> Example | None:
    """A JSONL line: a `CallRecord` dict, or a demo trace line {"request", "response", "metadata"}."""
    if "id" in row and "ts" in row and "request" in row:
        return example_from_record(CallRecord.from_dict(row))
    message = response_message(row.get("response"))
    if not message or not (message.get("content") or message.get("tool_calls")):
        return None
    meta = row.get("metadata") or {}
    return Example(row.get("id") or content_call_id(row["request"], row.get("response")), row["request"], message,
                   meta.get("latency_ms"), meta.get("cost_usd"), meta.get("task") or row.get("task_id"))


def read_examples(path: str | Path, task: str | None = None) -> list[Example]:
    """Examples from a .jsonl or .jsonl.gz file, keeping only `task` when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file {path}; export a task's calls with `protege export` or pass --data")
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            ex = example_from_line(json.loads(line))
            if ex is not None and (task is None or ex.task == task):
                out.append(ex)
    return out


def as_examples(items: Iterable[CallRecord | Example | dict]) -> list[Example]:
    out = []
    for item in items:
        if isinstance(item, Example):
            ex: Example | None = item
        elif isinstance(item, CallRecord):
            ex = example_from_record(item)
        else:
            ex = example_from_line(item)
        if ex is not None:
            out.append(ex)
    return out


def data_hash(examples: Sequence[Example]) -> str:
    """sha256 of the examples' ids, requests and answers, in order: which data made a specialist."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.request, ex.answer], sort_keys=True, ensure_ascii=False).encode())
    return "sha256:" + h.hexdigest()


def split_examples(examples: Sequence[Example], share: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(keep, held out): a seeded split by id hash, stable when unrelated examples are added."""
    if not examples:
        return [], []
    ranked = sorted(examples, key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).hexdigest())
    n_out = max(1, round(len(ranked) * share)) if share > 0 and len(ranked) > 1 else 0
    return ranked[n_out:], ranked[:n_out]


def task_examples(task: str, *, records: Sequence[CallRecord | Example | dict] | None = None,
                  data: str | Path | None = None, store_url: str | None = None) -> list[Example]:
    """A task's examples from records in memory, a JSONL(.gz) file, or the store (in that order)."""
    if records is not None:
        return [ex for ex in as_examples(records) if ex.task in (None, task)]
    if data is not None:
        return read_examples(data, task)
    from protege.store.base import CallFilter, open_store

    with open_store(store_url) as store:
        return as_examples(store.iter_calls(CallFilter(task_id=task)))
