"""Extensions, created once and bound to the app with ``init_app``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from yijing.config import settings
from yijing.replica import ReplicaAwareSession

if TYPE_CHECKING:
    from yijing.config import Config

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Inside ``replica.reads()`` the session sends SELECTs to DATABASE_REPLICA_URL (see yijing.replica).
db = SQLAlchemy(model_class=Base, session_options={"class_": ReplicaAwareSession})
migrate = Migrate()
limiter = Limiter(
    key_func=get_remote_address,
    headers_enabled=True,
    swallow_errors=True,
    in_memory_fallback_enabled=True,
)


def make_redis(config: Config) -> Redis:
    """A client on the configured Redis: ``REDIS_URL`` directly, or the master that the Sentinels
    of ``REDIS_SENTINELS`` name for ``REDIS_SENTINEL_MASTER`` (db and password from ``REDIS_URL``).

    Through Sentinel every new connection asks for the current master, and a connection to a
    master that was demoted is dropped, so the client follows a failover on its next command.
    """
    # One quick retry, not redis-py's default backoff of seconds: during an outage every request
    # that can do without Redis must not wait for it.
    options: dict[str, Any] = {
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 1),
    }
    if not config.redis_sentinels:
        return Redis.from_url(config.redis_url, **options)
    parsed = urlparse(config.redis_url)
    db_number = int(parsed.path.strip("/") or 0)
    sentinel = Sentinel(
        list(config.redis_sentinels),
        sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1},
        password=parsed.password,
    )
    return sentinel.master_for(config.redis_sentinel_master, db=db_number, **options)


def ratelimit_storage(config: Config) -> tuple[str, dict[str, Any]]:
    """Flask-Limiter's storage URI and options: the same Redis (or Sentinel master) as the app."""
    options: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    if not config.redis_sentinels:
        return config.redis_url, options
    parsed = urlparse(config.redis_url)
    hosts = ",".join(f"{host}:{port}" for host, port in config.redis_sentinels)
    auth = f":{parsed.password}@" if parsed.password else ""
    options.update(db=int(parsed.path.strip("/") or 0), use_replicas=False)
    return f"redis+sentinel://{auth}{hosts}/{config.redis_sentinel_master}", options


def init_redis(app: Flask) -> None:
    """One connection pool per process; clients are cheap views on it."""
    app.extensions["yijing_redis"] = make_redis(app.config["YIJING"])


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
