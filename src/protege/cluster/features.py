"""What clustering looks at in a call: its static parts (system prompt, tools, response format)
and its variable content (the user's words), plus the shape of its answer.

The request-side features are all the router has at request time; the answer's kind is used only
in batch discovery (a tool-using agent's free-text chit-chat is not its tool-calling task).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from protege.records import CallRecord


def text_of(content: Any) -> str:
    """The text of a message's content (a string, or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in (None, "text"))
    return ""


def tool_names(request: dict) -> tuple[str, ...]:
    names = []
    for t in request.get("tools") or []:
        fn = t.get("function") or {}
        if fn.get("name"):
            names.append(fn["name"])
    for fn in request.get("functions") or []:
        if fn.get("name"):
            names.append(fn["name"])
    return tuple(sorted(set(names)))


def schema_of(request: dict) -> dict | None:
    rf = request.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema") or {}
    if rf.get("type") == "json_object":
        return {}
    return None


def schema_name(request: dict) -> str:
    rf = request.get("response_format") or {}
    return str((rf.get("json_schema") or {}).get("name") or "") if rf.get("type") == "json_schema" else ""


def schema_fingerprint(schema: dict | None) -> str:
    """A short stable hash of a response_format schema ("" when there is none)."""
    if schema is None:
        return ""
    return hashlib.sha1(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()[:10]


def answer_kind(record: CallRecord) -> str:
    """"tool" when the answer calls tools, "json" when it is a JSON object/array, else "text"."""
    choices = (record.response or {}).get("choices") or []
    msg = (choices[0].get("message") or {}) if choices else {}
    if msg.get("tool_calls") or msg.get("function_call"):
        return "tool"
    content = text_of(msg.get("content")).strip()
    if content[:1] in ("{", "["):
        try:
            orjson.loads(content)
            return "json"
        except orjson.JSONDecodeError:
            pass
    return "text"


@dataclass
class CallView:
    """The parts of one call that task discovery uses."""

    call_id: str
    system: str
    """All system/developer messages, joined."""
    user: str
    """The last user message (the variable input of the call)."""
    tools: tuple[str, ...]
    schema_fp: str
    schema_name: str
    turns: int
    """How many messages the request carries."""
    has_tool_results: bool
    kind: str | None = None
    """The answer's kind (batch only): "tool", "json" or "text"."""

    @classmethod
    def of(cls, record: CallRecord, with_answer: bool = True) -> CallView:
        return cls.of_request(record.request, record.id, answer_kind(record) if with_answer else None)

    @classmethod
    def of_request(cls, request: dict, call_id: str = "", kind: str | None = None) -> CallView:
        messages = request.get("messages") or []
        system = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
        users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        return cls(
            call_id=call_id,
            system=system,
            user=users[-1] if users else "",
            tools=tool_names(request),
            schema_fp=schema_fingerprint(schema_of(request)),
            schema_name=schema_name(request),
            turns=len(messages),
            has_tool_results=any(m.get("role") in ("tool", "function") for m in messages),
            kind=kind,
        )
