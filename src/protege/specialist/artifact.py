"""A specialist's folder: everything needed to serve, audit or retrain it, described by itself.

    <folder>/
      specialist.json          task id, base model reference, hyper-parameters, prompt format
                               (template, end-of-turn, pruning rule, tool-call form), data hash,
                               splits (held-out call ids), training summary, file list
      adapter/                 PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
      adapter.gguf             the same adapter as a GGUF LoRA for llama.cpp (when exportable)
      eval.json                evaluation report (base zero-shot, specialist, LLM reference...)

Reading a folder checks that the promised files are there and names what is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from protege.specialist.format import PromptFormat
from protege.store.base import protege_home

MANIFEST = "specialist.json"
ADAPTER_DIR = "adapter"
ADAPTER_GGUF = "adapter.gguf"
EVAL_REPORT = "eval.json"
FORMAT_VERSION = 1


def specialists_home() -> Path:
    return protege_home() / "specialists"


def default_folder(task: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task)
    return specialists_home() / safe


@dataclass
class Specialist:
    """A trained specialist, as read back from its folder."""

    folder: Path
    manifest: dict

    @property
    def task(self) -> str | None:
        return self.manifest.get("task")

    @property
    def prompt_format(self) -> PromptFormat:
        return PromptFormat.from_dict(self.manifest["prompt_format"])

    @property
    def adapter_dir(self) -> Path:
        return self.folder / ADAPTER_DIR

    @property
    def gguf_adapter(self) -> Path | None:
        path = self.folder / ADAPTER_GGUF
        return path if path.is_file() else None

    @property
    def base_model(self) -> str:
        ref = self.manifest["base_model"]
        return ref.get("name") if ref.get("source", "").startswith("pypi:") else ref.get("file") or ref["name"]

    def eval_report(self) -> dict | None:
        path = self.folder / EVAL_REPORT
        return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                   and "checkpoint" not in p.parts)
    data = {"format_version": FORMAT_VERSION, "created": time.time(), **manifest, "files": files}
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    tmp.replace(path)
    return path


def refresh_manifest(folder: Path, **changes) -> Path:
    """Rewrite a folder's manifest with `changes` applied and its file list brought up to date (after files
    such as eval.json were added)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    kept = {k: v for k, v in manifest.items() if k not in ("format_version", "created", "files")}
    return write_manifest(folder, kept | changes)


def load_specialist(folder_or_task: str | Path) -> Specialist:
    """A specialist from its folder (or from its task id, under $PROTEGE_HOME/specialists)."""
    folder = Path(folder_or_task)
    if not (folder / MANIFEST).is_file():
        folder = default_folder(str(folder_or_task))
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no specialist at {folder} (no {MANIFEST}); train one with: "
                                f"protege train {folder_or_task}")
    manifest = json.loads(manifest_path.read_text())
    missing = [f for f in manifest.get("files", []) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"specialist {folder} is incomplete, missing: {', '.join(missing)}; retrain it "
                                f"with: protege train {manifest.get('task', folder_or_task)}")
    return Specialist(folder, manifest)
