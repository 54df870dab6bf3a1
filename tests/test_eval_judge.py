"""The LLM judge for free text, against a real replay upstream that holds the judge's own requests."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from protege.config import load_settings
from protege.demo import free_port, start_process, stop_process
from protege.evaluate.harness import Answer, Candidate, ReferenceCandidate, evaluate
from protege.evaluate.judge import JudgeError, LLMJudge, judge_request, last_user_message
from protege.specialist.examples import Example, as_examples

from .train_support import triage_rows

JUDGE = "judge-model"

EXAMPLES = [
    Example("s1", {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Summarise the customer's message in one sentence."},
        {"role": "user", "content": "My order 1182 arrived late and the box was crushed; I want a refund."}]},
        {"role": "assistant", "content": "The customer wants a refund for order 1182, which arrived late and damaged."}),
    Example("s2", {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Summarise the customer's message in one sentence."},
        {"role": "user", "content": "I can't log in since the update, the app says my password is wrong."}]},
        {"role": "assistant", "content": "Since the update the customer cannot log in: the app rejects their password."}),
    Example("s3", {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Summarise the customer's message in one sentence."},
        {"role": "user", "content": [{"type": "text", "text": "Please change my delivery address to 4 Elm Road."}]}]},
        {"role": "assistant", "content": "The customer asks to change the delivery address to 4 Elm Road."}),
]

# What the candidate under test answers, and the grade (1-5) the recorded judge gives it.
CANDIDATE = {
    "s1": ("Order 1182 came late and crushed; the customer asks for a refund.", 5),
    "s2": ("The customer has a question about the app.", 2),
    "s3": (EXAMPLES[2].answer["content"], None),  # identical to the reference: no call
}
BAD_JSON = "The customer is unhappy."  # recorded with a reply that is not JSON


def completion(content: str) -> dict:
    return {"id": "chatcmpl-judge", "object": "chat.completion", "created": 0, "model": JUDGE,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}}


def recordings() -> list[dict]:
    pairs = []
    for ex in EXAMPLES:
        text, grade = CANDIDATE[ex.id]
        request = judge_request(JUDGE, last_user_message(ex.request), ex.answer["content"], text)
        if grade is not None:
            pairs.append({"request": request, "response": completion(json.dumps({"score": grade, "reason": "r"}))})
    bad = judge_request(JUDGE, last_user_message(EXAMPLES[0].request), EXAMPLES[0].answer["content"], BAD_JSON)
    pairs.append({"request": bad, "response": completion("Looks fine to me, maybe a 4.")})
    return pairs


@pytest.fixture(scope="module")
def judge_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    file = folder / "judge_recordings.jsonl"
    file.write_text("".join(json.dumps(pair) + "\n" for pair in recordings()))
    port = free_port()
    proc = start_process(["replay", str(file), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                         log_file=folder / "replay.log")
    yield f"http://127.0.0.1:{port}/v1"
    stop_process(proc)


class Scripted(Candidate):
    def __init__(self, name, answers):
        self.name, self.answers = name, answers

    def answer(self, example):
        return Answer({"role": "assistant", "content": self.answers[example.id]}, 5.0)


def test_scores_come_from_the_judge_and_repeats_are_cached(judge_url):
    judge = LLMJudge(judge_url, JUDGE)
    s1, s2, s3 = EXAMPLES
    assert judge.score(s1, CANDIDATE["s1"][0]) == 1.0  # graded 5
    assert judge.judge(s2, CANDIDATE["s2"][0]).raw_score == 2 and judge.score(s2, CANDIDATE["s2"][0]) == 0.25
    assert judge.calls == 2 and judge.prompt_tokens == 400  # the second s2 call came from the cache
    assert judge.score(s3, CANDIDATE["s3"][0]) == 1.0  # identical to the reference (content parts too)
    assert judge.score(s3, "  ") == 0.0 and judge.score(s3, None) == 0.0
    assert judge.calls == 2
    request = judge_request(JUDGE, last_user_message(s1.request), s1.answer["content"], "x")
    assert request["temperature"] == 0 and request["response_format"]["type"] == "json_schema"
    assert s1.request["messages"][1]["content"] in request["messages"][1]["content"]
    judge.close()


def test_evaluate_adds_the_judge_metric_and_makes_it_the_headline(judge_url, home):
    judge = LLMJudge.from_settings(load_settings(upstream=judge_url), JUDGE)  # the --upstream path of the CLI
    cand = Scripted("specialist", {k: v[0] for k, v in CANDIDATE.items()})
    report = evaluate(EXAMPLES, [ReferenceCandidate(), cand], task="summary", output_kind="text", judge=judge)
    assert report.headline_metric == "judge" and report.judge == JUDGE
    ref, spec = report.rows
    assert ref.headline == ref.metrics["judge"] == 1.0
    assert spec.metrics["judge"] == spec.headline == pytest.approx((1.0 + 0.25 + 1.0) / 3, abs=1e-4)
    assert [score for _, score, _ in spec.per_example] == [1.0, 0.25, 1.0]
    assert 0 < spec.metrics["rouge_l"] < 1  # ROUGE-L stays in the row
    assert judge.calls == 2  # the reference row and the identical answer cost nothing
    assert json.loads(report.to_json())["judge"] == JUDGE

    # Other output kinds ignore the judge: no call, the usual headline.
    labels = evaluate(as_examples(triage_rows(4)), [ReferenceCandidate()], output_kind="label", judge=judge)
    assert labels.headline_metric == "accuracy" and labels.judge is None and judge.calls == 2


def test_errors_name_the_upstream_and_the_fix(judge_url):
    judge = LLMJudge(judge_url, JUDGE)
    with pytest.raises(JudgeError, match=f"judge 'judge-model' at {judge_url} gave no usable grade.*json_schema"):
        judge.score(EXAMPLES[0], BAD_JSON)
    with pytest.raises(JudgeError, match=f"{judge_url} answered 404 .*No recorded response"):
        judge.score(EXAMPLES[1], "an answer nobody recorded a grade for")

    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(JudgeError, match=f"judge upstream at {down} is unreachable.*--upstream"):
        LLMJudge(down, JUDGE).score(EXAMPLES[0], "anything")


def test_errors_never_show_the_upstream_url_credentials(judge_url):
    """An upstream URL with `user:secret@` is shown as `***@` in every JudgeError (issue 13, item 5)."""
    secret_url = judge_url.replace("http://", "http://judge-user:s3cret-pw@")
    judge = LLMJudge(secret_url, JUDGE)
    errors = []
    for candidate in (BAD_JSON, "an answer nobody recorded a grade for"):  # unusable grade, then a 404
        with pytest.raises(JudgeError) as info:
            judge.score(EXAMPLES[0] if candidate == BAD_JSON else EXAMPLES[1], candidate)
        errors.append(str(info.value))
    down = f"http://judge-user:s3cret-pw@127.0.0.1:{free_port()}/v1"
    with pytest.raises(JudgeError) as info:
        LLMJudge(down, JUDGE).score(EXAMPLES[0], "anything")
    errors.append(str(info.value))
    for message in errors:
        assert "s3cret-pw" not in message and "judge-user" not in message, message
        assert "http://***@127.0.0.1:" in message, message
    judge.close()


def test_cli_judge_model_needs_an_upstream_that_serves_it(home):
    from protege.cli import app

    result = CliRunner().invoke(app, ["eval", "summary", "--judge-model", JUDGE])
    assert result.exit_code == 1
    assert "no upstream serves the judge model 'judge-model'" in " ".join(result.output.split())
