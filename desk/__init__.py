"""The staff side: the desk API under ``/api/v1/desk`` (and the console pages)."""

from __future__ import annotations

from flask_smorest import Api


def register(api: Api) -> None:
    from desk import (
        auth,
        broadcasts,
        clue_replies,
        clues,
        comments,
        corrections,
        exports,
        jurisdictions,
        messages,
        outbox,
        posts,
        reports,
        staff,
        tasks,
        teams,
        volunteers,
    )

    for module in (
        auth,
        jurisdictions,
        volunteers,
        corrections,
        teams,
        clues,
        clue_replies,
        posts,
        comments,
        messages,
        broadcasts,
        outbox,
        tasks,
        reports,
        exports,
        staff,
    ):
        api.register_blueprint(module.blp)
