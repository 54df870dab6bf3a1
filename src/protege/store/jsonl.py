"""Import and export of JSONL logs.

Import reads, one JSON object per line (plain or .gz):
- OpenAI-style logs: `{"request": {...}, "response": {...}, "metadata": {...}}`;
- chat fine-tuning data: `{"messages": [..., {"role": "assistant", ...}], "tools": [...]}`.
Bad lines are skipped and reported with their line numbers; ids are content hashes, so importing
the same file twice adds nothing. Export writes chat fine-tuning JSONL or, with `raw`, one
stored call per line.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from protege.records import CallRecord, content_call_id, fill_derived_fields
from protege.store.base import CallFilter, Store

BATCH = 1000


@dataclass
class ImportReport:
    read: int = 0
    added: int = 0
    duplicates: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"read": self.read, "added": self.added, "duplicates": self.duplicates,
                "bad": len(self.bad_lines), "bad_lines": [{"line": n, "reason": r} for n, r in self.bad_lines]}


class BadLine(ValueError):
    pass


def _from_fine_tuning(line: dict) -> tuple[dict, dict]:
    messages = line["messages"]
    if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(m, dict) for m in messages):
        raise BadLine("'messages' must be a list of at least two message objects")
    answer = messages[-1]
    if answer.get("role") != "assistant":
        raise BadLine("the last message must be the assistant's answer")
    request = {"model": (line.get("metadata") or {}).get("model") or "unknown", "messages": messages[:-1]}
    for key in ("tools", "parallel_tool_calls", "response_format"):
        if key in line:
            request[key] = line[key]
    message = {"role": "assistant", "content": answer.get("content")}
    if answer.get("tool_calls"):
        message["tool_calls"] = answer["tool_calls"]
    response = {"object": "chat.completion", "model": request["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if answer.get("tool_calls") else "stop"}]}
    return request, response


def parse_line(line: dict) -> CallRecord:
    """A CallRecord from one import line, or BadLine saying what is wrong with it."""
    if not isinstance(line, dict):
        raise BadLine("not a JSON object")
    if "request" in line:
        request, response = line["request"], line.get("response")
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            raise BadLine("'request' must be an object with a 'messages' list")
        if response is not None and not isinstance(response, dict):
            raise BadLine("'response' must be an object or null")
    elif "messages" in line:
        request, response = _from_fine_tuning(line)
    else:
        raise BadLine("expected {'request': ..., 'response': ...} or {'messages': [...]}")
    metadata = line.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadLine("'metadata' must be an object")
    ts = metadata.get("ts") or line.get("ts") or (response or {}).get("created") or time.time()
    status = int(line.get("status") or (200 if response else 500))
    record = CallRecord(id=content_call_id(request, response), ts=float(ts), request=request, response=response,
                        source="import", metadata=metadata, status=status, workload=metadata.get("workload"),
                        served_by="import", error=line.get("error") or (None if response else "no response recorded"))
    return fill_derived_fields(record)


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def import_jsonl(store: Store, path: str | Path, *, prices=None, workload: str | None = None) -> ImportReport:
    """Import a JSONL file into `store`; costs are priced with `prices` (a PriceTable) when given."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    report, batch = ImportReport(), []

    def flush() -> None:
        added = store.add_calls(batch)
        report.added += added
        report.duplicates += len(batch) - added
        batch.clear()

    with _open(path) as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            report.read += 1
            try:
                record = parse_line(orjson.loads(raw))
            except orjson.JSONDecodeError as e:
                report.bad_lines.append((n, f"invalid JSON: {e}"))
                continue
            except (BadLine, KeyError, TypeError, ValueError) as e:
                report.bad_lines.append((n, str(e)))
                continue
            if workload and not record.workload:
                record.workload = workload
            if prices is not None:
                record.cost_usd = prices.cost(record.upstream_model or record.requested_model,
                                              record.prompt_tokens, record.completion_tokens)
            batch.append(record)
            if len(batch) >= BATCH:
                flush()
    flush()
    return report


def to_fine_tuning(record: CallRecord) -> dict | None:
    """The call as one chat fine-tuning example, or None if it has no successful answer."""
    if not record.is_success or not record.response.get("choices"):
        return None
    message = record.response["choices"][0].get("message") or {}
    answer = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        answer["tool_calls"] = message["tool_calls"]
    example: dict = {"messages": [*record.request.get("messages", []), answer]}
    for key in ("tools", "parallel_tool_calls", "response_format"):
        if key in record.request:
            example[key] = record.request[key]
    return example


def iter_export(store: Store, flt: CallFilter | None = None, fmt: str = "chat") -> Iterator[bytes]:
    """Export lines (bytes, newline-terminated): `chat` fine-tuning examples or `raw` stored calls."""
    if fmt not in ("chat", "raw"):
        raise ValueError(f"Unknown export format {fmt!r}; use --format chat or --format raw.")
    for record in store.iter_calls(flt):
        item = record.to_dict() if fmt == "raw" else to_fine_tuning(record)
        if item is not None:
            yield orjson.dumps(item) + b"\n"
