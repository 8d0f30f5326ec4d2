"""The API's error shape, `{"error": code, "detail": text, ...}`, and its exception handlers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An expected outcome that the caller must hear about: a 4xx with a machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        /,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


class NotFound(ApiError):
    def __init__(self, what: str, code: str = "not_found") -> None:
        super().__init__(404, code, f"{what} not found")


class Conflict(ApiError):
    def __init__(self, code: str, detail: str, /, **extra: Any) -> None:
        super().__init__(409, code, detail, **extra)


class Unprocessable(ApiError):
    def __init__(self, code: str, detail: str, /, **extra: Any) -> None:
        super().__init__(422, code, detail, **extra)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def _readable(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.detail, **exc.extra),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(err.get("type") == "json_invalid" for err in errors):
            return JSONResponse(error_body("invalid_json", "request body is not valid JSON"), 400)
        fields = ", ".join(".".join(str(p) for p in err.get("loc", ())[1:]) for err in errors)
        return JSONResponse(
            error_body("validation_error", f"invalid input: {fields}", errors=_readable(errors)),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )


class ErrorOut(BaseModel):
    """Every 4xx answer has this shape; some codes add fields (e.g. `alternatives`)."""

    model_config = ConfigDict(extra="allow")
    error: str
    detail: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the error shape for the given statuses."""
    return {status: {"model": ErrorOut} for status in statuses}
