"""Filters drop what they should and count why; splits are stratified, time-ordered on request, reproducible."""

from __future__ import annotations


from protege.curate.filters import FilterReport, filter_calls
from protege.curate.splits import split_by_task
from protege.records import CallRecord

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}


def rec(i: int, user: str, *, content="ok", finish="stop", status=200, error=None, tools=None, tool_calls=None,
        response_format=None, refusal=None, response=True, task="t") -> CallRecord:
    req = {"model": "gpt-4o", "messages": [{"role": "user", "content": user}]}
    if tools:
        req["tools"] = tools
    if response_format:
        req["response_format"] = response_format
    msg = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if refusal:
        msg["refusal"] = refusal
    resp = {"choices": [{"index": 0, "message": msg, "finish_reason": finish}]} if response else None
    return CallRecord(id=f"c{i:03d}", ts=1000.0 + i, request=req, response=resp, status=status, error=error, task_id=task)


def call(name, args):
    return [{"id": "1", "type": "function", "function": {"name": name, "arguments": args}}]


def test_each_reason_is_counted_and_dropped():
    records = [
        rec(1, "good one about apples and pears and more"),
        rec(2, "upstream failed", status=502, error="bad gateway", response=False),
        rec(3, "cut off", finish="length"),
        rec(4, "please do the bad thing", content="I'm sorry, but I can't help with that."),
        rec(5, "refusal field", refusal="no"),
        rec(6, "json please", response_format=SCHEMA, content="not json"),
        rec(7, "json wrong type", response_format=SCHEMA, content='{"n": "seven"}'),
        rec(8, "json fine", response_format=SCHEMA, content='{"n": 7}'),
        rec(9, "weather unknown tool", tools=TOOLS, content=None, tool_calls=call("get_wether", '{"city": "Oslo"}')),
        rec(10, "weather bad args", tools=TOOLS, content=None, tool_calls=call("get_weather", '{"town": "Oslo"}')),
        rec(11, "weather args not json", tools=TOOLS, content=None, tool_calls=call("get_weather", '{"city": ')),
        rec(12, "weather fine", tools=TOOLS, content=None, tool_calls=call("get_weather", '{"city": "Oslo"}')),
        rec(13, "good one about apples and pears and more"),  # exact duplicate of 1
        rec(14, "the quick brown fox jumps over the lazy dog near the river bank at dawn every single day of the week"),
        rec(15, "the quick brown fox jumps over the lazy dog near the river bank at dawn every single day of the week!"),
    ]
    report = FilterReport()
    kept = filter_calls(records, report=report)
    assert [r.id for r in kept] == ["c001", "c008", "c012", "c014"]
    assert dict(report.dropped) == {"upstream_error": 1, "truncated": 1, "refusal": 2, "invalid_json": 2,
                                    "invalid_tool_call": 3, "duplicate": 1, "near_duplicate": 1}
    assert report.total == 15 and report.kept == 4
    assert report.examples["invalid_tool_call"] == ["c009", "c010", "c011"]


def test_near_duplicates_can_be_kept():
    records = [rec(1, "a b c d e f g h i j k l m n o p"), rec(2, "a b c d e f g h i j k l m n o p q")]
    assert len(filter_calls(records, near_duplicate_threshold=None)) == 2


def _many(n_a=50, n_b=10):
    return [rec(i, f"call {i}", task="a") for i in range(n_a)] + [rec(100 + i, f"call b {i}", task="b") for i in range(n_b)]


def test_split_is_stratified_and_reproducible():
    s1 = split_by_task(_many(), test_share=0.2, seed=7)
    s2 = split_by_task(list(reversed(_many())), test_share=0.2, seed=7)
    assert {t: (len(s.train), len(s.test)) for t, s in s1.items()} == {"a": (40, 10), "b": (8, 2)}
    assert [r.id for r in s1["a"].test] == [r.id for r in s2["a"].test]  # input order does not matter
    s3 = split_by_task(_many(), test_share=0.2, seed=8)
    assert [r.id for r in s1["a"].test] != [r.id for r in s3["a"].test]


def test_time_ordered_split_tests_on_the_newest_calls():
    s = split_by_task(_many(), test_share=0.2, time_ordered=True)["a"]
    assert max(r.ts for r in s.train) < min(r.ts for r in s.test)


def test_tiny_task_still_gets_one_test_call():
    s = split_by_task([rec(1, "x", task="z"), rec(2, "y", task="z")], test_share=0.2)["z"]
    assert (len(s.train), len(s.test)) == (1, 1)


def test_a_task_with_enough_calls_holds_out_what_the_gate_needs():
    """20% of 50 calls is 10; the gate needs 12: held out once the task has 4x that (48), not below."""
    s = split_by_task(_many(), test_share=0.2, min_test=12)
    assert (len(s["a"].train), len(s["a"].test)) == (38, 12)
    assert (len(s["b"].train), len(s["b"].test)) == (8, 2)  # 10 calls: too few to spare 12
    assert len(split_by_task(_many(n_a=200), test_share=0.2, min_test=12)["a"].test) == 40  # the share, when larger
