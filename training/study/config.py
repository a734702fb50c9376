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
MIN_SEEDS = 3  # a mean and an interval need a spread
TRAINER_KEYS = ("mode", "image_encoder", "text_encoder", "epochs", "batch_size", "lr",
                "patience", "huber_delta", "renormalise", "weight_decay", "warmup", "clip")
REPORT_KEYS = ("bootstrap", "extrapolate_from", "target_plcc", "target_rmse", "baseline")
DEFAULT_BOOTSTRAP = 1000
DEFAULT_EXTRAPOLATE_FROM = 0.4
# The errors that are fitted: column of the results table -> how the report names it.
ERRORS = {"error_plcc": "1 - PLCC", "test_rmse": "RMSE"}


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
    trainer: dict[str, Any] = field(default_factory=lambda: {"mode": "frozen"})
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        return str(self.report.get("baseline", self.strategies[0]))


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
seeds = {list(DEFAULT_SEEDS)}              # slice seed and trainer seed; at least {MIN_SEEDS}
{out_line}

[trainer]                      # options of `curate train`
mode = "frozen"                # frozen: encode once, train the head; finetune: the paper
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
    for key, valid in (("trainer", TRAINER_KEYS), ("report", REPORT_KEYS)):
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
    for key in ("fractions", "strategies", "seeds"):
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
    "trainer": (dict, None), "report": (dict, None),
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
    if len(set(config.seeds)) < MIN_SEEDS:
        raise UserError(f"{path}: give at least {MIN_SEEDS} distinct seeds (intervals need "
                        f"them), got {list(config.seeds)}")
    if not config.strategies:
        raise UserError(f"{path}: give at least one strategy")
    for spec in config.strategies:
        try:
            for name, params in weighting.parse_spec(spec):
                weighting.get_strategy(name).resolve(params)
        except ValueError as exc:
            raise UserError(f"{path}: strategy {spec!r}: {exc}") from None
    if config.baseline not in config.strategies:
        raise UserError(f"{path}: baseline {config.baseline!r} is not one of the strategies")
    mode = config.trainer.get("mode", "frozen")
    if mode not in ("frozen", "finetune"):
        raise UserError(f"{path}: [trainer] mode must be frozen or finetune, got {mode!r}")
