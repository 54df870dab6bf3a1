"""Training on CPU with a 2-layer random Llama: the folder, resumes, the layer-split forward, the prompt format."""

from __future__ import annotations

import json

import pytest

from protege.specialist.examples import as_examples, data_hash
from protege.specialist.format import PromptFormat, learn_pruning_rule, prune_request, target_text

from .train_support import build_tiny_llama, tool_rows, triage_rows

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def test_tool_call_targets_are_what_the_runtime_parses():
    from protege.models.constrain import plan_output

    row = tool_rows(1)[0]
    ex = as_examples([row])[0]
    text = target_text(ex.answer, "tool_call")
    assert text.startswith("<tool_call>{\"name\": \"get_weather\", \"arguments\": {")
    _, calls = plan_output(ex.request).parse(text, "stop")
    assert json.loads(calls[0]["function"]["arguments"]) == json.loads(ex.answer["tool_calls"][0]["function"]["arguments"])


def test_json_targets_use_the_grammar_separators():
    assert target_text({"content": '{"a":1,"b":[1,2]}'}, "json") == '{"a": 1, "b": [1, 2]}'


def test_pruning_drops_shared_text_and_keeps_what_varies():
    rows = triage_rows(20)
    for i, row in enumerate(rows):  # one sentence that varies per call must survive
        row["request"]["messages"][0]["content"] += f" Today is day {i}."
    rule = learn_pruning_rule([r["request"] for r in rows])
    pruned, _, _ = prune_request(rows[3]["request"], rule)
    assert pruned["messages"][0]["content"] == "Today is day 3."
    fmt = PromptFormat(pruning=rule)
    assert "Classify the ticket" not in fmt.render(rows[3]["request"])
    assert "Classify the ticket" in PromptFormat().render(rows[3]["request"])
    tools = tool_rows(5)
    tool_rule = learn_pruning_rule([r["request"] for r in tools])
    assert tool_rule.covers(tools[0]["request"])
    assert "get_weather" not in PromptFormat(pruning=tool_rule).render(tools[0]["request"])
    other = {**tools[0]["request"], "tools": [{"type": "function", "function": {"name": "other"}}]}
    assert not tool_rule.covers(other)
    assert "other" in PromptFormat(pruning=tool_rule).render(other)  # unknown tools are still described


def test_layer_split_forward_matches_the_full_model(tiny):
    """The cached lower layers + upper layers + target-only logits give the model's own loss."""
    from protege.specialist.base import load_base
    from protege.train.data import tokenize_examples
    from protege.train.trainer import LoraTrainer, TrainConfig

    base = load_base(str(tiny))
    exs = as_examples(triage_rows(12))
    fmt = base.prompt_format("label")
    items = tokenize_examples(exs, base.tokenizer, fmt, 256)
    ids = torch.tensor([items[0].ids])
    labels = ids.clone()
    labels[0, : items[0].n_prompt] = -100
    with torch.no_grad():
        expected = base.model(input_ids=ids, labels=labels).loss.item()
    trainer = LoraTrainer(base.model, items, items[:2], TrainConfig(layers=1, epochs=1), pad_id=base.pad_id)
    trainer.build_cache()
    assert trainer.first == 1 and trainer._cache is not None
    with torch.no_grad():
        loss, n = trainer.batch_loss("train", items, [0])
    assert n == items[0].n_target
    assert loss.item() / n == pytest.approx(expected, rel=1e-4)


def test_train_task_writes_every_promised_file(tiny, tmp_path):
    from protege.specialist.artifact import load_specialist
    from protege.train.commands import train_task
    from protege.train.trainer import TrainConfig

    events = []
    outcome = train_task("triage", model=str(tiny), records=triage_rows(48), out=tmp_path / "spec",
                         config=TrainConfig(epochs=2, layers=1, batch_size=8), eval_limit=6, few_shot=True,
                         on_progress=events.append)
    folder = outcome.folder
    for name in ("specialist.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "adapter.gguf", "eval.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "checkpoint").exists()
    spec = load_specialist(folder)
    m = spec.manifest
    assert m["task"] == "triage" and m["output_kind"] == "label"
    assert m["data_hash"].startswith("sha256:")
    assert m["base_model"]["transformers_folder"] == str(tiny)
    assert m["hyperparameters"]["layers"] == 1 and m["training"]["steps"] == outcome.result.steps
    assert m["prompt_format"]["end_of_turn"] == "<|im_end|>" and m["prompt_format"]["pruning"]["static_sentences"]
    assert len(m["splits"]["test_ids"]) == m["splits"]["test"] > 0
    assert "eval.json" in m["files"] and "adapter.gguf" in m["files"]
    report = spec.eval_report()
    assert [r["name"] for r in report["rows"]] == ["base zero-shot", "base few-shot (3 similar calls)", "specialist",
                                                   "llm (reference)"]
    assert report["rows"][3]["headline"] == 1.0 and report["rows"][0]["n"] == 6
    assert any(e.phase == "done" for e in events) and any(e.tokens_per_s for e in events if e.phase == "train")

    from protege.evaluate.commands import eval_task

    again = eval_task("triage", specialist=folder, records=triage_rows(48), limit=3)
    assert again.n_examples == 3 and {r.name for r in again.rows} >= {"specialist", "base zero-shot"}
    with pytest.raises(ValueError, match="--data"):
        eval_task("triage", specialist=folder, records=triage_rows(48)[:0] + tool_rows(4))


