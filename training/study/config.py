"""What a study runs: its config (a TOML file), the grid's defaults, and the template.

Every default of a study lives here once: ``StudyConfig``'s fields, the report's settings,
and the commented template (``curate study template``, the demo's study) written from them.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from curation.errors import UserError
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER

DEFAULT_FRACTIONS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
DEFAULT_STRATEGIES = ("uniform", "effiminivlm")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_LOSSES = ("huber",)
MIN_SEEDS = 3  # a mean and an interval need a spread
TRAINER_KEYS = ("mode", "head", "image_encoder", "text_encoder", "epochs", "batch_size", "lr",
                "patience", "huber_delta", "renormalise", "weight_decay", "warmup", "clip")
HEADS = ("mlp", "ridge")  # mlp: the paper's head, trained; ridge: closed form (frozen only)
DEFAULT_HEAD = "mlp"
REPORT_KEYS = ("bootstrap", "extrapolate_from", "target_plcc", "target_rmse", "baseline",
               "fits", "level")
EVALUATION_KEYS = ("design", "folds", "repeats", "allow_without_reviews")
DESIGNS = ("holdout", "kfold")
DEFAULT_DESIGN = "holdout"
DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 1
DEFAULT_BOOTSTRAP = 1000
DEFAULT_EXTRAPOLATE_FROM = 0.4
DEFAULT_LEVEL = 0.95  # of every interval, and 1 - the family-wise error rate of decisions
# A power law has 3 parameters: a fit needs more distinct sizes than that to say anything.
MIN_FRACTIONS_FOR_FITS = 4
# The errors that are fitted: column of the results table -> how the report names it.
ERRORS = {"error_plcc": "1 - PLCC", "test_rmse": "RMSE"}


# What a pruning arm ranks the training part by: these, or the weight of a strategy that
# computes from a frame (weighting.STRATEGIES).
PRUNE_SCORES = ("rating_count", "learned")


@dataclass(frozen=True)
class PruneArm:
    """``prune:score=S,weight=W``: at each fraction, the top items of the training part by S
    (as many as the random slice holds), weighted by W, beside W's random slice."""

    score: str
    weight: str


def prune_arm(spec: str) -> PruneArm | None:
    """The pruning arm a strategy spec names, or None for a weighting."""
    import weighting

    terms = weighting.parse_spec(spec)
    if all(name != "prune" for name, _ in terms):
        return None
    if len(terms) > 1:
        raise UserError(f"strategy {spec!r}: a prune arm is not multiplied with other "
                        "strategies (give the kept items' weighting as weight=...)")
    params = weighting.get_strategy("prune").resolve(terms[0][1])
    return PruneArm(str(params["score"]), str(params["weight"]))


def fitted_in_memory(spec: str) -> bool:
    """Whether an arm needs the study's in-memory fits: a learned weight or a pruning arm."""
    import weighting

    return any(name in ("learned", "prune") for name, _ in weighting.parse_spec(spec))


def arm_label(strategy: str, loss: str, losses: tuple[str, ...]) -> str:
    """How the report names a (strategy, loss) arm: the strategy alone in a one-loss study."""
    return strategy if len(losses) == 1 else f"{strategy} + {loss}"


