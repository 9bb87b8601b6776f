"""The study's extra runs on one finished search: the L1 arm and the default runs' robustness.

L1 arm: does CLEAR's L1 on the LoRA weights (arXiv 2410.18057, §4; CLEAR
``mm/trainer.py``) make forgetting easier to undo, a small update staying close to Original?
The tuned configuration of ``confirm.json`` is trained again with ``regularizer.l1`` toggled (0
when the tuned value is > 0, else the geometric middle of the space's positive L1 values), at
its tuned epoch count and with the same confirm seeds, through the search's own confirm stage
(``clear_ray.tune.confirm_configurations``: the trials' trainable, a full evaluation on the
report fold), and every run gets the relearning attack. Only the attack: it answers the
question, and the arm must stay within ~4 minutes per method on 2 cores.

The search checked its best trial and its tuned runs (``tune.robustness``); the default
configuration's runs get every check of the search here, so the study's robustness table has
default and tuned rows.

Writes, in ``<search>/<method>/study/``: ``confirm.json`` (confirm.json's format, one
configuration ``l1_toggled``) and ``robustness.json`` (``{"default/seed<N>" |
"l1_toggled/seed<N>": {"robust/...": value}}``). bench/study.py runs it after each search:

    python bench/study_arm.py --search /tmp/clear_ray_study/searches/dpo-20261201-150000
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

L1 = "regularizer.l1"
ARM = "l1_toggled"  # the arm's configuration label (confirm.json, robustness.json, MLflow tag)
ARM_CHECKS = ("relearn",)
FOLDER = "study"  # <search>/<method>/study/


def toggled_l1(tuned: float, distribution: BaseDistribution) -> float | None:
    """The arm's L1: 0 when the tuned L1 is > 0; else the geometric middle of the space's
    positive L1 values (choices, or bounds), None when it has none."""
    if tuned > 0:
        return 0.0
    if hasattr(distribution, "choices"):  # categorical
        values = [float(choice) for choice in distribution.choices]
    else:
        values = [float(distribution.low), float(distribution.high)]
    positive = [value for value in values if value > 0]
    return math.sqrt(min(positive) * max(positive)) if positive else None


def arm_params(tuned: dict, space: dict[str, BaseDistribution], default_l1: float) -> dict | None:
    """The tuned params with L1 toggled; None when L1 is not a dimension of the space."""
    if L1 not in space:
        return None
    value = toggled_l1(float(tuned.get(L1, default_l1)), space[L1])
    return None if value is None else {**tuned, L1: value}


def confirm_adapters(configuration: dict, label: str) -> dict[str, Path]:
    """A confirm.json configuration's runs by robustness label ``<label>/seed<N>``."""
    return {
        f"{label}/seed{run['seed']}": Path(run["adapter"])
        for run in configuration.get("runs", [])
        if run.get("adapter") and Path(run["adapter"]).is_dir()
    }


def run_arm(search_root: Path) -> Path:
    """The arm and the default runs' checks for the one method of ``search_root``; the folder."""
    from clear_ray.config import Config
    from clear_ray.console import log
    from clear_ray.data.folds import SELECTION
    from clear_ray.references import prepare_references
    from clear_ray.robust.run import report_persons, run_checks, write_robustness
    from clear_ray.search.confirm import CONFIRM_FILE, DEFAULT, Configuration, write_confirm
    from clear_ray.search.quiet import quiet_console
    from clear_ray.search.session import SearchDirs
    from clear_ray.search.space import load_space, scale_lr
    from clear_ray.search.trainable import init_ray
    from clear_ray.tracking import SearchTracker
    from clear_ray.train.selection import Thresholds
    from clear_ray.train.worker import TrialInputs
    from clear_ray.tune import Search, confirm_configurations

    output = search_root.parent.parent
    state = SearchDirs(output, search_root.name).load()
    cfg = Config.from_flat(state.config).validate()
    dirs = SearchDirs(output, state.name, cfg.search.storage_path)
    (method,) = state.methods
    cfg = cfg.replace({"method.name": method})
    confirm = json.loads((dirs.method(method) / CONFIRM_FILE).read_text())
    origin = Path(state.space_origins[method])
    space = scale_lr(load_space(origin.stem, origin.parent), cfg.search.lr_scale)
    tuned = confirm["configurations"]["tuned"]
    params = arm_params(tuned["params"], space, cfg.regularizer.l1)
    folder = dirs.method(method) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    quiet_console()
    init_ray(cfg.search)
    tracker = SearchTracker(cfg)
    tracker.reopen(state.runs[method].parent_id)  # the arm's runs are the method's children
    refs = prepare_references(cfg, log)
    inputs = TrialInputs(
        refs.staged_source,
        refs.original_model,
        refs.gold.reference,
        Thresholds.from_search(cfg.search, refs.original.metrics),
        refs.folds.fold(SELECTION),
    )
    tags = {"clear_ray.search": state.name, "study": ARM}
    search = Search(cfg, state, dirs, refs, inputs.thresholds, tracker, tags, inputs)
    adapters = confirm_adapters(confirm["configurations"][DEFAULT], DEFAULT)
    checks = {label: cfg.robust.names() for label in adapters}
    if params is None:
        log(f"{method}: no L1 arm, {L1} is not a dimension of the space (or has no value > 0)")
    else:
        arm = Configuration(params, tuned["epochs"], None)
        full = Thresholds.from_search(cfg.search, refs.original_full.metrics)
        confirm_configurations(search, method, {ARM: arm}, list(confirm["seeds"]), full)
        write_confirm(folder / CONFIRM_FILE, method, list(confirm["seeds"]), {ARM: arm})
        arm_adapters = confirm_adapters(arm.summary(), ARM)
        adapters.update(arm_adapters)
        checks.update({label: ARM_CHECKS for label in arm_adapters})
    persons = report_persons(dirs.root, refs.source, cfg.data.forget_split)
    outcomes: dict = {label: {} for label in adapters}
    for names in sorted(set(checks.values())):  # one batch of Ray tasks per set of checks
        chosen = {label: path for label, path in adapters.items() if checks[label] == names}
        found = run_checks(
            cfg, names, chosen, refs.original_model, refs.gold_model, refs.staged_source, persons
        )
        for label, by_check in found.items():
            outcomes[label].update(by_check)
    write_robustness(folder, outcomes)
    tracker.finish(tracker.parent_id)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", type=Path, required=True, help="a finished one-method search")
    args = parser.parse_args(argv)
    folder = run_arm(args.search.resolve())
    print(f"[study] wrote {folder}", flush=True)


if __name__ == "__main__":
    main()
