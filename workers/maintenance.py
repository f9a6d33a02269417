"""Housekeeping jobs."""

from __future__ import annotations

from yijing.services import idempotency


def purge_idempotency_records() -> int:
    """Forget stored answers to idempotent POSTs past their retention."""
    return idempotency.purge_expired()
