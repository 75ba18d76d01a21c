"""The OpenAPI 3.1 document of the REST API.

``build()`` makes it from the parameter table; ``openapi.json`` beside this file is the
committed copy that the servers send at ``/api/openapi.json``. A test keeps the two
equal and checks the document's paths against the routes. After changing the API, run
``python -m beamkit.server.openapi`` to write the file again.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ErrorCode
from ..params import json_schema
from ..providers import ROLES, registry
from ..providers.base import ALL_ROLES

FILE = Path(__file__).with_name("openapi.json")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _nullable_31(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.1 is JSON Schema: ``nullable: true`` becomes a type that also allows null."""
    out = copy.deepcopy(schema)
    for prop in out["properties"].values():
        if prop.pop("nullable", False):
            prop["type"] = [prop["type"], "null"]
    return out


NUM = {"type": "number"}
INT = {"type": "integer"}
STR = {"type": "string"}
NULLABLE_NUM = {"type": ["number", "null"]}
ERROR_OBJ: dict[str, Any] = {
    "type": "object",
    "required": ["message", "code"],
    "properties": {"message": STR, "code": {"type": "string", "enum": [v for k, v in vars(ErrorCode).items() if k.isupper()]}},
}


def provider_names(*, served: bool = False) -> dict[str, list[str]]:
    """Provider names by role, and under ``"all"`` those that offer every role (a plain name).

    The committed document lists the built-in providers; a server's own document lists the
    providers available in its process (plug-ins and registered ones too).
    """
    by_role: dict[str, list[str]] = {role: [] for role in ALL_ROLES}
    every: list[str] = []
    for p in registry.describe():
        if (not p.get("available")) if served else p.get("origin") != "builtin":
            continue
        roles = [r for r in p.get("roles") or [] if r in by_role]
        for r in roles:
            by_role[r].append(p["name"])
        if set(ROLES) <= set(roles):
            every.append(p["name"])
    return {"all": sorted(every), **{r: sorted(names) for r, names in by_role.items()}}


def providers_schema(names: dict[str, list[str]]) -> dict[str, Any]:
    """``providers`` of a job request: a provider for every role, or one per role; no default
    here, since an omitted ``providers`` means the server's own setting (``--providers``)."""
    return {
        "description": "A provider name for every role, or an object naming the provider of each role. "
                       "Omitted: the server's default (its `providers` setting, `--providers`), which is not "
                       "necessarily `offline`. Only providers available on the server are listed.",
        "anyOf": [
            {"type": "string", "enum": names["all"]},
            {"type": "object", "required": list(ROLES), "additionalProperties": False,
             "properties": {r: {"type": "string", "enum": names[r]} for r in ALL_ROLES}},
        ],
    }


def _job_request(names: dict[str, list[str]]) -> dict[str, Any]:
    schema = _nullable_31(json_schema())
    schema["properties"]["providers"] = providers_schema(names)
    return schema


