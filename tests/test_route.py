"""Promotion gates, calibration, and the gateway routing calls to a specialist with the LLM as fallback."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from protege.config import GatePolicy, Settings
from protege.demo import free_port, start_process, stop_process
from protege.records import CallRecord
from protege.route.calibrate import Calibration, Point, choose_threshold, tradeoff_curve
from protege.route.gates import LiveStats, apply_verdict, judge_calibration, live_stats, review_live, set_mode
from protege.store import Route, ShadowResult, open_store
from tests.models_support import require_local_extra


def calibration(**kw) -> Calibration:
    base = {"output_kind": "label", "headline_metric": "accuracy", "n": 40, "reference_quality": 1.0,
            "quality": 0.95, "quality_ci": (0.88, 1.0), "valid_rate": 1.0, "threshold": 0.3, "coverage": 0.8,
            "routed_quality": 0.99, "target_quality": 0.98, "latency_p50_ms": 40.0}
    return Calibration(**base | kw)


def test_gate_promotes_to_shadow_first_and_holds_with_reasons():
    policy = GatePolicy()
    verdict = judge_calibration(calibration(), policy)
    assert (verdict.action, verdict.mode_to) == ("promote", "shadow")
    assert verdict.evidence["quality_ratio"] == 0.99 and verdict.evidence["n"] == 40
    assert judge_calibration(calibration(), GatePolicy(shadow_first=False)).mode_to == "on"
    sure = judge_calibration(calibration(valid_rate=0.95), policy)  # the invalid ones were under the threshold
    assert sure.action == "promote" and sure.evidence["valid_rate"] == 0.95
    held = judge_calibration(calibration(n=12, served_valid_rate=0.95, routed_quality=0.9, coverage=0.05), policy)
    assert held.action == "hold" and held.mode_to == "off"
    for part in ("12 held-out calls, needs 30", "95.0% valid outputs at the threshold, needs 100%",
                 "routed accuracy 90.0% of the LLM's", "answers 5% of calls"):
        assert part in held.reason


def test_gate_promotes_partial_coverage_only_when_it_saves_money():
    """A specialist sure of 30% of the calls is worth serving when those 30% pay for its time on every call."""
    partial = calibration(coverage=0.3, latency_p50_ms=2000.0)  # 2 s of a $0.10/h machine: $0.0000556 a call
    cheap_llm = judge_calibration(partial, GatePolicy(), llm_usd_per_call=0.0001)  # saves 0.3 x 0.0001 - 0.0000556
    assert cheap_llm.action == "hold" and "would cost more than it saves" in cheap_llm.reason
    assert cheap_llm.evidence["saving_usd_per_call"] < 0
    dear_llm = judge_calibration(partial, GatePolicy(), llm_usd_per_call=0.003)
    assert dear_llm.action == "promote" and dear_llm.evidence["saving_usd_per_call"] > 0


def test_live_review_moves_shadow_to_on_and_demotes():
    policy = GatePolicy(shadow_calls=10, min_live_calls=10)
    shadow = Route("t", "shadow", "/s")
    assert review_live(shadow, LiveStats(shadow=9, shadow_agree=9, shadow_score=9, shadow_total=9), policy).action == "keep"
    assert review_live(shadow, LiveStats(shadow=10, shadow_agree=10, shadow_score=10, shadow_total=12),
                       policy).mode_to == "on"
    bad = review_live(shadow, LiveStats(shadow=10, shadow_agree=5, shadow_score=5, shadow_total=10), policy)
    assert (bad.action, bad.mode_to) == ("demote", "off") and "scored 50.0% on 10 shadow comparisons" in bad.reason
    # JSON: 7 of 18 served answers have one wrong field of 20 (not exact, field F1 0.95): the task metric decides
    extraction = LiveStats(shadow=18, shadow_agree=11, shadow_score=11 + 7 * 0.95, shadow_total=34)
    assert review_live(shadow, extraction, policy).mode_to == "on"  # served 98.1%, routed 99.0% of the LLM's
    stricter = GatePolicy(shadow_calls=10, min_quality_ratio=0.995)
    assert "routed 99.0% of the LLM's; needs 99.5% routed" in review_live(shadow, extraction, stricter).reason
    # one wrong answer in 11 (routed 95.4%, under the bar) does not exclude the bar yet: more evidence decides
    one_wrong = review_live(shadow, LiveStats(shadow=11, shadow_agree=10, shadow_score=10, shadow_total=20), policy)
    assert (one_wrong.action, one_wrong.mode_to) == ("keep", "shadow") and "not excluded yet" in one_wrong.reason
    window_full = LiveStats(shadow=55, shadow_agree=50, shadow_score=50, shadow_total=policy.live_window)
    assert review_live(shadow, window_full, policy).action == "demote"  # the window is full: decided as it stands
    conclusive = LiveStats(shadow=40, shadow_agree=36, shadow_score=36, shadow_total=70)  # at most 97.7% routed
    assert review_live(shadow, conclusive, policy).action == "demote"
    on = Route("t", "on", "/s")
    assert review_live(on, LiveStats(routed=9, fallbacks=9), policy).action == "keep"  # too few calls to judge
    assert "fell back" in review_live(on, LiveStats(routed=20, served=5, fallbacks=15), policy).reason
    # a specialist calibrated to answer 30% of the calls is expected to fall back on 70% of them
    assert review_live(on, LiveStats(routed=20, served=5, fallbacks=15), policy, coverage=0.3).action == "keep"
    assert "fell back" in review_live(on, LiveStats(routed=20, served=0, fallbacks=20), policy, coverage=0.3).reason
    assert "invalid" in review_live(on, LiveStats(routed=20, served=18, fallbacks=2, invalid=2), policy).reason
    assert review_live(on, LiveStats(routed=20, served=19, fallbacks=1), policy).action == "keep"


def test_live_stats_count_what_the_router_logged():
    def rec(i, **route):
        return CallRecord(id=str(i), ts=float(i), request={}, metadata={"route": {"attempted": True} | route})

    records = [rec(1, fallback=False), rec(2, fallback=True, fallback_reason="low_confidence"),
               rec(3, fallback=True, fallback_reason="invalid_output"),
               CallRecord(id="4", ts=4.0, request={}, metadata={"route": {"attempted": False}}),
               rec(8, fallback=True, fallback_reason="queue")]  # busy, not wrong: not counted against it
    shadows = [ShadowResult("5", "t", True, 1.0, True, confidence=0.9), ShadowResult("6", "t", False, 0.0, True, 0.3),
               ShadowResult("7", "t", False, 0.0, False, confidence=0.9)]
    stats = live_stats(records, shadows)
    assert (stats.routed, stats.served, stats.fallbacks, stats.invalid) == (3, 1, 2, 1)
    assert stats.shadow_agreement == 0.5  # the invalid answer would have fallen back: not counted
    sure = live_stats(records, shadows, min_confidence=0.5)  # nor would the unsure one
    assert (sure.shadow, sure.shadow_agreement) == (1, 1.0)


def test_decisions_are_recorded_with_evidence(tmp_path):
    with open_store(tmp_path / "p.db") as store:
        route = apply_verdict(store, "t", judge_calibration(calibration(), GatePolicy()), specialist="/s/v1",
                              min_confidence=0.3)
        assert (route.mode, route.min_confidence) == ("shadow", 0.3)
        apply_verdict(store, "t", judge_calibration(calibration(n=3), GatePolicy(), "shadow"), specialist="/s/v2")
        assert store.routes()["t"].specialist == "/s/v1"  # a held-back specialist changes no route
        with pytest.raises(ValueError, match="no specialist yet"):
            set_mode(store, "other", "on")
        set_mode(store, "t", "off", reason="maintenance")
        actions = [(d.action, d.mode_to, d.actor) for d in store.decisions("t")]
        assert actions == [("set", "off", "user"), ("hold", "shadow", "gate"), ("promote", "shadow", "gate")]
        assert store.decisions("t")[-1].evidence["quality_ratio"] == 0.99


def test_threshold_is_the_lowest_meeting_the_target():
    points = [Point("a", 0.9, 1.0, True), Point("b", 0.8, 1.0, True), Point("c", 0.5, 0.0, True),
              Point("d", 0.2, 1.0, True), Point("e", None, 0.0, False)]
    curve = tradeoff_curve(points)
    at = {c["threshold"]: c for c in curve}
    assert at[0.0] == {"threshold": 0.0, "coverage": 0.8, "served_quality": 0.75, "routed_quality": 0.8}
    assert at[0.8]["coverage"] == 0.4 and at[0.8]["routed_quality"] == 1.0
    assert choose_threshold(curve, 0.98)["threshold"] == 0.8  # serving "c" (wrong, sure-ish) would miss the target
    assert choose_threshold(curve, 0.8)["threshold"] == 0.0
    assert choose_threshold(curve, 1.1)["coverage"] == 0.0  # nothing meets it: serve nothing


def test_gate_policy_per_task_overrides():
    settings = Settings.model_validate({"gates": {"min_examples": 10, "tasks": {"t": {"min_quality_ratio": 0.9}}}})
    assert settings.gates.for_task("t").min_quality_ratio == 0.9 and settings.gates.for_task("t").min_examples == 10
    assert settings.gates.for_task("u").min_quality_ratio == 0.98


def test_tasks_and_promote_from_the_cli(home, tmp_path):
    from typer.testing import CliRunner

    from protege.cli import app

    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "t-triage", "--mode", "on"])
    assert refused.exit_code == 1 and "no specialist yet" in refused.output
    assert runner.invoke(app, ["promote", "t-triage", "--mode", "always"]).exit_code == 1
    done = runner.invoke(app, ["promote", "t-triage", "--mode", "canary", "--specialist", str(tmp_path),
                               "--canary-share", "0.25", "--reason", "try it"])
    assert done.exit_code == 0, done.output
    [row] = json.loads(runner.invoke(app, ["tasks", "--json"]).stdout)
    assert row["mode"] == "canary" and row["specialist"] == str(tmp_path.resolve())
    assert row["last_decision"]["reason"] == "try it" and row["last_decision"]["actor"] == "user"
    with open_store(home / "protege.db") as store:
        assert store.routes()["t-triage"].canary_share == 0.25


# -- the gateway routes -------------------------------------------------------------------------------

QUEUES = ["billing", "shipping", "technical", "account"]
WORDS = {"billing": "refund", "shipping": "parcel", "technical": "crash", "account": "password"}
SCHEMA = {"type": "object", "properties": {"queue": {"type": "string", "enum": QUEUES}}, "required": ["queue"],
          "additionalProperties": False}


def triage_pair(i: int) -> dict:
    queue = QUEUES[i % 4]
    request = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Route the support ticket to one queue."},
        {"role": "user", "content": f"Ticket {i}: my {WORDS[queue]} is a problem, ref {i * 7919 % 1000}."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "queue", "schema": SCHEMA}}}
    response = {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": json.dumps({"queue": queue})}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}}
    return {"request": request, "response": response}


@pytest.fixture
def routed_home(home, tmp_path):
    """A home with a discovered triage task, its specialist folder, fast route refresh, and a replay upstream."""
    require_local_extra()
    from protege.cluster.analysis import analyze_calls
    from tests.route_support import specialist_folder

    pairs = [triage_pair(i) for i in range(48)]
    recordings = tmp_path / "triage.jsonl"
    recordings.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    records = [CallRecord(id=f"c{i}", ts=1000.0 + i, request=p["request"], response=p["response"])
               for i, p in enumerate(pairs)]
    analysis = analyze_calls(records, embedder="hashing", scrub_examples=False)
    [task] = analysis.catalog.tasks
    folder = specialist_folder(tmp_path / "specialist", task)
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[routing]\nrefresh_s = 0.2\naudit_share = 0.0\n")
    port = free_port()
    upstream = start_process(["replay", str(recordings), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                             log_file=tmp_path / "replay.log")
    yield task, folder, pairs, f"http://127.0.0.1:{port}/v1"
    stop_process(upstream)


def _wait_for_mode(base: str, task: str, mode: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        routing = httpx.get(base + "/health").json()["routing"]
        if routing["routes"].get(task) == mode and (mode == "off" or task in routing["serving"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"the gateway did not pick up {task} → {mode}: {routing}")


def test_gateway_serves_the_specialist_falls_back_and_follows_promotions(routed_home, start_gateway, home):
    task, folder, pairs, upstream = routed_home
    with open_store(home / "protege.db") as store:
        set_mode(store, task, "on", specialist=str(folder))
    gw = start_gateway(upstream=upstream)
    _wait_for_mode(gw.base, task, "on")
    client = httpx.Client(base_url=gw.url, timeout=120)

    served = client.post("/chat/completions", json=pairs[0]["request"])
    assert served.status_code == 200, served.text
    assert served.headers["x-protege-served-by"] == f"specialist:{task}"
    assert served.json()["model"] == f"smollm2-135m:{task}"
    assert json.loads(served.json()["choices"][0]["message"]["content"])["queue"] in QUEUES  # constrained: parses

    cut = client.post("/chat/completions", json=pairs[1]["request"] | {"max_tokens": 1})  # cannot finish the JSON
    assert cut.headers["x-protege-served-by"] == "upstream:default"
    assert cut.headers["x-protege-fallback"] == "invalid_output"
    assert cut.json() == pairs[1]["response"]  # the caller still gets the LLM's answer

    human = client.post("/chat/completions", json=pairs[2]["request"], headers={"x-protege-human-facing": "true"})
    assert human.headers["x-protege-served-by"] == "upstream:default" and "x-protege-fallback" not in human.headers

    stream = client.post("/chat/completions", json=pairs[3]["request"] | {"stream": True})
    assert stream.headers["x-protege-served-by"] == f"specialist:{task}" and stream.text.endswith("data: [DONE]\n\n")

    with open_store(home / "protege.db") as store:  # no restart: the running gateway picks these up
        set_mode(store, task, "on", min_confidence=1.01)
    time.sleep(0.6)
    unsure = client.post("/chat/completions", json=pairs[4]["request"])
    assert unsure.headers["x-protege-fallback"] == "low_confidence"

    with open_store(home / "protege.db") as store:
        set_mode(store, task, "shadow")
    _wait_for_mode(gw.base, task, "shadow")
    shadowed = [client.post("/chat/completions", json=pairs[i]["request"]) for i in (5, 6)]
    assert all(r.headers["x-protege-served-by"] == "upstream:default" for r in shadowed)
    assert [r.json() for r in shadowed] == [pairs[5]["response"], pairs[6]["response"]]  # never the specialist's

    with open_store(home / "protege.db") as store:
        set_mode(store, task, "off")
    _wait_for_mode(gw.base, task, "off")
    off = client.post("/chat/completions", json=pairs[7]["request"])
    assert off.headers["x-protege-served-by"] == "upstream:default"
    stop_process(gw.proc)

    with open_store(home / "protege.db") as store:
        calls = {r.id: r for r in store.iter_calls()}
        by_header = {resp.headers["x-protege-call-id"]: resp for resp in (served, cut, human, unsure, off, *shadowed)}
        assert calls[served.headers["x-protege-call-id"]].served_by == f"specialist:{task}"
        assert calls[served.headers["x-protege-call-id"]].cost_usd > 0  # the serving machine's time, not free
        cut_route = calls[cut.headers["x-protege-call-id"]].metadata["route"]
        assert cut_route["fallback"] and cut_route["fallback_reason"] == "invalid_output" and cut_route["attempted"]
        assert calls[human.headers["x-protege-call-id"]].metadata["route"]["human_facing"]
        assert calls[unsure.headers["x-protege-call-id"]].metadata["route"]["confidence"] < 1.01
        assert all(calls[i].task_id == task for i in by_header if i != human.headers["x-protege-call-id"])
        shadows = store.shadow_results(task)
        assert sorted(s.call_id for s in shadows) == sorted(r.headers["x-protege-call-id"] for r in shadowed)
        assert all(s.valid and s.answer is not None for s in shadows)


def test_a_broken_catalog_leaves_every_call_to_the_llm(home, start_gateway):
    from tests.conftest import recorded_pairs

    home.mkdir(parents=True, exist_ok=True)
    (home / "tasks.json").write_text('{"version": -1, "tasks": []}')  # a catalog from another version
    gw = start_gateway()
    pair = recorded_pairs()[0]
    resp = httpx.post(gw.url + "/chat/completions", json=pair["request"], timeout=30)
    assert resp.status_code == 200 and resp.json() == pair["response"]
    assert resp.headers["x-protege-served-by"] == "upstream:default"
    assert httpx.get(gw.base + "/health").json()["routing"]["routes"] == {}
    assert "re-run `protege analyze`" in (home / "gateway.log").read_text()  # the log says what to do


class _BusyResponder:
    """A specialist whose model is busy: `queue_wait_s` says how long, or `respond` finds its queue full."""

    model_name = "busy"

    def __init__(self):
        self.wait_s, self.full, self.asked = 5.0, False, 0

    def queue_wait_s(self) -> float:
        return self.wait_s

    def respond(self, request, scope=None):
        from protege.models.errors import QueueFullError

        self.asked += 1
        if self.full:
            raise QueueFullError("smollm2-135m is busy: 64 requests already wait for it", 3)
        raise AssertionError("a specialist over the queue-wait budget must not be asked")


def test_a_busy_specialist_falls_back_to_the_llm_and_the_log_says_queue(home, tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from protege.cluster.analysis import analyze_calls
    from protege.config import UpstreamConfig
    from protege.gateway.app import create_app
    from protege.models.serving import LocalModelPool
    from protege.train import kinds

    pairs = [triage_pair(i) for i in range(48)]
    recordings = tmp_path / "triage.jsonl"
    recordings.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    [task] = analyze_calls([CallRecord(id=f"c{i}", ts=1000.0 + i, request=p["request"], response=p["response"])
                            for i, p in enumerate(pairs)], embedder="hashing", scrub_examples=False).catalog.tasks
    responder = _BusyResponder()

    class BusyKind(kinds.SpecialistKind):  # a fake of our own extension point, registered like a plugin's
        name, rank = "busy-test", 99

        def build(self, task, folder, options):
            raise NotImplementedError

        def open(self, folder, pool=None, heldout=False):
            return responder

    kinds.kinds()
    monkeypatch.setitem(kinds.KINDS, BusyKind.name, BusyKind())
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "specialist.json").write_text(json.dumps({"kind": BusyKind.name, "task": task,
                                                        "output_kind": "json"}))
    with open_store(home / "protege.db") as store:
        set_mode(store, task, "on", specialist=str(folder))
    port = free_port()
    upstream = start_process(["replay", str(recordings), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                             log_file=tmp_path / "replay.log")
    try:
        settings = Settings(upstreams=[UpstreamConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key_env="")],
                            routing={"audit_share": 0.0, "max_queue_wait_s": 0.5})
        with TestClient(create_app(settings, local_models=LocalModelPool(models=[]))) as client:
            assert client.get("/health").json()["routing"]["serving"] == [task]
            over_budget = client.post("/v1/chat/completions", json=pairs[0]["request"])
            responder.wait_s, responder.full = 0.0, True
            full = client.post("/v1/chat/completions", json=pairs[1]["request"])
    finally:
        stop_process(upstream)
    assert responder.asked == 1  # over the budget it was not even asked
    for resp, pair in ((over_budget, pairs[0]), (full, pairs[1])):
        assert resp.status_code == 200 and resp.json() == pair["response"]  # the caller gets the LLM's answer
        assert resp.headers["x-protege-served-by"] == "upstream:default"
        assert resp.headers["x-protege-fallback"] == "queue"
    with open_store(home / "protege.db") as store:
        routes = [store.get_call(r.headers["x-protege-call-id"]).metadata["route"] for r in (over_budget, full)]
    assert all(r["attempted"] and r["fallback"] and r["fallback_reason"] == "queue" for r in routes)
    assert "wait 5.00 s" in routes[0]["fallback_detail"] and "max_queue_wait_s = 0.5" in routes[0]["fallback_detail"]
    assert "busy" in routes[1]["fallback_detail"]
