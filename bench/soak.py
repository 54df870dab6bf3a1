"""Soak: a steady, mixed load through the real gateway for a long time; does anything grow or get lost?

Run it from the repository root with the project's venv::

    .venv/bin/python bench/soak.py                     # the recorded run: 30 minutes
    .venv/bin/python bench/soak.py --minutes 2         # a quick look
    .venv/bin/python bench/soak.py --chart bench/results/soak.json   # the README's chart, from the results

What runs: protege's replay server as the upstream (tests/data/upstream_recordings.jsonl, answering at
once), and `protege serve` (one worker, open mode on 127.0.0.1, SQLite store and spool in a fresh
`PROTEGE_HOME`, encryption at rest on unless `--no-encrypt`, `[retention] days` set so its background task
runs too). An open-loop load generator (asyncio + aiohttp, in this process) sends `--rate` requests per
second whatever the answers' speed, mixed:

- JSON completions ("What is N squared?", support triage, summaries, a PII-laden prompt),
- the same streamed (SSE, reassembled by the gateway for the log),
- tool calls (the recorded weather / flights calls, streamed and not),
- local-model calls: SmolLM2-135M through protege's llama.cpp runtime (`max_tokens` 8), `--local-share`
  of the traffic (0 turns them off),
- and, as the baseline measured in the same run, `--direct-share` of the JSON calls sent straight to the
  upstream, bypassing the gateway.

Every `--sample-s` seconds it records the gateway process's RSS, open file descriptors, threads and CPU,
its log backlog (/health), and the window's request count, errors and p50/p99 latency (gateway calls
without the local ones, local ones, direct ones). At the end the gateway gets SIGTERM, and every call
it acknowledged (HTTP 200 with an `x-protege-call-id`) is looked up in the store: acknowledged vs stored.

Verdict (issue 12): after `--warmup-s`, RSS and fds grow < 10% (median of the last 3 samples against the
first 3), the gateway's p99 stays stable (last third's median window p99 within 2x the first third's), and
0 acknowledged calls are lost. Writes bench/results/soak.json and prints a text chart for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "tests" / "data" / "upstream_recordings.jsonl"
RESULTS = ROOT / "bench" / "results" / "soak.json"
LOCAL_MODEL = "smollm2-135m"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def request_mix(local_share: float) -> list[tuple[str, float, list[dict]]]:
    """(kind, weight, request bodies) of the load."""
    pairs = [json.loads(line) for line in RECORDINGS.read_text().splitlines() if line.strip()]
    squared = [p["request"] for p in pairs if "squared" in json.dumps(p["request"]["messages"])]
    tools = [p["request"] for p in pairs if p["request"].get("tools")]
    other = [p["request"] for p in pairs if p["request"] not in squared and p["request"] not in tools
             and not p["request"].get("stream")]
    local = [{"model": LOCAL_MODEL, "messages": [{"role": "user", "content": f"Say hi to {name}."}], "max_tokens": 8,
              "temperature": 0} for name in ("Ada", "Bo", "Cy", "Di")]
    mix = [("json", 0.55, squared + other), ("stream", 0.27, [dict(r, stream=True) for r in squared]),
           ("tools", 0.08, tools + [dict(r, stream=True) for r in tools]), ("local", local_share, local)]
    return [(k, w, bodies) for k, w, bodies in mix if w > 0]


def proc_sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "fd_kinds": fd_kinds(pid), "threads": int(fields["Threads"]),
            "cpu_s": round((int(stat[11]) + int(stat[12])) / CLK_TCK, 2)}


def fd_kinds(pid: int) -> dict:
    """Open fds by what they point at: sockets, pipes, anon inodes (eventfd, epoll), or the file's name with its
    digits folded (so a growing count of one kind, or of one file, shows which resource grows)."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:", "anon_inode:")) else \
            "".join("#" if c.isdigit() else c for c in Path(target).name)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


