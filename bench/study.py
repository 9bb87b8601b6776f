"""What tuning buys: each method's default configuration against its tuned one, over fresh seeds.

Papers in this field run a method once with its default hyperparameters. For each method this
study runs one search through the real CLI (``python -m clear_ray.tune``: TPE + ASHA over the
method's space) with ``--confirm-seeds``: the search re-trains its selected (tuned)
configuration and the default one (the config defaults of the space's dimensions) with fresh
training seeds and evaluates each run fully on the report fold, into
``<search>/<method>/confirm.json`` (format: /work/wt/CONTRACTS.md, "confirm.json"). This script
reads those files and writes, per method, default vs tuned as mean ± sd over the seeds, and a
sentence that says whether tuning helped. The search also runs the robustness checks on its
tuned runs (``robustness.json``); after it, ``bench/study_arm.py`` checks the default runs and
runs the L1 arm (the tuned configuration with ``regularizer.l1`` toggled, same seeds), and the
study adds a robustness table and, per method, whether L1 made the forgetting easier to undo.

    python bench/study.py                      # gd, npo, dpo, idk; ~1 h on 2 cores
    python bench/study.py --smoke              # 2 trials, 1 epoch: proves the pipeline
    python bench/study.py --report-only        # tables again from the confirm.json files

Every method's search lives in one output dir, so Original/Gold are trained and evaluated once.
A study killed at any point is rerun with the same command: methods whose confirm.json exists
are kept (their arm runs if it had not finished), an interrupted search is continued with
``--resume``. Flags this script does not know go to ``clear_ray.tune`` unchanged (e.g.
``--set train.batch_size=8``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from searches import find_search, references_from_leaderboard, run_logged
from study_arm import ARM, FOLDER, L1

from clear_ray.provenance import machine_summary
from clear_ray.search.confirm import mean_sd as seed_mean_sd

# (label, metric key in confirm.json's runs). The headline metric is the search's objective
# (the project's extended log FQ by default); CLEAR's own Table 1 columns follow.
METRICS = (
    ("log FQ", "log_forget_quality"),
    ("1 − JS", "forget_quality_js"),
    ("CLEAR log FQ", "clear/log_forget_quality"),
    ("CLEAR 1 − JS", "clear/forget_quality_js"),
    ("Forget", "clear/forget_metric"),
    ("Retain", "clear/retain_metric"),
    ("Real", "clear/real_metric"),
)
LABELS = dict((key, label) for label, key in METRICS)
CONFIGURATIONS = ("default", "tuned")
# The robustness table's few headline columns (of ~45 robust/* metrics, clear_ray/robust/):
# (label, key in study.json, how a robustness.json row gives it). Forget quality is log FQ.
INT8_BEFORE = "robust/quantize/log_forget_quality"
INT8_AFTER = "robust/quantize/int8/log_forget_quality"
ROBUSTNESS = (
    ("relearn recovery", "relearn_recovery", "robust/relearn/recovery"),
    ("int8 Δ log FQ", "int8_log_fq_change", (INT8_AFTER, INT8_BEFORE)),
    ("worst-prompt log FQ", "worst_prompt_log_fq", "robust/prompts/worst_log_forget_quality"),
    ("cross-modal knowledge", "cross_modal_knowledge", "robust/cross_modal/knowledge"),
)
RECOVERY = "relearn_recovery"
# Robustness rows: configuration -> (file under <search>/<method>/, robustness.json label prefix).
# The search checks its tuned runs; bench/study_arm.py the default runs and the L1 arm.
ROBUSTNESS_SOURCES = {
    "default": (f"{FOLDER}/robustness.json", "default/"),
    "tuned": ("robustness.json", "tuned/"),
    ARM: (f"{FOLDER}/robustness.json", f"{ARM}/"),
}
SMOKE = {"num_samples": 2, "epochs": 1, "confirm_seeds": 2, "proxy_items": 8, "grace_period": 1}

# Seconds measured on the 2-core machine while 8 other jobs shared it (load average 6-11), on
# the 16-forget-item synthetic benchmark (bench/RESULTS.md, "What tuning buys"). They plan
# the study and give the ETA until trials finish; from then on the ETA uses measured times.
SEARCH_START_S = 30.0  # interpreter, ray.init, cached references (first time: +REFERENCES_S)
REFERENCES_S = 45.0  # Original and Gold finetuned and evaluated, once per output dir
TRIAL_OVERHEAD_S = 25.0  # a trial's start-up and tail: 18-30 s loaded (~10 s idle, RESULTS.md)
EPOCH_S = 1.5  # one unlearning epoch plus its per-epoch evaluation without generation
FULL_EVAL_S = 14.0  # one full evaluation of an adapter, with generation
ASHA_EPOCH_FRACTION = 0.7  # share of trial-epochs ASHA lets run (0.61 measured, RESULTS.md)
CHECKS_S = 55.0  # all four robustness checks of one adapter plus one relearning attack, loaded
# (README, Robustness: 3-11 + 1-10 + 4-22 + 0.4-1.4 s, and relearn again for the L1 arm)


# ---------------------------------------------------------------- aggregation (pure functions)


@dataclass(frozen=True)
class Stat:
    """Mean and sample sd (n − 1) of a metric over seeds; sd is nan with fewer than 2 values."""

    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "–"
        if math.isnan(self.sd):
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.sd:.2g}"


def mean_sd(values: list[float]) -> Stat:
    """The package's mean ± sd (clear_ray.search.confirm.mean_sd) of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    mean, sd = seed_mean_sd(finite)
    return Stat(mean, math.nan if sd is None else sd, len(finite))


