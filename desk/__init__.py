"""The staff side: the desk API under ``/api/v1/desk`` (and the console pages)."""

from __future__ import annotations

from flask_smorest import Api


def register(api: Api) -> None:
    from desk import auth, jurisdictions, tasks, teams, volunteers

    for module in (auth, jurisdictions, volunteers, teams, tasks):
        api.register_blueprint(module.blp)
