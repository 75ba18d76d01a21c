"""Typed errors: one class per code, the class says the code, and nothing tells errors apart by text."""

from __future__ import annotations

import ast
import json
import pickle
from enum import StrEnum
from pathlib import Path

import pytest

import beamkit
import beamkit.errors
from beamkit.errors import (
    HTTP_STATUS,
    AuthError,
    BeamkitError,
    CallTimeout,
    ContentPolicy,
    ErrorCode,
    InternalError,
    InvalidRequest,
    JobCancelled,
    NotFound,
    ProviderError,
    RateLimited,
    error_class,
)

PACKAGE = Path(beamkit.__file__).parent

# The wire carries these (SPEC section 3); they must never change.
WIRE = {
    "INVALID_REQUEST": (InvalidRequest, 400), "NOT_FOUND": (NotFound, 404), "RATE_LIMIT": (RateLimited, 429),
    "AUTH_ERROR": (AuthError, 401), "CONTENT_POLICY": (ContentPolicy, 400), "TIMEOUT": (CallTimeout, 504),
    "PROVIDER_ERROR": (ProviderError, 502), "CANCELLED": (JobCancelled, 409), "INTERNAL_ERROR": (InternalError, 500),
}


def test_the_codes_are_a_str_enum_with_the_wire_values():
    assert issubclass(ErrorCode, StrEnum)
    assert [c.value for c in ErrorCode] == list(WIRE)
    assert json.dumps({"code": ErrorCode.RATE_LIMIT}) == '{"code": "RATE_LIMIT"}'
    assert f"[{ErrorCode.NOT_FOUND}]" == "[NOT_FOUND]"


@pytest.mark.parametrize("code", list(WIRE))
def test_each_code_has_its_class_and_status(code):
    cls, status = WIRE[code]
    assert error_class(code) is cls and error_class(ErrorCode(code)) is cls
    assert cls.code == code and issubclass(cls, BeamkitError)
    assert HTTP_STATUS[ErrorCode(code)] == status
    made = BeamkitError("something", code)
    assert type(made) is cls and made.code == code and made.http_status == status and made.message == "something"
    assert type(BeamkitError.from_code(code, "from the wire")) is cls


def test_http_status_is_keyed_by_the_enum():
    assert set(HTTP_STATUS) == set(ErrorCode) and all(isinstance(k, ErrorCode) for k in HTTP_STATUS)


def test_the_class_follows_the_code_it_is_given():
    assert type(ProviderError("slow down", ErrorCode.RATE_LIMIT)) is RateLimited
    assert type(ProviderError("took too long", code=ErrorCode.TIMEOUT)) is CallTimeout
    assert type(ProviderError("broke")) is ProviderError
    assert type(BeamkitError("no code")) is InternalError  # a bare BeamkitError is an internal error

    class QuotaExhausted(RateLimited):
        pass

    assert type(QuotaExhausted("no quota")) is QuotaExhausted  # a subclass of the code's class keeps its class
    assert type(QuotaExhausted("no quota", ErrorCode.RATE_LIMIT)) is QuotaExhausted
    assert type(QuotaExhausted("bad key", ErrorCode.AUTH_ERROR)) is AuthError


def test_context_fatal_and_the_body():
    exc = BeamkitError("too many jobs", ErrorCode.RATE_LIMIT, maxJobs=4)
    assert exc.context == {"maxJobs": 4} and exc.fatal is False
    assert exc.to_dict() == {"message": "too many jobs", "code": "RATE_LIMIT"}
    assert BeamkitError("bad key", ErrorCode.AUTH_ERROR, fatal=True).fatal is True
    bad = InvalidRequest("'N' must be an integer", "N")
    assert bad.field == "N" and bad.context == {"field": "N"} and bad.fatal is True
    via_code = BeamkitError("'N' must be an integer", ErrorCode.INVALID_REQUEST, field="N")
    assert type(via_code) is InvalidRequest and via_code.field == "N"
    assert JobCancelled().message == "Job was cancelled" and str(JobCancelled("stop")) == "stop"


def test_an_unknown_code_is_a_clear_error():
    with pytest.raises(ValueError, match="'NOPE' is not an error code.*RATE_LIMIT"):
        error_class("NOPE")
    with pytest.raises(ValueError, match="not an error code"):
        BeamkitError("x", "NOPE")


def test_a_code_from_the_wire_that_is_unknown_is_kept():
    exc = BeamkitError.from_code("QUOTA_GONE", "from a newer server", status=503)
    assert type(exc) is InternalError and exc.context == {"originalCode": "QUOTA_GONE", "status": 503}
    assert type(BeamkitError.from_code(502, "a proxy's body")) is InternalError
    assert type(BeamkitError.from_code("INVALID_REQUEST", "bad", field="N")).__name__ == "InvalidRequest"


def test_errors_can_be_caught_by_class_and_pickled():
    with pytest.raises(RateLimited):
        raise BeamkitError("slow down", ErrorCode.RATE_LIMIT)
    back = pickle.loads(pickle.dumps(NotFound("no job 'x'")))
    assert type(back) is NotFound and back.message == "no job 'x'"


# -- nothing tells errors apart by their text or their code's string ----------------------------------


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "errors.py" or path.parent != PACKAGE:
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _is_text_of(node: ast.AST, names: set[str]) -> bool:
    """``exc.message``, ``exc.args``, ``str(exc)`` for a name bound by ``except ... as exc``."""
    if isinstance(node, ast.Attribute) and node.attr in ("message", "args"):
        return isinstance(node.value, ast.Name) and node.value.id in names
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id in names)


OURS = {name for name, value in vars(beamkit.errors).items() if isinstance(value, type) and issubclass(value, BeamkitError)}


def _catches_ours(node: ast.AST | None) -> bool:
    """Whether an ``except`` clause can catch a BeamkitError (``except SystemExit as e`` cannot)."""
    names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute))} \
        if node is not None else set()
    return bool(names & (OURS | {"Exception", "BaseException"}))


def test_no_error_is_classified_by_its_text_or_its_code():
    found = []
    codes = {c.value for c in ErrorCode}
    for path, tree in _sources():
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in codes:
                found.append(f"{where}:{node.lineno}: the code string {node.value!r} (use ErrorCode or the class)")
            if not isinstance(node, ast.ExceptHandler) or node.name is None or not _catches_ours(node.type):
                continue
            for inner in ast.walk(node):
                if not isinstance(inner, ast.Compare):
                    continue
                sides = [inner.left, *inner.comparators]
                if any(isinstance(s, ast.Attribute) and s.attr == "code" and isinstance(s.value, ast.Name)
                       and s.value.id == node.name for s in sides):
                    found.append(f"{where}:{inner.lineno}: compares {node.name}.code (use isinstance)")
                if any(_is_text_of(s, {node.name}) for s in sides):
                    found.append(f"{where}:{inner.lineno}: looks into {node.name}'s text")
    assert not found, "\n".join(found)
