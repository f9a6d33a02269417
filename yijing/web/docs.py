"""The interactive API docs, with Swagger UI served from the installed package (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

STATIC_URL = "/api/v1/docs/static/"

bp = Blueprint("docs_static", __name__)


@bp.get(STATIC_URL + "<path:filename>")
def swagger_static(filename: str) -> Response:
    """Swagger UI's own files."""
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


def init_docs(app: Flask) -> None:
    app.register_blueprint(bp)
