"""The mutation report's interval for a fair draw (tests/mutation/report.py): Clopper-Pearson's
exact interval, checked for coverage against known shares."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

_path = Path(__file__).with_name("report.py")
_spec = importlib.util.spec_from_file_location("mutation_report", _path)
assert _spec and _spec.loader
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def coverage(n: int, share: float) -> float:
    """The exact probability that a draw of n from a module whose tests kill ``share`` of its
    mutants gives an interval holding ``share``."""
    intervals = [report.exact_interval(k, n) for k in range(n + 1)]
    return sum(math.comb(n, k) * share**k * (1 - share) ** (n - k)
               for k, (lo, hi) in enumerate(intervals) if lo <= share <= hi)


@pytest.mark.parametrize("n", [10, 14, 15, 57])
def test_the_interval_covers_the_true_kill_rate_at_least_95_percent_of_the_time(n):
    for share in [0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99]:
        assert coverage(n, share) >= 0.95, (n, share)


def test_it_is_not_wider_than_exact_needs():
    # the exact interval is conservative, not arbitrarily so: at n = 15 its coverage stays
    # under 99.5% for shares near the target
    assert coverage(15, 0.9) < 0.995


def test_the_ends_are_clopper_pearsons():
    # all killed: the lower end solves p^n = 0.025; none killed: (1 - p)^n = 0.025
    assert report.exact_interval(14, 14) == (pytest.approx(0.025 ** (1 / 14)), 1.0)
    assert report.exact_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    beta = pytest.importorskip("scipy.stats").beta
    for k, n in [(13, 14), (11, 15), (53, 57), (7, 10)]:
        lo, hi = report.exact_interval(k, n)
        assert lo == pytest.approx(beta.ppf(0.025, k, n - k + 1), abs=1e-12)
        assert hi == pytest.approx(beta.ppf(0.975, k + 1, n - k), abs=1e-12)


@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_the_interval_holds_the_share_seen(draw):
    k, n = draw
    lo, hi = report.exact_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_an_impossible_count_is_refused():
    with pytest.raises(ValueError, match="16 of 15"):
        report.exact_interval(16, 15)
