"""Filters that drop calls unfit for training, each with a counted reason.

In order: upstream errors, truncated answers, refusals, invalid JSON where a schema was asked
for, invalid tool calls (unknown tool, arguments that are not JSON or fail the tool's schema),
exact duplicates, near duplicates (MinHash LSH over word shingles of prompt + answer).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from protege.records import CallRecord

REASONS = ("upstream_error", "truncated", "refusal", "invalid_json", "invalid_tool_call", "duplicate", "near_duplicate")

_REFUSAL_RE = re.compile(
    r"^\s*(?:I'm sorry|I am sorry|Sorry|I apologi[sz]e|Unfortunately)?[,.]?\s*(?:but\s+)?"
    r"(?:I\s+(?:can(?:'|no)t|cannot|am unable to|won't|will not|am not able to)\s+(?:help|assist|comply|provide|do that|fulfil|fulfill|answer|complete))",
    re.IGNORECASE,
)


def message_of(record: CallRecord) -> dict[str, Any]:
    """The first choice's assistant message ({} when there is none)."""
    choices = (record.response or {}).get("choices") or []
    return (choices[0].get("message") or {}) if choices else {}


def finish_reason_of(record: CallRecord) -> str | None:
    choices = (record.response or {}).get("choices") or []
    return choices[0].get("finish_reason") if choices else None


def requested_schema(request: dict) -> dict | None | bool:
    """The JSON schema asked for by `response_format`: a dict, True for json_object, None for none."""
    rf = request.get("response_format") or {}
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema") or {}
        return js.get("schema") or True
    if rf.get("type") == "json_object":
        return True
    return None


def _validate(instance: Any, schema: dict) -> str | None:
    try:
        import jsonschema
    except ImportError:  # jsonschema is a core dependency of the curate extra; parse-only without it
        return None
    try:
        jsonschema.validate(instance, schema)
    except jsonschema.ValidationError as e:
        return e.message
    except jsonschema.SchemaError:
        return None
    return None


def tool_call_problem(request: dict, message: dict) -> str | None:
    """Why the message's tool calls are invalid for the request's tools, or None when they are fine."""
    calls = message.get("tool_calls") or []
    if not calls:
        return None
    tools = {}
    for t in request.get("tools") or []:
        fn = t.get("function") or {}
        if fn.get("name"):
            tools[fn["name"]] = fn.get("parameters") or {}
    for call in calls:
        fn = call.get("function") or {}
        name = fn.get("name")
        if tools and name not in tools:
            return f"unknown tool {name!r}"
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            return f"arguments of {name!r} are not JSON"
        if name in tools and tools[name]:
            problem = _validate(args, tools[name])
            if problem:
                return f"arguments of {name!r}: {problem}"
    return None


def drop_reason(record: CallRecord) -> str | None:
    """The first reason (of REASONS, duplicates aside) to drop this call, or None to keep it."""
    if not record.is_success or (record.response or {}).get("error"):
        return "upstream_error"
    if finish_reason_of(record) == "length":
        return "truncated"
    msg = message_of(record)
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if msg.get("refusal") or (isinstance(content, str) and _REFUSAL_RE.match(content[:300])):
        return "refusal"
    schema = requested_schema(record.request)
    if schema is not None and not msg.get("tool_calls"):
        try:
            value = orjson.loads(content or "")
        except orjson.JSONDecodeError:
            return "invalid_json"
        if isinstance(schema, dict) and _validate(value, schema):
            return "invalid_json"
    if tool_call_problem(record.request, msg):
        return "invalid_tool_call"
    return None


def _dedup_text(record: CallRecord) -> str:
    msgs = record.request.get("messages") or []
    parts = [m.get("content") if isinstance(m.get("content"), str) else orjson.dumps(m.get("content")).decode() for m in msgs]
    msg = message_of(record)
    parts.append(msg.get("content") or "")
    parts.append(orjson.dumps(msg.get("tool_calls") or []).decode())
    return "\n".join(p or "" for p in parts)


@dataclass
class FilterReport:
    """What the filters kept and why they dropped the rest."""

    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    """A few dropped call ids per reason."""

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "dropped": dict(self.dropped), "examples": self.examples}


def filter_calls(
    records: Iterable[CallRecord],
    *,
    near_duplicate_threshold: float | None = 0.9,
    num_perm: int = 64,
    report: FilterReport | None = None,
) -> list[CallRecord]:
    """The records worth training on; `report` (when given) counts every drop by reason.

    Near duplicates (Jaccard of word 3-shingles >= threshold, estimated with MinHash LSH) keep
    the first call seen; None turns that check off.
    """
    report = report if report is not None else FilterReport()
    seen: set[str] = set()
    lsh = None
    if near_duplicate_threshold is not None:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError as e:
            raise ImportError("Near-duplicate detection needs datasketch. Fix: pip install 'protege[analyze]' (or pass near_duplicate_threshold=None)") from e
        lsh = MinHashLSH(threshold=near_duplicate_threshold, num_perm=num_perm)
    kept = []
    for r in records:
        report.total += 1
        reason = drop_reason(r)
        text = None
        if reason is None:
            text = _dedup_text(r)
            digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
            if digest in seen:
                reason = "duplicate"
            else:
                seen.add(digest)
        if reason is None and lsh is not None:
            words = re.findall(r"\w+", text.lower())  # case and punctuation do not make a call new
            shingles = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
            mh = MinHash(num_perm=num_perm, seed=1)
            mh.update_batch([s.encode() for s in shingles])
            if lsh.query(mh):
                reason = "near_duplicate"
            else:
                lsh.insert(r.id, mh)
        if reason is None:
            kept.append(r)
            report.kept += 1
        else:
            report.dropped[reason] += 1
            ex = report.examples.setdefault(reason, [])
            if len(ex) < 5:
                ex.append(r.id)
    return kept
