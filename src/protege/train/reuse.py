"""Answer reuse: a request that repeats one the LLM already answered gets the LLM's logged answer.

The cheapest specialist is no model at all. A request's key is its conversation (roles, text
with case and whitespace folded, earlier tool calls without their random ids), its tools,
`tool_choice` and `response_format`, and its scope (workload and API key: an answer is never
served across scopes). The index keeps, per key, how often it was asked, the answers the LLM
gave and when it was last answered; the served answer is the most frequent one, its confidence
`modal count / (times asked + 1)`: one sighting gives 0.5, five agreeing give 0.83, and a
request the LLM answers differently each time stays low. Entries older than `max_age_s` are not
served, and a demoted route stops serving the whole index.

Near-duplicates: a request that is not an exact repeat may still get the answer of the most
similar logged request that shares its frame (scope, system prompt, tools, `response_format`:
everything but the conversation's other messages), when their MiniLM embeddings are at least a
per-task similarity threshold apart. The threshold is calibrated on calls the gate never judges
on (an index of the first 60% of the history meets the next 20%): the lowest similarity above
which near hits got a different answer from the LLM at most 3% of the time, counted pessimistically
((wrong + 1) / (hits + 2): with no wrong hit it takes 32 hits to trust a threshold). A task
with no such threshold reuses exact repeats only and never loads the embedder. A near hit's
confidence is half its similarity, below any exact hit's, and the gate's calibration then
decides how far down to serve, like every kind's. Label tasks reuse exact repeats only: a closed
set of answers is the classifier's job, which learns from every call, not the nearest one.

How often requests recur is this kind's evidence, so it learns from every logged call of the
task in time order, repeats kept (not the deduplicated curation split): the index is built from
the first 80% and judged on the last 20% (exactly as a cache would have met them), then rebuilt
from every call for serving.
"""

from __future__ import annotations

import hashlib
import json
import math
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
from protege.train.kinds import (
    BuildOptions,
    Responder,
    SpecialistKind,
    TaskData,
    register_kind,
    sentence_embedder,
    user_text,
)

INDEX = "reuse_index.json"
NEAR = "near_index.npz"
HELDOUT_SHARE = 0.2
CALIBRATION_SHARE = 0.2
"""The slice before the held-out calls on which the near-duplicate threshold is set."""
MAX_FALSE_HITS = 0.03
"""Semantic caches in the field keep >= 97% of their hits correct."""
MIN_TRUSTED_HITS = math.ceil(1 / MAX_FALSE_HITS - 2)
"""Fewest near hits, all right, for (wrong + 1) / (hits + 2) to reach `MAX_FALSE_HITS` (32)."""
MAX_EMBEDDED = 4000
"""Distinct requests embedded per task at most (the most recent)."""
EMBEDDED_CHARS = 1000
"""Where requests differ is their end (the question after a shared context): what is embedded of them."""


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


def frame_key(request: dict, scope: str | None) -> str:
    """The key near-duplicates share: the request with every message but the system prompt reduced to its role."""
    frame = [m if m.get("role") in ("system", "developer") else {"role": m.get("role")}
             for m in request.get("messages") or [] if isinstance(m, dict)]
    return request_key({**request, "messages": frame}, scope)


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
        entry = index.setdefault(key, {"asked": 0, "answers": Counter(), "ts": 0.0,
                                       "frame": frame_key(ex.request, ex.scope)})
        answer = answer_hash(ex.answer)
        messages[answer] = {k: v for k, v in ex.answer.items() if k in ("role", "content", "tool_calls")}
        entry["asked"] += 1
        entry["answers"][answer] += 1
        entry["ts"] = max(entry["ts"], record.ts)
    for entry in index.values():
        modal, count = entry["answers"].most_common(1)[0]
        entry["message"], entry["modal"], entry["answer"] = messages[modal], count, modal
        entry["answers"] = dict(entry["answers"])
    return index


def answer_hash(message: dict) -> str:
    return canonical_hash(_message_key(message))  # tool calls without their random ids


