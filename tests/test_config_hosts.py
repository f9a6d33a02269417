"""Settings for several hosts: Redis through Sentinel, the read replica, the cron leader lease."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from yijing.config import Config, ConfigError
from yijing.extensions import make_redis, ratelimit_storage


def test_defaults_are_one_host():
    config = Config.from_env({})
    assert config.redis_sentinels == ()
    assert config.database_replica_url == ""
    assert ratelimit_storage(config)[0] == config.redis_url
    assert not isinstance(make_redis(config).connection_pool, SentinelConnectionPool)


def test_sentinels_give_a_client_that_asks_them_for_the_master():
    config = Config.from_env(
        {
            "REDIS_URL": "redis://:s3cret@ignored:6379/7",
            "REDIS_SENTINELS": "10.0.0.5:26379, 10.0.0.6:26380",
            "REDIS_SENTINEL_MASTER": "yj-main",
            "DATABASE_REPLICA_URL": "postgresql+psycopg://ro@10.0.0.7/yijing",
            "REPLICA_MAX_LAG_SECONDS": "10",
            "CRON_LEADER_TTL": "20",
        }
    )
    assert config.redis_sentinels == (("10.0.0.5", 26379), ("10.0.0.6", 26380))
    assert (config.replica_max_lag_seconds, config.cron_leader_ttl) == (10, 20)
    pool = make_redis(config).connection_pool  # lazy: nothing is contacted yet
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "yj-main"
    assert pool.connection_kwargs["db"] == 7 and pool.connection_kwargs["password"] == "s3cret"
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ] == [("10.0.0.5", 26379), ("10.0.0.6", 26380)]
    uri, options = ratelimit_storage(config)
    assert uri == "redis+sentinel://:s3cret@10.0.0.5:26379,10.0.0.6:26380/yj-main"
    assert options["db"] == 7 and options["use_replicas"] is False


@pytest.mark.parametrize("value", ["10.0.0.5", "10.0.0.5:port", ":26379", "10.0.0.5:70000"])
def test_bad_sentinel_addresses_are_refused(value):
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        Config.from_env({"REDIS_SENTINELS": value})
