"""Reproducible installs: what is installed is exactly ``requirements.lock``, inside pyproject's ranges."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from packaging.version import Version

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lock.py"


@pytest.fixture(scope="module")
def lock():
    spec = importlib.util.spec_from_file_location("lock", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installed_packages_are_exactly_the_locked_versions(lock):
    installed = lock.closure(lock.project_requirements())
    problems = lock.differences(installed, lock.read_lock())
    assert problems == [], (
        "the environment differs from requirements.lock (reinstall with `make install`, or after a "
        "deliberate change `make lock` from a venv that passed `make test`):\n" + "\n".join(problems)
    )


def test_every_requirement_has_an_upper_bound_that_admits_the_locked_version(lock):
    pins = lock.read_lock()
    for requirement in lock.project_requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {"<", "<=", "==", "~="}, f"{requirement} has no upper bound"
        locked = pins[lock.normalise(requirement.name)]
        assert requirement.specifier.contains(Version(locked), prereleases=True), (
            f"{requirement.name}=={locked} in the lock is outside pyproject's {requirement.specifier}"
        )


def test_differences_name_each_kind_of_drift(lock):
    problems = lock.differences({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "2.1", "d": "4"})
    assert problems == [
        "b 2 is installed, the lock says 2.1",
        "c 3 is installed and required but not in the lock",
        "d==4 is locked but no longer required",
    ]


def test_lock_round_trips_and_normalises_names(lock, tmp_path):
    path = tmp_path / "requirements.lock"
    lock.write_lock({"flask-sqlalchemy": "3.1.1", "alembic": "1.20.1"}, path)
    path.write_text(path.read_text() + "Typing_Extensions==4.16.0  # a comment\n")
    assert lock.read_lock(path) == {
        "alembic": "1.20.1",
        "flask-sqlalchemy": "3.1.1",
        "typing-extensions": "4.16.0",
    }
