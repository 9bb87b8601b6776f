"""Trial overhead: one Tune trial (Ray Tune + Train + DeepSpeed) against the same bare loop.

Both run :func:`clear_ray.train.loop.unlearn` with the same model, data, method, params and
epochs: once in this process (a one-rank gloo group, no Ray), once as a one-trial Tune search
through the production trainable (``search/trainable.py``: Ray Train with clear_ray's torch
process-group backend, checkpoints, TuneReportCallback), timed in a Ray session that has
already run a short warm-up trial. Both get the same compute: Ray gives a worker with
``cpus_per_worker`` CPUs that many torch threads (OMP_NUM_THREADS), so the bare loop uses as
many. Wall time is measured around each; the per-epoch report times show where the overhead
goes (start-up before the first epoch vs per-epoch reporting and checkpointing).

    python bench/trial_overhead.py --out bench/results/trial_overhead-<date>-75epochs-a.json

Target: ratio ≤ 1.10 for a trial whose training takes about 2 minutes on CPU (75 epochs of the
tiny preset took 1.9–2.1 minutes on the 2-core machine of bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from clear_ray.config import Config
from clear_ray.data.source import resolve_source
from clear_ray.eval.gold import reference_evaluation
from clear_ray.net import free_port
from clear_ray.provenance import machine_summary
from clear_ray.references.prepare import reference_models
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.loop import unlearn
from clear_ray.train.selection import Thresholds


def prepare(cfg: Config) -> TrialInputs:
    source = resolve_source(cfg)
    models = reference_models(cfg, source, Path(cfg.output_dir) / "cache")
    gold = reference_evaluation(models.gold, source, cfg.data.forget_split, cfg.eval)
    original = reference_evaluation(
        models.original, source, cfg.data.forget_split, cfg.eval, gold.reference
    )
    thresholds = Thresholds.from_search(cfg.search, original.metrics)
    return TrialInputs(source, str(models.original), gold.reference, thresholds)


def bare_loop(cfg: Config, inputs: TrialInputs) -> dict:
    """``unlearn`` in this process; report times relative to the start."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
        LOCAL_RANK="0",
    )  # fmt: skip
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.set_num_threads(max(math.floor(cfg.search.cpus_per_worker), 1))  # as Ray does
    epochs: list[float] = []
    start = time.perf_counter()
    unlearn(cfg, inputs, 0, 1, lambda metrics, _: epochs.append(time.perf_counter() - start))
    total = time.perf_counter() - start
    dist.destroy_process_group()
    return {"total_s": total, "epoch_end_s": epochs, "torch_threads": torch.get_num_threads()}


def tune_trial(cfg: Config, inputs: TrialInputs, storage: Path, warmup_epochs: int) -> dict:
    """The same trial through Tune → Train → worker, timed in a warm Ray session.

    ``ray.init`` and a short warm-up trial run first and are timed apart: they are paid once
    per search (Ray's start-up, its prestarted workers, Train's cluster-wide autoscaling
    coordinator), while every later trial pays what the timed trial pays.
    """
    import ray
    from ray import tune

    from clear_ray.runtime.cluster import init_ray
    from clear_ray.search.trainable import trial_trainable

    started = time.perf_counter()
    init_ray(cfg.search)
    ray_init = time.perf_counter() - started

    def one_trial(name: str, trial_cfg: Config) -> dict:
        epochs: list[float] = []

        class EpochClock(tune.Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
                epochs.append(time.perf_counter() - start)

        tuner = tune.Tuner(
            trial_trainable(trial_cfg, inputs, str(storage / name / "train")),
            param_space={"train.lr": trial_cfg.train.lr},
            tune_config=tune.TuneConfig(num_samples=1),
            run_config=tune.RunConfig(
                name=name, storage_path=str(storage / "tune"), callbacks=[EpochClock()],
                verbose=0,
            ),
        )  # fmt: skip
        start = time.perf_counter()
        results = tuner.fit()
        total = time.perf_counter() - start
        if results.errors:
            raise RuntimeError(f"the Tune trial {name} failed: {results.errors[0]}")
        return {"total_s": total, "epoch_end_s": epochs}

    warmup = (
        one_trial("warmup", cfg.replace({"train.epochs": warmup_epochs})) if warmup_epochs else None
    )
    timed = one_trial("timed", cfg)
    ray.shutdown()
    return {"ray_init_s": ray_init, "warmup": warmup, **timed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=75)
    parser.add_argument("--method", default="gd")
    parser.add_argument(
        "--warmup-epochs", type=int, default=1,
        help="epochs of an untimed trial run first in the same Ray session (0: time the first)",
    )  # fmt: skip
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/clear_ray_bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/trial_overhead.json"))
    args = parser.parse_args()

    cfg = Config().replace(
        {
            "output_dir": str(args.output_dir.resolve()),
            "method.name": args.method,
            "train.epochs": args.epochs,
            "search.max_failures": 0,
        }
    )
    inputs = prepare(cfg)
    bare = bare_loop(cfg, inputs)
    print(f"bare loop: {bare['total_s']:.1f} s", flush=True)
    trial = tune_trial(cfg, inputs, args.output_dir / "overhead", args.warmup_epochs)
    print(f"Tune trial: {trial['total_s']:.1f} s (+ ray.init {trial['ray_init_s']:.1f} s)")
    first_epoch_extra = trial["epoch_end_s"][0] - bare["epoch_end_s"][0]
    per_epoch = [
        (t1 - t0) - (b1 - b0)
        for (t0, t1), (b0, b1) in zip(
            zip(trial["epoch_end_s"], trial["epoch_end_s"][1:], strict=False),
            zip(bare["epoch_end_s"], bare["epoch_end_s"][1:], strict=False),
            strict=False,
        )
    ]
    # Start-up (before the first report, less the bare loop's first epoch) plus the tail after
    # the last report: what a trial adds whatever its length. Unlike the total difference it
    # does not carry the machine's epoch-to-epoch speed changes between the two runs.
    tail = trial["total_s"] - trial["epoch_end_s"][-1]
    structural = first_epoch_extra + tail
    record = {
        "method": args.method,
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "bare": bare,
        "tune": trial,
        "ratio": trial["total_s"] / bare["total_s"],
        "fixed_overhead_s": trial["total_s"] - bare["total_s"],
        "startup_overhead_s": first_epoch_extra,
        "tail_s": tail,
        "structural_overhead_s": structural,
        "ratio_without_epoch_noise": (bare["total_s"] + structural) / bare["total_s"],
        "mean_per_epoch_overhead_s": sum(per_epoch) / len(per_epoch) if per_epoch else None,
        "machine": machine_summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"ratio {record['ratio']:.3f}; overhead {record['fixed_overhead_s']:.1f} s; start-up "
        f"{first_epoch_extra:.1f} s + tail {tail:.1f} s = {structural:.1f} s "
        f"(ratio {record['ratio_without_epoch_noise']:.3f} without epoch-to-epoch noise)"
    )


if __name__ == "__main__":
    main()
