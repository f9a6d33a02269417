"""WSGI entry point: ``gunicorn app:app``, ``flask --app app …``."""

from yijing import create_app

app = create_app()
