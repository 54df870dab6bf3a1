"""The savings report: numbers checked by hand on a real SQLite store, the CLI, and the dashboard in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from protege.cli import app
from protege.evaluate.metrics import wilson_ci
from protege.gateway.auth import create_key
from protege.records import CallRecord
from protege.report.savings import build_report, render_html, render_terminal
from protege.store import Decision, Route, ShadowResult, open_store

T0 = 1_750_000_000.0
EVAL = {"task": "triage", "output_kind": "label", "headline_metric": "accuracy", "n_examples": 40, "rows": [
    {"name": "base zero-shot", "n": 40, "valid_rate": 0.5, "headline": 0.3, "ci_low": 0.15, "ci_high": 0.45},
    {"name": "specialist", "n": 40, "valid_rate": 1.0, "headline": 0.9, "ci_low": 0.8, "ci_high": 0.975},
    {"name": "llm (reference)", "n": 40, "valid_rate": 1.0, "headline": 1.0, "ci_low": 1.0, "ci_high": 1.0}]}


def _call(n: int, ts: float, task: str | None, served_by: str, cost: float | None, latency: float, **route) -> CallRecord:
    meta = {"route": {"task": task, "mode": "on", "specialist": None, "fallback": False, "fallback_reason": None,
                      "confidence": None, "human_facing": False, "shadow": None, **route}} if route else {}
    return CallRecord(id=f"c{n:03d}", ts=ts, request={"model": "gpt-4o-mini", "messages": []},
                      response={"choices": []}, served_by=served_by, cost_usd=cost, latency_ms=latency,
                      task_id=task, metadata=meta)


def fill_store(path: Path, specialists: Path) -> None:
    """14 calls over 4 buckets of 1,000 s, two routes, three decisions (one before the window).

    bucket 0: triage 4 LLM calls ($0.01 each; two with shadow results, one agreeing), extract 2 LLM calls ($0.02)
    bucket 1: nothing
    bucket 2: triage 4 specialist calls ($0.001) and 2 fallbacks to the LLM ($0.01)
    bucket 3: task `fresh` (no LLM call ever) 1 specialist call ($0.002), 1 unassigned LLM call of unknown price
    """
    (specialists / "triage").mkdir(parents=True)
    (specialists / "triage" / "eval.json").write_text(json.dumps(EVAL))
    (specialists / "fresh").mkdir()
    up, spec = "upstream:openai", "specialist:triage"
    calls = [
        _call(1, T0 + 10, "triage", up, 0.01, 100, mode="shadow", shadow={"agree": True, "score": 1.0, "latency_ms": 20}),
        _call(2, T0 + 20, "triage", up, 0.01, 200, mode="shadow"),
        _call(3, T0 + 30, "triage", up, 0.01, 300),
        _call(4, T0 + 40, "triage", up, 0.01, 400),
        _call(5, T0 + 50, "extract", up, 0.02, 1000),
        _call(6, T0 + 60, "extract", up, 0.02, 2000),
        *(_call(7 + i, T0 + 2100 + i, "triage", spec, 0.001, 10 * (i + 1), specialist="triage") for i in range(4)),
        _call(11, T0 + 2200, "triage", up, 0.01, 500, fallback=True, fallback_reason="invalid_output"),
        _call(12, T0 + 2300, "triage", up, 0.01, 700, fallback=True, fallback_reason="low_confidence"),
        _call(13, T0 + 3100, "fresh", "specialist:fresh", 0.002, 50, specialist="fresh"),
        _call(14, T0 + 3200, None, up, None, 300),
    ]
    with open_store(path) as store:
        store.add_calls(calls)
        # the gateway logs shadow comparisons apart from the calls; one here, one in call 1's metadata
        store.add_shadow_result(ShadowResult("c002", "triage", agree=False, score=0.0, valid=True, latency_ms=30,
                                             ts=T0 + 21))
        store.add_decision(Decision("triage", "hold", "off", "off", "too few calls", ts=T0 - 100))
        store.set_route(Route("triage", "shadow", str(specialists / "triage")),
                        Decision("triage", "set", "off", "shadow", "manual", actor="user", ts=T0 + 5))
        store.set_route(Route("triage", "on", str(specialists / "triage")),
                        Decision("triage", "promote", "shadow", "on", "shadow agreement 0.93 >= 0.9",
                                 evidence={"agreement": 0.93, "n": 200}, ts=T0 + 1500))
        store.set_route(Route("fresh", "canary", str(specialists / "fresh")))


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "protege.db"
    fill_store(path, tmp_path / "specialists")
    return path


def test_build_report_numbers(db):
    with open_store(db) as store:
        r = build_report(store, since=T0, until=T0 + 4000, buckets=4)
    t = r["totals"]
    assert (t["calls"], t["llm_calls"], t["specialist_calls"], t["fallbacks"], t["unassigned_calls"]) == (14, 7, 5, 2, 1)
    assert t["specialist_share"] == round(5 / 14, 4)
    assert t["fallback_rate"] == round(2 / 7, 4)  # fallbacks over the calls a specialist tried
    assert t["fallback_reasons"] == {"invalid_output": 1, "low_confidence": 1}
    assert t["calls_unknown_cost"] == 1
    # LLM price per call over the whole store: 8 priced LLM calls cost $0.10; triage's own 6 cost $0.06.
    assert t["llm_cost_per_call_usd"] == pytest.approx(0.0125)
    spend = 4 * 0.01 + 2 * 0.02 + 4 * 0.001 + 2 * 0.01 + 0.002
    counterfactual = 4 * 0.01 + 2 * 0.02 + 4 * 0.01 + 2 * 0.01 + 0.0125
    assert t["spend_usd"] == pytest.approx(spend)
    assert t["counterfactual_usd"] == pytest.approx(counterfactual)
    assert t["saved_usd"] == pytest.approx(counterfactual - spend)
    assert t["times_cheaper"] == round(counterfactual / spend, 2) == 1.44

    s = r["series"]
    assert [b["calls"] for b in s] == [6, 0, 6, 2]
    assert [b["specialist_share"] for b in s] == [0.0, None, round(4 / 6, 4), 0.5]
    assert [b["cumulative_spend_usd"] for b in s] == pytest.approx([0.08, 0.08, 0.104, 0.106])
    assert [b["cumulative_counterfactual_usd"] for b in s] == pytest.approx([0.08, 0.08, 0.14, 0.1525])

    routes = {x["route"]: x for x in r["routes"]}
    assert [x["kind"] for x in r["routes"]] == ["llm", "specialist", "specialist", "fallback"]
    llm = routes["upstream:openai"]  # 100 200 300 300 400 1000 2000
    assert (llm["calls"], llm["latency_p50_ms"], llm["latency_p95_ms"]) == (7, 300, 1700)
    assert (routes["specialist:triage"]["latency_p50_ms"], routes["specialist:triage"]["latency_p95_ms"]) == (25, 38.5)
    assert (routes["fallback to LLM"]["latency_p50_ms"], routes["fallback to LLM"]["latency_p95_ms"]) == (600, 690)

    tasks = {x["task_id"]: x for x in r["tasks"]}
    assert [x["task_id"] for x in r["tasks"]] == ["triage", "extract", "fresh"]
    tri = tasks["triage"]
    assert (tri["calls"], tri["specialist_calls"], tri["fallbacks"], tri["mode"]) == (10, 4, 2, "on")
    assert (tri["specialist_share"], tri["fallback_rate"]) == (0.4, round(2 / 6, 4))
    assert tri["counterfactual_usd"] == pytest.approx(0.04 + 0.04 + 0.02)
    assert tri["quality"]["metric"] == "accuracy"
    assert tri["quality"]["rows"][1] == {"name": "specialist", "n": 40, "valid_rate": 1.0, "value": 0.9,
                                         "ci_low": 0.8, "ci_high": 0.975}
    lo, hi = wilson_ci(1, 2)
    assert tri["shadow"] == {"n": 2, "agree": 1, "agreement": 0.5, "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                             "mean_score": 0.5, "latency_p50_ms": 25}
    assert 0.05 < lo < 0.1 and 0.9 < hi < 0.95
    assert tasks["fresh"]["mode"] == "canary" and tasks["fresh"]["quality"] is None
    assert "protege eval fresh --specialist" in tasks["fresh"]["quality_note"]
    assert tasks["fresh"]["counterfactual_usd"] == pytest.approx(0.0125)  # no LLM call of its own: the overall mean
    assert tasks["extract"]["mode"] == "off" and tasks["extract"]["fallback_rate"] is None

    # the hold before the window is left out; newest first
    assert [(d["action"], d["mode_to"]) for d in r["decisions"]] == [("promote", "on"), ("set", "shadow")]
    assert r["decisions"][0]["evidence"] == {"agreement": 0.93, "n": 200}
    # each task's latest decision, whenever it was taken; one recorded before the candidate ladder has none
    assert tri["gate"] == {"action": "promote", "mode_from": "shadow", "mode_to": "on",
                           "reason": "shadow agreement 0.93 >= 0.9", "actor": "gate", "ts": T0 + 1500,
                           "specialist": None, "candidates": [], "candidates_ts": None}
    assert tri["fallback_reasons"] == {"invalid_output": 1, "low_confidence": 1}
    assert tri["kind"] is None  # a folder without specialist.json and no promoted candidate built there
    assert tasks["extract"]["gate"] is None and tasks["fresh"]["gate"] is None
    json.dumps(r)  # plain data


HELD, SERVED, PLAIN = "classify-billing-bug-feature", "classify-urgency-low-high", "summarize-support-thread-2"
HELD_REASON = ("routed accuracy 81.0% of the LLM's, needs 95%; answers 64% of calls at the calibrated threshold, "
               "needs 70%")


def _evaluated(kind: str, folder: Path, verdict: str, reason: str, quality: float, ci: list, coverage: float,
               threshold: float, saving: float | None) -> dict:
    """A candidate as the flywheel records it for a kind it built and evaluated."""
    return {"kind": kind, "folder": str(folder), "verdict": verdict, "reason": reason, "n": 120, "metric": "accuracy",
            "quality": quality, "quality_ci": ci, "coverage": coverage, "threshold": threshold,
            "routed_quality": 0.9, "valid_rate": 0.98, "served_valid_rate": 1.0, "latency_p50_ms": 4.0,
            "saving_usd_per_call": saving, "train_s": 12.5, "eval_s": 3.1}


def fill_ladder(path: Path, specialists: Path) -> dict[str, list[dict]]:
    """Three tasks around a window starting at T0, with long ids, as the flywheel's ladder leaves them.

    HELD: LLM calls and a hold an hour before the window (reuse and classifier held, the LoRA build failed),
    nothing since. SERVED: a classifier promoted to shadow before the window (answer reuse skipped), then
    promoted to on by the live review inside it, which records no candidates; 3 specialist calls and a
    no_match fallback in the window. PLAIN: LLM calls only, never gated."""
    for name, manifest in ((f"{HELD}-v1-classifier", {"kind": "classifier"}),
                           (f"{SERVED}-v1-classifier", {"task": SERVED, "kind": "classifier"})):
        (specialists / name).mkdir(parents=True)
        (specialists / name / "specialist.json").write_text(json.dumps(manifest))
    held = [_evaluated("reuse", specialists / f"{HELD}-v1-reuse", "hold",
                       "answers 12% of calls at the calibrated threshold, needs 70%", 0.99, [0.95, 1.0], 0.12, 1.0,
                       0.0012),
            _evaluated("classifier", specialists / f"{HELD}-v1-classifier", "hold", HELD_REASON, 0.81, [0.73, 0.87],
                       0.64, 0.71, 0.0071),
            {"kind": "lora", "verdict": "error", "reason": "RuntimeError: out of memory while loading the base model"}]
    served = [{"kind": "reuse", "verdict": "skip", "reason": "answers rarely repeat: 2% of requests were seen twice"},
              _evaluated("classifier", specialists / f"{SERVED}-v1-classifier", "promote",
                         "accuracy 0.970 alone, routed 99.1% of the LLM's", 0.97, [0.93, 0.99], 0.96, 0.71, -0.0004)]
    up, folder = "upstream:openai", str(specialists / f"{SERVED}-v1-classifier")
    with open_store(path) as store:
        store.add_calls([
            *(_call(i, T0 - 7200 + i, HELD, up, 0.01, 300) for i in range(3)),
            *(_call(10 + i, T0 + 200 + i, SERVED, f"specialist:{SERVED}", 0.0001, 5, specialist=folder,
                    kind="classifier") for i in range(3)),
            _call(13, T0 + 300, SERVED, up, 0.01, 400, fallback=True, fallback_reason="no_match"),
            *(_call(20 + i, T0 + 400 + i, PLAIN, up, 0.02, 900) for i in range(2)),
        ])
        store.add_decision(Decision(HELD, "hold", "off", "off", f"reuse: ...; classifier: {HELD_REASON}",
                                    evidence={"candidates": held, "trained_calls": 400}, ts=T0 - 3600))
        store.set_route(Route(SERVED, "shadow", folder),
                        Decision(SERVED, "promote", "off", "shadow", "classifier: accuracy 0.970 alone",
                                 evidence={"candidates": served}, specialist=folder, ts=T0 - 3000))
        store.set_route(Route(SERVED, "on", folder),
                        Decision(SERVED, "promote", "shadow", "on", "shadow agreement 0.97 >= 0.9 over 200 calls",
                                 evidence={"agreement": 0.97, "n": 200}, specialist=folder, ts=T0 + 100))
    return {HELD: held, SERVED: served}


@pytest.fixture
def ladder(tmp_path) -> tuple[Path, dict[str, list[dict]]]:
    path = tmp_path / "ladder.db"
    return path, fill_ladder(path, tmp_path / "specialists")


def test_report_says_why_a_task_is_not_served(ladder):
    path, candidates = ladder
    with open_store(path) as store:
        r = build_report(store, since=T0)
    tasks = {t["task_id"]: t for t in r["tasks"]}
    assert set(tasks) == {HELD, SERVED, PLAIN}
    held = tasks[HELD]  # no call in the window, decided before it: still there, with why
    assert (held["calls"], held["mode"], held["kind"]) == (0, "off", None)
    assert held["gate"]["action"] == "hold" and held["gate"]["ts"] == T0 - 3600
    assert held["gate"]["candidates"] == candidates[HELD] and held["gate"]["candidates_ts"] == T0 - 3600
    assert [d["task_id"] for d in r["decisions"]] == [SERVED]  # the window's decisions only, as before

    served = tasks[SERVED]
    assert (served["mode"], served["kind"]) == ("on", "classifier")
    assert (served["specialist_calls"], served["fallbacks"]) == (3, 1)
    assert served["fallback_reasons"] == {"no_match": 1}
    # the latest decision is the live promotion; the ladder is that of the flywheel pass before it
    assert (served["gate"]["action"], served["gate"]["mode_to"], served["gate"]["actor"]) == ("promote", "on", "gate")
    assert served["gate"]["candidates"] == candidates[SERVED] and served["gate"]["candidates_ts"] == T0 - 3000
    assert tasks[PLAIN]["gate"] is None and tasks[PLAIN]["kind"] is None
    json.dumps(r)


def test_specialist_kind_from_manifest_or_promoted_candidate(ladder, tmp_path):
    path, _ = ladder
    specialists = tmp_path / "specialists"
    (specialists / "old-lora").mkdir()
    (specialists / "old-lora" / "specialist.json").write_text(json.dumps({"task": PLAIN}))  # written before kinds
    with open_store(path) as store:
        store.set_route(Route(PLAIN, "on", str(specialists / "old-lora")))
        (specialists / f"{SERVED}-v1-classifier" / "specialist.json").unlink()  # the promoted candidate still says
        tasks = {t["task_id"]: t for t in build_report(store, since=T0)["tasks"]}
    assert tasks[PLAIN]["kind"] == "lora"
    assert tasks[SERVED]["kind"] == "classifier"


def _unwrapped(text: str) -> str:
    """The text with every run of whitespace as one space: a wrapped sentence reads whole again."""
    return " ".join(text.split())


def test_terminal_fits_80_columns_and_says_why(ladder):
    from rich.console import Console

    path, _ = ladder
    console = Console(width=80, record=True)
    with open_store(path) as store:
        render_terminal(build_report(store, since=T0), console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert "…" not in text
    for task in (HELD, SERVED, PLAIN):  # whole, on one line, in the tasks table and as a heading of its own
        assert sum(task in line for line in lines) >= 2, task
    flat = _unwrapped(text)
    assert f"{SERVED} on · classifier" in flat
    assert "accuracy 0.810 [0.730, 0.870], answers 64% at p>=0.71, 100% valid → hold: " + HELD_REASON in flat
    assert "accuracy 0.970 [0.930, 0.990], answers 96% at p>=0.71, 100% valid → promote" in flat
    assert "lora error: RuntimeError: out of memory while loading the base model" in flat
    assert "reuse skip: answers rarely repeat: 2% of requests were seen twice" in flat
    assert "fallbacks no_match 1" in flat
    assert "no gate decision yet: `protege flywheel run`" in flat


def test_terminal_escapes_markup_in_task_ids_and_reasons(tmp_path):
    from rich.console import Console

    with open_store(tmp_path / "p.db") as store:
        store.add_decision(Decision("[bold]t", "hold", "off", "off", "x", ts=T0, evidence={"candidates": [
            {"kind": "classifier", "verdict": "skip", "reason": "labels like [red] are not a closed set"}]}))
        console = Console(width=80, record=True)
        render_terminal(build_report(store), console)
    flat = _unwrapped(console.export_text())
    assert "[bold]t" in flat and "labels like [red] are not a closed set" in flat


def test_html_lists_candidates_and_gate_verdicts(ladder):
    path, _ = ladder
    with open_store(path) as store:
        page = render_html(build_report(store, since=T0))
    assert "<h2>Candidates and gate verdicts</h2>" in page
    assert page.count("<tr class=gate>") == 3 and page.count("<tr class=candidate>") == 3 + 2
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for text in (HELD, "hold, stays off, by gate", "RuntimeError: out of memory", "answers rarely repeat",
                 HELD_REASON.replace("'", "&#x27;"), "0.810", "[0.730, 0.870] on 120 calls", "64% at p&gt;=0.71",
                 "$7.1000", "-$0.4000", "on <span class=sub>classifier</span>", "no gate decision yet"):
        assert text in page, text
    assert page.count('class="ci"') == 3  # a CI strip per evaluated candidate


def test_counterfactual_unknown_without_priced_llm_calls(tmp_path):
    with open_store(tmp_path / "p.db") as store:
        store.add_calls([_call(1, T0, "t", "specialist:t", 0.001, 10, specialist="t"),
                         _call(2, T0 + 1, "t", "upstream:x", None, 100)])
        r = build_report(store)
    t = r["totals"]
    assert t["counterfactual_usd"] is None and t["saved_usd"] is None and t["times_cheaper"] is None
    assert t["spend_usd"] == pytest.approx(0.001)
    assert any("counterfactual" in n for n in r["notes"])
    assert "unknown" in render_html(r)


def test_report_cli_json_html_and_terminal(db, tmp_path, home):
    res = CliRunner().invoke(app, ["report", "--database", str(db), "--json", "--html", str(tmp_path / "r.html"),
                                   "--since", "2025-06-15T15:00+00:00"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["totals"]["calls"] == 14 and data["totals"]["specialist_calls"] == 5
    assert data["totals"]["saved_usd"] == pytest.approx(0.0465)
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") >= 3 and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    res = CliRunner().invoke(app, ["report", "--database", str(db), "--since", "1"])  # the last hour: nothing
    assert res.exit_code == 0, res.output
    assert "0 calls" in res.output
    from rich.console import Console

    console = Console(record=True, width=200)
    with open_store(db) as store:
        render_terminal(build_report(store), console)
    text = console.export_text()
    assert "saved $0.0465" in text and "triage" in text and "promote" in text and "25 ms" in text


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Chromium is needed to test the dashboard in a real browser: run `make chromium` "
                    "(or `apt-get install -y chromium`).")
    return path


def run_chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)


def test_dashboard_in_headless_chromium(home, start_gateway, tmp_path):
    home.mkdir(parents=True, exist_ok=True)
    fill_store(home / "protege.db", tmp_path / "specialists")
    with open_store(home / "protege.db") as store:
        admin = create_key(store, "ops", "admin")
        client = create_key(store, "agent", "client")
    gw = start_gateway()
    assert httpx2.get(gw.base + "/dashboard").status_code == 401
    assert httpx2.get(gw.base + "/dashboard?key=pk-wrong").status_code == 401
    assert httpx2.get(gw.base + "/v1/protege/report", headers={"Authorization": f"Bearer {client}"}).status_code == 403
    assert httpx2.get(f"{gw.base}/v1/protege/report?key={admin}").status_code == 401  # ?key= is for the page only
    r = httpx2.get(gw.base + "/v1/protege/report?buckets=4", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and r.json()["totals"]["calls"] == 14 and len(r.json()["series"]) == 4
    assert httpx2.get(gw.base + "/v1/protege/report?hours=x", headers={"Authorization": f"Bearer {admin}"}).status_code == 400

    url = f"{gw.base}/dashboard?key={admin}"
    dom = run_chromium(url, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count("<svg") >= 2 + 3 + 1  # spend, share, CI strips of 3 eval rows and of the shadow agreement
    assert '<polyline points="' in html and html.count("<polyline") == 2
    assert html.count('<rect x="') >= 3  # one specialist-share column per non-empty bucket
    assert html.count('<tr class="task">') == 3 and html.count('<tr class="decision">') == 3
    assert html.count('<tr class="quality">') == 3 + 1 + 1  # triage's 3 eval rows, a note each for the others
    for text in ("triage", "extract", "fresh", "promote", "shadow agreement 0.93", "fallback to LLM", "0.900", "50.0%",
                 "not evaluated"):
        assert text in html, text

    shot = tmp_path / "dashboard.png"
    res = run_chromium(url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                       "--hide-scrollbars")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000  # a blank page compresses to a few KB
    keep = Path(__file__).parent.parent / ".pytest_cache" / "dashboard.png"
    keep.parent.mkdir(exist_ok=True)
    keep.write_bytes(png)  # to look at


def test_long_task_ids_wrap_between_their_words_in_80_columns(tmp_path):
    from rich.console import Console

    from protege.report.savings import fold_at_hyphens

    assert fold_at_hyphens("classify-technical-billing-account", 20) == "classify-technical-\nbilling-account"
    assert fold_at_hyphens("short-name", 20) == "short-name"
    assert fold_at_hyphens("averyveryverylongwordwithout-hyphens", 10) == "averyveryverylongwordwithout-\nhyphens"
    task = "classify-technical-billing-account-escalations"
    with open_store(tmp_path / "p.db") as store:
        store.add_calls([CallRecord(id=f"c{i}", ts=T0 + i, request={"model": "m", "messages": []}, task_id=task,
                                    served_by="upstream:default", cost_usd=0.001) for i in range(5)])
        console = Console(width=80, record=True)
        render_terminal(build_report(store, since=T0), console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    first = next(i for i, line in enumerate(lines) if line.startswith("classify-"))
    head, tail = lines[first].split()[0], lines[first + 1].split()[0]
    assert head.endswith("-") and head + tail in task and task.startswith(head + tail)
