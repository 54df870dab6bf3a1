"""What a call costs: a price table of common models, overridable in `protege.toml` under `[prices]`.

Prices are USD per million tokens (input, output), list prices as published by the providers in
2025; check yours and override them. An unknown model costs `None` (never a guessed 0), and the
gateway says so once per model in its log.

A call answered locally (a specialist, a local model) costs the serving machine's time: its latency
times an hourly price (`LOCAL_USD_PER_HOUR`, `[routing] local_usd_per_hour`). The default, $0.10 an
hour, is about what a 2-vCPU cloud VM costs on demand in 2025; one core per request is assumed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOCAL_USD_PER_HOUR = 0.10


def local_cost(latency_ms: float | None, usd_per_hour: float = LOCAL_USD_PER_HOUR) -> float:
    """What a locally served call costs: its share of the serving machine's time."""
    return round((latency_ms or 0.0) * usd_per_hour / 3_600_000, 9)


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.0),
    "gpt-5-mini": Price(0.25, 2.0),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.0, 8.0),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.0),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4-turbo": Price(10.0, 30.0),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.0, 60.0),
    "o3": Price(2.0, 8.0),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-3-7-sonnet": Price(3.0, 15.0),
    "claude-3-5-sonnet": Price(3.0, 15.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    "gemini-2.5-pro": Price(1.25, 10.0),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.0-flash": Price(0.10, 0.40),
    "mistral-large": Price(2.0, 6.0),
    "mistral-small": Price(0.10, 0.30),
    "llama-3.3-70b": Price(0.60, 0.60),
    "llama-3.1-8b": Price(0.05, 0.08),
    "deepseek-chat": Price(0.27, 1.10),
}

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview)$")


class PriceTable:
    """Looks up a model's price: exact name, then without provider prefix or date suffix, then longest prefix."""

    def __init__(self, overrides: dict[str, Price] | None = None):
        self.prices = {**DEFAULT_PRICES, **(overrides or {})}
        self._cache: dict[str, Price | None] = {}
        self._warned: set[str] = set()

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        if model not in self._cache:
            self._cache[model] = self._find(model)
        return self._cache[model]

    def _find(self, model: str) -> Price | None:
        name = model.rsplit("/", 1)[-1].lower()
        for candidate in (model, name, _DATE_SUFFIX.sub("", name)):
            if candidate in self.prices:
                return self.prices[candidate]
        prefixes = [k for k in self.prices if name.startswith(k + "-") or name.startswith(k + ":")]
        return self.prices[max(prefixes, key=len)] if prefixes else None

    def cost(self, model: str | None, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """Cost in USD, or None when the model's price or the token counts are unknown."""
        price = self.lookup(model)
        if price is None:
            if model and model not in self._warned:
                self._warned.add(model)
                log.warning(
                    "No price known for model %r: its calls are logged with cost unknown. "
                    "Add it to protege.toml: [prices] \"%s\" = {input = 2.5, output = 10.0}  (USD per 1M tokens)",
                    model, model,
                )
            return None
        if prompt_tokens is None or completion_tokens is None:
            return None
        return price.cost(prompt_tokens, completion_tokens)
