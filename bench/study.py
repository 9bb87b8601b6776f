"""The pre-registered study: does tuning beat each method's default, over reference draws?

Runs what bench/PREREGISTRATION.md fixes and writes every run as one JSON line of the raw file
(``clear_ray/report/study_runs.py``; nothing averaged); ``bench/analyse_study.py`` reads only
that file. Draw k is data seed, reference seed, fold seed and sampler seed k
(``data.synthetic_seed``, ``finetune.seed``, ``search.fold_seed``, ``search.seed``), in an output
dir of its own, so its Original and Gold are trained once and cached. Per (draw, method), each
through the real CLI (``python -m clear_ray.tune``), one trial at a time:

- the **search**: 24 TPE trials (4 random start-up ones), 3 epochs, ASHA grace 2 and factor 2,
  selected on the selection fold; its confirm runs (``train.seed`` 1 and 2, the search's own
  is 0) give the **tuned** and the **default** arm (the method's published setting,
  ``search_spaces/<method>.yaml`` ``default:``);
- the **sweep**: a grid search over ``train.lr`` ∈ {3e-4, 1e-3, 3e-3} with the other
  parameters at the default arm's values, no early stopping, the same selection rule and
  confirm seeds: its selected configuration is the **sweep** arm (its default runs repeat the
  search's; the console says whether they agree);
- ``bench/study_measures.py``: Original's and Gold_B's values on the draw's report fold (Gold_B:
  Gold's recipe with finetuning seed k + 1000, the draw's ceiling), and each run's
  retain-matched α* and objective there.

Every number of a line comes from a confirm run's full evaluation on the report fold. Per-epoch
evaluations skip generation (``eval.generate=false``): no endpoint reads ROUGE.

    python bench/study.py --smoke                      # 1 draw, 1 method, 2 trials, 1 epoch
    python bench/study.py --draws 0-3                  # the pilot (D = 4)
    python bench/study.py --draws 4-13                 # the rest, after the amendment
    python bench/study.py --setup /work/study-frozen   # a frozen checkout to run it from

Resumes wherever it stopped: rerun the same command. A (draw, method) whose lines are all in
the raw file is skipped; otherwise its finished searches are kept, an interrupted one is
continued with ``--resume``, and only the missing lines are appended. The study must run from
a frozen checkout, so that the main tree can change meanwhile: ``--setup DIR`` makes one
(``git worktree add`` of a commit, its own venv) and prints the command that runs the study
there in the background; each line records the checkout's commit. A full study refuses a
checkout with uncommitted changes to tracked files.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from searches import find_search, run_logged
from study_measures import DRAW_FILE, FOLDER, MACHINE_FILE

import clear_ray
from clear_ray.cache import write_atomic
from clear_ray.eval.names import FORGET_DISTANCE, FORGET_QUALITY_TASKS, ITEM_COUNT, KS_STATISTIC
from clear_ray.report.study_runs import (
    DEFAULT,
    SWEEP,
    TUNED,
    Draw,
    RawFileError,
    StudyRun,
    TaskScore,
    append_run,
    read_runs,
)
from clear_ray.search.space import load_defaults

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "bench" / "results" / "study_runs.jsonl"
METHODS = ("gd", "npo", "dpo", "idk")
SWEEP_LRS = (3e-4, 1e-3, 3e-3)
GOLD_B_SEED_OFFSET = 1000  # draw k's Gold_B finetunes with seed k + 1000: no draw's own seed
# An evaluation's per-task comparison with Gold (eval/suite.py): ``<task>/<key>`` per
# forget-quality task; FORGET_DISTANCE alone is W1 over the modality's tasks.
TASK_KEYS = ("log_forget_quality", KS_STATISTIC, ITEM_COUNT)
CLEAR_COLUMNS = {
    "clear_real": "clear/real_metric",
    "clear_retain": "clear/retain_metric",
    "clear_forget": "clear/forget_metric",
}
# Planned wall time before any (draw, method) has been measured: a draw's references and Gold_B,
# and one method's search, sweep and 8 confirm runs, one at a time on 2 shared cores (design §5).
PLANNED_DRAW_S = 150.0
PLANNED_UNIT_S = 15 * 60.0


class StudyFailed(RuntimeError):
    """A step of the study failed; the message says which and where to look."""


@dataclass(frozen=True)
class Settings:
    """What the study runs: the pre-registered values, or the smoke test's."""

    trials: int = 24
    epochs: int = 3
    grace_period: int = 2
    reduction_factor: float = 2.0
    startup_trials: int = 4
    confirm_seeds: int = 2
    objective: str = "log_forget_quality"
    min_retain: float = 0.9


