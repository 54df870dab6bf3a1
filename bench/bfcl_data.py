"""BFCL for protege's benchmarks: questions as OpenAI tools and logged calls, scored by BFCL's own checker.

Shared by `bench/bfcl_zero_shot.py`, `bench/bfcl.py` and `bench/analyze.py`. BFCL comes from PyPI
(`pip install --no-deps bfcl-eval`); `load_checker` stubs its `bfcl_eval.constants.model_config`
so that none of its heavy dependencies (the model handlers) is imported.

- `load_category(name)`: (question, possible answer) pairs of one BFCL v4 category, in file order;
- `tools_for(question)`: its functions as OpenAI tools (BFCL's "dict"/"float"/"tuple"/"any" types as
  JSON Schema, `additionalProperties: false` at the top, as OpenAI's strict mode has it);
- `bfcl_records(categories)`: each question as a logged call (`CallRecord`) whose response is the
  ground truth standing in for the LLM's answer (`reference_calls`: the first acceptable value of
  each parameter, optional parameters whose first acceptable value is "" left out);
- `decode_calls`: what protege's runtime answers, constrained or not, as BFCL's model output
  (`[{name: {arg: value}}]`) for `ast_checker`.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple")
TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "integer": "integer", "string": "string",
            "boolean": "boolean", "array": "array", "number": "number", "object": "object"}


def load_checker():
    """(BFCL's `ast_checker`, `Language.PYTHON`) without its heavy dependencies (model_config stubbed)."""
    stub = types.ModuleType("bfcl_eval.constants.model_config")

    class _Config:
        underscore_to_dot = False

    class _Mapping(dict):
        def __getitem__(self, key):
            return _Config()

    stub.MODEL_CONFIG_MAPPING = _Mapping()
    sys.modules["bfcl_eval.constants.model_config"] = stub
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker, Language.PYTHON


def load_category(name: str, limit: int | None = None) -> list[tuple[dict, dict]]:
    """(question, possible answer) pairs of a BFCL v4 category, the first `limit` of them."""
    import bfcl_eval

    data_dir = Path(bfcl_eval.__file__).parent / "data"
    questions = [json.loads(line) for line in (data_dir / f"BFCL_v4_{name}.json").read_text().splitlines() if line]
    answers = {a["id"]: a for a in (json.loads(line) for line in
               (data_dir / "possible_answer" / f"BFCL_v4_{name}.json").read_text().splitlines() if line)}
    return [(q, answers[q["id"]]) for q in questions[:limit]]


def to_json_schema(spec):
    """BFCL's parameter types ("dict", "float", "tuple", "any") as JSON Schema."""
    if isinstance(spec, list):
        return [to_json_schema(s) for s in spec]
    if not isinstance(spec, dict):
        return spec
    out = {}
    for key, value in spec.items():
        if key == "type":
            if value in TYPE_MAP:
                out["type"] = TYPE_MAP[value]
            continue  # "any": no type constraint
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value)
        elif key in ("description", "enum", "required", "default", "minimum", "maximum"):
            out[key] = value  # "format" is left out: BFCL's formats are informal ("date", "YYYY-MM-DD"...)
    return out


def tools_for(question: dict) -> list[dict]:
    """BFCL functions as OpenAI tools. Python functions take no unknown keyword arguments, so the top-level
    parameters get `additionalProperties: false` (as OpenAI's strict mode requires); without it a base model
    keeps inventing extra keys until max_tokens."""
    return [{"type": "function", "function": {"name": f["name"], "description": f.get("description", ""),
                                              "parameters": {**to_json_schema(f["parameters"]),
                                                             "additionalProperties": False}}}
            for f in question["function"]]


_OMIT = object()


def _first_choice(acceptable: list, required: bool = False) -> Any:
    """The first acceptable value of a parameter; "" means it may be left out (`_OMIT`), unless the function
    requires it, then the next value is taken. A dict value is itself a map of keys to acceptable values,
    and so is each dict of a list of dicts."""
    values = [v for v in acceptable if v != ""] if required else acceptable
    if not values or values[0] == "":
        return _OMIT
    value = values[0]
    if isinstance(value, dict):
        return _choose_args(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_choose_args(v) for v in value]
    return value


