"""PII scrubbing: recall and precision on the labelled set, aligned placeholders, nothing left in exports."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from protege.curate.evaluate_pii import evaluate_scrubber
from protege.curate.pipeline import curate_calls
from protege.curate.scrub import Scrubber
from protege.records import CallRecord

CASES = Path(__file__).parent / "data" / "pii_cases.jsonl"
STRUCTURED = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "URL", "SECRET")


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.fixture(scope="module")
def scores(scrubber):
    cases = [json.loads(line) for line in CASES.read_text().splitlines()]
    return evaluate_scrubber(scrubber, cases)


@pytest.mark.parametrize("type_", STRUCTURED)
def test_structured_types_recall_at_least_99_percent(scores, type_):
    s = scores[type_]
    assert s.gold >= 100
    assert s.recall >= 0.99, f"{type_} recall {s.recall:.3f}; missed e.g. {s.misses}"
    assert s.precision >= 0.99, f"{type_} precision {s.precision:.3f}"


def test_person_names_recall_is_measured(scores, scrubber):
    """Names are the hard type (spaCy NER + census first names + context rules): measured, floor-guarded."""
    s = scores["PERSON"]
    print(f"PERSON recall {s.recall:.3f} precision {s.precision:.3f} ({scrubber.detectors[-1].backend})")
    floor = 0.8 if "spacy" in scrubber.detectors[-1].backend else 0.5
    assert s.recall >= floor
    assert s.precision >= 0.85


def test_no_false_alarms_on_lookalikes(scrubber):
    text = "Order ORD-2024-118842 due 2024-03-15, total $1,299.00, version v2.3.1, ticket #88123, SKU 12345678, at 14:30."
    assert scrubber.find(text) == []


def _call(user: str, answer: str, args: dict | None = None) -> CallRecord:
    msg = {"role": "assistant", "content": answer}
    if args is not None:
        msg["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": "send_email", "arguments": json.dumps(args)}}]
    return CallRecord(id="c1", ts=1.0, request={"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You help the support team."}, {"role": "user", "content": user}]},
        response={"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}, task_id="t")


def test_placeholders_are_typed_numbered_and_aligned(scrubber):
    rec = _call("Email maria.gonzalez@example.com or call +1 (415) 555-0132; cc j.smith@example.org.",
                "I wrote to Maria.Gonzalez@example.com.", {"to": "maria.gonzalez@example.com", "body": "hi"})
    out = scrubber.scrub_record(rec)
    user = out.request["messages"][1]["content"]
    assert user == "Email <EMAIL_1> or call <PHONE_1>; cc <EMAIL_2>."
    assert out.response["choices"][0]["message"]["content"] == "I wrote to <EMAIL_1>."
    args = json.loads(out.response["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert args == {"to": "<EMAIL_1>", "body": "hi"}  # still valid JSON, same placeholder
    assert out.response["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "send_email"
    assert out.request["messages"][0]["content"] == "You help the support team."
    assert rec.request["messages"][1]["content"].startswith("Email maria")  # the original is untouched


def test_a_found_name_is_replaced_everywhere_including_its_parts(scrubber):
    rec = _call("Please reply to Maria Gonzalez about her refund.", "Dear Ms. Gonzalez, your refund is on its way. Maria Gonzalez's case is closed.")
    out = scrubber.scrub_record(rec)
    assert "Gonzalez" not in orjson.dumps(out.response).decode()
    assert out.request["messages"][1]["content"] == "Please reply to <PERSON_1> about her refund."


def test_person_name_fields_in_json_are_scrubbed(scrubber):
    rec = _call("Extract the customer.", json.dumps({"customer_name": "Xiadani Qorvalen", "qty": 2}))
    out = scrubber.scrub_record(rec)
    assert json.loads(out.response["choices"][0]["message"]["content"]) == {"customer_name": "<PERSON_1>", "qty": 2}


def test_fake_mode_is_realistic_and_consistent():
    pytest.importorskip("faker")
    s = Scrubber(detectors=["emails"], mode="fake")
    rec = _call("write to anna@corp.example", "Sent to anna@corp.example")
    out = s.scrub_record(rec)
    fake = out.request["messages"][1]["content"].removeprefix("write to ")
    assert "@" in fake and fake != "anna@corp.example"
    assert out.response["choices"][0]["message"]["content"] == f"Sent to {fake}"
    again = s.scrub_record(rec).request["messages"][1]["content"]
    assert again.endswith(fake)  # same value, same fake, across calls


def test_no_pii_left_in_curated_export(tmp_path, home, scrubber):
    values = ["maria.gonzalez@example.com", "+1 (415) 555-0132", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00",
              "123-45-6789", "192.168.10.24", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "Maria Gonzalez"]
    records = []
    for i in range(10):
        rec = _call(f"Customer Maria Gonzalez ({values[0]}, {values[1]}) paid with {values[2]} from {values[3]}, SSN {values[4]}, "
                    f"IP {values[5]}, key {values[6]}. Request {i}: case number {i * 7919}.", f"Noted for Maria Gonzalez, case {i * 7919}.")
        rec.id = f"c{i}"
        records.append(rec)
    result = curate_calls(records, tmp_path / "out", scrubber=scrubber, near_duplicate_threshold=None)
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*.jsonl"))
    assert written.count(b"\n") == 10
    for v in values:
        assert v.encode() not in written, v
    assert result.scrubbed["EMAIL"] == 10 and result.scrubbed["CARD"] == 10
