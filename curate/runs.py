"""``curate runs``: run folders (``curate train --out``, a study's ``runs/``) listed, shown and
set side by side, read-only, from their config.json, metrics.json and manifest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from curate.common import JsonOption, Output, QuietOption, VerboseOption, command
from curation.errors import UserError
from training.run_folder import DEFAULT_RUNS, RunFolder

runs_app = typer.Typer(
    help="Run folders: list, show, compare (config, val/test PLCC and RMSE, best epoch, time).",
    no_args_is_help=True,
)

# A folder is searched this deep for run folders: a runs folder (1), a study (runs/<run>: 2).
SEARCH_DEPTH = 2


def find_runs(folders: list[Path]) -> list[RunFolder]:
    """The run folders (a folder with a config.json of ``curate train``) in each of
    ``folders``: the folder itself, its subfolders, or a study's ``runs/<run>``; by path."""
    found: dict[Path, RunFolder] = {}
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
        level = [folder]
        for _ in range(SEARCH_DEPTH + 1):
            below: list[Path] = []
            for candidate in level:
                if _is_run(candidate):
                    found.setdefault(candidate.resolve(), RunFolder(candidate))
                else:
                    below += sorted(p for p in candidate.iterdir() if p.is_dir())
            level = below
    return sorted(found.values(), key=lambda r: str(r.path))


def _is_run(folder: Path) -> bool:
    import json

    config = RunFolder(folder).config
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return False
    return isinstance(data, dict) and {"slice", "weights", "mode"} <= data.keys()


def open_run(path: Path) -> RunFolder:
    """A run folder named on the command line; anything else is a one-line error."""
    if not _is_run(path):
        raise UserError(f"{path}: not a run folder (no config.json of curate train); "
                        "curate runs list shows the runs there are")
    return RunFolder(path)


def summary(run: RunFolder) -> dict[str, Any]:
    """One run's facts: where, what it trained, whether it finished, and its scores."""
    config = run.read_config()
    out: dict[str, Any] = {
        "run": str(run.path),
        "complete": run.is_complete(),
        **{k: config.get(k) for k in ("slice", "weights", "mode", "seed", "image_encoder",
                                      "text_encoder")},
    }
    if not run.metrics.is_file():
        return out
    metrics = run.read_metrics()
    for split in ("val", "test"):
        scores = metrics.get(split) or {}
        out[f"{split}_plcc"] = scores.get("plcc")
        out[f"{split}_rmse"] = scores.get("rmse")
    history = metrics.get("history") or []
    encoding = metrics.get("encoding") or {}
    out["best_epoch"] = metrics.get("best_epoch")
    out["epochs_run"] = metrics.get("epochs_run")
    # Time spent: encoding (frozen mode) and every epoch, as the run recorded them.
    out["seconds"] = round(float(encoding.get("seconds") or 0)
                           + sum(float(h.get("seconds") or 0) for h in history), 3)
    if "encoders_ran" in metrics:
        out["encoders_ran"] = {tower: d.get("label", d.get("loaded"))
                               for tower, d in metrics["encoders_ran"].items()}
    return out


