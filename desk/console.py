"""The desk console: pages for staff in a browser, built on the desk API (no CDN, no build step)."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template

bp = Blueprint("console", __name__, url_prefix="/desk", template_folder="templates", static_folder="static")


@bp.get("/")
def console() -> str:
    """The console's single page; it logs in with the desk API and keeps the token in the tab."""
    return render_template("desk/console.html")


def init_console(app: Flask) -> None:
    app.register_blueprint(bp)
