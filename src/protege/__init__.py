"""protege: turn an agent's recurring LLM calls into small specialist models.

`protege.OpenAI` / `protege.AsyncOpenAI` are drop-in logging clients (imported lazily, so
`import protege` stays light).
"""

__version__ = "0.1.0"

__all__ = ["AsyncOpenAI", "OpenAI", "__version__"]


def __getattr__(name: str):
    if name in ("OpenAI", "AsyncOpenAI", "flush"):
        from protege import client

        return getattr(client, name)
    raise AttributeError(f"module 'protege' has no attribute {name!r}")
