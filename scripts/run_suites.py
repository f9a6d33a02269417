"""`make test`: the suite on SQLite and on PostgreSQL at the same time (2 cores, half the wait).

Each run has its own Redis database and media folder so the two never meet. The logs are printed
one after the other when both are done; the exit status is non-zero if either failed. Outside CI a
PostgreSQL that does not answer skips that run with a message; under CI=true it is required.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_BASE = os.environ.get("YIJING_TEST_REDIS_BASE", "redis://127.0.0.1:6379")


def pg_reachable() -> bool:
    return (
        subprocess.run([sys.executable, str(ROOT / "scripts" / "pg_reachable.py")], check=False).returncode
        == 0
    )


def main(pytest_args: list[str]) -> int:
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
    if failed:
        print(f"\nfailed on: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
