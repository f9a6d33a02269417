"""The benchmark harness's pure parts: the results table, growth factors, the README section.

No wrk, no servers: these build Result rows by hand and check what the harness prints and writes.
"""

from __future__ import annotations

import itertools
import json

import pytest

from bench import report
from bench.growth import (
    FLAG_FACTOR,
    GrowthRow,
    add_factors,
    factor_per_10x,
    format_growth_table,
    sizes_to_run,
)
from bench.harness import API_WORKER_RSS_LIMIT_MB, Result, median_result, rss_mb, worker_rss_mb
from bench.run import format_table


def _row(name: str, **kw) -> Result:
    values = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0, "target": f"GET /{name}"}
    values.update(kw)
    return Result(scenario=name, **values)


# -- the results table --------------------------------------------------------------------------


def test_table_has_every_row_and_the_memory_columns():
    rows = [
        _row("baseline:constant", rps=7000.0, ratio=1.0, api_worker_rss_mb=31.4),
        _row("me", rps=2520.0, ratio=0.36, api_worker_rss_mb=88.6),
        _row("fanout:delivered", kind="python", api_worker_rss_mb=90.0, rq_worker_rss_mb=120.2),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split()[-4:] == ["API", "MB", "RQ", "MB"]
    body = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(body) == {"baseline:constant", "me", "fanout:delivered"}
    assert body["me"][-2:] == ["89", "-"]  # no RQ worker in that scenario
    assert body["fanout:delivered"][-2:] == ["90", "120"]
    assert body["baseline:constant"][3] == "7,000"  # scenario, "GET", path, req/s
    assert not any(line.startswith("!") for line in lines)


def test_table_flags_an_api_worker_above_the_limit():
    heavy = API_WORKER_RSS_LIMIT_MB + 12
    text = format_table([_row("me", api_worker_rss_mb=heavy), _row("feed:anonymous", api_worker_rss_mb=60.0)])
    me_line = next(line for line in text.splitlines() if line.startswith("me "))
    assert me_line.split()[-3:] == [f"{heavy:.0f}", "!", "-"]
    assert text.splitlines()[-1] == f"! an API worker above {API_WORKER_RSS_LIMIT_MB:.0f} MB after: me"


def test_result_json_carries_memory_and_the_flag():
    over = _row("me", api_worker_rss_mb=API_WORKER_RSS_LIMIT_MB + 1, rq_worker_rss_mb=None).as_dict()
    under = _row("me", api_worker_rss_mb=API_WORKER_RSS_LIMIT_MB - 1).as_dict()
    assert over["api_worker_over_limit"] is True and over["rq_worker_rss_mb"] is None
    assert under["api_worker_over_limit"] is False
    json.dumps(over)  # a row must be JSON as it is


def test_median_keeps_the_largest_memory_of_the_rounds():
    rounds = [_row("me", api_worker_rss_mb=m, rq_worker_rss_mb=q) for m, q in ((80.0, None), (95.0, 40.0))]
    merged = median_result(rounds)
    assert (merged.api_worker_rss_mb, merged.rq_worker_rss_mb) == (95.0, 40.0)


def test_rss_of_this_process_and_of_a_process_without_children(tmp_path):
    import os

    assert rss_mb(os.getpid()) > 1
    assert worker_rss_mb(os.getpid()) is None or worker_rss_mb(os.getpid()) > 0
    assert rss_mb(2**22 + 12345) is None  # no such process


# -- growth ---------------------------------------------------------------------------------------


def test_factor_per_10x():
    assert factor_per_10x(10_000, 2.0, 100_000, 3.0) == pytest.approx(1.5)
    # two orders of magnitude apart: the factor per single ×10
    assert factor_per_10x(10_000, 1.0, 1_000_000, 4.0) == pytest.approx(2.0)
    assert factor_per_10x(10_000, 0.0, 100_000, 3.0) is None
    assert factor_per_10x(100_000, 1.0, 10_000, 3.0) is None


def test_add_factors_compares_each_measurement_with_its_own_smaller_size():
    rows = [
        GrowthRow("on_duty_search", "on duty", size, _row(name, p50_ms=p50, p99_ms=p99))
        for size, name, p50, p99 in [
            (100_000, "on_duty", 1.2, 2.4),
            (10_000, "on_duty", 1.0, 2.0),
            (1_000_000, "on_duty", 3.0, 2.4),
            (10_000, "on_duty:geosearch_raw", 0.1, 0.2),
            (100_000, "on_duty:geosearch_raw", 0.1, 0.2),
        ]
    ]
    add_factors(rows)
    got = {(r.result.scenario, r.size): (r.p50_factor, r.p99_factor) for r in rows}
    assert got[("on_duty", 10_000)] == (None, None)
    assert got[("on_duty", 100_000)] == (pytest.approx(1.2), pytest.approx(1.2))
    assert got[("on_duty", 1_000_000)] == (pytest.approx(2.5), pytest.approx(1.0))
    assert got[("on_duty:geosearch_raw", 100_000)] == (pytest.approx(1.0), pytest.approx(1.0))
    flagged = [(r.result.scenario, r.size) for r in rows if r.flagged]
    assert flagged == [("on_duty", 1_000_000)]  # 2.5 ≥ FLAG_FACTOR
    assert FLAG_FACTOR <= 2.5


def test_growth_table_shows_sizes_and_factors():
    rows = add_factors(
        [
            GrowthRow("tasks_list", "open tasks", 1_000, _row("tasks_list", p50_ms=10.0, p99_ms=20.0)),
            GrowthRow("tasks_list", "open tasks", 10_000, _row("tasks_list", p50_ms=30.0, p99_ms=30.0)),
        ]
    )
    lines = format_growth_table(rows).splitlines()
    assert "p50 per ×10" in lines[0]
    assert "1k open tasks" in lines[2] and lines[2].rstrip().endswith("-")
    assert "10k open tasks" in lines[3] and lines[3].split()[-3:] == ["×3.00", "!", "×1.50"]
    row = rows[1].as_dict()
    assert (row["size"], row["p50_factor_per_10x"], row["faster_than_log"]) == (10_000, 3.0, True)


def test_sizes_to_run_ascending_and_capped():
    assert sizes_to_run((1_000_000, 10_000, 100_000), None) == [10_000, 100_000, 1_000_000]
    assert sizes_to_run((10_000, 100_000, 1_000_000), 100_000) == [10_000, 100_000]


def test_every_growth_path_is_registered_with_sizes_ten_times_apart():
    from bench.scenarios import GROWTH

    assert set(GROWTH) >= {
        "on_duty_search",
        "nearby_dispatch",
        "tasks_list",
        "feed_first_page",
        "broadcast_fanout",
    }
    for growth in GROWTH.values():
        assert list(growth.sizes) == sorted(growth.sizes) and len(growth.sizes) >= 2
        assert all(b == 10 * a for a, b in itertools.pairwise(growth.sizes))
        assert callable(growth.run)


# -- the README section ---------------------------------------------------------------------------

LATEST = {
    "meta": {
        "command": "python -m bench.run --duration 8",
        "bench_env": {"BENCH_FANOUT_N": "10000"},
        "started_at": "2026-12-01T04:00:00+00:00",
        "cpu_count": 2,
        "wrk": {"threads": 2, "connections": 32, "duration_s": 8},
        "gunicorn": {"worker_class": "sync", "workers": 2},
    },
    "results": [
        _row("baseline:constant", rps=7200.0, ratio=1.0, api_worker_rss_mb=30.0).as_dict(),
        _row("me", rps=2600.0, ratio=0.361, api_worker_rss_mb=160.0).as_dict(),
        _row("fanout:delivered", rps=900.0, rq_worker_rss_mb=110.0, kind="python").as_dict(),
    ],
}
GROWTH_JSON = {
    "meta": {"command": "python -m bench.run --growth"},
    "rows": [
        {
            "path": "feed_first_page",
            "measurement": "feed:anonymous",
            "what": "posts",
            "size": 10_000,
            "rps": 2000.0,
            "p50_ms": 5.0,
            "p99_ms": 9.0,
            "p50_factor_per_10x": None,
            "p99_factor_per_10x": None,
        },
        {
            "path": "feed_first_page",
            "measurement": "feed:anonymous",
            "what": "posts",
            "size": 100_000,
            "rps": 1900.0,
            "p50_ms": 5.5,
            "p99_ms": 20.0,
            "p50_factor_per_10x": 1.1,
            "p99_factor_per_10x": 2.22,
        },
    ],
}


def test_section_holds_both_tables_and_the_commands():
    text = report.section(LATEST, GROWTH_JSON)
    assert "`BENCH_FANOUT_N=10000 python -m bench.run --duration 8`" in text
    assert "`python -m bench.run --growth`" in text
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(table) == 5
    me = next(line for line in table if line.startswith("| `me`"))
    assert "| 2,600 |" in me and "| 0.36 |" in me and "160 **!**" in me
    fanout = next(line for line in table if line.startswith("| `fanout:delivered`"))
    assert fanout.endswith("| - | 110 |")
    grown = next(line for line in table if "100k posts" in line)
    assert "×1.10 |" in grown and "×2.22 **!**" in grown


def test_section_without_runs_says_so():
    text = report.section(None, None)
    assert "latest.json` is missing" in text and "growth.json` is missing" in text
    assert "**Note:** a busy machine" in report.section(None, None, note="a busy machine")


def test_rewrite_replaces_only_between_the_markers():
    readme = f"# Title\n\n## Performance\n\n{report.START}\nold table\n{report.END}\n\n## Next\nkept\n"
    once = report.rewrite(readme, "new body\n")
    assert (
        once == f"# Title\n\n## Performance\n\n{report.START}\n\nnew body\n\n{report.END}\n\n## Next\nkept\n"
    )
    assert report.rewrite(once, "new body") == once  # idempotent
    with pytest.raises(ValueError, match="markers"):
        report.rewrite("# no markers\n", "body")


def test_write_readme_from_json_files(tmp_path):
    (tmp_path / "latest.json").write_text(json.dumps(LATEST))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\n{report.END}\nend\n")  # no growth part to keep
    argv = ["--latest", str(tmp_path / "latest.json"), "--growth", str(tmp_path / "none.json")]
    assert report.main([*argv, "--readme", str(readme), "--write-readme"]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{report.END}\nend\n")
    assert "| `me` |" in text and "growth.json` is missing" in text


def test_write_readme_without_a_growth_run_keeps_the_growth_part(tmp_path):
    """A full growth run takes hours: a README rewritten from a new latest.json alone keeps the
    growth table it had; with a growth run the table is the run's."""
    (tmp_path / "latest.json").write_text(json.dumps(LATEST))
    readme = tmp_path / "README.md"
    old = "Growth: an earlier run.\n\n| path | size |\n|---|---|\n| feed | 10k |\n"
    readme.write_text(f"intro\n{report.START}\n\nold latest table\n\n{old}\n{report.END}\nend\n")
    argv = ["--latest", str(tmp_path / "latest.json"), "--readme", str(readme), "--write-readme"]
    assert report.main([*argv, "--growth", str(tmp_path / "none.json")]) == 0
    text = readme.read_text()
    assert "old latest table" not in text and "| `me` |" in text
    assert f"{old}\n{report.END}\nend\n" in text and "growth.json` is missing" not in text
    assert report.main([*argv, "--growth", str(tmp_path / "none.json")]) == 0
    assert readme.read_text() == text  # idempotent
    (tmp_path / "growth.json").write_text(json.dumps(GROWTH_JSON))
    assert report.main([*argv, "--growth", str(tmp_path / "growth.json")]) == 0
    assert "Growth: an earlier run." not in readme.read_text() and "100k posts" in readme.read_text()


def test_the_project_readme_has_the_markers():
    from bench.harness import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    assert text.index(report.START) < text.index(report.END)


def test_a_run_without_one_answer_shows_no_latency():
    rows = [_row("tasks_list", rps=0.0, p50_ms=0.0, p99_ms=0.0, requests=0), _row("me", requests=100)]
    lines = format_table(rows).splitlines()
    assert lines[2].split()[4:6] == ["-", "-"] and lines[3].split()[4:6] == ["1.00", "2.00"]
    assert any("not one answer" in line for line in lines)
    md = report.results_table({"results": [r.as_dict() for r in rows]})
    assert "| 0 | - | - |" in md
    grown = add_factors(
        [
            GrowthRow("tasks_list", "open tasks", 1_000, _row("tasks_list", requests=9)),
            GrowthRow("tasks_list", "open tasks", 10_000, rows[0]),
        ]
    )
    assert grown[1].p50_factor is None and format_growth_table(grown).splitlines()[3].split()[6:8] == [
        "-",
        "-",
    ]


def _json_row(name: str, **kw) -> dict:
    return {"scenario": name, "rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "ratio": None, **kw}


def test_goals_are_read_off_the_rows_and_judged():
    latest = {
        "results": [
            _json_row("me", ratio=0.61, api_worker_rss_mb=120.0),
            _json_row("tasks_list", ratio=0.12, api_worker_rss_mb=151.0),
            _json_row("tasks_accept_race", p99_ms=80.0),
            _json_row("on_duty:geosearch_raw", p99_ms=0.5),
            _json_row("on_duty:http_1client", p99_ms=1.5),
        ]
    }
    lines = {line.split(" | ")[0].lstrip("| "): line for line in report.goals_table(latest).splitlines()}
    assert lines["the user's own page, `GET /api/v1/me`"].endswith("| 0.61× | yes |")
    assert lines["open tasks near a volunteer"].endswith("| 0.12× | **no** |")
    assert lines["50 accept a 5-slot task: p99"].endswith("| 80.0 ms | yes |")
    assert lines["on-duty search, one client: p99 ÷ raw GEOSEARCH p99"].endswith("| 3.00× | **no** |")
    assert lines["largest API worker's memory"].endswith("| 151.0 MB | **no** |")
    assert lines["delivery ÷ direct posts"].endswith("| - | - |")  # not in this run
    assert len(lines) == len(report.GOALS) + 2  # header and rule


def test_the_section_states_the_one_redis_get_ceiling_when_it_was_measured():
    with_it = {
        "results": [_json_row("baseline:constant", ratio=1.0), _json_row("baseline:redis_get", ratio=0.47)]
    }
    assert "(`baseline:redis_get`) ran at **0.47×** the constant" in report.section(with_it, None)
    without = {"results": [_json_row("baseline:constant", ratio=1.0)]}
    assert "baseline:redis_get" not in report.section(without, None)


def test_the_section_states_the_one_client_floor_against_the_raw_search_when_it_was_measured():
    rows = [
        _json_row("on_duty:geosearch_raw", p99_ms=0.5),
        _json_row("baseline:constant_1client", p99_ms=0.9),
        _json_row("baseline:redis_get_1client", p99_ms=1.25),
    ]
    text = report.section({"results": rows}, None)
    assert "constant with p99 0.90 ms and one Redis GET with p99 1.25 ms: **2.50×**" in text
    assert "the one-client goal allows 2×" in text
    assert "From one HTTP client" not in report.section({"results": rows[:2]}, None)


def test_the_section_states_the_accept_race_floor_when_it_was_measured():
    rows = [
        _json_row("tasks_accept_race", p99_ms=150.0),
        _json_row("baseline:constant_race", p50_ms=20.0, p99_ms=60.0),
    ]
    text = report.section({"results": rows}, None)
    assert "waited p50 20.0 ms, p99 60.0 ms: the floor under the race's p99 of 150.0 ms" in text
    assert "constant_race" not in report.section({"results": rows[:1]}, None)


def test_the_section_states_the_nearby_ring_floor_when_it_was_measured():
    rows = [
        _json_row("tasks_nearby_dispatch", p50_ms=4.5),
        _json_row("tasks_nearby_dispatch:floor", p50_ms=3.0),
    ]
    text = report.section({"results": rows}, None)
    assert "took p50 3.00 ms in the same run: the ring's p50 of 4.50 ms is **1.50×** its floor" in text
    assert "tasks_nearby_dispatch:floor" not in report.section({"results": rows[:1]}, None)


def test_the_breakdown_table_has_a_column_per_request_and_skips_unused_parts():
    parts = dict.fromkeys(report.PARTS, 0.0) | {"redis": 250.0, "framework": 300.0}
    item = {
        "label": "me",
        "plain_wall_us": 600.0,
        "plain_cpu_us": 500.0,
        "overhead_us": 40.0,
        "parts_us": parts,
    }
    table = report.breakdown_table({"breakdown": [item, {**item, "label": "feed:anonymous"}]})
    lines = table.splitlines()
    assert lines[0] == "| µs per request | `me` | `feed:anonymous` |"
    assert lines[1] == "|---|---:|---:|"
    assert "| redis | 250 | 250 |" in lines
    assert not any(line.startswith("| postgres") for line in lines)
    assert report.breakdown_table({}) == ""
