"""The desk console: a single-page app built from ``desk/console`` (Vue 3 + Vite) into static files
that the app serves at ``/desk/`` (no CDN: everything comes from here).

``make run`` and ``make test`` build it (``make console``); without a build the page says how.
Hashed assets are cached for a year; ``index.html`` is never cached so a deploy takes effect at once.
Any other path under ``/desk/`` answers the page, so the console's own routes survive a reload.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, abort, send_from_directory

DIST = Path(__file__).resolve().parent / "console" / "dist"

bp = Blueprint("console", __name__, url_prefix="/desk")

NOT_BUILT = """<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>值班台尚未构建</title>
<p>值班台的前端尚未构建：在项目目录运行 <code>make console</code>（或 <code>make run</code>）
后刷新本页。</p></html>"""


def _index() -> Response:
    if not (DIST / "index.html").is_file():
        return Response(NOT_BUILT, status=503, mimetype="text/html")
    response = send_from_directory(DIST, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def console() -> Response:
    """The console's single page; it logs in with the desk API and keeps the token in the tab."""
    return _index()


@bp.get("/assets/<path:filename>")
def asset(filename: str) -> Response:
    """A built asset (content-hashed name, cached for a year)."""
    if not (DIST / "assets" / filename).is_file():
        abort(404)
    return send_from_directory(DIST / "assets", filename, max_age=365 * 24 * 3600)


@bp.get("/<path:page>")
def page(page: str) -> Response:
    """A console route (``/desk/clues`` …): the same page, the console's router takes it from there."""
    return _index()


def init_console(app: Flask) -> None:
    app.register_blueprint(bp)
