"""Format guarantees: what a request asks the output to be, the grammar that enforces it, and the final check.

`plan_output(request)` reads `response_format`, `tools` and `tool_choice` and returns an
`OutputPlan`: unconstrained text, a JSON value for a schema, or tool calls. Its llguidance
grammar enforces the schema fully and fails closed: a keyword the engine cannot enforce is
refused with `UnsupportedSchemaError` naming it, never ignored. After decoding,
`OutputPlan.parse` validates the text with `jsonschema` (a second, independent check) and
returns the content or the OpenAI-shaped tool calls; any violation raises `InvalidOutputError`.

`TokenConstraint` drives an `llguidance.LLMatcher` token by token for a runtime's decode
loop: `allowed()` gives the mask of the next step, `advance(token)` consumes the sampled
token and raises if it broke the grammar (which is how a mask that silently failed to
apply is caught).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from protege.models.errors import (
    InvalidOutputError,
    InvalidRequestError,
    TruncatedOutputError,
    UnsupportedSchemaError,
    require,
)
from protege.models.prompting import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, function_tools

JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""Compact, deterministic JSON (the separators of `json.dumps`): no room for runaway whitespace."""

EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_UNIMPLEMENTED = re.compile(r'Unimplemented keys: \[([^\]]*)\]')


def _llguidance():
    return require("llguidance", "local")


