"""Liveness and readiness probes for the load balancer and the orchestrator."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from yijing.extensions import db, limiter, redis_client
from yijing.web.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz() -> Response:
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz() -> Response:
    """The database and Redis both answer; otherwise 503 naming the one that failed."""
    failed: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError as exc:
        db.session.rollback()
        failed["database"] = type(exc).__name__
    try:
        redis_client().ping()
    except RedisError as exc:
        failed["redis"] = type(exc).__name__
    if failed:
        names = "、".join({"database": "数据库", "redis": "Redis"}[k] for k in failed)
        return error_response(503, "not_ready", f"{names}无法连接，服务暂不可用", failed)
    return jsonify(status="ok", checks={"database": "ok", "redis": "ok"})


def init_health(app: Flask) -> None:
    app.register_blueprint(bp)
