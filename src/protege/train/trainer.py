"""The LoRA trainer: supervised distillation of the LLM's answers into a small model.

Fast on a CPU because it does only the work the loss needs:
- length-bucketed batches under a token budget (little padding);
- logits only at target positions (the vocabulary projection of a 135M model costs as much as
  several of its layers, and the prompt positions carry no loss);
- LoRA on the upper `layers` decoder layers only: the frozen lower layers' outputs are computed
  once per example, cached, and reused every epoch (and for validation), so each step runs and
  back-propagates through the upper layers alone.

Seeded and reproducible: batches are fixed per run and visited in a per-epoch seeded order, the
learning rate is a pure function of the step, and a checkpoint (adapter, optimizer, step, RNG,
best weights, history) is written every `checkpoint_every` steps and on interruption, so a
resumed run ends with the same weights as an uninterrupted one. Validation loss is measured
every `eval_every` steps; training stops after `patience` evaluations without improvement and
the best weights are kept.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protege.models.errors import InvalidRequestError, require
from protege.train.data import Tokenized, bucket_batches, collate, epoch_order

log = logging.getLogger(__name__)

SPLITTABLE = {"llama", "mistral", "qwen2", "qwen3"}
"""Architectures whose decoder layers the trainer runs directly (so lower layers can be cached)."""
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    """Hyper-parameters of one distillation run (stored in the specialist's folder)."""

    epochs: int = 3
    """Passes over the training examples (early stopping may end sooner)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps, whatever `epochs` says."""
    max_train_s: float | None = None
    """A time budget for the optimizer steps: after each step the plan shrinks to the steps that still fit
    (the learning-rate schedule shrinks with it), so a large task trains on as much of its data as the
    budget allows."""
    learning_rate: float = 2e-3
    """Peak learning rate (LoRA on a few layers takes a high one; measured in bench/train.py)."""
    warmup_steps: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = LORA_TARGETS
    layers: int | None = 16
    """Adapt only the top `layers` decoder layers (None: all); the frozen ones below are cached."""
    cache_activations: bool = True
    """Compute the frozen lower layers once per example and reuse them every epoch."""
    cache_max_gb: float = 4.0
    """Above this size the cache is not built (lower layers then run every step, without gradients)."""
    batch_tokens: int = 4096
    """Token budget of a batch (longest sequence x batch size)."""
    batch_size: int = 16
    """Most examples in a batch."""
    max_length: int = 2048
    eval_every: int | None = None
    """Validation every this many steps (None: once per epoch)."""
    patience: int = 2
    """Stop after this many validations without a `min_delta` improvement."""
    min_delta: float = 1e-3
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"
    """"cpu", "cuda", or "auto" (CUDA when available)."""
    dtype: str = "auto"
    """"float32", "bfloat16", or "auto" (float32 on CPU, bfloat16 on CUDA)."""
    threads: int | None = None
    """CPU threads for torch (None: every core this process may use)."""

    def __post_init__(self) -> None:
        checks = [("epochs", self.epochs >= 1), ("learning_rate", self.learning_rate > 0),
                  ("layers", self.layers is None or self.layers >= 1), ("batch_size", self.batch_size >= 1),
                  ("batch_tokens", self.batch_tokens >= 1), ("max_length", self.max_length >= 8),
                  ("lora_r", self.lora_r >= 1), ("patience", self.patience >= 1),
                  ("max_steps", self.max_steps is None or self.max_steps >= 1),
                  ("max_train_s", self.max_train_s is None or self.max_train_s > 0)]
        for name, ok in checks:
            if not ok:
                raise InvalidRequestError(f"invalid {name}={getattr(self, name)!r}; pass a positive value "
                                          f"(--{name.replace('_', '-')})", param=name)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        if "target_modules" in data:
            data["target_modules"] = tuple(data["target_modules"])
        return cls(**data)


@dataclass
class TrainProgress:
    """One report to the progress callback (the CLI draws a bar from it)."""

    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None
    phase: str = "train"
    """"cache" (computing frozen activations), "train", "eval" or "done"."""


@dataclass
class TrainResult:
    steps: int
    epochs: float
    best_val_loss: float | None
    best_step: int
    stopped_early: bool
    train_tokens: int
    """Real (unpadded) tokens run through training steps."""
    wall_s: float
    tokens_per_s: float
    cache_s: float
    device: str
    dtype: str
    adapted_layers: list[int]
    history: list[dict] = field(default_factory=list)


def resolve_device(cfg: TrainConfig) -> tuple[str, str]:
    torch = require("torch", "train")
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequestError("device 'cuda' was asked for but torch sees no CUDA GPU; pass --device cpu")
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return device, dtype


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% (a pure function of the step, for exact resumes)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_steps + 1)
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def attach_lora(model: Any, cfg: TrainConfig) -> tuple[Any, int]:
    """(PEFT model, index of the lowest adapted layer) with LoRA on the top `cfg.layers` layers."""
    peft = require("peft", "train")
    n_layers = model.config.num_hidden_layers
    first = 0 if cfg.layers is None else max(0, n_layers - cfg.layers)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in cfg.target_modules if t in present]
    if not targets:
        raise InvalidRequestError(f"none of the LoRA target modules {list(cfg.target_modules)} exist in this model; "
                                  f"pass target_modules among {sorted(present)[:20]}")
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=targets, task_type="CAUSAL_LM",
                           layers_to_transform=list(range(first, n_layers)) if first else None)
    return peft.get_peft_model(model, lora), first