class Load:
    """The open-loop load generator and its per-window tallies."""

    def __init__(self, gateway: str, upstream: str, rate: float, mix, direct_share: float, seed: int = 0):
        self.gateway, self.upstream, self.rate, self.mix = gateway, upstream, rate, mix
        self.direct_share = direct_share
        self.rng = random.Random(seed)
        self.acked: set[str] = set()
        self.window: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.error_examples: list[str] = []
        self.in_flight = 0
        self.sent = 0

    def _pick(self) -> tuple[str, dict]:
        kinds, weights = zip(*[(k, w) for k, w, _ in self.mix], strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        body = self.rng.choice(next(b for k, _, b in self.mix if k == kind))
        if kind == "json" and self.rng.random() < self.direct_share:
            kind = "direct"
        return kind, body

    async def _one(self, session, kind: str, body: dict) -> None:
        url = (self.upstream if kind == "direct" else self.gateway) + "/chat/completions"
        t0 = time.perf_counter()
        self.in_flight += 1
        try:
            async with session.post(url, json=body) as resp:
                await resp.read()
                ok = resp.status == 200
                call_id = resp.headers.get("x-protege-call-id")
                if not ok and len(self.error_examples) < 20:
                    self.error_examples.append(f"{kind}: HTTP {resp.status}")
        except Exception as e:  # noqa: BLE001 - a failed call is counted, the load goes on
            ok, call_id = False, None
            if len(self.error_examples) < 20:
                self.error_examples.append(f"{kind}: {type(e).__name__}: {e}")
        finally:
            self.in_flight -= 1
        if ok:
            self.window.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
            if call_id and kind != "direct":
                self.acked.add(call_id)
        else:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    async def run(self, seconds: float, on_tick, sample_s: float) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=256)
        tasks: set[asyncio.Task] = set()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            start = time.perf_counter()
            next_sample = start + sample_s
            n = 0
            while (now := time.perf_counter()) - start < seconds:
                if now >= next_sample:
                    await on_tick(session)
                    next_sample += sample_s
                    continue
                due = start + n / self.rate
                if due > now:
                    await asyncio.sleep(min(due, next_sample) - now)
                    continue
                kind, body = self._pick()
                task = asyncio.create_task(self._one(session, kind, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                self.sent += 1
            await asyncio.gather(*tasks, return_exceptions=True)
            await on_tick(session, final=True)  # the drain: a partial window, shown but not judged

    def take_window(self) -> tuple[dict[str, list[float]], dict[str, int]]:
        window, errors = self.window, self.errors
        self.window, self.errors = {}, {}
        return window, errors


def verdict(samples: list[dict], warmup_s: float, lost: int) -> dict:
    post = [s for s in samples if s["t_s"] >= warmup_s and not s.get("final")]
    if len(post) < 6:
        return {"judged": False, "reason": f"only {len(post)} samples after the {warmup_s:g} s warm-up; run longer"}

    def growth(key: str) -> float:
        first = statistics.median(s[key] for s in post[:3])
        last = statistics.median(s[key] for s in post[-3:])
        return round(last / first - 1, 4)

    third = max(1, len(post) // 3)
    p99s = [s["gateway_p99_ms"] for s in post if s["gateway_p99_ms"] is not None]
    first_p99 = statistics.median(p99s[:third]) if p99s else None
    last_p99 = statistics.median(p99s[-third:]) if p99s else None
    out = {"judged": True, "rss_growth": growth("rss_mb"), "fd_growth": growth("fds"),
           "p99_first_third_ms": first_p99, "p99_last_third_ms": last_p99,
           "p99_ratio": round(last_p99 / first_p99, 3) if first_p99 and last_p99 else None, "lost": lost}
    out["rss_flat"] = out["rss_growth"] < 0.10
    out["fds_flat"] = out["fd_growth"] < 0.10
    out["p99_stable"] = out["p99_ratio"] is not None and out["p99_ratio"] <= 2.0
    out["none_lost"] = lost == 0
    out["met"] = all(out[k] for k in ("rss_flat", "fds_flat", "p99_stable", "none_lost"))
    return out


def spark(values: list[float | None], width: int = 60) -> str:
    """A sparkline of at most `width` characters (each the mean of its bucket of samples)."""
    ticks = "▁▂▃▄▅▆▇█"
    if len(values) > width:
        size = len(values) / width
        buckets = [[v for v in values[int(i * size):int((i + 1) * size)] if v is not None] for i in range(width)]
        values = [sum(b) / len(b) if b else None for b in buckets]
    vals = [v for v in values if v is not None]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    return "".join(" " if v is None else ticks[0 if hi == lo else int((v - lo) / (hi - lo) * (len(ticks) - 1))]
                   for v in values)


def text_chart(samples: list[dict], every: int = 1) -> str:
    """One sparkline per series (min..max on the right) and a table of every `every`-th sample."""
    rows = samples[::every]
    lines = []
    for key, label in (("rss_mb", "RSS MB"), ("fds", "open fds"), ("gateway_p50_ms", "p50 ms"),
                       ("gateway_p99_ms", "p99 ms"), ("errors", "errors"), ("rps", "req/s")):
        vals = [s[key] for s in samples]
        nums = [v for v in vals if v is not None]
        lines.append(f"{label:>9} {spark(vals)}  {min(nums, default=0):g}..{max(nums, default=0):g}")
    lines.append("")
    lines.append(f"{'t (s)':>7} {'RSS MB':>7} {'fds':>5} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'local p50':>9} "
                 f"{'direct p99':>10} {'errors':>6} {'backlog':>7}")
    for s in rows:
        def f(v, nd=1):
            return "-" if v is None else f"{v:.{nd}f}"
        lines.append(f"{s['t_s']:>7.0f} {s['rss_mb']:>7.1f} {s['fds']:>5} {s['rps']:>6.1f} {f(s['gateway_p50_ms']):>7} "
                     f"{f(s['gateway_p99_ms']):>7} {f(s['local_p50_ms'], 0):>9} {f(s['direct_p99_ms']):>10} "
                     f"{s['errors']:>6} {s['log_backlog'] if s['log_backlog'] is not None else '-':>7}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="Length of the load (default 30)")
    ap.add_argument("--rate", type=float, default=40.0, help="Requests per second sent, open loop (default 40)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="Seconds between samples (default 10)")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="Samples before this are not judged (default 60)")
    ap.add_argument("--local-share", type=float, default=0.02, help="Share of local SmolLM2 calls (0: none)")
    ap.add_argument("--direct-share", type=float, default=0.05, help="Share of JSON calls sent straight upstream")
    ap.add_argument("--no-encrypt", action="store_true", help="Leave encryption at rest off")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--chart", type=Path, help="Only print the text chart of a results file (for the README)")
    args = ap.parse_args()
    if args.chart:
        samples = json.loads(args.chart.read_text())["samples"]
        print(text_chart(samples, every=max(1, len(samples) // 12)))
        return

    sys.path.insert(0, str(ROOT / "src"))
    import httpx2

    from protege.demo import free_port, start_process, stop_process
    from protege.store import open_store
    from protege.store.crypto import new_key_text

    home = Path(tempfile.mkdtemp(prefix="protege-soak-"))
    env = dict(os.environ, PROTEGE_HOME=str(home), PYTHONPATH=str(ROOT / "src"))
    env.pop("PROTEGE_DATABASE_URL", None)
    if not args.no_encrypt:
        env["PROTEGE_DATA_KEY"] = new_key_text()
    (home / "protege.toml").parent.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text("[retention]\ndays = 3650\ninterval_s = 60\n")
    up_port, gw_port = free_port(), free_port()
    upstream = start_process(["replay", str(RECORDINGS), "--port", str(up_port)],
                             f"http://127.0.0.1:{up_port}/health", env, home / "replay.log")
    gateway = start_process(["serve", "--upstream", f"http://127.0.0.1:{up_port}/v1", "--port", str(gw_port)],
                            f"http://127.0.0.1:{gw_port}/health", env, home / "gateway.log")
    gw_url, up_url = f"http://127.0.0.1:{gw_port}/v1", f"http://127.0.0.1:{up_port}/v1"
    mix = request_mix(args.local_share)
    if args.local_share > 0:  # load the local model before the clock starts
        r = httpx2.post(f"{gw_url}/chat/completions", json=mix[-1][2][0], timeout=300)
        if r.status_code != 200:
            sys.exit(f"the local model {LOCAL_MODEL} did not answer ({r.status_code}: {r.text[:300]}); "
                     "pass --local-share 0 or install protege[local]")
    load = Load(gw_url, up_url, args.rate, mix, args.direct_share)
    samples: list[dict] = []
    started = time.perf_counter()
    last = {"t": started, "cpu_s": proc_sample(gateway.pid)["cpu_s"]}

    async def on_tick(session, final: bool = False) -> None:
        now = time.perf_counter()
        window, errors = load.take_window()
        proc = proc_sample(gateway.pid)
        try:
            async with session.get(f"http://127.0.0.1:{gw_port}/health") as resp:
                backlog = (await resp.json()).get("log_backlog")
        except Exception:  # noqa: BLE001 - a missed health probe is shown as "-"
            backlog = None
        gw_lat = [v for k, vs in window.items() if k not in ("local", "direct") for v in vs]
        n = sum(len(v) for v in window.values()) + sum(errors.values())
        dt = now - last["t"]
        sample = {"t_s": round(now - started, 1), **proc, "cpu_share": round((proc["cpu_s"] - last["cpu_s"]) / dt, 3),
                  "rps": round(n / dt, 1), "errors": sum(errors.values()), "errors_by_kind": errors,
                  "calls_by_kind": {k: len(v) for k, v in window.items()},
                  "gateway_p50_ms": pct(gw_lat, 0.5), "gateway_p99_ms": pct(gw_lat, 0.99),
                  "local_p50_ms": pct(window.get("local", []), 0.5), "local_p99_ms": pct(window.get("local", []), 0.99),
                  "direct_p50_ms": pct(window.get("direct", []), 0.5), "direct_p99_ms": pct(window.get("direct", []), 0.99),
                  "in_flight": load.in_flight, "log_backlog": backlog, "final": final}
        last.update(t=now, cpu_s=proc["cpu_s"])
        samples.append(sample)
        print(f"t={sample['t_s']:>6.0f}s rss={proc['rss_mb']:.1f}MB fds={proc['fds']} rps={sample['rps']} "
              f"p50={sample['gateway_p50_ms']} p99={sample['gateway_p99_ms']} local_p50={sample['local_p50_ms']} "
              f"errors={sample['errors']} backlog={backlog}", flush=True)

    try:
        asyncio.run(load.run(args.minutes * 60, on_tick, args.sample_s))
        load_s = time.perf_counter() - started
    finally:
        code = stop_process(gateway)
        stop_process(upstream)
    with open_store(home / "protege.db", cipher=None) if args.no_encrypt else _keyed(env) as store:
        stored_ids = {c.id for c in store.iter_calls()}
    lost = sorted(load.acked - stored_ids)
    result = {
        "benchmark": "soak", "command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - load_s)),
        "load_s": round(load_s, 1), "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "encryption": not args.no_encrypt,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "sent": load.sent, "acknowledged": len(load.acked), "stored": len(stored_ids), "lost": len(lost),
        "lost_ids": lost[:100], "gateway_exit_code": code, "error_examples": load.error_examples,
        "verdict": verdict(samples, args.warmup_s, len(lost)), "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print()
    print(text_chart(samples, every=max(1, len(samples) // 12)))
    print()
    print(json.dumps({k: result[k] for k in ("load_s", "sent", "acknowledged", "stored", "lost", "verdict")}, indent=1))
    print(f"wrote {args.out}")


def _keyed(env: dict):
    """The soak's store, opened with the key the gateway used."""
    from protege.store import open_store
    from protege.store.crypto import DataCipher, parse_key

    home = Path(env["PROTEGE_HOME"])
    return open_store(home / "protege.db", cipher=DataCipher(parse_key(env["PROTEGE_DATA_KEY"], "the soak's key")))


if __name__ == "__main__":
    main()
