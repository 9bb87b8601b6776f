"""Confirm runs: the selected configuration, and the method's default one, with fresh seeds.

One seed's winner is one draw; the winner of a search is the luckiest of many. So after a
search the selected configuration (its params, at its selected epoch count) is trained again
with ``search.confirm_seeds`` fresh training seeds (``train.seed + 1..N``; Optuna's sampler seed
``search.seed`` is another field), and so is the method's default configuration (its published
setting: each dimension's ``default:`` in ``search_spaces/<method>.yaml`` with its source, the
config's value where no paper gives one, at ``train.epochs``). Each run is fully
evaluated on the report fold; the leaderboard shows mean ± sd over the seeds, and the paired
difference tuned − default over the seeds with its interval and verdict (``seed_comparison``).

No new training path: the configurations' runs are one Ray Tune run of the search's own
trainable (search/trainable.py), one trial per configuration and seed (``confirm_points``), so
they get the trials' resources and workers, fill the cluster's trial slots together, and are
child runs of the method's MLflow run (tags ``confirm``, ``configuration``). A run keeps the
search's LR schedule and is stopped after its configuration's selected epoch
(``schedule_epochs``): the selected checkpoint's own procedure, with another seed.

Resumable per seed: when Tune completes a confirm run, ``SeedRecorder`` copies its adapter and
writes ``confirm/<configuration>/seed-<N>.json``; the run's evaluation is added to that file
when it returns. A resumed search asks ``plan_confirm`` what is left from those files and the
method's MLflow children: finished seeds are kept, trained ones only evaluated, the others
trained again, and the child runs that count for nothing (a run killed mid-training) deleted,
so that confirm.json, MLflow and the Tune runs name the same runs, one per seed.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ray.tune import Callback

from clear_ray.cache import write_atomic
from clear_ray.paired import SeedComparison, compare_seeds, endpoint_value

CONFIRM_FILE = "confirm.json"
TUNED, DEFAULT = "tuned", "default"


def confirm_seeds(train_seed: int, count: int) -> list[int]:
    """Fresh training seeds: none is the search's own ``train.seed``."""
    return [train_seed + offset for offset in range(1, count + 1)]


def mean_and_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample sd (n − 1) of a configuration's values over its seeds; sd None with
    fewer than two values, mean nan with none. The one definition: confirm.json and the report
    (report/tables.py) both spread seeds with it."""
    values = [float(value) for value in values]
    if not values:
        return math.nan, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def seed_comparison(record: dict[str, Any], objective: str, original: float) -> SeedComparison:
    """Tuned − default of a confirm.json record on ``objective``, paired by seed, an infeasible
    run counted as Original's value (``original``; bench/PREREGISTRATION.md's primary
    endpoint): a collapsed run must not score on forgetting bought with its retain set. A seed
    whose value is unknown (no such metric; infeasible and Original unknown) forms no pair."""
    values = {}
    for label in (TUNED, DEFAULT):
        runs = record.get("configurations", {}).get(label, {}).get("runs") or []
        found = {
            int(run["seed"]): endpoint_value(
                float(run.get("metrics", {}).get(objective, math.nan)),
                bool(run.get("feasible")),
                original,
            )
            for run in runs
        }
        values[label] = {seed: value for seed, value in found.items() if math.isfinite(value)}
    return compare_seeds(values[TUNED], values[DEFAULT])


@dataclass
class ConfirmRun:
    seed: int
    run_id: str
    adapter: str
    metrics: dict[str, float]
    feasible: bool


@dataclass
class Configuration:
    params: dict[str, Any]
    epochs: int
    trial: str | None
    runs: list[ConfirmRun] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The contract's record: params, epochs, trial, runs, mean, sd, feasible_fraction.

        sd is the sample standard deviation (n − 1); None with fewer than two runs.
        """
        shared = [key for key in (self.runs[0].metrics if self.runs else {})]
        shared = [key for key in shared if all(key in run.metrics for run in self.runs)]
        mean, sd = {}, {}
        for key in shared:
            mean[key], sd[key] = mean_and_sd([run.metrics[key] for run in self.runs])
        return {
            "params": self.params,
            "epochs": self.epochs,
            "trial": self.trial,
            "runs": [vars(run) for run in self.runs],
            "mean": mean,
            "sd": sd,
            "feasible_fraction": (
                sum(run.feasible for run in self.runs) / len(self.runs) if self.runs else math.nan
            ),
        }


