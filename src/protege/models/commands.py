"""Plain functions behind `protege models list|show` (the CLI wraps them; they return data, not text)."""

from __future__ import annotations

from typing import Any

from protege.models.catalog import ModelCatalog, default_catalog


def list_models(catalog: ModelCatalog | None = None) -> list[dict[str, Any]]:
    """Every model in the catalog with what SLM selection compares: size, licence, footprint, origin."""
    catalog = catalog or default_catalog()
    rows = []
    for spec in catalog.specs():
        rows.append({
            "name": spec.name,
            "runtime": spec.runtime,
            "params": spec.params,
            "context_length": spec.context_length,
            "license": spec.license,
            "quantization": spec.quantization,
            "file_size": spec.file_size(),
            "memory_estimate": spec.memory_estimate(),
            "source": spec.source,
            # packaged models count as available when their files are installed (listing never assembles them)
            "available": spec.file_size() is not None if spec.locator is not None else spec.is_available(),
        })
    return rows


def show_model(name: str, catalog: ModelCatalog | None = None) -> dict[str, Any]:
    """Everything known about one model, including the metadata inside its GGUF file when it is local."""
    catalog = catalog or default_catalog()
    spec = catalog.get(name)
    info = spec.to_dict()
    if spec.runtime == "llama.cpp" and info["available"]:
        info["gguf"] = gguf_summary(str(spec.locate()))
    return info


def gguf_summary(path: str) -> dict[str, Any]:
    """Architecture, context length, parameter count and chat template read from a GGUF file (needs `gguf`)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return {"note": "install gguf (pip install 'protege[local]') to read the file's metadata"}
    reader = GGUFReader(path)

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        if f is None or not f.data:
            return None
        value = f.parts[f.data[0]]
        if value.dtype.kind == "u" and value.dtype.itemsize == 1:  # a string
            return bytes(value).decode("utf-8", errors="replace")
        return value.tolist()[0] if len(value) == 1 else value.tolist()

    arch = field("general.architecture")
    params = int(sum(int(t.n_elements) for t in reader.tensors))
    template = field("tokenizer.chat_template")
    return {
        "architecture": arch,
        "name": field("general.name"),
        "context_length": field(f"{arch}.context_length") if arch else None,
        "layers": field(f"{arch}.block_count") if arch else None,
        "embedding_length": field(f"{arch}.embedding_length") if arch else None,
        "vocab_size": len(reader.fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in reader.fields else None,
        "params": params,
        "tensors": len(reader.tensors),
        "license": field("general.license"),
        "has_chat_template": template is not None,
    }