SMOKE = Settings(trials=2, epochs=1)


def draw_of(index: int) -> Draw:
    """Draw ``index``: each of its four seeds is ``index`` (PREREGISTRATION §2), each feeding
    its own generator."""
    if index < 0:
        raise ValueError(f"a draw index is >= 0, got {index}")
    return Draw(index, index, index, index, index)


def gold_b_seed(draw: Draw) -> int:
    return draw.reference_seed + GOLD_B_SEED_OFFSET


def confirm_seeds(settings: Settings) -> list[int]:
    """The confirm runs' ``train.seed`` values: 1..S (the searches train with seed 0), as
    ``clear_ray.search.confirm.confirm_seeds`` gives them."""
    return list(range(1, settings.confirm_seeds + 1))


def parse_draws(spec: str) -> list[int]:
    """``0-3``, ``4,5`` or ``0-3,8``: draw indices, ascending, each once."""
    indices: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"--draws: {spec!r} is not like 0-3 or 0,1,2")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"--draws: {part.strip()!r} runs backwards")
        indices.update(range(low, high + 1))
    return sorted(indices)


# ---------------------------------------------------------------- what is left (pure)


def missing_runs(
    runs: list[StudyRun], draw: Draw, method: str, seeds: list[int]
) -> list[tuple[str, int]]:
    """The (arm, seed) lines of ``(draw, method)`` not yet in the raw file."""
    have = {
        (run.arm, run.seed) for run in runs if run.draw.index == draw.index and run.method == method
    }
    return [
        (arm, seed) for arm in (DEFAULT, SWEEP, TUNED) for seed in seeds if (arm, seed) not in have
    ]


def pending_units(
    runs: list[StudyRun], draws: list[Draw], methods: list[str], seeds: list[int]
) -> list[tuple[Draw, str]]:
    """(draw, method) pairs with a line left to write, draws in index order."""
    return [
        (draw, method)
        for draw in draws
        for method in methods
        if missing_runs(runs, draw, method, seeds)
    ]


def check_draws(runs: list[StudyRun], draws: list[Draw]) -> None:
    """A draw already on file must have this mapping's seeds (the raw file is not another
    study's)."""
    on_file = {run.draw.index: run.draw for run in runs}
    for draw in draws:
        if draw.index in on_file and on_file[draw.index] != draw:
            raise ValueError(
                f"the raw file's draw {draw.index} has other seeds ({on_file[draw.index]}) "
                f"than this runner's ({draw})"
            )


def check_original(runs: list[StudyRun], lines: list[StudyRun]) -> None:
    """New lines must give their draw's Original the value its lines on file have: another
    value means another Original (a cache rebuilt, another CPU type), and the draw's pairs
    would compare runs against two references (StudyFailed)."""
    on_file = {run.draw.index: run.original_objective for run in runs}
    for line in lines:
        before = on_file.get(line.draw.index, line.original_objective)
        if before != line.original_objective:
            raise StudyFailed(
                f"draw {line.draw.index}: Original's {line.objective_name} is "
                f"{line.original_objective} now, {before} in the raw file's lines: its "
                "references changed; finish the draw where it started"
            )


# ---------------------------------------------------------------- a line (pure)


@dataclass(frozen=True)
class DrawContext:
    """What every line of a draw shares: where it ran and the draw's reference values."""

    draw: Draw
    commit: str
    cpu: str
    cpu_capability: str
    pins: dict[str, str]
    original_objective: float
    gold_b_objective: float | None

    @classmethod
    def of(cls, draw: Draw, commit: str, measured: dict, machine: dict) -> DrawContext:
        """From ``bench/study_measures.py``'s draw.json and machine.json."""
        return cls(
            draw,
            commit,
            machine["cpu"],
            machine["cpu_capability"],
            dict(machine["pins"]),
            float(measured["original_objective"]),
            measured.get("gold_b_objective"),
        )