def _choose_args(possible: dict, function: dict | None = None) -> dict:
    params = (function or {}).get("parameters") or {}
    known, required = params.get("properties"), set(params.get("required") or ())
    chosen = {}
    for key, acceptable in possible.items():
        if known is not None and key not in known:
            continue  # a few BFCL answers name a parameter the function does not have
        if not isinstance(acceptable, list):  # already a value, not a list of acceptable ones
            chosen[key] = acceptable
            continue
        value = _first_choice(acceptable, key in required)
        if value is not _OMIT:
            chosen[key] = value
    return chosen


def reference_calls(question: dict, answer: dict) -> list[dict]:
    """The ground truth as OpenAI `tool_calls`: the answer a perfect LLM would have logged."""
    functions = {f["name"]: f for f in question["function"]}
    calls = []
    for j, call in enumerate(answer["ground_truth"]):
        [(name, possible)] = call.items()
        args = _choose_args(possible, functions.get(name))
        calls.append({"id": f"call_{j}", "type": "function",
                      "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})
    return calls


def bfcl_records(categories: Iterable[str] = CATEGORIES, per_category: int | None = None,
                 model: str = "gpt-4o") -> list:
    """BFCL questions as logged calls: the question's first turn and its functions as tools (tool_choice
    "auto"), answered with `reference_calls`; id = BFCL's id, metadata task = the category."""
    from protege.records import CallRecord

    records = []
    for category in categories:
        for question, answer in load_category(category, per_category):
            request = {"model": model, "messages": question["question"][0], "tools": tools_for(question),
                       "tool_choice": "auto"}
            message = {"role": "assistant", "content": None, "tool_calls": reference_calls(question, answer)}
            response = {"object": "chat.completion", "model": model,
                        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}]}
            records.append(CallRecord(id=question["id"], ts=float(len(records)), request=request, response=response,
                                      metadata={"task": category}))
    return records


def as_bfcl_output(tool_calls: list[dict] | None) -> list[dict]:
    """OpenAI tool calls as BFCL's model output: `[{name: {argument: value}}]`."""
    return [{c["function"]["name"]: json.loads(c["function"]["arguments"])} for c in tool_calls or []]


def decode_calls(runtime, request: dict, *, constrained: bool, max_tokens: int, adapter: str | None = None,
                 prompt: str | None = None) -> list[dict]:
    """The runtime's calls for a tool request, as OpenAI tool calls; raises `RuntimeRequestError` when the
    output is not a valid call (malformed, unknown function, arguments off the schema, cut at max_tokens).

    constrained: `tool_choice="required"`, decoded under the llguidance grammar of the call schemas.
    unconstrained: the same prompt (`prompt`, else the runtime's own rendering), free decoding (the runtime
    still ends an answer that repeats a call verbatim), then the text is parsed and validated.
    """
    from protege.models.constrain import OutputPlan
    from protege.models.prompting import function_tools
    from protege.models.runtime import Generation, SamplingParams, _stop_repeated_calls

    request = {**request, "tool_choice": "required", "max_tokens": max_tokens, "temperature": 0}
    request.pop("stream", None)
    if constrained:
        completion = runtime.complete(request, adapter=adapter) if adapter else runtime.complete(request)
        return completion["choices"][0]["message"].get("tool_calls") or []
    functions = {fn["name"]: fn for fn in function_tools(request.get("tools"))}
    plan = OutputPlan(kind="tools", functions=functions, require_call=True,
                      parallel=request.get("parallel_tool_calls", True) is not False)
    gen = Generation(iter(()))
    pieces = runtime._generate(prompt or runtime.render(request), plan, SamplingParams(max_tokens=max_tokens),
                               adapter, gen)
    text = "".join(_stop_repeated_calls(pieces, gen) if plan.parallel else pieces)
    _, calls = plan.parse(text.strip(), gen.finish_reason)
    return calls or []
