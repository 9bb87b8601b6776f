"""Search efficiency: TPE + ASHA against the full grid that bash sweeps in this field run.

One method on the synthetic benchmark, two searches through the real CLI
(``python -m clear_ray.tune``):

- grid: 3 learning rates × 3 retain weights × 2 L1 strengths = 18 trials, every epoch run;
- TPE + ASHA: the same ranges as continuous (log) dimensions, L1 from the same two values.

Cost is counted in trial-epochs (every epoch a trial trains and evaluates). The grid's cost to
reach its best feasible objective is its whole sweep (a sweep cannot know its best before it
ends; the epochs up to the grid's best trial are reported too); TPE + ASHA's is the
trial-epochs spent, in trial order, until a feasible trial matches or beats that objective.

    python bench/search_efficiency.py --out bench/results/search_efficiency.json

Target (issue 6): TPE + ASHA needs ≤ 1/3 of the grid's trial-epochs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

LEARNING_RATES = [3e-4, 1e-3, 3e-3]
RETAIN_WEIGHTS = [0.3, 1.0, 3.0]
L1_STRENGTHS = [0.0, 1e-3]


def spaces() -> tuple[str, str]:
    grid = (
        f"train.lr: {{distribution: categorical, choices: {LEARNING_RATES}}}\n"
        f"method.alpha: {{distribution: categorical, choices: {RETAIN_WEIGHTS}}}\n"
        f"regularizer.l1: {{distribution: categorical, choices: {L1_STRENGTHS}}}\n"
    )
    continuous = (
        f"train.lr: {{distribution: loguniform, low: {LEARNING_RATES[0]}, "
        f"high: {LEARNING_RATES[-1]}}}\n"
        f"method.alpha: {{distribution: loguniform, low: {RETAIN_WEIGHTS[0]}, "
        f"high: {RETAIN_WEIGHTS[-1]}}}\n"
        f"regularizer.l1: {{distribution: categorical, choices: {L1_STRENGTHS}}}\n"
    )
    return grid, continuous


def run_search(output: Path, space: Path, *args: str) -> tuple[list[dict], float]:
    """Run one search; its trial rows (creation order) and wall time."""
    started = time.perf_counter()
    command = [
        sys.executable, "-m", "clear_ray.tune", "--search-space", str(space),
        "--output-dir", str(output), "--experiment", "search_efficiency", *args,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    wall = time.perf_counter() - started
    newest = max((output / "searches").iterdir(), key=lambda path: path.stat().st_mtime)
    method = json.loads((newest / "state.json").read_text())["methods"][0]
    with (newest / method / "trials.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["number"]))
    return rows, wall


def objective(row: dict) -> float:
    return float(row["best_objective"]) if row["feasible"] == "yes" else float("-inf")


def epochs_until(rows: list[dict], target: float) -> int | None:
    """Trial-epochs spent, in trial order, until a feasible trial reaches ``target``."""
    spent = 0
    for row in rows:
        spent += int(row["stopped_at"])
        if objective(row) >= target:
            return spent
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="gd")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tpe-samples", type=int, default=18)
    parser.add_argument(
        "--objective",
        default="forget_quality_js",
        help="continuous JS quality by default: KS p-values on 16 forget items tie a lot",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/clear_ray_bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_efficiency.json"))
    args = parser.parse_args()

    output = args.output_dir.resolve()
    output.mkdir(parents=True, exist_ok=True)
    grid_text, continuous_text = spaces()
    grid_space, tpe_space = output / "grid.yaml", output / "continuous.yaml"
    grid_space.write_text(grid_text)
    tpe_space.write_text(continuous_text)
    common = [
        "--method", args.method, "--epochs", str(args.epochs), "--objective", args.objective,
        "--set", "eval.generate=false",
    ]  # fmt: skip
    grid_size = len(LEARNING_RATES) * len(RETAIN_WEIGHTS) * len(L1_STRENGTHS)
    grid, grid_wall = run_search(
        output, grid_space, *common, "--sampler", "grid", "--scheduler", "none",
        "--num-samples", str(grid_size),
    )  # fmt: skip
    print(f"grid: {len(grid)} trials in {grid_wall:.0f} s", flush=True)
    tpe, tpe_wall = run_search(
        output, tpe_space, *common, "--sampler", "tpe", "--scheduler", "asha",
        "--num-samples", str(args.tpe_samples),
    )  # fmt: skip
    print(f"TPE + ASHA: {len(tpe)} trials in {tpe_wall:.0f} s", flush=True)

    grid_best = max(objective(row) for row in grid)
    grid_cost = sum(int(row["stopped_at"]) for row in grid)
    tpe_cost = epochs_until(tpe, grid_best)
    record = {
        "method": args.method,
        "objective": args.objective,
        "epochs": args.epochs,
        "grid": {
            "trials": len(grid),
            "trial_epochs": grid_cost,
            "trial_epochs_to_its_best": epochs_until(grid, grid_best),
            "best_feasible_objective": grid_best,
            "wall_s": grid_wall,
        },
        "tpe_asha": {
            "trials": len(tpe),
            "trial_epochs": sum(int(row["stopped_at"]) for row in tpe),
            "trial_epochs_to_grid_best": tpe_cost,
            "best_feasible_objective": max(objective(row) for row in tpe),
            "wall_s": tpe_wall,
        },
        "ratio": None if tpe_cost is None else tpe_cost / grid_cost,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    if tpe_cost is None:
        print(f"TPE + ASHA did not reach the grid's best ({grid_best:.4g}) in {len(tpe)} trials")
    else:
        print(f"TPE + ASHA reached the grid's best after {tpe_cost} of the grid's {grid_cost} "
              f"trial-epochs (ratio {record['ratio']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
