"""Analyse the study's raw file: does tuning beat each method's default, by the registered rules?

Reads only the raw file (one JSON line per run, ``clear_ray/report/study_runs.py``) and writes
``bench/STUDY.md`` and a per-draw forest plot. Per method, the replication unit is the reference
draw: the D per-draw mean paired differences tuned − default of the primary endpoint (the
objective on the report fold, an infeasible run counted as Original's value) are tested with an
exact one-sided sign-flip test (Wilcoxon signed-rank, zsplit, beside it), Holm-adjusted over the
methods, with a two-stage cluster bootstrap 95 % CI (draws, then seeds) and P(tuned > default);
the verdicts follow bench/PREREGISTRATION.md (clear_ray/paired.py ``method_verdict``,
``platform_verdict``). Where the file has them: tuned against the practitioner's lr sweep,
the retain-matched comparison (the objective at α*) and W1 to Gold, with the same statistics
and no verdict.

    python bench/analyse_study.py                          # bench/results/study_runs.jsonl
    python bench/analyse_study.py RAW --out STUDY.md --plot forest.png
    python bench/analyse_study.py RAW --blinded            # the pilot's variances and D only

``--blinded`` is the pilot's sample-size re-estimate: it prints σ_draw, σ_run and the D the
pre-registered power rule gives, computed from location-free statistics, and no mean, sign,
p-value or verdict; it writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clear_ray.cli.flags import HelpFormatter
from clear_ray.paired import (
    FAIL,
    HARM,
    MAX_EXACT_DRAWS,
    PASS,
    Comparison,
    Rules,
    Verdict,
    blinded_variances,
    compare,
    draws_needed,
    holm,
    method_verdict,
    platform_verdict,
    power,
)
from clear_ray.report.study_runs import DEFAULT, SWEEP, TUNED, Draw, RawFileError, StudyRun
from clear_ray.report.study_runs import read_runs as read_raw

BENCH = Path(__file__).resolve().parent
RAW = BENCH / "results" / "study_runs.jsonl"
STUDY = BENCH / "STUDY.md"
PLOT = BENCH / "study_forest.png"
# The pre-registered sample-size rule (bench/PREREGISTRATION.md): the smallest D that detects
# EFFECT nats with POWER at one-sided ALPHA (the 95 % CI's tail), between FEWEST and 16 draws.
EFFECT, POWER, ALPHA, FEWEST, SEEDS = 2.0, 0.8, 0.025, 8, 2

Value = Callable[[StudyRun], "float | None"]


@dataclass(frozen=True)
class Endpoint:
    """What a comparison is on: a value per run (None: not measured), higher is better."""

    title: str
    value: Value
    unit: str = "nats"


PRIMARY = Endpoint("primary endpoint (infeasible = Original's value)", lambda run: run.primary)
MATCHED = Endpoint("retain-matched: the objective at α*", lambda run: run.matched_objective)
W1 = Endpoint(
    "W1 to Gold, negated (positive: tuned closer to Gold)",
    lambda run: None if run.forget_distance is None else -run.forget_distance,
    "W1",
)


@dataclass(frozen=True)
class Paired:
    """One method's pairs of an arm against a baseline arm, by draw."""

    method: str
    arm: str
    baseline: str
    draws: list[Draw]  # the draws with at least one pair
    pairs: list[list[tuple[float, float]]]  # per draw: (arm, baseline) of each shared seed
    seeds: list[list[int]]


def paired(runs: list[StudyRun], method: str, arm: str, baseline: str, value: Value) -> Paired:
    """The (draw, seed) pairs of ``arm`` and ``baseline`` whose values are both measured."""
    ours = [run for run in runs if run.method == method]
    base = {(run.draw.index, run.seed): value(run) for run in ours if run.arm == baseline}
    found: dict[int, list[tuple[int, tuple[float, float]]]] = {}
    draws = {}
    for run in sorted(ours, key=lambda run: (run.draw.index, run.seed)):
        other, mine = base.get((run.draw.index, run.seed)), value(run)
        if run.arm == arm and mine is not None and other is not None:
            found.setdefault(run.draw.index, []).append((run.seed, (mine, other)))
            draws[run.draw.index] = run.draw
    return Paired(
        method,
        arm,
        baseline,
        [draws[index] for index in found],
        [[pair for _, pair in items] for items in found.values()],
        [[seed for seed, _ in items] for items in found.values()],
    )


def feasible_rate(runs: list[StudyRun], method: str, arm: str) -> float:
    chosen = [run.feasible for run in runs if run.method == method and run.arm == arm]
    return sum(chosen) / len(chosen) if chosen else float("nan")


def methods_of(runs: list[StudyRun]) -> list[str]:
    return list(dict.fromkeys(run.method for run in runs))


