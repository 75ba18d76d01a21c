"""The ``openai`` provider set: OpenAI, or any OpenAI-compatible server, through the official client.

LLM and vision use Chat Completions (the image goes as a base64 ``data:`` URL and the
scores come back as JSON), images use the Images API with base64 output. See
docs/providers.md for settings, defaults, limits and prices.
"""

from __future__ import annotations

from ..base import ProviderOptions, ProviderSet
from .config import OpenAIConfig, resolve
from .estimate import calls, estimate
from .pricing import DEFAULT_PRICES

NAME = "openai"

__all__ = ["create", "estimate", "calls", "OpenAIConfig", "DEFAULT_PRICES", "NAME"]


def create(options: ProviderOptions) -> ProviderSet:
    """A fresh provider set for one job, with its own client; ``aclose()`` closes it."""
    # The client is imported here, so that `estimate` and the price table stay light to import.
    from .client import Backend, OpenAIImage, OpenAILLM, OpenAIVision

    config = resolve(options.settings, temperature=options.temperature, seed=options.seed)
    backend = Backend(config)
    provider_set = ProviderSet(
        name=NAME,
        llm=OpenAILLM(backend),
        image=OpenAIImage(backend),
        vision=OpenAIVision(backend),
        limits=dict(config.limits),
        usage=backend.usage.snapshot,
        aclose=backend.aclose,
    )
    # Not a field of ProviderSet: the configuration without secrets, for metadata and display.
    provider_set.config = config.public()  # type: ignore[attr-defined]
    return provider_set
