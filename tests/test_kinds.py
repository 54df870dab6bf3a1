"""Specialist kinds: answer reuse and the encoder classifier, built, calibrated, gated and served by a real gateway."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from protege.records import CallRecord, call_scope
from protege.route.calibrate import evaluate_served
from protege.train.kinds import BuildOptions, TaskData, kinds
from protege.train.reuse import AnswerReuse

TRIAGE_SYSTEM = "Classify the customer's message into exactly one queue. Answer with the queue name only."
FAQ_SYSTEM = "Answer the customer's question about our store in one short sentence."
PHRASES = {
    "billing": ["I was charged twice for my order", "please refund the payment", "my invoice shows the wrong amount",
                "why did my card get billed again", "the subscription fee went up without notice"],
    "shipping": ["my parcel has not arrived yet", "the tracking number does not work",
                 "the box went to the wrong door", "when will my package be delivered", "the delivery is a week late"],
    "technical": ["the app crashes when I open it", "I get an error 500 on checkout", "the page is blank on my phone",
                  "the website keeps freezing", "the download button does nothing"],
    "account": ["I cannot log in to my account", "please reset my password", "how do I change my email address",
                "my account got locked", "I want to delete my profile"],
}
OPENERS = ["Hi,", "Hello team,", "Good morning.", "Hey there,", "Dear support,", ""]
CLOSERS = ["Thanks.", "Please help!", "Regards, a customer", "", "Can you look into it?", "This is urgent."]
FAQ = {"Do you ship to Canada?": "Yes, we ship to Canada; delivery takes 5-8 business days.",
       "What is your return window?": "You can return unused items within 30 days of delivery.",
       "Do you offer gift wrapping?": "Yes, gift wrapping is available at checkout for $4.",
       "Can I change my order after paying?": "Yes, within one hour of paying, from the order page."}


def completion(content: str, i: int) -> dict:
    return {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 60, "completion_tokens": 8, "total_tokens": 68}}


def triage_pair(rng: random.Random, i: int) -> dict:
    label = rng.choice(sorted(PHRASES))
    text = " ".join(filter(None, [rng.choice(OPENERS), rng.choice(PHRASES[label]) + ".",
                                  f"Order #{rng.randint(1000, 99999)}.", rng.choice(CLOSERS)]))
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": TRIAGE_SYSTEM},
                                               {"role": "user", "content": text}], "temperature": 0}
    return {"request": request, "response": completion(label, i)}


def faq_pair(question: str, i: int) -> dict:
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": FAQ_SYSTEM},
                                               {"role": "user", "content": question}]}
    return {"request": request, "response": completion(FAQ[question], i)}


def records_of(pairs: list[dict], workload: str = "support", client: str | None = None, t0: float | None = None):
    t0 = time.time() - 3600 if t0 is None else t0
    return [CallRecord(id=f"{workload}-{client}-{i:04d}", ts=t0 + i, request=p["request"], response=p["response"],
                       workload=workload, client=client, served_by="upstream:default", cost_usd=0.0005)
            for i, p in enumerate(pairs)]


@contextlib.contextmanager
def gateway_serving(start_gateway, pairs: list[dict], tmp_path, tasks: set[str]):
    """A gateway in front of a replay of `pairs`, once it serves the specialists of `tasks`."""
    from protege.demo import free_port, start_process, stop_process

    recordings = tmp_path / "recordings.jsonl"
    recordings.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    port = free_port()
    upstream = start_process(["replay", str(recordings), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                             log_file=tmp_path / "replay.log")
    try:
        gw = start_gateway(upstream=f"http://127.0.0.1:{port}/v1")
        deadline = time.time() + 120
        while not tasks <= set(httpx.get(gw.base + "/health").json()["routing"]["serving"]):
            assert time.time() < deadline, f"the gateway did not load the specialists of {tasks}"
            time.sleep(0.2)
        yield gw
    finally:
        stop_process(upstream)


def test_the_ladder_lists_kinds_cheapest_first():
    assert [k.name for k in kinds()][:4] == ["reuse", "classifier", "incontext", "lora"]


def test_answer_reuse_stays_in_its_scope_expires_and_keeps_counts(tmp_path):
    questions = list(FAQ)
    history = records_of([faq_pair(questions[i % 4], i) for i in range(40)])
    task = TaskData("faq", "text", history[:30], history[30:], history)
    kind = AnswerReuse()
    assert kind.unfit(task) is None
    kind.build(task, tmp_path / "faq", BuildOptions(max_reuse_age_s=86400))
    manifest = json.loads((tmp_path / "faq" / "specialist.json").read_text())
    assert manifest["distinct_requests"] == 4 and manifest["repeat_share"] == 0.9  # repeats counted, not dropped

    responder = kind.open(tmp_path / "faq")
    ask = faq_pair(questions[0], 0)["request"]
    answer, confidence = responder.respond(ask, call_scope("support", None))
    assert answer["choices"][0]["message"]["content"] == FAQ[questions[0]] and confidence > 0.9
    spaced = ask | {"messages": [ask["messages"][0], {"role": "user", "content": "  do you SHIP to canada? "}]}
    assert responder.respond(spaced, call_scope("support", None))[0] is not None  # case and spaces folded
    assert responder.respond(ask, call_scope("sales", None)) == (None, None)  # another workload
    assert responder.respond(ask, call_scope("support", "other-key")) == (None, None)  # another key
    assert responder.respond(ask | {"tools": [{"type": "function", "function": {"name": "f"}}]},
                             call_scope("support", None)) == (None, None)

    old = records_of([faq_pair(questions[0], i) for i in range(8)], t0=time.time() - 10 * 86400)
    AnswerReuse().build(TaskData("faq", "text", old, [], old), tmp_path / "old", BuildOptions(max_reuse_age_s=86400))
    assert AnswerReuse().open(tmp_path / "old").respond(ask, call_scope("support", None)) == (None, None)


def test_answer_reuse_calibrates_away_requests_the_llm_answers_differently(tmp_path):
    """A question whose logged answers disagree has low confidence: the threshold keeps its false hits out."""
    rng = random.Random(1)
    pairs = []
    for i in range(120):
        question = rng.choice(list(FAQ))
        pair = faq_pair(question, i)
        if question == "Can I change my order after paying?":  # the LLM is not consistent on this one
            pair["response"] = completion(rng.choice(["Yes, within an hour.", "No, orders are final.",
                                                      "Please contact support."]), i)
        pairs.append(pair)
    history = records_of(pairs)
    task = TaskData("faq", "text", history, [], history)
    kind = AnswerReuse()
    kind.build(task, tmp_path / "faq", BuildOptions())
    _, cal = evaluate_served(kind.open(tmp_path / "faq", heldout=True), kind.heldout(task), quality_ratio=0.98,
                             output_kind="text")
    assert cal.n == 24 and 0.5 < cal.coverage < 1.0  # the inconsistent question is left to the LLM
    assert cal.routed_quality >= 0.98
    served = [p for p in cal.points if p.valid and p.confidence is not None and p.confidence >= cal.threshold]
    false_hits = sum(p.score < 0.999 for p in served) / len(served)
    assert false_hits <= 1 - cal.target_quality


def test_classifier_fits_closed_outputs_only():
    rng = random.Random(0)
    triage = records_of([triage_pair(rng, i) for i in range(40)])
    classifier = next(k for k in kinds() if k.name == "classifier")
    assert classifier.unfit(TaskData("t", "label", triage, [])) is None
    canned = records_of([faq_pair(q, i) for i, q in enumerate(list(FAQ) * 10)])  # replies recur verbatim
    assert classifier.unfit(TaskData("t", "text", canned, [])) is None
    written = records_of([{**p, "response": completion(f"Your order {i} ships on day {i % 9 + 1}.", i)}
                          for i, p in enumerate(faq_pair(q, 0) for q in list(FAQ) * 10)])
    assert "not a closed set" in classifier.unfit(TaskData("t", "text", written, []))
    open_schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    closed_schema = {"type": "object", "properties": {"queue": {"enum": ["a", "b"]}, "urgent": {"type": "boolean"}}}

    def with_schema(schema, content):
        rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        return records_of([{"request": p["request"] | {"response_format": rf}, "response": completion(content, i)}
                           for i, p in enumerate(triage_pair(rng, j) for j in range(20))])

    assert "open fields" in classifier.unfit(TaskData("t", "json", with_schema(open_schema, '{"name": "x"}'), []))
    assert classifier.unfit(TaskData("t", "json", with_schema(closed_schema, '{"queue": "a", "urgent": true}'), [])) is None


@pytest.mark.slow
def test_classifier_and_reuse_are_gated_and_served_by_a_real_gateway(home, start_gateway, tmp_path):
    """The flywheel builds the cheapest kind that passes for each task; the gateway serves them: the classifier
    answers a ticket it never saw, reuse answers a repeated question in its own scope only."""
    from protege.config import load_settings
    from protege.flywheel import FlywheelOptions, run_pass
    from protege.store import open_store

    rng = random.Random(7)
    triage = [triage_pair(rng, i) for i in range(160)]
    faq = [faq_pair(rng.choice(list(FAQ)), 1000 + i) for i in range(200)]
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[gates]\nmin_examples = 10\nshadow_first = false\n\n"
                                       "[routing]\nrefresh_s = 0.2\naudit_share = 0.0\n")
    with open_store(home / "protege.db") as store:
        store.add_calls(records_of(triage + faq))
        report = run_pass(store, load_settings(), FlywheelOptions(embedder="hashing", kinds=["reuse", "classifier"],
                                                                  min_calls=20))
        routes = store.routes()
    promoted = {t["task"]: t["kind"] for t in report.trained if t["action"] == "promote"}
    assert len(promoted) == len(report.trained) and set(promoted.values()) == {"classifier", "reuse"}, report.trained
    [triage_task] = [t for t, kind in promoted.items() if kind == "classifier"]
    faq_tasks = {t for t, kind in promoted.items() if kind == "reuse"}  # discovery may split the questions
    assert all(routes[t].mode == "on" for t in promoted)
    classified = next(t for t in report.trained if t["task"] == triage_task)
    candidates = {c["kind"]: c for c in classified["candidates"]}
    assert candidates["reuse"]["verdict"] == "skip" and "asked twice" in candidates["reuse"]["reason"]
    assert candidates["classifier"]["quality"] >= 0.9

    with gateway_serving(start_gateway, triage + faq, tmp_path, set(promoted)) as gw:
        client = httpx.Client(base_url=gw.url, timeout=60, headers={"x-protege-workload": "support"})
        unseen = {"model": "gpt-4o", "messages": [{"role": "system", "content": TRIAGE_SYSTEM}, {
            "role": "user", "content": "Hello, I was billed twice for the same order and want my money back."}]}
        served = client.post("/chat/completions", json=unseen)
        assert served.headers["x-protege-served-by"] == f"specialist:{triage_task}", served.text
        assert served.json()["choices"][0]["message"]["content"] == "billing"
        assert served.json()["model"] == f"minilm-classifier:{triage_task}"

        repeated = client.post("/chat/completions", json=faq[0]["request"])
        assert repeated.headers["x-protege-task"] in faq_tasks
        assert repeated.headers["x-protege-served-by"] == f"specialist:{repeated.headers['x-protege-task']}"
        assert repeated.json()["choices"][0]["message"] == faq[0]["response"]["choices"][0]["message"]
        elsewhere = client.post("/chat/completions", json=faq[0]["request"], headers={"x-protege-workload": "sales"})
        assert elsewhere.headers["x-protege-served-by"] == "upstream:default"
        assert elsewhere.headers["x-protege-fallback"] == "no_match"


def test_concurrent_requests_share_embedding_passes_and_each_gets_its_own_rows():
    """The classifier's and reuse's embedder under a gateway's concurrent request threads: calls that arrive
    while a pass runs are embedded together, and every caller gets exactly the vectors of its own texts."""
    from protege.cluster.embed import BatchingEmbedder
    from protege.train.kinds import sentence_embedder

    shared = sentence_embedder()
    assert isinstance(shared, BatchingEmbedder)
    inner, batching = shared.inner, BatchingEmbedder(shared.inner)
    rng = random.Random(3)
    texts = [triage_pair(rng, i)["request"]["messages"][1]["content"] for i in range(48)]
    alone = np.vstack([inner.embed([t]) for t in texts])
    start = threading.Barrier(16)

    def caller(k: int) -> list:
        start.wait()
        return [batching.embed(texts[i:i + 1 + i % 2]) for i in range(k, 48, 16)]  # one or two texts a call

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(caller, range(16)))
    for k, rows in enumerate(answers):
        for i, got in zip(range(k, 48, 16), rows):
            np.testing.assert_allclose(got, alone[i:i + 1 + i % 2], atol=1e-5)
    assert batching.calls == 48 and batching.passes < 48


def test_an_embedding_pass_that_fails_fails_its_callers_only():
    from protege.cluster.embed import BatchingEmbedder, HashingEmbedder

    class Refuses(HashingEmbedder):
        def embed(self, texts):
            if "poison" in texts:
                raise ValueError("cannot embed poison")
            return super().embed(texts)

    batching = BatchingEmbedder(Refuses())
    with pytest.raises(ValueError, match="poison"):
        batching.embed(["poison"])
    assert batching.embed(["fine"]).shape == (1, 1024)  # the thread lives on
    assert batching.embed([]).shape[0] == 0
    reader, writer = os.pipe()
    if (pid := os.fork()) == 0:  # a forked child (a worker process) has no embedding thread of its own yet
        os.write(writer, str(batching.embed(["in the child"]).shape).encode())
        os._exit(0)
    answered = select.select([reader], [], [], 30)[0]
    if not answered:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert answered and os.read(reader, 100) == b"(1, 1024)", "the forked child's embed call hung"


def test_in_context_examples_go_after_the_system_prompt_and_only_single_turn_calls_are_shown():
    from protege.specialist.examples import as_examples
    from protege.train.incontext import InContextKind, _shot, with_examples

    request = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]}
    shots = [({"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"})]
    assert [m["content"] for m in with_examples(request, shots)["messages"]] == ["S", "q1", "a1", "Q"]
    assert request["messages"][1]["content"] == "Q"  # the caller's request is not changed

    rng = random.Random(2)
    single = records_of([triage_pair(rng, i) for i in range(3)])
    multi = records_of([triage_pair(rng, i) for i in range(3)], client="b")
    for r in multi:
        r.request = r.request | {"messages": [*r.request["messages"], {"role": "assistant", "content": "billing"},
                                              {"role": "user", "content": "and again"}]}
    assert all(_shot(ex) is None for ex in as_examples(multi))
    assert _shot(as_examples(single)[0])[1] == {"role": "assistant", "content": single[0].response["choices"][0][
        "message"]["content"]}
    assert InContextKind().unfit(TaskData("t", "label", multi + single[:2], [])) == (
        "2 single-turn training calls to show as examples, needs 3")
    assert InContextKind().unfit(TaskData("t", "label", single, [])) is None


def test_in_context_specialist_is_gated_and_served_by_a_real_gateway(home, start_gateway, tmp_path):
    """SmolLM2-135M untrained, shown the 3 most similar logged tickets: the flywheel builds, evaluates and gates it
    like any kind; put on, the gateway answers an unseen ticket with one of the LLM's labels."""
    from protege.config import load_settings
    from protege.flywheel import FlywheelOptions, run_pass
    from protege.route.gates import set_mode
    from protege.store import open_store
    from protege.train.kinds import open_specialist

    rng = random.Random(11)
    triage = [triage_pair(rng, i) for i in range(120)]
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[gates]\nmin_examples = 10\nshadow_first = false\n\n"
                                       "[routing]\nrefresh_s = 0.2\naudit_share = 0.0\n")
    with open_store(home / "protege.db") as store:
        store.add_calls(records_of(triage))
        report = run_pass(store, load_settings(), FlywheelOptions(embedder="hashing", kinds=["incontext"],
                                                                  min_calls=20, eval_calls=10))
        [task] = report.trained
        [candidate] = task["candidates"]
        assert candidate["kind"] == "incontext" and candidate["verdict"] in ("promote", "hold"), candidate
        assert candidate["n"] == 10 and candidate["quality"] >= 0.7 and candidate["valid_rate"] == 1.0
        manifest, responder = open_specialist(candidate["folder"])
        assert manifest["labels"] == sorted(PHRASES) and manifest["base_model"]["name"] == "smollm2-135m"
        ticket = {"model": "gpt-4o", "messages": [{"role": "system", "content": TRIAGE_SYSTEM}, {
            "role": "user", "content": "Hello, my parcel has not arrived yet and the tracking number does not work."}]}
        shown = responder.nearest(ticket)
        assert len(shown) == 3 and shown[-1][1]["content"] == "shipping"  # the closest example sits last
        set_mode(store, task["task"], "on", specialist=candidate["folder"], min_confidence=0.0)

    with gateway_serving(start_gateway, triage, tmp_path, {task["task"]}) as gw:
        served = httpx.post(gw.url + "/chat/completions", json=ticket, timeout=120,
                            headers={"x-protege-workload": "support"})
        assert served.headers["x-protege-served-by"] == f"specialist:{task['task']}", served.text
        assert served.json()["choices"][0]["message"]["content"] in PHRASES
        assert served.json()["model"] == f"smollm2-135m-incontext:{task['task']}"


