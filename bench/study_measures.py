"""What the study measures beside its searches: the draw's ceiling and the retain-matched scores.

Run by ``bench/study.py`` after a (draw, method)'s searches, on their folders (one draw's output
dir, whose cache holds the draw's Original and Gold):

- **the draw** (``<draw dir>/study/draw.json``, once per draw): Original's objective and CLEAR
  Retain on the report fold, and **Gold_B**: Gold's recipe finetuned again from the same start
  (the draw's pretrained base) with another finetuning seed, scored against Gold on the report
  fold as every run is. A perfect unlearner's model is another draw of Gold, so Gold_B's value
  is what one reaches on this draw: the ceiling (STUDY_DESIGN §2, PREREGISTRATION §2).
- **the machine** (``<draw dir>/study/machine.json``, every call): the CPU, torch's kernel
  capability and the kernel pins this process ran under, pinned as the searches were.
- **retain-matched scores** (``<draw dir>/study/matched-<search>.json``, PREREGISTRATION §5):
  per confirm run of a search, α* = the largest α ∈ [0, 1] at which the run's LoRA delta scaled
  by α keeps CLEAR Retain ≥ ``search.min_retain`` × Original's, and the objective there. A run
  feasible as trained has α* = 1. Otherwise α* is bisected (``retain_matched``): α = 0 is
  Original itself, feasible by construction, so the lower end always is; each step is a full
  evaluation on the report fold. Bisection assumes Retain falls as α grows (α scales the
  update); α* is a lower bound within 2^-steps.

Both files are written after each value, so a run killed midway goes on where it stopped.

    python bench/study_measures.py --gold-b-seed 1000 --search DRAW/searches/gd-20261207-101500 \
        --sweep DRAW/searches/gd-20261207-103000
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

FOLDER = "study"  # <draw dir>/study/
DRAW_FILE = "draw.json"
MACHINE_FILE = "machine.json"  # rewritten by every call: where it ran
ALPHA_STEPS = 5  # bisection steps: α* within 1/32


def scaled_adapter(files: dict[str, bytes], alpha: float) -> dict[str, bytes]:
    """A PEFT LoRA adapter's files with its delta scaled by ``alpha``: every ``lora_B`` matrix
    times α, so the merged weight is W + α·s·B·A (PEFT ``LoraLayer``: delta = s·B·A, s =
    lora_alpha / r). The A matrices and the config are kept."""
    from safetensors.torch import load, save

    weights = "adapter_model.safetensors"
    if weights not in files:
        raise ValueError(f"adapter has no {weights} (files: {', '.join(sorted(files))})")
    tensors = load(files[weights])
    scaled = {key: value * alpha if ".lora_B." in key else value for key, value in tensors.items()}
    return {**files, weights: save(scaled)}


def retain_matched(
    evaluate: Callable[[float], tuple[bool, float]], steps: int = ALPHA_STEPS
) -> tuple[float, float | None]:
    """(α*, objective at α*) by bisection on [0, 1] for a run infeasible at α = 1: ``evaluate``
    gives (feasible, objective) at an α. α = 0 (Original) is taken as feasible without being
    evaluated; when no α tried is feasible, α* = 0 and its objective is None (Original's)."""
    low, high, value = 0.0, 1.0, None
    for _ in range(steps):
        middle = (low + high) / 2
        feasible, objective = evaluate(middle)
        if feasible:
            low, value = middle, objective
        else:
            high = middle
    return low, value


def _write_json(path: Path, value: dict) -> None:
    """Atomically: a process killed while writing leaves the previous file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(scratch, path)


def search_config(search: Path):
    """The saved, validated config of a search folder (its ``state.json``)."""
    from clear_ray.config import Config

    return Config.from_flat(json.loads((search / "state.json").read_text())["config"]).validate()


def gold_b(cfg, refs, seed: int, log: Callable[[str], None]) -> dict[str, float]:
    """Gold_B's metrics on the report fold against Gold: Gold's recipe and start, finetuning
    seed ``seed`` (cached as ``<Gold's name>-seed<seed>``)."""
    from clear_ray.data.folds import REPORT
    from clear_ray.references import recipes
    from clear_ray.references.jobs import evaluation_task, finetune_job
    from clear_ray.references.prepare import on_driver_node
    from clear_ray.references.recipes import BASE, model_name
    from clear_ray.runtime.driver_tasks import result_of, trial_task

    models = Path(cfg.output_dir) / "cache" / "models"
    start = None
    if recipes.pretrain_applies(cfg):
        start = on_driver_node(models / model_name(cfg, refs.source, BASE), "pretrained base", log)
        if start is None:
            raise SystemExit(f"the draw's pretrained base is not in {models}: run a search first")
    name = f"{model_name(cfg, refs.source, 'gold')}-seed{seed}"
    log(f"Gold_B: Gold's recipe with finetuning seed {seed} (a Ray Train job unless cached)")
    model, _ = finetune_job(cfg, "gold", refs.staged_source, name, str(models), start, seed)
    launch = trial_task(evaluation_task, cfg.search).remote(
        model,
        name,
        refs.staged_source,
        cfg,
        True,
        refs.gold_full.reference,
        refs.folds.fold(REPORT),
    )
    evaluation, _, _ = result_of(launch, "Gold_B's evaluation", cfg.search)
    return dict(evaluation.metrics)


def measure_draw(cfg, refs, gold_b_seed: int, log: Callable[[str], None]) -> dict:
    """draw.json's content: Original's and Gold_B's report-fold values."""
    objective, retain = cfg.search.objective, cfg.search.retain_metric
    gold_b_metrics = gold_b(cfg, refs, gold_b_seed, log)
    return {
        "objective_name": objective,
        "original_objective": refs.original_full.metrics[objective],
        "original_retain": refs.original_full.metrics[retain],
        "gold_b_seed": gold_b_seed,
        "gold_b_objective": gold_b_metrics[objective],
        "gold_b_retain": gold_b_metrics.get(retain),
    }


def this_machine(cfg) -> dict:
    """machine.json's content: the CPU, torch's kernel capability and the pins in force here,
    where the (draw, method)'s searches have just run (after pinning, as theirs)."""
    from clear_ray.kernels import kernel_env
    from clear_ray.provenance import cpu_capability, cpu_name

    return {"cpu": cpu_name(), "cpu_capability": cpu_capability(), "pins": kernel_env(cfg.search)}


def match_search(
    cfg, refs, search: Path, labels: tuple[str, ...], steps: int, log: Callable[[str], None]
) -> Path:
    """α* and the objective there for every confirm run of ``search``'s one method whose
    configuration is one of ``labels``."""
    from clear_ray.data.folds import REPORT
    from clear_ray.eval.final import evaluate_adapter, full_eval_config, read_adapter
    from clear_ray.train.selection import Thresholds

    state = json.loads((search / "state.json").read_text())
    (method,) = state["methods"]
    confirm = json.loads((search / method / "confirm.json").read_text())
    path = search.parent.parent / FOLDER / f"matched-{search.name}.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    objective = cfg.search.objective
    thresholds = Thresholds.from_search(cfg.search, refs.original_full.metrics)
    for label in labels:
        for run in confirm["configurations"][label]["runs"]:
            key = f"{label}/seed{run['seed']}"
            if key in done:
                continue
            if run["feasible"]:
                done[key] = {"alpha": 1.0, "matched_objective": run["metrics"][objective]}
            else:
                files = read_adapter(Path(run["adapter"]))

                def evaluate(alpha: float, files: dict = files) -> tuple[bool, float]:
                    result = evaluate_adapter(
                        refs.original_model, scaled_adapter(files, alpha), refs.staged_source,
                        cfg.data.forget_split, full_eval_config(cfg.eval),
                        refs.gold_full.reference, cfg.data.modality, cfg.train.precision,
                        refs.folds.fold(REPORT),
                    )  # fmt: skip
                    retain = result.metrics[thresholds.retain_metric]
                    return retain >= thresholds.min_retain_metric, result.metrics[objective]

                alpha, value = retain_matched(evaluate, steps)
                matched = refs.original_full.metrics[objective] if value is None else value
                done[key] = {"alpha": alpha, "matched_objective": matched}
                log(f"{method} {key}: retain-matched at α = {alpha:g}, {objective} {matched:.4g}")
            _write_json(path, done)
    _write_json(path, done)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", type=Path, required=True, help="the method's search")
    parser.add_argument("--sweep", type=Path, required=True, help="the method's lr sweep")
    parser.add_argument("--gold-b-seed", type=int, required=True, help="Gold_B's finetune seed")
    parser.add_argument("--steps", type=int, default=ALPHA_STEPS, help="bisection steps for α*")
    args = parser.parse_args(argv)
    # The search's tuned and default runs, and the sweep's selected ones (its default runs
    # repeat the search's).
    searches = {args.search.resolve(): ("tuned", "default"), args.sweep.resolve(): ("tuned",)}
    output = args.search.resolve().parent.parent
    if args.sweep.resolve().parent.parent != output:
        parser.error("--search and --sweep must be of one output dir (one draw)")
    from clear_ray.console import log
    from clear_ray.kernels import pin_this_process

    cfg = search_config(args.search.resolve())
    pin_this_process(cfg.search)  # before torch computes: the numbers a search would give
    from clear_ray.references.prepare import prepare_references
    from clear_ray.runtime.cluster import local_ray
    from clear_ray.search.quiet import quiet_console

    quiet_console()
    with local_ray(cfg.search):
        refs = prepare_references(cfg, log)
        draw_file = output / FOLDER / DRAW_FILE
        if not draw_file.is_file():
            _write_json(draw_file, measure_draw(cfg, refs, args.gold_b_seed, log))
        _write_json(output / FOLDER / MACHINE_FILE, this_machine(cfg))
        for search, labels in searches.items():
            match_search(search_config(search), refs, search, labels, args.steps, log)
    print(f"[study] wrote {output / FOLDER}", flush=True)


if __name__ == "__main__":
    main()
