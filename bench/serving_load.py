"""Serving under load: SmolLM2 answered through the gateway at 1, 4 and 16 concurrent clients.

Two gateways (`protege serve`, real processes on 127.0.0.1) in the same run, same model file:
`single_context` is the path before batching (`[serving] parallel = 1`: one llama.cpp context, one
call at a time) and `batched` decodes up to 16 calls per step (`parallel = 16`). Two workloads:
a generative answer (48 free tokens) and a short constrained answer (a JSON enum, the shape of
a triage label). Each cell runs `clients` closed-loop clients; it reports calls/s and latency
percentiles, and any refusal (429) or error. Also measured: streamed time to first token at one
client against a 2-token call (prefill + one decode step, the same HTTP path), and the two
concurrency designs side by side in-process (a pool of contexts splitting the threads, batched
decoding, one context), same 16 requests.

`classifier_sweep` (`bench/serving.py --classifier`): the specialist the ladder deploys for a label task, the
MiniLM classifier, trained by a flywheel pass on the bundled demo traces' ticket triage calls and served by two
gateways on the same home in the same run: request embeddings batched across concurrent calls (the default)
against one embedding per call on its own thread (`PROTEGE_BATCH_EMBEDDINGS=0`, the path before).

Called by bench/serving.py (`--sweep` runs only this part and keeps the file's other results).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

GENERATIVE = ["Write a short paragraph about the history of bicycles.",
              "Explain what a hash table is to a beginner.",
              "List some tips for staying productive when working from home.",
              "Describe how a refrigerator keeps food cold."]
QUEUES = ["billing", "shipping", "technical", "account"]
SHORT_SCHEMA = {"type": "object", "properties": {"queue": {"type": "string", "enum": QUEUES}}, "required": ["queue"],
                "additionalProperties": False}
TICKETS = ["I was charged twice for my order.", "My parcel has not arrived yet.", "The app crashes when I log in.",
           "I forgot my password and cannot reset it.", "The refund never reached my card.",
           "Tracking says delivered but nothing came."]


def generative_body(i: int) -> dict:
    return {"model": "smollm2-135m", "messages": [{"role": "user", "content": GENERATIVE[i % len(GENERATIVE)]}],
            "max_tokens": 48, "temperature": 0}


def short_body(i: int) -> dict:
    return {"model": "smollm2-135m", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "system", "content": "Route the support ticket to one queue: billing, shipping, "
                                                       "technical or account."},
                         {"role": "user", "content": f"Ticket {i}: {TICKETS[i % len(TICKETS)]}"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "queue", "schema": SHORT_SCHEMA}}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _cell(url: str, make_body, clients: int, calls: int, headers: dict | None = None) -> dict:
    import aiohttp

    latencies, statuses, served_by = [], {}, {}
    counter = iter(range(calls))

    async def client(session):
        for i in counter:
            t = time.perf_counter()
            async with session.post(url, json=make_body(i), headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                route = resp.headers.get("x-protege-served-by", "").split(":")[0] or "none"
                served_by[route] = served_by.get(route, 0) + 1
            if resp.status == 200:
                latencies.append(time.perf_counter() - t)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"clients": clients, "calls": calls, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "served_by": served_by, "calls_per_s": round(len(latencies) / wall, 2), "p50_ms": round(1000 * statistics.median(latencies)),
            "p95_ms": round(1000 * pct(latencies, 0.95)), "max_ms": round(1000 * max(latencies))}


async def _ttft(url: str, rounds: int) -> dict:
    """Streamed time to the first content chunk vs a non-streamed 2-token call, at one client."""
    import aiohttp

    first, two_token = [], []
    async with aiohttp.ClientSession() as session:
        for i in range(rounds):
            body = generative_body(i) | {"stream": True, "max_tokens": 48}
            t = time.perf_counter()
            async with session.post(url, json=body) as resp:
                seen = False
                async for line in resp.content:
                    has_text = b'"content":"' in line and b'"content":""' not in line
                    if not seen and line.startswith(b"data: {") and has_text:
                        first.append(time.perf_counter() - t)
                        seen = True
            t = time.perf_counter()
            async with session.post(url, json=generative_body(i) | {"max_tokens": 2}) as resp:
                await resp.read()
            two_token.append(time.perf_counter() - t)
    return {"stream_ttft_p50_ms": round(1000 * statistics.median(first), 1),
            "prefill_plus_one_step_p50_ms": round(1000 * statistics.median(two_token), 1),
            "note": "prefill + one decode step = a non-streamed max_tokens=2 call on the same gateway "
                    "(its HTTP included)"}


def _gateway(home: Path, parallel: int | None = None, args: list[str] = (), env: dict | None = None,
             log: str = "gateway.log"):
    from protege.demo import free_port, start_process

    home.mkdir(parents=True, exist_ok=True)
    if parallel is not None:
        (home / "protege.toml").write_text(f"[serving]\nparallel = {parallel}\nmax_queue = 64\ncontext_tokens = 1024\n")
    port = free_port()
    env = os.environ.copy() | {"PROTEGE_HOME": str(home), "PYTHONPATH": str(Path(__file__).parent.parent / "src")} | (env or {})
    proc = start_process(["serve", "--port", str(port), *args], f"http://127.0.0.1:{port}/health", env=env,
                         log_file=home / log)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


def classifier_sweep(concurrency: list[int], calls_per_client: int, history: int = 600) -> dict:
    """The triage classifier through the gateway, embeddings batched vs one per call (see the module docstring)."""
    import json

    import httpx

    from protege.config import load_settings
    from protege.demo import demo_traces_path, free_port, load_traces, start_process, stop_process
    from protege.flywheel import FlywheelOptions, run_pass
    from protege.records import CallRecord
    from protege.store import open_store

    lines = [x for x in load_traces(demo_traces_path()) if x["metadata"]["task"] == "ticket_triage"]
    past, live = lines[:history], lines[history:]
    home = Path(tempfile.mkdtemp(prefix="protege-bench-classifier-"))
    os.environ["PROTEGE_HOME"] = str(home)
    (home / "protege.toml").write_text("[gates]\nshadow_first = false\n\n[routing]\nrefresh_s = 0.2\n"
                                       "audit_share = 0.0\n")
    with open_store(home / "protege.db") as store:
        store.add_calls([CallRecord(id=f"triage-{i:05d}", ts=x["metadata"]["ts"], request=x["request"],
                                    response=x["response"], workload=x["metadata"]["workload"],
                                    served_by="upstream:default", cost_usd=0.0005) for i, x in enumerate(past)])
        report = run_pass(store, load_settings(), FlywheelOptions(embedder="minilm", kinds=["classifier"]))
    promoted = [t for t in report.trained if t["action"] == "promote"]
    recordings = home / "recordings.jsonl"
    recordings.write_text("".join(json.dumps({"request": x["request"], "response": x["response"]}) + "\n"
                                  for x in lines))
    port = free_port()
    upstream = start_process(["replay", str(recordings), "--port", str(port)], f"http://127.0.0.1:{port}/health",
                             log_file=home / "replay.log")
    cells = []
    try:
        for server, batched in (("one_embedding_per_call", "0"), ("batched_embeddings", "1")):
            proc, url = _gateway(home, args=["--upstream", f"http://127.0.0.1:{port}/v1"],
                                 env={"PROTEGE_BATCH_EMBEDDINGS": batched}, log=f"gateway-{server}.log")
            health = url.replace("/v1/chat/completions", "/health")
            try:
                deadline = time.time() + 120
                while not httpx.get(health).json()["routing"]["serving"]:
                    if time.time() > deadline:
                        raise RuntimeError(f"the gateway did not load the classifier: see {home}/gateway-{server}.log")
                    time.sleep(0.2)
                headers = {"x-protege-workload": live[0]["metadata"]["workload"]}

                def body(i):
                    return live[i % len(live)]["request"]

                asyncio.run(_cell(url, body, 1, 4, headers))  # warm-up: MiniLM loads on the first call
                for clients in concurrency:
                    cell = asyncio.run(_cell(url, body, clients, max(16, clients * calls_per_client), headers))
                    cells.append({"server": server, **cell})
                    print(cells[-1], file=sys.stderr, flush=True)
            finally:
                stop_process(proc)
    finally:
        stop_process(upstream)
    top = max(concurrency)

    def at(server):
        return next(c for c in cells if c["server"] == server and c["clients"] == top)

    gain = at("batched_embeddings")["calls_per_s"] / at("one_embedding_per_call")["calls_per_s"]
    p95 = at("batched_embeddings")["p95_ms"]
    return {
        "cells": cells,
        "specialist": promoted[0]["candidates"][-1]["reason"] if promoted else "none promoted",
        "targets": {f"short_answer_p95_ms_at_{top}": {"value": p95, "target": 1000, "met": p95 < 1000},
                    f"throughput_x_at_{top}": round(gain, 2)},
        "setup": {"history": f"the first {history} ticket-triage calls of the bundled demo traces, one flywheel pass "
                             "(classifier kind only, promoted straight to on, no audit calls)",
                  "calls": "the later triage calls, never trained on, sent closed-loop with keep-alive",
                  "gateway": "protege serve on the same home, one process each, upstream: protege replay"},
    }


def sweep(concurrency: list[int], calls_per_client: int) -> dict:
    from protege.demo import stop_process

    tmp = Path(tempfile.mkdtemp(prefix="protege-bench-load-"))
    cells = []
    ttft = None
    for server, parallel in (("single_context", 1), ("batched", max(concurrency))):
        proc, url = _gateway(tmp / server, parallel)
        try:
            asyncio.run(_cell(url, generative_body, 1, 2))  # warm-up: model load, grammar tokenizer
            asyncio.run(_cell(url, short_body, 1, 2))
            for workload, make in (("generative", generative_body), ("short_answer", short_body)):
                for clients in concurrency:
                    calls = max(8, clients * calls_per_client)
                    cell = asyncio.run(_cell(url, make, clients, calls))
                    cells.append({"server": server, "workload": workload, **cell})
                    print(cells[-1], file=sys.stderr, flush=True)
            if server == "batched":
                ttft = asyncio.run(_ttft(url, 6))
        finally:
            stop_process(proc)
    top = max(concurrency)

    def at(server, workload):
        return next(c for c in cells if c["server"] == server and c["workload"] == workload and c["clients"] == top)

    speedup = at("batched", "generative")["calls_per_s"] / at("single_context", "generative")["calls_per_s"]
    short_p95 = at("batched", "short_answer")["p95_ms"]
    return {
        "cells": cells,
        "ttft": ttft,
        "targets": {
            f"generative_throughput_x_at_{top}": {"value": round(speedup, 2), "target": 3.0, "met": speedup >= 3.0},
            f"short_answer_p95_ms_at_{top}": {"value": short_p95, "target": 1000, "met": short_p95 < 1000},
            "ttft_le_prefill_plus_one_step": {"met": bool(ttft and ttft["stream_ttft_p50_ms"]
                                                          <= ttft["prefill_plus_one_step_p50_ms"])},
            "no_unbounded_wait": {"met": all(set(c["statuses"]) <= {"200", "429"} for c in cells),
                                  "note": "every call was answered (200) or refused at once (429); none timed out"},
        },
        "setup": {"threads": "the gateway's default: decoding on half the cores (single context: prompts on all)",
                  "calls_per_cell": f"max(8, clients x {calls_per_client})",
                  "gateway": "protege serve --local, one process each, [serving] max_queue = 64, context_tokens = 1024",
                  "model": "SmolLM2-135M-Instruct Q4_1, base model (an adapter decodes the same way)"},
    }


def designs(requests: int = 16, max_tokens: int = 48) -> dict:
    """The concurrency designs and today's path, in-process, on the same 16 generative requests
    (decoding on half the cores per context; the pools split the cores between their 2 contexts)."""
    import llama_cpp

    from protege.models.catalog import builtin_models
    from protege.models.llamacpp import LlamaCppRuntime, usable_cores

    path = next(s for s in builtin_models() if s.name == "smollm2-135m").locate()
    bodies = [{"messages": generative_body(i)["messages"], "max_tokens": max_tokens, "temperature": 0}
              for i in range(requests)]
    out = {}

    def run_threads(runtimes):
        work = list(bodies)
        lock = threading.Lock()
        tokens = [0]

        def worker(rt):
            while True:
                with lock:
                    if not work:
                        return
                    body = work.pop()
                n = rt.complete(body)["usage"]["completion_tokens"]
                with lock:
                    tokens[0] += n

        t = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(rt,)) for rt in runtimes]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        wall = time.perf_counter() - t
        return {"calls_per_s": round(requests / wall, 2), "tokens_per_s": round(tokens[0] / wall, 1)}

    single = LlamaCppRuntime(path, model_id="smollm2-135m", n_ctx=1024)
    single.complete(bodies[0])
    out["single_context"] = run_threads([single])
    single.close()
    threads = max(1, usable_cores() // 2)
    contexts = [LlamaCppRuntime(path, model_id="smollm2-135m", n_ctx=1024, n_threads=threads)
                for _ in range(2)]
    for rt in contexts:
        rt.complete(bodies[0])
    out["pool_of_2_contexts"] = run_threads(contexts)  # threads split across them, each its own KV cache
    for rt in contexts:
        rt.close()
    for name, decoders in (("batched_1_context", 1), ("batched_2_contexts", 2)):
        batched = LlamaCppRuntime(path, model_id="smollm2-135m", n_ctx=1024, parallel=requests, decoders=decoders)
        batched.complete(bodies[0])
        out[name] = run_threads([batched] * requests)
        batched.close()
    out["winner"] = max(("single_context", "pool_of_2_contexts", "batched_1_context", "batched_2_contexts"),
                        key=lambda k: out[k]["calls_per_s"])
    out["note"] = ("pool_of_2_contexts: design (a), two contexts of one thread each, one call at a time each; "
                   "batched_1_context: design (b), one context, one thread, up to 16 sequences per llama_decode; "
                   "batched_2_contexts: both, what [serving] parallel > 1 runs on 2 cores")
    out["llama_cpp_python"] = llama_cpp.__version__
    return out
