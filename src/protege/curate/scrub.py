"""Scrub PII and secrets out of logged calls, with typed placeholders that stay aligned.

Every string a person or a model wrote (message contents, text parts, tool-call arguments,
tool results) is scrubbed; structural fields (roles, model names, tool schemas, ids) are left
alone. Within one call the same value always gets the same placeholder (`<EMAIL_1>`), in the
prompt and in the answer, and values are numbered in order of appearance, so the calls of one
conversation (each carrying the history before it) number them the same way too. A value found
once is replaced everywhere else in the call even where a detector would have missed it, and a
detected full name also covers its parts ("Ms. Gonzalez" after "Maria Gonzalez").

`mode="fake"` swaps in realistic fake values (Faker, seeded by the value, so stable across calls)
instead of placeholders.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from protege.curate.detectors import DEFAULT_DETECTORS, PRIORITY, Detector, Span, make_detectors
from protege.records import CallRecord

STRUCTURAL_KEYS = frozenset(
    {
        "role", "model", "type", "id", "tool_call_id", "finish_reason", "object", "created", "system_fingerprint",
        "index", "tools", "functions", "response_format", "usage", "logprobs", "tool_choice", "parallel_tool_calls",
        "service_tier", "stop", "seed", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n",
        "stream", "stream_options", "image_url", "input_audio",
    }
)
PERSON_KEYS = re.compile(
    r"^(?:name|full_?name|first_?name|last_?name|given_?name|family_?name|surname|(?:customer|patient|client|contact|"
    r"user|employee|passenger|guest|recipient|sender|author|owner|manager|assignee|person|applicant|member|driver|"
    r"holder|cardholder|account_?holder|beneficiary)_?(?:name|full_?name)?)$",
    re.IGNORECASE,
)
_NAME_VALUE = re.compile(r"^[A-Z][\w'\u00C0-\u017F.-]*(?:\s+[\w'\u00C0-\u017F.-]+){0,4}$")

INSTALL_FAKER = "pip install 'protege[curate]'  (faker)"


def _normalize(type_: str, value: str) -> str:
    if type_ == "EMAIL":
        return value.lower()
    if type_ in ("PHONE", "CARD", "SSN"):
        return re.sub(r"\D", "", value)
    if type_ == "IBAN":
        return re.sub(r"[^A-Za-z0-9]", "", value).upper()
    if type_ == "PERSON":
        return " ".join(value.split()).casefold()
    return value


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans sorted by start: on overlap the higher-priority type, then the longer span, wins."""
    ranked = sorted(spans, key=lambda s: (PRIORITY.get(s.type, 99), -(s.end - s.start), s.start))
    taken: list[Span] = []
    for s in ranked:
        if all(s.end <= t.start or s.start >= t.end for t in taken):
            taken.append(s)
    return sorted(taken, key=lambda s: s.start)


@dataclass
class ScrubSession:
    """Placeholder assignments for one call (or conversation): value -> replacement."""

    mode: str = "placeholder"
    seed: int = 0
    replacements: dict[tuple[str, str], str] = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)
    known: dict[str, str] = field(default_factory=dict)
    """Literal value -> type, for the second pass that replaces every occurrence."""
    found: Counter = field(default_factory=Counter)

    def replacement(self, type_: str, value: str) -> str:
        key = (type_, _normalize(type_, value))
        if key not in self.replacements:
            self.counters[type_] += 1
            self.replacements[key] = (
                f"<{type_}_{self.counters[type_]}>" if self.mode == "placeholder" else fake_value(type_, key[1], self.seed)
            )
        return self.replacements[key]

    def restore(self, value: Any) -> Any:
        """`value` (a message, JSON text or string) with each replacement this session made turned back into its
        original: a model that only ever saw replacements answers in the caller's own terms."""
        back: dict[str, str] = {}
        for original in sorted(self.known, key=len, reverse=True):  # a name's fake stands for the whole name
            back.setdefault(self.replacement(self.known[original], original), original)
        if not back:
            return value
        rx = re.compile("|".join(re.escape(fake) for fake in sorted(back, key=len, reverse=True)))
        return _rewrite(value, lambda text: rx.sub(lambda m: back[m.group(0)], text))

    def remember(self, type_: str, value: str) -> None:
        if value not in self.known:
            self.known[value] = type_
            self.replacement(type_, value)
            if type_ == "PERSON":
                parts = value.split()
                for part in parts if len(parts) > 1 else []:
                    if len(part) >= 3 and part[0].isupper() and any(c.islower() for c in part) and part not in self.known:
                        self.known[part] = "PERSON"
                        self.replacements.setdefault(("PERSON", _normalize("PERSON", part)), self.replacement("PERSON", value))