def check_schema(schema: Any, where: str = "response_format") -> dict:
    """Refuse a schema that is not valid JSON Schema or that llguidance cannot enforce fully."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where}: the JSON schema must be an object", param=where)
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(f"{where}: invalid JSON schema: {exc.message}", param=where) from exc
    if not _finite(schema, schema, frozenset()):
        raise UnsupportedSchemaError(
            f"{where}: the JSON schema can never be satisfied: it requires a value inside itself through '$ref' "
            "with no way to stop (no optional branch, empty array or non-required property breaks the cycle); "
            "make the recursive field optional or add an anyOf alternative", keyword="$ref", param=where)
    llg = _llguidance()
    grammar = llg.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar)
    problems = [m for m in messages if is_error or not m.startswith("WARNING")] if messages else []
    if problems:
        raise _unsupported(problems[0], where)
    return schema


def _finite(node: Any, root: dict, resolving: frozenset[str]) -> bool:
    """Whether some finite JSON value satisfies `node` (False only for a `$ref` cycle every value must
    follow: a required property, a non-empty array or every branch of an anyOf leads back into it)."""
    if not isinstance(node, dict):
        return True
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in resolving:
            return False
        if ref.startswith("#"):
            target: Any = root
            for part in ref.lstrip("#").split("/")[1:]:
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            if not _finite(target, root, resolving | {ref}):
                return False
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list) and node[key] and not any(_finite(n, root, resolving) for n in node[key]):
            return False
    if isinstance(node.get("allOf"), list) and not all(_finite(n, root, resolving) for n in node["allOf"]):
        return False
    props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    if any(name in props and not _finite(props[name], root, resolving) for name in node.get("required") or []):
        return False
    if isinstance(node.get("minItems"), int) and node["minItems"] > 0 and not _finite(node.get("items"), root, resolving):
        return False
    return True


def _unsupported(message: str, where: str) -> UnsupportedSchemaError:
    found = _UNIMPLEMENTED.search(message)
    if found:
        keywords = [k.strip().strip('"') for k in found.group(1).split(",") if k.strip()]
        keyword = keywords[0] if keywords else None
        return UnsupportedSchemaError(
            f"{where}: the JSON schema keyword(s) {', '.join(repr(k) for k in keywords)} cannot be enforced by "
            "protege's grammar engine (llguidance); remove them from the schema, or send the request to an LLM",
            keyword=keyword, param=where,
        )
    if message.startswith("Unknown format"):
        return UnsupportedSchemaError(
            f"{where}: {message}; the 'format' keyword accepts the formats llguidance enforces (date-time, date, "
            "time, email, uuid, ...): remove it or use 'pattern'", keyword="format", param=where,
        )
    first = message.strip().splitlines()[0] if message.strip() else message
    keyword = "pattern" if "regex" in message else None
    return UnsupportedSchemaError(f"{where}: the JSON schema cannot be enforced: {first}", keyword=keyword, param=where)


def _json_rule(schema: dict) -> str:
    return "%json " + json.dumps({**schema, "x-guidance": JSON_OPTIONS})


def call_schema(fn: dict) -> dict:
    """The JSON shape of one call of function `fn`: {"name": <const>, "arguments": <its parameters>}."""
    return {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": fn.get("parameters") or EMPTY_PARAMETERS},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


@dataclass
class OutputPlan:
    """What the output must be, and the grammar that makes it so (None: free text)."""

    kind: str
    """"text", "json" or "tools"."""
    grammar: str | None = None
    schema: dict | None = None
    functions: dict[str, dict] = field(default_factory=dict)
    """Callable functions by name (their `parameters` schemas validate the arguments)."""
    require_call: bool = False
    parallel: bool = True

    @property
    def is_constrained(self) -> bool:
        return self.grammar is not None

    def parse(self, text: str, finish_reason: str) -> tuple[str | None, list[dict] | None]:
        """(content, tool_calls) of the raw output, validated; raises `InvalidOutputError` on any violation."""
        if self.kind == "text":
            return text, None
        if finish_reason == "length":
            raise TruncatedOutputError(
                f"the output stopped at max_tokens before it was complete (finish_reason 'length'); raise "
                f"max_tokens. Partial output: {text[:200]!r}", output=text,
            )
        if self.kind == "json":
            return self._parse_json(text), None
        return self._parse_calls(text)

    def _parse_json(self, text: str) -> str:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidOutputError(f"the output is not valid JSON ({exc}): {text[:200]!r}", output=text) from exc
        _validate(value, self.schema or {}, "the output", text)
        return text

    def _parse_calls(self, text: str) -> tuple[str | None, list[dict] | None]:
        stripped = text.strip()
        if not stripped.startswith(TOOL_CALL_OPEN):
            if self.require_call:
                raise InvalidOutputError(f"a tool call was required but the output is text: {text[:200]!r}",
                                         output=text)
            return text, None
        calls = []
        rest = stripped
        while rest:
            if not rest.startswith(TOOL_CALL_OPEN) or TOOL_CALL_CLOSE not in rest:
                raise InvalidOutputError(f"malformed tool call output: {text[:300]!r}", output=text)
            body, _, rest = rest[len(TOOL_CALL_OPEN):].partition(TOOL_CALL_CLOSE)
            rest = rest.strip()
            try:
                call = json.loads(body)
            except json.JSONDecodeError as exc:
                raise InvalidOutputError(f"a tool call is not valid JSON ({exc}): {body[:200]!r}", output=text) from exc
            if not isinstance(call, dict) or call.get("name") not in self.functions:
                raise InvalidOutputError(f"the output calls an unknown function: {body[:200]!r}", output=text)
            params = self.functions[call["name"]].get("parameters") or EMPTY_PARAMETERS
            args = call.get("arguments", {})
            _validate(args, params, f"the arguments of {call['name']}", text)
            calls.append({
                "id": "call_" + secrets.token_hex(12),
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(args, ensure_ascii=False)},
            })
        if not self.parallel and len(calls) > 1:
            raise InvalidOutputError("parallel_tool_calls is false but the output has several calls", output=text)
        return None, calls


def _validate(value: Any, schema: dict, what: str, text: str) -> None:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value), key=lambda e: e.path)
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise InvalidOutputError(f"{what} violates the schema at {where}: {err.message}", output=text)


def plan_output(request: dict) -> OutputPlan:
    """Read `response_format`, `tools`, `tool_choice` and `parallel_tool_calls`; refuse what cannot be enforced."""
    functions = function_tools(request.get("tools"))
    choice = request.get("tool_choice")
    rf = request.get("response_format")
    if functions and choice != "none":
        return _plan_tools(functions, choice, request.get("parallel_tool_calls", True) is not False)
    if choice not in (None, "none", "auto"):
        raise InvalidRequestError("tool_choice requires a non-empty tools list", param="tool_choice")
    if rf is None or (isinstance(rf, dict) and rf.get("type") in (None, "text")):
        return OutputPlan(kind="text")
    if not isinstance(rf, dict):
        raise InvalidRequestError("response_format must be an object", param="response_format")
    if rf["type"] == "json_object":
        schema: dict = {"type": "object"}
    elif rf["type"] == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise InvalidRequestError("response_format.json_schema.schema is required", param="response_format")
        schema = check_schema(spec["schema"])
    else:
        raise InvalidRequestError(f"unsupported response_format type {rf['type']!r}", param="response_format")
    llg = _llguidance()
    grammar = llg.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
    return OutputPlan(kind="json", grammar=grammar, schema=schema)


def plan_labels(labels: Any) -> OutputPlan:
    """Text that must be exactly one of `labels`: a label specialist's own output space, for requests that carry no
    `response_format` (the label set comes from the specialist's training data, never from the caller)."""
    options = sorted({str(label) for label in labels if str(label).strip()})
    if not options:
        raise InvalidRequestError("a label constraint needs at least one non-empty label")
    lark = "start: " + " | ".join(json.dumps(label, ensure_ascii=False) for label in options)
    return OutputPlan(kind="text", grammar=_llguidance().LLMatcher.grammar_from_lark(lark))


def _plan_tools(functions: list[dict], choice: Any, parallel: bool) -> OutputPlan:
    by_name = {fn["name"]: fn for fn in functions}
    require_call = choice == "required"
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in by_name:
            raise InvalidRequestError(f"tool_choice names {name!r}, which is not in tools", param="tool_choice")
        by_name, require_call = {name: by_name[name]}, True
    elif choice not in (None, "auto", "required"):
        raise InvalidRequestError(f"unsupported tool_choice {choice!r}", param="tool_choice")
    for name, fn in by_name.items():
        check_schema(fn.get("parameters") or EMPTY_PARAMETERS, where=f"tools[{name}].parameters")
    rules = [f"fn{i}: {_json_rule(call_schema(fn))}" for i, fn in enumerate(by_name.values())]
    alternatives = " | ".join(f"fn{i}" for i in range(len(by_name)))
    calls = 'call ("\\n" call)*' if parallel else "call"
    start = "calls" if require_call else "TEXT | calls"
    lark = "\n".join([
        f"start: {start}",
        f"calls: {calls}",
        f'call: "{TOOL_CALL_OPEN}" ({alternatives}) "{TOOL_CALL_CLOSE}"',
        *rules,
        r"TEXT: /[^<](.|\n)*/",
    ])
    grammar = _llguidance().LLMatcher.grammar_from_lark(lark)
    return OutputPlan(kind="tools", grammar=grammar, functions=by_name, require_call=require_call, parallel=parallel)


class TokenConstraint:
    """One request's grammar state, for a decode loop over token ids.

    `allowed()` returns a boolean numpy mask over the vocabulary for the next token;
    `advance(token)` consumes the token that was actually sampled and raises
    `InvalidOutputError` if the grammar rejects it. A mask that was computed but not applied
    (for instance because the host library swallowed an exception) is therefore caught at the
    next token, and `check()` re-raises any error recorded while computing a mask.
    """

    def __init__(self, tokenizer: Any, grammar: str, vocab_size: int):
        import numpy as np

        llg = _llguidance()
        self._np = np
        self.matcher = llg.LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise _unsupported(self.matcher.get_error(), "grammar")
        self.vocab_size = vocab_size
        self.masks_computed = 0
        self.tokens_consumed = 0
        self.error: BaseException | None = None

    def allowed(self):
        """The boolean mask of tokens the grammar allows next (records any failure for `check`)."""
        try:
            bits = self.matcher.compute_bitmask()
            if self.matcher.is_error():
                raise InvalidOutputError(f"the grammar engine failed: {self.matcher.get_error()}")
            mask = self._np.unpackbits(self._np.frombuffer(bits, dtype=self._np.uint8), bitorder="little")
            self.masks_computed += 1
            return mask[: self.vocab_size].view(bool)
        except BaseException as exc:
            self.error = exc
            raise

    def check(self) -> None:
        if self.error is not None:
            err = self.error
            raise InvalidOutputError(f"constrained decoding failed while computing the token mask: {err!r}") from err

    def advance(self, token: int) -> None:
        """Consume the sampled token; raise if the mask was not applied or the grammar rejects it."""
        self.check()
        if self.masks_computed != self.tokens_consumed + 1:
            raise InvalidOutputError(
                "constrained decoding was bypassed: the token mask was not computed for this step "
                f"({self.masks_computed} masks for {self.tokens_consumed + 1} tokens)"
            )
        self.tokens_consumed += 1
        if not self.matcher.consume_token(token):
            raise InvalidOutputError(f"the sampled token {token} violates the grammar: {self.matcher.get_error()[:300]}")

    def is_done(self) -> bool:
        """True when the grammar accepts no further token except end-of-sequence."""
        return self.matcher.is_stopped()

    def is_accepting(self) -> bool:
        return self.matcher.is_accepting()

    def finish(self) -> None:
        """At end of sequence: raise unless the grammar accepts the output as complete."""
        self.check()
        if not self.is_accepting():
            raise InvalidOutputError("the model ended before the constrained output was complete")


def validate_completion(request: dict, completion: dict) -> dict:
    """Check a finished completion (e.g. from a remote server) against the request's format, with jsonschema only.

    A remote server may ignore or only partly enforce a schema; this is the same final check the
    local runtimes apply. Raises `InvalidOutputError` / `TruncatedOutputError`; returns the completion.
    """
    choices = completion.get("choices") or []
    if not choices:
        raise InvalidOutputError("the completion has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    finish = choice.get("finish_reason")
    rf = request.get("response_format") if isinstance(request.get("response_format"), dict) else {}
    functions = {fn["name"]: fn for fn in function_tools(request.get("tools"))}
    choice_opt = request.get("tool_choice")
    calls = message.get("tool_calls") or []
    if functions and (choice_opt == "required" or isinstance(choice_opt, dict)) and not calls:
        raise InvalidOutputError("a tool call was required but the answer has none", output=message.get("content") or "")
    for call in calls:
        fn = call.get("function") or {}
        if fn.get("name") not in functions:
            raise InvalidOutputError(f"the answer calls an unknown function {fn.get('name')!r}")
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidOutputError(f"the arguments of {fn['name']} are not JSON: {exc}") from exc
        _validate(args, functions[fn["name"]].get("parameters") or EMPTY_PARAMETERS,
                  f"the arguments of {fn['name']}", fn.get("arguments") or "")
    if not calls and rf.get("type") in ("json_schema", "json_object"):
        text = message.get("content") or ""
        if finish == "length":
            raise TruncatedOutputError(f"the output stopped at max_tokens (finish_reason 'length'); raise max_tokens. "
                                       f"Partial output: {text[:200]!r}", output=text)
        schema = (rf.get("json_schema") or {}).get("schema") if rf["type"] == "json_schema" else {"type": "object"}
        OutputPlan(kind="json", schema=schema or {})._parse_json(text)
    return completion
