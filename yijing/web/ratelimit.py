"""Rate-limit keys and messages (limits are stored in Redis by Flask-Limiter)."""

from __future__ import annotations

from flask import g
from flask_limiter.util import get_remote_address

_UNITS = {"second": "秒", "minute": "分钟", "hour": "小时", "day": "天", "month": "月", "year": "年"}


def user_key() -> str:
    """Limit per logged-in user (per address when anonymous). Use under ``login_required``."""
    principal = getattr(g, "principal", None)
    return f"user:{principal.user_id}" if principal else f"ip:{get_remote_address()}"


def describe(limit_item: object) -> str:
    """``10 per 1 hour`` → ``每 1 小时最多 10 次``."""
    amount = getattr(limit_item, "amount", None)
    multiples = getattr(limit_item, "multiples", 1)
    granularity = getattr(limit_item, "GRANULARITY", None)
    unit = _UNITS.get(getattr(granularity, "name", ""), "")
    if amount is None or not unit:
        return str(limit_item)
    return f"每 {multiples} {unit}最多 {amount} 次"
