"""The main job (`protege demo`, `make demo`): the bundled agent traces, replayed by an agent-like client
through a running gateway in front of a replay upstream, end up in the store; then a summary.

The traces are synthetic, with reference answers standing in for a big model (see
`scripts/make_demo_traces.py`). The client is the plain `openai` SDK pointed at the gateway, as a
user's agent would be, tagging each call with its workload and (for measurement) its task label.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import httpx2

from protege.data import demo_traces_path
from protege.gateway.replay import read_jsonl
from protege.store import open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited with code {proc.returncode} during start-up.")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {timeout:.0f} s.")


def start_process(args: list[str], health_url: str, env: dict | None = None, log_file: Path | None = None) -> subprocess.Popen:
    """Start `python -m protege ARGS` and wait for its /health."""
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "protege", *args], env=env or os.environ.copy(), stdout=out, stderr=out)
    try:
        wait_healthy(health_url, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM (the gateway flushes its log), SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def bundled_traces() -> Path:
    path = demo_traces_path()
    if not path.exists():
        raise RuntimeError(f"The bundled traces are missing at {path}; regenerate them with "
                           "`python scripts/make_demo_traces.py`.")
    return path


def run_demo(home: Path, calls: int | None = None, concurrency: int = 16, console=None) -> dict:
    """Replay the traces through a fresh gateway into `home`; returns the store's stats."""
    import openai

    say = console.print if console else print
    traces = bundled_traces()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = os.environ.copy() | {"PROTEGE_HOME": str(home.resolve())}
    env.pop("OPENAI_API_KEY", None)
    up_port, gw_port = free_port(), free_port()
    say(f"[1/3] starting a replay upstream (the stand-in LLM) and the gateway; logs in {home}/")
    upstream = start_process(["replay", str(traces), "--port", str(up_port)],
                             f"http://127.0.0.1:{up_port}/health", env, home / "replay.log")
    try:
        gateway = start_process(["serve", "--upstream", f"http://127.0.0.1:{up_port}/v1", "--port", str(gw_port)],
                                f"http://127.0.0.1:{gw_port}/health", env, home / "gateway.log")
        try:
            lines = list(islice(read_jsonl(traces), calls))
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{gw_port}/v1", api_key="demo", max_retries=0)

            def send(line: dict) -> bool:
                meta = line.get("metadata") or {}
                body = dict(line["request"])
                body["metadata"] = {"task": str(meta.get("task")), "workload": str(meta.get("workload"))}
                try:
                    client.chat.completions.create(**body)
                    return True
                except openai.APIError:
                    return False

            say(f"[2/3] an agent sends {len(lines)} calls through the gateway ({concurrency} at a time)")
            t0 = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                ok = sum(pool.map(send, lines))
            elapsed = time.perf_counter() - t0
            say(f"      {ok}/{len(lines)} answered in {elapsed:.1f} s ({len(lines) / elapsed:.0f} calls/s)")
        finally:
            stop_process(gateway)
    finally:
        stop_process(upstream)
    say("[3/3] what the gateway logged:")
    with open_store(home / "protege.db") as store:
        return store.stats()
