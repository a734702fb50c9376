"""The training losses by name: their parameters, defaults, limits and spec strings (no torch
here, so ``curate train --help`` and config checks need not load it; the computation is
``training.loss``).

A loss spec has the grammar of a weighting spec with exactly one term (``weighting.parse_spec``):
``"huber"``, ``"huber:delta=0.5"``, ``"clce:lambda=0.5,tau=0.1,bins=8"``. Each loss is a
function with keyword-only parameters, registered with ``register``: its signature gives the
parameters and their defaults (a trailing underscore is dropped, so ``lambda_`` is the spec's
``lambda``), its annotations the types a spec's values are checked against, ``limits`` the
ranges, and it turns the checked parameters into a ``LossPlan``, the weights of the terms that
``training.loss.TrainingLoss`` computes.

    >>> plan = parse_loss("clce:lambda=0.5,tau=0.1,bins=8")
    >>> plan.spec, plan.contrastive, plan.bins
    ('clce:lambda=0.5,tau=0.1,bins=8,binning=quantile,hardness=1.0,ce=0.0', 0.5, 8)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.errors import UserError

DEFAULT_LOSS = "huber"
BINNINGS = ("quantile", "width")
RATING_RANGE = (1.0, 5.0)  # the target's scale: equal-width bins span it


@dataclass(frozen=True)
class Limit:
    """A range a parameter must lie in, said the way an error message says it (as
    ``weighting.registry.Limit``, which this module cannot import without loading polars)."""

    text: str
    ok: Callable[[Any], bool]


POSITIVE = Limit("> 0", lambda v: v > 0)
NON_NEGATIVE = Limit(">= 0", lambda v: v >= 0)
AT_LEAST_TWO = Limit(">= 2", lambda v: v >= 2)
BINNING = Limit(f"one of {', '.join(BINNINGS)}", lambda v: v in BINNINGS)


@dataclass(frozen=True)
class LossPlan:
    """What a training step computes: ``huber`` x weighted Huber (delta ``delta``, None: the
    config's ``huber_delta``) + ``contrastive`` x the label-aware contrastive term on the
    head's penultimate activation (temperature ``tau``, negatives' ``hardness``) + ``ce`` x a
    cross-entropy over ``bins`` rating bins (``binning``: quantile or width edges)."""

    spec: str  # canonical: the name and every parameter that is set, in the registry's order
    name: str
    params: dict[str, Any]
    delta: float | None = None
    contrastive: float = 0.0
    tau: float = 0.1
    hardness: float = 1.0
    ce: float = 0.0
    bins: int = 0
    binning: str = "quantile"

    @property
    def needs_embedding(self) -> bool:
        """Whether a term reads the head's penultimate activation (and the rating bins)."""
        return self.contrastive > 0 or self.ce > 0

    def huber_delta(self, config_delta: float) -> float:
        return config_delta if self.delta is None else self.delta


PlanFunction = Callable[..., LossPlan]


@dataclass(frozen=True)
class LossKind:
    name: str
    summary: str  # one line for the help text
    plan: PlanFunction
    defaults: dict[str, Any] = field(default_factory=dict)  # spec name -> default
    types: dict[str, str] = field(default_factory=dict)  # spec name -> annotation text
    limits: dict[str, Limit] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)  # how a default None is said

    def valid(self) -> str:
        """``lambda=0.5, tau=0.1, ...``: the parameters with their defaults."""
        return ", ".join(f"{k}={self.shown.get(k, repr(v))}" for k, v in self.defaults.items())

    def describe(self) -> str:
        """One line: the name, what it is, each parameter with its default and limit."""
        params = [f"{k}={self.shown.get(k, _text(v))}"
                  + (f" ({self.limits[k].text})" if k in self.limits else "")
                  for k, v in self.defaults.items()]
        return f"{self.name}: {self.summary}" + (f"; {', '.join(params)}" if params else "")

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """The defaults with ``params`` over them, each checked: a known parameter, of its
        type (numbers finite, float parameters as floats), within its limit."""
        unknown = [k for k in params if k not in self.defaults]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            raise UserError(f"loss {self.name!r} has no parameter {names}; valid: "
                            f"{self.valid() or 'none'}")
        checked = {key: self._check(key, value) for key, value in params.items()}
        return {**self.defaults, **checked}

    def _check(self, key: str, value: Any) -> Any:
        kinds = {k.strip() for k in self.types.get(key, "").split("|")}
        where = f"loss {self.name!r}: {key}"
        given = value
        if value is None:
            if "None" not in kinds:
                raise UserError(f"{where} cannot be none")
            return None
        if "float" in kinds:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{where} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise UserError(f"{where} must be a finite number, got {value!r}")
            value = float(value)
        elif "int" in kinds and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"{where} must be an integer, got {value!r}")
        elif "str" in kinds and not isinstance(value, str):
            raise UserError(f"{where} must be text, got {value!r}")
        limit = self.limits.get(key)
        if limit is not None and not limit.ok(value):
            raise UserError(f"{where} must be {limit.text}, got {given!r}")
        return value


