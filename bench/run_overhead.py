"""What Ray's helpers cost per trial: trivial Tune trials, each one Train run, two at a time.

On a CPU machine a trial's fixed cost is Ray processes, not training (bench/RESULTS.md): every
Train run starts a controller, a synchronization actor, Tune's result queue and its worker, and,
with Train's defaults, a ``DatasetManager`` and a ``PlacementGroupCleaner`` (which polls the
dashboard every second) and Prometheus metrics callbacks. This runs the same trivial trials
(a loop that reports twice) under three setups, each in a fresh local Ray:

- ``train_defaults``: Ray Train's ``DataParallelTrainer`` as it comes, metrics on, dashboard on;
- ``lean_trainer``: clear_ray's trainer (``runtime/trainer.py``), metrics and dashboard as above;
- ``clear_ray``: what a search runs (``runtime/cluster.py``: ``init_ray``, ``ray_env_vars``).

Wall time of the Tune run and the machine's CPU time over it (``/proc/stat``, every process,
Ray's daemons included), per trial, rounds interleaved so that a drift of the machine's speed
falls on every setup alike.

    python bench/run_overhead.py --trials 8 --rounds 3 --out bench/results/run_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clear_ray.provenance import machine_summary

SETUPS = ("train_defaults", "lean_trainer", "clear_ray")


def machine_cpu_s() -> float:
    """CPU time of every process on the machine so far (user, nice, system, irq...)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def report_twice(config: dict) -> None:
    import time

    import ray.train

    for step in range(2):
        time.sleep(0.3)
        ray.train.report({"step": step})


def run_setup(setup: str, trials: int, storage: str) -> dict:
    """One setup in this process (a fresh Ray): wall and machine CPU of its Tune run."""
    import ray
    import ray.train
    from ray import tune
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from clear_ray.config import SearchConfig
    from clear_ray.runtime.cluster import init_ray
    from clear_ray.runtime.train_run import trial_run_name
    from clear_ray.runtime.trainer import LeanTrainer
    from clear_ray.search.trainable import EpochReportCallback

    if setup == "clear_ray":
        init_ray(SearchConfig())
    else:
        ray.init(log_to_driver=False, include_dashboard=True)
    trainer_class = DataParallelTrainer if setup == "train_defaults" else LeanTrainer

    def trial(params: dict) -> None:
        trainer_class(
            report_twice,
            scaling_config=ray.train.ScalingConfig(num_workers=1),
            run_config=ray.train.RunConfig(
                name=trial_run_name(tune.get_context().get_trial_id()),
                storage_path=storage,
                callbacks=[EpochReportCallback()],
            ),
        ).fit()

    time.sleep(15)  # Ray's own start-up (the dashboard's ~12 processes) is over
    started, cpu = time.monotonic(), machine_cpu_s()
    tune.Tuner(
        tune.with_resources(trial, {"cpu": 0, "memory": 64 * 1024**2}),
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, name="trials", verbose=0),
    ).fit()
    wall, cpu = time.monotonic() - started, machine_cpu_s() - cpu
    ray.shutdown()
    return {"setup": setup, "trials": trials, "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per setup and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, setups interleaved")
    parser.add_argument("--out", type=Path, default=Path("bench/results/run_overhead.json"))
    parser.add_argument("--setup", choices=SETUPS, help=argparse.SUPPRESS)  # one child run
    args = parser.parse_args()
    if args.setup:
        with tempfile.TemporaryDirectory() as storage:
            print(json.dumps(run_setup(args.setup, args.trials, storage)))
        return

    runs = []
    for round_ in range(args.rounds):
        for setup in SETUPS:
            command = [sys.executable, __file__, "--setup", setup, "--trials", str(args.trials)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            run = {**json.loads(done.stdout.strip().splitlines()[-1]), "round": round_}
            runs.append(run)
            print(
                f"round {round_} {setup}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU",
                flush=True,
            )
    summary = {}
    for setup in SETUPS:
        mine = [run for run in runs if run["setup"] == setup]
        summary[setup] = {}
        for what in ("wall", "cpu"):
            per_trial = [run[f"{what}_s"] / run["trials"] for run in mine]
            summary[setup][f"{what}_per_trial_s"] = [round(value, 2) for value in per_trial]
            summary[setup][f"mean_{what}_per_trial_s"] = round(statistics.fmean(per_trial), 2)
    result = {
        "machine": machine_summary(),
        "trials_per_run": args.trials,
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
