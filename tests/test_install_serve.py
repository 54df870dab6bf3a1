"""A gateway host installs only `protege[serve,postgres]`: in a fresh virtual environment that extra alone starts the
gateway on PostgreSQL, answers and logs a call (nothing it imports may be missing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from protege.demo import free_port, stop_process, wait_healthy
from protege.store import open_store
from tests.conftest import recorded_pairs

ROOT = Path(__file__).resolve().parent.parent
NOT_IN_SERVE = ("torch", "transformers", "llama_cpp", "spacy", "sentence_transformers", "sklearn")


@pytest.mark.slow
def test_serve_extra_alone_runs_the_gateway_on_postgres(tmp_path, pg_server, upstream_url):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"{ROOT}[serve,postgres]"], capture_output=True, text=True, timeout=900, check=False)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    installed = subprocess.run([python, "-c", ("import importlib.util as u; "
                                               f"print([m for m in {NOT_IN_SERVE!r} if u.find_spec(m)])")],
                               capture_output=True, text=True, check=True)
    assert installed.stdout.strip() == "[]", "the serve extra pulled in a heavy package"

    url = pg_server.create_database()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PROTEGE_HOME": str(tmp_path / "home"), "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"}
    port = free_port()
    gateway = subprocess.Popen([venv / "bin" / "protege", "serve", "--upstream", upstream_url, "--port", str(port),
                                "--database", url], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", gateway)
        pair = recorded_pairs()[0]
        resp = httpx2.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=pair["request"], timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"] == pair["response"]["choices"]
        call_id = resp.headers["x-protege-call-id"]
    finally:
        code = stop_process(gateway)
        output = gateway.stdout.read().decode(errors="replace")
    assert code in (0, -signal.SIGTERM), output[-3000:]  # uvicorn re-raises the SIGTERM it handled
    with open_store(url) as store:
        logged = store.get_call(call_id)
    assert logged is not None and logged.request["messages"] == pair["request"]["messages"]
    assert "Traceback" not in output, output[-3000:]