@dataclass(frozen=True)
class ConfigurationSummary:
    params: dict
    epochs: int | None
    stats: dict[str, Stat]
    feasible: int  # runs feasible at full evaluation
    runs: int

    @property
    def feasible_fraction(self) -> float:
        return self.feasible / self.runs if self.runs else math.nan


def summarise_configuration(configuration: dict, metrics: list[str]) -> ConfigurationSummary:
    """Mean ± sd over a configuration's seeds, recomputed from its runs (sd with n − 1)."""
    runs = configuration.get("runs", [])
    return ConfigurationSummary(
        params=dict(configuration.get("params", {})),
        epochs=configuration.get("epochs"),
        stats={key: mean_sd([run["metrics"].get(key) for run in runs]) for key in metrics},
        feasible=sum(bool(run.get("feasible")) for run in runs),
        runs=len(runs),
    )


def verdict(default: ConfigurationSummary, tuned: ConfigurationSummary, metric: str) -> str:
    """One sentence: did the tuned configuration beat the default on ``metric`` (higher is
    better), by more than one sd (the larger of the two), without losing feasibility?"""
    label = LABELS.get(metric, metric)
    d, t = default.stats[metric], tuned.stats[metric]
    if d.n == 0 or t.n == 0:
        missing = "default" if d.n == 0 else "tuned"
        return f"No verdict: the {missing} runs have no {label}."
    sds = [s for s in (d.sd, t.sd) if not math.isnan(s)]
    noise = max(sds) if sds else 0.0
    gain = t.mean - d.mean
    feasibility = (
        f"{tuned.feasible}/{tuned.runs} tuned runs feasible, "
        f"{default.feasible}/{default.runs} default runs"
    )
    numbers = f"tuned mean {label} {t.mean:.4g} vs default {d.mean:.4g}"
    spread = f"one sd = {noise:.2g}" if sds else "one seed each, no spread"
    less_feasible = tuned.feasible_fraction < default.feasible_fraction
    if tuned.feasible == 0:
        return f"Tuning did not help: no tuned run is feasible ({feasibility}; {numbers})."
    if abs(gain) <= noise:
        if tuned.feasible_fraction > default.feasible_fraction:
            return (
                f"Tuning did not raise {label} beyond one sd ({numbers}, {spread}), "
                f"but more tuned runs are feasible ({feasibility})."
            )
        return f"Tuning did not help: {numbers} is within one sd ({spread}); {feasibility}."
    if gain < 0 and tuned.feasible_fraction > default.feasible_fraction:
        return (
            f"Tuning traded {label} for feasibility: {numbers}, lower by {-gain:.3g} "
            f"(> {spread}), but the default breaks the retain constraint ({feasibility}); "
            "the default's forgetting came with collapse."
        )
    if gain < 0:
        return f"Tuning hurt: {numbers}, lower by {-gain:.3g} (> {spread}); {feasibility}."
    if less_feasible:
        return (
            f"Tuning raised {label} by {gain:.3g} (> {spread}; {numbers}) but lost "
            f"feasibility ({feasibility}): not a clear gain."
        )
    return f"Tuning helped: {numbers}, +{gain:.3g} (> {spread}); {feasibility}."


