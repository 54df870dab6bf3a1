"""A transformers runtime that reads prompts the way a specialist was trained to.

`specialist_runtime` builds `protege.models.hf.TransformersRuntime` (same decode loop, same
llguidance constraint, same parsing); `add_specialist` attaches an adapter together with its
`PromptFormat`, so a request answered through that adapter is rendered by the format (pruned
prompt, same template) while the base model (no adapter) keeps the runtime's full prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protege.specialist.format import PromptFormat


def specialist_runtime(model: Any, tokenizer: Any, **options: Any):
    """A `TransformersRuntime` over an in-memory model with `add_specialist(name, adapter_dir, fmt)`."""
    from protege.models.hf import TransformersRuntime

    class SpecialistRuntime(TransformersRuntime):
        def add_specialist(self, name: str, adapter_dir: str | Path, fmt: PromptFormat) -> None:
            self.load_adapter(name, adapter_dir)
            self.set_prompt_format(name, fmt.render)

    return SpecialistRuntime(model, tokenizer, **options)
