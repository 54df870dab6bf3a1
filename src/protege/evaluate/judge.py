"""An LLM judge for free-text answers: how close is a candidate to the LLM's reference answer, 0 to 1.

ROUGE-L counts shared words; a judge reads meaning. `LLMJudge` asks a chat model behind any
OpenAI-compatible upstream (the one protege.toml configures for that model, or `--upstream`)
to grade a candidate against the reference with a fixed rubric, deterministically
(temperature 0, a JSON-schema answer `{"score": 1-5, "reason": "..."}`), and maps the
score to [0, 1] as (score - 1) / 4.

Calls are cached by the hash of the judge request, so the same candidate answer for the same
example costs one call per judge; an answer identical to the reference scores 1.0 and an empty
one 0.0 without a call (the reference row of a report is free). A judge that cannot answer
(unreachable, refused, not JSON) raises `JudgeError` naming the upstream and the fix: a
missing grade is never scored as 0.

`Judge.score` is the one method to implement; `protege.evaluate.harness.evaluate(judge=...)`
adds its score to every free-text row as the "judge" metric.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protege.config import redact_credentials
from protege.specialist.examples import Example

if TYPE_CHECKING:
    from protege.config import Settings

log = logging.getLogger(__name__)

RUBRIC = """You grade an assistant's answer to a request against a reference answer written by a strong model.
Judge the content: facts, decisions, completeness and whether the request's instructions are followed. \
Wording, tone and length do not matter unless the request asks for them.
5 = as good as the reference: the same content, possibly worded differently
4 = minor omissions or harmless differences
3 = partly right: some key content is missing or wrong
2 = mostly wrong or unhelpful, with a little that is right
1 = wrong, off-task, empty or harmful
Reply with JSON only: {"score": <1-5>, "reason": "<one sentence>"}."""

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}

MAX_CHARS = 8000
"""Each of the request, reference and candidate is cut to this many characters in the judge's prompt."""

RETRY_STATUSES = (429, 502, 503, 504)


class JudgeError(RuntimeError):
    """The judge could not grade an answer; the message names the upstream (credentials redacted) and the fix."""

    def __init__(self, message: str):
        super().__init__(redact_credentials(message))


@dataclass
class Verdict:
    score: float
    """In [0, 1]."""
    reason: str
    raw_score: int | None = None
    """The judge's own 1-5 grade; None when no call was needed."""


class Judge(ABC):
    """Grades a free-text candidate answer against an example's reference answer."""

    name: str = "judge"

    @abstractmethod
    def judge(self, example: Example, candidate: str | None) -> Verdict:
        """The verdict on `candidate` as an answer to `example.request` (reference: `example.answer`)."""

    def score(self, example: Example, candidate: str | None) -> float:
        return self.judge(example, candidate).score


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_message(request: dict) -> str:
    users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " [...cut]"


def judge_request(model: str, question: str, reference: str, candidate: str) -> dict:
    """The chat-completions body that asks `model` to grade `candidate` (deterministic: same inputs, same body)."""
    prompt = (f"## Request\n{_cut(question)}\n\n## Reference answer\n{_cut(reference)}\n\n"
              f"## Candidate answer\n{_cut(candidate)}")
    return {
        "model": model,
        "temperature": 0,
        "messages": [{"role": "system", "content": RUBRIC}, {"role": "user", "content": prompt}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "judgement", "strict": True, "schema": SCHEMA}},
    }


