"""The savings report: what the specialists saved against sending every call to the LLM.

`build_report(store)` returns plain data (the `--json` output, documented in docs/report.md);
`render_terminal` and `render_html` draw it. The counterfactual cost of a call is its own price
when the LLM served it, else the mean LLM price of a call of the same task in the whole store
(else of any task); with no priced LLM call in the store it is unknown, and the report says so.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from protege.evaluate.metrics import percentile, wilson_ci
from protege.report.candidates import candidates_html, change_text, latest_gates, render_why, specialist_kind
from protege.report.charts import columns, interval, lines, page
from protege.report.formats import counts, ms, pct, usd, when
from protege.specialist.artifact import EVAL_REPORT
from protege.store import CallFilter, Store


def _llm_cost_per_call(stats: dict) -> float | None:
    """Mean price of an LLM-served call of known price, from a `Store.stats()` answer."""
    groups = [g for g in stats["by_served_by"] if (g["name"] or "").startswith("upstream:")]
    priced = sum(g["calls"] - g["calls_unknown_cost"] for g in groups)
    return sum(g["cost_usd"] for g in groups) / priced if priced else None


def _route_of(served_by: str | None, route: dict) -> tuple[str, str]:
    """(kind, name) of the route that answered: llm, fallback, specialist or local."""
    served_by = served_by or "unknown"
    if route.get("fallback"):
        return "fallback", "fallback to LLM"
    kind = served_by.split(":", 1)[0]
    return {"upstream": "llm", "specialist": "specialist", "local": "local"}.get(kind, kind), served_by


def _quality(task: str, folder: str | None) -> tuple[dict | None, str | None]:
    """The headline rows of a specialist's eval.json, or a note saying why there are none."""
    if not folder:
        return None, "no specialist"
    path = Path(folder) / EVAL_REPORT
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"not evaluated: run `protege eval {task} --specialist {folder}`"
    except (OSError, ValueError) as e:
        return None, f"unreadable {path}: {e}"
    rows = [{"name": r["name"], "n": r["n"], "valid_rate": r["valid_rate"], "value": r["headline"],
             "ci_low": r["ci_low"], "ci_high": r["ci_high"]} for r in data.get("rows", [])]
    return {"metric": data.get("headline_metric"), "output_kind": data.get("output_kind"),
            "n_examples": data.get("n_examples"), "created": data.get("created"), "rows": rows}, None