def _schemas() -> dict[str, Any]:
    ref = {"type": "object", "required": ["iteration", "candidateId"], "properties": {"iteration": INT, "candidateId": INT}}
    return {
        "JobRequest": _job_request(provider_names()),
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "description": "Every error answer. Context fields (such as `field`, `jobId`, `maxJobs`) may follow.",
            "properties": {
                "error": {"type": "string", "description": "what went wrong"},
                "code": ERROR_OBJ["properties"]["code"],
                "field": {"type": "string", "description": "the request field at fault (400)"},
                "jobId": STR,
                "imageId": STR,
                "maxJobs": {"type": "integer", "description": "jobs this server runs at once (429)"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "timestamp"],
            "properties": {"status": {"const": "ok"}, "timestamp": {"type": "string", "format": "date-time"},
                           "version": STR, "runningJobs": INT, "maxJobs": INT},
        },
        "Started": {
            "type": "object",
            "required": ["jobId", "status", "message"],
            "properties": {"jobId": STR, "status": {"const": "started"}, "message": STR},
        },
        "Progress": {
            "type": "object",
            "required": ["currentIteration", "totalIterations", "candidatesProcessed", "totalCandidates"],
            "properties": {k: INT for k in ("currentIteration", "totalIterations", "candidatesProcessed", "totalCandidates")},
        },
        "Ref": ref,
        "BestCandidate": {
            "type": ["object", "null"],
            "required": ["whatPrompt", "howPrompt", "combinedPrompt", "imagePath", "imageId", "totalScore"],
            "properties": {
                "whatPrompt": STR, "howPrompt": STR, "combinedPrompt": STR, "imagePath": STR, "imageId": STR,
                "totalScore": NUM, "alignmentScore": NUM, "aestheticScore": NUM, "iteration": INT, "candidateId": INT,
                "lineage": {"type": "array", "items": _ref("Ref")},
            },
        },
        "Result": {
            "type": "object",
            "required": ["bestCandidate", "iterations", "candidatesEvaluated"],
            "properties": {
                "bestCandidate": _ref("BestCandidate"), "iterations": INT, "candidatesEvaluated": INT,
                "candidatesFailed": INT, "duration": {"type": ["integer", "null"], "description": "milliseconds"},
                "usage": {"type": "object"},
                "stoppedBy": {"enum": ["plateau", "score", "images", "usd", "person", None],
                              "description": "the stop_when rule that ended the job early ('person': a steering person "
                                             "stopped it); null when it ran every iteration"},
            },
        },
        "JobStatus": {
            "type": "object",
            "required": ["jobId", "status", "progress"],
            "description": "`result` when completed; `error` when error or cancelled.",
            "properties": {
                "jobId": STR,
                "status": {"enum": ["in_progress", "reviewing", "completed", "error", "cancelled"]},
                "config": {"type": "object"},
                "progress": _ref("Progress"),
                "result": _ref("Result"),
                "error": ERROR_OBJ,
                "bestScore": NULLABLE_NUM,
                "interrupted": {"type": "boolean", "description": "the server stopped before the job finished"},
            },
        },
        "JobSummary": {
            "type": "object",
            "required": ["jobId", "prompt", "status", "bestScore"],
            "properties": {
                "jobId": STR, "prompt": {"type": ["string", "null"]},
                "status": {"enum": ["in_progress", "reviewing", "completed", "error", "cancelled"]},
                "bestScore": NULLABLE_NUM, "createdAt": {"type": ["string", "null"]}, "interrupted": {"type": "boolean"},
            },
        },
        "CandidateRef": {"oneOf": [
            {"type": "object", "required": ["iteration", "candidateId"],
             "properties": {"iteration": {"type": "integer", "minimum": 0}, "candidateId": {"type": "integer", "minimum": 0}}},
            {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,3})-(0|[1-9][0-9]{0,3})$", "description": "\"iteration-candidateId\""},
            {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 0}},
        ]},
        "RatingRequest": {
            "type": "object", "required": ["a", "b", "winner"],
            "properties": {"a": _ref("CandidateRef"), "b": _ref("CandidateRef"), "winner": {"enum": ["a", "b"]}},
        },
        "Rating": {
            "type": "object", "required": ["a", "b", "winner", "timestamp"],
            "properties": {"a": {"type": "object"}, "b": {"type": "object"}, "winner": {"enum": ["a", "b"]}, "timestamp": STR},
        },
        "Ratings": {
            "type": "object", "required": ["jobId", "ratings"],
            "properties": {
                "jobId": STR, "ratings": {"type": "array", "items": _ref("Rating")},
                "nextPair": {"type": ["array", "null"], "description": "the pair most worth rating next"},
                "agreement": {"type": ["object", "null"], "description": "spearman, kendall, topK, disagreements "
                              "(docs/human-in-the-loop.md); null without scipy"},
            },
        },
        "Review": {
            "type": "object", "description": "`keep`: 1 to M candidates of the review's pool, best first; or `stop: true`",
            "properties": {"keep": {"type": "array", "items": _ref("CandidateRef")}, "stop": {"type": "boolean"}},
        },
        "JobList": {"type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": _ref("JobSummary")}}},
        "Setting": {
            "type": "object",
            "required": ["name", "type", "default", "env", "secret", "roles"],
            "description": "A declared provider setting. `roles` empty: every role of the provider. A secret's "
                           "default is never shown.",
            "properties": {
                "name": STR, "type": {"enum": ["str", "int", "float", "bool", "dict", "list"]}, "default": {},
                "env": {"type": "array", "items": STR}, "secret": {"type": "boolean"}, "help": STR,
                "roles": {"type": "array", "items": STR}, "choices": {"type": "array"},
                "header": {"type": ["string", "null"], "description": "a request header that may carry it"},
                "minimum": NULLABLE_NUM, "maximum": NULLABLE_NUM, "nullable": {"type": "boolean"},
            },
        },
        "Provider": {
            "type": "object",
            "required": ["name", "available", "roles", "settings"],
            "properties": {
                "name": STR,
                "available": {"type": "boolean"},
                "reason": {"type": ["string", "null"], "description": "why it cannot be used here"},
                "install": {"type": ["string", "null"], "description": "what would make it available"},
                "origin": {"enum": ["builtin", "plugin", "registered"]},
                "source": STR, "description": STR,
                "roles": {"type": "array", "items": {"enum": list(ALL_ROLES)}},
                "settings": {"type": "array", "items": _ref("Setting")},
                "aliases": {"type": "object", "additionalProperties": STR,
                            "description": "older flat names and the role.name they stand for"},
            },
        },
        "ProviderList": {"type": "object", "required": ["providers"],
                         "properties": {"providers": {"type": "array", "items": _ref("Provider")}}},
    }


