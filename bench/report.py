"""The README's performance section, from the last benchmark runs' JSON.

``python -m bench.report`` prints the section (Markdown) built from ``bench/results/latest.json``
(``python -m bench.run``) and ``bench/results/growth.json`` (``python -m bench.run --growth``);
``--write-readme`` puts it into README.md between the markers :data:`START` and :data:`END`,
leaving the rest of the file alone. Run it after the final benchmark run and commit README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.breakdown import PARTS
from bench.growth import FLAG_FACTOR
from bench.harness import API_WORKER_RSS_LIMIT_MB, REPO_ROOT, RESULTS_DIR

START = "<!-- bench:performance:start (python -m bench.report --write-readme rewrites this part) -->"
END = "<!-- bench:performance:end -->"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _size(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def _latencies(row: dict[str, Any]) -> tuple[str, str]:
    """p50 and p99, or "-" for a run in which not one request was answered."""
    if row.get("requests") == 0:
        return "-", "-"
    return _num(row.get("p50_ms"), ".2f"), _num(row.get("p99_ms"), ".2f")


def markdown_table(head: list[str], rows: list[list[str]], left: int = 2) -> str:
    """A Markdown table; ``|`` inside a cell is escaped; columns after the first ``left`` align right."""

    def cells(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    align = ["---" if i < left else "---:" for i in range(len(head))]
    return "\n".join([cells(head), "|" + "|".join(align) + "|", *(cells(r) for r in rows)])


def results_table(latest: dict[str, Any]) -> str:
    """``latest.json``'s rows as a Markdown table (an API worker above the limit is marked **!**)."""
    rows = []
    for r in latest.get("results", []):
        errors = (r.get("non_2xx") or 0) + sum((r.get("socket_errors") or {}).values())
        api = r.get("api_worker_rss_mb")
        api_text = _num(api, ".0f") + (" **!**" if api is not None and api > API_WORKER_RSS_LIMIT_MB else "")
        rows.append(
            [
                f"`{r['scenario']}`",
                r.get("target") or "",
                _num(r.get("rps"), ",.0f"),
                *_latencies(r),
                _num(r.get("ratio"), ".2f"),
                str(errors),
                api_text,
                _num(r.get("rq_worker_rss_mb"), ".0f"),
            ]
        )
    head = ["scenario", "target", "req/s", "p50 ms", "p99 ms", "× baseline", "errors", "API MB", "RQ MB"]
    return markdown_table(head, rows)


def growth_table(growth: dict[str, Any]) -> str:
    """``growth.json``'s rows as a Markdown table (a factor ≥ FLAG_FACTOR per ×10 is marked **!**)."""

    def factor(f: float | None) -> str:
        return "-" if f is None else f"×{f:.2f}" + (" **!**" if f >= FLAG_FACTOR else "")

    rows = [
        [
            f"`{r['path']}`",
            f"`{r['measurement']}`",
            f"{_size(r['size'])} {r['what']}",
            _num(r.get("rps"), ",.0f"),
            *_latencies(r),
            factor(r.get("p50_factor_per_10x")),
            factor(r.get("p99_factor_per_10x")),
        ]
        for r in growth.get("rows", [])
    ]
    head = ["hot path", "measurement", "size", "req/s", "p50 ms", "p99 ms", "p50 per ×10", "p99 per ×10"]
    return markdown_table(head, rows)


Rows = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Goal:
    """One of the performance issue's goals, read off a run's rows."""

    what: str
    text: str  # the goal as written, e.g. "≥ 0.6× baseline"
    value: Callable[[Rows], float | None]
    limit: float
    at_least: bool  # True: the value must be ≥ limit; False: ≤ limit
    unit: str = ""


def _field(row: str, name: str) -> Callable[[Rows], float | None]:
    return lambda rows: rows.get(row, {}).get(name)


def _p99_over_raw(rows: Rows) -> float | None:
    one, raw = rows.get("on_duty:http_1client", {}), rows.get("on_duty:geosearch_raw", {})
    if not one.get("p99_ms") or not raw.get("p99_ms"):
        return None
    return one["p99_ms"] / raw["p99_ms"]


def _largest_api_worker(rows: Rows) -> float | None:
    values = [r["api_worker_rss_mb"] for r in rows.values() if r.get("api_worker_rss_mb") is not None]
    return max(values, default=None)


