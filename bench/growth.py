"""Growth mode: each hot path at sizes an order of magnitude apart, and how its cost grows per ×10.

``python -m bench.run --growth`` (``make bench-growth``) calls every ``bench.harness.Growth`` that
the scenario modules list in ``GROWTH``, at each of its sizes from the smallest up, and writes
``bench/results/growth.json``. A path whose latency grows at most logarithmically with the size of
the city shows a factor per ×10 close to 1 (from 10k to 100k, log n grows ×1.25); a factor at or
above :data:`FLAG_FACTOR` is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.harness import Result

#: A p50 or p99 that grows by this much or more per ×10 of the size is flagged as growing faster
#: than logarithmically (noise on a shared machine alone seldom doubles a latency).
FLAG_FACTOR = 2.0


@dataclass
class GrowthRow:
    """One measurement of one hot path at one size."""

    path: str
    what: str
    size: int
    result: Result
    seconds: float = 0.0  # seeding and measuring this size took
    p50_factor: float | None = None  # per ×10 of the size, against the previous size
    p99_factor: float | None = None

    @property
    def flagged(self) -> bool:
        return any(f is not None and f >= FLAG_FACTOR for f in (self.p50_factor, self.p99_factor))

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "path": self.path,
            "what": self.what,
            "size": self.size,
            "measurement": r.scenario,
            "kind": r.kind,
            "target": r.target,
            "requests": r.requests,
            "rps": r.rps,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "p50_factor_per_10x": self.p50_factor,
            "p99_factor_per_10x": self.p99_factor,
            "faster_than_log": self.flagged,
            "ratio": r.ratio,
            "baseline": r.baseline,
            "api_worker_rss_mb": r.api_worker_rss_mb,
            "rq_worker_rss_mb": r.rq_worker_rss_mb,
            "seconds": round(self.seconds, 1),
            "extra": r.extra,
        }


def factor_per_10x(size_a: int, value_a: float, size_b: int, value_b: float) -> float | None:
    """How much ``value`` grows per ×10 of the size between two sizes: (b/a)^(1 / log10(size_b/size_a)).

    Sizes exactly ×10 apart give plainly value_b / value_a. None when it cannot be computed (a zero
    value, or sizes that are not increasing).
    """
    if size_b <= size_a or size_a <= 0 or value_a <= 0 or value_b <= 0:
        return None
    return (value_b / value_a) ** (1.0 / math.log10(size_b / size_a))


def add_factors(rows: list[GrowthRow]) -> list[GrowthRow]:
    """Fill each row's factors against the same path and measurement at the next smaller size."""
    previous: dict[tuple[str, str], GrowthRow] = {}
    for row in sorted(rows, key=lambda r: (r.path, r.result.scenario, r.size)):
        key = (row.path, row.result.scenario)
        before = previous.get(key)
        if before is not None:
            row.p50_factor = factor_per_10x(before.size, before.result.p50_ms, row.size, row.result.p50_ms)
            row.p99_factor = factor_per_10x(before.size, before.result.p99_ms, row.size, row.result.p99_ms)
        previous[key] = row
    return rows


def _size(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def _factor(f: float | None) -> str:
    if f is None:
        return "-"
    return f"×{f:.2f}" + (" !" if f >= FLAG_FACTOR else "")


def format_growth_table(rows: Iterable[GrowthRow]) -> str:
    """The growth table: hot path × size → req/s, p50/p99 and their growth factor per ×10."""
    head = ("hot path", "measurement", "size", "req/s", "p50 ms", "p99 ms", "p50 per ×10", "p99 per ×10")
    body = []
    for row in rows:
        r = row.result
        body.append(
            (
                row.path,
                r.scenario,
                f"{_size(row.size)} {row.what}",
                f"{r.rps:,.0f}" if r.kind == "http" else f"{r.rps:,.0f}/s",
                *(("-", "-") if r.requests == 0 else (f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}")),
                _factor(row.p50_factor),
                _factor(row.p99_factor),
            )
        )
    return _align(head, body, left={0, 1, 2})


def _align(head: tuple[str, ...], body: list[tuple[str, ...]], left: set[int]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)])


def sizes_to_run(sizes: Iterable[int], max_size: int | None) -> list[int]:
    """The sizes of a path this run measures: ascending, none above ``max_size``."""
    return sorted(s for s in sizes if max_size is None or s <= max_size)


def measure_path(
    growth: Any,
    ctx: Any,
    sizes: list[int],
    *,
    before_each: Callable[[], None],
    after_each: Callable[[list[Result]], None],
    say: Callable[[str], None],
) -> list[GrowthRow]:
    """Run one hot path at each size; ``before_each`` flushes Redis, ``after_each`` reads memory."""
    import time

    rows = []
    for size in sizes:
        before_each()
        say(f"growth {growth.path}: {size:,} {growth.what}")
        started = time.perf_counter()
        results = growth.run(ctx, size)
        took = time.perf_counter() - started
        after_each(results)
        say(f"growth {growth.path}: {size:,} {growth.what} done in {took:.0f} s")
        rows.extend(GrowthRow(growth.path, growth.what, size, r, seconds=took) for r in results)
    return rows
