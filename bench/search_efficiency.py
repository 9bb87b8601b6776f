"""Search efficiency: TPE + ASHA against the full grid that bash sweeps in this field run.

Per method, through the real CLI (``python -m clear_ray.tune``), in one output dir:

- grid: 3 learning rates × 3 retain weights × 2 L1 strengths = 18 trials, every epoch run
  (``--scheduler none``), so every trial's full per-epoch curve is on disk;
- TPE + ASHA: the same ranges as continuous (log) dimensions, L1 from the same two values,
  once per sampler seed and per ASHA setting (grace period, reduction factor).

Cost is counted in trial-epochs (every epoch a trial trains and evaluates). The grid's cost to
reach its best feasible objective is its whole sweep (a sweep cannot know its best before it
ends); TPE + ASHA's is the trial-epochs spent, in trial order, until a feasible trial matches
or beats that objective. The grid's best is shown next to Original's (and Gold's) value: if
it is Original's level there was nothing to find.

ASHA's own settings are examined by replaying Ray's ASHA (one bracket, trials one at a time,
as ``search.max_concurrent = 1`` runs them) on the grid's full curves: the grid's order does
not depend on results, so the replay is what a grid + ASHA search with those settings would
have stopped, with no extra training. It shows what each grace period and reduction factor
saves and whether it stops the trials worth keeping (good idk trials peak at epochs 3-4).

    python bench/search_efficiency.py                 # 3 methods x (grid + 5 seeds)
    python bench/search_efficiency.py --smoke         # a reduced run that proves the pipeline

Searches run ``--lanes`` at once (default: the cores, at most 4), each in its own output dir
that shares the data and the reference cache (bench/searches.py); the trial-epoch counts are
the same whatever the lanes, only wall times change. Searches run without confirm runs and
robustness checks: the trial curves are what is measured.

Rerun the same command after an interruption: finished searches are kept (bench/searches.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from searches import (
    find_search,
    lane_of,
    make_lanes,
    references_from_leaderboard,
    run_logged,
    search_done,
    trial_curves,
)

from clear_ray.provenance import machine_summary

LEARNING_RATES = [3e-4, 1e-3, 3e-3]
RETAIN_WEIGHTS = [0.3, 1.0, 3.0]
L1_STRENGTHS = [0.0, 1e-3]
# (grace period, reduction factor) pairs replayed on the grid's curves.
REPLAYED_ASHA = [(1, 2.0), (2, 2.0), (3, 2.0), (1, 3.0), (2, 3.0)]
INFEASIBLE = -math.inf
SMOKE = {"methods": "gd", "seeds": "0", "epochs": 2, "tpe_samples": 3, "asha": "1:2",
         "grid": ([1e-3, 3e-3], [1.0], [0.0])}  # fmt: skip


# ---------------------------------------------------------------- pure functions


@dataclass(frozen=True)
class TrialCurve:
    """A trial's per-epoch running best: ASHA's score (``best_score``: the objective when
    feasible, far below any objective when not) and the feasible best objective
    (−inf while no epoch has been feasible)."""

    scores: list[float]
    objectives: list[float]

    @classmethod
    def from_reports(cls, reports: list[dict]) -> TrialCurve:
        return cls(
            scores=[float(report["best_score"]) for report in reports],
            objectives=[
                float(report["best_objective"]) if report.get("feasible") else INFEASIBLE
                for report in reports
            ],
        )

    def best_at(self, epochs: int) -> float:
        """The feasible best objective after ``epochs`` epochs (−inf before any)."""
        return self.objectives[min(epochs, len(self.objectives)) - 1] if epochs else INFEASIBLE


def asha_rungs(grace: int, reduction_factor: float, max_t: int) -> list[float]:
    """The epochs at which Ray's ASHAScheduler (one bracket) compares trials, ascending."""
    grace = min(grace, max_t)
    count = int(np.log(max_t / grace) / np.log(reduction_factor) + 1)  # as Ray computes it
    return [grace * reduction_factor**k for k in range(count)]


