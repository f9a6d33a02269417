"""The mini-program's API: blueprints under ``/api/v1``."""

from __future__ import annotations

from flask_smorest import Api


def register(api: Api) -> None:
    from miniprogram_api import auth, clues, jurisdictions, me, media, volunteers

    for module in (auth, me, jurisdictions, volunteers, media, clues):
        api.register_blueprint(module.blp)
