"""The mini-program's API: blueprints under ``/api/v1``."""

from __future__ import annotations

from flask_smorest import Api


def register(api: Api) -> None:
    from miniprogram_api import (
        auth,
        clues,
        feed,
        jurisdictions,
        me,
        media,
        messages,
        notifications,
        ranks,
        tasks,
        volunteers,
    )

    for module in (
        auth,
        me,
        jurisdictions,
        volunteers,
        media,
        clues,
        feed,
        messages,
        notifications,
        tasks,
        ranks,
    ):
        api.register_blueprint(module.blp)