@dataclass(frozen=True)
class Analysis:
    objective: str
    methods: list[str]
    primary: dict[str, tuple[Paired, Comparison | None]]
    holm: dict[str, float]
    verdicts: dict[str, Verdict]
    platform: Verdict
    secondary: list[tuple[str, Endpoint, dict[str, tuple[Paired, Comparison]]]]


def comparison_of(
    runs: list[StudyRun], method: str, arm: str, baseline: str, endpoint: Endpoint, rules: Rules,
    resamples: int, seed: int,
) -> tuple[Paired, Comparison | None]:  # fmt: skip
    pairs = paired(runs, method, arm, baseline, endpoint.value)
    if not pairs.draws:
        return pairs, None
    if len(pairs.draws) > MAX_EXACT_DRAWS:
        raise RawFileError(f"{method}: {len(pairs.draws)} draws; the exact tests take at most 16")
    rates = feasible_rate(runs, method, arm), feasible_rate(runs, method, baseline)
    return pairs, compare(method, pairs.pairs, *rates, rules, resamples, seed)


def analyse(runs: list[StudyRun], rules: Rules, resamples: int = 10_000, seed: int = 0) -> Analysis:
    """The verdicts: Holm over every method in the file (one without pairs counts p = 1)."""
    methods = methods_of(runs)
    args = rules, resamples, seed
    primary = {m: comparison_of(runs, m, TUNED, DEFAULT, PRIMARY, *args) for m in methods}
    adjusted = holm({m: c.p_sign_flip if c else 1.0 for m, (_, c) in primary.items()})
    missing = Verdict(FAIL, ("no tuned/default pairs",))
    verdicts = {
        m: method_verdict(c, adjusted[m], rules) if c else missing for m, (_, c) in primary.items()
    }
    secondary = []
    for title, arm, baseline, endpoint in (
        ("Tuned against the practitioner's lr sweep", TUNED, SWEEP, PRIMARY),
        ("The sweep against the default", SWEEP, DEFAULT, PRIMARY),
        ("Retain-matched: tuned against default at α*", TUNED, DEFAULT, MATCHED),
        ("W1 to Gold: tuned against default", TUNED, DEFAULT, W1),
    ):
        found = {m: comparison_of(runs, m, arm, baseline, endpoint, *args) for m in methods}
        found = {m: (p, c) for m, (p, c) in found.items() if c is not None}
        if found:
            secondary.append((title, endpoint, found))
    return Analysis(
        runs[0].objective_name,
        methods,
        primary,
        adjusted,
        verdicts,
        platform_verdict(verdicts, rules),
        secondary,
    )


# --------------------------------------------------------------------------------- markdown


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _n(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}g}"


def _signed(value: float) -> str:
    return f"{value:+.3g}"


def statistics_rows(found: dict[str, tuple[Paired, Comparison | None]]) -> list[list[str]]:
    rows = []
    for method, (pairs, c) in found.items():
        if c is None:
            rows.append([method, "0", "0", *["—"] * 6])
            continue
        rows.append(
            [
                method,
                str(len(pairs.draws)),
                str(c.pairs),
                _signed(c.mean),
                f"[{_signed(c.ci[0])}, {_signed(c.ci[1])}]",
                _n(c.p_sign_flip),
                _n(c.p_wilcoxon),
                f"{c.improvement:.2f}",
                f"{c.feasible_tuned:.0%} / {c.feasible_default:.0%}",
            ]
        )
    return rows


STATISTICS = [
    "method",
    "draws",
    "pairs",
    "mean difference",
    "95 % CI (cluster bootstrap)",
    "sign-flip p",
    "Wilcoxon p",
    "P(improvement)",
    "feasible (arm / baseline)",
]


def verdict_table(analysis: Analysis) -> str:
    rows = statistics_rows(analysis.primary)
    for row, method in zip(rows, analysis.methods, strict=True):
        row.insert(6, _n(analysis.holm[method]))
        row.append(str(analysis.verdicts[method]))
    header = [*STATISTICS[:6], "Holm p", *STATISTICS[6:], "verdict"]
    return _table(header, rows)


def per_draw_table(runs: list[StudyRun], pairs: Paired) -> str:
    """A method's draws: Original, Gold_B, both arms' endpoint per seed and the differences."""
    reference = {run.draw.index: run for run in runs}
    rows = []
    for draw, draw_pairs, seeds in zip(pairs.draws, pairs.pairs, pairs.seeds, strict=True):
        run = reference[draw.index]
        differences = [tuned - default for tuned, default in draw_pairs]
        rows.append(
            [
                draw.describe(),
                _n(run.original_objective),
                _n(run.gold_b_objective),
                ", ".join(_n(default) for _, default in draw_pairs),
                ", ".join(_n(tuned) for tuned, _ in draw_pairs),
                ", ".join(str(seed) for seed in seeds),
                ", ".join(_signed(d) for d in differences),
                _signed(sum(differences) / len(differences)),
            ]
        )
    header = ["draw", "Original", "Gold_B", "default", "tuned", "seeds", "tuned − default",
              "draw mean"]  # fmt: skip
    return _table(header, rows)


