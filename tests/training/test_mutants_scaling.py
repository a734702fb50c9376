"""The scaling-law fitter on exact curves, its failure reasons and its bootstrap, against hand
computations (kills the mutants of training/study/scaling.py that test_scaling leaves)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")

import training.study.scaling as scaling
from training.study.scaling import (
    GRID_STARTS,
    bootstrap_fit,
    data_to_reach,
    fit_power_law,
    mean_interval,
)

SIZES = np.array([250, 500, 1000, 2000, 4000, 8000, 10000], dtype=float)


def curve(x, e_inf=0.2, b=0.3, c=0.6, x_ref=10000.0):
    return e_inf + b * (np.asarray(x, dtype=float) / x_ref) ** (-c)


def test_an_exact_curve_is_recovered_by_every_start():
    fit = fit_power_law(SIZES, curve(SIZES))
    assert fit.as_dict() == {
        "status": "ok", "reason": None,
        "e_inf": pytest.approx(0.2, abs=1e-9), "b": pytest.approx(0.3, rel=1e-9),
        "c": pytest.approx(0.6, rel=1e-9), "x_ref": 10000.0,
        "log_rmse": pytest.approx(0.0, abs=1e-9), "n_points": 7, "starts_agreeing": GRID_STARTS,
    }
    assert fit.predict([625.0]) == pytest.approx(0.2 + 0.3 * 16**0.6)


def test_log_rmse_is_the_root_mean_square_of_the_log_residuals():
    rng = np.random.default_rng(0)
    y = curve(SIZES) * np.exp(rng.normal(0, 0.02, len(SIZES)))
    fit = fit_power_law(SIZES, y)
    assert fit.ok
    residuals = np.log(fit.predict(SIZES)) - np.log(y)
    assert fit.log_rmse == pytest.approx(math.sqrt(np.mean(residuals**2)), rel=1e-6)


def test_four_distinct_sizes_are_enough_and_three_are_not():
    four = fit_power_law(SIZES[:4], curve(SIZES[:4]))
    assert four.ok and four.n_points == 4 and four.x_ref == 2000.0
    assert four.c == pytest.approx(0.6, rel=1e-6)
    # seeds repeat a size: 6 runs over 3 sizes are 3 points
    x = np.repeat(SIZES[:3], 2)
    three = fit_power_law(x, curve(x))
    assert three.as_dict() == {
        "status": "failed", "reason": "3 distinct sizes; a 3-parameter fit needs at least 4",
        "e_inf": None, "b": None, "c": None, "x_ref": None, "log_rmse": None,
        "n_points": 3, "starts_agreeing": 0,
    }


def test_inputs_that_cannot_be_fitted_are_named():
    with pytest.raises(ValueError) as caught:
        fit_power_law(SIZES, curve(SIZES)[:-1])
    assert str(caught.value) == "x and y differ in length"
    y = curve(SIZES)
    for bad_x, bad_y, reason in (
        (SIZES, np.where(SIZES == 1000, np.nan, y), "non-finite sizes or errors"),
        (np.where(SIZES == 1000, np.inf, SIZES), y, "non-finite sizes or errors"),
        (np.where(SIZES == 1000, 0.0, SIZES), y, "sizes and errors must be positive"),
        (SIZES, np.where(SIZES == 1000, 0.0, y), "sizes and errors must be positive"),
    ):
        fit = fit_power_law(bad_x, bad_y)
        assert (fit.status, fit.reason, fit.n_points) == ("failed", reason, 7)


def test_a_single_agreeing_start_is_a_failure_unless_agreement_is_waived():
    start = [(0.2, math.log(0.3), 0.6)]
    alone = fit_power_law(SIZES, curve(SIZES), starts=start)
    assert (alone.ok, alone.reason, alone.n_points, alone.starts_agreeing) == \
        (False, "only one start reached the best objective", 7, 1)
    waived = fit_power_law(SIZES, curve(SIZES), starts=start, require_agreement=False)
    assert waived.ok and waived.starts_agreeing == 1
    assert waived.c == pytest.approx(0.6, rel=1e-9)


def test_data_to_reach_by_hand():
    fit = fit_power_law(SIZES, curve(SIZES))
    # 0.2 + 0.3 (x / 10^4)^-0.6 = 0.5  <=>  x = 10^4 (0.3 / 0.3)^(1 / 0.6) = 10^4
    assert data_to_reach(fit, 0.5) == pytest.approx(10000.0, rel=1e-6)
    assert data_to_reach(fit, 0.35) == pytest.approx(10000.0 * 2 ** (1 / 0.6), rel=1e-6)
    assert data_to_reach(fit, fit.e_inf) == math.inf  # the floor itself is never reached


def test_the_bootstrap_of_identical_seeds_is_the_point_fit():
    x = np.repeat(SIZES, 3)
    y = curve(x)
    point = fit_power_law(SIZES, curve(SIZES))
    boot = bootstrap_fit(x, y, point, draws=5, seed=1, target=0.35, curve_x=[300, 3000])
    assert (boot.draws, boot.failed) == (5, 0)
    assert boot.curve_x == [300.0, 3000.0]
    expected = {"e_inf": point.e_inf, "c": point.c, "b": point.b,
                "data_to_reach": data_to_reach(point, 0.35)}
    for name, value in expected.items():
        assert boot.intervals[name] == (pytest.approx(value, rel=1e-6),
                                        pytest.approx(value, rel=1e-6)), name
    assert boot.curve_low == pytest.approx(list(point.predict([300, 3000])), rel=1e-6)
    assert boot.curve_high == pytest.approx(list(point.predict([300, 3000])), rel=1e-6)


def test_a_bootstrap_without_a_target_or_curve_says_so():
    x = np.repeat(SIZES, 2)
    point = fit_power_law(SIZES, curve(SIZES))
    boot = bootstrap_fit(x, curve(x), point, draws=3)
    assert boot.intervals["data_to_reach"] is None
    assert (boot.curve_x, boot.curve_low, boot.curve_high) == ([], [], [])


def test_a_bootstrap_of_a_failed_point_fit_starts_from_the_grid():
    x = np.repeat(SIZES, 2)
    failed = fit_power_law(SIZES[:3], curve(SIZES[:3]))
    boot = bootstrap_fit(x, curve(x), failed, draws=2, seed=0)
    assert boot.failed == 0
    assert boot.intervals["c"] == (pytest.approx(0.6, rel=1e-6), pytest.approx(0.6, rel=1e-6))


def test_a_bootstrap_whose_draws_all_fail_counts_them():
    x = np.repeat(SIZES[:3], 2)  # three sizes: every draw fails at once
    boot = bootstrap_fit(x, curve(x), fit_power_law(x, curve(x)), draws=2, target=0.4,
                         curve_x=[300])
    assert (boot.draws, boot.failed) == (2, 2)
    assert all(v is None for v in boot.intervals.values())
    assert (boot.curve_low, boot.curve_high) == ([], [])


def test_mean_interval_of_one_value_and_at_another_level():
    assert mean_interval([2.5]) == (2.5, 2.5, 2.5)
    mean, low, high = mean_interval([1.0, 2.0, 3.0], level=0.9)
    # t(0.95, 2) = 2.919986; sd = 1; n = 3
    assert mean == 2.0
    assert (low, high) == (pytest.approx(2 - 2.919986 / math.sqrt(3), rel=1e-6),
                           pytest.approx(2 + 2.919986 / math.sqrt(3), rel=1e-6))
    # two values: t(0.975, 1) = 12.7062; sd = |a - b| / sqrt(2)
    _, low, high = mean_interval([1.0, 3.0])
    assert high - 2.0 == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2), rel=1e-6)


def test_a_bootstrap_draw_averages_a_resample_of_each_sizes_seeds(monkeypatch):
    x = np.repeat(SIZES, 2)
    y = curve(x) * np.tile([0.98, 1.02], len(SIZES))  # two seeds per size, 4% apart
    point = fit_power_law(SIZES, curve(SIZES))
    seen = []
    real = scaling.fit_power_law

    def recording(sizes, means, **kw):
        seen.append(np.asarray(means))
        return real(sizes, means, **kw)

    monkeypatch.setattr(scaling, "fit_power_law", recording)
    boot = bootstrap_fit(x, y, point, draws=10, seed=3)
    assert boot.draws == 10 and len(seen) >= 10
    low, high = y[0::2], y[1::2]
    middle = (low + high) / 2
    means = np.vstack(seen)
    # each mean is one of the seeds twice or the two once each, and all three happen
    assert np.all(np.isclose(means, low) | np.isclose(means, high) | np.isclose(means, middle))
    assert np.isclose(means, middle).any() and np.isclose(means, low).any()


def test_the_bootstrap_is_reproducible_and_seeded_by_default():
    x = np.repeat(SIZES, 2)
    rng = np.random.default_rng(5)
    y = curve(x) * np.exp(rng.normal(0, 0.05, len(x)))
    point = fit_power_law(SIZES, curve(SIZES))
    default = bootstrap_fit(x, y, point, draws=4)
    assert bootstrap_fit(x, y, point, draws=4, seed=0) == default
    assert bootstrap_fit(x, y, point, draws=4, seed=1).intervals != default.intervals


def test_the_bootstrap_draws_a_thousand_times_by_default():
    x = np.repeat(SIZES[:3], 2)  # three sizes: each draw fails at once
    boot = bootstrap_fit(x, curve(x), fit_power_law(x, curve(x)))
    assert (boot.draws, boot.failed) == (1000, 1000)


def test_without_a_point_fit_a_draw_needs_two_agreeing_starts(monkeypatch):
    """With no point fit every draw is fitted from the grid as the point fit was, agreement
    included: here no two starts ever agree, so every draw fails."""
    real = scaling._solve
    calls = []

    def never_agreeing(*args):  # type: ignore[no-untyped-def]
        result = real(*args)
        calls.append(1)
        result.cost += len(calls)  # every start a different objective
        return result

    monkeypatch.setattr(scaling, "_solve", never_agreeing)
    x = np.repeat(SIZES, 2)
    point = fit_power_law(SIZES, curve(SIZES))
    assert not point.ok and point.reason == "only one start reached the best objective"
    boot = bootstrap_fit(x, curve(x), point, draws=2)
    assert (boot.draws, boot.failed) == (2, 2)


def test_intervals_are_sample_quantiles_and_the_band_the_curves_percentiles(monkeypatch):
    """Of 10 draws the 2.5% and 97.5% sample quantiles are the smallest and the largest draw
    (draws themselves, never interpolated: data_to_reach may be inf); the band around the
    curve is the 2.5-97.5 percentile of the drawn curves."""
    x = np.repeat(SIZES, 3)
    rng = np.random.default_rng(11)
    y = curve(x) * np.exp(rng.normal(0, 0.05, len(x)))
    point = fit_power_law(*(SIZES, np.array([y[x == s].mean() for s in SIZES])))
    assert point.ok
    calls = []
    real = scaling.fit_power_law

    def recording(sizes, means, **kw):
        fit = real(sizes, means, **kw)
        calls.append((not kw.get("require_agreement", True), fit))
        return fit

    monkeypatch.setattr(scaling, "fit_power_law", recording)
    boot = bootstrap_fit(x, y, point, draws=10, seed=2, target=0.35, curve_x=[300, 3000])
    used = []  # per draw: the fit from the point start, else the grid's
    for waived, fit in calls:
        if waived:  # a draw starts from the point fit, agreement waived
            used.append(fit)
        elif not used[-1].ok:
            used[-1] = fit
    used = [f for f in used if f.ok]
    assert len(used) == 10 - boot.failed == 10
    for name in ("e_inf", "b", "c"):
        values = [getattr(f, name) for f in used]
        assert boot.intervals[name] == (min(values), max(values)), name
    reach = [data_to_reach(f, 0.35) for f in used]
    assert boot.intervals["data_to_reach"] == (min(reach), max(reach))
    curves = np.vstack([f.predict([300, 3000]) for f in used])
    assert boot.curve_low == pytest.approx(list(np.percentile(curves, 2.5, axis=0)))
    assert boot.curve_high == pytest.approx(list(np.percentile(curves, 97.5, axis=0)))
    assert boot.curve_low[0] < boot.curve_high[0]


def test_a_size_of_one_is_a_size():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fit = fit_power_law(x, 0.1 + 0.5 * (x / 16) ** -0.5)
    assert fit.ok and fit.c == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("scale", [1e-27, 1e30])
def test_errors_of_any_scale_give_a_fit_or_a_reason_not_a_crash(scale):
    # log b is bounded to [-60, 60]: starting guesses beyond it are moved inside
    fit = fit_power_law(SIZES, curve(SIZES) * scale)
    assert fit.status in ("ok", "failed") and (fit.ok or fit.reason)


def test_a_curve_falling_by_one_percent_of_the_floor_is_no_curve():
    # reducible error at the smallest size r = e / 100: under 1% of e + r
    b = 0.01 / 40**0.6
    fit = fit_power_law(SIZES, curve(SIZES, e_inf=1.0, b=b))
    assert fit.as_dict() == {
        "status": "failed", "reason": "the error barely falls with size: no exponent to fit",
        "e_inf": None, "b": None, "c": None, "x_ref": None, "log_rmse": None,
        "n_points": 7, "starts_agreeing": GRID_STARTS,
    }
    # four times that is a curve, however small against the floor
    fit = fit_power_law(SIZES, curve(SIZES, e_inf=1.0, b=0.004))
    assert fit.ok and fit.b == pytest.approx(0.004, rel=1e-6)


def _planted(monkeypatch, **values):
    """The optimiser's answer from every start, with some parameters replaced: guards that
    real curves rarely reach."""
    real = scaling._solve
    index = {"e": 0, "log_b": 1, "c": 2}

    def planted(*args):  # type: ignore[no-untyped-def]
        result = real(*args)
        for name, value in values.items():
            result.x[index[name]] = value
        return result

    monkeypatch.setattr(scaling, "_solve", planted)


def _failed(reason, agreeing=GRID_STARTS):
    return {"status": "failed", "reason": reason, "e_inf": None, "b": None, "c": None,
            "x_ref": None, "log_rmse": None, "n_points": 7, "starts_agreeing": agreeing}


def test_an_exponent_at_its_lower_bound_is_stuck(monkeypatch):
    _planted(monkeypatch, c=scaling.C_MIN)
    assert fit_power_law(SIZES, curve(SIZES)).as_dict() == \
        _failed("the exponent is stuck at its bound (0.0001)")


def test_an_exponent_just_above_its_lower_bound_is_a_fit(monkeypatch):
    _planted(monkeypatch, c=1.5 * scaling.C_MIN)
    fit = fit_power_law(SIZES, curve(SIZES))
    assert fit.ok and fit.c == 1.5 * scaling.C_MIN


def test_a_floor_at_the_largest_error_is_no_curve(monkeypatch):
    y = curve(SIZES)
    _planted(monkeypatch, e=float(y.max()))
    assert fit_power_law(SIZES, y).as_dict() == \
        _failed("the floor is stuck at the largest error: no curve to fit")


def test_an_optimiser_out_of_budget_everywhere_is_named(monkeypatch):
    real = scaling._solve

    def out_of_budget(*args):  # type: ignore[no-untyped-def]
        result = real(*args)
        result.status = 0
        return result

    monkeypatch.setattr(scaling, "_solve", out_of_budget)
    assert fit_power_law(SIZES, curve(SIZES)).as_dict() == \
        _failed("the optimiser did not converge from any start", 0)


def test_starts_agree_within_a_millionth_of_the_best_objective(monkeypatch):
    rng = np.random.default_rng(0)
    y = curve(SIZES) * np.exp(rng.normal(0, 0.02, len(SIZES)))
    best = fit_power_law(SIZES, y)
    assert best.ok and 1e-5 < best.log_rmse**2 * 7 / 2 < 1e-3  # the objective, about 3e-4
    real = scaling._solve
    calls = []

    def spread(*args):  # type: ignore[no-untyped-def]
        result = real(*args)
        calls.append(1)
        result.cost += len(calls) * 1e-8  # apart by ~3e-5 of the objective: not agreeing
        return result

    monkeypatch.setattr(scaling, "_solve", spread)
    fit = fit_power_law(SIZES, y)
    assert (fit.ok, fit.reason, fit.starts_agreeing) == \
        (False, "only one start reached the best objective", 1)
