"""Map the openai client's exceptions to beamkit's error codes, and keep keys out of messages.

The openai client already retries 408, 409, 429 and 5xx (``max_retries`` times, honouring
``retry-after-ms`` / ``retry-after``) and timeouts; what reaches this module is final.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import openai

from ...errors import BeamkitError, ErrorCode, ProviderError

#: error codes an OpenAI(-compatible) server uses for a refusal on content grounds
CONTENT_POLICY_CODES = frozenset(
    {"content_policy_violation", "moderation_blocked", "content_filter", "safety_violation", "image_generation_user_error"}
)
_POLICY_WORDS = re.compile(r"content[ _-]?(policy|filter|management)|safety (system|policy|filter)|moderation", re.I)
# Anything that looks like a secret: OpenAI-style keys and bearer tokens.
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{6,}|(?:Bearer|token)\s+[A-Za-z0-9_\-.=*]{8,})", re.I)
_MAX_DETAIL = 400


class ContentPolicyRefusal(Exception):
    """A request was refused on content grounds (a 400, a ``content_filter`` finish, or a refusal)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove every given secret and anything key-like from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 8:  # shorter ones are placeholders, and would mangle words
            text = text.replace(secret, "***")
    return _KEYLIKE.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    found = match.group(0)
    return "sk-***" if found[:3].lower() == "sk-" else found.split()[0] + " ***"


def detail_of(err: BaseException) -> str:
    """The server's own words, not the client's ``Error code: ... - {dict}`` wrapper."""
    body = getattr(err, "body", None)
    message = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
    if not message:
        message = getattr(err, "message", None) or str(err)
    message = " ".join(str(message).split())
    return message[:_MAX_DETAIL] + ("..." if len(message) > _MAX_DETAIL else "")


def is_content_policy(err: BaseException) -> bool:
    if not isinstance(err, openai.BadRequestError):
        return False
    code = (getattr(err, "code", None) or "").lower()
    etype = (getattr(err, "type", None) or "").lower()
    if code in CONTENT_POLICY_CODES or etype in CONTENT_POLICY_CODES:
        return True
    return bool(_POLICY_WORDS.search(detail_of(err)))


def unsupported_param(err: BaseException) -> str | None:
    """The parameter a 400 says this model does not take (``temperature`` on reasoning models, ...)."""
    if not isinstance(err, openai.BadRequestError):
        return None
    param = getattr(err, "param", None)
    code = (getattr(err, "code", None) or "").lower()
    detail = detail_of(err).lower()
    if param and (code in {"unsupported_parameter", "unsupported_value"} or "unsupported" in detail or "not supported" in detail):
        return str(param)
    m = re.search(r"unsupported (?:parameter|value): '?([a-z_]+)'?", detail)
    return m.group(1) if m else None


def to_beamkit(err: BaseException, *, what: str, secrets: Iterable[str | None] = (), retries: int | None = None) -> BeamkitError:
    """The BeamkitError for a final failure of one request (``what`` names it, e.g. "image generation")."""
    secrets = list(secrets)
    detail = scrub(detail_of(err), secrets)
    status = getattr(err, "status_code", None)
    context: dict[str, Any] = {}
    if status is not None:
        context["status"] = status
    tries = "" if retries is None else f" after {retries} {'retry' if retries == 1 else 'retries'}"

    if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)) or status in (401, 403):
        return ProviderError(
            f"OpenAI {what} was refused (HTTP {status}): the API key is missing, wrong or not allowed to use this "
            f"model. {detail}",
            ErrorCode.AUTH_ERROR,
            fatal=True,
            **context,
        )
    if isinstance(err, openai.RateLimitError) or status == 429:
        code = (getattr(err, "code", None) or "").lower()
        if code == "insufficient_quota":  # billing, not pace: waiting cannot help
            return ProviderError(f"OpenAI {what} failed: the account has no quota left. {detail}", ErrorCode.RATE_LIMIT, fatal=True, **context)
        return ProviderError(f"OpenAI {what} was rate limited (HTTP 429){tries}. {detail}", ErrorCode.RATE_LIMIT, **context)
    if isinstance(err, openai.APITimeoutError):
        return ProviderError(f"OpenAI {what} timed out{tries}.", ErrorCode.TIMEOUT)
    if isinstance(err, ContentPolicyRefusal) or is_content_policy(err):
        return ProviderError(f"OpenAI {what} was refused by the content policy: {detail}", ErrorCode.CONTENT_POLICY, **context)
    if isinstance(err, openai.NotFoundError):
        # A model or route that does not exist is a configuration error: no candidate can succeed.
        return ProviderError(f"OpenAI {what} failed (HTTP 404): {detail}. Check the model name and base URL.", fatal=True, **context)
    if isinstance(err, openai.APIConnectionError):
        return ProviderError(f"OpenAI {what} could not reach the server{tries}: {detail}", **context)
    if status is not None:
        return ProviderError(f"OpenAI {what} failed (HTTP {status}){tries if status >= 500 else ''}: {detail}", **context)
    return ProviderError(f"OpenAI {what} failed: {type(err).__name__}: {detail}", **context)
