"""The llama.cpp runtime (`llama-cpp-python`): CPU and edge serving of GGUF models and LoRA adapters.

One base model stays in memory; GGUF LoRA adapters are loaded and unloaded while it serves
and picked per request (`complete(request, adapter="name")`, or `runtime.with_adapter(name)`),
without reloading the base. Constrained decoding runs llguidance as a logits processor inside
llama-cpp-python's sampler chain; because llama-cpp-python runs that processor in a ctypes
callback that swallows exceptions (generation would then go on unconstrained), every sampled
token is re-checked against the grammar in the decode loop, and a failure raises.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import secrets
import threading
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protege.models.batching import BatchedDecoder
from protege.models.catalog import check_gguf_file
from protege.models.constrain import OutputPlan, TokenConstraint
from protege.models.errors import (
    InvalidRequestError,
    ModelFileError,
    ModelNotFoundError,
    require,
)
from protege.models.prompting import CHATML, TEMPLATES, render_prompt
from protege.models.queueing import ServingQueue, Ticket
from protege.models.runtime import Generation, LocalRuntime, SamplingParams, token_margin

if TYPE_CHECKING:
    from protege.models.catalog import ModelSpec

log = logging.getLogger(__name__)


def usable_cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def default_threads() -> int:
    """Decode threads: half the usable logical cores (about the physical ones). Token-by-token decoding is
    memory-bound, and llama.cpp's threads spin-wait on each other: with every core in use, any other busy
    process collapses it (measured on 2 cores beside one busy process: 43 tok/s with 1 thread, 10 with 2)."""
    return max(1, usable_cores() // 2)


class LlamaCppRuntime(LocalRuntime):
    """A GGUF model served in-process by llama.cpp, with per-request LoRA adapters and constrained decoding."""

    def __init__(self, model_path: str | Path, *, model_id: str | None = None, chat_template: str | None = None,
                 n_ctx: int = 4096, n_threads: int | None = None, n_batch: int = 512,
                 install_hint: str = "", adapters: dict[str, str | Path] | None = None,
                 parallel: int = 1, max_queue: int = 64, decoders: int | None = None):
        """`parallel` > 1 decodes that many requests together, in batches (`BatchedDecoder`), split over
        `decoders` contexts of `n_threads` threads each (default: as many as the cores hold, so each decoder
        runs on its own cores without waiting for another's threads); 1 answers one at a time on the
        model's own context. `max_queue` requests more may wait for a slot; one more is refused
        (`QueueFullError`)."""
        llama_cpp = require("llama_cpp", "local", "llama-cpp-python")
        self._llama_cpp = llama_cpp
        path = Path(model_path)
        hint = install_hint or f"check the file {path}"
        if not path.is_file():
            raise ModelFileError(f"model file {path} does not exist; {hint}", path=str(path))
        check_gguf_file(path, hint)
        threads = n_threads or default_threads()
        batch_threads = n_threads or usable_cores()  # prompt processing is compute-bound: every core helps
        try:
            self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=batch_threads,
                                       n_batch=n_batch, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"llama.cpp could not load {path} ({exc}); it is corrupt or of an "
                                 f"unsupported architecture; {hint}", path=str(path)) from exc
        self.path = path
        self.model_id = model_id or path.stem
        self.n_ctx = n_ctx
        self.n_threads = threads
        self._lock = threading.Lock()  # not an RLock: a stream may be resumed from another thread
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self.n_vocab = self.llm.n_vocab()
        self._piece_buf = ctypes.create_string_buffer(256)
        self.eog_tokens = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t))
        self.template = chat_template or self.llm.metadata.get("tokenizer.chat_template") or CHATML
        self.bos_text = self._token_text(self.llm.token_bos())
        self.eos_text = self._token_text(self.llm.token_eos())
        self._add_bos = self.llm._model.add_bos_token()
        self._lltokenizer: Any = None
        self._adapters: dict[str, tuple[Any, float, Path]] = {}
        self._active: str | None = None
        self.queue = ServingQueue(self.model_id, parallel, max_queue)
        self._decoders: list[BatchedDecoder] = []
        if parallel > 1:
            count = max(1, min(parallel, decoders or usable_cores() // threads))
            # every batched step is several tokens, but each decoder keeps to `threads` threads: a thread that
            # spin-waits for another collapses under any other load, and two decoders use two cores without it
            self._decoders = [BatchedDecoder(self, -(-parallel // count), n_ctx, threads, n_batch, self.queue)
                              for _ in range(count)]
        for name, adapter_path in (adapters or {}).items():
            self.load_adapter(name, adapter_path)

    @classmethod
    def from_spec(cls, spec: "ModelSpec", **options: Any) -> "LlamaCppRuntime":
        path = spec.locate()
        template = TEMPLATES.get(spec.chat_template)
        options.setdefault("n_ctx", min(spec.context_length or 4096, 4096))
        runtime = cls(path, model_id=spec.name, install_hint=spec.install_hint, **options)
        if template and not runtime.llm.metadata.get("tokenizer.chat_template"):
            runtime.template = template
        return runtime

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.token_bytes(token, special=True).decode("utf-8", errors="replace")

    def token_bytes(self, token: int, special: bool = False, buf: Any = None) -> bytes:
        """The bytes of one token (llama-cpp-python's own helper returns its whole zero-padded buffer).
        A thread decoding beside others passes its own `buf` (`ctypes.create_string_buffer(256)`)."""
        buf = buf if buf is not None else self._piece_buf
        n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    # --- prompts --------------------------------------------------------------------------------

    def render(self, request: dict) -> str:
        return render_prompt(request, self.template, bos_token=self.bos_text, eos_token=self.eos_text)

    def tokenize(self, text: str) -> list[int]:
        add_bos = self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    @property
    def lltokenizer(self) -> Any:
        """The llguidance tokenizer built from the GGUF vocabulary (built once, ~0.2 s)."""
        if self._lltokenizer is None:
            require("llguidance", "local")
            from llguidance.llamacpp import lltokenizer_from_vocab

            with warnings.catch_warnings():  # it calls a deprecated llama.cpp alias once per token
                warnings.simplefilter("ignore", DeprecationWarning)
                self._lltokenizer = lltokenizer_from_vocab(self._vocab, eos_token=sorted(self.eog_tokens))
        return self._lltokenizer

    # --- adapters -------------------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    def load_adapter(self, name: str, path: str | Path, scale: float = 1.0) -> None:
        """Load (or replace) a GGUF LoRA adapter under `name`, while serving; the base stays loaded."""
        if not name or ":" in name:
            raise InvalidRequestError(f"adapter name {name!r} must be non-empty and without ':'")
        path = Path(path)
        hint = f"re-export the adapter (protege.models.convert.export_lora_gguf) or fix the path {path}"
        if not path.is_file():
            raise ModelFileError(f"adapter file {path} does not exist; {hint}", path=str(path))
        check_gguf_file(path, hint)
        ptr = self._llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode("utf-8"))
        if not ptr:
            raise ModelFileError(f"llama.cpp could not load the LoRA adapter {path}: it is corrupt or was made for "
                                 f"another base model than {self.model_id}; {hint}", path=str(path))
        with self._lock:
            old = self._adapters.get(name)
            if old is not None and self._active == name:
                self._activate(None)
            if old is not None:
                for decoder in self._decoders:
                    decoder.forget_adapters()
            self._adapters[name] = (ptr, float(scale), path)
        if old is not None:
            self._llama_cpp.llama_adapter_lora_free(old[0])
        log.info("loaded LoRA adapter %s from %s on %s", name, path, self.model_id)

    def unload_adapter(self, name: str) -> None:
        """Unload an adapter (waits for a request using the model to finish)."""
        with self._lock:
            entry = self._adapters.pop(name, None)
            if entry is None:
                raise ModelNotFoundError(f"adapter {name!r} is not loaded on {self.model_id}")
            if self._active == name:
                self._activate(None)
            for decoder in self._decoders:
                decoder.forget_adapters()
        self._llama_cpp.llama_adapter_lora_free(entry[0])

    def _activate(self, adapter: str | None) -> None:
        """Put `adapter` (or none) on the context; call with the lock held."""
        if adapter == self._active:
            return
        lib = self._llama_cpp
        if adapter is None:
            rc = lib.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
        else:
            if adapter not in self._adapters:
                raise ModelNotFoundError(f"adapter {adapter!r} is not loaded on {self.model_id}; loaded: "
                                         f"{', '.join(self._adapters) or 'none'}")
            ptr, scale, _ = self._adapters[adapter]
            arr = (lib.llama_adapter_lora_p_ctypes * 1)(ptr)
            scales = (ctypes.c_float * 1)(scale)
            rc = lib.llama_set_adapters_lora(self.llm._ctx.ctx, arr, 1, scales)
        if rc:
            raise ModelFileError(f"llama.cpp refused to activate adapter {adapter!r} (code {rc})")
        self.llm.reset()  # the KV cache was computed under other weights
        self._active = adapter

    # --- decoding -------------------------------------------------------------------------------

    def _generate(self, prompt: str, plan: OutputPlan, params: SamplingParams, adapter: str | None,
                  gen: Generation) -> Iterator[str]:
        """Admit the request (or raise `QueueFullError`) and return the iterator of its decoded text."""
        tokens = self.tokenize(prompt)
        if len(tokens) >= self.n_ctx:
            raise InvalidRequestError(f"the prompt has {len(tokens)} tokens; {self.model_id} is served with a "
                                      f"context of {self.n_ctx}", code="context_length_exceeded", param="messages")
        if adapter is not None and adapter not in self._adapters:
            raise ModelNotFoundError(f"adapter {adapter!r} is not loaded on {self.model_id}; loaded: "
                                     f"{', '.join(self._adapters) or 'none'}")
        max_new = min(params.max_tokens, self.n_ctx - len(tokens))
        gen.prompt_tokens = len(tokens)
        constraint = TokenConstraint(self.lltokenizer, plan.grammar, self.n_vocab) if plan.grammar else None
        if self._decoders:
            decoder = min(self._decoders, key=BatchedDecoder.load)
            return decoder.submit(tokens, constraint, params, adapter, gen, max_new)
        ticket = self.queue.admit()
        pieces = self._decode_alone(tokens, constraint, params, adapter, gen, max_new, ticket)
        weakref.finalize(pieces, ticket.release)  # a stream dropped before it started still frees its place
        return pieces

    def _decode_alone(self, tokens: list[int], constraint: TokenConstraint | None, params: SamplingParams,
                      adapter: str | None, gen: Generation, max_new: int, ticket: Ticket) -> Iterator[str]:
        """Decode on the model's own context, one request at a time (`parallel = 1`)."""
        import numpy as np

        processors = None
        if constraint is not None or gen.margins is not None:
            def mask_logits(_input_ids, logits):
                if constraint is not None:
                    logits[~constraint.allowed()] = -np.inf
                if gen.margins is not None:
                    gen.margins.append(token_margin(logits))
                return logits

            processors = [mask_logits]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lock.acquire()
        try:
            ticket.start()
            self._activate(adapter)
            if params.temperature > 0:
                self.llm.set_seed(params.seed if params.seed is not None else secrets.randbits(31))
            n = 0
            gen.finish_reason = "length"
            for token in self.llm.generate(tokens, temp=params.temperature, top_p=params.top_p, top_k=0,
                                           min_p=0.0, repeat_penalty=1.0, logits_processor=processors):
                if token in self.eog_tokens:
                    if constraint is not None:
                        constraint.finish()
                    gen.finish_reason = "stop"
                    break
                if constraint is not None:
                    constraint.advance(token)
                n += 1
                gen.completion_tokens = n
                piece = decoder.decode(self.token_bytes(token))
                if piece:
                    yield piece
                if constraint is not None and constraint.is_done():
                    gen.finish_reason = "stop"
                    break
                if n >= max_new:
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            ticket.release()
            self._lock.release()

    def next_token_logits(self, prompt: str, adapter: str | None = None):
        """The logits (numpy, float32) of the token after `prompt`, with `adapter` applied or not.

        Used to check that an exported adapter changes llama.cpp's model like it changes the
        transformers one, and by evaluation code that scores choices.
        """
        import numpy as np

        tokens = self.tokenize(prompt)
        with self._lock:
            self._activate(adapter)
            self.llm.reset()
            self.llm.eval(tokens)
            row = self.llm._ctx.get_logits_ith(-1)
            return np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        for decoder in self._decoders:
            decoder.close()
        with self._lock:
            self.llm.close()
