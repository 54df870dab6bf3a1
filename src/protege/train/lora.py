"""The LoRA kind: a small language model distilled on the task's calls (`train_task`), served by llama.cpp.

For extraction, tool calls and text: the open outputs no cheaper kind can give. It trains on
every curated call of the task up to `max_train_calls` (None: all of them), and is served with
its pruned prompt and constrained decoding: the request's JSON schema or its tools' schemas, and for
a label task without `response_format` the labels the LLM gave in training (`labels` in the
manifest), so every answer is one of them; the router still checks the label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from protege.specialist.artifact import load_specialist, refresh_manifest
from protege.train.kinds import (
    BuildOptions,
    Responder,
    SpecialistKind,
    TaskData,
    pseudonymized_field,
    pseudonymizer,
    register_kind,
)


class LoraResponder(Responder):
    def __init__(self, runtime: Any, model_name: str, pool: Any = None, adapter: str | None = None,
                 labels: list[str] | None = None, pseudonymized: dict | None = None):
        """`pseudonymized`: the manifest's record that the training calls' PII was replaced by fake values
        (`{"seed": N}`): each request's PII is then replaced the same way before the model sees it, and the
        answer's replacements are turned back into the request's own values. The model serves in the space it
        was trained in (a product or company name the scrubber takes for a person was a fake name in training
        too), and no caller's PII reaches it."""
        self.runtime, self.model_name = runtime, model_name
        self._pool, self._adapter = pool, adapter
        self._label_plan = None
        if labels:
            from protege.models.constrain import plan_labels

            self._label_plan = plan_labels(labels)
        self._scrubber = pseudonymizer(int(pseudonymized.get("seed", 0))) if pseudonymized else None

    def respond(self, request: dict, scope: str | None = None) -> tuple[dict | None, float | None]:
        session = None
        if self._scrubber is not None:
            request, session = self._scrubber.scrub_request(request)
        request = self.prompt(request)
        if not hasattr(self.runtime, "complete_scored"):  # a runtime that cannot score its answers
            completion, confidence = self.runtime.complete(request), None
        else:
            own = self._label_plan is not None and not request.get("response_format") and not request.get("tools")
            completion, confidence = self.runtime.complete_scored(request, plan=self._label_plan if own else None)
        if session is not None:
            completion = {**completion, "choices": session.restore(completion.get("choices"))}
        return completion, confidence

    def prompt(self, request: dict) -> dict:
        """What the model is asked for `request` (PII already replaced when the specialist pseudonymizes)."""
        return request

    def queue_wait_s(self) -> float:
        wait = getattr(self.runtime, "estimated_wait_s", None)
        return wait() if wait else 0.0

    def release(self) -> None:
        """Unload the adapter (from llama.cpp, or from the serving engine at demotion)."""
        if self._pool is not None and self._adapter is not None:
            self._pool.unregister_adapter(self.model_name, self._adapter)


def serving_fields(output_kind: str, train: list, options: BuildOptions) -> dict:
    """The manifest fields a `LoraResponder` serves by: for a label task, the labels the LLM gave in training (the
    output space its decoding is held to); when the training calls' PII was replaced by fake values, that space."""
    from protege.specialist.examples import as_examples

    fields: dict[str, Any] = {}
    if output_kind == "label":
        labels = sorted({str(ex.answer.get("content") or "").strip() for ex in as_examples(train)} - {""})
        if labels:
            fields["labels"] = labels
    return {**fields, **pseudonymized_field(options)}


class LoraKind(SpecialistKind):
    name = "lora"
    rank = 3
    generative = True

    def build(self, task: TaskData, folder: Path, options: BuildOptions) -> None:
        from protege.train.commands import train_task
        from protege.train.trainer import TrainConfig

        config = TrainConfig(epochs=options.epochs, max_steps=options.max_steps, seed=options.seed,
                             threads=options.threads, batch_size=options.batch_size, max_train_s=options.max_train_s)
        train = task.train[: options.max_train_calls] if options.max_train_calls else task.train
        train_task(task.task_id, model=options.model, records=train, test_records=task.test, out=folder,
                   config=config, evaluate=False, on_progress=options.on_progress, licences=options.licences)
        spec = load_specialist(folder)
        if spec.gguf_adapter is None:
            raise RuntimeError(f"no GGUF adapter ({spec.manifest.get('gguf_export_error')}): it cannot be served")
        refresh_manifest(folder, kind=self.name, **serving_fields(task.output_kind, train, options))

    def open(self, folder: Path, pool: Any = None, heldout: bool = False) -> Responder:
        spec = load_specialist(folder)
        if spec.gguf_adapter is None:
            raise FileNotFoundError(f"{folder} has no adapter.gguf: re-export it or retrain with GGUF export on")
        if pool is None:
            from protege.models.serving import LocalModelPool

            pool = LocalModelPool(models=[spec.base_model])
        base = spec.base_model
        name = f"{spec.task}-{hashlib.blake2b(str(spec.gguf_adapter.resolve()).encode(), digest_size=4).hexdigest()}"
        if getattr(pool, "is_engine", False):  # [serving] backend = "vllm": the engine loads the PEFT folder
            pool.register_adapter(base, name, spec.adapter_dir.resolve())
            return LoraResponder(pool.resolve(f"{base}:{name}"), base, pool, name)
        pool.register_adapter(base, name, spec.gguf_adapter)
        runtime = pool.resolve(f"{base}:{name}")
        runtime.base.set_prompt_format(name, spec.prompt_format.render)
        return LoraResponder(runtime, runtime.base.model_id, pool, name, spec.manifest.get("labels"),
                             spec.manifest.get("pseudonymized"))


register_kind(LoraKind)
