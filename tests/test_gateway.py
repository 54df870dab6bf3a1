"""The gateway as a real process on 127.0.0.1, in front of a real replay upstream process."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from protege.openai_format import iter_sse_data, reassemble_chat_stream
from protege.store import open_store
from tests.conftest import recorded_pairs


def pair(n: int) -> dict:
    return recorded_pairs()[n]


def squared(n: int) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"What is {n} squared?"}]}


def stored_calls(home, wait_for: int = 0, timeout: float = 10.0):
    """The calls in the gateway's store, waiting until at least `wait_for` have arrived."""
    deadline = time.monotonic() + timeout
    while True:
        with open_store(home / "protege.db") as store:
            calls = list(store.iter_calls())
        if len(calls) >= wait_for or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def test_call_is_forwarded_and_logged_with_its_fields(start_gateway):
    gw = start_gateway()
    req = pair(1)["request"]  # tools + tool_choice
    r = httpx2.post(gw.url + "/chat/completions", json=req | {"metadata": {"task": "weather"}},
                    headers={"x-protege-workload": "travel-agent"})
    assert r.status_code == 200
    assert r.json() == pair(1)["response"]
    [call] = stored_calls(gw.home, 1)
    assert call.id == r.headers["x-protege-call-id"]
    assert call.workload == "travel-agent" and call.metadata["task"] == "weather"
    assert call.requested_model == "gpt-4o" and call.upstream_model == "gpt-4o-2024-08-06"
    assert call.served_by == "upstream:default" and call.source == "gateway"
    assert call.has_tools and not call.stream and call.status == 200 and call.error is None
    assert (call.prompt_tokens, call.completion_tokens) == (130, 21)
    assert call.cost_usd == pytest.approx((130 * 2.5 + 21 * 10.0) / 1e6)
    assert call.latency_ms > 0 and call.ttft_ms > 0
    assert call.request["tool_choice"] == "auto" and call.response == pair(1)["response"]


def test_unknown_model_price_is_logged_as_unknown_cost(start_gateway):
    gw = start_gateway()
    r = httpx2.post(gw.url + "/chat/completions", json=pair(5)["request"])
    assert r.status_code == 200
    [call] = stored_calls(gw.home, 1)
    assert call.cost_usd is None and call.prompt_tokens == 9
    assert "No price known for model 'mystery-model-x'" in (gw.home / "gateway.log").read_text()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_stream_passes_through_and_is_reassembled_exactly(start_gateway, n):
    gw = start_gateway()
    req = pair(n)["request"] | {"stream": True, "stream_options": {"include_usage": True}}
    with httpx2.stream("POST", gw.url + "/chat/completions", json=req) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    assert raw.endswith(b"data: [DONE]\n\n")
    expected = pair(n)["response"]
    [call] = stored_calls(gw.home, 1)
    assert call.stream and call.ttft_ms <= call.latency_ms
    assert call.response == reassemble_chat_stream(iter_sse_data(raw))
    got = call.response["choices"][0]
    want = expected["choices"][0]
    assert got["message"].get("content") == want["message"].get("content")
    assert got["message"].get("tool_calls") == want["message"].get("tool_calls")
    assert got["finish_reason"] == want["finish_reason"]
    assert call.response["usage"] == expected["usage"] and call.cost_usd is not None