class Scrubber:
    """Finds and replaces PII in text and in whole call records.

    `detectors`: names from `DETECTORS` (default: all built-ins) or Detector instances.
    `mode`: "placeholder" (`<EMAIL_1>`) or "fake" (realistic values from Faker).
    """

    def __init__(self, detectors: Iterable[str | Detector] = DEFAULT_DETECTORS, mode: str = "placeholder", seed: int = 0,
                 cache_size: int = 200_000):
        """`cache_size`: distinct texts whose spans are kept (a curation pass sees the same system prompts again and
        again; a serving process, mostly new texts, keeps a few)."""
        if mode not in ("placeholder", "fake"):
            raise ValueError(f"Unknown scrub mode {mode!r}; use 'placeholder' or 'fake'.")
        names = [d for d in detectors if isinstance(d, str)]
        self.detectors: list[Detector] = make_detectors(names) + [d for d in detectors if isinstance(d, Detector)]
        self.mode, self.seed, self.cache_size = mode, seed, cache_size
        self._cache: dict[str, list[Span]] = {}
        if mode == "fake":
            _faker()  # fail early with the install hint

    def find(self, text: str) -> list[Span]:
        """Resolved (non-overlapping) PII spans in `text`; cached per distinct text."""
        hit = self._cache.get(text)
        if hit is None:
            hit = resolve_overlaps(s for d in self.detectors for s in d.find(text))
            if len(self._cache) > self.cache_size:
                self._cache.clear()
            self._cache[text] = hit
        return hit

    def session(self) -> ScrubSession:
        return ScrubSession(mode=self.mode, seed=self.seed)

    def scrub_text(self, text: str, session: ScrubSession | None = None) -> str:
        session = session or self.session()
        for s in self.find(text):
            session.remember(s.type, text[s.start : s.end])
        return self._replace(text, session)

    def scrub_record(self, record: CallRecord, session: ScrubSession | None = None) -> CallRecord:
        """A scrubbed copy of `record`: every free-text field a caller or an upstream can fill (request, response,
        error, workload, and metadata, where the caller's labels and upstream error bodies live)."""
        session = session or self.session()
        out = copy.copy(record)
        self._detect([record.request, record.response, record.error, record.workload, record.metadata], session)
        scrub = lambda t: self._replace(t, session)  # noqa: E731
        out.request = _rewrite(record.request, scrub)
        out.response = _rewrite(record.response, scrub)
        out.error, out.workload = (scrub(t) if t else t for t in (record.error, record.workload))
        out.metadata = {**_rewrite(record.metadata, scrub), "scrubbed": dict(session.found)}
        return out

    def scrub_request(self, request: dict, session: ScrubSession | None = None) -> tuple[dict, ScrubSession]:
        """A scrubbed copy of a request, as `scrub_record` scrubs a logged one, and the session that maps its
        replacements back (`ScrubSession.restore`)."""
        session = session or self.session()
        self._detect([request], session)
        return _rewrite(request, lambda t: self._replace(t, session)), session

    def _detect(self, docs: list[Any], session: ScrubSession) -> None:
        """Pass 1: every PII value in `docs`, in order of appearance, remembered by the session."""
        strings: list[str] = []
        for doc in docs:
            _collect(doc, strings)
        for text in strings:
            for s in self.find(text):
                session.remember(s.type, text[s.start : s.end])
                session.found[s.type] += 1
        for text, type_ in _json_person_values(*(d for d in docs if isinstance(d, (dict, list)))):
            session.remember(type_, text)
            session.found[type_] += 1

    def _replace(self, text: str, session: ScrubSession) -> str:
        spans = list(self.find(text))
        if session.known:
            for m in _known_regex(tuple(sorted(session.known, key=len, reverse=True))).finditer(text):
                spans.append(Span(m.start(), m.end(), session.known[m.group(0)]))
        if not spans:
            return text
        parts, pos = [], 0
        for s in resolve_overlaps(spans):
            value = text[s.start : s.end]
            parts.append(text[pos : s.start])
            parts.append(session.replacement(s.type, value))
            pos = s.end
        parts.append(text[pos:])
        return "".join(parts)


_KNOWN_CACHE: dict[tuple[str, ...], re.Pattern] = {}


def _known_regex(values: tuple[str, ...]) -> re.Pattern:
    rx = _KNOWN_CACHE.get(values)
    if rx is None:
        alts = [rf"(?<!\w){re.escape(v)}(?!\w)" if v[:1].isalnum() and v[-1:].isalnum() else re.escape(v) for v in values]
        rx = re.compile("|".join(alts))
        if len(_KNOWN_CACHE) > 10_000:
            _KNOWN_CACHE.clear()
        _KNOWN_CACHE[values] = rx
    return rx


