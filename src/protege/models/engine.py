"""`EnginePool`: every promoted specialist of one base model served by one vLLM server (multi-LoRA, GPU).

`[serving] backend = "vllm"` replaces the in-process llama.cpp pool with this one. The server runs
the base model with LoRA enabled and runtime adapter updates allowed::

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve <base> --enable-lora --max-loras 16 --max-lora-rank 64

Promotion registers a specialist's PEFT adapter folder (`POST /v1/load_lora_adapter` with
`lora_name`, `lora_path`), demotion unregisters it (`POST /v1/unload_lora_adapter`). A request
names the adapter as its `model`; structured output goes as `response_format` and the answer is
validated by `RemoteRuntime` whatever the server claims. The adapter path is read by the server,
so it must see the same folder (a shared volume).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from protege.models.catalog import ModelCatalog, default_catalog
from protege.models.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    require,
)
from protege.models.remote import RemoteRuntime
from protege.models.serving import ADAPTER_NAME

log = logging.getLogger(__name__)

ENGINE_HINT = ("start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora (with --max-lora-rank at least "
               "the adapter's rank), or fix [serving] engine_url in protege.toml")


class EnginePool:
    """The `LocalModelPool` interface over one OpenAI-compatible engine with a runtime LoRA API (vLLM)."""

    is_engine = True

    def __init__(self, base_url: str, base: str, remote_model: str | None = None, api_key: str | None = None,
                 catalog: ModelCatalog | None = None, timeout_s: float = 120.0, client: Any = None):
        httpx = require("httpx", "local")
        self.base_url, self.base = base_url.rstrip("/"), base
        self.catalog = catalog or default_catalog()
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self._httpx = httpx
        self.runtime = RemoteRuntime(self.base_url, remote_model or base, model_id=base, client=self.client)
        self._adapters: dict[str, Path] = {}
        self._lock = threading.Lock()

    def serves(self, base: str) -> bool:
        return base == self.base

    def register_adapter(self, base: str, name: str, path: str | Path) -> None:
        """Load the PEFT adapter folder `path` into the engine under `name` (replacing one of that name)."""
        if not self.serves(base):
            raise ModelNotFoundError(f"cannot add adapter {name!r}: the engine at {self.base_url} serves {self.base}, "
                                     f"not {base!r}")
        if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
            raise InvalidRequestError(f"adapter name {name!r} must be letters, digits, '_', '-' and '.'", param="model")
        with self._lock:
            if name in self._adapters:
                self._post("/unload_lora_adapter", {"lora_name": name}, name)
            self._post("/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, name)
            self._adapters[name] = Path(path)
        log.info("loaded LoRA adapter %s from %s into the engine at %s", name, path, self.base_url)

    def unregister_adapter(self, base: str, name: str) -> None:
        with self._lock:
            if self._adapters.pop(name, None) is not None:
                self._post("/unload_lora_adapter", {"lora_name": name}, name)

    def adapter_names(self) -> list[str]:
        with self._lock:
            return list(self._adapters)

    def _post(self, path: str, body: dict, name: str) -> None:
        try:
            resp = self.client.post(path, json=body)
        except self._httpx.HTTPError as exc:
            raise ModelUnavailableError(f"the serving engine at {self.base_url} is unreachable ({exc}); "
                                        f"{ENGINE_HINT}") from exc
        if resp.status_code == 200:
            return
        try:
            detail = resp.json()
            detail = (detail.get("error") or {}).get("message") or detail.get("message") or detail
        except ValueError:
            detail = resp.text[:300]
        if resp.status_code == 404 and path == "/unload_lora_adapter":
            raise ModelNotFoundError(f"the engine at {self.base_url} has no adapter {name!r} ({detail})")
        raise ModelUnavailableError(f"the engine at {self.base_url} refused {path} for adapter {name!r} "
                                    f"(HTTP {resp.status_code}: {detail}); {ENGINE_HINT}")

    def resolve(self, model_name: str) -> RemoteRuntime | None:
        """The engine's runtime for `base` or `base:adapter` (a loaded adapter only); None for other models."""
        if not isinstance(model_name, str):
            return None
        base, _, adapter = model_name.partition(":")
        if not self.serves(base):
            return None
        if not adapter:
            return self.runtime
        with self._lock:
            known = adapter in self._adapters
        if not known:
            raise ModelNotFoundError(f"No adapter {adapter!r} is served for {base}. GET /v1/models lists the served "
                                     "models.")
        return self.runtime.with_adapter(adapter)

    def model_ids(self) -> list[str]:
        return [self.base, *(f"{self.base}:{a}" for a in self.adapter_names())]

    def queues(self) -> dict:
        return {}  # the engine schedules its own batch

    def close(self) -> None:
        self.client.close()