LOSSES: dict[str, LossKind] = {}


def _spec_name(parameter: str) -> str:
    return parameter.removesuffix("_")  # lambda_ -> lambda (a Python keyword)


def register(
    name: str,
    *,
    summary: str,
    limits: dict[str, Limit] | None = None,
    shown: dict[str, str] | None = None,
) -> Callable[[PlanFunction], PlanFunction]:
    """Register ``plan(spec, /, *, params...) -> LossPlan`` as loss ``name``: its keyword-only
    parameters (a trailing underscore dropped) are the loss's, their defaults its defaults;
    ``spec`` is the canonical spec text the plan records."""

    def decorator(plan: PlanFunction) -> PlanFunction:
        defaults: dict[str, Any] = {}
        types: dict[str, str] = {}
        for p in inspect.signature(plan).parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                defaults[_spec_name(p.name)] = p.default
                types[_spec_name(p.name)] = str(p.annotation)
        if name in LOSSES:
            raise ValueError(f"a loss named {name!r} is already registered")
        unknown = sorted((set(limits or {}) | set(shown or {})) - set(defaults))
        if unknown:
            raise ValueError(f"loss {name!r}: limits for unknown parameters {unknown}")
        LOSSES[name] = LossKind(name, summary, plan, defaults, types, dict(limits or {}),
                                dict(shown or {}))
        return plan

    return decorator


@register("huber", summary="the paper's batch mean of w x Huber(prediction - target)",
          limits={"delta": POSITIVE}, shown={"delta": "--huber-delta"})
def _huber(spec: str, /, *, delta: float | None = None) -> LossPlan:
    return LossPlan(spec, "huber", {"delta": delta}, delta=delta)


@register(
    "clce",
    summary="weighted Huber + lambda x a label-aware contrastive term with hard negatives on "
    "the head's penultimate activation (rating bins as labels, temperature tau) + ce x a "
    "cross-entropy over the bins",
    limits={"lambda": NON_NEGATIVE, "tau": POSITIVE, "bins": AT_LEAST_TWO,
            "binning": BINNING, "hardness": NON_NEGATIVE, "ce": NON_NEGATIVE},
)
def _clce(spec: str, /, *, lambda_: float = 0.5, tau: float = 0.1, bins: int = 8,
          binning: str = "quantile", hardness: float = 1.0, ce: float = 0.0) -> LossPlan:
    params = {"lambda": lambda_, "tau": tau, "bins": bins, "binning": binning,
              "hardness": hardness, "ce": ce}
    return LossPlan(spec, "clce", params, contrastive=lambda_, tau=tau, hardness=hardness,
                    ce=ce, bins=bins, binning=binning)


def _text(value: Any) -> str:
    return str(value)


def get_loss(name: str) -> LossKind:
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def parse_loss(spec: str) -> LossPlan:
    """The plan of a loss spec, its parameters checked; ``plan.spec`` is the canonical text
    (the name, then every parameter that is not None in the registry's order), so that two
    spellings of one loss are one config."""
    from weighting.compute import parse_spec  # the weighting specs' grammar (imports polars)

    if not spec.strip() or not spec.strip().partition(":")[0].strip():
        raise UserError(f"empty loss name in {spec!r}; valid losses: {', '.join(sorted(LOSSES))}")
    terms = parse_spec(spec)
    if len(terms) != 1:
        raise UserError(f"a loss spec names one loss, {spec!r} names {len(terms)} (no '*')")
    name, given = terms[0]
    kind = get_loss(name)
    params = kind.resolve(given)
    settings = ",".join(f"{k}={_text(v)}" for k, v in params.items() if v is not None)
    canonical = f"{name}:{settings}" if settings else name
    keywords = {(k + "_" if k == "lambda" else k): v for k, v in params.items()}
    return kind.plan(canonical, **keywords)


def describe_losses() -> str:
    """Every loss on a line of its own, for help texts."""
    return "\n".join(LOSSES[name].describe() for name in sorted(LOSSES, key=_help_order))


def _help_order(name: str) -> tuple[bool, str]:
    return (name != DEFAULT_LOSS, name)


def fit_bin_edges(plan: LossPlan, train_targets: Sequence[float]) -> list[float]:
    """The ``bins - 1`` inner edges of the rating bins: quantiles of the train items' targets
    (linear interpolation; tied targets can make two edges equal and leave a bin empty) or
    equal widths over [1, 5]. An item's bin is the number of edges at or below its target.
    Empty for a plan without bins."""
    if not plan.needs_embedding:
        return []
    import numpy as np

    share = np.arange(1, plan.bins) / plan.bins
    if plan.binning == "width":
        low, high = RATING_RANGE
        return [float(v) for v in low + share * (high - low)]
    targets = np.asarray(train_targets, dtype=np.float64)
    if targets.size == 0 or not np.all(np.isfinite(targets)):
        raise UserError("quantile rating bins need finite train targets")
    return [float(v) for v in np.quantile(targets, share)]
