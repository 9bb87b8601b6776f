"""The study's raw file: one JSON line per run, nothing averaged before it is written.

The study runner (``bench/study.py``) appends a :class:`StudyRun` per trained and evaluated run
(``append_run``); the analysis (``bench/analyse_study.py``) reads only this file
(``read_runs``). Everything a paired analysis, a re-analysis or an audit of a run needs is in
its line (STUDY_DESIGN §2, "keep every run"). A line, with ``null`` for a value not measured:

    {"draw": {"index": 0, "data_seed": 0, "reference_seed": 0, "fold_seed": 0,
              "sampler_seed": 0},
     "commit": "a754100…", "cpu": "AMD EPYC 9B14", "cpu_capability": "AVX2",
     "pins": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", ...},
     "method": "npo", "arm": "tuned", "seed": 1,
     "params": {"train.lr": 0.0021, "method.beta": 0.3}, "epoch": 3, "feasible": true,
     "clear_real": 0.41, "clear_retain": 0.63, "clear_forget": 0.22,
     "tasks": {"forget_captions": {"log_p": -3.1, "d": 0.25, "n": 60}, ...},
     "forget_distance": 0.41, "alpha": 1.0,
     "objective_name": "log_forget_quality", "objective": -3.1, "matched_objective": -3.1,
     "original_objective": -15.9, "gold_b_objective": -0.7}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from clear_ray.paired import endpoint_value

DEFAULT, SWEEP, TUNED = "default", "sweep", "tuned"
# default: the method's published setting (search_spaces/<method>.yaml default:); sweep: the
# best of a practitioner's lr sweep at the other defaults, picked on the selection fold; tuned:
# the search's selection.
ARMS = (DEFAULT, SWEEP, TUNED)


class RawFileError(ValueError):
    """A raw file that cannot be read as study runs; the message names the file and line."""


@dataclass(frozen=True)
class Draw:
    """A reference draw, the study's replication unit: its seeds together decide the data,
    Original/Gold/Gold_B, the person folds and the search's sampler."""

    index: int  # 0, 1, ... in the order the draws were run (pilot first)
    data_seed: int
    reference_seed: int  # pretraining/finetuning of Original, Gold and Gold_B
    fold_seed: int  # which forget persons are selection and which report
    sampler_seed: int  # the search's Optuna sampler

    def describe(self) -> str:
        return (
            f"draw {self.index} (data {self.data_seed}, reference {self.reference_seed}, "
            f"fold {self.fold_seed}, sampler {self.sampler_seed})"
        )


@dataclass(frozen=True)
class TaskScore:
    """One forget-quality task of the run on the report fold: KS of the run's per-item truth
    ratios against Gold's (CLEAR ``mm/build_vllm_table.py``: ``ks_2samp``)."""

    log_p: float  # natural log of the KS p-value
    d: float  # the KS statistic: log p ≈ log 2 − n·D², so D says what log p means at this n
    n: int  # items


