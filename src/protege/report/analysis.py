"""The analysis report: a terminal table and a self-contained HTML page (inline SVG, no CDN).

Both take the dict of `Analysis.to_dict()`, so a saved `--json` output renders the same way.
"""

from __future__ import annotations

import html
import json

from protege.report.charts import bars, page


def tasks_table(data: dict):
    """A rich Table: one row per task, with volume, spend, output kind, SLM fit and savings."""
    from rich.table import Table

    stats = data.get("stats", {})
    table = Table(title=f"{stats.get('tasks', len(data['tasks']))} tasks in {stats.get('calls', '?')} calls "
                        f"({stats.get('unclustered', 0)} unclustered)")
    for col, kw in [("task", {}), ("calls", {"justify": "right"}), ("spend", {"justify": "right"}),
                    ("tokens in/out", {"justify": "right"}), ("output", {}), ("consistent", {"justify": "right"}),
                    ("SLM fit", {"justify": "right"}), ("savings / month", {"justify": "right"})]:
        table.add_column(col, **kw)
    for t in data["tasks"]:
        lo, hi = t["monthly_savings_usd"]
        table.add_row(
            f"{t['task_id']}\n[dim]{t['name'][:60]}[/]",
            f"{t['calls']} ({t['share_of_calls']:.0%})",
            f"${t['spend_usd']:.2f} ({t['share_of_spend']:.0%})",
            f"{t['prompt_tokens_mean']:.0f} / {t['completion_tokens_mean']:.0f}",
            f"{t['output_kind']}\n[dim]{t['output_detail'].get('summary', '')}[/]",
            f"{t['consistency']:.0%}",
            f"[bold]{t['slm_fit']}[/]",
            f"${lo:,.2f}-{hi:,.2f}",
        )
    return table


def render_html(data: dict, title: str = "protege: what your agent does") -> str:
    """A self-contained HTML report (no external resources) of an `Analysis.to_dict()`."""
    stats, tasks = data.get("stats", {}), data["tasks"]
    esc = html.escape
    spend = sum(t["spend_usd"] for t in tasks)
    lo = sum(t["monthly_savings_usd"][0] for t in tasks)
    hi = sum(t["monthly_savings_usd"][1] for t in tasks)
    calls = stats.get("calls", sum(t["calls"] for t in tasks))
    covered = sum(t["calls"] for t in tasks)
    parts = [
        f"<h1>{esc(title)}</h1><p class=sub>Task discovery over {calls} logged calls "
        f"(embedder {esc(str(stats.get('embedder', '')))}, min task size {stats.get('min_task_size', '?')}).</p>",
        "<div class=cards>",
        f"<div class=card>recurring tasks<b>{len(tasks)}</b></div>",
        f"<div class=card>calls in tasks<b>{covered / max(1, calls):.0%}</b></div>",
        f"<div class=card>one-off calls left out<b>{stats.get('unclustered', calls - covered)}</b></div>",
        f"<div class=card>LLM spend (log)<b>${spend:,.2f}</b></div>",
        f"<div class=card>savings / month<b>${lo:,.0f}-{hi:,.0f}</b></div>",
        "</div><div class=grid><div><h2>Volume</h2>",
        bars([(t["task_id"], t["calls"]) for t in tasks], lambda v: f"{v:.0f} calls"),
        "</div><div><h2>Spend</h2>",
        bars([(t["task_id"], t["spend_usd"]) for t in tasks], lambda v: f"${v:,.2f}", color="#c2703d"),
        "</div></div><h2>SLM fit</h2>",
        bars([(t["task_id"], t["slm_fit"]) for t in tasks], lambda v: f"{v:.0f}/100", color="#3c8d5a"),
        "<h2>Tasks</h2><table><tr><th>task</th><th>calls</th><th>spend</th><th>output</th><th>consistency</th>"
        "<th>SLM fit</th><th>savings / month</th></tr>",
    ]
    for t in tasks:
        cls = "hi" if t["slm_fit"] >= 75 else "mid" if t["slm_fit"] >= 55 else "lo"
        parts.append(
            f"<tr><td><b>{esc(t['task_id'])}</b><br><span class=sub>{esc(t['name'])}</span></td>"
            f"<td>{t['calls']} ({t['share_of_calls']:.0%})</td><td>${t['spend_usd']:,.2f} ({t['share_of_spend']:.0%})</td>"
            f"<td>{esc(t['output_kind'])} <span class=sub>{esc(str(t['output_detail'].get('summary', '')))}</span></td>"
            f"<td>{t['consistency']:.0%}</td><td class='fit {cls}'>{t['slm_fit']}</td>"
            f"<td>${t['monthly_savings_usd'][0]:,.2f}-{t['monthly_savings_usd'][1]:,.2f}</td></tr>"
        )
    parts.append("</table><h2>Details</h2>")
    for t in tasks:
        detail = {k: v for k, v in t["output_detail"].items() if k not in ("summary", "consistency_rule")}
        parts.append(f"<details><summary>{esc(t['task_id'])}: {esc(t['name'])}</summary><ul>")
        parts.extend(f"<li>{esc(e)}</li>" for e in t["evidence"])
        parts.append(f"</ul><p>Output detail:</p><pre>{esc(json.dumps(detail, indent=1, ensure_ascii=False)[:3000])}</pre>")
        for ex in t["examples"]:
            parts.append(f"<p class=sub>call {esc(ex['call_id'])} (scrubbed)</p><pre>USER: {esc(ex['user'])}\n\nANSWER: {esc(ex['answer'])}</pre>")
        parts.append("</details>")
    parts.append("<p class=sub>Savings assume a self-hosted specialist at $0.02-0.10 per million tokens; SLM fit weighs "
                 "output narrowness, consistency, volume and prompt length (docs/curate_and_analyze.md).</p>")
    return page(title, "".join(parts))
