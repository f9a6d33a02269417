"""Structured (JSON) logs, with a request id on every line and in the ``X-Request-ID`` header."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = getattr(g, "request_id", None)
            principal = None if getattr(g, "log_redacted", False) else getattr(g, "principal", None)
            record.user_id = getattr(principal, "user_id", None)
        return True


def configure_logging(level: str, as_json: bool) -> None:
    """Configure the root logger once per process (gunicorn workers, RQ workers, CLI)."""
    root = logging.getLogger()
    if getattr(root, "_yijing_configured", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    root._yijing_configured = True  # type: ignore[attr-defined]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def redact_request() -> None:
    """Keep this request's user, address and path ids out of the logs (e.g. anonymous clue reporting).

    The access line then shows the route pattern (``/api/v1/clues/<int:clue_id>``) instead of the path.
    """
    g.log_redacted = True


def init_request_log(app: Flask) -> None:
    access = logging.getLogger("yijing.access")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = getattr(g, "request_started", None)
        if started is not None and not request.path.startswith("/healthz"):
            redacted = getattr(g, "log_redacted", False)
            rule = request.url_rule.rule if request.url_rule is not None else "?"
            access.info(
                "request",
                extra={
                    "method": request.method,
                    "path": rule if redacted else request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "ip": None if redacted else request.remote_addr,
                },
            )
        return response
