"""Layout rules the import contracts (`lint-imports`) cannot state."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("yijing", "workers", "desk", "miniprogram_api", "tests", "bench", "scripts")


def _python_files() -> list[Path]:
    return [path for d in SOURCE_DIRS for path in (ROOT / d).rglob("*.py")]


def test_queues_and_enqueueing_have_one_module():
    """``yijing/jobs.py`` is the one module for queues and enqueueing; the old re-export module
    ``workers/queues.py`` stays gone and nothing imports it again."""
    assert not (ROOT / "workers" / "queues.py").exists()
    old_import = re.compile(r"workers\.queues\b|from workers import [^\n]*\bqueues\b")
    this_file = Path(__file__).resolve()
    offenders = [
        str(path.relative_to(ROOT))
        for path in _python_files()
        if path.resolve() != this_file and old_import.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
