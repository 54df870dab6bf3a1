"""The `Runtime` extension point: an OpenAI chat request in, an OpenAI chat completion out.

A runtime implements one method, `complete(request) -> chat.completion dict`; `stream`
has a default that replays `complete` as chunks, and local runtimes override it to stream
tokens. Runtimes register by name in `RUNTIMES` (built-ins register the same way a plugin
would), and the pool builds them from a catalog `ModelSpec` through `build_runtime`.

`LocalRuntime` is the shared half of the in-process runtimes (llama.cpp, transformers): it
turns a request into a prompt, an `OutputPlan` and sampling parameters, runs the subclass's
token loop (`_generate`) and shapes the OpenAI response, so format guarantees behave the same
whichever engine decodes.
"""

from __future__ import annotations

import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from protege.models.constrain import OutputPlan, plan_output
from protege.models.errors import InvalidRequestError, ModelNotFoundError
from protege.models.prompting import TOOL_CALL_CLOSE

if TYPE_CHECKING:
    from protege.models.catalog import ModelSpec
    from protege.models.queueing import ServingQueue

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 1024


class Runtime(ABC):
    """Something that answers OpenAI chat-completion requests for one model."""

    model_id: str = "local"
    """The `model` value its responses carry."""

    @abstractmethod
    def complete(self, request: dict) -> dict:
        """Answer an OpenAI chat.completions request body with a `chat.completion` dict.

        Raises a `RuntimeRequestError` subclass for requests it cannot answer correctly.
        """

    def stream(self, request: dict) -> Iterator[dict]:
        """Yield `chat.completion.chunk` dicts; by default the whole completion as one chunk."""
        yield from completion_to_chunks(self.complete(request))

    def close(self) -> None:
        """Free the model's memory; the runtime is unusable afterwards."""


RUNTIMES: dict[str, Callable[["ModelSpec"], Runtime]] = {}
"""Runtime factories by name ("llama.cpp", "transformers", "remote"), each taking a `ModelSpec`."""


def register_runtime(name: str, factory: Callable[["ModelSpec"], Runtime]) -> None:
    RUNTIMES[name] = factory


