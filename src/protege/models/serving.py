"""`LocalModelPool`: the local models and specialists the gateway answers itself.

`pool.resolve("smollm2-135m")` returns the base model's runtime, `pool.resolve("smollm2-135m:invoice")`
the same base answering through the LoRA adapter `invoice`; anything the pool does not serve
resolves to None so the gateway forwards it upstream. Models load lazily on first use (one
instance per base model, shared by all its adapters) and loading is thread-safe.

Adapters are registered with `register_adapter(base, name, path)` or found on disk as
`<adapter_dir>/<base>/<name>.gguf` (a specialist's exported adapter). The adapter part of a requested
model is a name (`ADAPTER_NAME`), never a path: it is looked up only inside the adapter folder, and
errors never name a server path.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from protege.models.catalog import ModelCatalog, default_catalog
from protege.models.errors import InvalidRequestError, ModelNotFoundError
from protege.models.runtime import LocalRuntime, Runtime, build_runtime
from protege.store.base import protege_home

log = logging.getLogger(__name__)

ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""What an adapter name may be: letters, digits, '_', '-' and '.', starting with a letter or digit."""


class LocalModelPool:
    """Lazily loaded local runtimes by model name, with their LoRA adapters."""

    def __init__(self, catalog: ModelCatalog | None = None, adapter_dir: Path | None = None,
                 models: list[str] | None = None, runtime_options: dict[str, Any] | None = None,
                 llama_options: dict[str, Any] | None = None):
        """`models` limits which catalog entries are served (default: all local ones);
        `runtime_options` are passed to every runtime (e.g. n_ctx, n_threads), `llama_options` to the
        llama.cpp ones only (`[serving] parallel` and `max_queue`: `ServingConfig.runtime_options()`)."""
        self.catalog = catalog or default_catalog()
        self.adapter_dir = adapter_dir if adapter_dir is not None else protege_home() / "adapters"
        self.served = set(models) if models is not None else None
        self.runtime_options = runtime_options or {}
        self.llama_options = llama_options or {}
        self._runtimes: dict[str, Runtime] = {}
        self._adapters: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    # --- what is served -----------------------------------------------------------------------

    def serves(self, base: str) -> bool:
        if self.served is not None:
            return base in self.served
        return base in self.catalog

    def register_adapter(self, base: str, name: str, path: str | Path) -> None:
        """Serve `base:name` from a GGUF LoRA file; loaded at once if the base is already in memory."""
        if not self.serves(base):
            raise ModelNotFoundError(f"cannot add adapter {name!r}: {base!r} is not a local model of this pool")
        with self._lock:
            self._adapters[(base, name)] = Path(path)
            runtime = self._runtimes.get(base)
        if isinstance(runtime, LocalRuntime):
            runtime.load_adapter(name, path)  # type: ignore[attr-defined]

    def unregister_adapter(self, base: str, name: str) -> None:
        with self._lock:
            self._adapters.pop((base, name), None)
            runtime = self._runtimes.get(base)
        if isinstance(runtime, LocalRuntime) and name in runtime.adapter_names():
            runtime.unload_adapter(name)  # type: ignore[attr-defined]

    def _adapter_path(self, base: str, name: str) -> Path | None:
        if (base, name) in self._adapters:
            return self._adapters[(base, name)]
        for candidate in (self.adapter_dir / base / f"{name}.gguf", self.adapter_dir / base / name / "adapter.gguf"):
            if candidate.is_file():
                return candidate
        return None

    def model_ids(self) -> list[str]:
        """Model names for /v1/models: served base models and every known adapter as `base:adapter`."""
        bases = [n for n in self.catalog.names() if self.serves(n)]
        ids = list(bases)
        with self._lock:
            ids += [f"{b}:{a}" for (b, a) in self._adapters if b in bases]
        for base in bases:
            folder = self.adapter_dir / base
            if folder.is_dir():
                for f in sorted(folder.iterdir()):
                    name = f.stem if f.suffix == ".gguf" else f.name if (f / "adapter.gguf").is_file() else None
                    if name and f"{base}:{name}" not in ids:
                        ids.append(f"{base}:{name}")
        return ids

    # --- resolution ---------------------------------------------------------------------------

    def resolve(self, model_name: str) -> Runtime | None:
        """The runtime answering `model_name`, loading it on first use; None if it is not local.

        Raises `ModelNotFoundError` for `base:adapter` when the base is local but the adapter unknown,
        and `ModelFileError` when the weights are missing or corrupt.
        """
        if not isinstance(model_name, str) or not model_name:
            return None
        base, _, adapter = model_name.partition(":")
        if not self.serves(base):
            return None
        runtime = self._base_runtime(base)
        if not adapter:
            return runtime
        if not isinstance(runtime, LocalRuntime):
            return None
        if not ADAPTER_NAME.fullmatch(adapter):
            raise InvalidRequestError(f"The adapter in model {base}:<adapter> must be a name of letters, digits, '_', "
                                      "'-' and '.' (at most 128, starting with a letter or digit), not a path. "
                                      "GET /v1/models lists the served models.", param="model", code="invalid_model")
        if adapter not in runtime.adapter_names():
            path = self._adapter_path(base, adapter)
            if path is None:
                raise ModelNotFoundError(f"No adapter {adapter!r} is served for {base}. GET /v1/models lists the served "
                                         "models; an operator puts one at $PROTEGE_HOME/adapters/<base>/<name>.gguf.")
            runtime.load_adapter(adapter, path)  # type: ignore[attr-defined]
        return runtime.with_adapter(adapter)

    def _base_runtime(self, base: str) -> Runtime:
        with self._lock:
            runtime = self._runtimes.get(base)
            if runtime is not None:
                return runtime
            loading = self._loading.setdefault(base, threading.Lock())
        with loading:  # one thread loads a given model; others wait for it, other models load in parallel
            with self._lock:
                if base in self._runtimes:
                    return self._runtimes[base]
            log.info("loading local model %s", base)
            spec = self.catalog.get(base)
            options = self.runtime_options | (self.llama_options if spec.runtime == "llama.cpp" else {})
            runtime = build_runtime(spec, **options)
            with self._lock:
                self._runtimes[base] = runtime
                pending = [(a, p) for (b, a), p in self._adapters.items() if b == base]
            for name, path in pending:
                runtime.load_adapter(name, path)  # type: ignore[attr-defined]
            return runtime

    def queues(self) -> dict[str, dict]:
        """Each loaded model's decode slots and queue, for /health."""
        with self._lock:
            runtimes = dict(self._runtimes)
        return {name: r.queue.describe() for name, r in runtimes.items() if getattr(r, "queue", None) is not None}

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._runtimes)

    def close(self) -> None:
        with self._lock:
            runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            runtime.close()
