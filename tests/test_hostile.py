"""The gateway against hostile callers and a misbehaving upstream (issue 13): real gateway processes, a real
SQLite file, and an upstream stand-in that is a real HTTP server on 127.0.0.1 (tests/hostile_support.py)."""

from __future__ import annotations

import os
import signal
import string
import subprocess
import sys
import time

import httpx2
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from protege.cli import app as cli_app
from protege.config import Settings
from protege.demo import free_port, start_process, stop_process, wait_healthy
from protege.gateway.app import create_app
from protege.gateway.auth import create_key
from protege.models.runtime import LocalRuntime
from protege.models.serving import LocalModelPool
from protege.openai_format import iter_sse_data, reassemble_chat_stream
from protege.store import open_store
from tests.conftest import RunningGateway
from tests.hostile_support import HostileUpstream, Reply, ServedApp, completion, delta, sse
from tests.test_gateway import stored_calls

PROTEGE_KEYS = {"route", "upstream_body", "scrubbed", "log_error"}
HI = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream():
    up = HostileUpstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def module_upstream():
    up = HostileUpstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory, module_upstream) -> RunningGateway:
    """One open-mode gateway process for the tests that need no special settings."""
    home = tmp_path_factory.mktemp("shared") / "home"
    port = free_port()
    env = os.environ | {"PROTEGE_HOME": str(home)}
    env.pop("OPENAI_API_KEY", None)
    args = ["serve", "--upstream", module_upstream.url, "--port", str(port)]
    proc = start_process(args, f"http://127.0.0.1:{port}/health", env, home / "gateway.log")
    yield RunningGateway(f"http://127.0.0.1:{port}/v1", proc, home, args, port)
    stop_process(proc)