@dataclass(frozen=True)
class StudyConfig:
    """What a study runs. Paths are relative to the config file's folder."""

    name: str
    catalog: str
    corpus: str | None = None  # a raw corpus folder (or hf:// path) to ingest first
    out: str | None = None  # the study folder (default: studies/<name> beside the config)
    profile: str = "default"
    min_per_category: int = 0
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    losses: tuple[str, ...] = DEFAULT_LOSSES
    trainer: dict[str, Any] = field(default_factory=lambda: {"mode": "frozen"})
    report: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        """The baseline arm (a strategy; with several losses, ``arm(strategy, losses[0])``
        unless the config names an arm)."""
        given = str(self.report.get("baseline", self.strategies[0]))
        return given if given in self.arms else arm_label(given, self.losses[0], self.losses)

    @property
    def arms(self) -> tuple[str, ...]:
        """What the study compares: each strategy, or each (strategy, loss) when the study
        has more than one loss."""
        return tuple(arm_label(s, loss, self.losses) for loss in self.losses
                     for s in self.strategies)

    def arm_parts(self) -> dict[str, tuple[str, str]]:
        """arm -> (strategy, loss)."""
        return {arm_label(s, loss, self.losses): (s, loss) for loss in self.losses
                for s in self.strategies}

    @property
    def design(self) -> str:
        return str(self.evaluation.get("design", DEFAULT_DESIGN))

    @property
    def folds(self) -> int:
        return int(self.evaluation.get("folds", DEFAULT_FOLDS))

    @property
    def repeats(self) -> int:
        return int(self.evaluation.get("repeats", DEFAULT_REPEATS))

    @property
    def head(self) -> str:
        return str(self.trainer.get("head", DEFAULT_HEAD))

    @property
    def fits(self) -> bool:
        return bool(self.report.get("fits", True))

    @property
    def level(self) -> float:
        return float(self.report.get("level", DEFAULT_LEVEL))

    @property
    def in_memory(self) -> bool:
        """Runs fitted in memory on the cached embeddings (``training.study.crossfit``), not
        one ``curate train`` run folder each: every k-fold design, and the ridge head."""
        return self.design == "kfold" or self.head == "ridge"


def study_template(name: str = "scaling", catalog: str = "catalog",
                   out: str | None = None) -> str:
    """A commented study config holding every default (``curate study template``)."""
    def line(setting: str, comment: str) -> str:
        return f"{setting.ljust(31)}# {comment}"

    extrapolate_note = "fit on fractions up to this, predict the larger ones"
    out_line = line(f"out = {json.dumps(out)}" if out is not None
                    else f'# out = "studies/{name}"', "the study folder (default: studies/<name>)")
    return f"""\
# A Curate study: every (fraction x strategy x seed) is one `curate train` run.
# Paths are relative to this file.
name = {json.dumps(name)}
{line(f"catalog = {json.dumps(catalog)}", "an ingested catalog (curate ingest)")}
# corpus = "corpus/raw"        # optional: ingest this raw folder into the catalog first
profile = "default"            # cleaning profile: default or effiminivlm
min_per_category = 0           # the paper's recipe tops categories up to 10000
fractions = {list(DEFAULT_FRACTIONS)}
strategies = {json.dumps(list(DEFAULT_STRATEGIES))}   # any spec of `curate weights list`
seeds = {list(DEFAULT_SEEDS)}              # slice and trainer seed; holdout: >= {MIN_SEEDS}
losses = {json.dumps(list(DEFAULT_LOSSES))}             # curate train --loss specs: a grid axis
{out_line}

[evaluation]
design = "{DEFAULT_DESIGN}"             # holdout: the split's test items; kfold: each item once
# folds = {DEFAULT_FOLDS}                    # kfold: stratified, near-duplicates in one fold
# repeats = {DEFAULT_REPEATS}                  # kfold: folds drawn again this many times
# allow_without_reviews = false  # run review-based strategies without reviews

[trainer]                      # options of `curate train`
mode = "frozen"                # frozen: encode once, train the head; finetune: the paper
head = "{DEFAULT_HEAD}"                   # mlp: the paper's head; ridge: closed form (GCV)
# image_encoder = "{DEFAULT_IMAGE_ENCODER}"
# text_encoder = "{DEFAULT_TEXT_ENCODER}"
# epochs = 30
# batch_size = 64
# lr = 1e-3
# patience = 3

[report]
{line(f"baseline = {json.dumps(DEFAULT_STRATEGIES[0])}", "strategy the others are compared with")}
{line(f"bootstrap = {DEFAULT_BOOTSTRAP}", "bootstrap draws for the fits' intervals")}
{line(f"extrapolate_from = {DEFAULT_EXTRAPOLATE_FROM}", extrapolate_note)}
# target_plcc = 0.4            # default: the baseline's PLCC at the largest fraction
# fits = true                  # power-law fits: need at least {MIN_FRACTIONS_FOR_FITS} fractions
# level = {DEFAULT_LEVEL}                # of the intervals; decisions at 1 - level, Holm-corrected
"""