def task_scores(metrics: dict[str, float]) -> dict[str, TaskScore]:
    """Per forget-quality task: log p, KS D and item count, for the tasks the evaluation
    compared with Gold and reported all three of (an evaluation without D and n gives none)."""
    scores = {}
    for task in FORGET_QUALITY_TASKS:
        keys = [f"{task}/{key}" for key in TASK_KEYS]
        if all(key in metrics for key in keys):
            log_p, d, n = (metrics[key] for key in keys)
            scores[task] = TaskScore(float(log_p), float(d), round(n))
    return scores


def run_line(
    context: DrawContext,
    method: str,
    arm: str,
    run: dict,
    params: dict,
    epochs: int,
    objective: str,
    matched: dict | None,
) -> StudyRun:
    """One raw line from a confirm run of confirm.json (``seed``, ``metrics`` of its full
    evaluation on the report fold, ``feasible``) and its configuration's params and epochs;
    ``matched``: its retain-matched ``alpha`` and ``matched_objective``, None if not measured."""
    metrics = run["metrics"]
    distance = metrics.get(FORGET_DISTANCE)
    return StudyRun(
        draw=context.draw,
        commit=context.commit,
        cpu=context.cpu,
        cpu_capability=context.cpu_capability,
        pins=context.pins,
        method=method,
        arm=arm,
        seed=int(run["seed"]),
        params=dict(params),
        epoch=int(epochs),
        feasible=bool(run["feasible"]),
        **{field: float(metrics[key]) for field, key in CLEAR_COLUMNS.items()},
        tasks=task_scores(metrics),
        forget_distance=None if distance is None else float(distance),
        alpha=None if matched is None else float(matched["alpha"]),
        objective_name=objective,
        objective=float(metrics[objective]),
        matched_objective=None if matched is None else float(matched["matched_objective"]),
        original_objective=context.original_objective,
        gold_b_objective=context.gold_b_objective,
    )


def sweep_params(default: dict, picked: dict) -> dict:
    """The sweep arm's configuration in the method's searched parameters: the defaults with
    the sweep's selected ``train.lr``."""
    return {**default, **picked}


def arm_sources(main: dict, sweep: dict) -> dict[str, tuple[dict, dict]]:
    """Each arm's (confirm.json configuration, params) from the search's and the sweep's
    confirm.json: default and tuned from the search, sweep = the sweep's selected one."""
    default = main["configurations"][DEFAULT]
    picked = sweep["configurations"][TUNED]
    return {
        DEFAULT: (default, default["params"]),
        TUNED: (main["configurations"][TUNED], main["configurations"][TUNED]["params"]),
        SWEEP: (picked, sweep_params(default["params"], picked["params"])),
    }


def lines_for(
    context: DrawContext,
    method: str,
    wanted: list[tuple[str, int]],
    main: dict,
    sweep: dict,
    objective: str,
    matched: dict[str, dict],
) -> list[StudyRun]:
    """The raw lines ``wanted`` ((arm, seed)) of a (draw, method); ``matched``: per arm,
    bench/study_measures.py's values by ``<label>/seed<N>`` of the search that ran the arm."""
    sources = arm_sources(main, sweep)
    lines = []
    for arm, seed in wanted:
        configuration, params = sources[arm]
        run = next((r for r in configuration["runs"] if int(r["seed"]) == seed), None)
        if run is None:
            raise ValueError(f"{method} {arm}: confirm.json has no run of seed {seed}")
        label = DEFAULT if arm == DEFAULT else TUNED  # the sweep's pick is its search's tuned
        found = matched.get(arm, {}).get(f"{label}/seed{seed}")
        lines.append(
            run_line(context, method, arm, run, params, configuration["epochs"], objective, found)
        )
    return lines


