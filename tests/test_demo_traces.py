"""The bundled demo traces: shape, correctness of the reference answers, determinism."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_demo_traces.py"
BUNDLED = REPO / "src" / "protege" / "data" / "demo_traces.jsonl.gz"


@lru_cache(maxsize=1)
def records() -> tuple[dict, ...]:
    with gzip.open(BUNDLED, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


def by_task(task: str) -> list[dict]:
    return [r for r in records() if r["metadata"]["task"] == task]


def message(rec: dict) -> dict:
    return rec["response"]["choices"][0]["message"]


def user_text(rec: dict) -> str:
    return "\n".join(m.get("content") or "" for m in rec["request"]["messages"] if m["role"] != "assistant")


def load_script():
    spec = importlib.util.spec_from_file_location("make_demo_traces", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _validator(schema_json: str):
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(instance, schema: dict) -> None:
    """jsonschema.validate, with the validator built once per distinct schema."""
    _validator(json.dumps(schema, sort_keys=True)).validate(instance)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    raw = iban.replace(" ", "")
    return int("".join(str(int(c, 36)) for c in raw[4:] + raw[:4])) % 97 == 1


def test_volume_tasks_and_mix():
    recs = records()
    assert len(recs) >= 3000
    tasks = Counter(r["metadata"]["task"] for r in recs)
    assert len([t for t in tasks if t != "open_ended"]) >= 6
    assert 0.05 <= tasks["open_ended"] / len(recs) <= 0.15
    assert all(n >= 50 for n in tasks.values()), tasks
    assert max(tasks.values()) >= 3 * min(tasks.values())  # unequal volumes, like real traffic
    workloads = Counter(r["metadata"]["workload"] for r in recs)
    assert len(workloads) >= 4
    assert len({r["metadata"]["task"] for r in recs if r["metadata"]["workload"] == "support-agent"}) >= 3


def test_every_line_is_a_chat_completion_call():
    recs = records()
    ts = [r["metadata"]["ts"] for r in recs]
    assert ts == sorted(ts)
    assert 12 * 86400 <= ts[-1] - ts[0] <= 14 * 86400
    ids = set()
    for r in recs:
        assert set(r) == {"request", "response", "metadata"}
        req, resp, meta = r["request"], r["response"], r["metadata"]
        assert set(meta) == {"task", "workload", "ts"} and isinstance(meta["ts"], float)
        assert isinstance(req["model"], str) and req["messages"][-1]["role"] in {"user", "tool"}
        assert resp["object"] == "chat.completion" and resp["id"].startswith("chatcmpl-")
        assert resp["created"] == int(meta["ts"])
        assert resp["model"].startswith(req["model"])
        assert len(resp["choices"]) == 1 and resp["choices"][0]["index"] == 0
        msg = message(r)
        assert msg["role"] == "assistant"
        if msg.get("tool_calls"):
            assert resp["choices"][0]["finish_reason"] == "tool_calls" and msg["content"] is None
        else:
            assert resp["choices"][0]["finish_reason"] == "stop" and msg["content"]
            assert req.get("tool_choice") != "required"
        usage = resp["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        ids.add(resp["id"])
    assert len(ids) == len(recs)


def assert_strict_schema(schema: dict) -> None:
    """OpenAI strict mode: every object lists all its properties as required and forbids others."""
    if schema.get("type") == "object" or "properties" in schema:
        assert schema.get("additionalProperties") is False
        assert set(schema["required"]) == set(schema["properties"])
        for sub in schema["properties"].values():
            assert_strict_schema(sub)
    if "items" in schema:
        assert_strict_schema(schema["items"])


def string_leaves(value, schema):
    """(value, schema) for every free-text string in an instance (enums excluded)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from string_leaves(v, schema["properties"][k])
    elif isinstance(value, list):
        for v in value:
            yield from string_leaves(v, schema["items"])
    elif isinstance(value, str) and "enum" not in schema:
        yield value


def test_json_schema_answers_validate_and_come_from_the_input():
    checked = 0
    for r in records():
        fmt = r["request"].get("response_format")
        if not fmt:
            continue
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]
        assert_strict_schema(schema)
        answer = json.loads(message(r)["content"])
        validate(answer, schema)
        text = user_text(r)
        for s in string_leaves(answer, schema):
            assert s in text, (s, r["metadata"])
        checked += 1
    assert checked >= 300


def test_tool_calls_name_a_given_tool_and_validate_against_its_parameters():
    calls = parallel = 0
    for r in records():
        req = r["request"]
        tools = {t["function"]["name"]: t["function"]["parameters"] for t in req.get("tools", [])}
        msgs = [m for m in req["messages"] if m["role"] == "assistant"] + [message(r)]
        for msg in msgs:
            for tc in msg.get("tool_calls") or []:
                assert tc["type"] == "function" and tc["id"].startswith("call_")
                assert tc["function"]["name"] in tools
                args = json.loads(tc["function"]["arguments"])
                validate(args, tools[tc["function"]["name"]])
                calls += 1
        n = len(message(r).get("tool_calls") or [])
        parallel += n > 1
        if r["metadata"]["task"] == "travel_tools":
            assert n >= 1
    assert calls >= 500 and parallel >= 30


