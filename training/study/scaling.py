"""Scaling curves: a saturating power law fitted to error against training-set size.

    L(x) = e_inf + b * (x / x_ref) ** (-c)

(Alabdulmohsin et al. 2022, "Revisiting Neural Scaling Laws"). ``x_ref`` is the largest
training-set size in the data, so that ``b`` is the reducible error there and the fit is well
conditioned. The fit minimises squared residuals of log L (errors span decades) with bounds
(e_inf >= 0, 0 < c <= C_MAX), from a grid of starts. It is reported as converged only when:

- there are more distinct sizes than parameters (3 points would fit exactly, saying nothing);
- the optimiser stopped on a tolerance, not on its evaluation budget;
- at least two starts reach the best objective (the optimum is not a lucky start);
- the exponent is not stuck at a bound, and every parameter is finite.

Otherwise the result says ``failed`` and why, and carries no numbers (Besiroglu et al. 2024
show how fits stopped early or rounded mislead). Intervals come from bootstrapping seeds
within each size; ``data_to_reach`` inverts a fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

C_MAX = 5.0
C_MIN = 1e-4
PARAMETERS = 3
_START_EXPONENTS = (0.05, 0.2, 0.5, 1.0, 2.0)
_START_FLOOR_SHARES = (0.0, 0.5, 0.9)
_AGREE_RTOL = 1e-6
GRID_STARTS = len(_START_EXPONENTS) * len(_START_FLOOR_SHARES)


@dataclass(frozen=True)
class PowerLawFit:
    status: str  # "ok" or "failed"
    reason: str | None
    e_inf: float | None
    b: float | None
    c: float | None
    x_ref: float | None
    log_rmse: float | None  # root mean squared residual of log L at the fitted points
    n_points: int
    starts_agreeing: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def predict(self, x: Any) -> np.ndarray:
        if not self.ok:
            raise ValueError(f"the fit failed ({self.reason}); it predicts nothing")
        x = np.asarray(x, dtype=np.float64)
        return self.e_inf + self.b * (x / self.x_ref) ** (-self.c)  # type: ignore[operator]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _failed(reason: str, n_points: int, starts: int = 0) -> PowerLawFit:
    return PowerLawFit("failed", reason, None, None, None, None, None, n_points, starts)


def _solve(
    log_y: np.ndarray, u: np.ndarray, start: tuple[float, float, float], floor_max: float
) -> Any:
    """least_squares over theta = (e_inf, log b, c) with u = log(x / x_ref)."""
    from scipy.optimize import least_squares

    def residuals(theta: np.ndarray) -> np.ndarray:
        e, log_b, c = theta
        return np.log(e + np.exp(log_b - c * u)) - log_y

    def jacobian(theta: np.ndarray) -> np.ndarray:
        e, log_b, c = theta
        reducible = np.exp(log_b - c * u)
        share = reducible / (e + reducible)
        return np.column_stack([1.0 / (e + reducible), share, -u * share])

    lower = np.array([0.0, -60.0, C_MIN])
    upper = np.array([floor_max, 60.0, C_MAX])
    x0 = np.clip(np.asarray(start, dtype=np.float64), lower, upper)
    return least_squares(
        residuals, x0, jac=jacobian, bounds=(lower, upper), method="trf", x_scale="jac",
        xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=4000,
    )


def _starts(log_y: np.ndarray, u: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float]]:
    starts = []
    for share in _START_FLOOR_SHARES:
        e = share * float(y.min())
        for c in _START_EXPONENTS:
            # log b from a straight line through log(y - e) at this exponent
            log_b = float(np.mean(np.log(np.maximum(y - e, 1e-12)) + c * u))
            starts.append((e, log_b, c))
    return starts


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    *,
    starts: Sequence[tuple[float, float, float]] | None = None,
    require_agreement: bool = True,
) -> PowerLawFit:
    """Fit L(x) = e_inf + b (x / x_ref)^(-c) to errors ``y`` (> 0) at sizes ``x`` (> 0).

    Examples
    --------
    >>> x = [100, 200, 400, 800, 1600]
    >>> y = [0.1 + 2.0 * (v / 1600) ** -0.5 for v in x]
    >>> fit = fit_power_law(x, y)
    >>> fit.ok, round(fit.c, 3), round(fit.e_inf, 3)
    (True, 0.5, 0.1)
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n = len(np.unique(xs))
    if len(xs) != len(ys):
        raise ValueError("x and y differ in length")
    if n <= PARAMETERS:
        return _failed(f"{n} distinct sizes; a 3-parameter fit needs at least 4", n)
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        return _failed("non-finite sizes or errors", n)
    if np.any(xs <= 0) or np.any(ys <= 0):
        return _failed("sizes and errors must be positive", n)
    x_ref = float(xs.max())
    u = np.log(xs / x_ref)
    log_y = np.log(ys)
    # The floor may lie above the smallest error seen (noise), not above the largest.
    floor_max = float(ys.max())
    trials = [_solve(log_y, u, s, floor_max) for s in (starts or _starts(log_y, u, ys))]
    finished = [t for t in trials if t.status > 0 and np.all(np.isfinite(t.x))]
    if not finished:
        return _failed("the optimiser did not converge from any start", n)
    best = min(finished, key=lambda t: t.cost)
    agreeing = sum(
        1 for t in finished if abs(t.cost - best.cost) <= _AGREE_RTOL * max(best.cost, 1e-12)
    )
    e, log_b, c = (float(v) for v in best.x)
    if require_agreement and agreeing < 2:
        return _failed("only one start reached the best objective", n, agreeing)
    if c >= C_MAX * (1 - 1e-6) or c <= C_MIN * (1 + 1e-6):
        return _failed(f"the exponent is stuck at its bound ({c:.4g})", n, agreeing)
    b = math.exp(log_b)
    if not all(math.isfinite(v) for v in (e, b, c)):
        return _failed("non-finite parameters", n, agreeing)
    reducible_at_smallest = b * float(np.exp(-c * u.min()))
    if reducible_at_smallest < 0.01 * (e + reducible_at_smallest):
        return _failed("the error barely falls with size: no exponent to fit", n, agreeing)
    if e >= floor_max * (1 - 1e-6):
        return _failed("the floor is stuck at the largest error: no curve to fit", n, agreeing)
    log_rmse = math.sqrt(2 * best.cost / len(ys))
    return PowerLawFit("ok", None, e, b, c, x_ref, log_rmse, n, agreeing)


