"""A transformers runtime that reads prompts the way a specialist was trained to.

`SpecialistRuntime` is `protege.models.hf.TransformersRuntime` (same decode loop, same
llguidance constraint, same parsing) with one change: the prompt of a request answered
through an adapter is rendered by that adapter's `PromptFormat` (pruned prompt, same
template), while the base model (no adapter) keeps the runtime's full prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protege.train.format import PromptFormat


def specialist_runtime(model: Any, tokenizer: Any, **options: Any):
    """A `SpecialistRuntime` over an in-memory model (torch and transformers are imported here)."""
    from protege.models.hf import TransformersRuntime

    class SpecialistRuntime(TransformersRuntime):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.formats: dict[str, PromptFormat] = {}
            self._format: PromptFormat | None = None

        def add_specialist(self, name: str, adapter_dir: str | Path, fmt: PromptFormat) -> None:
            self.load_adapter(name, adapter_dir)
            self.formats[name] = fmt

        def render(self, request: dict) -> str:
            if self._format is not None:
                return self._format.render(request)
            return super().render(request)

        def complete(self, request: dict, adapter: str | None = None) -> dict:
            self._format = self.formats.get(adapter) if adapter else None
            try:
                return super().complete(request, adapter=adapter)
            finally:
                self._format = None

    return SpecialistRuntime(model, tokenizer, **options)
