"""Why each task is (not) served: its latest gate decision and the specialist kinds the flywheel tried.

The flywheel climbs a ladder of specialist kinds per task, cheapest first (answer reuse, a classifier, a
LoRA-tuned small model), and records every rung in the decision's `evidence["candidates"]`: a skipped
kind with the reason, a failed build with the error, an evaluated kind with its held-out calibration
and the gate's verdict. `latest_gates` reads them out of the store's decisions, whenever they were
taken; `render_why` (terminal) and `candidates_html` draw them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path

from protege.report.charts import interval
from protege.report.formats import counts, ms, usd, when
from protege.specialist.artifact import MANIFEST
from protege.store import Decision

FLYWHEEL_COMMAND = "protege flywheel run"


def latest_gates(decisions: Iterable[Decision]) -> dict[str, dict]:
    """Each task's latest decision as plain data, from `decisions` newest first.

    `candidates` is the ladder of the newest decision that recorded one (`candidates_ts` says when): a
    live promotion from shadow, a demotion or a manual change records none, and the ladder of the
    flywheel pass before it still says which kinds were tried. [] for decisions older than the ladder."""
    gates: dict[str, dict] = {}
    for d in decisions:
        gate = gates.get(d.task_id)
        if gate is None:
            gate = gates[d.task_id] = {"action": d.action, "mode_from": d.mode_from, "mode_to": d.mode_to,
                                       "reason": d.reason, "actor": d.actor, "ts": d.ts, "specialist": d.specialist,
                                       "candidates": [], "candidates_ts": None}
        if gate["candidates_ts"] is None and isinstance(d.evidence.get("candidates"), list):
            gate["candidates"], gate["candidates_ts"] = d.evidence["candidates"], d.ts
    return gates


def specialist_kind(folder: str | None, decisions: Iterable[Decision]) -> str | None:
    """The kind of the specialist in `folder`: its specialist.json's `kind` ("lora" for a folder written
    before there were kinds), else the kind of the promoted candidate built there, else None."""
    if not folder:
        return None
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict):
        return str(manifest.get("kind") or "lora")
    built = (c.get("kind") for d in decisions for c in d.evidence.get("candidates") or []
             if isinstance(c, dict) and c.get("verdict") == "promote" and c.get("folder") == folder)
    return next(built, None)


def is_evaluated(c: dict) -> bool:
    return c.get("verdict") in ("promote", "hold")


def quality_text(c: dict) -> str:
    """'accuracy 0.970 [0.930, 0.990]' for an evaluated candidate ('' when it holds no quality)."""
    if c.get("quality") is None:
        return ""
    ci = c.get("quality_ci") or []
    bounds = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if len(ci) == 2 else ""
    return f"{c.get('metric') or 'quality'} {c['quality']:.3f}{bounds}"


def coverage_text(c: dict) -> str:
    """'answers 96% at p>=0.71': the share of calls it serves itself at its calibrated confidence threshold."""
    if c.get("coverage") is None:
        return ""
    at = f" at p>={c['threshold']:.2f}" if c.get("threshold") is not None else ""
    return f"answers {c['coverage']:.0%}{at}"


def valid_share(c: dict) -> float | None:
    """Share of valid outputs among those it would serve (what the gate checks), else among all."""
    return c.get("served_valid_rate", c.get("valid_rate"))


def saving_text(c: dict) -> str:
    v = c.get("saving_usd_per_call")
    return "unknown" if v is None else usd(v * 1000)


def change_text(action: str, mode_from: str | None, mode_to: str, actor: str) -> str:
    """'promote shadow → on by gate', or 'hold, stays off, by gate' when the mode did not change."""
    if mode_from == mode_to:
        return f"{action}, stays {mode_to}, by {actor}"
    return f"{action} {mode_from or '-'} → {mode_to} by {actor}"


def decision_text(gate: dict | None) -> str:
    """One line on the latest decision; its reason only when no candidate line below says it already."""
    if gate is None:
        return f"no gate decision yet: `{FLYWHEEL_COMMAND}` trains, evaluates and gates the task"
    text = f"{change_text(gate['action'], gate['mode_from'], gate['mode_to'], gate['actor'])}, {when(gate['ts'])}"
    if not gate["candidates"] or gate["candidates_ts"] != gate["ts"]:
        text += f": {gate['reason']}"
    if gate["candidates"] and gate["candidates_ts"] != gate["ts"]:
        text += f"; specialist kinds tried on {when(gate['candidates_ts'])}:"
    return text


VERDICT_STYLE = {"promote": "green", "hold": "yellow", "skip": "dim", "error": "red"}


def _candidate_markup(c: dict) -> str:
    from rich.markup import escape

    verdict = str(c.get("verdict") or "?")
    word = f"[{VERDICT_STYLE.get(verdict, 'bold')}]{escape(verdict)}[/]"
    reason = escape(str(c.get("reason") or ""))
    if not is_evaluated(c):
        return f"{word}: {reason}"
    measures = ", ".join(p for p in (quality_text(c), coverage_text(c)) if p)
    valid = valid_share(c)
    if valid is not None:
        measures += f", {valid:.0%} valid"
    return f"{escape(measures)} → {word}" + (f": {reason}" if verdict != "promote" and reason else "")


def _task_rows(task: dict) -> list[tuple[str, str]]:
    """(label, rich markup) rows that explain one task: decision, candidates, evaluation, shadow, fallbacks."""
    from rich.markup import escape

    gate = task.get("gate")
    rows = [("decision", escape(decision_text(gate)))]
    rows += [(escape(str(c.get("kind") or "?")), _candidate_markup(c)) for c in (gate or {}).get("candidates", [])]
    q = task["quality"]
    if q:
        rows.append(("evaluated", "\n".join(
            f"{escape(r['name'])}: {escape(str(q['metric']))} {r['value']:.3f} [dim]\\[{r['ci_low']:.3f}, "
            f"{r['ci_high']:.3f}][/], {r['valid_rate']:.0%} valid, {r['n']} calls" for r in q["rows"])))
    elif task["specialist"]:
        rows.append(("evaluated", escape(task["quality_note"] or "-")))
    s = task["shadow"]
    if s:
        rows.append(("shadow", f"agreement {s['agreement']:.1%} [dim]\\[{s['ci_low']:.1%}, {s['ci_high']:.1%}][/] "
                               f"of {s['n']} live comparisons"))
    reasons = task.get("fallback_reasons") or {}
    if reasons:
        rows.append(("fallbacks", escape(counts(reasons))))
    return rows


def render_why(tasks: list[dict], console) -> None:
    """For every task, its mode and kind, then a line per decision, candidate and live signal; long text wraps
    under its own column, so nothing is cut at any terminal width."""
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    console.print("\n[bold]why each task is (not) served[/]", end="")
    for t in tasks:
        kind = f" · {t['kind']}" if t.get("kind") else ""
        console.print(f"\n[bold]{escape(t['task_id'])}[/]  {escape(t['mode'] + kind)}")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, min_width=10)
        grid.add_column(overflow="fold")
        for label, text in _task_rows(t):
            grid.add_row(label, text)
        console.print(Padding(grid, (0, 0, 0, 2)))


def _quality_html(c: dict) -> str:
    """The quality's CI strip, value and interval, and the number of held-out calls it was measured on."""
    if c.get("quality") is None:
        return "-"
    ci = c.get("quality_ci") or []
    on = f" on {c['n']} calls" if c.get("n") is not None else ""
    if len(ci) != 2:
        return f"<b>{c['quality']:.3f}</b><span class=sub>{on}</span>"
    return (f"<div class=q>{interval(c['quality'], ci[0], ci[1], width=100)}<span><b>{c['quality']:.3f}</b> "
            f"<span class=sub>[{ci[0]:.3f}, {ci[1]:.3f}]{on}</span></span></div>")


