"""`protege serve --workers 2` on one shared database (PostgreSQL, and SQLite on one host), under load from real
clients: a key revoked and a route changed mid-load reach both workers within the refresh interval, a worker
killed with -9 is restarted and its spool recovered, and every acknowledged call is stored once."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest

from protege.demo import free_port, start_process, stop_process
from protege.gateway.auth import create_key
from protege.records import CallRecord
from protege.store import Route, open_store
from tests.test_route import triage_pair

REFRESH_S = 0.5
SLACK_S = 1.0  # scheduling on a busy 2-core machine, on top of the refresh interval


@dataclass
class Sent:
    worker: int
    key: str
    started: float
    status: int
    call_id: str | None


class Load:
    """Client threads, each on its own keep-alive connection (so each knows which worker answers it: /health
    says), alternating two keys, until `stop()`. A connection that breaks (its worker was killed) is reopened."""

    def __init__(self, port: int, keys: dict[str, str], bodies: list[dict], workers: list[int], threads: int = 6):
        self.port, self.keys, self.bodies, self.workers = port, keys, bodies, workers
        self.sent: list[Sent] = []
        self.broken = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def connect(self, want: int | None = None, tries: int = 200) -> tuple[http.client.HTTPConnection, int]:
        """A connection and the worker it reached; with `want`, reconnect until it reaches that worker."""
        for _ in range(tries):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", "/health")
            worker = json.loads(conn.getresponse().read())["worker"]
            if want is None or worker == want:
                return conn, worker
            conn.close()
        raise AssertionError(f"{tries} connections never reached worker {want}")

    def _run(self, i: int) -> None:
        conn, worker = self.connect(want=self.workers[i % len(self.workers)])  # the threads spread over the workers
        n = i
        while not self._stop.is_set():
            name = sorted(self.keys)[n % len(self.keys)]
            body = json.dumps(self.bodies[n % len(self.bodies)])
            started = time.monotonic()
            try:
                conn.request("POST", "/v1/chat/completions", body=body,
                             headers={"Authorization": f"Bearer {self.keys[name]}", "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self.broken += 1  # the worker died mid-request: this call was never acknowledged
                conn.close()
                while not self._stop.is_set():
                    try:
                        conn, worker = self.connect()
                        break
                    except (OSError, http.client.HTTPException, ValueError):
                        time.sleep(0.05)
                continue
            self.sent.append(Sent(worker, name, started, resp.status, resp.getheader("x-protege-call-id")))
            n += 1
        conn.close()

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def worker_pids(port: int, timeout: float = 60.0) -> set[int]:
    """The two workers' pids, asking /health on new connections until both answered (one may still be starting)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < 2 and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health")
        seen.add(json.loads(conn.getresponse().read())["worker"])
        conn.close()
        time.sleep(0.05)
    assert len(seen) == 2, f"only {seen} answered within {timeout:.0f} s"
    return seen


@pytest.fixture
def triage_home(home, tmp_path):
    """A discovered triage task (hashing embedder: no model) and a replay upstream answering its calls."""
    from protege.cluster.analysis import analyze_calls

    pairs = [triage_pair(i) for i in range(48)]
    recordings = tmp_path / "triage.jsonl"
    recordings.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    records = [CallRecord(id=f"c{i}", ts=1000.0 + i, request=p["request"], response=p["response"])
               for i, p in enumerate(pairs)]
    [task] = analyze_calls(records, embedder="hashing", scrub_examples=False).catalog.tasks
    port = free_port()
    upstream = start_process(["replay", str(recordings), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                             log_file=tmp_path / "replay.log")
    yield task, [p["request"] for p in pairs], f"http://127.0.0.1:{port}/v1"
    stop_process(upstream)


def test_two_workers_share_revocations_routes_and_the_log(triage_home, home, store_url, tmp_path):
    task, bodies, upstream = triage_home
    with open_store(store_url) as store:
        keys = {"stays": create_key(store, "stays"), "revoked": create_key(store, "revoked")}
        store.set_route(Route(task, "off"))
    (home / "protege.toml").write_text(f'database = "{store_url}"\n[routing]\nrefresh_s = {REFRESH_S}\naudit_share = 0.0\n')
    port = free_port()
    gateway = start_process(["serve", "--workers", "2", "--upstream", upstream, "--port", str(port)],
                            f"http://127.0.0.1:{port}/health", os.environ.copy(), tmp_path / "gateway.log")
    try:
        workers = worker_pids(port)
        load = Load(port, keys, bodies, sorted(workers)).start()
        time.sleep(1.0)
        changed = time.monotonic()
        with open_store(store_url) as store:
            assert store.revoke_key("revoked")
            store.set_route(Route(task, "shadow"))
        time.sleep(REFRESH_S + SLACK_S + 1.5)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)  # mid-load; uvicorn restarts it and the spool is replayed
        killed = time.monotonic()
        time.sleep(4.0)
        load.stop()
    finally:
        stop_process(gateway)  # SIGTERM: the workers flush their spools

    seen = {s.worker for s in load.sent if s.started < killed}
    assert seen == workers, "both workers must have answered before the kill"
    settled = changed + REFRESH_S + SLACK_S
    for worker in workers:
        mine = [s for s in load.sent if s.worker == worker and s.started < killed]
        assert {s.status for s in mine if s.started < changed} == {200}
        late = [s for s in mine if s.started > settled]
        assert late and {s.status for s in late if s.key == "revoked"} == {401}, f"worker {worker} kept the key"
        assert {s.status for s in late if s.key == "stays"} == {200}
    assert any(s.started > killed + 1 and s.status == 200 for s in load.sent), "no call answered after the kill"

    acked = [s for s in load.sent if s.status == 200]
    with open_store(store_url) as store:
        stored = {r.id: r for r in store.iter_calls()}
    assert len({s.call_id for s in acked}) == len(acked)
    missing = [s.call_id for s in acked if s.call_id not in stored]
    assert missing == [], f"{len(missing)} acknowledged calls were not stored"
    assert len(stored) <= len(acked) + load.broken  # the killed worker may have logged calls it never answered
    for s in acked:
        mode = stored[s.call_id].metadata["route"]["mode"]
        if s.started < changed:
            assert mode == "off"
        elif s.started > settled and s.started < killed:
            assert mode == "shadow", f"worker {s.worker} still routed {task} as {mode}"
