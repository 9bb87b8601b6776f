"""Search efficiency at equal budget: RS, RS+ASHA, TPE, TPE+ASHA, the grid and RS at twice the
budget, 10 paired sampler seeds, per method, on one pinned reference draw (STUDY_DESIGN §4;
pre-registered in bench/PREREGISTRATION.md, amendment "Search efficiency at equal budget").

Through the real CLI (``python -m clear_ray.tune``, one trial at a time, kernels pinned by
``search.pin_cpu_kernels``, draw 0: data, reference and fold seed 0), per method:

- **the pool**: ``--pool`` random configurations of the method's search space, every epoch of
  each trained (``--scheduler none``; TPE with as many random start-up trials as trials is
  Optuna's RandomSampler, seeded apart from the arms' seeds). RS and RS+ASHA of seed s are
  exact replays of it: a seeded draw without replacement, ASHA replayed on the full curves;
- **the grid**: 3 learning rates × 3 retain weights × 2 L1 strengths, every epoch trained;
- **live** TPE and TPE+ASHA searches of 24 trials (the default search's), per sampler seed;
- **Original's** selection- and report-fold values (the headroom gate's reference);
- **confirm runs** of every configuration some arm selects at its budget: a one-point search
  (``--sampler grid``) with ``--confirm-seeds`` fresh seeds, scored on the report fold.

The budget B of seed s is what its TPE+ASHA search spent in trial-epochs; every arm of seed s
is cut there (RS 2B at twice it). Every trial, Original and confirm record is appended as one
JSON line to the raw file as soon as its search ends; nothing is averaged before.
bench/efficiency_analysis.py reads only that file and writes the tables, the verdict (PASS,
FAIL or NO HEADROOM by the pre-registered rule) and the anytime plot, beside the raw file; it
runs at the end of each call.

    python bench/search_efficiency.py --smoke    # gd, 2 seeds, tiny pool: proves the pipeline
    python bench/search_efficiency.py            # the study: 3 methods x 10 seeds, pool 100

Resumable: rerun the same command. A search whose trial lines are in the raw file is skipped, an
interrupted one is continued with ``--resume`` (bench/searches.py); the confirm stage runs only
the configurations without a line. Searches run ``--lanes`` at once, each with its own Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import efficiency_analysis as analysis
from searches import find_search, lane_of, make_lanes, run_logged, search_done, trial_curves

from clear_ray.eval.names import FORGET_QUALITY_TASKS, ITEM_COUNT, KS_STATISTIC

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "bench" / "results" / "search_efficiency_runs.jsonl"
LEARNING_RATES = [3e-4, 1e-3, 3e-3]
RETAIN_WEIGHTS = [0.3, 1.0, 3.0]
L1_STRENGTHS = [0.0, 1e-3]
POOL_SEED = 1000  # the pool's sampler seed: none of the arms' seeds 0..9
DRAW_FLAGS = ["--set", "data.synthetic_seed=0", "--set", "finetune.seed=0",
              "--set", "search.fold_seed=0"]  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The pre-registered sizes, or the smoke test's."""

    methods: tuple[str, ...] = ("gd", "dpo", "idk")
    seeds: tuple[int, ...] = tuple(range(10))
    pool: int = 100
    trials: int = 24
    epochs: int = 3
    grace: int = 2
    reduction_factor: float = 2.0
    startup_trials: int = 4
    confirm_seeds: int = 2
    grid: tuple = (tuple(LEARNING_RATES), tuple(RETAIN_WEIGHTS), tuple(L1_STRENGTHS))
    objective: str = "log_forget_quality"

    def record(self) -> dict:
        """The raw file's settings record (what the analysis needs)."""
        return {
            "objective": self.objective,
            "max_t": self.epochs,
            "grace": self.grace,
            "reduction_factor": self.reduction_factor,
            "seeds": list(self.seeds),
            "methods": list(self.methods),
            "pool": self.pool,
            "trials": self.trials,
            "confirm_seeds": self.confirm_seeds,
            "grid": [list(g) for g in self.grid],
        }