def load_study_config(path: Path | str) -> tuple[StudyConfig, Path]:
    """(config with paths made absolute, study folder). Errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such study config")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    known = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(sorted(known))}")
    for key in ("name", "catalog"):
        if key not in data:
            raise UserError(f"{path}: missing key {key!r}")
    for key, valid in (("trainer", TRAINER_KEYS), ("report", REPORT_KEYS),
                       ("evaluation", EVALUATION_KEYS)):
        extra = sorted(set(data.get(key, {})) - set(valid))
        if extra:
            raise UserError(f"{path}: unknown [{key}] key(s) {', '.join(extra)}; valid: "
                            f"{', '.join(valid)}")
    _check_types(data, path)
    base = path.resolve().parent
    for key in ("catalog", "corpus", "out"):
        value = data.get(key)
        if value is not None and "://" not in str(value):
            data[key] = str((base / value).resolve())
    for key in ("fractions", "strategies", "seeds", "losses"):
        if key in data:
            data[key] = tuple(data[key])
    data.setdefault("trainer", {"mode": "frozen"})
    config = StudyConfig(**data)
    _check(config, path)
    folder = Path(config.out) if config.out else base / "studies" / config.name
    return config, folder


# Each top-level key's type, and for lists their items' (TOML gives these Python types).
_TYPES: dict[str, tuple[type | tuple[type, ...], type | tuple[type, ...] | None]] = {
    "name": (str, None), "catalog": (str, None), "corpus": (str, None), "out": (str, None),
    "profile": (str, None), "min_per_category": (int, None),
    "fractions": (list, (int, float)), "strategies": (list, str), "seeds": (list, int),
    "losses": (list, str),
    "trainer": (dict, None), "report": (dict, None), "evaluation": (dict, None),
}
_TYPE_NAMES = {str: "text", int: "an integer", list: "a list", dict: "a table",
               (int, float): "a number"}


def _check_types(data: dict[str, Any], path: Path) -> None:
    """Every key of its type before anything is built or encoded (TOML has no schema)."""
    for key, value in data.items():
        kind, item = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise UserError(f"{path}: {key} must be {_TYPE_NAMES[kind]}, got {value!r}")
        for element in value if item is not None else ():
            if isinstance(element, bool) or not isinstance(element, item):
                raise UserError(f"{path}: every item of {key} must be {_TYPE_NAMES[item]}, "
                                f"got {element!r}")


def _check(config: StudyConfig, path: Path) -> None:
    import weighting

    if not config.fractions or any(not 0 < f <= 1 for f in config.fractions):
        raise UserError(f"{path}: fractions must lie in (0, 1], got {list(config.fractions)}")
    if len(set(config.fractions)) != len(config.fractions):
        raise UserError(f"{path}: fractions repeat a value")
    if not config.seeds or (config.evaluation.get("design", DEFAULT_DESIGN) == "holdout"
                            and len(set(config.seeds)) < MIN_SEEDS):
        raise UserError(f"{path}: give at least {MIN_SEEDS} distinct seeds (the holdout "
                        f"design's intervals need them), got {list(config.seeds)}")
    if len(set(config.seeds)) != len(config.seeds):
        raise UserError(f"{path}: seeds repeat a value")
    if not config.strategies:
        raise UserError(f"{path}: give at least one strategy")
    for spec in config.strategies:
        try:
            for name, params in weighting.parse_spec(spec):
                weighting.get_strategy(name).resolve(params)
        except ValueError as exc:
            raise UserError(f"{path}: strategy {spec!r}: {exc}") from None
    _check_learned_and_pruning(config, path)
    if config.baseline not in config.arms:
        raise UserError(f"{path}: baseline {config.report.get('baseline')!r} is not one of "
                        f"the strategies")
    _check_losses(config, path)
    mode = config.trainer.get("mode", "frozen")
    if mode not in ("frozen", "finetune"):
        raise UserError(f"{path}: [trainer] mode must be frozen or finetune, got {mode!r}")
    if config.head not in HEADS:
        raise UserError(f"{path}: [trainer] head must be one of {', '.join(HEADS)}, got "
                        f"{config.head!r}")
    if config.in_memory and mode != "frozen":
        raise UserError(f"{path}: the {config.design} design with the {config.head} head fits "
                        "heads on cached embeddings: set [trainer] mode = \"frozen\"")
    _check_evaluation(config, path)
    level = config.report.get("level", DEFAULT_LEVEL)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.5 <= level < 1:
        raise UserError(f"{path}: [report] level must be a number in [0.5, 1), got {level!r}")
    if config.fits and len(set(config.fractions)) < MIN_FRACTIONS_FOR_FITS:
        raise UserError(
            f"{path}: power-law fits need at least {MIN_FRACTIONS_FOR_FITS} fractions (a "
            f"3-parameter curve passes through any 3 points), got "
            f"{len(set(config.fractions))}; add fractions or set fits = false in [report]")


def _check_learned_and_pruning(config: StudyConfig, path: Path) -> None:
    """Learned weights and pruning arms are fitted in memory on the cached embeddings; a prune
    arm ranks by a score there is, and its random partner is in the study."""
    import weighting

    for spec in config.strategies:
        if not fitted_in_memory(spec):
            continue
        if not config.in_memory:
            raise UserError(f"{path}: strategy {spec!r} is fitted on the cached embeddings in "
                            "memory: set [trainer] head = \"ridge\" or [evaluation] design = "
                            "\"kfold\"")
        try:
            arm = prune_arm(spec)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
        if arm is None:
            if len(weighting.parse_spec(spec)) > 1:
                raise UserError(f"{path}: strategy {spec!r}: 'learned' is not multiplied with "
                                "other strategies in a study")
            continue
        if arm.score not in PRUNE_SCORES and arm.score not in weighting.STRATEGIES:
            raise UserError(f"{path}: strategy {spec!r}: score must be one of "
                            f"{', '.join(PRUNE_SCORES)} or a strategy of curate weights list, "
                            f"got {arm.score!r}")
        if arm.weight not in weighting.STRATEGIES:
            raise UserError(f"{path}: strategy {spec!r}: weight must be a strategy of curate "
                            f"weights list, got {arm.weight!r}")
        if arm.weight not in config.strategies:
            raise UserError(f"{path}: strategy {spec!r} is set beside the random slice of the "
                            f"same size weighted by {arm.weight!r}: add {arm.weight!r} to "
                            "strategies")


def _check_losses(config: StudyConfig, path: Path) -> None:
    from training.loss_registry import parse_loss

    if not config.losses:
        raise UserError(f"{path}: give at least one loss (default: [\"huber\"])")
    if len(set(config.losses)) != len(config.losses):
        raise UserError(f"{path}: losses repeat a value")
    for spec in config.losses:
        try:
            plan = parse_loss(spec)
        except UserError as exc:
            raise UserError(f"{path}: loss {spec!r}: {exc}") from None
        if plan.needs_embedding and config.head == "ridge":
            raise UserError(f"{path}: loss {spec!r} trains the MLP head's embedding: use "
                            "head = \"mlp\" in [trainer]")


def _check_evaluation(config: StudyConfig, path: Path) -> None:
    design = config.evaluation.get("design", DEFAULT_DESIGN)
    if design not in DESIGNS:
        raise UserError(f"{path}: [evaluation] design must be one of {', '.join(DESIGNS)}, "
                        f"got {design!r}")
    for key, low in (("folds", 2), ("repeats", 1)):
        value = config.evaluation.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{path}: [evaluation] {key} must be an integer >= {low}, got "
                            f"{value!r}")
        if design != "kfold":
            raise UserError(f"{path}: [evaluation] {key} is for design = \"kfold\"")
    allow = config.evaluation.get("allow_without_reviews", False)
    if not isinstance(allow, bool):
        raise UserError(f"{path}: [evaluation] allow_without_reviews must be true or false, "
                        f"got {allow!r}")
