"""Inline SVG charts and the shared page style of protege's HTML reports.

Everything is drawn server-side as SVG markup, so a report is one self-contained file: no
JavaScript, no external CSS, nothing fetched from the network.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

SVG = '<svg viewBox="0 0 {w} {h}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg" class="{cls}">'

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2733;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2rem;font-size:1.2rem;border-bottom:1px solid #dde3ea;padding-bottom:.3rem}
.sub{color:#5b6b7c} .cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{background:#f4f7fa;border-radius:8px;padding:.8rem 1.1rem;min-width:150px} .card b{display:block;font-size:1.4rem}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1.5rem} table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e6ebf0;vertical-align:top} th{background:#f4f7fa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.fit{font-weight:700} .hi{color:#1a7f37} .mid{color:#9a6700} .lo{color:#cf222e}
details{background:#fafbfc;border:1px solid #e6ebf0;border-radius:8px;margin:.6rem 0;padding:.5rem .9rem}
summary{cursor:pointer;font-weight:600} pre{white-space:pre-wrap;background:#f4f7fa;padding:.6rem;border-radius:6px;font-size:.8rem}
.legend span{display:inline-block;margin-right:1.2rem;font-size:.85rem} .legend i{display:inline-block;width:14px;height:3px;margin-right:.35rem;vertical-align:middle}
.q{display:flex;align-items:center;gap:.5rem;white-space:nowrap} .q svg{flex:none} .path{word-break:break-all}
@media (max-width:800px){.grid{grid-template-columns:1fr}}
"""


def bars(items: list[tuple[str, float]], fmt: Callable[[float], str], width: int = 560, color: str = "#4f7cac") -> str:
    """A horizontal bar chart."""
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    row, label_w = 26, 230
    h = row * len(items) + 10
    out = [SVG.format(w=width, h=h, cls="bars")]
    for i, (label, v) in enumerate(items):
        y = 5 + i * row
        w = max(1.0, (width - label_w - 90) * v / top)
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="12">{html.escape(label[:34])}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" rx="3" fill="{color}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12">{html.escape(fmt(v))}</text>')
    out.append("</svg>")
    return "".join(out)


def _frame(x_labels: Sequence[str], top: float, fmt: Callable[[float], str], width: int, height: int,
           pad: tuple[int, int, int, int]) -> list[str]:
    """Horizontal grid lines with y labels (0..top) and up to 6 x labels under the plot area."""
    left, right, top_pad, bottom = pad
    out = []
    for i in range(5):
        v = top * i / 4
        y = height - bottom - (height - top_pad - bottom) * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6ebf0"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6b7c">'
                   f'{html.escape(fmt(v))}</text>')
    n = len(x_labels)
    step = max(1, -(-n // 6))
    for i in range(0, n, step):
        x = left + (width - left - right) * (i + 0.5) / n
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11" fill="#5b6b7c">'
                   f'{html.escape(x_labels[i])}</text>')
    return out


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 4, 6, 8 times a power of ten that is >= value: an axis top with round quarters."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 4, 6, 8, 10) if value <= m * power * (1 + 1e-9))


def lines(series: list[tuple[str, str, Sequence[float]]], x_labels: Sequence[str], fmt: Callable[[float], str],
          width: int = 1000, height: int = 280) -> str:
    """A line chart: `series` are (name, colour, values), one value per x label; a legend above, the last
    value of each line at its end."""
    pad = (70, 80, 12, 26)
    n = len(x_labels)
    values = [v for _, _, vs in series for v in vs]
    if not n or not values:
        return ""
    top = nice_ceiling(max(values))
    left, right, top_pad, bottom = pad
    out = ['<div class=legend>' + "".join(f'<span><i style="background:{c}"></i>{html.escape(name)}</span>'
                                          for name, c, _ in series) + "</div>",
           SVG.format(w=width, h=height, cls="lines"), *_frame(x_labels, top, fmt, width, height, pad)]
    for name, color, vs in series:
        pts = " ".join(f"{left + (width - left - right) * (i + 0.5) / n:.1f},"
                       f"{height - bottom - (height - top_pad - bottom) * v / top:.1f}" for i, v in enumerate(vs))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2.5" '
                   f'stroke-linejoin="round"><title>{html.escape(name)}: {html.escape(fmt(vs[-1]))}</title></polyline>')
        y = pts.rsplit(",", 1)[1]
        out.append(f'<text x="{width - right + 6}" y="{float(y) + 4:.1f}" font-size="12" fill="{color}" '
                   f'font-weight="600">{html.escape(fmt(vs[-1]))}</text>')
    out.append("</svg>")
    return "".join(out)


def columns(values: Sequence[float | None], x_labels: Sequence[str], fmt: Callable[[float], str], top: float = 1.0,
            width: int = 1000, height: int = 220, color: str = "#3c8d5a") -> str:
    """A column chart, one column per x label (None: no column); the y axis runs from 0 to `top`."""
    pad = (70, 16, 12, 26)
    n = len(x_labels)
    if not n:
        return ""
    left, right, top_pad, bottom = pad
    slot = (width - left - right) / n
    out = [SVG.format(w=width, h=height, cls="columns"), *_frame(x_labels, top, fmt, width, height, pad)]
    for i, v in enumerate(values):
        if v is None:
            continue
        h = max(1.0, (height - top_pad - bottom) * v / top)
        out.append(f'<rect x="{left + slot * i + slot * 0.12:.1f}" y="{height - bottom - h:.1f}" width="{slot * 0.76:.1f}" '
                   f'height="{h:.1f}" fill="{color}"><title>{html.escape(x_labels[i])}: {html.escape(fmt(v))}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def interval(value: float, low: float, high: float, width: int = 100, height: int = 16) -> str:
    """A value with its confidence interval on a 0..1 scale: a bar from low to high and a dot at the value."""
    x = lambda v: 4 + (width - 8) * min(1.0, max(0.0, v))
    return (SVG.format(w=width, h=height, cls="ci").replace('width="100%"', f'width="{width}"')
            + f'<line x1="4" x2="{width - 4}" y1="8" y2="8" stroke="#e6ebf0" stroke-width="2"/>'
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="8" y2="8" stroke="#4f7cac" stroke-width="5" stroke-linecap="round"/>'
            f'<circle cx="{x(value):.1f}" cy="8" r="4" fill="#1d2733"/></svg>')


def page(title: str, body: str) -> str:
    """A whole HTML document around `body`, with the shared style; it loads nothing and sends no referrer."""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><meta name=referrer content=no-referrer>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")
