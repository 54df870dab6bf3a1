"""The base model a specialist starts from: found in the catalog, converted once, loaded for training.

A catalog name ("smollm2-135m"), a `.gguf` file or a transformers folder is accepted. A GGUF
is dequantised once by `protege.models.convert.gguf_to_transformers` into
`$PROTEGE_HOME/models/hf/<name>` and loaded from there afterwards (seconds instead of a
minute). The reference stored in a specialist's folder names the catalog entry, the original
repository, the file and its size, so the adapter can be matched with its base later.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protege.models.catalog import ModelSpec, default_catalog, local_model_spec
from protege.models.errors import require
from protege.models.prompting import CHATML, TEMPLATES
from protege.specialist.format import PromptFormat, end_of_turn_marker
from protege.store.base import protege_home

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    model: Any
    tokenizer: Any
    folder: Path
    """The transformers folder the weights were loaded from (the GGUF exporter reads its config)."""
    reference: dict
    template: str

    def prompt_format(self, output_kind: str = "text", pruning: Any = None) -> PromptFormat:
        bos, eos = self.tokenizer.bos_token or "", self.tokenizer.eos_token or ""
        return PromptFormat(template=self.template, bos_token=bos, eos_token=eos,
                            end_of_turn=end_of_turn_marker(self.template, bos, eos), output_kind=output_kind,
                            pruning=pruning)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for value in (tok.pad_token_id, tok.eos_token_id, 0):
            if value is not None:
                return int(value)
        return 0


def resolve_spec(model: str) -> ModelSpec:
    catalog = default_catalog()
    if model in catalog:
        return catalog.get(model)
    return local_model_spec(Path(model).stem, Path(model))


def transformers_folder(spec: ModelSpec, cache_root: Path | None = None) -> Path:
    """The transformers folder of a model, converting a GGUF file into the cache the first time."""
    path = spec.locate()
    if path.is_dir():
        return path
    from protege.models.convert import SOURCE_FILE, gguf_to_transformers

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:8]
    folder = (cache_root or protege_home() / "models" / "hf") / f"{spec.name}-{key}"
    if (folder / SOURCE_FILE).is_file() and (folder / "config.json").is_file():
        return folder
    log.info("converting %s to a transformers folder in %s (once)", path, folder)
    return gguf_to_transformers(path, folder)


def reference_of(spec: ModelSpec, folder: Path) -> dict:
    path = spec.locate()
    return {
        "name": spec.name, "hf_repo": spec.hf_repo, "source": spec.source, "license": spec.license,
        "params": spec.params, "file": str(path), "file_size": spec.file_size(), "quantization": spec.quantization,
        "transformers_folder": str(folder),
    }


def load_base(model: str, *, dtype: str = "float32", cache_root: Path | None = None) -> BaseModel:
    """Load a base model and its tokenizer for training or evaluation (torch is imported here)."""
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    require("peft", "train")
    spec = resolve_spec(model)
    folder = transformers_folder(spec, cache_root)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    net = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, dtype))
    template = getattr(tokenizer, "chat_template", None) or TEMPLATES.get(spec.chat_template) or CHATML
    return BaseModel(net, tokenizer, folder, reference_of(spec, folder), template)


def folder_config(folder: Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())
