"""`protege train` and `protege eval` wired end to end on the real SmolLM2 (few steps: plumbing, not quality)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from protege.cli import app

pytest.importorskip("peft", reason="needs protege[train]")


@pytest.mark.slow
def test_train_then_eval_from_the_cli(tmp_path):
    out = tmp_path / "spec"
    runner = CliRunner()
    from protege.data import demo_traces_path

    result = runner.invoke(app, ["train", "ticket_triage", "--data", str(demo_traces_path()), "--max-calls", "24",
                                 "--max-steps", "2", "--eval-limit", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ticket_triage: label" in result.output and "specialist" in result.output
    assert {"specialist.json", "adapter.gguf", "eval.json", "adapter"} <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "specialist.json").read_text())
    assert manifest["task"] == "ticket_triage"
    again = runner.invoke(app, ["eval", "ticket_triage", "--specialist", str(out), "--data", str(demo_traces_path()),
                                "--limit", "3", "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.output[again.output.index("{"):])
    assert [r["name"] for r in report["rows"]][-1].startswith("llm") and report["output_kind"] == "label"


def test_train_refuses_a_task_without_calls(tmp_path):
    from protege.data import demo_traces_path

    result = CliRunner().invoke(app, ["train", "no_such_task", "--data", str(demo_traces_path()), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "at least 4 are needed" in result.output