@dataclass(frozen=True)
class SeedRecord:
    """What a confirm run left on disk (``confirm/<configuration>/seed-<N>.json``): written
    when its training finished, completed with ``run_id``, ``metrics``, ``feasible`` once it
    was evaluated."""

    seed: int
    trial: str  # the Tune trial id, also the MLflow child run's clear_ray.trial_id tag
    adapter: str
    params: dict[str, Any]
    epochs: int
    run_id: str = ""
    metrics: dict[str, float] | None = None
    feasible: bool = False

    @property
    def evaluated(self) -> bool:
        return self.metrics is not None

    def run(self) -> ConfirmRun:
        return ConfirmRun(self.seed, self.run_id, self.adapter, self.metrics or {}, self.feasible)


@dataclass(frozen=True)
class ChildRun:
    """A confirm child run of the method's MLflow run, of one configuration."""

    run_id: str
    trial: str  # its clear_ray.trial_id tag
    status: str  # RUNNING | FINISHED | FAILED | KILLED


@dataclass(frozen=True)
class ConfirmPlan:
    """What is left of one configuration's confirm runs."""

    keep: dict[int, SeedRecord]  # trained and evaluated: used as they are
    evaluate: dict[int, SeedRecord]  # trained, the evaluation is left
    train: list[int]  # seeds to train (and evaluate)
    discard: list[str]  # MLflow child runs that count for nothing: deleted


def plan_confirm(
    configuration: Configuration,
    seeds: list[int],
    records: dict[int, SeedRecord],
    children: list[ChildRun],
) -> ConfirmPlan:
    """Which of ``seeds`` are left for ``configuration``, from the seed records on disk and
    the configuration's MLflow children.

    A record counts when it trained this configuration (params and epochs) and its child run
    FINISHED; every other child (killed mid-training, failed, or of a record that does not
    count) is discarded, so that each seed ends with exactly one child run.
    """
    finished = {child.trial for child in children if child.status == "FINISHED"}
    usable = {
        seed: record
        for seed, record in records.items()
        if seed in seeds
        and record.params == configuration.params
        and record.epochs == configuration.epochs
        and record.trial in finished
    }
    counted = {record.trial for record in usable.values()}
    return ConfirmPlan(
        keep={seed: r for seed, r in sorted(usable.items()) if r.evaluated},
        evaluate={seed: r for seed, r in sorted(usable.items()) if not r.evaluated},
        train=[seed for seed in seeds if seed not in usable],
        discard=sorted(child.run_id for child in children if child.trial not in counted),
    )


def write_seed_record(out: Path, record: SeedRecord) -> None:
    _write_json(out / f"seed-{record.seed}.json", asdict(record))


def _write_json(path: Path, value: Any) -> None:
    """Atomically: a driver killed while writing leaves the previous file or none."""
    write_atomic(path, json.dumps(value, indent=2, default=_json_default) + "\n")


def read_seed_records(out: Path) -> dict[int, SeedRecord]:
    """The seed records under ``out`` whose adapter is still there, by seed."""
    records = {}
    for path in sorted(out.glob("seed-*.json")):
        record = SeedRecord(**json.loads(path.read_text()))
        if Path(record.adapter).is_dir():
            records[record.seed] = record
    return records


def confirm_children(runs: list, configuration: str) -> list[ChildRun]:
    """The MLflow runs (of the method's run) that are confirm runs of ``configuration``."""
    from clear_ray.tracking import TRIAL_TAG

    return [
        ChildRun(
            run.info.run_id,
            run.data.tags.get(TRIAL_TAG, ""),
            run.info.status,
        )
        for run in runs
        if run.data.tags.get("confirm") == "true"
        and run.data.tags.get("configuration") == configuration
    ]


