"""`make test`: the suite on SQLite and on PostgreSQL at the same time (2 cores, half the wait).

The console's browser tests (PostgreSQL only) run as a third process beside the two: they mostly
wait on Chromium and the servers they start, so they fill the gaps the other two leave. Each run
has its own Redis database, media folder and (the console's) PostgreSQL database, so they never
meet. The logs are printed
one after the other when both are done; the exit status is non-zero if either failed. Outside CI a
PostgreSQL that does not answer skips that run with a message; under CI=true it is required.
The wall time of the whole run is printed last, against the 8-minute budget. The tests marked
``scale`` are left out (pyproject's addopts); `make test-scale` runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_BASE = os.environ.get("YIJING_TEST_REDIS_BASE", "redis://127.0.0.1:6379")
BUDGET_SECONDS = 8 * 60


def wall_time_line(seconds: float) -> str:
    """``wall time 5 min 07 s (budget 8 min)``, with a warning past the budget."""
    minutes, rest = divmod(round(seconds), 60)
    line = f"wall time {minutes} min {rest:02d} s (budget {BUDGET_SECONDS // 60} min)"
    return line + (" — OVER BUDGET" if seconds > BUDGET_SECONDS else "")


def pg_reachable() -> bool:
    return (
        subprocess.run([sys.executable, str(ROOT / "scripts" / "pg_reachable.py")], check=False).returncode
        == 0
    )


def main(pytest_args: list[str]) -> int:
    started = time.monotonic()
    # name → (YIJING_TEST_DB, Redis database number, extra pytest arguments, extra environment)
    whole_suite = not pytest_args
    runs: dict[str, tuple[str, str, list[str], dict[str, str]]] = {
        "sqlite": ("sqlite", "11", ["--ignore=tests/console"] if whole_suite else [], {})
    }
    if IN_CI or pg_reachable():
        runs["postgresql"] = ("postgresql", "12", ["--ignore=tests/console"] if whole_suite else [], {})
        if whole_suite:
            runs["console"] = (
                "postgresql",
                "10",
                ["tests/console"],
                {"YIJING_TEST_PG_DATABASE": "yijing_test_console"},
            )
    else:
        print(
            "PostgreSQL is not reachable at 127.0.0.1:5432: the PostgreSQL run is skipped "
            "(CI=true makes it required).",
            flush=True,
        )
    logs: dict[str, Path] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="yijing-tests-"))
    for name, (database, redis_db, extra_args, extra_env) in runs.items():
        env = {**os.environ, **extra_env}
        env["YIJING_TEST_DB"] = database
        env["YIJING_TEST_REDIS_URL"] = f"{REDIS_BASE}/{redis_db}"
        env["YIJING_TEST_MEDIA_ROOT"] = str(workdir / f"media-{name}")
        logs[name] = workdir / f"{name}.log"
        print(f"running the suite on {name} (Redis {env['YIJING_TEST_REDIS_URL']}) …", flush=True)
        with open(logs[name], "wb") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args, *extra_args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    failed = []
    for name, proc in procs.items():
        if proc.wait() != 0:
            failed.append(name)
    for name in runs:
        print(f"\n===== suite on {name} =====", flush=True)
        sys.stdout.write(logs[name].read_text(encoding="utf-8", errors="replace"))
        sys.stdout.flush()
    print(f"\n{wall_time_line(time.monotonic() - started)}", flush=True)
    if failed:
        print(f"failed on: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