def test_a_pseudonymized_specialist_sees_its_training_space_and_answers_in_the_callers_terms():
    """Trained on calls whose PII the flywheel replaced by fake values, a generative specialist gets each request
    with the same replacements (what it learnt from), and its answer's replacements go back to the caller's values."""
    import re

    from protege.curate.scrub import Scrubber
    from protege.train.lora import LoraResponder

    seen: list[dict] = []

    class CopyingModel:  # a stand-in for SmolLM2 that copies the sender into the JSON answer, as extraction does
        def complete_scored(self, request, plan=None):
            seen.append(request)
            m = re.search(r"From: (.+) <(.+)>", request["messages"][-1]["content"])
            content = json.dumps({"customer_name": m.group(1), "email": m.group(2)})
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}, 0.9

    email = ("From: Priya Müller <priya.muller@fastmail.com>\nSubject: Order\n\nHi, I'd like to return 1 x Cotton "
             "Bath Towel from order #43943639.\n\nThanks,\nPriya Müller")
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Extract the order."},
                                               {"role": "user", "content": email}]}
    answer, confidence = LoraResponder(CopyingModel(), "m", pseudonymized={"seed": 0}).respond(request)
    text = seen[-1]["messages"][-1]["content"]
    assert "Priya" not in text and "fastmail" not in text  # no caller PII reaches the model
    curated = Scrubber(mode="fake", seed=0).scrub_record(records_of([{"request": request, "response": completion(
        json.dumps({"customer_name": "Priya Müller"}), 0)}])[0])
    assert curated.request["messages"][-1]["content"] == text  # exactly the text its training calls had
    assert json.loads(answer["choices"][0]["message"]["content"]) == {"customer_name": "Priya Müller",
                                                                      "email": "priya.muller@fastmail.com"}
    assert confidence == 0.9 and request["messages"][-1]["content"] == email  # the caller's request is untouched