#: The goals of the performance issue (issue 15), in its order.
GOALS = (
    Goal("the user's own page, `GET /api/v1/me`", "≥ 0.6× baseline", _field("me", "ratio"), 0.6, True, "×"),
    Goal("first feed page, anonymous", "≥ 0.6× baseline", _field("feed:anonymous", "ratio"), 0.6, True, "×"),
    Goal("first feed page, logged in", "≥ 0.5× baseline", _field("feed:logged_in", "ratio"), 0.5, True, "×"),
    Goal("on-duty search, 100,000 on duty", "≥ 0.5× baseline", _field("on_duty", "ratio"), 0.5, True, "×"),
    Goal("on-duty search, one client: p99 ÷ raw GEOSEARCH p99", "≤ 2", _p99_over_raw, 2.0, False, "×"),
    Goal("open tasks near a volunteer", "≥ 0.3× baseline", _field("tasks_list", "ratio"), 0.3, True, "×"),
    Goal(
        "50 accept a 5-slot task: p99", "≤ 100 ms", _field("tasks_accept_race", "p99_ms"), 100, False, " ms"
    ),
    Goal(
        "first ring of a nearby dispatch: p50",
        "≤ 3 ms",
        _field("tasks_nearby_dispatch", "p50_ms"),
        3,
        False,
        " ms",
    ),
    Goal("delivery ÷ direct posts", "≥ 0.7×", _field("fanout:delivered", "ratio"), 0.7, True, "×"),
    Goal(
        "district dashboard, cached",
        "≥ 0.5× baseline",
        _field("reports_district_summary", "ratio"),
        0.5,
        True,
        "×",
    ),
    Goal(
        "city dashboard, not cached: p50",
        "≤ 300 ms",
        _field("reports_city_summary_uncached", "p50_ms"),
        300,
        False,
        " ms",
    ),
    Goal(
        "largest API worker's memory",
        f"< {API_WORKER_RSS_LIMIT_MB:.0f} MB",
        _largest_api_worker,
        150,
        False,
        " MB",
    ),
)


def goals_table(latest: dict[str, Any]) -> str:
    """Each goal with the run's figure and whether it is met ("-": the row was not in the run)."""
    rows = {r["scenario"]: r for r in latest.get("results", [])}
    out = []
    for goal in GOALS:
        value = goal.value(rows)
        if value is None:
            figure, met = "-", "-"
        else:
            figure = f"{value:,.2f}{goal.unit}" if goal.unit == "×" else f"{value:,.1f}{goal.unit}"
            met = "yes" if (value >= goal.limit if goal.at_least else value <= goal.limit) else "**no**"
        out.append([goal.what, goal.text, figure, met])
    return markdown_table(["goal", "wanted", "this run", "met"], out)


def breakdown_table(latest: dict[str, Any]) -> str:
    """``latest.json``'s per-request breakdowns: parts as rows, requests as columns (µs)."""
    items = latest.get("breakdown") or []
    if not items:
        return ""

    def row(name: str, key: Callable[[dict[str, Any]], float]) -> list[str]:
        return [name, *(f"{key(b):,.0f}" for b in items)]

    lines = [
        row("whole request, plain: wall", lambda b: b["plain_wall_us"]),
        row("whole request, plain: CPU", lambda b: b["plain_cpu_us"]),
        *(
            row(part, lambda b, part=part: b["parts_us"].get(part, 0.0))
            for part in PARTS
            if any(b["parts_us"].get(part, 0.0) >= 0.5 for b in items)
        ),
        row("added by the timing", lambda b: b["overhead_us"]),
    ]
    return markdown_table(["µs per request", *(f"`{b['label']}`" for b in items)], lines, left=1)


def _how(meta: dict[str, Any]) -> str:
    wrk, gun = meta.get("wrk", {}), meta.get("gunicorn", {})
    env = "".join(f"{k}={v} " for k, v in (meta.get("bench_env") or {}).items())
    parts = [
        f"`{env}{meta.get('command', 'python -m bench.run')}`",
        f"started {meta.get('started_at', '?')}",
        f"{meta.get('cpu_count', '?')} CPUs",
        f"gunicorn {gun.get('worker_class', '?')} ×{gun.get('workers', '?')}",
        f"wrk -t{wrk.get('threads', '?')} -c{wrk.get('connections', '?')} -d{wrk.get('duration_s', '?')}s",
    ]
    text = ", ".join(parts)
    if meta.get("failed"):
        text += f". **The run failed** (rows up to the failure): {meta['failed'].splitlines()[0]}"
    return text


