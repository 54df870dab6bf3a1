"""`protege train TASK`: distil a task's logged calls into a LoRA specialist folder.

The CLI wraps `train_task`; its docstring is the command's help.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protege.records import CallRecord
from protege.specialist.artifact import ADAPTER_DIR, ADAPTER_GGUF, default_folder, write_manifest
from protege.specialist.examples import Example, as_examples, data_hash, split_examples, task_examples
from protege.specialist.format import infer_output_kind, learn_pruning_rule, response_message
from protege.train.trainer import TrainConfig, TrainProgress, TrainResult

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    folder: Path
    result: TrainResult
    report: Any | None
    """The `EvalReport`, when evaluation ran."""


def choose_base(folder: Path, examples: Sequence[Example], *, licences: Sequence[str] | None = None,
                max_memory_bytes: int | None = None) -> str:
    """The base model for a run without --model: a resumed run keeps its earlier choice, else `select_base`
    with the licence allow-list and memory cap given (None: `select_base`'s defaults)."""
    from protege.train.select import SELECTION, select_base

    path = folder / SELECTION
    if path.is_file() and (folder / "checkpoint").is_dir():
        return json.loads(path.read_text())["model"]
    selection = select_base(examples, licences=licences, max_memory_bytes=max_memory_bytes)
    path.write_text(selection.to_json())
    return selection.model


def train_task(task: str, *, model: str | None = None, records: Sequence[CallRecord | Example | dict] | None = None,
               data: str | Path | None = None, store_url: str | None = None,
               test_records: Sequence[CallRecord | Example | dict] | None = None, out: str | Path | None = None,
               config: TrainConfig | None = None, prune: bool = True, test_share: float = 0.2,
               val_share: float = 0.1, split_seed: int = 0, evaluate: bool = True, eval_limit: int | None = 50,
               few_shot: bool = False, export_gguf: bool = True, keep_checkpoint: bool = False,
               on_progress: Callable[[TrainProgress], None] | None = None, licences: Sequence[str] | None = None,
               max_memory_bytes: int | None = None) -> TrainOutcome:
    """Distil TASK's logged calls into a LoRA specialist of MODEL and write its folder.

    The task's calls are split into train / validation / held-out (by call-id hash, seeded),
    unless `test_records` gives the held-out calls (e.g. `protege.curate.splits.split_by_task`'s
    test part; then every call of `records`/`data` is for training); the LLM's answers are the targets. The folder ($PROTEGE_HOME/specialists/TASK unless
    `out`) gets the adapter, its GGUF export, the prompt format, the hyper-parameters, the data
    hash and the evaluation report. Interrupted? Run the same command again: it resumes.
    Without MODEL, `protege.train.select.select_base` chooses one from the training calls
    (licence, footprint, context, then a quick probe) and writes its evidence to selection.json;
    `licences` (the allow-list, default permissive licences) and `max_memory_bytes` (default: the
    machine's memory) steer that choice.
    """
    from protege.specialist.base import load_base
    from protege.train.data import tokenize_examples
    from protege.train.trainer import LoraTrainer

    cfg = config or TrainConfig()
    examples = task_examples(task, records=records, data=data, store_url=store_url)
    if len(examples) < 4:
        raise ValueError(f"task {task!r} has {len(examples)} usable calls; at least 4 are needed (log more calls, "
                         "or check the task id with: protege tasks)")
    if test_records is not None:
        pool, test = examples, [ex for ex in as_examples(test_records) if ex.task in (None, task)]
    else:
        pool, test = split_examples(examples, test_share, split_seed)
    train, val = split_examples(pool, val_share, split_seed + 1)
    answers = [(response_message(ex.answer) or {}).get("content") or "" for ex in examples]
    kind = infer_output_kind([ex.request for ex in examples], answers)
    folder = Path(out) if out else default_folder(task)
    folder.mkdir(parents=True, exist_ok=True)

    if model is None:
        model = choose_base(folder, train + val, licences=licences, max_memory_bytes=max_memory_bytes)
    base = load_base(model, dtype="float32")
    rule = learn_pruning_rule([ex.request for ex in train]) if prune else None
    fmt = base.prompt_format(kind, rule)
    train_items = tokenize_examples(train, base.tokenizer, fmt, cfg.max_length)
    val_items = tokenize_examples(val, base.tokenizer, fmt, cfg.max_length)
    log.info("task %s (%s): %d train, %d validation, %d held-out calls; %d training tokens", task, kind,
             len(train), len(val), len(test), sum(len(t) for t in train_items))
    trainer = LoraTrainer(base.model, train_items, val_items, cfg, pad_id=base.pad_id,
                          checkpoint_dir=folder / "checkpoint", on_progress=on_progress)
    started = time.time()
    result = trainer.run()
    adapter_dir = folder / ADAPTER_DIR
    trainer.model.save_pretrained(str(adapter_dir))
    export_error = None
    if export_gguf:
        try:
            from protege.models.convert import export_lora_gguf

            export_lora_gguf(adapter_dir, folder / ADAPTER_GGUF, base=base.folder)
        except Exception as exc:  # noqa: BLE001 - the adapter itself is still usable; say why in the manifest
            export_error = f"{type(exc).__name__}: {exc}"
            log.warning("GGUF export failed (%s); the PEFT adapter is saved", export_error)

    manifest = {
        "task": task, "output_kind": kind, "base_model": base.reference, "hyperparameters": cfg.to_dict(),
        "prompt_format": fmt.to_dict(), "data_hash": data_hash(train + val),
        "splits": {"seed": split_seed, "test_share": test_share, "val_share": val_share, "train": len(train),
                   "validation": len(val), "test": len(test), "test_ids": [ex.id for ex in test]},
        "training": {k: v for k, v in result.__dict__.items() if k != "history"}, "history": result.history,
        "started": started, "gguf_export_error": export_error,
    }
    write_manifest(folder, manifest)
    report = None
    if evaluate and test:
        from protege.evaluate.commands import evaluate_specialist

        base.model = trainer.model.unload()  # the base weights without LoRA; the saved adapter is reloaded
        report = evaluate_specialist(folder, test, base=base, limit=eval_limit, few_shot=few_shot, pool=train)
        write_manifest(folder, manifest)  # the file list now includes eval.json
    if not keep_checkpoint:
        shutil.rmtree(folder / "checkpoint", ignore_errors=True)
    log.info("specialist for %s written to %s", task, folder)
    return TrainOutcome(folder, result, report)
