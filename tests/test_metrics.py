"""Evaluation metrics on hand-made cases, including the failure modes a specialist really produces."""

from __future__ import annotations

import json

import pytest

from protege.evaluate.metrics import METRICS, Context, bootstrap_ci, macro_f1

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "default": "c"},
                                         "days": {"type": "integer"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "book", "parameters": {
        "type": "object", "properties": {"hotel": {"type": "string"}, "nights": {"type": "number"}},
        "required": ["hotel", "nights"]}}},
]


def msg(*calls):
    return {"role": "assistant", "tool_calls": [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)}}
        for i, (n, a) in enumerate(calls)]}


def tool_score(cand, ref):
    return METRICS["tool_call"]().score(cand, ref, Context(tools=TOOLS))


def test_identical_call_matches():
    s = tool_score(msg(("get_weather", {"city": "Paris"})), msg(("get_weather", {"city": "Paris"})))
    assert s == {"ast_match": 1.0, "exact_match": 1.0, "name_match": 1.0, "valid": 1.0}


def test_int_for_float_and_loose_strings_match_but_not_exactly():
    s = tool_score(msg(("book", {"hotel": "the ritz ", "nights": 3})), msg(("book", {"hotel": "The Ritz", "nights": 3.0})))
    assert s["ast_match"] == 1.0 and s["exact_match"] == 0.0


def test_wrong_type_fails():
    s = tool_score(msg(("book", {"hotel": "Ritz", "nights": "3"})), msg(("book", {"hotel": "Ritz", "nights": 3})))
    assert s["ast_match"] == 0.0 and s["name_match"] == 1.0


def test_missing_required_argument_fails():
    assert tool_score(msg(("book", {"hotel": "Ritz"})), msg(("book", {"hotel": "Ritz", "nights": 2})))["ast_match"] == 0.0


def test_optional_argument_may_be_omitted_only_at_its_default():
    ref_default = msg(("get_weather", {"city": "Oslo", "unit": "c"}))
    ref_other = msg(("get_weather", {"city": "Oslo", "unit": "f"}))
    omitted = msg(("get_weather", {"city": "Oslo"}))
    assert tool_score(omitted, ref_default)["ast_match"] == 1.0
    assert tool_score(omitted, ref_other)["ast_match"] == 0.0


def test_unknown_argument_fails():
    assert tool_score(msg(("get_weather", {"city": "Oslo", "mood": "sunny"})), msg(("get_weather", {"city": "Oslo"})))["ast_match"] == 0.0


def test_swapped_parallel_calls_match_but_missing_one_does_not():
    a, b = ("get_weather", {"city": "Oslo"}), ("book", {"hotel": "Ritz", "nights": 1})
    assert tool_score(msg(b, a), msg(a, b))["ast_match"] == 1.0
    assert tool_score(msg(b, a), msg(a, b))["exact_match"] == 1.0
    assert tool_score(msg(a), msg(a, b))["ast_match"] == 0.0
    assert tool_score(msg(a, a), msg(a, b))["name_match"] == 0.0


def test_unparseable_arguments_are_invalid():
    s = tool_score(msg(("get_weather", '{"city": "Oslo"')), msg(("get_weather", {"city": "Oslo"})))
    assert s["valid"] == 0.0 and s["ast_match"] == 0.0
    assert tool_score({"role": "assistant", "content": "It is sunny"}, msg(("get_weather", {"city": "Oslo"})))["ast_match"] == 0.0


def test_json_field_scores_and_schema_validity():
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}},
              "required": ["name", "qty"], "additionalProperties": False}
    m = METRICS["json"]()
    ref = '{"name": "Ann", "qty": 2}'
    assert m.score(ref, ref, Context(schema=schema)) == {"field_f1": 1.0, "exact_match": 1.0, "schema_valid": 1.0, "parses": 1.0}
    half = m.score('{"name": "Ann", "qty": 3}', ref, Context(schema=schema))
    assert half["field_f1"] == pytest.approx(0.5) and half["schema_valid"] == 1.0
    extra = m.score('{"name": "Ann", "qty": 2, "x": 1}', ref, Context(schema=schema))
    assert extra["schema_valid"] == 0.0 and extra["field_f1"] == pytest.approx(0.8)
    assert m.score("{nope", ref, Context(schema=schema))["parses"] == 0.0


def test_labels_and_macro_f1():
    m = METRICS["label"]()
    assert m.score(" Billing.", "billing", Context())["accuracy"] == 1.0
    assert m.score("technical", "billing", Context())["accuracy"] == 0.0
    assert macro_f1(["a", "a", "b", "b"], ["a", "a", "b", "b"]) == 1.0
    assert macro_f1(["a", "a", "a", "a"], ["a", "a", "b", "b"]) == pytest.approx((2 * 2 / (4 + 2) + 0) / 2)


def test_text_similarity():
    m = METRICS["text"]()
    assert m.score("The deploy was rolled back.", "the deploy was rolled back", Context())["rouge_l"] == 1.0
    partial = m.score("deploy rolled back", "the deploy was rolled back tonight", Context())
    assert 0.3 < partial["rouge_l"] < 1 and 0.3 < partial["token_f1"] < 1
    assert m.score("", "something", Context())["rouge_l"] == 0.0


def test_bootstrap_ci_brackets_the_mean():
    values = [1.0] * 80 + [0.0] * 20
    lo, hi = bootstrap_ci(values)
    assert lo < 0.8 < hi and hi - lo < 0.25
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