def test_travel_tool_arguments_match_the_request():
    mod = load_script()
    codes = {code: city for city, code in mod.CITIES}
    cities = {city: code for city, code in mod.CITIES}
    for r in by_task("travel_tools"):
        last_user = r["request"]["messages"][-1]["content"]
        context = user_text(r)
        for tc in message(r)["tool_calls"]:
            args = json.loads(tc["function"]["arguments"])
            name = tc["function"]["name"]
            if name == "search_flights":
                assert args["origin"] in codes and args["destination"] in codes
                assert args["origin"] != args["destination"]
                assert args["departure_date"] < args.get("return_date", "9999")
            if name in ("search_hotels", "get_weather"):  # named, or given as its airport earlier
                assert args["city"] in context or cities[args["city"]] in context
            if name == "search_hotels":
                assert args["check_in"] < args["check_out"]
            if name in ("get_booking", "cancel_booking"):
                assert args["booking_reference"] in context
            if name == "convert_currency":
                assert mod.money_text(args["amount"]) in last_user


def test_classification_answers_are_in_the_label_set_of_the_prompt():
    recs = by_task("ticket_triage")
    seen = Counter()
    for r in recs:
        system = r["request"]["messages"][0]["content"]
        labels = re.search(r"^Labels: (.+)$", system, re.MULTILINE).group(1).split(", ")
        answer = message(r)["content"]
        assert answer in labels
        seen[answer] += 1
    assert len(seen) == 5 and min(seen.values()) >= 20


def test_translations_come_from_the_phrase_bank():
    mod = load_script()
    column = {lang: col for lang, col in mod.LANGS}
    for r in by_task("ui_translation"):
        system, user = (m["content"] for m in r["request"]["messages"])
        col = column[re.search(r"strings into (\w+)\.", system).group(1)]
        out_lines = message(r)["content"].split("\n")
        english = {row[col]: row[0] for row in mod.PHRASES}
        sources = [english[line] for line in out_lines]  # KeyError: not a bank translation
        lines = user.split("\n")
        assert [ln.removeprefix("Translate: ") for ln in lines[-len(sources):]] == sources


def test_free_text_answers_only_use_numbers_from_the_input():
    for task in ("policy_faq", "incident_summary"):
        for r in by_task(task):
            text = user_text(r)
            for number in re.findall(r"\d+(?:[.,]\d+)*", message(r)["content"]):
                assert number in text, (task, number)


def test_user_content_carries_fake_pii():
    text = "\n".join(user_text(r) for r in records())
    card_re = r"(?<![A-Z0-9]{4} )\b(?:[45]\d{3}([ -]?)\d{4}\1\d{4}\1\d{4}|3[47]\d{2}([ -]?)\d{6}\2\d{5})\b"
    cards = [re.sub(r"[ -]", "", m.group(0)) for m in re.finditer(card_re, text)]
    assert len(cards) >= 20 and all(luhn_ok(c) for c in cards)
    ibans = re.findall(r"\b[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){3,7}(?: [A-Z0-9]{1,4})?\b", text)
    assert len(ibans) >= 10 and all(iban_ok(i) for i in ibans)
    assert len(set(re.findall(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b", text))) >= 500
    assert len(re.findall(r"\b\d{3}-\d{2}-\d{4}\b", text)) >= 5
    assert len(re.findall(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", text)) >= 100
    assert len(re.findall(r"\+\d{1,2} [\d() ]{6,}", text)) >= 100


def test_open_ended_calls_are_one_offs():
    recs = by_task("open_ended")
    asks = [r["request"]["messages"][-1]["content"] for r in recs]
    assert len(set(asks)) == len(asks)
    answers = [message(r)["content"] for r in recs]
    assert len(set(answers)) == len(answers)
    words = [set(re.findall(r"[a-z']+", a.lower())) for a in asks]
    for i, w in enumerate(words):  # no request has many close rewordings
        close = sum(len(w & v) / len(w | v) >= 0.5 for j, v in enumerate(words) if j != i)
        assert close < 10, asks[i]
    assert all(not message(r).get("tool_calls") for r in recs)


def run_script(*args: str) -> None:
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=120)


def test_regeneration_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    run_script("--out", str(a), "--calls", "400")
    run_script("--out", str(b), "--calls", "400")
    run_script("--out", str(c), "--calls", "400", "--seed", "1")
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()) != gzip.decompress(c.read_bytes())
    assert len(gzip.decompress(a.read_bytes()).splitlines()) == 400


def test_bundled_file_equals_a_default_regeneration(tmp_path):
    out = tmp_path / "demo.jsonl.gz"
    run_script("--out", str(out))
    fresh = hashlib.sha256(gzip.decompress(out.read_bytes())).hexdigest()
    bundled = hashlib.sha256(gzip.decompress(BUNDLED.read_bytes())).hexdigest()
    assert fresh == bundled, "the bundled traces are stale: run `python scripts/make_demo_traces.py`"
    assert BUNDLED.stat().st_size < 3_000_000


def test_demo_traces_path_points_at_the_bundled_file():
    data = pytest.importorskip("protege.data")
    assert data.demo_traces_path().resolve() == BUNDLED.resolve()