def headline_robustness(values: dict[str, float]) -> dict[str, float]:
    """One model's headline robustness values from its robustness.json row (a check that
    skipped the model, e.g. cross_modal after ``--modality both``, leaves its value out)."""
    found = {}
    for _, key, source in ROBUSTNESS:
        if isinstance(source, tuple):  # after − before
            after, before = source
            if after in values and before in values:
                found[key] = values[after] - values[before]
        elif source in values:
            found[key] = values[source]
    return found


def robustness_stats(robustness: dict[str, dict[str, float]], prefix: str) -> dict[str, Stat]:
    """Mean ± sd over the seeds (labels ``<prefix>seed<N>``) of each headline value."""
    rows = [headline_robustness(v) for label, v in robustness.items() if label.startswith(prefix)]
    return {key: mean_sd([row.get(key) for row in rows]) for _, key, _ in ROBUSTNESS}


def difference(label: str, without: Stat, with_l1: Stat) -> str:
    """Mechanical: did L1 move ``label`` by more than one sd (the larger of the two)?"""
    if without.n == 0 or with_l1.n == 0:
        return f"no {label} to compare"
    sds = [s for s in (without.sd, with_l1.sd) if not math.isnan(s)]
    noise = max(sds) if sds else 0.0
    if abs(with_l1.mean - without.mean) <= noise:
        spread = f"within one sd, {noise:.2g}" if sds else "one seed each"
        return f"no clear difference in {label} (without L1 {without}, with {with_l1}; {spread})"
    way = "raised" if with_l1.mean > without.mean else "lowered"
    return f"L1 {way} {label} from {without} to {with_l1}"


@dataclass(frozen=True)
class L1Arm:
    """The tuned configuration against itself with ``regularizer.l1`` toggled (study_arm.py)."""

    tuned_l1: float
    arm_l1: float
    arm: ConfigurationSummary
    sentence: str


def l1_sentence(
    tuned_l1: float,
    arm_l1: float,
    tuned: tuple[Stat, Stat],
    arm: tuple[Stat, Stat],
    objective: str,
) -> str:
    """Recovery and forget quality without vs with L1 (``(recovery, objective)`` stats of the
    tuned configuration and of the arm); higher recovery = forgetting easier to undo."""
    without, with_l1 = (arm, tuned) if tuned_l1 > 0 else (tuned, arm)
    l1 = max(tuned_l1, arm_l1)
    recovery = difference("relearn recovery", without[0], with_l1[0])
    quality = difference(LABELS.get(objective, objective), without[1], with_l1[1])
    if recovery.startswith("L1 raised"):
        answer = "forgetting with L1 was easier to undo"
    elif recovery.startswith("L1 lowered"):
        answer = "forgetting with L1 was harder to undo"
    else:
        answer = "L1 did not measurably change how easily the forgetting is undone"
    return f"L1 = {l1:.3g} vs 0 on the tuned configuration: {recovery}; {quality}. So {answer}."


def summarise_l1_arm(
    tuned: ConfigurationSummary,
    arm_confirm: dict | None,
    robustness: dict[str, dict[str, Stat]],
    objective: str,
    metrics: list[str],
) -> L1Arm | None:
    if not arm_confirm or ARM not in arm_confirm.get("configurations", {}):
        return None
    arm = summarise_configuration(arm_confirm["configurations"][ARM], metrics)
    tuned_l1, arm_l1 = float(tuned.params.get(L1, 0.0)), float(arm.params.get(L1, 0.0))
    sentence = l1_sentence(
        tuned_l1,
        arm_l1,
        (robustness["tuned"][RECOVERY], tuned.stats[objective]),
        (robustness[ARM][RECOVERY], arm.stats[objective]),
        objective,
    )
    return L1Arm(tuned_l1, arm_l1, arm, sentence)


