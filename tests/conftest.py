"""Shared fixtures: a replay upstream and protege gateways running as real processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from protege.demo import free_port, start_process, stop_process

RECORDINGS = Path(__file__).parent / "data" / "upstream_recordings.jsonl"


def recorded_pairs() -> list[dict]:
    return [json.loads(line) for line in RECORDINGS.read_text().splitlines() if line.strip()]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh PROTEGE_HOME for this test (and for the processes it starts)."""
    monkeypatch.setenv("PROTEGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PROTEGE_DATABASE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="session")
def upstream_url(tmp_path_factory) -> str:
    """A replay upstream (`protege replay`) serving the recorded responses in tests/data."""
    port = free_port()
    log = tmp_path_factory.mktemp("replay") / "replay.log"
    proc = start_process(["replay", str(RECORDINGS), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                         log_file=log)
    yield f"http://127.0.0.1:{port}/v1"
    stop_process(proc)


@dataclass
class RunningGateway:
    url: str
    proc: subprocess.Popen
    home: Path
    args: list[str]
    port: int

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")


@pytest.fixture
def start_gateway(home, upstream_url):
    """Start `protege serve` processes in front of the replay upstream; stopped (SIGTERM) at the end."""
    started: list[RunningGateway] = []

    def start(*extra: str, port: int | None = None, upstream: str | None = None) -> RunningGateway:
        """`upstream=""` starts it without --upstream (only the config file's upstreams)."""
        port = port or free_port()
        upstream = upstream_url if upstream is None else upstream
        args = ["serve", *(["--upstream", upstream] if upstream else []), "--port", str(port), *extra]
        proc = start_process(args, f"http://127.0.0.1:{port}/health", os.environ.copy(), home / "gateway.log")
        gw = RunningGateway(f"http://127.0.0.1:{port}/v1", proc, home, args, port)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        stop_process(gw.proc)


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the whole session (tests/pg_support.py); each test makes its own database."""
    from tests.pg_support import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store_url(request, tmp_path):
    """Makes the URL of a new, empty store: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        names = iter(range(1000))
        return lambda: str(tmp_path / f"store{next(names)}.db")
    return request.getfixturevalue("pg_server").create_database


@pytest.fixture
def store_url(new_store_url) -> str:
    """A new, empty store on each backend in turn."""
    return new_store_url()
