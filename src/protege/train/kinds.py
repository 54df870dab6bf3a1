"""Specialist kinds: the ladder of ways to answer a task's calls without the LLM, cheapest first.

| kind         | answers                                              | serves      | built in          |
|--------------|------------------------------------------------------|-------------|-------------------|
| `reuse`      | a request that repeats one the LLM already answered  | any task    | `train.reuse`     |
| `classifier` | closed outputs: labels, JSON of enums and booleans   | ~20 ms, CPU | `train.classifier`|
| `incontext`  | the base small LM shown the 3 most similar calls     | llama.cpp   | `train.incontext` |
| `lora`       | extraction, tool calls, text: a LoRA-tuned small LM  | llama.cpp   | `train.lora`      |

A kind is one class: `build` writes a self-describing folder from the task's calls (the
manifest's `kind` names the class), `open` loads that folder as a `Responder`: the object the
calibration and the router ask for an answer and its confidence. `unfit` says why a kind cannot
serve a task, before anything is trained. Built-ins register in `KINDS` like a third party's
would: a package adds a kind through the `protege.kinds` entry-point group (`name = module:Class`).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from protege.records import CallRecord
from protege.specialist.examples import Example, as_examples

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    """What a kind learns from: one task's calls."""

    task_id: str
    output_kind: str
    train: list[CallRecord]
    """Curated training calls (failures and duplicates dropped, PII replaced)."""
    test: list[CallRecord]
    """Curated held-out calls: every kind but `reuse` is judged on these."""
    history: list[CallRecord] = field(default_factory=list)
    """Every successful LLM call of the task in time order, repeats kept (what `reuse` learns from)."""


@dataclass
class BuildOptions:
    """What a kind may spend; fields a kind does not use are ignored."""

    seed: int = 0
    threads: int | None = None
    model: str | None = None
    max_train_calls: int | None = None
    epochs: int = 3
    batch_size: int = 8
    max_steps: int | None = None
    max_train_s: float | None = None
    licences: list[str] | None = None
    max_reuse_age_s: float = 30 * 86400
    on_progress: Any = None
    pseudonymized_seed: int | None = None
    """The training calls' PII was replaced by fake values with this seed (`Scrubber(mode="fake")`): a kind
    that reads request text serves in that same space (`pseudonymizer`)."""


class Responder(ABC):
    """A built specialist ready to answer: the calibration and the router call `respond`."""

    model_name: str = "specialist"
    """What the gateway writes in a served completion's `model` field (`<model_name>:<task>`)."""

    @abstractmethod
    def respond(self, request: dict, scope: str | None = None) -> tuple[dict | None, float | None]:
        """(a `chat.completion` dict, its confidence in [0, 1]) or (None, None) when this specialist has no
        answer for the request (the router asks the LLM; nothing is counted as invalid). `scope` names the
        caller (workload and key): answers are never shared across scopes. Raises the runtime's
        `RuntimeRequestError`s (invalid or truncated output)."""

    def queue_wait_s(self) -> float:
        """How long a request sent now would wait for this specialist's model (0: it answers at once)."""
        return 0.0

    def release(self) -> None:
        """The router stopped serving this specialist (demotion, replacement): free what it holds."""


class SpecialistKind(ABC):
    """One rung of the ladder."""

    name: ClassVar[str]
    rank: ClassVar[int]
    """Position on the ladder: lower is cheaper to serve and tried first."""
    generative: ClassVar[bool] = False
    """Answers with a local language model: built after the cheap kinds of every task, in the pass's budget, and
    judged on a sample of the held-out calls (`eval_calls`)."""

    def unfit(self, task: TaskData) -> str | None:
        """Why this kind cannot serve the task (None: it may)."""
        return None

    def heldout(self, task: TaskData) -> list[Example]:
        """The held-out calls this kind is judged on."""
        return as_examples(task.test)

    @abstractmethod
    def build(self, task: TaskData, folder: Path, options: BuildOptions) -> None:
        """Learn from `task` and write the specialist's folder (manifest with `"kind": self.name`)."""

    def open(self, folder: Path, pool: Any = None, heldout: bool = False) -> Responder:
        """The folder as a `Responder` (`pool`: the `LocalModelPool` for kinds that run a local model;
        `heldout`: as it was before it saw the held-out calls, for kinds that keep learning from them)."""
        raise NotImplementedError