def candidates_html(tasks: list[dict]) -> str:
    """A table of every task's latest decision and candidate ladder: kind, metric, quality with its 95% CI,
    share answered at the threshold, valid outputs, saving per 1,000 calls, verdict and reason."""
    esc = html.escape
    verdict_class = {"promote": "hi", "hold": "mid", "error": "lo", "skip": "sub"}
    out = ["<table><tr><th>kind</th><th>metric</th><th>quality (95% CI)</th><th>answers itself</th>"
           "<th class=num>valid</th><th class=num>saving / 1,000 calls</th><th>verdict</th><th>reason</th></tr>"]
    for t in tasks:
        gate = t.get("gate")
        kind = f" · {t['kind']}" if t.get("kind") else ""
        out.append(f"<tr class=gate><td colspan=8><b>{esc(t['task_id'])}</b> <span class=sub>{esc(t['mode'] + kind)}"
                   f"</span>: {esc(decision_text(gate))}</td></tr>")
        for c in (gate or {}).get("candidates", []):
            verdict = str(c.get("verdict") or "?")
            cells = f"<td class=sub colspan=5>{'build failed' if verdict == 'error' else 'not built'}</td>"
            if is_evaluated(c):
                valid, all_valid = valid_share(c), c.get("valid_rate")
                cells = (f"<td>{esc(str(c.get('metric') or '-'))}</td><td>{_quality_html(c)}</td>"
                         f"<td>{esc(coverage_text(c).removeprefix('answers ') or '-')}</td>"
                         f"<td class=num>{'-' if valid is None else f'{valid:.0%}'}"
                         f"{'' if all_valid is None else f' <span class=sub>({all_valid:.0%} of all)</span>'}</td>"
                         f"<td class=num>{esc(saving_text(c))}<br>"
                         f"<span class=sub>p50 {esc(ms(c.get('latency_p50_ms')))}</span></td>")
            out.append(f"<tr class=candidate><td><b>{esc(str(c.get('kind') or '?'))}</b></td>{cells}"
                       f"<td class={verdict_class.get(verdict, 'sub')}><b>{esc(verdict)}</b></td>"
                       f"<td>{esc(str(c.get('reason') or ''))}</td></tr>")
    out.append("</table>")
    return "".join(out)