SMOKE = Settings(
    methods=("gd",),
    seeds=(0, 1),
    pool=4,
    trials=3,
    epochs=2,
    grace=1,
    startup_trials=1,
    confirm_seeds=1,
    grid=((1e-3, 3e-3), (1.0,), (0.0,)),
)


@dataclass(frozen=True, eq=False)
class Planned:
    """One search: its raw-line source, seed and CLI flags, and the saved-config values by
    which a rerun finds it again."""

    method: str
    source: str  # pool | grid | tpe | tpe_asha
    seed: int | None
    flags: list[str]
    config: dict
    trial_epochs: float  # planned, for the ETA
    space: str = field(default="")  # YAML, when not the method's shipped space


# ---------------------------------------------------------------- plan (pure)


def grid_space(lrs, alphas, l1s) -> str:
    return "".join(
        f"{path}: {{distribution: categorical, choices: {list(values)}}}\n"
        for path, values in (("train.lr", lrs), ("method.alpha", alphas), ("regularizer.l1", l1s))
    )


def point_space(params: dict) -> str:
    """A search space of one point: each parameter a one-value choice. PyYAML writes floats
    so that they read back exactly (1e-05 as 1.0e-05, which YAML 1.1 reads as a float)."""
    import yaml

    return yaml.safe_dump(
        {
            path: {"distribution": "categorical", "choices": [value]}
            for path, value in params.items()
        },
        default_flow_style=None,
        sort_keys=True,
    )


def plan(settings: Settings) -> list[Planned]:
    """Per method: the pool, the grid, then TPE and TPE+ASHA per seed."""
    e, common = settings.epochs, {"train.epochs": settings.epochs,
                                  "search.objective": settings.objective}  # fmt: skip
    asha_cost = settings.grace + (e - settings.grace) / settings.reduction_factor
    grid_size = len(settings.grid[0]) * len(settings.grid[1]) * len(settings.grid[2])
    planned = []
    for method in settings.methods:
        planned.append(Planned(
            method, analysis.POOL, None,
            ["--sampler", "tpe", "--scheduler", "none", "--seed", str(POOL_SEED),
             "--num-samples", str(settings.pool),
             "--set", f"search.startup_trials={settings.pool}"],
            {**common, "search.sampler": "tpe", "search.scheduler": "none",
             "search.seed": POOL_SEED, "search.num_samples": settings.pool},
            settings.pool * e,
        ))  # fmt: skip
        planned.append(Planned(
            method, analysis.GRID_SOURCE, None,
            ["--sampler", "grid", "--scheduler", "none", "--num-samples", str(grid_size)],
            {**common, "search.sampler": "grid", "search.scheduler": "none",
             "search.num_samples": grid_size},
            grid_size * e, grid_space(*settings.grid),
        ))  # fmt: skip
        for seed in settings.seeds:
            for source, scheduler in (("tpe_asha", "asha"), ("tpe", "none")):
                planned.append(Planned(
                    method, source, seed,
                    ["--sampler", "tpe", "--scheduler", scheduler, "--seed", str(seed),
                     "--num-samples", str(settings.trials),
                     "--grace-period", str(settings.grace),
                     "--reduction-factor", str(settings.reduction_factor),
                     "--set", f"search.startup_trials={settings.startup_trials}"],
                    {**common, "search.sampler": "tpe", "search.scheduler": scheduler,
                     "search.seed": seed, "search.num_samples": settings.trials},
                    settings.trials * (asha_cost if scheduler == "asha" else e),
                ))  # fmt: skip
    return planned


def trial_lines(
    item: Planned, search: str, reports: list[list[dict]], objective: str
) -> list[dict]:
    """The raw lines of a finished search: one per trial, every epoch's running best, own
    objective, feasibility and per-task [log p, D, n]."""
    lines = []
    for number, reports_of_trial in enumerate(reports):
        # A diverged trial's last report holds the reason, not an epoch's metrics.
        trial = [r for r in reports_of_trial if objective in r and "best_score" in r]
        if not trial:
            continue
        epochs = [
            {
                "epoch": int(r["epoch"]),
                "objective": float(r[objective]),
                "epoch_feasible": bool(r["epoch_feasible"]),
                "best_objective": float(r["best_objective"]),
                "best_score": float(r["best_score"]),
                "feasible": bool(r["feasible"]),
                "tasks": task_values(r),
            }
            for r in trial
        ]
        lines.append({
            "kind": "trial", "method": item.method, "source": item.source, "seed": item.seed,
            "trial": number, "search": search, "params": dict(trial[-1]["config"]),
            "epochs": epochs, "wall_s": float(trial[-1].get("time_total_s", 0.0)),
        })  # fmt: skip
    return lines


