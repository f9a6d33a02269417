"""The baseline: a bare Flask app that does nothing but return a constant JSON body.

It runs under gunicorn with exactly the settings the real app gets, so the ratio
``scenario req/s ÷ baseline req/s`` measured in the same run says how much of the
hardware's ceiling (see docs/performance.md) an endpoint keeps.

``/redis-get`` is the second reference: the same bare app answering with the bytes of one Redis
``GET``, the least an endpoint that reads Redis once can do (``baseline:redis_get``).
"""

import os

import redis
from flask import Flask, Response, jsonify

app = Flask(__name__)

CONSTANT = {"ok": True, "service": "bench-baseline", "version": 1}
REDIS_GET_KEY = "bench:baseline:redis-get"
# About the size of GET /api/v1/me's answer.
REDIS_GET_BODY = b'{"ok":true,"service":"bench-baseline","padding":"' + b"x" * 400 + b'"}\n'
_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    """The Redis the benchmark's app uses (the workers get REDIS_URL; the in-process breakdown
    runs in the harness, which has BENCH_REDIS_URL or its default)."""
    global _redis
    if _redis is None:
        url = os.environ.get("REDIS_URL") or os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/13"
        _redis = redis.Redis.from_url(url)
    return _redis


@app.get("/const")
def constant():
    return jsonify(CONSTANT)


@app.get("/redis-get")
def redis_get():
    body = _client().get(REDIS_GET_KEY)
    if body is None:  # a flushed database: put it back, answer the same
        _client().set(REDIS_GET_KEY, REDIS_GET_BODY)
        body = REDIS_GET_BODY
    return Response(body, mimetype="application/json")


@app.get("/healthz")
def healthz():
    return jsonify({"ok": True})
