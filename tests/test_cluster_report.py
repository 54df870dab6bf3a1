"""Profiles, the HTML report and the `protege analyze` / `protege curate` commands on a real store."""

from __future__ import annotations

import json
import re

import orjson
from typer.testing import CliRunner

from tests.cluster_support import synthetic_log
from protege.cli import app
from protege.cluster.analysis import analyze_calls
from protege.report.analysis import render_html
from protege.store import open_store


def test_profiles_and_self_contained_html(tmp_path):
    records = synthetic_log()
    for r in records:  # a person's name in the inputs: the report's examples must be scrubbed
        r.request["messages"][-1]["content"] += " Signed, Maria Gonzalez"
    analysis = analyze_calls(records, catalog_path=tmp_path / "tasks.json", embedder="hashing")
    data = analysis.to_dict()
    by_kind = {t["output_kind"]: t for t in data["tasks"]}
    assert set(by_kind) == {"label", "json", "tool", "text"}
    assert by_kind["label"]["output_detail"]["labels"].keys() <= {"positive", "negative", "neutral"}
    assert by_kind["json"]["output_detail"]["schema"]["required"] == ["product", "qty"]
    assert by_kind["tool"]["output_detail"]["tools"] == {"get_weather": 40}
    assert by_kind["label"]["slm_fit"] > by_kind["text"]["slm_fit"]
    assert all(t["spend_usd"] > 0 and t["evidence"] for t in data["tasks"])
    page = render_html(data)
    assert "Maria Gonzalez" not in page and "&lt;PERSON_1&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing loaded from outside
    assert page.count("<svg") == 3 and all(t["task_id"] in page for t in data["tasks"])


def test_analyze_and_curate_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTEGE_HOME", str(tmp_path / "home"))
    db = tmp_path / "home" / "protege.db"
    db.parent.mkdir()
    records = synthetic_log()
    with open_store(db) as store:
        store.add_calls(records)
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", "--embedder", "hashing", "--json", "--html", str(tmp_path / "r.html"),
                              "--assignments", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["stats"]["tasks"] == 4 and data["stats"]["unclustered"] == 20
    lines = [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(lines) == len(records) and sum(x["task_id"] is None for x in lines) == 20
    assert (tmp_path / "home" / "tasks.json").exists() and (tmp_path / "r.html").exists()
    with open_store(db) as store:
        stored = {r.id: r.task_id for r in store.iter_calls()}
    assert stored == {x["call_id"]: x["task_id"] for x in lines}

    res = runner.invoke(app, ["curate", "--out", str(tmp_path / "cur"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert len(report["splits"]) == 4
    in_splits = sum(s["train"] + s["test"] for s in report["splits"].values())
    assert 0 < in_splits <= report["filters"]["kept"]  # calls without a task are kept out of the datasets
    assert set(report["splits"]) == {x["task_id"] for x in lines if x["task_id"]}
    assert (tmp_path / "cur" / "report.json").exists()
