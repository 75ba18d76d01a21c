"""Error codes (SPEC section 3) and the exceptions that carry them."""

from __future__ import annotations

from typing import Any


class ErrorCode:
    INVALID_REQUEST = "INVALID_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    RATE_LIMIT = "RATE_LIMIT"
    AUTH_ERROR = "AUTH_ERROR"
    CONTENT_POLICY = "CONTENT_POLICY"
    TIMEOUT = "TIMEOUT"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    CANCELLED = "CANCELLED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


#: HTTP status for each code, as the REST table of SPEC section 5 has it.
HTTP_STATUS: dict[str, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.AUTH_ERROR: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMIT: 429,
    ErrorCode.CONTENT_POLICY: 400,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.PROVIDER_ERROR: 502,
    ErrorCode.CANCELLED: 409,
    ErrorCode.INTERNAL_ERROR: 500,
}


class BeamkitError(Exception):
    """An error with a spec code.

    ``fatal`` marks errors that no retry and no other candidate can help
    (a bad key, a bad configuration): the engine ends the whole job on them
    instead of marking one candidate failed.
    """

    code: str = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, code: str | None = None, *, fatal: bool = False, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fatal = fatal
        self.context = context

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}


class InvalidRequest(BeamkitError):
    """A parameter is missing, of the wrong type or out of range; ``field`` names it."""

    code = ErrorCode.INVALID_REQUEST

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, fatal=True)
        self.field = field
        if field is not None:
            self.context["field"] = field


class NotFound(BeamkitError):
    code = ErrorCode.NOT_FOUND


class JobCancelled(BeamkitError):
    code = ErrorCode.CANCELLED

    def __init__(self, message: str = "Job was cancelled") -> None:
        super().__init__(message)


class ProviderError(BeamkitError):
    """Raised by providers; pick the code that matches the failure."""

    code = ErrorCode.PROVIDER_ERROR
