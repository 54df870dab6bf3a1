"""Measure a scrubber on labelled text: recall and precision per PII type.

A gold span counts as *removed* when detected spans cover every one of its characters (whatever
type they were given: what matters for privacy is that the value is gone) and as *typed* when
one detected span of the same type covers it. A detected span that touches no gold span is a
false positive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from protege.curate.scrub import Scrubber


@dataclass
class TypeScore:
    gold: int = 0
    removed: int = 0
    typed: int = 0
    predicted: int = 0
    false_positives: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.removed / self.gold if self.gold else 1.0

    @property
    def typed_recall(self) -> float:
        return self.typed / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return 1 - self.false_positives / self.predicted if self.predicted else 1.0

    def to_dict(self) -> dict:
        return {
            "gold": self.gold,
            "recall": round(self.recall, 4),
            "typed_recall": round(self.typed_recall, 4),
            "predicted": self.predicted,
            "precision": round(self.precision, 4),
            "false_positives": self.false_positives,
        }


def evaluate_scrubber(scrubber: Scrubber, cases: Iterable[dict], keep_misses: int = 10) -> dict[str, TypeScore]:
    """Scores per type for cases shaped `{"text", "spans": [{"start", "end", "type"}]}`."""
    scores: dict[str, TypeScore] = defaultdict(TypeScore)
    for case in cases:
        text, gold = case["text"], case["spans"]
        pred = scrubber.find(text)
        covered = bytearray(len(text))
        for p in pred:
            covered[p.start : p.end] = b"\x01" * (p.end - p.start)
        for g in gold:
            sc = scores[g["type"]]
            sc.gold += 1
            if all(covered[g["start"] : g["end"]]):
                sc.removed += 1
            elif len(sc.misses) < keep_misses:
                sc.misses.append(text[g["start"] : g["end"]])
            if any(p.type == g["type"] and p.start <= g["start"] and p.end >= g["end"] for p in pred):
                sc.typed += 1
        for p in pred:
            sc = scores[p.type]
            sc.predicted += 1
            if not any(p.start < g["end"] and g["start"] < p.end for g in gold):
                sc.false_positives += 1
    return dict(scores)
