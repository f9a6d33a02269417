"""Every notification kind the services write for a mini-program user has a subscribe-message template."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Kinds sent to staff (who have no WeChat openid) stay in the in-app inbox on purpose.
STAFF_ONLY = {"clue_reply"}


def _kinds_written_by_services() -> set[str]:
    kinds: set[str] = set()
    for path in (ROOT / "yijing" / "services").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        kinds.update(re.findall(r'outbox\.notify\(\s*[^,]+,\s*"([a-z_.]+)"', source))
        # rows built for a bulk insert (a ring's invitations): {"user_id": …, "kind": "…", …}
        kinds.update(re.findall(r'"kind":\s*"([a-z_]+\.[a-z_.]+)"', source))
        kinds.update(re.findall(r'_notify_reporter\([^,]+,[^,]+,\s*"([a-z_.]+)"', source))
        for action in re.findall(r'_record_decision\([^"]*"([a-z]+)"', source, flags=re.S):
            kinds.add(f"volunteer.{action}")
        kinds.update(re.findall(r'"(comment\.(?:hide|restore))"', source))
    return kinds


def test_every_kind_has_a_template():
    demo = json.loads((ROOT / "yijing" / "wechat" / "templates.demo.json").read_text(encoding="utf-8"))
    configured = set(demo["templates"])
    kinds = _kinds_written_by_services()
    assert {"clue_status", "task.invitation", "volunteer.approve", "message.reply"} <= kinds
    missing = kinds - configured - STAFF_ONLY - {"comment.restore", "team.captain", "message.qa_published"}
    assert not missing, f"kinds without a subscribe-message template: {sorted(missing)}"