def build_report(store: Store, since: float | None = None, until: float | None = None, buckets: int = 24) -> dict:
    """Spend against the all-LLM counterfactual, specialist share, quality, latency and gate decisions."""
    calls, shadows = [], {}
    for r in store.iter_calls(CallFilter(since=since, until=until)):
        route = r.metadata.get("route") or {}
        kind, name = _route_of(r.served_by, route)
        task = r.task_id or route.get("task")
        calls.append((r.ts, task, kind, name, r.cost_usd, r.latency_ms, not (r.status == 200 and r.error is None), route))
        if isinstance(route.get("shadow"), dict) and task is not None:
            shadows[r.id] = (task, route["shadow"])
    for sr in store.shadow_results(since=since):  # the gateway's shadow comparisons, logged after the call
        if until is None or sr.ts < until:
            shadows[sr.call_id] = (sr.task_id, {"agree": sr.agree, "score": sr.score, "latency_ms": sr.latency_ms})
    routes = store.routes()
    decisions = store.decisions()  # newest first, all time: a task's latest decision may predate the window
    gates = latest_gates(decisions)
    overall_basis = _llm_cost_per_call(store.stats())
    task_ids = sorted({c[1] for c in calls if c[1] is not None} | {t for t, _ in shadows.values()} | set(routes)
                      | set(gates))
    basis = {t: _llm_cost_per_call(store.stats(CallFilter(task_id=t))) or overall_basis for t in task_ids}

    def counterfactual(task, kind, cost):
        if kind in ("llm", "fallback"):
            return cost
        return basis.get(task, overall_basis) if task is not None else overall_basis

    t0 = since if since is not None else min((c[0] for c in calls), default=time.time())
    t1 = until if until is not None else max((c[0] for c in calls), default=t0)
    width = (t1 - t0) / buckets if t1 > t0 else 1.0
    series = [{"start": t0 + i * width, "end": t0 + (i + 1) * width, "calls": 0, "specialist_calls": 0,
               "spend_usd": 0.0, "counterfactual_usd": 0.0} for i in range(buckets)]
    tasks = {t: {"task_id": t, "calls": 0, "specialist_calls": 0, "fallbacks": 0, "attempts": 0, "spend_usd": 0.0,
                 "counterfactual_usd": 0.0, "shadow": [], "fallback_reasons": Counter()} for t in task_ids}
    by_route: dict[tuple[str, str], dict] = {}
    fallback_reasons: Counter = Counter()
    spend = cf_spend = 0.0
    unknown_cost = unknown_cf = 0
    for ts, task, kind, name, cost, latency, failed, route in calls:
        b = series[min(buckets - 1, max(0, int((ts - t0) / width)))]
        t = tasks.get(task)
        g = by_route.setdefault((kind, name), {"route": name, "kind": kind, "calls": 0, "errors": 0, "latencies": []})
        g["calls"] += 1
        g["errors"] += failed
        if latency is not None:
            g["latencies"].append(latency)
        for agg in (b, t) if t else (b,):
            agg["calls"] += 1
            agg["specialist_calls"] += kind == "specialist"
        if t:
            t["attempts"] += kind in ("specialist", "fallback")
            t["fallbacks"] += kind == "fallback"
        if kind == "fallback":
            fallback_reasons[route.get("fallback_reason") or "unknown"] += 1
            if t:
                t["fallback_reasons"][route.get("fallback_reason") or "unknown"] += 1
        cf = counterfactual(task, kind, cost)
        if cost is None:
            unknown_cost += 1
            continue
        if cf is None:
            unknown_cf += 1
        spend += cost
        cf_spend += cf or 0.0
        for agg in (b, t) if t else (b,):
            agg["spend_usd"] += cost
            agg["counterfactual_usd"] += cf or 0.0

    for task, result in shadows.values():
        tasks[task]["shadow"].append(result)
    cum_a = cum_c = 0.0
    for b in series:
        cum_a, cum_c = cum_a + b["spend_usd"], cum_c + b["counterfactual_usd"]
        b["cumulative_spend_usd"], b["cumulative_counterfactual_usd"] = round(cum_a, 6), round(cum_c, 6)
        b["specialist_share"] = round(b["specialist_calls"] / b["calls"], 4) if b["calls"] else None
        b["spend_usd"], b["counterfactual_usd"] = round(b["spend_usd"], 6), round(b["counterfactual_usd"], 6)

    counted = Counter(c[2] for c in calls)
    attempts = counted["specialist"] + counted["fallback"]
    cf_known = not unknown_cf
    notes = []
    if not cf_known:
        notes.append(f"{unknown_cf} calls not served by the LLM have no counterfactual price: the store holds no "
                     "LLM call of known price, so the all-LLM cost and the savings are unknown.")
    if unknown_cost:
        notes.append(f"Calls of unknown price left out of spend: {unknown_cost} (an unpriced model, a stream "
                     "without usage, or no hourly machine price for local calls).")
    totals = {
        "calls": len(calls), "errors": sum(c[6] for c in calls), "unassigned_calls": sum(c[1] is None for c in calls),
        "llm_calls": counted["llm"], "specialist_calls": counted["specialist"], "local_calls": counted["local"],
        "fallbacks": counted["fallback"], "fallback_reasons": dict(fallback_reasons),
        "specialist_share": round(counted["specialist"] / len(calls), 4) if calls else None,
        "fallback_rate": round(counted["fallback"] / attempts, 4) if attempts else None,
        "spend_usd": round(spend, 6),
        "counterfactual_usd": round(cf_spend, 6) if cf_known else None,
        "saved_usd": round(cf_spend - spend, 6) if cf_known else None,
        "times_cheaper": round(cf_spend / spend, 2) if cf_known and spend > 0 else None,
        "calls_unknown_cost": unknown_cost,
        "llm_cost_per_call_usd": overall_basis,
    }
    route_rows = []
    order = {"llm": 0, "specialist": 1, "fallback": 2, "local": 3}
    for g in sorted(by_route.values(), key=lambda g: (order.get(g["kind"], 9), g["route"])):
        lat = g.pop("latencies")
        route_rows.append({**g, "latency_p50_ms": percentile(lat, 0.5), "latency_p95_ms": percentile(lat, 0.95)})

    task_rows = []
    for t in sorted(tasks.values(), key=lambda t: (-t["calls"], t["task_id"])):
        route = routes.get(t["task_id"])
        folder = route.specialist if route else None
        quality, quality_note = _quality(t["task_id"], folder)
        shadow = t.pop("shadow")
        agree = sum(bool(s.get("agree")) for s in shadow)
        lo, hi = wilson_ci(agree, len(shadow))
        scores = [s["score"] for s in shadow if isinstance(s.get("score"), (int, float))]
        shadow_ms = [s["latency_ms"] for s in shadow if s.get("latency_ms") is not None]
        attempts_t = t.pop("attempts")
        is_routed = route is not None and route.mode != "off"
        task_rows.append({
            **t, "fallback_reasons": dict(t["fallback_reasons"]), "spend_usd": round(t["spend_usd"], 6),
            "counterfactual_usd": round(t["counterfactual_usd"], 6) if cf_known else None,
            "specialist_share": round(t["specialist_calls"] / t["calls"], 4) if t["calls"] else None,
            "fallback_rate": round(t["fallbacks"] / attempts_t, 4) if attempts_t else None,
            "mode": route.mode if route else "off", "specialist": folder,
            "kind": specialist_kind(folder, [d for d in decisions if d.task_id == t["task_id"]]) if is_routed else None,
            "gate": gates.get(t["task_id"]),
            "quality": quality, "quality_note": quality_note,
            "shadow": {"n": len(shadow), "agree": agree, "agreement": round(agree / len(shadow), 4),
                       "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                       "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
                       "latency_p50_ms": percentile(shadow_ms, 0.5)} if shadow else None,
        })
    in_window = [asdict(d) for d in decisions if (since is None or d.ts >= since) and (until is None or d.ts < until)]
    return {"generated_ts": time.time(), "since": since, "until": until, "first_ts": t0, "last_ts": t1,
            "totals": totals, "notes": notes, "series": series, "routes": route_rows, "tasks": task_rows,
            "decisions": in_window}