@dataclass(frozen=True)
class StudyRun:
    draw: Draw
    commit: str  # git commit of the frozen checkout the run came from
    cpu: str  # CPU model name (provenance.cpu_name)
    cpu_capability: str  # torch's CPU kernel capability (provenance.cpu_capability)
    pins: dict[str, str]  # the kernel pins in force (kernels.kernel_env); {} unpinned
    method: str
    arm: str  # ARMS
    seed: int  # train.seed: the same seeds for every arm of a (draw, method)
    params: dict[str, Any]  # the arm's configuration of the searched parameters
    epoch: int  # epochs trained (the selected epoch count for tuned and sweep)
    feasible: bool  # the search's constraints hold on the full evaluation
    clear_real: float  # CLEAR's Table 1 Real, Retain, Forget on the report fold
    clear_retain: float
    clear_forget: float
    tasks: dict[str, TaskScore]  # per forget task
    forget_distance: float | None  # W1 between the log truth ratios of the run and Gold
    alpha: float | None  # α*: the LoRA delta's scale at which Retain = 0.9 × Original's
    objective_name: str  # the metric the search maximised (e.g. log_forget_quality)
    objective: float  # its value on the report fold, as trained (α = 1)
    matched_objective: float | None  # its value at α* (retain-matched)
    original_objective: float  # Original's value on this draw's report fold
    gold_b_objective: float | None  # Gold_B scored against Gold: the draw's ceiling

    @property
    def primary(self) -> float:
        """The primary endpoint: the objective, or Original's value when infeasible."""
        return endpoint_value(self.objective, self.feasible, self.original_objective)

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=False, allow_nan=False)

    @classmethod
    def from_record(cls, record: Any) -> StudyRun:
        """A run from a parsed line; ValueError naming the first field that is wrong."""
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        unknown = sorted(set(record) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        draw = _field(record, "draw", dict)
        tasks = {}
        for name, task in _field(record, "tasks", dict).items():
            if not isinstance(task, dict):
                raise ValueError(f"tasks.{name} is not an object")
            where = f"tasks.{name}."
            tasks[name] = TaskScore(
                _number(_field(task, "log_p", float, where), f"{where}log_p"),
                _number(_field(task, "d", float, where), f"{where}d"),
                _field(task, "n", int, where),
            )
        values: dict[str, Any] = {
            "draw": Draw(**{f.name: _field(draw, f.name, int, "draw.") for f in fields(Draw)}),
            "tasks": tasks,
        }
        kinds = {
            "commit": str, "cpu": str, "cpu_capability": str, "pins": dict, "method": str,
            "arm": str, "seed": int, "params": dict, "epoch": int, "feasible": bool,
            "clear_real": float, "clear_retain": float, "clear_forget": float,
            "objective_name": str, "objective": float, "original_objective": float,
        }  # fmt: skip
        for name, kind in kinds.items():
            value = _field(record, name, kind)
            values[name] = _number(value, name) if kind is float else value
        for name in ("forget_distance", "alpha", "matched_objective", "gold_b_objective"):
            value = record.get(name)
            values[name] = None if value is None else _number(_field(record, name, float), name)
        if values["arm"] not in ARMS:
            raise ValueError(f"arm {values['arm']!r} is not one of {', '.join(ARMS)}")
        return cls(**values)


def _field(record: dict, name: str, kind: type, prefix: str = "") -> Any:
    """``record[name]`` if it has the JSON type ``kind`` (an int is a float; a bool is
    neither an int nor a float)."""
    if name not in record:
        raise ValueError(f"missing field {prefix}{name}")
    value = record[name]
    accepted = (int, float) if kind is float else kind
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, accepted):
        raise ValueError(f"{prefix}{name} is not {'a number' if kind is float else kind.__name__}")
    return value


def _number(value: float, name: str = "") -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name or 'a value'} is not a finite number")
    return float(value)


def read_runs(path: Path) -> list[StudyRun]:
    """Every run of a raw file, checked line by line and across lines (one line per (draw,
    method, arm, seed); a draw's index names one set of seeds and one Original; one objective);
    :class:`RawFileError` with the file and line otherwise."""
    if not path.is_file():
        raise RawFileError(f"{path}: no such file")
    runs: list[StudyRun] = []
    seen: dict[tuple, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            run = StudyRun.from_record(json.loads(line))
        except ValueError as error:  # json.JSONDecodeError is one
            raise RawFileError(f"{path}:{number}: {error}") from None
        key = (run.draw.index, run.method, run.arm, run.seed)
        if key in seen:
            raise RawFileError(
                f"{path}:{number}: draw {key[0]} {key[1]} {key[2]} seed {key[3]} is already "
                f"on line {seen[key]}"
            )
        seen[key] = number
        _check_consistent(runs, run, f"{path}:{number}")
        runs.append(run)
    if not runs:
        raise RawFileError(f"{path}: no runs")
    return runs


def _check_consistent(earlier: list[StudyRun], run: StudyRun, where: str) -> None:
    """The same objective on every line; a draw's lines agree on its seeds, its Original, and
    where they ran: one commit, one CPU type and one set of kernel pins (bench/PREREGISTRATION.md,
    amendment on the CPU type: a draw runs whole on one CPU type, since pinned kernels are not
    shown to give the same bits on two)."""
    if earlier and earlier[0].objective_name != run.objective_name:
        raise RawFileError(
            f"{where}: objective {run.objective_name}, earlier lines {earlier[0].objective_name}"
        )
    same = next((other for other in earlier if other.draw.index == run.draw.index), None)
    if same is None:
        return
    if same.draw != run.draw:
        raise RawFileError(f"{where}: draw {run.draw.index} has other seeds than before")
    if same.original_objective != run.original_objective:
        raise RawFileError(
            f"{where}: draw {run.draw.index}: Original's objective {run.original_objective} "
            f"differs from earlier lines' {same.original_objective}"
        )
    for name in ("commit", "cpu", "cpu_capability", "pins"):
        if getattr(same, name) != getattr(run, name):
            raise RawFileError(
                f"{where}: draw {run.draw.index} ran with {name} {getattr(run, name)}, earlier "
                f"lines with {getattr(same, name)}: a draw runs whole on one commit and CPU type"
            )


def append_run(path: Path, run: StudyRun) -> None:
    """One line, flushed to disk: a runner killed after it returns has the run on file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(run.to_line() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