def test_a_kind_with_too_few_held_out_calls_is_not_built(home):
    """Known before training: the gate could never pass it, so no time is spent on it, and the hold says why."""
    from protege.config import Settings
    from protege.flywheel import FlywheelOptions, run_pass
    from protege.store import open_store

    rng = random.Random(5)
    with open_store(home / "protege.db") as store:
        store.add_calls(records_of([triage_pair(rng, i) for i in range(60)]))
        report = run_pass(store, Settings.model_validate({"gates": {"min_examples": 30}}),
                          FlywheelOptions(embedder="hashing", kinds=["classifier"], min_calls=20))
    [task] = report.trained
    [candidate] = task["candidates"]
    assert task["action"] == "hold" and candidate["verdict"] == "skip"
    assert candidate["reason"] == "12 held-out calls to judge it on, the gate needs 30"
    assert task["reason"] == ("no specialist kind was built (classifier: 12 held-out calls to judge it on, "
                              "the gate needs 30)")  # the hold says why, not only the report's candidate rows
    assert not list((home / "specialists").rglob("specialist.json"))  # nothing was built


PARAPHRASES = {
    "Yes, we ship to Canada; delivery takes 5-8 business days.": [
        "Do you ship to Canada?", "Can you deliver to Canada?", "Is shipping to Canada possible?",
        "Do you send orders to Canada?", "Can I get my order shipped to Canada?"],
    "Sorry, we do not ship to Mexico yet.": [
        "Do you ship to Mexico?", "Can you deliver to Mexico?", "Is shipping to Mexico possible?",
        "Do you send orders to Mexico?", "Can I get my order shipped to Mexico?"],
    "You can return unused items within 30 days of delivery.": [
        "What is your return window?", "How long do I have to return an item?", "How many days do I have for returns?",
        "Until when can I send something back?", "What's the deadline to return a purchase?"],
    "Yes, gift wrapping is available at checkout for $4.": [
        "Do you offer gift wrapping?", "Can you gift wrap my order?", "Is gift wrapping available?",
        "Could my present be wrapped?", "Do you wrap gifts?"],
}