def asha_stops(
    curves: list[list[float]], grace: int, reduction_factor: float, max_t: int
) -> list[int]:
    """Epochs each trial runs when Ray's ASHA sees ``curves`` (per-epoch scores, higher is
    better) one trial after another: at each rung a trial whose score is below the
    (1 − 1/factor) percentile of the scores recorded there before it is stopped. A curve
    shorter than ``max_t`` ended by itself (a collapse). Mirrors ray.tune.schedulers
    .async_hyperband._Bracket.on_result and ASHAScheduler.on_trial_complete."""
    rungs: dict[float, dict[int, float]] = {
        rung: {} for rung in asha_rungs(grace, reduction_factor, max_t)
    }

    def on_result(trial: int, epoch: int, score: float) -> bool:
        """Whether ASHA stops ``trial`` on this result; records it at its rung."""
        for rung in sorted(rungs, reverse=True):
            if epoch < rung or trial in rungs[rung]:
                continue
            recorded = list(rungs[rung].values())
            rungs[rung][trial] = score
            percentile = (1 - 1 / reduction_factor) * 100
            return bool(recorded) and score < np.nanpercentile(recorded, percentile)
        return False

    stops = []
    for trial, curve in enumerate(curves):
        ran = len(curve)
        for epoch, score in enumerate(curve, 1):
            if epoch >= max_t:  # Tune stops it at max_t without recording
                ran = epoch
                break
            if on_result(trial, epoch, score):
                ran = epoch
                break
        if ran:
            on_result(trial, ran, curve[ran - 1])  # on_trial_complete records its last result
        stops.append(ran)
    return stops


def epochs_until(costs: list[int], objectives: list[float], target: float) -> int | None:
    """Trial-epochs spent, in trial order, until a trial's feasible objective reaches
    ``target``; None if none does."""
    spent = 0
    for cost, objective in zip(costs, objectives, strict=True):
        spent += cost
        if objective >= target:
            return spent
    return None


def run_summary(curves: list[TrialCurve], costs: list[int], target: float) -> dict:
    """A search (or a replay) whose trials ran ``costs`` epochs: its cost, its best feasible
    objective, the trial-epochs it took to reach ``target``."""
    reached = [curve.best_at(cost) for curve, cost in zip(curves, costs, strict=True)]
    best = max(reached, default=INFEASIBLE)
    return {
        "trials": len(curves),
        "trial_epochs": sum(costs),
        "best_feasible_objective": best if best > INFEASIBLE else None,
        "trial_epochs_to_target": epochs_until(costs, reached, target),
    }


def replay(curves: list[TrialCurve], grace: int, reduction_factor: float, max_t: int) -> dict:
    """The grid's curves under ASHA(grace, factor): cost, best kept, whether the grid's best
    trial survives to its best epoch, and the epochs to reach the full grid's best."""
    full = run_summary(curves, [len(curve.scores) for curve in curves], math.inf)
    stops = asha_stops([curve.scores for curve in curves], grace, reduction_factor, max_t)
    target = full["best_feasible_objective"]
    summary = run_summary(curves, stops, math.inf if target is None else target)
    return {
        "grace_period": grace,
        "reduction_factor": reduction_factor,
        "rungs": asha_rungs(grace, reduction_factor, max_t),
        **summary,
        "grid_best_kept": target is not None and summary["best_feasible_objective"] == target,
    }


def spread(values: list[float | None]) -> dict:
    """Median and range of the values reached; how many runs reached one at all."""
    reached = [value for value in values if value is not None]
    return {
        "reached": len(reached),
        "runs": len(values),
        "median": statistics.median(reached) if reached else None,
        "min": min(reached, default=None),
        "max": max(reached, default=None),
    }


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _range(stats: dict, digits: int = 4) -> str:
    if stats["median"] is None:
        return f"none of {stats['runs']}"
    return (
        f"{_num(stats['median'], digits)} [{_num(stats['min'], digits)}–"
        f"{_num(stats['max'], digits)}] ({stats['reached']}/{stats['runs']})"
    )


