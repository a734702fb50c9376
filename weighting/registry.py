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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curation.errors import UserError

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

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise UserError(
                f"strategy {self.name!r} has no parameter {', '.join(unknown)}; "
                f"its parameters: {valid}"
            )
        return {**self.defaults, **params}


STRATEGIES: dict[str, Strategy] = {}


def register(
    name: str,
    *,
    favours: str,
    requires: tuple[str, ...],
    family: str = "reliability",
    fit: FitFunction | None = None,
) -> Callable[[ExpressionFunction], ExpressionFunction]:
    """Register ``expression(stats, *, params...)`` as strategy ``name``.

    The keyword-only parameters of the expression function (and of ``fit``) are the
    strategy's parameters; their defaults are the strategy's defaults.
    """

    def decorator(expression: ExpressionFunction) -> ExpressionFunction:
        defaults: dict[str, Any] = {}
        for function in (fit, expression):
            if function is None:
                continue
            for p in inspect.signature(function).parameters.values():
                if p.kind is inspect.Parameter.KEYWORD_ONLY:
                    defaults[p.name] = p.default
        if name in STRATEGIES:
            raise ValueError(f"a weighting strategy named {name!r} is already registered")
        STRATEGIES[name] = Strategy(name, favours, requires, expression, fit, family, defaults)
        return expression

    return decorator


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        valid = ", ".join(sorted(STRATEGIES))
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