def paraphrased_faq(rng: random.Random, n: int, order_status: bool = False) -> list[CallRecord]:
    """Questions asked in many wordings (few exact repeats); with `order_status`, also questions that differ only in
    an order number, each with its own answer: near-duplicates whose reuse would be wrong."""
    pairs = []
    for i in range(n):
        if order_status and rng.random() < 0.5:
            order = rng.randint(10000, 99999)
            question = f"What is the status of order {order}?"
            answer = f"Order {order} is {rng.choice(['packed', 'shipped', 'delivered'])}."
        else:
            answer = rng.choice(sorted(PARAPHRASES))
            question = " ".join(filter(None, [rng.choice(OPENERS), rng.choice(PARAPHRASES[answer]), rng.choice(CLOSERS)]))
        request = {"model": "gpt-4o", "messages": [{"role": "system", "content": FAQ_SYSTEM},
                                                   {"role": "user", "content": question}]}
        pairs.append({"request": request, "response": completion(answer, i)})
    return records_of(pairs)


def test_near_duplicate_reuse_answers_paraphrases_within_its_calibrated_false_hit_rate(tmp_path):
    """Wordings of one question share its answer; the threshold, set on calls the gate never judges on, keeps
    look-alikes with other answers (Canada / Mexico) out, and the held-out near hits within its false-hit rate."""
    history = paraphrased_faq(random.Random(3), 600)
    task = TaskData("faq", "text", history, [], history)
    kind = AnswerReuse()
    assert kind.unfit(task) is None
    kind.build(task, tmp_path / "faq", BuildOptions())
    fit = json.loads((tmp_path / "faq" / "specialist.json").read_text())["near_duplicates"]
    assert fit["threshold"] is not None and (fit["false_hits"] + 1) / (fit["hits"] + 2) <= 0.03, fit

    responder = kind.open(tmp_path / "faq")
    asked = {"model": "gpt-4o", "messages": [{"role": "system", "content": FAQ_SYSTEM},
                                             {"role": "user", "content": "Hi, do you ship to Canada? Thank you!"}]}
    assert all(r.request["messages"][1]["content"] != asked["messages"][1]["content"] for r in history)
    answer, confidence = responder.respond(asked, call_scope("support", None))
    assert answer["choices"][0]["message"]["content"].startswith("Yes, we ship to Canada") and 0 < confidence < 0.5
    assert responder.respond(asked, call_scope("sales", None)) == (None, None)  # never across workloads
    assert responder.respond(asked, call_scope("support", "other-key")) == (None, None)  # nor keys
    translate = asked | {"messages": [{"role": "system", "content": "Translate to French."}, asked["messages"][1]]}
    assert responder.respond(translate, call_scope("support", None)) == (None, None)  # nor another system prompt

    _, cal = evaluate_served(kind.open(tmp_path / "faq", heldout=True), kind.heldout(task), quality_ratio=0.98,
                             output_kind="text")
    served = [p for p in cal.points if p.valid and p.confidence is not None and p.confidence >= cal.threshold]
    near = [p for p in served if p.confidence < 0.5]
    assert len(near) >= 10, "near-duplicates were hardly served on the held-out calls"
    assert sum(p.score < 0.999 for p in near) / len(near) <= 0.03  # the rate the threshold was calibrated to