def read_confirm(path: Path, seeds: list[int]) -> dict[str, Any] | None:
    """A finished confirm.json of these seeds (a resumed search goes straight on), else None."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("seeds") == seeds else None


def write_confirm(
    path: Path, method: str, seeds: list[int], configurations: dict[str, Configuration]
) -> dict[str, Any]:
    """``<method_dir>/confirm.json``; returns what it wrote."""
    record = {
        "method": method,
        "fold": "report",
        "seeds": seeds,
        "configurations": {name: c.summary() for name, c in configurations.items()},
    }
    _write_json(path, record)
    return record


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class SeedRecorder(Callback):
    """Tune driver callback: when a confirm run completes, its last epoch's checkpoint is
    copied to ``<out>/seed-<N>`` and its seed record written (after ``TrialLogger`` finished
    its child run: a record always has a FINISHED run)."""

    def __init__(
        self,
        out: Path,
        label: str,
        params: dict[str, Any],
        epochs: int,
        storage_filesystem,
        log: Callable[[str], None],
    ) -> None:
        self.out, self.label, self.params, self.epochs = out, label, params, epochs
        self.storage_filesystem = storage_filesystem
        self.log = log
        self.records: dict[int, SeedRecord] = {}

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        from ray.train import Checkpoint

        path = (trial.last_result or {}).get("checkpoint_path")
        if not path:
            return
        seed = int(trial.config["train.seed"])
        adapter = self.out / f"seed-{seed}"
        shutil.rmtree(adapter, ignore_errors=True)  # an earlier attempt's copy that did not count
        Checkpoint(path, self.storage_filesystem).to_directory(str(adapter))
        record = SeedRecord(seed, trial.trial_id, str(adapter), self.params, self.epochs)
        write_seed_record(self.out, record)
        self.records[seed] = record
        self.log(f"{self.label} configuration: seed {seed} trained (trial {trial.trial_id})")


class PerConfiguration(Callback):
    """Routes each trial's events to the callbacks of its configuration (``label_of`` its
    params), so that one Tune run trains the seeds of several configurations."""

    def __init__(
        self, label_of: Callable[[dict[str, Any]], str], callbacks: dict[str, list[Callback]]
    ) -> None:
        self.label_of, self.callbacks = label_of, callbacks

    def _of(self, trial) -> list[Callback]:
        return self.callbacks[self.label_of(trial.config)]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        for callback in self._of(trial):
            callback.on_trial_start(iteration, trials, trial, **info)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        for callback in self._of(trial):
            callback.on_trial_result(iteration, trials, trial, result, **info)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        for callback in self._of(trial):
            callback.on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        for callback in self._of(trial):
            callback.on_trial_error(iteration, trials, trial, **info)


def confirm_points(cfg, configuration: Configuration, seeds: list[int]) -> list[dict[str, Any]]:
    """The trial params of a configuration's confirm runs, one per seed."""
    schedule = {"train.epochs": schedule_epochs(cfg, configuration)}
    return [{**configuration.params, **schedule, "train.seed": seed} for seed in seeds]


def _run_key(point: dict[str, Any]) -> tuple:
    """What tells configurations apart in a trial's params: all of them but the seed."""
    return tuple(sorted((key, repr(value)) for key, value in point.items() if key != "train.seed"))


def tuner_groups(cfg, runs: dict[str, tuple[Configuration, list[int]]]) -> list[list[str]]:
    """Configurations trained in one Tune run: all of them, so that the cluster's trial slots
    are filled (2 configurations x 3 seeds = 6 runs at once on 6 GPUs, not 3 then 3), unless
    two cannot be told apart by their trials' params (the same params and schedule, e.g. a
    tuned configuration equal to the default at another epoch): then one run each."""
    firsts = {label: confirm_points(cfg, c, [0])[0] for label, (c, _) in runs.items()}
    same_params = len({frozenset(point) for point in firsts.values()}) <= 1
    distinct = len({_run_key(point) for point in firsts.values()}) == len(firsts)
    return [list(runs)] if same_params and distinct else [[label] for label in runs]


