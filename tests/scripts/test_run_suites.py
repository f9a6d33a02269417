"""`make test`'s runner prints its wall time against the 8-minute budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_suites.py"


def _module():
    spec = importlib.util.spec_from_file_location("run_suites", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wall_time_is_printed_in_minutes_and_seconds_against_the_budget():
    run_suites = _module()
    assert run_suites.wall_time_line(307.4) == "wall time 5 min 07 s (budget 8 min)"
    assert run_suites.wall_time_line(481).endswith("OVER BUDGET")