def test_near_duplicate_reuse_is_refused_where_look_alikes_have_other_answers(tmp_path):
    """Order-status questions differ in a number MiniLM barely sees: no similarity keeps false hits under 3%, so the
    kind reuses exact repeats only, or is not built at all when there are none."""
    history = paraphrased_faq(random.Random(4), 600, order_status=True)
    history = [r for r in history if "status of order" in r.request["messages"][1]["content"]]
    kind = AnswerReuse()
    kind.build(TaskData("orders", "text", history, [], history), tmp_path / "orders", BuildOptions())
    fit = json.loads((tmp_path / "orders" / "specialist.json").read_text())["near_duplicates"]
    assert fit["threshold"] is None and fit["checked"] > 20, fit
    assert not (tmp_path / "orders" / "near_index.npz").exists()
    asked = history[0].request | {"messages": [history[0].request["messages"][0],
                                               {"role": "user", "content": "What is the status of order 12345?"}]}
    assert kind.open(tmp_path / "orders").respond(asked, call_scope("support", None)) == (None, None)

    once = list({r.request["messages"][1]["content"]: r for r in history}.values())  # no request asked twice
    reason = kind.unfit(TaskData("orders", "text", once, [], once))
    assert reason is not None and "near-duplicates" in reason and "false hits" in reason, reason


