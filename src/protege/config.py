"""protege's settings: `$PROTEGE_HOME/protege.toml` (or `--config FILE`), then command-line flags.

Example `protege.toml`::

    [gateway]
    host = "127.0.0.1"
    port = 8787
    timeout_s = 600

    [[upstreams]]                      # first match on the request's model wins
    name = "openai"
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    models = ["gpt-*", "o*"]

    [[upstreams]]
    name = "local-vllm"
    base_url = "http://127.0.0.1:8000/v1"
    api_key_env = ""
    models = ["*"]

    [prices]                           # USD per million tokens; overrides the built-in table
    "my-finetune" = { input = 0.3, output = 1.2 }

    [gates]                            # when a specialist may serve (docs/routing.md)
    min_quality_ratio = 0.98
    [gates.tasks.support_ticket_triage]
    min_quality_ratio = 0.95

    [routing]
    local_usd_per_hour = 0.10          # what the machine serving specialists costs
    max_queue_wait_s = 1.0             # longer wait for a specialist's decode slot: the LLM answers

    [serving]                          # local models (`protege serve --local`)
    parallel = 1                       # requests a llama.cpp model decodes together (batched if > 1)
    max_queue = 64                     # more waiting than this: 429 with Retry-After
    context_tokens = 4096              # prompt + answer of one request

    [encryption]                       # call bodies sealed with AES-256-GCM (or set $PROTEGE_DATA_KEY)
    key_file = "/etc/protege/data.key"

    [retention]
    days = 30                          # the gateway deletes older calls in the background
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protege.pricing import LOCAL_USD_PER_HOUR, Price, PriceTable
from protege.store.base import Store, open_store, protege_home, redact_credentials


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpstreamConfig(_Strict):
    """An OpenAI-compatible API that protege forwards calls to."""

    name: str = "default"
    base_url: str = Field(description="Base URL including /v1, e.g. https://api.openai.com/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the upstream API key ('' for none)")
    models: list[str] = Field(default_factory=lambda: ["*"], description="Glob patterns of the model names it serves")

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @property
    def display_url(self) -> str:
        """`base_url` without credentials, safe to show in errors, the log and the database."""
        return redact_credentials(self.base_url)

    def serves(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8787
    timeout_s: float = Field(600.0, gt=0, description="Longest wait for an upstream's next bytes")
    connect_timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(2, ge=0, le=10, description="Retries on connection errors, 429 and 502-504, with backoff")
    workers: int = Field(1, ge=1)
    max_request_bytes: int = Field(32 * 2**20, ge=1024, description="Largest request body accepted (larger: 413); "
                                   "32 MiB leaves room for a few base64 images")
    open_mode: bool = Field(False, description="Anyone may call and read the logs, keys or not (`serve --open`); "
                            "without it the gateway is open only while no key was ever created")
    allow_open_network: bool = Field(False, description="Allow open mode on a non-loopback host "
                                     "(`serve --allow-open-network`)")


class PriceConfig(_Strict):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")


class GatePolicy(_Strict):
    """When a specialist is promoted, held back or demoted (docs/routing.md)."""

    min_quality_ratio: float = Field(0.98, gt=0, le=1.5, description="Routed quality / the LLM reference's quality")
    min_examples: int = Field(30, ge=1, description="Held-out calls the evaluation needs")
    min_valid_rate: float = Field(1.0, ge=0, le=1, description="Share of the specialist's outputs that must be valid")
    min_coverage: float = Field(0.1, ge=0, le=1, description="Share of calls the specialist must answer itself "
                                "at the calibrated confidence threshold; any share above it is promoted when its "
                                "expected saving per call (served share x the LLM's price - the specialist's own "
                                "cost on every call it is asked) is positive")
    shadow_first: bool = Field(True, description="A newly promoted specialist answers in shadow before it serves")
    shadow_calls: int = Field(20, ge=1, description="Shadow comparisons needed before shadow → on")
    live_window: int = Field(100, ge=1, description="Most recent live calls the monitor judges")
    min_live_calls: int = Field(20, ge=1, description="Live calls needed before the monitor may demote")
    max_fallback_rate: float = Field(0.25, ge=0, le=1, description="Demote when the live share of fallbacks exceeds "
                                     "the calibrated one (1 - coverage) by more than this")
    max_invalid_rate: float = Field(0.05, ge=0, le=1, description="Demote above this share of invalid outputs")
    min_shadow_agreement: float = Field(0.9, ge=0, le=1, description="Mean task-metric score, against the LLM's "
                                        "answers, of the shadow answers the specialist would have served, to go on "
                                        "(with the live routed quality at min_quality_ratio); below it in shadow or on "
                                        "(shadow sampling), the specialist is demoted")


class GateConfig(GatePolicy):
    tasks: dict[str, dict] = Field(default_factory=dict, description="Per-task overrides of the fields above")

    @field_validator("tasks")
    @classmethod
    def _check_overrides(cls, tasks: dict[str, dict]) -> dict[str, dict]:
        for overrides in tasks.values():
            GatePolicy(**overrides)  # unknown or out-of-range fields fail at load time, naming the field
        return tasks

    def for_task(self, task_id: str) -> GatePolicy:
        return GatePolicy(**self.model_dump(exclude={"tasks"}) | self.tasks.get(task_id, {}))


class RoutingConfig(_Strict):
    local_usd_per_hour: float = Field(LOCAL_USD_PER_HOUR, ge=0, description="Hourly price of the machine serving local models: a "
                                      "local call costs its latency times this")
    audit_share: float = Field(0.05, ge=0, le=1, description="Share of a served task's calls the LLM answers with "
                               "the specialist in shadow, to measure live agreement (drift)")
    refresh_s: float = Field(2.0, gt=0, description="How often each gateway worker re-reads routes, API keys and the "
                             "task catalog: a promotion or a revoked key applies everywhere within this time")
    human_facing_header: str = Field("x-protege-human-facing", description="Requests with this header set to "
                                     "true (or metadata.human_facing) always go to the LLM")
    max_queue_wait_s: float = Field(1.0, ge=0, description="A specialist whose local model would make the call wait "
                                    "longer than this for a decode slot is skipped: the LLM answers "
                                    "(`x-protege-fallback: queue`)")


class ServingConfig(_Strict):
    """How the gateway serves local models and specialists (`protege serve --local`)."""

    parallel: int = Field(1, ge=1, le=256, description="Requests one llama.cpp base model decodes together "
                          "(batched decoding over one context per core); 1 answers one at a time on one context, "
                          "reusing the previous prompt's prefix (faster on 2 cores: README, Benchmarks)")
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a decode slot of one local model; "
                           "one more is answered 429 with Retry-After")
    context_tokens: int = Field(4096, ge=256, le=131072, description="Context of one request (prompt + answer) on a "
                                "llama.cpp model; its KV cache takes parallel x this many tokens of memory")
    backend: Literal["llama.cpp", "vllm"] = Field("llama.cpp", description="Who decodes specialists: llama.cpp in "
                                                  "the gateway's process, or one vLLM server with multi-LoRA (GPU)")
    engine_url: str | None = Field(None, description="With backend = \"vllm\": the server's base URL including /v1")
    engine_base: str = Field("smollm2-135m", description="With backend = \"vllm\": the catalog name of the base "
                             "model the server runs (specialists of other bases go to the LLM)")
    engine_model: str | None = Field(None, description="The server's own name for the base model (default: "
                                     "engine_base)")
    engine_api_key_env: str = Field("", description="Environment variable with the server's API key ('' for none)")

    @model_validator(mode="after")
    def _engine_needs_a_url(self) -> "ServingConfig":
        if self.backend == "vllm" and not self.engine_url:
            raise ValueError("backend = \"vllm\" needs engine_url, e.g. engine_url = \"http://127.0.0.1:8000/v1\"")
        return self

    def runtime_options(self) -> dict:
        """The options `LocalModelPool` passes to its llama.cpp runtimes."""
        return {"parallel": self.parallel, "max_queue": self.max_queue, "n_ctx": self.context_tokens}


class EncryptionConfig(_Strict):
    """Encryption at rest of the call log and the spool (docs/security.md)."""

    key_file: str | None = Field(None, description="File holding the data key (base64 of 32 bytes); "
                                 "$PROTEGE_DATA_KEY or $PROTEGE_DATA_KEY_FILE win over it, "
                                 "$PROTEGE_HOME/data.key is used when none is set")


class RetentionConfig(_Strict):
    """How long calls are kept; the gateway deletes older ones in the background (docs/security.md)."""

    days: float | None = Field(None, gt=0, le=36500, description="Delete calls older than this many days "
                               "(from the store and curated exports); unset: keep every call")
    interval_s: float = Field(3600.0, ge=1, le=86400 * 7, description="How often the gateway enforces it")


class Settings(_Strict):
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    database: str | None = Field(None, description="Store URL or SQLite path; default $PROTEGE_HOME/protege.db")
    spool_dir: str | None = Field(None, description="Crash-safe log spool; default $PROTEGE_HOME/spool")
    scrub_at_ingest: bool = Field(
        False, description="Scrub PII and secrets before a call is first written anywhere (costs CPU per call; needs protege[curate])"
    )
    gates: GateConfig = Field(default_factory=GateConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    def price_table(self) -> PriceTable:
        return PriceTable({m: Price(p.input, p.output) for m, p in self.prices.items()})

    def upstream_for(self, model: str) -> UpstreamConfig | None:
        return next((u for u in self.upstreams if u.serves(model)), None)

    def open_store(self, database: str | None = None) -> Store:
        """The store (`database`, else this file's), with the data key from the environment or [encryption]."""
        return open_store(self.database if database is None else database, key_file=self.encryption.key_file)

    def resolved_spool_dir(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else protege_home() / "spool"


class ConfigError(ValueError):
    """A settings file or flag is wrong; the message names the field and the file."""


def load_settings(path: str | os.PathLike | None = None, **overrides) -> Settings:
    """Read the settings file (default `$PROTEGE_HOME/protege.toml`, optional) and apply overrides."""
    default = protege_home() / "protege.toml"
    file = Path(path) if path else default
    data: dict = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file} is not valid TOML: {e}. Fix the file or pass --config with another one.") from e
    elif path:
        raise ConfigError(f"Config file {file} does not exist; create it or drop --config.")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"Invalid settings in {file}: {problems}") from e
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "upstream":
            key_env = overrides.get("upstream_key_env") or "OPENAI_API_KEY"
            settings.upstreams.insert(0, UpstreamConfig(base_url=value.rstrip("/"), api_key_env=key_env))
        elif key == "upstream_key_env":
            continue
        elif key in GatewayConfig.model_fields:
            setattr(settings.gateway, key, value)
        else:
            setattr(settings, key, value)
    return settings
