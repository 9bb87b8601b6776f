"""The best trial's last phases: its full evaluation on the report fold, diagnostics, confirm
seeds, robustness checks and, when feasible, its registered MLflow model."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.config import Config
from clear_ray.console import log
from clear_ray.data.folds import REPORT
from clear_ray.pipeline.confirm import confirm_method
from clear_ray.pipeline.context import MethodSearch, Search
from clear_ray.pipeline.reports import report_diagnostics
from clear_ray.pipeline.robustness import robustness
from clear_ray.search.session import CONFIRM
from clear_ray.train.selection import Thresholds

if TYPE_CHECKING:  # heavy (SciPy); imported where used
    from clear_ray.search.results import LeaderboardRow, TrialRow

FINAL_DIR = "final_evaluation"  # <method>/final_evaluation: the best trial's full evaluation


def finalise(
    run: MethodSearch, rows: list[TrialRow], best: TrialRow, searched: bool
) -> LeaderboardRow:
    """The method's leaderboard row: the best trial fully evaluated (kept from before a
    resume), or the confirm seeds' mean, with robustness checks; the model registered when
    the best trial is feasible."""
    from clear_ray.search.results import LeaderboardRow  # lazy: SciPy, not loaded by --help

    search, method, cfg = run.search, run.method, run.cfg
    state, tracker = search.state, search.tracker
    final = (searched and read_final_evaluation(run.dir, best.adapter)) or {}
    if not final:
        final = final_evaluation(cfg, best.adapter, search, run.dir / FINAL_DIR)
        tracker.log_metrics(run.parent_id, final, prefix="final/")
        tracker.log_artifacts(run.parent_id, [run.dir / FINAL_DIR], "final_evaluation")
        state.runs[method].stage = CONFIRM
        search.dirs.save(state)
    report_diagnostics(run, rows, best, final)
    # Feasible at full evaluation: thresholds from Original's full evaluation.
    full_thresholds = Thresholds.from_search(cfg.search, search.refs.original_full.metrics)
    feasible = full_thresholds.constraint(final) <= 0
    outcome = LeaderboardRow(method, final, "yes" if feasible else "no", best.trial)
    if cfg.search.confirm_seeds:
        tuned, default = confirm_method(run, best, full_thresholds)
        outcome, state.runs[method].default_outcome = tuned, asdict(default)
    # After the confirm runs, so that their adapters are checked too; the leaderboard row
    # shows the checks of the models its numbers come from (the seeds' mean, or the best).
    robust = robustness(run, Path(best.adapter))
    final = {**final, **robust}
    outcome = replace(outcome, metrics={**outcome.metrics, **robust})
    if best.feasible:
        register_model(run, best, final, feasible)
    return outcome


def register_model(run: MethodSearch, best: TrialRow, final: dict, feasible: bool) -> None:
    """The best trial's adapter on Original, registered as ``clear_ray-<method>@best``."""
    search, cfg = run.search, run.cfg
    child = search.tracker.find_child(best.trial)
    if child:
        # lazy: MLflow and transformers, not loaded by --help
        from clear_ray.serving import best_model_card, original_reference, register_best

        original = original_reference(search.refs.original_model, cfg.model.original)
        card = best_model_card(cfg, search, best, final, feasible, original)
        model_name = f"clear_ray-{run.method}"
        adapter, precision = Path(best.adapter), cfg.train.precision
        register_best(search.tracker, model_name, child, adapter, original, card, precision)
        log(
            f"{run.method}: best model registered, mlflow.pyfunc.load_model"
            f'("models:/{model_name}@best")'
        )


def read_final_evaluation(method_dir: Path, adapter: str) -> dict[str, float]:
    """The best trial's final evaluation a resumed search finds on disk (empty if none, or of
    another adapter)."""
    path = method_dir / FINAL_DIR / "metrics.json"
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    return summary["metrics"] if summary.get("adapter") == adapter else {}


def final_evaluation(cfg: Config, adapter: str, search: Search, out: Path) -> dict[str, float]:
    """Full evaluation of the best trial's best-epoch adapter; per-item values go to ``out``."""
    # lazy: torch and transformers, not loaded by --help
    from clear_ray.eval.final import full_eval_config, run_final_evaluation
    from clear_ray.eval.outputs import write_outputs

    log(f"{cfg.method.name}: full evaluation of the best trial ({adapter})")
    refs = search.refs
    result = run_final_evaluation(
        cfg,
        search.inputs.original_dir,
        Path(adapter),
        search.inputs.source,
        refs.gold_full.reference,
        refs.folds.fold(REPORT),
    )
    summary = {
        "eval_kind": result.eval_kind,
        "checkpoint": refs.original_dir,
        "adapter": adapter,
        "data": refs.source,
        "forget_split": cfg.data.forget_split,
        "modality": cfg.data.modality,
        "fold": "report" if refs.folds.active else "none (report_fraction 0)",
        "eval": vars(full_eval_config(cfg.eval)),
        "metrics": result.metrics,
    }
    write_outputs(out, summary, result.tasks)
    return result.metrics