def test_forgetting_calls_removes_their_answers_and_vectors_from_reuse(tmp_path):
    """`protege forget` reaches a reuse folder: the forgotten requests are neither answered exactly nor nearly."""
    from protege.train.reuse import NEAR, NearIndex, forget_requests

    history = paraphrased_faq(random.Random(3), 600)
    AnswerReuse().build(TaskData("faq", "text", history, [], history), tmp_path / "faq", BuildOptions())
    canada = [r for r in history if "Canada" in r.request["messages"][1]["content"]]
    assert forget_requests(tmp_path / "faq", canada) > 0
    responder = AnswerReuse().open(tmp_path / "faq")
    for record in canada[:20]:
        answer, _ = responder.respond(record.request, call_scope("support", None))
        assert answer is None or "Canada" not in answer["choices"][0]["message"]["content"]
    for prefix in ("", "heldout_"):
        index = json.loads((tmp_path / "faq" / f"{prefix}reuse_index.json").read_text())
        assert not any("Canada" in e["message"]["content"] for e in index.values())
        assert set(NearIndex.load(tmp_path / "faq" / (prefix + NEAR)).keys) <= set(index)


def test_word_features_match_scikit_learns_tfidf():
    """The classifier's TF-IDF is computed in numpy at serving: it must equal what scikit-learn computes."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from protege.train.classifier import WordFeatures

    rng = random.Random(3)
    texts = [" ".join(rng.choice(PHRASES[label]) for label in rng.sample(sorted(PHRASES), 2)) for _ in range(30)]
    ours = WordFeatures.fit(texts)
    theirs = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(texts)
    assert set(ours.index) == set(theirs.vocabulary_)
    order = [theirs.vocabulary_[t] for t in sorted(ours.index, key=ours.index.get)]
    unseen = ["my parcel crashes when I open the invoice", "nothing known here", ""]
    np.testing.assert_allclose(ours.transform(texts + unseen), theirs.transform(texts + unseen).toarray()[:, order],
                               atol=1e-6)


def test_a_pseudonymized_classifier_reads_its_training_space_and_answers_in_the_callers_terms(tmp_path):
    """A classifier built on calls whose PII was replaced by fake values reads each request with the same
    replacements, and a canned answer naming the fake customer names the caller again."""
    from protege.curate.scrub import Scrubber
    from protege.train.kinds import user_text

    topics = {"shipping": ["when will my parcel arrive", "how long does delivery take", "is my package on its way"],
              "returns": ["can I send the shoes back", "how do I return an item", "is a return free of charge"]}
    sender = "From: Priya Müller <priya.muller@fastmail.com>\n\n"
    answers = {"shipping": "Hi Priya Müller, delivery takes 3 business days.",
               "returns": "Hi Priya Müller, returns are free within 30 days."}
    pairs = [{"request": {"model": "gpt-4o", "messages": [{"role": "system", "content": FAQ_SYSTEM},
                                                          {"role": "user", "content": f"{sender}{q}?"}]},
              "response": completion(answers[topic], i)}
             for i, (topic, q) in enumerate((t, q) for t, qs in topics.items() for q in qs * 4)]
    scrubber = Scrubber(mode="fake", seed=0)
    curated = [scrubber.scrub_record(r) for r in records_of(pairs)]
    assert "Priya" not in json.dumps([r.response for r in curated])
    classifier = next(k for k in kinds() if k.name == "classifier")
    classifier.build(TaskData("faq", "text", curated, []), tmp_path / "faq", BuildOptions(pseudonymized_seed=0))
    responder = classifier.open(tmp_path / "faq")
    seen: list[str] = []

    class Recording:  # the shared MiniLM embedder, noting what it is given
        def embed(self, texts, inner=responder.embedder):
            seen.extend(texts)
            return inner.embed(texts)

    responder.embedder = Recording()

    answer, confidence = responder.respond(pairs[0]["request"])
    assert seen == [user_text(curated[0].request)] and "Priya" not in seen[0]  # no caller PII reaches the head
    assert answer["choices"][0]["message"]["content"] == answers["shipping"] and confidence > 0.5
