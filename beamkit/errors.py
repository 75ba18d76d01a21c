"""Error codes (SPEC section 3) and the exceptions that carry them.

Each code has one exception class, and an exception's class says its code::

    try:
        ...
    except RateLimited:            # code RATE_LIMIT, whoever raised it
        ...

``BeamkitError(message, code)`` (the form callers and the wire use) makes an instance of
that code's class, so ``BeamkitError("slow down", ErrorCode.RATE_LIMIT)`` is a
``RateLimited``; so is ``ProviderError("slow down", ErrorCode.RATE_LIMIT)``. A subclass of
a code's class (``class QuotaExhausted(RateLimited)``) keeps its own class.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """The codes of SPEC section 3; the values are what the wire carries."""

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
HTTP_STATUS: dict[ErrorCode, int] = {
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

_CLASSES: dict[ErrorCode, type[BeamkitError]] = {}


def error_class(code: ErrorCode | str) -> type[BeamkitError]:
    """The exception class of ``code``; a ValueError for a string that is no code."""
    try:
        return _CLASSES[ErrorCode(code)]
    except ValueError:
        raise ValueError(f"{code!r} is not an error code; the codes are {', '.join(ErrorCode)}") from None


class _ByCode(type):
    """Makes ``Cls(message, code)`` an instance of the code's class (see the module's docstring)."""

    code: ErrorCode  # every class it makes has one

    # Typed ``Any`` so that type checkers keep taking a call's type from the class called.
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        code = kwargs.pop("code", None)
        if len(args) > 1 and cls.__init__ is BeamkitError.__init__:  # type: ignore[misc]  # the base signature
            code, args = args[1], args[:1] + args[2:]
        wanted = error_class(cls.code if code is None else code)
        target = cls if issubclass(cls, wanted) else wanted
        return type.__call__(target, *args, **kwargs)


class BeamkitError(Exception, metaclass=_ByCode):
    """An error with a spec code (``code``, from its class).

    ``fatal`` marks errors that no retry and no other candidate can help
    (a bad key, a bad configuration): the engine ends the whole job on them
    instead of marking one candidate failed. ``context`` goes into the error's
    JSON body beside ``error`` and ``code`` (``{"field": "N"}``, ``{"maxJobs": 4}``).
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    fatal_by_default: ClassVar[bool] = False

    def __init__(self, message: str, code: ErrorCode | str | None = None, *, fatal: bool | None = None,
                 **context: Any) -> None:
        # ``code`` was consumed by the metaclass, which picked this class from it.
        super().__init__(message)
        self.message = message
        self.fatal = self.fatal_by_default if fatal is None else fatal
        self.context = context

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The first class to declare a code is that code's class; subclasses inherit it.
        if "code" in cls.__dict__ and cls.code not in _CLASSES:
            _CLASSES[cls.code] = cls

    @classmethod
    def from_code(cls, code: Any, message: str, **context: Any) -> BeamkitError:
        """The exception for a code read from the wire or a file: ``from_code("NOT_FOUND", "no job")``.

        Unlike ``BeamkitError(message, code)``, which refuses a string that is no code, a code
        this version does not know (a newer server's, a proxy's) gives an ``InternalError``
        that keeps it as ``context["originalCode"]``.
        """
        try:
            known = ErrorCode(code)
        except ValueError:
            return InternalError(message, originalCode=code, **context)
        return BeamkitError(message, known, **context)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}


class InvalidRequest(BeamkitError):
    """A parameter is missing, of the wrong type or out of range; ``field`` names it."""

    code = ErrorCode.INVALID_REQUEST
    fatal_by_default = True

    def __init__(self, message: str, field: str | None = None, *, fatal: bool | None = None, **context: Any) -> None:
        if field is not None:
            context["field"] = field
        super().__init__(message, fatal=fatal, **context)

    @property
    def field(self) -> str | None:
        return self.context.get("field")


class NotFound(BeamkitError):
    code = ErrorCode.NOT_FOUND


class RateLimited(BeamkitError):
    """Too many jobs, sockets or provider calls; try again later (or never, when ``fatal``)."""

    code = ErrorCode.RATE_LIMIT


class AuthError(BeamkitError):
    """No token or a wrong one; or a provider refused the key."""

    code = ErrorCode.AUTH_ERROR


class ContentPolicy(BeamkitError):
    """A provider refused the prompt or the picture."""

    code = ErrorCode.CONTENT_POLICY


class CallTimeout(BeamkitError):
    """A provider call took too long (named so as not to shadow the builtin ``TimeoutError``)."""

    code = ErrorCode.TIMEOUT


class ProviderError(BeamkitError):
    """A provider failed in a way no other code describes."""

    code = ErrorCode.PROVIDER_ERROR


class JobCancelled(BeamkitError):
    code = ErrorCode.CANCELLED

    def __init__(self, message: str = "Job was cancelled", *, fatal: bool | None = None, **context: Any) -> None:
        super().__init__(message, fatal=fatal, **context)


class InternalError(BeamkitError):
    """A bug, or a failure beamkit cannot name better. ``BeamkitError(message)`` without a code is one."""

    code = ErrorCode.INTERNAL_ERROR


assert set(_CLASSES) == set(ErrorCode), "every code needs its class"

__all__ = [
    "ErrorCode", "HTTP_STATUS", "error_class", "BeamkitError", "InvalidRequest", "NotFound", "RateLimited",
    "AuthError", "ContentPolicy", "CallTimeout", "ProviderError", "JobCancelled", "InternalError",
]
