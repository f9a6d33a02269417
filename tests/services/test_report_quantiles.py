"""A period's medians and 90th percentiles, selected from its days' histograms without adding
them up, are those of the whole list of values."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from yijing.services.reports import _quantiles


def _histogram(values: list[int]) -> tuple[list[int], list[int]]:
    """A day's histogram as the rollup stores it: distinct values ascending, how many had each."""
    distinct = sorted(set(values))
    return distinct, [values.count(value) for value in distinct]


@pytest.mark.parametrize("seed", range(40))
def test_quantiles_of_several_days_are_those_of_all_their_values(seed):
    rng = random.Random(seed)
    spread = rng.choice([3, 50, 3600])
    days = [[rng.randint(0, spread) for _ in range(rng.randint(0, 40))] for _ in range(rng.randint(1, 30))]
    everything = sorted(value for day in days for value in day)
    got = _quantiles([_histogram(day) for day in days])
    if not everything:
        assert (got.count, got.median, got.p90) == (0, None, None)
        return
    assert got.count == len(everything)
    assert got.median == statistics.median(everything)
    assert got.p90 == everything[max(1, math.ceil(0.9 * len(everything))) - 1]


def test_an_even_count_takes_the_mean_of_two_different_middle_values():
    got = _quantiles([([1, 10], [1, 1]), ([20, 40], [1, 1])])
    assert (got.count, got.median, got.p90) == (4, 15.0, 40.0)


def test_a_single_value_and_empty_days():
    got = _quantiles([([], []), ([7], [3]), ([], [])])
    assert (got.count, got.median, got.p90) == (3, 7.0, 7.0)
    assert _quantiles([]).median is None