def test_dozens_of_concurrent_clients_each_get_their_own_answer(start_gateway):
    gw = start_gateway()
    client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)

    def ask(n: int) -> tuple[int, str, bool]:
        stream = n % 2 == 1
        if stream:
            parts = client.chat.completions.create(**squared(n), stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        else:
            text = client.chat.completions.create(**squared(n)).choices[0].message.content
        return n, text, stream

    with ThreadPoolExecutor(48) as pool:
        results = list(pool.map(ask, range(64)))
    for n, text, _ in results:
        assert text == f"{n} squared is {n * n}."
    calls = stored_calls(gw.home, 64)
    assert len(calls) == 64
    by_question = {c.request["messages"][0]["content"]: c for c in calls}
    for n in range(64):
        c = by_question[f"What is {n} squared?"]
        assert c.response["choices"][0]["message"]["content"] == f"{n} squared is {n * n}."
        assert c.stream == (n % 2 == 1)


def test_upstream_errors_keep_status_and_body(start_gateway):
    gw = start_gateway()
    r = httpx2.post(gw.url + "/chat/completions", json=squared(1), headers={"x-replay-status": "400"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "injected"
    r = httpx2.post(gw.url + "/chat/completions", json=squared(1), headers={"x-replay-status": "500"})
    assert r.status_code == 500 and r.json()["error"]["message"] == "injected error 500"
    calls = stored_calls(gw.home, 2)
    assert sorted(c.status for c in calls) == [400, 500]
    assert all(c.error and c.response is None for c in calls)


def test_overloaded_upstream_is_retried_with_backoff(start_gateway):
    gw = start_gateway()
    r = httpx2.post(gw.url + "/chat/completions", json=squared(2), headers={"x-replay-flaky": "t1:2"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "2 squared is 4."
    metrics = httpx2.get(gw.base + "/metrics").text
    assert "protege_upstream_retries_total 2.0" in metrics
    r = httpx2.post(gw.url + "/chat/completions", json=squared(2), headers={"x-replay-flaky": "t2:5"})
    assert r.status_code == 503  # retries exhausted: the upstream's answer is passed on


def test_timeout_gives_504_and_unreachable_gives_502(start_gateway, home, upstream_url):
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[gateway]\ntimeout_s = 0.5\n")
    gw = start_gateway()
    t0 = time.monotonic()
    r = httpx2.post(gw.url + "/chat/completions", json=squared(3), headers={"x-replay-delay-ms": "3000"}, timeout=10)
    assert r.status_code == 504 and time.monotonic() - t0 < 2.5
    assert "did not answer within 0.5 s" in r.json()["error"]["message"]
    dead = start_gateway(upstream="http://127.0.0.1:9/v1")
    r = httpx2.post(dead.url + "/chat/completions", json=squared(3), timeout=10)
    assert r.status_code == 502 and "Cannot reach upstream" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "upstream_unreachable"
    statuses = sorted(c.status for c in stored_calls(home, 2))
    assert statuses == [502, 504]


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "'model'"),
        (b'{"model": "gpt-4o-mini", "messages": []}', "'messages'"),
    ],
)
def test_malformed_requests_get_400_in_openai_shape(start_gateway, body, fragment):
    gw = start_gateway()
    r = httpx2.post(gw.url + "/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] == "invalid_request_error"


def test_stream_broken_by_upstream_is_logged_as_error(start_gateway):
    gw = start_gateway()
    with httpx2.stream("POST", gw.url + "/chat/completions", json=pair(4)["request"] | {"stream": True},
                       headers={"x-replay-break-after": "3"}) as r:
        raw = b"".join(r.iter_bytes())
    assert b"upstream_stream_error" in raw
    [call] = stored_calls(gw.home, 1)
    assert call.status == 502 and "broke off" in call.error


def test_api_keys_and_roles(start_gateway, home):
    from protege.gateway.auth import create_key

    with open_store(home / "protege.db") as store:
        client_key = create_key(store, "agent-1", "client")
        admin_key = create_key(store, "ops", "admin")
        assert all(k.key_hash not in (client_key, admin_key) for k in store.list_keys())
    gw = start_gateway()
    url = gw.url + "/chat/completions"
    assert httpx2.post(url, json=squared(4)).status_code == 401
    assert httpx2.post(url, json=squared(4), headers={"authorization": "Bearer pk-wrong"}).status_code == 401
    r = httpx2.post(url, json=squared(4), headers={"authorization": f"Bearer {client_key}"})
    assert r.status_code == 200
    assert httpx2.get(gw.url + "/protege/calls", headers={"authorization": f"Bearer {client_key}"}).status_code == 403
    r = httpx2.get(gw.url + "/protege/calls", headers={"authorization": f"Bearer {admin_key}"})
    assert r.status_code == 200
    [call] = r.json()["data"]
    assert call["client"] == "agent-1"
    one = httpx2.get(gw.url + f"/protege/calls/{call['id']}", headers={"authorization": f"Bearer {admin_key}"})
    assert one.json()["response"]["choices"][0]["message"]["content"] == "4 squared is 16."
    stats = httpx2.get(gw.url + "/protege/stats", headers={"authorization": f"Bearer {admin_key}"}).json()
    assert stats["total"]["calls"] == 1
    with open_store(home / "protege.db") as store:
        assert store.revoke_key("agent-1")
    time.sleep(2.2)  # the key ring refreshes every 2 s
    assert httpx2.post(url, json=squared(4), headers={"authorization": f"Bearer {client_key}"}).status_code == 401


def test_open_mode_is_announced(start_gateway):
    gw = start_gateway()
    assert httpx2.get(gw.base + "/health").json()["open_mode"] is True
    assert "OPEN MODE" in (gw.home / "gateway.log").read_text()


def test_models_health_and_metrics(start_gateway):
    gw = start_gateway()
    ids = {m["id"] for m in httpx2.get(gw.url + "/models").json()["data"]}
    assert {"gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"} <= ids
    httpx2.post(gw.url + "/chat/completions", json=squared(5))
    stored_calls(gw.home, 1)
    metrics = httpx2.get(gw.base + "/metrics").text
    assert 'protege_requests_total{served_by="upstream:default",status="200"} 1.0' in metrics
    assert "protege_request_latency_seconds_bucket" in metrics and "protege_log_backlog" in metrics


def test_sigkill_under_load_loses_no_acknowledged_call(start_gateway):
    """Kill -9 the gateway while 16 clients hammer it; after a restart every acknowledged call is stored."""
    gw = start_gateway()
    acknowledged: list[str] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx2.Client(timeout=5) as http:
            i = 0
            while not stop.is_set() and i < 2000:
                i += 1
                try:
                    r = http.post(gw.url + "/chat/completions", json=squared((worker + i) % 64))
                except httpx2.HTTPError:
                    continue  # the gateway is dead: this call was never acknowledged
                if r.status_code == 200:
                    acknowledged.append(r.headers["x-protege-call-id"])

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) > 50
    restarted = start_gateway(port=gw.port)
    stored = {c.id for c in stored_calls(restarted.home, len(acknowledged))}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged calls were lost"
    assert "Recovered" in (restarted.home / "gateway.log").read_text()


def test_sigterm_flushes_everything_and_cleans_the_spool(start_gateway):
    gw = start_gateway()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda n: httpx2.post(gw.url + "/chat/completions", json=squared(n)).status_code, range(40)))
    assert codes == [200] * 40
    gw.proc.send_signal(signal.SIGTERM)
    gw.proc.wait(30)
    assert len(stored_calls(gw.home)) == 40
    assert list((gw.home / "spool").glob("*.jsonl")) == []


