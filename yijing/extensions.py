"""Extensions, created once and bound to the app with ``init_app``."""

from __future__ import annotations

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from yijing.config import settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
limiter = Limiter(
    key_func=get_remote_address,
    headers_enabled=True,
    swallow_errors=True,
    in_memory_fallback_enabled=True,
)


def init_redis(app: Flask) -> None:
    """One connection pool per process; clients are cheap views on it."""
    url = app.config["YIJING"].redis_url
    # One quick retry, not redis-py's default backoff of seconds: during an outage every request
    # that can do without Redis must not wait for it.
    app.extensions["yijing_redis"] = Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


def redis_client() -> Redis:
    """The app's Redis client (needs an app context)."""
    return current_app.extensions["yijing_redis"]


def redis_key(*parts: object) -> str:
    """A Redis key under the configured prefix: ``redis_key("tok", h)`` → ``yj:tok:h``."""
    prefix = settings().redis_prefix
    return prefix + ":".join(str(p) for p in parts)


def init_wechat(app: Flask) -> None:
    from yijing.wechat.gateway import WeChatGateway

    config = app.config["YIJING"]
    app.extensions["yijing_wechat"] = WeChatGateway(
        config.wechat_appid,
        config.wechat_secret,
        config.wechat_api_base_url,
        app.extensions["yijing_redis"],
        timeout=config.wechat_timeout,
        miniprogram_state=config.wechat_miniprogram_state,
        key_prefix=config.redis_prefix,
    )


def wechat():
    """The app's WeChat gateway (needs an app context)."""
    return current_app.extensions["yijing_wechat"]
