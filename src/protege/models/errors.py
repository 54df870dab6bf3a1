"""Errors of the model layer, each carrying the HTTP status and OpenAI error code the gateway returns.

Every message says what went wrong and what to do about it: which package to install,
which path to fix, which schema keyword to drop.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised by `protege.models`."""

    status: int = 500
    code: str = "model_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param

    def to_openai(self) -> dict:
        """The error as OpenAI's JSON body: {"error": {"message", "type", "param", "code"}}."""
        kind = "invalid_request_error" if 400 <= self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class RuntimeRequestError(ModelError):
    """A request a runtime could not answer; `status` and `code` say how the gateway reports it."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message, status=status, code=code, param=param)


class InvalidRequestError(RuntimeRequestError):
    """The request is malformed for this runtime (bad messages, unknown tool in tool_choice...)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(400, message, code, param)


class UnsupportedSchemaError(InvalidRequestError):
    """A JSON Schema uses a keyword the grammar engine cannot enforce, so it is refused, never ignored."""

    def __init__(self, message: str, keyword: str | None = None, param: str | None = "response_format"):
        super().__init__(message, param=param, code="unsupported_schema")
        self.keyword = keyword


class InvalidOutputError(RuntimeRequestError):
    """The model's output does not parse or validate: the caller gets this, never a broken answer."""

    def __init__(self, message: str, output: str = "", status: int = 500):
        super().__init__(status, message, "invalid_output")
        self.output = output


class TruncatedOutputError(InvalidOutputError):
    """Constrained output stopped at `max_tokens` (finish_reason "length") before it was complete."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message, output, status=422)


class ModelNotFoundError(RuntimeRequestError):
    """No catalog entry, local file or adapter answers to this model name."""

    def __init__(self, message: str):
        super().__init__(404, message, "model_not_found", "model")


class ModelUnavailableError(RuntimeRequestError):
    """The model is known but cannot be loaded (missing or corrupt file, missing extra, endpoint down)."""

    def __init__(self, message: str, code: str = "model_unavailable"):
        super().__init__(503, message, code)


class ModelFileError(ModelUnavailableError):
    """A model or adapter file is missing or corrupt; the message names the path and the package to fix."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message, code="model_file_error")
        self.path = path


class MissingDependencyError(ModelUnavailableError):
    """An optional extra is not installed; the message gives the pip command."""

    def __init__(self, message: str):
        super().__init__(message, code="missing_dependency")


class QueueFullError(RuntimeRequestError):
    """A local model's queue is full: the caller should retry after `retry_after_s` (HTTP 429 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(429, message, "queue_full")
        self.retry_after_s = retry_after_s


def require(module: str, extra: str, package: str | None = None):
    """Import `module` lazily, or raise `MissingDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{pkg} is not installed ({exc}); install it with: pip install 'protege[{extra}]'"
        ) from exc
