"""The mini-program's API: blueprints under ``/api/v1``."""

from __future__ import annotations

from flask_smorest import Api


def register(api: Api) -> None:
    from miniprogram_api import auth, feed, jurisdictions, me, messages

    for module in (auth, me, jurisdictions, feed, messages):
        api.register_blueprint(module.blp)
