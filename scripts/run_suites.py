"""`make test`: the suite on SQLite and on PostgreSQL at the same time (2 cores, half the wait).

Each run has its own Redis database and media folder so the two never meet. The logs are printed
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
    runs = {"sqlite": "11"}
    if IN_CI or pg_reachable():
        runs["postgresql"] = "12"
    else:
        print(
            "PostgreSQL is not reachable at 127.0.0.1:5432: the PostgreSQL run is skipped "
            "(CI=true makes it required).",
            flush=True,
        )
    logs: dict[str, Path] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="yijing-tests-"))
    for name, redis_db in runs.items():
        env = dict(os.environ)
        env["YIJING_TEST_DB"] = name
        env["YIJING_TEST_REDIS_URL"] = f"{REDIS_BASE}/{redis_db}"
        env["YIJING_TEST_MEDIA_ROOT"] = str(workdir / f"media-{name}")
        logs[name] = workdir / f"{name}.log"
        print(f"running the suite on {name} (Redis {env['YIJING_TEST_REDIS_URL']}) …", flush=True)
        with open(logs[name], "wb") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
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