def parse_verdict(content: str) -> Verdict:
    """The verdict in the judge's reply; raises ValueError when it holds no 1-5 score."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        found = re.search(r"\{.*\}", content, re.DOTALL)  # a model that wrapped its JSON in prose or a code fence
        if not found:
            raise ValueError("not JSON") from None
        data = json.loads(found.group(0))
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5:
        raise ValueError(f"no score from 1 to 5 in {data!r}")
    return Verdict(round((score - 1) / 4, 4), str(data.get("reason") or ""), round(score))


class LLMJudge(Judge):
    """A chat model behind an OpenAI-compatible `base_url` (including /v1) grading with `RUBRIC`."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 2, api_key_env: str | None = None, client: Any = None):
        self.base_url = base_url.rstrip("/")
        self.display_url = redact_credentials(self.base_url)
        """`base_url` without `user:secret@`: the only form errors show."""
        self.model = self.name = model
        self.retries = retries
        self.api_key_env = api_key_env
        """Only for error messages: the variable the key came from."""
        self._client, self._timeout = client, timeout
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.cache: dict[str, Verdict] = {}
        self.calls = 0
        """Requests that reached the upstream (cache hits and identical answers cost none)."""
        self.prompt_tokens = self.completion_tokens = 0

    @classmethod
    def from_settings(cls, settings: Settings, model: str, **options: Any) -> LLMJudge:
        """The judge served by the first upstream of `settings` that serves `model` (protege.toml, --upstream)."""
        upstream = settings.upstream_for(model)
        if upstream is None:
            raise JudgeError(f"no upstream serves the judge model {model!r}: pass --upstream URL, or add an "
                             "[[upstreams]] entry whose models match it to $PROTEGE_HOME/protege.toml")
        return cls(upstream.base_url, model, upstream.api_key, api_key_env=upstream.api_key_env or None, **options)

    def judge(self, example: Example, candidate: str | None) -> Verdict:
        reference = _text((example.answer or {}).get("content"))
        candidate = candidate or ""
        if candidate.strip() == reference.strip():
            return Verdict(1.0, "identical to the reference")
        if not candidate.strip():
            return Verdict(0.0, "empty answer")
        request = judge_request(self.model, last_user_message(example.request), reference, candidate)
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        if key not in self.cache:
            self.cache[key] = self._ask(request)
        return self.cache[key]

    def _http(self):
        if self._client is None:
            from protege.models.errors import require

            httpx = require("httpx", "local")
            self._client = httpx.Client(timeout=self._timeout)
        return self._client

    def _ask(self, request: dict) -> Verdict:
        client = self._http()
        import httpx

        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.retries + 1):
            try:
                resp = client.post(url, json=request, headers=self._headers)
            except httpx.HTTPError as exc:
                raise JudgeError(f"the judge upstream at {self.display_url} is unreachable ({type(exc).__name__}: {exc}); "
                                 "start it, or point --upstream (or [[upstreams]] in protege.toml) at a server "
                                 f"that serves {self.model!r}") from exc
            if resp.status_code not in RETRY_STATUSES or attempt == self.retries:
                break
            time.sleep(0.5 * 2**attempt)
        self.calls += 1
        if resp.status_code != 200:
            raise JudgeError(self._status_message(resp))
        try:
            body = resp.json()
            message = body["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"the judge upstream at {self.display_url} answered with something other than a chat "
                             f"completion: {resp.text[:200]!r}") from exc
        usage = body.get("usage") or {}
        self.prompt_tokens += usage.get("prompt_tokens") or 0
        self.completion_tokens += usage.get("completion_tokens") or 0
        content = _text(message.get("content"))
        try:
            return parse_verdict(content)
        except ValueError as exc:
            why = f"refused: {message['refusal']!r}" if message.get("refusal") else f"{exc}: {content[:200]!r}"
            raise JudgeError(f"the judge {self.model!r} at {self.display_url} gave no usable grade ({why}); use a "
                             "judge model that supports response_format json_schema (--judge-model)") from exc

    def _status_message(self, resp: Any) -> str:
        try:
            detail = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = resp.text[:200]
        fix = "check that it serves this model (--judge-model) and is healthy"
        if resp.status_code in (401, 403):
            fix = (f"set {self.api_key_env} to a valid API key" if self.api_key_env else
                   "give it an API key: --upstream-key-env VAR, or api_key_env in protege.toml's [[upstreams]]")
        return (f"the judge upstream at {self.display_url} answered {resp.status_code} for model {self.model!r} "
                f"({detail}); {fix}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