def data_to_reach(fit: PowerLawFit, target: float) -> float | None:
    """The training-set size at which the fitted error reaches ``target``; inf if the floor
    lies at or above it; None for a failed fit."""
    if not fit.ok:
        return None
    reducible = target - fit.e_inf  # type: ignore[operator]
    if reducible <= 0:
        return math.inf
    return float(fit.x_ref * (fit.b / reducible) ** (1.0 / fit.c))  # type: ignore[operator]


@dataclass
class Bootstrap:
    draws: int
    failed: int
    intervals: dict[str, tuple[float, float] | None]  # 95% percentile intervals
    curve_x: list[float]
    curve_low: list[float]
    curve_high: list[float]


def bootstrap_fit(
    x: Sequence[float],
    y: Sequence[float],
    point: PowerLawFit,
    *,
    draws: int = 1000,
    seed: int = 0,
    target: float | None = None,
    curve_x: Sequence[float] = (),
) -> Bootstrap:
    """Resample the seeds within each size (with replacement), fit the means again.

    ``x`` and ``y`` are per run (one row per seed and size). Each draw starts from the point
    fit and from two grid starts; a draw whose fit fails is counted, not used."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    sizes = np.unique(xs)
    groups = [ys[xs == s] for s in sizes]
    rng = np.random.default_rng(seed)
    point_start = (
        [(point.e_inf, math.log(point.b), point.c)] if point.ok else []  # type: ignore[arg-type]
    )
    samples: dict[str, list[float]] = {"e_inf": [], "c": [], "b": [], "data_to_reach": []}
    curves: list[np.ndarray] = []
    failed = 0
    for _ in range(draws):
        means = np.array([rng.choice(g, size=len(g), replace=True).mean() for g in groups])
        # From the point fit alone (a draw lies close to it); from the grid if that fails.
        fit = fit_power_law(sizes, means, starts=point_start, require_agreement=False) \
            if point_start else _failed("no point fit", len(sizes))
        if not fit.ok:
            fit = fit_power_law(sizes, means)
        if not fit.ok:
            failed += 1
            continue
        samples["e_inf"].append(fit.e_inf)  # type: ignore[arg-type]
        samples["c"].append(fit.c)  # type: ignore[arg-type]
        samples["b"].append(fit.b)  # type: ignore[arg-type]
        if target is not None:
            reach = data_to_reach(fit, target)
            samples["data_to_reach"].append(math.inf if reach is None else reach)
        if len(curve_x):
            curves.append(fit.predict(curve_x))
    intervals: dict[str, tuple[float, float] | None] = {}
    for name, values in samples.items():
        arr = np.asarray(values, dtype=np.float64)
        # Sample quantiles, not interpolated ones: data_to_reach can be inf (never).
        intervals[name] = (
            (float(np.quantile(arr, 0.025, method="inverted_cdf")),
             float(np.quantile(arr, 0.975, method="inverted_cdf"))) if len(arr) else None
        )
    if curves:
        stacked = np.vstack(curves)
        low = np.percentile(stacked, 2.5, axis=0).tolist()
        high = np.percentile(stacked, 97.5, axis=0).tolist()
    else:
        low, high = [], []
    return Bootstrap(draws, failed, intervals, list(map(float, curve_x)), low, high)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean (a single value: its own interval)."""
    from scipy.stats import t as student_t

    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, mean, mean
    quantile = float(student_t.ppf(0.5 + level / 2, len(arr) - 1))
    half = quantile * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return mean, mean - half, mean + half