def build_runtime(spec: "ModelSpec", **options: Any) -> Runtime:
    """Instantiate the runtime a spec names (importing its heavy dependencies only now)."""
    _register_builtins()
    if spec.runtime not in RUNTIMES:
        raise ModelNotFoundError(f"model {spec.name!r} needs runtime {spec.runtime!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[spec.runtime](spec, **options)


def _register_builtins() -> None:
    if RUNTIMES.keys() >= {"llama.cpp", "transformers", "remote"}:
        return

    def llama(spec, **options):
        from protege.models.llamacpp import LlamaCppRuntime

        return LlamaCppRuntime.from_spec(spec, **options)

    def hf(spec, **options):
        from protege.models.hf import TransformersRuntime

        return TransformersRuntime.from_spec(spec, **options)

    def remote(spec, **options):
        from protege.models.remote import RemoteRuntime

        return RemoteRuntime.from_spec(spec, **options)

    RUNTIMES.setdefault("llama.cpp", llama)
    RUNTIMES.setdefault("transformers", hf)
    RUNTIMES.setdefault("remote", remote)


# --- response shapes ---------------------------------------------------------------------------


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def completion_dict(model: str, content: str | None, tool_calls: list[dict] | None, finish_reason: str,
                    prompt_tokens: int, completion_tokens: int, completion_id: str | None = None,
                    created: int | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
        finish_reason = "tool_calls"
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "system_fingerprint": None,
    }


def chunk_dict(completion_id: str, created: int, model: str, delta: dict, finish_reason: str | None = None,
               usage: dict | None = None) -> dict:
    chunk: dict[str, Any] = {
        "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def completion_to_chunks(completion: dict) -> Iterator[dict]:
    """A finished completion replayed as stream chunks: role, content/tool calls, finish with usage."""
    cid, created, model = completion["id"], completion["created"], completion["model"]
    choice = completion["choices"][0]
    msg = choice["message"]
    yield chunk_dict(cid, created, model, {"role": "assistant", "content": ""})
    if msg.get("content"):
        yield chunk_dict(cid, created, model, {"content": msg["content"]})
    if msg.get("tool_calls"):
        yield chunk_dict(cid, created, model, {"tool_calls": [
            {"index": i, **call} for i, call in enumerate(msg["tool_calls"])
        ]})
    yield chunk_dict(cid, created, model, {}, choice["finish_reason"], usage=completion.get("usage"))


def token_margin(logits: Any) -> float:
    """Top-1 minus top-2 softmax probability of a logits row (numpy; -inf entries are masked out)."""
    import numpy as np

    if logits.shape[0] < 2:
        return 1.0
    top2 = np.partition(logits, -2)[-2:]
    high = float(top2.max())
    if not np.isfinite(high):
        return 1.0
    total = float(np.exp(logits - high).sum())
    return (1.0 - float(np.exp(float(top2.min()) - high))) / total


# --- local runtimes ------------------------------------------------------------------------------


@dataclass
class SamplingParams:
    """The decoding settings of one request (local runtimes decode greedily unless asked otherwise)."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_request(cls, request: dict) -> "SamplingParams":
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_MAX_TOKENS
        temperature = request.get("temperature")
        top_p = request.get("top_p")
        stop = request.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidRequestError("max_tokens must be a positive integer", param="max_tokens")
        if (request.get("n") or 1) != 1:
            raise InvalidRequestError("local models answer with n=1 only", param="n")
        try:
            return cls(max_tokens=max_tokens, temperature=float(temperature if temperature is not None else 0.0),
                       top_p=float(top_p if top_p is not None else 1.0), seed=request.get("seed"),
                       stop=tuple(str(s) for s in stop))
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"bad sampling parameter: {exc}") from exc


class Generation:
    """The text pieces of one decode, then its counts: iterate it, then read `finish_reason`."""

    def __init__(self, pieces: Iterator[str], track_confidence: bool = False):
        self._pieces = pieces
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason = "stop"
        self.margins: list[float] | None = [] if track_confidence else None
        """With confidence tracking: per decoded token, top-1 minus top-2 probability (after the grammar mask)."""

    @property
    def confidence(self) -> float | None:
        """The smallest top-1/top-2 probability margin of the answer: how close the least sure token came
        to going another way (tokens the grammar forces count as 1.0)."""
        if self.margins is None:
            return None
        return min(self.margins, default=1.0)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        """Stop decoding (a caller who stops reading frees the model at once, not at garbage collection:
        the decode loop and this object refer to each other)."""
        close = getattr(self._pieces, "close", None)
        if close:
            close()


def _cut_at_stop(pieces: Iterator[str], stops: tuple[str, ...], gen: Generation) -> Iterator[str]:
    """Pass text through until a stop string appears (holding back what could start one)."""
    hold = max(len(s) for s in stops) - 1
    buf = ""
    try:
        for piece in pieces:
            buf += piece
            hits = [i for i in (buf.find(s) for s in stops) if i >= 0]
            if hits:
                gen.finish_reason = "stop"
                yield buf[: min(hits)]
                return
            if len(buf) > hold:
                cut = len(buf) - hold
                yield buf[:cut]
                buf = buf[cut:]
        yield buf
    finally:
        close = getattr(pieces, "close", None)
        if close:
            close()


def _stop_repeated_calls(pieces: Iterator[str], gen: Generation) -> Iterator[str]:
    """End a parallel tool-call answer when the model starts repeating a call it already made verbatim.

    Small models often loop on their last call; an identical call in the same turn is that loop,
    not an intent, so the answer is cut after the last distinct call.
    """
    text, sent, seen = "", 0, set()
    try:
        for piece in pieces:
            text += piece
            while True:
                end = text.find(TOOL_CALL_CLOSE, sent)
                if end < 0:
                    break
                end += len(TOOL_CALL_CLOSE)
                call = text[sent:end].strip()
                if call in seen:
                    gen.finish_reason = "stop"
                    return
                seen.add(call)
                yield text[sent:end]
                sent = end
        yield text[sent:]
    finally:
        close = getattr(pieces, "close", None)
        if close:
            close()


class LocalRuntime(Runtime):
    """An in-process model: subclasses implement `_generate`, this class does requests and responses."""

    model_id = "local"
    queue: "ServingQueue | None" = None
    """Admission for this model's requests (runtimes that bound their queue set it)."""

    def estimated_wait_s(self) -> float:
        """How long a request sent now would wait before it starts decoding (0 without a queue)."""
        return self.queue.estimated_wait_s() if self.queue is not None else 0.0

    @abstractmethod
    def _generate(self, prompt: str, plan: OutputPlan, params: SamplingParams, adapter: str | None,
                  gen: Generation) -> Iterator[str]:
        """Decode from `prompt` under `plan`'s grammar, yielding text pieces and filling `gen`'s counts."""

    @abstractmethod
    def render(self, request: dict) -> str:
        """The prompt text of a request (chat template applied)."""

    def adapter_names(self) -> list[str]:
        return []

    def set_prompt_format(self, adapter: str, render: Callable[[dict], str] | None) -> None:
        """Render requests answered through `adapter` with `render` (a specialist's pruned prompt format)
        instead of `self.render`; None restores the default."""
        formats = self.__dict__.setdefault("_prompt_formats", {})
        if render is None:
            formats.pop(adapter, None)
        else:
            formats[adapter] = render

    def _start(self, request: dict, adapter: str | None, track_confidence: bool = False,
               plan: OutputPlan | None = None) -> tuple[OutputPlan, Generation, str]:
        if not isinstance(request, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        plan = plan or plan_output(request)
        params = SamplingParams.from_request(request)
        prompt = self.__dict__.get("_prompt_formats", {}).get(adapter, self.render)(request)
        gen = Generation(iter(()), track_confidence)
        pieces = self._generate(prompt, plan, params, adapter, gen)
        if params.stop and plan.kind == "text":
            pieces = _cut_at_stop(pieces, params.stop, gen)
        elif plan.kind == "tools" and plan.parallel:
            pieces = _stop_repeated_calls(pieces, gen)
        gen._pieces = pieces
        model = self.model_id + (f":{adapter}" if adapter else "")
        return plan, gen, model

    def complete(self, request: dict, adapter: str | None = None) -> dict:
        return self.complete_scored(request, adapter, track_confidence=False)[0]

    def complete_scored(self, request: dict, adapter: str | None = None, track_confidence: bool = True,
                        plan: OutputPlan | None = None) -> tuple[dict, float | None]:
        """`complete`, plus the answer's confidence (`Generation.confidence`) for routing decisions. `plan`: the
        output constraint to decode under instead of the request's own (a label specialist's label set)."""
        plan, gen, model = self._start(request, adapter, track_confidence, plan)
        text = "".join(gen)
        content, tool_calls = plan.parse(text, gen.finish_reason)
        completion = completion_dict(model, content, tool_calls, gen.finish_reason, gen.prompt_tokens,
                                     gen.completion_tokens)
        return completion, gen.confidence

    def stream(self, request: dict, adapter: str | None = None) -> Iterator[dict]:
        """Stream text as it is decoded; constrained JSON is validated before the final chunk,
        and tool calls are sent whole once validated (a violation raises mid-stream)."""
        plan, gen, model = self._start(request, adapter)
        cid, created = new_completion_id(), int(time.time())
        include_usage = bool((request.get("stream_options") or {}).get("include_usage", True))
        pieces = []
        try:
            yield chunk_dict(cid, created, model, {"role": "assistant", "content": ""})
            for piece in gen:
                pieces.append(piece)
                if plan.kind != "tools" and piece:
                    yield chunk_dict(cid, created, model, {"content": piece})
        finally:
            gen.close()
        text = "".join(pieces)
        content, tool_calls = plan.parse(text, gen.finish_reason)
        finish = gen.finish_reason
        if tool_calls:
            finish = "tool_calls"
            yield chunk_dict(cid, created, model, {"tool_calls": [{"index": i, **c} for i, c in enumerate(tool_calls)]})
        elif plan.kind == "tools" and content:
            yield chunk_dict(cid, created, model, {"content": content})
        usage = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                 "total_tokens": gen.prompt_tokens + gen.completion_tokens}
        yield chunk_dict(cid, created, model, {}, finish, usage=usage if include_usage else None)

    def with_adapter(self, adapter: str | None) -> Runtime:
        """A `Runtime` view that answers with `adapter` on this base model (None: the base itself)."""
        if adapter is None:
            return self
        if adapter not in self.adapter_names():
            raise ModelNotFoundError(f"adapter {adapter!r} is not loaded on {self.model_id}; loaded: "
                                     f"{', '.join(self.adapter_names()) or 'none'}")
        return AdapterRuntime(self, adapter)


class AdapterRuntime(Runtime):
    """A base model answering through one of its LoRA adapters (the base stays shared in memory)."""

    def __init__(self, base: LocalRuntime, adapter: str):
        self.base, self.adapter = base, adapter
        self.model_id = f"{base.model_id}:{adapter}"

    def complete(self, request: dict) -> dict:
        return self.base.complete(request, adapter=self.adapter)

    def complete_scored(self, request: dict, track_confidence: bool = True,
                        plan: OutputPlan | None = None) -> tuple[dict, float | None]:
        return self.base.complete_scored(request, self.adapter, track_confidence, plan)

    def stream(self, request: dict) -> Iterator[dict]:
        return self.base.stream(request, adapter=self.adapter)

    def estimated_wait_s(self) -> float:
        return self.base.estimated_wait_s()
