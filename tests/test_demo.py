"""The main job end to end at a reduced size: traces → gateway → flywheel (train, evaluate, gate) → routed live
traffic → savings report."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from protege.cli import app
from protege.store import open_store


def test_demo_runs_the_whole_loop(tmp_path, monkeypatch):
    monkeypatch.delenv("PROTEGE_HOME", raising=False)
    home = tmp_path / "demo"
    out = CliRunner().invoke(app, ["demo", "--home", str(home), "--calls", "500", "--max-tasks", "1",
                                   "--max-train-calls", "24", "--max-steps", "3", "--eval-calls", "10",
                                   "--min-examples", "10", "--shadow-calls", "30", "--embedder", "hashing",
                                   "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["live_calls"] == 150 and summary["report"]["calls"] == 150 and summary["report"]["errors"] == 0
    assert summary["quality_vs_llm"] > 0 and (home / "report.html").is_file()
    for step in ("[1/6]", "[2/6]", "350/350 answered", "[3/6]", "[4/6]", "[5/6]", "[6/6]"):
        assert step in out.stderr
    with open_store(home / "protege.db") as store:
        assert store.stats()["total"]["calls"] == 500
        [decision] = [d for d in store.decisions() if d.actor == "gate"]  # one task climbed the ladder
        assert decision.action in ("promote", "hold")
        built = [c for c in decision.evidence["candidates"] if c["verdict"] in ("promote", "hold")]
        assert built and all(c["n"] >= 10 for c in built)  # LoRA on its 10 held-out calls, cheaper kinds on theirs
        assert all((home / "specialists" / decision.task_id / f"v1-{c['kind']}" / "calibration.json").is_file()
                   for c in built)
    assert list((home / "spool").glob("*.jsonl")) == []  # flushed at shutdown