@dataclass(frozen=True)
class MethodSummary:
    method: str
    fold: str
    seeds: list
    default: ConfigurationSummary
    tuned: ConfigurationSummary
    verdict: str
    robustness: dict[str, dict[str, Stat]]  # configuration -> headline key -> Stat
    l1_arm: L1Arm | None


def summarise_method(
    confirm: dict,
    objective: str,
    robustness_files: dict[str, dict] | None = None,
    arm_confirm: dict | None = None,
) -> MethodSummary:
    """A method's confirm.json (CONTRACTS.md) as default vs tuned and the verdict; with its
    robustness.json files (``{path under the method folder: content}``) and the L1 arm's
    confirm.json (bench/study_arm.py), the robustness rows and the L1 sentence."""
    metrics = list(dict.fromkeys([objective, *(key for _, key in METRICS)]))
    default, tuned = (
        summarise_configuration(confirm["configurations"][name], metrics) for name in CONFIGURATIONS
    )
    files = robustness_files or {}
    robustness = {
        name: robustness_stats(files.get(path) or {}, prefix)
        for name, (path, prefix) in ROBUSTNESS_SOURCES.items()
    }
    return MethodSummary(
        method=confirm["method"],
        fold=confirm.get("fold", "?"),
        seeds=list(confirm.get("seeds", [])),
        default=default,
        tuned=tuned,
        verdict=verdict(default, tuned, objective),
        robustness=robustness,
        l1_arm=summarise_l1_arm(tuned, arm_confirm, robustness, objective, metrics),
    )


def study_record(
    summaries: list[MethodSummary], references: dict, settings: dict, walls: dict[str, float]
) -> dict:
    """Everything STUDY.md shows, as JSON (``bench/results/study.json``)."""

    def configuration(summary: ConfigurationSummary) -> dict:
        return {
            "params": summary.params,
            "epochs": summary.epochs,
            "mean": {key: stat.mean for key, stat in summary.stats.items()},
            "sd": {key: stat.sd for key, stat in summary.stats.items()},
            "n": {key: stat.n for key, stat in summary.stats.items()},
            "feasible": summary.feasible,
            "runs": summary.runs,
        }

    def stats(values: dict[str, Stat]) -> dict:
        return {key: {"mean": s.mean, "sd": s.sd, "n": s.n} for key, s in values.items()}

    def l1_arm(arm: L1Arm | None) -> dict | None:
        if arm is None:
            return None
        return {
            "tuned_l1": arm.tuned_l1,
            "arm_l1": arm.arm_l1,
            "arm": configuration(arm.arm),
            "sentence": arm.sentence,
        }

    return {
        "settings": settings,
        "references": references,
        "methods": {
            s.method: {
                "fold": s.fold,
                "seeds": s.seeds,
                "default": configuration(s.default),
                "tuned": configuration(s.tuned),
                "verdict": s.verdict,
                "robustness": {name: stats(v) for name, v in s.robustness.items()},
                "l1_arm": l1_arm(s.l1_arm),
                "wall_s": walls.get(s.method),
            }
            for s in summaries
        },
    }


def _cell(record: dict, key: str) -> str:
    mean, sd, n = record["mean"].get(key), record["sd"].get(key), record["n"].get(key, 0)
    return str(Stat(math.nan if mean is None else mean, math.nan if sd is None else sd, n))


def _params(params: dict) -> str:
    return ", ".join(
        f"{name.split('.')[-1]}={value:.3g}"
        if isinstance(value, float)
        else f"{name.split('.')[-1]}={value}"
        for name, value in sorted(params.items())
    )


def _stat(values: dict | None) -> str:
    if not values:
        return str(Stat(math.nan, math.nan, 0))
    sd = math.nan if values.get("sd") is None else values["sd"]
    return str(Stat(values["mean"], sd, values.get("n", 0)))


def robustness_lines(record: dict) -> list[str]:
    """The robustness table (default, tuned, and the L1 arm per method) and its note."""
    header = ["method", "configuration", *(label for label, _, _ in ROBUSTNESS)]
    rows = []
    for method, result in record["methods"].items():
        arm = result.get("l1_arm")
        names = {"default": "default", "tuned": "tuned"}
        if arm:
            names[ARM] = f"tuned, L1 = {arm['arm_l1']:.3g} (arm)"
        for name, shown in names.items():
            values = result.get("robustness", {}).get(name, {})
            rows.append([method, shown, *(_stat(values.get(key)) for _, key, _ in ROBUSTNESS)])
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return table + ["| " + " | ".join(row) + " |" for row in rows]


