"""The in-context kind: the base SLM, untrained, shown the task's most similar logged calls as examples.

No training: `build` picks the base model (`select_base`, as LoRA does), embeds the part of every
training call's request that changes (`user_text`, MiniLM) and keeps each call's last user message
and the LLM's answer. At request time the `K` most similar calls become earlier turns of the
conversation (after its system messages), and the base model answers under the same constrained
decoding as a LoRA specialist (the request's schema or tools; for a label task without
`response_format`, the labels the LLM gave). Confidence is the answer's smallest token margin.

It costs no training time, so a task that a base model can do from examples gets a specialist at
once; it costs prompt tokens at every call (K examples), so where a LoRA specialist passes too it is
the cheaper one to serve. Examples come from the curated (PII-replaced) training calls only.
Multi-turn calls are not shown as examples (their last user message alone would mislead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protege.specialist.artifact import write_manifest
from protege.specialist.examples import as_examples
from protege.train.kinds import (
    BuildOptions,
    Responder,
    SpecialistKind,
    TaskData,
    register_kind,
    sentence_embedder,
    user_text,
)
from protege.train.lora import LoraResponder, serving_fields

K = 3
"""Examples shown per request (NVIDIA's data flywheel uses 1-3)."""
EXAMPLES = "examples.jsonl"
VECTORS = "vectors.npy"


def _shot(example: Any) -> tuple[dict, dict] | None:
    """(the call's user message, the LLM's answer message) of a single-turn call; None for other calls."""
    messages = [m for m in example.request.get("messages") or [] if m.get("role") not in ("system", "developer")]
    if len(messages) != 1 or messages[0].get("role") != "user":
        return None
    answer = {k: v for k, v in example.answer.items() if k in ("role", "content", "tool_calls") and v is not None}
    return messages[0], answer


def with_examples(request: dict, shots: list[tuple[dict, dict]]) -> dict:
    """`request` with the (user, assistant) pairs of `shots` as earlier turns, after its system messages."""
    messages = list(request.get("messages") or [])
    at = next((i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")), len(messages))
    turns = [m for pair in shots for m in pair]
    return {**request, "messages": messages[:at] + turns + messages[at:]}


class InContextResponder(LoraResponder):
    """A LoRA responder without an adapter whose requests carry their nearest logged calls as examples."""

    def __init__(self, runtime: Any, model_name: str, folder: Path, k: int, labels: list[str] | None,
                 pseudonymized: dict | None = None):
        import numpy as np

        super().__init__(runtime, model_name, labels=labels, pseudonymized=pseudonymized)
        self.k = k
        self.vectors = np.load(folder / VECTORS)
        self.shots = [tuple(json.loads(line)) for line in (folder / EXAMPLES).read_text().splitlines()]
        self.embedder = sentence_embedder()

    def nearest(self, request: dict) -> list[tuple[dict, dict]]:
        """The `k` logged calls most similar to `request`, the most similar last (closest to the question)."""
        import numpy as np

        scores = self.vectors @ self.embedder.embed([user_text(request)])[0]
        best = np.argsort(-scores, kind="stable")[: self.k]
        return [self.shots[i] for i in reversed(best)]

    def prompt(self, request: dict) -> dict:
        return with_examples(request, self.nearest(request))


class InContextKind(SpecialistKind):
    name = "incontext"
    rank = 2
    generative = True

    def unfit(self, task: TaskData) -> str | None:
        shots = sum(_shot(ex) is not None for ex in as_examples(task.train))
        if shots < K:
            return f"{shots} single-turn training calls to show as examples, needs {K}"
        return None

    def build(self, task: TaskData, folder: Path, options: BuildOptions) -> None:
        import numpy as np

        from protege.train.commands import choose_base

        examples = as_examples(task.train)
        folder.mkdir(parents=True, exist_ok=True)
        model = options.model or choose_base(folder, examples, licences=options.licences)
        pairs = [(ex, shot) for ex in examples if (shot := _shot(ex)) is not None]
        vectors = sentence_embedder().embed([user_text(ex.request) for ex, _ in pairs])
        np.save(folder / VECTORS, vectors.astype(np.float32))
        (folder / EXAMPLES).write_text("".join(json.dumps(shot, ensure_ascii=False) + "\n" for _, shot in pairs))
        write_manifest(folder, {
            "task": task.task_id, "kind": self.name, "output_kind": task.output_kind, "base_model": {"name": model},
            "examples_per_call": K, "embedder": "all-MiniLM-L6-v2",
            "splits": {"train": len(pairs), "test": len(task.test), "multi_turn_left_out": len(examples) - len(pairs)},
            **serving_fields(task.output_kind, task.train, options),  # labels and pseudonymization, as for LoRA
        })

    def open(self, folder: Path, pool: Any = None, heldout: bool = False) -> Responder:
        from protege.specialist.artifact import load_specialist

        manifest = load_specialist(folder).manifest
        base = manifest["base_model"]["name"]
        if pool is None:
            from protege.models.serving import LocalModelPool

            pool = LocalModelPool(models=[base])
        runtime = pool.resolve(base)
        if runtime is None:
            raise FileNotFoundError(f"{folder}: its base model {base!r} is not served here; add it to "
                                    "$PROTEGE_HOME/models.toml or retrain the task")
        return InContextResponder(runtime, f"{base}-incontext", Path(folder), manifest.get("examples_per_call", K),
                                  manifest.get("labels"), manifest.get("pseudonymized"))


register_kind(InContextKind)