def ks_table(runs: list[StudyRun]) -> str:
    """Mean KS D and log p per method, arm and forget task, with the task's n: log p scales
    with n (log p ≈ log 2 − n·D²), so D says what a log FQ means at this fold size."""
    groups: dict[tuple[str, str, str], list] = {}
    for run in runs:
        for task, score in run.tasks.items():
            groups.setdefault((run.method, run.arm, task), []).append(score)
    rows = []
    for (method, arm, task), scores in groups.items():
        sizes = sorted({score.n for score in scores})
        rows.append(
            [
                method,
                arm,
                task,
                ", ".join(str(n) for n in sizes),
                _n(sum(s.d for s in scores) / len(scores)),
                _n(sum(s.log_p for s in scores) / len(scores)),
            ]
        )
    return _table(["method", "arm", "task", "n", "mean D", "mean log p"], rows)


def provenance_lines(runs: list[StudyRun], raw: Path) -> list[str]:
    commits = Counter(run.commit for run in runs)
    cpus = Counter(f"{run.cpu} ({run.cpu_capability})" for run in runs)
    pins = Counter(
        ", ".join(f"{k}={v}" for k, v in sorted(run.pins.items())) or "unpinned" for run in runs
    )
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:16]
    return [
        f"Written by `bench/analyse_study.py` from `{raw.name}` ({len(runs)} runs, sha256 "
        f"{digest}…): every number below is computed from that file.",
        "Commits (runs): " + "; ".join(f"{name}: {n}" for name, n in commits.items()) + ".",
        "CPUs (runs): " + "; ".join(f"{name}: {count}" for name, count in cpus.items()) + ".",
        "Kernel pins (runs): " + "; ".join(f"{name}: {n}" for name, n in pins.items()) + ".",
    ]


def render(analysis: Analysis, runs: list[StudyRun], raw: Path, plot: str, rules: Rules) -> str:
    draws = len({run.draw.index for run in runs})
    parts = [
        f"# What tuning buys: tuned against default over {draws} reference draw(s)",
        *provenance_lines(runs, raw),
        f"Primary endpoint: `{analysis.objective}` on the report fold, an infeasible run "
        "counted as Original's value of its draw. Per method, the replication unit is the draw: "
        "its mean over seeds of tuned − default. Tests one-sided (tuned better), exact over "
        "the 2^D sign patterns; Holm over the methods; CI: two-stage cluster bootstrap "
        "(draws, then seeds within a draw), two-sided 95 %.",
        f"Rules (bench/PREREGISTRATION.md): PASS iff Holm p < {rules.alpha:g}, the CI above 0, "
        f"mean gain ≥ {rules.min_gain:g} nats and tuned's feasible rate not below default's by "
        f"more than {rules.max_feasible_drop:g}; HARM iff the CI is below 0. The platform "
        f"passes iff ≥ {rules.min_passes} methods pass, one of them not "
        f"{', '.join(sorted(rules.uninformative))} (its default collapses), and none is HARM.",
        "## Verdicts",
        verdict_table(analysis),
        f"**Platform: {analysis.platform}.**",
        f"![tuned − default per draw]({plot})",
        "*Per method: grey dots are seed pairs, black squares a draw's mean, blue the mean over "
        f"draws with its 95 % CI; the dashed line is the {rules.min_gain:g}-nat minimum gain.*",
        "## Per-draw differences (primary endpoint)",
    ]
    for method in analysis.methods:
        pairs, _ = analysis.primary[method]
        parts += [f"### {method}", per_draw_table(runs, pairs) if pairs.draws else "No pairs."]
    for title, endpoint, found in analysis.secondary:
        parts += [
            f"## {title} (no verdict)",
            f"Endpoint: {endpoint.title}; differences in {endpoint.unit}.",
            _table(STATISTICS, statistics_rows(found)),
        ]
    if any(run.tasks for run in runs):
        parts += ["## KS statistic beside log p (report fold)", ks_table(runs)]
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ forest plot