def _number(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (f"{'run':<40} {'weights':<16} {'mode':<8} {'seed':>4} {'val PLCC':>8} "
          f"{'test PLCC':>9} {'test RMSE':>9} {'best':>4} {'time s':>7}")


def _row(s: dict[str, Any]) -> str:
    name = Path(s["run"]).name + ("" if s["complete"] else " (unfinished)")
    return (f"{name[:40]:<40} {str(s['weights'])[:16]:<16} {s['mode']:<8} {s['seed']:>4} "
            f"{_number(s.get('val_plcc'), '.3f'):>8} {_number(s.get('test_plcc'), '.3f'):>9} "
            f"{_number(s.get('test_rmse'), '.3f'):>9} {_number(s.get('best_epoch'), 'd'):>4} "
            f"{_number(s.get('seconds'), '.1f'):>7}")


@command(runs_app, "list")
def runs_list(
    folders: Annotated[
        list[Path] | None,
        typer.Argument(help="Folders of runs, run folders or study folders (default: ./runs)."),
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """One line per run folder: weights, mode, seed, val/test PLCC, test RMSE, best epoch, time.

    Reads (never writes) each run's config.json and metrics.json; a run without a manifest.json
    is listed as unfinished."""
    out = Output(quiet=quiet, json=as_json)
    if not folders:
        folders = [DEFAULT_RUNS] if DEFAULT_RUNS.is_dir() else []
        if not folders:
            raise UserError(f"no ./{DEFAULT_RUNS} folder here: name the folders of runs "
                            "(curate runs list FOLDER ...)")
    summaries = [summary(r) for r in find_runs(folders)]
    out.document(summaries)
    if not summaries:
        out.line(f"no run folders in {', '.join(map(str, folders))}")
        return
    out.line(HEADER)
    for s in summaries:
        out.line(_row(s))


@command(runs_app, "show")
def runs_show(
    run: Annotated[Path, typer.Argument(help="A run folder (curate train --out).")],
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """A run's config and scores; --verbose adds the epoch history and the scores per category;
    --json prints config.json, metrics.json and manifest.json whole."""
    out = Output(quiet=quiet, json=as_json, verbose=verbose)
    folder = open_run(run)
    s = summary(folder)
    metrics = folder.read_metrics() if folder.metrics.is_file() else None
    out.document({"summary": s, "config": folder.read_config(), "metrics": metrics,
                  "manifest": folder.read_manifest() if folder.is_complete() else None})
    out.line(f"{folder.path}: {'complete' if s['complete'] else 'unfinished (no manifest.json)'}")
    config = folder.read_config()
    out.line("  config: " + ", ".join(f"{k}={config[k]}" for k in sorted(config)
                                      if k != "catalog"))
    if metrics is None:
        return
    for split in ("val", "test"):
        scores = metrics.get(split) or {}
        out.line(f"  {split:<4} PLCC {_number(scores.get('plcc'), '.4f')}  RMSE "
                 f"{_number(scores.get('rmse'), '.4f')}  MAE {_number(scores.get('mae'), '.4f')}"
                 f"  Spearman {_number(scores.get('spearman'), '.4f')}  ({scores.get('n')} items)")
    out.line(f"  best epoch {s['best_epoch']} of {s['epochs_run']}; {s['seconds']:.1f}s "
             "(encoding and epochs)")
    if "encoders_ran" in s:
        out.line("  encoders ran: " + ", ".join(f"{k} {v}" for k, v in s["encoders_ran"].items()))
    for h in metrics.get("history") or []:
        out.detail(f"  epoch {h.get('epoch')}: train loss {_number(h.get('train_loss'), '.4f')}, "
                   f"val PLCC {_number(h.get('val_plcc'), '.4f')}, "
                   f"{_number(h.get('seconds'), '.2f')}s")
    for row in (metrics.get("test") or {}).get("by_category") or []:
        out.detail(f"  test {str(row.get('category'))[:32]:<32} n={row.get('n')} PLCC "
                   f"{_number(row.get('plcc'), '.3f')} RMSE {_number(row.get('rmse'), '.3f')}")
    out.line("  full detail: --verbose, or --json")


@command(runs_app, "compare")
def runs_compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Runs side by side: their scores, and the config keys in which they differ."""
    out = Output(quiet=quiet, json=as_json)
    if len(runs) < 2:
        raise UserError("give two or more run folders to compare")
    folders = [open_run(r) for r in runs]
    summaries = [summary(f) for f in folders]
    configs = [f.read_config() for f in folders]
    keys = sorted(set().union(*configs) - {"catalog"})
    differ = {k: [c.get(k) for c in configs] for k in keys
              if len({repr(c.get(k)) for c in configs}) > 1}
    out.document({"runs": summaries, "config_differences": differ})
    out.line(HEADER)
    for s in summaries:
        out.line(_row(s))
    if differ:
        out.line("config differs in: " + "; ".join(
            f"{k} " + " / ".join(str(v) for v in values) for k, values in differ.items()))
    else:
        out.line("same config (catalog aside)")
