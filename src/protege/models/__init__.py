"""Small models: the catalog, the runtimes that serve them, and their format guarantees.

Importing this package is cheap: llama.cpp, llguidance, torch and transformers are
imported only when a runtime that needs them is built.
"""

from protege.models.catalog import ModelCatalog, ModelSpec, default_catalog
from protege.models.errors import (
    InvalidOutputError,
    InvalidRequestError,
    MissingDependencyError,
    ModelError,
    ModelFileError,
    ModelNotFoundError,
    RuntimeRequestError,
    TruncatedOutputError,
    UnsupportedSchemaError,
)
from protege.models.runtime import RUNTIMES, LocalRuntime, Runtime, build_runtime, register_runtime

__all__ = [
    "RUNTIMES",
    "InvalidOutputError",
    "InvalidRequestError",
    "LocalRuntime",
    "MissingDependencyError",
    "ModelCatalog",
    "ModelError",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelSpec",
    "Runtime",
    "RuntimeRequestError",
    "TruncatedOutputError",
    "UnsupportedSchemaError",
    "build_runtime",
    "default_catalog",
    "register_runtime",
]
