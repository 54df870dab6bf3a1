"""Train / held-out splits per task: stratified by task, optionally time-ordered, reproducible.

Every task gets the same held-out share (default 20%) with at least one held-out call once it has
two, and at least `min_test` (what the promotion gate needs to judge a specialist) once it has four
times that many: a task of 130 calls is judged on 30 held-out calls, not on 26 the gate would refuse.
`time_ordered=True` trains on each task's older calls and tests on its newer ones (the realistic
setting: the specialist is judged on traffic it has not seen); otherwise the split is a seeded
shuffle, decided per call by a hash of (seed, call id) order, so it does not change when unrelated
calls are added.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from protege.records import CallRecord


@dataclass
class Split:
    train: list[CallRecord] = field(default_factory=list)
    test: list[CallRecord] = field(default_factory=list)


def _rank(seed: int, call_id: str) -> str:
    return hashlib.sha256(f"{seed}:{call_id}".encode()).hexdigest()


def split_by_task(
    records: Iterable[CallRecord], *, test_share: float = 0.2, time_ordered: bool = False, seed: int = 0,
    min_test: int = 0,
) -> dict[str | None, Split]:
    """Train/test split per task id (calls without a task are grouped under None)."""
    if not 0 <= test_share < 1:
        raise ValueError(f"test_share must be in [0, 1), got {test_share}; pass e.g. --test-share 0.2")
    groups: dict[str | None, list[CallRecord]] = defaultdict(list)
    for r in records:
        groups[r.task_id].append(r)
    out: dict[str | None, Split] = {}
    for task, calls in groups.items():
        ordered = sorted(calls, key=lambda r: (r.ts, r.id)) if time_ordered else sorted(calls, key=lambda r: _rank(seed, r.id))
        n_test = round(len(ordered) * test_share)
        if test_share > 0 and n_test == 0 and len(ordered) >= 2:
            n_test = 1
        if test_share > 0 and n_test < min_test <= len(ordered) // 4:
            n_test = min_test
        cut = len(ordered) - n_test
        out[task] = Split(train=ordered[:cut], test=ordered[cut:])
    return out
