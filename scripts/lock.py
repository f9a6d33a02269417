"""The lock file: the exact version of every package the project installs, from a venv that passed.

``requirements.lock`` is a pip *constraints* file (``pip install -c requirements.lock -e '.[dev]'``,
which is what ``make install`` runs): one ``name==version`` line for each package in the
dependency closure of ``pyproject.toml`` (runtime and ``dev``), nothing else. ``pyproject.toml``
keeps ranges with an upper bound on the major version; the lock says which version inside those
ranges was tested.

    python scripts/lock.py            # write the lock from the packages installed in this Python
    python scripts/lock.py --check    # exit 1 when the installed packages differ from the lock
    python scripts/lock.py --fresh    # a throw-away venv, the newest versions pyproject allows, lock

Upgrading (``make lock-upgrade`` runs ``--fresh``) is described in the README: write the lock from
a fresh resolution, run ``make test`` (which reinstalls from the new lock), commit both together.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
HEADER = (
    "# Exact versions `make install` installs (pip constraints). Written by `python scripts/lock.py`\n"
    "# from a venv whose `make test` passed; upgrade with `make lock-upgrade` (see README).\n"
)


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The runtime and ``dev`` requirements declared in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("dev", []))
    return [Requirement(r) for r in declared]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Every installed distribution the roots need, transitively: normalised name → version.

    Raises ``LookupError`` naming a required package that is not installed.
    """
    found: dict[str, str] = {}
    todo = [(r, set(r.extras)) for r in roots if r.marker is None or r.marker.evaluate()]
    while todo:
        requirement, extras = todo.pop()
        name = normalise(requirement.name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise LookupError(f"{requirement.name} is required but not installed") from None
        known = name in found
        found[name] = dist.version
        for raw in dist.requires or []:
            child = Requirement(raw)
            if child.marker is not None and not any(
                child.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                continue
            if not known or child.extras:
                todo.append((child, set(child.extras)))
    return found


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """The lock file as normalised name → version."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalise(name)] = version.strip()
    return pins


def write_lock(pins: dict[str, str], path: Path = LOCK) -> None:
    lines = [f"{name}=={version}\n" for name, version in sorted(pins.items())]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")


def differences(installed: dict[str, str], locked: dict[str, str]) -> list[str]:
    """What differs between the installed closure and the lock, one sentence each."""
    problems = []
    for name in sorted(installed.keys() | locked.keys()):
        if name not in locked:
            problems.append(f"{name} {installed[name]} is installed and required but not in the lock")
        elif name not in installed:
            problems.append(f"{name}=={locked[name]} is locked but no longer required")
        elif installed[name] != locked[name]:
            problems.append(f"{name} {installed[name]} is installed, the lock says {locked[name]}")
    return problems


def fresh() -> int:
    """Resolve the newest versions pyproject.toml allows in a throw-away venv and lock them."""
    with tempfile.TemporaryDirectory(prefix="yijing-lock-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", "pip", "packaging"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
        return subprocess.run([str(python), __file__], check=False).returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare the installed packages with the lock")
    mode.add_argument("--fresh", action="store_true", help="resolve anew in a throw-away venv and lock")
    args = parser.parse_args(argv)
    if args.fresh:
        return fresh()
    installed = closure(project_requirements())
    if args.check:
        problems = differences(installed, read_lock())
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    write_lock(installed)
    print(f"wrote {LOCK.name}: {len(installed)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
