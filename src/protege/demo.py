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
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import httpx2

from protege.data import demo_traces_path
from protege.gateway.replay import read_jsonl
from protege.store import CallFilter, open_store


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


TRACES_HINT = ('one JSON object per line, {"request": <chat completions request>, "response": <chat.completion>} '
               "(what `protege export --format raw` and most gateways' logs hold), optionally .gz")
MIN_TRACES = 100


def load_traces(path: Path, limit: int | None = None) -> list[dict]:
    """The usable calls of a traces file, in file order; a clear error when it holds too few."""
    if not path.is_file():
        raise RuntimeError(f"No traces file at {path}. Pass --traces FILE with {TRACES_HINT}.")
    lines, bad = [], 0
    try:
        for line in islice(read_jsonl(path), limit):
            request, response = line.get("request"), line.get("response")
            ok = (isinstance(request, dict) and isinstance(request.get("messages"), list) and request["messages"]
                  and isinstance(request.get("model"), str) and isinstance(response, dict) and response.get("choices"))
            if ok:
                lines.append(line)
            else:
                bad += 1
    except (OSError, ValueError, EOFError) as e:
        raise RuntimeError(f"Cannot read {path} ({e}); it should hold {TRACES_HINT}.") from e
    if len(lines) < MIN_TRACES:
        raise RuntimeError(f"{path} has {len(lines)} usable calls ({bad} lines without a request and a "
                           f"chat.completion response); the demo needs at least {MIN_TRACES}. Expected: {TRACES_HINT}.")
    return lines


QUIET = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
         "PYTHONWARNINGS": "ignore::FutureWarning"}
"""The demo's own lines are the story; library progress bars and deprecation notes are left out."""


@dataclass
class DemoOptions:
    """Sizes of the demo; the defaults keep `make demo` under 15 minutes on 2 cores (see README)."""

    calls: int | None = None
    """Use only the first N calls of the traces."""
    history_share: float = 0.7
    """The first part is the history the flywheel learns from; the rest is live traffic it never saw."""
    shadow_calls: int = 200
    """At most this many live calls are sent while new specialists answer in shadow (`shadow_chunk` at a time, 4
    clients); a specialist still in shadow after them keeps answering beside the LLM while the rest of the live
    calls go at full concurrency, its evidence reviewed every `shadow_calls` calls."""
    shadow_chunk: int = 40
    """Live calls between two reviews of the shadow evidence: the shadow phase ends at the first review that
    leaves no specialist in shadow (each was put on or demoted), as `protege flywheel watch` would."""
    max_tasks: int | None = None
    max_train_calls: int | None = None
    """Training calls per LoRA specialist (None: every curated call of the task)."""
    epochs: int = 3
    max_steps: int | None = None
    eval_calls: int = 30
    min_examples: int = 30
    shadow_needed: int = 10
    concurrency: int = 16
    embedder: str = "minilm"
    traces: Path | None = None
    """A JSONL file of the user's own calls (`TRACES_HINT`) instead of the bundled traces: the first
    `history_share` of its lines are the history, the rest the live traffic, replayed in file order."""
    licences: list[str] | None = None
    """Licences the base models may have (None: selection's permissive default)."""
    lora_budget_s: float | None = 540
    """Seconds of LoRA training in the flywheel pass: what keeps `make demo` inside 15 minutes on 2 cores."""
    kinds: tuple[str, ...] | None = ("reuse", "classifier", "lora")
    """The specialist kinds the pass tries (None: every kind). Not `incontext` by default: on 2 cores
    SmolLM2-135M answers with 3 examples in its prompt in 1.4-6 s a call, so judging it on 30 held-out calls
    of each task costs minutes the 15 do not have, and on the bundled tasks that need a generative
    specialist it cannot pass (order extraction: field F1 0.76 from examples, 0.96 after LoRA training)."""