def l1_lines(record: dict) -> list[str]:
    lines = []
    for method, result in record["methods"].items():
        arm = result.get("l1_arm")
        if arm is None:
            lines.append(f"- **{method}**: no L1 arm (not run, or L1 is not in the space).")
            continue
        runs = arm["arm"]
        lines.append(
            f"- **{method}** (tuned L1 = {arm['tuned_l1']:.3g}, arm L1 = {arm['arm_l1']:.3g}, "
            f"{runs['feasible']}/{runs['runs']} arm runs feasible): {arm['sentence']}"
        )
    return lines


def study_markdown(record: dict) -> str:
    """bench/STUDY.md from ``study_record``'s output."""
    settings = record["settings"]
    objective = settings["objective"]
    keys = list(dict.fromkeys([objective, *(key for _, key in METRICS)]))
    header = ["method", "configuration", *(LABELS.get(k, k) for k in keys), "feasible", "params"]
    rows = []
    for name, values in record["references"].items():
        rows.append([name, "reference", *(f"{values.get(k, math.nan):.4g}" for k in keys), "", ""])
    for method, result in record["methods"].items():
        for configuration in CONFIGURATIONS:
            numbers = result[configuration]
            rows.append(
                [
                    method,
                    configuration,
                    *(_cell(numbers, key) for key in keys),
                    f"{numbers['feasible']}/{numbers['runs']}",
                    _params(numbers["params"]),
                ]
            )
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    verdicts = [f"- **{m}**: {r['verdict']}" for m, r in record["methods"].items()]
    first = next(iter(record["methods"].values()), {})
    lines = [
        "# What tuning buys",
        "",
        f"Generated by `bench/study.py`; raw numbers in `{settings['json']}`.",
        "",
        f"Per method, the **default** configuration (the config defaults of the search space's "
        f"dimensions: one run, the way papers run it) and the **tuned** one (the best feasible "
        f"trial of a TPE search of {settings['num_samples']} trials with "
        f"{settings['scheduler']}, {settings['epochs']} epochs, objective `{objective}`), each "
        f"re-trained with {settings['confirm_seeds']} fresh training seeds "
        f"({first.get('seeds', '?')}) and evaluated fully on the "
        f"{first.get('fold', '?')} fold. Cells are mean ± sd (n − 1) over the seeds; "
        "feasible = runs meeting the retain threshold at full evaluation. Original and Gold: "
        "one full evaluation each, from the first search's leaderboard.",
        "",
        *table,
        "",
        f"## Did tuning help? (on `{objective}`, higher is better; a gain within one sd of the "
        "larger spread counts as no help)",
        "",
        *verdicts,
        "",
        "## Does the forgetting hold?",
        "",
        "Robustness checks (clear_ray/robust/, on the report fold's forget persons) of each "
        "configuration's confirm-seed runs, mean ± sd over the seeds: **relearn recovery** = "
        "the share of the removed forget knowledge a short relearning finetune on half the "
        "persons brings back on the other half (0 nothing, 1 all); **int8 Δ log FQ** = log "
        "forget quality after int8 weight rounding minus before (negative: quantization "
        "undoes forgetting); **worst-prompt log FQ** = the forget quality under the caption "
        "prompt least like Gold; **cross-modal knowledge** = the other modality's forget "
        "metric between Gold (0) and Original (1), – when `--modality both` leaves no other. "
        "The arm row ran the relearning attack only.",
        "",
        *robustness_lines(record),
        "",
        "## Does L1 make forgetting easier to undo?",
        "",
        f"Each method's tuned configuration trained again with `{L1}` toggled (0 when the tuned "
        "value is > 0, else the geometric middle of the space's positive L1 values), same "
        f"epochs and seeds ({first.get('seeds', '?')}), fully evaluated and attacked "
        f"(`bench/study_arm.py`). A difference within one sd (the larger) counts as none; "
        "higher recovery = easier to undo. Read recovery with forget quality: a model that "
        "removed under 5 % of Original − Gold has recovery 1 (nothing to undo), so an L1 that "
        "stops the forgetting shows up as high recovery and low forget quality.",
        "",
        *l1_lines(record),
        "",
        "## Settings",
        "",
        *(f"- {key}: {value}" for key, value in settings.items()),
        *(
            f"- wall time of {m}: {r['wall_s']:.0f} s"
            for m, r in record["methods"].items()
            if r.get("wall_s")
        ),
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- budget and progress


def trial_seconds(epochs: int) -> float:
    """Planned wall time of one search trial, before any has been measured."""
    return TRIAL_OVERHEAD_S + ASHA_EPOCH_FRACTION * epochs * EPOCH_S


def method_seconds(trials: int, confirm_seeds: int, trial_s: float, arm: bool = False) -> float:
    """Wall time of one method: its search's start, ``trials`` trials, the final evaluation of
    the best one, then default and tuned re-trained per seed, each fully evaluated (a
    confirmation run is counted as one more trial); with ``arm``, the L1 arm (study_arm.py:
    its own start, one more run per seed, and the checks of the default and arm runs)."""
    confirm = 2 * confirm_seeds * (trial_s + FULL_EVAL_S)
    extra = SEARCH_START_S + confirm_seeds * (trial_s + FULL_EVAL_S + CHECKS_S) if arm else 0.0
    return SEARCH_START_S + trials * trial_s + FULL_EVAL_S + confirm + extra


def eta_seconds(
    finished: list[float], remaining: int, running_estimate: float, running_for: float
) -> float:
    """Seconds left: the running method (estimated at ``running_estimate`` s, running for
    ``running_for`` s) and ``remaining - 1`` more, each taking the mean of the ``finished``
    methods' times, or ``running_estimate`` before any has finished."""
    if remaining <= 0:
        return 0.0
    each = statistics.fmean(finished) if finished else running_estimate
    return max(running_estimate - running_for, 0.0) + (remaining - 1) * each


_TRIAL_DONE = re.compile(r"\[trial \w+\] (?:done|FAILED)")


def trial_finished(line: str) -> bool:
    """Whether a line of ``clear_ray.tune``'s console reports a finished (or failed) trial."""
    return bool(_TRIAL_DONE.search(line))


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# ---------------------------------------------------------------- driver


def study_config(args: argparse.Namespace) -> dict:
    """The saved-config values by which a rerun finds this study's searches again."""
    config = {
        "search.num_samples": args.num_samples,
        "train.epochs": args.epochs,
        "search.confirm_seeds": args.confirm_seeds,
        "search.objective": args.objective,
        "search.scheduler": args.scheduler,
        "search.grace_period": args.grace_period,
        "eval.proxy_items": args.proxy_items,
        "search.seed": args.seed,
    }
    if args.report_fraction is not None:
        config["search.report_fraction"] = args.report_fraction
    return config


def confirm_path(search: Path, method: str) -> Path:
    return search / method / "confirm.json"


def arm_done(search: Path, method: str) -> bool:
    """Whether bench/study_arm.py finished on the search (it writes robustness.json last)."""
    return (search / method / FOLDER / "robustness.json").is_file()


def run_arm(args, search: Path, method: str) -> None:
    """The L1 arm and the default runs' robustness checks (bench/study_arm.py) on a search."""
    log = args.output_dir / "study_logs" / f"{method}-arm.log"
    command = [sys.executable, "-u", str(Path(__file__).with_name("study_arm.py")),
               "--search", str(search)]  # fmt: skip
    print(f"[study] {method}: L1 arm and the default runs' robustness checks", flush=True)
    code = run_logged(command, log, lambda line: None)
    if code != 0 or not arm_done(search, method):
        tail = log.read_text()[-3000:]
        sys.exit(f"[study] {method}: bench/study_arm.py exited with {code}; log {log}:\n{tail}")


def tune_command(args: argparse.Namespace, method: str, passthrough: list[str]) -> list[str]:
    command = [
        sys.executable, "-u", "-m", "clear_ray.tune", "--method", method,
        "--num-samples", str(args.num_samples), "--epochs", str(args.epochs),
        "--confirm-seeds", str(args.confirm_seeds), "--objective", args.objective,
        "--scheduler", args.scheduler, "--grace-period", str(args.grace_period),
        "--proxy-items", str(args.proxy_items), "--seed", str(args.seed),
        "--output-dir", str(args.output_dir), "--experiment", "study",
        "--set", "eval.generate=false",
        "--max-concurrent", "1",  # TPE sees every trial before the next (as measured)
    ]  # fmt: skip
    if args.report_fraction is not None:
        command += ["--report-fraction", str(args.report_fraction)]
    return command + passthrough


def check_tune_supports(flags: list[str]) -> None:
    """Fail at once, not after a search, when clear_ray.tune lacks a flag the study needs."""
    shown = subprocess.run(
        [sys.executable, "-m", "clear_ray.tune", "--help"], capture_output=True, text=True
    ).stdout
    missing = [flag for flag in flags if flag not in shown]
    if missing:
        sys.exit(f"clear_ray.tune has no {', '.join(missing)}: this study needs confirm.json")


def run_method(args, method: str, passthrough: list[str], on_trial) -> Path:
    """The method's search with its confirmation runs, new or resumed; its folder."""
    output = args.output_dir
    search = find_search(output, method, study_config(args))
    log = output / "study_logs" / f"{method}.log"
    if search is not None:
        command = [sys.executable, "-u", "-m", "clear_ray.tune", "--resume", search.name,
                   "--output-dir", str(output)]  # fmt: skip
        print(f"[study] {method}: resuming search {search.name}", flush=True)
    else:
        command = tune_command(args, method, passthrough)
    code = run_logged(command, log, lambda line: trial_finished(line) and on_trial())
    search = find_search(output, method, study_config(args))
    if code != 0 or search is None:
        tail = log.read_text()[-3000:]
        sys.exit(f"[study] {method}: clear_ray.tune exited with {code}; log {log}:\n{tail}")
    if not confirm_path(search, method).is_file():
        sys.exit(
            f"[study] {method}: search {search.name} finished without confirm.json; "
            f"remove {search} to run the method again"
        )
    return search


def collect(args, walls: dict[str, float]) -> dict:
    """study.json's record from every method's confirm.json found so far."""
    summaries, references = [], {}
    for method in args.methods:
        search = find_search(args.output_dir, method, study_config(args))
        if search is None or not confirm_path(search, method).is_file():
            continue
        confirm = json.loads(confirm_path(search, method).read_text())
        folder = search / method
        files = {
            path: json.loads((folder / path).read_text())
            for path, _ in ROBUSTNESS_SOURCES.values()
            if (folder / path).is_file()
        }
        arm = folder / FOLDER / "confirm.json"
        arm_confirm = json.loads(arm.read_text()) if arm.is_file() else None
        summaries.append(summarise_method(confirm, args.objective, files, arm_confirm))
        if not references and (search / "leaderboard.md").is_file():
            references = references_from_leaderboard((search / "leaderboard.md").read_text())
    settings = {
        "methods": ",".join(args.methods),
        "num_samples": args.num_samples,
        "epochs": args.epochs,
        "confirm_seeds": args.confirm_seeds,
        "proxy_items": args.proxy_items,
        "objective": args.objective,
        "scheduler": f"{args.scheduler} (grace period {args.grace_period})",
        "report_fraction": "config default"
        if args.report_fraction is None
        else args.report_fraction,
        "json": str(args.json),
        "sampler_seed": args.seed,
        "output_dir": str(args.output_dir),
        "machine": machine_summary(),
    }
    return study_record(summaries, references, settings, walls)


def write_report(args, walls: dict[str, float]) -> None:
    record = collect(args, walls)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    args.markdown.write_text(study_markdown(record))
    print(f"[study] wrote {args.markdown} and {args.json}", flush=True)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="gd,npo,dpo,idk", help="comma-separated")
    parser.add_argument("--num-samples", type=int, default=24, help="TPE trials per method")
    parser.add_argument(
        "--epochs", type=int, default=5, help="per trial; good idk trials peak at 3-4 (issue 15)"
    )
    parser.add_argument("--confirm-seeds", type=int, default=3)
    parser.add_argument(
        "--proxy-items",
        type=int,
        default=0,
        help="per-epoch proxy rows per task; 0 = all (a KS test on a few items ties, and "
        "scoring the tiny benchmark costs little next to a trial's start-up)",
    )
    parser.add_argument("--objective", default="log_forget_quality")
    parser.add_argument("--scheduler", default="asha")
    parser.add_argument(
        "--grace-period", type=int, default=2, help="ASHA; 1 may stop slow starters (issue 15)"
    )
    parser.add_argument("--report-fraction", type=float, default=None, help="default: config's")
    parser.add_argument("--seed", type=int, default=0, help="Optuna sampler seed")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="2 trials, 1 epoch, 2 seeds, /tmp")
    parser.add_argument("--report-only", action="store_true", help="no runs: tables again")
    parser.add_argument(
        "--no-l1-arm",
        dest="l1_arm",
        action="store_false",
        help="skip bench/study_arm.py (the L1 arm and the default runs' robustness checks; "
        "~3-4 min per method on 2 cores)",
    )
    if parser.parse_known_args(argv)[0].smoke:  # smaller defaults; flags given still win
        parser.set_defaults(**SMOKE)
    args, passthrough = parser.parse_known_args(argv)
    base = Path("/tmp/clear_ray_study_smoke" if args.smoke else "/tmp/clear_ray_study")
    args.output_dir = (args.output_dir or base).resolve()
    args.json = args.json or (
        base / "study.json" if args.smoke else Path("bench/results/study.json")
    )
    args.markdown = args.markdown or (base / "STUDY.md" if args.smoke else Path("bench/STUDY.md"))
    args.methods = [method for method in args.methods.split(",") if method]
    return args, passthrough