def reproduced(main: dict, sweep: dict, objective: str) -> str:
    """Whether the sweep's default runs gave the search's default runs' objective, per seed."""
    ours = {r["seed"]: r["metrics"].get(objective) for r in main["configurations"][DEFAULT]["runs"]}
    theirs = sweep["configurations"][DEFAULT]["runs"]
    differing = [r["seed"] for r in theirs if ours.get(r["seed"]) != r["metrics"].get(objective)]
    if not differing:
        return "the sweep's default runs reproduce the search's exactly"
    return (
        f"the sweep's default runs differ from the search's (seeds {differing}): not reproducible"
    )


# ---------------------------------------------------------------- progress (pure)


def eta_seconds(walls: list[float], units_left: int, draws_left: int, running_for: float) -> float:
    """Seconds left: each (draw, method) left at the mean measured one (a draw's first pair
    pays its references, so the mean includes them), less what the running one has done;
    before any was measured, the plan's per pair and per draw."""
    if units_left <= 0:
        return 0.0
    each = statistics.fmean(walls) if walls else PLANNED_UNIT_S
    return max(units_left * each - running_for, 0.0) + draws_left * PLANNED_DRAW_S * (not walls)


def trial_ended(line: str) -> bool:
    """Whether a line of the CLI's console ends a trial (search/progress.py ``_finished``:
    "[trial <id>] <why it ended>; best epoch ... in <wall>", or "[trial <id>] FAILED: ...")."""
    return line.startswith("[trial ") and ("; best epoch " in line or "] FAILED: " in line)


