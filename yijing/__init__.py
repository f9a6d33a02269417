"""Yijing: the backend of the 包头义警 mini-program and its desk console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask_smorest import Api
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from yijing.config import ROOT, Config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_app(config: Config | None = None) -> Flask:
    """Build the app from ``config`` (read from the environment when not given)."""
    from desk import console
    from yijing import cli, connection_check, extensions
    from yijing.web import auth, docs, errors, health, inputs, metrics, outages, ratelimit, request_log
    from yijing.web.api import create_api

    config = config or Config.from_env()
    ratelimit_uri, ratelimit_options = extensions.ratelimit_storage(config)
    request_log.configure_logging(config.log_level, config.log_json)

    app = Flask(__name__, instance_relative_config=False)
    app.config.update(
        YIJING=config,
        SECRET_KEY=config.secret_key,
        SQLALCHEMY_DATABASE_URI=config.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(config.database_url),
        API_TITLE="包头义警 Yijing API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.STATIC_URL,
        # One geodetic datum across the service (yijing.geo): declared here for every integrator.
        API_SPEC_OPTIONS={
            "info": {
                "description": "坐标系：所有经纬度均为 GCJ-02"
                "（与小程序 wx.getLocation type=gcj02 及国内地图瓦片一致）。"
                "上传原始 GPS（WGS-84）坐标时请带 coord_type=wgs84，服务端换算为 GCJ-02。"
            },
            "x-datum": "GCJ-02",
        },
        RATELIMIT_STORAGE_URI=ratelimit_uri,
        RATELIMIT_KEY_PREFIX=config.redis_prefix + "rl",
        RATELIMIT_STORAGE_OPTIONS=ratelimit_options,
        # Room for an image of MEDIA_MAX_BYTES plus the multipart envelope.
        MAX_CONTENT_LENGTH=max(12 * 1024 * 1024, config.media_max_bytes + 1024 * 1024),
        JSON_AS_ASCII=False,
    )
    app.json = inputs.StrictJSONProvider(app)
    app.session_interface = auth.NoCookieSession()
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    inputs.init_converters(app)
    if config.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.proxy_hops, x_proto=config.proxy_hops)

    extensions.db.init_app(app)
    with app.app_context():
        if config.database_url.startswith("sqlite"):
            event.listen(extensions.db.engine, "connect", _sqlite_pragmas)
        else:
            connection_check.ping_when_idle(extensions.db.engine)
    extensions.migrate.init_app(app, extensions.db, directory=str(_migrations_dir()), compare_type=True)
    extensions.init_redis(app)
    extensions.init_wechat(app)
    extensions.limiter.init_app(app)
    ratelimit.init_ratelimit_headers(app)
    ratelimit.check_decorated_views_only(app, extensions.limiter)
    api = create_api(app)
    _register_blueprints(api)
    errors.register_error_handlers(app)
    outages.register(app)
    request_log.init_request_log(app)
    health.init_health(app)
    metrics.init_metrics(app)
    docs.init_docs(app)
    console.init_console(app)
    cli.init_cli(app)
    return app


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 10}}
    # Connections are checked before use only after an idle spell (yijing.connection_check); a short
    # connect timeout turns an unreachable database into a quick 503 (yijing.web.outages) rather than
    # a request hanging on TCP.
    return {"pool_size": 5, "max_overflow": 10, "connect_args": {"connect_timeout": 3}}


def _migrations_dir() -> Path:
    return ROOT / "migrations"


def _register_blueprints(api: Api) -> None:
    import desk
    import miniprogram_api

    miniprogram_api.register(api)
    desk.register(api)
