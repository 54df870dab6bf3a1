"""Remote OpenAI-compatible servers (vLLM, Ollama, a llama.cpp server, SGLang...) as a `Runtime`.

The request is passed through with `model` set to the server's name for the model; on vLLM
with multi-LoRA, an adapter is picked by sending the adapter's name as `model`
(`runtime.with_adapter("invoice")`). Structured outputs go as `response_format`
(`json_schema`): vLLM silently ignores the old `guided_json` extension field, so a request
that carries it is rewritten to `response_format` before it leaves. Whatever the server
claims, the answer is validated against the request's schema and tools with jsonschema: an
invalid or truncated answer raises, as with the local runtimes.

`complete_scored` gives a specialist's answer its confidence the way the local runtimes do, the
smallest top-1 minus top-2 token probability of the answer, from the server's `logprobs` (asked
for with `top_logprobs: 2`, and stripped from the answer again); a server that returns none
gives None, and the router then serves only what a threshold of 0 allows. vLLM reports the
model's own probabilities, before its structured-output mask: a threshold calibrated on one
engine holds for that engine, not for llama.cpp's masked margins.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from protege.models.constrain import validate_completion
from protege.models.errors import InvalidRequestError, ModelUnavailableError, RuntimeRequestError, require
from protege.models.runtime import Runtime, chunk_dict

if TYPE_CHECKING:
    from protege.models.catalog import ModelSpec

log = logging.getLogger(__name__)

LEGACY_GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")


def rewrite_legacy_guided(body: dict) -> dict:
    """Move vLLM's legacy `guided_json` into `response_format`; refuse the other legacy guided fields."""
    body = dict(body)
    extra = body.pop("extra_body", None)
    if isinstance(extra, dict):
        body.update(extra)
    if "guided_json" in body:
        schema = body.pop("guided_json")
        if isinstance(schema, str):
            schema = json.loads(schema)
        if body.get("response_format") not in (None, {"type": "text"}):
            raise InvalidRequestError("pass either guided_json or response_format, not both", param="guided_json")
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "guided_json", "schema": schema, "strict": True}}
    for field in LEGACY_GUIDED_FIELDS[1:]:
        if field in body:
            raise InvalidRequestError(f"{field} is a legacy vLLM field that current servers ignore silently; "
                                      "use response_format (json_schema) instead", param=field)
    return body


class RemoteRuntime(Runtime):
    """An OpenAI-compatible HTTP server answering for one model (and its LoRA adapters, on vLLM)."""

    def __init__(self, base_url: str, remote_model: str, *, model_id: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, validate: bool = True, client: Any = None):
        httpx = require("httpx", "local")
        self.base_url = base_url.rstrip("/")
        self.remote_model = remote_model
        self.model_id = model_id or remote_model
        self.validate = validate
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._httpx = httpx
        self.client = client or httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_spec(cls, spec: "ModelSpec", **options: Any) -> "RemoteRuntime":
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        return cls(spec.base_url or "", spec.remote_model or spec.name, model_id=spec.name, api_key=key, **options)

    def with_adapter(self, adapter: str | None) -> "RemoteRuntime":
        """The same server answering with a LoRA adapter it serves under the name `adapter` (vLLM multi-LoRA)."""
        if adapter is None:
            return self
        return RemoteRuntime(self.base_url, adapter, model_id=f"{self.model_id}:{adapter}", validate=self.validate,
                             client=self.client)

    def _body(self, request: dict, stream: bool) -> dict:
        body = rewrite_legacy_guided(request)
        body["model"] = self.remote_model
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    def _post(self, body: dict, stream: bool = False):
        try:
            if stream:
                req = self.client.build_request("POST", "/chat/completions", json=body)
                resp = self.client.send(req, stream=True)
            else:
                resp = self.client.post("/chat/completions", json=body)
        except self._httpx.HTTPError as exc:
            raise ModelUnavailableError(f"the model server at {self.base_url} is unreachable ({exc}); start it or "
                                        "fix base_url in $PROTEGE_HOME/models.toml") from exc
        if resp.status_code != 200:
            if stream:
                resp.read()
            raise _server_error(resp, self.base_url)
        return resp

    def complete(self, request: dict) -> dict:
        return self._complete(request, self._body(request, stream=False))[0]

    def complete_scored(self, request: dict, track_confidence: bool = True,
                        plan: Any = None) -> tuple[dict, float | None]:
        """`complete`, plus the answer's confidence from the server's token log-probabilities. `plan` (a label
        specialist's own label set) is not sent: servers spell choice constraints differently; the router checks
        the label."""
        if not track_confidence or request.get("logprobs"):
            return self.complete(request), None
        completion, tokens = self._complete(request, self._body(request, stream=False) | {"logprobs": True,
                                                                                           "top_logprobs": 2})
        return completion, logprob_margin(tokens)

    def _complete(self, request: dict, body: dict) -> tuple[dict, Any]:
        """(the validated completion, its first choice's `logprobs.content` when protege asked for them)."""
        resp = self._post(body)
        try:
            completion = resp.json()
        except ValueError as exc:
            raise RuntimeRequestError(502, f"{self.base_url} answered with non-JSON: {resp.text[:200]!r}",
                                      "bad_upstream_response") from exc
        completion["model"] = self.model_id
        tokens = None
        if body.get("logprobs") and not request.get("logprobs"):  # asked for by protege, not by the caller
            choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
            logprobs = [c.pop("logprobs", None) for c in choices if isinstance(c, dict)]
            tokens = (logprobs[0] or {}).get("content") if logprobs and isinstance(logprobs[0], dict) else None
        return (validate_completion(request, completion) if self.validate else completion), tokens

    def stream(self, request: dict) -> Iterator[dict]:
        """Relay the server's chunks; the reassembled answer is validated before the last chunk is sent."""
        from protege.openai_format import reassemble_chat_stream

        resp = self._post(self._body(request, stream=True), stream=True)
        held: list[dict] = []
        try:
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                chunk["model"] = self.model_id
                held.append(chunk)
                if len(held) > 1:
                    yield held[-2]
        finally:
            resp.close()
        if self.validate:
            validate_completion(request, reassemble_chat_stream(held))
        if held:
            yield held[-1]
        else:
            yield chunk_dict("chatcmpl-empty", 0, self.model_id, {}, "stop")

    def close(self) -> None:
        self.client.close()


def logprob_margin(tokens: Any) -> float | None:
    """The smallest top-1 minus top-2 probability over an answer's tokens (OpenAI `logprobs.content` entries with
    `top_logprobs`); None when the server sent none. A token with one alternative listed counts as certain."""
    if not isinstance(tokens, list) or not tokens:
        return None
    margins = []
    for token in tokens:
        top = sorted((t.get("logprob") for t in (token.get("top_logprobs") or []) if isinstance(t, dict)
                      and isinstance(t.get("logprob"), (int, float))), reverse=True) if isinstance(token, dict) else []
        if not top:
            return None
        margins.append(math.exp(top[0]) - (math.exp(top[1]) if len(top) > 1 else 0.0))
    return max(0.0, min(margins))


def _server_error(resp: Any, base_url: str) -> RuntimeRequestError:
    try:
        err = resp.json().get("error") or {}
        message = err.get("message") if isinstance(err, dict) else str(err)
        code = (err.get("code") if isinstance(err, dict) else None) or "upstream_error"
    except (ValueError, AttributeError):
        message, code = resp.text[:300], "upstream_error"
    status = resp.status_code if 400 <= resp.status_code < 600 else 502
    return RuntimeRequestError(status, f"{base_url}: {message}", str(code))