def task_values(metrics: dict) -> dict[str, list[float]]:
    """Per forget-quality task the evaluation compared: [log p, KS D, n]."""
    keys = ("log_forget_quality", KS_STATISTIC, ITEM_COUNT)
    return {
        task: [float(metrics[f"{task}/{key}"]) for key in keys]
        for task in FORGET_QUALITY_TASKS
        if all(f"{task}/{key}" in metrics for key in keys)
    }


def eta_seconds(per_epoch: list[float], epochs_left: float, lanes: int) -> float | None:
    """Seconds left: the planned trial-epochs left at the measured seconds per trial-epoch
    (each search's wall over its trial-epochs, start-up included), shared by the lanes."""
    if not per_epoch:
        return None
    return statistics.fmean(per_epoch) * epochs_left / lanes


# ---------------------------------------------------------------- raw file


class Raw:
    """The raw file, appended one line at a time under a lock (lanes finish at once). Every
    line names the commit and the machine (CPU model, kernel level, pins) it ran on: the
    study's draw is pinned, and its CPU type is part of the draw (PREREGISTRATION.md)."""

    def __init__(self, path: Path, commit: str = "", machine: str = "") -> None:
        self.path, self.commit, self.machine = path, commit, machine
        self.lock = threading.Lock()
        self.lines = analysis.read_raw([path]) if path.is_file() else []

    def append(self, lines: list[dict]) -> None:
        stamp = {"commit": self.commit, "machine": self.machine}
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                for line in lines:
                    handle.write(json.dumps({**line, **stamp}, sort_keys=True))
                    handle.write("\n")
            self.lines += lines

    def has_trials(self, item: Planned) -> bool:
        return any(
            line["kind"] == "trial" and line["method"] == item.method
            and line["source"] == item.source and line.get("seed") == item.seed
            for line in self.lines
        )  # fmt: skip


# ---------------------------------------------------------------- driving the CLI


def cli_flags(settings: Settings, method: str, confirm_seeds: int = 0) -> list[str]:
    """Every search's flags: the draw, one trial at a time, no robustness checks, no
    generation; confirm runs only for the one-point searches (the trials are what the arms
    compare)."""
    return [
        "--confirm-seeds", str(confirm_seeds),
        "--method", method, "--epochs", str(settings.epochs), "--objective", settings.objective,
        "--robustness", "none", "--max-concurrent", "1", "--experiment", "search_efficiency",
        "--set", "eval.generate=false", *DRAW_FLAGS,
    ]  # fmt: skip


def run_search(args, flags: list[str], config: dict, method: str, name: str, lane: Path) -> Path:
    """A search through the CLI: found done, resumed in its lane, or run in ``lane``."""
    found = find_search(args.output_dir, method, config)
    if found is not None and search_done(found, method):
        return found
    command = ["--resume", found.name] if found is not None else flags
    lane = lane_of(found) if found is not None else lane
    command = [sys.executable, "-u", "-m", "clear_ray.tune", *command, "--output-dir", str(lane)]
    log = args.output_dir / "logs" / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.log"
    code = run_logged(command, log, on_line=lambda line: None)
    found = find_search(args.output_dir, method, config)
    if code != 0 or found is None or not search_done(found, method):
        raise RuntimeError(f"{name}: clear_ray.tune exited with {code}; log {log}")
    return found


