"""What a specialist reads and writes: the prompt format, the target text and prompt pruning.

Training, evaluation and the router must show a specialist the same text, so all three go
through `PromptFormat.render(request)`:

- the request is rendered by `protege.models.prompting` (the runtime's own renderer: tools and
  schema described in the system message, then the base model's chat template);
- with a `PruningRule`, the text every call of the task shares (static system-prompt sentences,
  the tool list, the JSON schema) is left out first, as OpenPipe's "pruning rules" did: the
  specialist learns the task instead of reading it on every call. The grammar still comes from
  the full request (`protege.models.constrain.plan_output`), so format guarantees are unchanged;
- the target is the LLM's answer in the form the runtime constrains and parses back
  (`target_text`): plain content; JSON re-serialised with the grammar's separators (", ", ": ");
  tool calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` lines, joined by
  "\\n", followed by the template's end-of-turn marker.

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from protege.models.prompting import (
    CHATML,
    TEMPLATES,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    dumps,
    function_tools,
    normalize_messages,
    render_chat,
    schema_instructions,
    tools_instructions,
)

TOOL_CALL_FORMAT = (
    f'{TOOL_CALL_OPEN}{{"name": <function name>, "arguments": <JSON object>}}{TOOL_CALL_CLOSE}, '
    'one call per line ("\\n" between calls), JSON written with ", " and ": " separators'
)


def canonical_hash(value: Any) -> str:
    """A short stable hash of a JSON value (key order ignored)."""
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- targets ------------------------------------------------------------------------------------


def response_message(response: dict | None) -> dict | None:
    """The assistant message of a chat.completion (or the message itself)."""
    if not response:
        return None
    if "choices" in response:
        choices = response.get("choices") or []
        return (choices[0] or {}).get("message") if choices else None
    return response


def target_text(message: dict, output_kind: str = "text") -> str:
    """The text a specialist must produce for this assistant message (the runtime parses it back)."""
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if output_kind == "json" and content:
        try:
            content = dumps(json.loads(content))
        except json.JSONDecodeError:
            pass
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments") or "{}"
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            pass
        calls.append(TOOL_CALL_OPEN + dumps({"name": fn.get("name"), "arguments": args}) + TOOL_CALL_CLOSE)
    if calls:
        return (content + "\n" if content else "") + "\n".join(calls)
    return content


def request_output_kind(request: dict) -> str:
    """"tool_call", "json" or "text", from what the request asks for (labels are found per task)."""
    if request.get("tools") and request.get("tool_choice") != "none":
        return "tool_call"
    rf = request.get("response_format") or {}
    if isinstance(rf, dict) and rf.get("type") in ("json_schema", "json_object"):
        return "json"
    return "text"


def infer_output_kind(requests: Sequence[dict], answers: Sequence[str]) -> str:
    """The task's output kind: tool calls, JSON, a small closed set of labels, or free text."""
    kinds = Counter(request_output_kind(r) for r in requests)
    kind = kinds.most_common(1)[0][0] if kinds else "text"
    if kind != "text":
        return kind
    texts = [a.strip().lower() for a in answers if a is not None]
    if not texts:
        return "text"
    distinct = Counter(texts)
    short = all(len(t.split()) <= 4 and "\n" not in t for t in distinct)
    if short and len(distinct) <= max(2, min(30, len(texts) // 5)):
        return "label"
    return "text"


# -- pruning ------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _segments(text: str) -> list[list[str]]:
    """Lines, each split into sentences: the unit that pruning keeps or drops."""
    return [[s for s in _SENTENCE.split(line) if s] for line in text.split("\n")]


def _join(lines: list[list[str]]) -> str:
    return "\n".join(" ".join(line) for line in lines if line).strip()


@dataclass
class PruningRule:
    """Static prompt text the specialist no longer reads: shared system sentences, tool lists, schemas."""

    static_sentences: list[str] = field(default_factory=list)
    """System-prompt sentences shared by many calls of the task (dropped where they occur)."""
    tool_sets: list[str] = field(default_factory=list)
    """Hashes of the tool lists seen in training: their descriptions are left out of the prompt."""
    schemas: list[str] = field(default_factory=list)
    """Hashes of the response JSON schemas seen in training: left out of the prompt."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PruningRule:
        return cls(**data)

    def covers(self, request: dict) -> bool:
        """True when the request's tools and schema are ones the specialist was trained on."""
        tools = request.get("tools")
        if tools and canonical_hash(tools) not in self.tool_sets:
            return False
        schema = _schema(request)
        return schema is None or canonical_hash(schema) in self.schemas

    def prune_system(self, text: str) -> str:
        static = set(self.static_sentences)
        return _join([[s for s in line if s not in static] for line in _segments(text)])


def _schema(request: dict) -> dict | None:
    rf = request.get("response_format") or {}
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def _system_texts(request: dict) -> list[str]:
    return [m["content"] for m in request.get("messages") or []
            if isinstance(m, dict) and m.get("role") in ("system", "developer") and isinstance(m.get("content"), str)]


def learn_pruning_rule(requests: Iterable[dict], *, min_share: float = 0.1, min_calls: int = 3) -> PruningRule:
    """The rule for a task: sentences in at least `min_share` of its calls' system prompts (and `min_calls`
    calls) are static; every tool list and schema of the training calls is dropped from the prompt."""
    requests = list(requests)
    counts: Counter[str] = Counter()
    tool_sets, schemas = set(), set()
    for req in requests:
        sentences = {s for text in _system_texts(req) for line in _segments(text) for s in line}
        counts.update(sentences)
        if req.get("tools"):
            tool_sets.add(canonical_hash(req["tools"]))
        schema = _schema(req)
        if schema is not None:
            schemas.add(canonical_hash(schema))
    threshold = max(min_calls, min_share * len(requests))
    static = sorted(s for s, n in counts.items() if n >= threshold)
    return PruningRule(static_sentences=static, tool_sets=sorted(tool_sets), schemas=sorted(schemas))


def prune_request(request: dict, rule: PruningRule) -> tuple[dict, bool, bool]:
    """(request with static system text removed, drop tool descriptions?, drop schema description?)."""
    messages = []
    for msg in request.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") in ("system", "developer") and isinstance(msg.get("content"), str):
            msg = {**msg, "content": rule.prune_system(msg["content"])}
        messages.append(msg)
    tools = request.get("tools")
    drop_tools = bool(tools) and canonical_hash(tools) in rule.tool_sets
    schema = _schema(request)
    drop_schema = schema is not None and canonical_hash(schema) in rule.schemas
    return {**request, "messages": messages}, drop_tools, drop_schema


# -- the prompt format --------------------------------------------------------------------------


@dataclass
class PromptFormat:
    """How a specialist's prompt and target are written; stored in its folder and used by the router."""

    template: str = CHATML
    """The Jinja chat template (the base model's own)."""
    bos_token: str = ""
    eos_token: str = ""
    end_of_turn: str = "<|im_end|>"
    """Appended to every target: the token that ends the assistant's turn."""
    output_kind: str = "text"
    pruning: PruningRule | None = None
    tool_call_format: str = TOOL_CALL_FORMAT

    def to_dict(self) -> dict:
        data = asdict(self)
        data["template_name"] = next((k for k, v in TEMPLATES.items() if v == self.template), "from model file")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PromptFormat:
        data = {k: v for k, v in data.items() if k != "template_name"}
        if data.get("pruning") is not None:
            data["pruning"] = PruningRule.from_dict(data["pruning"])
        return cls(**data)

    def render(self, request: dict) -> str:
        """The prompt text of a request, pruned if the format has a rule (the router calls this too)."""
        return render_specialist_prompt(request, self)

    def target(self, message: dict) -> str:
        return target_text(message, self.output_kind) + self.end_of_turn


def end_of_turn_marker(template: str, bos_token: str = "", eos_token: str = "") -> str:
    """The text a chat template writes after an assistant message (e.g. "<|im_end|>")."""
    sentinel = "\x00SENTINEL\x00"
    text = render_chat(template, [{"role": "user", "content": "u"}, {"role": "assistant", "content": sentinel},
                                  {"role": "user", "content": "v"}], bos_token=bos_token, eos_token=eos_token)
    after = text.split(sentinel, 1)[1]
    return after.split("\n", 1)[0].strip() or eos_token


def render_specialist_prompt(request: dict, fmt: PromptFormat) -> str:
    """`protege.models.prompting.render_prompt`, with the format's pruning rule applied first."""
    drop_tools = drop_schema = False
    if fmt.pruning is not None:
        request, drop_tools, drop_schema = prune_request(request, fmt.pruning)
    extra = []
    functions = function_tools(request.get("tools"))
    if functions and request.get("tool_choice") != "none" and not drop_tools:
        extra.append(tools_instructions(functions))
    rf = request.get("response_format") or {}
    schema = _schema(request)
    if schema is not None and not drop_schema:
        extra.append(schema_instructions(schema))
    elif isinstance(rf, dict) and rf.get("type") == "json_object":
        extra.append("Answer with a JSON object.")
    messages = normalize_messages(request.get("messages") or [], "\n\n".join(extra))
    return render_chat(fmt.template, messages, bos_token=fmt.bos_token, eos_token=fmt.eos_token)
