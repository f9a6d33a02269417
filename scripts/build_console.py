"""Build the desk console (desk/console) when its sources or the API document changed.

1. ``npm ci`` when ``package-lock.json`` changed since the last install;
2. dump the OpenAPI document of the app (``flask openapi write``) into ``desk/console/openapi.json``;
3. ``npm run build``: types generated from that document, ``vue-tsc`` (a drift between the API and
   the console fails here), then ``vite build`` into ``desk/console/dist``;
skipped when nothing of it changed since the last build (a hash kept in ``dist/.build-stamp``).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "desk" / "console"
DIST = CONSOLE / "dist"
STAMP = DIST / ".build-stamp"
INSTALLED = CONSOLE / "node_modules" / ".installed-lock"
INPUTS = ("package.json", "package-lock.json", "vite.config.ts", "tsconfig.json", "index.html")


def say(message: str) -> None:
    print(f"[console] {message}", flush=True)


def run(args: list[str]) -> None:
    subprocess.run(args, cwd=CONSOLE, check=True)


def digest() -> str:
    h = hashlib.sha256()
    files = [CONSOLE / name for name in INPUTS]
    files += sorted(p for p in (CONSOLE / "src").rglob("*") if p.is_file() and p.name != "schema.d.ts")
    files.append(CONSOLE / "openapi.json")
    for path in files:
        h.update(str(path.relative_to(CONSOLE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main() -> int:
    # Two test runs (SQLite and PostgreSQL side by side) may ask at once: one builds, the other waits.
    CONSOLE.joinpath(".build-lock").touch()
    with open(CONSOLE / ".build-lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build()


def build() -> int:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        say("Node.js 20+ and npm are needed to build the console (Debian: apt-get install -y nodejs npm).")
        return 2
    lock = (CONSOLE / "package-lock.json").read_bytes()
    if not INSTALLED.is_file() or INSTALLED.read_bytes() != lock:
        say("npm ci")
        run([npm, "ci", "--no-audit", "--no-fund"])
        INSTALLED.write_bytes(lock)
    flask = str(Path(sys.executable).parent / "flask")
    fresh = CONSOLE / "openapi.json.new"
    subprocess.run(
        [flask, "--app", "app", "openapi", "write", "--format=json", str(fresh)], cwd=ROOT, check=True
    )
    fresh.replace(CONSOLE / "openapi.json")
    wanted = digest()
    if STAMP.is_file() and STAMP.read_text() == wanted and (DIST / "index.html").is_file():
        say("up to date")
        return 0
    say("npm run build (API types, vue-tsc, vite)")
    run([npm, "run", "build"])
    STAMP.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
