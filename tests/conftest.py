"""Test fixtures, one module per subject under ``tests/fixtures/`` (see each module's docstring).

``environment`` (databases, Redis, the fake WeChat, the app and its client), ``people`` (the
jurisdiction tree, users, staff), ``clues`` (places, images, uploads), ``jobs`` (running queued
jobs), ``volunteers``, ``tasks``, ``outages`` (a Redis of the test's own).
"""

pytest_plugins = [
    "tests.fixtures.environment",
    "tests.fixtures.people",
    "tests.fixtures.clues",
    "tests.fixtures.jobs",
    "tests.fixtures.volunteers",
    "tests.fixtures.tasks",
    "tests.fixtures.outages",
]