def _maybe_json(text: str) -> Any:
    t = text.lstrip()
    if t[:1] in ("{", "[") and len(t) > 1:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
    return None


def _collect(value: Any, out: list[str], key: str | None = None) -> None:
    """Every scrubbable string, in document order (JSON inside strings is opened)."""
    if key in STRUCTURAL_KEYS:
        return
    if isinstance(value, str):
        parsed = _maybe_json(value)
        if isinstance(parsed, (dict, list)):
            _collect(parsed, out)
        elif value:
            out.append(value)
    elif isinstance(value, dict):
        is_function = "arguments" in value or "parameters" in value
        for k, v in value.items():
            if is_function and k == "name":
                continue
            _collect(v, out, k)
    elif isinstance(value, list):
        for v in value:
            _collect(v, out)


def _json_person_values(*docs: Any) -> list[tuple[str, str]]:
    """Values under person-name keys ("customer_name": "Ana Souza") in request/response JSON."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, key: str | None = None, parent: dict | None = None) -> None:
        if key in STRUCTURAL_KEYS:
            return
        if isinstance(value, str):
            parsed = _maybe_json(value)
            if isinstance(parsed, (dict, list)):
                walk(parsed)
            elif (
                key
                and PERSON_KEYS.match(key)
                and not (key == "name" and parent is not None and ("arguments" in parent or "parameters" in parent))
                and _NAME_VALUE.match(value)
                and not any(c.isdigit() for c in value)
                and (key.lower() != "name" or _reads_as_a_person(value))
            ):
                found.append((value, "PERSON"))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k, value)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, parent)

    for doc in docs:
        walk(doc)
    return found


def _reads_as_a_person(value: str) -> bool:
    """For a bare `name` key, which also names products, companies and places ("items": [{"name": "Yoga Mat"}]):
    a known first name, then one more word or a known last name ("Zanele Oyelaran", not "Rain Shell Jacket")."""
    from protege.curate.gazetteer import load_gazetteer

    words, gaz = value.split(), load_gazetteer()
    return bool(words) and gaz.is_first(words[0]) and (len(words) <= 2 or gaz.is_last(words[-1]))


def _rewrite(value: Any, fn, key: str | None = None) -> Any:
    if key in STRUCTURAL_KEYS:
        return value
    if isinstance(value, str):
        parsed = _maybe_json(value)
        if isinstance(parsed, (dict, list)):
            return orjson.dumps(_rewrite(parsed, fn)).decode()
        return fn(value) if value else value
    if isinstance(value, dict):
        is_function = "arguments" in value or "parameters" in value
        return {k: (v if is_function and k == "name" else _rewrite(v, fn, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, fn) for v in value]
    return value


# --- fake values ----------------------------------------------------------------------------

_FAKERS: dict[int, Any] = {}
_FAKER_LOCK = threading.Lock()


def _faker():
    try:
        from faker import Faker
    except ImportError as e:
        raise ImportError(f"Fake replacement needs Faker. Fix: {INSTALL_FAKER}") from e
    return Faker


def fake_value(type_: str, normalized: str, seed: int = 0) -> str:
    """A realistic fake value for `type_`, the same for the same input value and seed."""
    with _FAKER_LOCK:  # seeding then drawing must not interleave with another thread's (a gateway's)
        return _fake_value(type_, normalized, seed)


def _fake_value(type_: str, normalized: str, seed: int) -> str:
    fk = _FAKERS.get(0)
    if fk is None:
        fk = _FAKERS[0] = _faker()("en_US")
    fk.seed_instance(int.from_bytes(hashlib.sha256(f"{seed}:{type_}:{normalized}".encode()).digest()[:8], "big"))
    makers = {
        "EMAIL": fk.email,
        "PHONE": fk.phone_number,
        "CARD": fk.credit_card_number,
        "IBAN": fk.iban,
        "SSN": fk.ssn,
        "IP": fk.ipv4_private,
        "URL": fk.url,
        "PERSON": fk.name,
        "SECRET": lambda: "sk-fake-" + fk.hexify("^" * 32),
        "PRIVATE_KEY": lambda: "-----BEGIN PRIVATE KEY-----\n<redacted>\n-----END PRIVATE KEY-----",
    }
    return makers.get(type_, lambda: f"<{type_}>")()


def scrub_records(records: Iterable[CallRecord], scrubber: Scrubber | None = None) -> Iterable[CallRecord]:
    """Scrub a stream of records (one session per call)."""
    scrubber = scrubber or Scrubber()
    for r in records:
        yield scrubber.scrub_record(r)


def ingest_scrubber(enabled: bool) -> Scrubber | None:
    """The scrubber the gateway and the drop-in client apply before a call is first written (`scrub_at_ingest`)."""
    return Scrubber() if enabled else None
