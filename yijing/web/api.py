"""The app's flask-smorest ``Api``: its OpenAPI document documents the API's own error shape only."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from yijing.web.contract import ErrorResponsesPlugin, register_error_schema
from yijing.web.schemas import ErrorSchema


class YijingApi(Api):
    """No library error schema: every error response is the API's own ``ErrorResponse``."""

    DEFAULT_ERROR_RESPONSE_NAME = None
    ERROR_SCHEMA = ErrorSchema

    def _register_responses(self) -> None:
        """Instead of the library's responses per status (with its ``Error`` schema): ours, named."""
        register_error_schema(self.spec, ErrorSchema)

    def _register_pagination_header(self) -> None:
        """Lists are cursor-paginated in the body (``next_cursor``), not with the library's header."""


def create_api(app: Flask) -> Api:
    """One flask-smorest ``Api`` per app (it owns that app's OpenAPI document)."""
    api = YijingApi(app, spec_kwargs={"extra_plugins": [ErrorResponsesPlugin(app)]})
    app.extensions["yijing_api"] = api
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "登录接口返回的 token"}
    )
    return api
