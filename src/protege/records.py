"""The logged call: one OpenAI-style chat completion as protege stores it.

A `CallRecord` keeps the raw request and response JSON, exactly as they crossed the wire,
next to the columns people query (model, workload, tokens, cost, latency...).
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

SOURCES = ("gateway", "client", "import")
PROTEGE_METADATA_KEYS = frozenset({"route", "upstream_body", "scrubbed", "log_error"})
"""The keys protege itself writes into `CallRecord.metadata` (routing, upstream error bodies, scrub counts,
logging failures). They are protege's namespace: a caller's `metadata` can never set them."""


def new_call_id() -> str:
    """A time-sortable unique id: 12 hex digits of milliseconds, then 12 random hex digits."""
    return f"{int(time.time() * 1000):012x}{random.getrandbits(48):012x}"


def call_scope(workload: str | None, client: str | None) -> str:
    """Who made a call: its workload and the name of the key it came with. Answers learnt from one
    scope's calls (answer reuse) are never served to another."""
    return f"{workload or ''}\x1f{client or ''}"


def workload_of(request: dict, header: str | None = None) -> str | None:
    """A call's workload: the `X-Protege-Workload` header's value, else the request's `metadata.workload`."""
    meta = request.get("metadata")
    return header or (meta["workload"] if isinstance(meta, dict) and isinstance(meta.get("workload"), str) else None)


def content_call_id(request: dict, response: dict | None) -> str:
    """A deterministic id for an imported call, so that importing the same line twice is a no-op."""
    blob = orjson.dumps({"request": request, "response": response}, option=orjson.OPT_SORT_KEYS)
    return "imp" + hashlib.sha256(blob).hexdigest()[:21]


@dataclass
class CallRecord:
    """One chat completion call, with its raw JSON and derived, queryable fields."""

    id: str
    ts: float
    """Unix time when the call started."""
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    """The (reassembled, for streams) response body; None when the call failed without one."""
    source: str = "gateway"
    workload: str | None = None
    client: str | None = None
    """Name of the API key that made the call, or None in open mode."""
    requested_model: str | None = None
    upstream_model: str | None = None
    served_by: str | None = None
    """Who produced the answer: "upstream:<name>" for an LLM, later "specialist:<id>"."""
    stream: bool = False
    has_tools: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status: int = 200
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    """The task the call belongs to, once task discovery has assigned one."""

    @property
    def is_success(self) -> bool:
        return self.status == 200 and self.error is None and self.response is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        return cls(**{k: v for k, v in data.items() if k in _FIELD_NAMES})

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> CallRecord:
        return cls.from_dict(orjson.loads(raw))


_FIELD_NAMES = frozenset(f.name for f in fields(CallRecord))


def fill_derived_fields(record: CallRecord) -> CallRecord:
    """Derive model, tools and token columns from the raw request/response where unset."""
    req, resp = record.request, record.response or {}
    if record.requested_model is None:
        record.requested_model = req.get("model")
    record.has_tools = bool(req.get("tools") or req.get("functions"))
    record.stream = bool(req.get("stream"))
    if record.upstream_model is None:
        record.upstream_model = resp.get("model")
    usage = resp.get("usage") or {}
    if record.prompt_tokens is None:
        record.prompt_tokens = usage.get("prompt_tokens")
    if record.completion_tokens is None:
        record.completion_tokens = usage.get("completion_tokens")
    meta = req.get("metadata")
    if isinstance(meta, dict):  # OpenAI's own `metadata` request field: the caller's labels, never protege's keys
        labels = {k: v for k, v in meta.items() if k not in PROTEGE_METADATA_KEYS}
        record.metadata = {**labels, **record.metadata}
        record.workload = workload_of(req, record.workload)
    return record
