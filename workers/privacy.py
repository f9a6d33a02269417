"""Personal-information jobs: sealed envelopes for anonymous reporters, account cancellations and
the retention schedule. Each is idempotent (running twice does nothing more)."""

from __future__ import annotations

from yijing.services import account, retention, sealed


def release_sealed() -> dict[str, int]:
    """Open the anonymous reporters' envelopes that are due, in one batch."""
    return sealed.release_due()


def carry_out_cancellations() -> int:
    """Cancel the accounts whose cooling-off period has passed."""
    return account.carry_out_due()


def enforce_retention() -> dict[str, int]:
    """Remove what the retention schedule says is past its time; returns what was removed."""
    return retention.enforce()
