"""Provider roles, the registry of provider sets, and the built-in sets."""

from .base import (
    LLM,
    GeneratedImage,
    ImageModel,
    Limit,
    ProviderFactory,
    ProviderOptions,
    ProviderSet,
    Vision,
    VisionResult,
)
from .registry import ENTRY_POINT_GROUP, available, create, plugin_errors, register, unregister

__all__ = [
    "LLM", "GeneratedImage", "ImageModel", "Limit", "ProviderFactory", "ProviderOptions", "ProviderSet",
    "Vision", "VisionResult", "ENTRY_POINT_GROUP", "available", "create", "plugin_errors", "register", "unregister",
]
