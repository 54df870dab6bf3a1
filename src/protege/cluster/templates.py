"""Prompt template mining: recover the static text of prompts, with the variable parts masked.

Prompts are mined line by line, in the spirit of Drain (He et al., 2017): numbers are normalised,
then each distinct line joins the first template of its (token count, first token) bucket that it
matches on enough positions, and the positions that differ become `<*>`. A template seen in at
least `min_support` calls is static text. A line that matches no static template keeps its
longest frequent token prefix ("Customer: <*>"), or is variable as a whole (`<*>`). Runs of
variable lines collapse into one `<*>`.

`mask(text)` is what the request-time assigner calls: a few dictionary look-ups per line.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

WILDCARD = "<*>"
_NUM = re.compile(r"\d+(?:[.,:]\d+)*")
MAX_PREFIX = 8


def normalize_line(line: str) -> str:
    return _NUM.sub("<N>", " ".join(line.split()))


@dataclass
class Masked:
    """A text split into its template (static text, `<*>` for the rest) and its variable text."""

    template: str
    variable: str
    static_tokens: int


@dataclass
class _Template:
    tokens: list[str]
    support: int = 0


@dataclass
class TemplateMiner:
    """Learns which lines (and line prefixes) of a set of texts are static."""

    min_support: int = 3
    similarity: float = 0.6
    templates: dict[tuple[int, str], list[_Template]] = field(default_factory=dict)
    static_prefixes: set[tuple[str, ...]] = field(default_factory=set)
    _line_cache: dict[str, str | None] = field(default_factory=dict, repr=False)

    def fit(self, texts: Iterable[str]) -> TemplateMiner:
        line_df: Counter = Counter()
        prefix_df: Counter = Counter()
        for text in texts:
            lines = {normalize_line(x) for x in text.split("\n") if x.strip()}
            line_df.update(lines)
            prefixes = set()
            for line in lines:
                toks = line.split(" ")
                for k in range(1, min(MAX_PREFIX, len(toks) - 1) + 1):
                    prefixes.add(tuple(toks[:k]))
            prefix_df.update(prefixes)
        buckets: dict[tuple[int, str], list[_Template]] = defaultdict(list)
        for line, df in sorted(line_df.items(), key=lambda kv: (-kv[1], kv[0])):
            toks = line.split(" ")
            bucket = buckets[(len(toks), toks[0])]
            tpl = self._match(bucket, toks)
            if tpl is None:
                bucket.append(_Template(list(toks), df))
            else:
                tpl.tokens = [a if a == b else WILDCARD for a, b in zip(tpl.tokens, toks)]
                tpl.support += df
        self.templates = {k: [t for t in v if t.support >= self.min_support] for k, v in buckets.items()}
        self.templates = {k: v for k, v in self.templates.items() if v}
        self.static_prefixes = {
            p for p, df in prefix_df.items() if df >= self.min_support and (len(p) >= 2 or p[0].endswith(":"))
        }
        self._line_cache = {}
        return self

    def to_dict(self) -> dict:
        return {
            "min_support": self.min_support,
            "similarity": self.similarity,
            "templates": [[t.tokens, t.support] for v in self.templates.values() for t in v],
            "static_prefixes": sorted(list(p) for p in self.static_prefixes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TemplateMiner:
        miner = cls(min_support=data["min_support"], similarity=data["similarity"])
        for tokens, support in data["templates"]:
            miner.templates.setdefault((len(tokens), tokens[0]), []).append(_Template(list(tokens), support))
        miner.static_prefixes = {tuple(p) for p in data["static_prefixes"]}
        return miner

    def _match(self, bucket: list[_Template], toks: list[str]) -> _Template | None:
        best, best_sim = None, self.similarity
        for tpl in bucket:
            same = sum(1 for a, b in zip(tpl.tokens, toks) if a == b or a == WILDCARD)
            sim = same / len(toks)
            if sim >= best_sim and (best is None or sim > best_sim):
                best, best_sim = tpl, sim
        return best

    def mask_line(self, line: str) -> str | None:
        """The line's template, or None when the whole line is variable."""
        if line in self._line_cache:
            return self._line_cache[line]
        norm = normalize_line(line)
        toks = norm.split(" ")
        out: str | None = None
        tpl = self._match(self.templates.get((len(toks), toks[0]), []), toks)
        if tpl is not None:
            out = " ".join(tpl.tokens)
        else:
            for k in range(min(MAX_PREFIX, len(toks) - 1), 0, -1):
                if tuple(toks[:k]) in self.static_prefixes:
                    out = " ".join(toks[:k]) + " " + WILDCARD
                    break
        if len(self._line_cache) < 500_000:
            self._line_cache[line] = out
        return out

    def mask(self, text: str) -> Masked:
        parts: list[str] = []
        variable: list[str] = []
        static = 0
        for raw in text.split("\n"):
            if not raw.strip():
                continue
            tpl = self.mask_line(raw)
            if tpl is None:
                variable.append(raw.strip())
                if not parts or parts[-1] != WILDCARD:
                    parts.append(WILDCARD)
                continue
            parts.append(tpl)
            toks = tpl.split(" ")
            static += sum(1 for t in toks if t != WILDCARD)
            if WILDCARD in toks:
                raw_toks = raw.split()
                if len(raw_toks) == len(toks):
                    variable.extend(r for r, t in zip(raw_toks, toks) if t == WILDCARD)
                else:  # a prefix template: the rest of the line is variable
                    variable.append(" ".join(raw_toks[len(toks) - 1 :]))
        return Masked("\n".join(parts), " ".join(v for v in variable if v), static)