def _ceiling(latest: dict[str, Any]) -> list[str]:
    """The sentences on the reference rows: ``baseline:redis_get`` (the ceiling of an endpoint that
    reads Redis once), the bare app from one client (the floor of the on-duty one-client goal) and
    raced by the accept race's client (the floor under that race's p99), and what any nearby ring
    must do on this stack (the floor under the ring's p50)."""
    rows = {r["scenario"]: r for r in latest.get("results", [])}
    out = []
    row = rows.get("baseline:redis_get")
    if row is not None and row.get("ratio") is not None:
        out += [
            f"The same bare app answering the bytes of one Redis GET (`baseline:redis_get`) ran at "
            f"**{row['ratio']:.2f}×** the constant: no endpoint that reads Redis once can do better on "
            f"this machine, before it authenticates, logs or checks anything.",
            "",
        ]
    const, get, raw = (
        rows.get(name, {}).get("p99_ms")
        for name in ("baseline:constant_1client", "baseline:redis_get_1client", "on_duty:geosearch_raw")
    )
    if const and get and raw:
        out += [
            f"From one HTTP client (the on-duty scenario's), the bare app answered its constant with p99 "
            f"{const:.2f} ms and one Redis GET with p99 {get:.2f} ms: **{get / raw:.2f}×** the raw "
            f"GEOSEARCH's p99 ({raw:.2f} ms) before any endpoint's own work; the one-client goal allows 2×.",
            "",
        ]
    race, floor = rows.get("tasks_accept_race", {}).get("p99_ms"), rows.get("baseline:constant_race", {})
    if race and floor.get("p99_ms"):
        out += [
            f"The accept race's client racing the bare app's constant the same way "
            f"(`baseline:constant_race`, 50 at once) waited p50 {floor['p50_ms']:.1f} ms, p99 "
            f"{floor['p99_ms']:.1f} ms: the floor under the race's p99 of {race:.1f} ms.",
            "",
        ]
    ring = rows.get("tasks_nearby_dispatch", {}).get("p50_ms")
    floor = rows.get("tasks_nearby_dispatch:floor", {})
    if ring and floor.get("p50_ms"):
        out += [
            f"What any nearby ring must do on this stack (`tasks_nearby_dispatch:floor`: the same GEO "
            f"search, one INSERT of the ring's row, its invitations and their messages, the same jobs "
            f"enqueued) took p50 {floor['p50_ms']:.2f} ms in the same run: the ring's p50 of {ring:.2f} ms "
            f"is **{ring / floor['p50_ms']:.2f}×** its floor.",
            "",
        ]
    return out


def section(
    latest: dict[str, Any] | None, growth: dict[str, Any] | None, note: str = "", kept_growth: str = ""
) -> str:
    """The performance section's body (between the markers); ``note``: a sentence about the runs;
    ``kept_growth``: the growth part to keep when there is no growth run (:func:`growth_part`)."""
    out = [
        "Refresh: `make bench` (all scenarios) and `make bench-growth`, then "
        "`python -m bench.report --write-readme`. How to read the columns: `bench/README.md`.",
        "",
    ]
    if note:
        out += [f"**Note:** {note}", ""]
    if latest:
        out += [
            f"Latest run: {_how(latest.get('meta', {}))}. req/s ÷ a bare Flask app's in the same run is "
            f"× baseline; API MB / RQ MB are the largest API (gunicorn) / RQ worker's resident memory "
            f"after the row; an API worker must stay under {API_WORKER_RSS_LIMIT_MB:.0f} MB.",
            "",
            results_table(latest),
            "",
            "The performance issue's goals against this run:",
            "",
            goals_table(latest),
            "",
            *_ceiling(latest),
        ]
        if latest.get("breakdown"):
            out += [
                "Where a request's time goes (`bench/breakdown.py`: each wrk row's request replayed "
                "in-process, wall time split into exclusive parts):",
                "",
                breakdown_table(latest),
                "",
            ]
    else:
        out += ["No benchmark run recorded yet (`bench/results/latest.json` is missing).", ""]
    if growth:
        out += [
            f'Growth: {_how(growth.get("meta", {}))}. Each hot path at sizes ×10 apart; "per ×10" is '
            f"how much the latency grows per ×10 of the size (log n grows ×1.25 from 10k to 100k); "
            f"**!** marks ×{FLAG_FACTOR:.0f} or more.",
            "",
            growth_table(growth),
            "",
        ]
    elif kept_growth:
        out += [kept_growth.strip("\n"), ""]
    else:
        out += ["No growth run recorded yet (`bench/results/growth.json` is missing).", ""]
    return "\n".join(out)


def growth_part(readme: str) -> str:
    """The growth part of ``readme``'s performance section (from its "Growth: " line to the end
    marker), or "" when it has none: a README rewritten without a growth run keeps it, since a
    full growth run takes hours."""
    start = readme.find(START)
    end = readme.find(END)
    if start < 0 or end < start:
        return ""
    inside = readme[start + len(START) : end]
    at = inside.find("\nGrowth: ")
    return inside[at + 1 :] if at >= 0 else ""


def rewrite(readme: str, body: str) -> str:
    """``readme`` with everything between START and END replaced by ``body``."""
    start = readme.find(START)
    end = readme.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"README.md lacks the markers {START!r} … {END!r} (in that order)")
    return readme[: start + len(START)] + "\n\n" + body.strip("\n") + "\n\n" + readme[end:]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("--latest", type=Path, default=RESULTS_DIR / "latest.json")
    p.add_argument("--growth", type=Path, default=RESULTS_DIR / "growth.json")
    p.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    p.add_argument("--write-readme", action="store_true", help="rewrite README.md's performance section")
    p.add_argument("--note", default="", help="a sentence about the runs (e.g. the machine was busy)")
    args = p.parse_args(argv)
    growth = _load(args.growth)
    if not args.write_readme:
        print(section(_load(args.latest), growth, args.note))
        return 0
    try:
        readme = args.readme.read_text()
        body = section(_load(args.latest), growth, args.note, "" if growth else growth_part(readme))
        args.readme.write_text(rewrite(readme, body))
    except ValueError as exc:
        print(f"bench.report: {exc}", file=sys.stderr)
        return 1
    print(f"bench.report: rewrote the performance section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