def _run(tiny, ckpt, steps_before_interrupt=None):
    from protege.specialist.base import load_base
    from protege.train.data import tokenize_examples
    from protege.train.trainer import LoraTrainer, TrainConfig

    base = load_base(str(tiny))
    exs = as_examples(triage_rows(40))
    fmt = base.prompt_format("label")
    items = tokenize_examples(exs, base.tokenizer, fmt, 256)

    def interrupt(p):
        if steps_before_interrupt is not None and p.phase == "train" and p.step == steps_before_interrupt:
            raise KeyboardInterrupt

    cfg = TrainConfig(epochs=3, layers=1, batch_size=8, checkpoint_every=4, lora_dropout=0.1, eval_every=3)
    trainer = LoraTrainer(base.model, items[:32], items[32:], cfg, pad_id=base.pad_id, checkpoint_dir=ckpt,
                          on_progress=interrupt)
    result = trainer.run()
    return result, trainer.trainable_state()


def test_interrupted_run_resumes_to_the_same_weights(tiny, tmp_path):
    straight, weights = _run(tiny, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "b", steps_before_interrupt=7)
    assert (tmp_path / "b" / "state.pt").is_file()
    resumed, resumed_weights = _run(tiny, tmp_path / "b")
    assert resumed.steps == straight.steps
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for name, value in weights.items():
        torch.testing.assert_close(resumed_weights[name], value)


def test_same_seed_same_data_hash_and_weights(tiny, tmp_path):
    exs = as_examples(triage_rows(10))
    assert data_hash(exs) == data_hash(as_examples(triage_rows(10)))
    assert data_hash(exs) != data_hash(exs[1:])
    _, w1 = _run(tiny, None)
    _, w2 = _run(tiny, None)
    for name in w1:
        assert torch.equal(w1[name], w2[name])


def test_held_out_calls_can_come_from_the_curation_split(tiny, tmp_path):
    from protege.curate.splits import split_by_task
    from protege.records import CallRecord
    from protege.train.commands import train_task
    from protege.train.trainer import TrainConfig

    records = [CallRecord(id=r["id"], ts=float(i), request=r["request"], response=r["response"], task_id="triage")
               for i, r in enumerate(triage_rows(30))]
    split = split_by_task(records, test_share=0.2)["triage"]
    outcome = train_task("triage", model=str(tiny), records=split.train, test_records=split.test,
                         out=tmp_path / "spec", config=TrainConfig(epochs=1, layers=1), eval_limit=None,
                         export_gguf=False)
    manifest = json.loads((outcome.folder / "specialist.json").read_text())
    assert sorted(manifest["splits"]["test_ids"]) == sorted(r.id for r in split.test)
    assert outcome.report.n_examples == len(split.test)
    assert not (outcome.folder / "adapter.gguf").exists() and "adapter.gguf" not in manifest["files"]


def test_a_time_budget_shrinks_the_plan_and_still_ends_on_a_validation(tiny):
    """`max_train_s`: the run stops when its budget is spent, not after the planned epochs, with its best weights."""
    import time

    from protege.specialist.base import load_base
    from protege.train.data import tokenize_examples
    from protege.train.trainer import LoraTrainer, TrainConfig

    base = load_base(str(tiny))
    items = tokenize_examples(as_examples(triage_rows(40)), base.tokenizer, base.prompt_format("label"), 256)
    slow = lambda p: time.sleep(0.2) if p.phase == "train" else None  # noqa: E731 - steps of at least 0.2 s
    cfg = TrainConfig(epochs=20, layers=1, batch_size=8, max_train_s=1.0)
    trainer = LoraTrainer(base.model, items[:32], items[32:], cfg, pad_id=base.pad_id, on_progress=slow)
    planned = 20 * len(trainer.batches)
    result = trainer.run()
    assert 1 <= result.steps <= 6 < planned
    assert trainer.total_steps == result.steps and result.best_val_loss is not None
