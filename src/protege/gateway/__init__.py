"""The OpenAI-compatible gateway (`create_app`) and the replay upstream used by demos and tests."""

from protege.gateway.app import create_app

__all__ = ["create_app"]
