"""The relay works in a fresh web process, where nothing has imported the workers package yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from yijing import create_app
from yijing.config import Config
app = create_app(Config.from_env(dict(arg.split("=", 1) for arg in sys.argv[1:])))
from yijing.extensions import db
from yijing.models import User
from yijing.services import outbox
with app.app_context():
    user = User(kind="wechat", openid="o-fresh-process", display_name="")
    db.session.add(user)
    db.session.commit()
    outbox.notify(user.id, "task.reminder", title="t", dedupe_key="fresh:1")
    db.session.commit()
    from yijing import jobs
    print(len(jobs.get_queue(jobs.NOTIFY).get_jobs()))
"""


def test_first_commit_with_a_notification_in_a_fresh_process(app, database_url, redis_url, fake_wechat):
    config = app.config["YIJING"]
    args = [
        f"DATABASE_URL={database_url}",
        f"REDIS_URL={redis_url}",
        f"REDIS_PREFIX={config.redis_prefix}",
        f"QUEUE_PREFIX={config.queue_prefix}",
        f"WECHAT_API_BASE_URL={fake_wechat.base_url}",
        "LOG_LEVEL=WARNING",
    ]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "1"
