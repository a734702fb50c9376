"""A registry of weighting strategies, in the manner of cleanlab's issue-manager factory.

A strategy declares the columns it needs, its keyword-only parameters with defaults, and one
line on what it favours. It is split in two so that nothing leaks from val and test:

- ``fit(train, **params) -> stats``: statistics from the train rows only (means, variances,
  histograms), stored with the weights;
- ``expression(stats, **params) -> pl.Expr``: a vectorised Polars expression giving one
  finite, non-negative weight per row, for every split.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curation.errors import UserError


@dataclass(frozen=True)
class Limit:
    """A range a numeric parameter must lie in, said the way an error message says it."""

    text: str
    ok: Callable[[Any], bool]


POSITIVE = Limit("> 0", lambda v: v > 0)
NON_NEGATIVE = Limit(">= 0", lambda v: v >= 0)
OPEN_UNIT = Limit("in (0, 1)", lambda v: 0 < v < 1)
ODD_POSITIVE = Limit("a positive odd integer", lambda v: v > 0 and v % 2 == 1)
ZERO_OR_ONE = Limit("0 or 1", lambda v: v in (0, 1))

FitFunction = Callable[..., dict[str, Any]]
ExpressionFunction = Callable[..., pl.Expr]


@dataclass(frozen=True)
class Strategy:
    name: str
    favours: str  # one line for `curate weights list`
    requires: tuple[str, ...]
    expression: ExpressionFunction
    fit: FitFunction | None = None
    family: str = "reliability"
    defaults: dict[str, Any] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # parameter -> its annotation's text
    limits: dict[str, Limit] = field(default_factory=dict)

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """The defaults with ``params`` over them, each checked: a known parameter, of its
        type (numbers finite), within its limit."""
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise UserError(
                f"strategy {self.name!r} has no parameter {', '.join(unknown)}; "
                f"its parameters: {valid}"
            )
        for key, value in params.items():
            self._check(key, value)
        return {**self.defaults, **params}

    def _check(self, key: str, value: Any) -> None:
        kinds = {k.strip() for k in self.types.get(key, "").split("|")}
        where = f"{self.name}: {key}"
        if value is None:
            if "None" not in kinds:
                raise UserError(f"{where} cannot be none")
            return
        if "float" in kinds:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{where} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise UserError(f"{where} must be a finite number, got {value!r}")
        elif "int" in kinds and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"{where} must be an integer, got {value!r}")
        elif "str" in kinds and not isinstance(value, str):
            raise UserError(f"{where} must be text, got {value!r}")
        limit = self.limits.get(key)
        if limit is not None and not limit.ok(value):
            raise UserError(f"{where} must be {limit.text}, got {value!r}")


STRATEGIES: dict[str, Strategy] = {}
# Strategies whose statistics need more than a frame (weighting/learned.py): get_strategy finds
# them and checks their parameters, but STRATEGIES holds only those that compute from a frame.
FITTED_ELSEWHERE: dict[str, Strategy] = {}


def register(
    name: str,
    *,
    favours: str,
    requires: tuple[str, ...],
    family: str = "reliability",
    fit: FitFunction | None = None,
    limits: dict[str, Limit] | None = None,
    elsewhere: bool = False,
) -> Callable[[ExpressionFunction], ExpressionFunction]:
    """Register ``expression(stats, *, params...)`` as strategy ``name``.

    The keyword-only parameters of the expression function (and of ``fit``) are the
    strategy's parameters; their defaults are the strategy's defaults, their annotations
    (float, int, str, ``| None``) the types a spec's values are checked against, and
    ``limits`` the ranges numeric ones must lie in. ``elsewhere``: the strategy's statistics
    are fitted outside this layer (``FITTED_ELSEWHERE``).
    """

    def decorator(expression: ExpressionFunction) -> ExpressionFunction:
        defaults: dict[str, Any] = {}
        types: dict[str, str] = {}
        for function in (fit, expression):
            if function is None:
                continue
            for p in inspect.signature(function).parameters.values():
                if p.kind is inspect.Parameter.KEYWORD_ONLY:
                    defaults[p.name] = p.default
                    types[p.name] = str(p.annotation)
        if name in STRATEGIES or name in FITTED_ELSEWHERE:
            raise ValueError(f"a weighting strategy named {name!r} is already registered")
        unknown = sorted(set(limits or {}) - set(defaults))
        if unknown:
            raise ValueError(f"strategy {name!r}: limits for unknown parameters {unknown}")
        home = FITTED_ELSEWHERE if elsewhere else STRATEGIES
        home[name] = Strategy(name, favours, requires, expression, fit, family, defaults, types,
                              dict(limits or {}))
        return expression

    return decorator


# The column every strategy derived from review lines reads: without reviews it is 0 for every
# item, and such a strategy is a constant, all zeros, or a guess (a pooled variance).
REVIEW_COUNT = "review_count"


def reads_reviews(strategy: Strategy) -> bool:
    return REVIEW_COUNT in strategy.requires


def get_strategy(name: str) -> Strategy:
    if name in FITTED_ELSEWHERE:
        return FITTED_ELSEWHERE[name]
    if name not in STRATEGIES:
        valid = ", ".join(sorted([*STRATEGIES, *FITTED_ELSEWHERE]))
        raise UserError(f"unknown weighting strategy {name!r}; valid strategies: {valid}")
    return STRATEGIES[name]


def _keyword_subset(function: Callable[..., Any] | None, params: dict[str, Any]) -> dict[str, Any]:
    if function is None:
        return {}
    names = {
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return {k: v for k, v in params.items() if k in names}


def fit_strategy(strategy: Strategy, train: pl.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    if strategy.fit is None:
        return {}
    return strategy.fit(train, **_keyword_subset(strategy.fit, params))


def strategy_expression(
    strategy: Strategy, stats: dict[str, Any], params: dict[str, Any]
) -> pl.Expr:
    return strategy.expression(stats, **_keyword_subset(strategy.expression, params))