def run_demo(home: Path, options: DemoOptions | None = None, console=None) -> dict:
    """The whole loop on the bundled traces in `home` (emptied first); returns the summary it prints."""
    from protege.train.kinds import kind_named

    opts = options or DemoOptions()
    for kind in opts.kinds or []:  # refused now, not after the history is replayed
        try:
            kind_named(kind)
        except ValueError as e:
            raise RuntimeError(f"{e} (--kind)") from None
    say = console.print if console else print
    traces = opts.traces.resolve() if opts.traces else bundled_traces()
    lines = load_traces(traces, opts.calls)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    home = home.resolve()
    (home / "protege.toml").write_text(
        f"[gates]\nmin_examples = {opts.min_examples}\nshadow_calls = {opts.shadow_needed}\n\n"
        "[routing]\nrefresh_s = 0.5\n")
    env = os.environ.copy() | {"PROTEGE_HOME": str(home)} | QUIET
    env.pop("OPENAI_API_KEY", None)
    cut = int(len(lines) * opts.history_share)
    history, live = lines[:cut], lines[cut:]
    up_port, gw_port = free_port(), free_port()
    started = time.perf_counter()
    say(f"[1/6] starting a replay upstream (the stand-in LLM) and the gateway; logs in {home}/")
    upstream = start_process(["replay", str(traces), "--port", str(up_port)],
                             f"http://127.0.0.1:{up_port}/health", env, home / "replay.log")
    try:
        gateway = start_process(["serve", "--upstream", f"http://127.0.0.1:{up_port}/v1", "--port", str(gw_port)],
                                f"http://127.0.0.1:{gw_port}/health", env, home / "gateway.log")
        try:
            agent = _Agent(f"http://127.0.0.1:{gw_port}")
            say(f"[2/6] an agent sends {len(history)} calls through the gateway; the LLM answers them all")
            ok, elapsed = agent.send_all(history, opts.concurrency)
            say(f"      {ok}/{len(history)} answered in {elapsed:.1f} s ({len(history) / elapsed:.0f} calls/s)")

            scope = f"the {opts.max_tasks} most valuable tasks" if opts.max_tasks else "every task"
            say(f"[3/6] flywheel pass: find the tasks, curate, then for {scope} build the cheapest specialist "
                "that passes the gate (answer reuse, classifier, LoRA)")
            _protege(env, ["flywheel", "run", "--embedder", opts.embedder,
                           *(["--max-train-calls", str(opts.max_train_calls)] if opts.max_train_calls else []),
                           "--epochs", str(opts.epochs), "--eval-calls", str(opts.eval_calls),
                           *(["--max-tasks", str(opts.max_tasks)] if opts.max_tasks else []),
                           *[arg for licence in opts.licences or [] for arg in ("--licence", licence)],
                           *(["--lora-budget-s", str(opts.lora_budget_s)] if opts.lora_budget_s is not None else []),
                           *[arg for kind in opts.kinds or [] for arg in ("--kind", kind)],
                           "--threads", str(len(os.sched_getaffinity(0))),  # the gateway is idle meanwhile
                           *(["--max-steps", str(opts.max_steps)] if opts.max_steps else [])])
            live_start = time.time()
            agent.answers.clear()  # from here on: live traffic, scored against the LLM's reference answers
            with open_store(home / "protege.db") as store:  # what the pass decided; the gateway loads it next
                decided = {t: r.mode for t, r in store.routes().items()}
            routing = _wait_until_serving(agent, decided)
            say(f"[4/6] live calls while {len(routing['serving'])} specialists answer in shadow (the LLM still "
                f"serves; the answers are compared), reviewed every {opts.shadow_chunk} calls until each has its "
                f"evidence (at most {opts.shadow_calls} calls)")
            modes, sent = _shadow_phase(agent, live[: opts.shadow_calls], opts.shadow_chunk, home, say)
            rest = live[sent:]
            say(f"      {sent} calls in shadow")
            _wait_until_serving(agent, modes)
            serving = sorted(t for t, m in modes.items() if m == "on")
            waiting = sorted(t for t, m in modes.items() if m == "shadow")
            say(f"[5/6] {len(rest)} more live calls; specialists now serve {', '.join(serving) or 'no task'}"
                + (f"; still in shadow, reviewed every {opts.shadow_calls} calls: {', '.join(waiting)}" if waiting else ""))
            ok, elapsed = 0, 0.0
            while rest:  # a specialist short of evidence keeps answering beside the LLM, as under `flywheel watch`
                batch, rest = (rest[: opts.shadow_calls], rest[opts.shadow_calls:]) if waiting else (rest, [])
                done, took = agent.send_all(batch, opts.concurrency)
                ok, elapsed = ok + done, elapsed + took
                if waiting and rest:
                    modes = _review(agent, home, say)
                    _wait_until_serving(agent, modes)
                    waiting = sorted(t for t, m in modes.items() if m == "shadow")
            say(f"      {ok}/{len(live) - sent} answered in {elapsed:.1f} s")
        finally:
            stop_process(gateway)
    finally:
        stop_process(upstream)
    return _summarise(home, agent, live_start, time.perf_counter() - started, say, console)


