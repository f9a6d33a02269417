"""Through REDIS_SENTINELS the app's Redis client follows a failover to the promoted replica.

The test runs a master, a replica and a Sentinel of its own on free loopback ports and kills the
master; the machine's Redis is never touched. It waits on real time (Sentinel's own clock): about
three seconds.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue

from yijing.config import Config
from yijing.extensions import make_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(check: Callable[[], object], timeout: float = 20) -> float:
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except redis.RedisError:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[dict[str, object]]:
    master, replica, sentinel = _free_port(), _free_port(), _free_port()
    # Own directories: a replica's full sync makes the master write an RDB file. The master sends
    # it at once (Redis waits 5 s by default for more replicas to share a diskless transfer).
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
    for name in ("master", "replica"):
        (tmp_path / name).mkdir()
    procs = {
        "master": subprocess.Popen(
            ["redis-server", "--port", str(master), *common, "--dir", str(tmp_path / "master")],
            stdout=subprocess.DEVNULL,
        ),
        "replica": subprocess.Popen(
            [
                *("redis-server", "--port", str(replica), *common, "--dir", str(tmp_path / "replica")),
                *("--replicaof", "127.0.0.1", str(master)),
            ],
            stdout=subprocess.DEVNULL,
        ),
    }
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor t 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds t 1000\nsentinel failover-timeout t 5000\n"
    )
    try:
        follower = redis.Redis(port=replica, socket_timeout=1)
        _until(lambda: follower.info("replication")["master_link_status"] == "up")
        follower.close()
        # Started once the replica is in sync, the Sentinel finds it in the master's first INFO; a
        # replica that connects later is found by the next INFO, which Sentinel sends every 10 s.
        procs["sentinel"] = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL
        )
        probe = redis.Redis(port=sentinel, socket_timeout=1)
        _until(lambda: probe.sentinel_slaves("t"))  # the Sentinel knows the replica
        probe.close()
        yield {"master": master, "replica": replica, "sentinel": sentinel, "procs": procs}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)


def test_the_client_follows_the_promoted_replica(sentinel_setup):
    config = Config.from_env(
        {
            "REDIS_URL": "redis://unused/0",
            "REDIS_SENTINELS": f"127.0.0.1:{sentinel_setup['sentinel']}",
            "REDIS_SENTINEL_MASTER": "t",
        }
    )
    client = make_redis(config)
    client.set("yjtest:before", "1")
    queue = Queue("yjtest-sentinel", connection=client)
    job = queue.enqueue("workers.maintenance.purge_idempotency_records")
    assert client.wait(1, 1000) == 1  # replicated before the master dies
    assert client.connection_pool.get_master_address() == ("127.0.0.1", sentinel_setup["master"])

    sentinel_setup["procs"]["master"].kill()
    took = _until(lambda: client.set("yjtest:after", "2"))

    assert client.connection_pool.get_master_address() == ("127.0.0.1", sentinel_setup["replica"])
    assert client.get("yjtest:before") == b"1" and client.get("yjtest:after") == b"2"
    assert job.id in queue.job_ids, ([(j, client.hgetall(f"rq:job:{j}")) for j in queue.job_ids], job.id)
    assert took < 15
    client.close()
