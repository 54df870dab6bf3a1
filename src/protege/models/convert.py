"""Model conversion between the serving format (GGUF, llama.cpp) and the training format (transformers + PEFT).

- `gguf_to_transformers`: a GGUF model dequantised into a trainable transformers model saved as
  safetensors. transformers marks GGUF-loaded models as quantised and then refuses to save or
  train them; the weights are plain floats after dequantisation, so the flags are cleared.
- `export_lora_gguf`: a PEFT LoRA adapter written as a GGUF LoRA file that llama.cpp loads next
  to the base model (tensor names mapped with `gguf`'s name map; for the llama architecture the
  rows of q/k `lora_B` are permuted the way llama.cpp's converter permutes q/k weights for RoPE).

Needs the `train` extra (torch, transformers, peft, safetensors, gguf).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from protege.models.errors import InvalidRequestError, ModelFileError, require

log = logging.getLogger(__name__)

SOURCE_FILE = "protege_source.json"

# transformers model_type -> (gguf architecture, whether q/k rows are permuted for RoPE)
ARCHITECTURES = {
    "llama": ("LLAMA", True),
    "mistral": ("LLAMA", True),
    "qwen2": ("QWEN2", False),
    "gemma3_text": ("GEMMA3", False),
    "gemma3": ("GEMMA3", False),
}


def clear_quantization_flags(model: Any) -> Any:
    """Make a GGUF-loaded (already dequantised) transformers model savable and trainable."""
    for attr in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, attr, False):
            setattr(model, attr, False)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    return model


def load_gguf_as_transformers(gguf_path: str | Path, dtype: str = "float32"):
    """(model, tokenizer) dequantised from a GGUF file, with quantisation flags cleared."""
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    require("gguf", "train")
    path = Path(gguf_path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file {path} does not exist", path=str(path))
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                   dtype=getattr(torch, dtype))
    except (ValueError, OSError, KeyError) as exc:
        raise ModelFileError(f"transformers could not load {path} ({exc}); is it a GGUF of a supported "
                             "architecture (llama, qwen2, gemma3...)?", path=str(path)) from exc
    return clear_quantization_flags(model), tokenizer


def gguf_to_transformers(gguf_path: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Dequantise a GGUF model into a transformers folder (safetensors + tokenizer); returns the folder."""
    model, tokenizer = load_gguf_as_transformers(gguf_path, dtype)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / SOURCE_FILE).write_text(json.dumps({"converted_from": str(Path(gguf_path).resolve()), "dtype": dtype}))
    log.info("converted %s into %s", gguf_path, out)
    return out


def _permute_rows(weights, n_head: int, n_head_kv: int | None):
    """llama.cpp's q/k row permutation (HF rotary layout -> GGUF interleaved layout)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def export_lora_gguf(adapter_dir: str | Path, out_path: str | Path, base: str | Path | dict | None = None) -> Path:
    """Write a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) as a GGUF LoRA file.

    `base` is the base model's transformers folder or its config dict (default: the adapter's
    `base_model_name_or_path`, which must then be a local folder).
    """
    gguf = require("gguf", "train")
    safetensors_numpy = require("safetensors.numpy", "train", "safetensors")
    adapter_dir = Path(adapter_dir)
    cfg_path, weights_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    for needed in (cfg_path, weights_path):
        if not needed.is_file():
            raise ModelFileError(f"{needed} is missing: {adapter_dir} is not a PEFT LoRA adapter folder "
                                 "(save it with model.save_pretrained(folder))", path=str(needed))
    lora_cfg = json.loads(cfg_path.read_text())
    if lora_cfg.get("peft_type", "LORA") != "LORA":
        raise InvalidRequestError(f"{adapter_dir} is a {lora_cfg.get('peft_type')} adapter; only LoRA exports to GGUF")
    base_cfg = _base_config(base if base is not None else lora_cfg.get("base_model_name_or_path"))
    model_type = base_cfg.get("model_type")
    if model_type not in ARCHITECTURES:
        raise InvalidRequestError(f"exporting LoRA adapters of {model_type!r} models is not supported; "
                                  f"supported: {', '.join(sorted(ARCHITECTURES))}")
    arch_name, permute_qk = ARCHITECTURES[model_type]
    arch = gguf.MODEL_ARCH[arch_name]
    n_head = base_cfg["num_attention_heads"]
    n_head_kv = base_cfg.get("num_key_value_heads", n_head)
    names = gguf.get_tensor_name_map(arch, base_cfg["num_hidden_layers"])
    rank = lora_cfg["r"]
    alpha = float(lora_cfg.get("lora_alpha", rank))
    if lora_cfg.get("use_rslora"):
        alpha = alpha * rank ** 0.5  # llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r)

    pairs: dict[str, dict[str, Any]] = {}
    for key, value in safetensors_numpy.load_file(str(weights_path)).items():
        hf = key.removeprefix("base_model.model.")
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if hf.endswith(marker):
                pairs.setdefault(hf.removesuffix(marker) + ".weight", {})[part] = value.astype("float32")
                break
        else:
            raise InvalidRequestError(f"{weights_path}: tensor {key!r} is not a LoRA A/B matrix (embedding or "
                                      "full-weight adapters cannot be exported to GGUF LoRA)")
    if not pairs:
        raise InvalidRequestError(f"{weights_path} holds no LoRA tensors")

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_string("protege.adapter.source", str(adapter_dir.resolve()))
    for hf_name, ab in sorted(pairs.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise InvalidRequestError(f"{weights_path}: {hf_name} has only {', '.join(ab)}")
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise InvalidRequestError(f"cannot map {hf_name!r} to a llama.cpp tensor name")
        lora_a, lora_b = ab["lora_A"], ab["lora_B"]
        if permute_qk and ".attn_q." in gguf_name:
            lora_b = _permute_rows(lora_b, n_head, n_head)
        elif permute_qk and ".attn_k." in gguf_name:
            lora_b = _permute_rows(lora_b, n_head, n_head_kv)
        writer.add_tensor(gguf_name + ".lora_a", lora_a.copy())
        writer.add_tensor(gguf_name + ".lora_b", lora_b.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    log.info("exported %d LoRA matrices from %s to %s", 2 * len(pairs), adapter_dir, out)
    return out


def _base_config(base: str | Path | dict | None) -> dict:
    if isinstance(base, dict):
        return base
    if base is None:
        raise InvalidRequestError("pass base=<the base model's transformers folder> to export the adapter")
    cfg = Path(base) / "config.json"
    if not cfg.is_file():
        raise ModelFileError(f"{cfg} is missing: pass base=<the base model's transformers folder> "
                             "(e.g. made with protege.models.convert.gguf_to_transformers)", path=str(cfg))
    data = json.loads(cfg.read_text())
    return data.get("text_config", data) if data.get("model_type") == "gemma3" else data