def minutes(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# ---------------------------------------------------------------- driving the CLI


def search_flags(settings: Settings, draw: Draw, method: str, output: Path) -> list[str]:
    """The flags every search of a (draw, method) shares: the draw's seeds, the confirm seeds,
    the constraint, one trial at a time, no robustness checks, no generation."""
    return [
        "--method", method, "--epochs", str(settings.epochs),
        "--confirm-seeds", str(settings.confirm_seeds), "--objective", settings.objective,
        "--min-retain", str(settings.min_retain), "--threshold-mode", "relative",
        "--retain-metric", "clear/retain_metric", "--seed", str(draw.sampler_seed),
        "--output-dir", str(output), "--experiment", "study", "--robustness", "none",
        "--max-concurrent", "1",  # TPE sees every trial before the next: a draw replays
        "--set", f"data.synthetic_seed={draw.data_seed}",
        "--set", f"finetune.seed={draw.reference_seed}",
        "--set", f"search.fold_seed={draw.fold_seed}",
        "--set", "train.seed=0", "--set", "eval.generate=false",
    ]  # fmt: skip


def main_search_flags(settings: Settings) -> list[str]:
    return [
        "--num-samples", str(settings.trials), "--sampler", "tpe", "--scheduler", "asha",
        "--grace-period", str(settings.grace_period),
        "--reduction-factor", str(settings.reduction_factor),
        "--set", f"search.startup_trials={settings.startup_trials}",
    ]  # fmt: skip


def sweep_space() -> str:
    """The sweep's search space: ``train.lr`` over SWEEP_LRS, nothing else searched."""
    return f"train.lr: {{distribution: categorical, choices: {list(SWEEP_LRS)}}}\n"


def sweep_fixed(published: dict) -> dict:
    """The sweep's other parameters: the method's published setting of each dimension of its
    space but the learning rate (``search_spaces/<method>.yaml`` ``default:``; those at the
    config's value need no flag), the values its default configuration trains at."""
    return {
        path: default.value
        for path, default in published.items()
        if path != "train.lr" and default.value is not None
    }


def sweep_search_flags(space: Path, fixed: dict) -> list[str]:
    flags = [
        "--search-space", str(space), "--num-samples", str(len(SWEEP_LRS)),
        "--sampler", "grid", "--scheduler", "none",
    ]  # fmt: skip
    for path, value in sorted(fixed.items()):
        flags += ["--set", f"{path}={value}"]
    return flags


def saved_config(settings: Settings, draw: Draw, sampler: str) -> dict:
    """The saved-config values by which a rerun finds a search of this draw again."""
    return {
        "search.sampler": sampler,
        "search.seed": draw.sampler_seed,
        "search.fold_seed": draw.fold_seed,
        "data.synthetic_seed": draw.data_seed,
        "finetune.seed": draw.reference_seed,
        "train.epochs": settings.epochs,
        "search.confirm_seeds": settings.confirm_seeds,
        "search.num_samples": settings.trials if sampler == "tpe" else len(SWEEP_LRS),
    }


def run_search(
    output: Path, logs: Path, name: str, method: str, flags: list[str], config: dict, on_line
) -> Path:
    """A search through the CLI, new or resumed; its folder, once it has confirm.json."""
    found = find_search(output, method, config)
    log = logs / f"{name}.log"
    if found is not None and (found / method / "confirm.json").is_file():
        return found
    if found is not None:
        print(f"[study] {name}: resuming search {found.name}", flush=True)
        command = ["--resume", found.name, "--output-dir", str(output)]
    else:
        command = flags
    code = run_logged([sys.executable, "-u", "-m", "clear_ray.tune", *command], log, on_line)
    found = find_search(output, method, config)
    if code != 0 or found is None or not (found / method / "confirm.json").is_file():
        tail = log.read_text()[-3000:] if log.is_file() else ""
        raise StudyFailed(f"{name}: clear_ray.tune exited with {code} (log {log}):\n{tail}")
    return found


def run_measures(logs: Path, name: str, draw: Draw, main: Path, sweep: Path) -> None:
    script = Path(__file__).with_name("study_measures.py")
    command = [sys.executable, "-u", str(script), "--gold-b-seed", str(gold_b_seed(draw)),
               "--search", str(main), "--sweep", str(sweep)]  # fmt: skip
    log = logs / f"{name}-measures.log"
    code = run_logged(command, log, lambda line: None)
    if code != 0:
        tail = log.read_text()[-3000:] if log.is_file() else ""
        raise StudyFailed(
            f"{name}: bench/study_measures.py exited with {code} (log {log}):\n{tail}"
        )


def checkout_commit(smoke: bool, raw: Path) -> str:
    """HEAD of the checkout this runs from; refused (ValueError) with uncommitted changes to
    tracked files but the raw file (the study appends to it, tracked once its pilot is
    committed) unless a smoke run, which records ``<commit>-dirty``."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ValueError(f"{ROOT} is not a git checkout: {result.stderr.strip()}")
        return result.stdout.strip()

    commit = git("rev-parse", "HEAD")
    spec = [f":(exclude){raw.relative_to(ROOT)}"] if raw.is_relative_to(ROOT) else []
    if not git("status", "--porcelain", "--untracked-files=no", "--", ".", *spec):
        return commit
    if smoke:
        return f"{commit}-dirty"
    raise ValueError(
        f"{ROOT} has uncommitted changes: run the study from a frozen checkout "
        "(python bench/study.py --setup DIR)"
    )


def run_unit(
    args: argparse.Namespace,
    settings: Settings,
    draw: Draw,
    method: str,
    wanted: list[tuple[str, int]],
    commit: str,
    on_trial,
) -> list[StudyRun]:
    """A (draw, method): both searches and the measures; the ``wanted`` lines."""
    output = args.output_dir / f"draw-{draw.index}"
    logs = args.output_dir / "logs"
    output.mkdir(parents=True, exist_ok=True)
    name = f"draw-{draw.index}-{method}"
    shared = search_flags(settings, draw, method, output)

    def on_line(line: str) -> None:
        if trial_ended(line):
            on_trial()

    print(f"[study] {name}: search ({settings.trials} TPE trials + confirm runs)", flush=True)
    main = run_search(
        output, logs, f"{name}-search", method, shared + main_search_flags(settings),
        saved_config(settings, draw, "tpe"), on_line,
    )  # fmt: skip
    space = output / "sweep_lr.yaml"
    space.write_text(sweep_space())
    fixed = sweep_fixed(load_defaults(method, ROOT / "search_spaces"))
    print(f"[study] {name}: lr sweep ({len(SWEEP_LRS)} trials + confirm runs)", flush=True)
    sweep = run_search(
        output, logs, f"{name}-sweep", method, shared + sweep_search_flags(space, fixed),
        saved_config(settings, draw, "grid"), on_line,
    )  # fmt: skip
    print(f"[study] {name}: Original, Gold_B and the retain-matched α", flush=True)
    run_measures(logs, name, draw, main, sweep)
    measured, machine = (
        json.loads((output / FOLDER / file).read_text()) for file in (DRAW_FILE, MACHINE_FILE)
    )
    context = DrawContext.of(draw, commit, measured, machine)
    records = {
        which: json.loads((search / method / "confirm.json").read_text())
        for which, search in (("main", main), ("sweep", sweep))
    }
    matched = {
        arm: json.loads((output / FOLDER / f"matched-{search.name}.json").read_text())
        for arm, search in ((DEFAULT, main), (TUNED, main), (SWEEP, sweep))
    }
    print(f"[study] {name}: {reproduced(records['main'], records['sweep'], settings.objective)}")
    return lines_for(
        context, method, wanted, records["main"], records["sweep"], settings.objective, matched
    )


# ---------------------------------------------------------------- frozen checkout


def setup_frozen(directory: Path, commit: str, draws: str) -> tuple[str, str]:
    """``git worktree add`` of ``commit`` at ``directory`` with its own venv; the commit's
    hash and the command that runs the study there in the background.

    The venv sees the system's packages (torch and the rest are not installed twice) and puts
    the frozen checkout first on its path (a .pth file), so its ``clear_ray`` is the frozen
    one; ``pip freeze`` is kept beside it (``.venv/requirements-frozen.txt``). A step that
    fails removes what the earlier ones made.
    """
    if directory.exists():
        raise ValueError(f"{directory} exists: pick a new folder for the frozen checkout")
    python = directory / ".venv" / "bin" / "python"

    # The venv's own path decides, not this process's PYTHONPATH.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    def step(*command: str) -> str:
        # From the checkout, as the printed command runs: a Python started elsewhere puts that
        # folder first on its path, and a clear_ray there would shadow the frozen one.
        cwd = directory if directory.exists() else None
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
        if result.returncode != 0:
            raise ValueError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    commit = step("git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}").strip()
    step("git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory), commit)
    try:
        step(sys.executable, "-m", "venv", "--system-site-packages", str(directory / ".venv"))
        purelib = step(
            str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        )
        Path(purelib.strip(), "clear_ray_frozen.pth").write_text(f"{directory}\n")
        found = step(str(python), "-c", "import clear_ray; print(clear_ray.__file__)").strip()
        if Path(found).resolve().parents[1] != directory.resolve():
            raise ValueError(f"the venv imports clear_ray from {found}, not {directory}")
        freeze = step(str(python), "-m", "pip", "freeze")
        (directory / ".venv" / "requirements-frozen.txt").write_text(freeze)
    except ValueError:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(directory)])
        raise
    output = directory.parent / f"{directory.name}-output"
    return commit, (
        f"mkdir -p {output} && cd {directory} && PYTHONPATH={directory} nohup {python} -u "
        f"bench/study.py --draws {draws} --output-dir {output} >> {output}/study.log 2>&1 &"
    )


# ---------------------------------------------------------------- driver


def add_wall(walls_file: Path, key: str, seconds: float) -> dict[str, float]:
    """Add ``seconds`` to ``key``'s wall time in ``walls_file`` and return all of it. Lanes that
    share an output dir (``--methods`` split over two processes) share the file, so it is read
    again under a lock at each write rather than kept from the start: a copy read at start and
    written back would drop the pairs the other lane finished meanwhile."""
    walls_file.parent.mkdir(parents=True, exist_ok=True)
    with open(walls_file.with_name(f".{walls_file.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        walls = json.loads(walls_file.read_text()) if walls_file.is_file() else {}
        walls[key] = walls.get(key, 0.0) + seconds
        write_atomic(walls_file, json.dumps(walls, indent=2) + "\n")
    return walls


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from clear_ray.cli.flags import HelpFormatter

    class Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Defaults shown, the epilog (this module's docstring) as written."""

    parser = argparse.ArgumentParser(
        prog="python bench/study.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=Formatter,
    )
    parser.add_argument("--draws", default="0-3", help="draw indices: 0-3 (the pilot), 4-13, 0,5")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--raw", type=Path, default=None, help=f"raw file (default {RAW})")
    parser.add_argument(
        "--output-dir", type=Path, default=None,
        help="searches, caches and logs, one folder per draw (default /tmp/clear_ray_study)",
    )  # fmt: skip
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 draw, 1 method (gd), 2 trials, 1 epoch, 2 confirm seeds, into "
        "/tmp/clear_ray_study_smoke: proves the pipeline end to end",
    )
    parser.add_argument(
        "--setup", type=Path, default=None, metavar="DIR",
        help="make a frozen checkout of --commit at DIR (git worktree + venv) and print the "
        "command that runs the study from it in the background; runs nothing else",
    )  # fmt: skip
    parser.add_argument("--commit", default="HEAD", help="with --setup: the commit to freeze")
    args = parser.parse_args(argv)
    try:
        args.draw_indices = [0] if args.smoke else parse_draws(args.draws)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    args.methods = ["gd"] if args.smoke else [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.exit(
            2, f"error: --methods: {','.join(unknown) or '(none)'}; pick from {','.join(METHODS)}\n"
        )
    base = Path("/tmp/clear_ray_study_smoke" if args.smoke else "/tmp/clear_ray_study")
    args.output_dir = (args.output_dir or base).resolve()
    args.raw = (args.raw or (base / "study_runs.jsonl" if args.smoke else RAW)).resolve()
    return args


def existing_runs(raw: Path) -> list[StudyRun]:
    return read_runs(raw) if raw.is_file() and raw.read_text().strip() else []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup is not None:
        try:
            commit, command = setup_frozen(args.setup.resolve(), args.commit, args.draws)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"[study] frozen checkout of {commit} at {args.setup}; run the study with:")
        print(command)
        return 0
    settings = SMOKE if args.smoke else Settings()
    imported = Path(clear_ray.__file__).resolve().parents[1]
    try:
        if imported != ROOT:
            raise ValueError(
                f"clear_ray is imported from {imported}, not this checkout: run with "
                f"PYTHONPATH={ROOT}"
            )
        commit = checkout_commit(args.smoke, args.raw)
        runs = existing_runs(args.raw)
        draws = [draw_of(index) for index in args.draw_indices]
        check_draws(runs, draws)
    except (ValueError, RawFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )  # the CLI, its Ray workers and the measures import this checkout
    seeds = confirm_seeds(settings)
    units = pending_units(runs, draws, args.methods, seeds)
    walls_file = args.output_dir / "study_walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.is_file() else {}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    started_all = time.time()
    print(
        f"[study] {len(units)} (draw, method) pairs to run of {len(draws) * len(args.methods)} "
        f"(draws {', '.join(map(str, args.draw_indices))}; {', '.join(args.methods)}); commit "
        f"{commit}; raw file {args.raw}; output {args.output_dir}; ETA "
        f"~{minutes(eta_seconds(list(walls.values()), len(units), len({d for d, _ in units}), 0))}",
        flush=True,
    )
    for position, (draw, method) in enumerate(units):
        key = f"draw-{draw.index}/{method}"
        started, trials, left = time.time(), [0], units[position:]

        def on_trial(started=started, trials=trials, left=left, walls=walls) -> None:
            trials[0] += 1
            draws_left = len({d.index for d, _ in left})
            eta = eta_seconds(list(walls.values()), len(left), draws_left, time.time() - started)
            print(f"[study] {trials[0]} trials done in this pair; ETA ~{minutes(eta)}", flush=True)

        print(f"[study] {draw.describe()}, {method} ({position + 1}/{len(units)})", flush=True)
        wanted = missing_runs(runs, draw, method, seeds)
        try:
            lines = run_unit(args, settings, draw, method, wanted, commit, on_trial)
            check_original(runs, lines)
        except StudyFailed as error:
            print(f"[study] {error}", file=sys.stderr, flush=True)
            return 1
        for line in lines:
            append_run(args.raw, line)
        runs += lines
        walls = add_wall(walls_file, key, time.time() - started)
        left = units[position + 1 :]
        eta = eta_seconds(list(walls.values()), len(left), 0, 0.0)
        print(
            f"[study] {key}: {len(lines)} lines appended in {minutes(time.time() - started)}; "
            f"{len(left)} pairs left, ETA ~{minutes(eta)}",
            flush=True,
        )
    print(f"[study] done in {minutes(time.time() - started_all)}; raw file {args.raw}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