def main(argv: list[str] | None = None) -> None:
    args, passthrough = parse_args(argv)
    walls_file = args.output_dir / "study_walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.is_file() else {}
    if args.report_only:
        write_report(args, walls)
        return
    needed = ["--confirm-seeds"] + (["--report-fraction"] if args.report_fraction else [])
    check_tune_supports(needed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    searches = {
        method: find_search(args.output_dir, method, study_config(args)) for method in args.methods
    }
    searched = {m for m, search in searches.items() if search and confirm_path(search, m).is_file()}
    todo = [
        method
        for method in args.methods
        if method not in searched or (args.l1_arm and not arm_done(searches[method], method))
    ]
    planned = method_seconds(
        args.num_samples, args.confirm_seeds, trial_seconds(args.epochs), args.l1_arm
    )
    first_run = not (args.output_dir / "cache").exists()
    print(
        f"[study] {len(todo)} of {len(args.methods)} methods to run ({', '.join(todo) or '-'}); "
        f"planned ~{minutes(len(todo) * planned + REFERENCES_S * first_run)} "
        f"(~{minutes(planned)} per method at the load this was measured under)",
        flush=True,
    )
    for index, method in enumerate(todo):
        started, trials = time.time(), [0]

        def on_trial(method=method, started=started, index=index, trials=trials) -> None:
            trials[0] += 1
            running_for = time.time() - started
            # Measured trial time once two trials are in (the first one pays the search start).
            estimate = (
                method_seconds(
                    args.num_samples, args.confirm_seeds, running_for / trials[0], args.l1_arm
                )
                if trials[0] >= 2
                else planned
            )
            finished = [walls[m] for m in todo[:index]]
            eta = eta_seconds(finished, len(todo) - index, estimate, running_for)
            print(
                f"[study] {method}: {trials[0]} trials finished (search: {args.num_samples}, "
                f"then {2 * args.confirm_seeds} confirmation runs); study ETA ~{minutes(eta)}",
                flush=True,
            )

        print(f"[study] {method} ({index + 1}/{len(todo)}) started", flush=True)
        if method in searched:  # only its arm is left: the search's time stands
            search, started = searches[method], started - walls.get(method, 0.0)
        else:
            search = run_method(args, method, passthrough, on_trial)
        if args.l1_arm and not arm_done(search, method):
            run_arm(args, search, method)
        walls[method] = time.time() - started
        walls_file.write_text(json.dumps(walls, indent=2) + "\n")
        finished = [walls[m] for m in todo[: index + 1]]
        eta = eta_seconds(finished, len(todo) - index - 1, statistics.fmean(finished), 0.0)
        print(f"[study] {method} done in {minutes(walls[method])}; ETA ~{minutes(eta)}", flush=True)
        write_report(args, walls)  # the tables so far, after every method
    write_report(args, walls)


if __name__ == "__main__":
    main()
