"""Structured (JSON) logs, with a request id on every line and in the ``X-Request-ID`` header."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (gunicorn and pytest swap it)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # type: ignore[no-untyped-def]
        pass


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if not hasattr(record, "request_id"):
                record.request_id = getattr(g, "request_id", None)
            if getattr(g, "log_redacted", False):
                record.user_id = None
            elif not hasattr(record, "user_id"):
                record.user_id = getattr(getattr(g, "principal", None), "user_id", None)
        return True


class PlainFormatter(logging.Formatter):
    """Development lines (``LOG_JSON=false``): an access line reads ``GET /api/v1/me 200 12.3 ms``.

    The JSON formatter writes a record's extra fields as keys; this one puts the access line's
    method, path, status and duration into the message, where a person reading a terminal looks.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "yijing.access" and hasattr(record, "status"):
            record = logging.makeLogRecord(record.__dict__)  # the JSON handler may format it too
            record.msg = f"{record.method} {record.path} {record.status} {record.duration_ms} ms"
            request_id = getattr(record, "request_id", None)
            if request_id:
                record.msg += f" [{request_id[:8]}]"
            record.args = None
        return super().format(record)


class AccessAwareJsonFormatter(JsonFormatter):
    """The JSON formatter, with a short way for the access line (one per request).

    The access line's fields are known, so it is written with one ``json.dumps`` of them instead of
    python-json-logger's generic walk over the record: the same keys, values and order, at about a
    third of the cost (docs/performance.md, "Per-request overhead").
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "access_fields", None)
        if fields is None or record.exc_info or record.stack_info:
            return super().format(record)
        line = {
            "time": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(fields)
        line["request_id"] = getattr(record, "request_id", None)
        line["user_id"] = getattr(record, "user_id", None)
        return json.dumps(line)


def configure_logging(level: str, as_json: bool) -> None:
    """Configure the root logger once per process (gunicorn workers, RQ workers, CLI)."""
    root = logging.getLogger()
    if getattr(root, "_yijing_configured", False):
        root.setLevel(level)
        return
    handler = StderrHandler()
    if as_json:
        handler.setFormatter(
            AccessAwareJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(PlainFormatter())
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    root._yijing_configured = True  # type: ignore[attr-defined]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # urllib3 logs full URLs at DEBUG, and WeChat URLs carry the secret or the access token.
    logging.getLogger("urllib3").setLevel(logging.INFO)


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
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        if started is None or not access.isEnabledFor(logging.INFO):
            return response
        path = request.path
        if path.startswith("/healthz"):
            return response
        redacted = g.get("log_redacted", False)
        if redacted:
            path = request.url_rule.rule if request.url_rule is not None else "?"
        principal = g.get("principal")
        fields = {
            "method": request.method,
            "path": path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "ip": None if redacted else request.remote_addr,
        }
        # A record made here rather than through ``access.info``: no stack walk for the caller's line.
        record = access.makeRecord(
            access.name,
            logging.INFO,
            __file__,
            0,
            "request",
            None,
            None,
            extra={
                **fields,
                "access_fields": fields,
                "request_id": request_id,
                "user_id": None if redacted or principal is None else principal.user_id,
            },
        )
        access.handle(record)
        return response