def original_line(settings: Settings, method: str, search: Path) -> dict:
    """Original's selection- and report-fold values from the search's references (cached:
    no training), in a process of its own that pins its kernels as the search did."""
    code = (
        "import json, sys\n"
        "from clear_ray.config import Config\n"
        "from clear_ray.console import log\n"
        "from clear_ray.kernels import pin_this_process\n"
        "cfg = Config.from_flat(json.load(open(sys.argv[1]))['config']).validate()\n"
        "pin_this_process(cfg.search)\n"
        "from clear_ray.references.prepare import prepare_references\n"
        "from clear_ray.runtime.cluster import local_ray\n"
        "with local_ray(cfg.search):\n"
        "    refs = prepare_references(cfg, log)\n"
        "print('ORIGINAL ' + json.dumps({'selection': refs.original.metrics,"
        " 'report': refs.original_full.metrics}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(search / "state.json")], capture_output=True, text=True
    )
    found = [line for line in done.stdout.splitlines() if line.startswith("ORIGINAL ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"{method}: Original's values not read: {done.stderr[-2000:]}")
    values = json.loads(found[-1][len("ORIGINAL ") :])
    objective = settings.objective
    return {
        "kind": "original", "method": method,
        "selection": {"objective": float(values["selection"][objective]),
                      "tasks": task_values(values["selection"])},
        "report": {"objective": float(values["report"][objective]),
                   "tasks": task_values(values["report"])},
    }  # fmt: skip


def confirm_line(settings: Settings, method: str, params: dict, search: Path) -> dict:
    """The confirm runs of a one-point search: each seed's report-fold objective and
    feasibility (confirm.json, the selected configuration's runs)."""
    from clear_ray.search.confirm import TUNED  # lazy: Ray Tune, not loaded by --help

    record = json.loads((search / method / "confirm.json").read_text())
    runs = record["configurations"][TUNED]["runs"]
    return {
        "kind": "confirm", "method": method, "params": params, "search": search.name,
        "epochs": record["configurations"][TUNED]["epochs"],
        "runs": [{"seed": int(r["seed"]), "objective": float(r["metrics"][settings.objective]),
                  "feasible": bool(r["feasible"])} for r in runs],
    }  # fmt: skip


class Runner:
    """Runs the planned searches in lanes, appends their lines, prints progress with an ETA."""

    def __init__(self, args, settings: Settings, raw: Raw) -> None:
        self.args, self.settings, self.raw = args, settings, raw
        self.lanes: queue.Queue[Path] = queue.Queue()
        for lane in make_lanes(args.output_dir, args.lanes):
            self.lanes.put(lane)
        self.per_epoch: list[float] = []
        self.lock = threading.Lock()

    def search(self, item: Planned) -> Path:
        lane, started = self.lanes.get(), time.time()
        try:
            flags = cli_flags(self.settings, item.method) + item.flags
            if item.space:
                space = self.args.output_dir / f"{item.source}.yaml"
                space.write_text(item.space)
                flags += ["--search-space", str(space)]
            name = f"{item.method} {item.source} seed {item.seed}"
            found = run_search(self.args, flags, item.config, item.method, name, lane)
        finally:
            self.lanes.put(lane)
        reports = [r for r in trial_curves(found, item.method) if r]
        self.raw.append(trial_lines(item, found.name, reports, self.settings.objective))
        spent = sum(len(r) for r in reports)
        took = time.time() - started
        with self.lock:
            if spent and took > 60:  # ran now (a search found done takes seconds)
                self.per_epoch.append(took / spent)
        return found

    def stage(self, items: list[Planned], label: str, first_alone: bool = False) -> list[Path]:
        """Every item, ``first_alone``: the first before the others (it makes the draw's data
        and references, which the others then find cached)."""
        left = [item for item in items if not self.raw.has_trials(item)]
        total, done = sum(i.trial_epochs for i in left), [0.0]
        print(f"[efficiency] {label}: {len(left)} of {len(items)} searches to run", flush=True)

        def one(item: Planned) -> Path:
            started = time.time()
            found = self.search(item)
            with self.lock:
                done[0] += item.trial_epochs
                eta = eta_seconds(self.per_epoch, total - done[0], self.args.lanes)
                when = "–" if eta is None else f"~{eta / 60:.0f} min"
                print(f"[efficiency] {item.method} {item.source} seed {item.seed}: done in "
                      f"{time.time() - started:.0f} s ({done[0]:.0f}/{total:.0f} planned "
                      f"trial-epochs); ETA {when}", flush=True)  # fmt: skip
            return found

        alone = left[:1] if first_alone else []
        found = [one(item) for item in alone]
        with ThreadPoolExecutor(self.args.lanes) as pool:
            found += list(pool.map(one, left[len(alone) :]))
        return found

    def originals(self, pool_searches: dict[str, Path]) -> None:
        have = {line["method"] for line in self.raw.lines if line["kind"] == "original"}
        for method, search in pool_searches.items():
            if method not in have:
                self.raw.append([original_line(self.settings, method, search)])

    def confirms(self) -> None:
        """Confirm runs of every configuration an arm selects at B without a line yet."""
        have = {
            (line["method"], json.dumps(line["params"], sort_keys=True))
            for line in self.raw.lines if line["kind"] == "confirm"
        }  # fmt: skip
        wanted = [
            (method, params)
            for method, configurations in analysis.selected_configurations(self.raw.lines).items()
            for params in configurations
            if (method, json.dumps(params, sort_keys=True)) not in have
        ]
        print(f"[efficiency] confirm runs: {len(wanted)} selected configurations", flush=True)
        started, count = time.time(), [0]

        def one(index_item) -> None:
            index, (method, params) = index_item
            lane = self.lanes.get()
            try:
                folder = self.args.output_dir / "points"
                folder.mkdir(exist_ok=True)
                space = folder / f"{method}-{index}.yaml"
                space.write_text(point_space(params))
                flags = [
                    *cli_flags(self.settings, method, self.settings.confirm_seeds),
                    "--sampler", "grid", "--scheduler", "none", "--num-samples", "1",
                    "--search-space", str(space),
                ]  # fmt: skip
                # Found again by its space's values (state.json keeps the space's origin).
                config = {
                    "train.epochs": self.settings.epochs,
                    "search.sampler": "grid",
                    "search.num_samples": 1,
                    "search.confirm_seeds": self.settings.confirm_seeds,
                }
                search = run_point(self.args, flags, config, method, params, lane)
            finally:
                self.lanes.put(lane)
            self.raw.append([confirm_line(self.settings, method, params, search)])
            with self.lock:
                count[0] += 1
                each = (time.time() - started) / count[0]
                print(f"[efficiency] confirm {count[0]}/{len(wanted)} ({method}); ETA "
                      f"~{each * (len(wanted) - count[0]) / 60:.0f} min", flush=True)  # fmt: skip

        with ThreadPoolExecutor(self.args.lanes) as pool:
            list(pool.map(one, enumerate(wanted)))


def run_point(args, flags, config, method: str, params: dict, lane: Path) -> Path:
    """A one-point search, run anew unless one of these params finished (an interrupted one is
    run again: it is one trial)."""
    from clear_ray.search.confirm import TUNED  # lazy: Ray Tune, not loaded by --help

    for state in sorted(args.output_dir.glob("lane-*/searches/*/state.json")):
        search = state.parent
        saved = json.loads(state.read_text()).get("config", {})
        confirm = search / method / "confirm.json"
        if (
            confirm.is_file()
            and all(saved.get(k) == v for k, v in config.items())
            and json.loads(confirm.read_text())["configurations"][TUNED]["params"] == params
        ):
            return search
    command = [sys.executable, "-u", "-m", "clear_ray.tune", *flags, "--output-dir", str(lane)]
    slug = re.sub(r"[^a-z0-9]+", "-", f"confirm {method} {json.dumps(params, sort_keys=True)}")
    log = args.output_dir / "logs" / f"{slug[:120]}.log"
    code = run_logged(command, log, on_line=lambda line: None)
    if code != 0:
        raise RuntimeError(
            f"confirm {method} {params}: clear_ray.tune exited with {code}; log {log}"
        )
    searches = sorted(lane.glob("searches/*/state.json"), key=lambda p: p.stat().st_mtime)
    return searches[-1].parent


# ---------------------------------------------------------------- driver


def searched_machine() -> str:
    """This machine's summary with the kernel pins its searches run under (the CLI pins its
    Ray processes itself; ``search.pin_cpu_kernels`` is on by default)."""
    from clear_ray.config import SearchConfig
    from clear_ray.kernels import kernels_tag
    from clear_ray.provenance import machine_summary

    return f"{machine_summary()}; kernels {kernels_tag(SearchConfig())}"


def checkout_commit() -> str:
    """HEAD of this checkout, ``-dirty`` with uncommitted changes to tracked files: every raw
    line records what ran it."""

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *command],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "HEAD") + ("-dirty" if dirty else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/search_efficiency.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--methods", default="gd,dpo,idk", help="comma-separated")
    parser.add_argument("--seeds", type=int, default=10, help="sampler seeds 0..N-1 per arm")
    parser.add_argument(
        "--pool", type=int, default=100, help="random configurations evaluated once"
    )
    parser.add_argument(
        "--objective", default="log_forget_quality",
        choices=["log_forget_quality", analysis.NEG_W1],
        help="log FQ (KS log p against Gold) or neg_forget_distance (−W1 of log truth ratios); "
        "never CLEAR's 1 − JS, which is level-blind (STUDY_DESIGN §1)",
    )  # fmt: skip
    parser.add_argument("--raw", type=Path, default=None, help=f"raw JSONL (default {RAW})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="searches and logs (default /tmp/clear_ray_efficiency)")  # fmt: skip
    parser.add_argument(
        "--lanes", type=int, default=min(os.cpu_count() or 1, 4),
        help="searches at once, each its own local Ray, one trial at a time (~3 GiB each); "
        "trial-epochs do not depend on it, wall times do",
    )  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true",
        help="gd, seeds 0-1, a pool of 4, 3 trials, 2 epochs (ASHA grace 1), a 2-point grid, "
        "1 confirm seed, into /tmp/clear_ray_efficiency_smoke: proves the pipeline",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        args.settings = SMOKE
    else:
        methods = tuple(m for m in args.methods.split(",") if m)
        unknown = [m for m in methods if not (ROOT / "search_spaces" / f"{m}.yaml").is_file()]
        if not methods or unknown or args.seeds < 1 or args.pool < 2:
            parser.exit(
                2,
                f"error: need methods with a search_spaces/<method>.yaml (not {unknown}), "
                "--seeds >= 1 and --pool >= 2\n",
            )
        args.settings = Settings(methods=methods, seeds=tuple(range(args.seeds)),
                                 pool=args.pool, objective=args.objective)  # fmt: skip
    base = Path("/tmp/clear_ray_efficiency" + ("_smoke" if args.smoke else ""))
    args.output_dir = (args.output_dir or base).resolve()
    args.raw = (args.raw or (base / RAW.name if args.smoke else RAW)).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = args.settings
    try:
        raw = Raw(args.raw, checkout_commit(), searched_machine())
    except analysis.RawFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = {"kind": "settings", "settings": settings.record()}
    on_file = [line for line in raw.lines if line["kind"] == "settings"]
    if on_file and on_file[0]["settings"] != record["settings"]:
        print(f"error: {args.raw} holds another study's settings: {on_file[0]['settings']}",
              file=sys.stderr)  # fmt: skip
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if not on_file:
        raw.append([record])
    runner, started = Runner(args, settings, raw), time.time()
    planned = plan(settings)
    print(
        f"[efficiency] {len(planned)} searches ({', '.join(settings.methods)}; seeds "
        f"{len(settings.seeds)}; pool {settings.pool}); raw file {args.raw}",
        flush=True,
    )
    try:
        runner.stage([p for p in planned if p.source == analysis.POOL], "pools", first_alone=True)
        pools = {p.method: find_search(args.output_dir, p.method, p.config)
                 for p in planned if p.source == analysis.POOL}  # fmt: skip
        runner.originals(pools)
        runner.stage([p for p in planned if p.source != analysis.POOL], "grid and live searches")
        runner.confirms()
    except RuntimeError as error:
        print(f"[efficiency] {error}", file=sys.stderr, flush=True)
        return 1
    text = analysis.write_outputs(
        [args.raw], args.raw.with_suffix(".md"), args.raw.with_suffix(".png")
    )
    print(text)
    print(f"[efficiency] done in {(time.time() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
