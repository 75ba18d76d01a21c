"""The ``openai`` provider: OpenAI, or any OpenAI-compatible server, through the official client.

LLM and vision use Chat Completions (the image goes as a base64 ``data:`` URL and the
scores come back as JSON), images use the Images API with base64 output. The vision object
also compares two pictures (``compare``, a tournament's judge); the optional ``judge`` role
is such an object with a client of its own. Each role has its own client, base URL, key and model. See docs/providers.md for settings, defaults,
limits and prices.
"""

from __future__ import annotations

from typing import Any

from ..base import ALL_ROLES, Provider, RoleHandle, RoleOptions
from .config import ALIASES, API_KEY_HEADER, SETTINGS, OpenAIConfig, config_for
from .pricing import DEFAULT_PRICES

NAME = "openai"

__all__ = ["OpenAIProvider", "OpenAIConfig", "DEFAULT_PRICES", "NAME", "API_KEY_HEADER"]


class OpenAIProvider(Provider):
    name = NAME
    roles = ALL_ROLES
    settings = SETTINGS
    aliases = ALIASES
    description = "OpenAI, or any OpenAI-compatible server (vLLM, Ollama, LM Studio), per role"
    requires = ("openai",)

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        """A fresh client for one job's role; the handle's ``aclose`` closes it."""
        # The client is imported here, so that listing providers and estimating stay light.
        from .client import Backend, OpenAIImage, OpenAILLM, OpenAIVision

        config = config_for(role, options.settings, temperature=options.temperature, seed=options.seed)
        backend = Backend(config)
        # The judge role is a vision object of its own: its compare() runs on its own client and limits.
        impl = {"llm": OpenAILLM, "image": OpenAIImage, "vision": OpenAIVision, "judge": OpenAIVision}[role](backend)
        return RoleHandle(
            impl,
            limit=config.limit,
            # Roles on different servers must not share a limit; the same role on one server must.
            limit_key=f"{NAME}:{role}:{config.server}",
            usage=backend.usage.snapshot,
            aclose=backend.aclose,
            info=config.public(),
        )

    def estimate(self, role: str, calls: dict[str, int], options: RoleOptions) -> dict[str, Any]:
        from .estimate import estimate_role

        return estimate_role(role, calls, options)