def _setting_headers() -> list[dict[str, Any]]:
    """The request headers the built-in providers declare for a setting (a per-request key)."""
    return [{"name": header, "in": "header", "required": False, "schema": STR,
             "description": f"the '{name}' setting of the {', '.join(providers)} provider for this job only; "
                            "never stored, logged or echoed"}
            for header, (name, providers) in registry.builtin_setting_headers().items()]


def _job_id() -> dict[str, Any]:
    return {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^job-[A-Za-z0-9_-]{1,64}$"}}


def build() -> dict[str, Any]:
    """The document, made from the code."""
    bad, missing, limit = _error("invalid request"), _error("no such job"), _error("too many jobs running")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "beamkit",
            "version": __version__,
            "description": "Beam search for text-to-image prompts. Inside Jupyter Server every path lives under "
            "`{base_url}beamkit/` and Jupyter's authentication applies. Live progress: the WebSocket at `/` "
            "and `/ws` (see docs/websocket.md).",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the server's token, when it has one"},
                "query": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{}, {"bearer": []}, {"query": []}],
        "paths": {
            "/health": {"get": {"operationId": "health", "summary": "Is the server up",
                                "responses": {"200": _json(_ref("Health"), "up")}}},
            "/api/beam-search": {"post": {
                "operationId": "startJob",
                "summary": "Start a beam search job",
                "parameters": _setting_headers(),
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("JobRequest")}}},
                "responses": {"200": _json(_ref("Started"), "started"), "400": bad,
                              "401": _error("a provider needs a key (or other credential) that neither the server "
                                            "nor the request gives"), "429": limit},
            }},
            "/api/job/{jobId}": {"get": {
                "operationId": "getJob", "summary": "A job's status, progress and result",
                "parameters": [_job_id()],
                "responses": {"200": _json(_ref("JobStatus"), "the job"), "404": missing},
            }},
            "/api/job/{jobId}/cancel": {"post": {
                "operationId": "cancelJob", "summary": "Cancel a running job (a finished one is left as it is)",
                "parameters": [_job_id()],
                "responses": {"200": _json(_ref("JobStatus"), "the job after cancelling"), "404": missing},
            }},
            "/api/job/{jobId}/ratings": {
                "get": {
                    "operationId": "getRatings", "summary": "A person's ratings of the job's candidates, and the agreement",
                    "parameters": [_job_id()],
                    "responses": {"200": _json(_ref("Ratings"), "the ratings"), "404": missing},
                },
                "post": {
                    "operationId": "rate", "summary": "Rate two scored candidates (live, finished or past jobs)",
                    "parameters": [_job_id()],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RatingRequest")}}},
                    "responses": {"200": _json({"type": "object"}, "the rating kept"), "400": bad, "404": missing},
                },
            },
            "/api/job/{jobId}/review": {"post": {
                "operationId": "review", "summary": "Answer a steered job's review: keep candidates, or stop",
                "parameters": [_job_id()],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Review")}}},
                "responses": {"200": _json(_ref("JobStatus"), "the job past its review"), "400": bad, "404": missing},
            }},
            "/api/jobs": {"get": {
                "operationId": "listJobs", "summary": "Every job this server knows, newest first",
                "responses": {"200": _json(_ref("JobList"), "the jobs")},
            }},
            "/api/images/{imageId}": {"get": {
                "operationId": "getImage", "summary": "A candidate's image, or a thumbnail of it",
                "parameters": [
                    {"name": "imageId", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": r"^job-[A-Za-z0-9_-]{1,64}-iter\d{1,3}-cand\d{1,3}\.png$"}},
                    {"name": "size", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 4096},
                     "description": "longest side of a thumbnail, in pixels"},
                ],
                "responses": {
                    "200": {"description": "PNG", "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}},
                    "400": bad, "404": _error("no such image"),
                },
            }},
            "/api/providers": {"get": {
                "operationId": "listProviders",
                "summary": "Every provider with its roles, declared settings and availability here",
                "responses": {"200": _json(_ref("ProviderList"), "the providers")},
            }},
            "/api/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }},
        },
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The committed document (its providers: the built-in ones)."""
    return json.loads(FILE.read_text(encoding="utf-8"))


def served(base_url: str) -> dict[str, Any]:
    """The document as a server sends it: ``servers`` is where it is served (``base_url``, e.g.
    ``http://127.0.0.1:8765`` or ``http://host:8888/user/x/beamkit``), so that tools resolve its
    paths there and not against a Jupyter root; ``providers`` lists those available here."""
    doc = copy.deepcopy(document())
    doc["servers"] = [{"url": base_url.rstrip("/") or "/", "description": "this beamkit server"}]
    doc["components"]["schemas"]["JobRequest"]["properties"]["providers"] = providers_schema(provider_names(served=True))
    return doc


def write() -> None:
    FILE.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"wrote {FILE}")