def forest_png(analysis: Analysis, rules: Rules) -> bytes:
    """Per method a panel: each draw's seed differences (grey) and their mean (black), the mean
    over draws with its CI at the bottom (blue), 0 and the minimum gain marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = analysis.methods
    order = sorted({d.index for pairs, _ in analysis.primary.values() for d in pairs.draws})
    rows = len(order) + 1
    figure, axes = plt.subplots(
        1, len(methods), figsize=(3.2 * len(methods), 0.35 * rows + 1.6), sharey=True,
        squeeze=False,
    )  # fmt: skip
    for axis, method in zip(axes[0], methods, strict=True):
        pairs, comparison = analysis.primary[method]
        for draw, draw_pairs in zip(pairs.draws, pairs.pairs, strict=True):
            row = order.index(draw.index)
            differences = [tuned - default for tuned, default in draw_pairs]
            axis.plot(differences, [row] * len(differences), "o", color="0.6", ms=3)
            axis.plot(sum(differences) / len(differences), row, "ks", ms=5)
        if comparison is not None:
            low, high = comparison.ci
            axis.errorbar(
                comparison.mean, rows - 1, xerr=[[comparison.mean - low], [high - comparison.mean]],
                fmt="D", color="tab:blue", capsize=3,
            )  # fmt: skip
        axis.axvline(0, color="k", lw=0.8)
        axis.axvline(rules.min_gain, color="tab:green", lw=0.8, ls="--")
        axis.set_title(f"{method}: {analysis.verdicts[method].outcome}")
        axis.set_xlabel("tuned − default (nats)")
    labels = [f"draw {index}" for index in order] + ["mean, 95 % CI"]
    axes[0][0].set_yticks(range(rows), labels)
    axes[0][0].invert_yaxis()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


# ------------------------------------------------------------------------- blinded re-estimate


def blinded_report(runs: list[StudyRun]) -> str:
    """σ_draw, σ_run (pooled over methods, location-free) and the pre-registered D."""
    by_method = {}
    for method in methods_of(runs):
        pairs = paired(runs, method, TUNED, DEFAULT, PRIMARY.value)
        if pairs.draws:
            by_method[method] = pairs.pairs
    try:
        var_draw, var_run = blinded_variances(by_method)
    except ValueError as error:
        raise RawFileError(f"blinded re-estimate: {error}") from None
    count = draws_needed(var_draw, var_run, SEEDS, EFFECT, ALPHA, POWER, FEWEST)
    reached = power(count, var_draw, var_run, SEEDS, EFFECT, ALPHA)
    return "\n".join(
        [
            f"methods: {', '.join(by_method)}; draws: {len({r.draw.index for r in runs})}",
            f"sigma_draw = {var_draw**0.5:.3g} nats, sigma_run = {var_run**0.5:.3g} nats "
            "(pooled over methods; unchanged by adding any constant to every difference)",
            f"D = {count}: power {reached:.2f} to detect {EFFECT:g} nats at one-sided alpha "
            f"{ALPHA:g} with S = {SEEDS} seeds (target {POWER:g}, D in [{FEWEST}, "
            f"{MAX_EXACT_DRAWS}])",
        ]
    )


# ------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/analyse_study.py",
        description=__doc__.split("\n\n")[0]
        + " Reads only the raw JSONL file and writes the tables, verdicts and forest plot.",
        epilog="Raw file format: clear_ray/report/study_runs.py (StudyRun). Rules: "
        "bench/PREREGISTRATION.md. Bad input exits 2 with one line and writes nothing.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("raw", nargs="?", type=Path, default=RAW, help="the study's raw file")
    parser.add_argument("--out", type=Path, default=STUDY, help="the markdown written")
    parser.add_argument("--plot", type=Path, default=PLOT, help="the forest plot PNG written")
    parser.add_argument(
        "--resamples", type=int, default=10_000, help="bootstrap resamples (two-stage)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    parser.add_argument(
        "--blinded",
        action="store_true",
        help="print only the pilot's variances and the D they call for; write nothing",
    )
    return parser.parse_args(argv)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_bytes(data)
    os.replace(scratch, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rules = Rules()
    try:
        if args.resamples < 100:
            raise RawFileError(f"--resamples {args.resamples}: at least 100")
        runs = read_raw(args.raw)
        if args.blinded:
            print(blinded_report(runs))
            return 0
        analysis = analyse(runs, rules, args.resamples, args.seed)
        link = Path(os.path.relpath(args.plot.resolve(), args.out.resolve().parent)).as_posix()
        text = render(analysis, runs, args.raw, link, rules)
        image = forest_png(analysis, rules)
    except RawFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _write(args.plot, image)
    _write(args.out, text.encode("utf-8"))
    passed = [m for m, v in analysis.verdicts.items() if v.outcome == PASS]
    harmed = [m for m, v in analysis.verdicts.items() if v.outcome == HARM]
    print(
        f"platform {analysis.platform.outcome}; PASS: {', '.join(passed) or 'none'}; HARM: "
        f"{', '.join(harmed) or 'none'}; wrote {args.out} and {args.plot}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
