"""`BatchedDecoder`: several requests to one llama.cpp base model share its decode steps.

One llama.cpp context holds `slots` sequences (each with its own KV cells, `n_ctx` tokens
each). A thread owned by the decoder loops: it gives free slots to waiting requests, then, per
LoRA adapter in use (adapters are set per context, so sequences are grouped by adapter), puts
every sequence's next token, and the prompt tokens of sequences just admitted, into one
`llama_decode` batch. It samples each sequence's next token from its own logits row, under its
own llguidance grammar (`TokenConstraint`), and hands the decoded text to the request's thread
through a queue, token by token, which is what streams. A sequence never attends to another's
cells, so answers do not mix. (Greedy answers can still differ in a near-tie token from one run to
the next when requests share batches of other sizes: llama.cpp's kernels round differently.)

Each request prefills its whole prompt: unlike the single-context path (`parallel = 1`), no prompt
prefix is reused from the previous call (an attempt that kept a slot's cells for the next
request gave different greedy answers, so it was left out). bench/serving.py measures this
design against a pool of contexts and the single context.
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protege.models.constrain import TokenConstraint
from protege.models.errors import ModelNotFoundError, ModelUnavailableError
from protege.models.queueing import ServingQueue, Ticket
from protege.models.runtime import Generation, SamplingParams, token_margin

if TYPE_CHECKING:
    from protege.models.llamacpp import LlamaCppRuntime

log = logging.getLogger(__name__)

_END = object()


@dataclass(eq=False)
class _Sequence:
    """One request being decoded: what to feed next, its grammar and where its text goes."""

    prompt: list[int]
    constraint: TokenConstraint | None
    params: SamplingParams
    adapter: str | None
    gen: Generation
    max_new: int
    ticket: Ticket
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    slot: int = -1
    pos: int = 0
    fed: int = 0
    """How many prompt tokens are in the KV cache."""
    next_token: int | None = None
    logits_at: int = -1
    n: int = 0
    cancelled: bool = False
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    rng: Any = None


class BatchedDecoder:
    """Decodes up to `slots` sequences of one base model together, in its own thread (a model may have
    several decoders, each its own context and threads: `LlamaCppRuntime` sends a request to the least busy)."""

    def __init__(self, runtime: "LlamaCppRuntime", slots: int, n_ctx: int, n_threads: int, n_batch: int,
                 queue: ServingQueue):
        """`queue`: the admission shared by every decoder of the model."""
        lib = runtime._llama_cpp
        self.runtime, self.lib, self.n_ctx, self.n_batch = runtime, lib, n_ctx, max(n_batch, slots)
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx * slots
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = slots
        params.n_threads, params.n_threads_batch = n_threads, n_threads
        params.kv_unified = False  # each sequence gets its own n_ctx cells
        self.ctx = lib.llama_init_from_model(runtime.llm._model.model, params)
        if not self.ctx:
            raise ModelUnavailableError(f"llama.cpp could not make a context of {slots} x {n_ctx} tokens for "
                                        f"{runtime.model_id}; lower [serving] parallel or the context length")
        self.batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self.memory = lib.llama_get_memory(self.ctx)
        self.queue = queue
        self._free = list(range(slots - 1, -1, -1))
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._active: list[_Sequence] = []
        self._cond = threading.Condition()
        self._step_lock = threading.Lock()
        self._piece_buf = ctypes.create_string_buffer(256)  # token text; decoders run side by side
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"protege-decode-{runtime.model_id}", daemon=True)
        self._thread.start()

    # --- the request's side ------------------------------------------------------------------------

    def submit(self, prompt: list[int], constraint: TokenConstraint | None, params: SamplingParams,
               adapter: str | None, gen: Generation, max_new: int) -> Iterator[str]:
        """Queue a sequence (or raise `QueueFullError`) and return the iterator of its text pieces."""
        import numpy as np

        ticket = self.queue.admit()
        seq = _Sequence(prompt, constraint, params, adapter, gen, max_new, ticket)
        if params.temperature > 0:
            seq.rng = np.random.default_rng(params.seed)
        with self._cond:
            if self._closed:
                ticket.release()
                raise ModelUnavailableError(f"{self.runtime.model_id} was closed")
            self._waiting.append(seq)
            self._cond.notify()
        return self._pieces(seq)

    def load(self) -> int:
        """Sequences decoding or waiting here (read without the lock: a hint for picking a decoder)."""
        return len(self._active) + len(self._waiting)

    @staticmethod
    def _pieces(seq: _Sequence) -> Iterator[str]:
        try:
            while True:
                item = seq.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            seq.cancelled = True  # a caller that stops reading frees the slot at the next step

    def forget_adapters(self) -> None:
        """Take every adapter off the context, after the step in progress (call before freeing one)."""
        with self._step_lock:
            self.lib.llama_set_adapters_lora(self.ctx, None, 0, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(30)
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)

    # --- the decoding thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._active or self._closed):
                    self._cond.wait()
                if self._closed:
                    for seq in [*self._waiting, *self._active]:
                        self._finish(seq, ModelUnavailableError(f"{self.runtime.model_id} was closed"))
                    return
                while self._waiting and self._free:
                    seq = self._waiting.popleft()
                    if seq.cancelled:
                        seq.ticket.release()
                        continue
                    seq.ticket.start()
                    seq.slot = self._free.pop()
                    self._active.append(seq)
            for seq in [s for s in self._active if s.cancelled]:
                self._finish(seq)
            groups: dict[str | None, list[_Sequence]] = {}
            for seq in self._active:
                groups.setdefault(seq.adapter, []).append(seq)
            for adapter, seqs in groups.items():
                try:
                    self._step(adapter, seqs)
                except Exception as exc:
                    log.exception("batched decoding on %s failed", self.runtime.model_id)
                    for seq in seqs:
                        self._finish(seq, exc)

    def _step(self, adapter: str | None, seqs: list[_Sequence]) -> None:
        """One `llama_decode` for the sequences on `adapter`: a next token each, plus prompt chunks."""
        lib, batch = self.lib, self.batch
        batch.n_tokens = 0
        fed = []
        with self._step_lock:  # an adapter is freed only after `forget_adapters`, which waits for the step
            entry = self.runtime._adapters.get(adapter) if adapter is not None else None
            if adapter is not None and entry is None:
                for seq in seqs:
                    self._finish(seq, ModelNotFoundError(f"adapter {adapter!r} was unloaded from "
                                                         f"{self.runtime.model_id}"))
                return
            if entry is None:
                rc = lib.llama_set_adapters_lora(self.ctx, None, 0, None)
            else:
                ptr, scale, _ = entry
                rc = lib.llama_set_adapters_lora(self.ctx, (lib.llama_adapter_lora_p_ctypes * 1)(ptr), 1,
                                                 (ctypes.c_float * 1)(scale))
            if rc:
                raise ModelUnavailableError(f"llama.cpp refused to activate adapter {adapter!r} (code {rc})")
            room = self.n_batch
            for seq in sorted(seqs, key=lambda s: s.next_token is None):  # decoding ones first, then prompts
                seq.logits_at = -1
                if seq.next_token is not None:
                    if room < 1:
                        continue
                    seq.logits_at = self._add(seq.next_token, seq.pos, seq.slot, True)
                    seq.pos += 1
                    room -= 1
                    fed.append(seq)
                    continue
                take = min(room, len(seq.prompt) - seq.fed)
                for i in range(take):
                    last = seq.fed + i == len(seq.prompt) - 1
                    index = self._add(seq.prompt[seq.fed + i], seq.pos, seq.slot, last)
                    seq.pos += 1
                    if last:
                        seq.logits_at = index
                seq.fed += take
                room -= take
                if take:
                    fed.append(seq)
            if not batch.n_tokens:
                return
            rc = lib.llama_decode(self.ctx, batch)
            if rc != 0:
                raise ModelUnavailableError(f"llama_decode failed on {self.runtime.model_id} (code {rc})")
            for seq in fed:
                if seq.logits_at >= 0:
                    self._sample(seq)

    def _add(self, token: int, pos: int, slot: int, logits: bool) -> int:
        batch, i = self.batch, self.batch.n_tokens
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
        batch.seq_id[i][0], batch.logits[i] = slot, logits
        batch.n_tokens = i + 1
        return i

    def _sample(self, seq: _Sequence) -> None:
        """Pick the sequence's next token from its logits row and pass its text on (or end the sequence)."""
        import numpy as np

        runtime, gen, constraint = self.runtime, seq.gen, seq.constraint
        row = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, seq.logits_at), shape=(runtime.n_vocab,))
        try:
            if constraint is not None:
                row[~constraint.allowed()] = -np.inf
            if gen.margins is not None:
                gen.margins.append(token_margin(row))
            token = int(row.argmax()) if seq.rng is None else _sample_token(row, seq.params, seq.rng)
            if token in runtime.eog_tokens:
                if constraint is not None:
                    constraint.finish()
                gen.finish_reason = "stop"
                return self._finish(seq)
            if constraint is not None:
                constraint.advance(token)
        except Exception as exc:
            return self._finish(seq, exc)
        seq.n += 1
        gen.completion_tokens = seq.n
        piece = seq.decoder.decode(runtime.token_bytes(token, buf=self._piece_buf))
        if piece:
            seq.out.put(piece)
        if constraint is not None and constraint.is_done():
            gen.finish_reason = "stop"
            return self._finish(seq)
        if seq.n >= seq.max_new or seq.pos >= self.n_ctx:
            gen.finish_reason = "length"
            return self._finish(seq)
        seq.next_token = token

    def _finish(self, seq: _Sequence, error: BaseException | None = None) -> None:
        """End a sequence: its KV cells and slot freed, then its last text or its error to the caller."""
        if error is None:
            tail = seq.decoder.decode(b"", final=True)
            if tail:
                seq.out.put(tail)
        if seq.slot >= 0:
            self.lib.llama_memory_seq_rm(self.memory, seq.slot, -1, -1)
            with self._cond:
                self._free.append(seq.slot)
                if seq in self._active:
                    self._active.remove(seq)
            seq.slot = -1
        seq.ticket.release()
        seq.out.put(error if error is not None else _END)  # last: the caller sees the model's slot free


def _sample_token(logits: Any, params: SamplingParams, rng: Any) -> int:
    """Temperature and nucleus (top_p) sampling from one logits row (masked entries are -inf)."""
    import numpy as np

    scaled = logits.astype(np.float64) / max(params.temperature, 1e-6)
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        keep = order[: int(np.searchsorted(np.cumsum(probs[order]), params.top_p)) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return int(rng.choice(len(probs), p=probs))
