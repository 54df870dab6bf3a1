"""From an OpenAI chat request to the prompt text a local model sees.

Training and serving must show a model the same text, so both use `render_prompt`:
messages are normalised to plain `{role, content}` strings (tool results and earlier tool
calls become text), the tool list and the requested JSON schema are described in the
system message, and the model's chat template (from the GGUF file, or a built-in one)
renders the conversation.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from protege.models.errors import InvalidRequestError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

GEMMA = (
    "{{ bos_token }}"
    "{% set sys = namespace(text='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set sys.text = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + (sys.text if role == 'user' else '') + message['content'] + '<end_of_turn>\n' }}"
    "{% if role == 'user' %}{% set sys.text = '' %}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

TEMPLATES = {"chatml": CHATML, "gemma": GEMMA}

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def dumps(value: Any) -> str:
    """JSON as the prompts and the grammar both write it (", " and ": " separators, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False)


def content_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequestError(f"local models accept text content only, not {kind!r} parts", param="messages")
        return "".join(parts)
    raise InvalidRequestError(f"message content must be a string or a list of parts, not {type(content).__name__}",
                              param="messages")


def function_tools(tools: list[dict] | None) -> list[dict]:
    """The `function` objects of an OpenAI `tools` list, checked."""
    out = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or "function" not in tool:
            raise InvalidRequestError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", param="tools")
        fn = tool["function"]
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequestError(f"tools[{i}].function needs a name", param="tools")
        out.append(fn)
    names = [fn["name"] for fn in out]
    if len(set(names)) != len(names):
        raise InvalidRequestError("tool names must be unique", param="tools")
    return out


def tools_instructions(functions: list[dict]) -> str:
    """The system-prompt text that presents the tools and the call format."""
    sigs = "\n".join(
        dumps({"name": fn["name"], "description": fn.get("description", ""),
               "parameters": fn.get("parameters") or {"type": "object", "properties": {}}})
        for fn in functions
    )
    return (
        "You can call the following functions.\n<tools>\n" + sigs + "\n</tools>\n"
        f"To call a function, answer with {TOOL_CALL_OPEN}{{\"name\": <function name>, \"arguments\": "
        f"<arguments as a JSON object>}}{TOOL_CALL_CLOSE}, one per call."
    )


def schema_instructions(schema: dict) -> str:
    return "Answer with a JSON value that follows this JSON Schema:\n" + dumps(schema)


def normalize_messages(messages: list[dict], system_extra: str = "") -> list[dict[str, str]]:
    """OpenAI messages as plain {role, content} strings; `system_extra` is appended to the system text."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list", param="messages")
    out: list[dict[str, str]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg:
            raise InvalidRequestError(f"messages[{i}] needs a role", param="messages")
        role = msg["role"]
        if role == "developer":
            role = "system"
        text = content_text(msg.get("content"))
        if role == "assistant" and msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                fn = call.get("function") or {}
                args = fn.get("arguments") or "{}"
                try:
                    args_value = json.loads(args) if isinstance(args, str) else args
                except json.JSONDecodeError:
                    args_value = args
                calls.append(TOOL_CALL_OPEN + dumps({"name": fn.get("name"), "arguments": args_value}) + TOOL_CALL_CLOSE)
            text = (text + "\n" if text else "") + "\n".join(calls)
        elif role in ("tool", "function"):
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        elif role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"messages[{i}] has an unknown role {role!r}", param="messages")
        out.append({"role": role, "content": text})
    if system_extra:
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + system_extra).strip()}
        else:
            out.insert(0, {"role": "system", "content": system_extra})
    return out


@lru_cache(maxsize=16)
def _compile(template: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)

    def raise_exception(message: str):
        raise InvalidRequestError(f"the chat template refused the conversation: {message}", param="messages")

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(template: str, messages: list[dict[str, str]], bos_token: str = "", eos_token: str = "") -> str:
    """Render normalised messages with a Jinja chat template, ending with the assistant's turn."""
    return _compile(template).render(messages=messages, add_generation_prompt=True, bos_token=bos_token,
                                     eos_token=eos_token)


def render_prompt(request: dict, template: str, bos_token: str = "", eos_token: str = "") -> str:
    """The full prompt text for an OpenAI chat request: tools and schema described, then the template."""
    extra = []
    functions = function_tools(request.get("tools"))
    if functions and request.get("tool_choice") != "none":
        extra.append(tools_instructions(functions))
    rf = request.get("response_format") or {}
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            extra.append(schema_instructions(schema))
    elif isinstance(rf, dict) and rf.get("type") == "json_object":
        extra.append("Answer with a JSON object.")
    messages = normalize_messages(request.get("messages") or [], "\n\n".join(extra))
    return render_chat(template, messages, bos_token=bos_token, eos_token=eos_token)
