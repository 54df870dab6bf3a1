"""Answer reuse: a request that repeats one the LLM already answered gets the LLM's logged answer.

The cheapest specialist is no model at all. A request's key is its conversation (roles, text
with case and whitespace folded, earlier tool calls without their random ids), its tools,
`tool_choice` and `response_format`, and its scope (workload and API key: an answer is never
served across scopes). The index keeps, per key, how often it was asked, the answers the LLM
gave and when it was last answered; the served answer is the most frequent one, its confidence
`modal count / (times asked + 1)`: one sighting gives 0.5, five agreeing give 0.83, and a
request the LLM answers differently each time stays low. Entries older than `max_age_s` are not
served, and a demoted route stops serving the whole index.

How often requests recur is this kind's evidence, so it learns from every logged call of the
task in time order, repeats kept (not the deduplicated curation split): the index is built from
the first 80% and judged on the last 20% (exactly as a cache would have met them), then rebuilt
from every call for serving.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from protege.records import CallRecord
from protege.specialist.artifact import write_manifest
from protege.specialist.examples import Example, as_examples
from protege.specialist.format import canonical_hash
from protege.train.kinds import BuildOptions, Responder, SpecialistKind, TaskData, register_kind

INDEX = "reuse_index.json"
HELDOUT_SHARE = 0.2


def _fold(text: Any) -> Any:
    if isinstance(text, list):
        text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not isinstance(text, str):
        return text
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _message_key(m: dict) -> list:
    calls = [[(c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments")]
             for c in m.get("tool_calls") or []]
    return [m.get("role"), _fold(m.get("content")), calls, m.get("name")]


def request_key(request: dict, scope: str | None) -> str:
    """The key two calls share when they ask the same thing in the same scope."""
    parts = {"scope": scope or "", "messages": [_message_key(m) for m in request.get("messages") or []
                                                if isinstance(m, dict)],
             "tools": request.get("tools"), "tool_choice": request.get("tool_choice"),
             "response_format": request.get("response_format")}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def build_index(records: list[CallRecord]) -> dict[str, dict]:
    """key → {"asked": n, "answers": {answer hash: count}, "message": the most frequent answer, "modal": its
    count, "ts": when last answered}."""
    index: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    for record in records:
        ex = (as_examples([record]) or [None])[0]
        if ex is None:
            continue
        key = request_key(ex.request, ex.scope)
        entry = index.setdefault(key, {"asked": 0, "answers": Counter(), "ts": 0.0})
        answer = canonical_hash(_message_key(ex.answer))  # tool calls without their random ids
        messages[answer] = {k: v for k, v in ex.answer.items() if k in ("role", "content", "tool_calls")}
        entry["asked"] += 1
        entry["answers"][answer] += 1
        entry["ts"] = max(entry["ts"], record.ts)
    for entry in index.values():
        modal, count = entry["answers"].most_common(1)[0]
        entry["message"], entry["modal"] = messages[modal], count
        entry["answers"] = dict(entry["answers"])
    return index


class ReuseResponder(Responder):
    model_name = "reuse"

    def __init__(self, index: dict[str, dict], max_age_s: float | None = None):
        self.index, self.max_age_s = index, max_age_s

    def respond(self, request: dict, scope: str | None = None) -> tuple[dict | None, float | None]:
        from protege.models.runtime import completion_dict

        entry = self.index.get(request_key(request, scope))
        if entry is None or (self.max_age_s is not None and time.time() - entry["ts"] > self.max_age_s):
            return None, None
        message = entry["message"]
        calls = [{**c, "id": "call_" + secrets.token_hex(12)} for c in message.get("tool_calls") or []] or None
        completion = completion_dict("reuse", message.get("content"), calls, "stop", 0, 0)
        return completion, entry["modal"] / (entry["asked"] + 1)


class AnswerReuse(SpecialistKind):
    name = "reuse"
    rank = 0

    def unfit(self, task: TaskData) -> str | None:
        keys = Counter(request_key(ex.request, ex.scope) for ex in as_examples(task.history))
        repeats = sum(c - 1 for c in keys.values())
        if repeats == 0:
            return "no request was asked twice"
        return None

    def _cut(self, task: TaskData) -> int:
        return int(len(task.history) * (1 - HELDOUT_SHARE))

    def heldout(self, task: TaskData) -> list[Example]:
        return as_examples(task.history[self._cut(task):])

    def build(self, task: TaskData, folder: Path, options: BuildOptions) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        cut = self._cut(task)
        index = build_index(task.history)
        (folder / "heldout_index.json").write_text(json.dumps(build_index(task.history[:cut])))
        (folder / INDEX).write_text(json.dumps(index))
        write_manifest(folder, {
            "task": task.task_id, "kind": self.name, "output_kind": task.output_kind,
            "max_age_s": options.max_reuse_age_s, "calls": len(task.history), "distinct_requests": len(index),
            "repeat_share": round(1 - len(index) / max(1, len(task.history)), 4),
            "splits": {"train": cut, "test": len(task.history) - cut},
        })

    def open(self, folder: Path, pool: Any = None, heldout: bool = False) -> Responder:
        manifest = json.loads((folder / "specialist.json").read_text())
        index = json.loads((folder / ("heldout_index.json" if heldout else INDEX)).read_text())
        return ReuseResponder(index, None if heldout else manifest.get("max_age_s"))


register_kind(AnswerReuse)