KINDS: dict[str, SpecialistKind] = {}


def register_kind(kind: type[SpecialistKind]) -> type[SpecialistKind]:
    KINDS[kind.name] = kind()
    return kind


DEFAULT_KINDS = ("protege.train.reuse", "protege.train.classifier", "protege.train.incontext", "protege.train.lora")
"""Built-in kinds, imported (and so registered) the way an entry point's module would be."""


def kinds() -> list[SpecialistKind]:
    """Every registered kind, cheapest first (built-ins, then the `protege.kinds` entry points)."""
    import importlib
    from importlib.metadata import entry_points

    for module in DEFAULT_KINDS:
        importlib.import_module(module)
    for ep in entry_points(group="protege.kinds"):
        if ep.name not in KINDS:
            try:
                register_kind(ep.load())
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the loop
                log.error("cannot load specialist kind %s from %s: %s", ep.name, ep.value, exc)
    return sorted(KINDS.values(), key=lambda k: k.rank)


def kind_named(name: str) -> SpecialistKind:
    known = {k.name: k for k in kinds()}
    if name not in known:
        raise ValueError(f"unknown specialist kind {name!r}; known: {', '.join(known)}")
    return known[name]


def open_specialist(folder: str | Path, pool: Any = None) -> tuple[dict, Responder]:
    """(manifest, responder) of a specialist folder of any kind (a folder without `kind` is a LoRA one)."""
    from protege.specialist.artifact import load_specialist

    spec = load_specialist(folder)
    return spec.manifest, kind_named(spec.manifest.get("kind", "lora")).open(spec.folder, pool)


@lru_cache(maxsize=4)
def pseudonymizer(seed: int) -> Any:
    """The scrubber the flywheel curates training calls with (fake values, `seed`), to serve in their space."""
    from protege.curate.scrub import Scrubber

    try:
        return Scrubber(mode="fake", seed=seed, cache_size=2_000)
    except ImportError as e:
        raise ImportError(f"this specialist learnt from calls whose PII was replaced by fake values and replaces the "
                          f"PII of what it answers the same way, which needs the scrubber: {e}") from e


def pseudonymized_field(options: BuildOptions) -> dict:
    """The manifest field of a specialist whose training calls' PII was replaced by fake values (empty if not)."""
    seed = options.pseudonymized_seed
    return {} if seed is None else {"pseudonymized": {"mode": "fake", "seed": seed}}


def pseudonymizer_for(manifest: dict) -> Any:
    """The scrubber a specialist serves with (None: it learnt from calls as they were)."""
    record = manifest.get("pseudonymized")
    return pseudonymizer(int(record.get("seed", 0))) if record else None


def output_kind_of(records: list[CallRecord]) -> str:
    """The task's output kind as training and evaluation name it: tool_call, json, label or text."""
    from protege.specialist.format import infer_output_kind

    examples = as_examples(records)
    return infer_output_kind([ex.request for ex in examples], [ex.answer.get("content") or "" for ex in examples])


def user_text(request: dict, max_chars: int = 2000) -> str:
    """The part of a request that changes from call to call: every message but the system/developer ones."""
    parts = []
    for m in request.get("messages") or []:
        if m.get("role") in ("system", "developer"):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)[-max_chars:]


@lru_cache(maxsize=1)
def sentence_embedder() -> Any:
    """all-MiniLM-L6-v2, inputs cut at 256 tokens: what the classifier and near-duplicate reuse embed requests with
    (one per process, loaded on first use). Concurrent requests share forward passes (`BatchingEmbedder`);
    `PROTEGE_BATCH_EMBEDDINGS=0` embeds each call on its own thread instead (the path before batching, kept for
    bench/serving.py's side-by-side run)."""
    from protege.cluster.embed import BatchingEmbedder, MiniLMEmbedder

    inner = MiniLMEmbedder(max_seq_length=256)
    return inner if os.environ.get("PROTEGE_BATCH_EMBEDDINGS") == "0" else BatchingEmbedder(inner)