def train_fixed(
    cfg,
    inputs,
    dirs,
    method: str,
    runs: dict[str, tuple[Configuration, list[int]]],
    tracker,
    tags: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, dict[int, SeedRecord]]:
    """Train fixed configurations (label -> configuration and its seeds) once per seed through
    the search's trainable, in as few Tune runs as ``tuner_groups`` allows.

    Returns, per label, the seed records of the runs that finished (adapters copied out).
    """
    records: dict[str, dict[int, SeedRecord]] = {}
    for labels in tuner_groups(cfg, runs):
        group = {label: runs[label] for label in labels}
        records.update(_train_group(cfg, inputs, dirs, method, group, tracker, tags, log))
    return records


def _train_group(cfg, inputs, dirs, method, runs, tracker, tags, log):
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from clear_ray.runtime.cleanup import TrainGroupReaper, reap
    from clear_ray.runtime.cluster import concurrent_trials
    from clear_ray.runtime.store import storage_filesystem
    from clear_ray.search.trainable import trial_trainable
    from clear_ray.search.trial_logger import TrialLogger

    # Confirm runs are measured, not selected: the robustness checks attack them on the report
    # fold (robust/run.py), so the trial-end attack of search.constrain_relearn is not run.
    inputs = replace(inputs, thresholds=replace(inputs.thresholds, max_relearn_recovery=None))
    filesystem = storage_filesystem(dirs.storage)[0]
    callbacks, labels, points = {}, {}, []
    for label, (configuration, seeds) in runs.items():
        out = confirm_dir(dirs, method, label)
        logger = TrialLogger(
            tracker,
            cfg.to_flat(),
            out / "best_epoch_adapters",
            inputs.thresholds,
            configuration.epochs,
            {**tags, "confirm": "true", "configuration": label},
            train_runs=dirs.ray_train,
            storage_filesystem=filesystem,
        )
        recorder = SeedRecorder(
            out, label, configuration.params, configuration.epochs, filesystem, log
        )
        callbacks[label] = [logger, recorder]
        label_points = confirm_points(cfg, configuration, seeds)
        labels.update({_run_key(point): label for point in label_points})
        points += label_points

    def label_of(config: dict[str, Any]) -> str:
        return labels[_run_key(config)]

    def stop(trial_id: str, result: dict[str, Any]) -> bool:
        """After the configuration's selected epoch, on the search's schedule."""
        return result["epoch"] >= runs[label_of(result["config"])][0].epochs

    # One trial per point, in order; the space only declares the values the points take (a
    # constant overridden by a point would be warned about once per trial).
    space = {key: tune.choice(list(dict.fromkeys(p[key] for p in points))) for key in points[0]}
    searcher = BasicVariantGenerator(
        points_to_evaluate=points, max_concurrent=concurrent_trials(cfg.search)
    )
    tuner = tune.Tuner(
        trial_trainable(cfg, inputs, dirs.ray_train),
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=len(points)),
        run_config=tune.RunConfig(
            name=f"{method}-confirm-{'+'.join(runs)}",
            storage_path=dirs.ray_results,
            callbacks=[PerConfiguration(label_of, callbacks), TrainGroupReaper()],
            stop=stop,
            verbose=0,
        ),
    )
    tuner.fit()
    reap()  # the stopped runs' groups: their evaluations need the CPUs
    return {label: recorder.records for label, (_, recorder) in callbacks.items()}


def schedule_epochs(cfg, configuration: Configuration) -> int:
    """The epoch count the LR schedule spans: the search's, not the selected one.

    The selected checkpoint is epoch k of a trial whose warm-up and decay spanned all of
    ``train.epochs``; trained for k epochs only, a run would decay to 0 within them and be
    another procedure. So a confirm run keeps the search's schedule and Tune stops it after
    epoch k (``stop={"epoch": k}``).
    """
    searched = int(configuration.params.get("train.epochs", cfg.train.epochs))
    return max(searched, configuration.epochs)


def confirm_dir(dirs, method: str, label: str) -> Path:
    """Where one configuration's confirm runs keep their adapters, records and evaluations."""
    return dirs.method(method) / "confirm" / label