def efficiency_markdown(record: dict) -> str:
    """The bench/RESULTS.md section from ``record`` (the JSON this script writes)."""
    objective = record["objective"]
    lines = [
        "## Search efficiency: TPE + ASHA against the full grid",
        "",
        f"Objective `{objective}` (higher is better), {record['epochs']} epochs per trial, "
        f"retain constraint as the search's default. Grid: {record['grid_size']} trials, every "
        f"epoch run. TPE + ASHA: {record['tpe_samples']} trials per run, sampler seeds "
        f"{record['seeds']}. Median [min–max] over seeds (runs that reached it / runs).",
        "",
        "| method | Original | Gold | grid best feasible | grid trial-epochs | ASHA | "
        "TPE best feasible | TPE trial-epochs to the grid's best | ratio to the grid's cost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, result in record["methods"].items():
        grid = result["grid"]
        for setting, tpe in result["tpe"].items():
            lines.append(
                f"| {method} | {_num(result['original'])} | {_num(result['gold'])} | "
                f"{_num(grid['best_feasible_objective'])} | {grid['trial_epochs']} (its best at "
                f"{grid['trial_epochs_to_target'] or '–'}) | {setting} | "
                f"{_range(tpe['best'])} | {_range(tpe['epochs_to_grid_best'], 3)} | "
                f"{_range(tpe['ratio'], 2)} |"
            )
    lines += [
        "",
        "ASHA's settings replayed on the grid's full curves (what a grid + ASHA search with "
        "these settings stops; no extra training):",
        "",
        "| method | grace | factor | rungs | trial-epochs (of the grid's) | best feasible kept | "
        "grid's best kept | trial-epochs to the grid's best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, result in record["methods"].items():
        for row in result["asha_replay"]:
            rungs = ", ".join(f"{rung:g}" for rung in row["rungs"])
            lines.append(
                f"| {method} | {row['grace_period']} | {row['reduction_factor']:g} | {rungs} | "
                f"{row['trial_epochs']} ({result['grid']['trial_epochs']}) | "
                f"{_num(row['best_feasible_objective'])} | "
                f"{'yes' if row['grid_best_kept'] else '**no**'} | "
                f"{row['trial_epochs_to_target'] or '–'} |"
            )
    lanes = record.get("lanes", 1)
    lines += [
        "",
        f"Machine: {record['machine']}; {lanes} search(es) at once. Raw output: "
        f"`{record['json']}`.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- driver


def spaces(lrs: list[float], alphas: list[float], l1s: list[float]) -> tuple[str, str]:
    """The grid's space (every value a choice) and TPE's over the same ranges (log-uniform,
    L1 from the same values; a one-value dimension stays a fixed choice)."""

    def choices(values: list[float]) -> str:
        return f"{{distribution: categorical, choices: {values}}}"

    def log_range(values: list[float]) -> str:
        if min(values) == max(values):
            return choices(values)
        return f"{{distribution: loguniform, low: {min(values)}, high: {max(values)}}}"

    grid = f"train.lr: {choices(lrs)}\nmethod.alpha: {choices(alphas)}\n"
    continuous = f"train.lr: {log_range(lrs)}\nmethod.alpha: {log_range(alphas)}\n"
    l1 = f"regularizer.l1: {choices(l1s)}\n"
    return grid + l1, continuous + l1


@dataclass(frozen=True, eq=False)  # one per search, keyed by identity
class Planned:
    method: str
    label: str  # "grid" or "TPE + ASHA (grace g, factor f)"
    seed: int
    flags: list[str]
    config: dict  # saved-config values that find it again


def plan(args: argparse.Namespace, grid_size: int) -> list[Planned]:
    # One trial at a time, as the ASHA replay assumes (and as lanes share the cores).
    common = {"train.epochs": args.epochs, "search.objective": args.objective,
              "search.max_concurrent": 1}  # fmt: skip
    planned = []
    for method in args.methods:
        grid_config = {**common, "search.sampler": "grid", "search.scheduler": "none"}
        planned.append(
            Planned(
                method,
                "grid",
                0,
                ["--sampler", "grid", "--scheduler", "none", "--num-samples", str(grid_size)],
                grid_config,
            )
        )
        for grace, factor in args.asha:
            label = f"TPE + ASHA (grace {grace}, factor {factor:g})"
            for seed in args.seeds:
                flags = ["--sampler", "tpe", "--scheduler", "asha", "--seed", str(seed),
                         "--grace-period", str(grace), "--reduction-factor", str(factor),
                         "--num-samples", str(args.tpe_samples)]  # fmt: skip
                config = {**common, "search.sampler": "tpe", "search.scheduler": "asha",
                          "search.seed": seed, "search.grace_period": grace,
                          "search.reduction_factor": factor,
                          "search.num_samples": args.tpe_samples}  # fmt: skip
                planned.append(Planned(method, label, seed, flags, config))
    return planned


def run_planned(args, item: Planned, space: Path, lane: Path) -> Path:
    """The search of ``item``: found done, resumed (in its own lane), or run in ``lane``.

    Only the trials are measured: no confirm runs, no robustness checks (each would add
    minutes per search and nothing to the trial curves)."""
    search = find_search(args.output_dir, item.method, item.config)
    if search is not None and search_done(search, item.method):
        return search
    if search is not None:
        lane, command = lane_of(search), ["--resume", search.name]
    else:
        command = [
            "--method", item.method, "--search-space", str(space), "--epochs", str(args.epochs),
            "--objective", args.objective, "--set", "eval.generate=false",
            "--confirm-seeds", "0", "--robustness", "none", "--max-concurrent", "1",
            "--experiment", "search_efficiency", *item.flags,
        ]  # fmt: skip
    command = [sys.executable, "-u", "-m", "clear_ray.tune", *command, "--output-dir", str(lane)]
    slug = re.sub(r"[^a-z0-9]+", "-", f"{item.method} {item.label} seed {item.seed}".lower())
    log = args.output_dir / "logs" / f"{slug.strip('-')}.log"
    code = run_logged(command, log, on_line=lambda line: None)
    search = find_search(args.output_dir, item.method, item.config)
    if code != 0 or search is None or not search_done(search, item.method):
        sys.exit(f"{item.method} {item.label}: clear_ray.tune exited with {code}; log {log}")
    return search


def curves_of(search: Path, method: str) -> list[TrialCurve]:
    return [TrialCurve.from_reports(reports) for reports in trial_curves(search, method) if reports]


def summarise(args, found: dict[Planned, Path], walls: dict) -> dict:
    """The JSON record from the searches' trial curves."""
    methods = {}
    for method in args.methods:
        grid_item = next(item for item in found if item.method == method and item.label == "grid")
        grid_curves = curves_of(found[grid_item], method)
        grid_costs = [len(c.scores) for c in grid_curves]
        target = run_summary(grid_curves, grid_costs, math.inf)["best_feasible_objective"]
        # The sweep's cost is all of it; "to target" here is how far in its best trial came.
        grid = run_summary(grid_curves, grid_costs, math.inf if target is None else target)
        grid["wall_s"] = walls.get(str(found[grid_item]))
        leaderboard = found[grid_item] / "leaderboard.md"
        refs = references_from_leaderboard(leaderboard.read_text()) if leaderboard.is_file() else {}
        tpe: dict[str, dict] = {}
        for item, search in found.items():
            if item.method != method or item.label == "grid":
                continue
            curves = curves_of(search, method)
            run = run_summary(
                curves, [len(c.scores) for c in curves], math.inf if target is None else target
            )
            run |= {"seed": item.seed, "wall_s": walls.get(str(search)), "search": search.name}
            tpe.setdefault(item.label, {"runs": []})["runs"].append(run)
        for setting in tpe.values():
            runs = setting["runs"]
            to_best = [run["trial_epochs_to_target"] for run in runs]
            setting["best"] = spread([run["best_feasible_objective"] for run in runs])
            setting["epochs_to_grid_best"] = spread(to_best)
            setting["ratio"] = spread([None if e is None else e / grid["trial_epochs"]
                                       for e in to_best])  # fmt: skip
        max_t = args.epochs
        methods[method] = {
            "original": refs.get("Original", {}).get(args.objective),
            "gold": refs.get("Gold", {}).get(args.objective),
            "grid": grid,
            "tpe": tpe,
            "asha_replay": [replay(grid_curves, g, f, max_t) for g, f in REPLAYED_ASHA],
        }
    return {
        "objective": args.objective,
        "epochs": args.epochs,
        "grid_size": args.grid_size,
        "tpe_samples": args.tpe_samples,
        "seeds": args.seeds,
        "lanes": args.lanes,
        "methods": methods,
        "json": str(args.out),
        "machine": machine_summary(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="gd,dpo,idk")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="Optuna sampler seeds")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tpe-samples", type=int, default=18)
    parser.add_argument(
        "--asha",
        default="2:2",
        help="grace:factor settings of the real TPE + ASHA runs, comma-separated "
        "(more settings are replayed on the grid's curves for free)",
    )
    parser.add_argument(
        "--objective",
        default="log_forget_quality",
        help="the search objective (log FQ; or neg_forget_distance, W1); never CLEAR's 1 - JS, "
        "which is level-blind (docs/metrics.md)",
    )
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="the RESULTS.md section")
    parser.add_argument("--smoke", action="store_true", help="gd, 1 seed, 2 epochs, tiny grid")
    parser.add_argument("--report-only", action="store_true", help="no runs: tables again")
    parser.add_argument(
        "--lanes",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="searches at once, each with its own local Ray (one trial at a time on one CPU) "
        "and MLflow store; trial-epochs do not depend on it, wall times do (default: the "
        "cores, at most 4; ~3 GiB of RAM each)",
    )
    parser.set_defaults(grid=(LEARNING_RATES, RETAIN_WEIGHTS, L1_STRENGTHS))
    if parser.parse_known_args(argv)[0].smoke:  # smaller defaults; flags given still win
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)
    base = Path("/tmp/clear_ray_efficiency" + ("_smoke" if args.smoke else ""))
    args.output_dir = (args.output_dir or base).resolve()
    args.out = args.out or (
        base / "search_efficiency.json"
        if args.smoke
        else Path("bench/results/search_efficiency.json")
    )
    args.markdown = args.markdown or args.out.with_suffix(".md")
    args.methods = [method for method in args.methods.split(",") if method]
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.asha = [(int(g), float(f)) for g, f in (pair.split(":") for pair in args.asha.split(","))]
    args.grid_size = math.prod(len(values) for values in args.grid)
    return args


def run_all(args, planned: list[Planned], space: dict[str, Path], walls: dict) -> dict:
    """Every planned search, ``args.lanes`` at once (the first alone: it makes the data and the
    references the others share); their folders. Wall times are kept in ``walls.json``."""
    lanes: queue.Queue[Path] = queue.Queue()
    for lane in make_lanes(args.output_dir, args.lanes):
        lanes.put(lane)
    walls_file, lock, durations = args.output_dir / "walls.json", threading.Lock(), []
    done = [0]

    def one(item: Planned) -> Path:
        lane, started = lanes.get(), time.time()
        try:
            kind = "grid" if item.label == "grid" else "tpe"
            search = run_planned(args, item, space[kind], lane)
        finally:
            lanes.put(lane)
        took = time.time() - started
        with lock:
            done[0] += 1
            walls.setdefault(str(search), took)
            walls_file.write_text(json.dumps(walls, indent=2) + "\n")
            if took > 60:  # run now, not found done
                durations.append(took)
            left = len(planned) - done[0]
            eta = statistics.fmean(durations) * left / args.lanes if durations else 0.0
            print(
                f"[efficiency] {done[0]}/{len(planned)} {item.method} {item.label} seed "
                f"{item.seed}: done in {took:.0f} s; ETA ~{eta / 60:.0f} min",
                flush=True,
            )
        return search

    found = {planned[0]: one(planned[0])}
    with ThreadPoolExecutor(args.lanes) as pool:
        futures = {item: pool.submit(one, item) for item in planned[1:]}
        found |= {item: future.result() for item, future in futures.items()}
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    grid_text, continuous_text = spaces(*args.grid)
    space = {"grid": output / "grid.yaml", "tpe": output / "continuous.yaml"}
    space["grid"].write_text(grid_text)
    space["tpe"].write_text(continuous_text)
    walls_file = output / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.is_file() else {}
    planned = plan(args, args.grid_size)
    if args.report_only:
        found = {}
        for item in planned:
            search = find_search(output, item.method, item.config)
            if search is None or not search_done(search, item.method):
                sys.exit(f"{item.method} {item.label} seed {item.seed}: no finished search")
            found[item] = search
    else:
        print(f"[efficiency] {len(planned)} searches, {args.lanes} at once", flush=True)
        found = run_all(args, planned, space, walls)
    record = summarise(args, found, walls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    args.markdown.write_text(efficiency_markdown(record))
    print(efficiency_markdown(record))


if __name__ == "__main__":
    main()
