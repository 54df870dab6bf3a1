"""The main job end to end at a reduced size: traces -> replay upstream -> gateway -> store -> summary."""

from __future__ import annotations

from typer.testing import CliRunner

from protege.cli import app


def test_demo_replays_the_traces_through_the_gateway(tmp_path, monkeypatch):
    monkeypatch.delenv("PROTEGE_HOME", raising=False)
    out = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "demo"), "--calls", "300"])
    assert out.exit_code == 0, out.output
    assert "300/300 answered" in out.output
    assert "300 calls, 0 errors" in out.output
    for label in ("ticket_triage", "travel_tools", "order_extraction", "open_ended"):
        assert label in out.output
    assert (tmp_path / "demo" / "protege.db").exists()
    assert list((tmp_path / "demo" / "spool").glob("*.jsonl")) == []  # flushed at shutdown
