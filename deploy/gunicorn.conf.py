"""gunicorn settings for an app host: ``gunicorn -c deploy/gunicorn.conf.py app:app``.

Every value can be overridden from the environment (``GUNICORN_BIND``, ``GUNICORN_WORKERS``,
``GUNICORN_THREADS``, ``GUNICORN_TIMEOUT``). ``/metrics`` sums the workers' counters through
prometheus_client's multiprocess mode, whose directory is emptied when the server starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# A worker is replaced after this many requests (bounds any slow leak), staggered by the jitter.
max_requests = 5000
max_requests_jitter = 500
accesslog = None  # the app logs one JSON access line per request itself
errorlog = "-"
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"yijing-metrics-{os.getpid()}")
)


def on_starting(server):  # type: ignore[no-untyped-def]
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
