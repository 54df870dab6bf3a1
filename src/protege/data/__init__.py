"""Data files bundled with protege: the demo agent traces (see scripts/make_demo_traces.py)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_TRACES = "demo_traces.jsonl.gz"


def demo_traces_path() -> Path:
    """Path of the bundled demo traces: gzipped JSON lines of {"request", "response", "metadata"}."""
    return Path(str(files(__name__).joinpath(DEMO_TRACES)))
