"""One error body for the whole API, webhooks included: RFC 9457 problem details.

Every refusal answers ``application/problem+json``::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "query.address: Field required",
     "errors": [{"field": "query.address", "message": "Field required"}]}

``detail`` is always one human-readable string (clients and logs show it as is); a request
whose fields were refused also lists them in ``errors``, so a client can point at each one.
The routes raise plain ``HTTPException`` (or FastAPI's ``RequestValidationError``); the
handlers installed here render both, and ``document_problems`` makes the OpenAPI document
say so for every error status each route declares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import Conflict, InputError, NotFound, SwitchboardError, Unavailable

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "FieldError",
    "Problem",
    "ValidationProblem",
    "document_problems",
    "field_errors",
    "install_problem_handlers",
]

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF = "#/components/schemas/{model}"


class Problem(BaseModel):
    """Why a request was refused (RFC 9457)."""

    type: str = Field("about:blank", description="Always about:blank: the status says it all.")
    title: str = Field(description="The status code's phrase.", examples=["Not Found"])
    status: int = Field(description="The HTTP status code, repeated.", examples=[404])
    detail: str = Field(
        description="What was wrong, naming the field or header, and what to do.",
        examples=["no customer has the address +4930123456789"],
    )


class FieldError(BaseModel):
    field: str = Field(
        description="Where the value was: query.<name>, path.<name>, header.<name>, "
        "or body.<path> for request bodies.",
        examples=["query.address"],
    )
    message: str = Field(examples=["String should have at least 1 character"])


class ValidationProblem(Problem):
    """A request whose fields were refused; each one is listed."""

    errors: list[FieldError] = Field(min_length=1)


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Pydantic/FastAPI error dicts as ``{field, message}`` (the input itself is not echoed)."""
    return [
        FieldError(
            field=".".join(str(part) for part in error.get("loc", ())) or "request",
            message=str(error.get("msg", "invalid")),
        )
        for error in errors
    ]


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A problem body for ``status`` (what a handler or a middleware answers)."""
    return _problem_response(Problem(title=_title(status), status=status, detail=detail), headers)


def _problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        problem.model_dump(mode="json"),
        status_code=problem.status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def _http_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    problem = Problem(title=_title(exc.status_code), status=exc.status_code, detail=detail)
    return _problem_response(problem, headers)


async def _validation_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors()) or [FieldError(field="request", message="invalid")]
    problem = ValidationProblem(
        title=_title(422),
        status=422,
        detail="; ".join(f"{e.field}: {e.message}" for e in errors),
        errors=errors,
    )
    return _problem_response(problem)


# Our own errors that reach the edge un-translated still answer what they mean.
_OUR_ERRORS: tuple[tuple[type[SwitchboardError], int], ...] = (
    (InputError, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
)


async def _our_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SwitchboardError)
    status = next((code for kind, code in _OUR_ERRORS if isinstance(exc, kind)), 500)
    headers = {"Retry-After": "5"} if status == 503 else None
    detail = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    if status == 500:
        log.error("unexpected %s: %s", type(exc).__name__, detail)
        detail = "internal error; it was logged"
    return _problem_response(Problem(title=_title(status), status=status, detail=detail), headers)


async def _unexpected_problem(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback and re-raises after this; the client still gets the same
    # body shape as every other error, without the internals.
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    problem = Problem(title=_title(500), status=500, detail="internal error; it was logged")
    return _problem_response(problem)


def install_problem_handlers(api: FastAPI) -> None:
    api.add_exception_handler(StarletteHTTPException, _http_problem)
    api.add_exception_handler(RequestValidationError, _validation_problem)
    api.add_exception_handler(SwitchboardError, _our_problem)
    api.add_exception_handler(Exception, _unexpected_problem)


# Headers that go with a status wherever it is answered (RFC 9110: a 401 names its scheme;
# our 503s all tell the provider when to retry).
_STATUS_HEADERS: dict[str, dict[str, Any]] = {
    "401": {
        "WWW-Authenticate": {
            "description": "The authentication scheme to use: Bearer.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    "503": {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Give every 4xx/5xx response in an OpenAPI document the problem body it really has.

    Routes declare which error statuses they answer (FastAPI ``responses=``, and FastAPI adds
    422 where it validates parameters); the body of each is decided here, in one place, by
    the handlers above, so it is documented here too.
    """
    _, definitions = models_json_schema(
        [(Problem, "serialization"), (ValidationProblem, "serialization")], ref_template=_REF
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if "requestBody" in operation:
                # FastAPI answers a body it cannot parse at all with 400, on every route.
                operation.setdefault("responses", {}).setdefault(
                    "400", {"description": "The body could not be parsed (the detail says why)."}
                )
            for status, response in operation.get("responses", {}).items():
                if status[:1] not in ("4", "5"):
                    continue
                model = ValidationProblem if status == "422" else Problem
                ref = _REF.format(model=model.__name__)
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": ref}}}
                if status in _STATUS_HEADERS:
                    response["headers"] = _STATUS_HEADERS[status]
    # FastAPI's own validation-error shapes are no longer answered anywhere.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def problem_documented_openapi(
    api: FastAPI, *, amend: Callable[[dict[str, Any]], dict[str, Any]] = lambda d: d
) -> Callable[[], dict[str, Any]]:
    """``api.openapi`` with every error response documented as a problem (cached, like it);
    ``amend`` adds responses before they are documented."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = document_problems(amend(generate()))
        return api.openapi_schema

    return openapi
