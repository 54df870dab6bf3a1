"""The gateway against hostile callers and a misbehaving upstream (issue 13): real gateway processes, a real
SQLite file, and an upstream stand-in that is a real HTTP server on 127.0.0.1 (tests/hostile_support.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx2
import pytest
from typer.testing import CliRunner

from protege.cli import app as cli_app
from protege.config import Settings
from protege.demo import free_port
from protege.gateway.app import create_app
from protege.gateway.auth import create_key
from protege.models.runtime import LocalRuntime
from protege.models.serving import LocalModelPool
from protege.store import open_store
from tests.hostile_support import HostileUpstream, Reply, ServedApp
from tests.test_gateway import stored_calls

PROTEGE_KEYS = {"route", "upstream_body", "scrubbed", "log_error"}
HI = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream():
    up = HostileUpstream()
    yield up
    up.close()


def assert_openai_error(r: httpx2.Response, status: int, *fragments: str) -> dict:
    """`r` is an OpenAI-shaped JSON error with this status whose message names every fragment."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]
    for fragment in fragments:
        assert fragment in err["message"], err["message"]
    return err


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
