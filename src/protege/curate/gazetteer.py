"""The multilingual name gazetteer: first names, last names and place names, in every script.

Built by `scripts/build_name_gazetteer.py` from `names-dataset` (names ranked per country, 105
countries) and GeoNames place names, never from Faker (which the PII benchmarks draw from); shipped
as `protege/data/name_gazetteer.tsv.gz` (1.7 MB) and loaded once, lazily, on the first scrub
(about 0.6 s and 65 MB on the 2-core dev machine; bench/pii_locales.py measures it). Values are case-folded; `fold` also strips Latin diacritics so that
"Jose" finds "josé".
"""

from __future__ import annotations

import gzip
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Gazetteer:
    first: frozenset[str]
    last: frozenset[str]
    places: frozenset[str]

    def is_first(self, word: str) -> bool:
        return any(w in self.first for w in fold(word))

    def is_last(self, word: str) -> bool:
        return any(w in self.last for w in fold(word))

    def is_place(self, text: str) -> bool:
        return text.casefold() in self.places


def fold(word: str) -> tuple[str, ...]:
    """The case-folded word, and its form without Latin diacritics when that differs."""
    key = word.casefold()
    if key.isascii():
        return (key,)
    bare = "".join(c for c in unicodedata.normalize("NFKD", key) if not unicodedata.combining(c))
    return (key, bare) if bare != key and all(c < "\u0250" for c in bare) else (key,)


@lru_cache(maxsize=1)
def load_gazetteer() -> Gazetteer:
    """The shipped gazetteer (read once per process)."""
    sets: dict[str, set[str]] = {"first": set(), "last": set(), "place": set()}
    resource = resources.files("protege").joinpath("data/name_gazetteer.tsv.gz")
    with resources.as_file(resource) as path, gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            kind, _, value = line.rstrip("\n").partition("\t")
            sets[kind].add(value)
    for kind in ("first", "last"):  # accent-free twins: "jose" for "josé"
        sets[kind].update(f[-1] for v in list(sets[kind]) if len(f := fold(v)) > 1)
    return Gazetteer(frozenset(sets["first"]), frozenset(sets["last"]), frozenset(sets["place"]))