class LoraTrainer:
    """Trains a LoRA adapter on tokenised examples; `run()` returns a `TrainResult`."""

    def __init__(self, model: Any, train: Sequence[Tokenized], val: Sequence[Tokenized], cfg: TrainConfig, *,
                 pad_id: int, checkpoint_dir: str | Path | None = None,
                 on_progress: Callable[[TrainProgress], None] | None = None):
        self.torch = torch = require("torch", "train")
        if not train:
            raise InvalidRequestError("no training examples: the task has no successful calls to learn from")
        self.cfg = cfg
        self.device, self.dtype = resolve_device(cfg)
        if cfg.threads and self.device == "cpu":
            torch.set_num_threads(cfg.threads)
        self.train_items, self.val_items = list(train), list(val)
        self.pad_id = pad_id
        self.on_progress = on_progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._seed_everything(cfg.seed)
        model = model.to(device=self.device, dtype=getattr(torch, self.dtype))
        self.model, self.first = attach_lora(model, cfg)
        self.lm = self.model.base_model.model  # the *ForCausalLM inside the PEFT wrapper
        self.split = getattr(self.lm.config, "model_type", None) in SPLITTABLE
        if not self.split and self.first:
            log.info("%s layers cannot be run one by one here; lower layers are frozen but not cached",
                     self.lm.config.model_type)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.batches = bucket_batches([len(t) for t in self.train_items], cfg.batch_tokens, cfg.batch_size, cfg.seed)
        self.val_batches = bucket_batches([len(t) for t in self.val_items], cfg.batch_tokens, cfg.batch_size,
                                          cfg.seed)
        per_epoch = len(self.batches)
        self.total_steps = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps,
                                                                                    per_epoch * cfg.epochs)
        self.eval_every = cfg.eval_every or per_epoch
        self._cache: dict[str, list[Any]] | None = None

    # --- helpers --------------------------------------------------------------------------------

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        self.torch.manual_seed(seed)

    def _autocast(self):
        import contextlib

        if self.device.startswith("cuda") and self.dtype != "float32":
            return self.torch.autocast("cuda", dtype=getattr(self.torch, self.dtype))
        return contextlib.nullcontext()

    def _run_layers(self, hidden: Any, layers: Sequence[Any]) -> Any:
        torch = self.torch
        pos = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        pe = self.lm.model.rotary_emb(hidden, position_ids=pos)
        for layer in layers:
            out = layer(hidden, attention_mask=None, position_ids=pos, position_embeddings=pe)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _lower(self, ids: Any) -> Any:
        """Hidden states entering the first adapted layer (no gradients: those layers are frozen)."""
        with self.torch.no_grad(), self._autocast():
            hidden = self.lm.model.embed_tokens(ids)
            return self._run_layers(hidden, self.lm.model.layers[: self.first])

    def build_cache(self) -> float:
        """Compute and keep the frozen layers' outputs of every example; returns the seconds it took."""
        if not (self.split and self.first and self.cfg.cache_activations):
            return 0.0
        n_tokens = sum(len(t) for t in self.train_items + self.val_items)
        size_gb = n_tokens * self.lm.config.hidden_size * self.torch.finfo(getattr(self.torch, self.dtype)).bits / 8e9
        if size_gb > self.cfg.cache_max_gb:
            log.warning("the activation cache would take %.1f GB (> cache_max_gb=%.1f); running lower layers "
                        "every step instead", size_gb, self.cfg.cache_max_gb)
            return 0.0
        start = time.perf_counter()
        self._cache = {}
        for name, items, batches in (("train", self.train_items, self.batches),
                                     ("val", self.val_items, self.val_batches)):
            slots: list[Any] = [None] * len(items)
            for batch in batches:
                ids, _ = collate([items[i] for i in batch], self.pad_id)
                hidden = self._lower(ids.to(self.device))
                for row, i in enumerate(batch):
                    slots[i] = hidden[row, : len(items[i])].clone()
            self._cache[name] = slots
            self._report(TrainProgress(0, self.total_steps, 0.0, phase="cache"))
        took = time.perf_counter() - start
        log.info("cached frozen activations below layer %d: %d tokens, %.2f GB, %.1fs", self.first, n_tokens,
                 size_gb, took)
        return took

    def batch_loss(self, name: str, items: Sequence[Tokenized], batch: Sequence[int]) -> tuple[Any, int]:
        """(summed cross-entropy over the batch's target tokens, number of target tokens)."""
        torch = self.torch
        ids, predicts = collate([items[i] for i in batch], self.pad_id)
        ids, predicts = ids.to(self.device), predicts.to(self.device)
        targets = ids.roll(-1, dims=1)[predicts]
        with self._autocast():
            if self.split:
                if self._cache is not None:
                    width = ids.shape[1]
                    hidden = torch.stack([torch.nn.functional.pad(self._cache[name][i],
                                                                  (0, 0, 0, width - len(items[i])))
                                          for i in batch])
                elif self.first:
                    hidden = self._lower(ids)
                else:
                    hidden = self.lm.model.embed_tokens(ids)
                hidden = self._run_layers(hidden, self.lm.model.layers[self.first:])
                hidden = self.lm.model.norm(hidden)
            else:
                # right padding under a causal mask: padding never reaches a real position
                hidden = self.lm.model(input_ids=ids).last_hidden_state
            logits = self.lm.lm_head(hidden[predicts]).float()
        loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        return loss, int(targets.numel())

    def validation_loss(self) -> float | None:
        if not self.val_items:
            return None
        self.model.eval()
        total, count = 0.0, 0
        with self.torch.no_grad():
            for batch in self.val_batches:
                loss, n = self.batch_loss("val", self.val_items, batch)
                total, count = total + float(loss), count + n
        self.model.train()
        return total / max(1, count)

    def _report(self, progress: TrainProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def trainable_state(self) -> dict[str, Any]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, Any]) -> None:
        params = dict(self.model.named_parameters())
        with self.torch.no_grad():
            for n, value in state.items():
                params[n].copy_(value)

    # --- checkpoints ----------------------------------------------------------------------------

    def _checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / "state.pt" if self.checkpoint_dir else None

    def save_checkpoint(self, state: dict) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {**state, "weights": self.trainable_state(), "optimizer": self.optimizer.state_dict(),
                   "torch_rng": self.torch.get_rng_state(), "python_rng": random.getstate(),
                   "config": self.cfg.to_dict()}
        tmp = path.with_suffix(".tmp")
        self.torch.save(payload, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self) -> dict | None:
        path = self._checkpoint_path()
        if path is None or not path.is_file():
            return None
        payload = self.torch.load(path, map_location=self.device, weights_only=False)
        if payload.get("config") != self.cfg.to_dict():
            log.warning("ignoring checkpoint %s: it was made with other hyper-parameters", path)
            return None
        self.load_trainable_state(payload.pop("weights"))
        self.optimizer.load_state_dict(payload.pop("optimizer"))
        self.torch.set_rng_state(payload.pop("torch_rng"))
        random.setstate(payload.pop("python_rng"))
        log.info("resuming from %s at step %d", path, payload["step"])
        return payload

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        torch, cfg = self.torch, self.cfg
        cache_s = self.build_cache()
        state = self.load_checkpoint() or {"step": 0, "best_val": None, "best_step": 0, "best_weights": None,
                                           "bad_evals": 0, "history": [], "train_tokens": 0, "train_s": 0.0,
                                           "stopped_early": False}
        per_epoch = len(self.batches)
        self.model.train()
        window_tokens, window_start = 0, time.perf_counter()
        run_start = time.perf_counter() - state["train_s"]
        try:
            while state["step"] < self.total_steps and not state["stopped_early"]:
                step = state["step"]
                epoch, index = divmod(step, per_epoch)
                batch = self.batches[epoch_order(per_epoch, cfg.seed, epoch)[index]]
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_at(step, self.total_steps, cfg)
                loss_sum, n = self.batch_loss("train", self.train_items, batch)
                loss = loss_sum / max(1, n)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
                self.optimizer.step()
                tokens = sum(len(self.train_items[i]) for i in batch)
                state["train_tokens"] += tokens
                window_tokens += tokens
                state["step"] = step = step + 1
                if cfg.max_train_s is not None and step < self.total_steps:  # shrink the plan to the budget
                    spent = time.perf_counter() - run_start
                    fits = int((cfg.max_train_s - spent) / (spent / step))
                    self.total_steps = min(self.total_steps, step + max(0, fits))
                elapsed = time.perf_counter() - window_start
                tps = window_tokens / elapsed if elapsed > 0 else None
                record = {"step": step, "epoch": round(step / per_epoch, 3), "loss": round(loss.item(), 5),
                          "lr": lr_at(step - 1, self.total_steps, cfg)}
                val = None
                if step % self.eval_every == 0 or step == self.total_steps:
                    val = self.validation_loss()
                    record["val_loss"] = None if val is None else round(val, 5)
                    self._track_best(state, step, val)
                state["history"].append(record)
                if step % 10 == 0 or val is not None:
                    log.info("step %d/%d loss %.4f%s %.0f tok/s", step, self.total_steps, record["loss"],
                             f" val {val:.4f}" if val is not None else "", tps or 0)
                state["train_s"] = time.perf_counter() - run_start
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.save_checkpoint(state)
                self._report(TrainProgress(step, self.total_steps, step / per_epoch, record["loss"], val, tps))
        except KeyboardInterrupt:
            state["train_s"] = time.perf_counter() - run_start
            self.save_checkpoint(state)
            log.warning("training interrupted at step %d; run it again to resume", state["step"])
            raise
        state["train_s"] = time.perf_counter() - run_start
        if state["best_weights"] is not None:
            self.load_trainable_state(state["best_weights"])
        self.model.eval()
        self._report(TrainProgress(state["step"], self.total_steps, state["step"] / per_epoch,
                                   val_loss=state["best_val"], phase="done"))
        return TrainResult(
            steps=state["step"], epochs=round(state["step"] / per_epoch, 3), best_val_loss=state["best_val"],
            best_step=state["best_step"], stopped_early=state["stopped_early"], train_tokens=state["train_tokens"],
            wall_s=round(state["train_s"], 3),
            tokens_per_s=round(state["train_tokens"] / state["train_s"], 1) if state["train_s"] else 0.0,
            cache_s=round(cache_s, 3), device=self.device, dtype=self.dtype,
            adapted_layers=list(range(self.first, self.lm.config.num_hidden_layers)), history=state["history"],
        )

    def _track_best(self, state: dict, step: int, val: float | None) -> None:
        if val is None:
            return
        if state["best_val"] is None or val < state["best_val"] - self.cfg.min_delta:
            state.update(best_val=val, best_step=step, best_weights=self.trainable_state(), bad_evals=0)
        else:
            state["bad_evals"] += 1
            if state["bad_evals"] >= self.cfg.patience:
                state["stopped_early"] = True
                log.info("early stop at step %d: no validation improvement in %d evaluations", step,
                         self.cfg.patience)