def assert_openai_error(r: httpx2.Response, status: int, *fragments: str) -> dict:
    """`r` is an OpenAI-shaped JSON error with this status whose message names every fragment."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]
    for fragment in fragments:
        assert fragment in err["message"], err["message"]
    return err


def stored_call(gw: RunningGateway, call_id: str, timeout: float = 10.0):
    """The stored call with this id, waiting for the spool to drain."""
    deadline = time.monotonic() + timeout
    while True:
        with open_store(gw.home / "protege.db") as store:
            call = store.get_call(call_id)
        if call is not None or time.monotonic() > deadline:
            return call
        time.sleep(0.05)


def cli(*args: str):
    return CliRunner().invoke(cli_app, list(args))


# -- 1. open mode is decided at start-up, never by a revocation -------------------------------------

def test_revoking_the_last_key_locks_everyone_out_instead_of_opening_the_gateway(start_gateway, home, upstream):
    with open_store(home / "protege.db") as store:
        key = create_key(store, "agent", "client")
    gw = start_gateway(upstream=upstream.url)
    assert httpx2.post(gw.url + "/chat/completions", json=HI, headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert cli("keys", "revoke", "agent").exit_code == 0
    time.sleep(2.2)  # the key ring refreshes every 2 s
    for headers in ({}, {"authorization": f"Bearer {key}"}):
        assert_openai_error(httpx2.post(gw.url + "/chat/completions", json=HI, headers=headers), 401, "protege keys create")
        assert_openai_error(httpx2.get(gw.url + "/protege/calls", headers=headers), 401)
    assert httpx2.get(gw.base + "/health").json()["open_mode"] is False
    assert len(upstream.completions()) == 1


def test_revoking_the_last_admin_key_warns_and_needs_force(home):
    with open_store(home / "protege.db") as store:
        create_key(store, "ops", "admin")
        create_key(store, "agent", "client")
    refused = cli("keys", "revoke", "ops")
    assert refused.exit_code == 1 and "last active admin key" in refused.output and "--force" in refused.output
    with open_store(home / "protege.db") as store:
        assert all(k.is_active for k in store.list_keys())
    forced = cli("keys", "revoke", "ops", "--force")
    assert forced.exit_code == 0 and "Warning" in forced.output
    with open_store(home / "protege.db") as store:
        assert [k.name for k in store.list_keys() if k.is_active] == ["agent"]


def test_open_mode_with_keys_only_by_explicit_flag(start_gateway, home, upstream):
    with open_store(home / "protege.db") as store:
        create_key(store, "agent", "client")
    gw = start_gateway("--open", upstream=upstream.url)
    assert httpx2.post(gw.url + "/chat/completions", json=HI).status_code == 200
    assert httpx2.get(gw.base + "/health").json()["open_mode"] is True


# -- 2. open mode on a network address needs an explicit force -------------------------------------

def test_open_mode_on_a_network_address_is_refused_unless_forced(start_gateway, home, upstream):
    serve = [sys.executable, "-m", "protege", "serve", "--host", "0.0.0.0", "--port", str(free_port()),
             "--upstream", upstream.url]
    out = subprocess.run(serve, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "OPEN MODE" in out.stderr and "--allow-open-network" in out.stderr
    forced = start_gateway("--host", "0.0.0.0", "--allow-open-network", upstream=upstream.url)
    assert httpx2.get(forced.base + "/health").json()["open_mode"] is True
    with open_store(home / "protege.db") as store:
        create_key(store, "ops", "admin")
    keyed = start_gateway("--host", "0.0.0.0", upstream=upstream.url)
    assert_openai_error(httpx2.get(keyed.url + "/protege/calls"), 401)


# -- 6. protege's own metadata keys are never taken from the caller -------------------------------

def test_caller_metadata_cannot_set_protege_keys(start_gateway, upstream):
    gw = start_gateway(upstream=upstream.url)
    spoofs = ["a string", {"task": "t", "fallback": True, "fallback_reason": "spoofed", "mode": "on"}]
    for route in spoofs:
        meta = {"route": route, "upstream_body": "forged", "scrubbed": {"EMAIL": 9}, "log_error": "x", "task": "label"}
        r = httpx2.post(gw.url + "/chat/completions", json=HI | {"metadata": meta})
        assert r.status_code == 200, r.text
        assert "x-protege-fallback" not in r.headers and "x-protege-task" not in r.headers
    calls = stored_calls(gw.home, len(spoofs))
    assert len(calls) == len(spoofs)
    for call in calls:
        assert not PROTEGE_KEYS & set(call.metadata), call.metadata
        assert call.metadata["task"] == "label" and call.request["metadata"]["upstream_body"] == "forged"


# -- 3. the adapter in `model` is a name, never a path --------------------------------------------

class EchoRuntime(LocalRuntime):
    """A local base model that answers "ok" and records which adapter files it was asked to load."""

    model_id = "smollm2-135m"

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}

    def render(self, request: dict) -> str:
        return ""

    def _generate(self, prompt, plan, params, adapter, gen):
        gen.finish_reason = "stop"
        yield "ok"

    def adapter_names(self) -> list[str]:
        return list(self.loaded)

    def load_adapter(self, name: str, path) -> None:
        self.loaded[name] = str(path)


class EchoPool(LocalModelPool):
    def __init__(self, adapter_dir) -> None:
        super().__init__(models=["smollm2-135m"], adapter_dir=adapter_dir)
        self.runtime = EchoRuntime()

    def _base_runtime(self, base: str) -> EchoRuntime:
        return self.runtime


def test_adapter_names_are_names_not_paths(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.gguf").write_bytes(b"GGUF not yours")
    pool = EchoPool(tmp_path / "home" / "adapters")
    settings = Settings(database=str(tmp_path / "p.db"), spool_dir=str(tmp_path / "spool"))
    served = ServedApp(create_app(settings, local_models=pool))
    try:
        answers = []
        for adapter in ["../../../outside/evil", "../../../outside/missing", str(outside / "evil"), "..", "a/b"]:
            r = httpx2.post(served.url + "/chat/completions", json=HI | {"model": f"smollm2-135m:{adapter}"})
            answers.append(assert_openai_error(r, 400, "not a path")["message"])
            assert str(tmp_path) not in r.text
        assert len(set(answers)) == 1  # an existing file and a missing one get the same answer
        r = httpx2.post(served.url + "/chat/completions", json=HI | {"model": "smollm2-135m:nope"})
        assert assert_openai_error(r, 404, "'nope'")["code"] == "model_not_found" and str(tmp_path) not in r.text
        assert pool.runtime.loaded == {}
    finally:
        served.close()


# -- 5. upstream credentials in the URL are never shown ----------------------------------------------

def test_upstream_credentials_in_the_url_never_reach_a_caller_the_log_or_the_db(start_gateway, home, upstream):
    secret = "s3cret-Token-77"
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[gateway]\ntimeout_s = 0.5\nretries = 0\n")
    gw = start_gateway(upstream=upstream.url.replace("http://", f"http://bob:{secret}@"))
    assert httpx2.post(gw.url + "/chat/completions", json=HI).status_code == 200
    assert upstream.requests[-1][1]["authorization"].startswith("Basic ")  # still used, as Basic auth
    upstream.queue(Reply(then="hang", chunks=[b""]))
    assert_openai_error(httpx2.post(gw.url + "/chat/completions", json=HI, timeout=10), 504, "***@")
    dead = start_gateway(upstream=f"http://bob:{secret}@127.0.0.1:9/v1")
    r = httpx2.post(dead.url + "/chat/completions", json=HI, timeout=10)
    assert_openai_error(r, 502, "Cannot reach upstream")
    assert secret not in r.text
    calls = stored_calls(home, 3)
    assert sorted(c.status for c in calls) == [200, 502, 504]
    for c in calls:
        assert secret not in repr(c.to_dict())
    assert secret not in (home / "gateway.log").read_text()


# -- 12. every route answers in OpenAI's error shape, with validated parameters -------------------

@pytest.mark.parametrize("method, path, status, fragment", [
    ("GET", "/v1/chat/completions", 405, "POST"),
    ("PUT", "/v1/protege/calls", 405, "GET"),
    ("GET", "/v1/nowhere", 404, "/v1/chat/completions"),
])
def test_unknown_routes_and_methods_answer_in_openai_shape(shared_gateway, method, path, status, fragment):
    assert_openai_error(httpx2.request(method, shared_gateway.base + path), status, fragment)


@pytest.mark.parametrize("path", [
    "/v1/protege/calls?limit=99999999999999999999999", "/v1/protege/calls?limit=-1", "/v1/protege/calls?limit=0",
    "/v1/protege/calls?since=nan", "/v1/protege/stats?until=inf", "/v1/protege/report?hours=1e308",
    "/v1/protege/report?hours=-5", "/v1/protege/report?buckets=x", "/dashboard?since=1e400",
])
def test_bad_query_parameters_get_a_400_naming_them(shared_gateway, path):
    name = path.split("?")[1].split("=")[0]
    assert_openai_error(httpx2.get(shared_gateway.base + path), 400, f"{name!r}")


# -- 11. request size, n and local max_tokens are bounded ------------------------------------------

def test_oversized_requests_get_413_and_are_neither_forwarded_nor_stored(start_gateway, home, upstream):
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[gateway]\nmax_request_bytes = 100000\n")
    gw = start_gateway(upstream=upstream.url)
    big = HI | {"messages": [{"role": "user", "content": "x" * 200_000}]}
    assert_openai_error(httpx2.post(gw.url + "/chat/completions", json=big), 413, "max_request_bytes")

    def chunked():  # no Content-Length: the limit holds on the bytes actually read
        yield orjson.dumps(big)

    assert_openai_error(httpx2.post(gw.url + "/chat/completions", content=chunked()), 413, "max_request_bytes")
    for n in (0, 129, 10**9, "2", 1.5, True):
        assert_openai_error(httpx2.post(gw.url + "/chat/completions", json=HI | {"n": n}), 400, "'n'")
    assert httpx2.post(gw.url + "/chat/completions", json=HI | {"n": 2}).status_code == 200
    assert len(upstream.completions()) == 1
    assert len(stored_calls(home, 1)) == 1


def test_local_models_bound_max_tokens_by_their_context(tmp_path):
    pool = EchoPool(tmp_path / "adapters")
    served = ServedApp(create_app(Settings(database=str(tmp_path / "p.db"), spool_dir=str(tmp_path / "s")), local_models=pool))
    try:
        for key, value in (("max_tokens", 10**9), ("max_completion_tokens", 0), ("max_tokens", "many")):
            r = httpx2.post(served.url + "/chat/completions", json=HI | {"model": "smollm2-135m", key: value})
            assert_openai_error(r, 400, f"'{key}'", "context length")
        assert httpx2.post(served.url + "/chat/completions", json=HI | {"model": "smollm2-135m", "max_tokens": 5}).status_code == 200
    finally:
        served.close()


# -- 9. JSON nested deeper than the log can hold ----------------------------------------------------

def test_deeply_nested_json_is_refused_before_it_is_sent_upstream(shared_gateway, module_upstream):
    before = len(module_upstream.completions())
    for depth in (100, 300, 1000, 5000):
        body = orjson.dumps(HI)[:-1] + b',"tools":' + b"[" * depth + b"]" * depth + b"}"
        r = httpx2.post(shared_gateway.url + "/chat/completions", content=body, headers={"content-type": "application/json"})
        assert_openai_error(r, 400, *(["levels deep"] if depth <= 1000 else []))
    assert len(module_upstream.completions()) == before


def test_an_answer_too_deep_to_log_still_reaches_the_caller_and_leaves_a_placeholder(start_gateway, upstream):
    gw = start_gateway(upstream=upstream.url)
    deep = orjson.dumps(completion("ok"))[:-1] + b',"extra":' + b"[" * 300 + b"]" * 300 + b"}"
    upstream.queue(Reply(body=deep))
    r = httpx2.post(gw.url + "/chat/completions", json=HI)
    assert r.status_code == 200 and r.content == deep
    [call] = stored_calls(gw.home, 1)
    assert call.id == r.headers["x-protege-call-id"] and call.status == 200
    assert call.metadata["log_error"] and "could not log" in call.error and call.response is None


# -- 7, 8. streams are parsed as SSE events, and one that ends early is an error --------------------

def test_a_streamed_answer_containing_the_done_marker_is_stored_whole(shared_gateway, module_upstream):
    module_upstream.queue(Reply(chunks=sse(delta("say data: [DONE] "), delta("and go on"), delta("", "stop"), "[DONE]")))
    with httpx2.stream("POST", shared_gateway.url + "/chat/completions", json=HI | {"stream": True}) as r:
        raw = b"".join(r.iter_bytes())
    assert r.status_code == 200 and raw.endswith(b"data: [DONE]\n\n")
    call = stored_call(shared_gateway, r.headers["x-protege-call-id"])
    assert call.is_success and call.response["choices"][0]["message"]["content"] == "say data: [DONE] and go on"


def test_a_stream_ended_before_done_is_an_error_for_the_caller_and_in_the_log(shared_gateway, module_upstream):
    module_upstream.queue(Reply(chunks=sse(delta("half an "), delta("answer"))))  # then a clean EOF
    client = openai.OpenAI(base_url=shared_gateway.url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match=r"\[DONE\]"):
        for _ in client.chat.completions.create(**HI, stream=True):
            pass
    deadline = time.monotonic() + 10  # the caller sees the error before the gateway has logged the call
    while not (broken := [c for c in stored_calls(shared_gateway.home) if c.request.get("stream") and c.status != 200]) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    [call] = broken
    assert call.status == 502 and "before `data: [DONE]`" in call.error and not call.is_success
    assert call.response["choices"][0]["message"]["content"] == "half an answer"  # what the caller saw, kept


# -- 4. with scrub_at_ingest, no raw PII reaches the disk through any field ------------------------

def test_scrub_at_ingest_covers_error_bodies_metadata_and_the_workload_header(start_gateway, home, upstream):
    email, phone = "dana.w@example.org", "+1 415 555 0199"
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("scrub_at_ingest = true\n[gateway]\nretries = 0\n")
    gw = start_gateway(upstream=upstream.url)
    leak = f"account {email} (phone {phone}) is suspended"
    upstream.queue(Reply(status=400, body={"error": {"message": leak, "type": "invalid_request_error"}}),
                   Reply(status=502, body=f"<html>{leak}</html>".encode()))
    for _ in range(2):
        r = httpx2.post(gw.url + "/chat/completions", json=HI | {"metadata": {"customer": email, "note": phone}},
                        headers={"x-protege-workload": f"agent-for-{email}"})
        assert email in r.text  # the caller still gets the upstream's own words
    calls = stored_calls(home, 2)
    assert sorted(c.status for c in calls) == [400, 502]
    assert all("<EMAIL_1>" in repr(c.to_dict()) for c in calls)
    written = b"".join(p.read_bytes() for p in [*home.glob("protege.db*"), *(home / "spool").glob("*")])
    for secret in (email, phone, "555 0199"):
        assert secret.encode() not in written


# -- 10. a full disk: no torn spool lines, a quick SIGTERM, and an exact account of what was lost ----

FULL_DISK = """import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
sys.argv = ["protege", *sys.argv[1:]]
runpy.run_module("protege", run_name="__main__")
"""


def test_a_full_disk_loses_nothing_silently(start_gateway, home, upstream):
    port = free_port()
    log_file = home / "full-disk.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", FULL_DISK.format(limit=300_000), "serve", "--upstream",
                                 upstream.url, "--port", str(port)], stdout=out, stderr=out)
    wait_healthy(f"http://127.0.0.1:{port}/health", proc)
    acknowledged = []
    with httpx2.Client(timeout=10) as http:
        for i in range(600):  # ~1 KB a call: the spool and the database both hit the 300 KB limit
            r = http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=HI | {"user": f"caller-{i:04d}"})
            assert r.status_code == 200
            acknowledged.append(r.headers["x-protege-call-id"])
    assert httpx2.get(f"http://127.0.0.1:{port}/health").json()["spool_errors"] > 0
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert time.monotonic() - t0 < 15
    restarted = start_gateway(upstream=upstream.url)  # no limit: replays what the spool kept
    missing = set(acknowledged) - {c.id for c in stored_calls(restarted.home, len(acknowledged), timeout=5)}
    log = log_file.read_text() + (home / "gateway.log").read_text()
    assert "unreadable spool line" not in log  # no torn line
    if missing:
        assert f"{len(missing)} calls could be written neither to the spool nor to the store" in log
        assert all(call_id in log for call_id in sorted(missing)[:100])
    else:
        assert "are lost" not in log


# -- 14. the CLI answers bad paths and files with one line naming the fix, and a non-zero exit ----

def assert_clean_failure(result, *fragments: str) -> None:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert result.output.startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output


def test_cli_export_and_import_fail_cleanly_on_bad_paths_and_files(home, tmp_path):
    assert cli("logs", "list").exit_code == 0  # creates the store
    assert_clean_failure(cli("export", "-o", str(tmp_path / "missing" / "out.jsonl")), "Cannot write", "-o")
    assert_clean_failure(cli("export", "-o", str(tmp_path)), "Cannot write")
    assert_clean_failure(cli("import", str(tmp_path)), "a folder")
    fake_gz = tmp_path / "calls.jsonl.gz"
    fake_gz.write_text('{"messages": []}\n')
    assert_clean_failure(cli("import", str(fake_gz)), "Cannot read", ".gz")
    binary = tmp_path / "image.jsonl"
    binary.write_bytes(bytes(range(256)) * 64)
    assert_clean_failure(cli("import", str(binary)), "is a call", "JSONL")


def test_cli_export_to_a_full_device_fails_cleanly(home, upstream, start_gateway):
    gw = start_gateway(upstream=upstream.url)
    httpx2.post(gw.url + "/chat/completions", json=HI)
    stored_calls(home, 1)
    assert_clean_failure(cli("export", "--format", "raw", "-o", "/dev/full"), "Cannot write")


def test_cli_with_an_unusable_protege_home_fails_cleanly(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PROTEGE_HOME", str(tmp_path / "a-file" / "home"))
    for args in (("logs", "list"), ("keys", "create", "--name", "x")):
        assert_clean_failure(cli(*args), "PROTEGE_HOME")


# -- property: whatever a caller sends, it is forwarded and logged exactly, or refused with an OpenAI 4xx ----

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                                                                                       allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", ""]),
                                           "content": st.text() | st.just("data: [DONE]\n\n") | json_values}),
                    min_size=0, max_size=3)
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "", "x" * 300]) | st.text(max_size=20) | json_values,
     "messages": messages | json_values},
    optional={"n": st.integers(-3, 200) | json_values, "stream": st.booleans() | json_values,
              "max_tokens": st.integers(-5, 10**6) | json_values,
              "metadata": st.dictionaries(st.sampled_from(["route", "upstream_body", "scrubbed", "log_error", "task",
                                                           "workload"]) | st.text(max_size=8), json_values, max_size=4),
              "tools": json_values, "response_format": json_values},
)
raw_bodies = (chat_bodies.map(orjson.dumps) | json_values.map(orjson.dumps) | st.binary(max_size=200)
              | st.integers(1, 400).map(lambda d: b'{"model": "gpt-4o-mini", "messages": ' + b"[" * d + b"]" * d + b"}"))
workloads = st.none() | st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=raw_bodies, workload=workloads)
def test_any_request_is_forwarded_and_logged_exactly_or_refused_in_openai_shape(shared_gateway, module_upstream, raw,
                                                                                workload):
    forwarded = len(module_upstream.completions())
    headers = {"content-type": "application/json"} | ({"x-protege-workload": workload} if workload else {})
    r = httpx2.post(shared_gateway.url + "/chat/completions", content=raw, headers=headers, timeout=30)
    if r.status_code != 200:
        assert 400 <= r.status_code < 500, r.text
        assert_openai_error(r, r.status_code)
        assert len(module_upstream.completions()) == forwarded  # refused before anything was sent (or billed)
        return
    assert module_upstream.completions()[-1] == raw  # forwarded byte for byte
    call = stored_call(shared_gateway, r.headers["x-protege-call-id"])
    assert call is not None and call.is_success and call.request == orjson.loads(raw)
    if r.headers["content-type"].startswith("text/event-stream"):
        assert r.content.endswith(b"data: [DONE]\n\n")
        assert call.response == reassemble_chat_stream(iter_sse_data(r.content))
    else:
        assert call.response == r.json()
    assert not PROTEGE_KEYS & set(call.metadata)
    if workload:
        assert call.workload == workload
