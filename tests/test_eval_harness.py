"""The evaluation harness on hand-made candidates: valid rates, headline metric, CI, latency, by output kind."""

from __future__ import annotations

import json

import pytest

from protege.evaluate.harness import Answer, Candidate, ReferenceCandidate, evaluate
from protege.specialist.examples import as_examples

from .train_support import tool_rows, triage_rows


class Scripted(Candidate):
    """Answers from a function of the example (a real subclass of the extension point)."""

    def __init__(self, name, fn, latency=10.0):
        self.name, self.fn, self.latency = name, fn, latency

    def answer(self, example):
        message = self.fn(example)
        return Answer(message, self.latency, None, None if message else "invalid output")


def test_labels_accuracy_macro_f1_and_validity():
    exs = as_examples(triage_rows(20))
    always_billing = Scripted("billing", lambda ex: {"role": "assistant", "content": "Billing."})
    garbage = Scripted("garbage", lambda ex: {"role": "assistant", "content": "I think it is about money"})
    report = evaluate(exs, [ReferenceCandidate(), always_billing, garbage], task="triage")
    assert report.output_kind == "label" and report.headline_metric == "accuracy"
    ref, billing, bad = report.rows
    assert ref.headline == 1.0 and ref.valid_rate == 1.0 and ref.metrics["macro_f1"] == 1.0
    assert billing.headline == pytest.approx(0.25) and billing.valid_rate == 1.0
    assert billing.ci_low <= 0.25 <= billing.ci_high and billing.ci_high - billing.ci_low > 0
    assert billing.metrics["macro_f1"] == pytest.approx(0.1)  # F1 0.4 on billing, 0 on the three others
    assert bad.valid_rate == 0.0 and bad.headline == 0.0
    assert billing.latency_p50_ms == 10.0 and ref.cost_per_1k_usd == pytest.approx(0.2)


def test_tool_calls_swapped_wrong_type_and_missing_required():
    exs = as_examples(tool_rows(6))

    def mutate(kind):
        def fn(ex):
            calls = ex.answer["tool_calls"]
            args = json.loads(calls[0]["function"]["arguments"])
            if kind == "wrong_type":
                args["days"] = str(args["days"])
            elif kind == "missing":
                args.pop("city")
            elif kind == "text":
                return {"role": "assistant", "content": "Sure, let me check."}
            elif kind == "none":
                return None
            return {"role": "assistant", "content": None, "tool_calls": [
                {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(args)}}]}
        return fn

    rows = {r.name: r for r in evaluate(exs, [Scripted(k, mutate(k)) for k in
                                              ("same", "wrong_type", "missing", "text", "none")]).rows}
    assert rows["same"].headline == 1.0 and rows["same"].valid_rate == 1.0
    assert rows["wrong_type"].headline == 0.0 and rows["wrong_type"].metrics["name_match"] == 1.0
    assert rows["missing"].headline == 0.0
    assert rows["text"].valid_rate == 0.0 and rows["none"].valid_rate == 0.0


def test_report_round_trips_as_json():
    exs = as_examples(triage_rows(8))
    report = evaluate(exs, [ReferenceCandidate()], task="triage")
    data = json.loads(report.to_json())
    assert data["rows"][0]["n"] == 8 and data["task"] == "triage"
    assert report.table()[0]["valid %"] == 100.0


def test_few_shot_inserts_the_most_similar_calls_before_the_question():
    from protege.evaluate.harness import FewShotCandidate

    pool = as_examples(triage_rows(20))
    query = as_examples(triage_rows(24))[-1]
    cand = FewShotCandidate("few", runtime=None, pool=pool, k=2)
    request = cand.build_request(query)
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert request["messages"][-1] == query.request["messages"][-1]
    assert request["temperature"] == 0
