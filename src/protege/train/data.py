"""Tokenised examples and the batches the trainer runs: length-bucketed, seeded, resumable.

Each example is the prompt's token ids followed by the target's; the loss covers the target
only. Batches group examples of similar length under a token budget (padding is wasted work
on a CPU), are fixed once per run and visited in a per-epoch seeded order, so step `s` of a
run is always the same batch: that is what makes a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protege.specialist.examples import Example
from protege.specialist.format import PromptFormat

log = logging.getLogger(__name__)


@dataclass
class Tokenized:
    ids: list[int]
    """Prompt then target token ids."""
    n_prompt: int
    """How many leading ids are prompt (no loss on them)."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_target(self) -> int:
        return len(self.ids) - self.n_prompt


def tokenize_examples(examples: Sequence[Example], tokenizer: Any, fmt: PromptFormat,
                      max_length: int) -> list[Tokenized]:
    """Prompt and target ids; an over-long prompt loses its oldest tokens, the target is never cut."""
    out, cut = [], 0
    for ex in examples:
        prompt = tokenizer(fmt.render(ex.request), add_special_tokens=False).input_ids
        target = tokenizer(fmt.target(ex.answer), add_special_tokens=False).input_ids
        if len(target) >= max_length:
            target = target[: max_length // 2]
        room = max_length - len(target)
        if len(prompt) > room:
            prompt, cut = prompt[len(prompt) - room:], cut + 1
        out.append(Tokenized(list(prompt) + list(target), len(prompt)))
    if cut:
        log.warning("%d of %d prompts were longer than max_length=%d and lost their start; raise max_length",
                    cut, len(examples), max_length)
    return out


def bucket_batches(lengths: Sequence[int], batch_tokens: int, max_batch_size: int, seed: int) -> list[list[int]]:
    """Indices grouped by similar length: each batch holds at most `max_batch_size` examples and
    `batch_tokens` padded tokens. Ties in length are broken by a seeded shuffle."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max([lengths[j] for j in current] + [lengths[i]])
        if current and (len(current) + 1 > max_batch_size or longest * (len(current) + 1) > batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def fixed_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """Plain fixed-size batches of a seeded shuffle (the baseline a bucketed loader is compared to)."""
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]


def epoch_order(n_batches: int, seed: int, epoch: int) -> list[int]:
    """The order batches are visited in during `epoch` (a pure function of seed and epoch)."""
    order = list(range(n_batches))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def collate(items: Sequence[Tokenized], pad_id: int, pad_to: int | None = None):
    """(input_ids [B, T], target mask [B, T]) right-padded; mask[b, t] says token t+1 is a target of position t."""
    import torch

    width = pad_to or max(len(it) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    predicts = torch.zeros((len(items), width), dtype=torch.bool)
    for b, it in enumerate(items):
        ids[b, : len(it)] = torch.tensor(it.ids, dtype=torch.long)
        predicts[b, max(0, it.n_prompt - 1): len(it) - 1] = True
    return ids, predicts