def test_several_upstreams_by_model_from_the_config_file(start_gateway, home, upstream_url):
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text(
        f'[[upstreams]]\nname = "fast"\nbase_url = "{upstream_url}"\nmodels = ["gpt-4o-mini*"]\n\n'
        '[[upstreams]]\nname = "nowhere"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["gpt-4o*"]\n\n'
        '[prices]\n"mystery-model-x" = { input = 1.0, output = 2.0 }\n'
    )
    gw = start_gateway(upstream="")  # no --upstream: only the config file's upstreams
    assert httpx2.post(gw.url + "/chat/completions", json=squared(6)).status_code == 200
    assert httpx2.post(gw.url + "/chat/completions", json=pair(1)["request"]).status_code == 502
    r = httpx2.post(gw.url + "/chat/completions", json=pair(5)["request"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    served = {c.requested_model: c.served_by for c in stored_calls(home, 2)}
    assert served == {"gpt-4o-mini": "upstream:fast", "gpt-4o": "upstream:nowhere"}


def test_bad_config_file_names_the_field(home, upstream_url):
    import subprocess
    import sys

    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[gateway]\nport = 'eighty'\ncolour = 1\n")
    out = subprocess.run([sys.executable, "-m", "protege", "serve"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "gateway.port" in out.stderr and "gateway.colour" in out.stderr


def test_logging_never_blocks_on_a_slow_database(tmp_path):
    """The hot path only appends to the spool: with the database locked, log() still returns at once."""
    import sqlite3

    from protege.records import CallRecord
    from protege.store.spool import CallLog

    store = open_store(tmp_path / "p.db")
    call_log = CallLog(store, tmp_path / "spool")
    blocker = sqlite3.connect(tmp_path / "p.db")
    blocker.execute("BEGIN EXCLUSIVE")
    t0 = time.perf_counter()
    for i in range(500):
        call_log.log(CallRecord(id=f"c{i}", ts=time.time(), request=squared(i)))
    assert time.perf_counter() - t0 < 1.0
    blocker.rollback()
    blocker.close()
    assert call_log.flush(30)
    assert len(list(store.iter_calls())) == 500
    call_log.close()


def test_stats_cli_json_matches_store(start_gateway, home):
    from typer.testing import CliRunner

    from protege.cli import app

    gw = start_gateway()
    for n in range(3):
        httpx2.post(gw.url + "/chat/completions", json=squared(n) | {"metadata": {"task": "math"}},
                    headers={"x-protege-workload": "calc"})
    stored_calls(home, 3)
    out = CliRunner().invoke(app, ["logs", "stats", "--json"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.output)
    assert stats["total"]["calls"] == 3
    assert stats["by_task_label"] == [stats["by_task_label"][0]] and stats["by_task_label"][0]["name"] == "math"
    assert stats["by_workload"][0]["name"] == "calc"


def test_scrub_at_ingest_never_writes_raw_pii(start_gateway, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("scrub_at_ingest = true\n")
    gw = start_gateway()
    r = httpx2.post(gw.url + "/chat/completions", json=pair(3)["request"])
    assert r.json() == pair(3)["response"]  # the caller still gets the real answer
    [call] = stored_calls(gw.home, 1)
    stored = json.dumps([call.request, call.response])
    assert "dana.w@example.org" not in stored and "<EMAIL_1>" in stored
    assert json.loads(call.response["choices"][0]["message"]["content"])["email"] == "<EMAIL_1>"
    written = b"".join(p.read_bytes() for p in [*gw.home.glob("protege.db*"), *(gw.home / "spool").glob("*")])
    assert b"dana.w@example.org" not in written and b"Dana Whitfield" not in written
