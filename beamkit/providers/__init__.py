"""Provider roles, the registry of providers, and how a job's roles are resolved."""

from .base import (
    LLM,
    ROLES,
    GeneratedImage,
    ImageModel,
    Limit,
    Provider,
    RoleHandle,
    RoleOptions,
    Roles,
    Setting,
    Vision,
    VisionResult,
)
from .registry import ENTRY_POINT_GROUP, available, describe, plugin_errors, register, unregister
from .roles import resolve

__all__ = [
    "LLM", "ROLES", "GeneratedImage", "ImageModel", "Limit", "Provider", "RoleHandle", "RoleOptions", "Roles",
    "Setting", "Vision", "VisionResult", "ENTRY_POINT_GROUP", "available", "describe", "plugin_errors", "register",
    "resolve", "unregister",
]