class _Agent:
    """The demo's agent: the plain `openai` SDK pointed at the gateway; it keeps what it was answered."""

    def __init__(self, base: str):
        import openai

        self.base = base
        self.client = openai.OpenAI(base_url=base + "/v1", api_key="demo", max_retries=0, timeout=300)
        self.answers: list[tuple[dict, dict | None, str, str]] = []
        """(trace line, the answer, x-protege-served-by, x-protege-task) per call."""

    def send(self, line: dict) -> bool:
        import openai

        meta = line.get("metadata") or {}
        body = dict(line["request"])
        labels = {k: str(meta[k]) for k in ("task", "workload") if meta.get(k) is not None}
        if labels:
            body["metadata"] = {**(body.get("metadata") or {}), **labels}
        try:
            raw = self.client.chat.completions.with_raw_response.create(**body)
        except openai.APIError:
            self.answers.append((line, None, "error", ""))
            return False
        self.answers.append((line, raw.parse().model_dump(), raw.headers.get("x-protege-served-by", ""),
                             raw.headers.get("x-protege-task", "")))
        return True

    def send_all(self, lines: list[dict], concurrency: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            ok = sum(pool.map(self.send, lines))
        return ok, time.perf_counter() - t0

    def wait_for_routes(self, ready, timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            routing = httpx2.get(self.base + "/health", timeout=5).json()["routing"]
            if ready(routing) or time.monotonic() > deadline:
                return routing
            time.sleep(0.5)


def _shadow_phase(agent: _Agent, calls: list[dict], chunk: int, home: Path, say) -> tuple[dict, int]:
    """Send `calls` in chunks, reviewing the shadow evidence after each, until no route is left in shadow;
    returns the routes' modes and how many calls were sent."""
    sent = 0
    while True:
        agent.send_all(calls[sent: sent + chunk], 4)
        sent = min(len(calls), sent + chunk)
        modes = _review(agent, home, say)
        if sent >= len(calls) or "shadow" not in modes.values():
            return modes, sent


def _review(agent: _Agent, home: Path, say) -> dict:
    """`protege flywheel run --review-only`, in this process, once every shadow comparison sent so far is
    stored; returns the routes' modes."""
    from protege.config import load_settings
    from protege.flywheel import review_routes

    agent.wait_for_routes(lambda r: r["shadow_pending"] == 0)
    with open_store(home / "protege.db") as store:
        review_routes(store, load_settings(home / "protege.toml"), say)
        return {t: r.mode for t, r in store.routes().items()}


def _wait_until_serving(agent: _Agent, modes: dict) -> dict:
    """Until the gateway routes by `modes` and has loaded (or failed to load) every specialist they use."""
    return agent.wait_for_routes(lambda r: r["routes"] == modes and all(
        t in r["serving"] or t in r["load_errors"] for t, m in modes.items() if m != "off"))


def _protege(env: dict, args: list[str]) -> None:
    rc = subprocess.call([sys.executable, "-m", "protege", *args], env=env)
    if rc != 0:
        raise RuntimeError(f"`protege {' '.join(args)}` failed with exit code {rc}; see the messages above.")


def _summarise(home: Path, agent: _Agent, live_start: float, wall_s: float, say, console) -> dict:
    """Score the live answers against the LLM's reference answers and print the savings report."""
    from protege.evaluate.harness import HEADLINE, Answer, score_answer
    from protege.evaluate.metrics import normalize_label
    from protege.report.savings import build_report, render_html, render_terminal
    from protege.specialist.examples import Example
    from protege.specialist.format import infer_output_kind, response_message

    live = agent.answers
    by_task: dict[str, list] = {}
    for line, answer, served_by, task in live:  # the trace's own task label, else the one protege found
        label = (line.get("metadata") or {}).get("task") or task or "(no task)"
        by_task.setdefault(str(label), []).append((line, answer, served_by))
    quality, served, served_valid, tasks = [], 0, 0, {}
    for label, items in by_task.items():
        refs = [response_message(line["response"]) or {} for line, _, _ in items]
        kind = infer_output_kind([line["request"] for line, _, _ in items], [r.get("content") or "" for r in refs])
        labels = {normalize_label(r.get("content")) for r in refs} if kind == "label" else set()
        scores = []
        for (line, answer, served_by), ref in zip(items, refs):
            message = response_message(answer) if answer else None
            got, valid = score_answer(kind, Answer(message), Example("x", line["request"], ref), labels)
            scores.append(got.get(HEADLINE[kind], 0.0))
            if served_by.startswith("specialist:"):
                served += 1
                served_valid += valid
        quality += scores
        tasks[label] = {"calls": len(items), "kind": kind, "by_specialist": sum(s.startswith("specialist:")
                                                                                  for _, _, s in items),
                        "agreement_with_llm": round(sum(scores) / len(scores), 4)}
    with open_store(home / "protege.db") as store:
        report = build_report(store, since=live_start)
        costs: dict[str, list[float]] = {"llm": [], "specialist": []}
        for r in store.iter_calls(CallFilter(since=live_start)):
            kind = "specialist" if (r.served_by or "").startswith("specialist:") else "llm"
            if r.cost_usd is not None:
                costs[kind].append(r.cost_usd)
    (home / "report.html").write_text(render_html(report), encoding="utf-8")
    say("[6/6] savings on the live traffic (calls the flywheel never trained on):")
    render_terminal(report, console)
    summary = {"wall_s": round(wall_s, 1), "live_calls": len(live), "served_by_specialists": served,
               "share_served_by_specialists": round(served / max(1, len(live)), 4),
               "served_valid": served_valid, "quality_vs_llm": round(sum(quality) / max(1, len(quality)), 4),
               "usd_per_call": {k: round(sum(v) / len(v), 8) if v else None for k, v in costs.items()},
               "tasks": tasks, "report": report["totals"], "routes": report["routes"], "report_tasks": report["tasks"],
               "html": str(home / "report.html")}
    say(f"specialists answered {served} of {len(live)} live calls ({summary['share_served_by_specialists']:.0%}); "
        f"answers agree with the LLM's at {summary['quality_vs_llm']:.1%} (task metric); whole demo "
        f"{wall_s / 60:.1f} min")
    say(f"HTML report: {home / 'report.html'} (also at /dashboard while `protege serve` runs)")
    return summary