class NearIndex:
    """Unit vectors of an index's distinct requests, looked up within a frame."""

    def __init__(self, keys: list[str], frames: list[str], vectors: Any):
        self.keys, self.vectors = keys, vectors
        self.rows: dict[str, list[int]] = {}
        for i, frame in enumerate(frames):
            self.rows.setdefault(frame, []).append(i)

    @classmethod
    def of(cls, index: dict[str, dict], vectors: dict[str, Any]) -> NearIndex:
        import numpy as np

        keys = [k for k in index if k in vectors]
        matrix = np.stack([vectors[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)
        return cls(keys, [index[k]["frame"] for k in keys], matrix)

    def nearest(self, frame: str, vector: Any) -> tuple[str | None, float]:
        rows = self.rows.get(frame)
        if not rows or vector is None:
            return None, 0.0
        sims = self.vectors[rows] @ vector
        best = int(sims.argmax())
        return self.keys[rows[best]], float(sims[best])

    def frames(self) -> list[str]:
        frames = [""] * len(self.keys)
        for frame, rows in self.rows.items():
            for i in rows:
                frames[i] = frame
        return frames

    def save(self, path: Path) -> None:
        import numpy as np

        with open(path, "wb") as f:  # a file object: np.savez would append .npz to a temporary name
            np.savez(f, keys=np.array(self.keys), frames=np.array(self.frames()),
                     vectors=self.vectors.astype(np.float16))

    @classmethod
    def load(cls, path: Path) -> NearIndex:
        import numpy as np

        data = np.load(path)
        return cls(data["keys"].tolist(), data["frames"].tolist(), data["vectors"].astype(np.float32))


def embed_requests(records: list[CallRecord]) -> dict[str, Any]:
    """request key → unit vector of its user text, for the most recent `MAX_EMBEDDED` distinct requests."""
    texts: dict[str, str] = {}
    for ex in reversed(as_examples(records)):
        key = request_key(ex.request, ex.scope)
        if key not in texts and len(texts) < MAX_EMBEDDED:
            texts[key] = user_text(ex.request, EMBEDDED_CHARS)
    vectors = sentence_embedder().embed(list(texts.values()))
    return dict(zip(texts, vectors, strict=True))


def fit_near(history: list[CallRecord], vectors: dict[str, Any]) -> dict:
    """The near-duplicate threshold: an index of the first 60% of the history meets the next 20%."""
    start = int(len(history) * (1 - HELDOUT_SHARE - CALIBRATION_SHARE))
    index = build_index(history[:start])
    near = NearIndex.of(index, vectors)
    outcomes = []
    for ex in as_examples(history[start:int(len(history) * (1 - HELDOUT_SHARE))]):
        key = request_key(ex.request, ex.scope)
        if key in index:
            continue  # an exact repeat, not a near one
        hit, similarity = near.nearest(frame_key(ex.request, ex.scope), vectors.get(key))
        if hit is not None:
            outcomes.append((similarity, answer_hash(ex.answer) == index[hit]["answer"]))
    outcomes.sort(reverse=True)
    fit = {"threshold": None, "checked": len(outcomes), "hits": 0, "false_hits": 0, "max_false_hits": MAX_FALSE_HITS}
    wrong = 0
    for n, (similarity, right) in enumerate(outcomes, 1):
        wrong += not right
        if (wrong + 1) / (n + 2) <= MAX_FALSE_HITS:
            fit.update(threshold=round(similarity, 4), hits=n, false_hits=wrong)
    return fit


def forget_requests(folder: Path, records: list[CallRecord]) -> int:
    """Remove these calls' requests from a reuse folder's indexes, answers and vectors alike (`protege forget`);
    returns how many entries the serving index lost."""
    keys = {request_key(ex.request, ex.scope) for ex in as_examples(records)}
    removed = 0
    for prefix in ("", "heldout_"):
        path = folder / (prefix + INDEX)
        if path.is_file():
            index = json.loads(path.read_text())
            kept = {k: v for k, v in index.items() if k not in keys}
            if len(kept) != len(index):
                removed += (len(index) - len(kept)) if not prefix else 0
                _replace(path, lambda tmp, kept=kept: tmp.write_text(json.dumps(kept)))
        path = folder / (prefix + NEAR)
        if path.is_file():
            near = NearIndex.load(path)
            rows = [i for i, k in enumerate(near.keys) if k not in keys]
            if len(rows) != len(near.keys):
                frames = near.frames()
                near = NearIndex([near.keys[i] for i in rows], [frames[i] for i in rows], near.vectors[rows])
                _replace(path, lambda tmp, near=near: near.save(tmp))
    return removed


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name("tmp-" + path.name)
    write(tmp)
    tmp.replace(path)


class ReuseResponder(Responder):
    model_name = "reuse"

    def __init__(self, index: dict[str, dict], max_age_s: float | None = None, near: NearIndex | None = None,
                 threshold: float | None = None):
        self.index, self.max_age_s, self.near, self.threshold = index, max_age_s, near, threshold
        self.embedder = None

    def _lookup(self, request: dict, scope: str | None) -> tuple[dict | None, float]:
        key = request_key(request, scope)
        entry = self.index.get(key)
        if entry is not None:
            return entry, entry["modal"] / (entry["asked"] + 1)
        if self.near is None or self.threshold is None:
            return None, 0.0
        frame = frame_key(request, scope)
        if frame not in self.near.rows:
            return None, 0.0
        if self.embedder is None:
            self.embedder = sentence_embedder()
        hit, similarity = self.near.nearest(frame, self.embedder.embed([user_text(request, EMBEDDED_CHARS)])[0])
        if hit is None or similarity < self.threshold or hit not in self.index:
            return None, 0.0
        return self.index[hit], similarity / 2  # below any exact hit (>= 0.5)

    def respond(self, request: dict, scope: str | None = None) -> tuple[dict | None, float | None]:
        from protege.models.runtime import completion_dict

        entry, confidence = self._lookup(request, scope)
        if entry is None or (self.max_age_s is not None and time.time() - entry["ts"] > self.max_age_s):
            return None, None
        message = entry["message"]
        calls = [{**c, "id": "call_" + secrets.token_hex(12)} for c in message.get("tool_calls") or []] or None
        completion = completion_dict("reuse", message.get("content"), calls, "stop", 0, 0)
        return completion, confidence


def _history_key(task: TaskData) -> tuple:
    """A task's history as it stands: a later pass with more calls embeds and calibrates again."""
    return task.task_id, len(task.history), task.history[-1].id if task.history else None


class AnswerReuse(SpecialistKind):
    name = "reuse"
    rank = 0

    def __init__(self) -> None:
        self._near: dict[tuple, tuple[dict, dict]] = {}
        """(task, its history) → (vectors, threshold fit), from `unfit` to `build`."""

    def _fit(self, task: TaskData) -> tuple[dict, dict]:
        if task.output_kind == "label":
            return {}, {"threshold": None, "checked": 0, "reason": "labels are the classifier's: it learns from every call"}
        slice_calls = int(len(task.history) * CALIBRATION_SHARE)
        if slice_calls < MIN_TRUSTED_HITS:  # too few to ever trust a threshold
            return {}, {"threshold": None, "checked": 0,
                        "reason": f"{slice_calls} calls to calibrate a similarity threshold on, too few"}
        key = _history_key(task)
        if key not in self._near:
            try:
                vectors = embed_requests(task.history)
            except ImportError as exc:
                return {}, {"threshold": None, "checked": 0, "reason": str(exc)}
            self._near[key] = (vectors, fit_near(task.history, vectors))
        return self._near[key]

    def unfit(self, task: TaskData) -> str | None:
        keys = Counter(request_key(ex.request, ex.scope) for ex in as_examples(task.history))
        if sum(c - 1 for c in keys.values()):
            return None
        _, fit = self._fit(task)
        if fit["threshold"] is None:
            self._near.pop(_history_key(task), None)
            why = fit.get("reason") or (f"no similarity kept near-duplicate false hits under {MAX_FALSE_HITS:.0%} "
                                        f"({fit['checked']} near hits checked)")
            return f"no request was asked twice; near-duplicates: {why}"
        return None

    def _cut(self, task: TaskData) -> int:
        return int(len(task.history) * (1 - HELDOUT_SHARE))

    def heldout(self, task: TaskData) -> list[Example]:
        return as_examples(task.history[self._cut(task):])

    def build(self, task: TaskData, folder: Path, options: BuildOptions) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        vectors, fit = self._fit(task)
        self._near.pop(_history_key(task), None)
        cut = self._cut(task)
        index, heldout_index = build_index(task.history), build_index(task.history[:cut])
        (folder / ("heldout_" + INDEX)).write_text(json.dumps(heldout_index))
        (folder / INDEX).write_text(json.dumps(index))
        if fit["threshold"] is not None:
            NearIndex.of(index, vectors).save(folder / NEAR)
            NearIndex.of(heldout_index, vectors).save(folder / ("heldout_" + NEAR))
        write_manifest(folder, {
            "task": task.task_id, "kind": self.name, "output_kind": task.output_kind,
            "max_age_s": options.max_reuse_age_s, "calls": len(task.history), "distinct_requests": len(index),
            "repeat_share": round(1 - len(index) / max(1, len(task.history)), 4), "near_duplicates": fit,
            "splits": {"train": cut, "test": len(task.history) - cut},
        })

    def open(self, folder: Path, pool: Any = None, heldout: bool = False) -> Responder:
        manifest = json.loads((folder / "specialist.json").read_text())
        prefix = "heldout_" if heldout else ""
        index = json.loads((folder / (prefix + INDEX)).read_text())
        near_path = folder / (prefix + NEAR)
        near = NearIndex.load(near_path) if near_path.is_file() else None
        threshold = (manifest.get("near_duplicates") or {}).get("threshold")
        return ReuseResponder(index, None if heldout else manifest.get("max_age_s"), near, threshold)


register_kind(AnswerReuse)