# -- rendering ----------------------------------------------------------------------------------

def _headline(report: dict) -> str:
    t = report["totals"]
    saved = "unknown" if t["saved_usd"] is None else usd(t["saved_usd"])
    cheaper = f" ({t['times_cheaper']:.1f}x cheaper)" if t["times_cheaper"] else ""
    return (f"{t['calls']} calls: spent {usd(t['spend_usd'])} against {usd(t['counterfactual_usd'])} all-LLM, "
            f"saved {saved}{cheaper}; specialists served {pct(t['specialist_share'])}, "
            f"fallback rate {pct(t['fallback_rate'])}")


def _mode_markup(task: dict) -> str:
    from rich.markup import escape

    return task["mode"] + (f"\n[dim]{escape(task['kind'])}[/]" if task.get("kind") else "")


def render_terminal(report: dict, console=None) -> None:
    """Print the report with rich, readable in 80 columns: the headline, a share sparkline, a compact table of
    tasks and one of routes, why each task is (not) served, and the gate decisions of the window.

    Only the first column of a table (task or route) may wrap, and it folds rather than cuts; the other
    columns keep their width."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def compact(title: str) -> Table:
        return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)

    console = console or Console()
    console.print(f"[bold]{escape(_headline(report))}[/]")
    reasons = report["totals"]["fallback_reasons"]
    if reasons:
        console.print(f"fallback reasons: {escape(counts(reasons))}")
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    shares = [b["specialist_share"] for b in report["series"]]
    if report["totals"]["calls"]:
        spark = "".join(" " if s is None else "▁▂▃▄▅▆▇█"[min(7, int(s * 8))] for s in shares)
        console.print(f"share served by specialists, {when(report['first_ts'])} → {when(report['last_ts'])}:")
        step = max(1, console.width - 2)  # many buckets: the sparkline continues on the next line, whole
        for i in range(0, len(spark), step):
            console.print(f"  [green]{spark[i:i + step]}[/]", no_wrap=True)
    right = {"justify": "right", "no_wrap": True}
    table = compact("tasks")
    table.add_column("task", overflow="fold")
    table.add_column("mode", no_wrap=True)
    for col in ("calls", "served", "fallback", "spend\n[dim]of all-LLM[/]"):
        table.add_column(col, **right)
    rows = [[_mode_markup(t), str(t["calls"]), pct(t["specialist_share"]), pct(t["fallback_rate"]),
             f"{usd(t['spend_usd'])}\n[dim]of {usd(t['counterfactual_usd'])}[/]"] for t in report["tasks"]]
    room = _first_column_room(console.width, [c.header for c in table.columns[1:]], rows)
    for t, row in zip(report["tasks"], rows):
        table.add_row(escape(fold_at_hyphens(t["task_id"], room)), *row)
    console.print(table)
    console.print("[dim]served: share of calls a specialist answered; fallback: share of a specialist's tries "
                  "the LLM took over[/]")
    table = compact("latency per route")
    table.add_column("route", overflow="fold")
    for col in ("calls", "errors", "p50", "p95"):
        table.add_column(col, **right)
    rows = [[str(r["calls"]), str(r["errors"]), ms(r["latency_p50_ms"]), ms(r["latency_p95_ms"])]
            for r in report["routes"]]
    room = _first_column_room(console.width, [c.header for c in table.columns[1:]], rows)
    for r, row in zip(report["routes"], rows):
        table.add_row(escape(fold_at_hyphens(r["route"], room)), *row)
    console.print(table)
    render_why(report["tasks"], console)
    if report["decisions"]:
        console.print("\n[bold]gate decisions in this window[/] (newest first)")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for d in report["decisions"][:20]:
            change = change_text(d["action"], d["mode_from"], d["mode_to"], d["actor"])
            grid.add_row(when(d["ts"], "%m-%d %H:%M"),
                         f"{escape(d['task_id'])}: {escape(change)}\n[dim]{escape(d['reason'])}[/]")
        console.print(grid)


def fold_at_hyphens(name: str, width: int) -> str:
    """`name` on lines of at most `width` characters, broken after hyphens ("classify-technical-" /
    "billing-account"), so a long task id wraps between its words; a part longer than a line is left whole
    (the table folds it)."""
    if len(name) <= width:
        return name
    lines, line = [], ""
    for part in re.split(r"(?<=-)", name):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line])


def _first_column_room(width: int, headers: list, rows: list[list[str]]) -> int:
    """Characters left for a table's first column once the other columns (widest cell, markup removed) and the
    gaps between columns are laid out in `width`."""
    from rich.text import Text

    def cell_width(cell: Any) -> int:
        return max((Text.from_markup(line).cell_len for line in str(cell).split("\n")), default=0)

    others = [max([cell_width(h), *(cell_width(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    return max(12, width - sum(others) - 2 * len(others) - 1)


def render_html(report: dict, title: str = "protege: savings and quality") -> str:
    """One self-contained page (inline SVG, no script, nothing fetched) of a `build_report()` result."""
    esc = html.escape
    t, series = report["totals"], report["series"]
    span = report["last_ts"] - report["first_ts"]
    fmt = "%b %d" if span > 3 * 86400 else "%b %d %H:%M" if span > 86400 else "%H:%M"
    x_labels = [when(b["start"], fmt) for b in series]
    saved = "unknown" if t["saved_usd"] is None else usd(t["saved_usd"])
    cheaper = f"{t['times_cheaper']:.1f}x cheaper" if t["times_cheaper"] else ""
    body = [
        (f"<h1>{esc(title)}</h1><p class=sub>{t['calls']} calls from {esc(when(report['first_ts']))} to "
         f"{esc(when(report['last_ts']))}; generated {esc(when(report['generated_ts']))}.</p>"),
        "<div class=cards>",
        f"<div class=card>spent<b>{usd(t['spend_usd'])}</b></div>",
        f"<div class=card>all-LLM counterfactual<b>{usd(t['counterfactual_usd'])}</b></div>",
        f"<div class=card>saved<b>{saved}</b><span class=sub>{cheaper}</span></div>",
        (f"<div class=card>served by specialists<b>{pct(t['specialist_share'])}</b>"
         f"<span class=sub>{t['specialist_calls']} of {t['calls']} calls</span></div>"),
        f"<div class=card>fallback rate<b>{pct(t['fallback_rate'])}</b><span class=sub>{t['fallbacks']} fallbacks</span></div>",
        "</div>",
        *(f"<p class=mid>{esc(n)}</p>" for n in report["notes"]),
        "<h2>Spend over time (cumulative)</h2>",
    ]
    spend_series = [("actual spend", "#4f7cac", [b["cumulative_spend_usd"] for b in series])]
    if t["counterfactual_usd"] is not None:
        spend_series.append(("all-LLM counterfactual", "#c2703d", [b["cumulative_counterfactual_usd"] for b in series]))
    body.append(lines(spend_series, x_labels, usd) or "<p class=sub>No calls in this window.</p>")
    body.append("<h2>Share of calls served by specialists</h2>")
    body.append(columns([b["specialist_share"] for b in series], x_labels, lambda v: f"{v:.0%}")
                if t["calls"] else "<p class=sub>No calls in this window.</p>")
    body.append("<h2>Tasks</h2><table><tr><th>task</th><th>mode</th><th class=num>calls</th>"
                "<th class=num>by specialist</th><th class=num>fallback rate</th><th class=num>spend</th>"
                "<th class=num>all-LLM</th><th>live shadow agreement (95% CI)</th></tr>")
    for task in report["tasks"]:
        sh = task["shadow"]
        shadow = (f"<div class=q>{interval(sh['agreement'], sh['ci_low'], sh['ci_high'], width=160)}<span>"
                  f"<b>{sh['agreement']:.1%}</b> <span class=sub>[{sh['ci_low']:.1%}, {sh['ci_high']:.1%}] "
                  f"of {sh['n']}</span></span></div>") if sh else "-"
        kind = f" <span class=sub>{esc(task['kind'])}</span>" if task.get("kind") else ""
        body.append(
            f"<tr class=task><td><b>{esc(task['task_id'])}</b></td><td>{esc(task['mode'])}{kind}</td>"
            f"<td class=num>{task['calls']}</td><td class=num>{pct(task['specialist_share'])}</td>"
            f"<td class=num>{pct(task['fallback_rate'])}</td><td class=num>{usd(task['spend_usd'])}</td>"
            f"<td class=num>{usd(task['counterfactual_usd'])}</td><td>{shadow}</td></tr>")
    body.append("</table><h2>Candidates and gate verdicts</h2><p class=sub>Each task's latest gate decision, "
                "whenever it was taken, and the specialist kinds the flywheel tried for it, cheapest first: "
                "quality alone on held-out calls, the share it answers itself at its calibrated confidence "
                "threshold, and the expected saving.</p>")
    body.append(candidates_html(report["tasks"]))
    body.append("<h2>Quality per task at evaluation (held-out calls, 95% CI)</h2><table><tr><th>task</th>"
                "<th>candidate</th><th>metric</th><th></th><th class=num>value</th><th>95% CI</th>"
                "<th class=num>valid</th><th class=num>n</th></tr>")
    for task in report["tasks"]:
        q, name = task["quality"], f"<b>{esc(task['task_id'])}</b>"
        if not q:
            body.append(f"<tr class=quality><td>{name}</td><td colspan=7 class='sub path'>"
                        f"{esc(task['quality_note'] or '-')}</td></tr>")
            continue
        for i, r in enumerate(q["rows"]):
            body.append(
                f"<tr class=quality><td>{name if i == 0 else ''}</td><td>{esc(r['name'])}</td>"
                f"<td>{esc(str(q['metric']))}</td><td>{interval(r['value'], r['ci_low'], r['ci_high'], width=160)}</td>"
                f"<td class=num><b>{r['value']:.3f}</b></td><td class=sub>[{r['ci_low']:.3f}, {r['ci_high']:.3f}]</td>"
                f"<td class=num>{r['valid_rate']:.0%}</td><td class=num>{r['n']}</td></tr>")
    body.append("</table><h2>Latency per route</h2><table><tr><th>route</th><th class=num>calls</th>"
                "<th class=num>errors</th><th class=num>p50</th><th class=num>p95</th></tr>")
    body.extend(f"<tr><td>{esc(r['route'])}</td><td class=num>{r['calls']}</td><td class=num>{r['errors']}</td>"
                f"<td class=num>{ms(r['latency_p50_ms'])}</td><td class=num>{ms(r['latency_p95_ms'])}</td></tr>"
                for r in report["routes"])
    body.append("</table><h2>Gate decisions in this window</h2>")
    if report["decisions"]:
        body.append("<table><tr><th>when</th><th>task</th><th>action</th><th>mode</th><th>by</th><th>reason</th></tr>")
        body.extend(f"<tr class=decision><td>{esc(when(d['ts']))}</td><td>{esc(d['task_id'])}</td>"
                    f"<td><b>{esc(d['action'])}</b></td><td>{esc(d['mode_from'] or '-')} → {esc(d['mode_to'])}</td>"
                    f"<td>{esc(d['actor'])}</td><td>{esc(d['reason'])}</td></tr>" for d in report["decisions"])
        body.append("</table>")
    else:
        body.append("<p class=sub>No promotion, hold, demotion or manual mode change in this window; each task's "
                    "latest decision is under Candidates and gate verdicts.</p>")
    body.append("<p class=sub>The counterfactual prices each call not served by the LLM at the mean LLM price of a "
                "call of the same task (docs/report.md). Fallback rate: fallbacks over calls a specialist tried.</p>")
    return page(title, "".join(body))
