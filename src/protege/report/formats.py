"""How the savings report writes money, shares, durations and times, in the terminal and in HTML alike."""

from __future__ import annotations

from datetime import datetime


def usd(v: float | None) -> str:
    """Dollars: cents above $10, four decimals below (a call costs fractions of a cent); "unknown" for None."""
    if v is None:
        return "unknown"
    sign = "-" if v < 0 else ""
    return f"{sign}${abs(v):,.2f}" if abs(v) >= 10 else f"{sign}${abs(v):,.4f}"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def counts(by_name: dict[str, int]) -> str:
    """'no_match 12, low_confidence 3': the most frequent first."""
    return ", ".join(f"{k} {v}" for k, v in sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0])))


def when(ts: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ts).strftime(fmt)
