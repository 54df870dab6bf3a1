"""The transformers + PEFT runtime: the same requests and guarantees, on the training stack.

Used by training and evaluation (it runs the exact weights being trained, LoRA adapters
switchable per request) and on GPUs without vLLM. A folder made by
`protege.models.convert.gguf_to_transformers` or any Hugging Face model folder loads; a
`.gguf` file is dequantised on load. Decoding is a plain KV-cached loop with the same
llguidance constraint as the llama.cpp runtime.
"""

from __future__ import annotations

import codecs
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protege.models.catalog import check_model_path
from protege.models.constrain import OutputPlan, TokenConstraint
from protege.models.errors import InvalidRequestError, ModelFileError, ModelNotFoundError, require
from protege.models.prompting import CHATML, render_prompt
from protege.models.runtime import Generation, LocalRuntime, SamplingParams, token_margin

if TYPE_CHECKING:
    from protege.models.catalog import ModelSpec

log = logging.getLogger(__name__)


class TransformersRuntime(LocalRuntime):
    """A transformers causal LM (optionally with PEFT LoRA adapters) answering chat requests."""

    def __init__(self, model: str | Path | Any, tokenizer: Any = None, *, model_id: str | None = None,
                 device: str = "cpu", dtype: str = "float32", chat_template: str | None = None,
                 adapters: dict[str, str | Path] | None = None, max_context: int = 4096):
        self.torch = require("torch", "train")
        transformers = require("transformers", "train")
        if isinstance(model, (str, Path)):
            path = Path(model)
            check_model_path(path, hint=f"check the path {path}")
            if path.is_file():
                from protege.models.convert import load_gguf_as_transformers

                model, tokenizer = load_gguf_as_transformers(path, dtype)
            else:
                try:
                    tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(path))
                    model = transformers.AutoModelForCausalLM.from_pretrained(str(path),
                                                                              dtype=getattr(self.torch, dtype))
                except (OSError, ValueError) as exc:
                    raise ModelFileError(f"transformers could not load {path} ({exc})", path=str(path)) from exc
            model_id = model_id or path.stem
        if tokenizer is None:
            raise InvalidRequestError("pass the tokenizer together with an in-memory model")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.model_id = model_id or "transformers"
        self.max_context = max_context
        self.template = chat_template or getattr(tokenizer, "chat_template", None) or CHATML
        self._lock = threading.Lock()
        self._lltokenizer: Any = None
        self._cache_kwarg: str | None = None
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        for tok in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
            tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
            if tid is not None:
                eos.add(tid)
        self.eos_tokens = frozenset(eos)
        self._adapters: list[str] = []
        for name, adapter_path in (adapters or {}).items():
            self.load_adapter(name, adapter_path)

    @classmethod
    def from_spec(cls, spec: "ModelSpec", **options: Any) -> "TransformersRuntime":
        return cls(spec.locate(), model_id=spec.name, **options)

    def render(self, request: dict) -> str:
        return render_prompt(request, self.template, bos_token=self.tokenizer.bos_token or "",
                             eos_token=self.tokenizer.eos_token or "")

    @property
    def n_vocab(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def lltokenizer(self) -> Any:
        if self._lltokenizer is None:
            llg = require("llguidance", "local")
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is None:
                raise InvalidRequestError("constrained decoding needs a fast (Rust) tokenizer")
            from copy import copy

            backend = copy(backend)
            backend.no_padding()
            backend.no_truncation()
            self._lltokenizer = llg.LLTokenizer(backend.to_str(), n_vocab=self.n_vocab,
                                                eos_token=sorted(self.eos_tokens))
        return self._lltokenizer

    # --- adapters -------------------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Attach a PEFT LoRA adapter folder under `name` (the base weights are shared)."""
        peft = require("peft", "train")
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise ModelFileError(f"{path} is not a PEFT adapter folder (no adapter_config.json)", path=str(path))
        with self._lock:
            if isinstance(self.model, peft.PeftModel):
                if name in self.model.peft_config:
                    self.model.delete_adapter(name)
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = peft.PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
            if name not in self._adapters:
                self._adapters.append(name)

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self._adapters:
                raise ModelNotFoundError(f"adapter {name!r} is not loaded on {self.model_id}")
            self.model.delete_adapter(name)
            self._adapters.remove(name)

    def _adapter_context(self, adapter: str | None):
        import contextlib

        if adapter is None:
            if self._adapters:
                return self.model.disable_adapter()
            return contextlib.nullcontext()
        if adapter not in self._adapters:
            raise ModelNotFoundError(f"adapter {adapter!r} is not loaded on {self.model_id}")
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    # --- decoding -------------------------------------------------------------------------------

    def _generate(self, prompt: str, plan: OutputPlan, params: SamplingParams, adapter: str | None,
                  gen: Generation) -> Iterator[str]:
        torch = self.torch
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids.to(self.device)
        if ids.shape[1] >= self.max_context:
            raise InvalidRequestError(f"the prompt has {ids.shape[1]} tokens; the limit is {self.max_context}",
                                      code="context_length_exceeded", param="messages")
        gen.prompt_tokens = ids.shape[1]
        max_new = min(params.max_tokens, self.max_context - ids.shape[1])
        constraint = TokenConstraint(self.lltokenizer, plan.grammar, self.n_vocab) if plan.grammar else None
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.device)
            if params.seed is not None:
                generator.manual_seed(int(params.seed))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        gen.finish_reason = "length"
        self._lock.acquire()
        try:
            with torch.inference_mode(), self._adapter_context(adapter):
                past, inputs = None, ids
                for n in range(1, max_new + 1):
                    out = self._forward(inputs, past)
                    past = out.get("cache", None) or out.get("past_key_values", None)
                    logits = out.logits[0, -1].float()
                    if constraint is not None:
                        allowed = torch.from_numpy(constraint.allowed().copy()).to(logits.device)
                        logits = logits.masked_fill(~allowed, float("-inf"))
                    if gen.margins is not None:
                        gen.margins.append(token_margin(logits.cpu().numpy()))
                    token = self._sample(logits, params, generator)
                    if token in self.eos_tokens:
                        if constraint is not None and not constraint.is_accepting():
                            from protege.models.errors import InvalidOutputError

                            raise InvalidOutputError("the model ended before the constrained output was complete")
                        gen.finish_reason = "stop"
                        break
                    if constraint is not None:
                        constraint.advance(token)
                    gen.completion_tokens = n
                    piece = decoder.decode(self._token_bytes(token))
                    if piece:
                        yield piece
                    if constraint is not None and constraint.is_done():
                        gen.finish_reason = "stop"
                        break
                    inputs = torch.tensor([[token]], device=self.device)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            self._lock.release()

    def _forward(self, input_ids: Any, cache: Any) -> Any:
        """One forward step with the KV cache (transformers 5 names it `cache`, 4 `past_key_values`)."""
        if self._cache_kwarg is None:
            import inspect

            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            params = inspect.signature(base.forward).parameters
            self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        return self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache})

    def _sample(self, logits: Any, params: SamplingParams, generator: Any) -> int:
        torch = self.torch
        if params.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, 0) - sorted_probs < params.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=generator))

    def _token_bytes(self, token: int) -> bytes:
        return self.lltokenizer.decode_bytes([token])

    def close(self) -> None:
        self.model = None
