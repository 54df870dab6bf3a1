"""The main job end to end at a reduced size: traces → gateway → flywheel (train, evaluate, gate) → routed live
traffic → savings report."""

from __future__ import annotations

import json

import pytest
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


def demo_on_own_traces(tmp_path, monkeypatch, shadow_calls: int):
    """`protege demo --traces` on 300 calls of two tasks (two thirds triage, one third FAQ): (home, result)."""
    import random

    from tests.test_kinds import FAQ, faq_pair, triage_pair

    monkeypatch.delenv("PROTEGE_HOME", raising=False)
    rng = random.Random(3)
    pairs = [triage_pair(rng, i) if i % 3 else faq_pair(rng.choice(list(FAQ)), i) for i in range(300)]
    traces = tmp_path / "my-calls.jsonl"
    traces.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    home = tmp_path / "demo"
    out = CliRunner().invoke(app, ["demo", "--home", str(home), "--traces", str(traces), "--min-examples", "10",
                                   "--shadow-calls", str(shadow_calls), "--embedder", "hashing",
                                   "--lora-budget-s", "0", "--json"])
    assert out.exit_code == 0, out.output
    return home, out


def test_demo_on_your_own_traces_finds_tasks_and_explains_the_gate(tmp_path, monkeypatch):
    """`protege demo --traces FILE`: a user's own calls (no task labels), the same loop, every verdict explained."""
    home, out = demo_on_own_traces(tmp_path, monkeypatch, shadow_calls=120)
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["live_calls"] == 90 and summary["served_by_specialists"] > 0
    # reviewed every 40 calls: the phase ends once both specialists have their evidence, before the live calls run out
    assert "      40 calls in shadow" in out.stderr or "      80 calls in shadow" in out.stderr
    assert "None" not in summary["tasks"]  # tasks are named by what protege found, not by missing labels
    with open_store(home / "protege.db") as store:
        gated = [d for d in store.decisions() if d.actor == "gate"]
    assert gated and all(d.evidence.get("candidates") for d in gated)  # every verdict says which kinds were tried
    assert "why each task is (not) served" in out.stderr


def test_a_specialist_short_of_evidence_after_the_shadow_phase_is_reviewed_again_later(tmp_path, monkeypatch):
    """20 shadow calls give the FAQ's reuse specialist (a third of the calls) fewer than the 10 comparisons it
    needs: it keeps answering in shadow during the rest of the live calls, and a later review puts it on."""
    home, out = demo_on_own_traces(tmp_path, monkeypatch, shadow_calls=20)
    assert "      20 calls in shadow" in out.stderr and "still in shadow, reviewed every 20 calls" in out.stderr
    assert "shadow →" in out.stderr.split("20 calls in shadow")[1]  # a review after the shadow phase decided
    with open_store(home / "protege.db") as store:
        assert "shadow" not in {r.mode for r in store.routes().values()}
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["live_calls"] == 90 and summary["served_by_specialists"] > 0


def test_demo_refuses_traces_it_cannot_use(tmp_path):
    from protege.demo import load_traces

    for content, expected in [(None, "No traces file"), (b"not json\n", "Cannot read"),
                              (b'{"request": {"model": "m"}}\n' * 200, "0 usable calls")]:
        path = tmp_path / "t.jsonl"
        if content is not None:
            path.write_bytes(content)
        try:
            load_traces(path if content is not None else tmp_path / "missing.jsonl")
        except RuntimeError as e:
            assert expected in str(e) and '{"request"' in str(e)  # names the problem and the expected format
        else:
            raise AssertionError(f"{expected!r}: no error")
    fake_gz = tmp_path / "t.jsonl.gz"
    fake_gz.write_bytes(b"plain text, not gzip")
    try:
        load_traces(fake_gz)
    except RuntimeError as e:
        assert "Cannot read" in str(e)
    else:
        raise AssertionError("a fake .gz was accepted")


def test_an_unknown_specialist_kind_is_refused_before_any_work(tmp_path):
    """A misspelt or path-like --kind would make the pass build nothing: refused with the known kinds, at once."""
    from protege.config import Settings
    from protege.demo import DemoOptions, run_demo
    from protege.flywheel import FlywheelOptions, run_pass
    from protege.store import open_store

    for bad in ("../../etc/passwd", "LoRA", ""):
        with pytest.raises(RuntimeError, match="unknown specialist kind.*known: reuse, classifier, incontext, lora"):
            run_demo(tmp_path / "demo", DemoOptions(kinds=(bad,)))
        assert not (tmp_path / "demo").exists()
        with open_store(tmp_path / "p.db") as store, pytest.raises(ValueError, match="unknown specialist kind"):
            run_pass(store, Settings(), FlywheelOptions(kinds=[bad]))
